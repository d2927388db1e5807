//! The status a decision ends with: retention of old versions, the phase,
//! the conditions and the traffic summary.

use super::*;

/// Keeps the newest `retainSuperseded` superseded versions and the newest
/// `retainFailed` rejected, rolled-back or failed ones; deletes the rest.
pub(super) fn retention(ctx: &mut Ctx) {
    let keep_superseded = ctx.spec.rollout.retain_superseded as usize;
    let keep_failed = ctx.spec.rollout.retain_failed as usize;
    let protected = [ctx.champion(), ctx.candidate(), ctx.training()];
    let superseded: Vec<u32> = ctx
        .versions
        .iter()
        .rev()
        .filter(|(v, p)| **p == VersionPhase::Superseded && !protected.contains(&Some(**v)))
        .map(|(v, _)| *v)
        .collect();
    let failed: Vec<u32> = ctx
        .versions
        .iter()
        .rev()
        .filter(|(v, p)| {
            matches!(
                p,
                VersionPhase::Rejected | VersionPhase::RolledBack | VersionPhase::Failed
            ) && !protected.contains(&Some(**v))
        })
        .map(|(v, _)| *v)
        .collect();
    for v in superseded.iter().skip(keep_superseded) {
        ctx.actions.push(Action::DeleteVersion {
            version: *v,
            reason: format!("retention: keeping the newest {keep_superseded} superseded versions"),
        });
    }
    for v in failed.iter().skip(keep_failed) {
        ctx.actions.push(Action::DeleteVersion {
            version: *v,
            reason: format!("retention: keeping the newest {keep_failed} rejected, rolled-back or failed versions"),
        });
    }
    for v in superseded
        .iter()
        .skip(keep_superseded)
        .chain(failed.iter().skip(keep_failed))
    {
        ctx.versions.remove(v);
    }
}

/// Phase, conditions and the traffic summary, from the state decided above.
pub(super) fn finish(mut ctx: Ctx) -> Decision {
    let s = &mut ctx.status;
    let obs = ctx.obs;
    let last_failed = s
        .last_training
        .as_ref()
        .and_then(|t| t.outcome.as_deref())
        .is_some_and(|o| o.starts_with("Failed"));
    s.phase = if ctx.spec.paused {
        ModelPhase::Paused
    } else if s.shadow.is_some() {
        ModelPhase::Shadow
    } else if s.canary.is_some() {
        ModelPhase::Canary
    } else if s.training.is_some() {
        ModelPhase::Training
    } else if s.candidate.is_some() {
        ModelPhase::Gating
    } else if s.champion.is_some() {
        ModelPhase::Serving
    } else if last_failed {
        ModelPhase::Failed
    } else {
        ModelPhase::Pending
    };

    let summary = s
        .traffic
        .iter()
        .map(|t| format!("{}:{}", t.version, t.weight))
        .collect::<Vec<_>>()
        .join(" ");
    s.traffic_summary = (!summary.is_empty()).then_some(summary.clone());

    // Ready means servable: `kubectl wait --for=condition=Ready` is followed
    // by a request through the gateway's Service, so the champion's pods and
    // the gateway's must be ready first, not only the decision made.
    let champion_ready = s
        .champion
        .as_deref()
        .and_then(version_number)
        .is_some_and(|n| obs.ready_versions.contains(&n));
    match &s.champion {
        Some(c) if champion_ready && obs.gateway_ready => {
            let msg = format!("{c} is champion; traffic {summary}");
            set_condition(
                s,
                obs,
                conditions::READY,
                ConditionStatus::True,
                "ChampionServing",
                &msg,
            )
        }
        Some(c) => {
            let waiting = match (champion_ready, obs.gateway_ready) {
                (false, false) => "its pods and the gateway's",
                (false, true) => "its pods",
                _ => "the gateway's pods",
            };
            let msg = format!("{c} is champion; waiting for {waiting} to be ready");
            set_condition(
                s,
                obs,
                conditions::READY,
                ConditionStatus::False,
                "ChampionStarting",
                &msg,
            )
        }
        None => set_condition(
            s,
            obs,
            conditions::READY,
            ConditionStatus::False,
            "NoChampion",
            "no version has passed the gate yet",
        ),
    };
    match (&s.training, &s.last_training) {
        (Some(t), _) => {
            let msg = format!(
                "{} training since {}: {}",
                t.version,
                t.started_at.to_rfc3339(),
                t.reason
            );
            set_condition(
                s,
                obs,
                conditions::TRAINING,
                ConditionStatus::True,
                "TrainingRunning",
                &msg,
            )
        }
        (None, Some(t)) if last_failed => {
            let msg = format!("{} {}", t.version, t.outcome.as_deref().unwrap_or_default());
            set_condition(
                s,
                obs,
                conditions::TRAINING,
                ConditionStatus::False,
                "TrainingFailed",
                &msg,
            )
        }
        _ => set_condition(
            s,
            obs,
            conditions::TRAINING,
            ConditionStatus::False,
            "Idle",
            "no training running",
        ),
    };
    // A training pod no node can take (a GPU request on a cluster without
    // GPUs, a nodeSelector nothing matches) is Pending for good, not slow:
    // say so with the scheduler's own words, and again once it is placed.
    let unschedulable = s.training.as_ref().and_then(|t| {
        let n = version_number(&t.version)?;
        Some((t.version.clone(), obs.unschedulable(n)?.to_string()))
    });
    let was_unschedulable = s
        .condition(conditions::TRAINING_UNSCHEDULABLE)
        .is_some_and(|c| c.status == ConditionStatus::True);
    let mut scheduling_event = None;
    match unschedulable {
        Some((version, why)) => {
            let msg = format!("{version}'s training pod cannot be scheduled: {why}");
            if set_condition(
                s,
                obs,
                conditions::TRAINING_UNSCHEDULABLE,
                ConditionStatus::True,
                "Unschedulable",
                &msg,
            ) {
                scheduling_event =
                    Some((EventKind::Warning, conditions::TRAINING_UNSCHEDULABLE, msg));
            }
        }
        None if was_unschedulable => {
            let msg = match &s.training {
                Some(t) => format!("{}'s training pod was scheduled", t.version),
                None => "no training waits for a node".to_string(),
            };
            set_condition(
                s,
                obs,
                conditions::TRAINING_UNSCHEDULABLE,
                ConditionStatus::False,
                "Scheduled",
                &msg,
            );
            scheduling_event = Some((EventKind::Normal, "TrainingScheduled", msg));
        }
        None => {}
    }
    match s.canary.clone() {
        _ if s.shadow.is_some() => {
            let msg = match s.shadow.as_ref() {
                Some(sh) if sh.started_at.is_some() => format!(
                    "{} in shadow, answering {:.0} % of live requests no user sees; {}",
                    sh.version,
                    sh.sample * 100.0,
                    sh.analysis
                        .as_ref()
                        .map_or("no verdict read yet".to_string(), |a| a.message.clone())
                ),
                Some(sh) => format!(
                    "{} in shadow waits for its Deployment to be ready; nothing mirrored yet",
                    sh.version
                ),
                None => String::new(),
            };
            set_condition(
                s,
                obs,
                conditions::PROGRESSING,
                ConditionStatus::True,
                "ShadowInProgress",
                &msg,
            )
        }
        Some(c) if c.awaiting_promotion => {
            let msg = format!(
                "{} passed every step; waiting for `driftline promote`",
                c.version
            );
            set_condition(
                s,
                obs,
                conditions::PROGRESSING,
                ConditionStatus::True,
                "AwaitingPromotion",
                &msg,
            )
        }
        Some(c) => {
            let steps = ctx.spec.rollout.steps.len();
            let weight = ctx
                .spec
                .rollout
                .steps
                .get(c.step as usize)
                .map_or(0, |st| st.weight);
            let msg = match c.step_started_at {
                Some(_) => format!(
                    "{} canary at {weight} % (step {}/{steps}), failed analyses {}/{}",
                    c.version,
                    c.step + 1,
                    c.failures,
                    ctx.spec.rollout.analysis.failure_limit
                ),
                None => format!(
                    "{} canary waits for its Deployment to be ready; stable keeps 100 %",
                    c.version
                ),
            };
            set_condition(
                s,
                obs,
                conditions::PROGRESSING,
                ConditionStatus::True,
                "CanaryInProgress",
                &msg,
            )
        }
        None => {
            // The newest version rolled back and nothing newer has started:
            // said apart from a plain idle state (Argo CD shows it Degraded).
            // So is a newest version its shadow stage refused: live evidence
            // refused it before any user saw it, and nothing retries it.
            let newest = ctx.versions.iter().next_back();
            let rolled_back = newest
                .filter(|(_, p)| **p == VersionPhase::RolledBack)
                .map(|(n, _)| *n);
            let shadow_failed = newest
                .filter(|(n, p)| **p == VersionPhase::Rejected && ctx.shadow_failed.contains(n))
                .map(|(n, _)| *n);
            match (rolled_back, shadow_failed, &s.champion) {
                (Some(n), _, Some(c)) => {
                    let msg = format!("{} rolled back; {c} keeps {summary}", version_name(n));
                    set_condition(
                        s,
                        obs,
                        conditions::PROGRESSING,
                        ConditionStatus::False,
                        ROLLED_BACK,
                        &msg,
                    )
                }
                (_, Some(n), Some(c)) => {
                    let msg = format!(
                        "{} failed its shadow stage before any user saw it; {c} keeps {summary}",
                        version_name(n)
                    );
                    set_condition(
                        s,
                        obs,
                        conditions::PROGRESSING,
                        ConditionStatus::False,
                        SHADOW_FAILED,
                        &msg,
                    )
                }
                _ => set_condition(
                    s,
                    obs,
                    conditions::PROGRESSING,
                    ConditionStatus::False,
                    "NoRollout",
                    "no canary in progress",
                ),
            }
        }
    };
    if let Some((kind, reason, message)) = scheduling_event {
        ctx.actions.push(Action::RecordEvent {
            kind,
            reason: reason.into(),
            message,
        });
    }
    let s = &mut ctx.status;
    let seen_before = s.condition(conditions::PAUSED).is_some();
    let flipped = if ctx.spec.paused {
        set_condition(
            s,
            obs,
            conditions::PAUSED,
            ConditionStatus::True,
            "PausedBySpec",
            "spec.paused is true: no training or rollout steps start",
        )
    } else {
        set_condition(
            s,
            obs,
            conditions::PAUSED,
            ConditionStatus::False,
            "Active",
            "spec.paused is false",
        )
    };
    if flipped && (seen_before || ctx.spec.paused) {
        let (reason, message) = if ctx.spec.paused {
            (
                "Paused",
                "spec.paused set: no new training, canary weights held",
            )
        } else {
            (
                "Resumed",
                "spec.paused cleared: training triggers and canary steps resume",
            )
        };
        ctx.actions.push(Action::RecordEvent {
            kind: EventKind::Normal,
            reason: reason.into(),
            message: message.into(),
        });
    }
    kstatus_conditions(&mut ctx);
    Decision {
        actions: ctx.actions,
        status: ctx.status,
        requeue_after: ctx.requeue,
    }
}

/// `Reconciling` and `Stalled` with the meanings kstatus gives them, so
/// that Flux, kpt and Argo CD (through `charts/driftline/health/model.lua`)
/// read a Model's state without knowing driftline: one of them is `True`
/// while the Model is not settled, neither once it is.
fn kstatus_conditions(ctx: &mut Ctx) {
    let obs = ctx.obs;
    let s = &ctx.status;
    let is_true = |type_: &str| {
        s.condition(type_)
            .is_some_and(|c| c.status == ConditionStatus::True)
    };
    let is_false = |type_: &str| {
        s.condition(type_)
            .is_some_and(|c| c.status == ConditionStatus::False)
    };
    let message_of = |type_: &str| {
        s.condition(type_)
            .map(|c| c.message.clone())
            .unwrap_or_default()
    };
    let stalled: Option<(&str, String)> = if is_false(conditions::SPEC_VALID) {
        Some(("InvalidSpec", message_of(conditions::SPEC_VALID)))
    } else if is_true(conditions::TRAINING_UNSCHEDULABLE) {
        Some((
            "TrainingUnschedulable",
            message_of(conditions::TRAINING_UNSCHEDULABLE),
        ))
    } else if s.phase == ModelPhase::Failed {
        Some((
            "NoChampion",
            format!(
                "no champion and the last training failed: {}",
                message_of(conditions::TRAINING)
            ),
        ))
    } else if let Some(reason) = s.condition(conditions::PROGRESSING).and_then(|c| {
        [ROLLED_BACK, SHADOW_FAILED]
            .into_iter()
            .find(|r| *r == c.reason)
    }) {
        // Live evidence refused the newest version (in its canary, or in
        // its shadow before any user saw it); the loop will not try it
        // again, so the spec's goal waits for new data or a person (Argo
        // Rollouts likewise shows an aborted rollout Degraded until a new
        // revision).
        Some((reason, message_of(conditions::PROGRESSING)))
    } else if s.champion.is_none() && s.training.is_none() && is_false(conditions::DATA_VALID) {
        Some((
            "DataRejected",
            format!(
                "no champion and the data check refused the window: {}",
                message_of(conditions::DATA_VALID)
            ),
        ))
    } else {
        None
    };
    let reconciling: Option<(&str, String)> = if stalled.is_some() || ctx.spec.paused {
        None
    } else if let Some(c) = &s.canary {
        let reason = if c.awaiting_promotion {
            "AwaitingPromotion"
        } else {
            "CanaryInProgress"
        };
        Some((reason, message_of(conditions::PROGRESSING)))
    } else if let Some(sh) = &s.shadow {
        Some((
            "Shadow",
            format!(
                "{} answers mirrored requests beside the champion; no user sees it yet",
                sh.version
            ),
        ))
    } else if let Some(t) = &s.training {
        Some((
            "Training",
            format!("{} is training: {}", t.version, t.reason),
        ))
    } else if let Some(c) = &s.candidate {
        Some(("Gating", format!("{c} is being evaluated against the gate")))
    } else if is_false(conditions::READY) {
        Some(("Starting", message_of(conditions::READY)))
    } else {
        None
    };
    let s = &mut ctx.status;
    match stalled {
        Some((reason, message)) => set_condition(
            s,
            obs,
            conditions::STALLED,
            ConditionStatus::True,
            reason,
            &message,
        ),
        None => set_condition(
            s,
            obs,
            conditions::STALLED,
            ConditionStatus::False,
            "Progressing",
            "nothing needs a person",
        ),
    };
    match reconciling {
        Some((reason, message)) => set_condition(
            s,
            obs,
            conditions::RECONCILING,
            ConditionStatus::True,
            reason,
            &message,
        ),
        None => set_condition(
            s,
            obs,
            conditions::RECONCILING,
            ConditionStatus::False,
            if ctx.spec.paused { "Paused" } else { "Settled" },
            "the Model is where its spec and its evidence put it",
        ),
    };
}
