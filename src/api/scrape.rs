//! The `/metrics` families the operator reads from model servers, and a
//! parser for the Prometheus text format they are served in. One home: the
//! server registers these names, the operator reads them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::shadow::ShadowTally;

/// Prefix of every model-server metric.
pub const SERVE_PREFIX: &str = "driftline_serve";
/// Requests by `endpoint` and `code` (counter).
pub const REQUESTS: &str = "requests";
/// Inference latency histogram, seconds.
pub const INFER_LATENCY: &str = "infer_latency_seconds";
/// Predicted rows by `class` (counter).
pub const PREDICTIONS: &str = "predictions";
/// Accuracy over recent labelled rows (gauge).
pub const ONLINE_ACCURACY: &str = "online_accuracy";
/// Labelled rows behind the online accuracy (gauge).
pub const ONLINE_LABELLED: &str = "online_labelled";
/// Classified rows whose top-class probability is counted (counter).
pub const CONFIDENCE_ROWS: &str = "confidence_rows";
/// Sum of those probabilities (counter): over `confidence_rows`, the
/// estimated accuracy without labels.
pub const CONFIDENCE_SUM: &str = "confidence_sum";
/// Rows set aside for a person's label, by `reason` (counter).
pub const ANNOTATION_QUEUED: &str = "annotation_queued";
/// Classified rows whose late label was joined (counter).
pub const LABELLED_ROWS: &str = "labelled_rows";
/// Of those, rows answered right (counter).
pub const LABELLED_CORRECT: &str = "labelled_correct";
/// Sum of the top-class probability those rows were answered with (counter).
pub const LABELLED_CONFIDENCE_SUM: &str = "labelled_confidence_sum";

/// Prefix of every gateway metric.
pub const GATEWAY_PREFIX: &str = "driftline_gateway";
/// Proxied requests answered, by backend `version` and `code` (counter).
pub const GATEWAY_REQUESTS: &str = "requests";
/// Time until the backend answered, by `version` (histogram, seconds).
pub const GATEWAY_BACKEND_LATENCY: &str = "backend_latency_seconds";
/// Requests no backend answer came back for (refused, reset, timed out),
/// by `version` (counter).
pub const GATEWAY_BACKEND_ERRORS: &str = "backend_errors";
/// Current traffic weight per backend `version` (gauge).
pub const GATEWAY_WEIGHT: &str = "weight";

/// The shadow tally ([`ShadowTally`]) of each candidate `version`, one
/// counter family per field, so the tallies of several gateway replicas add
/// (all counters; `_total` is appended on the wire).
pub const SHADOW_PAIRED: &str = "shadow_paired";
pub const SHADOW_ROWS: &str = "shadow_rows";
/// Mirrors dropped because the bounded queue was full.
pub const SHADOW_DROPPED: &str = "shadow_dropped";
/// Mirrored requests the candidate answered with an error, or not at all.
pub const SHADOW_ERRORS: &str = "shadow_errors";
/// Rows by the champion's class (`champion`) and the candidate's (`shadow`).
pub const SHADOW_FLIPS: &str = "shadow_flips";
pub const SHADOW_REGRESSION_DISAGREEMENTS: &str = "shadow_regression_disagreements";
pub const SHADOW_ABS_DIFFERENCE_SUM: &str = "shadow_abs_difference_sum";
/// Rows by base-2 `bucket` of the absolute difference.
pub const SHADOW_ABS_DIFFERENCE: &str = "shadow_abs_difference";
/// Regression predictions by `side` (`champion`, `shadow`) and signed `bucket`.
pub const SHADOW_VALUES: &str = "shadow_values";
/// Rows and disagreeing rows per gate `slice`.
pub const SHADOW_SLICE_ROWS: &str = "shadow_slice_rows";
pub const SHADOW_SLICE_DISAGREEMENTS: &str = "shadow_slice_disagreements";
/// Time to answer the same requests by `side` and base-2 `bucket` (µs).
pub const SHADOW_LATENCY_US: &str = "shadow_latency_us";

/// Cumulative serving counters of one server (or the sum of several
/// replicas), as scraped at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServingCounters {
    /// Infer requests answered.
    pub requests: u64,
    /// Infer requests answered with a 5xx.
    pub errors: u64,
    /// Latency histogram: upper bound (seconds) → cumulative count.
    pub latency_buckets: BTreeMap<OrderedBound, u64>,
    /// Predicted rows by class.
    pub predictions: BTreeMap<String, u64>,
    /// Labelled rows behind the online accuracy.
    pub labelled: u64,
    /// Of those, predicted correctly (accuracy × labelled).
    pub correct: u64,
    /// Classified rows and the sum of their top-class probability: the
    /// estimated accuracy is their ratio.
    pub confidence_rows: u64,
    pub confidence_sum: f64,
    /// Classified rows labelled late, those answered right, and the sum of
    /// the confidence they were answered with.
    pub labelled_rows: u64,
    pub labelled_correct: u64,
    pub labelled_confidence_sum: f64,
}

/// A histogram bound that sorts (`+Inf` last).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OrderedBound(pub f64);

impl Eq for OrderedBound {}

impl PartialOrd for OrderedBound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrderedBound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// One sample line: family name with suffix, labels, value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses Prometheus / OpenMetrics text; comment and malformed lines are skipped.
pub fn parse_samples(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (head, rest) = match line.find('{') {
        Some(open) => {
            let close = line[open..].find('}')? + open;
            (&line[..close + 1], &line[close + 1..])
        }
        None => line.split_at(line.find(' ')?),
    };
    let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
    let (name, labels) = match head.find('{') {
        Some(open) => (
            &head[..open],
            parse_labels(&head[open + 1..head.len() - 1])?,
        ),
        None => (head, BTreeMap::new()),
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

fn parse_labels(body: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        let after = rest[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => return None,
                },
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end?;
        labels.insert(key, value);
        rest = after[end + 1..]
            .trim_start()
            .trim_start_matches(',')
            .trim_start();
    }
    Some(labels)
}

fn family(suffix: &str) -> String {
    format!("{SERVE_PREFIX}_{suffix}")
}

fn gateway_family(suffix: &str) -> String {
    format!("{GATEWAY_PREFIX}_{suffix}")
}

fn bucket_bound(s: &Sample) -> Option<OrderedBound> {
    match s.labels.get("le").map(String::as_str) {
        Some("+Inf") => Some(OrderedBound(f64::INFINITY)),
        Some(b) => b.parse().ok().map(OrderedBound),
        None => None,
    }
}

/// The 99th-percentile of a cumulative histogram in milliseconds, as the
/// upper bound of the bucket that holds it; `None` without observations.
fn p99_ms_of(buckets: &BTreeMap<OrderedBound, u64>) -> Option<f64> {
    let total = buckets.values().copied().max()?;
    if total == 0 {
        return None;
    }
    let rank = (total as f64 * 0.99).ceil() as u64;
    buckets.iter().find(|(_, n)| **n >= rank).map(|(b, _)| {
        if b.0.is_finite() {
            b.0 * 1000.0
        } else {
            f64::INFINITY
        }
    })
}

/// Observations of a cumulative histogram slower than `ms` milliseconds:
/// all of them minus those in buckets whose upper bound is at most `ms`.
/// Exact when `ms` is a bucket bound of the same layout (a p99 read from
/// [`p99_ms_of`] of a histogram with the same buckets is); `None` without
/// observations.
fn slower_than_of(buckets: &BTreeMap<OrderedBound, u64>, ms: f64) -> Option<u64> {
    let total = buckets.values().copied().max()?;
    if total == 0 {
        return None;
    }
    let within = buckets
        .range(..=OrderedBound(ms / 1000.0))
        .next_back()
        .map_or(0, |(_, n)| *n);
    Some(total.saturating_sub(within))
}

/// A counter's growth since `then`; a counter that went down was reset
/// (its process restarted), so all of its value is new.
fn grown(now: u64, then: u64) -> u64 {
    if now >= then { now - then } else { now }
}

/// What a gateway saw of one backend version: the client's view, which
/// includes requests the backend never counted because they never reached
/// it (a crashed or unreachable canary).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackendCounters {
    /// Requests the backend answered, with any status.
    pub answered: u64,
    /// Of those, answered with a 5xx.
    pub errors: u64,
    /// Requests no answer came back for (refused, reset, timed out).
    pub unreachable: u64,
    /// Time until the backend answered: upper bound (seconds) → cumulative count.
    pub latency_buckets: BTreeMap<OrderedBound, u64>,
}

impl BackendCounters {
    /// The 99th-percentile time until the backend answered, in milliseconds.
    pub fn p99_ms(&self) -> Option<f64> {
        p99_ms_of(&self.latency_buckets)
    }

    /// Requests answered slower than `ms` milliseconds (see [`slower_than_of`]).
    pub fn slower_than(&self, ms: f64) -> Option<u64> {
        slower_than_of(&self.latency_buckets, ms)
    }

    fn merge(&mut self, other: &BackendCounters) {
        self.answered += other.answered;
        self.errors += other.errors;
        self.unreachable += other.unreachable;
        for (b, n) in &other.latency_buckets {
            *self.latency_buckets.entry(*b).or_default() += n;
        }
    }

    fn since(&self, then: &BackendCounters) -> BackendCounters {
        let base = if self.answered < then.answered || self.unreachable < then.unreachable {
            BackendCounters::default()
        } else {
            then.clone()
        };
        BackendCounters {
            answered: grown(self.answered, base.answered),
            errors: grown(self.errors, base.errors),
            unreachable: grown(self.unreachable, base.unreachable),
            latency_buckets: self
                .latency_buckets
                .iter()
                .map(|(b, n)| {
                    (
                        *b,
                        grown(*n, base.latency_buckets.get(b).copied().unwrap_or(0)),
                    )
                })
                .collect(),
        }
    }
}

/// A gateway's per-backend counters (or the sum of several gateway
/// replicas), by version name (`v3`), as scraped at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GatewayCounters {
    pub backends: BTreeMap<String, BackendCounters>,
}

impl GatewayCounters {
    /// Reads the gateway's families from a `/metrics` answer.
    pub fn from_metrics(text: &str) -> Self {
        let requests = format!("{}_total", gateway_family(GATEWAY_REQUESTS));
        let errors = format!("{}_total", gateway_family(GATEWAY_BACKEND_ERRORS));
        let bucket = format!("{}_bucket", gateway_family(GATEWAY_BACKEND_LATENCY));
        let mut g = GatewayCounters::default();
        for s in parse_samples(text) {
            let Some(version) = s.labels.get("version") else {
                continue;
            };
            let count = s.value.max(0.0) as u64;
            if s.name == requests {
                let b = g.backends.entry(version.clone()).or_default();
                b.answered += count;
                if s.labels.get("code").is_some_and(|c| c.starts_with('5')) {
                    b.errors += count;
                }
            } else if s.name == errors {
                g.backends.entry(version.clone()).or_default().unreachable += count;
            } else if s.name == bucket
                && let Some(bound) = bucket_bound(&s)
            {
                let b = g.backends.entry(version.clone()).or_default();
                *b.latency_buckets.entry(bound).or_default() += count;
            }
        }
        g
    }

    /// Adds another gateway replica's counters.
    pub fn merge(&mut self, other: &GatewayCounters) {
        for (version, b) in &other.backends {
            self.backends.entry(version.clone()).or_default().merge(b);
        }
    }

    /// What happened since `baseline`, per backend.
    pub fn since(&self, baseline: &GatewayCounters) -> GatewayCounters {
        GatewayCounters {
            backends: self
                .backends
                .iter()
                .map(|(v, b)| {
                    let then = baseline.backends.get(v).cloned().unwrap_or_default();
                    (v.clone(), b.since(&then))
                })
                .collect(),
        }
    }

    /// The counters of one backend version (zero when it saw no traffic).
    pub fn backend(&self, version: &str) -> BackendCounters {
        self.backends.get(version).cloned().unwrap_or_default()
    }
}

/// A label value as the text format writes it (`\\`, `\"`, `\n` escaped).
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The sample lines (labels, value) one family writes for one version's
/// tally, given that version's `version="…"` label.
type SampleRows<'a> = dyn Fn(&str, &ShadowTally) -> Vec<(String, String)> + 'a;

/// The gateway's shadow tallies, by candidate version, in the text format
/// ([`parse_shadow_tallies`] reads them back). Empty without a tally.
pub fn render_shadow_tallies(tallies: &BTreeMap<String, ShadowTally>) -> String {
    let mut out = String::new();
    let mut family = |suffix: &str, rows: Vec<(String, String)>| {
        if rows.is_empty() {
            return;
        }
        let name = gateway_family(suffix);
        let _ = writeln!(out, "# TYPE {name} counter");
        for (labels, value) in rows {
            let _ = writeln!(out, "{name}_total{{{labels}}} {value}");
        }
    };
    let each = |f: &SampleRows<'_>| {
        tallies
            .iter()
            .flat_map(|(v, t)| f(&format!("version=\"{}\"", escape_label(v)), t))
            .collect::<Vec<_>>()
    };
    let one = |get: fn(&ShadowTally) -> String| {
        each(&move |v: &str, t: &ShadowTally| vec![(v.to_string(), get(t))])
    };
    let buckets = |v: &str, extra: &str, b: &BTreeMap<i32, u64>| {
        b.iter()
            .map(|(k, n)| (format!("{v}{extra},bucket=\"{k}\""), n.to_string()))
            .collect::<Vec<_>>()
    };
    // One measure of both sides, told apart by a `side` label.
    let sides = |v: &str, champion: &BTreeMap<i32, u64>, shadow: &BTreeMap<i32, u64>| {
        let mut rows = buckets(v, ",side=\"champion\"", champion);
        rows.extend(buckets(v, ",side=\"shadow\"", shadow));
        rows
    };
    family(SHADOW_PAIRED, one(|t| t.paired.to_string()));
    family(SHADOW_ROWS, one(|t| t.rows.to_string()));
    family(SHADOW_DROPPED, one(|t| t.dropped.to_string()));
    family(SHADOW_ERRORS, one(|t| t.shadow_errors.to_string()));
    family(
        SHADOW_FLIPS,
        each(&|v, t| {
            t.flips
                .iter()
                .flat_map(|(from, to)| {
                    to.iter().map(move |(c, n)| {
                        let labels = format!(
                            "{v},champion=\"{}\",shadow=\"{}\"",
                            escape_label(from),
                            escape_label(c)
                        );
                        (labels, n.to_string())
                    })
                })
                .collect()
        }),
    );
    family(
        SHADOW_REGRESSION_DISAGREEMENTS,
        one(|t| t.regression_disagreements.to_string()),
    );
    family(
        SHADOW_ABS_DIFFERENCE_SUM,
        one(|t| t.abs_difference_sum.to_string()),
    );
    family(
        SHADOW_ABS_DIFFERENCE,
        each(&|v, t| buckets(v, "", &t.abs_difference)),
    );
    family(
        SHADOW_VALUES,
        each(&|v, t| sides(v, &t.champion_values, &t.shadow_values)),
    );
    let slices = |get: fn(&super::shadow::Agreement) -> u64| {
        each(&move |v: &str, t: &ShadowTally| {
            t.slices
                .iter()
                .map(|(name, a)| {
                    let labels = format!("{v},slice=\"{}\"", escape_label(name));
                    (labels, get(a).to_string())
                })
                .collect()
        })
    };
    family(SHADOW_SLICE_ROWS, slices(|a| a.rows));
    family(SHADOW_SLICE_DISAGREEMENTS, slices(|a| a.disagreements));
    family(
        SHADOW_LATENCY_US,
        each(&|v, t| sides(v, &t.champion_latency_us, &t.shadow_latency_us)),
    );
    out
}

/// Reads the shadow families of one or several `/metrics` answers: the
/// tally of each candidate version, summed over every sample (so the
/// answers of several gateway replicas concatenated merge exactly).
pub fn parse_shadow_tallies(text: &str) -> BTreeMap<String, ShadowTally> {
    let names: BTreeMap<String, &str> = [
        SHADOW_PAIRED,
        SHADOW_ROWS,
        SHADOW_DROPPED,
        SHADOW_ERRORS,
        SHADOW_FLIPS,
        SHADOW_REGRESSION_DISAGREEMENTS,
        SHADOW_ABS_DIFFERENCE_SUM,
        SHADOW_ABS_DIFFERENCE,
        SHADOW_VALUES,
        SHADOW_SLICE_ROWS,
        SHADOW_SLICE_DISAGREEMENTS,
        SHADOW_LATENCY_US,
    ]
    .into_iter()
    .map(|f| (format!("{}_total", gateway_family(f)), f))
    .collect();
    let mut tallies: BTreeMap<String, ShadowTally> = BTreeMap::new();
    for s in parse_samples(text) {
        let (Some(family), Some(version)) = (names.get(&s.name), s.labels.get("version")) else {
            continue;
        };
        let t = tallies.entry(version.clone()).or_default();
        let n = s.value.max(0.0) as u64;
        let label = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
        let bucket = s.labels.get("bucket").and_then(|b| b.parse::<i32>().ok());
        let side_champion = s.labels.get("side").map(String::as_str) == Some("champion");
        match *family {
            SHADOW_PAIRED => t.paired += n,
            SHADOW_ROWS => t.rows += n,
            SHADOW_DROPPED => t.dropped += n,
            SHADOW_ERRORS => t.shadow_errors += n,
            SHADOW_FLIPS => {
                *t.flips
                    .entry(label("champion"))
                    .or_default()
                    .entry(label("shadow"))
                    .or_default() += n;
            }
            SHADOW_REGRESSION_DISAGREEMENTS => t.regression_disagreements += n,
            SHADOW_ABS_DIFFERENCE_SUM => t.abs_difference_sum += s.value.max(0.0),
            SHADOW_ABS_DIFFERENCE => {
                if let Some(k) = bucket {
                    *t.abs_difference.entry(k).or_default() += n;
                }
            }
            SHADOW_VALUES | SHADOW_LATENCY_US => {
                let Some(k) = bucket else { continue };
                let map = match (*family == SHADOW_VALUES, side_champion) {
                    (true, true) => &mut t.champion_values,
                    (true, false) => &mut t.shadow_values,
                    (false, true) => &mut t.champion_latency_us,
                    (false, false) => &mut t.shadow_latency_us,
                };
                *map.entry(k).or_default() += n;
            }
            SHADOW_SLICE_ROWS => t.slices.entry(label("slice")).or_default().rows += n,
            SHADOW_SLICE_DISAGREEMENTS => {
                t.slices.entry(label("slice")).or_default().disagreements += n
            }
            _ => {}
        }
    }
    tallies
}

impl ServingCounters {
    /// Reads the model server's families from a `/metrics` answer.
    pub fn from_metrics(text: &str) -> Self {
        let requests = format!("{}_total", family(REQUESTS));
        let bucket = format!("{}_bucket", family(INFER_LATENCY));
        let predictions = format!("{}_total", family(PREDICTIONS));
        let accuracy = family(ONLINE_ACCURACY);
        let labelled = family(ONLINE_LABELLED);
        let confidence_rows = format!("{}_total", family(CONFIDENCE_ROWS));
        let confidence_sum = format!("{}_total", family(CONFIDENCE_SUM));
        let labelled_rows = format!("{}_total", family(LABELLED_ROWS));
        let labelled_correct = format!("{}_total", family(LABELLED_CORRECT));
        let labelled_confidence = format!("{}_total", family(LABELLED_CONFIDENCE_SUM));
        let mut c = ServingCounters::default();
        let mut online_accuracy = None;
        for s in parse_samples(text) {
            let count = s.value.max(0.0) as u64;
            if s.name == requests {
                if s.labels.get("endpoint").map(String::as_str) != Some("infer") {
                    continue;
                }
                c.requests += count;
                if s.labels
                    .get("code")
                    .is_some_and(|code| code.starts_with('5'))
                {
                    c.errors += count;
                }
            } else if s.name == bucket {
                let Some(bound) = bucket_bound(&s) else {
                    continue;
                };
                *c.latency_buckets.entry(bound).or_default() += count;
            } else if s.name == predictions {
                if let Some(class) = s.labels.get("class") {
                    *c.predictions.entry(class.clone()).or_default() += count;
                }
            } else if s.name == accuracy {
                online_accuracy = Some(s.value);
            } else if s.name == labelled {
                c.labelled = count;
            } else if s.name == confidence_rows {
                c.confidence_rows = count;
            } else if s.name == confidence_sum && s.value.is_finite() {
                c.confidence_sum = s.value.max(0.0);
            } else if s.name == labelled_rows {
                c.labelled_rows = count;
            } else if s.name == labelled_correct {
                c.labelled_correct = count;
            } else if s.name == labelled_confidence && s.value.is_finite() {
                c.labelled_confidence_sum = s.value.max(0.0);
            }
        }
        if let Some(a) = online_accuracy.filter(|a| a.is_finite()) {
            c.correct = (a.clamp(0.0, 1.0) * c.labelled as f64).round() as u64;
        }
        c
    }

    /// Adds another replica's counters.
    pub fn merge(&mut self, other: &ServingCounters) {
        self.requests += other.requests;
        self.errors += other.errors;
        for (b, n) in &other.latency_buckets {
            *self.latency_buckets.entry(*b).or_default() += n;
        }
        for (class, n) in &other.predictions {
            *self.predictions.entry(class.clone()).or_default() += n;
        }
        self.labelled += other.labelled;
        self.correct += other.correct;
        self.confidence_rows += other.confidence_rows;
        self.confidence_sum += other.confidence_sum;
        self.labelled_rows += other.labelled_rows;
        self.labelled_correct += other.labelled_correct;
        self.labelled_confidence_sum += other.labelled_confidence_sum;
    }

    /// Mean top-class probability of the classified rows: the accuracy
    /// expected of them; `None` without any.
    pub fn estimated_accuracy(&self) -> Option<f64> {
        (self.confidence_rows > 0).then(|| self.confidence_sum / self.confidence_rows as f64)
    }

    /// What happened since `baseline` (a restarted server starts from zero,
    /// so a counter that went down counts from zero).
    pub fn since(&self, baseline: &ServingCounters) -> ServingCounters {
        let delta = grown;
        let restarted = self.requests < baseline.requests;
        let base = if restarted {
            ServingCounters::default()
        } else {
            baseline.clone()
        };
        ServingCounters {
            requests: delta(self.requests, base.requests),
            errors: delta(self.errors, base.errors),
            latency_buckets: self
                .latency_buckets
                .iter()
                .map(|(b, n)| {
                    (
                        *b,
                        delta(*n, base.latency_buckets.get(b).copied().unwrap_or(0)),
                    )
                })
                .collect(),
            predictions: self
                .predictions
                .iter()
                .map(|(c, n)| {
                    (
                        c.clone(),
                        delta(*n, base.predictions.get(c).copied().unwrap_or(0)),
                    )
                })
                .collect(),
            // Online accuracy is over recent rows already, not cumulative.
            labelled: self.labelled,
            correct: self.correct,
            confidence_rows: delta(self.confidence_rows, base.confidence_rows),
            confidence_sum: (self.confidence_sum - base.confidence_sum).max(0.0),
            labelled_rows: delta(self.labelled_rows, base.labelled_rows),
            labelled_correct: delta(self.labelled_correct, base.labelled_correct),
            labelled_confidence_sum: (self.labelled_confidence_sum - base.labelled_confidence_sum)
                .max(0.0),
        }
    }

    /// The 99th-percentile latency in milliseconds, as the upper bound of the
    /// bucket that holds it; `None` without requests.
    pub fn p99_ms(&self) -> Option<f64> {
        p99_ms_of(&self.latency_buckets)
    }

    /// Requests answered slower than `ms` milliseconds (see [`slower_than_of`]).
    pub fn slower_than(&self, ms: f64) -> Option<u64> {
        slower_than_of(&self.latency_buckets, ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP driftline_serve_requests Requests by endpoint and status code.
# TYPE driftline_serve_requests counter
driftline_serve_requests_total{endpoint="infer",code="200"} 990
driftline_serve_requests_total{endpoint="infer",code="503"} 10
driftline_serve_requests_total{endpoint="infer",code="400"} 5
driftline_serve_requests_total{endpoint="metadata",code="200"} 7
driftline_serve_infer_latency_seconds_bucket{le="0.001"} 500
driftline_serve_infer_latency_seconds_bucket{le="0.002"} 980
driftline_serve_infer_latency_seconds_bucket{le="0.004"} 1000
driftline_serve_infer_latency_seconds_bucket{le="+Inf"} 1005
driftline_serve_predictions_total{class="5"} 600
driftline_serve_predictions_total{class="6"} 400
driftline_serve_online_accuracy 0.75
driftline_serve_online_labelled 200
"#;

    #[test]
    fn requests_slower_than_a_bucket_bound_are_counted_exactly() {
        let c = ServingCounters::from_metrics(TEXT);
        // 1 005 requests; 980 within 2 ms, 1 000 within 4 ms.
        assert_eq!(c.slower_than(2.0), Some(25));
        assert_eq!(c.slower_than(4.0), Some(5));
        // Between bounds, only what is known to be within counts.
        assert_eq!(c.slower_than(3.0), Some(25));
        assert_eq!(c.slower_than(0.5), Some(1005));
        assert_eq!(c.slower_than(f64::INFINITY), Some(0));
        assert_eq!(ServingCounters::default().slower_than(2.0), None);
    }

    #[test]
    fn the_server_families_become_counters() {
        let c = ServingCounters::from_metrics(TEXT);
        assert_eq!(c.requests, 1005);
        assert_eq!(c.errors, 10, "only 5xx are errors");
        assert_eq!(c.predictions.get("5"), Some(&600));
        assert_eq!((c.labelled, c.correct), (200, 150));
        assert_eq!(c.p99_ms(), Some(4.0));
    }

    #[test]
    fn windows_subtract_and_survive_restarts() {
        let now = ServingCounters::from_metrics(TEXT);
        let mut before = now.clone();
        before.requests = 905;
        before.errors = 10;
        before.predictions.insert("5".into(), 550);
        let d = now.since(&before);
        assert_eq!((d.requests, d.errors), (100, 0));
        assert_eq!(d.predictions.get("5"), Some(&50));
        let mut huge = now.clone();
        huge.requests = 10_000;
        assert_eq!(now.since(&huge).requests, 1005, "restart counts from zero");
    }

    #[test]
    fn shadow_tallies_round_trip_and_two_replicas_merge_exactly() {
        let mut t = ShadowTally {
            paired: 7,
            rows: 9,
            dropped: 2,
            shadow_errors: 1,
            regression_disagreements: 3,
            abs_difference_sum: 1.25,
            ..Default::default()
        };
        t.flips
            .entry("a \"quoted\", class".into())
            .or_default()
            .insert("b\\c".into(), 4);
        t.flips.entry("x".into()).or_default().insert("x".into(), 5);
        t.abs_difference.insert(-3, 2);
        t.champion_values.insert(62, 4);
        t.shadow_values.insert(-61, 1);
        t.slices.insert(
            "red".into(),
            super::super::shadow::Agreement {
                rows: 3,
                disagreements: 1,
            },
        );
        t.champion_latency_us.insert(10, 9);
        t.shadow_latency_us.insert(11, 9);
        let tallies = BTreeMap::from([("v2".to_string(), t.clone())]);
        let text = render_shadow_tallies(&tallies);
        assert_eq!(parse_shadow_tallies(&text), tallies, "{text}");
        // Two replicas' answers read together add up, field by field.
        let both = parse_shadow_tallies(&format!("{text}{text}"));
        let mut doubled = t.clone();
        doubled.merge(&t);
        assert_eq!(both["v2"], doubled);
        assert!(render_shadow_tallies(&BTreeMap::new()).is_empty());
    }

    #[test]
    fn labels_with_escapes_and_commas_parse() {
        let s = parse_samples("m{a=\"x,y\",b=\"q\\\"z\"} 3\nbad line\n");
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].labels["a"], "x,y");
        assert_eq!(s[0].labels["b"], "q\"z");
        assert_eq!(s[0].value, 3.0);
    }
}
