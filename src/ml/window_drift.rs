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

impl super::artifact::Predictions {
    /// Row `row`'s prediction as the drift sketches count it.
    pub(crate) fn observation(&self, row: usize) -> Observation<'_> {
        match (self.labels.get(row), self.values.get(row)) {
            (Some(label), _) => Observation::Text(label),
            (None, Some(v)) => Observation::Number(*v),
            (None, None) => Observation::Missing,
        }
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
/// features alone. The counting runs on a thread of its own, beside the
/// reading and the data check's statistics.
pub struct WindowDrift<'a> {
    reference: &'a ReferenceProfile,
    counter: Counter,
}

/// Where the window's rows are counted: a thread fed each batch's feature
/// columns, or here when no thread can be started.
enum Counter {
    Thread {
        batches: std::sync::mpsc::SyncSender<Frame>,
        counted: std::thread::JoinHandle<DatasetSketch>,
    },
    Here(DatasetSketch),
}

impl<'a> WindowDrift<'a> {
    pub fn new(reference: &'a ReferenceProfile) -> Self {
        let (batches, received) = std::sync::mpsc::sync_channel::<Frame>(4);
        let profile = reference.clone();
        let counted = std::thread::Builder::new()
            .name("window-drift".into())
            .spawn(move || {
                let mut sketch = DatasetSketch::for_profile(&profile);
                for frame in received {
                    count(&profile, &mut sketch, &frame);
                }
                sketch
            });
        let counter = match counted {
            Ok(counted) => Counter::Thread { batches, counted },
            Err(_) => Counter::Here(DatasetSketch::for_profile(reference)),
        };
        Self { reference, counter }
    }

    /// Counts every row of `frame`.
    pub fn add(&mut self, frame: &Frame) {
        match &mut self.counter {
            Counter::Thread { batches, .. } => {
                // Only the reference's features travel.
                let (names, columns) = self
                    .reference
                    .features
                    .iter()
                    .filter_map(|f| {
                        let i = frame.position(f.name())?;
                        Some((frame.names[i].clone(), frame.columns[i].clone()))
                    })
                    .unzip();
                let part = Frame {
                    source: frame.source.clone(),
                    names,
                    columns,
                    rows: frame.rows,
                };
                // Only a thread that has died stops receiving; `judge` reports it.
                let _ = batches.send(part);
            }
            Counter::Here(sketch) => count(self.reference, sketch, frame),
        }
    }

    /// The window's verdict under `spec`, as of `at`.
    pub fn judge(self, spec: &DriftSpec, at: DateTime<Utc>) -> WindowReport {
        let sketch = match self.counter {
            Counter::Thread { batches, counted } => {
                drop(batches);
                counted
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }
            Counter::Here(sketch) => sketch,
        };
        drift::compare(
            self.reference,
            &DriftConfig::from(spec.clone()),
            &sketch,
            at,
            Some(at),
        )
    }
}

/// Counts every row of `frame` into `sketch`.
fn count(reference: &ReferenceProfile, sketch: &mut DatasetSketch, frame: &Frame) {
    let columns: Vec<Option<&Column>> = reference
        .features
        .iter()
        .map(|f| frame.column(f.name(), "data.features").ok())
        .collect();
    // Times are read as cells; numbers and text in place.
    let cells: Vec<Option<Vec<Cell>>> = columns
        .iter()
        .map(|c| match c {
            Some(c @ Column::Times { .. }) => Some((0..c.len()).map(|i| c.cell(i)).collect()),
            _ => None,
        })
        .collect();
    for row in 0..frame.rows {
        sketch.observe_row(
            reference,
            |j| match (columns[j], &cells[j]) {
                (_, Some(cells)) => observation(&cells[row]),
                (Some(column), None) => column_observation(column, row),
                (None, None) => Observation::Missing,
            },
            Observation::Missing,
        );
    }
}
