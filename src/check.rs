//! `ucm-exporter check`: proves a configuration works end to end before it is deployed.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::error::UcmError;
use crate::state::local_secs;
use crate::ucm::cdrapi::{decode_page, page_params};
use crate::ucm::login_guard::LoginGuard;
use crate::ucm::{decode_envelope, Session};

/// Checks every target; returns the report lines and whether all passed. Each target gets one
/// login attempt at most, and none while rejected logins are rationed (see
/// [`LoginGuard`]) unless `force`.
pub async fn run(settings: &Settings, clock: SharedClock, force: bool) -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    let mut ok = true;
    for t in &settings.targets {
        let guard = LoginGuard::new(&settings.state_dir, &t.url, &t.username);
        match check_target(t, clock.clone(), guard, force).await {
            Ok(summary) => lines.push(format!("{}: OK: {summary}", t.name)),
            Err(e) => {
                ok = false;
                lines.push(format!("{}: FAILED ({}): {e}", t.name, e.reason()));
            }
        }
    }
    (lines, ok)
}

async fn check_target(
    t: &crate::config::Target,
    clock: SharedClock,
    guard: LoginGuard,
    force: bool,
) -> Result<String, UcmError> {
    let session = Session::new(t, clock.clone(), Arc::new(()))
        .map_err(|e| UcmError::Protocol(format!("{e:#}")))?
        .with_login_guard(guard, force);
    let model = match session
        .call("getSystemGeneralStatus", Map::new(), |b| decode_envelope(b))
        .await
    {
        Ok(v) => {
            let s = |k: &str| {
                v.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            format!("{} firmware {}", s("product-model"), s("prog-version"))
        }
        Err(UcmError::Permission { .. }) => {
            "model unknown (no permission for getSystemGeneralStatus)".into()
        }
        Err(e) => return Err(e),
    };
    let since = local_secs(clock.local_now(t.timezone)) - 24 * 3600;
    let params = page_params(since, 0, 100);
    let (entries, newest) = session
        .call("cdrapi", params, |body| {
            let entries = decode_page(body)?;
            Ok((
                entries.len(),
                entries.iter().filter_map(|e| e.start()).max(),
            ))
        })
        .await?;
    session.logout().await;
    Ok(format!(
        "logged in as {} on {model}; first CDR page of the last 24 h holds {entries} entries{}",
        t.username,
        newest
            .map(|n| format!(", newest call started {n} (UCM local time)"))
            .unwrap_or_default()
    ))
}
