//! The operator's sense of time. Production reads the wall clock; tests and
//! demos run it faster (`--time-scale 60`: a 10-minute canary pause passes in
//! 10 s) or jump it ahead, so schedules, pauses and cooldowns play out in
//! seconds through the same code path.

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

    /// How long to really wait for `d` to pass on this clock.
    pub fn real(&self, d: Duration) -> Duration {
        d.div_f64(self.scale)
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
}
