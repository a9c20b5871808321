//! The UCM's answer envelope, `{"response": {...}, "status": N}`, and the one policy that turns
//! a refusal into an error and tells the session what to do about it (docs/ucm-api.md §3).

use std::time::Duration;

use serde_json::Value;

use crate::error::{Reason, UcmError};

/// What an answer turned out to be when it was not the one asked for. Decoding is the caller's
/// job, so that a CDR page is parsed exactly once.
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

/// What a non-zero status asks of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// The cookie is gone: one fresh login may help.
    SessionGone,
    /// Asked too often, or too busy to answer: no request at all for this long.
    RateLimited(Duration),
    /// A rejected login: repeating it quickly is what gets an IP blacklisted.
    LoginRejected,
    /// The API user lacks the action.
    Permission,
    /// Anything else: reported, nothing to change.
    Other,
}

pub fn classify_status(status: i64) -> StatusClass {
    match status {
        -5 | -6 => StatusClass::SessionGone,
        // A system timeout is an overloaded UCM, not a lost session: logging in again at once
        // would only add to its load.
        -8 => StatusClass::RateLimited(Duration::from_secs(30)),
        -45 | -46 => StatusClass::RateLimited(Duration::from_secs(15)),
        -57 => StatusClass::RateLimited(Duration::from_secs(60)),
        -37 | -68 | -70 | -71 => StatusClass::LoginRejected,
        -47 => StatusClass::Permission,
        _ => StatusClass::Other,
    }
}

/// The error for a refusal of `action`.
pub fn refusal_error(action: &str, refusal: Refusal) -> UcmError {
    let (status, message) = match refusal {
        Refusal::Html => return UcmError::Forbidden,
        Refusal::Garbage(why) => return UcmError::Decode(format!("{action}: {why}")),
        Refusal::Status { status, message } => (status, message),
    };
    let meaning = status_meaning(status);
    match classify_status(status) {
        StatusClass::SessionGone => UcmError::Auth(format!(
            "the UCM rejected a fresh session on {action} (status {status}: {meaning})"
        )),
        StatusClass::RateLimited(wait) => UcmError::RateLimited { status, wait },
        StatusClass::LoginRejected => {
            UcmError::Auth(format!("{action} rejected: status {status} ({meaning})"))
        }
        StatusClass::Permission => UcmError::Permission {
            action: action.to_string(),
        },
        StatusClass::Other => UcmError::Protocol(format!(
            "{action} answered status {status} ({meaning}){}",
            message.map(|m| format!(": {m}")).unwrap_or_default()
        )),
    }
}

/// Decodes a generic envelope into its `response`.
pub fn decode_envelope(body: &[u8]) -> Result<Value, Refusal> {
    let mut v: Value = match serde_json::from_slice(body) {
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
        Some(_) => Ok(v
            .get_mut("response")
            .map(Value::take)
            .unwrap_or(Value::Null)),
        None => Err(Refusal::Garbage("JSON without a status field".into())),
    }
}

/// The refusal an envelope declares: a non-zero `status`, with the UCM's message if it gave one.
pub fn status_refusal(v: &Value) -> Option<Refusal> {
    let status = v.get("status").and_then(lenient_i64).filter(|s| *s != 0)?;
    Some(Refusal::Status {
        status,
        message: v
            .pointer("/response/error_msg")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// Firmware writes numbers both as JSON numbers and as strings.
pub fn lenient_i64(v: &Value) -> Option<i64> {
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

/// Meaning of the UCM's status codes, from the error table of the vendor's API guide; used to
/// make log lines and errors readable.
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

/// Whether an error says the action is not there for this user or firmware, rather than that
/// the UCM or the network failed this once.
pub fn is_refusal(e: &UcmError) -> bool {
    matches!(
        e.reason(),
        Reason::Permission | Reason::Protocol | Reason::Decode
    )
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
    fn each_status_maps_to_one_reason() {
        let reason = |status| {
            refusal_error(
                "cdrapi",
                Refusal::Status {
                    status,
                    message: None,
                },
            )
            .reason()
        };
        let cases = [
            (-6, Reason::Auth),
            (-8, Reason::RateLimited),
            (-37, Reason::Auth),
            (-71, Reason::Auth),
            (-45, Reason::RateLimited),
            (-57, Reason::RateLimited),
            (-47, Reason::Permission),
            (-1, Reason::Protocol),
            (-9, Reason::Protocol),
        ];
        for (status, want) in cases {
            assert_eq!(reason(status), want, "status {status}");
        }
        assert_eq!(
            refusal_error("x", Refusal::Html).reason(),
            Reason::Forbidden
        );
        assert_eq!(
            refusal_error("x", Refusal::Garbage("y".into())).reason(),
            Reason::Decode
        );
        assert_eq!(
            classify_status(-57),
            StatusClass::RateLimited(Duration::from_secs(60))
        );
    }
}
