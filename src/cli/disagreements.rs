//! `driftline disagreements MODEL vN`: the rows on which version `vN`
//! answered differently from the champion in its shadow stage, as the
//! gateway kept them (`<artifact-root>/<namespace>/<model>/shadow/vN/
//! disagreements.jsonl`), so a person can curate them into the regression
//! test-set: JSON Lines as kept, or CSV; each with the label where one
//! arrived (joined by the champion's inference id with the Model's feedback:
//! the rows its servers joined and the late label files).

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use crate::api::{names, version_name, version_number};

/// How the rows are printed.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per row, as kept: id, row, inputs, champion, shadow.
    #[default]
    Jsonl,
    /// A header, then one line per row: id, row, champion, shadow, then
    /// each input column.
    Csv,
}

/// Flags of `driftline disagreements`.
#[derive(clap::Args, Debug, Clone)]
pub struct DisagreementsArgs {
    /// The Model.
    pub model: String,
    /// The version judged in shadow (`v3`).
    pub version: String,
    #[command(flatten)]
    pub ns: super::flags::ModelNamespace,
    /// The operator's artifact root (default: the one `driftline up` keeps
    /// in `.driftline/`).
    #[arg(long, env = "DRIFTLINE_ARTIFACT_ROOT")]
    pub artifact_root: Option<String>,
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Format,
}

pub async fn disagreements(args: DisagreementsArgs) -> anyhow::Result<ExitCode> {
    let Some(n) = version_number(&args.version) else {
        bail!(
            "version `{}` is not `v<n>` (for example `v3`)",
            args.version
        );
    };
    let root = super::up::artifact_root_or_up(args.artifact_root.as_deref());
    let prefix = names::shadow_prefix(&root, &args.ns.namespace, &args.model);
    let uri = names::disagreements_uri(&prefix, &version_name(n));
    let bytes = crate::data::store::read_bytes(&uri).await.with_context(|| {
        format!(
            "no disagreements of {}/{} {} at {uri}: was it in a shadow stage, and is --artifact-root the operator's?",
            args.ns.namespace, args.model, args.version
        )
    })?;
    let text = std::str::from_utf8(&bytes).with_context(|| format!("{uri} is not UTF-8"))?;
    let mut rows = parse(text).with_context(|| format!("reading {uri}"))?;
    // The label where one arrived: joined by the champion's inference id.
    match labels(&root, &args).await {
        Ok(labels) => {
            for r in &mut rows {
                let key = r.get("id").and_then(|v| v.as_str()).map(|id| {
                    (
                        id.to_string(),
                        r.get("row").and_then(|v| v.as_u64()).unwrap_or(0),
                    )
                });
                if let Some(label) = key.and_then(|k| labels.get(&k)) {
                    r.insert("label".into(), label.clone());
                }
            }
        }
        Err(e) => eprintln!("warning: labels not joined: {e:#}"),
    }
    print!(
        "{}",
        match args.output {
            Format::Jsonl => to_jsonl(&rows),
            Format::Csv => to_csv(&rows)?,
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// The labels known for the Model's served rows (the champion's target
/// column names them in its feedback files).
async fn labels(
    root: &str,
    args: &DisagreementsArgs,
) -> anyhow::Result<std::collections::BTreeMap<(String, u64), serde_json::Value>> {
    let prefix = names::feedback_prefix(root, &args.ns.namespace, &args.model);
    let (_, manifest) =
        super::label::version_manifest(root, &args.ns, &args.model, &args.version).await?;
    Ok(crate::data::known_labels(&prefix, &manifest.target).await?)
}

fn to_jsonl(rows: &[serde_json::Map<String, serde_json::Value>]) -> String {
    rows.iter()
        .map(|r| serde_json::Value::Object(r.clone()).to_string() + "\n")
        .collect()
}

/// Each line's object; a line that is not one is named.
fn parse(text: &str) -> anyhow::Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("line {} is not a JSON object", i + 1))
        })
        .collect()
}

/// A cell as CSV text: strings bare, anything else as JSON.
fn cell(value: Option<&serde_json::Value>) -> String {
    match value {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn to_csv(rows: &[serde_json::Map<String, serde_json::Value>]) -> anyhow::Result<String> {
    let inputs: BTreeSet<&String> = rows
        .iter()
        .filter_map(|r| r.get("inputs")?.as_object())
        .flat_map(|i| i.keys())
        .collect();
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["id", "row", "champion", "shadow", "label"];
    header.extend(inputs.iter().map(|s| s.as_str()));
    out.write_record(&header)?;
    for r in rows {
        let mut record: Vec<String> = ["id", "row", "champion", "shadow", "label"]
            .iter()
            .map(|k| cell(r.get(*k)))
            .collect();
        let row_inputs = r.get("inputs").and_then(|i| i.as_object());
        record.extend(
            inputs
                .iter()
                .map(|k| cell(row_inputs.and_then(|i| i.get(*k)))),
        );
        out.write_record(&record)?;
    }
    Ok(String::from_utf8(out.into_inner()?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_csv_with_one_column_per_input() {
        let text = "{\"id\":\"a\",\"row\":0,\"inputs\":{\"color\":\"red, dark\",\"alcohol\":12.5},\"champion\":\"5\",\"shadow\":\"7\"}\n\
                    {\"id\":null,\"row\":3,\"inputs\":{\"alcohol\":9.0},\"champion\":1.5,\"shadow\":2.75}\n";
        let mut rows = parse(text).unwrap();
        rows[0].insert("label".into(), "7".into());
        assert_eq!(
            to_csv(&rows).unwrap(),
            "id,row,champion,shadow,label,alcohol,color\n\
             a,0,5,7,7,12.5,\"red, dark\"\n\
             ,3,1.5,2.75,,9.0,\n"
        );
        assert_eq!(parse(&to_jsonl(&rows)).unwrap(), rows);
        let err = parse("{\"id\":1}\nnot json\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("line 2 is not a JSON object"),
            "{err:#}"
        );
    }
}
