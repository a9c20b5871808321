//! The renewing session to one UCM: challenge/login, the cookie carried in every JSON body,
//! proactive and reactive renewal, and the backoffs that keep the exporter from ever being the
//! reason a UCM bans its IP or slows down.
//!
//! All requests of a target pass through one mutex: the UCM copes badly with concurrent use of
//! one session, and serialising also makes renewal race-free.

use std::sync::Arc;
use std::time::Duration;

use md5::{Digest, Md5};
use serde_json::{json, Map, Value};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::{Secret, Target};
use crate::error::{status_meaning, UcmError};
use crate::metrics::TargetMetrics;

/// A larger answer than this is refused rather than buffered: 1000 CDR entries are ~2 MiB.
const MAX_BODY: usize = 64 << 20;
/// A status envelope (`{"response":{...},"status":-6}`) is well under this; a page of records larger than
/// this is not read for a status by [`Session::fetch`].
const STATUS_ENVELOPE_MAX: usize = 64 << 10;
const AUTH_BACKOFF_FIRST: Duration = Duration::from_secs(60);
const AUTH_BACKOFF_MAX: Duration = Duration::from_secs(30 * 60);

/// What a request's answer turned out to be, as told by the caller's decoder. Decoding is the
/// caller's job so that a CDR page is parsed exactly once.
#[derive(Debug)]
pub enum Refusal {
    /// A JSON envelope with a non-zero `status`.
    Status {
        status: i64,
        message: Option<String>,
    },
    /// An HTML page where JSON was expected (the UCM's 403 page for a non-permitted IP).
    Html,
    /// Not JSON, or JSON of an unexpected shape.
    Garbage(String),
}

/// Statuses after which the session is gone and a fresh login may help.
fn is_session_status(status: i64) -> bool {
    matches!(status, -5 | -6 | -8)
}

/// Statuses of a rejected login: repeating them quickly is what gets an IP blacklisted.
fn is_auth_status(status: i64) -> bool {
    matches!(status, -37 | -68 | -70 | -71)
}

struct Cookie {
    value: String,
    obtained: Instant,
}

#[derive(Default)]
struct Inner {
    cookie: Option<Cookie>,
    /// No login before this instant after a rejected login.
    auth_blocked_until: Option<Instant>,
    auth_backoff: Option<Duration>,
    /// No request at all before this instant after a rate-limit status.
    rate_limited_until: Option<(Instant, i64)>,
    hint_logged: bool,
}

pub struct Session {
    http: reqwest::Client,
    api_url: String,
    username: String,
    password: Secret,
    renew_after: Duration,
    timeout: Duration,
    metrics: Arc<TargetMetrics>,
    inner: Mutex<Inner>,
}

/// Installs the ring provider as rustls's process default. Both the UCM client (through
/// reqwest's provider-less rustls) and the simulator's server need one.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the HTTP client of one target with its TLS trust settings.
pub fn http_client(target: &Target) -> anyhow::Result<reqwest::Client> {
    install_crypto_provider();
    let mut b = reqwest::Client::builder()
        .timeout(target.request_timeout)
        .connect_timeout(target.request_timeout.min(Duration::from_secs(10)))
        .pool_max_idle_per_host(1)
        .user_agent(concat!("ucm-exporter/", env!("CARGO_PKG_VERSION")));
    #[cfg(feature = "native-tls")]
    {
        b = b.tls_backend_native();
    }
    if let Some(ca) = &target.ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| anyhow::anyhow!("cannot read CA file {}: {e}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| anyhow::anyhow!("CA file {} is not PEM: {e}", ca.display()))?;
        if certs.is_empty() {
            anyhow::bail!("CA file {} holds no certificate", ca.display());
        }
        // Pin: trust only the given CA, so a UCM's self-signed certificate is trusted and
        // nothing else is.
        b = b.tls_certs_only(certs);
    }
    if target.insecure_skip_verify {
        b = b.tls_danger_accept_invalid_certs(true);
    }
    Ok(b.build()?)
}

fn classify_transport(e: &reqwest::Error, timeout: Duration) -> UcmError {
    if e.is_timeout() {
        return UcmError::Timeout(timeout);
    }
    let mut chain = String::new();
    let mut src: Option<&dyn std::error::Error> = Some(e);
    let mut tls = false;
    while let Some(s) = src {
        if s.downcast_ref::<rustls::Error>().is_some() {
            tls = true;
        }
        if !chain.is_empty() {
            chain.push_str(": ");
        }
        chain.push_str(&s.to_string());
        src = s.source();
    }
    let lower = chain.to_ascii_lowercase();
    if tls || lower.contains("certificate") || lower.contains("handshake") || lower.contains("tls")
    {
        return UcmError::Tls(chain);
    }
    if lower.contains("timed out") {
        return UcmError::Timeout(timeout);
    }
    if e.is_connect() || e.is_request() {
        return UcmError::Connect(chain);
    }
    UcmError::Protocol(chain)
}

/// Decodes a generic `{"response":{...},"status":N}` envelope.
pub fn decode_envelope(body: &[u8]) -> Result<Value, Refusal> {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Err(if looks_like_forbidden_page(body) {
                Refusal::Html
            } else {
                Refusal::Garbage(format!("not JSON ({e})"))
            })
        }
    };
    if let Some(refusal) = status_refusal(&v) {
        return Err(refusal);
    }
    match v.get("status").and_then(lenient_i64) {
        Some(_) => Ok(v.get("response").cloned().unwrap_or(Value::Null)),
        None => Err(Refusal::Garbage("JSON without a status field".into())),
    }
}

/// The refusal an envelope declares: a non-zero `status`, with the UCM's message if it gave one.
fn status_refusal(v: &Value) -> Option<Refusal> {
    let status = v.get("status").and_then(lenient_i64).filter(|s| *s != 0)?;
    Some(Refusal::Status {
        status,
        message: v
            .pointer("/response/error_msg")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

fn lenient_i64(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// The UCM's answer to a client IP that is not permitted: an HTML page saying 403 Forbidden.
/// Other HTML (an error page of a proxy, a crashed CGI) is garbage, not a permission problem.
pub fn looks_like_forbidden_page(body: &[u8]) -> bool {
    let head = &body[..body.len().min(2048)];
    let s = String::from_utf8_lossy(head).to_ascii_lowercase();
    s.trim_start().starts_with('<') && (s.contains("403") || s.contains("forbidden"))
}

impl Session {
    pub fn new(target: &Target, metrics: Arc<TargetMetrics>) -> anyhow::Result<Self> {
        Ok(Session {
            http: http_client(target)?,
            api_url: target.api_url(),
            username: target.username.clone(),
            password: target.password.clone(),
            renew_after: target.session_renew_after,
            timeout: target.request_timeout,
            metrics,
            inner: Mutex::new(Inner::default()),
        })
    }

    /// Sends one API request within the session and decodes the answer with `decode`, logging
    /// in first when needed and once more when the UCM says the session is gone.
    pub async fn call<T>(
        &self,
        action: &str,
        params: Map<String, Value>,
        mut decode: impl FnMut(&[u8]) -> Result<T, Refusal>,
    ) -> Result<T, UcmError> {
        self.call_raw(action, params, |body| decode(body)).await
    }

    async fn call_raw<T>(
        &self,
        action: &str,
        params: Map<String, Value>,
        mut decode: impl FnMut(&bytes::Bytes) -> Result<T, Refusal>,
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
                Err(Refusal::Status { status, .. }) if is_session_status(status) && !retried => {
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
                Err(refusal) => return Err(self.refusal_error(&mut inner, action, refusal)),
            }
        }
    }

    /// Sends one API request within the session like [`Session::call`], but hands back the raw body, so that
    /// the caller can decode it outside the session lock while the next request is in flight. Only what the
    /// session itself must act on is checked here: a status envelope (an expired session is retried, a rate
    /// limit remembered). A UCM answers those with a few bytes, so a large body is passed on unread; whatever
    /// the caller finds wrong with it goes back through [`Session::refused`].
    pub async fn fetch(
        &self,
        action: &str,
        params: Map<String, Value>,
    ) -> Result<bytes::Bytes, UcmError> {
        self.call_raw(action, params, |body| {
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

    /// The error for a body that [`Session::fetch`] passed on and its caller then refused, with the same
    /// side effects as a refusal inside [`Session::call`] (a rate limit is remembered, a dead session dropped).
    pub async fn refused(&self, action: &str, refusal: Refusal) -> UcmError {
        let mut inner = self.inner.lock().await;
        self.refusal_error(&mut inner, action, refusal)
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
            Some(c) => c.obtained.elapsed() >= self.renew_after,
        }
    }

    fn check_rate_limit(&self, inner: &Inner) -> Result<(), UcmError> {
        if let Some((until, status)) = inner.rate_limited_until {
            let now = Instant::now();
            if now < until {
                return Err(UcmError::RateLimited {
                    status,
                    wait: until - now,
                });
            }
        }
        Ok(())
    }

    fn refusal_error(&self, inner: &mut Inner, action: &str, refusal: Refusal) -> UcmError {
        match refusal {
            Refusal::Html => UcmError::Forbidden,
            Refusal::Garbage(why) => UcmError::Decode(why),
            Refusal::Status { status, message } => {
                if is_session_status(status) {
                    inner.cookie = None;
                    return UcmError::Auth(format!(
                        "the UCM rejected a fresh session (status {status}: {})",
                        status_meaning(status)
                    ));
                }
                match status {
                    -47 => UcmError::Permission {
                        action: action.to_string(),
                    },
                    -45 | -46 | -57 => {
                        let wait = Duration::from_secs(if status == -57 { 60 } else { 15 });
                        inner.rate_limited_until = Some((Instant::now() + wait, status));
                        UcmError::RateLimited { status, wait }
                    }
                    s if is_auth_status(s) => {
                        inner.cookie = None;
                        UcmError::Auth(format!("status {s}: {}", status_meaning(s)))
                    }
                    s => UcmError::Protocol(format!(
                        "{action} answered status {s} ({}){}",
                        status_meaning(s),
                        message.map(|m| format!(": {m}")).unwrap_or_default()
                    )),
                }
            }
        }
    }

    async fn login(&self, inner: &mut Inner) -> Result<(), UcmError> {
        if let Some(until) = inner.auth_blocked_until {
            let now = Instant::now();
            if now < until {
                return Err(UcmError::Auth(format!(
                    "login rejected earlier; next attempt in {}s",
                    (until - now).as_secs()
                )));
            }
        }
        self.metrics.logins.inc();
        match self.login_once().await {
            Ok(cookie) => {
                inner.cookie = Some(Cookie {
                    value: cookie,
                    obtained: Instant::now(),
                });
                inner.auth_blocked_until = None;
                inner.auth_backoff = None;
                inner.hint_logged = false;
                tracing::info!(user = %self.username, "logged in to the UCM");
                Ok(())
            }
            Err((err, status, lockout)) => {
                self.metrics.login_failures.inc();
                inner.cookie = None;
                if let Some(status) = status.filter(|s| is_auth_status(*s) || *s == -47) {
                    let backoff = inner
                        .auth_backoff
                        .map_or(AUTH_BACKOFF_FIRST, |b| (b * 2).min(AUTH_BACKOFF_MAX))
                        .max(lockout.unwrap_or_default());
                    inner.auth_backoff = Some(backoff);
                    inner.auth_blocked_until = Some(Instant::now() + backoff);
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
                    if status == -47 {
                        return Err(UcmError::Permission {
                            action: "login".into(),
                        });
                    }
                }
                Err(err)
            }
        }
    }

    /// One challenge + login exchange. On failure also returns the UCM's status and, when the
    /// UCM says how long it locks the client out, that duration.
    async fn login_once(&self) -> Result<String, (UcmError, Option<i64>, Option<Duration>)> {
        let challenge_req = json!({"action": "challenge", "user": self.username, "version": "1.0"});
        let body = self
            .send("challenge", &challenge_req)
            .await
            .map_err(|e| (e, None, None))?;
        let response = decode_envelope(&body).map_err(|r| self.login_refusal(r, "challenge"))?;
        let challenge = response
            .get("challenge")
            .and_then(|c| {
                c.as_str()
                    .map(str::to_string)
                    .or_else(|| c.as_i64().map(|n| n.to_string()))
            })
            .ok_or_else(|| {
                (
                    UcmError::Protocol("challenge answer has no challenge".into()),
                    None,
                    None,
                )
            })?;
        let mut hasher = Md5::new();
        hasher.update(challenge.as_bytes());
        hasher.update(self.password.expose().as_bytes());
        let token = format!("{:x}", hasher.finalize());
        let login_req = json!({"action": "login", "user": self.username, "token": token});
        let body = self
            .send("login", &login_req)
            .await
            .map_err(|e| (e, None, None))?;
        let response = match serde_json::from_slice::<Value>(&body) {
            Ok(v)
                if v.get("status")
                    .and_then(lenient_i64)
                    .is_some_and(|s| s != 0) =>
            {
                let status = v.get("status").and_then(lenient_i64).unwrap_or_default();
                let lockout = v
                    .pointer("/response/remain_time")
                    .and_then(lenient_i64)
                    .filter(|s| *s > 0)
                    .map(|s| Duration::from_secs(s as u64));
                let (err, status, _) = self.login_refusal(
                    Refusal::Status {
                        status,
                        message: None,
                    },
                    "login",
                );
                return Err((err, status, lockout));
            }
            _ => decode_envelope(&body).map_err(|r| self.login_refusal(r, "login"))?,
        };
        response
            .get("cookie")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .ok_or_else(|| {
                (
                    UcmError::Protocol("login answer has no cookie".into()),
                    None,
                    None,
                )
            })
    }

    fn login_refusal(&self, r: Refusal, step: &str) -> (UcmError, Option<i64>, Option<Duration>) {
        match r {
            Refusal::Html => (UcmError::Forbidden, None, None),
            Refusal::Garbage(why) => (UcmError::Decode(format!("{step}: {why}")), None, None),
            Refusal::Status { status, .. } => {
                let err = if is_auth_status(status) {
                    UcmError::Auth(format!(
                        "{step} rejected: status {status} ({})",
                        status_meaning(status)
                    ))
                } else if status == -47 {
                    UcmError::Permission {
                        action: step.into(),
                    }
                } else {
                    UcmError::Protocol(format!(
                        "{step} answered status {status} ({})",
                        status_meaning(status)
                    ))
                };
                (err, Some(status), None)
            }
        }
    }

    /// POSTs one request and returns the body of a 200 answer, bounded in size.
    async fn send(&self, action: &str, request: &Value) -> Result<bytes::Bytes, UcmError> {
        self.metrics.api_requests.with_label_values(&[action]).inc();
        let body = serde_json::to_vec(&json!({ "request": request })).expect("JSON value encodes");
        let resp = self
            .http
            .post(&self.api_url)
            .header("Content-Type", "application/json;charset=UTF-8")
            .body(body)
            .send()
            .await
            .map_err(|e| classify_transport(&e, self.timeout))?;
        let status = resp.status();
        let mut resp = resp;
        // Sized up front when the UCM says how much is coming: growing a page-sized buffer by
        // doubling copies it about twice over.
        let mut buf = Vec::with_capacity(
            resp.content_length()
                .map_or(0, |n| usize::try_from(n).unwrap_or(MAX_BODY).min(MAX_BODY)),
        );
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if buf.len() + chunk.len() > MAX_BODY {
                        return Err(UcmError::Protocol(format!(
                            "{action} answer is larger than {} MiB",
                            MAX_BODY >> 20
                        )));
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(classify_transport(&e, self.timeout)),
            }
        }
        if status == reqwest::StatusCode::FORBIDDEN {
            return Err(UcmError::Forbidden);
        }
        if !status.is_success() {
            return Err(UcmError::Http(status.as_u16()));
        }
        Ok(bytes::Bytes::from(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_decoding() {
        assert_eq!(
            decode_envelope(br#"{"response":{"challenge":"0000001496038514"},"status":0}"#)
                .unwrap()["challenge"],
            "0000001496038514"
        );
        match decode_envelope(br#"{"response":{"error_msg":"Invalid parameters!"},"status":-1}"#) {
            Err(Refusal::Status {
                status: -1,
                message: Some(m),
            }) => {
                assert_eq!(m, "Invalid parameters!")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode_envelope(b"<!DOCTYPE html><html><head><title>403 Forbidden</title>"),
            Err(Refusal::Html)
        ));
        assert!(matches!(
            decode_envelope(b"{\"resp"),
            Err(Refusal::Garbage(_))
        ));
        assert!(matches!(decode_envelope(b"{}"), Err(Refusal::Garbage(_))));
        assert!(matches!(
            decode_envelope(br#"{"status":"abc"}"#),
            Err(Refusal::Garbage(_))
        ));
    }

    #[test]
    fn only_a_non_zero_status_is_a_refusal() {
        let refusal = |s: &str| status_refusal(&serde_json::from_str(s).unwrap());
        assert!(matches!(
            refusal(r#"{"status":"-6"}"#),
            Some(Refusal::Status {
                status: -6,
                message: None
            })
        ));
        assert!(refusal(r#"{"status":0,"response":{}}"#).is_none());
        // A page of records has no status at all.
        assert!(refusal(r#"{"cdr_root":[]}"#).is_none());
    }

    #[test]
    fn token_is_lowercase_md5_of_challenge_and_password() {
        let mut h = Md5::new();
        h.update(b"0000001496038514");
        h.update(b"secret");
        let token = format!("{:x}", h.finalize());
        // md5("0000001496038514secret"), computed with md5sum.
        assert_eq!(token, "04f185ee5bc1d1878fe152a399b631d8");
    }
}
