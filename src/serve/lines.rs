//! JSON Lines waiting to be written to the feedback prefix, kept as the
//! text they will be written as: a served row is encoded once, straight
//! from its columns, instead of as a map of owned keys and values per row
//! (which cost a server answering one-row requests about a tenth of its
//! throughput in allocations).

use super::json::{float, string, value};
use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::{Map, Value};

use super::feedback::{ServedModel, ServedPredictions, ServedRecord};
use super::protocol::Value as ServedValue;

/// Lines of JSON, oldest first.
#[derive(Debug, Default)]
pub(super) struct JsonLines {
    text: Vec<u8>,
    /// Where each line ends in `text` (just past its newline).
    ends: Vec<usize>,
    /// The served time's text up to its seconds, for the second of the
    /// latest line.
    second: SecondText,
}

impl JsonLines {
    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Every line, newline-terminated.
    pub(super) fn text(&self) -> &[u8] {
        &self.text
    }

    pub(super) fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }

    /// Drops the `n` oldest lines.
    pub(super) fn drop_oldest(&mut self, n: usize) {
        let n = n.min(self.ends.len());
        if n == 0 {
            return;
        }
        let cut = self.ends[n - 1];
        self.text.drain(..cut);
        self.ends.drain(..n);
        for end in &mut self.ends {
            *end -= cut;
        }
    }

    /// One object as a line.
    pub(super) fn push_map(&mut self, row: &Map<String, Value>) {
        value(&mut self.text, row);
        self.end_line();
    }

    /// Each row of a served request as a prediction-log line: the
    /// features by name, then `_id`, `_row`, `_version`, `_time`,
    /// `_prediction` and, for a classifier, `_confidence` (the fields
    /// `ServedRecord::row` and `feedback::log_answer` give a joined row).
    pub(super) fn push_served(&mut self, keys: &LineKeys, record: &ServedRecord) {
        for i in 0..record.rows() {
            let t = &mut self.text;
            t.push(b'{');
            for (name, cell) in keys.features.iter().zip(record.cells.row(i)) {
                t.extend_from_slice(name);
                match cell {
                    // serde_json writes a non-finite number as null, as
                    // `Number::from_f64` makes it in a map.
                    ServedValue::Number(v) => float(t, *v),
                    ServedValue::Text(v) => string(t, v),
                }
                t.push(b',');
            }
            field(t, "_id");
            string(t, &record.id);
            t.extend_from_slice(b",\"_row\":");
            value(t, &i);
            t.extend_from_slice(&keys.version);
            t.extend_from_slice(b",\"_time\":");
            rfc3339(t, &mut self.second, record.time);
            t.extend_from_slice(b",\"_prediction\":");
            match &record.predictions {
                ServedPredictions::Labels(v) => string(t, &v[i]),
                ServedPredictions::Values(v) => value(t, &v[i]),
            }
            if let Some(c) = record.confidence.get(i) {
                t.extend_from_slice(b",\"_confidence\":");
                value(t, c);
            }
            t.push(b'}');
            self.end_line();
        }
    }

    fn end_line(&mut self) {
        self.text.push(b'\n');
        self.ends.push(self.text.len());
    }
}

/// What every prediction-log line of a model repeats, encoded as JSON once
/// (escaping a dozen feature names on every line was a tenth of the line).
pub(super) struct LineKeys {
    /// `"name":` for each feature, in column order.
    features: Vec<Vec<u8>>,
    /// `,"_version":"…"`.
    version: Vec<u8>,
}

impl LineKeys {
    pub(super) fn new(model: &ServedModel) -> LineKeys {
        let encoded = |name: &str| {
            let mut t = Vec::new();
            field(&mut t, name);
            t
        };
        let mut version = b",".to_vec();
        field(&mut version, "_version");
        string(&mut version, &model.version);
        LineKeys {
            features: model.features.iter().map(|n| encoded(n)).collect(),
            version,
        }
    }
}

/// A time's RFC 3339 text up to its seconds (`"2026-12-06T17:57:50`),
/// kept for the second it was made for: the lines of a second share it,
/// and writing the date anew was most of writing a line's time.
#[derive(Debug, Default)]
struct SecondText {
    /// The Unix second `text` is for; `None` before the first.
    second: Option<i64>,
    text: Vec<u8>,
}

/// `time` as the JSON string `DateTime::to_rfc3339` makes of it (UTC as
/// `+00:00`, the fraction in 0, 3, 6 or 9 digits as it needs), written
/// directly: chrono's formatter was a sixth of a one-row line. Years
/// outside 0–9999 and leap seconds are left to chrono. `second` keeps the
/// text up to the seconds between calls.
fn rfc3339(out: &mut Vec<u8>, second: &mut SecondText, time: DateTime<Utc>) {
    let nanos = time.nanosecond();
    if !(0..=9999).contains(&time.year()) || nanos >= 1_000_000_000 {
        string(out, &time.to_rfc3339());
        return;
    }
    let digits = |out: &mut Vec<u8>, value: u32, width: u32| {
        for k in (0..width).rev() {
            out.push(b'0' + (value / 10u32.pow(k) % 10) as u8);
        }
    };
    if second.second != Some(time.timestamp()) {
        let text = &mut second.text;
        text.clear();
        text.push(b'"');
        digits(text, time.year() as u32, 4);
        for (separator, value) in [
            (b'-', time.month()),
            (b'-', time.day()),
            (b'T', time.hour()),
            (b':', time.minute()),
            (b':', time.second()),
        ] {
            text.push(separator);
            digits(text, value, 2);
        }
        second.second = Some(time.timestamp());
    }
    out.extend_from_slice(&second.text);
    let (value, width) = match nanos {
        0 => (0, 0),
        n if n % 1_000_000 == 0 => (n / 1_000_000, 3),
        n if n % 1_000 == 0 => (n / 1_000, 6),
        n => (n, 9),
    };
    if width > 0 {
        out.push(b'.');
        digits(out, value, width);
    }
    out.extend_from_slice(b"+00:00\"");
}

/// `"name":`, the name escaped as JSON.
fn field(t: &mut Vec<u8>, name: &str) {
    string(t, name);
    t.push(b':');
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    /// Times are written as `to_rfc3339` writes them: every fraction
    /// width, the edges of the day and year, and what is left to chrono.
    #[test]
    fn times_are_written_as_chrono_writes_them() {
        let at = |s: i64, n: u32| DateTime::from_timestamp(s, n).unwrap();
        let times = [
            at(0, 0),
            at(1_764_979_200, 0),
            at(1_764_979_200, 120_000_000),
            at(1_764_979_200, 123_456_000),
            at(1_764_979_200, 123_456_789),
            at(1_764_979_200, 1),
            at(1_764_979_199, 999_999_999),
            at(951_782_400, 5_000),
            at(253_402_300_799, 999_000_000),
            at(253_402_300_800, 0),
            at(-62_135_596_801, 0),
            at(1_483_228_799, 1_500_000_000),
            Utc::now(),
        ];
        // Each time alone, then all in turn and in reverse through one
        // kept second (neighbours in the list share their second or not).
        let mut kept = SecondText::default();
        for time in times.iter().chain(times.iter().rev()).chain(&times) {
            let want = serde_json::to_string(&time.to_rfc3339()).unwrap();
            let mut ours = Vec::new();
            rfc3339(&mut ours, &mut SecondText::default(), *time);
            assert_eq!(String::from_utf8(ours).unwrap(), want);
            let mut ours = Vec::new();
            rfc3339(&mut ours, &mut kept, *time);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                want,
                "after a kept second"
            );
        }
    }

    /// A served record's lines parse to the same objects as its rows built
    /// as maps (the joined rows' shape), odd names and values included;
    /// dropping the oldest keeps the newest lines whole.
    #[test]
    fn served_rows_are_the_objects_their_maps_would_be() {
        let model = ServedModel {
            version: "v3".into(),
            features: vec!["a\nb".to_string(), "color".to_string()],
            target: "quality".into(),
            labels: crate::serve::feedback::LabelKind::Value,
        };
        let record = ServedRecord {
            id: "req \"1\"".into(),
            time: Utc::now(),
            cells: vec![
                crate::serve::protocol::Column::Numbers(vec![1.5, f64::NAN, -0.0]),
                crate::serve::protocol::Column::Texts(vec![
                    "red".into(),
                    "é\"".into(),
                    String::new(),
                ]),
            ]
            .into(),
            predictions: ServedPredictions::Labels(vec!["x".into(), "y".into(), "z".into()].into()),
            confidence: vec![0.9, 0.5, 0.25].into(),
            margins: Vec::new(),
        };
        let mut lines = JsonLines::default();
        lines.push_served(&LineKeys::new(&model), &record);
        assert_eq!(lines.len(), 3);
        let parsed: Vec<Map<String, Value>> = std::str::from_utf8(lines.text())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for (i, got) in parsed.iter().enumerate() {
            let mut want = record.row(&model, i);
            want.insert("_id".into(), Value::String(record.id.clone()));
            want.insert("_row".into(), Value::from(i));
            super::super::feedback::log_answer(&mut want, &model, &record, i);
            assert_eq!(got, &want, "row {i}");
        }
        assert_eq!(parsed[1]["a\nb"], Value::Null, "NaN is null");

        lines.drop_oldest(2);
        assert_eq!(lines.len(), 1);
        let last: Map<String, Value> =
            serde_json::from_slice(lines.text().strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(last, parsed[2]);
        lines.drop_oldest(5);
        assert!(lines.is_empty() && lines.text().is_empty());
    }
}
