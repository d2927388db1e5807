//! The common infer body read without serde: `inputs` (each with `name`,
//! `shape`, `datatype` and `data`) and an optional `id`, strings without
//! escapes, numbers in plain decimal notation. serde_json's derived reader
//! spent ~3.5 µs on a dozen-column one-row body, a tenth of the request's
//! CPU; this reads it in a single pass over the bytes.
//!
//! It only ever accepts a body the serde reader would read, and reads it to
//! the same value (`decisions::serve_decoder_props` checks both on random
//! bodies). Anything else (an escape, an exponent, a long number, `null`,
//! `parameters`, `outputs`, a repeated or unknown field, mixed data, bad
//! JSON) gives `None`, and the serde reader decides, so every error a
//! client sees still comes from one place. An input written in the
//! protocol's field order, and a flat list of plain numbers, are read by
//! a straight path first (what clients write); anything else is read
//! again by the general one, to the same values. A body read into columns
//! leaves its layout (where its values lay) for the next one
//! (`super::layout`).

use std::borrow::Cow;

use super::decode::ValueRule;
use super::tensor::TensorData;
use super::{DecodedBatch, InputSchema, RequestInput, Shape, WireInput, WireRequest};
use crate::serve::json;

/// The body as serde would read it, or `None` where serde must decide.
pub(super) fn read(json: &[u8]) -> Option<WireRequest<'_>> {
    let (id, inputs, _) = request(json, false, Reader::inputs)?;
    Some(WireRequest {
        id,
        parameters: None,
        inputs,
        outputs: None,
    })
}

/// The common body read straight into the model's columns: its `id`, and
/// the batch `decode_inputs` would decode from it. One tensor a feature,
/// in the model's order, each read into one reused list and put through
/// the decoder's own rules (`feature_rows`, `feature_values`, `check_rows`)
/// as it ends. `None` for anything else (inputs in another order, one
/// `[N, F]` tensor, any error), which the general reader and decoder then
/// read, or refuse with the error they name. A body laid out as the last
/// one this thread read for `schema` has only its values read
/// (`layout`); one read whole leaves its layout for the next.
pub(super) fn read_columns(
    json: &[u8],
    schema: &InputSchema,
) -> Option<(Option<String>, DecodedBatch)> {
    if let Some(read) = schema.layouts.read(json) {
        return Some(read);
    }
    let (id, (batch, rules), recorded) = request(json, true, |r| r.columns(schema))?;
    if !recorded.unlaid {
        schema
            .layouts
            .keep(json, &recorded.slots, &rules, batch.rows());
    }
    Some((id, batch))
}

/// A number at `at` (after any whitespace) as `data`'s reader reads one:
/// its value and where it ends. For `layout`, which reads a body's values
/// in place.
pub(super) fn number_at(json: &[u8], at: usize) -> Option<(f64, usize)> {
    // No text: a number is ASCII, and `string_at` checks its own slice.
    let mut r = Reader::new(json, "", false);
    r.at = at;
    let x = r.number()?;
    Some((x, r.at))
}

/// A string at `at` (after any whitespace) as the reader reads one, its
/// text checked as UTF-8 (`layout` does not check the body whole): the
/// text and where it ends.
pub(super) fn string_at(json: &[u8], at: usize) -> Option<(&str, usize)> {
    let mut r = Reader::new(json, "", false);
    r.at = at;
    let (start, len) = r.string_span()?;
    Some((std::str::from_utf8(&json[start..start + len]).ok()?, r.at))
}

/// Where a value of `data` (or the request's id) was read: recorded while
/// a body is read whole for `read_columns`, so `layout` can keep its place.
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot {
    pub(super) start: usize,
    pub(super) end: usize,
    /// The input it belongs to (its place among `inputs`); `None`: the id.
    pub(super) input: Option<usize>,
    /// A string (else a number).
    pub(super) text: bool,
}

/// The values' places a reader recorded, and whether it read a value
/// `layout` does not keep (a boolean).
#[derive(Default)]
struct Recorded {
    slots: Vec<Slot>,
    unlaid: bool,
}

/// `{"id": …, "inputs": …}` (the id optional) and nothing after it: the
/// id, and the inputs as `inputs` reads them.
fn request<'a, T>(
    json: &'a [u8],
    record: bool,
    mut inputs: impl FnMut(&mut Reader<'a>) -> Option<T>,
) -> Option<(Option<String>, T, Recorded)> {
    // Checked as UTF-8 once, whole (a word at a time where it is ASCII),
    // so each string is a slice of it: checking each of a body's ~70 short
    // strings on its own cost more than reading the rest of it. A body
    // that is not UTF-8 is serde's to refuse.
    let text = std::str::from_utf8(json).ok()?;
    let mut r = Reader::new(json, text, record);
    let (mut id, mut read) = (None, None);
    r.object(REQUEST_KEYS, |r, key| {
        match key {
            Key::Id if id.is_none() => {
                id = Some(r.placed(None, true, Reader::string)?.to_string());
            }
            Key::Inputs if read.is_none() => read = Some(inputs(r)?),
            _ => return None,
        }
        Some(())
    })?;
    r.space();
    (r.at == r.s.len()).then_some(())?;
    Some((id, read?, r.recorded))
}

/// The fields this reader takes, of a request and of an input.
#[derive(Clone, Copy)]
enum Key {
    Id,
    Inputs,
    Name,
    Shape,
    Datatype,
    Data,
}

const REQUEST_KEYS: &[(&str, Key)] = &[("id", Key::Id), ("inputs", Key::Inputs)];

const INPUT_KEYS: &[(&str, Key)] = &[
    ("name", Key::Name),
    ("shape", Key::Shape),
    ("datatype", Key::Datatype),
    ("data", Key::Data),
];

/// Nesting of `data` deeper than this is left to serde (which refuses it).
const MAX_DEPTH: usize = super::tensor::MAX_DEPTH;

/// Digits of a number read here, before and after the point together.
/// Up to 19 a u64 holds the digits whole, and serde_json's reader (without
/// its `float_roundtrip` feature, which nothing here enables) computes the
/// value as this one does: the digits as an f64, divided by an exact power
/// of ten (`f64_from_parts`). A client's f64 written in full (17 digits,
/// as Python's `json.dumps` writes `0.1 + 0.2`) is read here too.
const MAX_DIGITS: usize = 19;
// Each count of digits after the point has its exact power of ten.
const _: () = assert!(json::POW10.len() == MAX_DIGITS + 1);

/// Values a shape promises, as room to allocate up front: none where no
/// shape came first, and at most [`MAX_RESERVED`] whatever a shape claims
/// (a list longer than that grows as it is read).
fn capacity(shape: Option<&Shape>) -> usize {
    shape.map_or(0, |s| {
        s.iter()
            .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))
            .unwrap_or(0)
            .min(MAX_RESERVED)
    })
}

/// The most values reserved for a list before any is read.
pub(super) const MAX_RESERVED: usize = 1024;

/// What a value in `data` is.
#[derive(Clone, Copy)]
enum Leaf {
    Number,
    Text,
    Bool,
}

/// A number as written: `±significand / 10^scale`.
struct Decimal {
    negative: bool,
    significand: u64,
    scale: usize,
}

struct Reader<'a> {
    s: &'a [u8],
    /// `s`, known to be UTF-8.
    text: &'a str,
    at: usize,
    /// Whether values' places are recorded (into `recorded`).
    record: bool,
    /// The input being read (`columns`), for the places recorded.
    input: usize,
    recorded: Recorded,
}

impl<'a> Reader<'a> {
    fn new(s: &'a [u8], text: &'a str, record: bool) -> Reader<'a> {
        Reader {
            s,
            text,
            at: 0,
            record,
            input: 0,
            recorded: Recorded::default(),
        }
    }

    /// A value read by `read` after any whitespace, its place recorded as
    /// of `input` (`None`: the id) where places are.
    #[inline(always)]
    fn placed<T>(
        &mut self,
        input: Option<usize>,
        text: bool,
        read: impl FnOnce(&mut Self) -> Option<T>,
    ) -> Option<T> {
        self.space();
        let start = self.at;
        let value = read(self)?;
        if self.record {
            self.recorded.slots.push(Slot {
                start,
                end: self.at,
                input,
                text,
            });
        }
        Some(value)
    }

    /// Forgets the places recorded since `mark` (a path read again).
    fn rewind(&mut self, at: usize, mark: usize) {
        self.at = at;
        self.recorded.slots.truncate(mark);
    }

    fn space(&mut self) {
        while let Some(&b) = self.s.get(self.at) {
            // Every byte that starts a token is above the space: one
            // comparison where none follows (most calls).
            if b > b' ' || !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                return;
            }
            self.at += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.space();
        self.s.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// `{ "key": value, ... }` with keys from `keys`, each value read by
    /// `field`. Any other key, or one written with an escape, is serde's.
    fn object(
        &mut self,
        keys: &[(&str, Key)],
        mut field: impl FnMut(&mut Self, Key) -> Option<()>,
    ) -> Option<()> {
        self.list(b'{', b'}', |r| {
            let key = r.key(keys)?;
            r.eat(b':')?;
            field(r, key)
        })
    }

    /// The next string, when it is one of `keys` as it is written: the
    /// key's bytes and its closing quote compared in place (reading it as
    /// any string and then matching it was a sixth of reading a body).
    fn key(&mut self, keys: &[(&str, Key)]) -> Option<Key> {
        self.eat(b'"')?;
        let rest = &self.s[self.at..];
        let &(name, key) = keys.iter().find(|(name, _)| {
            rest.get(name.len()) == Some(&b'"') && rest.starts_with(name.as_bytes())
        })?;
        self.at += name.len() + 1;
        Some(key)
    }

    /// `[ item, ... ]`, each item read by `item`.
    fn array(&mut self, item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.list(b'[', b']', item)
    }

    /// `open item, ... close`: an object's fields or an array's items.
    fn list(
        &mut self,
        open: u8,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.eat(open)?;
        if self.eat(close).is_some() {
            return Some(());
        }
        loop {
            item(self)?;
            match self.peek()? {
                b',' => self.at += 1,
                b if b == close => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A string without escapes or control characters, borrowed.
    #[inline(always)]
    fn string(&mut self) -> Option<&'a str> {
        let (start, len) = self.string_span()?;
        // Between two quotes: on character boundaries of the UTF-8 text.
        self.text.get(start..start + len)
    }

    /// A string without escapes or control characters: where its text
    /// starts in `s` and its length.
    #[inline(always)]
    fn string_span(&mut self) -> Option<(usize, usize)> {
        self.eat(b'"')?;
        let start = self.at;
        // One pass: stops at the closing quote, or at what only serde reads.
        let len = json::plain_len(&self.s[start..]);
        if self.s.get(start + len) != Some(&b'"') {
            return None;
        }
        self.at = start + len + 1;
        Some((start, len))
    }

    /// `-?digits(.digits)?`, within [`MAX_DIGITS`] digits in all.
    #[inline]
    fn decimal(&mut self) -> Option<Decimal> {
        self.space();
        let negative = self.s.get(self.at) == Some(&b'-');
        if negative {
            self.at += 1;
        }
        let (whole, whole_digits) = self.whole(MAX_DIGITS)?;
        let mut decimal = Decimal {
            negative,
            significand: whole,
            scale: 0,
        };
        if self.s.get(self.at) == Some(&b'.') {
            self.at += 1;
            // The fraction's digits carry on from the whole part's: at most
            // 19 in all, so no overflow.
            let (significand, fraction_digits) = self.digits(whole, MAX_DIGITS - whole_digits)?;
            decimal.significand = significand;
            decimal.scale = fraction_digits;
        }
        // An exponent is serde's to read.
        if let Some(b'e' | b'E') = self.s.get(self.at) {
            return None;
        }
        Some(decimal)
    }

    /// One to `most` decimal digits, appended to the digits of `value`:
    /// the value they make and their count.
    #[inline]
    fn digits(&mut self, mut value: u64, most: usize) -> Option<(u64, usize)> {
        let start = self.at;
        while let Some(&b) = self.s.get(self.at) {
            if !b.is_ascii_digit() {
                break;
            }
            if self.at - start == most {
                return None;
            }
            value = value * 10 + u64::from(b - b'0');
            self.at += 1;
        }
        let n = self.at - start;
        (n > 0).then_some((value, n))
    }

    /// The whole part of a number: one to `most` digits, without a
    /// leading zero before others (JSON allows none).
    #[inline]
    fn whole(&mut self, most: usize) -> Option<(u64, usize)> {
        let (value, n) = self.digits(0, most)?;
        (n == 1 || self.s[self.at - n] != b'0').then_some((value, n))
    }

    /// A number in `data`, as serde_json reads it: the digits as an f64
    /// over an exact power of ten (see [`MAX_DIGITS`]). Negative zero is
    /// serde's to read (it keeps the sign one way and not the other).
    #[inline]
    fn number(&mut self) -> Option<f64> {
        let d = self.decimal()?;
        if d.negative && d.significand == 0 {
            return None;
        }
        // A signed conversion where it fits (the hardware has one; the
        // same value as the unsigned one, which takes a dozen instructions).
        let digits = match i64::try_from(d.significand) {
            Ok(signed) => signed as f64,
            Err(_) => d.significand as f64,
        };
        let value = digits / json::POW10[d.scale];
        Some(if d.negative { -value } else { value })
    }

    fn inputs(&mut self) -> Option<Vec<WireInput<'a>>> {
        let mut inputs = Vec::with_capacity(super::INPUTS_RESERVED);
        self.array(|r| {
            inputs.push(r.input()?);
            Some(())
        })?;
        Some(inputs)
    }

    fn input(&mut self) -> Option<WireInput<'a>> {
        let mut data = TensorData::Numbers(Vec::new());
        let (name, shape, datatype) = self.input_fields(&mut data)?;
        Some(WireInput {
            name: Cow::Borrowed(name),
            shape,
            datatype: Cow::Borrowed(datatype),
            data: Some(data),
            parameters: None,
        })
    }

    /// An input object's `name`, `shape` and `datatype`, each once, and
    /// its `data` read into `data`.
    fn input_fields(&mut self, data: &mut TensorData) -> Option<(&'a str, Shape, &'a str)> {
        let (start, mark) = (self.at, self.recorded.slots.len());
        if let Some(fields) = self.fields_in_order(data) {
            return Some(fields);
        }
        self.rewind(start, mark);
        let (mut name, mut shape, mut datatype, mut has_data) = (None, None, None, false);
        self.object(INPUT_KEYS, |r, key| {
            match key {
                Key::Name if name.is_none() => name = Some(r.string()?),
                Key::Datatype if datatype.is_none() => datatype = Some(r.string()?),
                Key::Shape if shape.is_none() => shape = Some(r.shape()?),
                Key::Data if !has_data => {
                    r.data(data, capacity(shape.as_ref()))?;
                    has_data = true;
                }
                _ => return None,
            }
            Some(())
        })?;
        has_data.then_some(())?;
        Some((name?, shape?, datatype?))
    }

    /// An input written as clients write one, its fields in the
    /// protocol's order (`{"name": …, "shape": […], "datatype": …,
    /// "data": […]}`): each key matched where it must be, not looked up
    /// among the four. `None` for any other order; the caller reads the
    /// input again field by field, which reads these bytes to the same.
    fn fields_in_order(&mut self, data: &mut TensorData) -> Option<(&'a str, Shape, &'a str)> {
        self.opening(b"{\"name\":", b"{\"name\": ")?;
        let name = self.string()?;
        self.opening(b",\"shape\":", b", \"shape\": ")?;
        let shape = self.shape()?;
        self.opening(b",\"datatype\":", b", \"datatype\": ")?;
        let datatype = self.string()?;
        self.opening(b",\"data\":", b", \"data\": ")?;
        self.data(data, capacity(Some(&shape)))?;
        self.token(b"}")?;
        Some((name, shape, datatype))
    }

    /// A field's opening, `{"key":` or `,"key":`, as `compact` gives it:
    /// written so (as serde_json, `JSON.stringify` and Go write it) or
    /// with Python's default spaces (`spaced`: `, "key": `), it is matched
    /// whole; any other spacing is read token by token, the same bytes to
    /// the same place (whitespace before each token, as JSON allows).
    #[inline(always)]
    fn opening(&mut self, compact: &'static [u8], spaced: &'static [u8]) -> Option<()> {
        let rest = &self.s[self.at..];
        for written in [compact, spaced] {
            if rest.starts_with(written) {
                self.at += written.len();
                return Some(());
            }
        }
        self.token(&compact[..1])?;
        self.member(&compact[1..compact.len() - 1])
    }

    /// `"key":`, the key written as `quoted` (quotes included).
    #[inline(always)]
    fn member(&mut self, quoted: &'static [u8]) -> Option<()> {
        self.token(quoted)?;
        self.token(b":")
    }

    /// `literal` after whitespace, consumed. Inlined, so each call site
    /// compares a constant's bytes in place.
    #[inline(always)]
    fn token(&mut self, literal: &'static [u8]) -> Option<()> {
        self.space();
        self.s[self.at..]
            .starts_with(literal)
            .then(|| self.at += literal.len())
    }

    /// `inputs` as the model's columns: input `k` is feature `k`'s tensor;
    /// and for each input, the rule its values are read by in a body laid
    /// out as this one (`layout`).
    fn columns(&mut self, schema: &InputSchema) -> Option<(DecodedBatch, Vec<Option<ValueRule>>)> {
        let mut values = Vec::new();
        let mut rules = Vec::new();
        let mut rows = None;
        let mut k = 0;
        // One input, reused: its data list is emptied into `values` and
        // refilled by the next input.
        let mut input = RequestInput {
            name: Cow::Borrowed(""),
            shape: Shape::new(),
            datatype: Cow::Borrowed(""),
            data: TensorData::Numbers(Vec::new()),
            parameters: None,
        };
        self.array(|r| {
            let (feature, kind) = schema.features.get(k)?;
            r.input = k;
            let (name, shape, datatype) = r.input_fields(&mut input.data)?;
            (name == feature).then_some(())?;
            (input.name, input.shape, input.datatype) =
                (Cow::Borrowed(name), shape, Cow::Borrowed(datatype));
            super::decode::shape_len(&input).ok()?;
            let n = super::decode::feature_rows(&input).ok()?;
            if *rows.get_or_insert(n) != n {
                return None;
            }
            if k == 0 {
                values.reserve(n.min(MAX_RESERVED) * schema.features.len());
            }
            if r.record {
                rules.push(super::decode::value_rule(&input, *kind));
            }
            super::decode::feature_values(&mut input, feature, *kind, &mut values).ok()?;
            k += 1;
            Some(())
        })?;
        let rows = rows?;
        (k == schema.features.len()).then_some(())?;
        super::decode::check_rows(rows, schema).ok()?;
        Some((DecodedBatch::new(rows, values), rules))
    }

    /// Dimensions: plain non-negative integers (anything else, a negative
    /// dimension included, is serde's to read and the decoder's to refuse).
    fn shape(&mut self) -> Option<Shape> {
        let mut shape = Shape::new();
        self.array(|r| {
            r.space();
            let (d, _) = r.whole(MAX_DIGITS)?;
            // A fraction or an exponent: not a plain dimension.
            if let Some(b'.' | b'e' | b'E') = r.s.get(r.at) {
                return None;
            }
            shape.push(i64::try_from(d).ok()?);
            Some(())
        })?;
        Some(shape)
    }

    /// `data`, flat or nested, all numbers, all strings or all booleans,
    /// read into `data`: its list is emptied and reused where the kind is
    /// the same, else replaced. `capacity`: the values the shape read
    /// before it promises, so a new list is allocated once at its size.
    /// Data without values reads as no numbers, as serde's reader has it.
    fn data(&mut self, data: &mut TensorData, capacity: usize) -> Option<()> {
        // The common list first: flat and all plain numbers, read into the
        // number list the last input left, without the bookkeeping of
        // kinds and nesting. Anything else is read again below.
        if let TensorData::Numbers(numbers) = data {
            let (start, mark) = (self.at, self.recorded.slots.len());
            numbers.clear();
            if self.flat_numbers(numbers, capacity).is_some() {
                return Some(());
            }
            self.rewind(start, mark);
        }
        data.clear();
        let mut fresh = true;
        self.elements(data, &mut fresh, 0, capacity)?;
        if fresh && !matches!(data, TensorData::Numbers(_)) {
            *data = TensorData::Numbers(Vec::new());
        }
        Some(())
    }

    /// `[n, …]` of plain numbers (or `[]`), appended to `numbers`.
    fn flat_numbers(&mut self, numbers: &mut Vec<f64>, capacity: usize) -> Option<()> {
        self.token(b"[")?;
        if self.token(b"]").is_some() {
            return Some(());
        }
        numbers.reserve(capacity);
        let input = Some(self.input);
        loop {
            numbers.push(self.placed(input, false, Self::number)?);
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// `data`, readied for its first value when `fresh`: a list of the
    /// kind of `leaf` (the first value decides the kind), emptied before.
    /// A later value of another kind finds a list it does not fit.
    fn slot<'d>(
        data: &'d mut TensorData,
        fresh: &mut bool,
        capacity: usize,
        leaf: Leaf,
    ) -> &'d mut TensorData {
        if std::mem::take(fresh) {
            match (leaf, &mut *data) {
                (Leaf::Number, TensorData::Numbers(v)) => v.reserve(capacity),
                (Leaf::Text, TensorData::Texts(v)) => v.reserve(capacity),
                (Leaf::Bool, TensorData::Bools(v)) => v.reserve(capacity),
                (Leaf::Number, _) => *data = TensorData::Numbers(Vec::with_capacity(capacity)),
                (Leaf::Text, _) => *data = TensorData::Texts(Vec::with_capacity(capacity)),
                (Leaf::Bool, _) => *data = TensorData::Bools(Vec::with_capacity(capacity)),
            }
        }
        data
    }

    fn elements(
        &mut self,
        data: &mut TensorData,
        fresh: &mut bool,
        depth: usize,
        capacity: usize,
    ) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        let input = Some(self.input);
        self.array(|r| match r.peek()? {
            b'[' => r.elements(data, fresh, depth + 1, capacity),
            b'"' => {
                let text = r.placed(input, true, Self::string)?;
                match Self::slot(data, fresh, capacity, Leaf::Text) {
                    TensorData::Texts(v) => {
                        v.push(text.to_string());
                        Some(())
                    }
                    _ => None,
                }
            }
            b't' | b'f' => {
                let b = r.boolean()?;
                r.recorded.unlaid = true;
                match Self::slot(data, fresh, capacity, Leaf::Bool) {
                    TensorData::Bools(v) => {
                        v.push(b);
                        Some(())
                    }
                    _ => None,
                }
            }
            _ => {
                let x = r.placed(input, false, Self::number)?;
                match Self::slot(data, fresh, capacity, Leaf::Number) {
                    TensorData::Numbers(v) => {
                        v.push(x);
                        Some(())
                    }
                    _ => None,
                }
            }
        })
    }

    fn boolean(&mut self) -> Option<bool> {
        for (word, value) in [(&b"true"[..], true), (&b"false"[..], false)] {
            if self.s[self.at..].starts_with(word) {
                self.at += word.len();
                return Some(value);
            }
        }
        None
    }
}

#[cfg(test)]
pub(super) mod tests {
    use proptest::prelude::*;

    use super::*;

    /// What serde reads, for comparison (`Debug` shows every value, the
    /// sign of a zero included).
    fn serde(body: &str) -> Result<String, String> {
        serde_json::from_str::<WireRequest>(body)
            .map(|w| format!("{w:?}"))
            .map_err(|e| e.to_string())
    }

    fn plain(body: &str) -> Option<String> {
        read(body.as_bytes()).map(|w| format!("{w:?}"))
    }

    #[test]
    fn plain_bodies_read_as_serde_reads_them() {
        for body in [
            r#"{"inputs": []}"#,
            r#"{"inputs":[{"name":"alcohol","shape":[2],"datatype":"FP32","data":[11.5,9]}]}"#,
            r#" { "id" : "req-1" , "inputs" : [ { "data" : [ [ 1.25 ] , [ -3 ] ] , "shape" : [ 2 , 1 ] , "datatype" : "FP64" , "name" : "x" } ] } "#,
            r#"{"inputs":[{"name":"colour","shape":[2],"datatype":"BYTES","data":["red","wée"]}]}"#,
            r#"{"inputs":[{"name":"b","shape":[3],"datatype":"BOOL","data":[true,false,true]}]}"#,
            r#"{"inputs":[{"name":"e","shape":[0],"datatype":"FP32","data":[[]]}]}"#,
            "{\"inputs\":[{\"name\":\"t\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[0.000123456789012]}]}\n",
            r#"{"inputs":[{"name":"n","shape":[1],"datatype":"INT64","data":[-123456789012345]}]}"#,
            // Digits beyond an f64's: rounded as serde_json rounds them,
            // once to an f64 and once in the division (a correctly
            // rounding reader gives 1174115433.9061584 for the first).
            r#"{"inputs":[{"name":"x","shape":[4],"datatype":"FP64","data":[1174115433.906158532,0.30000000000000004,-9223372036854775808,9999999999999999999]}]}"#,
        ] {
            assert_eq!(plain(body), Some(serde(body).unwrap()), "{body}");
        }
    }

    /// An input in the protocol's order is read by the straight path,
    /// compact, with Python's spacing (each opening matched whole) and
    /// with any other whitespace (token by token), to the same fields.
    #[test]
    fn inputs_in_the_protocol_order_are_read_straight_however_spaced() {
        for input in [
            r#"{"name":"a","shape":[2],"datatype":"FP32","data":[1.5,2]}"#,
            r#"{"name": "a", "shape": [2], "datatype": "FP32", "data": [1.5, 2]}"#,
            "{ \"name\" : \"a\" ,\n\"shape\" :[2] , \"datatype\":\"FP32\",\t\"data\" : [1.5,2] }",
            r#"{"name":  "a" ,"shape": [2],  "datatype" :"FP32" , "data":[1.5 , 2]}"#,
        ] {
            let mut r = Reader::new(input.as_bytes(), input, false);
            let mut data = TensorData::Numbers(Vec::new());
            let (name, shape, datatype) = r.fields_in_order(&mut data).expect(input);
            assert_eq!(
                (name, shape.as_slice(), datatype),
                ("a", &[2i64][..], "FP32")
            );
            assert_eq!(data, TensorData::Numbers(vec![1.5, 2.0]), "{input}");
            assert_eq!(r.at, input.len(), "{input}");
        }
    }

    #[test]
    fn anything_else_is_left_to_serde() {
        for body in [
            // Escapes, exponents, long numbers, negative zero, leading zeros.
            r#"{"inputs":[{"name":"a\"b","shape":[1],"datatype":"FP32","data":[1]}]}"#,
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[1e5]}]}"#,
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[12345678901234567890]}]}"#,
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[1.2345678901234567890]}]}"#,
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[-0]}]}"#,
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[01]}]}"#,
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[1.]}]}"#,
            // Fields this reader does not take, repeated or missing ones.
            r#"{"inputs":[],"outputs":[{"name":"predictions"}]}"#,
            r#"{"inputs":[],"parameters":{}}"#,
            r#"{"id":null,"inputs":[]}"#,
            r#"{"inputs":[],"inputs":[]}"#,
            r#"{"inputs":[{"name":"a","name":"b","shape":[1],"datatype":"FP32","data":[1]}]}"#,
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32"}]}"#,
            r#"{"inputs":[{"name":"a","shape":[-1],"datatype":"FP32","data":[1]}]}"#,
            r#"{"inputs":[{"name":"a","shape":[1.0],"datatype":"FP32","data":[1]}]}"#,
            r#"{"inputs":[{"name":"a","shape":[01],"datatype":"FP32","data":[1]}]}"#,
            r#"{"inputs":[{"name":"a","shape":[1e0],"datatype":"FP32","data":[1]}]}"#,
            r#"{"inputs":[{"name":"a","shape":[9223372036854775808],"datatype":"FP32","data":[1]}]}"#,
            // Data serde refuses: mixed, null, objects.
            r#"{"inputs":[{"name":"a","shape":[2],"datatype":"FP32","data":[1,"x"]}]}"#,
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[null]}]}"#,
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[{}]}]}"#,
            // Not JSON, or more after it.
            r#"{"inputs":[}"#,
            r#"{"inputs":[]} x"#,
            "",
        ] {
            assert_eq!(plain(body), None, "{body}");
        }
        let deep = format!(
            r#"{{"inputs":[{{"name":"a","shape":[1],"datatype":"FP32","data":{}1{}}}]}}"#,
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(plain(&deep), None);
        assert!(serde(&deep).is_err(), "serde refuses it too");
    }

    /// A number as a client might write it, valid JSON or not.
    pub(in crate::serve::protocol) fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => any::<i32>().prop_map(|i| i.to_string()),
            3 => (any::<i16>(), 0u32..10_000_000).prop_map(|(a, b)| format!("{a}.{b}")),
            3 => (0u32..100, 0u32..1000).prop_map(|(a, b)| format!("{a}.{b:06}")),
            3 => any::<f32>().prop_map(|x| x.to_string()),
            // Up to 20 digits, the point anywhere: past an f64's digits
            // and past what this reader takes.
            2 => (any::<u64>(), 0usize..21, any::<bool>()).prop_map(|(d, k, negative)| {
                let digits = d.to_string();
                let k = k.min(digits.len());
                let (whole, fraction) = digits.split_at(digits.len() - k);
                let whole = whole.trim_start_matches('0');
                let whole = if whole.is_empty() { "0" } else { whole };
                let sign = if negative { "-" } else { "" };
                match fraction {
                    "" => format!("{sign}{whole}"),
                    f => format!("{sign}{whole}.{f}"),
                }
            }),
            1 => any::<f64>().prop_map(|x| x.to_string()),
            1 => prop::sample::select(vec![
                "-0",
                "-0.0",
                "0",
                "0.0",
                "1e5",
                "-2.5E-3",
                "01",
                "1.",
                ".5",
                "+1",
                "-",
                "123456789012345",
                "1234567890123456",
                "0.1234567890123456",
                "NaN",
            ])
            .prop_map(str::to_string),
        ]
    }

    pub(in crate::serve::protocol) fn text() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "\"red\"",
            "\"wée\"",
            "\"\"",
            "\"a\\\"b\"",
            "\"tab\\t\"",
            "\"\\u0041\"",
            "\"x y\"",
        ])
        .prop_map(str::to_string)
    }

    /// `data`: mostly one kind, nested or flat; sometimes mixed or null.
    fn data() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            4 => prop::collection::vec(number(), 0..4),
            2 => prop::collection::vec(text(), 0..4),
            1 => prop::collection::vec(
                prop::sample::select(vec!["true", "false"]).prop_map(str::to_string),
                0..4
            ),
            1 => prop::collection::vec(
                prop_oneof![number(), text(), Just("null".to_string()), Just("{}".to_string())],
                0..4
            ),
        ];
        (leaf, 0usize..3).prop_map(|(items, nesting)| {
            let mut s = format!("[{}]", items.join(","));
            for _ in 0..nesting {
                s = format!("[{s}]");
            }
            s
        })
    }

    fn space() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["", "", "", " ", "\n", "\t", "\r\n  "])
    }

    /// An input object, its fields in any order, some missing or extra.
    fn input() -> impl Strategy<Value = String> {
        (
            prop::sample::select(vec![
                "\"alcohol\"",
                "\"alcohol\"",
                "\"alcohol\"",
                "\"a\\u0062\"",
                "\"\"",
            ]),
            prop::collection::vec(
                prop_oneof![
                    8 => (0i64..100).prop_map(|d| d.to_string()),
                    1 => Just("-1".to_string()),
                    1 => Just("2.0".to_string()),
                ],
                0..3,
            ),
            prop::sample::select(vec!["\"FP32\"", "\"BYTES\"", "\"BOOL\""]),
            data(),
            prop::sample::select(vec![
                "",
                "",
                "",
                "",
                "",
                "",
                "parameters",
                "drop-data",
                "twice",
            ]),
            any::<prop::sample::Index>(),
            space(),
            prop::bool::weighted(0.25),
        )
            .prop_map(|(name, shape, datatype, data, extra, order, ws, python)| {
                // Python's `json.dumps` spacing (`, ` and `: `), read by
                // `Reader::opening` whole, or `ws` around every token.
                let (ws, colon, comma) = if python {
                    ("", ": ", ", ")
                } else {
                    (ws, ":", ",")
                };
                let mut fields = vec![
                    format!("\"name\"{ws}{colon}{ws}{name}"),
                    format!("\"shape\"{colon}[{}]", shape.join(&format!("{comma}{ws}"))),
                    format!("\"datatype\"{colon}{datatype}"),
                    format!("\"data\"{colon}{ws}{data}"),
                ];
                match extra {
                    "parameters" => fields.push("\"parameters\":{}".into()),
                    "drop-data" => {
                        fields.pop();
                    }
                    "twice" => fields.push("\"name\":\"again\"".into()),
                    _ => {}
                }
                let n = fields.len();
                fields.rotate_left(order.index(n));
                format!("{{{ws}{}{ws}}}", fields.join(&format!("{ws}{comma}{ws}")))
            })
    }

    /// A model with a feature of each kind.
    fn schema() -> InputSchema {
        use crate::api::FeatureKind;
        InputSchema::new(
            vec![
                ("a".into(), FeatureKind::Numeric),
                ("color".into(), FeatureKind::Categorical),
                ("flag".into(), FeatureKind::Boolean),
            ],
            4,
        )
    }

    /// What reading and decoding give: the id and batch, or the error.
    fn decoded(body: &str, schema: &InputSchema) -> Result<(Option<String>, DecodedBatch), String> {
        let mut request =
            super::super::parse_request(body.as_bytes()).map_err(|e| e.to_string())?;
        let batch = super::super::decode_inputs(&mut request, schema).map_err(|e| e.to_string())?;
        Ok((request.id, batch))
    }

    #[test]
    fn common_bodies_are_read_straight_into_the_columns_they_decode_to() {
        let schema = schema();
        for body in [
            r#"{"inputs":[{"name":"a","shape":[2],"datatype":"FP32","data":[1.5,-2]},{"name":"color","shape":[2],"datatype":"BYTES","data":["red","wée"]},{"name":"flag","shape":[2],"datatype":"BOOL","data":[true,false]}]}"#,
            // Fields in any order, nested data, an id, 0/1 and text flags.
            r#"{"id":"r-1","inputs":[{"data":[[3],[4]],"datatype":"INT8","shape":[2,1],"name":"a"},{"shape":[2],"name":"color","data":["","x"],"datatype":"BYTES"},{"name":"flag","shape":[2],"datatype":"UINT8","data":[1,0]}]}"#,
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"BOOL","data":[true]},{"name":"color","shape":[1],"datatype":"BYTES","data":["red"]},{"name":"flag","shape":[1],"datatype":"BYTES","data":["maybe"]}]}"#,
        ] {
            let want = decoded(body, &schema).unwrap();
            assert_eq!(read_columns(body.as_bytes(), &schema), Some(want), "{body}");
        }
    }

    #[test]
    fn bodies_the_decoder_refuses_or_reorders_are_left_to_it() {
        let schema = schema();
        let input = |name: &str, datatype: &str, data: &str| {
            format!(r#"{{"name":"{name}","shape":[1],"datatype":"{datatype}","data":{data}}}"#)
        };
        let (a, color, flag) = (
            input("a", "FP32", "[1.5]"),
            input("color", "BYTES", r#"["red"]"#),
            input("flag", "BOOL", "[true]"),
        );
        for inputs in [
            // Decodable, but not in the model's order, or one matrix.
            vec![color.clone(), a.clone(), flag.clone()],
            // Refused: a wrong datatype or value, a missing or extra
            // input, rows that differ, too many rows.
            vec![a.clone(), input("color", "FP32", "[1]"), flag.clone()],
            vec![input("a", "INT8", "[1.5]"), color.clone(), flag.clone()],
            vec![input("a", "FP16", "[70000]"), color.clone(), flag.clone()],
            vec![input("a", "BYTES", r#"["1"]"#), color.clone(), flag.clone()],
            vec![a.clone(), color.clone(), input("flag", "FP32", "[2]")],
            vec![a.clone(), color.clone(), input("flag", "INT8", "[true]")],
            vec![a.clone(), color.clone()],
            vec![a.clone(), color.clone(), flag.clone(), a.clone()],
            vec![
                r#"{"name":"a","shape":[2],"datatype":"FP32","data":[1,2]}"#.into(),
                color.clone(),
                flag.clone(),
            ],
            vec![
                r#"{"name":"a","shape":[2],"datatype":"FP32","data":[1]}"#.into(),
                color.clone(),
                flag.clone(),
            ],
            vec![
                r#"{"name":"a","shape":[5],"datatype":"FP32","data":[1,2,3,4,5]}"#.into(),
                r#"{"name":"color","shape":[5],"datatype":"BYTES","data":["","","","",""]}"#.into(),
                r#"{"name":"flag","shape":[5],"datatype":"BOOL","data":[true,true,true,true,true]}"#.into(),
            ],
        ] {
            let body = format!(r#"{{"inputs":[{}]}}"#, inputs.join(","));
            assert_eq!(read_columns(body.as_bytes(), &schema), None, "{body}");
        }
        let matrix = r#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[[1,2]]}]}"#;
        let numeric = InputSchema::new(
            vec![
                ("a".into(), crate::api::FeatureKind::Numeric),
                ("b".into(), crate::api::FeatureKind::Numeric),
            ],
            4,
        );
        assert!(decoded(matrix, &numeric).is_ok());
        assert_eq!(read_columns(matrix.as_bytes(), &numeric), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever is read straight into columns is what reading and
        /// decoding give; whatever they refuse is left to them.
        #[test]
        fn columns_read_straight_are_the_decoded_columns(
            inputs in prop::collection::vec(
                (
                    any::<prop::sample::Index>(),
                    prop::sample::select(vec!["[R]", "[R]", "[R]", "[R]", "[R]", "[R,1]", "[1]", "[2]", "[0]", "[R,2]"]),
                    prop::bool::weighted(0.2),
                    any::<prop::sample::Index>(),
                ),
                4,
            ),
            count in prop_oneof![4 => Just(3usize), 1 => 2usize..5],
            rows in 1usize..3,
            in_order in prop::bool::weighted(0.8),
            id in prop::sample::select(vec!["", "\"id\":\"r-7\","]),
            python in any::<bool>(),
        ) {
            // Compact, or Python's `json.dumps` spacing (`, ` and `: `).
            let (colon, comma) = if python { (": ", ", ") } else { (":", ",") };
            // A datatype and a value for each feature, fitting or not.
            let choices: [&[(&str, &str)]; 3] = [
                &[("FP32", "1.5"), ("INT8", "-3"), ("BOOL", "true"), ("BOOL", "1"), ("FP64", "2.25"),
                  ("UINT8", "300"), ("FP16", "70000"), ("BYTES", "\"x\"")],
                &[("BYTES", "\"red\""), ("BYTES", "\"\""), ("BYTES", "\"wée\""), ("FP32", "1"),
                  ("BYTES", "1")],
                &[("BOOL", "false"), ("BYTES", "\"yes\""), ("INT8", "1"), ("UINT64", "0"),
                  ("FP32", "0.5"), ("INT8", "true"), ("BOOL", "2")],
            ];
            let names = ["a", "color", "flag", "b"];
            let schema = schema();
            let inputs: Vec<String> = inputs
                .into_iter()
                .take(count)
                .enumerate()
                .map(|(k, (pick, shape, nested, order))| {
                    let feature = if in_order { k % 3 } else { pick.index(3) };
                    let name = if k == 3 { names[pick.index(4)] } else { names[feature] };
                    let (datatype, value) = pick.get(choices[feature]);
                    let cell = if nested { format!("[{value}]") } else { value.to_string() };
                    let data = format!("[{}]", vec![cell; rows].join(comma));
                    let mut fields = [
                        format!("\"name\"{colon}\"{name}\""),
                        format!("\"shape\"{colon}{}", shape.replace('R', &rows.to_string())),
                        format!("\"datatype\"{colon}\"{datatype}\""),
                        format!("\"data\"{colon}{data}"),
                    ];
                    fields.rotate_left(order.index(4));
                    format!("{{{}}}", fields.join(comma))
                })
                .collect();
            let body = format!("{{{id}\"inputs\"{colon}[{}]}}", inputs.join(comma));
            match (read_columns(body.as_bytes(), &schema), decoded(&body, &schema)) {
                (Some(fast), Ok(want)) => prop_assert_eq!(fast, want, "{}", body),
                (Some(fast), Err(e)) => prop_assert!(false, "{body}: read {fast:?}, refused: {e}"),
                (None, _) => {}
            }
        }

        /// Whatever this reader reads, serde reads to the same value; and
        /// the bodies it leaves are left whole to serde.
        #[test]
        fn the_plain_reader_agrees_with_serde(
            inputs in prop::collection::vec(input(), 0..3),
            id in prop::sample::select(vec!["", "\"req-7\"", "null", "\"a\\nb\""]),
            ws in space(),
            tail in prop::sample::select(vec!["", "", "", "", " \n", "x", ","]),
        ) {
            let id = if id.is_empty() { String::new() } else { format!("\"id\":{ws}{id},") };
            let body = format!("{ws}{{{id}{ws}\"inputs\":{ws}[{}]}}{tail}", inputs.join(","));
            if let Some(read) = plain(&body) {
                prop_assert_eq!(Ok(read), serde(&body), "{}", body);
            }
        }

        /// Bodies of the common shape take the plain reader.
        #[test]
        fn common_bodies_take_the_plain_reader(
            columns in prop::collection::vec(
                (any::<i16>(), 0u32..1000, prop::bool::ANY), 1..14),
            ws in space(),
        ) {
            let inputs: Vec<String> = columns
                .iter()
                .enumerate()
                .map(|(j, (whole, fraction, text))| {
                    let data = if *text { "\"red\"".to_string() } else { format!("{whole}.{fraction}") };
                    format!(
                        "{{{ws}\"name\":{ws}\"f{j}\",{ws}\"shape\":[1],\"datatype\":\"FP32\",\"data\":[{data}]}}"
                    )
                })
                .collect();
            let body = format!("{{\"inputs\":{ws}[{}]}}", inputs.join(&format!(",{ws}")));
            prop_assert_eq!(plain(&body), Some(serde(&body).unwrap()), "{}", body);
        }
    }
}
