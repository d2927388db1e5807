//! Accuracy estimated without labels (confidence-based performance
//! estimation, as NannyML's CBPE): each complete drift window of the
//! champion carries the sum of its calibrated top-class probabilities, whose
//! mean is the accuracy expected there. This folds new windows into
//! `status.estimatedAccuracy`, judges the estimate against the accuracy late
//! labels realised (`EstimateUnreliable`), one batch of at least `minLabels`
//! newly labelled requests at a time, and says when
//! `retrain.onEstimatedDrop` is due.

use crate::api::{
    ConditionStatus, DEFAULT_ESTIMATE_MIN_LABELS, DEFAULT_ESTIMATE_TOLERANCE, EstimatedAccuracy,
    LabelCounts, ModelSpec, ModelStatus,
};

use super::action::EventKind;
use super::conditions::{self, set_condition};
use super::observe::Observations;

/// What the estimate amounts to in this decision.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EstimateUpdate {
    /// `retrain.onEstimatedDrop` asks for a retrain now.
    pub due: bool,
    /// At least one window was new in this decision.
    pub new_windows: bool,
    /// The numbers, for the training reason.
    pub reason: String,
    /// The estimate just became unreliable: the Warning Event's message.
    pub became_unreliable: Option<String>,
}

/// Whether the estimate can be trusted, judged on the labelled requests.
#[derive(Clone, Debug, PartialEq)]
pub enum Reliability {
    /// Fewer labelled requests than `minLabels`: nothing to judge by.
    Unknown,
    Reliable(String),
    Unreliable(String),
}

/// Judges the estimate on the requests labelled so far: what it said of
/// them (`estimated`, their mean confidence) against what their labels
/// realised, over at least `min_labels` of them.
pub fn reliability(
    labelled: u64,
    realised: f64,
    estimated: f64,
    tolerance: f64,
    min_labels: u64,
) -> Reliability {
    if labelled < min_labels.max(1) {
        return Reliability::Unknown;
    }
    let error = (estimated - realised).abs();
    let numbers = format!(
        "estimated accuracy {estimated:.3} against {realised:.3} realised by {labelled} labelled requests: error {error:.3}"
    );
    if error > tolerance {
        Reliability::Unreliable(format!(
            "{numbers}, over the tolerance {tolerance}; the estimate triggers no retrain until it is back within"
        ))
    } else {
        Reliability::Reliable(format!("{numbers}, within the tolerance {tolerance}"))
    }
}

/// Folds new windows and labels into `status.estimatedAccuracy`, sets
/// `EstimateUnreliable`, and decides `retrain.onEstimatedDrop`.
pub fn update_estimate(
    status: &mut ModelStatus,
    spec: &ModelSpec,
    obs: &Observations,
) -> EstimateUpdate {
    let mut update = EstimateUpdate::default();
    let Some(champion) = status.champion.clone() else {
        return update;
    };
    let mut current = status
        .estimated_accuracy
        .clone()
        .filter(|e| e.version == champion);
    let last = current.as_ref().map(|e| e.window);
    let mut windows: Vec<_> = obs
        .drift
        .iter()
        .filter(|r| r.rows >= u64::from(spec.drift.window))
        .filter(|r| last.is_none_or(|l| r.window_end > l))
        .filter_map(|r| {
            let e = r.estimate.as_ref()?;
            Some((r.window_end, e, e.accuracy()?))
        })
        .collect();
    windows.sort_by_key(|(end, _, _)| *end);
    update.new_windows = !windows.is_empty();
    if let Some((end, e, value)) = windows.last() {
        let (realised, estimated_on_labelled, labelled, judged_through) =
            current.as_ref().map_or((None, None, 0, None), |c| {
                (
                    c.realised,
                    c.estimated_on_labelled,
                    c.labelled,
                    c.judged_through.clone(),
                )
            });
        current = Some(EstimatedAccuracy {
            version: champion.clone(),
            value: *value,
            window: *end,
            requests: e.rows,
            validation_accuracy: e.validation_accuracy,
            realised,
            estimated_on_labelled,
            labelled,
            judged_through,
        });
    }
    let Some(mut current) = current else {
        return update;
    };
    let trigger = spec
        .retrain
        .as_ref()
        .and_then(|r| r.on_estimated_drop.as_ref());
    let tolerance = trigger.map_or(DEFAULT_ESTIMATE_TOLERANCE, |t| t.tolerance);
    let min_labels = trigger.map_or(DEFAULT_ESTIMATE_MIN_LABELS, |t| t.min_labels);
    let judged = match obs
        .champion_labels
        .as_ref()
        .and_then(|l| next_batch(l, current.judged_through.as_ref(), min_labels))
    {
        Some(batch) => {
            current.labelled = batch.labelled;
            current.realised = Some(batch.correct as f64 / batch.labelled as f64);
            current.estimated_on_labelled = Some(batch.confidence_sum / batch.labelled as f64);
            current.judged_through = obs.champion_labels.clone();
            reliability(
                batch.labelled,
                batch.correct as f64 / batch.labelled as f64,
                batch.confidence_sum / batch.labelled as f64,
                tolerance,
                min_labels,
            )
        }
        None => Reliability::Unknown,
    };
    let unreliable = match &judged {
        Reliability::Unreliable(message) => {
            if set_condition(
                status,
                obs,
                conditions::ESTIMATE_UNRELIABLE,
                ConditionStatus::True,
                "EstimateOffLabels",
                message,
            ) {
                update.became_unreliable = Some(message.clone());
            }
            true
        }
        Reliability::Reliable(message) => {
            set_condition(
                status,
                obs,
                conditions::ESTIMATE_UNRELIABLE,
                ConditionStatus::False,
                "EstimateMatchesLabels",
                message,
            );
            false
        }
        // An earlier verdict stands until enough labels judge again.
        Reliability::Unknown => status
            .condition(conditions::ESTIMATE_UNRELIABLE)
            .is_some_and(|c| c.status == ConditionStatus::True),
    };

    if let (Some(t), Some(validation)) = (trigger, current.validation_accuracy) {
        let drop = validation - current.value;
        // A window must end after the latest training started: the drop it
        // shows was not already answered by that training.
        let trained = status
            .training
            .as_ref()
            .or(status.last_training.as_ref())
            .map(|t| t.started_at);
        let fresh = trained.is_none_or(|t| current.window > t);
        update.reason = format!(
            "estimated accuracy of {champion} {:.3} over the window ending {} ({} requests) is {drop:.3} below its validation accuracy {validation:.3} (retrain.onEstimatedDrop.maxDrop {})",
            current.value,
            current.window.to_rfc3339(),
            current.requests,
            t.max_drop
        );
        update.due = drop > t.max_drop && fresh && !unreliable;
    }
    status.estimated_accuracy = Some(current);
    update
}

/// Shows the latest late-label join (`status.realisedAccuracy`) and sets
/// `LabelsReadable`; returns the Event to publish when that changes. A join
/// that failed keeps the last one's numbers.
pub fn update_realised(
    status: &mut ModelStatus,
    obs: &Observations,
) -> Option<(EventKind, &'static str, String)> {
    let before = status
        .condition(conditions::LABELS_READABLE)
        .map(|c| (c.status, c.message.clone()));
    if let Some(error) = &obs.labels_error {
        let message = format!(
            "the labels under the feedback prefix cannot be joined, so status.realisedAccuracy keeps its last numbers: {error}"
        );
        set_condition(
            status,
            obs,
            conditions::LABELS_READABLE,
            ConditionStatus::False,
            "LabelsUnreadable",
            &message,
        );
        let changed = before != Some((ConditionStatus::False, message.clone()));
        return changed.then_some((EventKind::Warning, "LabelsUnreadable", message));
    }
    // Nothing labelled yet: nothing to show.
    let realised = obs
        .realised_accuracy
        .as_ref()
        .filter(|r| r.label_files > 0 || !r.windows.is_empty())?;
    status.realised_accuracy = Some(realised.clone());
    let message = format!(
        "{} label files joined with the prediction log; {} labels match no logged request",
        realised.label_files, realised.unknown_labels
    );
    let flipped = set_condition(
        status,
        obs,
        conditions::LABELS_READABLE,
        ConditionStatus::True,
        "LabelsJoined",
        &message,
    );
    (flipped && before.is_some()).then(|| {
        (
            EventKind::Normal,
            "LabelsReadable",
            format!("the labels are joined again: {message}"),
        )
    })
}

/// The labels that came after the last judged batch, once there are at
/// least `min_labels` of them. Counts that went down (a replica restarted
/// and its counters with it) start the next batch from nothing.
fn next_batch(
    now: &LabelCounts,
    judged: Option<&LabelCounts>,
    min_labels: u64,
) -> Option<LabelCounts> {
    let base = judged
        .filter(|b| b.labelled <= now.labelled && b.correct <= now.correct)
        .cloned()
        .unwrap_or_default();
    let batch = LabelCounts {
        labelled: now.labelled - base.labelled,
        correct: now.correct - base.correct,
        confidence_sum: (now.confidence_sum - base.confidence_sum).max(0.0),
    };
    (batch.labelled >= min_labels.max(1)).then_some(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_batch_is_the_labels_after_the_last_one_and_a_restart_starts_over() {
        let counts = |labelled, correct, confidence_sum| LabelCounts {
            labelled,
            correct,
            confidence_sum,
        };
        assert_eq!(
            next_batch(&counts(150, 90, 120.0), None, 100),
            Some(counts(150, 90, 120.0))
        );
        let judged = counts(150, 90, 120.0);
        assert_eq!(
            next_batch(&counts(240, 160, 195.0), Some(&judged), 100),
            None
        );
        assert_eq!(
            next_batch(&counts(250, 175, 200.0), Some(&judged), 100),
            Some(counts(100, 85, 80.0))
        );
        // A replica restarted: its counts are gone from the sum.
        assert_eq!(
            next_batch(&counts(120, 100, 100.0), Some(&judged), 100),
            Some(counts(120, 100, 100.0))
        );
    }

    #[test]
    fn the_realised_accuracy_is_shown_and_an_unreadable_label_file_is_said_once() {
        use crate::api::{RealisedAccuracy, RealisedWindow};
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("a time");
        let mut obs = Observations::at(now);
        let mut status = ModelStatus::default();
        // Nothing labelled: nothing shown, no condition.
        obs.realised_accuracy = Some(RealisedAccuracy {
            joined_at: now,
            label_files: 0,
            unknown_labels: 0,
            duplicate_labels: 0,
            windows: Vec::new(),
        });
        assert_eq!(update_realised(&mut status, &obs), None);
        assert!(status.realised_accuracy.is_none());
        assert!(status.condition(conditions::LABELS_READABLE).is_none());
        let joined = RealisedAccuracy {
            label_files: 2,
            unknown_labels: 1,
            windows: vec![RealisedWindow {
                version: "v1".into(),
                start: now - chrono::TimeDelta::days(2),
                end: now - chrono::TimeDelta::days(1),
                labelled: 10,
                correct: 6,
                accuracy: 0.6,
            }],
            ..obs.realised_accuracy.clone().expect("set")
        };
        obs.realised_accuracy = Some(joined.clone());
        assert_eq!(update_realised(&mut status, &obs), None, "first: no event");
        assert_eq!(status.realised_accuracy.as_ref(), Some(&joined));
        let c = status.condition(conditions::LABELS_READABLE).expect("set");
        assert_eq!(c.status, ConditionStatus::True);
        assert!(c.message.contains("2 label files"), "{}", c.message);
        // A malformed file: False with the file's name, one Warning, and
        // the last numbers stay.
        obs.realised_accuracy = None;
        obs.labels_error = Some("dataset `labels/x.csv` line 2: row `first`".into());
        let (kind, reason, message) = update_realised(&mut status, &obs).expect("an Event");
        assert_eq!((kind, reason), (EventKind::Warning, "LabelsUnreadable"));
        assert!(message.contains("labels/x.csv"), "{message}");
        assert_eq!(update_realised(&mut status, &obs), None, "said once");
        assert_eq!(status.realised_accuracy.as_ref(), Some(&joined));
        let c = status.condition(conditions::LABELS_READABLE).expect("set");
        assert_eq!(c.status, ConditionStatus::False);
        // Fixed: True again, said once.
        obs.labels_error = None;
        obs.realised_accuracy = Some(joined);
        let (kind, reason, _) = update_realised(&mut status, &obs).expect("an Event");
        assert_eq!((kind, reason), (EventKind::Normal, "LabelsReadable"));
    }

    #[test]
    fn the_estimate_is_judged_only_on_enough_labels_and_against_the_tolerance() {
        use Reliability::*;
        let name = |r: &Reliability| match r {
            Unknown => "unknown",
            Reliable(_) => "reliable",
            Unreliable(_) => "unreliable",
        };
        // (labelled, realised, estimated, tolerance, min labels, verdict)
        let table = [
            (99, 0.5, 0.9, 0.05, 100, "unknown"),
            (0, 0.5, 0.9, 0.05, 0, "unknown"),
            (100, 0.80, 0.84, 0.05, 100, "reliable"),
            (100, 0.80, 0.86, 0.05, 100, "unreliable"),
            (100, 0.86, 0.80, 0.05, 100, "unreliable"),
            (500, 0.70, 0.79, 0.10, 100, "reliable"),
        ];
        for (labelled, realised, estimated, tolerance, min, expected) in table {
            let r = reliability(labelled, realised, estimated, tolerance, min);
            assert_eq!(
                name(&r),
                expected,
                "{labelled} labelled, {realised} realised, {estimated} estimated, tolerance {tolerance}: {r:?}"
            );
        }
        let Unreliable(message) = reliability(200, 0.7, 0.9, 0.05, 100) else {
            panic!("0.2 off is unreliable");
        };
        assert!(
            message.contains("0.900") && message.contains("0.700") && message.contains("0.200"),
            "{message}"
        );
    }
}
