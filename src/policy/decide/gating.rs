//! The gate: a trained candidate is rejected with every failed check, becomes
//! the first champion, or goes into its canary.

use super::*;

pub(super) fn gate_summary(verdict: &GateVerdict, champion: Option<u32>) -> GateSummary {
    let failed: Vec<_> = verdict.failures().cloned().collect();
    let total = verdict.checks.len();
    GateSummary {
        passed: verdict.passed,
        summary: if verdict.passed {
            format!("passed {total}/{total}")
        } else {
            format!("failed {}/{total}", failed.len())
        },
        failed_checks: failed,
        champion: champion.map(version_name),
    }
}

/// A trained candidate meets its gate verdict: rejected, promoted (first
/// version) or sent into its canary.
pub(super) fn observe_gate(ctx: &mut Ctx) {
    let Some(n) = ctx.candidate() else { return };
    if ctx.status.canary.is_some()
        || ctx.status.shadow.is_some()
        || ctx.versions.get(&n) != Some(&VersionPhase::Trained)
    {
        return;
    }
    let passed_reason = if ctx.spec.gate.is_none() {
        "no gate configured".to_string()
    } else {
        let Some(verdict) = ctx.obs.gate(n) else {
            return;
        };
        // A passing verdict waits unrecorded while the Model is paused:
        // recorded, it would keep the version in `Trained` with its gate
        // already known, and the report would not be read again on resume.
        if verdict.passed && ctx.spec.paused {
            return;
        }
        let summary = gate_summary(verdict, ctx.champion());
        ctx.actions.push(Action::RecordGate {
            version: n,
            gate: summary.clone(),
        });
        if !verdict.passed {
            let failures: Vec<&str> = verdict.failures().map(|c| c.message.as_str()).collect();
            let message = format!("gate {}: {}", summary.summary, failures.join("; "));
            ctx.set_phase(n, VersionPhase::Rejected, message.clone());
            ctx.status.candidate = None;
            ctx.event(
                EventKind::Warning,
                "GateFailed",
                format!("{} rejected: {message}", version_name(n)),
            );
            return;
        }
        format!("gate {}", summary.summary)
    };
    if ctx.spec.paused {
        return;
    }
    match ctx.champion() {
        None => promote(
            ctx,
            n,
            format!("first version; {passed_reason}; no champion to compare with"),
            false,
        ),
        Some(_) => match ctx.spec.rollout.shadow.clone() {
            Some(shadow) => start_shadow(ctx, n, &shadow, passed_reason),
            None => start_canary(ctx, n, passed_reason),
        },
    }
}
