//! The committed CRDs (`crds/`, `charts/driftline/crds/`) are what the types
//! generate, structural, and show what `kubectl get` users expect.
//!
//! Regenerate after changing `src/api/`:
//! `DRIFTLINE_UPDATE_CRDS=1 cargo test --test decisions api_crd`

use std::path::{Path, PathBuf};

use driftline::api::crd::{all_crds, crd_files};
use serde_json::Value;

const DIRS: [&str; 2] = ["crds", "charts/driftline/crds"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// How a developer regenerates the committed CRDs.
const REGENERATE: &str = "DRIFTLINE_UPDATE_CRDS=1 cargo test --test decisions api_crd";

fn write_atomically(path: &Path, content: &str) {
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, content).expect("write temporary CRD file");
    std::fs::rename(&tmp, path).expect("rename CRD file into place");
}

/// The committed CRD files under `root` that differ from what the types generate.
fn stale(root: &Path, files: &[(String, String)]) -> Vec<PathBuf> {
    DIRS.iter()
        .flat_map(|dir| {
            files
                .iter()
                .map(move |(name, yaml)| (root.join(dir).join(name), yaml))
        })
        .filter(|(path, yaml)| std::fs::read_to_string(path).ok().as_ref() != Some(*yaml))
        .map(|(path, _)| path)
        .collect()
}

/// Checks the CRDs committed under `root` against the types, or rewrites
/// them when `update` is asked for; CI only checks (`update` is refused),
/// so a stale copy can never pass there.
fn check_or_update_crds(root: &Path, update: bool, ci: bool) -> Result<(), String> {
    let files = crd_files().expect("CRDs serialise");
    if update && ci {
        let stale: Vec<String> = stale(root, &files)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let what = if stale.is_empty() {
            "the committed CRDs are fresh; unset it".to_string()
        } else {
            format!(
                "the committed CRDs are stale ({}); regenerate them with `{REGENERATE}` outside \
                 CI and commit crds/ and charts/driftline/crds/",
                stale.join(", ")
            )
        };
        return Err(format!(
            "DRIFTLINE_UPDATE_CRDS is refused under CI, which checks the committed CRDs and \
             never rewrites them: {what}"
        ));
    }
    for dir in DIRS {
        let dir = root.join(dir);
        if update {
            std::fs::create_dir_all(&dir).expect("create CRD directory");
            for (name, yaml) in &files {
                write_atomically(&dir.join(name), yaml);
            }
        }
        let mut present: Vec<String> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml"))
            .collect();
        present.sort();
        let mut expected: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
        expected.sort();
        if present != expected {
            return Err(format!(
                "{} holds CRD files {present:?}, the types generate {expected:?}",
                dir.display()
            ));
        }
    }
    match stale(root, &files).first() {
        Some(path) => Err(format!(
            "{} is stale; regenerate with `{REGENERATE}`",
            path.display()
        )),
        None => Ok(()),
    }
}

#[test]
fn committed_crds_are_fresh() {
    let update = std::env::var_os("DRIFTLINE_UPDATE_CRDS").is_some();
    if let Err(e) = check_or_update_crds(&root(), update, crate::require_tool::in_ci()) {
        panic!("{e}");
    }
}

/// A copy of the committed CRD directories with one file out of date.
fn stale_copy() -> (tempfile::TempDir, PathBuf) {
    let copy = tempfile::tempdir().expect("temp dir");
    for dir in DIRS {
        std::fs::create_dir_all(copy.path().join(dir)).unwrap();
        for (name, yaml) in crd_files().unwrap() {
            std::fs::write(copy.path().join(dir).join(name), yaml).unwrap();
        }
    }
    let (name, _) = &crd_files().unwrap()[0];
    let old = copy.path().join(DIRS[0]).join(name);
    std::fs::write(&old, "# an older schema\n").unwrap();
    (copy, old)
}

#[test]
fn a_stale_crd_fails_the_check_and_is_rewritten_only_outside_ci() {
    let (copy, old) = stale_copy();
    let err = check_or_update_crds(copy.path(), false, false).unwrap_err();
    assert!(
        err.contains("is stale") && err.contains(REGENERATE),
        "{err}"
    );

    let refused = check_or_update_crds(copy.path(), true, true).unwrap_err();
    assert!(
        refused.contains("DRIFTLINE_UPDATE_CRDS is refused under CI")
            && refused.contains("the committed CRDs are stale")
            && refused.contains(&old.display().to_string())
            && refused.contains(REGENERATE),
        "{refused}"
    );
    assert_eq!(
        std::fs::read_to_string(&old).unwrap(),
        "# an older schema\n",
        "CI must not rewrite the CRDs"
    );

    check_or_update_crds(copy.path(), true, false).expect("a developer regenerates them");
    check_or_update_crds(copy.path(), false, true).expect("then CI finds them fresh");
}

#[test]
fn driftline_crd_prints_every_crd_as_one_stream() {
    let stream = driftline::api::crd::all_crds_yaml().expect("CRDs serialise");
    let docs: Vec<&str> = stream
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .collect();
    assert_eq!(docs.len(), 2);
    assert!(docs[0].contains("name: models.driftline.dev"));
    assert!(docs[1].contains("name: modelversions.driftline.dev"));
}

#[test]
fn driftline_crd_stops_quietly_when_its_reader_does() {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_driftline"))
        .arg("crd")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("driftline runs");
    // Close the read end at once, as `driftline crd | head -0` does.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn driftline_crd_output_equals_the_committed_stream() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args(["--worker-threads", "1", "crd"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        driftline::api::crd::all_crds_yaml().unwrap()
    );
    // Zero async workers is a usage error, not a hang.
    let zero = std::process::Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args(["--worker-threads", "0", "crd"])
        .output()
        .unwrap();
    assert_eq!(zero.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&zero.stderr).contains("--worker-threads"));
}

/// Kubernetes refuses non-structural schemas: every node needs a `type`
/// (unless it preserves unknown fields or is int-or-string), and the
/// branches of anyOf/allOf/oneOf/not may not declare types or defaults.
fn check_structural(node: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(obj) = node.as_object() else { return };
    let free_form = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        || obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if !obj.contains_key("type") && !free_form {
        problems.push(format!("{path}: no type"));
    }
    if obj.contains_key("$ref") {
        problems.push(format!("{path}: $ref is not allowed"));
    }
    for key in ["anyOf", "allOf", "oneOf"] {
        for (i, branch) in obj
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            for forbidden in ["type", "default", "description", "nullable", "properties"] {
                if branch.get(forbidden).is_some() {
                    problems.push(format!("{path}.{key}[{i}]: `{forbidden}` inside {key}"));
                }
            }
        }
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            check_structural(child, &format!("{path}.{name}"), problems);
        }
    }
    if let Some(items) = obj.get("items") {
        check_structural(items, &format!("{path}[]"), problems);
    }
    if let Some(extra) = obj.get("additionalProperties").filter(|a| a.is_object()) {
        check_structural(extra, &format!("{path}{{}}"), problems);
    }
}

#[test]
fn crd_schemas_are_structural() {
    for crd in all_crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        for version in &crd.spec.versions {
            let schema = version
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .unwrap_or_else(|| panic!("{name} has a schema"));
            let schema = serde_json::to_value(schema).expect("schema serialises");
            let mut problems = Vec::new();
            check_structural(&schema, &name, &mut problems);
            assert!(
                problems.is_empty(),
                "{name} is not structural:\n{}",
                problems.join("\n")
            );
        }
    }
}

#[test]
fn kubectl_get_shows_phase_champion_candidate_traffic_drift_and_age() {
    let crds = all_crds();
    let model = &crds[0];
    assert_eq!(model.spec.group, "driftline.dev");
    assert_eq!(
        model.spec.names.short_names.as_deref(),
        Some(&["mdl".to_string()][..])
    );
    let version = &model.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(
        version
            .subresources
            .as_ref()
            .is_some_and(|s| s.status.is_some()),
        "status subresource"
    );
    let columns: Vec<(&str, &str)> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.as_str(), c.json_path.as_str()))
        .collect();
    assert_eq!(
        columns,
        [
            ("Phase", ".status.phase"),
            ("Champion", ".status.champion"),
            ("Candidate", ".status.candidate"),
            ("Traffic", ".status.trafficSummary"),
            ("Drift", ".status.drift.summary"),
            ("Age", ".metadata.creationTimestamp"),
        ]
    );
    let mv = &crds[1];
    assert_eq!(
        mv.spec.names.short_names.as_deref(),
        Some(&["mv".to_string()][..])
    );
    let mv_columns: Vec<&str> = mv.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        mv_columns,
        ["Model", "Version", "Phase", "Trigger", "Gate", "Age"]
    );
}

#[test]
fn version_phases_are_the_documented_ones() {
    let crds = all_crds();
    let schema = serde_json::to_value(
        crds[1].spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref()),
    )
    .expect("schema serialises");
    let phases = &schema["properties"]["status"]["properties"]["phase"]["enum"];
    assert_eq!(
        phases,
        &serde_json::json!([
            "CheckingData",
            "Training",
            "Trained",
            "Rejected",
            "Shadow",
            "Canary",
            "Champion",
            "Superseded",
            "RolledBack",
            "Failed",
            "DataRejected"
        ])
    );
}
