//! The one normalisation OTLP/JSON keys and `null`s get, for every mirror struct in
//! [`super::wire`] (interop.md §1.4): a `serde` deserializer adapter around `serde_json`'s.
//!
//! - **Keys**: a snake_case key (`trace_id`, `start_time_unix_nano`: lowercase ASCII letters
//!   and digits joined by single underscores) is read as its lowerCamelCase spelling
//!   (`traceId`, `startTimeUnixNano`), the protobuf JSON mapping's name, so the structs
//!   declare `rename_all = "camelCase"` and nothing per field. Any other key is passed on as
//!   written (unknown keys are ignored by the structs).
//! - **`null`**: a `null` object member takes the member's default, like an omitted one: an
//!   empty string, list or object, and for the lenient scalars (`Num`, `JEnum`) their
//!   default. A `null` array element is not a member and stays an error.
//!
//! Everything else (types, error messages, the recursion limit) is `serde_json`'s.

use std::borrow::Cow;
use std::fmt;

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, Visitor};

/// Parses `body` as one JSON value into `T`, keys and `null`s normalised as the module
/// says.
///
/// # Errors
/// `serde_json`'s error for malformed JSON, a value of the wrong type or trailing data.
pub(super) fn from_slice<T: DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = T::deserialize(Normalised {
        inner: &mut de,
        member: false,
    })?;
    de.end()?;
    Ok(value)
}

/// The lowerCamelCase spelling of a snake_case key; other keys unchanged.
fn camel_case(key: &str) -> Cow<'_, str> {
    let snake = key.contains('_')
        && key.split('_').all(|w| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if !snake {
        return Cow::Borrowed(key);
    }
    let mut out = String::with_capacity(key.len());
    for (i, word) in key.split('_').enumerate() {
        let mut chars = word.chars();
        if i > 0
            && let Some(first) = chars.next()
        {
            out.push(first.to_ascii_uppercase());
            out.push_str(chars.as_str());
        } else {
            out.push_str(word);
        }
    }
    Cow::Owned(out)
}

/// A value deserializer; `member` when it reads an object member's value (where `null`
/// means the default).
struct Normalised<D> {
    inner: D,
    member: bool,
}

/// What a member's deserializer was asked for, to ask again after the `null` check.
#[derive(Clone, Copy)]
enum Want {
    Any,
    Str,
    String,
    Seq,
    Map,
    Struct(&'static str, &'static [&'static str]),
}

macro_rules! forward {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            self.inner.$method(Wrap(visitor))
        }
    )*};
}

/// Methods whose member values may be `null`: read through [`Normalised::member_or`].
macro_rules! member_or_forward {
    ($($method:ident => $want:ident),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            if self.member {
                return self.member_or(Want::$want, visitor);
            }
            self.inner.$method(Wrap(visitor))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Normalised<D> {
    /// A member's value: `null` gives the default, anything else is read as `want`.
    fn member_or<V: Visitor<'de>>(self, want: Want, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_option(NullOr { want, visitor })
    }
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Normalised<D> {
    type Error = D::Error;

    member_or_forward! {
        deserialize_any => Any, deserialize_str => Str, deserialize_string => String,
        deserialize_seq => Seq, deserialize_map => Map,
    }

    forward! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_bytes
        deserialize_byte_buf deserialize_option deserialize_unit deserialize_identifier
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        if self.member {
            return self.member_or(Want::Struct(name, fields), visitor);
        }
        self.inner.deserialize_struct(name, fields, Wrap(visitor))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_unit_struct(name, Wrap(visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_newtype_struct(name, Wrap(visitor))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_tuple(len, Wrap(visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner
            .deserialize_tuple_struct(name, len, Wrap(visitor))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_enum(name, variants, Wrap(visitor))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        // Skipped values need no normalising.
        self.inner.deserialize_ignored_any(visitor)
    }
}

/// Reads a member's value after the `null` check.
struct NullOr<V> {
    want: Want,
    visitor: V,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for NullOr<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        let v = self.visitor;
        match self.want {
            Want::Any => v.visit_unit(),
            Want::Str | Want::String => v.visit_str(""),
            Want::Seq => v.visit_seq(SeqDeserializer::new(std::iter::empty::<()>())),
            Want::Map | Want::Struct(..) => {
                v.visit_map(MapDeserializer::new(std::iter::empty::<((), ())>()))
            }
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.visit_none()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        let v = Wrap(self.visitor);
        match self.want {
            Want::Any => d.deserialize_any(v),
            Want::Str => d.deserialize_str(v),
            Want::String => d.deserialize_string(v),
            Want::Seq => d.deserialize_seq(v),
            Want::Map => d.deserialize_map(v),
            Want::Struct(name, fields) => d.deserialize_struct(name, fields, v),
        }
    }
}

/// A visitor whose objects and arrays are read through the normalisation.
struct Wrap<V>(V);

macro_rules! forward_visit {
    ($($method:ident($ty:ty))*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.0.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    forward_visit! {
        visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64)
        visit_i128(i128) visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64)
        visit_u128(u128) visit_f32(f32) visit_f64(f64) visit_char(char) visit_str(&str)
        visit_borrowed_str(&'de str) visit_string(String) visit_bytes(&[u8])
        visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.0.visit_some(Normalised {
            inner: d,
            member: false,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.0.visit_newtype_struct(Normalised {
            inner: d,
            member: false,
        })
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.0.visit_seq(Elements(seq))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(Members(map))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        // The wire structs have no serde enums; passed on as it is.
        self.0.visit_enum(data)
    }
}

/// An array's elements, each read through the normalisation (not as members).
struct Elements<A>(A);

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Elements<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Value {
            seed,
            member: false,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

/// An object's members: keys normalised, values read as members.
struct Members<A>(A);

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Members<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(Key(seed))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(Value { seed, member: true })
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

/// Reads a value through the normalisation.
struct Value<T> {
    seed: T,
    member: bool,
}

impl<'de, T: DeserializeSeed<'de>> DeserializeSeed<'de> for Value<T> {
    type Value = T::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T::Value, D::Error> {
        self.seed.deserialize(Normalised {
            inner: d,
            member: self.member,
        })
    }
}

/// Reads an object key, in its camelCase spelling.
struct Key<K>(K);

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for Key<K> {
    type Value = K::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<K::Value, D::Error> {
        self.0.deserialize(KeyDeserializer(d))
    }
}

/// The key's deserializer: whatever the seed asks for, the key is a string.
struct KeyDeserializer<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for KeyDeserializer<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_str(KeyVisitor(visitor))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_ignored_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier
    }
}

/// Hands the key to the seed's visitor in its camelCase spelling.
struct KeyVisitor<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for KeyVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<V::Value, E> {
        match camel_case(key) {
            Cow::Borrowed(k) => self.0.visit_borrowed_str(k),
            Cow::Owned(k) => self.0.visit_string(k),
        }
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<V::Value, E> {
        match camel_case(key) {
            Cow::Borrowed(k) => self.0.visit_str(k),
            Cow::Owned(k) => self.0.visit_string(k),
        }
    }

    fn visit_string<E: de::Error>(self, key: String) -> Result<V::Value, E> {
        let camel = match camel_case(&key) {
            Cow::Borrowed(_) => None,
            Cow::Owned(k) => Some(k),
        };
        self.0.visit_string(camel.unwrap_or(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_keys_read_as_camel_case() {
        for (key, want) in [
            ("trace_id", "traceId"),
            ("start_time_unix_nano", "startTimeUnixNano"),
            ("kvlist_value", "kvlistValue"),
            ("traceId", "traceId"),
            ("name", "name"),
            ("_id", "_id"),
            ("trace__id", "trace__id"),
            ("trace_id_", "trace_id_"),
            ("Trace_id", "Trace_id"),
            ("start_timeUnix_nano", "start_timeUnix_nano"),
        ] {
            assert_eq!(camel_case(key), want, "{key}");
        }
    }
}
