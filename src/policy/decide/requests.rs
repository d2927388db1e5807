//! Manual requests (`driftline retrain`, `promote`, `rollback` through the
//! Model's annotations): each acted on or refused once, with an Event.

use super::*;

pub(super) fn refuse(ctx: &mut Ctx, id: &str, what: &str, why: String) {
    ctx.event(
        EventKind::Warning,
        "RequestRefused",
        format!("request {id} ({what}) refused: {why}"),
    );
}

pub(super) fn handle_request(ctx: &mut Ctx) {
    let Some(request) = ctx.obs.request.clone() else {
        return;
    };
    if ctx.status.handled_request.as_deref() == Some(request.id.as_str()) {
        return;
    }
    ctx.status.handled_request = Some(request.id.clone());
    let id = request.id.as_str();
    match request.action {
        ManualAction::Retrain { reason } => {
            if ctx.spec.paused {
                return refuse(
                    ctx,
                    id,
                    "retrain",
                    "the Model is paused (spec.paused)".into(),
                );
            }
            if let Some(busy) = ctx.busy() {
                return refuse(ctx, id, "retrain", busy);
            }
            let reason = reason.unwrap_or_else(|| "asked for by a user".into());
            start_training(
                ctx,
                TrainingTrigger::Manual,
                format!("manual retrain (request {id}): {reason}"),
            );
        }
        ManualAction::Promote { version } => {
            let canary = ctx
                .status
                .canary
                .as_ref()
                .and_then(|c| version_number(&c.version));
            let target = version.or(canary);
            let Some(n) = target else {
                return refuse(
                    ctx,
                    id,
                    "promote",
                    "no canary in progress and no version named".into(),
                );
            };
            if canary.is_some_and(|c| c != n) {
                return refuse(
                    ctx,
                    id,
                    "promote",
                    format!(
                        "{} is in its canary; finish it first",
                        version_name(canary.unwrap_or(n))
                    ),
                );
            }
            match ctx.versions.get(&n).copied() {
                Some(VersionPhase::Canary) => {
                    let at = ctx.status.canary.as_ref().map_or(0, |c| c.step + 1);
                    let reason = format!(
                        "promoted by request {id} at canary step {at}/{}",
                        ctx.spec.rollout.steps.len()
                    );
                    promote(ctx, n, reason, true);
                }
                Some(
                    phase @ (VersionPhase::Trained
                    | VersionPhase::Rejected
                    | VersionPhase::RolledBack
                    | VersionPhase::Superseded),
                ) => {
                    let note = if phase == VersionPhase::Rejected {
                        ", overriding its failed gate"
                    } else {
                        ""
                    };
                    promote(
                        ctx,
                        n,
                        format!("promoted by request {id} from phase {phase}{note}"),
                        true,
                    );
                }
                Some(VersionPhase::Champion) => refuse(
                    ctx,
                    id,
                    "promote",
                    format!("{} is already champion", version_name(n)),
                ),
                Some(phase) => refuse(
                    ctx,
                    id,
                    "promote",
                    format!("{} is in phase {phase}", version_name(n)),
                ),
                None => refuse(
                    ctx,
                    id,
                    "promote",
                    format!("{} does not exist", version_name(n)),
                ),
            }
        }
        ManualAction::Rollback => {
            if let Some(n) = ctx
                .status
                .shadow
                .as_ref()
                .and_then(|s| version_number(&s.version))
            {
                return rollback_shadow(ctx, n, format!("rolled back by request {id}"));
            }
            if let Some(n) = ctx
                .status
                .canary
                .as_ref()
                .and_then(|c| version_number(&c.version))
            {
                return rollback_canary(ctx, n, format!("rolled back by request {id}"));
            }
            let Some(champion) = ctx.champion() else {
                return refuse(ctx, id, "rollback", "there is no champion".into());
            };
            let previous = ctx
                .versions
                .iter()
                .filter(|(v, p)| **p == VersionPhase::Superseded && **v < champion)
                .map(|(v, _)| *v)
                .next_back();
            let Some(previous) = previous else {
                return refuse(
                    ctx,
                    id,
                    "rollback",
                    format!(
                        "no superseded version to restore before {}",
                        version_name(champion)
                    ),
                );
            };
            let reason = format!(
                "champion {} rolled back by request {id}",
                version_name(champion)
            );
            ctx.status.traffic = only(previous);
            ctx.actions.push(Action::Rollback {
                version: champion,
                restored: Some(previous),
                reason: reason.clone(),
            });
            ctx.set_phase(champion, VersionPhase::RolledBack, reason.clone());
            ctx.set_phase(
                previous,
                VersionPhase::Champion,
                format!("restored by request {id}"),
            );
            ctx.status.champion = Some(version_name(previous));
            ctx.event(
                EventKind::Warning,
                ROLLED_BACK,
                format!("{reason}; {} serves 100 %", version_name(previous)),
            );
        }
    }
}
