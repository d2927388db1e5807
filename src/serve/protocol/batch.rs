//! Decoded rows as the server keeps them: one list of values, feature
//! after feature, from the decoder through the model, the drift monitor
//! and the feedback worker's record.
//!
//! One list instead of a list a column: a dozen columns were a dozen
//! allocations on the request path, and a dozen frees on the feedback
//! worker's thread (a block freed by another thread than the one that
//! allocated it is the allocator's slow path).

use crate::drift::Observation;

/// One decoded value: a number, or a text (a category, or a boolean
/// feature's `"true"` / `"false"`).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Text(String),
}

impl Value {
    /// The value as the drift sketches read it.
    pub fn observation(&self) -> Observation<'_> {
        match self {
            Value::Number(v) => Observation::Number(*v),
            Value::Text(v) => Observation::Text(v),
        }
    }

    /// The number, if the value is one.
    pub fn number(&self) -> Option<f64> {
        match self {
            Value::Number(v) => Some(*v),
            Value::Text(_) => None,
        }
    }

    /// The text, if the value is one.
    pub fn text(&self) -> Option<&str> {
        match self {
            Value::Number(_) => None,
            Value::Text(v) => Some(v),
        }
    }
}

/// One feature's values as a list: a way to build a [`DecodedBatch`].
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Numbers(Vec<f64>),
    Texts(Vec<String>),
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Column::Numbers(v) => v.len(),
            Column::Texts(v) => v.len(),
        }
    }
}

/// Decoded rows: `rows` values a feature, feature after feature, in the
/// model's feature order. Every feature has a value in every row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecodedBatch {
    rows: usize,
    values: Vec<Value>,
}

impl DecodedBatch {
    /// `values` holds `rows` values a feature, feature after feature.
    pub(super) fn new(rows: usize, values: Vec<Value>) -> Self {
        debug_assert_eq!(values.len() % rows.max(1), 0, "whole columns");
        DecodedBatch { rows, values }
    }

    /// `rows` rows without feature values: an image model's batch, whose
    /// drift reads the output's monitored values instead.
    pub fn without_features(rows: usize) -> Self {
        DecodedBatch {
            rows,
            values: Vec::new(),
        }
    }

    /// Rows in the batch.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Features in the batch.
    pub fn features(&self) -> usize {
        self.values.len().checked_div(self.rows).unwrap_or(0)
    }

    /// Feature `feature`'s values, one a row. Panics when there is no
    /// such feature, as indexing past a list's end does.
    pub fn column(&self, feature: usize) -> &[Value] {
        &self.values[feature * self.rows..(feature + 1) * self.rows]
    }

    /// Feature `feature`'s value in row `row`, if both exist.
    pub fn get(&self, feature: usize, row: usize) -> Option<&Value> {
        if row >= self.rows {
            return None;
        }
        self.values.get(feature * self.rows + row)
    }

    /// Row `row`'s values in feature order.
    pub fn row(&self, row: usize) -> impl Iterator<Item = &Value> {
        let start = if row < self.rows {
            row
        } else {
            self.values.len()
        };
        self.values.iter().skip(start).step_by(self.rows.max(1))
    }
}

impl From<Vec<Column>> for DecodedBatch {
    /// Columns of one length, one a feature in the model's order. Panics
    /// when their lengths differ: a batch has a value for every feature in
    /// every row.
    fn from(columns: Vec<Column>) -> Self {
        let rows = columns.first().map_or(0, Column::len);
        let mut values = Vec::with_capacity(rows * columns.len());
        for column in columns {
            assert_eq!(column.len(), rows, "columns of one length");
            match column {
                Column::Numbers(v) => values.extend(v.into_iter().map(Value::Number)),
                Column::Texts(v) => values.extend(v.into_iter().map(Value::Text)),
            }
        }
        DecodedBatch { rows, values }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back_by_feature_and_row_as_the_columns_held_them() {
        let batch = DecodedBatch::from(vec![
            Column::Numbers(vec![1.5, -0.0, f64::NAN]),
            Column::Texts(vec!["red".into(), "blue".into(), String::new()]),
            Column::Numbers(vec![7.0, 8.0, 9.0]),
        ]);
        assert_eq!((batch.rows(), batch.features()), (3, 3));
        assert_eq!(batch.get(0, 0), Some(&Value::Number(1.5)));
        assert_eq!(batch.get(1, 1), Some(&Value::Text("blue".into())));
        assert_eq!(batch.get(2, 2), Some(&Value::Number(9.0)));
        // Off the diagonal: a feature's values, not a row's.
        assert_eq!(batch.get(1, 0), Some(&Value::Text("red".into())));
        assert_eq!(batch.get(2, 1), Some(&Value::Number(8.0)));
        assert_eq!(batch.get(0, 1), batch.row(1).next());
        assert_eq!(batch.get(3, 0), None, "no fourth feature");
        assert_eq!(batch.get(0, 3), None, "no fourth row");
        assert_eq!(
            batch.column(2),
            [Value::Number(7.0), Value::Number(8.0), Value::Number(9.0)]
        );
        assert_eq!(batch.column(1)[2].text(), Some(""));
        assert_eq!(batch.column(1)[2].number(), None);
        // The drift monitor reads a value as its kind.
        assert!(matches!(batch.column(2)[1].observation(), Observation::Number(v) if v == 8.0));
        assert!(matches!(
            batch.column(1)[0].observation(),
            Observation::Text("red")
        ));
        let row: Vec<&Value> = batch.row(1).collect();
        assert_eq!(
            row,
            [
                &Value::Number(-0.0),
                &Value::Text("blue".into()),
                &Value::Number(8.0)
            ]
        );
        assert!(matches!(batch.get(0, 1), Some(Value::Number(z)) if z.is_sign_negative()));
        assert!(matches!(batch.row(2).next(), Some(Value::Number(n)) if n.is_nan()));
        assert_eq!(batch.row(3).count(), 0, "no fourth row");
        assert_eq!(DecodedBatch::from(Vec::new()).row(0).count(), 0);
        let images = DecodedBatch::without_features(4);
        assert_eq!((images.rows(), images.features()), (4, 0));
        assert_eq!(images.row(0).count(), 0);
    }

    #[test]
    #[should_panic(expected = "columns of one length")]
    fn columns_of_different_lengths_make_no_batch() {
        let _ = DecodedBatch::from(vec![
            Column::Numbers(vec![1.0, 2.0]),
            Column::Texts(vec!["red".into()]),
        ]);
    }
}
