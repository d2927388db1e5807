//! The operator's sense of time. Production reads the wall clock; tests and
//! demos run it faster (`--time-scale 60`: a 10-minute canary pause passes in
//! 10 s) or jump it ahead, so schedules, pauses and cooldowns play out in
//! seconds through the same code path.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// Wall-clock time, optionally scaled and shifted.
#[derive(Debug)]
pub struct Clock {
    scale: f64,
    origin_real: Instant,
    origin: DateTime<Utc>,
    /// Jumps added by [`Clock::advance`].
    offset: Mutex<chrono::Duration>,
}

impl Default for Clock {
    fn default() -> Self {
        Self::scaled(1.0)
    }
}

impl Clock {
    /// The wall clock, running `scale` times as fast from now on.
    pub fn scaled(scale: f64) -> Self {
        let scale = if scale.is_finite() && scale > 0.0 {
            scale
        } else {
            1.0
        };
        Self {
            scale,
            origin_real: Instant::now(),
            origin: Utc::now(),
            offset: Mutex::new(chrono::Duration::zero()),
        }
    }

    /// How many times faster than the wall clock this clock runs.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The current time on this clock.
    pub fn now(&self) -> DateTime<Utc> {
        let elapsed = self.origin_real.elapsed().mul_f64(self.scale);
        let offset = *self.offset.lock().unwrap_or_else(|p| p.into_inner());
        self.origin + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::MAX) + offset
    }

    /// Jumps the clock ahead (tests: "the schedule is due now").
    pub fn advance(&self, by: chrono::Duration) {
        *self.offset.lock().unwrap_or_else(|p| p.into_inner()) += by;
    }

    /// This clock as a reader elsewhere can follow it: one reading of it
    /// beside the wall clock, and how fast it runs.
    pub fn published(&self) -> PublishedClock {
        PublishedClock {
            scale: self.scale,
            wall: Utc::now(),
            clock: self.now(),
        }
    }

    /// How long to really wait for `d` to pass on this clock.
    pub fn real(&self, d: Duration) -> Duration {
        d.div_f64(self.scale)
    }
}

/// A scaled clock as published in the `driftline-clock` ConfigMap
/// (`api::names::CLOCK_CONFIG_MAP`): at wall time `wall` the clock read
/// `clock`, and it runs `scale` times as fast.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedClock {
    pub scale: f64,
    pub wall: DateTime<Utc>,
    pub clock: DateTime<Utc>,
}

impl PublishedClock {
    const SCALE: &str = "scale";
    const WALL: &str = "wallTime";
    const CLOCK: &str = "clockTime";

    /// What the clock reads at wall time `wall`.
    pub fn now_at(&self, wall: DateTime<Utc>) -> DateTime<Utc> {
        let elapsed = (wall - self.wall).as_seconds_f64() * self.scale;
        self.clock + chrono::Duration::milliseconds((elapsed * 1000.0) as i64)
    }

    /// The ConfigMap's `data`.
    pub fn to_data(&self) -> BTreeMap<String, String> {
        let time = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        BTreeMap::from([
            (Self::SCALE.into(), self.scale.to_string()),
            (Self::WALL.into(), time(self.wall)),
            (Self::CLOCK.into(), time(self.clock)),
        ])
    }

    /// Reads the ConfigMap's `data`; `None` when a value is missing or
    /// malformed (the reader then falls back to the wall clock).
    pub fn from_data(data: &BTreeMap<String, String>) -> Option<PublishedClock> {
        let time = |k: &str| {
            DateTime::parse_from_rfc3339(data.get(k)?)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        };
        let scale: f64 = data.get(Self::SCALE)?.parse().ok()?;
        (scale.is_finite() && scale > 0.0).then_some(())?;
        Some(PublishedClock {
            scale,
            wall: time(Self::WALL)?,
            clock: time(Self::CLOCK)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scaled_clock_runs_faster_and_jumps() {
        let clock = Clock::scaled(3600.0);
        let start = clock.now();
        std::thread::sleep(Duration::from_millis(20));
        let ran = clock.now() - start;
        assert!(ran >= chrono::Duration::seconds(60), "ran {ran}");
        assert_eq!(
            clock.real(Duration::from_secs(3600)),
            Duration::from_secs(1)
        );
        let before = clock.now();
        clock.advance(chrono::Duration::hours(5));
        assert!(clock.now() - before >= chrono::Duration::hours(5));
        assert_eq!(Clock::scaled(-1.0).scale(), 1.0);
    }

    #[test]
    fn a_published_clock_is_read_on_the_same_time_elsewhere() {
        let clock = Clock::scaled(60.0);
        clock.advance(chrono::Duration::hours(2));
        let published =
            PublishedClock::from_data(&clock.published().to_data()).expect("round trip");
        assert_eq!(published.scale, 60.0);
        // One wall second later the clock has run a minute.
        let later = published.wall + chrono::Duration::seconds(1);
        assert_eq!(
            published.now_at(later) - published.clock,
            chrono::Duration::minutes(1)
        );
        // Read right away, it agrees with the clock itself to within the
        // time this test takes (well under the clock's own minute per second).
        let drift = (published.now_at(Utc::now()) - clock.now())
            .num_seconds()
            .abs();
        assert!(drift < 30, "{drift}");
        let mut bad = published.to_data();
        bad.insert("scale".into(), "0".into());
        assert_eq!(PublishedClock::from_data(&bad), None);
        bad.remove("scale");
        assert_eq!(PublishedClock::from_data(&bad), None);
    }
}
