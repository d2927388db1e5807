//! The shadow stage on a Model's page (#20): each read of a candidate's
//! shadow verdict over time (the registry's analyses at weight 0: agreement
//! with the champion on the same live requests, overall and per gate slice,
//! against the bound) and, while a candidate is in shadow, its class-flip
//! matrix from the gateway's running tally (`/metrics`, the same counters
//! the operator judges).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::api::{ShadowTally, version_name};
use crate::registry::CanaryAnalysis;

use super::html::escape;
use super::svg::{self, Series};

/// The verdict check on the whole mirrored traffic; slices are
/// `maxDisagreement[<slice>]` (`policy::shadow`'s names).
const DISAGREEMENT: &str = "maxDisagreement";

/// One read of a shadow verdict.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ShadowRead {
    pub version: String,
    pub window_end: DateTime<Utc>,
    pub verdict: String,
    /// Paired requests so far.
    pub paired: u64,
    /// Share of rows both versions answered alike.
    pub agreement: Option<f64>,
    /// Least agreement allowed (1 − `maxDisagreement`).
    pub min_agreement: Option<f64>,
    /// Agreement per gate slice.
    pub slices: Vec<(String, f64)>,
    pub message: String,
}

/// The candidate in shadow now: champion class × candidate class.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FlipMatrix {
    pub version: String,
    pub classes: Vec<String>,
    /// `rows[i][j]`: rows the champion answered `classes[i]` and the
    /// candidate `classes[j]`.
    pub rows: Vec<Vec<u64>>,
    pub paired: u64,
    pub dropped: u64,
    pub errors: u64,
}

/// The page's shadow section.
#[derive(Serialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ShadowView {
    /// Oldest first.
    pub reads: Vec<ShadowRead>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<FlipMatrix>,
}

/// Whether an analysis is a shadow read: the stage before any user
/// traffic, recorded at weight 0 (canary steps weigh 1–100).
pub fn is_shadow(a: &CanaryAnalysis) -> bool {
    a.weight == 0
}

/// The shadow reads among a Model's analyses, oldest first.
pub fn shadow_reads(analyses: &[CanaryAnalysis]) -> Vec<ShadowRead> {
    analyses
        .iter()
        .filter(|a| is_shadow(a))
        .map(|a| {
            let overall = a.checks.iter().find(|c| c.name == DISAGREEMENT);
            ShadowRead {
                version: version_name(a.version),
                window_end: a.window_end,
                verdict: a.verdict.as_str().into(),
                paired: a.canary_requests,
                agreement: overall.map(|c| 1.0 - c.value),
                min_agreement: overall.map(|c| 1.0 - c.bound),
                slices: a
                    .checks
                    .iter()
                    .filter_map(|c| {
                        let slice = c.name.strip_prefix(DISAGREEMENT)?;
                        let slice = slice.strip_prefix('[')?.strip_suffix(']')?;
                        Some((slice.to_string(), 1.0 - c.value))
                    })
                    .collect(),
                message: a.message.clone(),
            }
        })
        .collect()
}

/// The flip matrix of a classification tally (`None` for regression, whose
/// tally has no classes).
pub fn flip_matrix(version: &str, tally: &ShadowTally) -> Option<FlipMatrix> {
    let mut classes: BTreeSet<&String> = tally.flips.keys().collect();
    classes.extend(tally.flips.values().flat_map(|to| to.keys()));
    if classes.is_empty() {
        return None;
    }
    let classes: Vec<String> = classes.into_iter().cloned().collect();
    let rows = classes
        .iter()
        .map(|from| {
            classes
                .iter()
                .map(|to| {
                    tally
                        .flips
                        .get(from)
                        .and_then(|m| m.get(to))
                        .copied()
                        .unwrap_or(0)
                })
                .collect()
        })
        .collect();
    Some(FlipMatrix {
        version: version.to_string(),
        classes,
        rows,
        paired: tally.paired,
        dropped: tally.dropped,
        errors: tally.shadow_errors,
    })
}

fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

/// Draws the section; nothing when the Model never had a shadow stage.
pub fn shadow_section(view: &ShadowView, out: &mut String) {
    if view.reads.is_empty() && view.live.is_none() {
        return;
    }
    out.push_str("<h2 id=\"shadow\">Shadow stage</h2>");
    if !view.reads.is_empty() {
        let seconds = |t: &DateTime<Utc>| t.timestamp_millis() as f64 / 1000.0;
        let versions: BTreeSet<&str> = view.reads.iter().map(|r| r.version.as_str()).collect();
        let colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
        let series: Vec<Series<'_>> = versions
            .iter()
            .zip(colours.iter().cycle())
            .map(|(v, colour)| Series {
                label: v,
                colour,
                dashed: false,
                points: view
                    .reads
                    .iter()
                    .filter(|r| r.version == *v)
                    .filter_map(|r| Some((seconds(&r.window_end), r.agreement? * 100.0)))
                    .collect(),
            })
            .collect();
        let xs = view.reads.iter().map(|r| seconds(&r.window_end));
        let span = xs.clone().fold(f64::MIN, f64::max) - xs.fold(f64::MAX, f64::min);
        out.push_str(&svg::line_chart(
            "agreement with the champion on the same requests, percent",
            &series,
            &[],
            Some((0.0, 100.0)),
            &svg::time_ticks(span),
        ));
        out.push_str("<table id=\"shadow-reads\"><tr><th>Version</th><th>Read</th><th>Verdict</th><th>Paired</th><th>Agreement</th><th>Slices</th><th>Message</th></tr>");
        for r in view.reads.iter().rev().take(20) {
            let class = match r.verdict.as_str() {
                "Failed" => "fail",
                "Passed" => "pass",
                _ => "muted",
            };
            let agreement = match (r.agreement, r.min_agreement) {
                (Some(a), Some(min)) => format!("{} (min {})", pct(a), pct(min)),
                (Some(a), None) => pct(a),
                _ => "–".into(),
            };
            let slices: Vec<String> = r
                .slices
                .iter()
                .map(|(s, a)| format!("{}: {}", escape(s), pct(*a)))
                .collect();
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"{class}\">{}</td><td>{}</td><td>{agreement}</td><td>{}</td><td>{}</td></tr>",
                escape(&r.version),
                r.window_end.format("%Y-%m-%d %H:%M:%S"),
                escape(&r.verdict),
                r.paired,
                slices.join(", "),
                escape(&r.message),
            );
        }
        out.push_str("</table>");
    }
    if let Some(m) = &view.live {
        let _ = write!(
            out,
            "<h3>{} in shadow now: champion's class (rows) against its class (columns)</h3><table id=\"flips\"><tr><th></th>",
            escape(&m.version)
        );
        for c in &m.classes {
            let _ = write!(out, "<th>{}</th>", escape(c));
        }
        out.push_str("</tr>");
        for (from, row) in m.classes.iter().zip(&m.rows) {
            let _ = write!(out, "<tr><th>{}</th>", escape(from));
            for (to, n) in m.classes.iter().zip(row) {
                let class = if from != to && *n > 0 {
                    " class=\"fail\""
                } else {
                    ""
                };
                let _ = write!(out, "<td{class}>{n}</td>");
            }
            out.push_str("</tr>");
        }
        let _ = write!(
            out,
            "</table><p class=\"muted\">{} paired requests; {} mirrors dropped under load; {} the candidate did not answer.</p>",
            m.paired, m.dropped, m.errors
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{AnalysisVerdict, CheckRecord, ModelRef};
    use std::collections::BTreeMap;

    fn analysis(
        weight: u32,
        disagreement: f64,
        red: f64,
        verdict: AnalysisVerdict,
    ) -> CanaryAnalysis {
        let check = |name: &str, value: f64| CheckRecord {
            name: name.into(),
            value,
            bound: 0.05,
            passed: value <= 0.05,
            evidence: None,
            lower: None,
            upper: None,
        };
        CanaryAnalysis {
            model: ModelRef::new("ml", "wine"),
            version: 2,
            step: 0,
            weight,
            window_start: "2026-12-01T00:00:00Z".parse().unwrap(),
            window_end: "2026-12-01T00:10:00Z".parse().unwrap(),
            canary_requests: 400,
            stable_requests: 400,
            canary_errors: 0,
            stable_errors: 0,
            canary_p99_ms: None,
            stable_p99_ms: None,
            divergence: None,
            verdict,
            message: "shadow: <b>".into(),
            checks: vec![
                check("maxDisagreement", disagreement),
                check("maxDisagreement[red]", red),
            ],
        }
    }

    #[test]
    fn shadow_reads_are_the_weight_zero_analyses_with_agreement_per_slice() {
        let analyses = [
            analysis(0, 0.02, 0.12, AnalysisVerdict::Failed),
            analysis(30, 0.5, 0.5, AnalysisVerdict::Passed),
        ];
        let reads = shadow_reads(&analyses);
        assert_eq!(reads.len(), 1, "the canary step is no shadow read");
        let r = &reads[0];
        assert_eq!(r.version, "v2");
        assert!((r.agreement.unwrap() - 0.98).abs() < 1e-12);
        assert!((r.min_agreement.unwrap() - 0.95).abs() < 1e-12);
        assert_eq!(r.slices.len(), 1);
        assert_eq!(r.slices[0].0, "red");
        assert!((r.slices[0].1 - 0.88).abs() < 1e-12);
        let mut html = String::new();
        shadow_section(&ShadowView { reads, live: None }, &mut html);
        assert!(html.contains("id=\"shadow-reads\""), "{html}");
        assert!(html.contains("98.0 % (min 95.0 %)"), "{html}");
        assert!(html.contains("red: 88.0 %"), "{html}");
        assert!(
            html.contains("shadow: &lt;b&gt;"),
            "messages are escaped: {html}"
        );
        let mut none = String::new();
        shadow_section(&ShadowView::default(), &mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn the_flip_matrix_lays_the_tally_out_by_class() {
        let tally = ShadowTally {
            paired: 3,
            dropped: 1,
            flips: BTreeMap::from([
                (
                    "bad".to_string(),
                    BTreeMap::from([("bad".to_string(), 5), ("good".to_string(), 2)]),
                ),
                (
                    "good".to_string(),
                    BTreeMap::from([("good".to_string(), 7)]),
                ),
            ]),
            ..Default::default()
        };
        let m = flip_matrix("v3", &tally).expect("classes");
        assert_eq!(m.classes, ["bad", "good"]);
        assert_eq!(m.rows, [vec![5, 2], vec![0, 7]]);
        let mut html = String::new();
        shadow_section(
            &ShadowView {
                reads: Vec::new(),
                live: Some(m),
            },
            &mut html,
        );
        assert!(
            html.contains("<tr><th>bad</th><td>5</td><td class=\"fail\">2</td></tr>"),
            "{html}"
        );
        assert!(
            html.contains("3 paired requests; 1 mirrors dropped"),
            "{html}"
        );
        assert_eq!(flip_matrix("v3", &ShadowTally::default()), None);
    }
}
