//! The dead-letter envelope: the original record, why it failed, which plugin version
//! failed it, how often it was tried and when. One JSON object per entry.
//!
//! ```json
//! {"record":{"payload":"{\"id\":7}","attributes":{"line":"3","source":"file"}},
//!  "error":{"kind":"domain","message":"missing `amount`"},
//!  "plugin":{"name":"validate","version":"0.1.0"},"attempts":1,
//!  "failed_at":"2026-11-26T12:00:00Z","identity":"file/events.jsonl@412-1795815541908158480#3"}
//! ```
//! `payload` / `key` hold the exact bytes as a string when they are UTF-8, otherwise
//! `payload_base64` / `key_base64` hold them base64-encoded, so an entry can be replayed
//! byte for byte.
//!
//! An entry too large for its queue (SQS takes 256 KiB) is either stored whole in S3
//! with a pointer in the queue (`"overflow": "s3://bucket/key"`, the record left out), or
//! cut to fit, saying so (`"cut": {"payload_bytes": N, "sha256": "..."}` of the whole
//! payload).

use std::collections::BTreeMap;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::record::{Failure, Record};

/// One dead-letter entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DlqEntry {
    /// The original record.
    pub record: DlqRecord,
    /// Why it failed.
    pub error: DlqError,
    /// The plugin (and version) that failed it.
    pub plugin: PluginRef,
    /// How many times the record was handed to the plugin (0: it never reached it).
    pub attempts: u32,
    /// When it was dead-lettered (RFC 3339, UTC).
    pub failed_at: String,
    /// Where the whole entry is, when the queue holds only this pointer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflow: Option<String>,
    /// Set when the payload was cut to fit the queue: what the whole one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut: Option<Cut>,
    /// The outputs of the record (by their place among its outputs) that were
    /// delivered before another was refused: reprocessing sends only the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivered: Vec<usize>,
    /// The record's source position (a Kinesis shard and sequence number, an SQS
    /// message id, an object's version and line, ...), which its outputs' identities
    /// (`POSITION#N`) start with: a consumer deduplicates by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

/// What a cut payload was before it was cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cut {
    /// Its length in bytes.
    pub payload_bytes: usize,
    /// The sha256 of its bytes (hex), as also logged.
    pub sha256: String,
}

/// The original record, losslessly encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DlqRecord {
    /// The key as text, when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The key base64-encoded, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_base64: Option<String>,
    /// The payload as text, when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The payload base64-encoded, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    /// The record's attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// The failure, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DlqError {
    /// The failure kind's name ([`FailureKind::as_str`](crate::record::FailureKind::as_str)):
    /// `decode`, `domain`, `infrastructure`, `trap`, `held`, ...
    pub kind: String,
    /// The reason, in words.
    pub message: String,
}

/// Which plugin version produced the failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginRef {
    /// The plugin's name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
}

/// Longest error message an entry keeps (a plugin's own message has no bound).
const MAX_MESSAGE_BYTES: usize = 8 << 10;

fn cap_message(message: &str) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message.to_owned();
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &message[..end], message.len())
}

fn encode(bytes: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (Some(text.to_owned()), None),
        Err(_) => (None, Some(BASE64.encode(bytes))),
    }
}

/// `json` with U+FFFE and U+FFFF written as `\ufffe` and `\uffff`. SQS refuses a
/// message body with a character outside #x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD
/// #x10000-#x10FFFF; serde_json escapes the control characters but leaves these two as
/// they are, and they arrive in payloads, plugin error messages and plugin names. In
/// JSON text they can only be inside strings, where the escape means the same character.
pub fn sqs_safe_json(json: Vec<u8>) -> Vec<u8> {
    // Their UTF-8: EF BF BE and EF BF BF (no other character's encoding contains it).
    let found = |json: &[u8]| {
        json.windows(3)
            .any(|w| w[0] == 0xEF && w[1] == 0xBF && w[2] >= 0xBE)
    };
    if !found(&json) {
        return json;
    }
    let mut out = Vec::with_capacity(json.len() + 16);
    let mut i = 0;
    while i < json.len() {
        match json.get(i..i + 3) {
            Some([0xEF, 0xBF, 0xBE]) => out.extend_from_slice(b"\\ufffe"),
            Some([0xEF, 0xBF, 0xBF]) => out.extend_from_slice(b"\\uffff"),
            _ => {
                out.push(json[i]);
                i += 1;
                continue;
            }
        }
        i += 3;
    }
    out
}

impl DlqEntry {
    /// The entry's JSON, as every dead-letter queue takes it ([`sqs_safe_json`]).
    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(self).map(sqs_safe_json)
    }

    /// An entry for `record`, failed by `plugin` at the current time.
    pub fn new(record: &Record, failure: &Failure, plugin: &PluginRef) -> Self {
        let (key, key_base64) = match &record.key {
            Some(key) => encode(key),
            None => (None, None),
        };
        let (payload, payload_base64) = encode(&record.payload);
        Self {
            record: DlqRecord {
                key,
                key_base64,
                payload,
                payload_base64,
                attributes: record
                    .attributes
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            },
            error: DlqError {
                kind: failure.kind.to_string(),
                message: cap_message(&failure.message),
            },
            plugin: plugin.clone(),
            attempts: failure.attempts,
            failed_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            overflow: None,
            cut: None,
            delivered: Vec::new(),
            identity: None,
        }
    }

    /// The pointer a queue keeps for an entry stored whole at `location`: everything
    /// but the record.
    pub fn pointer(&self, location: String) -> Self {
        Self {
            record: DlqRecord {
                key: None,
                key_base64: None,
                payload: None,
                payload_base64: None,
                attributes: BTreeMap::new(),
            },
            overflow: Some(location),
            ..self.clone()
        }
    }

    /// Cuts the payload so that the entry's JSON is at most `max` bytes (keys and
    /// attributes stay whole), recording what was cut. `None` if even an empty payload
    /// does not fit.
    pub fn cut_to_fit(&self, max: usize) -> Option<(Self, Vec<u8>)> {
        use sha2::Digest as _;
        let whole = self.original().ok()?.payload;
        let cut = Cut {
            payload_bytes: whole.len(),
            sha256: hex::encode(sha2::Sha256::digest(&whole)),
        };
        let mut keep = whole.len();
        loop {
            let mut entry = self.clone();
            let part = &whole[..keep];
            let (payload, payload_base64) = match std::str::from_utf8(part) {
                Ok(text) => (Some(text.to_owned()), None),
                // A cut in the middle of a character: keep the whole characters.
                Err(e) if self.record.payload.is_some() => {
                    keep = e.valid_up_to();
                    continue;
                }
                Err(_) => (None, Some(BASE64.encode(part))),
            };
            entry.record.payload = payload;
            entry.record.payload_base64 = payload_base64;
            entry.cut = Some(cut.clone());
            let json = entry.to_json().ok()?;
            if json.len() <= max {
                return Some((entry, json));
            }
            if keep == 0 {
                return None;
            }
            // Cut what is over, plus room for escapes, and try again.
            keep = keep.saturating_sub((json.len() - max).max(keep / 16).max(64));
        }
    }

    /// The original record, decoded back to bytes (for reprocessing).
    pub fn original(&self) -> Result<Record, base64::DecodeError> {
        let bytes = |text: &Option<String>,
                     b64: &Option<String>|
         -> Result<Option<Bytes>, base64::DecodeError> {
            Ok(match (text, b64) {
                (Some(text), _) => Some(Bytes::from(text.clone().into_bytes())),
                (None, Some(b64)) => Some(Bytes::from(BASE64.decode(b64)?)),
                (None, None) => None,
            })
        };
        let r = &self.record;
        Ok(Record {
            key: bytes(&r.key, &r.key_base64)?,
            payload: bytes(&r.payload, &r.payload_base64)?.unwrap_or_default(),
            attributes: r
                .attributes
                .iter()
                .map(|(k, v)| (crate::record::attribute_name(k.clone()), v.clone()))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::FailureKind;

    #[test]
    fn round_trips_binary_and_text() {
        let record = Record {
            key: Some(Bytes::from_static(b"k")),
            payload: Bytes::from_static(&[0xff, 0x00, 0x7f]),
            attributes: vec![("source".into(), "file".into())],
        };
        let failure = Failure {
            kind: FailureKind::Trap,
            message: "boom".into(),
            attempts: 1,
            stage: 0,
        };
        let plugin = PluginRef {
            name: "p".into(),
            version: "1".into(),
        };
        let entry = DlqEntry::new(&record, &failure, &plugin);
        let json = serde_json::to_string(&entry).expect("serialize");
        assert!(json.contains(r#""kind":"trap""#), "{json}");
        let back: DlqEntry = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.original().expect("decode"), record);
    }

    /// The characters SQS accepts in a message body, as its documentation lists them.
    fn sqs_accepts(c: char) -> bool {
        matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
    }

    #[test]
    fn entries_hold_only_characters_sqs_accepts_and_decode_to_the_same_bytes() {
        // Every character SQS refuses, in the payload, the key, the error message and
        // the plugin's name, beside ones it takes.
        let refused: String = (0u32..0x20)
            .chain([0xFFFE, 0xFFFF])
            .filter_map(char::from_u32)
            .collect();
        let text = format!("a{refused}\u{FFFD}\u{10000}z\u{FFFF}");
        let record = Record {
            key: Some(Bytes::from(text.clone().into_bytes())),
            payload: Bytes::from(text.clone().into_bytes()),
            attributes: Vec::new(),
        };
        let failure = Failure {
            kind: FailureKind::Domain,
            message: text.clone(),
            attempts: 1,
            stage: 0,
        };
        let plugin = PluginRef {
            name: text.clone(),
            version: "1".into(),
        };
        let entry = DlqEntry::new(&record, &failure, &plugin);
        let json = String::from_utf8(entry.to_json().expect("serialize")).expect("UTF-8");
        if let Some(c) = json.chars().find(|c| !sqs_accepts(*c)) {
            panic!("U+{:04X} in {json}", c as u32);
        }
        let back: DlqEntry = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.original().expect("decode"), record);
        assert_eq!(back.error.message, text);
        // And a cut entry too.
        let (_, cut) = entry.cut_to_fit(json.len() - 10).expect("fits cut");
        let cut = String::from_utf8(cut).expect("UTF-8");
        assert!(cut.chars().all(sqs_accepts), "{cut}");
    }
}
