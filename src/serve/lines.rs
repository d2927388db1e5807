//! JSON Lines waiting to be written to the feedback prefix, kept as the
//! text they will be written as: a served row is encoded once, straight
//! from its columns, instead of as a map of owned keys and values per row
//! (which cost a server answering one-row requests about a tenth of its
//! throughput in allocations).

use serde::Serialize;
use serde_json::{Map, Value};

use super::feedback::{ServedPredictions, ServedRecord};
use super::served::ServedValue;

/// Lines of JSON, oldest first.
#[derive(Debug, Default)]
pub(super) struct JsonLines {
    text: Vec<u8>,
    /// Where each line ends in `text` (just past its newline).
    ends: Vec<usize>,
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
        write(&mut self.text, row);
        self.end_line();
    }

    /// Each row of a served request as a prediction-log line: the
    /// features by name, then `_id`, `_row`, `_version`, `_time`,
    /// `_prediction` and, for a classifier, `_confidence` (the fields
    /// `ServedRecord::row` and `feedback::log_answer` give a joined row).
    pub(super) fn push_served(&mut self, record: &ServedRecord) {
        let time = record.time.to_rfc3339();
        for i in 0..record.rows() {
            let t = &mut self.text;
            t.push(b'{');
            for (name, cell) in record.features.iter().zip(record.cells.row(i)) {
                field(t, name);
                match cell {
                    // serde_json writes a non-finite number as null, as
                    // `Number::from_f64` makes it in a map.
                    ServedValue::Number(v) => write(t, v),
                    ServedValue::Text(v) => write(t, v),
                }
                t.push(b',');
            }
            field(t, "_id");
            write(t, &record.id);
            t.extend_from_slice(b",\"_row\":");
            write(t, &i);
            t.extend_from_slice(b",\"_version\":");
            write(t, &record.version);
            t.extend_from_slice(b",\"_time\":");
            write(t, &time);
            t.extend_from_slice(b",\"_prediction\":");
            match &record.predictions {
                ServedPredictions::Labels(v) => write(t, &v[i]),
                ServedPredictions::Values(v) => write(t, &v[i]),
            }
            if let Some(c) = record.confidence.get(i) {
                t.extend_from_slice(b",\"_confidence\":");
                write(t, c);
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

/// `"name":`, the name escaped as JSON.
fn field(t: &mut Vec<u8>, name: &str) {
    write(t, name);
    t.push(b':');
}

/// A value as JSON. Writing plain values into a `Vec` cannot fail.
fn write<T: Serialize + ?Sized>(t: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(&mut *t, value).expect("JSON of plain values into memory");
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::Utc;

    use super::*;

    /// A served record's lines parse to the same objects as its rows built
    /// as maps (the joined rows' shape), odd names and values included;
    /// dropping the oldest keeps the newest lines whole.
    #[test]
    fn served_rows_are_the_objects_their_maps_would_be() {
        let record = ServedRecord {
            id: "req \"1\"".into(),
            version: "v3".into(),
            time: Utc::now(),
            features: Arc::from(vec!["a\nb".to_string(), "color".to_string()]),
            cells: vec![
                crate::serve::protocol::Column::Numbers(vec![1.5, f64::NAN, -0.0]),
                crate::serve::protocol::Column::Texts(vec![
                    "red".into(),
                    "é\"".into(),
                    String::new(),
                ]),
            ]
            .into(),
            predictions: ServedPredictions::Labels(vec!["x".into(), "y".into(), "z".into()]),
            confidence: vec![0.9, 0.5, 0.25],
            margins: Vec::new(),
        };
        let mut lines = JsonLines::default();
        lines.push_served(&record);
        assert_eq!(lines.len(), 3);
        let parsed: Vec<Map<String, Value>> = std::str::from_utf8(lines.text())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for (i, got) in parsed.iter().enumerate() {
            let mut want = record.row(i);
            want.insert("_id".into(), Value::String(record.id.clone()));
            want.insert("_row".into(), Value::from(i));
            super::super::feedback::log_answer(&mut want, &record, i);
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
