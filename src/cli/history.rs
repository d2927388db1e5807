//! `driftline history`: a Model's versions from the registry, each with its
//! gate outcome and where its first weights came from, then every change of
//! champion.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::bail;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::output::{Output, render, table};
use crate::api::{StartSummary, version_name};
use crate::registry::{ChampionChange, ModelRef, Registry, RegistryUrl, VersionHistory};

/// Flags of `driftline history`.
#[derive(clap::Args, Debug, Clone)]
pub struct HistoryArgs {
    /// The Model.
    pub model: String,
    /// Namespace of the Model.
    #[arg(
        short = 'n',
        long,
        default_value = "default",
        env = "DRIFTLINE_NAMESPACE"
    )]
    pub namespace: String,
    /// The registry the operator writes to (default: the one `driftline up`
    /// keeps in `.driftline/`).
    #[arg(long, env = "DRIFTLINE_REGISTRY")]
    pub registry: Option<String>,
    /// Only the newest N versions.
    #[arg(long)]
    pub last: Option<u32>,
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct HistoryView {
    model: String,
    versions: Vec<VersionView>,
    champion_changes: Vec<ChangeView>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct VersionView {
    version: String,
    trigger: String,
    reason: String,
    created_at: DateTime<Utc>,
    gate_passed: Option<bool>,
    gate: Option<String>,
    metrics: BTreeMap<String, f64>,
    artifact: Option<String>,
    dataset_digest: Option<String>,
    feedback_rows: Option<u64>,
    /// Where its first weights came from (warm, init or cold).
    start: Option<StartSummary>,
}

impl From<&VersionHistory> for VersionView {
    fn from(h: &VersionHistory) -> Self {
        let v = &h.version;
        VersionView {
            version: version_name(v.version),
            trigger: v.trigger.clone(),
            reason: v.reason.clone(),
            created_at: v.created_at,
            gate_passed: h.gate.as_ref().map(|g| g.passed),
            gate: h.gate.as_ref().map(|g| g.summary.clone()),
            metrics: h
                .gate
                .as_ref()
                .map(|g| g.metrics.clone())
                .unwrap_or_default(),
            artifact: v.artifact_uri.clone(),
            dataset_digest: v.dataset_digest.clone(),
            feedback_rows: v.feedback_rows,
            start: v.start.as_ref().and_then(|s| {
                StartSummary::from_words(
                    &s.from,
                    s.parent.clone(),
                    s.parent_digest.clone(),
                    s.reason.clone(),
                )
            }),
        }
    }
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct ChangeView {
    at: DateTime<Utc>,
    action: String,
    from: Option<String>,
    to: Option<String>,
    trigger: String,
    actor: Option<String>,
    reason: String,
}

impl From<&ChampionChange> for ChangeView {
    fn from(c: &ChampionChange) -> Self {
        ChangeView {
            at: c.at,
            action: c.action.as_str().into(),
            from: c.from.map(version_name),
            to: c.to.map(version_name),
            trigger: c.trigger.clone(),
            actor: c.actor.clone(),
            reason: c.reason.clone(),
        }
    }
}

/// The registry named by `--registry`, or `driftline up`'s; a SQLite file
/// that does not exist is an error here (reading must not create one).
async fn open_registry(flag: Option<&str>) -> anyhow::Result<Registry> {
    let text = flag.map_or_else(
        || super::up::default_registry(std::path::Path::new(super::up::DEFAULT_STATE_DIR)),
        str::to_string,
    );
    let url = RegistryUrl::parse(&text)?;
    if let Some(file) = url.file()
        && !file.exists()
    {
        bail!(
            "no registry at {} (`driftline up` keeps one in its state directory; the operator writes where --registry says): pass --registry URL",
            file.display()
        );
    }
    Ok(Registry::connect_with(&url, &Default::default()).await?)
}

/// `driftline history MODEL`.
pub async fn history(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let registry = open_registry(args.registry.as_deref()).await?;
    let model = ModelRef::new(&args.namespace, &args.model);
    let versions = registry.history(&model, args.last).await?;
    let changes = registry.audit_trail(&model).await?;
    if versions.is_empty() && changes.is_empty() {
        bail!(
            "the registry at {} has no record of Model {model} (-n picks the namespace)",
            registry.url()
        );
    }
    let view = HistoryView {
        model: model.to_string(),
        versions: versions.iter().map(VersionView::from).collect(),
        champion_changes: changes.iter().map(ChangeView::from).collect(),
    };
    print!("{}", render(args.output, &view, history_table)?);
    Ok(ExitCode::SUCCESS)
}

fn history_table(view: &HistoryView) -> String {
    let metrics = |m: &BTreeMap<String, f64>| {
        m.iter()
            .filter(|(k, _)| !k.contains(':'))
            .take(4)
            .map(|(k, v)| format!("{k}={v:.3}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let versions: Vec<Vec<String>> = view
        .versions
        .iter()
        .map(|v| {
            vec![
                v.version.clone(),
                v.trigger.clone(),
                v.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                v.gate.clone().unwrap_or_default(),
                v.start
                    .as_ref()
                    .map(StartSummary::short)
                    .unwrap_or_default(),
                metrics(&v.metrics),
            ]
        })
        .collect();
    let changes: Vec<Vec<String>> = view
        .champion_changes
        .iter()
        .map(|c| {
            vec![
                c.at.to_rfc3339_opts(SecondsFormat::Secs, true),
                c.action.clone(),
                c.from.clone().unwrap_or_default(),
                c.to.clone().unwrap_or_default(),
                c.trigger.clone(),
                c.actor.clone().unwrap_or_default(),
                c.reason.clone(),
            ]
        })
        .collect();
    format!(
        "Model {}\n\n{}\nChampion changes\n{}",
        view.model,
        table(
            &["VERSION", "TRIGGER", "CREATED", "GATE", "START", "METRICS"],
            &versions
        ),
        table(
            &["TIME", "ACTION", "FROM", "TO", "TRIGGER", "BY", "REASON"],
            &changes
        )
    )
}
