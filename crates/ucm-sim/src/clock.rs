//! The simulator's wall clock.
//!
//! A UCM stamps CDRs with naive local time, so the simulator keeps its own naive local clock
//! that tests can freeze (`speed = 0`) and move by hand, which makes "a call becomes visible
//! once it has ended" testable without sleeping.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;

/// Naive local seconds: `NaiveDateTime` as seconds since 1970-01-01 00:00:00 *local*, the unit
/// every stored time of the simulator uses because CDR times carry no offset.
pub type LocalSecs = i64;

pub fn to_secs(t: NaiveDateTime) -> LocalSecs {
    t.and_utc().timestamp()
}

pub fn from_secs(s: LocalSecs) -> NaiveDateTime {
    chrono::DateTime::from_timestamp(s, 0)
        .unwrap_or_default()
        .naive_utc()
}

/// Formats the way the UCM renders CDR times.
pub fn fmt_secs(s: LocalSecs) -> String {
    from_secs(s).format("%Y-%m-%d %H:%M:%S").to_string()
}

#[derive(Debug)]
pub struct SimClock {
    origin_real: Instant,
    origin_sim: NaiveDateTime,
    speed: f64,
    /// Sum of every `advance()`; kept apart from the running part so a frozen clock stays exact.
    advanced: Mutex<Duration>,
}

impl SimClock {
    pub fn new(origin_sim: NaiveDateTime, speed: f64) -> Self {
        SimClock {
            origin_real: Instant::now(),
            origin_sim,
            speed: speed.max(0.0),
            advanced: Mutex::new(Duration::ZERO),
        }
    }

    pub fn now(&self) -> NaiveDateTime {
        let running = self.origin_real.elapsed().mul_f64(self.speed);
        let advanced = *self.advanced.lock().expect("clock lock");
        let total = chrono::Duration::from_std(running + advanced).unwrap_or(chrono::Duration::MAX);
        self.origin_sim + total
    }

    /// Whole seconds, which is the resolution of every CDR time.
    pub fn now_secs(&self) -> LocalSecs {
        to_secs(self.now())
    }

    pub fn advance(&self, d: Duration) {
        *self.advanced.lock().expect("clock lock") += d;
    }

    pub fn start(&self) -> NaiveDateTime {
        self.origin_sim
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_clock_moves_only_by_advance() {
        let t0 = NaiveDateTime::parse_from_str("2024-05-01 10:00:00", "%Y-%m-%d %H:%M:%S").unwrap();
        let c = SimClock::new(t0, 0.0);
        assert_eq!(c.now(), t0);
        c.advance(Duration::from_secs(90));
        assert_eq!(fmt_secs(c.now_secs()), "2024-05-01 10:01:30");
        assert_eq!(from_secs(to_secs(t0)), t0);
    }
}
