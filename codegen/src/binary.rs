//! A compact, deterministic binary encoding of serde data, for plans on the wire.
//!
//! Every value starts with a one-byte tag, so the format describes itself (the IR's `Dim`
//! deserialises through `deserialize_any`):
//!
//! | tag | value | payload |
//! |---|---|---|
//! | 0 | unit, `None` | — |
//! | 1 | `Some` | the value |
//! | 2, 3 | `false`, `true` | — |
//! | 4 | unsigned integer | LEB128 |
//! | 5 | signed integer | zigzag LEB128 |
//! | 6 | float | 8 bytes, little-endian IEEE 754 |
//! | 7 | string | LEB128 length, UTF-8 |
//! | 8 | bytes | LEB128 length, raw |
//! | 9 | sequence, tuple, struct (fields in order) | LEB128 count, values |
//! | 10 | map | LEB128 count, key and value pairs |
//! | 11 | enum variant | LEB128 variant index, then unit (0), the newtype's value, or a sequence |
//!
//! Structs are written as their fields in declaration order, so types written this way must not
//! skip fields conditionally (`skip_serializing_if`).
//!
//! Decoding trusts nothing: a length is checked against the bytes left before anything is
//! allocated (every element takes at least one byte), nesting is limited to [`MAX_DEPTH`], an
//! integer longer than ten bytes or wider than 64 bits is refused, a sequence or map must be read
//! to its end, and every refusal is a typed [`BinaryError`] naming the byte offset.

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};

/// Errors encoding or decoding.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BinaryError {
    /// A serde error (a missing field, a type mismatch, a custom message).
    #[error("{0}")]
    Message(String),
    /// The input ended in the middle of a value.
    #[error("unexpected end of input at byte {0}")]
    Eof(usize),
    /// A byte that is not a tag where a tag was expected, or the wrong tag.
    #[error("unexpected tag {tag} at byte {at} (expected {expected})")]
    Tag { tag: u8, at: usize, expected: &'static str },
    /// A length larger than what is left of the input.
    #[error("length {len} at byte {at} exceeds the {left} bytes left")]
    Length { len: u64, at: usize, left: usize },
    /// Values nested deeper than [`MAX_DEPTH`].
    #[error("values nest deeper than {max} at byte {at}")]
    Depth { max: usize, at: usize },
    /// A LEB128 integer longer than ten bytes or wider than 64 bits.
    #[error("integer at byte {at} does not fit 64 bits")]
    Integer { at: usize },
    /// A string that is not UTF-8.
    #[error("string at byte {at} is not UTF-8")]
    Utf8 { at: usize },
    /// An enum variant index beyond `u32`.
    #[error("variant index {index} at byte {at} is too large")]
    VariantIndex { index: u64, at: usize },
    /// A sequence or map whose value was complete before its elements ran out.
    #[error("{left} unread elements in the sequence or map ending at byte {at}")]
    Elements { left: usize, at: usize },
    /// Bytes left after the value.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// A sequence or map without a length (this format needs one up front).
    #[error("sequences must have a known length")]
    UnknownLength,
}

impl ser::Error for BinaryError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        BinaryError::Message(msg.to_string())
    }
}

impl de::Error for BinaryError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        BinaryError::Message(msg.to_string())
    }
}

const UNIT: u8 = 0;
const SOME: u8 = 1;
const FALSE: u8 = 2;
const TRUE: u8 = 3;
const UINT: u8 = 4;
const SINT: u8 = 5;
const FLOAT: u8 = 6;
const STR: u8 = 7;
const BYTES: u8 = 8;
const SEQ: u8 = 9;
const MAP: u8 = 10;
const ENUM: u8 = 11;

/// The deepest values may nest (sequences, maps, enums, options). Plans nest about a dozen
/// levels; the limit bounds the decoder's recursion whatever the input says.
pub const MAX_DEPTH: usize = 128;

/// Encode a value.
pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, BinaryError> {
    let mut s = Ser { out: Vec::new() };
    value.serialize(&mut s)?;
    Ok(s.out)
}

/// Decode a value that fills all of `bytes`.
pub fn from_bytes<'de, T: de::Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, BinaryError> {
    let mut d = De { input: bytes, pos: 0, depth: 0 };
    let v = T::deserialize(&mut d)?;
    if d.pos != bytes.len() {
        return Err(BinaryError::Trailing(bytes.len() - d.pos));
    }
    Ok(v)
}

struct Ser {
    out: Vec<u8>,
}

impl Ser {
    fn uleb(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.out.push(b);
                break;
            }
            self.out.push(b | 0x80);
        }
    }
    fn tagged_uleb(&mut self, tag: u8, v: u64) {
        self.out.push(tag);
        self.uleb(v);
    }
    fn sint(&mut self, v: i64) {
        self.tagged_uleb(SINT, ((v << 1) ^ (v >> 63)) as u64);
    }
}

impl<'a> ser::Serializer for &'a mut Ser {
    type Ok = ();
    type Error = BinaryError;
    type SerializeSeq = &'a mut Ser;
    type SerializeTuple = &'a mut Ser;
    type SerializeTupleStruct = &'a mut Ser;
    type SerializeTupleVariant = &'a mut Ser;
    type SerializeMap = &'a mut Ser;
    type SerializeStruct = &'a mut Ser;
    type SerializeStructVariant = &'a mut Ser;

    fn serialize_bool(self, v: bool) -> Result<(), BinaryError> {
        self.out.push(if v { TRUE } else { FALSE });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), BinaryError> {
        self.sint(v.into());
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Result<(), BinaryError> {
        self.sint(v.into());
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<(), BinaryError> {
        self.sint(v.into());
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<(), BinaryError> {
        self.sint(v);
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), BinaryError> {
        self.tagged_uleb(UINT, v.into());
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<(), BinaryError> {
        self.tagged_uleb(UINT, v.into());
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<(), BinaryError> {
        self.tagged_uleb(UINT, v.into());
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), BinaryError> {
        self.tagged_uleb(UINT, v);
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), BinaryError> {
        self.serialize_f64(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<(), BinaryError> {
        self.out.push(FLOAT);
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), BinaryError> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), BinaryError> {
        self.tagged_uleb(STR, v.len() as u64);
        self.out.extend_from_slice(v.as_bytes());
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), BinaryError> {
        self.tagged_uleb(BYTES, v.len() as u64);
        self.out.extend_from_slice(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), BinaryError> {
        self.out.push(UNIT);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), BinaryError> {
        self.out.push(SOME);
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), BinaryError> {
        self.out.push(UNIT);
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), BinaryError> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(self, _: &'static str, index: u32, _: &'static str) -> Result<(), BinaryError> {
        self.tagged_uleb(ENUM, index.into());
        self.out.push(UNIT);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<(), BinaryError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), BinaryError> {
        self.tagged_uleb(ENUM, index.into());
        value.serialize(self)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self, BinaryError> {
        let len = len.ok_or(BinaryError::UnknownLength)?;
        self.tagged_uleb(SEQ, len as u64);
        Ok(self)
    }
    fn serialize_tuple(self, len: usize) -> Result<Self, BinaryError> {
        self.tagged_uleb(SEQ, len as u64);
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Self, BinaryError> {
        self.serialize_tuple(len)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        len: usize,
    ) -> Result<Self, BinaryError> {
        self.tagged_uleb(ENUM, index.into());
        self.serialize_tuple(len)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self, BinaryError> {
        let len = len.ok_or(BinaryError::UnknownLength)?;
        self.tagged_uleb(MAP, len as u64);
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Self, BinaryError> {
        self.serialize_tuple(len)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        len: usize,
    ) -> Result<Self, BinaryError> {
        self.tagged_uleb(ENUM, index.into());
        self.serialize_tuple(len)
    }
}

macro_rules! compound {
    ($($tr:ident :: $f:ident),*) => {$(
        impl ser::$tr for &mut Ser {
            type Ok = ();
            type Error = BinaryError;
            fn $f<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), BinaryError> {
                value.serialize(&mut **self)
            }
            fn end(self) -> Result<(), BinaryError> {
                Ok(())
            }
        }
    )*};
}
compound!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for &mut Ser {
    type Ok = ();
    type Error = BinaryError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), BinaryError> {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), BinaryError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), BinaryError> {
        Ok(())
    }
}

impl ser::SerializeStruct for &mut Ser {
    type Ok = ();
    type Error = BinaryError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &'static str, value: &T) -> Result<(), BinaryError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), BinaryError> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for &mut Ser {
    type Ok = ();
    type Error = BinaryError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &'static str, value: &T) -> Result<(), BinaryError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), BinaryError> {
        Ok(())
    }
}

struct De<'de> {
    input: &'de [u8],
    pos: usize,
    depth: usize,
}

impl<'de> De<'de> {
    fn byte(&mut self) -> Result<u8, BinaryError> {
        let b = *self.input.get(self.pos).ok_or(BinaryError::Eof(self.pos))?;
        self.pos += 1;
        Ok(b)
    }
    fn peek(&self) -> Result<u8, BinaryError> {
        self.input.get(self.pos).copied().ok_or(BinaryError::Eof(self.pos))
    }
    fn uleb(&mut self) -> Result<u64, BinaryError> {
        let at = self.pos;
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            // The tenth byte holds bit 63 only: anything more would be shifted out.
            if shift == 63 && b > 1 {
                return Err(BinaryError::Integer { at });
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(BinaryError::Integer { at })
    }
    /// A length that must fit in what is left (each element takes at least one byte).
    fn len(&mut self) -> Result<usize, BinaryError> {
        let at = self.pos;
        let len = self.uleb()?;
        let left = self.input.len() - self.pos;
        if len > left as u64 {
            return Err(BinaryError::Length { len, at, left });
        }
        Ok(len as usize)
    }
    fn take(&mut self, n: usize) -> Result<&'de [u8], BinaryError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.input.len()).ok_or(BinaryError::Eof(self.pos))?;
        let s = &self.input[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn expect(&mut self, tag: u8, expected: &'static str) -> Result<(), BinaryError> {
        let at = self.pos;
        let t = self.byte()?;
        if t != tag {
            return Err(BinaryError::Tag { tag: t, at, expected });
        }
        Ok(())
    }
    fn enter(&mut self) -> Result<(), BinaryError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(BinaryError::Depth { max: MAX_DEPTH, at: self.pos });
        }
        Ok(())
    }
    /// Hand `n` elements to a visitor, then check it read all of them: a visitor that stops
    /// early (a struct with fewer fields) would leave them to be misread as what follows.
    fn elements<V, F>(&mut self, n: usize, visit: F) -> Result<V, BinaryError>
    where
        F: FnOnce(&mut Seq<'_, 'de>) -> Result<V, BinaryError>,
    {
        self.enter()?;
        let mut seq = Seq { de: &mut *self, left: n };
        let v = visit(&mut seq)?;
        if seq.left != 0 {
            return Err(BinaryError::Elements { left: seq.left, at: self.pos });
        }
        self.depth -= 1;
        Ok(v)
    }
}

impl<'de> de::Deserializer<'de> for &mut De<'de> {
    type Error = BinaryError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BinaryError> {
        let at = self.pos;
        match self.byte()? {
            UNIT => visitor.visit_unit(),
            SOME => {
                self.enter()?;
                let v = visitor.visit_some(&mut *self);
                self.depth -= 1;
                v
            }
            FALSE => visitor.visit_bool(false),
            TRUE => visitor.visit_bool(true),
            UINT => visitor.visit_u64(self.uleb()?),
            SINT => {
                let z = self.uleb()?;
                visitor.visit_i64(((z >> 1) as i64) ^ -((z & 1) as i64))
            }
            FLOAT => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                visitor.visit_f64(f64::from_le_bytes(a))
            }
            STR => {
                let n = self.len()?;
                let start = self.pos;
                let s = std::str::from_utf8(self.take(n)?).map_err(|_| BinaryError::Utf8 { at: start })?;
                visitor.visit_borrowed_str(s)
            }
            BYTES => {
                let n = self.len()?;
                visitor.visit_borrowed_bytes(self.take(n)?)
            }
            SEQ => {
                let n = self.len()?;
                self.elements(n, |seq| visitor.visit_seq(seq))
            }
            MAP => {
                let n = self.len()?;
                self.elements(n, |map| visitor.visit_map(map))
            }
            ENUM => {
                self.enter()?;
                let v = visitor.visit_enum(Enum { de: &mut *self })?;
                self.depth -= 1;
                Ok(v)
            }
            tag => Err(BinaryError::Tag { tag, at, expected: "a value" }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BinaryError> {
        match self.peek()? {
            UNIT => {
                self.pos += 1;
                visitor.visit_none()
            }
            SOME => {
                self.pos += 1;
                self.enter()?;
                let v = visitor.visit_some(&mut *self);
                self.depth -= 1;
                v
            }
            tag => Err(BinaryError::Tag { tag, at: self.pos, expected: "an option" }),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, BinaryError> {
        self.expect(ENUM, "an enum")?;
        self.enter()?;
        let v = visitor.visit_enum(Enum { de: &mut *self })?;
        self.depth -= 1;
        Ok(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, BinaryError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 u8 u16 u32 u64 f32 f64 char str string bytes byte_buf unit unit_struct
        seq tuple tuple_struct map struct identifier ignored_any
    }
}

struct Seq<'a, 'de> {
    de: &'a mut De<'de>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Seq<'_, 'de> {
    type Error = BinaryError;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, BinaryError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

impl<'de> de::MapAccess<'de> for Seq<'_, 'de> {
    type Error = BinaryError;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, BinaryError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, BinaryError> {
        seed.deserialize(&mut *self.de)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

struct Enum<'a, 'de> {
    de: &'a mut De<'de>,
}

impl<'de, 'a> de::EnumAccess<'de> for Enum<'a, 'de> {
    type Error = BinaryError;
    type Variant = Self;
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), BinaryError> {
        let at = self.de.pos;
        let index = self.de.uleb()?;
        let index = u32::try_from(index).map_err(|_| BinaryError::VariantIndex { index, at })?;
        let v = seed.deserialize(IntoDeserializer::<BinaryError>::into_deserializer(index))?;
        Ok((v, self))
    }
}

impl<'de> de::VariantAccess<'de> for Enum<'_, 'de> {
    type Error = BinaryError;
    fn unit_variant(self) -> Result<(), BinaryError> {
        self.de.expect(UNIT, "a unit variant")
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, BinaryError> {
        seed.deserialize(&mut *self.de)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, BinaryError> {
        de::Deserializer::deserialize_any(&mut *self.de, visitor)
    }
    fn struct_variant<V: Visitor<'de>>(self, _: &'static [&'static str], visitor: V) -> Result<V::Value, BinaryError> {
        de::Deserializer::deserialize_any(&mut *self.de, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};
    use std::collections::BTreeMap;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum E {
        A,
        B(i64),
        C { x: String, y: Option<u32> },
        D(u8, f64),
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct S {
        name: String,
        es: Vec<E>,
        map: BTreeMap<u32, bool>,
        dim: genie_ir::Dim,
        opt: Option<Box<S>>,
        unit: (),
    }

    #[test]
    fn round_trips() {
        let s = S {
            name: "plan".into(),
            es: vec![
                E::A,
                E::B(-5),
                E::C { x: "é".into(), y: Some(300) },
                E::C { x: String::new(), y: None },
                E::D(7, 1.5),
            ],
            map: [(1, true), (99999, false)].into_iter().collect(),
            dim: genie_ir::Dim::parse("2*s0 + 1").unwrap(),
            opt: Some(Box::new(S {
                name: "inner".into(),
                es: vec![],
                map: BTreeMap::new(),
                dim: genie_ir::Dim::constant(-3),
                opt: None,
                unit: (),
            })),
            unit: (),
        };
        let bytes = to_bytes(&s).unwrap();
        assert_eq!(from_bytes::<S>(&bytes).unwrap(), s);
        assert_eq!(to_bytes(&s).unwrap(), bytes, "deterministic");
        for i in 0..bytes.len() {
            assert!(from_bytes::<S>(&bytes[..i]).is_err(), "truncated at {i} must fail");
        }
    }

    #[test]
    fn hostile_lengths_are_refused_before_allocation() {
        // A sequence claiming 2^60 elements.
        let mut bytes = vec![SEQ];
        let mut v: u64 = 1 << 60;
        while v >= 0x80 {
            bytes.push((v as u8) | 0x80);
            v >>= 7;
        }
        bytes.push(v as u8);
        assert!(matches!(from_bytes::<Vec<u8>>(&bytes), Err(BinaryError::Length { .. })));
        let deep = vec![SOME; 10_000];
        assert!(from_bytes::<Option<Option<u8>>>(&deep).is_err());
    }

    /// Nesting is refused where it crosses the limit, whatever type is being read.
    #[test]
    fn deep_nesting_is_refused_with_its_offset() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Nest(Vec<Nest>);
        let mut bytes = vec![];
        for _ in 0..10_000 {
            bytes.extend([SEQ, 1]);
        }
        let err = from_bytes::<Nest>(&bytes).unwrap_err();
        assert_eq!(err, BinaryError::Depth { max: MAX_DEPTH, at: 2 * MAX_DEPTH + 2 });
        // A dim is an integer or a string: nested sequences in its place are refused at once.
        let err = from_bytes::<genie_ir::Dim>(&bytes).unwrap_err();
        assert!(matches!(err, BinaryError::Message(ref m) if m.contains("an integer or a dim expression")), "{err}");
    }

    /// A dim's text goes through `Dim::parse` and its limits.
    #[test]
    fn hostile_dim_text_is_refused() {
        let text = format!("{}s0{}", "(".repeat(1000), ")".repeat(1000));
        let bytes = to_bytes(&text).unwrap();
        let err = from_bytes::<genie_ir::Dim>(&bytes).unwrap_err();
        assert!(err.to_string().contains("nests deeper than 64 levels at byte 64"), "{err}");
        let text = format!("s0{}", "//s1".repeat(25_000));
        let err = from_bytes::<genie_ir::Dim>(&to_bytes(&text).unwrap()).unwrap_err();
        assert!(err.to_string().contains("exceeds the 4096-byte limit"), "{err}");
    }

    #[test]
    fn malformed_scalars_are_typed_errors() {
        // Ten bytes whose last carries more than bit 63; eleven bytes.
        let mut wide = vec![UINT];
        wide.extend([0xff; 9]);
        wide.push(0x02);
        assert_eq!(from_bytes::<u64>(&wide), Err(BinaryError::Integer { at: 1 }));
        let mut long = vec![UINT];
        long.extend([0x80; 10]);
        long.push(0);
        assert_eq!(from_bytes::<u64>(&long), Err(BinaryError::Integer { at: 1 }));
        let mut max = vec![UINT];
        max.extend([0xff; 9]);
        max.push(0x01);
        assert_eq!(from_bytes::<u64>(&max), Ok(u64::MAX));
        assert_eq!(from_bytes::<String>(&[STR, 2, 0xc3, 0x28]), Err(BinaryError::Utf8 { at: 2 }));
        let mut variant = vec![ENUM];
        variant.extend([0xff, 0xff, 0xff, 0xff, 0x10]);
        variant.push(UNIT);
        assert_eq!(from_bytes::<E>(&variant), Err(BinaryError::VariantIndex { index: 1 << 32 | 0x0fff_ffff, at: 1 }));
    }

    /// A struct's fields are a sequence of exactly that many values; extra ones are refused
    /// rather than left to be read as whatever follows.
    #[test]
    fn sequences_must_be_read_to_their_end() {
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        struct Two(u8, u8);
        assert_eq!(from_bytes::<Two>(&to_bytes(&Two(1, 2)).unwrap()), Ok(Two(1, 2)));
        let three = to_bytes(&(1u8, 2u8, 3u8)).unwrap();
        assert_eq!(from_bytes::<Two>(&three), Err(BinaryError::Elements { left: 1, at: 6 }));
    }
}
