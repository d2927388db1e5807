//! The shadow stage (#20), between the gate and the first canary step: the
//! candidate answers mirrored live requests that no user sees, and the
//! verdict on its paired answers ([`crate::policy::shadow_verdict`]) sends
//! it into its canary or rejects it before any user traffic reaches it.

use super::*;
use crate::api::{AnalysisRecord, Evidence, ShadowSpec, ShadowStatus};
use crate::policy::shadow::verdict;

/// The rollout result, version phase reason and Event of a candidate its
/// shadow stage refused.
pub(super) const SHADOW_FAILED: &str = "ShadowFailed";

/// A candidate that passed its gate goes into shadow; the champion keeps
/// all traffic.
pub(super) fn start_shadow(ctx: &mut Ctx, n: u32, spec: &ShadowSpec, passed_reason: String) {
    ctx.set_phase(
        n,
        VersionPhase::Shadow,
        format!("{passed_reason}; shadow started"),
    );
    ctx.status.shadow = Some(ShadowStatus {
        version: version_name(n),
        sample: spec.sample,
        started_at: None,
        analysis: None,
    });
    ctx.event(
        EventKind::Normal,
        "ShadowStarted",
        format!(
            "{} passed the {passed_reason}; once ready it answers {:.0} % of live requests in shadow for at least {}, and no user sees its answers",
            version_name(n),
            spec.sample * 100.0,
            spec.duration
        ),
    );
    start_mirroring(ctx);
}

/// Mirroring starts once the candidate's Deployment is ready.
fn start_mirroring(ctx: &mut Ctx) {
    let Some(mut shadow) = ctx.status.shadow.clone() else {
        return;
    };
    ctx.requeue_in(POLL);
    if version_number(&shadow.version).is_some_and(|n| ctx.obs.ready_versions.contains(&n)) {
        shadow.started_at = Some(ctx.now);
        ctx.status.shadow = Some(shadow);
    }
}

/// Reads the verdict on the window so far: passed → the first canary step;
/// failed → rejected (`ShadowFailed`), the champion untouched; otherwise
/// keeps watching.
pub(super) fn advance_shadow(ctx: &mut Ctx) {
    let Some(mut shadow) = ctx.status.shadow.clone() else {
        return;
    };
    let Some(n) = version_number(&shadow.version) else {
        return;
    };
    let Some(started) = shadow.started_at else {
        start_mirroring(ctx);
        return;
    };
    let Some(spec) = ctx.spec.rollout.shadow.clone() else {
        // The stage was removed from the spec while it ran: nothing asks
        // for it any more, so the candidate goes on as it would have.
        ctx.status.shadow = None;
        start_canary(
            ctx,
            n,
            "gate (rollout.shadow was removed while its shadow ran)".into(),
        );
        return;
    };
    let duration = chrono_duration(spec.duration.get());
    let duration_over = ctx.now >= started + duration;
    let tally = ctx
        .obs
        .shadow
        .as_ref()
        .filter(|s| s.version == n)
        .map(|s| s.tally.clone())
        .unwrap_or_default();
    let v = verdict(
        &spec,
        ctx.spec.task,
        &tally,
        duration_over,
        ctx.spec.rollout.analysis.alpha,
    );
    let record = AnalysisRecord {
        step: 0,
        weight: 0,
        outcome: v.outcome,
        canary_requests: tally.paired,
        stable_requests: tally.paired,
        checks: v.checks.clone(),
        window_start: started,
        window_end: ctx.now,
        message: format!("{}{}", v.message, measures(&v)),
        divergence: v.divergence,
    };
    match v.outcome {
        AnalysisOutcome::Passed => {
            ctx.status.shadow = None;
            ctx.event(
                EventKind::Normal,
                "ShadowPassed",
                format!("{}: {}", version_name(n), v.message),
            );
            start_canary(ctx, n, v.message.clone());
            // The shadow's verdict is the first analysis of the rollout.
            if let Some(canary) = ctx.status.canary.as_mut() {
                canary.analyses.insert(0, record);
            }
        }
        AnalysisOutcome::Failed => {
            let failed: Vec<&str> = v
                .checks
                .iter()
                .filter(|c| !c.passed && c.evidence == Some(Evidence::Harm))
                .map(|c| c.message.as_str())
                .collect();
            let message = format!(
                "{SHADOW_FAILED}: {} of {} paired requests; failed: {}",
                tally.paired,
                tally.paired + tally.shadow_errors,
                failed.join("; ")
            );
            ctx.actions.push(Action::RecordRollout {
                version: n,
                rollout: RolloutOutcome {
                    result: SHADOW_FAILED.into(),
                    steps_passed: 0,
                    message: message.clone(),
                    analyses: vec![record],
                },
            });
            ctx.set_phase(n, VersionPhase::Rejected, message.clone());
            ctx.shadow_failed.insert(n);
            ctx.status.shadow = None;
            ctx.status.candidate = None;
            let champion = ctx.champion().map_or("nothing".into(), |c| {
                format!("{} keeps 100 %", version_name(c))
            });
            ctx.event(
                EventKind::Warning,
                SHADOW_FAILED,
                format!(
                    "{} rejected in shadow before any user saw it, {champion}: {message}",
                    version_name(n)
                ),
            );
        }
        AnalysisOutcome::Inconclusive => {
            shadow.analysis = Some(record);
            ctx.status.shadow = Some(shadow);
            if !duration_over {
                ctx.requeue_in(std_duration(started + duration - ctx.now));
            }
            ctx.requeue_in(POLL);
        }
    }
}

/// What the verdict measured beside its checks, for the record: the
/// Jensen-Shannon distance of the two answers' distributions, regression's
/// mean and p95 absolute difference, both sides' p50/p99 on the same
/// requests (base-2 buckets: within a factor of two).
fn measures(v: &crate::policy::ShadowVerdict) -> String {
    let mut parts = Vec::new();
    if let Some(d) = v.divergence {
        parts.push(format!("Jensen-Shannon distance {d:.4}"));
    }
    if let Some(m) = v.mean_abs_difference {
        parts.push(format!("mean |difference| {m:.4}"));
    }
    if let Some(p) = v.p95_abs_difference {
        parts.push(format!("p95 |difference| ≤ {p}"));
    }
    let ms = |us: Option<f64>| us.map_or("?".to_string(), |u| format!("{:.1}", u / 1000.0));
    if v.shadow_latency_us.1.is_some() {
        parts.push(format!(
            "latency p50/p99 ≤ {}/{} ms (candidate) vs {}/{} ms (champion)",
            ms(v.shadow_latency_us.0),
            ms(v.shadow_latency_us.1),
            ms(v.champion_latency_us.0),
            ms(v.champion_latency_us.1)
        ));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("; {}", parts.join("; "))
    }
}

/// A user's rollback during the shadow: the candidate is dropped, the
/// champion never lost any traffic.
pub(super) fn rollback_shadow(ctx: &mut Ctx, n: u32, reason: String) {
    ctx.set_phase(n, VersionPhase::RolledBack, reason.clone());
    ctx.status.shadow = None;
    ctx.status.candidate = None;
    ctx.event(
        EventKind::Warning,
        ROLLED_BACK,
        format!("{} rolled back in shadow: {reason}", version_name(n)),
    );
}
