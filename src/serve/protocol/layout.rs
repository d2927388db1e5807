//! A body laid out as the last one: its values read, the rest compared.
//!
//! A client sends the same body again and again with new values: the same
//! inputs, names, shapes, datatypes and spacing, the numbers (and the id,
//! and a categorical feature's strings) changed. Once `plain::read_columns`
//! has read a body whole and decoded it, the body and where each of its
//! values lay are kept ([`Layout`]); the next body is compared with the
//! kept one byte for byte between the values, and only its values are
//! read, each by the reader's own number or string rule and checked by the
//! decoder's own rule for its input (`decode::value_rule`). Reading a
//! dozen-feature row so is a tenth of reading it whole: the names, keys,
//! shapes and datatypes are a memory compare, not a parse.
//!
//! The result is what reading the body whole gives, or `None` and the body
//! is read whole: between the values the bytes are the kept body's, which
//! was read and decoded to a batch; each value is read by the same rule as
//! there and ends where the same bytes follow, so the whole reader would
//! take the same path through this body, read the same values, and apply
//! the same checks, which each value has passed here. (A boolean value, a
//! boolean feature, or a body over [`MAX_BODY`] is not kept.) The tests in
//! `plain` hold the two readers to the same results on random bodies and
//! their mutations.
//!
//! The kept layout is the worker thread's own (no lock, nothing shared
//! between cores), one per thread, for the schema that read it last.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use super::decode::ValueRule as Rule;
use super::plain::{self, Slot};
use super::{DecodedBatch, Value};

/// Bodies larger than this are not kept (a large batch is read whole; the
/// compare would save a smaller share of it).
pub(super) const MAX_BODY: usize = 64 * 1024;

/// A value's place in the kept body and how it is read.
#[derive(Clone, Copy, Debug)]
enum Place {
    Id,
    Value(Rule),
}

#[derive(Debug, Default)]
struct Layout {
    /// The schema it was decoded for ([`Layouts`]' id).
    schema: u64,
    body: Vec<u8>,
    /// Each value's bytes in `body` (`start..end`), in the body's order.
    values: Vec<(usize, usize, Place)>,
    /// Values that go into the batch (all but the id).
    count: usize,
    rows: usize,
}

thread_local! {
    static KEPT: RefCell<Option<Layout>> = const { RefCell::new(None) };
}

/// The layouts a schema's bodies are read by: a schema's identity, under
/// which each worker thread keeps the layout of the last body it read whole
/// for it. A clone is another schema (its own identity).
#[derive(Debug)]
pub struct Layouts {
    id: u64,
}

impl Layouts {
    pub(super) fn new() -> Layouts {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Layouts {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// `json` read by this thread's layout for this schema: `None` where
    /// there is none, or the body is not laid out as it is.
    pub(super) fn read(&self, json: &[u8]) -> Option<(Option<String>, DecodedBatch)> {
        KEPT.with_borrow(|kept| match kept {
            Some(layout) if layout.schema == self.id => layout.read(json),
            _ => None,
        })
    }

    /// Keeps `json`'s layout for the next body: its values' places
    /// (`slots`, as the whole reader recorded them) and each input's rule
    /// (`rules[k]`, `None` where its values are not laid out). Nothing is
    /// kept where a value has no rule or is of another kind than its rule.
    pub(super) fn keep(&self, json: &[u8], slots: &[Slot], rules: &[Option<Rule>], rows: usize) {
        if json.len() > MAX_BODY {
            return;
        }
        KEPT.with_borrow_mut(|kept| {
            // The last layout's lists are reused.
            let mut layout = kept.take().unwrap_or_default();
            layout.values.clear();
            let mut count = 0;
            for slot in slots {
                let place = match slot.input {
                    None => Place::Id,
                    Some(k) => match (rules.get(k).copied().flatten(), slot.text) {
                        (Some(rule @ Rule::Number(_)), false) | (Some(rule @ Rule::Text), true) => {
                            Place::Value(rule)
                        }
                        _ => return,
                    },
                };
                count += usize::from(matches!(place, Place::Value(_)));
                layout.values.push((slot.start, slot.end, place));
            }
            layout.body.clear();
            layout.body.extend_from_slice(json);
            (layout.schema, layout.count, layout.rows) = (self.id, count, rows);
            *kept = Some(layout);
        });
    }
}

impl Clone for Layouts {
    fn clone(&self) -> Layouts {
        Layouts::new()
    }
}

impl Layout {
    fn read(&self, json: &[u8]) -> Option<(Option<String>, DecodedBatch)> {
        let mut values = Vec::with_capacity(self.count);
        let mut id = None;
        // `at` in `json`, `from` in the kept body.
        let (mut at, mut from) = (0, 0);
        for &(start, end, place) in &self.values {
            let same = &self.body[from..start];
            (json.get(at..at + same.len())? == same).then_some(())?;
            at += same.len();
            at = match place {
                Place::Id => {
                    let (text, next) = plain::string_at(json, at)?;
                    id = Some(text.to_string());
                    next
                }
                Place::Value(Rule::Text) => {
                    let (text, next) = plain::string_at(json, at)?;
                    values.push(Value::Text(text.to_string()));
                    next
                }
                Place::Value(Rule::Number(check)) => {
                    let (x, next) = plain::number_at(json, at)?;
                    check.admits(x).then_some(())?;
                    values.push(Value::Number(x));
                    next
                }
            };
            from = end;
        }
        (json.get(at..)? == &self.body[from..]).then_some(())?;
        Some((id, DecodedBatch::new(self.rows, values)))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::{InputSchema, plain, read_columns};
    use crate::api::FeatureKind;

    fn schema(flag: bool) -> InputSchema {
        let mut features = vec![
            ("a".to_string(), FeatureKind::Numeric),
            ("color".to_string(), FeatureKind::Categorical),
            ("b".to_string(), FeatureKind::Numeric),
        ];
        if flag {
            features.push(("flag".to_string(), FeatureKind::Boolean));
        }
        InputSchema::new(features, 4)
    }

    /// A value as clients write one, or one the readers refuse (the
    /// whole reader's own test values, and values of the wrong kind or
    /// range for these datatypes).
    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => plain::tests::number(),
            2 => prop::sample::select(vec!["70000", "300", "-3", "2.0", "\"1\"", "true", "null"])
                .prop_map(str::to_string),
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => plain::tests::text(),
            1 => Just("1".to_string()),
            1 => Just("\"blue\"".to_string()),
        ]
    }

    /// One body's values: for each row, `a`, `color`, `b` and `flag`;
    /// and the id.
    fn values(rows: usize) -> impl Strategy<Value = (Vec<[String; 4]>, String)> {
        (
            prop::collection::vec(
                (
                    number(),
                    text(),
                    number(),
                    prop::sample::select(vec!["true", "false", "1"]),
                )
                    .prop_map(|(a, c, b, f)| [a, c, b, f.to_string()]),
                rows,
            ),
            prop::sample::select(vec![
                "\"r-1\"",
                "\"a-much-longer-request-id\"",
                "\"\"",
                "\"a\\nb\"",
                "7",
            ])
            .prop_map(str::to_string),
        )
    }

    /// How a client lays its bodies out: spacing, datatypes, whether an id
    /// and a boolean feature are sent, and the fields' order.
    #[derive(Debug, Clone)]
    struct Style {
        python: bool,
        id: bool,
        flag: bool,
        a_type: &'static str,
        b_type: &'static str,
        rows: usize,
        reversed: bool,
    }

    fn style() -> impl Strategy<Value = Style> {
        let types = || prop::sample::select(vec!["FP32", "FP64", "FP16", "INT8", "UINT8", "BOOL"]);
        (
            any::<bool>(),
            any::<bool>(),
            prop::bool::weighted(0.2),
            types(),
            types(),
            1usize..4,
            prop::bool::weighted(0.2),
        )
            .prop_map(|(python, id, flag, a_type, b_type, rows, reversed)| Style {
                python,
                id,
                flag,
                a_type,
                b_type,
                rows,
                reversed,
            })
    }

    fn body(style: &Style, (rows, id): &(Vec<[String; 4]>, String)) -> String {
        let (colon, comma) = if style.python {
            (": ", ", ")
        } else {
            (":", ",")
        };
        let column = |j: usize| {
            let cells: Vec<&str> = rows.iter().map(|r| r[j].as_str()).collect();
            format!("[{}]", cells.join(comma))
        };
        let input = |name: &str, datatype: &str, j: usize| {
            let mut fields = [
                format!("\"name\"{colon}\"{name}\""),
                format!("\"shape\"{colon}[{}]", style.rows),
                format!("\"datatype\"{colon}\"{datatype}\""),
                format!("\"data\"{colon}{}", column(j)),
            ];
            if style.reversed {
                fields.reverse();
            }
            format!("{{{}}}", fields.join(comma))
        };
        let mut inputs = vec![
            input("a", style.a_type, 0),
            input("color", "BYTES", 1),
            input("b", style.b_type, 2),
        ];
        if style.flag {
            inputs.push(input("flag", "BOOL", 3));
        }
        let id = if style.id {
            format!("\"id\"{colon}{id}{comma}")
        } else {
            String::new()
        };
        format!("{{{id}\"inputs\"{colon}[{}]}}", inputs.join(comma))
    }

    /// What the whole reader gives (a schema that has kept no layout).
    fn whole(body: &[u8], flag: bool) -> Option<(Option<String>, super::DecodedBatch)> {
        read_columns(body, None, &schema(flag))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// A body laid out as the last one reads to what the whole reader
        /// gives, whatever its values; and where both bodies are read, it
        /// is read by the layout (the path is taken, not only allowed).
        #[test]
        fn a_body_laid_out_as_the_last_reads_as_read_whole(
            style in style(),
            first in (1usize..4).prop_flat_map(values),
            second in (1usize..4).prop_flat_map(values),
        ) {
            let mut first = first;
            let mut second = second;
            first.0.resize(style.rows, first.0[0].clone());
            second.0.resize(style.rows, second.0[0].clone());
            let (one, two) = (body(&style, &first), body(&style, &second));
            let want = whole(two.as_bytes(), style.flag);
            let schema = schema(style.flag);
            let primed = read_columns(one.as_bytes(), None, &schema).is_some();
            let laid = schema.layouts.read(two.as_bytes());
            prop_assert_eq!(read_columns(two.as_bytes(), None, &schema), want.clone(), "{} after {}", two, one);
            if primed && want.is_some() && !style.flag {
                prop_assert_eq!(laid, want, "{} after {}", two, one);
            } else if style.flag {
                prop_assert_eq!(laid, None, "a boolean feature's bodies are not kept");
            }
        }

        /// A byte changed, added or taken away anywhere in a body laid out
        /// as the last one: read as the whole reader reads it.
        #[test]
        fn a_body_changed_anywhere_reads_as_read_whole(
            style in style(),
            first in (1usize..4).prop_flat_map(values),
            at in any::<prop::sample::Index>(),
            byte in prop::sample::select(b" ,:[]{}\"0123456789.-eE\\x\xc3\x80".to_vec()),
            change in 0u8..3,
        ) {
            let mut first = first;
            first.0.resize(style.rows, first.0[0].clone());
            let one = body(&style, &first).into_bytes();
            let mut two = one.clone();
            let at = at.index(two.len());
            match change {
                0 => two[at] = byte,
                1 => two.insert(at, byte),
                _ => { two.remove(at); }
            }
            let want = whole(&two, style.flag);
            let schema = schema(style.flag);
            read_columns(&one, None, &schema);
            prop_assert_eq!(
                read_columns(&two, None, &schema),
                want,
                "{} after {}",
                String::from_utf8_lossy(&two),
                String::from_utf8_lossy(&one)
            );
        }
    }

    #[test]
    fn a_layout_is_kept_per_schema_and_replaced_by_the_next_body_read_whole() {
        let style = Style {
            python: true,
            id: true,
            flag: false,
            a_type: "FP32",
            b_type: "INT8",
            rows: 1,
            reversed: false,
        };
        let row = |a: &str, b: &str, id: &str| {
            (
                vec![[
                    a.to_string(),
                    "\"red\"".into(),
                    b.to_string(),
                    "true".into(),
                ]],
                id.to_string(),
            )
        };
        let (one, two) = (
            body(&style, &row("1.5", "3", "\"x\"")),
            body(&style, &row("-2.25", "-7", "\"yy\"")),
        );
        let (s, other) = (schema(false), schema(false));
        assert!(s.layouts.read(one.as_bytes()).is_none(), "nothing kept yet");
        let first = read_columns(one.as_bytes(), None, &s).expect("decodes");
        let second = s
            .layouts
            .read(two.as_bytes())
            .expect("laid out as the first");
        assert_eq!(Some(second), whole(two.as_bytes(), false));
        assert_eq!(first.0.as_deref(), Some("x"));
        // Another schema (another model, or a clone) does not read by it.
        assert!(other.layouts.read(two.as_bytes()).is_none());
        assert!(s.clone().layouts.read(two.as_bytes()).is_none());
        // A value the decoder refuses (INT8 300) is read whole, and
        // refused there.
        let refused = body(&style, &row("1", "300", "\"z\""));
        assert!(s.layouts.read(refused.as_bytes()).is_none());
        assert_eq!(read_columns(refused.as_bytes(), None, &s), None);
        // Another layout read whole replaces the kept one.
        let longer = Style { rows: 2, ..style };
        let mut rows = row("1", "2", "\"q\"");
        rows.0.push(rows.0[0].clone());
        let three = body(&longer, &rows);
        assert!(read_columns(three.as_bytes(), None, &s).is_some());
        assert!(s.layouts.read(two.as_bytes()).is_none());
        assert!(s.layouts.read(three.as_bytes()).is_some());
    }
}
