//! The login schedule that can never get the exporter's IP banned.
//!
//! A UCM blacklists an IP after a few failed logins (5 by default; docs/ucm-api.md §2.6). After
//! [`STRIKES`] consecutive rejected logins the exporter tries at most once an hour, until the
//! password changes. The count lives in a file under the state directory, keyed by UCM address
//! and user, so that a restart loop, `ucm-exporter check` and two targets on one UCM share one
//! count instead of getting three attempts each.
//!
//! The file never holds the password: only a salted MD5 fingerprint that tells whether it changed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

/// Rejected logins in a row after which attempts are rationed.
pub const STRIKES: u32 = 3;
/// At most one attempt per this, once rationed.
pub const RATION: Duration = Duration::from_secs(3600);
/// A lockout the UCM states is honoured up to this long; a larger figure is taken as this.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    /// Consecutive rejected logins, counting one in flight.
    failures: u32,
    /// Unix seconds of the last attempt.
    last_attempt: i64,
    /// No attempt before this Unix second (the UCM's own `remain_time`).
    #[serde(default)]
    blocked_until: i64,
    /// `salt:md5(salt + password)` in hex.
    fingerprint: String,
}

/// Whether a login may be tried now.
#[derive(Debug)]
pub enum Verdict {
    /// Try it, and say how it ended through the [`Pending`] attempt.
    Allowed(Pending),
    /// Not before this time.
    Blocked { until: DateTime<Utc>, failures: u32 },
}

/// The shared count of one UCM user's rejected logins.
#[derive(Debug, Clone)]
pub struct LoginGuard {
    path: PathBuf,
}

/// Outcome of an attempt, as the guard needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Accepted,
    /// The UCM rejected the credentials; `remaining` attempts before its lockout, and how long
    /// it says it locks the client out, when it tells.
    Rejected {
        remaining: Option<u32>,
        lockout: Option<Duration>,
    },
    /// No verdict on the credentials (network, timeout, garbage): the attempt does not count.
    Inconclusive,
}

impl LoginGuard {
    /// The guard of `username` at the UCM of `url`, under `state_dir`.
    pub fn new(state_dir: &Path, url: &str, username: &str) -> Self {
        let host = reqwest::Url::parse(url)
            .ok()
            .map(|u| {
                format!(
                    "{}_{}",
                    u.host_str().unwrap_or("ucm"),
                    u.port_or_known_default().unwrap_or(0)
                )
            })
            .unwrap_or_else(|| url.to_string());
        let name: String = format!("{host}_{username}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        LoginGuard {
            path: state_dir.join("logins").join(format!("{name}.json")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn load(&self) -> Record {
        std::fs::read(&self.path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save(&self, r: &Record) {
        let write = || -> std::io::Result<()> {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = self.path.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_vec(r).expect("record encodes"))?;
            std::fs::rename(&tmp, &self.path)
        };
        if let Err(e) = write() {
            // The in-process back-off still holds; only the sharing across processes is lost.
            tracing::warn!(path = %self.path.display(), error = %e, "cannot record login attempts");
        }
    }

    /// Whether to try now with `password`. When allowed, the attempt is recorded as a failure
    /// until the [`Pending`] attempt says otherwise, so a crash mid-login still counts; a login
    /// cancelled in the process (a graceful shutdown) does not.
    pub fn begin(&self, password: &str, now: DateTime<Utc>, force: bool) -> Verdict {
        let mut r = self.load();
        if !matches_fingerprint(&r.fingerprint, password) {
            if r.failures > 0 {
                tracing::info!(
                    "the password differs from the one that was rejected: the login block is cleared"
                );
            }
            r = Record {
                fingerprint: fingerprint(password),
                ..Record::default()
            };
        }
        let now_s = now.timestamp();
        let rationed = r.failures >= STRIKES;
        let until = if rationed {
            r.last_attempt.saturating_add(RATION.as_secs() as i64)
        } else {
            i64::MIN
        }
        .max(r.blocked_until);
        if now_s < until && !force {
            return Verdict::Blocked {
                until: DateTime::from_timestamp(until, 0).unwrap_or(now),
                failures: r.failures,
            };
        }
        r.failures = r.failures.saturating_add(1);
        r.last_attempt = now_s;
        self.save(&r);
        Verdict::Allowed(Pending {
            guard: Some(self.clone()),
        })
    }

    fn finish(&self, attempt: Attempt, now: DateTime<Utc>) {
        let mut r = self.load();
        match attempt {
            Attempt::Accepted => {
                r.failures = 0;
                r.blocked_until = 0;
            }
            Attempt::Inconclusive => r.failures = r.failures.saturating_sub(1),
            Attempt::Rejected { remaining, lockout } => {
                // The UCM's own count is the one that bans: when it says one attempt is left,
                // ration now.
                if remaining.is_some_and(|n| n <= 1) {
                    r.failures = r.failures.max(STRIKES);
                }
                if let Some(d) = lockout {
                    let secs = d.min(MAX_LOCKOUT).as_secs() as i64;
                    r.blocked_until = now.timestamp().saturating_add(secs);
                }
            }
        }
        self.save(&r);
    }
}

/// A login attempt under way. Dropped unfinished (the login future cancelled by a shutdown), it
/// counts as [`Attempt::Inconclusive`]: the process, not the UCM, ended it. Only a process that
/// dies mid-login leaves the failure recorded.
#[derive(Debug)]
#[must_use = "an attempt says how it ended, or counts as inconclusive"]
pub struct Pending {
    guard: Option<LoginGuard>,
}

impl Pending {
    /// Records how the attempt ended.
    pub fn finish(mut self, attempt: Attempt, now: DateTime<Utc>) {
        if let Some(guard) = self.guard.take() {
            guard.finish(attempt, now);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take() {
            guard.finish(Attempt::Inconclusive, Utc::now());
        }
    }
}

fn fingerprint_with(salt: &str, password: &str) -> String {
    let mut h = Md5::new();
    h.update(salt.as_bytes());
    h.update(password.as_bytes());
    format!("{salt}:{:x}", h.finalize())
}

fn fingerprint(password: &str) -> String {
    fingerprint_with(&format!("{:016x}", rand::random::<u64>()), password)
}

fn matches_fingerprint(stored: &str, password: &str) -> bool {
    stored
        .split_once(':')
        .is_some_and(|(salt, _)| fingerprint_with(salt, password) == stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    const NO: Attempt = Attempt::Rejected {
        remaining: None,
        lockout: None,
    };

    fn allowed(v: Verdict) -> Pending {
        match v {
            Verdict::Allowed(p) => p,
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn three_rejections_ration_attempts_to_one_an_hour() {
        let dir = tempfile::tempdir().unwrap();
        let g = LoginGuard::new(dir.path(), "https://ucm:8089", "cdrapi");
        for i in 0..3 {
            allowed(g.begin("wrong", at(i * 60), false)).finish(NO, at(i * 60));
        }
        assert!(matches!(
            g.begin("wrong", at(200), false),
            Verdict::Blocked { failures: 3, .. }
        ));
        // Another process (a restart, `check`, a second target on the same UCM) shares the count.
        let other = LoginGuard::new(dir.path(), "https://ucm:8089/", "cdrapi");
        assert!(matches!(
            other.begin("wrong", at(3000), false),
            Verdict::Blocked { .. }
        ));
        allowed(other.begin("wrong", at(120 + 3600), false)).finish(NO, at(120 + 3600));
        assert!(matches!(
            g.begin("wrong", at(120 + 3700), false),
            Verdict::Blocked { .. }
        ));
        // `check --force` may try anyway.
        allowed(g.begin("wrong", at(120 + 3700), true)).finish(NO, at(120 + 3700));
    }

    #[test]
    fn a_new_password_clears_the_block_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let g = LoginGuard::new(dir.path(), "https://ucm:8089", "cdrapi");
        for i in 0..3 {
            allowed(g.begin("wrong", at(i), false)).finish(NO, at(i));
        }
        allowed(g.begin("right", at(10), false)).finish(Attempt::Accepted, at(10));
        let text = std::fs::read_to_string(g.path()).unwrap();
        assert!(!text.contains("right") && !text.contains("wrong"), "{text}");
    }

    #[test]
    fn inconclusive_and_cancelled_attempts_do_not_count_and_a_crash_mid_login_does() {
        let dir = tempfile::tempdir().unwrap();
        let g = LoginGuard::new(dir.path(), "https://ucm", "u");
        for i in 0..5 {
            allowed(g.begin("pw", at(i), false)).finish(Attempt::Inconclusive, at(i));
        }
        // Logins cancelled by a graceful shutdown: the attempt is dropped unfinished.
        for i in 0..5 {
            drop(allowed(g.begin("pw", at(5 + i), false)));
        }
        // Three attempts begun and never finished, nor dropped: the process died each time.
        for i in 0..3 {
            std::mem::forget(allowed(g.begin("pw", at(10 + i), false)));
        }
        assert!(matches!(
            g.begin("pw", at(20), false),
            Verdict::Blocked { failures: 3, .. }
        ));
    }

    #[test]
    fn the_ucms_own_word_is_honoured() {
        let dir = tempfile::tempdir().unwrap();
        let g = LoginGuard::new(dir.path(), "https://ucm", "u");
        allowed(g.begin("pw", at(0), false)).finish(
            Attempt::Rejected {
                remaining: Some(1),
                lockout: None,
            },
            at(0),
        );
        assert!(matches!(
            g.begin("pw", at(60), false),
            Verdict::Blocked { .. }
        ));
        let g = LoginGuard::new(dir.path(), "https://other", "u");
        allowed(g.begin("pw", at(0), false)).finish(
            Attempt::Rejected {
                remaining: None,
                lockout: Some(Duration::from_secs(u64::MAX)),
            },
            at(0),
        );
        match g.begin("pw", at(3600), false) {
            Verdict::Blocked { until, .. } => assert_eq!(until, at(24 * 3600)),
            v => panic!("{v:?}"),
        }
    }
}
