//! KPL aggregates: the Kinesis record format the Kinesis Producer Library, Fluent Bit's
//! aggregation and the Kinesis Agent write to pack many user records into one Kinesis
//! record; read by the Kinesis sources, written by the aggregating Kinesis sink. The
//! layout (the KPL's `aggregation-format.md`):
//!
//! ```text
//! f3 89 9a c2 | protobuf AggregatedRecord | MD5 of the protobuf (16 bytes)
//!
//! message AggregatedRecord {
//!   repeated string partition_key_table     = 1;
//!   repeated string explicit_hash_key_table = 2;
//!   repeated Record records                 = 3;
//! }
//! message Record {
//!   required uint64 partition_key_index     = 1;
//!   optional uint64 explicit_hash_key_index = 2;
//!   required bytes  data                    = 3;
//!   repeated Tag    tags                    = 4;   // not read
//! }
//! ```
//!
//! What is and is not an aggregate follows the KCL's `AggregatorUtil.deaggregate`: data
//! without the magic bytes, too short to hold a digest, or whose digest does not match
//! is a plain record (user data may start with those four bytes). Where this host
//! parts from the KCL: a record whose digest matches but whose protobuf does not parse,
//! or names a key past its table, is not handed to the plugin as a blob (the KCL passes
//! the first on and throws on the second): it is [`Malformed`], and its bytes go to the
//! dead-letter queue whole, for `host reprocess` once the producer is fixed.
//!
//! The protobuf is read here, by hand, over the aggregate's own bytes: every length is
//! checked against what is left before it is used, and a user record's data and keys
//! are slices of the aggregate, not copies (a table of one long key, named by many
//! records, takes no more memory than the aggregate).

use bytes::Bytes;
use md5::Digest as _;

/// The four bytes an aggregate starts with.
pub const MAGIC: [u8; 4] = [0xf3, 0x89, 0x9a, 0xc2];

/// Bytes of the MD5 digest an aggregate ends with.
const DIGEST_LEN: usize = 16;

/// Longest partition key, in characters: Kinesis's own limit, which the KPL keeps too.
/// A record's key travels with it through the plugin call and the sinks: an aggregate
/// naming a far longer one for every record (the table holds it once) would multiply
/// it by its records.
const MAX_PARTITION_KEY: usize = 256;
/// Longest explicit hash key: a decimal 128-bit number has at most 39 digits.
const MAX_HASH_KEY: usize = 39;

/// One user record of an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Its partition key (UTF-8), from the aggregate's table: a slice of the aggregate.
    pub partition_key: Bytes,
    /// Its explicit hash key (UTF-8), when the producer set one: a slice too.
    pub explicit_hash_key: Option<Bytes>,
    /// Its data: a slice of the aggregate.
    pub data: Bytes,
}

/// Data that carries an aggregate's magic bytes and digest, but not a readable one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a KPL aggregate (its MD5 matches) that cannot be read: {0}")]
pub struct Malformed(String);

/// The user records of `data`: `Ok(None)` when it is not an aggregate (a plain record),
/// `Ok(Some(records))` when it is, in the order the producer put them.
pub fn deaggregate(data: &Bytes) -> Result<Option<Vec<UserRecord>>, Malformed> {
    let Some(message) = aggregate_body(data) else {
        return Ok(None);
    };
    let message = data.slice_ref(message);
    let mut keys: Vec<Bytes> = Vec::new();
    let mut hash_keys: Vec<Bytes> = Vec::new();
    // (partition key index, explicit hash key index, data), resolved once the tables
    // are read: protobuf allows the fields in any order.
    let mut raw: Vec<(u64, Option<u64>, Bytes)> = Vec::new();
    let mut fields = Fields::new(&message);
    while let Some(field) = fields.next_field()? {
        match field {
            (1, Value::Bytes(key)) => keys.push(text(key, "partition key", MAX_PARTITION_KEY)?),
            (2, Value::Bytes(key)) => {
                hash_keys.push(text(key, "explicit hash key", MAX_HASH_KEY)?);
            }
            (3, Value::Bytes(record)) => raw.push(user_record(&record)?),
            (1..=3, _) => return Err(Malformed("a table or record of the wrong type".into())),
            _ => {}
        }
    }
    if raw.is_empty() {
        // Not an empty batch to pass over: the Kinesis record would vanish unaccounted.
        return Err(Malformed("an aggregate of no user records".into()));
    }
    raw.into_iter()
        .enumerate()
        .map(|(index, (key, hash_key, data))| {
            let partition_key = lookup(&keys, key).ok_or_else(|| {
                Malformed(format!(
                    "user record {index} names partition key {key} of a table of {}",
                    keys.len()
                ))
            })?;
            let explicit_hash_key = match hash_key {
                None => None,
                Some(i) => Some(lookup(&hash_keys, i).ok_or_else(|| {
                    Malformed(format!(
                        "user record {index} names explicit hash key {i} of a table of {}",
                        hash_keys.len()
                    ))
                })?),
            };
            Ok(UserRecord {
                partition_key,
                explicit_hash_key,
                data,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The protobuf between the magic bytes and the digest, if `data` is an aggregate whose
/// digest matches.
fn aggregate_body(data: &[u8]) -> Option<&[u8]> {
    let rest = data.strip_prefix(&MAGIC)?;
    if rest.len() <= DIGEST_LEN {
        return None;
    }
    let (message, digest) = rest.split_at(rest.len() - DIGEST_LEN);
    (md5::Md5::digest(message)[..] == *digest).then_some(message)
}

/// One `Record` message: its key indices and its data.
fn user_record(message: &Bytes) -> Result<(u64, Option<u64>, Bytes), Malformed> {
    let mut key = None;
    let mut hash_key = None;
    let mut data = None;
    let mut fields = Fields::new(message);
    while let Some(field) = fields.next_field()? {
        match field {
            (1, Value::Varint(index)) => key = Some(index),
            (2, Value::Varint(index)) => hash_key = Some(index),
            (3, Value::Bytes(bytes)) => data = Some(bytes),
            (1..=3, _) => return Err(Malformed("a record field of the wrong type".into())),
            _ => {}
        }
    }
    match (key, data) {
        (Some(key), Some(data)) => Ok((key, hash_key, data)),
        _ => Err(Malformed(
            "a user record without its partition key index or data".into(),
        )),
    }
}

fn lookup(table: &[Bytes], index: u64) -> Option<Bytes> {
    usize::try_from(index)
        .ok()
        .and_then(|i| table.get(i))
        .cloned()
}

/// `bytes`, checked to be UTF-8 (keys are strings in the format) of at most `most`
/// characters.
fn text(bytes: Bytes, what: &str, most: usize) -> Result<Bytes, Malformed> {
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Malformed(format!("a {what} that is not UTF-8")))?;
    if text.chars().nth(most).is_some() {
        return Err(Malformed(format!(
            "a {what} longer than {most} characters (Kinesis's limit)"
        )));
    }
    Ok(bytes)
}

/// A protobuf field's value, of the wire types an aggregate uses (fixed-width fields
/// are skipped over).
enum Value {
    Varint(u64),
    Bytes(Bytes),
    Fixed,
}

/// The fields of one protobuf message, read in order.
struct Fields<'a> {
    message: &'a Bytes,
    at: usize,
}

impl<'a> Fields<'a> {
    fn new(message: &'a Bytes) -> Self {
        Self { message, at: 0 }
    }

    fn next_field(&mut self) -> Result<Option<(u64, Value)>, Malformed> {
        if self.at == self.message.len() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let number = tag >> 3;
        let value = match tag & 7 {
            0 => Value::Varint(self.varint()?),
            1 => self.skip(8).map(|()| Value::Fixed)?,
            2 => {
                let len = self.varint()?;
                let end = usize::try_from(len)
                    .ok()
                    .and_then(|len| self.at.checked_add(len))
                    .filter(|end| *end <= self.message.len())
                    .ok_or_else(|| Malformed(format!("field {number} runs past its message")))?;
                let bytes = self.message.slice(self.at..end);
                self.at = end;
                Value::Bytes(bytes)
            }
            5 => self.skip(4).map(|()| Value::Fixed)?,
            other => return Err(Malformed(format!("field {number} has wire type {other}"))),
        };
        Ok(Some((number, value)))
    }

    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .message
                .get(self.at)
                .ok_or_else(|| Malformed("a number cut short".into()))?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Malformed("a number longer than 64 bits".into()))
    }

    fn skip(&mut self, len: usize) -> Result<(), Malformed> {
        if self.message.len() - self.at < len {
            return Err(Malformed("a fixed-width field cut short".into()));
        }
        self.at += len;
        Ok(())
    }
}

/// An aggregate of `records` (`(partition key, data)`), as the KPL writes one: each
/// distinct key once in the table, in the order first used.
pub fn aggregate<'a>(records: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Vec<u8> {
    let mut keys: Vec<&str> = Vec::new();
    let mut body = Vec::new();
    let mut entries = Vec::new();
    for (key, data) in records {
        let index = keys.iter().position(|k| *k == key).unwrap_or_else(|| {
            keys.push(key);
            keys.len() - 1
        });
        let mut record = Vec::with_capacity(data.len() + 16);
        put_varint(&mut record, 1 << 3);
        put_varint(&mut record, index as u64);
        put_bytes(&mut record, 3, data);
        entries.push(record);
    }
    for key in &keys {
        put_bytes(&mut body, 1, key.as_bytes());
    }
    for record in &entries {
        put_bytes(&mut body, 3, record);
    }
    let mut out = Vec::with_capacity(MAGIC.len() + body.len() + DIGEST_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&body);
    out.extend_from_slice(&md5::Md5::digest(&body));
    out
}

fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(data: &[u8]) -> Result<Option<Vec<UserRecord>>, Malformed> {
        deaggregate(&Bytes::copy_from_slice(data))
    }

    #[test]
    fn an_aggregate_comes_apart_into_its_user_records_in_order() {
        let packed = aggregate([("a", &b"one"[..]), ("b", b"two"), ("a", b"three")]);
        let out = records(&packed).expect("readable").expect("an aggregate");
        let pairs: Vec<(&[u8], &[u8])> = out
            .iter()
            .map(|r| (&r.partition_key[..], &r.data[..]))
            .collect();
        assert_eq!(
            pairs,
            [(&b"a"[..], &b"one"[..]), (b"b", b"two"), (b"a", b"three")]
        );
        assert!(out.iter().all(|r| r.explicit_hash_key.is_none()));
    }

    #[test]
    fn explicit_hash_keys_and_fields_in_any_order_are_read() {
        // Records before the tables, an explicit hash key, an unknown tag (4) skipped.
        let mut record = Vec::new();
        put_bytes(&mut record, 3, b"x");
        put_varint(&mut record, 2 << 3);
        put_varint(&mut record, 0);
        put_varint(&mut record, 1 << 3);
        put_varint(&mut record, 0);
        put_bytes(&mut record, 4, b"\x0a\x01k");
        let mut body = Vec::new();
        put_bytes(&mut body, 3, &record);
        put_bytes(&mut body, 2, b"170141183460469231731687303715884105728");
        put_bytes(&mut body, 1, b"pk");
        let out = records(&frame(&body))
            .expect("readable")
            .expect("aggregate");
        assert_eq!(&out[0].partition_key[..], b"pk");
        assert_eq!(
            out[0].explicit_hash_key.as_deref(),
            Some(&b"170141183460469231731687303715884105728"[..])
        );
        assert_eq!(&out[0].data[..], b"x");
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(body);
        out.extend_from_slice(&md5::Md5::digest(body));
        out
    }

    #[test]
    fn data_that_is_not_an_aggregate_is_a_plain_record() {
        assert_eq!(records(b"{\"id\":1}"), Ok(None));
        assert_eq!(records(&MAGIC), Ok(None), "magic alone");
        let mut packed = aggregate([("a", &b"one"[..])]);
        let last = packed.len() - 1;
        packed[last] ^= 1;
        assert_eq!(
            records(&packed),
            Ok(None),
            "digest does not match: user data"
        );
    }

    #[test]
    fn an_aggregate_whose_digest_matches_but_cannot_be_read_is_malformed() {
        let cut = frame(&[0x1a, 0x05, 0x08]);
        let err = records(&cut).expect_err("length past the end");
        assert!(err.to_string().contains("runs past"), "{err}");
        let mut record = Vec::new();
        put_varint(&mut record, 1 << 3);
        put_varint(&mut record, 3);
        put_bytes(&mut record, 3, b"x");
        let mut body = Vec::new();
        put_bytes(&mut body, 1, b"only");
        put_bytes(&mut body, 3, &record);
        let err = records(&frame(&body)).expect_err("key index past the table");
        assert!(err.to_string().contains("partition key 3"), "{err}");
        let huge = frame(&[0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert!(records(&huge).is_err(), "a length no buffer holds");
        let endless = frame(&[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ]);
        assert!(records(&endless).is_err());
        let long = "k".repeat(257);
        let err = records(&aggregate([(long.as_str(), &b"x"[..])])).expect_err("a long key");
        assert!(err.to_string().contains("longer than 256"), "{err}");
        let mut tables_only = Vec::new();
        put_bytes(&mut tables_only, 1, b"k");
        let err = records(&frame(&tables_only)).expect_err("no user records");
        assert!(err.to_string().contains("no user records"), "{err}");
    }
}
