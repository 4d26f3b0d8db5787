//! The two schema-registry wire formats a record may come in:
//! - Confluent's: byte `0x00`, the schema id as 4 big-endian bytes, then the datum (for
//!   Protobuf, message indexes first).
//! - AWS Glue Schema Registry's: header version byte `3`, a compression byte (`0`
//!   none, `5` zlib), the schema version's UUID (16 bytes), then the datum.

use std::fmt;

/// Which framings to recognise (`PIPELINE_SCHEMA_FRAMING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FramingSetting {
    /// Payloads are handed to the plugin as they are.
    #[default]
    None,
    /// Either framing, by its first byte.
    Auto,
    /// Confluent's only.
    Confluent,
    /// Glue's only.
    Glue,
}

impl std::str::FromStr for FramingSetting {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "none" => Ok(Self::None),
            "auto" => Ok(Self::Auto),
            "confluent" => Ok(Self::Confluent),
            "glue" => Ok(Self::Glue),
            other => Err(format!("{other:?}: `none`, `auto`, `confluent` or `glue`")),
        }
    }
}

/// Where a framed record's schema is found.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SchemaRef {
    /// A Confluent registry's schema id.
    Confluent(u32),
    /// A Glue schema version id (a UUID, as text).
    Glue(String),
}

impl std::str::FromStr for SchemaRef {
    type Err = String;

    /// A Confluent id (`7`) or a Glue schema version's UUID.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(id) = text.parse::<u32>() {
            return Ok(Self::Confluent(id));
        }
        match uuid_bytes(text) {
            Some(_) => Ok(Self::Glue(text.to_owned())),
            None => Err(format!(
                "{text:?}: a Confluent schema id (a number) or a Glue schema version id (a UUID)"
            )),
        }
    }
}

impl fmt::Display for SchemaRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Confluent(id) => write!(f, "confluent schema id {id}"),
            Self::Glue(id) => write!(f, "glue schema version {id}"),
        }
    }
}

/// A payload taken apart: its schema, and the datum (still compressed when `zlib`).
#[derive(Debug, PartialEq, Eq)]
pub struct Framed<'a> {
    pub schema: SchemaRef,
    pub zlib: bool,
    pub datum: &'a [u8],
}

/// Glue's header version byte, and its compression bytes.
const GLUE_HEADER: u8 = 3;
const GLUE_UNCOMPRESSED: u8 = 0;
const GLUE_ZLIB: u8 = 5;

/// The framing of `payload` under `setting`: `Ok(None)` for a payload not framed the
/// way the setting recognises (it goes to the plugin as it is), an error for one that
/// starts like a framing but is cut short or names a compression Glue does not write.
pub fn parse(payload: &[u8], setting: FramingSetting) -> Result<Option<Framed<'_>>, String> {
    let confluent = matches!(setting, FramingSetting::Auto | FramingSetting::Confluent);
    let glue = matches!(setting, FramingSetting::Auto | FramingSetting::Glue);
    match payload.first() {
        Some(0) if confluent => {
            let id = payload
                .get(1..5)
                .ok_or("a Confluent frame cut short: fewer than 5 bytes")?;
            let id = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
            Ok(Some(Framed {
                schema: SchemaRef::Confluent(id),
                zlib: false,
                datum: &payload[5..],
            }))
        }
        Some(&GLUE_HEADER) if glue => {
            let header = payload
                .get(..18)
                .ok_or("a Glue frame cut short: fewer than 18 bytes")?;
            let zlib = match header[1] {
                GLUE_UNCOMPRESSED => false,
                GLUE_ZLIB => true,
                other => {
                    return Err(format!(
                        "a Glue frame with compression byte {other} (0: none, 5: zlib)"
                    ));
                }
            };
            Ok(Some(Framed {
                schema: SchemaRef::Glue(uuid_text(&header[2..18])),
                zlib,
                datum: &payload[18..],
            }))
        }
        // Not framed (a record reprocessed from the DLQ holds its decoded JSON).
        _ => Ok(None),
    }
}

/// 16 bytes as a UUID's text (RFC 4122 byte order, as Glue writes it).
fn uuid_text(bytes: &[u8]) -> String {
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The bytes of a UUID's text, for framing test data.
pub fn uuid_bytes(text: &str) -> Option<[u8; 16]> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let bytes = hex::decode(hex).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "b7b4a7f0-0d9e-4b8c-9c4e-2a3f1c5d6e7f";

    #[test]
    fn each_framing_is_taken_apart() {
        let confluent = [0, 0, 0, 1, 2, 9, 9];
        assert_eq!(
            parse(&confluent, FramingSetting::Auto),
            Ok(Some(Framed {
                schema: SchemaRef::Confluent(258),
                zlib: false,
                datum: &[9, 9],
            }))
        );
        let mut glue = vec![3, 5];
        glue.extend(uuid_bytes(ID).expect("a uuid"));
        glue.push(7);
        let framed = parse(&glue, FramingSetting::Glue)
            .expect("glue")
            .expect("framed");
        assert_eq!(framed.schema, SchemaRef::Glue(ID.into()));
        assert!(framed.zlib);
        assert_eq!(framed.datum, &[7]);
    }

    #[test]
    fn what_is_not_framed_passes_and_what_is_cut_short_is_named() {
        assert_eq!(parse(b"{\"a\":1}", FramingSetting::Auto), Ok(None));
        assert_eq!(parse(&[0, 0, 0, 1], FramingSetting::None), Ok(None));
        assert_eq!(
            parse(&[0, 0, 0, 1, 0], FramingSetting::Glue),
            Ok(None),
            "Glue's only"
        );
        assert!(
            parse(&[0, 0, 0], FramingSetting::Auto)
                .expect_err("short")
                .contains("cut short")
        );
        assert!(
            parse(&[3, 0, 1], FramingSetting::Auto)
                .expect_err("short")
                .contains("fewer than 18")
        );
        let mut odd = vec![3, 2];
        odd.extend([0u8; 16]);
        assert!(
            parse(&odd, FramingSetting::Auto)
                .expect_err("compression")
                .contains("compression byte 2")
        );
        assert_eq!(parse(b"{}", FramingSetting::Confluent), Ok(None));
    }
}
