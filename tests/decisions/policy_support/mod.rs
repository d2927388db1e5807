//! Builders for decision-core tests: a Model from the north-star fixture and
//! a small world that applies the core's actions the way the operator would.

#![allow(dead_code)]

pub mod cron;

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use driftline::api::{
    DataVerdict, GateCheck, GateVerdict, Lineage, Model, ModelSpec, ModelVersion, ModelVersionSpec,
    ModelVersionStatus, TrafficWeight, VersionPhase, load_model_config,
};
use driftline::policy::{
    Action, CanaryMetrics, DataCheckOutcome, DataCheckResult, Decision, GateResult, JobState,
    ManualAction, ManualRequest, Observations, ServingMetrics, TrainingJob,
    apply_to_version_status, decide, version_written_by,
};

pub const FIXTURE: &str = include_str!("../../fixtures/wine-quality.yaml");

pub fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .expect("RFC 3339 time")
}

/// The north-star spec.
pub fn spec() -> ModelSpec {
    load_model_config(FIXTURE).expect("fixture is a valid Model")
}

/// A spec without schedule, drift or new-data triggers (only explicit events train).
pub fn quiet_spec() -> ModelSpec {
    let mut s = spec();
    s.retrain = None;
    s
}

pub fn model(spec: ModelSpec) -> Model {
    let mut m = Model::new("wine-quality", spec);
    m.metadata.namespace = Some("ml".into());
    m.metadata.generation = Some(1);
    m
}

pub fn passed_gate() -> GateVerdict {
    GateVerdict {
        passed: true,
        checks: vec![GateCheck {
            kind: "metric".into(),
            name: "accuracy".into(),
            slice: None,
            value: Some(0.91),
            bound: Some(0.85),
            passed: true,
            message: "accuracy 0.910 >= min 0.850".into(),
        }],
    }
}

pub fn failed_gate() -> GateVerdict {
    GateVerdict {
        passed: false,
        checks: vec![
            GateCheck {
                kind: "metric".into(),
                name: "accuracy".into(),
                slice: None,
                value: Some(0.81),
                bound: Some(0.85),
                passed: false,
                message: "accuracy 0.810 < min 0.850".into(),
            },
            GateCheck {
                kind: "slice".into(),
                name: "accuracy".into(),
                slice: Some("red".into()),
                value: Some(0.9),
                bound: Some(0.8),
                passed: true,
                message: "slice red: accuracy 0.900 >= min 0.800".into(),
            },
        ],
    }
}

/// Healthy serving numbers: `requests` requests, 0.2 % errors, 20 ms p99.
pub fn healthy(requests: u64) -> ServingMetrics {
    ServingMetrics {
        requests,
        errors: requests / 500,
        p99_latency_ms: Some(20.0),
        labelled: 0,
        correct: 0,
        slow: None,
        ..Default::default()
    }
}

pub fn window(
    version: u32,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    canary: ServingMetrics,
) -> CanaryMetrics {
    CanaryMetrics {
        version,
        window_start: start,
        window_end: end,
        canary,
        stable: healthy(10_000),
        prediction_divergence: Some(0.02),
    }
}

/// The Model, its versions and what the operator would observe, kept in
/// step with the actions the core returns.
pub struct World {
    pub model: Model,
    pub versions: Vec<ModelVersion>,
    pub now: DateTime<Utc>,
    pub jobs: Vec<TrainingJob>,
    pub gates: Vec<GateResult>,
    pub ready: BTreeSet<u32>,
    pub source_digest: Option<String>,
    /// What "new data" compares, when it differs from `source_digest` (a
    /// day left the rolling window); `source_digest` otherwise.
    pub source_against_last: Option<String>,
    /// Why the source could not be listed.
    pub source_error: Option<String>,
    /// Finished data checks: every started version's data passes unless a
    /// test says otherwise ([`World::data_check`]).
    pub data_checks: Vec<DataCheckResult>,
    /// The traffic split the last decision moved to, if it moved traffic.
    pub moved_traffic: Option<Vec<TrafficWeight>>,
}

impl World {
    pub fn new(spec: ModelSpec, now: DateTime<Utc>) -> Self {
        Self {
            model: model(spec),
            versions: Vec::new(),
            now,
            jobs: Vec::new(),
            gates: Vec::new(),
            ready: BTreeSet::new(),
            source_digest: None,
            source_against_last: None,
            source_error: None,
            data_checks: Vec::new(),
            moved_traffic: None,
        }
    }

    pub fn observations(&self) -> Observations {
        let mut obs = Observations::at(self.now);
        obs.generation = self.model.metadata.generation;
        obs.jobs = self.jobs.clone();
        // A recorded gate is never read again, as in the operator (which
        // reads a report only while `awaits_gate`; here a report is also
        // seen in the decision that finishes the training, so one step
        // trains and gates).
        obs.gate_results = self
            .gates
            .iter()
            .filter(|g| {
                !self.versions.iter().any(|v| {
                    v.spec.version == g.version
                        && v.status.as_ref().is_some_and(|s| s.gate.is_some())
                })
            })
            .cloned()
            .collect();
        obs.ready_versions = self.ready.clone();
        // The gateway's pods start with the first version's.
        obs.gateway_ready = !self.ready.is_empty();
        obs.source_digest = self.source_digest.clone();
        obs.source_digest_against_last = self
            .source_against_last
            .clone()
            .or_else(|| self.source_digest.clone());
        obs.source_error = self.source_error.clone();
        obs.data_checks = self.data_checks.clone();
        obs
    }

    /// What version `version`'s data check says.
    pub fn data_check(&mut self, version: u32, verdict: DataVerdict) {
        self.data_checks.retain(|d| d.version != version);
        self.data_checks.push(DataCheckResult {
            version,
            outcome: DataCheckOutcome::Verdict(verdict),
        });
    }

    /// Decides on `obs` and applies the decision.
    pub fn step_with(&mut self, obs: Observations) -> Decision {
        let d = decide(&self.model, &self.versions, &obs);
        self.apply(&d);
        d
    }

    /// Decides on the current observations and applies the decision.
    pub fn step(&mut self) -> Decision {
        self.step_with(self.observations())
    }

    pub fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    pub fn request(&mut self, id: &str, action: ManualAction) -> Decision {
        let mut obs = self.observations();
        obs.request = Some(ManualRequest {
            id: id.into(),
            action,
        });
        self.step_with(obs)
    }

    pub fn finish_job(&mut self, version: u32, state: JobState) {
        self.jobs.retain(|j| j.version != version);
        self.jobs.push(TrainingJob {
            version,
            state,
            unschedulable: None,
        });
    }

    pub fn gate(&mut self, version: u32, verdict: GateVerdict) {
        self.gates.retain(|g| g.version != version);
        self.gates.push(GateResult { version, verdict });
    }

    pub fn phase(&self, version: u32) -> Option<VersionPhase> {
        self.versions
            .iter()
            .find(|v| v.spec.version == version)
            .and_then(|v| v.status.as_ref())
            .map(|s| s.phase)
    }

    pub fn apply(&mut self, d: &Decision) {
        let before = self.model.status.as_ref().map(|s| s.traffic.clone());
        self.moved_traffic = (before.as_ref() != Some(&d.status.traffic)
            && !(before.is_none() && d.status.traffic.is_empty()))
        .then(|| d.status.traffic.clone());
        self.model.status = Some(d.status.clone());
        for a in &d.actions {
            match a {
                Action::StartTraining {
                    version,
                    trigger,
                    reason,
                    config_hash,
                    phase,
                } => {
                    let mut v = ModelVersion::new(
                        &format!("wine-quality-v{version}"),
                        ModelVersionSpec {
                            model: "wine-quality".into(),
                            version: *version,
                            lineage: Lineage {
                                trigger: *trigger,
                                reason: reason.clone(),
                                seed: 7,
                                config_hash: config_hash.clone(),
                                driftline_version: "test".into(),
                                source_digest: None,
                            },
                        },
                    );
                    v.status = Some(ModelVersionStatus {
                        phase: *phase,
                        ..Default::default()
                    });
                    self.versions.push(v);
                    self.data_check(
                        *version,
                        DataVerdict {
                            passed: true,
                            checks: Vec::new(),
                        },
                    );
                    self.jobs.push(TrainingJob {
                        version: *version,
                        state: JobState::Running,
                        unschedulable: None,
                    });
                }
                Action::DeleteVersion { version, .. } => {
                    self.versions.retain(|v| v.spec.version != *version);
                    self.jobs.retain(|j| j.version != *version);
                }
                // Phases, gate summaries and rollout records land in the
                // version's status as the operator's plan writes them.
                other => {
                    if let Some(v) = version_written_by(other)
                        .and_then(|n| self.versions.iter_mut().find(|v| v.spec.version == n))
                    {
                        apply_to_version_status(
                            v.status.get_or_insert_with(Default::default),
                            other,
                            self.now,
                        );
                    }
                }
            }
        }
    }

    /// Trains (if needed), gates and promotes until `version` is champion at 100 %.
    pub fn bootstrap(&mut self) {
        let d = self.step();
        let (n, _, _) = d.started_training().expect("bootstrap starts training");
        self.finish_job(n, JobState::Succeeded);
        self.gate(n, passed_gate());
        self.ready.insert(n);
        self.step();
        assert_eq!(
            self.phase(n),
            Some(VersionPhase::Champion),
            "bootstrap promotes v{n}"
        );
    }
}

pub fn has_action(d: &Decision, pred: impl Fn(&Action) -> bool) -> bool {
    d.actions.iter().any(pred)
}

pub fn event<'a>(d: &'a Decision, reason: &str) -> Option<&'a str> {
    d.events().find(|(r, _)| *r == reason).map(|(_, m)| m)
}
