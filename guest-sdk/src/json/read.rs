//! The reader: serde_json's values for the usual shapes of a record, strings scanned
//! eight bytes at a time; anything else, and every error, read again by serde_json.
//!
//! Reading again is what keeps it exact. This reader must never accept text serde_json
//! refuses, nor read a value differently; where it is unsure it stops ([`Fallback`]):
//! - a `\u` escape (surrogates have rules of their own),
//! - a number other than an integer of up to 19 digits or a decimal whose digits fit
//!   2^53 with a power of ten up to 22 (those are exact in `f64`: serde_json computes
//!   them the same way; the rest it rounds its own way),
//! - an `f32` from a fraction (serde_json's `float_roundtrip` rounds it once, to `f32`),
//! - enums, byte strings, 128-bit integers, map keys that are not strings, structs
//!   from arrays, serde_json's private types.
//!
//! Every refusal is remembered for the whole read, so a type that swallows an error (a
//! default on error) cannot turn one into a value. Each `deserialize_*` takes only the
//! tokens serde_json's would (a number type numbers, a string type strings).

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::scan::{first_escape, first_escape_or_non_ascii};

/// `bytes` as a `T`, when this reader reads them alone: the same value as
/// `serde_json::from_slice` would give. [`Fallback`] means serde_json must read them
/// (and word the error, if there is one). UTF-8 is checked as strings are scanned:
/// outside strings JSON is ASCII, and a string of ASCII bytes needs no further check.
pub(crate) fn read<'a, T: de::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T> {
    let mut reader = Reader {
        bytes,
        at: 0,
        depth: 0,
        scratch: String::new(),
    };
    // A read inside a read (a `Deserialize` that reads JSON held in a string) keeps the
    // outer one's refusals.
    let outer = FELL_BACK.replace(false);
    let value = T::deserialize(&mut reader).and_then(|value| reader.end().map(|()| value));
    let fell_back = FELL_BACK.replace(outer);
    match (value, fell_back) {
        (Ok(value), false) => Ok(value),
        _ => Err(Fallback(())),
    }
}

/// `text` as a `T`: the same value, or the same error, as `serde_json::from_str`.
#[cfg(test)]
pub(crate) fn from_str<'a, T: de::Deserialize<'a>>(text: &'a str) -> serde_json::Result<T> {
    read(text.as_bytes()).or_else(|_| serde_json::from_str(text))
}

/// Something this reader does not read, or an error: serde_json reads the text again.
/// Made only by [`fallback`], which remembers it: a `Deserialize` impl that swallows an
/// error (a default on error) must not turn this reader's refusal into a value.
#[derive(Debug)]
pub(crate) struct Fallback(());

thread_local! {
    /// Whether the read under way has made a [`Fallback`], swallowed or not.
    static FELL_BACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn fallback() -> Fallback {
    FELL_BACK.set(true);
    Fallback(())
}

impl std::fmt::Display for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("left to serde_json")
    }
}

impl std::error::Error for Fallback {}

impl de::Error for Fallback {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        fallback()
    }
}

type Result<T> = std::result::Result<T, Fallback>;

/// serde_json's nesting limit: deeper text is its error to report.
const MAX_DEPTH: u32 = 128;

/// 10^0 ..= 10^19.
const POW10_U64: [u64; 20] = {
    let mut powers = [1u64; 20];
    let mut i = 1;
    while i < 20 {
        powers[i] = powers[i - 1] * 10;
        i += 1;
    }
    powers
};

/// 10^0 ..= 10^22, every one exact in `f64`.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Whether serde_json was built with `arbitrary_precision` (a feature any crate of the
/// plugin can turn on): its `Value` then keeps `1.50` as written.
fn arbitrary_precision() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        let value = serde_json::from_str::<serde_json::Value>("1.50");
        value
            .and_then(|v| serde_json::to_string(&v))
            .ok()
            .as_deref()
            == Some("1.50")
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    depth: u32,
    /// A string with escapes, unescaped.
    scratch: String,
}

/// Whether a value starting with `byte` is a number.
fn is_number(byte: u8) -> bool {
    matches!(byte, b'-' | b'0'..=b'9')
}

/// A number as JSON wrote it, when this reader reads it exactly.
enum Number {
    U64(u64),
    I64(i64),
    F64(f64),
}

impl<'a> Reader<'a> {
    /// The next byte that is not JSON whitespace, not taken. Records are mostly compact
    /// JSON: the byte at hand is checked before any loop (inside the sandbox a loop is
    /// an epoch check even when it runs no iteration).
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        match self.bytes.get(self.at) {
            Some(&byte) if !matches!(byte, b' ' | b'\n' | b'\t' | b'\r') => Some(byte),
            _ => self.peek_past_whitespace(),
        }
    }

    #[inline(never)]
    fn peek_past_whitespace(&mut self) -> Option<u8> {
        while let Some(&byte) = self.bytes.get(self.at) {
            match byte {
                b' ' | b'\n' | b'\t' | b'\r' => self.at += 1,
                _ => return Some(byte),
            }
        }
        None
    }

    #[inline]
    fn eat(&mut self, byte: u8) -> Result<()> {
        match self.peek() {
            Some(found) if found == byte => {
                self.at += 1;
                Ok(())
            }
            _ => Err(fallback()),
        }
    }

    /// The rest of a literal (`null`, `true`, `false`) whose first byte was peeked.
    fn literal(&mut self, word: &[u8]) -> Result<()> {
        match self.bytes.get(self.at..self.at + word.len()) {
            Some(found) if found == word => {
                self.at += word.len();
                Ok(())
            }
            _ => Err(fallback()),
        }
    }

    fn end(&mut self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(fallback()),
        }
    }

    /// A string whose opening quote was peeked: `Some` borrowed from the text when it has
    /// no escapes, else `None` and unescaped into `scratch`.
    #[inline(always)]
    fn string(&mut self) -> Result<Option<&'a str>> {
        self.at += 1;
        let start = self.at;
        let rest = self.bytes.get(start..).ok_or_else(fallback)?;
        let at = start + first_escape_or_non_ascii(rest).ok_or_else(fallback)?;
        if self.bytes[at] == b'"' {
            self.at = at + 1;
            let ascii = self.bytes.get(start..at).ok_or_else(fallback)?;
            // SAFETY: the scan stopped at the first byte above 0x7f or escaped; every
            // byte before the quote is ASCII, and ASCII is UTF-8.
            return Ok(Some(unsafe { std::str::from_utf8_unchecked(ascii) }));
        }
        if self.bytes[at] > 0x7f {
            // Text beyond ASCII: checked, and borrowed if it has no escape.
            let end = start + first_escape(rest).ok_or_else(fallback)?;
            if self.bytes[end] == b'"' {
                self.at = end + 1;
                return self.text(start, end).map(Some);
            }
        }
        self.escaped_string(start).map(|()| None)
    }

    /// `bytes[start..end]`, checked to be UTF-8.
    fn text(&self, start: usize, end: usize) -> Result<&'a str> {
        std::str::from_utf8(self.bytes.get(start..end).ok_or_else(fallback)?)
            .map_err(|_| fallback())
    }

    #[inline(never)]
    fn escaped_string(&mut self, start: usize) -> Result<()> {
        self.scratch.clear();
        let mut run = start;
        loop {
            let rest = self.bytes.get(run..).ok_or_else(fallback)?;
            let at = run + first_escape(rest).ok_or_else(fallback)?;
            let text = self.text(run, at)?;
            self.scratch.push_str(text);
            let unescaped = match (self.bytes[at], self.bytes.get(at + 1)) {
                (b'"', _) => {
                    self.at = at + 1;
                    return Ok(());
                }
                (b'\\', Some(b'"')) => '"',
                (b'\\', Some(b'\\')) => '\\',
                (b'\\', Some(b'/')) => '/',
                (b'\\', Some(b'b')) => '\x08',
                (b'\\', Some(b'f')) => '\x0c',
                (b'\\', Some(b'n')) => '\n',
                (b'\\', Some(b'r')) => '\r',
                (b'\\', Some(b't')) => '\t',
                // `\u` escapes, a bad escape, a control byte: serde_json's to read.
                _ => return Err(fallback()),
            };
            self.scratch.push(unescaped);
            run = at + 2;
        }
    }

    /// A number whose first byte (`-` or a digit) was peeked, when it is exact here.
    #[inline]
    fn number(&mut self) -> Result<Number> {
        let negative = self.bytes.get(self.at) == Some(&b'-');
        self.at += usize::from(negative);
        let (mut mantissa, digits) = self.digits();
        // JSON has no leading zeros, and at least one digit.
        if digits == 0 || digits > 19 || (digits > 1 && self.bytes[self.at - digits] == b'0') {
            return Err(fallback());
        }
        let mut exponent = 0i32;
        let mut float = false;
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            let (fraction, fraction_digits) = self.digits();
            // At most 19 digits in all, so the mantissa cannot overflow (and no 128-bit
            // multiply checks it: on wasm32 that is a call).
            if fraction_digits == 0 || digits + fraction_digits > 19 {
                return Err(fallback());
            }
            mantissa = mantissa * POW10_U64[fraction_digits] + fraction;
            exponent = -(i32::try_from(fraction_digits).map_err(|_| fallback())?);
            float = true;
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.at) {
            self.at += 1;
            let sign = match self.bytes.get(self.at) {
                Some(b'-') => -1,
                Some(b'+') => 1,
                _ => 0,
            };
            self.at += usize::from(sign != 0);
            let (value, digits) = self.digits();
            if digits == 0 || digits > 3 {
                return Err(fallback());
            }
            exponent +=
                if sign < 0 { -1 } else { 1 } * i32::try_from(value).map_err(|_| fallback())?;
            float = true;
        }
        if !float {
            return match (negative, mantissa) {
                (false, m) => Ok(Number::U64(m)),
                // serde_json reads `-0` as the float -0.0.
                (true, 0) => Ok(Number::F64(-0.0)),
                (true, m) => Ok(Number::I64(
                    0i64.checked_sub_unsigned(m).ok_or_else(fallback)?,
                )),
            };
        }
        // Exact: a mantissa of at most 53 bits times or over an exact power of ten, one
        // rounding, as serde_json does for these.
        let power = *POW10
            .get(exponent.unsigned_abs() as usize)
            .ok_or_else(fallback)?;
        if mantissa > 1 << 53 {
            return Err(fallback());
        }
        let magnitude = if exponent >= 0 {
            mantissa as f64 * power
        } else {
            mantissa as f64 / power
        };
        Ok(Number::F64(if negative { -magnitude } else { magnitude }))
    }

    #[inline]
    fn digit(&mut self) -> Option<u64> {
        match self.bytes.get(self.at) {
            Some(&byte @ b'0'..=b'9') => {
                self.at += 1;
                Some(u64::from(byte - b'0'))
            }
            _ => None,
        }
    }

    /// Up to 19 digits as a number (more are counted, not added), and how many there were.
    #[inline]
    fn digits(&mut self) -> (u64, usize) {
        let (mut value, start) = (0u64, self.at);
        while let Some(digit) = self.digit() {
            if self.at - start <= 19 {
                value = value * 10 + digit;
            }
        }
        (value, self.at - start)
    }

    /// Each `deserialize_*` takes only the tokens serde_json's would: the next value must
    /// start with a byte `wanted` accepts (a number type a number, a string type a
    /// string); anything else is serde_json's to read, or to refuse in its words.
    #[inline]
    fn starts(&mut self, wanted: impl Fn(u8) -> bool) -> Result<()> {
        match self.peek() {
            Some(byte) if wanted(byte) => Ok(()),
            _ => Err(fallback()),
        }
    }

    /// Past the comma before an array's or an object's next item; `false` at its `close`.
    #[inline]
    fn next_item(&mut self, first: &mut bool, close: u8) -> Result<bool> {
        match self.peek() {
            Some(byte) if byte == close => return Ok(false),
            Some(b',') if !*first => self.at += 1,
            _ if *first => {}
            _ => return Err(fallback()),
        }
        *first = false;
        Ok(true)
    }

    fn nested<T>(&mut self, read: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        // serde_json counts down from 128 and fails on reaching 0: 127 levels.
        if self.depth + 1 >= MAX_DEPTH {
            return Err(fallback());
        }
        self.depth += 1;
        self.at += 1; // past the opening bracket
        let value = read(self);
        self.depth -= 1;
        value
    }

    fn visit_number<V: Visitor<'a>>(&mut self, visitor: V) -> Result<V::Value> {
        match self.number()? {
            Number::U64(n) => visitor.visit_u64(n),
            Number::I64(n) => visitor.visit_i64(n),
            Number::F64(n) => visitor.visit_f64(n),
        }
    }

    fn visit_string<V: Visitor<'a>>(&mut self, visitor: V) -> Result<V::Value> {
        match self.string()? {
            Some(text) => visitor.visit_borrowed_str(text),
            None => visitor.visit_str(&self.scratch),
        }
    }

    fn visit_array<V: Visitor<'a>>(&mut self, visitor: V) -> Result<V::Value> {
        self.nested(|reader| {
            let value = visitor.visit_seq(Elements {
                reader: &mut *reader,
                first: true,
            })?;
            reader.eat(b']')?;
            Ok(value)
        })
    }

    fn visit_object<V: Visitor<'a>>(&mut self, visitor: V) -> Result<V::Value> {
        self.nested(|reader| {
            let value = visitor.visit_map(Entries {
                reader: &mut *reader,
                first: true,
            })?;
            reader.eat(b'}')?;
            Ok(value)
        })
    }
}

/// Methods this reader leaves to serde_json.
macro_rules! refuse {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
            Err(fallback())
        }
    )*};
}

/// Methods that read as another does (serde_json's choices), dropping the extra arguments.
macro_rules! forward {
    ($($to:ident: $($method:ident $(($($arg:ty),*))?)*;)*) => {$($(
        fn $method<V: Visitor<'de>>(self, $($(_: $arg,)*)? visitor: V) -> Result<V::Value> {
            self.$to(visitor)
        }
    )*)*};
}

impl<'de> Deserializer<'de> for &mut Reader<'de> {
    type Error = Fallback;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.peek().ok_or_else(fallback)? {
            b'n' => {
                self.literal(b"null")?;
                visitor.visit_unit()
            }
            b't' => {
                self.literal(b"true")?;
                visitor.visit_bool(true)
            }
            b'f' => {
                self.literal(b"false")?;
                visitor.visit_bool(false)
            }
            // A number of unknown type is serde_json's to hand over when a crate turns on
            // its `arbitrary_precision` (it then keeps the digits as written).
            byte if is_number(byte) && arbitrary_precision() => Err(fallback()),
            byte if is_number(byte) => self.visit_number(visitor),
            b'"' => self.visit_string(visitor),
            b'[' => self.visit_array(visitor),
            b'{' => self.visit_object(visitor),
            _ => Err(fallback()),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.starts(|byte| matches!(byte, b't' | b'f'))?;
        self.deserialize_any(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.starts(is_number)?;
        self.visit_number(visitor)
    }

    /// Every number type reads numbers only, as serde_json's do. An `f32` from a
    /// fraction is serde_json's: with its `float_roundtrip` it rounds once, to `f32`.
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.starts(is_number)?;
        match self.number()? {
            Number::U64(n) => visitor.visit_u64(n),
            Number::I64(n) => visitor.visit_i64(n),
            Number::F64(_) => Err(fallback()),
        }
    }

    forward! {
        deserialize_f64: deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
            deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64;
        deserialize_str: deserialize_char deserialize_string deserialize_identifier;
        deserialize_unit: deserialize_unit_struct(&'static str);
        deserialize_seq: deserialize_tuple(usize) deserialize_tuple_struct(&'static str, usize);
        deserialize_any: deserialize_ignored_any;
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.starts(|byte| byte == b'"')?;
        self.visit_string(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.peek() {
            Some(b'n') => {
                self.literal(b"null")?;
                visitor.visit_none()
            }
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.starts(|byte| byte == b'n')?;
        self.deserialize_any(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        if name.starts_with("$serde_json::private::") {
            return Err(fallback());
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.starts(|byte| byte == b'[')?;
        self.visit_array(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.starts(|byte| byte == b'{')?;
        self.visit_object(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value> {
        Err(fallback())
    }

    refuse! { deserialize_bytes deserialize_byte_buf deserialize_i128 deserialize_u128 }
}

/// An array's elements.
struct Elements<'r, 'a> {
    reader: &'r mut Reader<'a>,
    first: bool,
}

impl<'de> SeqAccess<'de> for Elements<'_, 'de> {
    type Error = Fallback;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        // (`[1,]` fails as the value after the comma.)
        match self.reader.next_item(&mut self.first, b']')? {
            true => seed.deserialize(&mut *self.reader).map(Some),
            false => Ok(None),
        }
    }
}

/// An object's entries.
struct Entries<'r, 'a> {
    reader: &'r mut Reader<'a>,
    first: bool,
}

impl<'de> MapAccess<'de> for Entries<'_, 'de> {
    type Error = Fallback;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if !self.reader.next_item(&mut self.first, b'}')? {
            return Ok(None);
        }
        match self.reader.peek() {
            Some(b'"') => seed.deserialize(Key(&mut *self.reader)).map(Some),
            _ => Err(fallback()),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        self.reader.eat(b':')?;
        seed.deserialize(&mut *self.reader)
    }
}

/// An object's key: always a string in JSON. A key type that wants a number, a bool or
/// anything else from it refuses the string, and serde_json reads the text again.
struct Key<'r, 'a>(&'r mut Reader<'a>);

impl<'de> Deserializer<'de> for Key<'_, 'de> {
    type Error = Fallback;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.0.visit_string(visitor)
    }

    // serde_json parses numbers and bools out of a key, and gives options, newtypes and
    // enums their own visits: its to read.
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _visitor: V,
    ) -> Result<V::Value> {
        Err(fallback())
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value> {
        Err(fallback())
    }

    refuse! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_option deserialize_bytes
        deserialize_byte_buf
    }

    // As serde_json's keys do: the key's string, for the visitor to take or refuse.
    serde::forward_to_deserialize_any! {
        char str string unit unit_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde::Deserialize;
    use serde_json::Value;

    use super::super::strategies::value;
    use super::*;

    /// This reader's answer, and whether it got there alone (no serde_json).
    fn ours<'a, T: de::Deserialize<'a>>(text: &'a str) -> (serde_json::Result<T>, bool) {
        (from_str(text), read::<T>(text.as_bytes()).is_ok())
    }

    fn same<'a, T>(text: &'a str) -> bool
    where
        T: de::Deserialize<'a> + PartialEq + std::fmt::Debug,
    {
        let (answer, alone) = ours::<T>(text);
        let theirs = serde_json::from_str::<T>(text);
        match (&answer, &theirs) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{text:?}"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{text:?}"),
            _ => panic!("{text:?}: ours {answer:?}, serde_json {theirs:?}"),
        }
        alone
    }

    /// Edits that make text almost JSON: a byte dropped, doubled or replaced.
    fn mutated() -> impl Strategy<Value = Vec<u8>> {
        let edit = (
            any::<prop::sample::Index>(),
            0..3u8,
            prop::sample::select(b"{}[]:,\"\\ -+.eE0159tfnulx\t\x01".to_vec()),
        );
        (value(), proptest::collection::vec(edit, 1..4)).prop_map(|(v, edits)| {
            let mut bytes = v.to_string().into_bytes();
            for (at, kind, byte) in edits {
                if bytes.is_empty() {
                    break;
                }
                let at = at.index(bytes.len());
                match kind {
                    0 => drop(bytes.remove(at)),
                    1 => bytes.insert(at, bytes[at]),
                    _ => bytes[at] = byte,
                }
            }
            bytes
        })
    }

    /// Bytes that are not UTF-8 in a string, or outside one.
    fn not_utf8() -> impl Strategy<Value = Vec<u8>> {
        (value(), any::<prop::sample::Index>(), 0x80u8..=0xff).prop_map(|(v, at, byte)| {
            let mut bytes = v.to_string().into_bytes();
            bytes.insert(at.index(bytes.len() + 1), byte);
            bytes
        })
    }

    /// Whatever this reader reads alone from `bytes` is what serde_json reads.
    fn alone_is_serde_jsons(bytes: &[u8]) {
        if let Ok(value) = read::<Value>(bytes) {
            assert!(std::str::from_utf8(bytes).is_ok(), "{bytes:?} is not UTF-8");
            let theirs = serde_json::from_slice::<Value>(bytes).ok();
            assert_eq!(Some(value), theirs, "{bytes:?}");
        }
    }

    proptest! {
        #[test]
        fn any_json_text_reads_as_serde_json_reads_it(v in value()) {
            same::<Value>(&v.to_string());
            same::<Value>(&serde_json::to_string_pretty(&v).expect("text"));
        }

        #[test]
        fn almost_json_reads_as_serde_json_reads_it(bytes in mutated()) {
            alone_is_serde_jsons(&bytes);
            if let Ok(text) = std::str::from_utf8(&bytes) {
                same::<Value>(text);
            }
        }

        #[test]
        fn bytes_that_are_not_utf8_are_left_to_serde_json(bytes in not_utf8()) {
            alone_is_serde_jsons(&bytes);
        }
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Event<'a> {
        #[serde(borrow)]
        id: Cow<'a, str>,
        user: &'a str,
        amount: f64,
        count: Option<u32>,
        tags: Vec<String>,
        inner: Inner,
        #[serde(default)]
        flag: bool,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Inner {
        level: i8,
        ratio: f64,
    }

    #[test]
    fn a_record_reads_alone_and_borrows_what_has_no_escape() {
        let text = r#"{"id":"e\"1","user":"ann","amount":12.345,"count":null,"extra":{"x":[1,-2.5e3,"y",true,null]},
            "tags":["a","b\nc"],"inner":{"level":-3,"ratio":0.5},"flag":true}"#;
        assert!(same::<Event>(text), "read without serde_json");
        let (event, _) = ours::<Event>(text);
        let event = event.expect("an event");
        assert!(matches!(event.id, Cow::Owned(ref id) if id == "e\"1"));
        assert_eq!(event.user, "ann");
        // Numbers on the exact path.
        for number in [
            "0",
            "-1",
            "12.345",
            "1e22",
            "-9007199254740992",
            "4.5E-3",
            "1.50",
        ] {
            assert!(same::<f64>(number), "{number}");
            assert!(same::<Value>(number), "{number}");
        }
        assert!(same::<u64>("9999999999999999999"), "19 digits");
        assert!(
            !same::<u64>("18446744073709551615"),
            "20 digits: serde_json's"
        );
    }

    #[test]
    fn what_it_leaves_alone_serde_json_reads() {
        for text in [
            r#""\u00e9""#,           // a \u escape
            "12345678901234567890",  // 20 digits
            "1e23",                  // past the exact powers
            "0.1234567890123456789", // a mantissa past 2^53
            "9007199254740993.0",    // 2^53 + 1
            "1e400",                 // out of range: serde_json's error
        ] {
            assert!(!same::<Value>(text), "{text}");
            assert!(!same::<f64>(text), "{text}");
        }
        assert!(
            same::<Value>("-0") && same::<f64>("-0"),
            "-0 is -0.0, read alone"
        );
        // An f32 from a fraction: serde_json's (with `float_roundtrip` it rounds once).
        assert!(!same::<f32>("8.000000476837159"));
        assert!(same::<f32>("8"));
        #[derive(Deserialize, Debug, PartialEq)]
        enum Kind {
            A,
            B(u8),
        }
        assert!(
            !same::<Vec<Kind>>(r#"["A",{"B":1}]"#),
            "enums are serde_json's"
        );
        assert!(
            !same::<BTreeMap<u32, u8>>(r#"{"1":2}"#),
            "number keys are serde_json's"
        );
        // serde_json reads 127 levels and refuses 128.
        let deep = |n| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(same::<Value>(&deep(127)), "127 levels, alone");
        assert!(
            !same::<Value>(&deep(128)),
            "past serde_json's depth limit: its error"
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_never_read() {
        let cases: [&[u8]; 6] = [
            b"\"a\xffb\"",
            b"[\"\xc3\"]",
            b"{\"k\xe9\":1}",
            b"\xef\xbb\xbf1",
            b"\"\xed\xa0\x80\"",
            b"{\"skipped\":\"\\n\xff\"}",
        ];
        for bytes in cases {
            assert!(read::<Value>(bytes).is_err(), "{bytes:?}");
            assert!(read::<de::IgnoredAny>(bytes).is_err(), "{bytes:?}");
        }
        assert_eq!(read::<&str>("\"é\"".as_bytes()).ok(), Some("é"), "borrowed");
    }

    /// A field that swallows its errors (a default on error).
    fn lenient<'de, D: Deserializer<'de>, T: de::Deserialize<'de>>(
        d: D,
    ) -> std::result::Result<Option<T>, D::Error> {
        Ok(T::deserialize(d).ok())
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Lenient {
        #[serde(deserialize_with = "lenient")]
        x: Option<f64>,
        #[serde(deserialize_with = "lenient", default)]
        s: Option<String>,
    }

    #[test]
    fn a_refusal_swallowed_by_the_type_is_still_serde_jsons_to_read() {
        assert!(
            !same::<Lenient>(r#"{"x":1e23}"#),
            "read by serde_json: Some(1e23)"
        );
        assert!(!same::<Lenient>(r#"{"x":12345678901234567890}"#));
        assert!(same::<Lenient>(r#"{"x":1.5,"s":"a"}"#));
        assert!(
            read::<Lenient>(b"{\"x\":1,\"s\":\"\xff\"}").is_err(),
            "not UTF-8"
        );
    }

    /// JSON held in a string, read by this reader inside the outer read.
    #[derive(Debug, PartialEq)]
    struct Embedded(Value);

    impl<'de> de::Deserialize<'de> for Embedded {
        fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            let text = String::deserialize(d)?;
            from_str(&text).map(Embedded).map_err(de::Error::custom)
        }
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Outer {
        #[serde(deserialize_with = "lenient")]
        x: Option<f64>,
        inner: Embedded,
    }

    #[test]
    fn a_read_inside_a_read_keeps_the_outer_refusal() {
        assert!(!same::<Outer>(r#"{"x":1e23,"inner":"[1]"}"#));
        assert!(same::<Outer>(r#"{"x":1.5,"inner":"[1]"}"#));
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(field_identifier)]
    enum Field {
        A,
        B,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Holder {
        f: Field,
    }

    /// Takes a number or a string, asking for a `u64` (serde_json gives it numbers only).
    #[derive(Debug, PartialEq)]
    struct NumberOrText(String);

    impl<'de> de::Deserialize<'de> for NumberOrText {
        fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            struct Both;
            impl Visitor<'_> for Both {
                type Value = NumberOrText;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a number or a string")
                }
                fn visit_u64<E>(self, n: u64) -> std::result::Result<NumberOrText, E> {
                    Ok(NumberOrText(n.to_string()))
                }
                fn visit_str<E>(self, s: &str) -> std::result::Result<NumberOrText, E> {
                    Ok(NumberOrText(s.to_owned()))
                }
            }
            d.deserialize_u64(Both)
        }
    }

    #[test]
    fn each_type_reads_only_what_serde_json_gives_it() {
        assert!(same::<Holder>(r#"{"f":"B"}"#));
        assert!(!same::<Holder>(r#"{"f":0}"#), "an identifier from a number");
        assert!(same::<NumberOrText>("5"));
        assert!(!same::<NumberOrText>(r#""5""#), "a u64 from a string");
        assert!(!same::<(u8,)>(r#"{"0":1}"#), "a tuple from an object");
    }

    #[test]
    fn errors_are_serde_jsons_word_for_word() {
        for text in [
            "",
            " ",
            "{",
            "[1,]",
            r#"{"a":1,}"#,
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "+1",
            "nul",
            "[1 2]",
            r#"{"a" 1}"#,
            r#"{1:2}"#,
            "\"a\u{1}b\"",
            r#""\x""#,
            "[] x",
            "tru",
        ] {
            assert!(!same::<Value>(text), "{text:?} is not JSON");
        }
        // A value of the wrong type for its field, a missing field, a duplicate one.
        assert!(!same::<Inner>(r#"{"level":"x","ratio":1}"#));
        assert!(!same::<Inner>(r#"{"level":1}"#));
        assert!(!same::<Inner>(r#"{"level":1,"level":2,"ratio":1}"#));
        assert!(!same::<Inner>(r#"{"level":300,"ratio":1}"#));
    }
}
