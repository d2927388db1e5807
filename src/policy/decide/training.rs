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
        } else if let Some(v) = newest_in(versions, VersionPhase::Shadow, champion) {
            // Its shadow starts again: the window measured before is gone.
            ctx.status.candidate = Some(version_name(v.spec.version));
            ctx.status.shadow = Some(crate::api::ShadowStatus {
                version: version_name(v.spec.version),
                sample: ctx.spec.rollout.shadow.as_ref().map_or(1.0, |s| s.sample),
                started_at: None,
                analysis: None,
            });
        } else if let Some(v) = newest_in(versions, VersionPhase::Trained, champion) {
            ctx.status.candidate = Some(version_name(v.spec.version));
        }
    }
    if ctx.status.training.is_some() {
        return;
    }
    // A version whose status was never written (its creator's status write
    // was lost) ran nothing yet: it is taken back at the run's first stage,
    // or a Model with a data check would train on unchecked data.
    let first = ctx.spec.first_run_stage();
    let running = versions
        .iter()
        .filter_map(|v| {
            let stage = match v.status.as_ref().map(|s| s.phase) {
                None => first,
                Some(VersionPhase::CheckingData) => RunStage::CheckingData,
                Some(VersionPhase::Training) => RunStage::Training,
                Some(_) => return None,
            };
            Some((v, stage))
        })
        .max_by_key(|(v, _)| v.spec.version);
    if let Some((v, stage)) = running {
        let lineage = &v.spec.lineage;
        ctx.status.training = Some(TrainingRun {
            version: version_name(v.spec.version),
            trigger: lineage.trigger,
            reason: lineage.reason.clone(),
            stage,
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
    // The Model's status can lag its versions' (its write was lost after the
    // versions' were made, or the cache is behind): a run whose version has
    // already moved on ended in a decision that was carried out. It is closed
    // as it ended, without moving the version back to `Trained` (which would
    // wait for a gate report already recorded) or announcing it again.
    if let Some(phase) = ctx.versions.get(&n).copied().filter(|p| !p.is_running()) {
        let mut done = run.clone();
        done.outcome = Some(match phase {
            VersionPhase::Failed => "Failed (see the version's status)".into(),
            VersionPhase::DataRejected => "DataRejected (see the version's status)".into(),
            _ => "Succeeded".into(),
        });
        done.finished_at = Some(ctx.now);
        if ctx
            .status
            .last_training
            .as_ref()
            .is_none_or(|last| last.version != run.version)
        {
            ctx.status.last_training = Some(done);
        }
        ctx.status.training = None;
        if phase == VersionPhase::Trained && ctx.status.candidate.is_none() {
            ctx.status.candidate = Some(run.version.clone());
        }
        return;
    }
    if run.stage == RunStage::CheckingData {
        observe_data_check(ctx, &run, n);
        // Passed: the run goes on as a training run (its Job comes next).
        if ctx
            .status
            .training
            .as_ref()
            .is_none_or(|t| t.stage != RunStage::Training)
        {
            return;
        }
    }
    let run = ctx.status.training.clone().unwrap_or(run);
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

/// A finished data check: a passing window moves the run on to its
/// training Job; a refused one ends it before any training Job (or GPU
/// request) exists, with every failed check on the version and the Model.
fn observe_data_check(ctx: &mut Ctx, run: &TrainingRun, n: u32) {
    let Some(outcome) = ctx.obs.data_check(n).cloned() else {
        return;
    };
    let verdict = match outcome {
        DataCheckOutcome::Verdict(v) => v,
        DataCheckOutcome::JobFailed(message) => {
            let mut done = run.clone();
            done.outcome = Some(format!("Failed: data check Job failed: {message}"));
            done.finished_at = Some(ctx.now);
            ctx.status.last_training = Some(done);
            ctx.status.training = None;
            ctx.training_ended = Some(format!(
                "{}'s data check failed in this reconcile",
                run.version
            ));
            ctx.training_failed = true;
            ctx.set_phase(
                n,
                VersionPhase::Failed,
                format!("data check Job failed: {message}"),
            );
            ctx.event(
                EventKind::Warning,
                "DataCheckFailed",
                format!("{}'s data check Job failed: {message}", run.version),
            );
            return;
        }
    };
    let summary = DataCheckSummary::of(&verdict);
    ctx.actions.push(Action::RecordDataCheck {
        version: n,
        data_check: summary.clone(),
    });
    let failed: Vec<String> = verdict
        .blocking_failures()
        .map(|c| c.message.clone())
        .collect();
    if verdict.passed {
        if let Some(t) = ctx.status.training.as_mut() {
            t.stage = RunStage::Training;
        }
        ctx.set_phase(
            n,
            VersionPhase::Training,
            format!("data check {}; training Job created", summary.summary),
        );
        set_condition(
            &mut ctx.status,
            ctx.obs,
            conditions::DATA_VALID,
            ConditionStatus::True,
            "DataCheckPassed",
            &format!(
                "{}'s training window: data check {}",
                run.version, summary.summary
            ),
        );
        ctx.event(
            EventKind::Normal,
            "DataCheckPassed",
            format!(
                "{} data check {}; training starts",
                run.version, summary.summary
            ),
        );
        return;
    }
    let message = format!(
        "{}'s training window refused before training: {}",
        run.version,
        failed.join("; ")
    );
    let mut done = run.clone();
    done.outcome = Some(format!("DataRejected: {}", summary.summary));
    done.finished_at = Some(ctx.now);
    ctx.status.last_training = Some(done);
    ctx.status.training = None;
    ctx.training_ended = Some(format!(
        "{}'s data was refused in this reconcile",
        run.version
    ));
    // The evidence that started it is consumed: the next data change retries.
    ctx.training_failed = true;
    ctx.set_phase(n, VersionPhase::DataRejected, summary.summary.clone());
    set_condition(
        &mut ctx.status,
        ctx.obs,
        conditions::DATA_VALID,
        ConditionStatus::False,
        "DataRejected",
        &message,
    );
    ctx.event(
        EventKind::Warning,
        "DataRejected",
        format!("{message}; no training Job was created; the next data change retries"),
    );
}

pub(super) fn start_training(ctx: &mut Ctx, trigger: TrainingTrigger, reason: String) {
    if ctx.status.training.is_some() {
        return;
    }
    let n = ctx.status.next_version;
    ctx.status.next_version = n + 1;
    let hash = config_hash(ctx.spec);
    let stage = ctx.spec.first_run_stage();
    let phase = stage.phase();
    ctx.actions.push(Action::StartTraining {
        version: n,
        trigger,
        reason: reason.clone(),
        config_hash: hash.clone(),
        phase,
    });
    ctx.versions.insert(n, phase);
    ctx.status.training = Some(TrainingRun {
        version: version_name(n),
        trigger,
        reason: reason.clone(),
        stage,
        started_at: ctx.now,
        config_hash: hash,
        generation: ctx.obs.generation,
        outcome: None,
        finished_at: None,
    });
    if matches!(
        trigger,
        TrainingTrigger::Drift | TrainingTrigger::NewData | TrainingTrigger::EstimatedDrop
    ) {
        ctx.status.automatic_retrains.push(ctx.now);
    }
    consume_pending_triggers(ctx);
    let first = if stage == RunStage::CheckingData {
        "; checking its data first"
    } else {
        ""
    };
    ctx.event(
        EventKind::Normal,
        "TrainingStarted",
        format!("{} training started: {reason}{first}", version_name(n)),
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

/// `SourceReadable`, for Models that watch their source for new data: a
/// source the operator cannot list (a prefix that vanished, credentials the
/// store refuses) is said once, as a condition and a Warning Event, and
/// again only when the reason changes; it is never taken for new data.
pub(super) fn observe_source(ctx: &mut Ctx) {
    if !ctx.spec.retrain.as_ref().is_some_and(|r| r.on_new_data) {
        ctx.status
            .conditions
            .retain(|c| c.type_ != conditions::SOURCE_READABLE);
        return;
    }
    let before = ctx
        .status
        .condition(conditions::SOURCE_READABLE)
        .map(|c| (c.status, c.message.clone()));
    if let Some(error) = ctx.obs.source_error.clone() {
        let message = format!("cannot list {}: {error}", ctx.spec.data.source);
        set_condition(
            &mut ctx.status,
            ctx.obs,
            conditions::SOURCE_READABLE,
            ConditionStatus::False,
            "SourceUnreadable",
            &message,
        );
        if before != Some((ConditionStatus::False, message.clone())) {
            ctx.event(EventKind::Warning, "SourceUnreadable", message);
        }
    } else if ctx.obs.source_digest.is_some() {
        let flipped = set_condition(
            &mut ctx.status,
            ctx.obs,
            conditions::SOURCE_READABLE,
            ConditionStatus::True,
            "SourceListed",
            "spec.data.source lists; new files start a retrain",
        );
        if flipped && before.is_some() {
            ctx.event(
                EventKind::Normal,
                "SourceReadable",
                format!("{} can be listed again", ctx.spec.data.source),
            );
        }
    }
}

/// Picks at most one reason to train: config change or bootstrap, schedule,
/// drift, new data. Paused Models and busy Models start nothing.
pub(super) fn consider_training(ctx: &mut Ctx, drift: &DriftUpdate, estimate: &EstimateUpdate) {
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
        ctx.status.data_digest = ctx.obs.source_digest_against_last.clone();
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
    if chosen.is_none() && estimate.due {
        match automatic_blocked(ctx) {
            Some((why, until)) => {
                if blocked.is_none() && estimate.new_windows {
                    ctx.event(
                        EventKind::Normal,
                        "RetrainDeferred",
                        format!(
                            "estimated-drop retrain deferred: {}; {why}",
                            estimate.reason
                        ),
                    );
                }
                ctx.requeue_in(std_duration(until - ctx.now));
            }
            None => {
                chosen = Some((TrainingTrigger::EstimatedDrop, estimate.reason.clone()));
            }
        }
    }
    if chosen.is_none()
        && retrain.on_new_data
        && let (Some(seen), Some(now_digest)) = (
            ctx.status.data_digest.clone(),
            ctx.obs.source_digest_against_last.clone(),
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
