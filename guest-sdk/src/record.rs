//! The input record a transform sees: a zero-copy view into its packed batch.

use serde::Deserialize;

use crate::error::DomainError;
use crate::wire::{self, InputBatch};

/// One input record.
///
/// Inside a plugin it borrows its bytes from the batch the host sent (nothing is copied
/// until the transform asks for it). In native unit tests build one with [`Record::new`].
#[derive(Clone, Copy)]
pub struct Record<'a> {
    key: Option<&'a [u8]>,
    payload: &'a [u8],
    attributes: Attributes<'a>,
}

#[derive(Clone, Copy)]
enum Attributes<'a> {
    /// Words of the batch's attribute table, four per attribute.
    Packed {
        bytes: &'a [u8],
        table: &'a [u32],
    },
    Plain(&'a [(&'a str, &'a str)]),
}

impl<'a> Record<'a> {
    /// A record with this payload, no key and no attributes (for tests).
    pub fn new(payload: &'a [u8]) -> Self {
        Self {
            key: None,
            payload,
            attributes: Attributes::Plain(&[]),
        }
    }

    /// The same record with this key (for tests).
    pub fn with_key(mut self, key: &'a [u8]) -> Self {
        self.key = Some(key);
        self
    }

    /// The same record with these attributes (for tests).
    pub fn with_attributes(mut self, attributes: &'a [(&'a str, &'a str)]) -> Self {
        self.attributes = Attributes::Plain(attributes);
        self
    }

    pub(crate) fn from_batch(batch: &'a InputBatch, index: usize) -> Option<Self> {
        let words = batch
            .records
            .get(index * wire::RECORD_WORDS..(index + 1) * wire::RECORD_WORDS)?;
        let &[
            key_offset,
            key_len,
            payload_offset,
            payload_len,
            first,
            count,
        ] = words
        else {
            return None;
        };
        let bytes = batch.bytes.as_slice();
        let (first, count) = (first as usize, count as usize);
        let table = batch
            .attributes
            .get(first * wire::ATTRIBUTE_WORDS..(first + count) * wire::ATTRIBUTE_WORDS)?;
        Some(Self {
            key: match key_offset {
                wire::NONE => None,
                _ => Some(wire::slice(bytes, key_offset, key_len)?),
            },
            payload: wire::slice(bytes, payload_offset, payload_len)?,
            attributes: Attributes::Packed { bytes, table },
        })
    }

    /// The payload bytes.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// The key (Kinesis partition key, SQS message group, ...), if the source had one.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.key
    }

    /// The payload parsed as JSON into `T`; a parse failure is a [`DomainError`].
    pub fn json<T: Deserialize<'a>>(&self) -> Result<T, DomainError> {
        // The SDK's reader checks UTF-8 as it scans strings (JSON is ASCII outside
        // them); what it leaves alone, or refuses, serde_json reads after one check of
        // the whole payload (`from_str` checks no string again). JSON is UTF-8 (RFC
        // 8259), so bytes that are not are refused even inside a field `T` ignores.
        if let Ok(value) = crate::json::read(self.payload) {
            return Ok(value);
        }
        let text = std::str::from_utf8(self.payload)
            .map_err(|e| DomainError::new(format!("invalid JSON payload: not UTF-8: {e}")))?;
        Ok(serde_json::from_str(text)?)
    }

    /// The payload as UTF-8 text; anything else is a [`DomainError`].
    pub fn text(&self) -> Result<&'a str, DomainError> {
        std::str::from_utf8(self.payload)
            .map_err(|e| DomainError::new(format!("payload is not UTF-8: {e}")))
    }

    /// The value of attribute `name` (`source`, `stream`, `shard`, `sequence-number`,
    /// `arrival-time`, `line`, ...), if set.
    pub fn attribute(&self, name: &str) -> Option<&'a str> {
        match self.attributes {
            // Names are compared as bytes; only the value found is checked for UTF-8.
            Attributes::Packed { bytes, table } => table
                .chunks_exact(wire::ATTRIBUTE_WORDS)
                .find(|a| wire::slice(bytes, a[0], a[1]) == Some(name.as_bytes()))
                .and_then(|a| wire::text(bytes, a[2], a[3])),
            Attributes::Plain(list) => list.iter().find(|(n, _)| *n == name).map(|(_, v)| *v),
        }
    }

    /// All attributes, in the order the host set them.
    pub fn attributes(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let (packed, plain) = match self.attributes {
            Attributes::Packed { bytes, table } => (Some((bytes, table)), &[][..]),
            Attributes::Plain(list) => (None, list),
        };
        let packed = packed.into_iter().flat_map(|(bytes, table)| {
            table
                .chunks_exact(wire::ATTRIBUTE_WORDS)
                .filter_map(move |a| {
                    Some((
                        wire::text(bytes, a[0], a[1])?,
                        wire::text(bytes, a[2], a[3])?,
                    ))
                })
        });
        packed.chain(plain.iter().copied())
    }
}

impl std::fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("key", &self.key.map(String::from_utf8_lossy))
            .field("payload", &String::from_utf8_lossy(self.payload))
            .field("attributes", &self.attributes().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Event<'a> {
        user: &'a str,
        amount: f64,
    }

    #[test]
    fn json_borrows_from_the_payload() {
        let payload = br#"{"user":"ann","amount":1.5,"extra":[1,{"x":"y"}]}"#;
        let event: Event = Record::new(payload).json().expect("valid JSON");
        assert_eq!(
            event,
            Event {
                user: "ann",
                amount: 1.5
            }
        );
    }

    #[test]
    fn a_payload_that_is_not_utf8_is_a_domain_error_saying_where() {
        let err = Record::new(b"{\"user\":\"a\xffb\",\"amount\":1}")
            .json::<Event>()
            .expect_err("not UTF-8");
        assert_eq!(
            err.message(),
            "invalid JSON payload: not UTF-8: invalid utf-8 sequence of 1 bytes from index 10"
        );
        // Also inside a field the target type ignores: JSON is UTF-8.
        let err = Record::new(b"{\"user\":\"a\",\"amount\":1,\"note\":\"\xff\"}")
            .json::<Event>()
            .expect_err("not UTF-8 in an ignored field");
        assert!(
            err.message()
                .starts_with("invalid JSON payload: not UTF-8: "),
            "{}",
            err.message()
        );
        let err = Record::new(b"{\"user\":")
            .json::<Event>()
            .expect_err("cut short");
        assert!(err.message().contains("EOF"), "{}", err.message());
    }

    #[test]
    fn attribute_finds_the_value_by_name() {
        let attributes = [("source", "kinesis"), ("shard", "s-1")];
        let record = Record::new(b"x").with_attributes(&attributes);
        assert_eq!(record.attribute("shard"), Some("s-1"));
        assert_eq!(record.attribute("stream"), None);
    }

    /// Attributes as the host packs them: spans into the batch's bytes, four words each.
    fn packed<'a>(bytes: &'a [u8], table: &'a [u32]) -> Record<'a> {
        Record {
            key: None,
            payload: b"",
            attributes: Attributes::Packed { bytes, table },
        }
    }

    #[test]
    fn attribute_reads_packed_spans_and_refuses_bad_ones() {
        // "shard" "s-1" "shard" "s-2" "line" <0xff> "seq"
        let bytes = b"shards-1shards-2line\xffseq";
        let table = [
            0, 5, 5, 3, // shard = s-1
            8, 5, 13, 3, // shard = s-2: a duplicate, the first one wins
            16, 4, 20, 1, // line = a byte that is not UTF-8
            21, 3, 90, 2, // seq = a value outside the bytes
            200, 4, 0, 1, // a name outside the bytes
        ];
        let record = packed(bytes, &table);
        assert_eq!(record.attribute("shard"), Some("s-1"));
        assert_eq!(record.attribute("line"), None, "a value that is not UTF-8");
        assert_eq!(record.attribute("seq"), None, "a value out of bounds");
        assert_eq!(
            record.attribute("shar"),
            None,
            "a prefix of a name is not the name"
        );
        assert_eq!(record.attribute(""), None);
        let all: Vec<_> = record.attributes().collect();
        assert_eq!(all, [("shard", "s-1"), ("shard", "s-2")]);
        // A table cut short ends the attributes; a name past u32 offsets cannot wrap.
        let record = packed(bytes, &table[..6]);
        assert_eq!(record.attributes().count(), 1);
        let record = packed(bytes, &[u32::MAX, 2, 0, 1]);
        assert_eq!(record.attribute("x"), None);
    }
}
