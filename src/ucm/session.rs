//! The renewing session to one UCM: challenge/login, the cookie carried in every JSON body,
//! proactive and reactive renewal, and the back-offs that keep the exporter from ever being the
//! reason a UCM bans its IP or slows down.
//!
//! All requests of a target pass through one mutex: the UCM copes badly with concurrent use of
//! one session, and serialising also makes renewal race-free. Every wait runs on the injected
//! [`Clock`](crate::clock::Clock), so tests move time instead of sleeping through it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use md5::{Digest, Md5};
use serde_json::{json, Map, Value};
use tokio::sync::Mutex;

use super::budget::Budget;
use super::envelope::{
    classify_status, decode_envelope, lenient_i64, refusal_error, status_meaning, status_refusal,
    Refusal, StatusClass,
};
use super::login_guard::{Attempt, LoginGuard, Verdict, MAX_LOCKOUT};
use super::transport::Transport;
use crate::clock::SharedClock;
use crate::config::{Secret, Target};
use crate::error::UcmError;

/// A status envelope (`{"response":{...},"status":-6}`) is well under this; a page of records
/// larger than this is not read for a status by [`Session::fetch`].
const STATUS_ENVELOPE_MAX: usize = 64 << 10;
const AUTH_BACKOFF_FIRST: Duration = Duration::from_secs(60);
const AUTH_BACKOFF_MAX: Duration = Duration::from_secs(30 * 60);

/// What the session did, for whoever keeps count (the poller's metrics). The client layer
/// itself knows nothing of metrics.
pub trait ClientEvents: Send + Sync {
    /// One request is about to be sent.
    fn request(&self, _action: &str) {}
    /// One login attempt finished.
    fn login(&self, _ok: bool) {}
    /// A request was not sent: the budget of `scope` (`poll` or `hour`) is spent.
    fn over_budget(&self, _scope: &str) {}
}

/// For one-off uses that keep no count (`ucm-exporter check`).
impl ClientEvents for () {}

struct Cookie {
    value: String,
    /// [`Clock::monotonic`](crate::clock::Clock::monotonic) at login.
    obtained: Duration,
}

/// A failed login, with what the UCM said about it.
struct LoginFailure {
    error: UcmError,
    status: Option<i64>,
    /// How long the UCM says it locks this client out (`remain_time`).
    lockout: Option<Duration>,
    /// Attempts left before the UCM locks this client out (`remain_num`).
    remaining: Option<u32>,
}

impl From<UcmError> for LoginFailure {
    fn from(error: UcmError) -> Self {
        LoginFailure {
            error,
            status: None,
            lockout: None,
            remaining: None,
        }
    }
}

#[derive(Default)]
struct Inner {
    cookie: Option<Cookie>,
    /// No login before this monotonic time after a rejected login.
    auth_blocked_until: Option<Duration>,
    auth_backoff: Option<Duration>,
    /// No request at all before this monotonic time after a rate-limit status.
    rate_limited_until: Option<(Duration, i64)>,
    hint_logged: bool,
}

pub struct Session {
    transport: Transport,
    username: String,
    password: Secret,
    renew_after: Duration,
    clock: SharedClock,
    events: Arc<dyn ClientEvents>,
    guard: Option<LoginGuard>,
    /// Try a login even while the guard rations them (`check --force`).
    force: bool,
    budget: Budget,
    inner: Mutex<Inner>,
}

impl Session {
    pub fn new(
        target: &Target,
        clock: SharedClock,
        events: Arc<dyn ClientEvents>,
    ) -> anyhow::Result<Self> {
        Ok(Session {
            transport: Transport::new(target)?,
            username: target.username.clone(),
            password: target.password.clone(),
            renew_after: target.session_renew_after,
            clock,
            events,
            guard: None,
            force: false,
            budget: Budget::new(target.max_requests_per_hour),
            inner: Mutex::new(Inner::default()),
        })
    }

    /// Shares the count of rejected logins with every process and target that logs in to the
    /// same UCM as the same user, through a file under `state_dir` (see `login_guard`).
    pub fn with_login_guard(mut self, guard: LoginGuard, force: bool) -> Self {
        self.guard = Some(guard);
        self.force = force;
        self
    }

    fn now(&self) -> Duration {
        self.clock.monotonic()
    }

    /// The target's request budget.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Whether the UCM asked to wait and the wait is not over: for callers that would rather
    /// not queue a request only to have it refused.
    pub async fn rate_limited(&self) -> Option<Duration> {
        let inner = self.inner.lock().await;
        let (until, _) = inner.rate_limited_until?;
        until.checked_sub(self.now()).filter(|w| !w.is_zero())
    }

    /// Sends one API request within the session and decodes the answer with `decode`, logging
    /// in first when needed and once more when the UCM says the session is gone.
    pub async fn call<T>(
        &self,
        action: &str,
        params: Map<String, Value>,
        mut decode: impl FnMut(&Bytes) -> Result<T, Refusal>,
    ) -> Result<T, UcmError> {
        let mut inner = self.inner.lock().await;
        self.check_rate_limit(&inner)?;
        if self.needs_login(&inner) {
            self.login(&mut inner).await?;
        }
        let mut retried = false;
        loop {
            let cookie = inner
                .cookie
                .as_ref()
                .map(|c| c.value.clone())
                .unwrap_or_default();
            let mut request = params.clone();
            request.insert("action".into(), Value::String(action.into()));
            request.insert("cookie".into(), Value::String(cookie));
            let body = self.send(action, &Value::Object(request)).await?;
            match decode(&body) {
                Ok(t) => return Ok(t),
                Err(Refusal::Status { status, .. })
                    if classify_status(status) == StatusClass::SessionGone && !retried =>
                {
                    tracing::info!(
                        action,
                        status,
                        "UCM session ended ({}); logging in again",
                        status_meaning(status)
                    );
                    inner.cookie = None;
                    self.login(&mut inner).await?;
                    retried = true;
                }
                Err(refusal) => return Err(self.refusal(&mut inner, action, refusal)),
            }
        }
    }

    /// Like [`Session::call`], but hands back the raw body, so that the caller can decode it
    /// outside the session lock while the next request is in flight. Only what the session
    /// itself must act on is checked here: a status envelope (an expired session is retried, a
    /// rate limit remembered). A UCM answers those with a few bytes, so a large body is passed
    /// on unread; whatever the caller finds wrong with it goes back through
    /// [`Session::refused`].
    pub async fn fetch(&self, action: &str, params: Map<String, Value>) -> Result<Bytes, UcmError> {
        self.call(action, params, |body| {
            if body.len() <= STATUS_ENVELOPE_MAX {
                if let Some(refusal) = serde_json::from_slice::<Value>(body)
                    .ok()
                    .and_then(|v| status_refusal(&v))
                {
                    return Err(refusal);
                }
            }
            Ok(body.clone())
        })
        .await
    }

    /// The error for a body that [`Session::fetch`] passed on and its caller then refused, with
    /// the same side effects as a refusal inside [`Session::call`].
    pub async fn refused(&self, action: &str, refusal: Refusal) -> UcmError {
        let mut inner = self.inner.lock().await;
        self.refusal(&mut inner, action, refusal)
    }

    /// Forgets the cookie, so the next request logs in afresh: for an answer that may come from
    /// a session the UCM dropped without saying so.
    pub async fn renew(&self) {
        self.inner.lock().await.cookie = None;
    }

    /// Logs out, so the UCM frees the session at once instead of at its timeout.
    pub async fn logout(&self) {
        let mut inner = self.inner.lock().await;
        let Some(cookie) = inner.cookie.take() else {
            return;
        };
        let req = json!({"action": "logout", "cookie": cookie.value});
        match self.send("logout", &req).await.map(|b| decode_envelope(&b)) {
            Ok(Ok(_)) => tracing::info!("logged out of the UCM"),
            Ok(Err(r)) => tracing::debug!(?r, "logout refused"),
            Err(e) => tracing::debug!(error = %e, "logout failed"),
        }
    }

    fn needs_login(&self, inner: &Inner) -> bool {
        match &inner.cookie {
            None => true,
            Some(c) => self.now().saturating_sub(c.obtained) >= self.renew_after,
        }
    }

    fn check_rate_limit(&self, inner: &Inner) -> Result<(), UcmError> {
        if let Some((until, status)) = inner.rate_limited_until {
            let now = self.now();
            if now < until {
                return Err(UcmError::RateLimited {
                    status,
                    wait: until - now,
                });
            }
        }
        Ok(())
    }

    /// The one place where a refusal changes the session: the error it is, and what the
    /// session must remember about it.
    fn refusal(&self, inner: &mut Inner, action: &str, refusal: Refusal) -> UcmError {
        if let Refusal::Status { status, .. } = &refusal {
            match classify_status(*status) {
                StatusClass::SessionGone | StatusClass::LoginRejected => inner.cookie = None,
                StatusClass::RateLimited(wait) => {
                    inner.rate_limited_until = Some((self.now().saturating_add(wait), *status));
                }
                StatusClass::Permission | StatusClass::Other => {}
            }
        }
        refusal_error(action, refusal)
    }

    async fn login(&self, inner: &mut Inner) -> Result<(), UcmError> {
        if let Some(until) = inner.auth_blocked_until {
            let now = self.now();
            if now < until {
                return Err(UcmError::Auth(format!(
                    "login rejected earlier; next attempt in {}s",
                    (until - now).as_secs()
                )));
            }
        }
        let verdict = self
            .guard
            .as_ref()
            .map(|g| g.begin(self.password.expose(), self.clock.now(), self.force));
        let pending = match verdict {
            None => None,
            Some(Verdict::Allowed(attempt)) => Some(attempt),
            Some(Verdict::Blocked { until, failures }) => {
                if !inner.hint_logged {
                    inner.hint_logged = true;
                    tracing::error!(
                        user = %self.username,
                        "{failures} logins in a row were rejected: trying at most once an hour (next at {until}), so \
                         that the UCM never blacklists this IP; a changed password is tried at once"
                    );
                }
                return Err(UcmError::Auth(format!(
                    "{failures} logins in a row were rejected; next attempt at {until}, or when the password changes"
                )));
            }
        };
        let result = self.login_once().await;
        self.events.login(result.is_ok());
        if let Some(pending) = pending {
            let attempt = match &result {
                Ok(_) => Attempt::Accepted,
                Err(f)
                    if f.status
                        .is_some_and(|s| classify_status(s) == StatusClass::LoginRejected) =>
                {
                    Attempt::Rejected {
                        remaining: f.remaining,
                        lockout: f.lockout,
                    }
                }
                Err(_) => Attempt::Inconclusive,
            };
            pending.finish(attempt, self.clock.now());
        }
        match result {
            Ok(cookie) => {
                inner.cookie = Some(Cookie {
                    value: cookie,
                    obtained: self.now(),
                });
                inner.auth_blocked_until = None;
                inner.auth_backoff = None;
                inner.hint_logged = false;
                tracing::info!(user = %self.username, "logged in to the UCM");
                Ok(())
            }
            Err(failure) => {
                inner.cookie = None;
                let status = failure.status.filter(|s| {
                    matches!(
                        classify_status(*s),
                        StatusClass::LoginRejected | StatusClass::Permission
                    )
                });
                if let Some(status) = status {
                    let backoff = inner
                        .auth_backoff
                        .map_or(AUTH_BACKOFF_FIRST, |b| (b * 2).min(AUTH_BACKOFF_MAX))
                        .max(failure.lockout.unwrap_or_default());
                    inner.auth_backoff = Some(backoff);
                    inner.auth_blocked_until = Some(self.now().saturating_add(backoff));
                    if !inner.hint_logged {
                        inner.hint_logged = true;
                        tracing::error!(
                            user = %self.username,
                            status,
                            "UCM login rejected ({}). Check: the password of this API user; that the UCM's \
                             login security has not blacklisted the exporter's IP; that the user is enabled \
                             under HTTPS API Settings (New). Retrying in {}s, then doubling up to 30 min",
                            status_meaning(status),
                            backoff.as_secs()
                        );
                    } else {
                        tracing::warn!(
                            status,
                            "UCM login rejected again; next attempt in {}s",
                            backoff.as_secs()
                        );
                    }
                }
                Err(failure.error)
            }
        }
    }

    /// One challenge + login exchange.
    async fn login_once(&self) -> Result<String, LoginFailure> {
        let challenge_req = json!({"action": "challenge", "user": self.username, "version": "1.0"});
        let body = self.send("challenge", &challenge_req).await?;
        let response = decode_envelope(&body).map_err(|r| login_refusal("challenge", r))?;
        let challenge = response
            .get("challenge")
            .and_then(|c| {
                c.as_str()
                    .map(str::to_string)
                    .or_else(|| c.as_i64().map(|n| n.to_string()))
            })
            .ok_or_else(|| UcmError::Protocol("challenge answer has no challenge".into()))?;
        let login_req = json!({
            "action": "login",
            "user": self.username,
            "token": token(&challenge, self.password.expose()),
        });
        let body = self.send("login", &login_req).await?;
        let response = decode_envelope(&body).map_err(|r| {
            // A rejected client may be told how many attempts it has left and for how long it is
            // locked out; the guard and the back-off honour both.
            let v = serde_json::from_slice::<Value>(&body).ok();
            let field = |k: &str| {
                v.as_ref()
                    .and_then(|v| v.pointer(&format!("/response/{k}")))
                    .and_then(lenient_i64)
            };
            let mut failure = login_refusal("login", r);
            failure.lockout = field("remain_time")
                .filter(|s| *s > 0)
                .map(|s| Duration::from_secs(s.unsigned_abs()).min(MAX_LOCKOUT));
            failure.remaining = field("remain_num").and_then(|n| u32::try_from(n).ok());
            failure
        })?;
        response
            .get("cookie")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .ok_or_else(|| UcmError::Protocol("login answer has no cookie".into()).into())
    }

    async fn send(&self, action: &str, request: &Value) -> Result<Bytes, UcmError> {
        if let Err(e) = self.budget.spend(self.now(), action, request) {
            if let UcmError::Budget { scope, .. } = &e {
                self.events.over_budget(scope);
            }
            return Err(e);
        }
        self.events.request(action);
        self.transport.send(action, request).await
    }
}

fn login_refusal(step: &str, r: Refusal) -> LoginFailure {
    let status = match &r {
        Refusal::Status { status, .. } => Some(*status),
        _ => None,
    };
    LoginFailure {
        status,
        ..refusal_error(step, r).into()
    }
}

/// The login token: lowercase hex MD5 of the challenge followed by the password.
fn token(challenge: &str, password: &str) -> String {
    let mut hasher = Md5::new();
    hasher.update(challenge.as_bytes());
    hasher.update(password.as_bytes());
    format!("{:x}", hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_lowercase_md5_of_challenge_and_password() {
        // md5("0000001496038514secret"), computed with md5sum.
        assert_eq!(
            token("0000001496038514", "secret"),
            "04f185ee5bc1d1878fe152a399b631d8"
        );
    }
}
