//! The digits image set and Model shared by the image tests of several test
//! binaries (each includes this file with `#[path]`): scikit-learn's bundled
//! 8×8 digits upscaled to 16×16 PNG files by `tests/fixtures/digits_images.py`
//! (seeded; nothing downloaded, nothing committed), and a small CNN Model over
//! them. A missing python module goes through the suite's one skip-or-fail
//! rule (`require_tool`).

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use driftline::api::{ModelSpec, load_model_config};

/// Whether python3 can import `modules`: the suite's one skip-or-fail rule
/// (`require_tool`) decides what a missing module means.
pub fn python_has(test: &str, modules: &str, install: &str) -> bool {
    let found = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    let tool = if found {
        Ok(())
    } else {
        Err(format!(
            "python3 cannot import {modules} (.ci/run installs {install} from .ci/requirements.txt)"
        ))
    };
    crate::require_tool::require_tool(test, tool).is_some()
}

/// Writes the digits under `dir` (`train/<digit>/*.png`, `test/index.csv`).
pub fn digits(dir: &Path, train: usize, test: usize) -> bool {
    if !python_has("digits", "sklearn", "scikit-learn") {
        return false;
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/digits_images.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(dir)
        .args(["--train", &train.to_string(), "--test", &test.to_string()])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "digits_images.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// The digits Model: a small CNN on 16×16 grayscale images, gated on
/// accuracy, the `high` half of the digits and images per second.
pub fn digits_model(dir: &Path) -> ModelSpec {
    let yaml = format!(
        r#"
apiVersion: driftline.dev/v1alpha1
kind: Model
metadata: {{name: digits}}
spec:
  task: classification
  data:
    source: {dir}/train
    format: images
    target: digit
    images: {{height: 16, width: 16, channels: grayscale, maxBadImages: 1}}
  architecture:
    type: cnn
    convBlocks: [{{channels: 16}}, {{channels: 32}}]
  training: {{epochs: 12, batchSize: 32, learningRate: 0.005, seed: 1}}
  drift: {{window: 200}}
  gate:
    testSet: {dir}/test/index.csv
    metrics: [{{name: accuracy, min: 0.95}}]
    slices: [{{name: high, where: {{half: high}}, metrics: [{{name: accuracy, min: 0.9}}]}}]
    budgets: {{minImagesPerSecond: 100, imageBatchSize: 32}}
  rollout: {{steps: [{{weight: 50, pause: 0s}}]}}
"#,
        dir = dir.display()
    );
    load_model_config(&yaml).expect("the digits Model parses")
}
