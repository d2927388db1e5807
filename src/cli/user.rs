//! The user commands: `driftline status`, `promote`, `rollback` and
//! `retrain` (`history` is `history.rs`). They act only through the Model (the annotations the
//! operator understands, with the kubeconfig's user for the audit trail) and
//! read the registry; the operator stays the one place decisions are made.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::Serialize;

use super::output::{Output, render, table};
use crate::api::names;
use crate::api::{
    DriftSummary, Model, ModelVersion, NextTraining, TrainingRun, VersionPhase, version_name,
    version_number,
};

/// How to reach the cluster, shared by every user command.
#[derive(clap::Args, Debug, Clone)]
pub struct ClusterFlags {
    /// Namespace of the Model (default: the kubeconfig context's, else `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config; in a pod,
    /// its service account).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current context).
    #[arg(long)]
    pub context: Option<String>,
}

/// A reachable cluster, the namespace to act in, and who is acting.
struct Session {
    client: kube::Client,
    namespace: String,
    user: String,
}

async fn connect(flags: &ClusterFlags) -> anyhow::Result<Session> {
    let kubeconfig = match &flags.kubeconfig {
        Some(path) => Some(
            Kubeconfig::read_from(path)
                .with_context(|| format!("--kubeconfig {}: cannot read it", path.display()))?,
        ),
        None => Kubeconfig::read().ok(),
    };
    let (config, context_namespace, user) = match kubeconfig {
        Some(kc) => {
            let wanted = flags.context.clone().or_else(|| kc.current_context.clone());
            let context = kc
                .contexts
                .iter()
                .find(|c| Some(&c.name) == wanted.as_ref())
                .and_then(|c| c.context.clone());
            if flags.context.is_some() && context.is_none() {
                bail!(
                    "--context {}: no such context in the kubeconfig",
                    flags.context.as_deref().unwrap_or_default()
                );
            }
            let options = KubeConfigOptions {
                context: flags.context.clone(),
                ..Default::default()
            };
            let config = kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .context("the kubeconfig is not usable")?;
            let namespace = context.as_ref().and_then(|c| c.namespace.clone());
            let user = context.and_then(|c| c.user);
            (config, namespace, user)
        }
        None => {
            let config = kube::Config::incluster().map_err(|_| {
                anyhow::anyhow!(
                    "no kubeconfig found and not running in a pod: set KUBECONFIG (`driftline up` prints the line)"
                )
            })?;
            let namespace = Some(config.default_namespace.clone());
            (config, namespace, Some("system:serviceaccount".to_string()))
        }
    };
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).context("cannot build a Kubernetes client")?;
    // One quick request, so an unreachable cluster is one clear line, not a
    // retrying client.
    tokio::time::timeout(Duration::from_secs(10), client.apiserver_version())
        .await
        .map_err(|_| anyhow::anyhow!("no Kubernetes API server answers at {server} (timed out)"))?
        .map_err(|e| anyhow::anyhow!("no Kubernetes API server answers at {server}: {e}"))?;
    Ok(Session {
        client,
        namespace: flags
            .namespace
            .clone()
            .or(context_namespace)
            .unwrap_or_else(|| "default".into()),
        user: user.unwrap_or_else(|| "unknown".into()),
    })
}

async fn get_model(session: &Session, name: &str) -> anyhow::Result<Model> {
    let api: Api<Model> = Api::namespaced(session.client.clone(), &session.namespace);
    match api.get_opt(name).await {
        Ok(Some(m)) => Ok(m),
        Ok(None) => bail!(
            "no Model {name} in namespace {} (`kubectl get models -A` lists them; -n picks the namespace)",
            session.namespace
        ),
        Err(e) => Err(e).with_context(|| format!("cannot read Model {}/{name}", session.namespace)),
    }
}

// ---------------------------------------------------------------- status ---

/// Flags of `driftline status`.
#[derive(clap::Args, Debug, Clone)]
pub struct StatusArgs {
    /// One Model (default: every Model in the namespace; with -A, everywhere).
    pub model: Option<String>,
    /// Models of all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    #[command(flatten)]
    pub cluster: ClusterFlags,
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
    /// Base URL of the dashboard (`driftline up` prints it): each Model then
    /// links to its page.
    #[arg(long, env = crate::dashboard::links::DASHBOARD_ENV)]
    pub dashboard: Option<String>,
}

/// One Model as `driftline status` shows it.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct StatusView {
    namespace: String,
    name: String,
    phase: String,
    champion: Option<String>,
    candidate: Option<String>,
    traffic: Option<String>,
    drift: Option<DriftSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    estimated_accuracy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    realised_accuracy: Option<String>,
    training: Option<TrainingRun>,
    last_training: Option<TrainingRun>,
    next_training: Option<NextTraining>,
    /// Every condition, as `Type=Status: reason: message`.
    conditions: Vec<String>,
    /// The Model's dashboard page, when a dashboard URL is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    dashboard: Option<String>,
    /// Now on the operator's clock, which relative times are counted from.
    #[serde(skip)]
    now: DateTime<Utc>,
}

impl StatusView {
    fn of(m: &Model, dashboard: Option<&str>, now: DateTime<Utc>) -> StatusView {
        let s = m.status.clone().unwrap_or_default();
        let namespace = m.metadata.namespace.clone().unwrap_or_default();
        let name = m.metadata.name.clone().unwrap_or_default();
        StatusView {
            dashboard: dashboard.map(|base| {
                crate::dashboard::links::absolute(
                    base,
                    &crate::dashboard::links::model_path(&namespace, &name),
                )
            }),
            now,
            namespace,
            name,
            phase: s.phase.to_string(),
            champion: s.champion,
            candidate: s.candidate,
            traffic: s.traffic_summary,
            drift: s.drift,
            estimated_accuracy: s
                .estimated_accuracy
                .as_ref()
                .map(crate::api::EstimatedAccuracy::summary),
            realised_accuracy: s
                .realised_accuracy
                .as_ref()
                .and_then(crate::api::RealisedAccuracy::summary),
            training: s.training,
            last_training: s.last_training,
            next_training: s.next_training,
            conditions: s
                .conditions
                .iter()
                .map(|c| format!("{}={}: {}: {}", c.type_, c.status, c.reason, c.message))
                .collect(),
        }
    }

    fn row(&self) -> Vec<String> {
        let training = |t: &TrainingRun| {
            let when = t.finished_at.unwrap_or(t.started_at);
            format!(
                "{} {} {} ({})",
                t.version,
                t.trigger,
                t.outcome.as_deref().unwrap_or("Running"),
                ago(self.now, when)
            )
        };
        vec![
            self.namespace.clone(),
            self.name.clone(),
            self.phase.clone(),
            self.champion.clone().unwrap_or_default(),
            self.candidate.clone().unwrap_or_default(),
            self.traffic.clone().unwrap_or_default(),
            self.drift
                .as_ref()
                .map(|d| d.summary.clone())
                .unwrap_or_default(),
            self.training
                .as_ref()
                .or(self.last_training.as_ref())
                .map(training)
                .unwrap_or_default(),
            self.next_training
                .as_ref()
                .map(|n| n.at.to_rfc3339_opts(SecondsFormat::Secs, true))
                .unwrap_or_default(),
        ]
    }
}

/// `3m ago`, `2h ago`, `in 5m` relative to `now`.
fn ago(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds();
    let (n, unit) = match secs.unsigned_abs() {
        s if s < 120 => (s, "s"),
        s if s < 7200 => (s / 60, "m"),
        s if s < 172_800 => (s / 3600, "h"),
        s => (s / 86_400, "d"),
    };
    if secs >= 0 {
        format!("{n}{unit} ago")
    } else {
        format!("in {n}{unit}")
    }
}

/// Now on the operator's clock: the wall clock, unless the operator runs a
/// scaled one (`--time-scale`) and published it, as `driftline up` does.
async fn operator_now(client: &kube::Client) -> DateTime<Utc> {
    use crate::api::names::{CLOCK_CONFIG_MAP, CLOCK_NAMESPACE};
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), CLOCK_NAMESPACE);
    let published = match api.get_opt(CLOCK_CONFIG_MAP).await {
        Ok(Some(cm)) => cm
            .data
            .as_ref()
            .and_then(crate::operator::PublishedClock::from_data),
        // Absent, or not readable by this user: the wall clock is the best guess.
        _ => None,
    };
    published.map_or_else(Utc::now, |p| p.now_at(Utc::now()))
}

/// `driftline status [MODEL]`.
pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let session = connect(&args.cluster).await?;
    let models = match &args.model {
        Some(name) => vec![get_model(&session, name).await?],
        None => {
            let api: Api<Model> = if args.all_namespaces {
                Api::all(session.client.clone())
            } else {
                Api::namespaced(session.client.clone(), &session.namespace)
            };
            api.list(&ListParams::default())
                .await
                .context("cannot list Models")?
                .items
        }
    };
    let now = operator_now(&session.client).await;
    let views: Vec<StatusView> = models
        .iter()
        .map(|m| StatusView::of(m, args.dashboard.as_deref(), now))
        .collect();
    let text = match (&args.model, views.as_slice()) {
        (Some(_), [one]) => render(args.output, one, status_detail)?,
        _ => render(args.output, &views, |views| {
            if views.is_empty() {
                format!("no Models in namespace {}\n", session.namespace)
            } else {
                table(
                    &[
                        "NAMESPACE",
                        "NAME",
                        "PHASE",
                        "CHAMPION",
                        "CANDIDATE",
                        "TRAFFIC",
                        "DRIFT",
                        "TRAINING",
                        "NEXT TRAINING",
                    ],
                    &views.iter().map(StatusView::row).collect::<Vec<_>>(),
                )
            }
        })?,
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// One Model in full, for `driftline status MODEL`.
fn status_detail(v: &StatusView) -> String {
    let dash = |s: Option<&str>| s.unwrap_or("-").to_string();
    let mut out = String::new();
    let mut line = |k: &str, val: String| out.push_str(&format!("{k:<15}{val}\n"));
    line("Model:", format!("{}/{}", v.namespace, v.name));
    line("Phase:", v.phase.clone());
    line("Champion:", dash(v.champion.as_deref()));
    line("Candidate:", dash(v.candidate.as_deref()));
    line("Traffic:", dash(v.traffic.as_deref()));
    line(
        "Drift:",
        v.drift.as_ref().map_or("-".into(), |d| {
            if d.reason.is_empty() {
                d.summary.clone()
            } else {
                format!("{} — {}", d.summary, d.reason)
            }
        }),
    );
    line("Est. accuracy:", dash(v.estimated_accuracy.as_deref()));
    line("Labelled acc.:", dash(v.realised_accuracy.as_deref()));
    let run = |t: &TrainingRun| {
        format!(
            "{} {} {} ({}): {}",
            t.version,
            t.trigger,
            t.outcome.as_deref().unwrap_or("Running"),
            ago(v.now, t.finished_at.unwrap_or(t.started_at)),
            t.reason
        )
    };
    line("Training:", v.training.as_ref().map_or("-".into(), run));
    line(
        "Last training:",
        v.last_training.as_ref().map_or("-".into(), run),
    );
    line(
        "Next training:",
        v.next_training.as_ref().map_or("-".into(), |n| {
            format!(
                "{} ({}): {}",
                n.at.to_rfc3339_opts(SecondsFormat::Secs, true),
                ago(v.now, n.at),
                n.reason
            )
        }),
    );
    if let Some(url) = &v.dashboard {
        line("Dashboard:", url.clone());
    }
    out.push_str("Conditions:\n");
    for c in &v.conditions {
        out.push_str(&format!("  {c}\n"));
    }
    out
}

// ----------------------------------------------- promote, rollback, retrain ---

/// Flags every request command shares.
#[derive(clap::Args, Debug, Clone)]
pub struct RequestFlags {
    #[command(flatten)]
    pub cluster: ClusterFlags,
    /// How long to wait for the operator to act (`0s`: do not wait).
    #[arg(long, default_value = "60s", value_parser = super::flags::duration)]
    pub wait: Duration,
}

/// Flags of `driftline promote`.
#[derive(clap::Args, Debug, Clone)]
pub struct PromoteArgs {
    /// The Model.
    pub model: String,
    /// The version to make champion, `v<n>` (default: the canary).
    pub version: Option<String>,
    /// Promote a version its gate rejected (recorded in the audit trail).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub request: RequestFlags,
}

/// Flags of `driftline rollback` and `driftline retrain`.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelRequestArgs {
    /// The Model.
    pub model: String,
    /// Why, for the version's lineage and the Events (retrain).
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub request: RequestFlags,
}

/// `driftline promote MODEL [vN]`.
pub async fn promote(args: PromoteArgs) -> anyhow::Result<ExitCode> {
    let session = connect(&args.request.cluster).await?;
    let model = get_model(&session, &args.model).await?;
    let n = match &args.version {
        None => None,
        Some(v) => Some(version_number(v).ok_or_else(|| {
            anyhow::anyhow!("`{v}` does not name a version; write v<n>, e.g. v3")
        })?),
    };
    if let Some(n) = n {
        let versions: Api<ModelVersion> =
            Api::namespaced(session.client.clone(), &session.namespace);
        let Some(mv) = versions
            .get_opt(&names::version_object(&args.model, n))
            .await
            .context("cannot read the Model's versions")?
        else {
            let all = versions
                .list(&ListParams::default().labels(&format!(
                    "{}={}",
                    names::MODEL_LABEL,
                    args.model
                )))
                .await
                .map(|l| {
                    l.items
                        .iter()
                        .map(|v| version_name(v.spec.version))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            bail!(
                "{}/{} has no version {} (versions: {})",
                session.namespace,
                args.model,
                version_name(n),
                if all.is_empty() { "none".into() } else { all }
            );
        };
        let status = mv.status.unwrap_or_default();
        match status.phase {
            VersionPhase::Rejected if !args.force => bail!(
                "{} was rejected by its gate ({}); pass --force to promote it anyway",
                version_name(n),
                status
                    .gate
                    .as_ref()
                    .map_or("no report".into(), |g| g.summary.clone())
            ),
            VersionPhase::Champion => bail!("{} is already champion", version_name(n)),
            VersionPhase::Training | VersionPhase::Failed => bail!(
                "{} is {}; only trained versions can be promoted",
                version_name(n),
                status.phase
            ),
            _ => {}
        }
    } else if model
        .status
        .as_ref()
        .and_then(|s| s.canary.as_ref())
        .is_none()
    {
        bail!(
            "{}/{} has no canary in progress; name the version to promote (driftline promote {} v<n>)",
            session.namespace,
            args.model,
            args.model
        );
    }
    let stamp = request_stamp(&session.user);
    let value = match n {
        Some(n) => format!("{} {stamp}", version_name(n)),
        None => format!("{} {stamp}", names::PROMOTE_CANARY),
    };
    let done = send_request(
        &session,
        &model,
        names::PROMOTE_ANNOTATION,
        &value,
        args.request.wait,
    )
    .await?;
    if let Some(m) = done {
        let champion = m.status.and_then(|s| s.champion).unwrap_or_default();
        println!(
            "{}/{}: champion is now {champion}",
            session.namespace, args.model
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Sends a rollback or retrain request for the Model and waits for the
/// operator's answer.
async fn model_request(
    args: &ModelRequestArgs,
    key: &str,
) -> anyhow::Result<(Session, Option<Model>)> {
    let session = connect(&args.request.cluster).await?;
    let model = get_model(&session, &args.model).await?;
    let value = with_reason(request_stamp(&session.user), args.reason.as_deref());
    let done = send_request(&session, &model, key, &value, args.request.wait).await?;
    Ok((session, done))
}

/// `driftline rollback MODEL`.
pub async fn rollback(args: ModelRequestArgs) -> anyhow::Result<ExitCode> {
    let (session, done) = model_request(&args, names::ROLLBACK_ANNOTATION).await?;
    if let Some(m) = done {
        let s = m.status.unwrap_or_default();
        println!(
            "{}/{}: rolled back; champion {}, traffic {}",
            session.namespace,
            args.model,
            s.champion.as_deref().unwrap_or("none"),
            s.traffic_summary.as_deref().unwrap_or("none")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `driftline retrain MODEL`.
pub async fn retrain(args: ModelRequestArgs) -> anyhow::Result<ExitCode> {
    let (session, done) = model_request(&args, names::RETRAIN_ANNOTATION).await?;
    if let Some(m) = done {
        let training = m
            .status
            .and_then(|s| s.training)
            .map_or("a new version".into(), |t| t.version);
        println!(
            "{}/{}: training {training} started (kubectl get modelversions -n {} -w)",
            session.namespace, args.model, session.namespace
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A request's unique value: who and when (each value is acted on once).
fn request_stamp(user: &str) -> String {
    format!(
        "by {user} at {}",
        Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
    )
}

fn with_reason(stamp: String, reason: Option<&str>) -> String {
    match reason {
        Some(r) if !r.trim().is_empty() => format!("{stamp}: {}", r.trim()),
        _ => stamp,
    }
}

/// Annotates the Model and waits until the operator has acted on it; an
/// error carries the operator's refusal.
async fn send_request(
    session: &Session,
    model: &Model,
    key: &str,
    value: &str,
    wait: Duration,
) -> anyhow::Result<Option<Model>> {
    let name = model.metadata.name.clone().unwrap_or_default();
    let api: Api<Model> = Api::namespaced(session.client.clone(), &session.namespace);
    let patch = serde_json::json!({"metadata": {"annotations": {
        key: value,
        names::REQUESTED_BY_ANNOTATION: session.user,
    }}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("cannot annotate Model {}/{name}", session.namespace))?;
    if wait.is_zero() {
        println!("asked: {key}: {value}");
        return Ok(None);
    }
    // The id the operator records for this request (see `operator::observe`).
    let id = format!("{key}={value}");
    let deadline = Instant::now() + wait;
    loop {
        let current = api.get(&name).await.context("cannot read the Model")?;
        let handled = current
            .status
            .as_ref()
            .and_then(|s| s.handled_request.as_deref())
            == Some(id.as_str());
        // A refusal names the request's value: a malformed one is refused
        // before it is handled, a handled one with its id.
        let gone = !current
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(key));
        if (handled || gone)
            && let Some(refusal) = refusal(session, &name, value).await
        {
            bail!("{refusal}");
        }
        if handled {
            return Ok(Some(current));
        }
        if Instant::now() >= deadline {
            bail!(
                "the operator has not acted on the request within {}s (is it running? `kubectl describe model -n {} {name}` shows its Events)",
                wait.as_secs(),
                session.namespace
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The operator's `RequestRefused` Event for this request, if it refused it.
async fn refusal(session: &Session, model: &str, value: &str) -> Option<String> {
    let events: Api<Event> = Api::namespaced(session.client.clone(), &session.namespace);
    let list = events.list(&ListParams::default()).await.ok()?;
    list.items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(model))
        .filter(|e| e.reason.as_deref() == Some("RequestRefused"))
        .filter_map(|e| e.message)
        .find(|m| m.contains(value))
}
