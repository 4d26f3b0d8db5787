//! Records framed by a schema registry, opened before the plugin sees them: a batch's
//! schemas are resolved once (each kept for the process: an id never changes its
//! schema), Avro datums become JSON, JSON datums are checked and unframed, and every
//! such record carries its schema's `schema-name`, `schema-version`, `schema-id`,
//! `schema-format` and `schema-fingerprint` attributes.
//!
//! A record that cannot be decoded against its schema, or names a schema the registry
//! does not have, goes to the DLQ as `schema`, its framed bytes kept. A registry that
//! cannot be asked now leaves the record `unfinished`: retried, never dead-lettered as
//! bad data.
//!
//! # Layout
//! - `mod.rs`: [`Schemas`], applied to a batch.
//! - `framing.rs`: the Confluent and Glue wire formats.
//! - `avro.rs`: Avro datums to and from JSON.
//! - `registry.rs`: Glue and Confluent-compatible registries, and parsing a schema.
//! - `outputs.rs`: the output schemas a plugin's manifest declares, checked before
//!   delivery.
//! - `writer.rs`: outputs written in a registry's framing, by a sink that asks for it.
//! - `compatibility.rs`: whether a new version's schema may follow the published ones.

mod avro;
mod compatibility;
mod framing;
mod outputs;
mod registry;
mod writer;

use std::collections::HashMap;
use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use compatibility::{Mode, check as check_compatibility};
pub use framing::{FramingSetting, SchemaRef, uuid_bytes};
pub use outputs::{DeclaredSchema, OutputSchemas};
use registry::{Format, Resolved};
pub use registry::{Missing, Registries, secret_credential};
pub use writer::{Encoder, FramedWriter, SchemaTarget, header_of};

use crate::record::{FailureKind, Record, attribute_name};
use crate::sources::{Decoded, Undecodable};

/// How long resolving a batch's schemas may take outside an invocation.
const UNBOUNDED: Duration = Duration::from_secs(30);
/// Schemas of one batch asked at once.
const FETCHES_AT_ONCE: usize = 8;

/// Framed records opened against their registries.
pub struct Schemas {
    setting: FramingSetting,
    registries: Registries,
    /// Resolved schemas, by reference.
    known: Mutex<HashMap<SchemaRef, Arc<Resolved>>>,
    /// Bytes a datum may inflate to (Glue's zlib) or decode to.
    max_bytes: usize,
}

impl Schemas {
    /// `None` when framing is off.
    pub fn new(setting: FramingSetting, registries: Registries, max_bytes: usize) -> Option<Self> {
        if setting == FramingSetting::None {
            return None;
        }
        // No single allocation while decoding an Avro datum may pass the record limit
        // (a length prefix is the datum's to choose). The first setting is kept.
        apache_avro::util::max_allocation_bytes(max_bytes);
        Some(Self {
            setting,
            registries,
            known: Mutex::new(HashMap::new()),
            max_bytes,
        })
    }

    /// Takes the schema `reference` names as given (`avro` or `json`, its text), never
    /// asking a registry for it: golden cases give their schemas inline.
    pub fn know(&self, reference: SchemaRef, format: &str, definition: &str) -> Result<(), String> {
        let (name, version) = match &reference {
            SchemaRef::Confluent(id) => (id.to_string(), id.to_string()),
            SchemaRef::Glue(version) => (version.clone(), "1".to_owned()),
        };
        let resolved = registry::resolve(&format.to_ascii_uppercase(), definition, name, version)
            .map_err(|m| m.failure().1)?;
        if let Ok(mut known) = self.known.lock() {
            known.insert(reference, Arc::new(resolved));
        }
        Ok(())
    }

    /// Opens every framed record of `items`, resolving the schemas not known yet by
    /// `ends` (`None`: within 30 s).
    pub async fn open(&self, items: &mut [&mut Decoded], ends: Option<Instant>) {
        let ends = ends.unwrap_or_else(|| Instant::now() + UNBOUNDED);
        // Which schema each record names.
        let mut references: Vec<Option<SchemaRef>> = Vec::with_capacity(items.len());
        for item in items.iter_mut() {
            let reference = match &**item {
                Ok(record) => match framing::parse(&record.payload, self.setting) {
                    Ok(framed) => framed.map(|f| f.schema),
                    Err(why) => {
                        fail(item, FailureKind::Schema, why);
                        None
                    }
                },
                Err(_) => None,
            };
            references.push(reference);
        }
        let missing = self.resolve(&references, ends).await;
        for (item, reference) in items.iter_mut().zip(references) {
            let Some(reference) = reference else { continue };
            if let Some(why) = missing.get(&reference) {
                let (kind, why) = why.failure();
                fail(item, kind, why);
                continue;
            }
            let schema = self
                .known
                .lock()
                .ok()
                .and_then(|k| k.get(&reference).cloned());
            let Some(schema) = schema else {
                fail(
                    item,
                    FailureKind::Unfinished,
                    format!("{reference}: not resolved (host bug)"),
                );
                continue;
            };
            let Ok(record) = &mut **item else { continue };
            if let Err(why) = open_record(record, self.setting, &reference, &schema, self.max_bytes)
            {
                fail(item, FailureKind::Schema, why);
            }
        }
    }

    /// Fetches the schemas of `references` not known yet: what could not be had, by
    /// reference.
    async fn resolve(
        &self,
        references: &[Option<SchemaRef>],
        ends: Instant,
    ) -> HashMap<SchemaRef, Missing> {
        use futures_util::StreamExt as _;
        let unknown: Vec<SchemaRef> = {
            let known = self
                .known
                .lock()
                .map(|k| k.keys().cloned().collect::<std::collections::HashSet<_>>())
                .unwrap_or_default();
            let mut unknown: Vec<SchemaRef> = references
                .iter()
                .flatten()
                .filter(|r| !known.contains(*r))
                .cloned()
                .collect();
            unknown.sort();
            unknown.dedup();
            unknown
        };
        let fetched: Vec<(SchemaRef, Result<Resolved, Missing>)> =
            futures_util::stream::iter(unknown)
                .map(|reference| async move {
                    let answer = self.registries.fetch(&reference, ends).await;
                    (reference, answer)
                })
                .buffer_unordered(FETCHES_AT_ONCE)
                .collect()
                .await;
        let mut missing = HashMap::new();
        for (reference, answer) in fetched {
            match answer {
                Ok(schema) => {
                    tracing::info!(schema = %reference, name = %schema.name, version = %schema.version, "schema resolved");
                    if let Ok(mut known) = self.known.lock() {
                        known.insert(reference, Arc::new(schema));
                    }
                }
                Err(why) => {
                    missing.insert(reference, why);
                }
            }
        }
        missing
    }
}

/// Turns `item` into a failure of `kind`, its record (framed bytes) kept.
fn fail(item: &mut Decoded, kind: FailureKind, reason: String) {
    let record = match std::mem::replace(item, Ok(Record::new(Bytes::new()))) {
        Ok(record) => record,
        Err(bad) => bad.record,
    };
    *item = Err(Undecodable {
        record,
        kind,
        reason,
    });
}

/// The record's payload decoded against `schema`, and its schema attributes added.
fn open_record(
    record: &mut Record,
    setting: FramingSetting,
    reference: &SchemaRef,
    schema: &Resolved,
    max_bytes: usize,
) -> Result<(), String> {
    let framed = framing::parse(&record.payload, setting)?
        .ok_or("the record is no longer framed (host bug)")?;
    let inflated;
    let datum: &[u8] = if framed.zlib {
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(framed.datum)
            .take(max_bytes as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("the zlib datum does not inflate: {e}"))?;
        if out.len() > max_bytes {
            return Err(format!("the datum inflates past {max_bytes} bytes"));
        }
        inflated = out;
        &inflated
    } else {
        framed.datum
    };
    let (payload, format) = match &schema.format {
        Format::Avro(avro) => (avro.to_json(datum)?, "avro"),
        Format::Json => {
            serde_json::from_slice::<serde::de::IgnoredAny>(datum)
                .map_err(|e| format!("the datum is not JSON: {e}"))?;
            (datum.to_vec(), "json")
        }
        Format::Protobuf => (skip_message_indexes(datum, reference)?.to_vec(), "protobuf"),
    };
    let id = match reference {
        SchemaRef::Confluent(id) => id.to_string(),
        SchemaRef::Glue(id) => id.clone(),
    };
    record.payload = payload.into();
    for (name, value) in [
        ("schema-id", id),
        ("schema-name", schema.name.clone()),
        ("schema-version", schema.version.clone()),
        ("schema-format", format.to_owned()),
        ("schema-fingerprint", schema.fingerprint.clone()),
    ] {
        record
            .attributes
            .push((attribute_name(name.to_owned()), value));
    }
    Ok(())
}

/// Message indexes a Confluent Protobuf datum may name (a nesting path; real ones are a
/// few deep).
const MAX_MESSAGE_INDEXES: u64 = 64;

/// A Protobuf datum without the index of its message: Confluent's is a count, then each
/// index, as zigzag varints (a lone `0` for the first message); Glue's one unsigned
/// varint.
fn skip_message_indexes<'d>(datum: &'d [u8], reference: &SchemaRef) -> Result<&'d [u8], String> {
    let mut rest = datum;
    let mut varint = || -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, tail) = rest
                .split_first()
                .ok_or("the message indexes are cut short")?;
            rest = tail;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a message index is not a varint".into())
    };
    let zigzag = |v: u64| (v >> 1) as i64 ^ -((v & 1) as i64);
    match reference {
        SchemaRef::Glue(_) => {
            varint()?;
        }
        SchemaRef::Confluent(_) => {
            let count = zigzag(varint()?);
            if !(0..=MAX_MESSAGE_INDEXES as i64).contains(&count) {
                return Err(format!(
                    "{count} message indexes: 0 to {MAX_MESSAGE_INDEXES}"
                ));
            }
            for _ in 0..count {
                varint()?;
            }
        }
    }
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protobuf_message_indexes_are_skipped() {
        let reference = SchemaRef::Confluent(1);
        assert_eq!(
            skip_message_indexes(&[0, 8, 1], &reference),
            Ok(&[8u8, 1][..])
        );
        // Two indexes (zigzag 4), 1 and 0, then the message.
        assert_eq!(
            skip_message_indexes(&[4, 2, 0, 8], &reference),
            Ok(&[8u8][..])
        );
        assert!(skip_message_indexes(&[4, 2], &reference).is_err());
        assert!(
            skip_message_indexes(&[1, 8], &reference).is_err(),
            "a negative count"
        );
        assert_eq!(
            skip_message_indexes(&[0, 8], &SchemaRef::Glue("g".into())),
            Ok(&[8u8][..])
        );
    }
}
