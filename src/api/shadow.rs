//! The shadow stage's contract (#20): what a Model asks of it, and the
//! mergeable tally of paired answers a gateway keeps while it mirrors live
//! requests to the candidate, which the verdict (`policy::shadow_verdict`)
//! judges.
//!
//! `spec.rollout.shadow`. Besides each field's own rule, two rules span the
//! spec (on `ModelSpec`, in CEL and in `validate()` with one set of
//! messages): a regression Model's shadow needs `tolerance`, and `slices`
//! must name gate slices.
//!
//! Every count adds, so the tallies of several gateway replicas merge
//! exactly, and the window of a stage is the difference of two reads.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::SpecDuration;
use super::validate::DURATION_RULE;
use super::validate::msg;

/// The shadow stage between the gate and the first canary step: the gateway
/// mirrors a share of live requests to the candidate, the client's answer
/// never waits for it, and the two answers are compared per request.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShadowSpec {
    /// Least time in shadow (`10m`).
    #[serde(default = "default_duration")]
    #[x_kube(validation = Rule::new(DURATION_RULE).message(msg::SHADOW_DURATION))]
    pub duration: SpecDuration,
    /// Fewer paired requests than this is not enough evidence, never a pass.
    #[serde(default = "default_min_requests")]
    #[x_kube(validation = Rule::new("self > 0").message(msg::SHADOW_MIN_REQUESTS))]
    pub min_requests: u64,
    /// Share of live requests mirrored, in (0, 1].
    #[serde(default = "default_sample")]
    #[x_kube(validation = Rule::new("double(self) > 0.0 && double(self) <= 1.0").message(msg::SHADOW_SAMPLE))]
    pub sample: f64,
    /// Largest share of rows on which the two answers differ, overall and in
    /// each slice named in `slices`.
    #[serde(default = "default_max_disagreement")]
    #[x_kube(validation = Rule::new("double(self) >= 0.0 && double(self) <= 1.0").message(msg::SHADOW_MAX_DISAGREEMENT))]
    pub max_disagreement: f64,
    /// Regression: a row disagrees when the two predictions differ by more
    /// than this (in the target's units). Required for regression Models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("double(self) >= 0.0").message(msg::SHADOW_TOLERANCE))]
    pub tolerance: Option<f64>,
    /// Gate slices (`gate.slices[].name`) whose own disagreement is bounded too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 63)))]
    pub slices: Vec<String>,
    /// Largest shadow p99 latency as a multiple of the champion's on the same requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("double(self) >= 1.0").message(msg::SHADOW_LATENCY_RATIO))]
    pub max_p99_latency_ratio: Option<f64>,
}

fn default_duration() -> SpecDuration {
    "10m"
        .parse()
        .unwrap_or_else(|e| unreachable!("`10m` is a duration: {e}"))
}

fn default_min_requests() -> u64 {
    200
}

fn default_sample() -> f64 {
    1.0
}

fn default_max_disagreement() -> f64 {
    0.05
}

/// Rows of one slice and how many of them the two answers disagreed on.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Agreement {
    pub rows: u64,
    pub disagreements: u64,
}

/// What a gateway paired while mirroring: counts only, so replicas and
/// windows add and subtract.
///
/// Magnitudes (regression predictions and their differences, latencies) are
/// kept in base-2 buckets: bucket `k` holds magnitudes in (2^(k-1), 2^k], so
/// a quantile read from them is within a factor of two, whatever the units.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShadowTally {
    /// Mirrored requests whose two answers were paired.
    pub paired: u64,
    /// Rows in those requests.
    pub rows: u64,
    /// Mirrors dropped because the bounded queue was full (never queued).
    pub dropped: u64,
    /// Mirrored requests the candidate answered with an error, or not at all.
    pub shadow_errors: u64,
    /// Classification: champion's class → candidate's class → rows.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub flips: BTreeMap<String, BTreeMap<String, u64>>,
    /// Regression: rows whose two predictions differ by more than the tolerance.
    #[serde(default)]
    pub regression_disagreements: u64,
    /// Regression: sum of the absolute differences.
    #[serde(default)]
    pub abs_difference_sum: f64,
    /// Regression: absolute differences, base-2 buckets (see the type).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub abs_difference: BTreeMap<i32, u64>,
    /// Regression: each version's predictions, signed base-2 buckets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub champion_values: BTreeMap<i32, u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub shadow_values: BTreeMap<i32, u64>,
    /// Per gate slice.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub slices: BTreeMap<String, Agreement>,
    /// Time to answer the same requests, microseconds, base-2 buckets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub champion_latency_us: BTreeMap<i32, u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub shadow_latency_us: BTreeMap<i32, u64>,
}

/// The base-2 bucket of a magnitude: `k` with `2^(k-1) < x ≤ 2^k`; 0 and
/// anything below 2^-60 share the lowest bucket.
pub fn magnitude_bucket(x: f64) -> i32 {
    let x = x.abs();
    // NaN (no magnitude) lands in the lowest bucket too.
    if x.is_nan() || x <= 2f64.powi(-60) {
        return -60;
    }
    (x.log2().ceil() as i32).clamp(-60, 1023)
}

/// A prediction's signed bucket: the magnitude's bucket, offset so that
/// negative values sort below positive ones.
pub fn value_bucket(x: f64) -> i32 {
    let k = magnitude_bucket(x) + 61;
    if x < 0.0 { -k } else { k }
}

/// The upper bound of the bucket holding quantile `q` of a base-2 histogram.
pub fn bucket_quantile(buckets: &BTreeMap<i32, u64>, q: f64) -> Option<f64> {
    let total: u64 = buckets.values().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (k, n) in buckets {
        seen += n;
        if seen >= rank {
            return Some(2f64.powi(*k));
        }
    }
    None
}

fn add_map<K: Ord + Clone>(into: &mut BTreeMap<K, u64>, from: &BTreeMap<K, u64>) {
    for (k, n) in from {
        *into.entry(k.clone()).or_default() += n;
    }
}

/// `now − then` per key; a count that went down means its process
/// restarted, so all of it is new.
fn since_map<K: Ord + Clone>(now: &BTreeMap<K, u64>, then: &BTreeMap<K, u64>) -> BTreeMap<K, u64> {
    now.iter()
        .map(|(k, n)| {
            let before = then.get(k).copied().unwrap_or(0);
            (k.clone(), if *n >= before { n - before } else { *n })
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

impl ShadowTally {
    /// Adds another replica's tally.
    pub fn merge(&mut self, other: &ShadowTally) {
        self.paired += other.paired;
        self.rows += other.rows;
        self.dropped += other.dropped;
        self.shadow_errors += other.shadow_errors;
        for (from, to) in &other.flips {
            add_map(self.flips.entry(from.clone()).or_default(), to);
        }
        self.regression_disagreements += other.regression_disagreements;
        self.abs_difference_sum += other.abs_difference_sum;
        add_map(&mut self.abs_difference, &other.abs_difference);
        add_map(&mut self.champion_values, &other.champion_values);
        add_map(&mut self.shadow_values, &other.shadow_values);
        for (name, a) in &other.slices {
            let s = self.slices.entry(name.clone()).or_default();
            s.rows += a.rows;
            s.disagreements += a.disagreements;
        }
        add_map(&mut self.champion_latency_us, &other.champion_latency_us);
        add_map(&mut self.shadow_latency_us, &other.shadow_latency_us);
    }

    /// What was tallied since `then` (an earlier read of the same process);
    /// a process that restarted (fewer pairs than before) counts in full.
    pub fn since(&self, then: &ShadowTally) -> ShadowTally {
        if self.paired < then.paired {
            return self.clone();
        }
        let sub = |a: u64, b: u64| a.saturating_sub(b);
        ShadowTally {
            paired: sub(self.paired, then.paired),
            rows: sub(self.rows, then.rows),
            dropped: sub(self.dropped, then.dropped),
            shadow_errors: sub(self.shadow_errors, then.shadow_errors),
            flips: self
                .flips
                .iter()
                .map(|(from, to)| {
                    let before = then.flips.get(from).cloned().unwrap_or_default();
                    (from.clone(), since_map(to, &before))
                })
                .filter(|(_, to)| !to.is_empty())
                .collect(),
            regression_disagreements: sub(
                self.regression_disagreements,
                then.regression_disagreements,
            ),
            abs_difference_sum: (self.abs_difference_sum - then.abs_difference_sum).max(0.0),
            abs_difference: since_map(&self.abs_difference, &then.abs_difference),
            champion_values: since_map(&self.champion_values, &then.champion_values),
            shadow_values: since_map(&self.shadow_values, &then.shadow_values),
            slices: self
                .slices
                .iter()
                .map(|(name, a)| {
                    let b = then.slices.get(name).copied().unwrap_or_default();
                    let agreement = Agreement {
                        rows: sub(a.rows, b.rows),
                        disagreements: sub(a.disagreements, b.disagreements),
                    };
                    (name.clone(), agreement)
                })
                .collect(),
            champion_latency_us: since_map(&self.champion_latency_us, &then.champion_latency_us),
            shadow_latency_us: since_map(&self.shadow_latency_us, &then.shadow_latency_us),
        }
    }

    /// Rows on which the two answers differ: a flipped class, or a
    /// regression difference beyond the tolerance.
    pub fn disagreements(&self) -> u64 {
        let flipped: u64 = self
            .flips
            .iter()
            .flat_map(|(from, to)| to.iter().filter(move |(c, _)| *c != from))
            .map(|(_, n)| n)
            .sum();
        flipped + self.regression_disagreements
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(agree: u64, flip: u64) -> ShadowTally {
        let mut t = ShadowTally {
            paired: agree + flip,
            rows: agree + flip,
            ..Default::default()
        };
        t.flips
            .entry("good".into())
            .or_default()
            .insert("good".into(), agree);
        t.flips
            .entry("good".into())
            .or_default()
            .insert("bad".into(), flip);
        t.slices.insert(
            "red".into(),
            Agreement {
                rows: agree + flip,
                disagreements: flip,
            },
        );
        t
    }

    #[test]
    fn tallies_merge_and_a_window_is_the_difference_of_two_reads() {
        let mut a = tally(90, 10);
        a.merge(&tally(45, 5));
        assert_eq!((a.paired, a.disagreements()), (150, 15));
        assert_eq!(a.slices["red"].disagreements, 15);
        let later = {
            let mut l = a.clone();
            l.merge(&tally(8, 2));
            l
        };
        let window = later.since(&a);
        assert_eq!((window.paired, window.disagreements()), (10, 2));
        assert_eq!(
            window.slices["red"],
            Agreement {
                rows: 10,
                disagreements: 2
            }
        );
        // A restarted gateway counts from zero: all of its tally is new.
        let restarted = tally(3, 1);
        assert_eq!(restarted.since(&a), restarted);
    }

    #[test]
    fn magnitudes_fall_in_base_two_buckets() {
        assert_eq!(magnitude_bucket(1.0), 0);
        assert_eq!(magnitude_bucket(0.75), 0);
        assert_eq!(magnitude_bucket(3.0), 2);
        assert_eq!(magnitude_bucket(0.0), -60);
        assert!(value_bucket(-3.0) < value_bucket(0.0) && value_bucket(0.0) < value_bucket(3.0));
        let mut b = BTreeMap::new();
        b.insert(magnitude_bucket(1.0), 95);
        b.insert(magnitude_bucket(40.0), 5);
        assert_eq!(bucket_quantile(&b, 0.95), Some(1.0));
        assert_eq!(bucket_quantile(&b, 0.99), Some(64.0));
        assert_eq!(bucket_quantile(&BTreeMap::new(), 0.5), None);
    }

    #[test]
    fn the_tally_round_trips_through_json() {
        let mut t = tally(9, 1);
        t.abs_difference.insert(-3, 4);
        let text = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<ShadowTally>(&text).unwrap(), t);
    }
}
