//! The drift of a training window against a champion's drift reference:
//! what the data check reports before a retrain, counted over the same bins
//! and judged by the same rule (`drift::compare`) as live traffic, so "the
//! new data drifted" means what a drift alert means.

use chrono::{DateTime, Utc};

use crate::api::DriftSpec;
use crate::data::{Cell, Table};
use crate::drift::{self, DatasetSketch, DriftConfig, Observation, ReferenceProfile, WindowReport};

/// A table cell as the drift sketches count it.
pub fn observation(cell: &Cell) -> Observation<'_> {
    match cell {
        Cell::Number(x) => Observation::Number(*x),
        Cell::Text(t) => Observation::Text(t),
        Cell::Missing => Observation::Missing,
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

    /// Counts every row of `table`.
    pub fn add(&mut self, table: &Table) {
        let columns: Vec<Option<&[Cell]>> = self
            .reference
            .features
            .iter()
            .map(|f| table.column(f.name(), "data.features").ok())
            .collect();
        for row in 0..table.rows {
            self.sketch.observe_row(
                self.reference,
                |j| columns[j].map_or(Observation::Missing, |c| observation(&c[row])),
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
