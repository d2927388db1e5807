//! Retrain schedules as users write them: standard 5-field cron (minute hour
//! day-of-month month day-of-week, Sunday = 0 or 7), optionally with seconds
//! first, or `@daily`-style shorthands, in an IANA time zone.
//!
//! Fields are parsed here (the `cron` crate numbers weekdays from Sunday = 1,
//! which would silently shift every Unix day-of-week); the `cron` crate then
//! walks wall-clock time, and each wall-clock slot is mapped to one instant:
//! a slot in the repeated autumn hour runs once (its first occurrence), a slot
//! in the skipped spring hour runs when the clock jumps.

use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// Why a schedule or time zone was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "schedule `{expression}`: expected 5 fields (minute hour day-of-month month day-of-week) \
         or 6 with seconds first, found {found}"
    )]
    FieldCount { expression: String, found: usize },
    #[error("schedule `{expression}`: {field} `{value}`: {reason}")]
    Field {
        expression: String,
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "schedule `{0}` restricts both day-of-month and day-of-week; classic cron would run on \
         either day, which is rarely meant: restrict only one"
    )]
    BothDayFields(String),
    #[error("schedule `{0}` never fires")]
    NeverFires(String),
    #[error("timeZone `{0}` is not an IANA time zone name; write e.g. `Europe/London` or `UTC`")]
    TimeZone(String),
}

/// A parsed retrain schedule in its time zone.
#[derive(Debug, Clone)]
pub struct RetrainSchedule {
    expression: String,
    time_zone: Tz,
    /// Wall-clock schedule in the `cron` crate's 6-field form.
    wall_clock: cron::Schedule,
}

/// Parses an IANA time zone name (`Europe/London`, `UTC`).
pub fn parse_time_zone(name: &str) -> Result<Tz, ScheduleError> {
    Tz::from_str(name).map_err(|_| ScheduleError::TimeZone(name.to_string()))
}

/// Every IANA time zone name the schedule accepts.
pub fn time_zone_names() -> impl Iterator<Item = &'static str> {
    chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())
}

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    allows_question_mark: bool,
}

const SECONDS: FieldSpec = FieldSpec {
    name: "seconds",
    min: 0,
    max: 59,
    names: &[],
    allows_question_mark: false,
};
const MINUTES: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    allows_question_mark: false,
};
const HOURS: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    allows_question_mark: false,
};
const DAYS_OF_MONTH: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    allows_question_mark: true,
};
const MONTHS: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
    allows_question_mark: false,
};
const DAYS_OF_WEEK: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    allows_question_mark: true,
};

/// The values a field selects, sorted, or why it is malformed.
fn parse_field(spec: &FieldSpec, text: &str) -> Result<Vec<u32>, String> {
    if spec.allows_question_mark && text == "?" {
        return Ok((spec.min..=spec.max).collect());
    }
    let value = |s: &str| -> Result<u32, String> {
        if let Ok(n) = s.parse::<u32>() {
            if n < spec.min || n > spec.max {
                return Err(format!("{n} is outside {}-{}", spec.min, spec.max));
            }
            return Ok(n);
        }
        let upper = s.to_ascii_uppercase();
        let first = if spec.name == "month" { 1 } else { 0 };
        spec.names
            .iter()
            .position(|n| *n == upper)
            .map(|i| i as u32 + first)
            .ok_or_else(|| format!("`{s}` is not a number in {}-{}", spec.min, spec.max))
    };
    let mut selected = Vec::new();
    for part in text.split(',') {
        if part.is_empty() {
            return Err("an item of the list is empty".into());
        }
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .map_err(|_| format!("step `{step}` is not a number"))?;
                if step == 0 {
                    return Err("step must be at least 1".into());
                }
                (range, Some(step))
            }
            None => (part, None),
        };
        let (lo, hi) = if range == "*" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a)?, value(b)?);
            if a > b {
                return Err(format!("range {a}-{b} runs backwards"));
            }
            (a, b)
        } else {
            let a = value(range)?;
            (a, if step.is_some() { spec.max } else { a })
        };
        selected.extend((lo..=hi).step_by(step.unwrap_or(1) as usize));
    }
    selected.sort_unstable();
    selected.dedup();
    Ok(selected)
}

fn join(values: &[u32], spec: &FieldSpec) -> String {
    if values.len() as u32 == spec.max - spec.min + 1 {
        "*".to_string()
    } else {
        values
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl RetrainSchedule {
    /// Parses `expression` in `time_zone` (UTC when `None`).
    pub fn parse(expression: &str, time_zone: Option<&str>) -> Result<Self, ScheduleError> {
        let time_zone = match time_zone {
            Some(name) => parse_time_zone(name)?,
            None => Tz::UTC,
        };
        let trimmed = expression.trim();
        let expanded = match trimmed {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (seconds, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            found => {
                return Err(ScheduleError::FieldCount {
                    expression: expression.to_string(),
                    found,
                });
            }
        };
        let field_error = |spec: &FieldSpec, value: &str, reason: String| ScheduleError::Field {
            expression: expression.to_string(),
            field: spec.name,
            value: value.to_string(),
            reason,
        };
        let parse = |spec: &FieldSpec, text: &str| {
            parse_field(spec, text).map_err(|r| field_error(spec, text, r))
        };
        let sec = parse(&SECONDS, seconds)?;
        let min = parse(&MINUTES, rest[0])?;
        let hour = parse(&HOURS, rest[1])?;
        let dom = parse(&DAYS_OF_MONTH, rest[2])?;
        let month = parse(&MONTHS, rest[3])?;
        let mut dow: Vec<u32> = parse(&DAYS_OF_WEEK, rest[4])?
            .into_iter()
            .map(|d| d % 7)
            .collect();
        dow.sort_unstable();
        dow.dedup();
        let restricted = |t: &str| t != "*" && t != "?";
        if restricted(rest[2]) && restricted(rest[4]) {
            return Err(ScheduleError::BothDayFields(expression.to_string()));
        }
        // The cron crate counts weekdays 1-7 from Sunday.
        let dow_text = if dow.len() == 7 {
            "*".to_string()
        } else {
            dow.iter()
                .map(|d| (d + 1).to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let six = format!(
            "{} {} {} {} {} {}",
            join(&sec, &SECONDS),
            join(&min, &MINUTES),
            join(&hour, &HOURS),
            join(&dom, &DAYS_OF_MONTH),
            join(&month, &MONTHS),
            dow_text
        );
        let wall_clock = cron::Schedule::from_str(&six).map_err(|e| ScheduleError::Field {
            expression: expression.to_string(),
            field: "expression",
            value: six.clone(),
            reason: e.to_string(),
        })?;
        let schedule = Self {
            expression: expression.to_string(),
            time_zone,
            wall_clock,
        };
        // `0 0 31 2 *` parses but never fires; say so now rather than wait forever.
        if schedule.next_after(DateTime::<Utc>::UNIX_EPOCH).is_none() {
            return Err(ScheduleError::NeverFires(expression.to_string()));
        }
        Ok(schedule)
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The schedule's time zone.
    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }

    /// The instant a wall-clock slot fires: the first occurrence of a repeated
    /// time, the end of the gap for a skipped one.
    fn instant(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self.time_zone.from_local_datetime(&local) {
            LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(earliest, _) => Some(earliest.with_timezone(&Utc)),
            LocalResult::None => {
                let mut probe = local.with_second(0)?;
                // DST gaps last at most a few hours; walk to the first wall-clock minute that exists.
                for _ in 0..(4 * 60) {
                    probe += chrono::Duration::minutes(1);
                    if let LocalResult::Single(t) = self.time_zone.from_local_datetime(&probe) {
                        return Some(t.with_timezone(&Utc));
                    }
                }
                None
            }
        }
    }

    fn local_as_utc(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        Utc.from_utc_datetime(&t.with_timezone(&self.time_zone).naive_local())
    }

    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.wall_clock
            .after(&self.local_as_utc(t))
            .take(100_000)
            .filter_map(|local| self.instant(local.naive_utc()))
            .find(|instant| *instant > t)
    }

    /// The latest slot at or before `t`.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Slots map to instants in wall-clock order, but in the second pass of
        // a repeated hour the clock is behind slots that already fired in its
        // first: start past any clock change's length.
        let just_after = self.local_as_utc(t) + chrono::Duration::hours(3);
        self.wall_clock
            .after(&just_after)
            .rev()
            .take(100_000)
            .filter_map(|local| self.instant(local.naive_utc()))
            .find(|instant| *instant <= t)
    }

    /// Slots in `(after, until]`, counted up to `cap`.
    pub fn count_between(&self, after: DateTime<Utc>, until: DateTime<Utc>, cap: usize) -> usize {
        let mut count = 0;
        let mut last = None;
        for local in self.wall_clock.after(&self.local_as_utc(after)) {
            let Some(instant) = self.instant(local.naive_utc()) else {
                continue;
            };
            if instant <= after || last == Some(instant) {
                continue;
            }
            if instant > until || count >= cap {
                break;
            }
            count += 1;
            last = Some(instant);
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap()
    }

    #[test]
    fn unix_day_of_week_numbers_mean_what_they_mean_in_crontab() {
        // Monday to Friday at 09:00 UTC; 2026-11-28 is a Saturday.
        let s = RetrainSchedule::parse("0 9 * * 1-5", None).unwrap();
        assert_eq!(
            s.next_after(utc("2026-11-27T10:00:00Z")),
            Some(utc("2026-11-30T09:00:00Z"))
        );
        let sunday = RetrainSchedule::parse("0 9 * * 7", None).unwrap();
        assert_eq!(
            sunday.next_after(utc("2026-11-27T10:00:00Z")),
            Some(utc("2026-11-29T09:00:00Z"))
        );
        let named = RetrainSchedule::parse("0 9 * * sun", None).unwrap();
        assert_eq!(
            named.next_after(utc("2026-11-27T10:00:00Z")),
            Some(utc("2026-11-29T09:00:00Z"))
        );
    }

    #[test]
    fn seconds_shorthands_and_steps() {
        let s = RetrainSchedule::parse("30 */15 * * * *", None).unwrap();
        assert_eq!(
            s.next_after(utc("2026-01-01T00:00:31Z")),
            Some(utc("2026-01-01T00:15:30Z"))
        );
        let daily = RetrainSchedule::parse("@daily", None).unwrap();
        assert_eq!(
            daily.next_after(utc("2026-01-01T00:00:00Z")),
            Some(utc("2026-01-02T00:00:00Z"))
        );
        assert_eq!(
            daily.latest_at_or_before(utc("2026-01-01T00:00:00Z")),
            Some(utc("2026-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn the_latest_slot_in_a_repeated_hour_is_the_latest_that_fired() {
        // London repeats 01:00-02:00 on 2026-10-25: at 01:10 GMT (01:10 UTC)
        // the latest slot is 01:59 BST (00:59 UTC), not 01:10 BST.
        let s = RetrainSchedule::parse("* 1 * * *", Some("Europe/London")).unwrap();
        assert_eq!(
            s.latest_at_or_before(utc("2026-10-25T01:10:00Z")),
            Some(utc("2026-10-25T00:59:00Z"))
        );
        assert_eq!(
            s.latest_at_or_before(utc("2026-10-25T00:30:00Z")),
            Some(utc("2026-10-25T00:30:00Z"))
        );
    }

    #[test]
    fn malformed_schedules_say_which_field() {
        let e = RetrainSchedule::parse("0 25 * * *", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "schedule `0 25 * * *`: hour `25`: 25 is outside 0-23"
        );
        assert!(matches!(
            RetrainSchedule::parse("0 2 * *", None),
            Err(ScheduleError::FieldCount { found: 4, .. })
        ));
        assert!(matches!(
            RetrainSchedule::parse("0 2 1 * 1", None),
            Err(ScheduleError::BothDayFields(_))
        ));
        assert!(matches!(
            RetrainSchedule::parse("0 0 31 2 *", None),
            Err(ScheduleError::NeverFires(_))
        ));
        assert_eq!(
            RetrainSchedule::parse("0 2 * * *", Some("Mars/Olympus"))
                .unwrap_err()
                .to_string(),
            "timeZone `Mars/Olympus` is not an IANA time zone name; write e.g. `Europe/London` or `UTC`"
        );
    }
}
