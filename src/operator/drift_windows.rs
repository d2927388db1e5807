//! The champion's drift windows over all of its replicas' traffic.
//!
//! Every drift poll reads each ready replica's `/v2/models/{name}/drift`;
//! [`ReplicaWindows`] adds what each counted since the last read and closes
//! one window per `drift.window` rows of the version's whole traffic, which
//! is compared with the champion's reference profile (from its manifest)
//! under the Model's drift settings. The decision core counts each window
//! once (by its end); the newest few are offered again at every reconcile
//! so that a window whose status write failed is not lost.
//!
//! The state lives in the operator's memory: after a restart, windows start
//! again from each replica's next read (rows served while no operator ran
//! are not placed in any window).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use kube::runtime::reflector::ObjectRef;
use tracing::warn;

use crate::api::Model;
use crate::drift::{
    ConfidenceTally, DriftConfig, ReferenceProfile, ReplicaWindows, RunningTotal, compare,
};
use crate::policy::{DriftReading, TestSetReading, WindowEstimate};

/// Merged windows kept per Model, offered to the decision core each time.
const KEEP_READINGS: usize = 8;

/// One Model's merge: the champion it belongs to and its windows so far.
struct ChampionWindows {
    version: u32,
    artifact: String,
    reference: Reference,
    windows: ReplicaWindows,
    readings: VecDeque<DriftReading>,
}

/// What a champion's windows are compared with, read once per champion.
#[derive(Clone)]
struct Reference {
    profile: Arc<ReferenceProfile>,
    /// The champion's validation accuracy (manifest), which the estimated
    /// accuracy of each window is compared with.
    validation_accuracy: Option<f64>,
    /// The reference with the gate's test-set shares, when the artifact
    /// holds the test set's sketch (tables): each window is compared with
    /// it too, for `TestSetStale`.
    test_set: Option<Arc<ReferenceProfile>>,
}

/// Every Model's merge, shared by all reconciles.
#[derive(Default)]
pub struct DriftWindows {
    models: Mutex<HashMap<ObjectRef<Model>, ChampionWindows>>,
}

impl DriftWindows {
    /// Adds the replicas' totals read now to `model`'s merge for champion
    /// `version` (whose artifact is `artifact`; its reference profile is read
    /// once per champion) and returns the merged windows, oldest first.
    pub async fn readings(
        &self,
        model: &Model,
        version: u32,
        artifact: &str,
        totals: &[(String, RunningTotal)],
        now: DateTime<Utc>,
    ) -> Vec<DriftReading> {
        let key = ObjectRef::from_obj(model);
        let known = {
            let models = self.models.lock().unwrap_or_else(|p| p.into_inner());
            models
                .get(&key)
                .filter(|c| c.version == version && c.artifact == artifact)
                .map(|c| c.reference.clone())
        };
        let reference = match known {
            Some(known) => known,
            // No replica answered and nothing merged yet: nothing to read.
            None if totals.is_empty() => return Vec::new(),
            None => match reference_profile(artifact).await {
                Some((profile, validation_accuracy)) => Reference {
                    test_set: test_set_profile(artifact, &profile).await.map(Arc::new),
                    profile,
                    validation_accuracy,
                },
                None => return Vec::new(),
            },
        };
        let config = DriftConfig::from(model.spec.drift.clone());
        let mut models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        let entry = models
            .entry(key)
            .and_modify(|c| {
                if c.version != version || c.artifact != artifact {
                    *c = ChampionWindows::new(version, artifact, reference.clone(), now);
                }
            })
            .or_insert_with(|| ChampionWindows::new(version, artifact, reference.clone(), now));
        match entry
            .windows
            .advance(totals, config.window_rows(), config.window_duration, now)
        {
            Ok(Some(window)) => {
                let report = compare(
                    &entry.reference.profile,
                    &config,
                    &window.sketch,
                    window.started,
                    Some(window.ended),
                );
                if let Some(mut reading) = DriftReading::from_window(&report) {
                    reading.estimate = estimate(
                        &window.sketch.confidence,
                        entry.reference.validation_accuracy,
                    );
                    reading.test_set = entry.reference.test_set.as_ref().and_then(|t| {
                        let against = compare(
                            t,
                            &config,
                            &window.sketch,
                            window.started,
                            Some(window.ended),
                        );
                        DriftReading::from_window(&against).map(|r| TestSetReading {
                            features: r.features,
                            prediction: r.prediction,
                        })
                    });
                    entry.readings.push_back(reading);
                    while entry.readings.len() > KEEP_READINGS {
                        entry.readings.pop_front();
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                warn!(model = %model.metadata.name.as_deref().unwrap_or_default(), error = %e,
                    "a replica's drift counts do not fit the champion's reference profile; skipped")
            }
        }
        entry.readings.iter().cloned().collect()
    }
}

impl ChampionWindows {
    fn new(version: u32, artifact: &str, reference: Reference, now: DateTime<Utc>) -> Self {
        Self {
            version,
            artifact: artifact.to_string(),
            reference,
            windows: ReplicaWindows::new(now),
            readings: VecDeque::new(),
        }
    }
}

/// The reference profile in the champion's `manifest.json`, and its
/// validation accuracy (classifiers).
async fn reference_profile(artifact: &str) -> Option<(Arc<ReferenceProfile>, Option<f64>)> {
    super::observe::read_manifest(artifact, "drift windows")
        .await
        .map(|m| {
            let accuracy = m.metrics.get("accuracy").copied();
            (Arc::new(m.reference), accuracy)
        })
}

/// A merged window's estimated accuracy: its confidence tally, when the
/// champion is a classifier that counted one.
fn estimate(tally: &ConfidenceTally, validation_accuracy: Option<f64>) -> Option<WindowEstimate> {
    (!tally.is_empty()).then(|| WindowEstimate {
        rows: tally.rows,
        expected_correct: tally.expected_correct(),
        validation_accuracy,
    })
}

/// The champion's reference with the shares of its gate's test set, from
/// the sketch the evaluation left beside the gate report; `None` for an
/// artifact without one (image models, artifacts evaluated before it
/// existed) or a sketch over other bins.
async fn test_set_profile(
    artifact: &str,
    reference: &ReferenceProfile,
) -> Option<ReferenceProfile> {
    let uri = crate::api::names::test_set_sketch_uri(artifact);
    let bytes = match crate::data::store::read_bytes(&uri).await {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::debug!(%uri, error = %e, "no test-set sketch; test-set freshness is not measured");
            return None;
        }
    };
    let sketch: crate::drift::DatasetSketch = match serde_json::from_slice(&bytes) {
        Ok(s) => s,
        Err(e) => {
            warn!(%uri, error = %e, "unreadable test-set sketch; test-set freshness is not measured");
            return None;
        }
    };
    let profile = reference.with_shares_of(&sketch);
    if profile.is_none() {
        warn!(%uri, "the test-set sketch does not fit the champion's reference bins; skipped");
    }
    profile
}
