//! An independent cron evaluator, to check the decision core's schedule
//! decisions without calling its `RetrainSchedule`: 5-field cron (minute
//! hour day-of-month month day-of-week, Sunday = 0 or 7) in an IANA time
//! zone, evaluated by stepping UTC minute by minute. Simple, not fast.
//!
//! A slot is the UTC minute at which the wall clock first reaches a matching
//! wall-clock minute: at each UTC minute `t` the clock shows `L(t)`, and
//! every matching wall minute above the highest one shown before `t`, up to
//! `L(t)`, fires at `t`. So a slot in the hour skipped in spring fires when
//! the clock jumps past it, and a slot in the hour repeated in autumn fires
//! at its first occurrence only.

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, Timelike, Utc};
use chrono_tz::Tz;

/// A parsed 5-field expression in its time zone.
#[derive(Clone, Debug)]
pub struct Cron {
    minute: Vec<bool>,
    hour: Vec<bool>,
    day_of_month: Vec<bool>,
    month: Vec<bool>,
    /// Sunday = 0.
    day_of_week: Vec<bool>,
    /// Classic cron: when both day fields are restricted, either may match.
    either_day: bool,
    zone: Tz,
}

/// The values `text` selects in `min..=max`: `*`, `n`, `a-b`, `*/k`,
/// `a-b/k`, `n/k` and comma lists of them.
fn field(text: &str, min: u32, max: u32) -> Vec<bool> {
    let mut selected = vec![false; max as usize + 1];
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().expect("step")),
            None => (part, 1),
        };
        let (lo, hi) = match range {
            "*" => (min, max),
            r => match r.split_once('-') {
                Some((a, b)) => (a.parse().expect("from"), b.parse().expect("to")),
                None => {
                    let n: u32 = r.parse().expect("value");
                    (n, if part.contains('/') { max } else { n })
                }
            },
        };
        assert!(
            min <= lo && lo <= hi && hi <= max,
            "`{text}` outside {min}-{max}"
        );
        for v in (lo..=hi).step_by(step as usize) {
            selected[v as usize] = true;
        }
    }
    selected
}

impl Cron {
    /// Parses `expression` in `zone` (UTC when `None`); panics on anything
    /// the generators of the tests do not write.
    pub fn parse(expression: &str, zone: Option<&str>) -> Self {
        let fields: Vec<&str> = expression.split_whitespace().collect();
        assert_eq!(fields.len(), 5, "`{expression}`: 5 fields");
        let mut day_of_week = field(fields[4], 0, 7);
        // 7 is Sunday too.
        day_of_week[0] |= day_of_week[7];
        day_of_week.truncate(7);
        Self {
            minute: field(fields[0], 0, 59),
            hour: field(fields[1], 0, 23),
            day_of_month: field(fields[2], 1, 31),
            month: field(fields[3], 1, 12),
            day_of_week,
            either_day: fields[2] != "*" && fields[4] != "*",
            zone: zone.map_or(Tz::UTC, |z| z.parse().expect("IANA zone")),
        }
    }

    /// Whether the wall-clock minute `wall` matches.
    pub fn matches(&self, wall: NaiveDateTime) -> bool {
        let dom = self.day_of_month[wall.day() as usize];
        let dow = self.day_of_week[wall.weekday().num_days_from_sunday() as usize];
        let day = if self.either_day {
            dom || dow
        } else {
            dom && dow
        };
        self.minute[wall.minute() as usize]
            && self.hour[wall.hour() as usize]
            && self.month[wall.month() as usize]
            && day
    }

    fn wall(&self, t: DateTime<Utc>) -> NaiveDateTime {
        t.with_timezone(&self.zone).naive_local()
    }
}

/// The slots of one expression from a start on, found as time goes by.
#[derive(Clone, Debug)]
pub struct Slots {
    cron: Cron,
    /// Every UTC minute up to here has been stepped.
    stepped: DateTime<Utc>,
    /// The highest wall-clock minute shown so far.
    highest_wall: NaiveDateTime,
    found: Vec<DateTime<Utc>>,
}

/// `t` with its seconds dropped.
fn minute_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t - Duration::seconds(i64::from(t.second())) - Duration::nanoseconds(i64::from(t.nanosecond()))
}

impl Slots {
    /// Slots after `start` (none at or before it are reported).
    pub fn after(cron: Cron, start: DateTime<Utc>) -> Self {
        let start = minute_of(start);
        // The clock may have shown a later wall time in the last few hours (autumn).
        let highest_wall = (0..=4 * 60)
            .map(|m| cron.wall(start - Duration::minutes(m)))
            .max()
            .expect("a wall time");
        Self {
            cron,
            stepped: start,
            highest_wall,
            found: Vec::new(),
        }
    }

    fn step_to(&mut self, until: DateTime<Utc>) {
        while self.stepped < until {
            let t = self.stepped + Duration::minutes(1);
            let shown = self.cron.wall(t);
            let mut wall = self.highest_wall + Duration::minutes(1);
            let mut fires = false;
            while wall <= shown {
                fires |= self.cron.matches(wall);
                wall += Duration::minutes(1);
            }
            if fires {
                self.found.push(t);
            }
            self.highest_wall = self.highest_wall.max(shown);
            self.stepped = t;
        }
    }

    /// The latest slot in `(after, until]`.
    pub fn latest_in(
        &mut self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        self.step_to(until);
        self.found
            .iter()
            .rev()
            .find(|s| **s <= until)
            .filter(|s| **s > after)
            .copied()
    }

    /// The latest slot at or before `until` (after the start).
    pub fn latest_at_or_before(&mut self, until: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.step_to(until);
        self.found.iter().rev().find(|s| **s <= until).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn all(expr: &str, zone: Option<&str>, from: &str, to: &str) -> Vec<String> {
        let mut slots = Slots::after(Cron::parse(expr, zone), utc(from));
        slots.step_to(utc(to));
        slots.found.iter().map(|t| t.to_rfc3339()).collect()
    }

    #[test]
    fn the_evaluator_reads_cron_as_crontab_does() {
        // Weekdays at 09:00; 2026-11-28 is a Saturday, 7 is Sunday.
        assert_eq!(
            all(
                "0 9 * * 1-5",
                None,
                "2026-11-27T10:00:00Z",
                "2026-12-01T00:00:00Z"
            ),
            ["2026-11-30T09:00:00+00:00"]
        );
        assert_eq!(
            all(
                "0 9 * * 7",
                None,
                "2026-11-27T10:00:00Z",
                "2026-12-01T00:00:00Z"
            ),
            ["2026-11-29T09:00:00+00:00"]
        );
        assert_eq!(
            all(
                "*/20 1 * * *",
                None,
                "2026-01-01T00:30:00Z",
                "2026-01-01T03:00:00Z"
            ),
            [
                "2026-01-01T01:00:00+00:00",
                "2026-01-01T01:20:00+00:00",
                "2026-01-01T01:40:00+00:00"
            ]
        );
        assert_eq!(
            all(
                "5-15/5,50 3 2 * *",
                None,
                "2026-01-01T00:00:00Z",
                "2026-01-03T00:00:00Z"
            ),
            [
                "2026-01-02T03:05:00+00:00",
                "2026-01-02T03:10:00+00:00",
                "2026-01-02T03:15:00+00:00",
                "2026-01-02T03:50:00+00:00"
            ]
        );
    }

    #[test]
    fn skipped_wall_times_fire_at_the_jump_and_repeated_ones_once() {
        // London springs from 01:00 to 02:00 on 2026-03-29 (01:00 UTC).
        assert_eq!(
            all(
                "30 1 * * *",
                Some("Europe/London"),
                "2026-03-28T12:00:00Z",
                "2026-03-30T12:00:00Z"
            ),
            ["2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00"]
        );
        // ... and falls from 02:00 BST back to 01:00 on 2026-10-25 (01:00 UTC).
        assert_eq!(
            all(
                "30 1 * * *",
                Some("Europe/London"),
                "2026-10-24T12:00:00Z",
                "2026-10-26T12:00:00Z"
            ),
            ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]
        );
        // Lord Howe moves by half an hour: 02:00 becomes 02:30 on 2026-10-04
        // (15:30 UTC the day before), and 02:15 fires at the jump.
        assert_eq!(
            all(
                "15 2 * * *",
                Some("Australia/Lord_Howe"),
                "2026-10-03T00:00:00Z",
                "2026-10-04T12:00:00Z"
            ),
            ["2026-10-03T15:30:00+00:00"]
        );
    }
}
