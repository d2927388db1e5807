//! Prometheus metrics of the model server and the gateway.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;

use crate::api::scrape;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a served request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: &'static str,
    pub code: u16,
}

/// Labels of an error answer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub code: u16,
}

/// Labels naming a predicted class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabels {
    pub class: String,
}

/// The prediction counter of each of a model's classes, made when the
/// model loads, so counting a request's predictions looks up no label set
/// (the family's lookup cost a label `String` and a lock per request).
pub struct ClassCounters {
    // foldhash, not SipHash: looked up once a predicted row.
    index: hashbrown::HashMap<String, usize>,
    counters: Vec<Counter>,
}

impl ClassCounters {
    /// Counters of `classes` in `family` (a classifier's classes show as
    /// series at 0 from the start, before any is predicted).
    pub fn new(family: &Family<ClassLabels, Counter>, classes: &[String]) -> ClassCounters {
        ClassCounters {
            index: classes
                .iter()
                .enumerate()
                .map(|(i, c)| (c.clone(), i))
                .collect(),
            counters: classes
                .iter()
                .map(|c| {
                    family
                        .get_or_create(&ClassLabels { class: c.clone() })
                        .clone()
                })
                .collect(),
        }
    }

    /// Counts each predicted label, tallied first so a batch adds to each
    /// counter once; a label outside the classes is counted by name.
    pub fn count(&self, family: &Family<ClassLabels, Counter>, labels: &[String]) {
        // One row, one of the classes: its counter alone, no tally.
        if let [label] = labels
            && let Some(&k) = self.index.get(label.as_str())
        {
            self.counters[k].inc();
            return;
        }
        let mut tally: smallvec::SmallVec<[u64; 16]> = smallvec::smallvec![0; self.counters.len()];
        for label in labels {
            match self.index.get(label.as_str()) {
                Some(&k) => tally[k] += 1,
                None => {
                    family
                        .get_or_create(&ClassLabels {
                            class: label.clone(),
                        })
                        .inc();
                }
            }
        }
        for (counter, n) in self.counters.iter().zip(tally) {
            if n > 0 {
                counter.inc_by(n);
            }
        }
    }
}

/// Labels naming a feature (or `prediction`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeatureLabels {
    pub feature: String,
}

/// Labels naming why a row was queued for annotation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// Labels naming a backend version of the gateway.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub version: String,
}

/// Labels of a proxied request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendCodeLabels {
    pub version: String,
    pub code: u16,
}

type FloatGauge = Gauge<f64, AtomicU64>;

fn latency_histogram() -> Histogram {
    // 50 µs … ~1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// Everything `driftline serve` exports at `/metrics`.
pub struct ServeMetrics {
    pub registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub errors: Family<CodeLabels, Counter>,
    pub infer_latency: Histogram,
    pub rows: Counter,
    pub predictions: Family<ClassLabels, Counter>,
    /// The configured drift statistic per feature in the last closed window.
    pub drift: Family<FeatureLabels, FloatGauge>,
    /// 1 when the feature drifted in the last closed window.
    pub drifted: Family<FeatureLabels, Gauge>,
    pub drift_windows: Counter,
    pub dataset_drifted_share: FloatGauge,
    pub feedback_sampled: Counter,
    pub feedback_dropped: Counter,
    pub feedback_joined: Counter,
    pub feedback_unknown: Counter,
    pub feedback_evicted: Counter,
    pub feedback_rows_written: Counter,
    pub feedback_write_errors: Counter,
    pub online_accuracy: FloatGauge,
    pub online_rmse: FloatGauge,
    pub online_labelled: Gauge,
    /// Classifiers: rows answered and the sum of their top-class
    /// probability; their ratio is the estimated accuracy (counters, so
    /// replicas add).
    pub confidence_rows: Counter,
    pub confidence_sum: Counter<f64, AtomicU64>,
    /// Classifiers: labelled rows joined, how many were right, and the sum
    /// of the confidence they were answered with (counters, so replicas
    /// add): the realised against the estimated accuracy on the same rows.
    pub labelled_rows: Counter,
    pub labelled_correct: Counter,
    pub labelled_confidence_sum: Counter<f64, AtomicU64>,
    /// Rows set aside for annotation, by `reason`.
    pub annotation_queued: Family<ReasonLabels, Counter>,
}

impl Default for ServeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ServeMetrics {
    /// Registers every metric under the `driftline_serve` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(scrape::SERVE_PREFIX);
        let m = Self {
            requests: Family::default(),
            errors: Family::default(),
            infer_latency: latency_histogram(),
            rows: Counter::default(),
            predictions: Family::default(),
            drift: Family::default(),
            drifted: Family::default(),
            drift_windows: Counter::default(),
            dataset_drifted_share: FloatGauge::default(),
            feedback_sampled: Counter::default(),
            feedback_dropped: Counter::default(),
            feedback_joined: Counter::default(),
            feedback_unknown: Counter::default(),
            feedback_evicted: Counter::default(),
            feedback_rows_written: Counter::default(),
            feedback_write_errors: Counter::default(),
            online_accuracy: FloatGauge::default(),
            online_rmse: FloatGauge::default(),
            online_labelled: Gauge::default(),
            confidence_rows: Counter::default(),
            confidence_sum: Counter::default(),
            labelled_rows: Counter::default(),
            labelled_correct: Counter::default(),
            labelled_confidence_sum: Counter::default(),
            annotation_queued: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            scrape::REQUESTS,
            "Requests by endpoint and status code",
            m.requests.clone(),
        );
        registry.register("errors", "Error answers by status code", m.errors.clone());
        registry.register(
            scrape::INFER_LATENCY,
            "Time to answer an infer request",
            m.infer_latency.clone(),
        );
        registry.register("rows", "Rows predicted", m.rows.clone());
        registry.register(
            scrape::PREDICTIONS,
            "Predicted rows by class",
            m.predictions.clone(),
        );
        registry.register(
            "drift",
            "Drift statistic per feature in the last closed window",
            m.drift.clone(),
        );
        registry.register(
            "drifted",
            "1 when the feature drifted in the last closed window",
            m.drifted.clone(),
        );
        registry.register(
            scrape::CONFIDENCE_ROWS,
            "Classified rows whose top-class probability is counted",
            m.confidence_rows.clone(),
        );
        registry.register(
            scrape::CONFIDENCE_SUM,
            "Sum of the top-class probability of classified rows (over confidence_rows: the estimated accuracy)",
            m.confidence_sum.clone(),
        );
        registry.register(
            scrape::LABELLED_ROWS,
            "Classified rows whose late label was joined",
            m.labelled_rows.clone(),
        );
        registry.register(
            scrape::LABELLED_CORRECT,
            "Of those, rows the model answered right",
            m.labelled_correct.clone(),
        );
        registry.register(
            scrape::LABELLED_CONFIDENCE_SUM,
            "Sum of the top-class probability those rows were answered with",
            m.labelled_confidence_sum.clone(),
        );
        registry.register(
            "drift_windows",
            "Drift windows closed",
            m.drift_windows.clone(),
        );
        registry.register(
            "dataset_drifted_share",
            "Share of features drifted in the last closed window",
            m.dataset_drifted_share.clone(),
        );
        registry.register(
            "feedback_sampled",
            "Requests sampled for feedback capture",
            m.feedback_sampled.clone(),
        );
        registry.register(
            "feedback_dropped",
            "Sampled requests dropped because the feedback buffer was full",
            m.feedback_dropped.clone(),
        );
        registry.register(
            "feedback_joined",
            "Labels joined with their request",
            m.feedback_joined.clone(),
        );
        registry.register(
            "feedback_unknown",
            "Labels whose id was unknown or expired",
            m.feedback_unknown.clone(),
        );
        registry.register(
            "feedback_evicted",
            "Pending requests forgotten before their label came, to stay within the request or row limit",
            m.feedback_evicted.clone(),
        );
        registry.register(
            "feedback_rows_written",
            "Labelled rows written to the artifact store",
            m.feedback_rows_written.clone(),
        );
        registry.register(
            "feedback_write_errors",
            "Failed writes of feedback files",
            m.feedback_write_errors.clone(),
        );
        registry.register(
            scrape::ONLINE_ACCURACY,
            "Accuracy over the recent labelled rows (classification)",
            m.online_accuracy.clone(),
        );
        registry.register(
            "online_rmse",
            "RMSE over the recent labelled rows (regression)",
            m.online_rmse.clone(),
        );
        registry.register(
            scrape::ANNOTATION_QUEUED,
            "Rows set aside for a person's label, by reason",
            m.annotation_queued.clone(),
        );
        registry.register(
            scrape::ONLINE_LABELLED,
            "Labelled rows behind the online accuracy or RMSE",
            m.online_labelled.clone(),
        );
        Self { registry, ..m }
    }

    /// Counts a row set aside for annotation.
    pub fn annotation_queued(&self, reason: crate::api::QueueReason) {
        self.annotation_queued
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Renders the OpenMetrics text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Everything `driftline gateway` exports at `/metrics`.
pub struct GatewayMetrics {
    pub registry: Registry,
    pub requests: Family<BackendCodeLabels, Counter>,
    pub latency: Family<BackendLabels, Histogram, fn() -> Histogram>,
    pub errors: Family<BackendLabels, Counter>,
    pub weight: Family<BackendLabels, Gauge>,
    pub reloads: Counter,
    pub reload_errors: Counter,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl GatewayMetrics {
    /// Registers every metric under the `driftline_gateway` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(scrape::GATEWAY_PREFIX);
        let requests = Family::<BackendCodeLabels, Counter>::default();
        let latency = Family::<BackendLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let errors = Family::<BackendLabels, Counter>::default();
        let weight = Family::<BackendLabels, Gauge>::default();
        let reloads = Counter::default();
        let reload_errors = Counter::default();
        registry.register(
            scrape::GATEWAY_REQUESTS,
            "Proxied requests by backend version and status code",
            requests.clone(),
        );
        registry.register(
            scrape::GATEWAY_BACKEND_LATENCY,
            "Time until the backend answered",
            latency.clone(),
        );
        registry.register(
            scrape::GATEWAY_BACKEND_ERRORS,
            "Requests the backend could not answer",
            errors.clone(),
        );
        registry.register(
            scrape::GATEWAY_WEIGHT,
            "Current traffic weight per backend version",
            weight.clone(),
        );
        registry.register("weight_reloads", "Weight tables loaded", reloads.clone());
        registry.register(
            "weight_reload_errors",
            "Weight tables refused (the previous one stays)",
            reload_errors.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            errors,
            weight,
            reloads,
            reload_errors,
        }
    }

    /// Renders the OpenMetrics text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::scrape::{GatewayCounters, ServingCounters};

    /// The operator reads the server's confidence tally with
    /// `ServingCounters`, and two replicas' tallies add.
    #[test]
    fn the_operator_reads_the_servers_confidence_tally_and_replicas_add() {
        let (a, b) = (ServeMetrics::new(), ServeMetrics::new());
        a.labelled_rows.inc_by(100);
        a.labelled_correct.inc_by(70);
        a.labelled_confidence_sum.inc_by(80.5);
        b.labelled_rows.inc_by(100);
        b.labelled_correct.inc_by(90);
        b.labelled_confidence_sum.inc_by(85.5);
        a.confidence_rows.inc_by(4);
        a.confidence_sum.inc_by(3.0);
        b.confidence_rows.inc_by(6);
        b.confidence_sum.inc_by(4.2);
        let mut total = ServingCounters::from_metrics(&a.render());
        assert_eq!((total.confidence_rows, total.confidence_sum), (4, 3.0));
        total.merge(&ServingCounters::from_metrics(&b.render()));
        let estimate = total.estimated_accuracy().expect("rows counted");
        assert!((estimate - 0.72).abs() < 1e-9, "{estimate}");
        assert_eq!(ServingCounters::default().estimated_accuracy(), None);
        assert_eq!(
            (
                total.labelled_rows,
                total.labelled_correct,
                total.labelled_confidence_sum
            ),
            (200, 160, 166.0)
        );
    }

    /// The operator reads the gateway's `/metrics` with `GatewayCounters`:
    /// the names registered here and the names read there are one list.
    #[test]
    fn the_operator_reads_what_the_gateway_exports_per_backend() {
        let m = GatewayMetrics::new();
        let v = |version: &str| BackendLabels {
            version: version.into(),
        };
        let code = |version: &str, code| BackendCodeLabels {
            version: version.into(),
            code,
        };
        m.requests.get_or_create(&code("v1", 200)).inc_by(90);
        m.requests.get_or_create(&code("v2", 200)).inc_by(7);
        m.requests.get_or_create(&code("v2", 503)).inc_by(2);
        m.errors.get_or_create(&v("v2")).inc_by(4);
        for _ in 0..9 {
            m.latency.get_or_create(&v("v2")).observe(0.000_07);
        }
        m.latency.get_or_create(&v("v2")).observe(0.3);
        m.weight.get_or_create(&v("v2")).set(10);
        let g = GatewayCounters::from_metrics(&m.render());
        let v1 = g.backend("v1");
        assert_eq!((v1.answered, v1.errors, v1.unreachable), (90, 0, 0));
        let v2 = g.backend("v2");
        assert_eq!((v2.answered, v2.errors, v2.unreachable), (9, 2, 4));
        let fast = v2
            .latency_buckets
            .iter()
            .find(|(b, _)| (b.0 - 0.0001).abs() < 1e-12)
            .map(|(_, n)| *n);
        assert_eq!(fast, Some(9), "{:?}", v2.latency_buckets);
        // 10 observations: the 99th percentile is the slow one's bucket
        // (50 µs · 2^13 = 409.6 ms).
        let p99 = v2.p99_ms().expect("observed");
        assert!((p99 - 409.6).abs() < 1e-6, "{p99}");
        assert_eq!(g.backend("v3"), Default::default());
    }

    #[test]
    fn class_counters_count_each_prediction_under_its_class() {
        let family = Family::<ClassLabels, Counter>::default();
        let classes = ["good".to_string(), "bad".to_string()];
        let counters = ClassCounters::new(&family, &classes);
        let of = |class: &str| {
            family
                .get_or_create(&ClassLabels {
                    class: class.into(),
                })
                .get()
        };
        // Made at load, at 0.
        assert_eq!((of("good"), of("bad")), (0, 0));
        let labels = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        counters.count(&family, &labels(&["good", "bad", "good"]));
        counters.count(&family, &labels(&["bad"]));
        // A label the model did not declare still counts, by its name.
        counters.count(&family, &labels(&["odd", "good"]));
        assert_eq!((of("good"), of("bad"), of("odd")), (3, 2, 1));
    }
}
