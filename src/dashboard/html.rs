//! Pages as HTML: pure functions of the page data. Every string that came
//! from a user (names, labels, features, messages, reasons) goes through
//! [`escape`]; the CSS is embedded, nothing is fetched from elsewhere.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::svg::{self, HeatCell, Marker, PALETTE, Series};
use super::view::{
    AuditRow, CanaryView, CheckView, CurveView, DriftView, HistogramView, ModelPage, ModelRow,
    ModelsPage, StartComparison, VersionPage, VersionRow,
};
use crate::api::StartSummary;

/// Rows of the version history the HTML page shows unless `?all=1` (the
/// JSON twin always has every version).
pub const VERSION_ROWS: usize = 100;
/// Rows of the audit trail the HTML page shows unless `?all=1`.
pub const AUDIT_ROWS: usize = 100;
/// Points of the traffic timeline the chart draws (the newest); champion
/// changes among them are labelled when few enough to read.
pub const TRAFFIC_POINTS: usize = 200;
const LABELLED_MARKERS: usize = 12;
/// Canary analyses the HTML page lists (the newest).
pub const CANARY_ROWS: usize = 50;

/// `text` safe in HTML text and in quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` as one query-string value.
fn query_value(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

const CSS: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222}\
header{background:#123;color:#fff;padding:8px 16px}header a{color:#fff;text-decoration:none;font-weight:600}\
main{padding:8px 16px;max-width:1100px}h2{margin-top:28px;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}\
th{background:#f3f3f3}.pass{color:#17751b}.fail{color:#b00;font-weight:600}.muted{color:#777}\
.drift{color:#b00;font-weight:600}.ok{color:#17751b}.note{background:#fff4ce;padding:4px 8px}\
svg .ax{font-size:10px;fill:#444}code{font-size:12px}.phase{font-weight:600}";

fn layout(title: &str, json: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} · driftline</title>\
         <style>{CSS}</style></head><body><header><a href=\"/\">driftline</a> · {t} \
         <a class=\"muted\" style=\"float:right;font-weight:400\" href=\"{j}\">JSON</a></header><main>{body}</main></body></html>",
        t = escape(title),
        j = escape(json),
    )
}

fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Long text cut to `max` characters, whole in a tooltip.
fn clipped(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return escape(text);
    }
    let cut: String = text.chars().take(max).collect();
    format!("<span title=\"{}\">{}…</span>", escape(text), escape(&cut))
}

fn opt(text: Option<&str>) -> String {
    text.map_or_else(|| "<span class=\"muted\">–</span>".into(), escape)
}

fn number(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| escape(&svg::short(v)))
}

fn traffic_cell(row: &ModelRow) -> String {
    if row.traffic.is_empty() {
        return "<span class=\"muted\">nothing serves</span>".into();
    }
    let parts: Vec<(String, u32)> = row
        .traffic
        .iter()
        .map(|t| (t.version.clone(), t.weight))
        .collect();
    let text: Vec<String> = parts
        .iter()
        .map(|(v, w)| format!("{}:{w}", escape(v)))
        .collect();
    format!("{} {}", svg::traffic_bar(&parts), text.join(" "))
}

fn drift_cell(row: &ModelRow) -> String {
    match &row.drift {
        None => "<span class=\"muted\">not measured</span>".into(),
        Some(d) if d.window_drifted => format!(
            "<span class=\"drift\" data-drift=\"drifted\">drifted</span> {} ({} in a row)",
            escape(&d.drifted_features.join(", ")),
            d.consecutive_windows
        ),
        Some(d) => format!(
            "<span class=\"ok\" data-drift=\"ok\">ok</span> <span class=\"muted\">score {}</span>",
            escape(&svg::short(d.score))
        ),
    }
}

fn training_cell(row: &ModelRow) -> String {
    let mut out = String::new();
    if let Some(t) = &row.training {
        let _ = write!(
            out,
            "training {} ({}) since {}",
            escape(&t.version),
            t.trigger,
            time(&t.started_at)
        );
    } else if let Some(t) = &row.last_training {
        let _ = write!(
            out,
            "{} ({}) {} {}",
            escape(&t.version),
            t.trigger,
            t.finished_at.as_ref().map(time).unwrap_or_default(),
            opt(t.outcome.as_deref())
        );
    } else {
        out.push_str("<span class=\"muted\">never</span>");
    }
    out
}

fn next_training_cell(row: &ModelRow) -> String {
    row.next_training.as_ref().map_or_else(
        || "<span class=\"muted\">–</span>".into(),
        |n| {
            format!(
                "{} <span class=\"muted\">{}</span>",
                time(&n.at),
                escape(&n.reason)
            )
        },
    )
}

fn labels(row: &ModelRow) -> String {
    row.labels
        .iter()
        .map(|(k, v)| format!("<code>{}={}</code>", escape(k), escape(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The Models list.
pub fn models_page(page: &ModelsPage) -> String {
    let mut body = String::from(
        "<h2>Models</h2><table id=\"models\"><tr><th>Model</th><th>Phase</th><th>Champion</th>\
         <th>Candidate</th><th>Traffic</th><th>Drift</th><th>Last training</th><th>Next training</th></tr>",
    );
    for m in &page.models {
        let _ = write!(
            body,
            "<tr><td><a href=\"{}\">{}/{}</a> {}</td><td class=\"phase\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&m.url),
            escape(&m.namespace),
            escape(&m.name),
            labels(m),
            m.phase,
            opt(m.champion.as_deref()),
            opt(m.candidate.as_deref()),
            traffic_cell(m),
            drift_cell(m),
            training_cell(m),
            next_training_cell(m),
        );
    }
    body.push_str("</table>");
    if page.models.is_empty() {
        body.push_str(
            "<p class=\"muted\">No Models yet: <code>kubectl apply -f model.yaml</code>.</p>",
        );
    }
    layout("Models", "/?format=json", &body)
}

fn seconds(t: &DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

fn traffic_section(page: &ModelPage, out: &mut String) {
    out.push_str("<h2 id=\"traffic\">Traffic over time</h2>");
    // Canary share as a step line; champion changes as markers.
    let mut points = Vec::new();
    let mut markers = Vec::new();
    let newest = &page.traffic[page.traffic.len().saturating_sub(TRAFFIC_POINTS)..];
    let changes = newest.iter().filter(|p| p.canary.is_none()).count();
    for p in newest {
        let x = seconds(&p.at);
        if p.canary.is_some() {
            if let Some(&(_, prev)) = points.last() {
                points.push((x, prev));
            }
            points.push((x, f64::from(p.canary_weight)));
        } else {
            if let Some(&(_, prev)) = points.last() {
                points.push((x, prev));
            }
            points.push((x, 0.0));
            markers.push(Marker {
                x,
                label: if changes <= LABELLED_MARKERS || p.mark.starts_with("Rollback") {
                    &p.mark
                } else {
                    ""
                },
                colour: if p.mark.starts_with("Rollback") {
                    "#b00"
                } else {
                    "#17751b"
                },
            });
        }
    }
    let xs = points.iter().map(|p: &(f64, f64)| p.0);
    let span = xs.clone().fold(f64::MIN, f64::max) - xs.fold(f64::MAX, f64::min);
    out.push_str(&svg::line_chart(
        "canary share of traffic, percent",
        &[Series {
            label: "canary %",
            colour: PALETTE[1],
            dashed: false,
            points,
        }],
        &markers,
        Some((0.0, 100.0)),
        &svg::time_ticks(span),
    ));
    out.push_str("<ol class=\"muted\" id=\"traffic-steps\">");
    for p in page.traffic.iter().rev().take(20).rev() {
        let _ = write!(out, "<li>{} {}</li>", time(&p.at), escape(&p.mark));
    }
    out.push_str("</ol>");
}

fn check_cells(checks: &[CheckView]) -> String {
    checks
        .iter()
        .map(|c| {
            let class = match c.passed {
                Some(true) => "pass",
                Some(false) => "fail",
                None => "muted",
            };
            format!(
                "<td class=\"{class}\">{} <span class=\"muted\">{}</span></td>",
                number(c.value),
                escape(&c.bound)
            )
        })
        .collect()
}

fn canary_table(analyses: &[CanaryView], out: &mut String) {
    let Some(first) = analyses.first() else {
        out.push_str("<p class=\"muted\">No canary analyses yet.</p>");
        return;
    };
    out.push_str(
        "<table id=\"canary\"><tr><th>Version</th><th>Step</th><th>Window end</th><th>Verdict</th>",
    );
    for c in &first.checks {
        let _ = write!(out, "<th>{}</th>", escape(&c.name));
    }
    out.push_str("<th>Message</th></tr>");
    for a in analyses.iter().rev().take(CANARY_ROWS) {
        let verdict = if a.verdict == "Failed" {
            "fail"
        } else {
            "pass"
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{} ({}%)</td><td>{}</td><td class=\"{verdict}\">{}</td>{}<td>{}</td></tr>",
            escape(&a.version),
            a.step,
            a.weight,
            time(&a.window_end),
            escape(&a.verdict),
            check_cells(&a.checks),
            escape(&a.message)
        );
    }
    out.push_str("</table>");
}

fn drift_section(drift: &DriftView, out: &mut String) {
    out.push_str("<h2 id=\"drift\">Drift per feature</h2>");
    let _ = write!(
        out,
        "<p>The newest {} windows{}{}. Drifted features: <span id=\"drifted-features\" class=\"{}\">{}</span></p>",
        drift.windows,
        match (&drift.first_window_end, &drift.last_window_end) {
            (Some(a), Some(b)) => format!(
                " from {} to {}, {} columns",
                time(a),
                time(b),
                drift.columns
            ),
            _ => String::new(),
        },
        match (&drift.earliest_window_end, &drift.first_window_end) {
            (Some(e), Some(f)) if e < f => format!(
                " (recorded since {}: <a href=\"?windows={}\">more windows</a>)",
                time(e),
                drift.windows.saturating_mul(5)
            ),
            _ => String::new(),
        },
        // The alarm colour only when something drifted.
        if drift.drifted_features.is_empty() {
            "ok"
        } else {
            "drift"
        },
        if drift.drifted_features.is_empty() {
            "none".to_string()
        } else {
            escape(&drift.drifted_features.join(", "))
        }
    );
    let rows: Vec<String> = drift
        .features
        .iter()
        .map(|f| format!("{} (>{})", f.feature, svg::short(f.threshold)))
        .collect();
    let cells: Vec<HeatCell> = drift
        .features
        .iter()
        .enumerate()
        .flat_map(|(row, f)| {
            f.cells
                .iter()
                .map(move |&(column, value, drifted)| HeatCell {
                    row,
                    column: column as usize,
                    ratio: if f.threshold > 0.0 {
                        value / f.threshold
                    } else {
                        value
                    },
                    drifted: drifted > 0,
                })
        })
        .collect();
    out.push_str("<div id=\"heatmap\">");
    out.push_str(&svg::heatmap(
        "drift statistic per feature and window, relative to the threshold",
        &rows,
        drift.columns as usize,
        &cells,
    ));
    out.push_str("</div>");
}

fn histogram_section(page: &ModelPage, out: &mut String) {
    out.push_str("<h2 id=\"histogram\">Reference and live distribution</h2><form method=\"get\">Feature <select name=\"feature\" onchange=\"this.form.submit()\">");
    let chosen = page.histogram.as_ref().map(|h| h.feature.as_str());
    for f in &page.features {
        let _ = write!(
            out,
            "<option value=\"{}\"{}>{}</option>",
            escape(f),
            if Some(f.as_str()) == chosen {
                " selected"
            } else {
                ""
            },
            escape(f)
        );
    }
    out.push_str("</select> <noscript><button>Show</button></noscript></form>");
    let Some(h) = &page.histogram else {
        out.push_str(
            "<p class=\"muted\">No reference profile (no champion artifact readable).</p>",
        );
        return;
    };
    histogram_chart(h, out);
}

fn histogram_chart(h: &HistogramView, out: &mut String) {
    let reference_label = format!("reference ({})", h.version);
    let live_label = format!("live ({} rows)", h.live_rows);
    let mut series = vec![(reference_label.as_str(), PALETTE[0], h.reference.clone())];
    if let Some(live) = &h.live {
        series.push((live_label.as_str(), PALETTE[1], live.clone()));
    } else {
        out.push_str(
            "<p class=\"muted\">The champion's server did not answer: reference only.</p>",
        );
    }
    out.push_str(&svg::bar_chart(
        &format!("{}: share of rows per bin", h.feature),
        &h.bins,
        &series,
    ));
}

fn curves_section(curves: &[CurveView], out: &mut String) {
    out.push_str("<h2 id=\"curves\">Training curves</h2>");
    let mut series = Vec::new();
    let labels: Vec<(String, String)> = curves
        .iter()
        .map(|c| {
            (
                format!("{} train", c.version),
                format!("{} validation", c.version),
            )
        })
        .collect();
    for (i, (c, (train, validation))) in curves.iter().zip(&labels).enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        series.push(Series {
            label: train,
            colour,
            dashed: false,
            points: c.epochs.iter().map(|e| (f64::from(e.0), e.1)).collect(),
        });
        series.push(Series {
            label: validation,
            colour,
            dashed: true,
            points: c
                .epochs
                .iter()
                .filter_map(|e| Some((f64::from(e.0), e.2?)))
                .collect(),
        });
    }
    out.push_str(&svg::line_chart(
        "loss per epoch",
        &series,
        &[],
        None,
        &|x| format!("{x:.0}"),
    ));
}

/// A warm retrain's validation curve on the same axes as the run it started
/// from, and the epochs each needed to reach the parent's best.
fn warm_start_section(this: &CurveView, w: &StartComparison, out: &mut String) {
    let reference = &w.reference;
    let metric = reference
        .metric
        .clone()
        .unwrap_or_else(|| "validation metric".into());
    let how =
        |s: Option<&StartSummary>| s.map_or_else(|| "start unknown".into(), |s| s.from.to_string());
    let _ = write!(
        out,
        "<h2 id=\"warm-start\">Warm start against {r}</h2>\
         <table id=\"warm-start-table\"><tr><th></th><th>{t} (this run)</th><th>{r} ({rs})</th></tr>\
         <tr><th>Epochs trained</th><td>{}</td><td>{}</td></tr>\
         <tr><th>First epoch at {r}'s best {m} {target}</th><td>{}</td><td>{}</td></tr></table>",
        this.epochs.len(),
        reference.epochs.len(),
        w.epochs_to_target
            .map_or_else(|| "not reached".into(), |e| e.to_string()),
        w.reference_epochs_to_target
            .map_or_else(|| "–".into(), |e| e.to_string()),
        t = escape(&this.version),
        r = escape(&reference.version),
        rs = escape(&how(w.reference_start.as_ref())),
        m = escape(&metric),
        target = number(w.target),
    );
    let validation = |c: &CurveView| -> Vec<(f64, f64)> {
        c.epochs
            .iter()
            .filter_map(|e| Some((f64::from(e.0), e.3?)))
            .collect()
    };
    let this_label = format!("{} (this run)", this.version);
    let reference_label = format!("{} (its parent)", reference.version);
    let series = [
        Series {
            label: &this_label,
            colour: PALETTE[0],
            dashed: false,
            points: validation(this),
        },
        Series {
            label: &reference_label,
            colour: PALETTE[1],
            dashed: true,
            points: validation(reference),
        },
    ];
    out.push_str(&svg::line_chart(
        &format!("validation {metric} per epoch"),
        &series,
        &[],
        None,
        &|x| format!("{x:.0}"),
    ));
}

fn versions_table(rows: &[VersionRow], all: bool, out: &mut String) {
    let metrics: std::collections::BTreeSet<&String> =
        rows.iter().flat_map(|r| r.metrics.keys()).collect();
    out.push_str("<table id=\"versions\"><tr><th>Version</th><th>Phase</th><th>Trigger</th><th>Created</th><th>Gate</th>");
    for m in &metrics {
        let _ = write!(
            out,
            "<th>{} <span class=\"muted\">(Δ champion)</span></th>",
            escape(m)
        );
    }
    out.push_str("<th>Reason</th></tr>");
    let shown = if all { rows.len() } else { VERSION_ROWS };
    for r in rows.iter().rev().take(shown) {
        let gate = match r.gate_passed {
            Some(true) => format!(
                "<span class=\"pass\">{}</span>",
                opt(r.gate_summary.as_deref())
            ),
            Some(false) => format!(
                "<span class=\"fail\">{}</span>",
                opt(r.gate_summary.as_deref())
            ),
            None => "<span class=\"muted\">–</span>".into(),
        };
        let _ = write!(
            out,
            "<tr><td><a href=\"{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{gate}</td>",
            escape(&r.url),
            escape(&r.version),
            r.phase.map_or_else(|| "–".into(), |p| format!("{p:?}")),
            escape(&r.trigger),
            time(&r.created_at),
        );
        for m in &metrics {
            let delta = r.vs_champion.get(*m).map_or_else(String::new, |d| {
                format!(" <span class=\"muted\">({d:+.4})</span>")
            });
            let _ = write!(
                out,
                "<td>{}{delta}</td>",
                number(r.metrics.get(*m).copied())
            );
        }
        let _ = write!(out, "<td>{}</td></tr>", clipped(&r.reason, 120));
    }
    out.push_str("</table>");
    if !all && rows.len() > VERSION_ROWS {
        let _ = write!(
            out,
            "<p>Newest {VERSION_ROWS} of {} versions. <a href=\"?all=1\">Show all</a></p>",
            rows.len()
        );
    }
}

fn audit_table(rows: &[AuditRow], all: bool, out: &mut String) {
    out.push_str("<table id=\"audit\"><tr><th>When</th><th>Action</th><th>From</th><th>To</th><th>Trigger</th><th>Who</th><th>Why</th></tr>");
    let shown = if all { rows.len() } else { AUDIT_ROWS };
    for r in rows.iter().rev().take(shown) {
        let class = if r.action == "Rollback" {
            "fail"
        } else {
            "pass"
        };
        let _ = write!(
            out,
            "<tr data-action=\"{a}\"><td>{}</td><td class=\"{class}\">{a}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            time(&r.at),
            opt(r.from.as_deref()),
            opt(r.to.as_deref()),
            escape(&r.trigger),
            r.actor.as_deref().map_or_else(|| "operator".into(), escape),
            escape(&r.reason),
            a = escape(&r.action),
        );
    }
    out.push_str("</table>");
    if rows.is_empty() {
        out.push_str("<p class=\"muted\">No champion changes recorded.</p>");
    } else if !all && rows.len() > AUDIT_ROWS {
        let _ = write!(
            out,
            "<p>Newest {AUDIT_ROWS} of {} champion changes. <a href=\"?all=1\">Show all</a></p>",
            rows.len()
        );
    }
}

/// A Model's page; `all_versions` lists every version and champion change
/// instead of the newest [`VERSION_ROWS`] and [`AUDIT_ROWS`].
pub fn model_page(page: &ModelPage, all_versions: bool) -> String {
    let m = &page.model;
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>{}/{}</h1><p>{}</p><table id=\"summary\"><tr><th>Phase</th><td class=\"phase\">{}</td></tr>\
         <tr><th>Champion</th><td>{}</td></tr><tr><th>Candidate</th><td>{}</td></tr>\
         <tr><th>Traffic</th><td>{}</td></tr><tr><th>Drift</th><td>{}</td></tr>\
         <tr><th>Estimated accuracy</th><td id=\"estimated-accuracy\">{}</td></tr>\
         <tr><th>Realised accuracy</th><td id=\"realised-accuracy\">{}</td></tr>\
         <tr><th>Last training</th><td>{}</td></tr><tr><th>Next training</th><td>{}</td></tr></table>",
        escape(&m.namespace),
        escape(&m.name),
        labels(m),
        m.phase,
        opt(m.champion.as_deref()),
        opt(m.candidate.as_deref()),
        traffic_cell(m),
        drift_cell(m),
        opt(m.estimated_accuracy.as_deref()),
        opt(m.realised_accuracy.as_deref()),
        training_cell(m),
        next_training_cell(m),
    );
    for note in &page.notes {
        let _ = write!(body, "<p class=\"note\">{}</p>", escape(note));
    }
    traffic_section(page, &mut body);
    body.push_str("<h2 id=\"analyses\">Canary analyses</h2>");
    canary_table(&page.canary_analyses, &mut body);
    super::shadow::shadow_section(&page.shadow, &mut body);
    drift_section(&page.drift, &mut body);
    histogram_section(page, &mut body);
    super::queue::queue_section(page.annotation_queue.as_ref(), &mut body);
    curves_section(&page.curves, &mut body);
    body.push_str("<h2 id=\"history\">Versions</h2>");
    versions_table(&page.versions, all_versions, &mut body);
    body.push_str("<h2 id=\"audit-trail\">Audit trail</h2>");
    audit_table(&page.audit, all_versions, &mut body);
    let json = format!(
        "{}?format=json{}",
        m.url,
        page.histogram
            .as_ref()
            .map_or_else(String::new, |h| format!(
                "&feature={}",
                query_value(&h.feature)
            ))
    );
    layout(&format!("{}/{}", m.namespace, m.name), &json, &body)
}

/// A version's page.
pub fn version_page(page: &VersionPage) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1><a href=\"{}\">{}/{}</a> {}</h1><p>Phase <span class=\"phase\">{}</span> {}</p>",
        escape(&page.model_url),
        escape(&page.namespace),
        escape(&page.model),
        escape(&page.version),
        page.phase
            .map_or_else(|| "unknown".into(), |p| format!("{p:?}")),
        opt(page.message.as_deref()),
    );
    for note in &page.notes {
        let _ = write!(body, "<p class=\"note\">{}</p>", escape(note));
    }
    body.push_str("<h2>Lineage</h2>");
    match &page.lineage {
        Some(l) => {
            let _ = write!(
                body,
                "<table id=\"lineage\"><tr><th>Trigger</th><td>{}</td></tr><tr><th>Reason</th><td>{}</td></tr>\
                 <tr><th>Seed</th><td>{}</td></tr><tr><th>Config hash</th><td><code>{}</code></td></tr>\
                 <tr><th>Dataset digest</th><td><code>{}</code></td></tr><tr><th>Artifact</th><td><code>{}</code></td></tr>\
                 <tr><th>Feedback rows</th><td>{}</td></tr><tr><th>driftline</th><td>{}</td></tr><tr><th>Created</th><td>{}</td></tr>\
                 <tr><th>Start</th><td id=\"start\">{}</td></tr></table>",
                escape(&l.trigger),
                escape(&l.reason),
                l.seed,
                escape(&l.config_hash),
                opt(l.dataset_digest.as_deref()),
                opt(l.artifact.as_deref()),
                l.feedback_rows
                    .map_or_else(|| "–".into(), |r| r.to_string()),
                escape(&l.driftline_version),
                l.created_at.as_ref().map(time).unwrap_or_default(),
                opt(l.start.as_ref().map(StartSummary::short).as_deref()),
            );
        }
        None => body.push_str("<p class=\"muted\">Unknown.</p>"),
    }
    body.push_str("<h2>Gate report</h2>");
    match &page.gate {
        Some(g) => {
            let _ = write!(
                body,
                "<p id=\"gate-verdict\" class=\"{}\">{}{}</p><table id=\"gate\"><tr><th>Check</th><th>Kind</th><th>Slice</th><th>Value</th><th>Bound</th><th>Result</th><th>Message</th></tr>",
                if g.passed { "pass" } else { "fail" },
                escape(&g.summary),
                g.champion.as_deref().map_or_else(String::new, |c| format!(
                    " (against champion {})",
                    escape(c)
                )),
            );
            for c in &g.checks {
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
                    escape(&c.name),
                    escape(&c.kind),
                    opt(c.slice.as_deref()),
                    number(c.value),
                    number(c.bound),
                    if c.passed { "pass" } else { "fail" },
                    if c.passed { "pass" } else { "fail" },
                    escape(&c.message),
                );
            }
            body.push_str("</table>");
            if !g.metrics.is_empty() {
                body.push_str("<table id=\"gate-metrics\"><tr><th>Metric</th><th>This version</th><th>Champion</th></tr>");
                for (k, v) in &g.metrics {
                    let _ = write!(
                        body,
                        "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                        escape(k),
                        number(Some(*v)),
                        number(g.champion_metrics.get(k).copied())
                    );
                }
                body.push_str("</table>");
            }
        }
        None => body.push_str("<p class=\"muted\">Not evaluated.</p>"),
    }
    body.push_str("<h2>Rollout</h2>");
    match &page.rollout {
        Some(r) => {
            let _ = write!(
                body,
                "<p id=\"rollout\"><span class=\"{}\">{}</span> after {} steps passed: {}</p>",
                if r.result == "RolledBack" {
                    "fail"
                } else {
                    "pass"
                },
                escape(&r.result),
                r.steps_passed,
                escape(&r.message)
            );
        }
        None => body.push_str("<p class=\"muted\">No rollout outcome yet.</p>"),
    }
    if page.champion_since.is_some() || page.champion_until.is_some() {
        let _ = write!(
            body,
            "<p>Champion from {} until {}</p>",
            page.champion_since
                .as_ref()
                .map(time)
                .unwrap_or_else(|| "–".into()),
            page.champion_until
                .as_ref()
                .map(time)
                .unwrap_or_else(|| "now".into()),
        );
    }
    body.push_str("<h2>Canary analyses</h2>");
    canary_table(&page.canary_analyses, &mut body);
    curves_section(page.curve.as_slice(), &mut body);
    if let (Some(c), Some(w)) = (&page.curve, &page.warm_start) {
        warm_start_section(c, w, &mut body);
    }
    layout(
        &format!("{}/{} {}", page.namespace, page.model, page.version),
        &format!(
            "{}?format=json",
            super::links::version_path_named(&page.namespace, &page.model, &page.version)
        ),
        &body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_text_and_attributes() {
        assert_eq!(
            escape(r#"<a href="x" onclick='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }
}
