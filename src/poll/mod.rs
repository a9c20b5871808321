//! Incremental CDR collection for one target.
//!
//! Each poll follows a [`Plan`] (see `plan`): a baseline on first start, else an incremental
//! read from the watermark minus the overlap, or a sweep back over `max_call_duration`.
//!
//! Counting order: a poll collects its new keys and increments aside (see `ingest`), writes the
//! state that marks them seen, and only then applies the increments. A crash loses at most that
//! poll's calls; nothing is counted twice (docs/design.md §3).

mod channels;
mod cost;
mod ingest;
mod ledger;
mod pager;
mod plan;
mod probe;
mod read;
mod report;
mod windows;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cdr::ExtensionPattern;
use crate::clock::{local_secs, LocalSecs, SharedClock};
use crate::config::Target;
use crate::error::UcmError;
use crate::metrics::TargetMetrics;
use crate::state::{self, PollState, UcmIdentity};
use crate::status::TargetStatus;
use crate::ucm::budget::{self, PollAllowance};
use crate::ucm::login_guard::LoginGuard;
use crate::ucm::{decode_envelope, is_refusal, Session};
use crate::ucm_clock::UcmClock;

pub use channels::{
    merge_windows, parse_rows, snapshot, uid_hash, ChannelWindows, Row, Snapshot, Tracker,
    MAX_TARGETED_READS, MERGE_GAP, READS_PER_ENDED_CALL,
};
pub use cost::{poll_budget, BASELINE_REQUESTS, POLL_MARGIN, READ_MARGIN};
pub(crate) use ingest::unix_time;
pub use ingest::{ingest, PageSummary, Pending, ReadNotes, Span};
pub use ledger::{Ledger, COMMIT_EVERY_PAGES};
pub use pager::{Next, Pager, PagingError, Slice, Slicer, Step};
pub use plan::{
    plan, Filter, Plan, PollKind, PollPlan, Reach, WindowMode, BASELINE_SLACK, WATERMARK_SLACK,
};
pub use probe::{
    failed_question, judge, probe_end, probe_failed, question, EndProbe, Question,
    HALF_WINDOW as PROBE_HALF_WINDOW, MIN_SPAN as PROBE_MIN_SPAN, PARAMS as END_FILTER_PARAMS,
};
pub use read::{Outcome, ReadAhead, Request, Strategy, Turn, MAX_PAGES_PER_READ};
pub use report::PollReport;
pub use windows::{
    plan_poll, Fast, Probing, Windows, ENDLESS_SPAN, MAX_UNANSWERED, PROBE_INTERVAL, SPANS_KEPT,
};

/// One target's collection: its session, what it has counted, and the window modes.
pub struct Poller {
    target: Target,
    reach: Reach,
    session: Arc<Session>,
    metrics: Arc<TargetMetrics>,
    status: Arc<TargetStatus>,
    clock: SharedClock,
    /// The zone the UCM's times are read in, shared with the live-status collectors, which
    /// keep it up to date.
    ucm_clock: Arc<UcmClock>,
    /// The UTC offset of the zone in use at the last poll, to see it go back.
    offset_seen: Option<i32>,
    extensions: ExtensionPattern,
    ledger: Ledger,
    /// [`Clock::monotonic`](crate::clock::Clock::monotonic) at the last sweep of this process.
    last_sweep: Option<Duration>,
    trunks_listed: bool,
    /// Which windows the polls use, and what the fast modes know.
    windows: Windows,
}

impl Poller {
    pub fn new(
        target: Target,
        metrics: Arc<TargetMetrics>,
        extensions: ExtensionPattern,
        state_dir: &std::path::Path,
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        let guard = LoginGuard::new(state_dir, &target.url, &target.username);
        let session = Arc::new(
            Session::new(&target, clock.clone(), metrics.clone())?.with_login_guard(guard, false),
        );
        let reach = Reach::of(&target);
        let path = state::path_for(state_dir, &target.name);
        let ledger = Ledger::open(
            path,
            &target.url,
            reach.sweep_back(),
            metrics.clone(),
            clock.now().timestamp(),
        );
        let mut windows = Windows::new(target.window_mode).with_reach(&reach);
        if let Some(r) = ledger.windows() {
            windows.restore(r, clock.now().timestamp(), clock.monotonic(), &reach);
        }
        metrics.set_window_mode(windows.mode.as_str());
        let status = Arc::<TargetStatus>::default();
        let ucm_clock = Arc::new(UcmClock::new(
            &target,
            clock.clone(),
            metrics.clone(),
            status.clone(),
        ));
        Ok(Poller {
            reach,
            target,
            session,
            metrics,
            status,
            clock,
            ucm_clock,
            offset_seen: None,
            extensions,
            ledger,
            last_sweep: None,
            trunks_listed: false,
            windows,
        })
    }

    pub fn poll_interval(&self) -> Duration {
        self.target.poll_interval
    }

    pub fn name(&self) -> &str {
        &self.target.name
    }

    pub fn state(&self) -> Option<&PollState> {
        self.ledger.state()
    }

    /// The target's session, for the live-status collectors: their requests queue behind the
    /// poll's and share its login.
    pub fn session(&self) -> Arc<Session> {
        self.session.clone()
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The UCM's clock as this target knows it, for the live-status collectors to keep up to
    /// date.
    pub fn ucm_clock(&self) -> Arc<UcmClock> {
        self.ucm_clock.clone()
    }

    /// What the HTTP side shows of this target.
    pub fn status(&self) -> Arc<TargetStatus> {
        self.status.clone()
    }

    /// Polls first after `phase`, then every `poll_interval`, until `shutdown`; then saves the
    /// state and logs out. Targets started together get phases spread over the interval, the
    /// first poll included (a baseline or a sweep, which reads hours of records), so that their
    /// long reads do not all hold their pages in memory at once.
    pub async fn run(mut self, shutdown: CancellationToken, phase: Duration) {
        let interval = self.target.poll_interval;
        let mut ticker = tokio::time::interval_at(Instant::now() + phase, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => {
                    tracing::info!("shutdown: abandoning the poll in flight; its uncommitted records will be read again");
                    break;
                }
                _ = self.poll_and_record() => {}
            }
            self.status.set_ready();
        }
        self.close().await;
    }

    /// One poll with its health metrics and status recorded.
    pub async fn poll_and_record(&mut self) -> Result<PollReport, UcmError> {
        self.status.poll_started();
        let started = std::time::Instant::now();
        let result = self.poll_once().await;
        self.metrics
            .poll_duration
            .set(started.elapsed().as_secs_f64());
        let now = self.clock.now();
        match &result {
            Ok(r) => {
                self.metrics.up.set(1);
                self.metrics
                    .last_success
                    .set(now.timestamp_millis() as f64 / 1000.0);
                self.status.succeeded(now);
                tracing::debug!(
                    kind = r.kind.as_str(),
                    pages = r.pages,
                    entries = r.entries,
                    new_calls = r.new_calls,
                    "poll done"
                );
            }
            Err(e) => {
                self.metrics.up.set(0);
                self.metrics.poll_errors.inc(&[e.reason().as_str()]);
                self.status.failed(now, e);
                tracing::warn!(reason = %e.reason(), "poll failed: {e}");
            }
        }
        result
    }

    /// This host's clock in the UCM's zone.
    fn local_now(&self) -> LocalSecs {
        local_secs(self.clock.local_now(self.ucm_clock.zone()))
    }

    /// The plan of the next poll, as of now.
    pub fn next_plan(&self) -> PollPlan {
        let now = self.clock.monotonic();
        self.windows.plan(
            self.ledger.state(),
            self.local_now(),
            self.last_sweep.map(|t| now.saturating_sub(t)),
            &self.reach,
        )
    }

    /// The window mode the polls use now.
    pub fn window_mode(&self) -> WindowMode {
        self.windows.mode
    }

    /// The spelling of the end-filter parameter the UCM was shown to honour.
    pub fn end_filter_param(&self) -> Option<&'static str> {
        self.windows.end_param()
    }

    /// Why the fast window modes were given up, if a safety sweep found they missed calls.
    pub fn window_fallback(&self) -> Option<&str> {
        self.windows.fallback()
    }

    /// One poll, as [`Poller::next_plan`] says, after the window modes are probed if due, within
    /// the request budget its plan is expected to need.
    pub async fn poll_once(&mut self) -> Result<PollReport, UcmError> {
        let allowance = PollAllowance::new(POLL_MARGIN);
        let result = budget::in_poll(allowance.clone(), self.poll_within(&allowance)).await;
        self.metrics.poll_requests.set(allowance.sent() as i64);
        self.metrics
            .poll_request_budget
            .set(allowance.limit() as i64);
        tracing::debug!(
            requests = allowance.sent(),
            budget = allowance.limit(),
            "requests of the poll"
        );
        result
    }

    /// The poll itself: the probes spend from the margin the allowance starts with, the reads
    /// from what the plan adds to it.
    async fn poll_within(&mut self, allowance: &PollAllowance) -> Result<PollReport, UcmError> {
        if let Some(why) = self.ledger.refused() {
            return Err(UcmError::State(why.to_string()));
        }
        if self.ledger.identity_due() {
            self.ask_identity().await?;
        }
        if self.ucm_clock.needs_reading() {
            self.ucm_clock.read(&self.session).await?;
        }
        self.follow_offset();
        let probing = Probing {
            session: &self.session,
            tz: self.ucm_clock.zone(),
            extensions: &self.extensions,
            watermark: self.ledger.watermark(),
            reads_utc: self.ledger.paging().filter_reads_utc,
            local_now: self.local_now(),
            monotonic: self.clock.monotonic(),
        };
        self.windows.refresh(&self.reach, probing).await;
        self.publish_windows();
        let poll = self.next_plan();
        let needed = cost::poll_budget(&poll, self.ledger.state(), self.local_now());
        allowance.grant(needed.saturating_sub(POLL_MARGIN));
        let mut report = PollReport::new(poll.kind, poll.mode);
        let mut notes = ReadNotes::default();
        for plan in &poll.reads {
            match self.read(plan, &mut notes).await {
                Ok(r) => report.add(&r),
                Err(e) => {
                    // What the reads before committed stays; the fast mode's knowledge of what
                    // was read does not advance, and channel windows need a sweep to resume.
                    self.windows.read_failed();
                    return Err(e);
                }
            }
        }
        if poll.kind.reads_back_fully() {
            self.last_sweep = Some(self.clock.monotonic());
        }
        let ceiling = plan::ceiling(self.local_now());
        let had_fallback = self.windows.fallback().is_some();
        let now = self.clock.monotonic();
        self.windows.polled(&poll, notes, &report, (ceiling, now));
        self.publish_windows();
        if !had_fallback && self.windows.fallback().is_some() {
            // Kept at once: a restart must not try the modes that just missed calls.
            self.ledger.save();
        }
        if !self.trunks_listed {
            self.trunks_listed = true;
            self.list_trunks().await;
        }
        Ok(report)
    }

    /// When the zone in use went back (DST fall-back, configured or followed), the UCM's clock
    /// went back with it: the watermark and the end windows are moved back as far, so calls
    /// started since are read now rather than by the next sweep (docs/design.md §2.6).
    fn follow_offset(&mut self) {
        let offset = self.ucm_clock.zone().offset_secs(self.clock.now());
        let Some(before) = self.offset_seen.replace(offset) else {
            return;
        };
        if offset < before {
            let back = LocalSecs::from(before - offset);
            tracing::info!(
                seconds = back,
                "the UCM's UTC offset went back; windows reach back as far"
            );
            self.ledger.rewind_watermark(back);
            self.windows.clock_stepped_back(back);
        }
    }

    /// Shows the window mode and any fallback, and has the ledger keep them.
    fn publish_windows(&mut self) {
        let record = self
            .windows
            .record(self.clock.now().timestamp(), self.clock.monotonic());
        self.metrics.set_window_mode(self.windows.mode.as_str());
        let until = record.fallback_until.filter(|_| record.fallback.is_some());
        self.metrics
            .window_fallback_until
            .set(until.unwrap_or(0) as f64);
        self.ledger.set_windows(record);
    }

    /// Reads one window of the poll; once more, sent in UTC, when the answer shows that the UCM
    /// reads `startTime` as UTC.
    async fn read(&mut self, plan: &Plan, notes: &mut ReadNotes) -> Result<PollReport, UcmError> {
        let (clock, tz) = (self.clock.clone(), self.ucm_clock.zone());
        let now = move || local_secs(clock.local_now(tz));
        let mut reader = read::Reader {
            session: &self.session,
            ledger: &mut self.ledger,
            extensions: &self.extensions,
            tz,
            now: &now,
            mode: self.windows.mode,
            end_param: match plan.filter {
                Filter::End => self.windows.end_param(),
                Filter::Start => None,
            },
            notes,
        };
        match reader.read(plan).await? {
            Outcome::Read(r) => Ok(r),
            Outcome::Shifted => match reader.read(plan).await? {
                Outcome::Read(r) => Ok(r),
                Outcome::Shifted => Err(UcmError::Protocol(
                    "the window came back shifted again after converting it to UTC".into(),
                )),
            },
        }
    }

    /// Asks the UCM who it is, once per process, so that the state is used only for the UCM it
    /// was saved for (docs/design.md §3.6). A refusal (no permission) is an answer: the UCM may
    /// not say. Any other failure leaves the question for the next poll, and fails this one
    /// when the state waits for the answer (it was saved under another URL).
    async fn ask_identity(&mut self) -> Result<(), UcmError> {
        let answer = self
            .session
            .call("getSystemStatus", Map::new(), |b| decode_envelope(b))
            .await;
        let id = match answer {
            Ok(v) => {
                // The same answer tells the UCM's clock: no second request for it.
                self.ucm_clock
                    .observe(v.get("system-time").and_then(Value::as_str).unwrap_or(""));
                let text = |k: &str| {
                    v.get(k)
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .filter(|s| !s.trim().is_empty())
                };
                Some(UcmIdentity {
                    serial: text("serial-number"),
                    mac: text("mac"),
                })
                .filter(UcmIdentity::is_known)
            }
            Err(e) if is_refusal(&e) => {
                tracing::debug!("the UCM does not say who it is ({e})");
                self.ucm_clock.unanswered(&e);
                None
            }
            Err(e) if self.ledger.identity_required() => return Err(e),
            Err(e) => {
                tracing::debug!("cannot ask the UCM who it is ({e}); asking again next poll");
                return Ok(());
            }
        };
        self.ledger.settle_identity(id);
        Ok(())
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
            .call("listVoIPTrunk", params, |b| decode_envelope(b))
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
                self.ledger.add_trunks(&names);
                tracing::debug!(trunks = names.len(), "listed VoIP trunks");
            }
            Err(e) => tracing::debug!(
                "cannot list trunks ({e}); trunk series appear with their first call"
            ),
        }
    }

    /// Saves the state and logs out: the clean-stop path.
    pub async fn close(mut self) {
        self.ledger.save();
        self.session.logout().await;
    }
}
