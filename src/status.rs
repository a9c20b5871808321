//! What the HTTP side shows of a target besides its metrics: whether its first poll has
//! finished (`/-/ready`), its last success and last error (the landing page), and the log of
//! its last poll (`/probe?debug=true`), and the UCM's clock as the exporter reads it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use crate::error::{Reason, UcmError};
use crate::journal::Journal;

/// The last failed poll of a target.
#[derive(Debug, Clone, PartialEq)]
pub struct LastError {
    pub reason: Reason,
    pub message: String,
    pub at: DateTime<Utc>,
}

/// A copy of a target's status, taken under its lock.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub last_success: Option<DateTime<Utc>>,
    pub last_error: Option<LastError>,
    /// Whether the last finished poll succeeded (None before the first). The times alone cannot
    /// tell when the clock has not moved between a failure and a success.
    pub up: Option<bool>,
}

#[derive(Default)]
pub struct TargetStatus {
    ready: AtomicBool,
    last: Mutex<Snapshot>,
    journal: Arc<Journal>,
    /// The zone the UCM's times are read in and what the UCM says of its clock, in words.
    clock: Mutex<String>,
}

impl TargetStatus {
    /// Marks the first poll attempt finished, either way.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// A poll begins: its log lines start afresh, the previous poll's stay visible until it ends.
    pub fn poll_started(&self) {
        self.journal.poll_started();
    }

    pub fn succeeded(&self, at: DateTime<Utc>) {
        let mut last = self.lock();
        last.last_success = Some(at);
        last.up = Some(true);
        self.journal.poll_ended();
    }

    pub fn failed(&self, at: DateTime<Utc>, error: &UcmError) {
        let mut last = self.lock();
        last.last_error = Some(LastError {
            reason: error.reason(),
            message: error.to_string(),
            at,
        });
        last.up = Some(false);
        self.journal.poll_ended();
    }

    pub fn snapshot(&self) -> Snapshot {
        self.lock().clone()
    }

    pub fn set_clock(&self, line: String) {
        *self.clock.lock().unwrap_or_else(|e| e.into_inner()) = line;
    }

    pub fn clock(&self) -> String {
        self.clock.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The log lines of this target's polls, filled by `journal::layer` once
    /// [`journal::attach`](crate::journal::attach)ed to the target's `poll` span.
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Snapshot> {
        // A panic elsewhere while holding this lock leaves a valid snapshot behind.
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_outcome_wins_even_at_the_same_instant() {
        let s = TargetStatus::default();
        assert_eq!(s.snapshot(), Snapshot::default());
        let at = DateTime::from_timestamp(1_772_618_400, 0).unwrap();
        s.poll_started();
        s.failed(at, &UcmError::Http(500));
        s.poll_started();
        s.succeeded(at);
        let snap = s.snapshot();
        assert_eq!(snap.up, Some(true));
        assert_eq!(snap.last_success, Some(at));
        let e = snap.last_error.unwrap();
        assert_eq!((e.reason, e.at), (Reason::Http, at));
        assert_eq!(e.message, "the UCM answered HTTP 500");
        let mut log = String::new();
        s.journal().render(&mut log);
        assert!(log.starts_with("Log of the last poll:"), "{log}");
    }
}
