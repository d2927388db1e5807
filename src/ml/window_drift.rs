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

/// Every row of `table` counted over `reference`'s bins and judged under
/// `spec`. A feature the table lacks counts as missing in every row (the
/// data check names the missing column itself); the window has no
/// predictions, so the rule reads the features alone.
pub fn window_drift(
    reference: &ReferenceProfile,
    spec: &DriftSpec,
    table: &Table,
    at: DateTime<Utc>,
) -> WindowReport {
    let columns: Vec<Option<&[Cell]>> = reference
        .features
        .iter()
        .map(|f| table.column(f.name(), "data.features").ok())
        .collect();
    let mut sketch = DatasetSketch::for_profile(reference);
    for row in 0..table.rows {
        sketch.observe_row(
            reference,
            |j| columns[j].map_or(Observation::Missing, |c| observation(&c[row])),
            Observation::Missing,
        );
    }
    drift::compare(
        reference,
        &DriftConfig::from(spec.clone()),
        &sketch,
        at,
        Some(at),
    )
}
