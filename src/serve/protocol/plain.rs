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
//! client sees still comes from one place.

use std::borrow::Cow;

use super::tensor::TensorData;
use super::{Shape, WireInput, WireRequest};
use crate::serve::json::ESCAPED;

/// The body as serde would read it, or `None` where serde must decide.
pub(super) fn read(json: &[u8]) -> Option<WireRequest<'_>> {
    // Checked as UTF-8 once, whole (a word at a time where it is ASCII),
    // so each string is a slice of it: checking each of a body's ~70 short
    // strings on its own cost more than reading the rest of it. A body
    // that is not UTF-8 is serde's to refuse.
    let text = std::str::from_utf8(json).ok()?;
    let mut r = Reader {
        s: json,
        text,
        at: 0,
    };
    let mut id = None;
    let mut inputs = None;
    r.object(|r, key| {
        match key {
            "id" if id.is_none() => id = Some(r.string()?.to_string()),
            "inputs" if inputs.is_none() => inputs = Some(r.inputs()?),
            _ => return None,
        }
        Some(())
    })?;
    r.space();
    (r.at == r.s.len()).then_some(())?;
    Some(WireRequest {
        id,
        parameters: None,
        inputs: inputs?,
        outputs: None,
    })
}

/// Nesting of `data` deeper than this is left to serde (which refuses it).
const MAX_DEPTH: usize = super::tensor::MAX_DEPTH;

/// Digits of a number read here, before and after the point each; with
/// the digits in all below [`EXACT`], the significand and the power of ten
/// are both exact f64s, so one division rounds the number correctly, as
/// serde_json (and `str::parse`) do.
const MAX_DIGITS: usize = 15;

/// 2^53: integers up to it are exact f64s.
const EXACT: u64 = 1 << 53;

/// Powers of ten up to [`MAX_DIGITS`], each exact as an f64.
const POW10: [f64; MAX_DIGITS + 1] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

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
const MAX_RESERVED: usize = 1024;

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
}

impl<'a> Reader<'a> {
    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.at) {
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

    /// `{ "key": value, ... }`, each value read by `field`.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.list(b'{', b'}', |r| {
            let key = r.string()?;
            r.eat(b':')?;
            field(r, key)
        })
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
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        // One pass: stops at the closing quote, or at what only serde reads.
        let len = self.s[start..]
            .iter()
            .position(|&b| ESCAPED[usize::from(b)])?;
        if self.s[start + len] != b'"' {
            return None;
        }
        self.at = start + len + 1;
        // Between two quotes: on character boundaries of the UTF-8 text.
        self.text.get(start..start + len)
    }

    /// `-?digits(.digits)?`, each part within [`MAX_DIGITS`] digits, the
    /// digits in all below [`EXACT`].
    fn decimal(&mut self) -> Option<Decimal> {
        self.space();
        let negative = self.s.get(self.at) == Some(&b'-');
        if negative {
            self.at += 1;
        }
        let (whole, whole_digits) = self.digits()?;
        // JSON allows no leading zero before other digits.
        if whole_digits > 1 && self.s[self.at - whole_digits] == b'0' {
            return None;
        }
        let mut decimal = Decimal {
            negative,
            significand: whole,
            scale: 0,
        };
        if self.s.get(self.at) == Some(&b'.') {
            self.at += 1;
            let (fraction, fraction_digits) = self.digits()?;
            decimal.significand = (whole * POW10[fraction_digits] as u64) + fraction;
            if decimal.significand > EXACT {
                return None;
            }
            decimal.scale = fraction_digits;
        }
        // An exponent is serde's to read.
        if let Some(b'e' | b'E') = self.s.get(self.at) {
            return None;
        }
        Some(decimal)
    }

    /// One to [`MAX_DIGITS`] decimal digits: their value and count.
    fn digits(&mut self) -> Option<(u64, usize)> {
        let start = self.at;
        let mut value = 0u64;
        while let Some(&b) = self.s.get(self.at) {
            if !b.is_ascii_digit() {
                break;
            }
            value = value * 10 + u64::from(b - b'0');
            self.at += 1;
            if self.at - start > MAX_DIGITS {
                return None;
            }
        }
        let n = self.at - start;
        (n > 0).then_some((value, n))
    }

    /// A number in `data`, as serde_json reads it: the significand over an
    /// exact power of ten, one correctly rounded division. Negative zero
    /// is serde's to read (it keeps the sign one way and not the other).
    fn number(&mut self) -> Option<f64> {
        let d = self.decimal()?;
        if d.negative && d.significand == 0 {
            return None;
        }
        let value = d.significand as f64 / POW10[d.scale];
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
        let (mut name, mut shape, mut datatype, mut data) = (None, None, None, None);
        self.object(|r, key| {
            match key {
                "name" if name.is_none() => name = Some(r.string()?),
                "datatype" if datatype.is_none() => datatype = Some(r.string()?),
                "shape" if shape.is_none() => shape = Some(r.shape()?),
                "data" if data.is_none() => data = Some(r.data(capacity(shape.as_ref()))?),
                _ => return None,
            }
            Some(())
        })?;
        Some(WireInput {
            name: Cow::Borrowed(name?),
            shape: shape?,
            datatype: Cow::Borrowed(datatype?),
            data: Some(data?),
            parameters: None,
        })
    }

    /// Dimensions: plain non-negative integers (anything else, a negative
    /// dimension included, is serde's to read and the decoder's to refuse).
    fn shape(&mut self) -> Option<Shape> {
        let mut shape = Shape::new();
        self.array(|r| {
            let d = r.decimal()?;
            if d.negative || d.scale > 0 {
                return None;
            }
            shape.push(i64::try_from(d.significand).ok()?);
            Some(())
        })?;
        Some(shape)
    }

    /// `data`, flat or nested, all numbers, all strings or all booleans.
    /// `capacity`: the values the shape read before it promises, so the
    /// list is allocated once at its size instead of grown from empty.
    fn data(&mut self, capacity: usize) -> Option<TensorData> {
        let mut data = None;
        self.elements(&mut data, 0, capacity)?;
        Some(data.unwrap_or(TensorData::Numbers(Vec::new())))
    }

    fn elements(
        &mut self,
        data: &mut Option<TensorData>,
        depth: usize,
        capacity: usize,
    ) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        self.array(|r| match r.peek()? {
            b'[' => r.elements(data, depth + 1, capacity),
            b'"' => {
                let text = r.string()?.to_string();
                match data.get_or_insert_with(|| TensorData::Texts(Vec::with_capacity(capacity))) {
                    TensorData::Texts(v) => {
                        v.push(text);
                        Some(())
                    }
                    _ => None,
                }
            }
            b't' | b'f' => {
                let b = r.boolean()?;
                match data.get_or_insert_with(|| TensorData::Bools(Vec::with_capacity(capacity))) {
                    TensorData::Bools(v) => {
                        v.push(b);
                        Some(())
                    }
                    _ => None,
                }
            }
            _ => {
                let x = r.number()?;
                match data.get_or_insert_with(|| TensorData::Numbers(Vec::with_capacity(capacity)))
                {
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
mod tests {
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
        ] {
            assert_eq!(plain(body), Some(serde(body).unwrap()), "{body}");
        }
    }

    #[test]
    fn anything_else_is_left_to_serde() {
        for body in [
            // Escapes, exponents, long numbers, negative zero, leading zeros.
            r#"{"inputs":[{"name":"a\"b","shape":[1],"datatype":"FP32","data":[1]}]}"#,
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[1e5]}]}"#,
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[1234567890123456]}]}"#,
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
    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => any::<i32>().prop_map(|i| i.to_string()),
            3 => (any::<i16>(), 0u32..10_000_000).prop_map(|(a, b)| format!("{a}.{b}")),
            3 => (0u32..100, 0u32..1000).prop_map(|(a, b)| format!("{a}.{b:06}")),
            3 => any::<f32>().prop_map(|x| x.to_string()),
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

    fn text() -> impl Strategy<Value = String> {
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
        )
            .prop_map(|(name, shape, datatype, data, extra, order, ws)| {
                let mut fields = vec![
                    format!("\"name\"{ws}:{ws}{name}"),
                    format!("\"shape\":[{}]", shape.join(&format!(",{ws}"))),
                    format!("\"datatype\":{datatype}"),
                    format!("\"data\":{ws}{data}"),
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
                format!("{{{ws}{}{ws}}}", fields.join(&format!("{ws},{ws}")))
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

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
