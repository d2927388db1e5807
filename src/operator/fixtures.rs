//! Fixtures for the operator's unit tests, built to read like the story:
//! `model_version(2, Canary).with_artifact("s3://…")`.

use chrono::{DateTime, Utc};

use crate::api::{
    ArtifactRef, CanaryStatus, Lineage, Model, ModelVersion, ModelVersionSpec, ModelVersionStatus,
    RunStage, TrainingRun, TrainingTrigger, VersionPhase, load_model_config, version_name,
};

use super::children::{ChildSettings, GpuPlacement};

/// A fixed instant: tests read no clock.
pub fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

/// The north-star Model `ml/wine-quality`, as stored (with a uid).
pub fn wine() -> Model {
    let spec = load_model_config(include_str!("../../tests/fixtures/wine-quality.yaml"))
        .expect("north-star fixture");
    let mut m = Model::new("wine-quality", spec);
    m.metadata.namespace = Some("ml".into());
    m.metadata.uid = Some("uid-1".into());
    m.metadata.generation = Some(1);
    m
}

/// Settings with every option set: credentials, a gateway ServiceAccount
/// and a Gateway for HTTPRoutes.
pub fn settings() -> ChildSettings {
    ChildSettings {
        artifact_root: "s3://models/root/".into(),
        image: "driftline:1".into(),
        credentials_secret: Some("s3-creds".into()),
        gateway_service_account: Some("driftline-gateway".into()),
        http_route_parent: Some(("gateways".into(), "public".into())),
        gpu_placement: GpuPlacement::default(),
        network_policies: None,
    }
}

/// ModelVersion `wine-quality-v<n>` in `phase`, its artifact under the
/// fixture settings' root.
pub fn model_version(n: u32, phase: VersionPhase) -> ModelVersion {
    let mut v = ModelVersion::new(
        &format!("wine-quality-v{n}"),
        ModelVersionSpec {
            model: "wine-quality".into(),
            version: n,
            lineage: Lineage {
                trigger: TrainingTrigger::Initial,
                reason: "first version".into(),
                seed: 7,
                config_hash: "abc".into(),
                driftline_version: "test".into(),
                source_digest: None,
            },
        },
    );
    v.metadata.namespace = Some("ml".into());
    v.metadata.labels = Some(
        [(
            crate::api::names::MODEL_LABEL.to_string(),
            "wine-quality".to_string(),
        )]
        .into(),
    );
    v.status = Some(ModelVersionStatus {
        phase,
        artifact: Some(ArtifactRef {
            uri: format!("s3://models/root/ml/wine-quality/v{n}"),
            ..Default::default()
        }),
        ..Default::default()
    });
    v
}

/// Builder steps on a fixture version.
pub trait VersionFixture {
    /// The artifact it recorded.
    fn with_artifact(self, uri: &str) -> Self;
    /// Without any status (its first status write was lost).
    fn without_status(self) -> Self;
}

impl VersionFixture for ModelVersion {
    fn with_artifact(mut self, uri: &str) -> Self {
        if let Some(s) = self.status.as_mut() {
            s.artifact = Some(ArtifactRef {
                uri: uri.into(),
                ..Default::default()
            });
        }
        self
    }

    fn without_status(mut self) -> Self {
        self.status = None;
        self
    }
}

/// A training run of version `n`, started by the first version's trigger.
pub fn training_run(n: u32) -> TrainingRun {
    TrainingRun {
        version: version_name(n),
        trigger: TrainingTrigger::Initial,
        reason: "first version".into(),
        stage: RunStage::Training,
        started_at: at("2026-06-01T08:00:00Z"),
        config_hash: "abc".into(),
        generation: Some(1),
        outcome: None,
        finished_at: None,
    }
}

/// Version `n` in the first step of its canary, not yet given traffic.
pub fn canary(n: u32) -> CanaryStatus {
    CanaryStatus {
        version: version_name(n),
        step: 0,
        step_started_at: None,
        failures: 0,
        awaiting_promotion: false,
        analyses: Vec::new(),
    }
}
