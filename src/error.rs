//! Why a poll failed: [`UcmError`] (mostly the UCM; also a state file that cannot be written),
//! and its [`Reason`], the vocabulary of `ucm_poll_errors_total{reason}`.

use std::fmt;
use std::time::Duration;

/// The `reason` label of `ucm_poll_errors_total`. Every value is created at 0, so that
/// `increase()` sees the first failure of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    Connect,
    Timeout,
    Tls,
    /// The UCM closed the connection after the TLS handshake, before its answer was complete.
    Dropped,
    Http,
    Forbidden,
    Auth,
    Permission,
    RateLimited,
    Protocol,
    Decode,
    /// The poll state could not be saved: the poll's calls are not counted yet.
    State,
    /// The target's request budget (of the poll or of the hour) was spent: the request was not
    /// sent.
    Budget,
}

impl Reason {
    pub const ALL: [Reason; 13] = [
        Reason::Connect,
        Reason::Timeout,
        Reason::Tls,
        Reason::Dropped,
        Reason::Http,
        Reason::Forbidden,
        Reason::Auth,
        Reason::Permission,
        Reason::RateLimited,
        Reason::Protocol,
        Reason::Decode,
        Reason::State,
        Reason::Budget,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Connect => "connect",
            Reason::Timeout => "timeout",
            Reason::Tls => "tls",
            Reason::Dropped => "dropped",
            Reason::Http => "http",
            Reason::Forbidden => "forbidden",
            Reason::Auth => "auth",
            Reason::Permission => "permission",
            Reason::RateLimited => "rate_limited",
            Reason::Protocol => "protocol",
            Reason::Decode => "decode",
            Reason::State => "state",
            Reason::Budget => "budget",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UcmError {
    #[error("cannot connect to the UCM: {0}")]
    Connect(String),
    #[error("the UCM did not answer within {0:?}")]
    Timeout(Duration),
    #[error("TLS handshake with the UCM failed: {0} (for a self-signed UCM certificate set tls.ca_file; old UCM62xx firmware may need the native-tls build)")]
    Tls(String),
    #[error("the UCM closed the connection before its answer was complete: {0} (TLS itself worked; the UCM's web server restarted or is overloaded, or a proxy or firewall on the way cuts connections; the next poll reads the same window again)")]
    Dropped(String),
    #[error("the UCM answered HTTP {0}")]
    Http(u16),
    #[error("the UCM answered with its HTML 403 page: the exporter's IP address is not in the API user's Permitted IP(s) (or the HTTP server whitelist)")]
    Forbidden,
    #[error("{0}")]
    Auth(String),
    #[error("the API user may not use action {action} (status -47): grant it under HTTPS API Settings (New)")]
    Permission { action: String },
    #[error(
        "the UCM asks to wait (status {status}: asked too often, or overloaded); waiting {wait:?}"
    )]
    RateLimited { status: i64, wait: Duration },
    #[error("unexpected answer from the UCM: {0}")]
    Protocol(String),
    #[error("cannot decode the UCM's answer: {0}")]
    Decode(String),
    /// The state file cannot be written, or is of a later version (the message says which).
    #[error("{0}")]
    State(String),
    #[error("the request budget of the {scope} is spent ({limit} requests): {asked} was not sent; the next poll reads on from what was committed")]
    Budget {
        scope: &'static str,
        limit: usize,
        asked: String,
    },
}

impl UcmError {
    pub fn reason(&self) -> Reason {
        match self {
            UcmError::Connect(_) => Reason::Connect,
            UcmError::Timeout(_) => Reason::Timeout,
            UcmError::Tls(_) => Reason::Tls,
            UcmError::Dropped(_) => Reason::Dropped,
            UcmError::Http(_) => Reason::Http,
            UcmError::Forbidden => Reason::Forbidden,
            UcmError::Auth(_) => Reason::Auth,
            UcmError::Permission { .. } => Reason::Permission,
            UcmError::RateLimited { .. } => Reason::RateLimited,
            UcmError::Protocol(_) => Reason::Protocol,
            UcmError::Decode(_) => Reason::Decode,
            UcmError::State(_) => Reason::State,
            UcmError::Budget { .. } => Reason::Budget,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed_once_with_a_distinct_label() {
        let labels: std::collections::BTreeSet<_> =
            Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), Reason::ALL.len());
        // Each variant appears in ALL: a new variant left out fails here, not in a dashboard.
        let errors = [
            UcmError::Connect(String::new()),
            UcmError::Timeout(Duration::ZERO),
            UcmError::Tls(String::new()),
            UcmError::Dropped(String::new()),
            UcmError::Http(500),
            UcmError::Forbidden,
            UcmError::Auth(String::new()),
            UcmError::Permission {
                action: String::new(),
            },
            UcmError::RateLimited {
                status: -45,
                wait: Duration::ZERO,
            },
            UcmError::Protocol(String::new()),
            UcmError::Decode(String::new()),
            UcmError::State(String::new()),
            UcmError::Budget {
                scope: "poll",
                limit: 0,
                asked: String::new(),
            },
        ];
        for e in &errors {
            assert!(Reason::ALL.contains(&e.reason()), "{e:?}");
        }
        let reasons: std::collections::BTreeSet<_> = errors.iter().map(UcmError::reason).collect();
        assert_eq!(reasons.len(), Reason::ALL.len());
    }
}
