//! The exporter's one source of time.
//!
//! Production reads the host clock. Tests inject the simulator's frozen clock, so what a test
//! sees never depends on the day or hour it runs, and time-driven behaviour (sweeps, cookie
//! renewal, login back-off) is driven by moving that clock instead of by sleeping.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};

mod local;
mod zone;

pub use local::{as_utc, from_local_secs, local_secs, LocalSecs};
pub use zone::{parse_system_time, utc_offset, Zone};

pub trait Clock: Send + Sync + 'static {
    /// Wall time: the baseline's reach and the timestamps shown to Prometheus.
    fn now(&self) -> DateTime<Utc>;

    /// Time since a fixed origin, for intervals only. Kept apart from [`Clock::now`] because a
    /// stepped wall clock (NTP, an operator) must not make a sweep or a login come early or never.
    fn monotonic(&self) -> Duration;

    /// The wall clock read as the UCM's naive local time in `zone`.
    fn local_now(&self, zone: Zone) -> NaiveDateTime {
        zone.local(self.now())
    }
}

/// A clock shared by a target's poller and session.
pub type SharedClock = Arc<dyn Clock>;

/// The host's clocks. Intervals run on tokio's clock, so a test on paused tokio time moves them
/// too.
pub struct SystemClock {
    origin: tokio::time::Instant,
}

impl SystemClock {
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock {
            origin: tokio::time::Instant::now(),
        })
    }
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }
}

impl fmt::Debug for dyn Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}
