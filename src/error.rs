//! Why a poll failed, in the vocabulary of `ucm_poll_errors_total{reason}`.

use std::time::Duration;

/// The `reason` label values, all pre-created at 0 so `increase()` sees the first failure.
pub const REASONS: [&str; 10] = [
    "connect",
    "timeout",
    "tls",
    "http",
    "forbidden",
    "auth",
    "permission",
    "rate_limited",
    "protocol",
    "decode",
];

#[derive(Debug, thiserror::Error)]
pub enum UcmError {
    #[error("cannot connect to the UCM: {0}")]
    Connect(String),
    #[error("the UCM did not answer within {0:?}")]
    Timeout(Duration),
    #[error("TLS handshake with the UCM failed: {0} (for a self-signed UCM certificate set tls.ca_file; old UCM62xx firmware may need the native-tls build)")]
    Tls(String),
    #[error("the UCM answered HTTP {0}")]
    Http(u16),
    #[error("the UCM answered with its HTML 403 page: the exporter's IP address is not in the API user's Permitted IP(s) (or the HTTP server whitelist)")]
    Forbidden,
    #[error("{0}")]
    Auth(String),
    #[error("the API user may not use action {action} (status -47): grant it under HTTPS API Settings (New)")]
    Permission { action: String },
    #[error("the UCM says it is asked too often (status {status}); waiting {wait:?}")]
    RateLimited { status: i64, wait: Duration },
    #[error("unexpected answer from the UCM: {0}")]
    Protocol(String),
    #[error("cannot decode the UCM's answer: {0}")]
    Decode(String),
}

impl UcmError {
    pub fn reason(&self) -> &'static str {
        match self {
            UcmError::Connect(_) => "connect",
            UcmError::Timeout(_) => "timeout",
            UcmError::Tls(_) => "tls",
            UcmError::Http(_) => "http",
            UcmError::Forbidden => "forbidden",
            UcmError::Auth(_) => "auth",
            UcmError::Permission { .. } => "permission",
            UcmError::RateLimited { .. } => "rate_limited",
            UcmError::Protocol(_) => "protocol",
            UcmError::Decode(_) => "decode",
        }
    }
}

/// Meaning of the UCM's status codes, from the error table every client copies from the
/// vendor's API guide; used to make log lines and errors readable.
pub fn status_meaning(status: i64) -> &'static str {
    match status {
        0 => "success",
        -1 => "invalid parameters",
        -5 => "need authentication",
        -6 => "cookie error",
        -7 => "connection closed",
        -8 => "system timeout",
        -9 => "abnormal system error",
        -15 => "invalid value",
        -16 => "no such item",
        -19 => "unsupported",
        -24 => "failed to operate",
        -25 => "failed to update",
        -26 => "failed to get data",
        -37 => "wrong account or password",
        -45 | -46 => "operating too frequently, retry after 15 s",
        -47 => "no permission",
        -51 => "another task is running",
        -57 => "operating too frequently, retry after 60 s",
        -68 => "login restriction",
        -70 => "login forbidden",
        -71 => "username does not exist",
        _ => "unknown status",
    }
}
