//! `driftline history`: a Model's versions from the registry, each with its
//! gate outcome and where its first weights came from, then every change of
//! champion, then the notifications no attempt delivered (dead letters).

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::bail;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::output::{Output, render, table};
use crate::api::{StartSummary, version_name};
use crate::registry::{
    CanaryAnalysis, ChampionChange, DeadLetter, ModelRef, Registry, RegistryUrl, VersionHistory,
};

/// Flags of `driftline history`.
#[derive(clap::Args, Debug, Clone)]
pub struct HistoryArgs {
    /// The Model.
    pub model: String,
    #[command(flatten)]
    pub ns: super::flags::ModelNamespace,
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
    /// Notifications every attempt failed to deliver, oldest first.
    undelivered: Vec<UndeliveredView>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct UndeliveredView {
    failed_at: DateTime<Utc>,
    version: Option<String>,
    event_type: String,
    event_id: String,
    sink: String,
    attempts: u32,
    last_error: String,
}

impl From<&DeadLetter> for UndeliveredView {
    fn from(d: &DeadLetter) -> Self {
        UndeliveredView {
            failed_at: d.failed_at,
            version: d.version.map(version_name),
            event_type: d.event_type.clone(),
            event_id: d.event_id.clone(),
            sink: d.sink_url.clone(),
            attempts: d.attempts,
            last_error: d.last_error.clone(),
        }
    }
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
    /// Its shadow stage's verdict, with the numbers, when it had one.
    shadow: Option<String>,
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
            shadow: None,
        }
    }
}

/// The last shadow verdict among a version's recorded analyses: the one of
/// weight 0 (no user traffic), in a few words.
fn shadow_summary(analyses: &[CanaryAnalysis]) -> Option<String> {
    let a = analyses
        .iter()
        .filter(|a| a.weight == 0)
        .max_by_key(|a| a.window_end)?;
    let disagreement = a
        .checks
        .iter()
        .find(|c| c.name == "maxDisagreement")
        .map(|c| format!(", {:.2} % disagreement", c.value * 100.0))
        .unwrap_or_default();
    Some(format!(
        "shadow {} ({} pairs{disagreement})",
        a.verdict.as_str().to_lowercase(),
        a.canary_requests
    ))
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
    let model = ModelRef::new(&args.ns.namespace, &args.model);
    let versions = registry.history(&model, args.last).await?;
    let changes = registry.audit_trail(&model).await?;
    let undelivered = registry.dead_letters(&model).await?;
    if versions.is_empty() && changes.is_empty() && undelivered.is_empty() {
        bail!(
            "the registry at {} has no record of Model {model} (-n picks the namespace)",
            registry.url()
        );
    }
    let mut views = Vec::with_capacity(versions.len());
    for h in &versions {
        let mut view = VersionView::from(h);
        let analyses = registry.canary_analyses(&model, h.version.version).await?;
        view.shadow = shadow_summary(&analyses);
        views.push(view);
    }
    let view = HistoryView {
        model: model.to_string(),
        versions: views,
        champion_changes: changes.iter().map(ChangeView::from).collect(),
        undelivered: undelivered.iter().map(UndeliveredView::from).collect(),
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
                v.shadow.clone().unwrap_or_default(),
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
    let mut text = format!(
        "Model {}\n\n{}\nChampion changes\n{}",
        view.model,
        table(
            &[
                "VERSION", "TRIGGER", "CREATED", "GATE", "SHADOW", "START", "METRICS",
            ],
            &versions
        ),
        table(
            &["TIME", "ACTION", "FROM", "TO", "TRIGGER", "BY", "REASON"],
            &changes
        )
    );
    // Only when there are some: most Models never lose a notification.
    if !view.undelivered.is_empty() {
        let rows: Vec<Vec<String>> = view
            .undelivered
            .iter()
            .map(|d| {
                vec![
                    d.failed_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                    d.version.clone().unwrap_or_default(),
                    d.event_type
                        .strip_prefix(crate::api::EVENT_TYPE_PREFIX)
                        .unwrap_or(&d.event_type)
                        .to_string(),
                    d.sink.clone(),
                    d.attempts.to_string(),
                    d.last_error.clone(),
                ]
            })
            .collect();
        text.push_str(&format!(
            "\nUndelivered notifications (dead letters)\n{}",
            table(
                &[
                    "FAILED",
                    "VERSION",
                    "EVENT",
                    "SINK",
                    "ATTEMPTS",
                    "LAST ERROR"
                ],
                &rows
            )
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{AnalysisVerdict, CheckRecord};

    fn analysis(weight: u32, end: &str, verdict: AnalysisVerdict) -> CanaryAnalysis {
        let at = |s: &str| s.parse::<DateTime<Utc>>().expect("time");
        CanaryAnalysis {
            model: ModelRef::new("ml", "wine-quality"),
            version: 2,
            step: 0,
            weight,
            window_start: at("2026-06-01T08:00:00Z"),
            window_end: at(end),
            canary_requests: 40,
            stable_requests: 40,
            canary_errors: 0,
            stable_errors: 0,
            canary_p99_ms: None,
            stable_p99_ms: None,
            divergence: None,
            verdict,
            message: String::new(),
            checks: vec![CheckRecord {
                name: "maxDisagreement".into(),
                value: 0.125,
                bound: 0.05,
                passed: false,
                evidence: Some("harm".into()),
                lower: None,
                upper: None,
            }],
        }
    }

    #[test]
    fn undelivered_notifications_follow_the_changes_only_when_there_are_some() {
        let mut view = HistoryView {
            model: "ml/wine-quality".into(),
            versions: Vec::new(),
            champion_changes: Vec::new(),
            undelivered: Vec::new(),
        };
        assert!(!history_table(&view).contains("Undelivered"));
        view.undelivered.push(UndeliveredView::from(&DeadLetter {
            model: ModelRef::new("ml", "wine-quality"),
            event_id: "abc".into(),
            sink_url: "https://hooks.example.com/driftline".into(),
            version: Some(2),
            event_type: "io.driftline.model.rolledback".into(),
            attempts: 5,
            last_error: "503 Service Unavailable".into(),
            failed_at: "2026-06-01T08:00:00Z".parse().expect("time"),
        }));
        let text = history_table(&view);
        let section = text
            .split("Undelivered notifications (dead letters)\n")
            .nth(1)
            .expect("the section");
        let row: Vec<&str> = section
            .lines()
            .nth(1)
            .expect("a row")
            .split_whitespace()
            .collect();
        assert_eq!(
            row,
            [
                "2026-06-01T08:00:00Z",
                "v2",
                "rolledback",
                "https://hooks.example.com/driftline",
                "5",
                "503",
                "Service",
                "Unavailable"
            ]
        );
    }

    #[test]
    fn the_shadow_column_is_the_last_weight_zero_analysis() {
        let rows = [
            analysis(0, "2026-06-01T08:05:00Z", AnalysisVerdict::Inconclusive),
            analysis(0, "2026-06-01T08:09:00Z", AnalysisVerdict::Failed),
            analysis(20, "2026-06-01T08:30:00Z", AnalysisVerdict::Passed),
        ];
        assert_eq!(
            shadow_summary(&rows).as_deref(),
            Some("shadow failed (40 pairs, 12.50 % disagreement)")
        );
        assert_eq!(
            shadow_summary(&rows[2..]),
            None,
            "canary steps are not the shadow"
        );
    }
}
