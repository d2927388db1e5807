//! The drift of a training window against a champion's drift reference:
//! what the data check reports before a retrain, counted over the same bins
//! and judged by the same rule (`drift::compare`) as live traffic, so "the
//! new data drifted" means what a drift alert means.

use chrono::{DateTime, Utc};

use crate::api::DriftSpec;
use crate::data::{Cell, Column, Frame};
use crate::drift::{self, DatasetSketch, DriftConfig, Observation, ReferenceProfile, WindowReport};

/// A table cell as the drift sketches count it.
pub fn observation(cell: &Cell) -> Observation<'_> {
    match cell {
        Cell::Number(x) => Observation::Number(*x),
        Cell::Text(t) => Observation::Text(t),
        Cell::Missing => Observation::Missing,
    }
}

/// A frame's value as the drift sketches count it (a time as its text:
/// the caller reads time columns as cells).
fn column_observation(column: &Column, row: usize) -> Observation<'_> {
    match column {
        Column::Numbers { values, missing } => {
            if missing.as_ref().is_some_and(|m| m[row]) {
                Observation::Missing
            } else {
                Observation::Number(values[row])
            }
        }
        Column::Codes { codes, names } => names
            .get(codes[row] as usize)
            .map_or(Observation::Missing, |t| Observation::Text(t)),
        Column::Cells(cells) => observation(&cells[row]),
        Column::Times { .. } => Observation::Missing,
    }
}

/// A training window counted over a champion's reference bins batch by
/// batch, then judged under the Model's drift settings. A feature a batch
/// lacks counts as missing in its rows (the data check names the missing
/// column itself); the window has no predictions, so the rule reads the
/// features alone.
pub struct WindowDrift<'a> {
    reference: &'a ReferenceProfile,
    sketch: DatasetSketch,
}

impl<'a> WindowDrift<'a> {
    pub fn new(reference: &'a ReferenceProfile) -> Self {
        Self {
            reference,
            sketch: DatasetSketch::for_profile(reference),
        }
    }

    /// Counts every row of `frame`.
    pub fn add(&mut self, frame: &Frame) {
        let columns: Vec<Option<&Column>> = self
            .reference
            .features
            .iter()
            .map(|f| frame.column(f.name(), "data.features").ok())
            .collect();
        // Times and raw cells are read as cells; numbers and text in place.
        let cells: Vec<Option<Vec<Cell>>> = columns
            .iter()
            .map(|c| match c {
                Some(c @ Column::Times { .. }) => Some((0..c.len()).map(|i| c.cell(i)).collect()),
                _ => None,
            })
            .collect();
        for row in 0..frame.rows {
            self.sketch.observe_row(
                self.reference,
                |j| match (columns[j], &cells[j]) {
                    (_, Some(cells)) => observation(&cells[row]),
                    (Some(column), None) => column_observation(column, row),
                    (None, None) => Observation::Missing,
                },
                Observation::Missing,
            );
        }
    }

    /// The window's verdict under `spec`, as of `at`.
    pub fn judge(&self, spec: &DriftSpec, at: DateTime<Utc>) -> WindowReport {
        drift::compare(
            self.reference,
            &DriftConfig::from(spec.clone()),
            &self.sketch,
            at,
            Some(at),
        )
    }
}
