//! Whether the gate's regression test-set still covers live traffic. The
//! operator compares each of the champion's drift windows with the test set
//! as well as with the training reference (`DriftReading::test_set`: the
//! same statistics and calibrated thresholds, the test set's shares); here
//! each such window is judged by the drift rule, and `consecutiveWindows`
//! windows in a row that left the test set set `TestSetStale`, naming the
//! features. A gate passing candidates on a test set traffic has left is
//! passing them on yesterday's questions.

use crate::api::{ConditionStatus, DriftDriver, ModelSpec, ModelStatus};
use crate::drift::{DriftConfig, window_verdict};

use super::action::EventKind;
use super::conditions::{self, set_condition};
use super::observe::Observations;

/// How the predictions are named among the stale features.
const PREDICTIONS: &str = "the predictions";

/// An Event to publish: kind, reason and message.
pub type Notice = (EventKind, &'static str, String);

/// Folds new windows' test-set readings into `status.testSetFreshness` and
/// sets `TestSetStale`; returns the Event of a change, if any.
pub fn update_test_set_freshness(
    status: &mut ModelStatus,
    spec: &ModelSpec,
    obs: &Observations,
) -> Option<Notice> {
    let d = &spec.drift;
    let config = DriftConfig::from(d.clone());
    let mut freshness = status.test_set_freshness.clone().unwrap_or_default();
    let mut readings: Vec<_> = obs
        .drift
        .iter()
        .filter(|r| r.rows >= u64::from(d.window) && r.test_set.is_some())
        .filter(|r| {
            freshness
                .last_window_end
                .is_none_or(|last| r.window_end > last)
        })
        .collect();
    if readings.is_empty() {
        return None;
    }
    readings.sort_by_key(|r| r.window_end);
    for r in readings {
        let Some(t) = &r.test_set else { continue };
        let verdict = window_verdict(&t.features, t.prediction.as_ref(), &config.rule());
        freshness.consecutive_windows = if verdict.drifted {
            freshness.consecutive_windows + 1
        } else {
            0
        };
        freshness.window_stale = verdict.drifted;
        freshness.stale_share = verdict.drifted_share;
        freshness.features = verdict
            .features
            .iter()
            .filter(|f| !f.ignored)
            .map(|f| DriftDriver {
                name: f.name.clone(),
                weight: f.weight,
                value: f.value,
                threshold: f.threshold,
            })
            .collect();
        freshness.stale_features = verdict.drifted_features;
        if verdict.prediction.as_ref().is_some_and(|p| p.drifted) {
            freshness.stale_features.push(PREDICTIONS.into());
        }
        freshness.last_window_end = Some(r.window_end);
    }
    let stale = freshness.consecutive_windows >= d.consecutive_windows;
    let counted = freshness.consecutive_windows.min(d.consecutive_windows);
    let test_set = spec
        .gate
        .as_ref()
        .map_or("the regression test-set", |g| g.test_set.as_str());
    freshness.summary = if stale {
        format!(
            "stale: {} ({counted}/{} windows)",
            freshness.stale_features.join(", "),
            d.consecutive_windows
        )
    } else {
        format!(
            "covers traffic ({counted}/{} windows)",
            d.consecutive_windows
        )
    };
    let was_stale = status
        .condition(conditions::TEST_SET_STALE)
        .is_some_and(|c| c.status == ConditionStatus::True);
    let notice = if stale {
        let message = format!(
            "live traffic has left the gate's test set {test_set} on {} for {} windows in a row \
             (needed {}); the gate is judging candidates on rows unlike today's: add rows like \
             current traffic to the test set",
            freshness.stale_features.join(", "),
            freshness.consecutive_windows,
            d.consecutive_windows
        );
        set_condition(
            status,
            obs,
            conditions::TEST_SET_STALE,
            ConditionStatus::True,
            "TrafficLeftTestSet",
            &message,
        );
        (!was_stale).then_some((EventKind::Warning, "TestSetStale", message))
    } else {
        let message = format!(
            "live traffic looks like the gate's test set {test_set} ({} of {} windows in a row \
             left it)",
            freshness.consecutive_windows, d.consecutive_windows
        );
        set_condition(
            status,
            obs,
            conditions::TEST_SET_STALE,
            ConditionStatus::False,
            "TestSetCoversTraffic",
            &message,
        );
        was_stale.then_some((EventKind::Normal, "TestSetFresh", message))
    };
    status.test_set_freshness = Some(freshness);
    notice
}
