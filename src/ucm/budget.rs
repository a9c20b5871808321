//! The hard request budget of a target: every request the session sends, whatever its action,
//! is taken from the budget of the hour, and a poll's requests also from the poll's own
//! allowance. Whatever the paging, slicing or probing logic above decides, a target never sends
//! more than these, so no defect above this layer can hammer a UCM (docs/design.md §2.5).
//!
//! The poll's allowance travels with the poll's task (and the read-ahead it spawns), so that the
//! live-status collectors, which share the session, spend only from the hour.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::error::UcmError;

const HOUR: Duration = Duration::from_secs(3600);

/// Which budget a request found spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Poll,
    Hour,
}

impl Scope {
    pub const ALL: [Scope; 2] = [Scope::Poll, Scope::Hour];

    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Poll => "poll",
            Scope::Hour => "hour",
        }
    }
}

/// What one poll may send, set from what its plan is expected to need; raised once the plan is
/// known, never lowered within the poll.
#[derive(Debug, Default)]
pub struct PollAllowance {
    limit: AtomicUsize,
    sent: AtomicUsize,
}

impl PollAllowance {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(PollAllowance {
            limit: AtomicUsize::new(limit),
            sent: AtomicUsize::new(0),
        })
    }

    /// Adds `more` requests to the allowance.
    pub fn grant(&self, more: usize) {
        self.limit.fetch_add(more, Ordering::SeqCst);
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::SeqCst)
    }

    /// Requests sent so far within the poll.
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::SeqCst)
    }

    /// Takes one request; `false` when the allowance is spent.
    fn take(&self) -> bool {
        let limit = self.limit();
        self.sent
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                (s < limit).then_some(s + 1)
            })
            .is_ok()
    }
}

tokio::task_local! {
    static POLL: Arc<PollAllowance>;
}

/// Runs `fut` as a poll with this allowance: every request it sends is taken from it.
pub async fn in_poll<F: Future>(allowance: Arc<PollAllowance>, fut: F) -> F::Output {
    POLL.scope(allowance, fut).await
}

/// Adds `more` requests to the allowance of the poll that calls this, if any: for a read that
/// finds out on the way that it costs more than its plan was sized for (a UCM that turns out
/// to ignore `offset`), sized from the plan, not from what the read has sent.
pub fn grant_current(more: usize) {
    let _ = POLL.try_with(|a| a.grant(more));
}

/// `fut` within the allowance of the poll that calls this, if any: for a request a poll sends
/// from a task of its own (a read-ahead).
pub fn within_current_poll<F>(fut: F) -> impl Future<Output = F::Output>
where
    F: Future,
{
    let allowance = POLL.try_with(Arc::clone).ok();
    async move {
        match allowance {
            Some(a) => POLL.scope(a, fut).await,
            None => fut.await,
        }
    }
}

/// The budget of one target's session.
#[derive(Debug)]
pub struct Budget {
    per_hour: usize,
    /// Monotonic times of the requests sent within the last hour, oldest first, in whole
    /// seconds rounded up (a request is forgotten up to a second late, never early). A busy
    /// target keeps hundreds: as `Duration`s they were 16 KB a target, a fleet's 16 MB.
    hour: Mutex<VecDeque<u32>>,
}

impl Budget {
    pub fn new(per_hour: usize) -> Self {
        Budget {
            per_hour,
            hour: Mutex::new(VecDeque::new()),
        }
    }

    pub fn per_hour(&self) -> usize {
        self.per_hour
    }

    /// Requests sent within the hour before `now`.
    pub fn sent_in_hour(&self, now: Duration) -> usize {
        let mut hour = self.hour.lock().expect("budget lock");
        forget_before(&mut hour, now);
        hour.len()
    }

    /// Takes one request for `action` from the poll's allowance (if the caller runs within a
    /// poll) and from the hour's; the error says which is spent and what was asked.
    pub fn spend(&self, now: Duration, action: &str, request: &Value) -> Result<(), UcmError> {
        let mut hour = self.hour.lock().expect("budget lock");
        forget_before(&mut hour, now);
        let poll = POLL.try_with(Arc::clone).ok();
        let spent = if hour.len() >= self.per_hour {
            Some((Scope::Hour, self.per_hour))
        } else if poll.as_ref().is_some_and(|p| !p.take()) {
            poll.as_ref().map(|p| (Scope::Poll, p.limit()))
        } else {
            None
        };
        if let Some((scope, limit)) = spent {
            let asked = asked(action, request);
            tracing::warn!(
                scope = scope.as_str(),
                limit,
                asked = %asked,
                "request budget of the {} spent ({limit} requests): not sending {asked}",
                scope.as_str()
            );
            return Err(UcmError::Budget {
                scope: scope.as_str(),
                limit,
                asked,
            });
        }
        hour.push_back(secs_up(now));
        Ok(())
    }
}

fn forget_before(hour: &mut VecDeque<u32>, now: Duration) {
    while hour
        .front()
        .is_some_and(|&t| now.saturating_sub(Duration::from_secs(t.into())) >= HOUR)
    {
        hour.pop_front();
    }
}

fn secs_up(t: Duration) -> u32 {
    let secs = t.as_secs() + u64::from(t.subsec_nanos() > 0);
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// What a request asked, for the log and the error: its action and the parameters that say
/// which records or rows, never a credential (login parameters are left out whole).
fn asked(action: &str, request: &Value) -> String {
    const SHOWN: [&str; 6] = [
        "startTime",
        "endTime",
        "offset",
        "numRecords",
        "page",
        "extension",
    ];
    let mut out = action.to_string();
    if matches!(action, "challenge" | "login" | "logout") {
        return out;
    }
    for key in SHOWN {
        if let Some(v) = request.get(key) {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            out.push_str(&format!(" {key}={v}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn the_hour_is_a_sliding_window() {
        let b = Budget::new(3);
        let req = json!({"startTime": "2024-01-01 00:00:00", "cookie": "secret-cookie"});
        for i in 0..3 {
            b.spend(MIN * i, "cdrapi", &req).unwrap();
        }
        let err = b.spend(MIN * 59, "cdrapi", &req).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("hour") && text.contains("cdrapi startTime=2024-01-01 00:00:00"));
        assert!(!text.contains("secret-cookie"), "{text}");
        // An hour after the first request, one is free again.
        b.spend(MIN * 60, "cdrapi", &req).unwrap();
        assert_eq!(b.sent_in_hour(MIN * 60), 3);
        assert!(b.spend(MIN * 60, "cdrapi", &req).is_err());
        // A request within a second counts for the whole second: forgotten late, never early.
        let b = Budget::new(1);
        b.spend(Duration::from_millis(10_250), "cdrapi", &req)
            .unwrap();
        let hour_on = Duration::from_millis(10_250) + HOUR;
        assert!(b.spend(hour_on, "cdrapi", &req).is_err());
        b.spend(Duration::from_secs(11) + HOUR, "cdrapi", &req)
            .unwrap();
    }

    #[tokio::test]
    async fn a_poll_spends_from_its_allowance_and_a_collector_only_from_the_hour() {
        let b = Arc::new(Budget::new(100));
        let allowance = PollAllowance::new(2);
        let req = json!({});
        let in_poll_results = in_poll(allowance.clone(), async {
            let first = b.spend(MIN, "cdrapi", &req).is_ok();
            // A read-ahead: another task, the same allowance.
            let b2 = b.clone();
            let ahead = tokio::spawn(within_current_poll(async move {
                b2.spend(MIN, "cdrapi", &json!({})).is_ok()
            }))
            .await
            .unwrap();
            let third = b.spend(MIN, "login", &json!({"token": "t0k3n"}));
            (first, ahead, third)
        })
        .await;
        assert!(in_poll_results.0 && in_poll_results.1);
        let err = in_poll_results.2.unwrap_err();
        assert!(err.to_string().contains("poll"), "{err}");
        assert!(!err.to_string().contains("t0k3n"), "{err}");
        assert_eq!(allowance.sent(), 2);
        // Outside the poll: the hour alone.
        assert!(b.spend(MIN, "getSystemStatus", &req).is_ok());
        allowance.grant(1);
        assert!(
            in_poll(allowance.clone(), async { b.spend(MIN, "cdrapi", &req) })
                .await
                .is_ok()
        );
        assert_eq!(b.sent_in_hour(MIN), 4);
    }
}
