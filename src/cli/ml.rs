//! `driftline train` and `driftline evaluate`.
//!
//! Exit codes: 0 trained / gate passed, 1 gate failed (report printed),
//! 2 usage or input error (from `main`, for every `MlError`).

use std::process::ExitCode;

use bytes::Bytes;

use tracing::Instrument;

use crate::api::{
    DataFormat, GateEvaluation, GateSpec, ModelFile, ModelSpec, TrainingDevice, load_model_file,
};
use crate::policy;

use crate::data;
use crate::data::store;
use crate::data::{DecodeLimits, read_image_set};
use crate::ml::LoadedModel;
use crate::ml::MlError;
use crate::ml::TrainOptions;

/// Device choice on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DeviceArg {
    Auto,
    Cpu,
    Cuda,
}

impl From<DeviceArg> for TrainingDevice {
    fn from(d: DeviceArg) -> Self {
        match d {
            DeviceArg::Auto => TrainingDevice::Auto,
            DeviceArg::Cpu => TrainingDevice::Cpu,
            DeviceArg::Cuda => TrainingDevice::Cuda,
        }
    }
}

/// Arguments of `driftline train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Model YAML: a `Model` resource or a bare spec (path or URI).
    #[arg(long, short = 'c')]
    pub config: String,
    /// Where to write the artifact: a directory path, file://, s3://, gs:// or az://.
    #[arg(long)]
    pub out: String,
    /// Prefix of labelled traffic (`*.jsonl`) added when `data.includeFeedback` is true.
    #[arg(long)]
    pub feedback: Option<String>,
    /// Overrides `training.device`.
    #[arg(long, value_enum)]
    pub device: Option<DeviceArg>,
    /// Overrides `training.seed`.
    #[arg(long)]
    pub seed: Option<u64>,
    /// When `--out` already holds a complete artifact that verifies, keep it
    /// and exit 0 instead of refusing: a training Job's retried pod (its
    /// evaluate step failed, or the node went away) finds what its first
    /// attempt wrote. Anything there that does not verify is still an error.
    #[arg(long)]
    pub resume: bool,
    /// The training start `data.window` counts back from (RFC 3339); now
    /// when absent. The operator passes its decision time, so the data
    /// check and the run read the same files.
    #[arg(long)]
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
    /// The champion's artifact: with `training.warmStart: champion` the run
    /// starts from its weights when the architecture fingerprint matches
    /// (else cold, with the reason in the manifest's `start`).
    #[arg(long)]
    pub warm_start: Option<String>,
    /// What a streamed run (`training.shuffleBuffer`) may hold, a
    /// Kubernetes quantity (`2Gi`): the operator passes the training pod's
    /// memory request. Unbounded when absent.
    #[arg(long)]
    pub memory_bound: Option<String>,
}

/// Arguments of `driftline evaluate`.
#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    /// Artifact of the candidate.
    #[arg(long)]
    pub candidate: String,
    /// Artifact of the current champion, evaluated on the same test set.
    #[arg(long)]
    pub champion: Option<String>,
    /// Regression test-set; defaults to the config's `gate.testSet`.
    #[arg(long)]
    pub test_set: Option<String>,
    /// Model YAML whose `gate` holds the thresholds (path or URI).
    #[arg(long, short = 'c')]
    pub config: String,
    /// Also write the JSON report here (path or URI).
    #[arg(long)]
    pub report: Option<String>,
    /// Exit 0 once the report is written, whatever the verdict (a training
    /// Job's evaluate step: a failed gate is a result, not a failed Job).
    #[arg(long, requires = "report")]
    pub report_only: bool,
}

/// Reads a Model YAML from a path or URI, or from an environment variable
/// with `env:NAME` (how a training Job hands its pod the Model).
pub(crate) async fn read_config(uri: &str) -> Result<ModelFile, MlError> {
    if let Some(var) = uri.strip_prefix("env:") {
        let text = std::env::var(var).map_err(|_| MlError::InvalidConfig {
            field: "--config".into(),
            reason: format!("environment variable `{var}` is not set or not UTF-8"),
        })?;
        return Ok(load_model_file(&text)?);
    }
    let bytes = store::read_bytes(uri).await?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(load_model_file(&text)?)
}

/// Runs `driftline train`.
pub async fn train(args: TrainArgs) -> Result<ExitCode, MlError> {
    let file = read_config(&args.config).await?;
    // One span for the run: the logs of a training Job say which Model and version.
    let span = tracing::info_span!(
        "train",
        model = file.name.as_deref().unwrap_or(""),
        version = crate::api::names::artifact_version(&args.out)
            .map(crate::api::version_name)
            .unwrap_or_default(),
    );
    train_model(args, file.spec).instrument(span).await
}

async fn train_model(args: TrainArgs, mut spec: ModelSpec) -> Result<ExitCode, MlError> {
    if let Some(seed) = args.seed {
        spec.training.seed = seed;
    }
    if args.resume
        && let Some(existing) = complete_artifact(&args.out).await?
    {
        let manifest = existing.manifest();
        let summary = serde_json::json!({
            "artifact": args.out,
            "resumed": true,
            "fingerprint": manifest.fingerprint,
            "weightsDigest": manifest.files.get(crate::ml::WEIGHTS_FILE).map(|f| f.sha256.clone()),
            "epochs": manifest.curve.len(),
            "trainingSeconds": manifest.training_seconds,
            "metrics": manifest.metrics,
        });
        println!("{summary}");
        return Ok(ExitCode::SUCCESS);
    }
    let memory_bound = match &args.memory_bound {
        Some(text) => Some(
            crate::cluster::parse_quantity(text)
                .ok()
                .filter(|bytes| bytes.is_finite() && *bytes >= 1.0)
                .map(|bytes| bytes as u64)
                .ok_or_else(|| MlError::InvalidConfig {
                    field: "--memory-bound".into(),
                    reason: format!("`{text}` is not a memory quantity (e.g. `2Gi`, `512Mi`)"),
                })?,
        ),
        None => None,
    };
    let options = TrainOptions {
        feedback: args.feedback.clone(),
        device: args.device.map(Into::into),
        progress: true,
        as_of: args.as_of,
        warm_start: args.warm_start.clone(),
        memory_bound,
    };
    let model = crate::ml::train(&spec, &options).await?;
    model.save(&args.out).await?;
    let summary = serde_json::json!({
        "artifact": args.out,
        "fingerprint": model.manifest.fingerprint,
        "weightsDigest": model.weights_digest(),
        "epochs": model.manifest.curve.len(),
        "trainingSeconds": model.manifest.training_seconds,
        "metrics": model.manifest.metrics,
        "start": model.manifest.start,
    });
    println!("{summary}");
    Ok(ExitCode::SUCCESS)
}

/// The verified artifact at `uri`, `None` when nothing is there yet (no
/// manifest: artifacts are written manifest last), an error when what is
/// there does not verify.
async fn complete_artifact(uri: &str) -> Result<Option<LoadedModel>, MlError> {
    match LoadedModel::load(uri).await {
        Ok(model) => Ok(Some(model)),
        Err(crate::ml::ArtifactError::MissingFile { file, .. })
            if file == crate::ml::MANIFEST_FILE =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs `driftline evaluate`.
pub async fn evaluate(args: EvaluateArgs) -> Result<ExitCode, MlError> {
    let spec = read_config(&args.config).await?.spec;
    let mut gate: GateSpec = match (spec.gate, &args.test_set) {
        (Some(gate), _) => gate,
        (None, Some(test_set)) => GateSpec {
            data: Default::default(),
            test_set: test_set.clone(),
            metrics: Vec::new(),
            slices: Vec::new(),
            must_pass: None,
            must_pass_tolerance: None,
            max_calibration_error: None,
            budgets: None,
        },
        (None, None) => {
            return Err(MlError::InvalidConfig {
                field: "gate.testSet".into(),
                reason: "no test set: give --test-set or a `gate` in the config".into(),
            });
        }
    };
    if let Some(test_set) = &args.test_set {
        gate.test_set = test_set.clone();
    }
    let candidate = LoadedModel::load(&args.candidate).await?;
    let champion = match &args.champion {
        Some(uri) => Some(LoadedModel::load(uri).await?),
        None => None,
    };
    let (candidate_report, champion_report) = if spec.data.format == Some(DataFormat::Images) {
        // The test set and golden images are image sets like the training data.
        let max_bad = spec.data.images.as_ref().map_or(0, |i| i.max_bad_images);
        let read = |uri: String| {
            let target = spec.data.target.clone();
            async move { read_image_set(&uri, &target, DecodeLimits::default(), max_bad).await }
        };
        let test = read(gate.test_set.clone()).await?;
        let golden = match &gate.must_pass {
            Some(uri) => Some(read(uri.clone()).await?),
            None => None,
        };
        let candidate_report =
            crate::ml::evaluate_images(&candidate, &gate, &test, golden.as_ref())?;
        let champion_report = champion
            .as_ref()
            .map(|c| crate::ml::evaluate_images(c, &gate, &test, golden.as_ref()))
            .transpose()?;
        (candidate_report, champion_report)
    } else {
        let test = data::read_table(&gate.test_set, None).await?;
        let golden = match &gate.must_pass {
            Some(uri) => Some(data::read_table(uri, None).await?),
            None => None,
        };
        let candidate_report = match &args.report {
            // Beside the gate report: what the operator compares live
            // traffic with once this version serves (`TestSetStale`).
            Some(report) => {
                let (report_of, sketch) = crate::ml::evaluate_with_test_set_sketch(
                    &candidate,
                    &gate,
                    &test,
                    golden.as_ref(),
                )?;
                let uri = crate::api::names::test_set_sketch_beside(report);
                write_report(&uri, serde_json::to_string(&sketch)?).await?;
                report_of
            }
            None => crate::ml::evaluate(&candidate, &gate, &test, golden.as_ref())?,
        };
        let champion_report = champion
            .as_ref()
            .map(|c| crate::ml::evaluate(c, &gate, &test, golden.as_ref()))
            .transpose()?;
        (candidate_report, champion_report)
    };
    let verdict = policy::gate_verdict(&gate, &candidate_report, champion_report.as_ref());
    let evaluation = GateEvaluation {
        candidate: candidate_report,
        champion: champion_report,
        verdict,
    };
    let json = serde_json::to_string_pretty(&evaluation)?;
    if let Some(report) = &args.report {
        write_report(report, json.clone()).await?;
    }
    println!("{json}");
    for check in &evaluation.verdict.checks {
        let mark = if check.passed { "pass" } else { "FAIL" };
        eprintln!("{mark}  {}", check.message);
    }
    if evaluation.verdict.passed {
        eprintln!("gate passed: `{}` may be promoted", args.candidate);
        Ok(ExitCode::SUCCESS)
    } else if args.report_only {
        eprintln!(
            "gate failed: {} of {} checks failed for `{}` (report written)",
            evaluation.verdict.failures().count(),
            evaluation.verdict.checks.len(),
            args.candidate
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "gate failed: {} of {} checks failed for `{}`",
            evaluation.verdict.failures().count(),
            evaluation.verdict.checks.len(),
            args.candidate
        );
        Ok(ExitCode::from(1))
    }
}

async fn write_report(uri: &str, json: String) -> Result<(), MlError> {
    // One file, made visible whole (temporary name + rename, or one PUT).
    Ok(store::write_object(uri, Bytes::from(json)).await?)
}
