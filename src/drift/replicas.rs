//! Drift windows over the traffic of all replicas of one version.
//!
//! Each replica keeps its own windows of `window` rows, so with two
//! replicas each window would see half the traffic and the Model would get
//! two verdicts per `window` rows, each on its own slice of it. Instead the
//! operator reads every replica's running total ([`RunningTotal`]) at each
//! poll, adds what each counted since the previous read, and closes one
//! window when the sum reaches `window` rows: one verdict per `window` rows
//! of the version's traffic, on all of it. Sketches merge by adding counts,
//! so this is exact; a window may overshoot `window` by what arrived
//! between two polls (the calibration covers any window size).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::monitor::RunningTotal;
use super::sketch::{DatasetSketch, SketchError};

/// A window closed from the merged traffic of every replica.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedWindow {
    pub started: DateTime<Utc>,
    pub ended: DateTime<Utc>,
    /// How many replicas contributed rows.
    pub replicas: usize,
    pub sketch: DatasetSketch,
}

/// The operator's running merge of one version's replicas.
#[derive(Debug, Clone)]
pub struct ReplicaWindows {
    /// The last total read from each replica, by replica address.
    last: BTreeMap<String, RunningTotal>,
    pending: Option<DatasetSketch>,
    pending_started: DateTime<Utc>,
    contributors: std::collections::BTreeSet<String>,
}

impl ReplicaWindows {
    /// Starts merging at `now`.
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            last: BTreeMap::new(),
            pending: None,
            pending_started: now,
            contributors: Default::default(),
        }
    }

    /// Adds what each replica (`address`, its total now) counted since the
    /// previous read, and closes the pending window when it holds
    /// `window_rows` rows, or when it is `window_duration` old and not empty;
    /// returns the window closed, if one was.
    ///
    /// A replica's first read is only its baseline: its earlier rows cannot
    /// be placed in time (a new replica loses at most one poll's rows; no
    /// clocks of different machines are compared). A replica whose total
    /// restarted (`since` changed, or a count went down) counts its new
    /// total in full. Replicas absent from `totals` are forgotten.
    pub fn advance(
        &mut self,
        totals: &[(String, RunningTotal)],
        window_rows: u64,
        window_duration: Option<Duration>,
        now: DateTime<Utc>,
    ) -> Result<Option<MergedWindow>, SketchError> {
        let mut seen = BTreeMap::new();
        for (address, total) in totals {
            let delta = match self.last.get(address) {
                Some(before) if before.since == total.since => total
                    .sketch
                    .since(&before.sketch)
                    .unwrap_or_else(|| total.sketch.clone()),
                Some(_) => total.sketch.clone(),
                None => {
                    seen.insert(address.clone(), total.clone());
                    continue;
                }
            };
            if delta.rows > 0 {
                match &mut self.pending {
                    Some(p) => p.merge(&delta)?,
                    None => {
                        self.pending = Some(delta);
                    }
                }
                self.contributors.insert(address.clone());
            }
            seen.insert(address.clone(), total.clone());
        }
        self.last = seen;
        let rows = self.pending.as_ref().map_or(0, |p| p.rows);
        let aged = window_duration.is_some_and(|d| {
            (now - self.pending_started).to_std().unwrap_or_default() >= d && rows > 0
        });
        let mut closed = None;
        if rows >= window_rows.max(1) || aged {
            if let Some(sketch) = self.pending.take() {
                closed = Some(MergedWindow {
                    started: self.pending_started,
                    ended: now,
                    replicas: std::mem::take(&mut self.contributors).len(),
                    sketch,
                });
            }
            self.pending_started = now;
        } else if rows == 0 {
            // An empty window starts when its first rows could arrive.
            self.pending_started = now;
        }
        Ok(closed)
    }

    /// Rows counted into the window not yet closed.
    pub fn pending_rows(&self) -> u64 {
        self.pending.as_ref().map_or(0, |p| p.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::profile::{CategoricalProfile, FeatureProfile, ReferenceProfile};
    use crate::drift::sketch::Observation;

    fn profile() -> ReferenceProfile {
        ReferenceProfile {
            features: vec![FeatureProfile::Categorical {
                name: "color".into(),
                profile: CategoricalProfile::fit("color", &["red", "white"]).unwrap(),
            }],
            prediction: FeatureProfile::Categorical {
                name: "prediction".into(),
                profile: CategoricalProfile::fit("prediction", &["0", "1"]).unwrap(),
            },
            calibration: None,
            importance: Vec::new(),
            embedding: None,
        }
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    /// A replica's running total: `red` and `white` rows since `since`.
    fn total(since: i64, red: u64, white: u64) -> RunningTotal {
        let p = profile();
        let mut sketch = DatasetSketch::for_profile(&p);
        for (color, n) in [("red", red), ("white", white)] {
            for _ in 0..n {
                sketch.observe_row(&p, |_| Observation::Text(color), Observation::Text("1"));
            }
        }
        RunningTotal {
            since: t(since),
            sketch,
        }
    }

    fn red_white(w: &MergedWindow) -> (u64, u64) {
        (
            w.sketch.features[0].counts[0],
            w.sketch.features[0].counts[1],
        )
    }

    #[test]
    fn one_window_holds_what_every_replica_served_since_the_last_one() {
        let mut m = ReplicaWindows::new(t(0));
        let a = |red, white| ("http://127.1.0.1:8080".to_string(), total(-60, red, white));
        let b = |red, white| ("http://127.1.0.2:8080".to_string(), total(-30, red, white));
        // First reads of replicas that started before the merge: baselines.
        assert_eq!(m.advance(&[a(100, 0), b(50, 0)], 100, None, t(1)), Ok(None));
        assert_eq!(
            m.pending_rows(),
            0,
            "rows before the merge began are not placed in a window"
        );
        // 60 + 30 new rows: not yet a window of 100.
        assert_eq!(m.advance(&[a(160, 0), b(80, 0)], 100, None, t(2)), Ok(None));
        assert_eq!(m.pending_rows(), 90);
        // 10 + 20 more: 120 rows, one window of both replicas' traffic.
        let w = m
            .advance(&[a(160, 10), b(80, 20)], 100, None, t(3))
            .unwrap()
            .expect("a window of 120 rows");
        assert_eq!((w.started, w.ended), (t(1), t(3)));
        assert_eq!(w.sketch.rows, 120);
        assert_eq!(red_white(&w), (90, 30));
        assert_eq!(w.replicas, 2);
        assert_eq!(m.pending_rows(), 0);
        // The next window starts where this one ended.
        let w = m
            .advance(&[a(260, 10), b(80, 20)], 100, None, t(9))
            .unwrap()
            .expect("100 more rows of one replica");
        assert_eq!((w.started, w.ended, w.replicas), (t(3), t(9), 1));
    }

    #[test]
    fn new_replicas_start_from_their_first_read_and_restarted_ones_count_in_full() {
        let mut m = ReplicaWindows::new(t(0));
        let a = |since, red| ("a".to_string(), total(since, red, 0));
        let b = |white| ("b".to_string(), total(5, 0, white));
        m.advance(&[a(-10, 40)], 100, None, t(1)).unwrap();
        // A new replica: its first read is its baseline.
        m.advance(&[a(-10, 40), b(30)], 100, None, t(6)).unwrap();
        assert_eq!(m.pending_rows(), 0);
        m.advance(&[a(-10, 40), b(60)], 100, None, t(7)).unwrap();
        assert_eq!(m.pending_rows(), 30);
        // `a` restarted (new `since`): its 25 rows since are new.
        m.advance(&[a(7, 25), b(60)], 100, None, t(8)).unwrap();
        assert_eq!(m.pending_rows(), 55);
        // `b` is gone (forgotten); `a` served 45 more: 100 rows close a window.
        let w = m.advance(&[a(7, 70)], 100, None, t(9)).unwrap();
        assert_eq!(w.map(|w| (w.sketch.rows, w.replicas)), Some((100, 2)));
        assert_eq!(m.pending_rows(), 0);
        // Back in the ready set, `b` starts again from a baseline: its rows
        // while it was away are not placed in a window.
        m.advance(&[a(7, 70), b(90)], 100, None, t(10)).unwrap();
        assert_eq!(m.pending_rows(), 0);
        m.advance(&[a(7, 70), b(95)], 100, None, t(11)).unwrap();
        assert_eq!(m.pending_rows(), 5);
    }

    #[test]
    fn a_count_that_went_down_is_a_restart_not_negative_rows() {
        let mut m = ReplicaWindows::new(t(0));
        m.advance(&[("a".into(), total(-5, 50, 0))], 100, None, t(1))
            .unwrap();
        // Same `since` (a clock that did not move) but fewer rows: the
        // server's counts began again.
        m.advance(&[("a".into(), total(-5, 20, 0))], 100, None, t(2))
            .unwrap();
        assert_eq!(m.pending_rows(), 20);
    }

    #[test]
    fn a_time_limited_window_closes_when_old_and_not_empty() {
        let mut m = ReplicaWindows::new(t(0));
        let a = |red| ("a".to_string(), total(-5, red, 0));
        let minute = Some(Duration::from_secs(60));
        assert_eq!(m.advance(&[a(0)], 1000, minute, t(1)), Ok(None));
        // Nothing served for two minutes: no empty window closes, and the
        // window restarts when rows could arrive.
        assert_eq!(m.advance(&[a(0)], 1000, minute, t(121)), Ok(None));
        assert_eq!(
            m.advance(&[a(10)], 1000, minute, t(150)),
            Ok(None),
            "29 s old"
        );
        let w = m
            .advance(&[a(12)], 1000, minute, t(182))
            .unwrap()
            .expect("61 s old");
        assert_eq!(w.sketch.rows, 12);
        assert_eq!((w.started, w.ended), (t(121), t(182)));
    }

    #[test]
    fn sketches_of_other_profiles_are_refused() {
        let mut m = ReplicaWindows::new(t(0));
        m.advance(&[("a".into(), total(1, 0, 0))], 100, None, t(1))
            .unwrap();
        m.advance(&[("a".into(), total(1, 5, 0))], 100, None, t(2))
            .unwrap();
        let mut other = total(1, 0, 0);
        other.sketch.features[0].name = "colour".into();
        other.sketch.features[0].counts[0] = 3;
        other.sketch.rows = 3;
        let err = m
            .advance(&[("a".into(), other)], 100, None, t(4))
            .unwrap_err();
        assert!(matches!(err, SketchError::ColumnMismatch { .. }), "{err:?}");
    }
}
