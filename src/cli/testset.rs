//! `driftline testset suggest MODEL`: rows to add to the gate's regression
//! test-set so that it covers live traffic again. The candidates are rows a
//! person labelled from the annotation queue (`driftline label`); each is
//! ranked by how far into the region it lies that live traffic holds more
//! of than the test set (the same bins and the same density ratio the
//! annotation queue's `drifted` lane uses: `drift::DriftRegion`, between the
//! version's reference with its test set's shares and a sketch of the
//! logged predictions). Printed as CSV with the test set's columns, ready to
//! review and append; the summary goes to stderr.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde_json::{Map, Value};

use crate::api::names::{self, PREDICTION_LOG_DIR};
use crate::api::version_number;
use crate::data::{Cell, annotated_labels, read_queue, store};
use crate::drift::{DatasetSketch, DriftRegion, ReferenceProfile};
use crate::ml::observation;

/// `driftline testset …`.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum TestsetCommand {
    /// Propose labelled rows from the annotation queue that cover what the
    /// regression test-set lacks.
    Suggest(SuggestArgs),
}

/// Flags of `driftline testset suggest`.
#[derive(clap::Args, Debug, Clone)]
pub struct SuggestArgs {
    /// The Model.
    pub model: String,
    #[command(flatten)]
    pub ns: super::flags::ModelNamespace,
    /// The operator's artifact root (default: the one `driftline up` keeps in `.driftline/`).
    #[arg(long, env = "DRIFTLINE_ARTIFACT_ROOT")]
    pub artifact_root: Option<String>,
    /// The version whose test set is compared (default: the newest that
    /// answered a labelled row).
    #[arg(long)]
    pub version: Option<String>,
    /// Most rows proposed.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Logged predictions read as live traffic, newest first.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub live_rows: u64,
}

pub async fn testset(command: TestsetCommand) -> anyhow::Result<ExitCode> {
    match command {
        TestsetCommand::Suggest(args) => suggest(args).await,
    }
}

/// A JSON row's `names` columns as cells (`Cell::from_json`), which the
/// drift sketches read through `ml::observation`.
fn cells(row: &Map<String, Value>, names: &[&str]) -> Vec<Cell> {
    names
        .iter()
        .map(|n| row.get(*n).map_or(Cell::Missing, Cell::from_json))
        .collect()
}

/// Live traffic over the reference's bins: the newest logged predictions,
/// up to `limit` rows.
async fn live_sketch(
    prefix: &str,
    reference: &ReferenceProfile,
    limit: u64,
) -> anyhow::Result<DatasetSketch> {
    let dir = format!("{}/{PREDICTION_LOG_DIR}/", prefix.trim_end_matches('/'));
    let mut files = store::list(&dir, ".jsonl").await?;
    files.reverse(); // names sort by time: newest first
    let mut sketch = DatasetSketch::for_profile(reference);
    let names: Vec<&str> = reference.features.iter().map(|f| f.name()).collect();
    for uri in files {
        if sketch.rows >= limit {
            break;
        }
        let bytes = store::read_bytes(&uri).await?;
        for line in String::from_utf8_lossy(&bytes).lines() {
            let Ok(Value::Object(row)) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let (features, prediction) = (cells(&row, &names), cells(&row, &["_prediction"]));
            sketch.observe_row(
                reference,
                |j| observation(&features[j]),
                observation(&prediction[0]),
            );
            if sketch.rows >= limit {
                break;
            }
        }
    }
    if sketch.rows == 0 {
        bail!(
            "no logged predictions under {dir}: live traffic is unknown (is data.includeFeedback set, and has the Model served?)"
        );
    }
    Ok(sketch)
}

async fn suggest(args: SuggestArgs) -> anyhow::Result<ExitCode> {
    let root = super::up::artifact_root_or_up(args.artifact_root.as_deref());
    let prefix = names::feedback_prefix(&root, &args.ns.namespace, &args.model);
    let queue = read_queue(&prefix).await?;
    for problem in &queue.problems {
        eprintln!("warning: skipped {problem} (the file is left as it is)");
    }
    let labels = annotated_labels(&prefix).await?;
    let labelled: Vec<_> = queue
        .rows
        .iter()
        .filter_map(|r| labels.get(&r.key()).map(|l| (r, l)))
        .collect();
    if labelled.is_empty() {
        bail!(
            "no labelled rows in the annotation queue of {}/{}: label some with `driftline label {}` first",
            args.ns.namespace,
            args.model,
            args.model
        );
    }
    let version = match &args.version {
        Some(v) => v.clone(),
        None => labelled
            .iter()
            .max_by_key(|(r, _)| version_number(&r.version))
            .map(|(r, _)| r.version.clone())
            .unwrap_or_default(),
    };
    let (artifact, manifest) =
        super::label::version_manifest(&root, &args.ns, &args.model, &version).await?;
    let uri = names::test_set_sketch_uri(&artifact);
    let bytes = store::read_bytes(&uri)
        .await
        .with_context(|| format!("the test-set sketch of {version} at {uri}: was it gated?"))?;
    let test: DatasetSketch = serde_json::from_slice(&bytes)
        .with_context(|| format!("{uri} is not a test-set sketch"))?;
    let reference = &manifest.reference;
    let test_profile = reference
        .with_shares_of(&test)
        .with_context(|| format!("{uri} was counted over other bins than {version}'s reference"))?;
    let live = live_sketch(&prefix, reference, args.live_rows).await?;
    let names: Vec<&str> = reference.features.iter().map(|f| f.name()).collect();
    let region = DriftRegion::between(&test_profile, &live, &[]);
    let mut ranked: Vec<(f64, &str, _, _)> = match &region {
        Some(region) => labelled
            .iter()
            .filter_map(|(row, label)| {
                let features = cells(&row.features, &names);
                let (score, feature) = region.score(|j| observation(&features[j]))?;
                Some((score, feature, *row, *label))
            })
            .collect(),
        None => Vec::new(),
    };
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let covering = ranked.len();
    ranked.truncate(args.limit);
    let mut out = csv::Writer::from_writer(std::io::stdout());
    let mut header: Vec<&str> = names.clone();
    header.push(&manifest.target);
    out.write_record(&header)?;
    for (_, _, row, label) in &ranked {
        let mut record: Vec<String> = names
            .iter()
            .map(|n| match row.features.get(*n) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(v) => v.to_string(),
            })
            .collect();
        record.push(match label {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        });
        out.write_record(&record)?;
    }
    out.flush()?;
    eprintln!(
        "{covering} of {} labelled rows lie where live traffic ({} logged rows) holds more than {version}'s test set; the {} most under-covered are above.",
        labelled.len(),
        live.rows,
        ranked.len(),
    );
    for (score, feature, row, _) in &ranked {
        eprintln!(
            "  request {} row {}: {feature} in a bin live traffic holds {score:.1}× as often as the test set",
            row.id, row.row
        );
    }
    Ok(ExitCode::SUCCESS)
}
