//! `ucm-exporter check`: proves a configuration works end to end before it is deployed.

use std::sync::Arc;

use bytes::Bytes;
use chrono::NaiveDateTime;
use serde_json::{Map, Value};

use crate::cdr::{self, ExtensionPattern};
use crate::clock::Clock;
use crate::clock::SharedClock;
use crate::clock::{local_secs, LocalSecs, Zone};
use crate::config::Settings;
use crate::config::Target;
use crate::error::UcmError;
use crate::live::Live;
use crate::poll::{probe_end, question, snapshot, EndProbe, Snapshot, Span};
use crate::ucm::cdrapi::{decode_page, page_params, PAGE_SIZE};
use crate::ucm::login_guard::LoginGuard;
use crate::ucm::{decode_envelope, Refusal, Session};
use crate::ucm_clock::UcmClock;

/// Checks every target; returns the report lines and whether all passed. Each target gets one
/// login attempt at most, and none while rejected logins are rationed (see
/// [`LoginGuard`]) unless `force`.
pub async fn run(settings: &Settings, clock: SharedClock, force: bool) -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    let mut ok = true;
    for t in &settings.targets {
        let guard = LoginGuard::new(&settings.state_dir, &t.url, &t.username);
        match check_target(t, clock.clone(), guard, force, &settings.extension_pattern).await {
            Ok((summary, paging)) => {
                lines.push(format!("{}: OK: {summary}", t.name));
                lines.extend(paging.into_iter().map(|p| format!("  {p}")));
            }
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
    ext: &ExtensionPattern,
) -> Result<(String, Vec<String>), UcmError> {
    let session = Arc::new(
        Session::new(t, clock.clone(), Arc::new(()))
            .map_err(|e| UcmError::Protocol(format!("{e:#}")))?
            .with_login_guard(guard, force),
    );
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
    // The UCM's own zone, as the exporter would read it, and what the UCM says of its clock.
    let ucm_clock = Arc::new(UcmClock::new(
        t,
        clock.clone(),
        Arc::new(crate::metrics::TargetMetrics::new(1)),
        Arc::default(),
    ));
    ucm_clock.read(&session).await?;
    let zone = ucm_clock.zone();
    let since = local_secs(clock.local_now(zone)) - 24 * 3600;
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
    let mut paging = vec![format!("clock: {}", ucm_clock.describe())];
    paging.extend(probe_paging(&session, since, entries).await?);
    paging.push(probe_windows(&session, t, zone, since, clock.as_ref(), ext).await?);
    paging.extend(probe_collectors(&session, t, clock, ucm_clock, ext).await);
    session.logout().await;
    let summary = format!(
        "logged in as {} on {model}; first CDR page of the last 24 h holds {entries} entries{}",
        t.username,
        newest
            .map(|n| format!(", newest call started {n} (UCM local time)"))
            .unwrap_or_default()
    );
    Ok((summary, paging))
}

/// The call key and start of each entry of a page.
fn keys(body: &Bytes) -> Result<Vec<(u64, Option<NaiveDateTime>)>, Refusal> {
    Ok(decode_page(body)?
        .iter()
        .map(|e| (e.call_key(), e.start()))
        .collect())
}

/// Asks a few small pages to see how this UCM pages (docs/ucm-api.md §5.4), and says what the
/// exporter will do about anything unusual. `first_page` is how many of 100 entries the first
/// page held.
async fn probe_paging(
    session: &Session,
    since: LocalSecs,
    first_page: usize,
) -> Result<Vec<String>, UcmError> {
    let page = |from: LocalSecs, offset: usize, n: usize| {
        session.call("cdrapi", page_params(from, offset, n), keys)
    };
    let mut notes = Vec::new();
    let a = page(since, 0, 2).await?;
    if a.len() > 2 {
        notes.push(format!(
            "paging: WARNING: numRecords is ignored (asked for 2, got {}): the exporter takes such an answer as the whole window",
            a.len()
        ));
    }
    if a.len() < 2 {
        notes.push("paging: too few calls in the last 24 h to probe paging".into());
        return Ok(notes);
    }
    let b = page(since, 1, 2).await?;
    notes.push(match b.first() {
        Some(k) if k.0 == a[1].0 => "paging: OK: offset is honoured".into(),
        Some(k) if k.0 == a[0].0 => "paging: WARNING: offset is ignored (offset 1 repeats the first entry): windows longer than a page are read in time slices, a few more requests each".into(),
        _ => "paging: WARNING: offset 1 answered neither the first nor the second entry of offset 0; counts stay exact, a poll may read more".into(),
    });
    notes.push(match (a[0].1, a[1].1) {
        (Some(x), Some(y)) if x <= y => "paging: OK: oldest call first".into(),
        (Some(_), Some(_)) => "paging: OK: newest call first (the exporter does not depend on the order)".into(),
        _ => "paging: WARNING: a call start does not parse; such entries are counted in ucm_cdr_skipped_total".into(),
    });
    if first_page > 0 && first_page < 100 {
        let more = page(since, first_page, 100).await?;
        notes.push(if more.is_empty() {
            "paging: OK: no page cap below 100 seen".into()
        } else {
            format!("paging: WARNING: pages hold at most {first_page} entries: the exporter learns the cap and pages through it")
        });
    }
    // A window that starts exactly at a known call must hold it: if not, the UCM reads the
    // filter in another zone than it writes its CDR times in.
    if let Some(start) = a[1].1 {
        let from = local_secs(start);
        let probe = page(from, 0, 2).await?;
        notes.push(if probe.iter().any(|k| k.0 == a[1].0) {
            "paging: OK: startTime is read in the UCM's local time, like its CDR times".into()
        } else {
            "paging: WARNING: a window starting at a call's own start misses that call: the UCM seems to read startTime in \
             another zone (UTC?) than its CDR times; check the UCM's time zone settings"
                .into()
        });
    }
    Ok(notes)
}

/// Which CDR windows the exporter will use with this UCM and API user (docs/design.md §2.4):
/// the same probes a running exporter makes, on the last day's calls.
async fn probe_windows(
    session: &Session,
    t: &Target,
    zone: Zone,
    since: LocalSecs,
    clock: &dyn Clock,
    ext: &ExtensionPattern,
) -> Result<String, UcmError> {
    if t.window_mode == crate::config::WindowPreference::Start {
        return Ok("windows: start (window_mode: start)".into());
    }
    let spans = session
        .call("cdrapi", page_params(since, 0, PAGE_SIZE), |body| {
            Ok(decode_page(body)?
                .iter()
                .filter_map(|e| cdr::classify(e, ext))
                .map(|c| Span::of(&c))
                .collect::<Vec<_>>())
        })
        .await?;
    let settled = local_secs(clock.local_now(zone))
        - i64::try_from(t.end_margin.as_secs()).unwrap_or(i64::MAX)
        - 60;
    let end = if t.window_mode.allows_end() {
        probe_end(session, question(&spans, settled), None, ext).await
    } else {
        None
    };
    if let Some(EndProbe::Honoured(param)) = end {
        return Ok(format!(
            "windows: OK: end windows (the UCM filters on call end with {param}): each call is read about once"
        ));
    }
    let end_note = match end {
        Some(EndProbe::NotHonoured(why)) => format!("end filter not honoured ({why})"),
        Some(EndProbe::Unanswered(why)) => format!("end filter not probed ({why})"),
        _ if !t.window_mode.allows_end() => "end windows not allowed by window_mode".into(),
        _ => "end filter not probed (no call of 10 s or more in the last day)".into(),
    };
    if !t.window_mode.allows_channels() {
        return Ok(format!("windows: start ({end_note})"));
    }
    Ok(match snapshot(session, zone).await {
        Snapshot::Rows(rows) => format!(
            "windows: OK: channel-bounded ({end_note}; the channel lists are readable, {} rows now)",
            rows.len()
        ),
        Snapshot::Refused(e) | Snapshot::Failed(e) => format!(
            "windows: start ({end_note}; the channel lists cannot be read: {e}): grant listBridgedChannels and listUnBridgedChannels for a lighter load"
        ),
    })
}

/// Which live-status collectors work with this API user, and what to grant for the others.
async fn probe_collectors(
    session: &Arc<Session>,
    t: &Target,
    clock: SharedClock,
    ucm_clock: Arc<UcmClock>,
    ext: &ExtensionPattern,
) -> Vec<String> {
    let metrics = Arc::new(crate::metrics::TargetMetrics::new(1));
    let mut live =
        Live::new(t, session.clone(), metrics, ext.clone(), clock).with_ucm_clock(ucm_clock);
    live.probe()
        .await
        .into_iter()
        .map(|(c, result)| match result {
            Ok(()) => format!("collector {}: OK", c.as_str()),
            Err(e) if crate::ucm::is_refusal(&e) => format!(
                "collector {}: REFUSED ({e}); grant {} to the API user for it",
                c.as_str(),
                c.actions()
            ),
            Err(e) => format!("collector {}: FAILED ({}): {e}", c.as_str(), e.reason()),
        })
        .collect()
}
