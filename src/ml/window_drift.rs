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

/// Counts every row of `frame` into `sketch`, column by column: the same
/// counts as [`DatasetSketch::observe_row`] on each row, without matching
/// on each value's kind (a window has tens of millions of values). Numbers
/// under a numeric profile are binned straight from the column, text codes
/// once per distinct code.
fn count(reference: &ReferenceProfile, sketch: &mut DatasetSketch, frame: &Frame) {
    for (profile, counted) in reference.features.iter().zip(&mut sketch.features) {
        let column = frame.column(profile.name(), "data.features").ok();
        match (column, profile) {
            (None, _) => counted.missing += frame.rows as u64,
            (
                Some(Column::Numbers { values, missing }),
                drift::FeatureProfile::Numeric { profile, .. },
            ) => {
                let mut add = |x: f64, null: bool| {
                    if null {
                        counted.missing += 1;
                        return;
                    }
                    match counted.counts.get_mut(profile.bin(x)) {
                        Some(count) => *count += 1,
                        None => counted.missing += 1,
                    }
                };
                match missing {
                    None => values.iter().for_each(|&x| add(x, false)),
                    Some(missing) => values.iter().zip(missing).for_each(|(&x, &m)| add(x, m)),
                }
            }
            (Some(Column::Codes { codes, names }), _) => {
                let bins: Vec<Option<usize>> = names
                    .iter()
                    .map(|t| drift::bin_of(profile, Observation::Text(t)))
                    .collect();
                for &code in codes {
                    match bins
                        .get(code as usize)
                        .copied()
                        .flatten()
                        .and_then(|b| counted.counts.get_mut(b))
                    {
                        Some(count) => *count += 1,
                        None => counted.missing += 1,
                    }
                }
            }
            // Times are read as cells; numbers under a categorical profile
            // and raw cells value by value.
            (Some(column @ Column::Times { .. }), _) => {
                for row in 0..column.len() {
                    counted.observe(profile, observation(&column.cell(row)));
                }
            }
            (Some(column), _) => {
                for row in 0..column.len() {
                    counted.observe(profile, column_observation(column, row));
                }
            }
        }
    }
    // The window has no predictions.
    sketch.prediction.missing += frame.rows as u64;
    sketch.rows += frame.rows as u64;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::{CategoricalProfile, FeatureProfile, NumericProfile};

    fn numeric(name: &str, bins: usize) -> FeatureProfile {
        let values: Vec<f64> = (0..200).map(|i| f64::from(i) / 2.0).collect();
        FeatureProfile::Numeric {
            name: name.into(),
            profile: NumericProfile::fit(name, &values, bins).unwrap(),
        }
    }

    fn categorical(name: &str, values: &[&str]) -> FeatureProfile {
        FeatureProfile::Categorical {
            name: name.into(),
            profile: CategoricalProfile::fit(name, values).unwrap(),
        }
    }

    /// The column-by-column count is the row-by-row count, on every kind
    /// of column and profile a window can bring, nulls, values outside the
    /// bins, unknown codes and a column the batch lacks included.
    #[test]
    fn counting_by_column_counts_what_counting_by_row_counts() {
        let reference = ReferenceProfile::new(
            vec![
                numeric("few bins", 10),
                // More edges than are counted without bisection.
                numeric("many bins", 60),
                numeric("masked", 10),
                categorical("color", &["red", "green", "blue"]),
                numeric("number as text", 10),
                categorical("class as number", &["1", "2", "3"]),
                numeric("when", 10),
                categorical("cells", &["a", "b"]),
                numeric("absent", 10),
            ],
            categorical("prediction", &["p", "q"]),
        );
        let rows = 500;
        let x = |i: usize| (i as f64 * 0.731).rem_euclid(130.0) - 15.0;
        let mut numbers: Vec<f64> = (0..rows).map(x).collect();
        numbers[3] = f64::NAN;
        numbers[4] = 99.5; // the last edge itself
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let time = chrono::DateTime::from_timestamp(1_700_000_000, 0);
        let frame = Frame {
            source: "window".into(),
            names: names(&[
                "few bins",
                "many bins",
                "masked",
                "color",
                "number as text",
                "class as number",
                "when",
                "cells",
            ]),
            columns: vec![
                Column::Numbers {
                    values: numbers.clone(),
                    missing: None,
                },
                Column::Numbers {
                    values: numbers.iter().map(|v| v * 0.8).collect(),
                    missing: None,
                },
                Column::Numbers {
                    values: numbers.clone(),
                    missing: Some((0..rows).map(|i| i % 7 == 0).collect()),
                },
                Column::Codes {
                    codes: (0..rows)
                        .map(|i| match i % 6 {
                            5 => crate::data::MISSING,
                            4 => 9, // no such name
                            c => c as u32 % 4,
                        })
                        .collect(),
                    names: names(&["red", "green", "purple", "blue"]),
                },
                Column::Codes {
                    codes: (0..rows).map(|i| i as u32 % 3).collect(),
                    names: names(&["1.5", " 70 ", "many"]),
                },
                Column::Numbers {
                    values: (0..rows).map(|i| (i % 4) as f64).collect(),
                    missing: None,
                },
                Column::Times {
                    values: (0..rows).map(|i| time.filter(|_| i % 2 == 0)).collect(),
                    date_only: false,
                },
                Column::Cells(
                    (0..rows)
                        .map(|i| match i % 3 {
                            0 => Cell::Text("a".into()),
                            1 => Cell::Number(2.0),
                            _ => Cell::Missing,
                        })
                        .collect(),
                ),
            ],
            rows,
        };
        let mut by_column = DatasetSketch::for_profile(&reference);
        count(&reference, &mut by_column, &frame);
        count(&reference, &mut by_column, &frame);

        let mut by_row = DatasetSketch::for_profile(&reference);
        for _ in 0..2 {
            for row in 0..rows {
                by_row.observe_row(
                    &reference,
                    |j| {
                        let name = reference.features[j].name();
                        match frame.column(name, "data.features") {
                            Ok(column @ Column::Times { .. }) => match column.cell(row) {
                                Cell::Missing => Observation::Missing,
                                // Text that is no number: missing under a numeric profile.
                                _ => Observation::Text("a time"),
                            },
                            Ok(column) => column_observation(column, row),
                            Err(_) => Observation::Missing,
                        }
                    },
                    Observation::Missing,
                );
            }
        }
        assert_eq!(by_column, by_row);
        // Not vacuous: every bin kind was reached.
        let f = &by_column.features;
        assert_eq!(f[0].counts.first(), Some(&(2 * 61)), "below the first edge");
        assert!(
            f[0].counts.last().is_some_and(|&c| c > 0),
            "above the last edge and NaN"
        );
        assert!(f[1].counts.len() > 40 && f[1].counts.iter().filter(|&&c| c > 0).count() > 40);
        assert_eq!(f[2].missing, 2 * 72, "the masked rows");
        assert_eq!(f[8].missing, 2 * rows as u64, "the absent column");
        assert_eq!(by_column.rows, 2 * rows as u64);
        assert_eq!(by_column.prediction.missing, 2 * rows as u64);
    }
}
