//! A served request's feature values as the feedback worker keeps them:
//! one list, feature after feature, instead of the decoder's list per
//! column.
//!
//! The request path allocates the record and the feedback worker's thread
//! frees it, often much later (evicted at the pending cap); a freed block
//! that belongs to another thread is the allocator's slow path. A dozen
//! columns were a dozen such frees a request; in one list they are one.

use crate::drift::Observation;

use super::protocol::Column;

/// One served value.
#[derive(Debug, Clone, PartialEq)]
pub enum ServedValue {
    Number(f64),
    Text(String),
}

impl ServedValue {
    /// The value as the drift sketches read it.
    pub(super) fn observation(&self) -> Observation<'_> {
        match self {
            ServedValue::Number(v) => Observation::Number(*v),
            ServedValue::Text(v) => Observation::Text(v),
        }
    }
}

/// Feature values of a served request: `rows` values a feature, feature
/// after feature, in the model's feature order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServedCells {
    rows: usize,
    cells: Vec<ServedValue>,
}

impl From<Vec<Column>> for ServedCells {
    /// The decoder's columns, each of the same length (one a row), moved
    /// in: numbers copied, texts moved.
    fn from(columns: Vec<Column>) -> Self {
        let rows = columns.first().map_or(0, Column::rows);
        let mut cells = Vec::with_capacity(rows * columns.len());
        for column in columns {
            match column {
                Column::Numbers(v) => cells.extend(v.into_iter().map(ServedValue::Number)),
                Column::Texts(v) => cells.extend(v.into_iter().map(ServedValue::Text)),
            }
            debug_assert_eq!(cells.len() % rows.max(1), 0, "columns of one length");
        }
        ServedCells { rows, cells }
    }
}

impl ServedCells {
    /// Feature `feature`'s value in row `row`, if both exist.
    pub fn get(&self, feature: usize, row: usize) -> Option<&ServedValue> {
        if row >= self.rows {
            return None;
        }
        self.cells.get(feature * self.rows + row)
    }

    /// Row `row`'s values in feature order.
    pub fn row(&self, row: usize) -> impl Iterator<Item = &ServedValue> {
        let start = if row < self.rows {
            row
        } else {
            self.cells.len()
        };
        self.cells.iter().skip(start).step_by(self.rows.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_read_back_by_feature_and_row_as_the_columns_held_them() {
        let cells = ServedCells::from(vec![
            Column::Numbers(vec![1.5, -0.0, f64::NAN]),
            Column::Texts(vec!["red".into(), "blue".into(), String::new()]),
            Column::Numbers(vec![7.0, 8.0, 9.0]),
        ]);
        assert_eq!(cells.get(0, 0), Some(&ServedValue::Number(1.5)));
        assert_eq!(cells.get(1, 1), Some(&ServedValue::Text("blue".into())));
        assert_eq!(cells.get(2, 2), Some(&ServedValue::Number(9.0)));
        // Off the diagonal: a feature's values, not a row's.
        assert_eq!(cells.get(1, 0), Some(&ServedValue::Text("red".into())));
        assert_eq!(cells.get(2, 1), Some(&ServedValue::Number(8.0)));
        assert_eq!(cells.get(0, 1), cells.row(1).next());
        assert_eq!(cells.get(3, 0), None, "no fourth feature");
        assert_eq!(cells.get(0, 3), None, "no fourth row");
        let row: Vec<&ServedValue> = cells.row(1).collect();
        assert_eq!(
            row,
            [
                &ServedValue::Number(-0.0),
                &ServedValue::Text("blue".into()),
                &ServedValue::Number(8.0)
            ]
        );
        assert!(matches!(cells.get(0, 1), Some(ServedValue::Number(z)) if z.is_sign_negative()));
        assert!(matches!(cells.row(2).next(), Some(ServedValue::Number(n)) if n.is_nan()));
        assert_eq!(cells.row(3).count(), 0, "no fourth row");
        assert_eq!(ServedCells::from(Vec::new()).row(0).count(), 0);
    }
}
