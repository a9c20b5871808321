//! HTTPS to one UCM: the client and its TLS trust, bounded reads of an answer, and transport
//! failures sorted into the reasons an operator can act on.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::config::Target;
use crate::error::UcmError;

/// A larger answer than this is refused rather than buffered: 1000 CDR entries are ~2 MiB.
const MAX_BODY: usize = 64 << 20;
/// How long an idle connection is kept for the next request. A poll's pages follow each other
/// closely, and the live status runs right after the poll (`fleet.rs`), so both share one
/// connection; between polls it is closed, because an idle connection keeps the read buffer its
/// largest answer grew (up to ~400 KiB for CDR pages) and about 40 KB of buffers and channels
/// even after small answers, which for a fleet of a thousand targets was most of the exporter's
/// memory. One TLS handshake per poll, resumed from the UCM's ticket, is all this costs.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The HTTP client of one target and where it sends requests.
pub(crate) struct Transport {
    http: reqwest::Client,
    /// Parsed once: parsing it for every request (host name rules included) was a visible share
    /// of a fleet's CPU.
    api_url: reqwest::Url,
    timeout: Duration,
}

impl Transport {
    pub(crate) fn new(target: &Target) -> anyhow::Result<Self> {
        // Checked and read even where OpenSSL does the TLS, so that both refuse the same files.
        let tls = super::tls::client_config(target)?;
        Ok(Transport {
            http: http_client(target, tls)?,
            api_url: reqwest::Url::parse(&target.api_url())
                .with_context(|| format!("url {:?} is not a URL", target.url))?,
            timeout: target.request_timeout,
        })
    }

    /// POSTs `{"request": request}` and returns the body of a 200 answer, bounded in size.
    pub(crate) async fn send(&self, action: &str, request: &Value) -> Result<Bytes, UcmError> {
        let body = serde_json::to_vec(&json!({ "request": request })).expect("JSON value encodes");
        let mut resp = self
            .http
            .post(self.api_url.clone())
            .header("Content-Type", "application/json;charset=UTF-8")
            .body(body)
            .send()
            .await
            .map_err(|e| classify(&e, self.timeout))?;
        let status = resp.status();
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
                Err(e) => return Err(classify(&e, self.timeout)),
            }
        }
        if status == reqwest::StatusCode::FORBIDDEN {
            return Err(UcmError::Forbidden);
        }
        if !status.is_success() {
            return Err(UcmError::Http(status.as_u16()));
        }
        Ok(Bytes::from(buf))
    }
}

/// Builds the HTTP client of one target with its TLS trust settings (`tls`).
fn http_client(
    target: &Target,
    #[allow(unused_variables)] tls: rustls::ClientConfig,
) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .timeout(target.request_timeout)
        .connect_timeout(target.request_timeout.min(Duration::from_secs(10)))
        .pool_max_idle_per_host(1)
        .pool_idle_timeout(IDLE_TIMEOUT)
        .user_agent(concat!("ucm-exporter/", env!("CARGO_PKG_VERSION")));
    #[cfg(not(feature = "native-tls"))]
    {
        b = b.tls_backend_preconfigured(tls);
    }
    #[cfg(feature = "native-tls")]
    {
        b = b.tls_backend_native();
        if let Some(ca) = &target.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| anyhow::anyhow!("cannot read CA file {}: {e}", ca.display()))?;
            // Pin: trust only the given CA, so a UCM's self-signed certificate is trusted and
            // nothing else is.
            b = b.tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem)?);
        }
        if target.insecure_skip_verify {
            b = b.tls_danger_accept_invalid_certs(true);
        }
    }
    Ok(b.build()?)
}

/// reqwest folds TLS, DNS and refused connections into one error type; the chain of causes
/// tells them apart.
fn classify(e: &reqwest::Error, timeout: Duration) -> UcmError {
    if e.is_timeout() {
        return UcmError::Timeout(timeout);
    }
    let mut chain = String::new();
    let mut src: Option<&dyn std::error::Error> = Some(e);
    let mut tls = false;
    let mut cut = false;
    while let Some(s) = src {
        if s.downcast_ref::<rustls::Error>().is_some() {
            tls = true;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            cut |= matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            );
        }
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            cut |= h.is_incomplete_message() || h.is_canceled();
        }
        if !chain.is_empty() {
            chain.push_str(": ");
        }
        chain.push_str(&s.to_string());
        src = s.source();
    }
    let lower = chain.to_ascii_lowercase();
    // After the handshake (outside the connect phase) a connection that ends early is no TLS
    // failure, even though rustls words a missing close_notify as one: the CA advice of
    // `Tls` would send the operator the wrong way.
    if !tls && !e.is_connect() && (cut || lower.contains("close_notify")) {
        return UcmError::Dropped(chain);
    }
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
