//! Incremental CDR collection for one target.
//!
//! The UCM filters `cdrapi` on call *start*, while a record appears only when its call *ends*.
//! A poll therefore reads from the newest start seen (the watermark) minus a short overlap, and
//! every `sweep_interval` a sweep reads back the whole `max_call_duration`, catching long calls
//! without making every poll cost in proportion to hours of history. Overlapping windows and
//! shifting pages deliver records more than once; call and leg keys make each count once.
//!
//! Counting order: a poll collects its new keys and increments aside, writes the state that
//! marks them seen, and only then applies the increments. A crash loses at most that poll's
//! calls; nothing is counted twice.

use foldhash::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{NaiveDateTime, TimeZone};
use serde_json::{Map, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::cdr::{self, CdrResponse, DecodeError, ExtensionPattern};
use crate::config::Target;
use crate::error::UcmError;
use crate::metrics::{CallTally, TargetMetrics};
use crate::session::{decode_envelope, looks_like_forbidden_page, Refusal, Session};
use crate::state::{self, local_secs, Loaded, LocalSecs, PollState};

/// Entries per cdrapi page: the UCM's documented maximum.
pub const PAGE_SIZE: usize = 1000;
/// A catch-up commits (state written, counters applied) at least every this many pages, so a
/// long backlog shows progress and bounds what a crash can lose.
const COMMIT_EVERY_PAGES: usize = 10;
/// Guard against a UCM that ignores `offset` and would page forever.
const MAX_PAGES_PER_POLL: usize = 2000;
/// The first start's baseline reaches this much further back than `max_call_duration`, so a
/// wrong time zone setting (off by up to a day) cannot make history look new.
const BASELINE_SLACK: i64 = 24 * 3600;

/// The figures of one successful poll, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PollReport {
    pub pages: usize,
    pub entries: usize,
    pub new_calls: u64,
    pub new_records: u64,
    pub sweep: bool,
    pub baseline: bool,
}

/// Collected but not yet committed results of a poll. Public, with [`ingest`], so that the
/// benchmarks measure the exact per-page path a poll runs rather than a copy of it.
#[derive(Default)]
pub struct Pending {
    calls: Vec<(u64, LocalSecs)>,
    legs: Vec<(u64, LocalSecs)>,
    call_set: HashSet<u64>,
    leg_set: HashSet<u64>,
    tally: CallTally,
    watermark: Option<LocalSecs>,
    trunks: std::collections::BTreeSet<String>,
}

pub struct Poller {
    target: Target,
    session: Arc<Session>,
    metrics: Arc<TargetMetrics>,
    extensions: ExtensionPattern,
    state_path: PathBuf,
    state: Option<PollState>,
    last_sweep: Option<Instant>,
    trunks_listed: bool,
}

/// A target's readiness: set once its first poll attempt has finished, either way.
#[derive(Default)]
pub struct Ready(AtomicBool);

impl Ready {
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

fn cdr_time(t: LocalSecs) -> String {
    state::from_local_secs(t)
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

/// One cdrapi page of records starting at `from` (UCM local time).
fn page_params(from: LocalSecs, offset: usize) -> Map<String, Value> {
    let mut params = Map::new();
    params.insert("format".into(), "json".into());
    params.insert("numRecords".into(), PAGE_SIZE.to_string().into());
    params.insert("offset".into(), offset.to_string().into());
    params.insert("startTime".into(), cdr_time(from).into());
    params
}

impl Poller {
    pub fn new(
        target: Target,
        metrics: Arc<TargetMetrics>,
        extensions: ExtensionPattern,
        state_dir: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let session = Arc::new(Session::new(&target, metrics.clone())?);
        let state_path = state::path_for(state_dir, &target.name);
        let state = match state::load(&state_path, &target.url) {
            Loaded::Found(s) => {
                tracing::info!(
                    path = %state_path.display(),
                    known_calls = s.calls.len(),
                    "resuming from saved poll state"
                );
                metrics.add_trunks(&s.trunks);
                Some(s)
            }
            Loaded::Missing => {
                tracing::info!("no saved poll state: the first poll takes a baseline and counts only calls after it");
                None
            }
            Loaded::Unusable(why) => {
                tracing::warn!("{why}; moving it aside and taking a new baseline");
                state::quarantine(&state_path);
                None
            }
        };
        Ok(Poller {
            target,
            session,
            metrics,
            extensions,
            state_path,
            state,
            last_sweep: None,
            trunks_listed: false,
        })
    }

    pub fn poll_interval(&self) -> Duration {
        self.target.poll_interval
    }

    pub fn name(&self) -> &str {
        &self.target.name
    }

    pub fn state(&self) -> Option<&PollState> {
        self.state.as_ref()
    }

    /// Polls at once, then every `poll_interval` shifted by `phase`, until `shutdown`; then saves
    /// the state and logs out. Targets started together get different phases so that their
    /// sweeps, which read hours of records, do not all hold their pages in memory at once.
    pub async fn run(mut self, shutdown: CancellationToken, ready: Arc<Ready>, phase: Duration) {
        let interval = self.target.poll_interval;
        let mut ticker = tokio::time::interval_at(Instant::now() + interval + phase, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut polled = false;
        loop {
            if polled {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = ticker.tick() => {}
                }
            } else if shutdown.is_cancelled() {
                break;
            }
            polled = true;
            tokio::select! {
                _ = shutdown.cancelled() => {
                    tracing::info!("shutdown: abandoning the poll in flight; its uncommitted records will be read again");
                    break;
                }
                _ = self.poll_and_record() => {}
            }
            ready.set();
        }
        self.save_state();
        self.session.logout().await;
    }

    /// One poll with its health metrics recorded.
    pub async fn poll_and_record(&mut self) -> Result<PollReport, UcmError> {
        let started = std::time::Instant::now();
        let result = self.poll_once().await;
        self.metrics
            .poll_duration
            .set(started.elapsed().as_secs_f64());
        match &result {
            Ok(r) => {
                self.metrics.up.set(1);
                self.metrics
                    .last_success
                    .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
                tracing::debug!(
                    pages = r.pages,
                    entries = r.entries,
                    new_calls = r.new_calls,
                    sweep = r.sweep,
                    baseline = r.baseline,
                    "poll done"
                );
            }
            Err(e) => {
                self.metrics.up.set(0);
                self.metrics
                    .poll_errors
                    .with_label_values(&[e.reason()])
                    .inc();
                tracing::warn!(reason = e.reason(), "poll failed: {e}");
            }
        }
        result
    }

    fn save_state(&self) {
        if let Some(s) = &self.state {
            if let Err(e) = state::save(&self.state_path, s) {
                tracing::error!(
                    "cannot save poll state: {e:#}; after a crash some calls may be counted twice"
                );
            }
        }
    }

    /// One poll: a baseline on first start, else an incremental read or a sweep.
    pub async fn poll_once(&mut self) -> Result<PollReport, UcmError> {
        let max_call = self.target.max_call_duration.as_secs() as i64;
        let baseline = self.state.is_none();
        let sweep = baseline
            || self
                .last_sweep
                .is_none_or(|t| t.elapsed() >= self.target.sweep_interval);
        let from = match &self.state {
            None => {
                let now = chrono::Utc::now()
                    .with_timezone(&self.target.timezone)
                    .naive_local();
                local_secs(now) - max_call - BASELINE_SLACK
            }
            Some(s) => {
                let reach = if sweep {
                    max_call
                } else {
                    self.target.overlap.as_secs() as i64
                };
                (s.watermark.unwrap_or(s.baseline_start) - reach).max(s.baseline_start)
            }
        };
        let horizon = self.state.as_ref().map_or(from, |s| s.horizon(max_call));
        let mut report = PollReport {
            sweep,
            baseline,
            ..Default::default()
        };
        let mut pending = Pending::default();
        let mut offset = 0usize;
        let mut prefetched: Option<AbortOnDropHandle<Result<Bytes, UcmError>>> = None;
        loop {
            let body = match prefetched.take() {
                Some(fetch) => fetch
                    .await
                    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?,
                None => {
                    self.session
                        .fetch("cdrapi", page_params(from, offset))
                        .await?
                }
            };
            // After a full page the next one is likely full too (a backlog or a sweep): ask for
            // it now, so the UCM serves it while this one is decoded. A multi-page read thus
            // asks for one page past its end; a poll of one page still costs one request.
            if report.pages > 0 {
                let session = self.session.clone();
                let params = page_params(from, offset + PAGE_SIZE);
                prefetched = Some(AbortOnDropHandle::new(tokio::spawn(async move {
                    session.fetch("cdrapi", params).await
                })));
            }
            let state = self.state.as_ref();
            let tz = self.target.timezone;
            let n = match ingest(&body, state, &mut pending, &self.extensions, tz, horizon) {
                Ok(n) => n,
                Err(refusal) => {
                    // Aborted first: the session lock is held by the request in flight.
                    drop(prefetched.take());
                    return Err(self.session.refused("cdrapi", refusal).await);
                }
            };
            drop(body);
            report.pages += 1;
            report.entries += n;
            if n != PAGE_SIZE {
                // Short page: the end. A longer page than asked for: a firmware that ignores
                // numRecords and sent everything.
                break;
            }
            offset += n;
            if report.pages >= MAX_PAGES_PER_POLL {
                tracing::warn!(
                    pages = report.pages,
                    "stopping a poll that pages without end; does this UCM ignore offset?"
                );
                break;
            }
            // A baseline commits only whole: a state saved halfway would make the rest of the
            // history look new after a failure.
            if !baseline && report.pages % COMMIT_EVERY_PAGES == 0 {
                self.commit(&mut pending, &mut report, baseline, from);
            }
        }
        drop(prefetched);
        self.commit(&mut pending, &mut report, baseline, from);
        if sweep {
            self.last_sweep = Some(Instant::now());
        }
        if !self.trunks_listed {
            self.trunks_listed = true;
            self.list_trunks().await;
        }
        Ok(report)
    }

    /// Marks the pending keys seen, saves the state, then applies the counts.
    fn commit(
        &mut self,
        pending: &mut Pending,
        report: &mut PollReport,
        baseline: bool,
        from: LocalSecs,
    ) {
        let p = std::mem::take(pending);
        let state = self
            .state
            .get_or_insert_with(|| PollState::new(&self.target.url, from));
        if baseline {
            state.baseline_start = state.baseline_start.min(from);
        }
        state.calls.extend(p.calls.iter().copied());
        state.legs.extend(p.legs.iter().copied());
        if let Some(w) = p.watermark {
            state.watermark = Some(state.watermark.map_or(w, |old| old.max(w)));
        }
        for t in p.trunks {
            if !t.is_empty() && !state.trunks.contains(&t) {
                state.trunks.push(t);
            }
        }
        let horizon = state.horizon(self.target.max_call_duration.as_secs() as i64);
        state.prune(horizon);
        self.save_state();
        report.new_calls += p.tally.call_count();
        report.new_records += p.tally.records;
        if !baseline {
            self.metrics.apply(&p.tally);
        }
        if let Some(s) = &self.state {
            self.metrics.add_trunks(&s.trunks);
        }
    }

    /// Asks the UCM for its trunks once, so every trunk's series exist before its first call.
    /// Optional: many API users lack the permission (-47), which is fine.
    async fn list_trunks(&mut self) {
        let mut params = Map::new();
        params.insert("options".into(), "trunk_name".into());
        params.insert("item_num".into(), "1000".into());
        params.insert("page".into(), "1".into());
        match self
            .session
            .call("listVoIPTrunk", params, decode_envelope)
            .await
        {
            Ok(resp) => {
                let names: Vec<String> = resp
                    .get("voip_trunk")
                    .and_then(Value::as_array)
                    .map(|rows| {
                        rows.iter()
                            .filter_map(|r| r.get("trunk_name").and_then(Value::as_str))
                            .filter(|n| !n.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                if let Some(s) = &mut self.state {
                    for n in &names {
                        if !s.trunks.contains(n) {
                            s.trunks.push(n.clone());
                        }
                    }
                }
                self.metrics.add_trunks(&names);
                tracing::debug!(trunks = names.len(), "listed VoIP trunks");
            }
            Err(e) => tracing::debug!(
                "cannot list trunks ({e}); trunk series appear with their first call"
            ),
        }
    }

    /// Saves the state now (used at shutdown by callers that drive polls themselves).
    pub async fn close(self) {
        self.save_state();
        self.session.logout().await;
    }
}

/// Converts a naive UCM time to Unix time in the configured zone; ambiguous times (DST
/// fall-back) take the earlier instant, skipped ones are read as UTC offset-free.
fn unix_time(tz: chrono_tz::Tz, t: NaiveDateTime) -> i64 {
    tz.from_local_datetime(&t)
        .earliest()
        .map_or_else(|| t.and_utc().timestamp(), |d| d.timestamp())
}

/// Decodes a cdrapi answer into its entries, or says why it is not a page of records.
pub fn decode_page(body: &[u8]) -> Result<Vec<cdr::Entry<'_>>, Refusal> {
    match cdr::parse_cdr_response(body) {
        Ok(CdrResponse::Records(e)) => Ok(e),
        Ok(CdrResponse::Status { status, error_msg }) => Err(Refusal::Status {
            status,
            message: error_msg,
        }),
        Err(DecodeError::Html { .. }) if looks_like_forbidden_page(body) => Err(Refusal::Html),
        Err(e) => Err(Refusal::Garbage(e.to_string())),
    }
}

impl Pending {
    /// The increments gathered so far.
    pub fn tally(&self) -> &CallTally {
        &self.tally
    }
}

/// Decodes one cdrapi page and adds what is new in it to `pending`. Returns the number of
/// top-level entries on the page.
pub fn ingest(
    body: &[u8],
    state: Option<&PollState>,
    pending: &mut Pending,
    extensions: &ExtensionPattern,
    tz: chrono_tz::Tz,
    horizon: LocalSecs,
) -> Result<usize, Refusal> {
    let entries = decode_page(body)?;
    let n = entries.len();
    for entry in &entries {
        let Some(call) = cdr::classify(entry, extensions) else {
            continue;
        };
        let start = local_secs(call.start);
        // Outside every window the poller tracks: a UCM that ignored the filter, or history
        // already forgotten. Counting it could count it twice.
        if start < horizon {
            continue;
        }
        let seen_call = state.is_some_and(|s| s.calls.contains_key(&call.key))
            || pending.call_set.contains(&call.key);
        if !seen_call {
            pending.call_set.insert(call.key);
            pending.calls.push((call.key, start));
        }
        let mut new_legs = 0u64;
        for &k in &call.leg_keys {
            if !state.is_some_and(|s| s.legs.contains_key(&k)) && pending.leg_set.insert(k) {
                pending.legs.push((k, start));
                new_legs += 1;
            }
        }
        pending.tally.records += new_legs;
        pending.watermark = Some(pending.watermark.map_or(start, |w| w.max(start)));
        if !call.trunk.is_empty() && !pending.trunks.contains(call.trunk) {
            pending.trunks.insert(call.trunk.to_string());
        }
        // A call counts when its entry is new and it brings at least one leg not seen before:
        // an entry whose id changed but whose legs were all counted is the same call.
        if !seen_call && new_legs > 0 {
            pending
                .tally
                .add_call(&call, Some(unix_time(tz, call.start)));
        }
    }
    Ok(n)
}
