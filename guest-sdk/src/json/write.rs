//! The writer: serde_json's bytes for the data model records use, strings without a
//! per-byte loop (see the module above).

use serde::Serialize;
use serde::ser::{self, Impossible};
use serde_json::ser::{CharEscape, CompactFormatter, Formatter};

use super::scan::{first_escape, short_has_escape};
use crate::append::append;

/// `value` as JSON, appended to `out`; the same bytes as `serde_json::to_writer`.
pub(crate) fn to_vec<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> Result<(), serde_json::Error> {
    let start = out.len();
    match value.serialize(&mut Writer { out }) {
        Ok(()) => Ok(()),
        Err(WriteError::Json(e)) => Err(e),
        // Rare types: serde_json writes the whole value again (the same bytes; the
        // value's `Serialize` runs twice). A `Serialize` that ignores this error and
        // goes on would get bytes serde_json never writes; serde's derives do not.
        Err(WriteError::Unsupported) => {
            out.truncate(start);
            serde_json::to_writer(Appender(out), value)
        }
    }
}

/// Where serde_json's formatter writes: a record comes in many short pieces (a quote, a
/// field name, a number), each appended with [`append`].
struct Appender<'v>(&'v mut Vec<u8>);

impl std::io::Write for Appender<'_> {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        append(self.0, buf);
        Ok(buf.len())
    }

    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        append(self.0, buf);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Debug)]
pub(crate) enum WriteError {
    /// A value this writer leaves to serde_json.
    Unsupported,
    /// A `Serialize` implementation's own error.
    Json(serde_json::Error),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unsupported => f.write_str("a value the SDK's JSON writer leaves to serde_json"),
            Self::Json(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for WriteError {}

impl ser::Error for WriteError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Self::Json(<serde_json::Error as ser::Error>::custom(msg))
    }
}

/// The formatter's writes cannot fail (they append to a `Vec`); its signature says they can.
fn formatted(
    out: &mut Vec<u8>,
    write: impl FnOnce(&mut CompactFormatter, &mut Appender<'_>) -> std::io::Result<()>,
) -> Result<(), WriteError> {
    write(&mut CompactFormatter, &mut Appender(out))
        .map_err(|e| WriteError::Json(serde_json::Error::io(e)))
}

// --- strings -------------------------------------------------------------------------

/// `s` as a JSON string, escaped as serde_json escapes it.
#[inline(always)]
fn write_str(out: &mut Vec<u8>, s: &str) -> Result<(), WriteError> {
    let bytes = s.as_bytes();
    if bytes.len() > 16 || short_has_escape(bytes) {
        return write_escaped_str(out, bytes);
    }
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    append(out, bytes);
    out.push(b'"');
    Ok(())
}

/// A longer string, or one with escapes: runs between escapes found a word at a time.
#[inline(never)]
fn write_escaped_str(out: &mut Vec<u8>, mut rest: &[u8]) -> Result<(), WriteError> {
    out.push(b'"');
    while let Some(at) = first_escape(rest) {
        let (run, escaped) = (&rest[..at], rest[at]);
        append(out, run);
        let escape = match escaped {
            b'"' => CharEscape::Quote,
            b'\\' => CharEscape::ReverseSolidus,
            0x08 => CharEscape::Backspace,
            0x0c => CharEscape::FormFeed,
            b'\n' => CharEscape::LineFeed,
            b'\r' => CharEscape::CarriageReturn,
            b'\t' => CharEscape::Tab,
            byte => CharEscape::AsciiControl(byte),
        };
        formatted(out, |f, w| f.write_char_escape(w, escape))?;
        rest = &rest[at + 1..];
    }
    append(out, rest);
    out.push(b'"');
    Ok(())
}

// --- values --------------------------------------------------------------------------

struct Writer<'v> {
    out: &'v mut Vec<u8>,
}

/// A sequence, map or struct being written: whether a comma comes next, and what closes
/// it (`]` or `}`, and one more `}` inside an enum variant).
struct Compound<'a, 'v> {
    writer: &'a mut Writer<'v>,
    first: bool,
    close: u8,
    in_variant: bool,
    /// Said to have no elements and closed at once, as serde_json does (an element that
    /// comes anyway is written after a comma, and closed again at the end).
    closed: bool,
}

impl Compound<'_, '_> {
    #[inline(always)]
    fn comma(&mut self) {
        if !std::mem::take(&mut self.first) {
            self.writer.out.push(b',');
        }
        // serde_json closes what was said to be empty again once an element came.
        self.closed = false;
    }

    #[inline(always)]
    fn end(self) -> Result<(), WriteError> {
        if !self.closed {
            self.writer.out.push(self.close);
        }
        if self.in_variant {
            self.writer.out.push(b'}');
        }
        Ok(())
    }
}

impl<'v> Writer<'v> {
    #[inline(always)]
    fn open<'a>(&'a mut self, open: u8, close: u8, len: Option<usize>) -> Compound<'a, 'v> {
        self.out.push(open);
        let closed = len == Some(0);
        if closed {
            self.out.push(close);
        }
        Compound {
            writer: self,
            first: !closed,
            close,
            in_variant: false,
            closed,
        }
    }

    /// `{"variant":` ... closed by `close` and `}`.
    fn open_variant<'a>(
        &'a mut self,
        variant: &str,
        open: u8,
        close: u8,
        len: usize,
    ) -> Result<Compound<'a, 'v>, WriteError> {
        self.out.push(b'{');
        write_str(self.out, variant)?;
        self.out.push(b':');
        Ok(Compound {
            in_variant: true,
            ..self.open(open, close, Some(len))
        })
    }
}

macro_rules! numbers {
    ($($method:ident: $type:ty => $write:ident),* $(,)?) => {$(
        #[inline]
        fn $method(self, value: $type) -> Result<(), WriteError> {
            formatted(self.out, |f, w| f.$write(w, value))
        }
    )*};
}

impl<'a, 'v> ser::Serializer for &'a mut Writer<'v> {
    type Ok = ();
    type Error = WriteError;
    type SerializeSeq = Compound<'a, 'v>;
    type SerializeTuple = Compound<'a, 'v>;
    type SerializeTupleStruct = Compound<'a, 'v>;
    type SerializeTupleVariant = Compound<'a, 'v>;
    type SerializeMap = Compound<'a, 'v>;
    type SerializeStruct = Compound<'a, 'v>;
    type SerializeStructVariant = Compound<'a, 'v>;

    numbers! {
        serialize_i8: i8 => write_i8, serialize_i16: i16 => write_i16,
        serialize_i32: i32 => write_i32, serialize_i64: i64 => write_i64,
        serialize_i128: i128 => write_i128, serialize_u8: u8 => write_u8,
        serialize_u16: u16 => write_u16, serialize_u32: u32 => write_u32,
        serialize_u64: u64 => write_u64, serialize_u128: u128 => write_u128,
    }

    fn serialize_bool(self, value: bool) -> Result<(), WriteError> {
        append(self.out, if value { b"true" } else { b"false" });
        Ok(())
    }

    fn serialize_f32(self, value: f32) -> Result<(), WriteError> {
        match value.is_finite() {
            true => formatted(self.out, |f, w| f.write_f32(w, value)),
            false => self.serialize_unit(),
        }
    }

    fn serialize_f64(self, value: f64) -> Result<(), WriteError> {
        match value.is_finite() {
            true => formatted(self.out, |f, w| f.write_f64(w, value)),
            false => self.serialize_unit(),
        }
    }

    fn serialize_char(self, value: char) -> Result<(), WriteError> {
        write_str(self.out, value.encode_utf8(&mut [0; 4]))
    }

    #[inline]
    fn serialize_str(self, value: &str) -> Result<(), WriteError> {
        write_str(self.out, value)
    }

    fn serialize_bytes(self, value: &[u8]) -> Result<(), WriteError> {
        formatted(self.out, |f, w| f.write_byte_array(w, value))
    }

    fn serialize_none(self) -> Result<(), WriteError> {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), WriteError> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), WriteError> {
        append(self.out, b"null");
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), WriteError> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), WriteError> {
        write_str(self.out, variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), WriteError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), WriteError> {
        self.out.push(b'{');
        write_str(self.out, variant)?;
        self.out.push(b':');
        value.serialize(&mut *self)?;
        self.out.push(b'}');
        Ok(())
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'a, 'v>, WriteError> {
        Ok(self.open(b'[', b']', len))
    }

    fn serialize_tuple(self, len: usize) -> Result<Compound<'a, 'v>, WriteError> {
        Ok(self.open(b'[', b']', Some(len)))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'v>, WriteError> {
        Ok(self.open(b'[', b']', Some(len)))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'v>, WriteError> {
        self.open_variant(variant, b'[', b']', len)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'a, 'v>, WriteError> {
        Ok(self.open(b'{', b'}', len))
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'v>, WriteError> {
        // serde_json's own types (`RawValue`, arbitrary-precision numbers) pass through
        // a struct of a private name that only serde_json's serializer understands.
        if name.starts_with("$serde_json::private::") {
            return Err(WriteError::Unsupported);
        }
        Ok(self.open(b'{', b'}', Some(len)))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'v>, WriteError> {
        self.open_variant(variant, b'{', b'}', len)
    }
}

impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = WriteError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
        self.comma();
        value.serialize(&mut *self.writer)
    }

    fn end(self) -> Result<(), WriteError> {
        Compound::end(self)
    }
}

macro_rules! like_a_seq {
    ($($trait:ident::$method:ident),*) => {$(
        impl ser::$trait for Compound<'_, '_> {
            type Ok = ();
            type Error = WriteError;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
                ser::SerializeSeq::serialize_element(self, value)
            }

            fn end(self) -> Result<(), WriteError> {
                Compound::end(self)
            }
        }
    )*};
}

like_a_seq!(
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = WriteError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), WriteError> {
        self.comma();
        key.serialize(KeyWriter(self.writer.out))
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
        self.writer.out.push(b':');
        value.serialize(&mut *self.writer)
    }

    fn end(self) -> Result<(), WriteError> {
        Compound::end(self)
    }
}

macro_rules! like_a_struct {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Compound<'_, '_> {
            type Ok = ();
            type Error = WriteError;

            #[inline(always)]
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), WriteError> {
                self.comma();
                write_str(self.writer.out, key)?;
                self.writer.out.push(b':');
                value.serialize(&mut *self.writer)
            }

            fn end(self) -> Result<(), WriteError> {
                Compound::end(self)
            }
        }
    )*};
}

like_a_struct!(SerializeStruct, SerializeStructVariant);

/// A map key: a string (or what serde_json writes as one without converting it). Any
/// other key (a number, a bool, ...) is serde_json's to convert or refuse.
struct KeyWriter<'a>(&'a mut Vec<u8>);

macro_rules! not_a_string {
    ($($method:ident($($arg:ty),*)),* $(,)?) => {$(
        fn $method(self, $(_: $arg),*) -> Result<(), WriteError> {
            Err(WriteError::Unsupported)
        }
    )*};
}

impl ser::Serializer for KeyWriter<'_> {
    type Ok = ();
    type Error = WriteError;
    type SerializeSeq = Impossible<(), WriteError>;
    type SerializeTuple = Impossible<(), WriteError>;
    type SerializeTupleStruct = Impossible<(), WriteError>;
    type SerializeTupleVariant = Impossible<(), WriteError>;
    type SerializeMap = Impossible<(), WriteError>;
    type SerializeStruct = Impossible<(), WriteError>;
    type SerializeStructVariant = Impossible<(), WriteError>;

    fn serialize_str(self, value: &str) -> Result<(), WriteError> {
        write_str(self.0, value)
    }

    fn serialize_char(self, value: char) -> Result<(), WriteError> {
        write_str(self.0, value.encode_utf8(&mut [0; 4]))
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), WriteError> {
        write_str(self.0, variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), WriteError> {
        value.serialize(self)
    }

    not_a_string! {
        serialize_bool(bool), serialize_i8(i8), serialize_i16(i16), serialize_i32(i32),
        serialize_i64(i64), serialize_i128(i128), serialize_u8(u8), serialize_u16(u16),
        serialize_u32(u32), serialize_u64(u64), serialize_u128(u128), serialize_f32(f32),
        serialize_f64(f64), serialize_bytes(&[u8]), serialize_none(), serialize_unit(),
        serialize_unit_struct(&'static str),
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<(), WriteError> {
        Err(WriteError::Unsupported)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<(), WriteError> {
        Err(WriteError::Unsupported)
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, WriteError> {
        Err(WriteError::Unsupported)
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, WriteError> {
        Err(WriteError::Unsupported)
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, WriteError> {
        Err(WriteError::Unsupported)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, WriteError> {
        Err(WriteError::Unsupported)
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, WriteError> {
        Err(WriteError::Unsupported)
    }

    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, WriteError> {
        Err(WriteError::Unsupported)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, WriteError> {
        Err(WriteError::Unsupported)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::super::strategies::{text, value};
    use super::*;

    fn ours<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
        let mut out = b"prefix".to_vec();
        to_vec(&mut out, value).map_err(|e| e.to_string())?;
        assert!(out.starts_with(b"prefix"), "appends after what is there");
        Ok(out.split_off(6))
    }

    fn serde_jsons<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
        serde_json::to_vec(value).map_err(|e| e.to_string())
    }

    fn same_as_serde_json<T: Serialize + ?Sized>(value: &T) {
        let (a, b) = (ours(value), serde_jsons(value));
        assert_eq!(
            a.as_ref().map(|v| String::from_utf8_lossy(v)),
            b.as_ref().map(|v| String::from_utf8_lossy(v))
        );
    }

    proptest! {
        #[test]
        fn strings_are_serde_jsons(s in text()) {
            prop_assert_eq!(ours(&s), serde_jsons(&s));
        }

        #[test]
        fn any_json_value_is_serde_jsons(v in value()) {
            prop_assert_eq!(ours(&v), serde_jsons(&v));
        }
    }

    #[derive(Serialize)]
    struct Unit;

    #[derive(Serialize)]
    struct Newtype(u8);

    #[derive(Serialize)]
    struct Pair(i8, &'static str);

    #[derive(Serialize)]
    enum Kind {
        Plain,
        Wrapped(u32),
        Tuple(u8, char),
        Fields { a: Option<f32>, b: () },
    }

    #[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
    enum KeyKind {
        Left,
    }

    #[derive(Serialize)]
    struct Everything<'a> {
        unit: Unit,
        newtype: Newtype,
        pair: Pair,
        kinds: [Kind; 4],
        none: Option<u8>,
        some: Option<&'a str>,
        chars: (char, char, char),
        big: (i128, u128),
        floats: [f64; 4],
        small: f32,
        list: Vec<u16>,
        empty: Vec<u16>,
        empty_map: BTreeMap<String, u8>,
        variant_keys: BTreeMap<KeyKind, u8>,
        #[serde(rename = "re\"named\n")]
        renamed: bool,
    }

    struct Bytes(&'static [u8]);

    impl Serialize for Bytes {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    #[test]
    fn every_kind_of_value_is_written_as_serde_json_writes_it() {
        same_as_serde_json(&Everything {
            unit: Unit,
            newtype: Newtype(7),
            pair: Pair(-3, "p"),
            kinds: [
                Kind::Plain,
                Kind::Wrapped(9),
                Kind::Tuple(1, '\u{1}'),
                Kind::Fields {
                    a: Some(1.5),
                    b: (),
                },
            ],
            none: None,
            some: Some("tab\there"),
            chars: ('"', 'é', '\u{1f}'),
            big: (i128::MIN, u128::MAX),
            floats: [f64::NAN, f64::INFINITY, -0.0, 1e300],
            small: f32::NEG_INFINITY,
            list: vec![1, 2, 65535],
            empty: Vec::new(),
            empty_map: BTreeMap::new(),
            variant_keys: BTreeMap::from([(KeyKind::Left, 1)]),
            renamed: true,
        });
        same_as_serde_json(&Bytes(b"\x00\xff"));
        same_as_serde_json(&'x');
    }

    #[test]
    fn keys_that_are_not_strings_are_left_to_serde_json() {
        // serde_json quotes numbers and bools as keys ...
        same_as_serde_json(&BTreeMap::from([(1, "a"), (-2, "b")]));
        same_as_serde_json(&BTreeMap::from([(true, 1)]));
        same_as_serde_json(&vec![BTreeMap::from([("k", BTreeMap::from([(3u8, 'c')]))])]);
        // ... and refuses others, with its own message.
        let refused = BTreeMap::from([(vec![1], 2)]);
        assert_eq!(ours(&refused), serde_jsons(&refused));
        assert_eq!(
            ours(&refused).expect_err("not a key"),
            "key must be a string"
        );
    }

    /// Says it has no elements, then writes some anyway.
    struct Lies;

    impl Serialize for Lies {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use ser::SerializeMap;
            let mut map = s.serialize_map(Some(0))?;
            map.serialize_entry("seq", &LyingSeq)?;
            map.serialize_entry("variant", &LyingVariant)?;
            map.serialize_entry("k", &1)?;
            map.end()
        }
    }

    struct LyingSeq;

    impl Serialize for LyingSeq {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use ser::SerializeSeq;
            let mut seq = s.serialize_seq(Some(0))?;
            seq.serialize_element(&1)?;
            seq.end()
        }
    }

    struct LyingVariant;

    impl Serialize for LyingVariant {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use ser::SerializeStructVariant;
            let mut variant = s.serialize_struct_variant("E", 0, "V", 0)?;
            variant.serialize_field("a", &2)?;
            variant.end()
        }
    }

    struct Refuses;

    impl Serialize for Refuses {
        fn serialize<S: ser::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(ser::Error::custom("no, not this one"))
        }
    }

    #[test]
    fn lengths_said_to_be_zero_are_written_as_serde_json_writes_them() {
        // serde_json closes at once and writes what comes after a comma (not JSON, but
        // its bytes).
        same_as_serde_json(&Lies);
        let mut out = Vec::new();
        assert!(
            Lies.serialize(&mut Writer { out: &mut out }).is_ok(),
            "written alone"
        );
        assert_eq!(
            String::from_utf8(out).ok().as_deref(),
            Some(r#"{},"seq":[],1],"variant":{"V":{},"a":2}},"k":1}"#)
        );
    }

    #[test]
    fn a_serialize_error_is_serde_jsons() {
        let value = (1, Refuses);
        assert_eq!(ours(&value).expect_err("refused"), "no, not this one");
        assert_eq!(ours(&value), serde_jsons(&value));
    }
}
