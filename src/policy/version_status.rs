//! What an action leaves in a `ModelVersion`'s status: its phase and
//! message, its tenure as champion, its gate summary and how its canary
//! ended. Pure: the operator writes the result, the tests read it.

use chrono::{DateTime, Utc};

use crate::api::{ModelVersionStatus, VersionPhase};

use super::action::Action;

/// The version an action writes into, if it writes into one's status.
pub fn version_of(action: &Action) -> Option<u32> {
    match action {
        Action::SetVersionPhase { version, .. }
        | Action::RecordGate { version, .. }
        | Action::RecordRollout { version, .. } => Some(*version),
        _ => None,
    }
}

/// Applies `action` to the status of the version it names (see
/// [`version_of`]) at `now`; other actions leave it as it is.
pub fn apply(status: &mut ModelVersionStatus, action: &Action, now: DateTime<Utc>) {
    match action {
        Action::SetVersionPhase { phase, reason, .. } => {
            status.phase = *phase;
            status.message = Some(reason.clone());
            champion_tenure(status, *phase, now);
        }
        Action::RecordGate { gate, .. } => status.gate = Some(gate.clone()),
        Action::RecordRollout { rollout, .. } => status.rollout = Some(rollout.clone()),
        _ => {}
    }
}

/// `championSince` and `championUntil`: becoming champion opens a tenure
/// (a version restored by a rollback starts a new one); being superseded or
/// rolled back closes the open one. A tenure already open stays as it began.
fn champion_tenure(status: &mut ModelVersionStatus, phase: VersionPhase, now: DateTime<Utc>) {
    let open = status.champion_since.is_some() && status.champion_until.is_none();
    match phase {
        VersionPhase::Champion if !open => {
            status.champion_since = Some(now);
            status.champion_until = None;
        }
        VersionPhase::Superseded | VersionPhase::RolledBack if open => {
            status.champion_until = Some(now);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hour: u32) -> DateTime<Utc> {
        chrono::DateTime::parse_from_rfc3339(&format!("2026-06-01T{hour:02}:00:00Z"))
            .expect("RFC 3339")
            .into()
    }

    fn phase(version: &mut ModelVersionStatus, phase: VersionPhase, hour: u32) {
        apply(
            version,
            &Action::SetVersionPhase {
                version: 1,
                phase,
                reason: format!("{phase} at {hour}"),
            },
            at(hour),
        );
    }

    #[test]
    fn a_champion_serves_from_its_promotion_until_it_is_superseded() {
        let mut v1 = ModelVersionStatus::default();
        phase(&mut v1, VersionPhase::Champion, 8);
        assert_eq!((v1.champion_since, v1.champion_until), (Some(at(8)), None));
        assert_eq!(v1.message.as_deref(), Some("Champion at 8"));
        // Said again (a restarted operator's repeat), the tenure keeps its start.
        phase(&mut v1, VersionPhase::Champion, 9);
        assert_eq!(v1.champion_since, Some(at(8)));
        phase(&mut v1, VersionPhase::Superseded, 10);
        assert_eq!(
            (v1.phase, v1.champion_since, v1.champion_until),
            (VersionPhase::Superseded, Some(at(8)), Some(at(10)))
        );
        // Closed once: a later phase does not move its end.
        phase(&mut v1, VersionPhase::RolledBack, 11);
        assert_eq!(v1.champion_until, Some(at(10)));
    }

    #[test]
    fn a_version_restored_by_a_rollback_starts_a_new_tenure() {
        let mut v1 = ModelVersionStatus::default();
        phase(&mut v1, VersionPhase::Champion, 8);
        phase(&mut v1, VersionPhase::Superseded, 10);
        phase(&mut v1, VersionPhase::Champion, 12);
        assert_eq!((v1.champion_since, v1.champion_until), (Some(at(12)), None));
    }

    #[test]
    fn a_version_that_never_served_has_no_tenure() {
        let mut v2 = ModelVersionStatus::default();
        phase(&mut v2, VersionPhase::Canary, 8);
        phase(&mut v2, VersionPhase::RolledBack, 9);
        assert_eq!((v2.champion_since, v2.champion_until), (None, None));
        assert_eq!(v2.phase, VersionPhase::RolledBack);
    }

    #[test]
    fn gate_and_rollout_records_land_in_their_fields() {
        let mut v2 = ModelVersionStatus::default();
        let gate = crate::api::GateSummary {
            passed: true,
            summary: "passed 3/3".into(),
            ..Default::default()
        };
        let record = Action::RecordGate {
            version: 2,
            gate: gate.clone(),
        };
        assert_eq!(version_of(&record), Some(2));
        apply(&mut v2, &record, at(8));
        assert_eq!(v2.gate, Some(gate));
        let event = Action::RecordEvent {
            kind: super::super::EventKind::Normal,
            reason: "X".into(),
            message: "y".into(),
        };
        assert_eq!(version_of(&event), None);
        let before = v2.clone();
        apply(&mut v2, &event, at(9));
        assert_eq!(v2, before, "an action for no version changes nothing");
    }
}
