//! Training: when a run starts (schedule, drift, new data, spec change,
//! first version), what blocks an automatic one (cooldown, `maxPerDay`, a
//! failed run without new evidence), and what a finished Job means.

use super::*;

/// Versions that status does not know of (status lost or restored from a
/// backup) are taken back from their phases: the champion keeps serving, a
/// canary restarts from its first step, a training run is finished, not
/// duplicated.
pub(super) fn adopt_orphaned_training(ctx: &mut Ctx, versions: &[ModelVersion]) {
    if ctx.status.champion.is_none()
        && let Some(v) = newest_in(versions, VersionPhase::Champion, 0)
    {
        let n = v.spec.version;
        ctx.status.champion = Some(version_name(n));
        if ctx.status.traffic.is_empty() {
            ctx.status.traffic = only(n);
        }
    }
    // Only versions newer than the champion can be its candidate: a cache that
    // still shows the champion as Trained (its phase write not yet seen) must
    // not make it a candidate of itself.
    let champion = ctx.champion().unwrap_or(0);
    if ctx.status.candidate.is_some() && ctx.candidate() == ctx.champion() {
        ctx.status.candidate = None;
    }
    if ctx.status.candidate.is_none() && ctx.status.champion.is_some() {
        if let Some(v) = newest_in(versions, VersionPhase::Canary, champion) {
            ctx.status.candidate = Some(version_name(v.spec.version));
            ctx.status.canary = Some(CanaryStatus {
                version: version_name(v.spec.version),
                step: 0,
                step_started_at: None,
                failures: 0,
                awaiting_promotion: false,
                analyses: Vec::new(),
            });
        } else if let Some(v) = newest_in(versions, VersionPhase::Trained, champion) {
            ctx.status.candidate = Some(version_name(v.spec.version));
        }
    }
    if ctx.status.training.is_some() {
        return;
    }
    if let Some(v) = newest_in(versions, VersionPhase::Training, 0) {
        let lineage = &v.spec.lineage;
        ctx.status.training = Some(TrainingRun {
            version: version_name(v.spec.version),
            trigger: lineage.trigger,
            reason: lineage.reason.clone(),
            started_at: v
                .metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| DateTime::from_timestamp(t.0.as_second(), 0))
                .unwrap_or(ctx.now),
            config_hash: lineage.config_hash.clone(),
            generation: None,
            outcome: None,
            finished_at: None,
        });
    }
}

/// A finished training Job: its version becomes the candidate, or failed.
pub(super) fn observe_training(ctx: &mut Ctx) {
    let Some(run) = ctx.status.training.clone() else {
        return;
    };
    let Some(n) = version_number(&run.version) else {
        ctx.status.training = None;
        return;
    };
    match ctx.obs.job(n) {
        Some(JobState::Succeeded) => {
            let mut done = run.clone();
            done.outcome = Some("Succeeded".into());
            done.finished_at = Some(ctx.now);
            ctx.status.last_training = Some(done);
            ctx.status.training = None;
            ctx.training_ended = Some(format!(
                "{} finished training in this reconcile",
                run.version
            ));
            ctx.status.candidate = Some(run.version.clone());
            ctx.set_phase(
                n,
                VersionPhase::Trained,
                format!(
                    "training Job succeeded after {}",
                    human(ctx.now - run.started_at)
                ),
            );
            let next = if ctx.spec.gate.is_some() {
                "evaluating it against the gate"
            } else {
                "no gate configured"
            };
            ctx.event(
                EventKind::Normal,
                "TrainingSucceeded",
                format!("{} trained ({}); {next}", run.version, run.reason),
            );
        }
        Some(JobState::Failed { message }) => {
            let mut done = run.clone();
            done.outcome = Some(format!("Failed: {message}"));
            done.finished_at = Some(ctx.now);
            ctx.status.last_training = Some(done);
            ctx.status.training = None;
            ctx.training_ended = Some(format!("{} failed in this reconcile", run.version));
            ctx.training_failed = true;
            ctx.set_phase(
                n,
                VersionPhase::Failed,
                format!("training Job failed: {message}"),
            );
            ctx.event(
                EventKind::Warning,
                "TrainingFailed",
                format!(
                    "{} training failed: {message}; automatic retraining waits for new evidence \
                     (fresh drift windows, the next schedule slot, changed data or spec) or a manual retrain",
                    run.version
                ),
            );
        }
        _ => {}
    }
}

pub(super) fn start_training(ctx: &mut Ctx, trigger: TrainingTrigger, reason: String) {
    if ctx.status.training.is_some() {
        return;
    }
    let n = ctx.status.next_version;
    ctx.status.next_version = n + 1;
    let hash = config_hash(ctx.spec);
    ctx.actions.push(Action::StartTraining {
        version: n,
        trigger,
        reason: reason.clone(),
        config_hash: hash.clone(),
    });
    ctx.versions.insert(n, VersionPhase::Training);
    ctx.status.training = Some(TrainingRun {
        version: version_name(n),
        trigger,
        reason: reason.clone(),
        started_at: ctx.now,
        config_hash: hash,
        generation: ctx.obs.generation,
        outcome: None,
        finished_at: None,
    });
    if matches!(trigger, TrainingTrigger::Drift | TrainingTrigger::NewData) {
        ctx.status.automatic_retrains.push(ctx.now);
    }
    consume_pending_triggers(ctx);
    ctx.event(
        EventKind::Normal,
        "TrainingStarted",
        format!("{} training started: {reason}", version_name(n)),
    );
}

/// Outcome of the schedule for this decision.
pub(super) enum ScheduleDue {
    /// Nothing due; the next slot, if any.
    NotDue,
    /// Slot `slot` is due, with `missed` slots since the last one acted on.
    Due {
        slot: DateTime<Utc>,
        missed: usize,
        late: bool,
    },
}

pub(super) fn schedule_due(ctx: &mut Ctx, schedule: &RetrainSchedule) -> ScheduleDue {
    let anchor = match ctx.status.last_schedule_slot {
        Some(a) => a,
        None => {
            // First sight: slots before the Model existed are not missed runs.
            ctx.status.last_schedule_slot = Some(ctx.now);
            ctx.now
        }
    };
    match schedule.latest_at_or_before(ctx.now) {
        Some(latest) if latest > anchor => {
            let missed = schedule.count_between(anchor, ctx.now, MISSED_SLOT_CAP);
            let late = ctx.now - latest > chrono_duration(SCHEDULE_GRACE);
            ScheduleDue::Due {
                slot: latest,
                missed,
                late,
            }
        }
        _ => ScheduleDue::NotDue,
    }
}

/// Why an automatic (drift or new-data) retrain may not start now, and until when.
pub(super) fn automatic_blocked(ctx: &mut Ctx) -> Option<(String, DateTime<Utc>)> {
    let day = chrono::Duration::hours(24);
    let now = ctx.now;
    ctx.status.automatic_retrains.retain(|t| now - *t < day);
    let retrain = ctx.spec.retrain.as_ref()?;
    if let Some(cooldown) = retrain.cooldown.as_ref().map(|c| c.get()) {
        let last = [
            ctx.status.last_training.as_ref().map(|t| t.started_at),
            ctx.status.automatic_retrains.last().copied(),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(last) = last {
            let until = last + chrono_duration(cooldown);
            if now < until {
                return Some((
                    format!(
                        "cooldown {}: last training started {} ago; next allowed at {}",
                        retrain
                            .cooldown
                            .as_ref()
                            .map(|c| c.as_str())
                            .unwrap_or_default(),
                        human(now - last),
                        until.to_rfc3339()
                    ),
                    until,
                ));
            }
        }
    }
    if let Some(max) = retrain.max_per_day {
        let count = ctx.status.automatic_retrains.len() as u32;
        if count >= max {
            let until = ctx
                .status
                .automatic_retrains
                .first()
                .map_or(now, |t| *t + day);
            return Some((
                format!(
                    "maxPerDay {max} reached: {count} drift/data retrains in the last 24h; next allowed at {}",
                    until.to_rfc3339()
                ),
                until,
            ));
        }
    }
    None
}

/// Marks the automatic evidence pending now as acted on: drift windows
/// counted so far, schedule slots already due and the data digest now seen.
/// A run that starts uses the latest data, so it stands for all of them. A
/// run that fails consumes them too: otherwise a run that fails for a reason
/// retraining cannot fix (OOMKilled, a broken image) would be restarted back
/// to back for as long as drift lasts. Fresh drift windows, the next schedule
/// slot, changed data or spec, and manual retrains still start a run;
/// cooldown and `maxPerDay` apply as always.
pub(super) fn consume_pending_triggers(ctx: &mut Ctx) {
    if let Some(summary) = ctx.status.drift.as_mut() {
        summary.consecutive_windows = 0;
    }
    if let Some(schedule) = ctx.spec.retrain.as_ref().and_then(|r| r.parsed_schedule())
        && let Some(latest) = schedule.latest_at_or_before(ctx.now)
    {
        let slot = ctx
            .status
            .last_schedule_slot
            .map_or(latest, |s| s.max(latest));
        ctx.status.last_schedule_slot = Some(slot);
    }
    if let Some(digest) = &ctx.obs.source_digest {
        ctx.status.data_digest = Some(digest.clone());
    }
}

/// Picks at most one reason to train: config change or bootstrap, schedule,
/// drift, new data. Paused Models and busy Models start nothing.
pub(super) fn consider_training(ctx: &mut Ctx, drift: &DriftUpdate) {
    let retrain = ctx.spec.retrain.clone().unwrap_or_default();
    let schedule = retrain.parsed_schedule();
    let due = match &schedule {
        Some(s) => schedule_due(ctx, s),
        None => ScheduleDue::NotDue,
    };
    if ctx.status.data_digest.is_none()
        && ctx.status.training.is_none()
        && ctx.status.last_training.is_some()
    {
        ctx.status.data_digest = ctx.obs.source_digest.clone();
    }

    let blocked = if ctx.spec.paused {
        Some("the Model is paused (spec.paused)".to_string())
    } else {
        ctx.busy().or_else(|| ctx.training_ended.clone())
    };
    let hash = config_hash(ctx.spec);
    let mut chosen: Option<(TrainingTrigger, String)> = None;

    if ctx.champion().is_none() && ctx.status.last_training.is_none() && ctx.versions.is_empty() {
        chosen = Some((
            TrainingTrigger::Initial,
            "first version of the Model".into(),
        ));
    } else if let Some(last) = ctx
        .status
        .last_training
        .as_ref()
        .filter(|t| t.config_hash != hash)
    {
        chosen = Some((
            TrainingTrigger::ConfigChanged,
            format!(
                "data, architecture or training settings changed (config {} -> {hash})",
                last.config_hash
            ),
        ));
    }
    if chosen.is_none()
        && let ScheduleDue::Due { slot, missed, late } = due
    {
        let tz = schedule
            .as_ref()
            .map_or(chrono_tz::Tz::UTC, |s| s.time_zone());
        let local = slot.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z");
        let expr = retrain.schedule.as_deref().unwrap_or_default();
        if late && retrain.missed_runs == MissedRunPolicy::Skip && blocked.is_none() {
            ctx.status.last_schedule_slot = Some(slot);
            ctx.event(
                EventKind::Normal,
                "ScheduledRunSkipped",
                format!(
                    "{missed} slot(s) of schedule \"{expr}\" missed (latest {local}, {} late); missedRuns: Skip waits for the next slot",
                    human(ctx.now - slot)
                ),
            );
        } else {
            let note = if missed > 1 {
                format!("; {missed} slots missed, missedRuns: RunLatest starts one run")
            } else if late {
                format!("; {} late", human(ctx.now - slot))
            } else {
                String::new()
            };
            chosen = Some((
                TrainingTrigger::Schedule,
                format!("schedule \"{expr}\" slot {local}{note}"),
            ));
        }
    }
    if chosen.is_none() && retrain.on_drift && drift.due {
        match automatic_blocked(ctx) {
            Some((why, until)) => {
                if blocked.is_none() && drift.new_windows {
                    ctx.event(
                        EventKind::Normal,
                        "RetrainDeferred",
                        format!("drift retrain deferred: {}; {why}", drift.reason),
                    );
                }
                ctx.requeue_in(std_duration(until - ctx.now));
            }
            None => chosen = Some((TrainingTrigger::Drift, drift.reason.clone())),
        }
    }
    if chosen.is_none()
        && retrain.on_new_data
        && let (Some(seen), Some(now_digest)) = (
            ctx.status.data_digest.clone(),
            ctx.obs.source_digest.clone(),
        )
        && seen != now_digest
    {
        match automatic_blocked(ctx) {
            Some((why, until)) => {
                if blocked.is_none() {
                    ctx.event(
                        EventKind::Normal,
                        "RetrainDeferred",
                        format!("new-data retrain deferred: {why}"),
                    );
                }
                ctx.requeue_in(std_duration(until - ctx.now));
            }
            None => {
                let short = |d: &str| d.chars().take(12).collect::<String>();
                chosen = Some((
                    TrainingTrigger::NewData,
                    format!(
                        "data source changed (digest {} -> {})",
                        short(&seen),
                        short(&now_digest)
                    ),
                ));
            }
        }
    }

    if let Some((trigger, reason)) = chosen {
        match blocked {
            Some(why) => {
                let at = ctx.now;
                ctx.status.next_training = Some(NextTraining {
                    at,
                    reason: format!("{reason}; waiting: {why}"),
                });
                ctx.requeue_in(POLL);
                return;
            }
            None => {
                if let ScheduleDue::Due { slot, .. } = due {
                    ctx.status.last_schedule_slot = Some(slot);
                }
                start_training(ctx, trigger, reason);
            }
        }
    }

    ctx.status.next_training = schedule.as_ref().and_then(|s| {
        let after = ctx
            .status
            .last_schedule_slot
            .unwrap_or(ctx.now)
            .max(ctx.now);
        s.next_after(after).map(|at| NextTraining {
            at,
            reason: format!(
                "schedule \"{}\" in {}",
                s.expression(),
                retrain.time_zone.as_deref().unwrap_or("UTC")
            ),
        })
    });
    if let Some(next) = &ctx.status.next_training {
        let wait = std_duration(next.at - ctx.now);
        ctx.requeue_in(wait);
    }
}
