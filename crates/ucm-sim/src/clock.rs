//! The simulator's wall clock.
//!
//! A UCM stamps CDRs with naive local time, so the simulator keeps its own naive local clock
//! that tests can freeze (`speed = 0`) and move by hand, which makes "a call becomes visible
//! once it has ended" testable without sleeping.
//!
//! Two time lines: *steady* time only ever moves forward (it runs at `speed` and is moved by
//! `advance`); the *clock* is steady time plus an offset that `step` changes, like an
//! NTP correction on a device. Traffic, visibility and session lifetimes follow steady time, so a
//! step changes what the UCM stamps and how it reads filters, never whether a call has happened.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;

/// Naive local seconds: `NaiveDateTime` as seconds since 1970-01-01 00:00:00 *local*, the unit
/// every stored time of the simulator uses because CDR times carry no offset.
pub type LocalSecs = i64;

/// Seconds on the steady time line, in the same unit as [`LocalSecs`]; equal to the clock's
/// reading until the first step.
pub type SteadySecs = i64;

pub fn to_secs(t: NaiveDateTime) -> LocalSecs {
    t.and_utc().timestamp()
}

pub fn from_secs(s: LocalSecs) -> NaiveDateTime {
    chrono::DateTime::from_timestamp(s, 0)
        .unwrap_or_default()
        .naive_utc()
}

/// Unix seconds of a local reading in `tz`: what Asterisk stamps into a `uniqueid`, which counts
/// in UTC while CDR times do not. A reading the zone skips (spring forward) takes the offset in
/// force at the same UTC reading; one it repeats (fall back) the earlier instant.
pub fn unix_of(s: LocalSecs, tz: chrono_tz::Tz) -> i64 {
    use chrono::{Offset, TimeZone};
    let local = from_secs(s);
    match tz.from_local_datetime(&local).earliest() {
        Some(t) => t.timestamp(),
        None => s - i64::from(tz.offset_from_utc_datetime(&local).fix().local_minus_utc()),
    }
}

/// Formats the way the UCM renders CDR times.
pub fn fmt_secs(s: LocalSecs) -> String {
    from_secs(s).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// One step of the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Steady time of the step.
    pub at: SteadySecs,
    /// Clock minus steady time from the step on.
    pub offset: i64,
}

/// Both time lines read at one instant, in whole seconds (the resolution of every CDR time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub steady: SteadySecs,
    pub clock: LocalSecs,
    /// Steps taken so far; orders events that share a steady second with a step.
    pub epoch: usize,
}

impl Reading {
    /// A reading before any step, for stores driven without a clock.
    pub fn unstepped(secs: LocalSecs) -> Reading {
        Reading {
            steady: secs,
            clock: secs,
            epoch: 0,
        }
    }

    pub fn offset(&self) -> i64 {
        self.clock - self.steady
    }
}

#[derive(Debug, Default)]
struct Moves {
    /// Sum of every `advance()`; kept apart from the running part so a frozen clock stays exact.
    advanced: Duration,
    steps: Vec<Step>,
}

#[derive(Debug)]
pub struct SimClock {
    origin_real: Instant,
    origin_sim: NaiveDateTime,
    speed: f64,
    moves: Mutex<Moves>,
}

impl SimClock {
    pub fn new(origin_sim: NaiveDateTime, speed: f64) -> Self {
        SimClock {
            origin_real: Instant::now(),
            origin_sim,
            speed: speed.max(0.0),
            moves: Mutex::new(Moves::default()),
        }
    }

    fn steady_at(&self, moves: &Moves) -> NaiveDateTime {
        let running = self.origin_real.elapsed().mul_f64(self.speed);
        let total =
            chrono::Duration::from_std(running + moves.advanced).unwrap_or(chrono::Duration::MAX);
        self.origin_sim + total
    }

    fn offset_of(moves: &Moves) -> i64 {
        moves.steps.last().map_or(0, |s| s.offset)
    }

    /// The clock as the UCM shows it.
    pub fn now(&self) -> NaiveDateTime {
        let moves = self.moves.lock().expect("clock lock");
        self.steady_at(&moves) + chrono::Duration::seconds(Self::offset_of(&moves))
    }

    pub fn steady_secs(&self) -> SteadySecs {
        to_secs(self.steady_at(&self.moves.lock().expect("clock lock")))
    }

    pub fn reading(&self) -> Reading {
        let moves = self.moves.lock().expect("clock lock");
        let steady = to_secs(self.steady_at(&moves));
        Reading {
            steady,
            clock: steady + Self::offset_of(&moves),
            epoch: moves.steps.len(),
        }
    }

    pub fn advance(&self, d: Duration) {
        self.moves.lock().expect("clock lock").advanced += d;
    }

    /// Steps the clock by `by` seconds at steady time `at` (a reading the caller took, so that
    /// whatever it did at that reading happened before the step).
    pub fn step(&self, at: SteadySecs, by: i64) {
        let mut moves = self.moves.lock().expect("clock lock");
        let offset = Self::offset_of(&moves).saturating_add(by);
        moves.steps.push(Step { at, offset });
    }

    /// Whether the clock stands behind steady time: stepped back more than forward.
    pub fn stepped_back(&self) -> bool {
        Self::offset_of(&self.moves.lock().expect("clock lock")) < 0
    }

    pub fn steps(&self) -> Vec<Step> {
        self.moves.lock().expect("clock lock").steps.clone()
    }

    /// The clock's reading at start (steps leave it alone).
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
        assert_eq!(fmt_secs(to_secs(c.now())), "2024-05-01 10:01:30");
        assert_eq!(from_secs(to_secs(t0)), t0);
    }

    #[test]
    fn unix_of_reads_the_zone() {
        let at = |s: &str| to_secs(NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap());
        let berlin = chrono_tz::Europe::Berlin;
        // 2024-05-01 12:00 CEST = 10:00 UTC.
        assert_eq!(unix_of(at("2024-05-01 12:00:00"), berlin), 1_714_557_600);
        assert_eq!(
            unix_of(at("2024-05-01 10:00:00"), chrono_tz::UTC),
            1_714_557_600
        );
        // Fall back: 02:30 happens twice; the first (CEST) is taken.
        assert_eq!(unix_of(at("2024-10-27 02:30:00"), berlin), 1_729_989_000);
        // Spring forward: 02:30 does not exist; read with the offset at 02:30 UTC (CEST).
        assert_eq!(unix_of(at("2024-03-31 02:30:00"), berlin), 1_711_845_000);
    }

    #[test]
    fn steps_move_the_clock_not_steady_time() {
        let t0 = NaiveDateTime::parse_from_str("2024-05-01 10:00:00", "%Y-%m-%d %H:%M:%S").unwrap();
        let c = SimClock::new(t0, 0.0);
        let r0 = c.reading();
        c.step(r0.steady, -3600);
        c.step(r0.steady, 600);
        let r = c.reading();
        assert_eq!(
            (r.steady, r.clock - r.steady, r.epoch),
            (r0.steady, -3000, 2)
        );
        assert_eq!(fmt_secs(to_secs(c.now())), "2024-05-01 09:10:00");
        assert_eq!(c.start(), t0);
    }
}
