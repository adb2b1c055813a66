//! [`Data`]: what a user operator's records may be, and how a value becomes a [`Record`] and
//! back.
//!
//! A value that serializes as a string travels as [`Record::Text`] (what the `text-files`
//! source emits and the `files` sink writes as is), one that serializes as an integer as
//! [`Record::Int`] (what the `sequence` source emits and `key-by: { modulus }`, `map`, `filter`
//! compute on), anything else as [`Record::Data`], its postcard bytes. Reading goes the same
//! way, so `String` in, `String` out needs no conversion code, and two user operators agree on
//! any type without the runtime knowing it. serde decides, not `TypeId`: a newtype around a
//! `String` is text too.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde::de::value::Error as ValueError;
use serde::ser::{self, Impossible};

use crate::job::record::Record;

/// What a user operator's input and output values are: serde (their wire form), owned and
/// `Send` (they cross threads and processes). Every such type is `Data`.
pub trait Data: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> Data for T {}

/// The record `value` travels as (see the module docs).
pub(crate) fn to_record<T: Serialize + ?Sized>(value: &T) -> Result<Record, String> {
    match value.serialize(Scalar) {
        Ok(record) => Ok(record),
        Err(_) => postcard::to_stdvec(value)
            .map(Record::Data)
            .map_err(|e| format!("cannot serialize a {}: {e}", std::any::type_name::<T>())),
    }
}

/// The value of type `T` that `record` holds; the error says what it was instead.
pub(crate) fn from_record<T: DeserializeOwned>(record: Record) -> Result<T, String> {
    let (what, result) = match record {
        Record::Text(t) => (
            "a text record",
            T::deserialize(ScalarDe::Text(t)).map_err(|e| e.to_string()),
        ),
        Record::Int(n) => (
            "a number record",
            T::deserialize(ScalarDe::Int(n)).map_err(|e| e.to_string()),
        ),
        Record::Data(d) => (
            "a value record",
            postcard::from_bytes(&d).map_err(|e| e.to_string()),
        ),
    };
    result.map_err(|e| {
        format!(
            "expects {}, got {what} it cannot read as one: {e}",
            std::any::type_name::<T>()
        )
    })
}

/// A text or number record as a deserializer: the value itself, through newtypes (the mirror
/// of [`Scalar`]).
enum ScalarDe {
    Text(String),
    Int(i64),
}

impl<'de> serde::Deserializer<'de> for ScalarDe {
    type Error = ValueError;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, ValueError> {
        match self {
            ScalarDe::Text(t) => v.visit_string(t),
            ScalarDe::Int(n) => v.visit_i64(n),
        }
    }

    fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, ValueError> {
        v.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// A serializer that takes strings and integers only (through newtypes); anything else is
/// [`NotScalar`], and the value goes as postcard.
struct Scalar;

#[derive(Debug)]
struct NotScalar;

impl std::fmt::Display for NotScalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a string or integer")
    }
}

impl std::error::Error for NotScalar {}

impl ser::Error for NotScalar {
    fn custom<M: std::fmt::Display>(_: M) -> NotScalar {
        NotScalar
    }
}

type Refuse = Impossible<Record, NotScalar>;

macro_rules! ints {
    ($($f:ident: $t:ty),*) => {$(
        fn $f(self, v: $t) -> Result<Record, NotScalar> {
            i64::try_from(v).map(Record::Int).map_err(|_| NotScalar)
        }
    )*};
}

macro_rules! refuse {
    ($($f:ident: $t:ty),*) => {$(
        fn $f(self, _: $t) -> Result<Record, NotScalar> {
            Err(NotScalar)
        }
    )*};
}

impl ser::Serializer for Scalar {
    type Ok = Record;
    type Error = NotScalar;
    type SerializeSeq = Refuse;
    type SerializeTuple = Refuse;
    type SerializeTupleStruct = Refuse;
    type SerializeTupleVariant = Refuse;
    type SerializeMap = Refuse;
    type SerializeStruct = Refuse;
    type SerializeStructVariant = Refuse;

    ints!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64);
    refuse!(serialize_bool: bool, serialize_f32: f32, serialize_f64: f64, serialize_char: char,
        serialize_bytes: &[u8], serialize_unit_struct: &'static str);

    fn serialize_str(self, v: &str) -> Result<Record, NotScalar> {
        Ok(Record::Text(v.to_owned()))
    }
    fn serialize_none(self) -> Result<Record, NotScalar> {
        Err(NotScalar)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<Record, NotScalar> {
        Err(NotScalar)
    }
    fn serialize_unit(self) -> Result<Record, NotScalar> {
        Err(NotScalar)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<Record, NotScalar> {
        Err(NotScalar)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Record, NotScalar> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Record, NotScalar> {
        Err(NotScalar)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Refuse, NotScalar> {
        Err(NotScalar)
    }
    fn serialize_tuple(self, _: usize) -> Result<Refuse, NotScalar> {
        Err(NotScalar)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Refuse, NotScalar> {
        Err(NotScalar)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Refuse, NotScalar> {
        Err(NotScalar)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Refuse, NotScalar> {
        Err(NotScalar)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Refuse, NotScalar> {
        Err(NotScalar)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Refuse, NotScalar> {
        Err(NotScalar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Event {
        user: String,
        clicks: u32,
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Word(String);

    #[test]
    fn strings_are_text_integers_numbers_the_rest_postcard() {
        assert_eq!(to_record("hi").unwrap(), Record::Text("hi".into()));
        assert_eq!(
            to_record(&Word("w".into())).unwrap(),
            Record::Text("w".into())
        );
        assert_eq!(to_record(&7u32).unwrap(), Record::Int(7));
        assert_eq!(to_record(&-7i64).unwrap(), Record::Int(-7));
        let e = Event {
            user: "a".into(),
            clicks: 3,
        };
        let r = to_record(&e).unwrap();
        assert!(matches!(r, Record::Data(_)), "{r:?}");
        assert_eq!(from_record::<Event>(r).unwrap(), e);
        // Too big for a number record: postcard, and back.
        let r = to_record(&u64::MAX).unwrap();
        assert!(matches!(r, Record::Data(_)));
        assert_eq!(from_record::<u64>(r).unwrap(), u64::MAX);
        assert_eq!(
            from_record::<String>(Record::Text("x".into())).unwrap(),
            "x"
        );
        assert_eq!(
            from_record::<Word>(Record::Text("x".into())).unwrap(),
            Word("x".into())
        );
        assert_eq!(from_record::<u16>(Record::Int(9)).unwrap(), 9);
        assert_eq!(
            from_record::<(String, u64)>(to_record(&("a".to_string(), 2u64)).unwrap()).unwrap(),
            ("a".to_string(), 2)
        );
    }

    #[test]
    fn a_record_of_another_type_is_an_error_naming_both() {
        let e = from_record::<Event>(Record::Text("a line".into())).unwrap_err();
        assert!(e.contains("Event") && e.contains("a text record"), "{e}");
        let e = from_record::<u8>(Record::Int(300)).unwrap_err();
        assert!(e.contains("u8") && e.contains("a number record"), "{e}");
        let e = from_record::<Event>(Record::Data(vec![0xff])).unwrap_err();
        assert!(e.contains("a value record"), "{e}");
    }
}
