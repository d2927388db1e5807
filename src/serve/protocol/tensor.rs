//! A tensor's `data`: flat or nested JSON arrays flattened row-major while
//! they are parsed (no intermediate `serde_json::Value`), and BYTES elements
//! kept raw when they are not text.

use std::fmt;

use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::DecodeError;

/// Tensor contents, flattened row-major from flat or nested JSON arrays.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Numbers(Vec<f64>),
    Texts(Vec<String>),
    Bools(Vec<bool>),
    /// BYTES elements that are not all UTF-8 text (encoded images), kept raw.
    Blobs(Vec<Vec<u8>>),
}

impl TensorData {
    /// Number of scalar values.
    pub fn len(&self) -> usize {
        match self {
            TensorData::Numbers(v) => v.len(),
            TensorData::Texts(v) => v.len(),
            TensorData::Bools(v) => v.len(),
            TensorData::Blobs(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Empties the list, keeping its kind and its room.
    pub(super) fn clear(&mut self) {
        match self {
            TensorData::Numbers(v) => v.clear(),
            TensorData::Texts(v) => v.clear(),
            TensorData::Bools(v) => v.clear(),
            TensorData::Blobs(v) => v.clear(),
        }
    }

    pub(super) fn kind(&self) -> &'static str {
        match self {
            TensorData::Numbers(_) => "numbers",
            TensorData::Texts(_) => "strings",
            TensorData::Blobs(_) => "binary bytes",
            TensorData::Bools(_) => "booleans",
        }
    }
}

/// BYTES elements as text when every one is UTF-8, else kept raw.
pub fn bytes_elements(elements: Vec<Vec<u8>>) -> TensorData {
    if elements.iter().all(|e| std::str::from_utf8(e).is_ok()) {
        TensorData::Texts(
            elements
                .into_iter()
                .map(|e| String::from_utf8(e).unwrap_or_default())
                .collect(),
        )
    } else {
        TensorData::Blobs(elements)
    }
}

/// The error for raw BYTES where a feature needs text: the first element that is not UTF-8.
pub(super) fn not_utf8(input: &str, elements: &[Vec<u8>]) -> DecodeError {
    let (index, error) = elements
        .iter()
        .enumerate()
        .find_map(|(i, e)| std::str::from_utf8(e).err().map(|err| (i, err.to_string())))
        .unwrap_or_default();
    DecodeError::BytesElement {
        input: input.to_string(),
        index,
        reason: format!("not UTF-8 text: {error}"),
    }
}

impl<'de> Deserialize<'de> for TensorData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut data = None;
        d.deserialize_seq(Flatten {
            data: &mut data,
            depth: 0,
        })?;
        Ok(data.unwrap_or(TensorData::Numbers(Vec::new())))
    }
}

/// Nesting deeper than this is refused (a tensor has few dimensions).
pub(super) const MAX_DEPTH: usize = 16;

struct Flatten<'a> {
    data: &'a mut Option<TensorData>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Flatten<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Flatten<'_> {
    fn push_number<E: serde::de::Error>(self, x: f64) -> Result<(), E> {
        match self
            .data
            .get_or_insert_with(|| TensorData::Numbers(Vec::new()))
        {
            TensorData::Numbers(v) => {
                v.push(x);
                Ok(())
            }
            other => Err(E::custom(format!(
                "data mixes numbers with {}",
                other.kind()
            ))),
        }
    }
}

impl<'de> Visitor<'de> for Flatten<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a flat or nested array of numbers, strings or booleans")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(serde::de::Error::custom(format!(
                "data is nested deeper than {MAX_DEPTH} levels"
            )));
        }
        let depth = self.depth + 1;
        while seq
            .next_element_seed(Flatten {
                data: &mut *self.data,
                depth,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, x: f64) -> Result<(), E> {
        self.push_number(x)
    }

    fn visit_i64<E: serde::de::Error>(self, x: i64) -> Result<(), E> {
        self.push_number(x as f64)
    }

    fn visit_u64<E: serde::de::Error>(self, x: u64) -> Result<(), E> {
        self.push_number(x as f64)
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<(), E> {
        match self
            .data
            .get_or_insert_with(|| TensorData::Texts(Vec::new()))
        {
            TensorData::Texts(v) => {
                v.push(s.to_string());
                Ok(())
            }
            other => Err(E::custom(format!(
                "data mixes strings with {}",
                other.kind()
            ))),
        }
    }

    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<(), E> {
        match self
            .data
            .get_or_insert_with(|| TensorData::Bools(Vec::new()))
        {
            TensorData::Bools(v) => {
                v.push(b);
                Ok(())
            }
            other => Err(E::custom(format!(
                "data mixes booleans with {}",
                other.kind()
            ))),
        }
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Err(E::custom("data contains null; every value must be present"))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, _map: A) -> Result<(), A::Error> {
        Err(serde::de::Error::custom(
            "data contains an object; expected numbers, strings or booleans",
        ))
    }
}
