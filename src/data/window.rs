//! `data.window`: which times a training run reads, counted back from its
//! start, and which of them it holds out. Pure: the start is an argument.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::api::{DataWindow, SpecDuration};

use super::error::DataError;

/// The span of one run's window: rows with `start < time <= end`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowBounds {
    /// The column holding each row's time.
    pub column: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The newest span held out for validation, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout_seconds: Option<i64>,
}

impl WindowBounds {
    /// The window of `spec` for a run started at `as_of`.
    pub fn of(spec: &DataWindow, source: &str, as_of: DateTime<Utc>) -> Result<Self, DataError> {
        let span = |field: &str, d: &SpecDuration| {
            TimeDelta::from_std(d.get()).map_err(|_| DataError::Source {
                source_uri: source.into(),
                reason: format!("data.window.{field} `{d}` is too long"),
            })
        };
        let last = span("last", &spec.last)?;
        let holdout = spec
            .holdout
            .as_ref()
            .map(|h| span("holdout", h))
            .transpose()?;
        Ok(WindowBounds {
            column: spec.column.clone(),
            start: as_of - last,
            end: as_of,
            holdout_seconds: holdout.map(|h| h.num_seconds()),
        })
    }

    /// Whether a row of this time is in the window.
    pub fn contains(&self, time: DateTime<Utc>) -> bool {
        self.start < time && time <= self.end
    }

    /// Whether any time of the UTC day `day` is in the window: a partition
    /// of that day may hold rows the run reads.
    pub fn touches_day(&self, day: NaiveDate) -> bool {
        let Some(from) = day.and_hms_opt(0, 0, 0).map(|t| t.and_utc()) else {
            return false;
        };
        let to = from + TimeDelta::days(1);
        from <= self.end && to > self.start
    }

    /// The time after which rows are held out, given the newest time in
    /// the window: the holdout is the newest `holdout` of it (a row is
    /// held out when `newest - holdout < time`); `None` without a holdout.
    pub fn holdout_after(&self, newest: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.holdout_seconds.map(|s| newest - TimeDelta::seconds(s))
    }

    /// `(start, end]` in RFC 3339, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} in ({}, {}]",
            self.column,
            self.start.to_rfc3339(),
            self.end.to_rfc3339()
        )
    }
}

/// A time written as RFC 3339 (`2026-12-01T10:00:00Z`), as a naive date
/// and time (`2026-12-01 10:00:00`, `2026-12-01T10:00:00`, read as UTC) or
/// as a date (`2026-12-01`, its midnight UTC).
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc());
        }
    }
    parse_day(text)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// A date written `YYYY-MM-DD`: the value of a daily partition key.
pub fn parse_day(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        parse_time(text).unwrap()
    }

    fn window(last: &str, holdout: Option<&str>) -> WindowBounds {
        let spec = DataWindow {
            column: "event_time".into(),
            last: last.parse().unwrap(),
            holdout: holdout.map(|h| h.parse().unwrap()),
        };
        WindowBounds::of(&spec, "s3://b/events/", at("2026-12-03T12:00:00Z")).unwrap()
    }

    #[test]
    fn times_parse_from_rfc3339_naive_text_and_dates_as_utc() {
        assert_eq!(
            parse_time("2026-12-01T10:00:00+02:00"),
            Some(at("2026-12-01T08:00:00Z"))
        );
        assert_eq!(
            parse_time("2026-12-01 08:00:00.5"),
            Some(at("2026-12-01T08:00:00.5Z"))
        );
        assert_eq!(parse_time("2026-12-01"), Some(at("2026-12-01T00:00:00Z")));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("1733000000"), None);
    }

    #[test]
    fn a_window_counts_back_from_the_run_start_and_excludes_its_lower_edge() {
        let w = window("2d", None);
        assert!(
            !w.contains(at("2026-12-01T12:00:00Z")),
            "exactly `last` ago"
        );
        assert!(w.contains(at("2026-12-01T12:00:01Z")));
        assert!(w.contains(at("2026-12-03T12:00:00Z")), "the run's start");
        assert!(!w.contains(at("2026-12-03T12:00:01Z")), "rows from later");
    }

    #[test]
    fn days_outside_the_window_are_not_touched_and_the_edge_days_are() {
        let w = window("2d", None);
        let day = |d: &str| parse_day(d).unwrap();
        assert!(!w.touches_day(day("2026-11-30")));
        assert!(w.touches_day(day("2026-12-01")), "partly covered");
        assert!(w.touches_day(day("2026-12-02")));
        assert!(w.touches_day(day("2026-12-03")), "the run's own day");
        assert!(!w.touches_day(day("2026-12-04")));
    }

    #[test]
    fn the_holdout_is_the_newest_span_before_the_newest_row() {
        let w = window("30d", Some("1d"));
        let newest = at("2026-12-02T23:00:00Z");
        let held_out = |w: &WindowBounds, time| w.holdout_after(newest).is_some_and(|a| time > a);
        assert!(held_out(&w, at("2026-12-02T00:00:00Z")));
        assert!(
            !held_out(&w, at("2026-12-01T23:00:00Z")),
            "exactly 1d before"
        );
        assert!(!held_out(&window("30d", None), newest));
    }
}
