//! A DynamoDB table as a lookup table: keyed by its partition key alone (learned with
//! `DescribeTable` at start), read with `BatchGetItem`, 100 keys a call, the calls of
//! one lookup at once. Keys DynamoDB leaves unprocessed (throttling) are asked again
//! with backoff until the lookup's time is up. An item comes back as plain JSON.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, KeyType, KeysAndAttributes, ScalarAttributeType};
use base64::Engine as _;
use bytes::Bytes;

use crate::limits::backoff;

/// Keys in one `BatchGetItem` (DynamoDB's limit).
pub const KEYS_PER_CALL: usize = 100;
/// `BatchGetItem` calls of one lookup in flight at once.
const CALLS_AT_ONCE: usize = 8;

/// One DynamoDB lookup table.
pub(super) struct DynamoTable {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// The partition key's name, and whether it is a number.
    key: String,
    numeric: bool,
    /// `ProjectionExpression` and its names, when only some fields are read.
    projection: Option<(String, HashMap<String, String>)>,
}

impl DynamoTable {
    /// Learns the table's key; a table with a sort key, or a binary key, is refused.
    pub(super) async fn connect(
        client: aws_sdk_dynamodb::Client,
        table: &str,
        fields: &[String],
    ) -> Result<Self, String> {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| crate::aws::describe_error(&e))?;
        let description = described.table().ok_or("DescribeTable answered no table")?;
        let schema = description.key_schema();
        if schema.iter().any(|k| k.key_type() == &KeyType::Range) {
            return Err(
                "the table has a sort key: a lookup table is keyed by its partition key alone"
                    .into(),
            );
        }
        let key = schema
            .iter()
            .find(|k| k.key_type() == &KeyType::Hash)
            .map(|k| k.attribute_name().to_owned())
            .ok_or("the table has no partition key")?;
        let numeric = match description
            .attribute_definitions()
            .iter()
            .find(|a| a.attribute_name() == key)
            .map(|a| a.attribute_type())
        {
            Some(ScalarAttributeType::S) => false,
            Some(ScalarAttributeType::N) => true,
            other => {
                return Err(format!(
                    "its partition key `{key}` is {other:?}: a lookup key is a string or a number"
                ));
            }
        };
        let projection = (!fields.is_empty()).then(|| {
            let mut names = HashMap::new();
            let mut expression = Vec::new();
            for (i, field) in std::iter::once(&key)
                .chain(fields.iter().filter(|f| **f != key))
                .enumerate()
            {
                names.insert(format!("#f{i}"), field.clone());
                expression.push(format!("#f{i}"));
            }
            (expression.join(", "), names)
        });
        Ok(Self {
            client,
            table: table.to_owned(),
            key,
            numeric,
            projection,
        })
    }

    /// The items of `keys`, in order, as JSON. `calls` counts the requests: each
    /// distinct key once, in calls of 100, at most [`CALLS_AT_ONCE`] at once.
    pub(super) async fn fetch(
        &self,
        keys: &[String],
        until: Instant,
        calls: &AtomicU64,
    ) -> Result<Vec<Option<Bytes>>, String> {
        use futures_util::{StreamExt as _, TryStreamExt as _};
        // What DynamoDB is asked for each key; `None` for a key that cannot be one of the
        // table's (DynamoDB would refuse the whole request for it).
        let asked: Vec<Option<String>> = keys.iter().map(|k| self.key_of(k)).collect();
        let mut seen = std::collections::HashSet::new();
        let distinct: Vec<String> = asked
            .iter()
            .flatten()
            .filter(|k| seen.insert(k.as_str()))
            .cloned()
            .collect();
        let found: Vec<HashMap<String, Bytes>> = futures_util::stream::iter(
            distinct
                .chunks(KEYS_PER_CALL)
                .map(|chunk| self.fetch_chunk(chunk, until, calls)),
        )
        .buffer_unordered(CALLS_AT_ONCE)
        .try_collect()
        .await?;
        let all: HashMap<String, Bytes> = found.into_iter().flatten().collect();
        Ok(asked
            .iter()
            .map(|a| a.as_ref().and_then(|a| all.get(a).cloned()))
            .collect())
    }

    /// `key` as the table's key is written: a string as it is; a number in its
    /// canonical form (`7` for `07` and `7.0`, which DynamoDB holds as one key). `None`
    /// for an empty string or a text that is not a number DynamoDB can hold.
    fn key_of(&self, key: &str) -> Option<String> {
        match (self.numeric, key.is_empty()) {
            (_, true) => None,
            (false, false) => Some(key.to_owned()),
            (true, false) => canonical_number(key),
        }
    }

    /// One chunk of at most 100 distinct keys, unprocessed keys asked again with backoff
    /// until `until`.
    async fn fetch_chunk(
        &self,
        keys: &[String],
        until: Instant,
        calls: &AtomicU64,
    ) -> Result<HashMap<String, Bytes>, String> {
        let mut found = HashMap::new();
        let mut asking: Vec<HashMap<String, AttributeValue>> = keys
            .iter()
            .map(|k| {
                let value = if self.numeric {
                    AttributeValue::N(k.clone())
                } else {
                    AttributeValue::S(k.clone())
                };
                HashMap::from([(self.key.clone(), value)])
            })
            .collect();
        let mut attempt = 0;
        while !asking.is_empty() {
            let mut request =
                KeysAndAttributes::builder().set_keys(Some(std::mem::take(&mut asking)));
            if let Some((expression, names)) = &self.projection {
                request = request
                    .projection_expression(expression)
                    .set_expression_attribute_names(Some(names.clone()));
            }
            let request = request.build().map_err(|e| e.to_string())?;
            calls.fetch_add(1, Ordering::Relaxed);
            let call = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send();
            let answer = tokio::time::timeout_at(until.into(), call)
                .await
                .map_err(|_| "no answer before the invocation's time ran out".to_owned())?
                .map_err(|e| crate::aws::describe_error(&e))?;
            for item in (answer.responses().and_then(|r| r.get(&self.table)))
                .into_iter()
                .flatten()
            {
                let key = match item.get(&self.key) {
                    Some(AttributeValue::S(s)) => Some(s.clone()),
                    // As it was asked (DynamoDB may write a number another way).
                    Some(AttributeValue::N(n)) => canonical_number(n),
                    _ => None,
                };
                let Some(key) = key else { continue };
                let json = serde_json::Value::Object(
                    item.iter()
                        .map(|(name, value)| (name.clone(), to_json(value)))
                        .collect(),
                );
                found.insert(key, Bytes::from(json.to_string()));
            }
            asking = answer
                .unprocessed_keys()
                .and_then(|u| u.get(&self.table))
                .map(|k| k.keys().to_vec())
                .unwrap_or_default();
            if asking.is_empty() {
                break;
            }
            attempt += 1;
            let delay = backoff(Duration::from_millis(50), attempt).min(Duration::from_secs(2));
            if Instant::now() + delay >= until {
                return Err(format!(
                    "{} keys left unprocessed (throttled) when the lookup's time ran out",
                    asking.len()
                ));
            }
            tokio::time::sleep(delay).await;
        }
        Ok(found)
    }
}

/// A decimal number in the one form DynamoDB holds it as a key: no sign for a positive
/// one, no leading zeros, no trailing zeros after the point, `0` for any zero. `None` for
/// text that is not a plain decimal (`1e3` included) or beyond DynamoDB's numbers (38
/// significant digits, magnitudes from 1E-130 to under 1E+126).
fn canonical_number(text: &str) -> Option<String> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !plain(int) || !plain(frac) {
        return None;
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    if int.is_empty() && frac.is_empty() {
        return Some("0".into());
    }
    let leading = if int.is_empty() {
        frac.len() - frac.trim_start_matches('0').len()
    } else {
        0
    };
    let significant = format!("{int}{}", &frac[leading..]);
    let significant = significant.trim_end_matches('0').len();
    if significant > 38 || int.len() > 126 || (int.is_empty() && leading >= 130) {
        return None;
    }
    let int = if int.is_empty() { "0" } else { int };
    let sign = if negative { "-" } else { "" };
    Some(if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    })
}

/// An attribute value as plain JSON: numbers as numbers, binary as base64, sets as
/// arrays.
fn to_json(value: &AttributeValue) -> serde_json::Value {
    use serde_json::Value;
    let number = |n: &str| {
        serde_json::from_str::<serde_json::Number>(n)
            .map_or_else(|_| Value::String(n.to_owned()), Value::Number)
    };
    let base64 = |b: &[u8]| Value::String(base64::engine::general_purpose::STANDARD.encode(b));
    match value {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => number(n),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::B(b) => base64(b.as_ref()),
        AttributeValue::M(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
        AttributeValue::L(l) => Value::Array(l.iter().map(to_json).collect()),
        AttributeValue::Ss(s) => Value::Array(s.iter().cloned().map(Value::String).collect()),
        AttributeValue::Ns(n) => Value::Array(n.iter().map(|n| number(n)).collect()),
        AttributeValue::Bs(b) => Value::Array(b.iter().map(|b| base64(b.as_ref())).collect()),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_asked_in_the_one_form_dynamodb_holds() {
        for (text, canonical) in [
            ("7", Some("7")),
            ("007", Some("7")),
            ("7.50", Some("7.5")),
            ("+7.0", Some("7")),
            ("-0.0", Some("0")),
            ("0.0025", Some("0.0025")),
            ("-12.340", Some("-12.34")),
            ("100", Some("100")),
            (".5", Some("0.5")),
            ("1e3", None),
            ("", None),
            ("-", None),
            (".", None),
            ("12a", None),
            ("123456789012345678901234567890123456789", None),
        ] {
            assert_eq!(canonical_number(text).as_deref(), canonical, "{text:?}");
        }
    }

    #[test]
    fn items_become_plain_json() {
        let item = AttributeValue::M(HashMap::from([
            ("id".to_owned(), AttributeValue::S("u1".into())),
            ("age".to_owned(), AttributeValue::N("42".into())),
            ("tags".to_owned(), AttributeValue::Ss(vec!["a".into()])),
            ("ok".to_owned(), AttributeValue::Bool(true)),
            ("none".to_owned(), AttributeValue::Null(true)),
            (
                "bin".to_owned(),
                AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(b"hi".to_vec())),
            ),
        ]));
        assert_eq!(
            to_json(&item),
            serde_json::json!({"id": "u1", "age": 42, "tags": ["a"], "ok": true, "none": null, "bin": "aGk="})
        );
    }
}
