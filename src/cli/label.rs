//! `driftline label MODEL`: a terminal labeller over the Model's annotation
//! queue (`<feedback prefix>/queue/`). It shows one row at a time (why it
//! was chosen, its inputs, what the model answered) and reads the label from
//! stdin, so a script can pipe answers in as well as a person can type them.
//!
//! Each answer is stored the moment it is given, as its own label file
//! under `labels/` with `source: annotation` and the user: the path every
//! late label takes, so the next training joins it with the prediction log
//! and counts it apart in its lineage. Rows already answered are never shown
//! again, so a session that stops (`q`, end of input, Ctrl-C) resumes where
//! it stopped. A label that is no class of the model is refused and asked
//! for again; queue lines that cannot be read are named and left in place.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

use crate::api::{QueueReason, Task, names, version_number};
use crate::data::{
    QueuedRow, annotated_labels, annotation_label, annotation_label_uri, read_queue,
};
use crate::serve::LabelKind;

/// Flags of `driftline label`.
#[derive(clap::Args, Debug, Clone)]
pub struct LabelArgs {
    /// The Model.
    pub model: String,
    #[command(flatten)]
    pub ns: super::flags::ModelNamespace,
    /// The operator's artifact root (default: the one `driftline up` keeps
    /// in `.driftline/`): the queue is under the Model's feedback prefix
    /// there, and each version's artifact tells its classes.
    #[arg(long, env = "DRIFTLINE_ARTIFACT_ROOT")]
    pub artifact_root: Option<String>,
    /// Who is labelling, recorded with each label (default: $USER).
    #[arg(long, env = "USER", default_value = "unknown")]
    pub user: String,
    /// Only rows queued for this reason: uncertain, drifted or disagreement.
    #[arg(long)]
    pub reason: Option<QueueReason>,
    /// Stop after this many labels.
    #[arg(long)]
    pub limit: Option<usize>,
}

/// What one typed line asks for.
#[derive(Debug, PartialEq)]
enum Answer {
    Label(Value),
    Skip,
    Quit,
}

/// Reads one typed line against the model's labels: `s`/empty skips, `q`
/// quits, anything else must be a label (a class name, or a class given as
/// a number; a number for regression).
fn answer(line: &str, kind: &LabelKind) -> Result<Answer, String> {
    let text = line.trim();
    match text {
        "" | "s" => return Ok(Answer::Skip),
        "q" => return Ok(Answer::Quit),
        _ => {}
    }
    let as_text = Value::String(text.to_string());
    let as_number = text
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number);
    let first = match kind {
        LabelKind::Class(_) => kind.check(&as_text),
        LabelKind::Value => Err(format!("`{text}` is not a number")),
    };
    first
        .or_else(|e| as_number.map_or(Err(e), |n| kind.check(&n)))
        .map(Answer::Label)
        .map_err(|e| format!("`{text}`: {e}"))
}

/// One row as the labeller shows it.
fn card(row: &QueuedRow, position: usize, total: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n[{position}/{total}] {} · {} · {} · request {} row {}",
        row.reason,
        row.version,
        row.time.format("%Y-%m-%d %H:%M:%S UTC"),
        row.id,
        row.row
    );
    let _ = writeln!(out, "  why: {}", row.why);
    let width = row.features.keys().map(String::len).max().unwrap_or(0);
    for (name, value) in &row.features {
        let shown = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let _ = writeln!(out, "  {name:<width$}  {shown}");
    }
    let _ = write!(out, "  answered: {}", row.prediction);
    if let Some(shadow) = &row.shadow {
        let _ = write!(out, " (shadow candidate: {shadow})");
    }
    out.push('\n');
    out
}

/// The manifest of a Model's version `version` (`v<n>`) under the
/// operator's artifact root.
pub(super) async fn version_manifest(
    artifact_root: &str,
    ns: &super::flags::ModelNamespace,
    model: &str,
    version: &str,
) -> anyhow::Result<(String, crate::ml::Manifest)> {
    let n = version_number(version)
        .with_context(|| format!("version `{version}` is not `v<n>`: cannot find its artifact"))?;
    let artifact = names::artifact_uri(artifact_root, &ns.namespace, model, n);
    let manifest = crate::ml::read_manifest(&artifact).await.with_context(|| {
        format!(
            "the manifest of {version} at {}: is --artifact-root the operator's?",
            names::manifest_uri(&artifact)
        )
    })?;
    Ok((artifact, manifest))
}

/// The labels version `version` takes, from its artifact's manifest.
async fn label_kind(
    artifact_root: &str,
    args: &LabelArgs,
    version: &str,
) -> anyhow::Result<LabelKind> {
    let (_, manifest) = version_manifest(artifact_root, &args.ns, &args.model, version).await?;
    Ok(match manifest.task {
        Task::Classification => LabelKind::Class(manifest.classes.clone()),
        Task::Regression => LabelKind::Value,
    })
}

pub async fn label(args: LabelArgs) -> anyhow::Result<ExitCode> {
    let root = super::up::artifact_root_or_up(args.artifact_root.as_deref());
    let prefix = names::feedback_prefix(&root, &args.ns.namespace, &args.model);
    let queue = read_queue(&prefix)
        .await
        .with_context(|| format!("reading the annotation queue under {prefix}"))?;
    for problem in &queue.problems {
        eprintln!("warning: skipped {problem} (the file is left as it is)");
    }
    let done = annotated_labels(&prefix).await?;
    let wanted = args.reason;
    let todo: Vec<&QueuedRow> = queue
        .rows
        .iter()
        .filter(|r| !done.contains_key(&r.key()) && wanted.is_none_or(|w| r.reason == w))
        .collect();
    if todo.is_empty() {
        println!(
            "Nothing to label for {}/{}: {} queued, {} labelled already.",
            args.ns.namespace,
            args.model,
            queue.rows.len(),
            done.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut kinds: BTreeMap<String, LabelKind> = BTreeMap::new();
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    let (mut labelled, mut skipped) = (0usize, 0usize);
    'rows: for (i, row) in todo.iter().enumerate() {
        if args.limit.is_some_and(|l| labelled >= l) {
            break;
        }
        if !kinds.contains_key(&row.version) {
            let kind = label_kind(&root, &args, &row.version).await?;
            kinds.insert(row.version.clone(), kind);
        }
        let kind = &kinds[&row.version];
        let choices = match kind {
            LabelKind::Class(c) => c.join(", "),
            LabelKind::Value => "a number".into(),
        };
        stdout
            .write_all(card(row, i + 1, todo.len()).as_bytes())
            .await?;
        loop {
            let prompt = format!("label ({choices}; s = skip, q = quit) > ");
            stdout.write_all(prompt.as_bytes()).await?;
            stdout.flush().await?;
            let Some(line) = stdin.next_line().await? else {
                break 'rows;
            };
            match answer(&line, kind) {
                Ok(Answer::Quit) => break 'rows,
                Ok(Answer::Skip) => {
                    skipped += 1;
                    break;
                }
                Ok(Answer::Label(value)) => {
                    let now = chrono::Utc::now();
                    let uri = annotation_label_uri(&prefix, now);
                    let line = annotation_label(row, value, &args.user, now);
                    crate::data::store::write_object(&uri, line.into())
                        .await
                        .with_context(|| format!("saving the label at {uri}"))?;
                    labelled += 1;
                    stdout.write_all(b"  saved\n").await?;
                    break;
                }
                Err(e) => {
                    stdout
                        .write_all(format!("  {e}; nothing saved, try again\n").as_bytes())
                        .await?;
                }
            }
        }
    }
    let left = todo.len() - labelled;
    println!(
        "\nLabelled {labelled}, skipped {skipped}; {left} left in the queue. The next training of {} reads the labels (data.includeFeedback).",
        args.model
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_lines_become_labels_skips_quits_or_a_reason_to_ask_again() {
        let classes = LabelKind::Class(vec!["bad".into(), "good".into(), "7".into()]);
        assert_eq!(
            answer(" good ", &classes),
            Ok(Answer::Label(Value::String("good".into())))
        );
        assert_eq!(
            answer("7", &classes),
            Ok(Answer::Label(Value::String("7".into())))
        );
        assert_eq!(
            answer("7.0", &classes),
            Ok(Answer::Label(Value::String("7".into())))
        );
        assert_eq!(answer("", &classes), Ok(Answer::Skip));
        assert_eq!(answer("s", &classes), Ok(Answer::Skip));
        assert_eq!(answer("q", &classes), Ok(Answer::Quit));
        let e = answer("great", &classes).unwrap_err();
        assert!(
            e.contains("`great`") && e.contains("classes: bad, good, 7"),
            "{e}"
        );
        let values = LabelKind::Value;
        assert_eq!(answer("3.5", &values), Ok(Answer::Label(Value::from(3.5))));
        let e = answer("high", &values).unwrap_err();
        assert!(e.contains("`high`"), "{e}");
        assert!(answer("NaN", &values).is_err());
    }
}
