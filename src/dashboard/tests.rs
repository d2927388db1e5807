//! Pages rendered from fixtures: what a user sees, and that nothing a user
//! wrote can run in the page.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};

use super::html;
use super::view::{self, ModelPage};
use crate::api::{Model, ModelVersion};
use crate::drift::{CategoricalProfile, ColumnSketch, FeatureProfile, NumericProfile};
use crate::registry::{
    AnalysisVerdict, CanaryAnalysis, ChampionAction, ChampionChange, DriftCell, DriftHeatmap,
    EpochRecord, GateOutcome, ModelRef, ValidationMetric, VersionHistory, VersionRecord,
};

const EVIL: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>";

fn at(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_780_000_000 + s, 0).unwrap()
}

fn model(name: &str, labels: serde_json::Value) -> Model {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "driftline.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name, "namespace": "ml", "labels": labels},
        "spec": {
            "task": "classification",
            "data": {"source": "file:///data.csv", "target": "quality"},
            "architecture": {"type": "mlp", "hiddenLayers": [8]},
            "rollout": {"steps": [{"weight": 10, "pause": "1m"}],
                        "analysis": {"minRequests": 50, "maxErrorRate": 0.01,
                                     "maxPredictionDivergence": 0.1}}
        },
        "status": {
            "phase": "Serving",
            "champion": "v1",
            "traffic": [{"version": "v1", "weight": 100}],
            "nextVersion": 3,
            "drift": {"score": 0.4, "driftedShare": 0.5, "driftedFeatures": [EVIL, "alcohol"],
                      "driftedWeight": 0.7, "windowDrifted": true, "drivers": [],
                      "reason": EVIL, "consecutiveWindows": 3, "summary": "drifted"},
            "estimatedAccuracy": {"version": "v1", "value": 0.5854, "window": "2026-06-01T19:20:00Z",
                                  "requests": 320, "validationAccuracy": 0.598,
                                  "realised": 0.61, "labelled": 200}
        }
    }))
    .expect("model fixture")
}

fn version(n: u32, trigger: &str, accuracy: f64) -> VersionHistory {
    VersionHistory {
        version: VersionRecord {
            model: ModelRef::new("ml", "wine"),
            version: n,
            trigger: trigger.into(),
            reason: format!("reason {n} {EVIL}"),
            seed: 7,
            config_hash: "abc".into(),
            dataset_digest: None,
            artifact_uri: Some(format!("file:///a/v{n}")),
            feedback_rows: None,
            code_version: "0.1.0".into(),
            created_at: at(i64::from(n) * 100),
            start: None,
        },
        gate: Some(GateOutcome {
            passed: true,
            summary: "passed 3/3".into(),
            metrics: BTreeMap::from([("accuracy".to_string(), accuracy)]),
            evaluated_at: at(i64::from(n) * 100 + 10),
        }),
    }
}

fn change(s: i64, action: ChampionAction, from: Option<u32>, to: Option<u32>) -> ChampionChange {
    ChampionChange {
        model: ModelRef::new("ml", "wine"),
        at: at(s),
        action,
        from,
        to,
        trigger: "Manual".into(),
        actor: Some(EVIL.into()),
        reason: format!("asked {EVIL}"),
    }
}

fn canary(step: u32, verdict: AnalysisVerdict) -> CanaryAnalysis {
    CanaryAnalysis {
        model: ModelRef::new("ml", "wine"),
        version: 2,
        step,
        weight: 10,
        window_start: at(300),
        window_end: at(360),
        canary_requests: 200,
        stable_requests: 1800,
        canary_errors: 10,
        stable_errors: 0,
        canary_p99_ms: Some(4.0),
        stable_p99_ms: Some(3.0),
        divergence: Some(0.02),
        verdict,
        message: format!("error rate 0.05 > 0.01 {EVIL}"),
        checks: Vec::new(),
    }
}

fn page() -> ModelPage {
    let m = model(EVIL, serde_json::json!({"team": EVIL}));
    let history = vec![version(1, "Initial", 0.8), version(2, "Drift", 0.78)];
    let changes = vec![
        change(150, ChampionAction::Promote, None, Some(1)),
        change(400, ChampionAction::Promote, Some(1), Some(2)),
        change(500, ChampionAction::Rollback, Some(2), Some(1)),
    ];
    let analyses = vec![canary(0, AnalysisVerdict::Failed)];
    let heatmap = DriftHeatmap {
        earliest_window_end: Some(at(0)),
        first_window_end: Some(at(0)),
        last_window_end: Some(at(900)),
        windows: 10,
        columns: 10,
        cells: (0..10)
            .flat_map(|c| {
                [EVIL, "alcohol", "pH"].map(|f| DriftCell {
                    feature: f.into(),
                    column: c,
                    readings: 1,
                    max_value: if f == "pH" { 0.01 } else { 0.3 },
                    threshold: 0.1,
                    drifted: u64::from(f != "pH" && c > 5),
                    last_window_end: at(i64::from(c) * 100),
                })
            })
            .collect(),
    };
    let profile = FeatureProfile::Categorical {
        name: EVIL.into(),
        profile: CategoricalProfile {
            categories: vec![EVIL.into(), "red".into()],
            shares: vec![0.5, 0.5, 0.0],
            count: 10,
        },
    };
    let live = ColumnSketch {
        name: EVIL.into(),
        counts: vec![1, 1, 8],
        missing: 0,
    };
    let drift = view::drift_view(&heatmap);
    let objects: Vec<ModelVersion> = Vec::new();
    ModelPage {
        analysis: m.spec.rollout.analysis.clone(),
        model: view::ModelRow::of(&m),
        notes: vec![format!("note {EVIL}")],
        traffic: view::traffic_timeline(&analyses, &changes),
        canary_analyses: analyses
            .iter()
            .map(|a| view::canary_view(a, &m.spec.rollout.analysis))
            .collect(),
        histogram: Some(view::histogram("v1", &profile, Some(&live))),
        features: vec![EVIL.into(), "alcohol".into()],
        curves: vec![view::curve_view(
            1,
            &[EpochRecord {
                model: ModelRef::new("ml", "wine"),
                version: 1,
                epoch: 1,
                train_loss: 1.0,
                validation_loss: Some(1.1),
                validation_metric: Some(ValidationMetric {
                    name: "accuracy".into(),
                    value: 0.7,
                }),
            }],
        )],
        versions: view::version_rows("ml", EVIL, &history, &objects, Some("v1")),
        audit: view::audit_rows(&changes),
        annotation_queue: None,
        shadow: Default::default(),
        drift,
    }
}

/// No tag, attribute or script a user wrote survives: only escaped text.
fn assert_inert(html: &str) {
    // Every real tag of the page: user text cannot open one (`<` is
    // escaped) nor leave an attribute (quotes are escaped).
    for tag in html.split('<').skip(1).filter_map(|t| t.split('>').next()) {
        let name = tag.trim_start_matches('/').split(' ').next().unwrap_or("");
        assert!(
            !matches!(name, "script" | "img" | "b"),
            "a user's <{name}> became a tag: <{tag}>"
        );
        // Outside the quoted values (a user's quote is escaped, so every
        // real `"` is the page's), no attribute a user wrote.
        let unquoted: String = tag.split('"').step_by(2).collect();
        assert!(
            !unquoted.contains("onerror"),
            "a user's attribute entered <{tag}>"
        );
    }
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
}

#[test]
fn a_model_with_html_in_its_name_labels_and_features_renders_inert() {
    let m = model(EVIL, serde_json::json!({"team": EVIL, "x": "\"><b>"}));
    let list = html::models_page(&view::models_page(&[m]));
    assert_inert(&list);
    assert!(!list.contains("\"><b>"), "{list}");
    let page = page();
    let rendered = html::model_page(&page, false);
    assert_inert(&rendered);
    // The links still work: the name is percent-encoded in the path.
    assert!(rendered.contains("/models/ml/%3Cscript%3E"), "{rendered}");
}

#[test]
fn the_model_page_shows_rollback_drifted_features_and_audit_rows() {
    let page = page();
    let html = html::model_page(&page, false);
    // The rollback is in the audit trail and marked on the traffic timeline.
    assert!(html.contains(r#"<tr data-action="Rollback">"#), "{html}");
    assert!(html.contains("Rollback v2 → v1"), "{html}");
    assert_eq!(html.matches("<tr data-action=").count(), 3);
    // The features over threshold, most often drifted first; pH never drifted.
    assert_eq!(page.drift.drifted_features.len(), 2);
    assert!(!page.drift.drifted_features.contains(&"pH".to_string()));
    assert!(html.contains(r#"id="drifted-features" class="drift">"#));
    // The failed canary check is shown against its bound.
    let errors = &page.canary_analyses[0].checks[1];
    assert_eq!(errors.name, "error rate");
    assert_eq!(errors.value, Some(0.05));
    assert_eq!(errors.passed, Some(false));
    assert!(html.contains("≤ 0.01"));
    // v2 is compared with the champion v1.
    let v2 = &page.versions[1];
    assert!((v2.vs_champion["accuracy"] + 0.02).abs() < 1e-9, "{v2:?}");
    // Live shares come from the sketch's counts.
    let h = page.histogram.as_ref().unwrap();
    assert_eq!(h.live.as_deref(), Some(&[0.1, 0.1, 0.8][..]));
    // The accuracy estimated without labels, beside what it is compared with.
    assert!(
        html.contains(
            "<td id=\"estimated-accuracy\">0.585 over 320 requests of v1 to 2026-06-01 19:20 UTC \
             (validation 0.598; 0.610 realised by 200 labelled)</td>"
        ),
        "{html}"
    );
}

#[test]
fn the_json_twin_carries_the_same_facts() {
    let json = serde_json::to_value(page()).unwrap();
    assert_eq!(json["model"]["champion"], "v1");
    assert_eq!(json["audit"][2]["action"], "Rollback");
    assert_eq!(json["drift"]["windows"], 10);
    assert_eq!(
        json["versions"][1]["url"],
        "/models/ml/%3Cscript%3Ealert%281%29%3C%2Fscript%3E%3Cimg+src%3Dx+onerror%3Dalert%282%29%3E/versions/v2"
    );
}

#[test]
fn numeric_histograms_label_their_bins_with_the_reference_edges() {
    let profile = FeatureProfile::Numeric {
        name: "alcohol".into(),
        profile: NumericProfile {
            edges: vec![8.0, 10.0, 12.0],
            shares: vec![0.0, 0.5, 0.5, 0.0],
            mean: 10.0,
            std: 1.0,
            count: 100,
        },
    };
    let h = view::histogram("v3", &profile, None);
    assert_eq!(h.bins, vec!["< 8", "8–10", "10–12", "> 12"]);
    assert_eq!(h.live, None);
    // A sketch with other bins (a newer reference) is not drawn against it.
    let other = ColumnSketch {
        name: "alcohol".into(),
        counts: vec![1, 2],
        missing: 0,
    };
    assert_eq!(view::histogram("v3", &profile, Some(&other)).live, None);
}

#[test]
fn the_histogram_feature_is_the_one_asked_else_the_most_drifted() {
    let page = page();
    let features = vec!["pH".to_string(), "alcohol".to_string()];
    assert_eq!(
        view::chosen_feature(Some("pH"), &features, &page.drift).as_deref(),
        Some("pH")
    );
    assert_eq!(
        view::chosen_feature(Some("nope"), &features, &page.drift).as_deref(),
        Some("alcohol")
    );
}

#[test]
fn long_histories_show_the_newest_versions_with_a_link_to_all() {
    let mut page = page();
    let history: Vec<VersionHistory> = (1..=250).map(|n| version(n, "Schedule", 0.8)).collect();
    page.versions = view::version_rows("ml", "wine", &history, &[], Some("v1"));
    let short = html::model_page(&page, false);
    assert!(short.contains("Newest 100 of 250 versions"), "{short}");
    assert!(short.contains(">v250<") && !short.contains(">v150<"));
    let all = html::model_page(&page, true);
    assert!(all.contains(">v1<") && !all.contains("Newest 100"));
}

fn curve(n: u32, accuracies: &[f64]) -> Vec<EpochRecord> {
    accuracies
        .iter()
        .enumerate()
        .map(|(i, &a)| EpochRecord {
            model: ModelRef::new("ml", "digits"),
            version: n,
            epoch: i as u32 + 1,
            train_loss: 1.0 - a,
            validation_loss: Some(1.1 - a),
            validation_metric: Some(ValidationMetric {
                name: "accuracy".into(),
                value: a,
            }),
        })
        .collect()
}

#[test]
fn a_warm_retrains_page_shows_its_start_and_its_curve_beside_its_cold_parent() {
    let mut record = version(3, "Schedule", 0.97).version;
    record.start = Some(crate::registry::StartRecord {
        from: "warm".into(),
        parent: Some("file:///a/ml/wine/v2".into()),
        parent_digest: Some("9f86d081884c7d659a2feaa0c55ad015".into()),
        reason: None,
    });
    let lineage = view::lineage_view(Some(&record), None).expect("a lineage");
    let start = lineage.start.clone().expect("the start lineage");
    assert_eq!(start.parent_version(), Some(2));
    let this = view::curve_view(3, &curve(3, &[0.93, 0.95, 0.96, 0.97]));
    let cold = crate::api::StartSummary {
        reason: Some("there is no champion yet".into()),
        ..Default::default()
    };
    let parent = curve(
        2,
        &[0.3, 0.6, 0.8, 0.9, 0.93, 0.95, 0.96, 0.96, 0.97, 0.965],
    );
    let comparison = view::start_comparison(&this, view::curve_view(2, &parent), Some(cold));
    assert_eq!(comparison.target, Some(0.97));
    assert_eq!(
        (
            comparison.epochs_to_target,
            comparison.reference_epochs_to_target
        ),
        (Some(4), Some(9))
    );
    let page = view::VersionPage {
        namespace: "ml".into(),
        model: "wine".into(),
        model_url: "/models/ml/wine".into(),
        version: "v3".into(),
        notes: Vec::new(),
        phase: None,
        message: None,
        lineage: Some(lineage),
        gate: None,
        rollout: None,
        champion_since: None,
        champion_until: None,
        canary_analyses: Vec::new(),
        curve: Some(this),
        warm_start: Some(comparison),
    };
    let html = html::version_page(&page);
    assert!(
        html.contains(r#"<td id="start">warm from v2 (weights 9f86d081884c)</td>"#),
        "{html}"
    );
    assert!(html.contains(r#"<h2 id="warm-start">Warm start against v2</h2>"#));
    assert!(
        html.contains(
            "<tr><th>Epochs trained</th><td>4</td><td>10</td></tr>\
             <tr><th>First epoch at v2's best accuracy 0.97</th><td>4</td><td>9</td></tr>"
        ),
        "{html}"
    );
    assert!(html.contains("<th>v2 (cold)</th>"), "{html}");
    // Both runs' validation curves on one chart: this run solid, its parent dashed.
    assert!(html.contains("validation accuracy per epoch"));
    assert!(html.contains(">v3 (this run)</text>") && html.contains(">v2 (its parent)</text>"));
    let json = serde_json::to_value(&page).unwrap();
    assert_eq!(json["lineage"]["start"]["from"], "warm");
    assert_eq!(json["warmStart"]["referenceEpochsToTarget"], 9);
}

/// The time ticks of the traffic chart, left to right.
fn traffic_ticks(html: &str) -> Vec<String> {
    let chart = html
        .split("canary share of traffic")
        .last()
        .and_then(|rest| rest.split("</svg>").next())
        .expect("traffic chart");
    chart
        .split(r#"class="ax" text-anchor="middle">"#)
        .skip(1)
        .map(|t| t.split('<').next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn the_traffic_chart_labels_its_ticks_apart_whatever_the_span() {
    for (span, sample) in [(20, "20:26:"), (3_000, "05-28 20:"), (900_000, "2026-05-")] {
        let mut page = page();
        let changes = vec![
            change(0, ChampionAction::Promote, None, Some(1)),
            change(span, ChampionAction::Promote, Some(1), Some(2)),
        ];
        page.traffic = view::traffic_timeline(&[], &changes);
        let ticks = traffic_ticks(&html::model_page(&page, false));
        assert_eq!(ticks.len(), 5, "{ticks:?}");
        let distinct: std::collections::BTreeSet<_> = ticks.iter().collect();
        assert_eq!(distinct.len(), 5, "span {span} s: {ticks:?}");
        assert!(ticks[0].starts_with(sample), "span {span} s: {ticks:?}");
    }
}

#[test]
fn no_drifted_feature_is_not_shown_in_the_alarm_colour() {
    let mut page = page();
    page.drift.drifted_features.clear();
    let html = html::model_page(&page, false);
    assert!(
        html.contains(r#"id="drifted-features" class="ok">none</span>"#),
        "{html}"
    );
}
