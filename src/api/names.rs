//! Names of everything the operator creates for a Model, and the labels and
//! annotations it shares with users and pods. One home: the operator, the
//! gateway, the CLI and the tests all call these.

use super::status::version_name;

/// The serving port of model servers and gateways.
pub const SERVE_PORT: u16 = 8080;
/// Label on every child: the owning Model's name.
pub const MODEL_LABEL: &str = "driftline.dev/model";
/// Label on version children: the version number `n`.
pub const VERSION_LABEL: &str = "driftline.dev/version";
/// Label on every child: `training`, `serving` or `gateway`.
pub const ROLE_LABEL: &str = "driftline.dev/role";
/// [`ROLE_LABEL`] of training Jobs and their pods.
pub const ROLE_TRAINING: &str = "training";
/// [`ROLE_LABEL`] of a version's data check Job and its pod.
pub const ROLE_DATA_CHECK: &str = "datacheck";
/// [`ROLE_LABEL`] of a version's serving Deployment, Service and pods.
pub const ROLE_SERVING: &str = "serving";
/// [`ROLE_LABEL`] of the Model's gateway.
pub const ROLE_GATEWAY: &str = "gateway";
/// [`ROLE_LABEL`] of ModelVersions.
pub const ROLE_VERSION: &str = "version";
/// Standard label naming the manager of every child.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`], also the server-side-apply field manager.
pub const MANAGER: &str = "driftline-operator";
/// Annotation asking for a retraining now; its value is the request id.
pub const RETRAIN_ANNOTATION: &str = "driftline.dev/retrain";
/// Annotation asking to promote a version: `v3` or [`PROMOTE_CANARY`] (empty
/// also means the canary), optionally followed by the request id: `v3 <id>`.
pub const PROMOTE_ANNOTATION: &str = "driftline.dev/promote";
/// The value of [`PROMOTE_ANNOTATION`] that promotes the running canary.
pub const PROMOTE_CANARY: &str = "canary";
/// Annotation asking to roll back; its value is the request id.
pub const ROLLBACK_ANNOTATION: &str = "driftline.dev/rollback";
/// Annotation naming the user behind a retrain, promote or rollback request
/// (`driftline promote` writes the kubeconfig's user), for the audit trail.
pub const REQUESTED_BY_ANNOTATION: &str = "driftline.dev/requested-by";
/// The manifest every artifact carries (written by `ml::artifact`).
pub const MANIFEST_FILE: &str = "manifest.json";
/// Where an operator whose clock runs scaled (`--time-scale`) publishes that
/// clock (a ConfigMap in this namespace, readable by every user), so that
/// `driftline status` reads the times it wrote on the same clock.
pub const CLOCK_NAMESPACE: &str = "kube-public";
/// The ConfigMap of [`CLOCK_NAMESPACE`].
pub const CLOCK_CONFIG_MAP: &str = "driftline-clock";
/// Folder under a Model's feedback prefix where model servers log every
/// sampled prediction in batches (`<prefix>/predictions/<date>/….jsonl`),
/// for labels that arrive later than the server remembers. Training reads
/// labelled rows from the prefix and never from this folder.
pub const PREDICTION_LOG_DIR: &str = "predictions";
/// Folder under a Model's feedback prefix where late labels are dropped as
/// files (`id,label[,row]` CSV or JSON Lines), joined with the prediction
/// log when the next training reads its feedback.
pub const LABELS_DIR: &str = "labels";
/// Folder under a Model's feedback prefix where model servers set aside
/// rows worth a person's label (`<prefix>/queue/<date>/….jsonl`, the budget
/// of `spec.feedback.annotation`). `driftline label` reads it and writes the
/// answers under [`LABELS_DIR`]; training never reads it as data.
pub const QUEUE_DIR: &str = "queue";
/// A file written under one of the feedback prefix's dated folders
/// ([`PREDICTION_LOG_DIR`], [`LABELS_DIR`], [`QUEUE_DIR`]):
/// `<dir>/<UTC date>/<UTC time>-<unique>.jsonl`. Names sort by time, and
/// `unique` (a random id) keeps two writers from ever choosing the same one.
pub fn feedback_file(dir: &str, now: chrono::DateTime<chrono::Utc>, unique: &str) -> String {
    format!(
        "{dir}/{}/{}-{unique}.jsonl",
        now.format("%Y-%m-%d"),
        now.format("%Y%m%dT%H%M%S%.6fZ"),
    )
}

/// The gate report a training Job leaves beside its artifact.
pub const GATE_REPORT_FILE: &str = "gate.json";
/// The gate's regression test-set counted over the artifact's drift
/// reference bins, left beside the gate report: what the operator compares
/// live windows with to tell whether the test set still covers traffic.
pub const TEST_SET_SKETCH_FILE: &str = "testset-sketch.json";
/// Environment variable through which a training Job gets its Model as YAML.
pub const MODEL_ENV: &str = "DRIFTLINE_MODEL";

/// `ModelVersion` object of version `n`: `<model>-v<n>`.
pub fn version_object(model: &str, n: u32) -> String {
    format!("{model}-{}", version_name(n))
}

/// Training Job of version `n`: `<model>-train-<n>`.
pub fn training_job(model: &str, n: u32) -> String {
    format!("{model}-train-{n}")
}

/// Data check Job of version `n`: `<model>-datacheck-<n>`.
pub fn data_check_job(model: &str, n: u32) -> String {
    format!("{model}-datacheck-{n}")
}

/// The version `n` a data check Job name belongs to, for this Model.
pub fn data_check_job_version(model: &str, job: &str) -> Option<u32> {
    job.strip_prefix(model)?
        .strip_prefix("-datacheck-")?
        .parse()
        .ok()
        .filter(|n| *n > 0)
}

/// Where a version's data check leaves its report: beside the artifact
/// directory, which must stay empty until the artifact is written whole.
pub fn data_check_report_uri(artifact: &str) -> String {
    format!("{}.datacheck.json", artifact.trim_end_matches('/'))
}

/// The version `n` a training Job name belongs to, for this Model.
pub fn training_job_version(model: &str, job: &str) -> Option<u32> {
    job.strip_prefix(model)?
        .strip_prefix("-train-")?
        .parse()
        .ok()
        .filter(|n| *n > 0)
}

/// Serving Deployment and Service of version `n`: `<model>-v<n>`.
pub fn serving(model: &str, n: u32) -> String {
    version_object(model, n)
}

/// The version `n` a serving Deployment or Service name belongs to.
pub fn serving_version(model: &str, name: &str) -> Option<u32> {
    super::status::version_number(name.strip_prefix(model)?.strip_prefix('-')?)
}

/// The gateway's Deployment: `<model>-gateway`.
pub fn gateway_deployment(model: &str) -> String {
    format!("{model}-gateway")
}

/// The gateway's Service, the Model's one address: `<model>`.
pub fn gateway_service(model: &str) -> String {
    model.to_string()
}

/// The Gateway API `HTTPRoute` of a Model: its name, like the gateway Service.
pub fn http_route(model: &str) -> String {
    model.to_string()
}

/// In-cluster URL of a Service.
pub fn service_url(service: &str, namespace: &str) -> String {
    format!("http://{service}.{namespace}.svc:{SERVE_PORT}")
}

/// In-cluster URL of version `n`'s model server.
pub fn serving_url(model: &str, namespace: &str, n: u32) -> String {
    service_url(&serving(model, n), namespace)
}

/// Artifact directory of version `n` under the operator's artifact root:
/// `<root>/<namespace>/<model>/v<n>`.
pub fn artifact_uri(root: &str, namespace: &str, model: &str, n: u32) -> String {
    format!(
        "{}/{namespace}/{model}/{}",
        root.trim_end_matches('/'),
        version_name(n)
    )
}

/// The version an artifact URI names by its last segment (`…/v3/` → 3): the
/// inverse of [`artifact_uri`].
pub fn artifact_version(uri: &str) -> Option<u32> {
    uri.trim_end_matches('/')
        .rsplit('/')
        .next()
        .and_then(super::status::version_number)
}

/// Where the model servers of a Model write labelled feedback:
/// `<root>/<namespace>/<model>/feedback/`.
pub fn feedback_prefix(root: &str, namespace: &str, model: &str) -> String {
    format!(
        "{}/{namespace}/{model}/feedback/",
        root.trim_end_matches('/')
    )
}

/// The feedback prefix of the Model one of whose version artifacts is
/// `artifact` (an [`artifact_uri`]); `None` for a URI of another shape.
pub fn feedback_prefix_of_artifact(artifact: &str) -> Option<String> {
    let (model_dir, version) = artifact.trim_end_matches('/').rsplit_once('/')?;
    super::status::version_number(version)?;
    let (namespace_dir, model) = model_dir.rsplit_once('/')?;
    let (root, namespace) = namespace_dir.rsplit_once('/')?;
    Some(feedback_prefix(root, namespace, model))
}

/// Where a Model's gateway keeps the rows its shadow candidates disagreed
/// on: `<root>/<namespace>/<model>/shadow/`, one folder per version.
pub fn shadow_prefix(root: &str, namespace: &str, model: &str) -> String {
    format!("{}/{namespace}/{model}/shadow/", root.trim_end_matches('/'))
}

/// The file of the rows version `version` (`v<n>`) disagreed on in shadow,
/// under a [`shadow_prefix`]: `<prefix>/v<n>/disagreements.jsonl`.
pub fn disagreements_uri(prefix: &str, version: &str) -> String {
    format!(
        "{}/{version}/disagreements.jsonl",
        prefix.trim_end_matches('/')
    )
}

/// The gate report of the artifact at `artifact`.
pub fn gate_report_uri(artifact: &str) -> String {
    format!("{}/{GATE_REPORT_FILE}", artifact.trim_end_matches('/'))
}

/// The test-set sketch left beside the gate report at `report`.
pub fn test_set_sketch_beside(report: &str) -> String {
    match report.rsplit_once('/') {
        Some((folder, _)) => format!("{folder}/{TEST_SET_SKETCH_FILE}"),
        None => TEST_SET_SKETCH_FILE.to_string(),
    }
}

/// The test-set sketch of the artifact at `artifact`: beside its gate report.
pub fn test_set_sketch_uri(artifact: &str) -> String {
    test_set_sketch_beside(&gate_report_uri(artifact))
}

/// URI of an artifact's manifest.
pub fn manifest_uri(artifact: &str) -> String {
    format!("{}/{MANIFEST_FILE}", artifact.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_set_sketch_lies_beside_the_gate_report() {
        assert_eq!(
            test_set_sketch_uri("s3://b/ml/wine/v3/"),
            "s3://b/ml/wine/v3/testset-sketch.json"
        );
        assert_eq!(
            test_set_sketch_beside("out/gate.json"),
            "out/testset-sketch.json"
        );
        assert_eq!(test_set_sketch_beside("gate.json"), "testset-sketch.json");
    }

    #[test]
    fn artifact_uris_name_their_version() {
        let uri = artifact_uri("s3://models/root/", "ml", "wine", 12);
        assert_eq!(uri, "s3://models/root/ml/wine/v12");
        assert_eq!(artifact_version(&uri), Some(12));
        assert_eq!(artifact_version(&format!("{uri}/")), Some(12));
        assert_eq!(artifact_version("file:///tmp/my-model"), None);
        assert_eq!(artifact_version("/tmp/12"), None);
        // A version's artifact leads to its Model's feedback prefix.
        assert_eq!(
            feedback_prefix_of_artifact(&uri).as_deref(),
            Some(feedback_prefix("s3://models/root/", "ml", "wine").as_str())
        );
        assert_eq!(
            feedback_prefix_of_artifact("file:///srv/a/ml/wine/v3/").as_deref(),
            Some("file:///srv/a/ml/wine/feedback/")
        );
        assert_eq!(feedback_prefix_of_artifact("file:///tmp/my-model"), None);
        let at = "2026-12-01T10:02:03.5Z".parse().unwrap();
        assert_eq!(
            feedback_file(QUEUE_DIR, at, "x1"),
            "queue/2026-12-01/20261201T100203.500000Z-x1.jsonl"
        );
    }

    #[test]
    fn names_round_trip_and_refuse_other_models() {
        assert_eq!(training_job("wine", 3), "wine-train-3");
        assert_eq!(training_job_version("wine", "wine-train-3"), Some(3));
        assert_eq!(training_job_version("wine", "wine-quality-train-3"), None);
        assert_eq!(training_job_version("wine", "wine-train-0"), None);
        assert_eq!(serving("wine", 12), "wine-v12");
        assert_eq!(serving_version("wine", "wine-v12"), Some(12));
        assert_eq!(serving_version("wine", "wine-gateway"), None);
        assert_eq!(serving_version("wine", "winev12"), None);
        assert_eq!(serving_url("wine", "ml", 2), "http://wine-v2.ml.svc:8080");
        assert_eq!(
            artifact_uri("s3://b/models/", "ml", "wine", 4),
            "s3://b/models/ml/wine/v4"
        );
        assert_eq!(
            gate_report_uri("file:///a/ml/wine/v4/"),
            "file:///a/ml/wine/v4/gate.json"
        );
        assert_eq!(
            feedback_prefix("/state/artifacts", "ml", "wine"),
            "/state/artifacts/ml/wine/feedback/"
        );
    }
}
