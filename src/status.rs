//! What the HTTP side shows of a target besides its metrics: whether its first poll has
//! finished (`/-/ready`), and its last success and last error (the landing page).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::error::{Reason, UcmError};

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
}

#[derive(Default)]
pub struct TargetStatus {
    ready: AtomicBool,
    last: Mutex<Snapshot>,
}

impl TargetStatus {
    /// Marks the first poll attempt finished, either way.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn succeeded(&self, at: DateTime<Utc>) {
        self.lock().last_success = Some(at);
    }

    pub fn failed(&self, at: DateTime<Utc>, error: &UcmError) {
        self.lock().last_error = Some(LastError {
            reason: error.reason(),
            message: error.to_string(),
            at,
        });
    }

    pub fn snapshot(&self) -> Snapshot {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Snapshot> {
        // A panic elsewhere while holding this lock leaves a valid snapshot behind.
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }
}
