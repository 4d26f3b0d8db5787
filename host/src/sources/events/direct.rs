//! Direct invocations: a JSON array, each element one record's payload (a string as its
//! text, anything else as its JSON). A record has no identity of its own; the caller may
//! name one by a field of it ([`direct_identity`]). Its own file so that what a direct
//! record becomes, and how it is named, is read and changed in one place.

use serde_json::Value;

use super::{EventError, EventItem, record};

/// The records of a direct invocation: every element of the array, in order, known by
/// its index.
pub(super) fn decode(event: Value) -> Result<Vec<EventItem>, EventError> {
    let Value::Array(values) = event else {
        return Err(EventError {
            expected: "Direct".into(),
            reason: "expected a JSON array of records".into(),
        });
    };
    let mut items = Vec::new();
    for (index, value) in values.into_iter().enumerate() {
        let payload = match value {
            Value::String(text) => text.into_bytes(),
            other => other.to_string().into_bytes(),
        };
        let record = record(
            payload,
            None,
            vec![("source", "direct".into()), ("index", index.to_string())],
        );
        items.push(EventItem {
            first_position: None,
            id: index.to_string(),
            group: None,
            // Named by the caller's id field, if it has one: see `identify_direct`.
            position: None,
            delivered: Vec::new(),
            decoded: Ok(record),
        });
    }
    Ok(items)
}

/// Longest id value a direct record's identity holds as it is.
const MAX_DIRECT_ID: usize = 256;

/// A direct invocation's record's identity: `direct/VALUE`, the value of its top-level
/// `field` (a string or a number); `None` without one.
pub fn direct_identity(decoded: &crate::sources::Decoded, field: &str) -> Option<String> {
    let record = decoded.as_ref().ok()?;
    let value = serde_json::from_slice::<Value>(&record.payload).ok()?;
    let value = match value.get(field)? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    // A long value is named by its hash: output identities travel in SQS attributes.
    if value.len() > MAX_DIRECT_ID {
        use sha2::Digest as _;
        return Some(format!(
            "direct/sha256:{}",
            hex::encode(sha2::Sha256::digest(value))
        ));
    }
    Some(format!("direct/{value}"))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::sources::events::EventKind;
    use crate::sources::events::tests::decode_fixture;

    #[test]
    fn direct_invocation_takes_any_json_values() {
        let event = decode_fixture("direct-event.json");
        assert_eq!(event.kind, EventKind::Direct);
        let texts: Vec<_> = event
            .items
            .iter()
            .map(|i| i.decoded.as_ref().expect("ok").payload.clone())
            .collect();
        assert_eq!(texts[2], Bytes::from_static(b"plain text record"));
        assert_eq!(event.items[2].id, "2");
    }
}
