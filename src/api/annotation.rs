//! The annotation queue's budget (`spec.feedback.annotation`): how many
//! served rows a day the model servers set aside for a person to label, and
//! how that budget is shared between the reasons a row is worth a label.
//! The queue itself is files under the feedback prefix (`queue/`, see
//! [`super::names::QUEUE_DIR`]); its row format lives in `data::queue`.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::validate::msg;

/// Share of the budget for uncertain rows when `uncertaintyShare` is absent.
pub const DEFAULT_UNCERTAINTY_SHARE: f64 = 0.5;
/// Share of the budget for rows from drifted regions when `driftShare` is absent.
pub const DEFAULT_DRIFT_SHARE: f64 = 0.3;

/// Feedback settings beyond `data.includeFeedback`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackSpec {
    /// Rows the model servers set aside for labelling, under the feedback
    /// prefix (`queue/`); needs `data.includeFeedback: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation: Option<AnnotationSpec>,
}

/// The annotation queue's daily budget and its split between reasons: the
/// least certain answers (`uncertaintyShare`), rows from the regions where
/// a drifted window moved (`driftShare`), and the rest for rows a shadow
/// candidate answered differently from the champion.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new(shares_rule()).message(msg::ANNOTATION_SHARES))]
#[serde(rename_all = "camelCase")]
pub struct AnnotationSpec {
    /// Rows queued per day by all servers of one version together (each of
    /// `n` replicas queues `perDay / n`, rounded up).
    #[x_kube(validation = Rule::new("self > 0").message(msg::ANNOTATION_PER_DAY))]
    pub per_day: u32,
    /// Share of `perDay` for the answers with the smallest margin between
    /// the two likeliest classes (classifiers). Default 0.5.
    #[serde(default = "default_uncertainty_share")]
    #[x_kube(validation = Rule::new("double(self) >= 0.0 && double(self) <= 1.0").message(msg::ANNOTATION_SHARE_RANGE))]
    pub uncertainty_share: f64,
    /// Share of `perDay` for rows, served after a window drifted, that fall
    /// where traffic moved (the bins of the drifted features the window
    /// over-represents most against the reference). Default 0.3.
    #[serde(default = "default_drift_share")]
    #[x_kube(validation = Rule::new("double(self) >= 0.0 && double(self) <= 1.0").message(msg::ANNOTATION_SHARE_RANGE))]
    pub drift_share: f64,
}

fn default_uncertainty_share() -> f64 {
    DEFAULT_UNCERTAINTY_SHARE
}

fn default_drift_share() -> f64 {
    DEFAULT_DRIFT_SHARE
}

/// CEL: the two shares leave a non-negative rest (for disagreements). The
/// defaults are spelled from the constants above, so the rule holds whether
/// or not the API server filled them in.
fn shares_rule() -> String {
    format!(
        "(has(self.uncertaintyShare) ? double(self.uncertaintyShare) : {DEFAULT_UNCERTAINTY_SHARE:?}) + \
         (has(self.driftShare) ? double(self.driftShare) : {DEFAULT_DRIFT_SHARE:?}) <= 1.0"
    )
}

/// `spec.feedback.annotation` needs somewhere to queue: the feedback prefix
/// exists only with `data.includeFeedback` (CEL on `ModelSpec`).
pub(super) const ANNOTATION_NEEDS_FEEDBACK_RULE: &str = "!has(self.feedback) || \
    !has(self.feedback.annotation) || (has(self.data.includeFeedback) && self.data.includeFeedback)";

/// Why a row was queued for labelling.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "camelCase")]
pub enum QueueReason {
    /// The answer's two likeliest classes were close (uncertainty sampling).
    Uncertain,
    /// Served after a drifted window, where the traffic moved.
    Drifted,
    /// A shadow candidate answered it differently from the champion.
    Disagreement,
}

impl QueueReason {
    pub const ALL: [QueueReason; 3] = [Self::Uncertain, Self::Drifted, Self::Disagreement];
}

impl super::ModelSpec {
    /// The annotation queue's budget, where the Model sets one.
    pub fn annotation(&self) -> Option<&AnnotationSpec> {
        self.feedback.as_ref()?.annotation.as_ref()
    }
}

impl AnnotationSpec {
    /// Rows a day for `reason` over all of a version's servers.
    pub fn budget(&self, reason: QueueReason) -> f64 {
        let share = match reason {
            QueueReason::Uncertain => self.uncertainty_share,
            QueueReason::Drifted => self.drift_share,
            QueueReason::Disagreement => (1.0 - self.uncertainty_share - self.drift_share).max(0.0),
        };
        // Rounded to a billionth: 200 × (1 − 0.5 − 0.3) is 40, not 40.000…01,
        // so that a whole budget is never rounded up or down to another.
        (f64::from(self.per_day) * share * 1e9).round() / 1e9
    }

    /// What is wrong with these settings, as (field, message): the rules of
    /// `validate()` and of `driftline serve`'s flags.
    pub fn problems(&self) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        if self.per_day == 0 {
            out.push(("perDay", msg::ANNOTATION_PER_DAY));
        }
        for (share, name) in [
            (self.uncertainty_share, "uncertaintyShare"),
            (self.drift_share, "driftShare"),
        ] {
            if !(0.0..=1.0).contains(&share) {
                out.push((name, msg::ANNOTATION_SHARE_RANGE));
            }
        }
        if self.uncertainty_share + self.drift_share > 1.0 {
            out.push(("", msg::ANNOTATION_SHARES));
        }
        out
    }

    /// What one of `replicas` servers queues a day: `perDay / replicas`,
    /// rounded up so that a small budget is not rounded away.
    pub fn per_replica(&self, replicas: u32) -> u32 {
        self.per_day.div_ceil(replicas.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(per_day: u32, u: f64, d: f64) -> AnnotationSpec {
        AnnotationSpec {
            per_day,
            uncertainty_share: u,
            drift_share: d,
        }
    }

    #[test]
    fn the_budget_splits_by_share_and_the_rest_goes_to_disagreements() {
        let s = spec(200, 0.5, 0.3);
        assert_eq!(s.budget(QueueReason::Uncertain), 100.0);
        assert_eq!(s.budget(QueueReason::Drifted), 60.0);
        assert_eq!(s.budget(QueueReason::Disagreement), 40.0);
        assert_eq!(spec(100, 0.7, 0.1).budget(QueueReason::Disagreement), 20.0);
        assert_eq!(spec(10, 0.6, 0.4).budget(QueueReason::Disagreement), 0.0);
        assert_eq!(s.per_replica(3), 67);
        assert_eq!(spec(1, 0.5, 0.3).per_replica(4), 1);
        assert_eq!(s.per_replica(0), 200);
        assert!(s.problems().is_empty());
        assert_eq!(
            spec(0, 0.7, 0.4).problems(),
            [
                ("perDay", msg::ANNOTATION_PER_DAY),
                ("", msg::ANNOTATION_SHARES)
            ]
        );
        assert_eq!(
            spec(5, -0.1, 0.2).problems(),
            [("uncertaintyShare", msg::ANNOTATION_SHARE_RANGE)]
        );
    }

    #[test]
    fn defaults_and_words() {
        let s: AnnotationSpec = serde_yaml::from_str("perDay: 50").unwrap();
        assert_eq!(s.uncertainty_share, DEFAULT_UNCERTAINTY_SHARE);
        assert_eq!(s.drift_share, DEFAULT_DRIFT_SHARE);
        let words: Vec<_> = QueueReason::ALL.iter().map(|r| r.to_string()).collect();
        assert_eq!(words, ["uncertain", "drifted", "disagreement"]);
        for r in QueueReason::ALL {
            assert_eq!(r.to_string().parse::<QueueReason>(), Ok(r));
        }
    }
}
