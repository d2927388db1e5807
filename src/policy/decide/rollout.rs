//! The canary rollout: steps and weights, live analysis, promotion and
//! rollback.

use super::*;

/// The rollout result, Event and condition reason of a canary that live
/// evidence (or a user) rolled back.
pub(super) const ROLLED_BACK: &str = "RolledBack";

pub(super) fn start_canary(ctx: &mut Ctx, n: u32, passed_reason: String) {
    ctx.set_phase(
        n,
        VersionPhase::Canary,
        format!("{passed_reason}; canary started"),
    );
    ctx.status.canary = Some(CanaryStatus {
        version: version_name(n),
        step: 0,
        step_started_at: None,
        failures: 0,
        awaiting_promotion: false,
        analyses: Vec::new(),
    });
    let first = ctx.spec.rollout.steps.first().map_or(0, |s| s.weight);
    ctx.event(
        EventKind::Normal,
        "CanaryStarted",
        format!(
            "{} passed the {passed_reason}; canary goes to {first} % once ready",
            version_name(n)
        ),
    );
    set_canary_weight(ctx);
}

/// Gives the canary its step's weight once its Deployment is ready; stable
/// keeps all traffic until then.
pub(super) fn set_canary_weight(ctx: &mut Ctx) {
    let (Some(champion), Some(mut canary)) = (ctx.champion(), ctx.status.canary.clone()) else {
        return;
    };
    let Some(n) = version_number(&canary.version) else {
        return;
    };
    if !ctx.obs.ready_versions.contains(&n) {
        ctx.requeue_in(POLL);
        return;
    }
    let steps = &ctx.spec.rollout.steps;
    let i = (canary.step as usize).min(steps.len().saturating_sub(1));
    let Some(step) = steps.get(i) else { return };
    canary.step = i as u32;
    canary.step_started_at = Some(ctx.now);
    let pause = step.pause.get();
    ctx.status.traffic = canary_split(champion, n, step.weight);
    ctx.status.canary = Some(canary);
    ctx.requeue_in(pause);
}

/// Records how version `n`'s canary ended, if it had one.
pub(super) fn record_rollout(ctx: &mut Ctx, n: u32, result: &str, message: &str) {
    let Some(canary) = ctx
        .status
        .canary
        .as_ref()
        .filter(|c| version_number(&c.version) == Some(n))
    else {
        return;
    };
    let steps_passed = canary
        .analyses
        .iter()
        // Weight 0 is the shadow's verdict, not a canary step.
        .filter(|a| a.outcome == AnalysisOutcome::Passed && a.weight > 0)
        .count() as u32;
    let rollout = RolloutOutcome {
        result: result.to_string(),
        steps_passed,
        message: message.to_string(),
        analyses: canary.analyses.clone(),
    };
    ctx.actions.push(Action::RecordRollout {
        version: n,
        rollout,
    });
}

pub(super) fn promote(ctx: &mut Ctx, n: u32, reason: String, manual: bool) {
    record_rollout(
        ctx,
        n,
        if manual {
            "ManuallyPromoted"
        } else {
            "Promoted"
        },
        &reason,
    );
    let previous = ctx.champion().filter(|p| *p != n);
    ctx.status.traffic = only(n);
    ctx.actions.push(Action::Promote {
        version: n,
        previous,
        reason: reason.clone(),
    });
    ctx.set_phase(n, VersionPhase::Champion, reason.clone());
    if let Some(p) = previous {
        ctx.set_phase(
            p,
            VersionPhase::Superseded,
            format!("superseded by {}", version_name(n)),
        );
    }
    ctx.status.champion = Some(version_name(n));
    if ctx.candidate() == Some(n) {
        ctx.status.candidate = None;
    }
    ctx.status.canary = None;
    let (kind, why) = if manual {
        (EventKind::Warning, "ManualPromotion")
    } else {
        (EventKind::Normal, "Promoted")
    };
    ctx.event(
        kind,
        why,
        format!("{} is champion at 100 %: {reason}", version_name(n)),
    );
}

pub(super) fn rollback_canary(ctx: &mut Ctx, n: u32, reason: String) {
    record_rollout(ctx, n, ROLLED_BACK, &reason);
    let champion = ctx.champion();
    if let Some(c) = champion {
        ctx.status.traffic = only(c);
    }
    ctx.actions.push(Action::Rollback {
        version: n,
        restored: champion,
        reason: reason.clone(),
    });
    ctx.set_phase(n, VersionPhase::RolledBack, reason.clone());
    ctx.status.candidate = None;
    ctx.status.canary = None;
    let restored = champion.map_or("nothing".into(), |c| {
        format!("{} at 100 %", version_name(c))
    });
    ctx.event(
        EventKind::Warning,
        ROLLED_BACK,
        format!("{} rolled back, {restored}: {reason}", version_name(n)),
    );
}

/// Waits out the step's pause, analyses, then advances, promotes, holds or rolls back.
pub(super) fn advance_canary(ctx: &mut Ctx) {
    let Some(mut canary) = ctx.status.canary.clone() else {
        return;
    };
    let Some(n) = version_number(&canary.version) else {
        return;
    };
    let Some(started) = canary.step_started_at else {
        set_canary_weight(ctx);
        return;
    };
    if canary.awaiting_promotion {
        return;
    }
    let steps = ctx.spec.rollout.steps.clone();
    let i = (canary.step as usize).min(steps.len().saturating_sub(1));
    let Some(step) = steps.get(i) else { return };
    let pause = chrono_duration(step.pause.get());
    let pause_over = ctx.now >= started + pause;
    // A threshold is read once the pause is over; a sequential analysis is
    // read at every poll, so clear harm rolls back inside the pause.
    let sequential = ctx.spec.rollout.analysis.method == AnalysisMethod::Sequential;
    if !pause_over {
        ctx.requeue_in(std_duration(started + pause - ctx.now));
        if !sequential {
            return;
        }
        ctx.requeue_in(POLL);
    }
    let window = StepWindow {
        step: i as u32,
        steps: steps.len() as u32,
        weight: step.weight,
        started_at: started,
        now: ctx.now,
        pause_over,
        estimate_unreliable: ctx
            .status
            .condition(conditions::ESTIMATE_UNRELIABLE)
            .is_some_and(|c| c.status == ConditionStatus::True),
    };
    let metrics = ctx.obs.canary_metrics.as_ref().filter(|m| m.version == n);
    let analysis = analyse(&ctx.spec.rollout.analysis, window, metrics);
    let outcome = analysis.outcome;
    let message = analysis.message.clone();
    let repeated_inconclusive = outcome == AnalysisOutcome::Inconclusive
        && canary
            .analyses
            .last()
            .is_some_and(|a| a.outcome == AnalysisOutcome::Inconclusive && a.step == i as u32);
    if repeated_inconclusive {
        // Keep one record per inconclusive stretch, with the latest numbers.
        canary.analyses.pop();
    }
    canary.analyses.push(analysis);
    if canary.analyses.len() > ANALYSES_KEPT {
        canary.analyses.remove(0);
    }
    let limit = ctx.spec.rollout.analysis.failure_limit;
    match outcome {
        AnalysisOutcome::Passed if i + 1 < steps.len() => {
            canary.step = i as u32 + 1;
            ctx.status.canary = Some(canary);
            ctx.event(
                EventKind::Normal,
                "CanaryStepPassed",
                format!("{}: {message}", version_name(n)),
            );
            set_canary_weight(ctx);
        }
        AnalysisOutcome::Passed => {
            if ctx.spec.rollout.auto_promote {
                ctx.status.canary = Some(canary);
                promote(
                    ctx,
                    n,
                    format!("all {} canary steps passed; last: {message}", steps.len()),
                    false,
                );
            } else {
                canary.awaiting_promotion = true;
                ctx.status.canary = Some(canary);
                ctx.event(
                    EventKind::Normal,
                    "AwaitingPromotion",
                    format!(
                        "{}: all {} steps passed; autoPromote is off, run `driftline promote`",
                        version_name(n),
                        steps.len()
                    ),
                );
            }
        }
        AnalysisOutcome::Failed => {
            canary.failures += 1;
            let failures = canary.failures;
            if failures > limit {
                ctx.status.canary = Some(canary);
                rollback_canary(
                    ctx,
                    n,
                    format!("analysis failed {failures} time(s), failureLimit {limit}: {message}"),
                );
            } else {
                // Analyse the step again on a fresh window.
                canary.step_started_at = Some(ctx.now);
                ctx.status.canary = Some(canary);
                ctx.event(
                    EventKind::Warning,
                    "CanaryAnalysisFailed",
                    format!(
                        "{}: failure {failures} of {limit} tolerated: {message}",
                        version_name(n)
                    ),
                );
                ctx.requeue_in(std_duration(pause));
            }
        }
        AnalysisOutcome::Inconclusive if !pause_over => {
            // Watching inside the pause is the plan, not news: no Event.
            ctx.status.canary = Some(canary);
        }
        AnalysisOutcome::Inconclusive => {
            let deadline = ctx
                .spec
                .rollout
                .progress_deadline
                .as_ref()
                .map(|d| chrono_duration(d.get()));
            let waited = ctx.now - (started + pause);
            ctx.status.canary = Some(canary);
            if let Some(deadline) = deadline.filter(|d| waited >= *d) {
                let reason = format!(
                    "no conclusive analysis {} after the pause (progressDeadline {}): {message}",
                    human(waited),
                    human(deadline)
                );
                rollback_canary(ctx, n, reason);
                return;
            }
            if let Some(deadline) = deadline {
                ctx.requeue_in(std_duration(deadline - waited));
            }
            if !repeated_inconclusive {
                ctx.event(
                    EventKind::Normal,
                    "CanaryInconclusive",
                    format!("{}: {message}", version_name(n)),
                );
            }
            ctx.requeue_in(std_duration(pause).clamp(POLL, Duration::from_secs(600)));
        }
    }
}
