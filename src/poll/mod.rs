//! Incremental CDR collection for one target.
//!
//! Each poll follows a [`Plan`] (see `plan`): a baseline on first start, else an incremental
//! read from the watermark minus the overlap, or a sweep back over `max_call_duration`.
//!
//! Counting order: a poll collects its new keys and increments aside (see `ingest`), writes the
//! state that marks them seen, and only then applies the increments. A crash loses at most that
//! poll's calls; nothing is counted twice (docs/design.md §3).

mod channels;
mod ingest;
mod pager;
mod plan;
mod probe;
mod windows;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use foldhash::HashSet;
use serde_json::{Map, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use crate::cdr::ExtensionPattern;
use crate::clock::SharedClock;
use crate::config::Target;
use crate::error::UcmError;
use crate::metrics::TargetMetrics;
use crate::state::{self, from_local_secs, local_secs, Loaded, LocalSecs, PollState};
use crate::status::TargetStatus;
use crate::ucm::cdrapi::{window_params, PAGE_SIZE};
use crate::ucm::login_guard::LoginGuard;
use crate::ucm::{decode_envelope, Refusal, Session};

pub use channels::{parse_rows, uid_hash, Row, Tracker};
pub use ingest::{ingest, PageSummary, Pending, ReadNotes, Span};
pub use pager::{Next, Pager, Paging, PagingError, Slice, Slicer, Step, MAX_PAGES_PER_READ};
pub use plan::{
    merge_windows, plan, plan_poll, ChannelWindows, Fast, Filter, Plan, PollKind, PollPlan, Reach,
    WindowMode, BASELINE_SLACK, WATERMARK_SLACK,
};
pub use probe::{judge, question, EndProbe, Question, PARAMS as END_FILTER_PARAMS};
use windows::Windows;
pub use windows::{is_refusal, probe_end, snapshot, Snapshot};

/// The naive UTC time of a naive local time in `tz`, in the same unit.
pub(crate) fn as_utc(tz: chrono_tz::Tz, local: LocalSecs) -> LocalSecs {
    use chrono::TimeZone;
    tz.from_local_datetime(&from_local_secs(local))
        .earliest()
        .map_or(local, |t| local_secs(t.naive_utc()))
}

/// A catch-up commits (state written, counters applied) at least every this many pages, so a
/// long backlog shows progress and bounds what a crash can lose.
const COMMIT_EVERY_PAGES: usize = 10;

/// What a read has gathered so far, in its pages and then, at a UCM that ignores `offset`, in
/// its time slices.
struct Gathered {
    pending: Pending,
    /// The keys of the entries read, for telling a page served again.
    read: HashSet<u64>,
    report: PollReport,
    /// The oldest call start read.
    oldest: Option<LocalSecs>,
}

impl Gathered {
    /// Adds a page.
    fn take(
        &mut self,
        body: &[u8],
        state: Option<&PollState>,
        extensions: &ExtensionPattern,
        tz: chrono_tz::Tz,
        plan: &Plan,
    ) -> Result<PageSummary, Refusal> {
        let page = ingest(
            body,
            state,
            &mut self.pending,
            &mut self.read,
            extensions,
            tz,
            plan,
        )?;
        self.report.entries += page.entries;
        self.oldest = self.oldest.into_iter().chain(page.oldest).min();
        Ok(page)
    }
}

/// The figures of one successful poll, for logs and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct PollReport {
    pub kind: PollKind,
    pub mode: WindowMode,
    /// cdrapi reads (windows) of the poll.
    pub reads: usize,
    pub pages: usize,
    pub entries: usize,
    pub new_calls: u64,
    pub new_records: u64,
    /// New legs the poll's safety sweep found that the fast mode had missed.
    pub late_records: u64,
}

impl PollReport {
    fn new(kind: PollKind, mode: WindowMode) -> Self {
        PollReport {
            kind,
            mode,
            reads: 0,
            pages: 0,
            entries: 0,
            new_calls: 0,
            new_records: 0,
            late_records: 0,
        }
    }

    fn add(&mut self, r: &PollReport) {
        self.reads += r.reads;
        self.pages += r.pages;
        self.entries += r.entries;
        self.new_calls += r.new_calls;
        self.new_records += r.new_records;
        self.late_records += r.late_records;
    }
}

pub struct Poller {
    target: Target,
    reach: Reach,
    session: Arc<Session>,
    metrics: Arc<TargetMetrics>,
    status: Arc<TargetStatus>,
    clock: SharedClock,
    extensions: ExtensionPattern,
    state_path: PathBuf,
    state: Option<PollState>,
    /// [`Clock::monotonic`](crate::clock::Clock::monotonic) at the last sweep of this process.
    last_sweep: Option<Duration>,
    trunks_listed: bool,
    /// Which windows the polls use, and what the fast modes know.
    windows: Windows,
    /// What the reads of the poll in progress learnt.
    notes: ReadNotes,
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
        metrics.set_window_mode(WindowMode::Start.as_str());
        let windows = Windows::new(target.window_mode);
        Ok(Poller {
            reach: Reach::of(&target),
            target,
            session,
            metrics,
            status: Arc::default(),
            clock,
            extensions,
            state_path,
            state,
            last_sweep: None,
            trunks_listed: false,
            windows,
            notes: ReadNotes::default(),
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

    /// The target's session, for the live-status collectors: their requests queue behind the
    /// poll's and share its login.
    pub fn session(&self) -> Arc<Session> {
        self.session.clone()
    }

    pub fn target(&self) -> &Target {
        &self.target
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
                self.metrics
                    .poll_errors
                    .with_label_values(&[e.reason().as_str()])
                    .inc();
                self.status.failed(now, e);
                tracing::warn!(reason = %e.reason(), "poll failed: {e}");
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

    /// This host's clock in the UCM's zone.
    fn local_now(&self) -> LocalSecs {
        local_secs(self.clock.local_now(self.target.timezone))
    }

    /// The plan of the next poll, as of now.
    pub fn next_plan(&self) -> PollPlan {
        let now = self.clock.monotonic();
        plan_poll(
            self.state.as_ref(),
            self.local_now(),
            self.last_sweep.map(|t| now.saturating_sub(t)),
            &self.reach,
            &self.windows.fast(&self.reach),
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

    /// One poll, as [`Poller::next_plan`] says, after the window modes are probed if due.
    pub async fn poll_once(&mut self) -> Result<PollReport, UcmError> {
        self.refresh_windows().await;
        let poll = self.next_plan();
        let mut report = PollReport::new(poll.kind, poll.mode);
        self.notes = ReadNotes::default();
        for plan in &poll.reads {
            let read = match self.read(plan).await {
                Ok(Some(r)) => Ok(r),
                // The window came back shifted; read it again, now sent in UTC.
                Ok(None) => self.read(plan).await.and_then(|r| {
                    r.ok_or_else(|| {
                        UcmError::Protocol(
                            "the window came back shifted again after converting it to UTC".into(),
                        )
                    })
                }),
                Err(e) => Err(e),
            };
            match read {
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
        let notes = std::mem::take(&mut self.notes);
        let ceiling = plan::plan(None, self.local_now(), None, &self.reach).ceiling;
        self.windows.polled(&poll, notes, &report, ceiling);
        self.metrics.set_window_mode(self.windows.mode.as_str());
        if !self.trunks_listed {
            self.trunks_listed = true;
            self.list_trunks().await;
        }
        Ok(report)
    }

    /// Probes the window modes when due, and takes the channel snapshot of a channel-bounded
    /// poll, before the poll is planned.
    async fn refresh_windows(&mut self) {
        let now = self.clock.monotonic();
        let ceiling = plan::plan(None, self.local_now(), None, &self.reach).ceiling;
        if self.windows.wants_snapshot(&self.reach, now) {
            let snapshot = windows::snapshot(&self.session, self.target.timezone).await;
            let watermark = self.state.as_ref().and_then(|s| s.watermark);
            self.windows.observe(snapshot, watermark, ceiling, now);
        }
        if self.windows.end_probe_due(&self.reach, now) {
            let settled = self.local_now() - self.reach.end_margin_secs() - 60;
            let paging = self.state.as_ref().map(|s| s.paging).unwrap_or_default();
            let tz = paging.filter_reads_utc.then_some(self.target.timezone);
            let result = windows::probe_end(
                &self.session,
                self.windows.question(settled),
                tz,
                &self.extensions,
            )
            .await;
            self.windows.probed_end(result, now);
        }
        self.windows.decide(&self.reach);
        self.metrics.set_window_mode(self.windows.mode.as_str());
    }

    /// Reads the plan's window and commits what it finds. `None` when the answer shows that the
    /// UCM reads `startTime` as UTC: nothing is committed, and the next read sends the window in
    /// UTC.
    async fn read(&mut self, plan: &Plan) -> Result<Option<PollReport>, UcmError> {
        let plan = *plan;
        let baseline = plan.kind == PollKind::Baseline;
        let mut g = Gathered {
            pending: Pending::default(),
            read: HashSet::default(),
            report: PollReport::new(plan.kind, self.windows.mode),
            oldest: None,
        };
        g.report.reads = 1;
        // A baseline always finds history, a known call inside the window must come back, and
        // an end window starts before the newest end read: an empty answer then is suspect. A
        // narrow window around a start may well be empty.
        let entries_due = match (plan.filter, plan.to) {
            (Filter::End, _) => true,
            (Filter::Start, Some(_)) => false,
            (Filter::Start, None) => {
                baseline
                    || self
                        .state
                        .as_ref()
                        .and_then(|s| s.watermark)
                        .is_some_and(|w| w >= plan.from)
            }
        };
        let paging = self.state.as_ref().map(|s| s.paging).unwrap_or_default();
        let tz = self.target.timezone;
        let sent = |t: LocalSecs| {
            if paging.filter_reads_utc {
                as_utc(tz, t)
            } else {
                t
            }
        };
        let end_filter = match plan.filter {
            Filter::End => self.windows.end_param(),
            Filter::Start => None,
        };
        let ask = move |slice: Slice, offset| {
            window_params(
                sent(slice.from),
                slice.to.map(sent),
                end_filter,
                offset,
                PAGE_SIZE,
            )
        };
        let window = Slice {
            from: plan.from,
            to: plan.to,
        };
        let params = move |offset| ask(window, offset);
        let mut pager = Pager::new(paging, entries_due);
        let mut offset = 0;
        // After a full page the next one is likely full too (a backlog or a sweep): while a page
        // is decoded, the one after it is already asked for, so the UCM serves it meanwhile. A
        // read of several pages thus asks for one page past its end; one page still costs one
        // request.
        let mut read_ahead = false;
        let mut prefetched: Option<(usize, AbortOnDropHandle<Result<Bytes, UcmError>>)> = None;
        let mut sliced = paging.offset_ignored;
        while !sliced {
            let body = match prefetched.take() {
                Some((at, fetch)) if at == offset => fetch.await.unwrap_or_else(|e| {
                    if e.is_panic() {
                        std::panic::resume_unwind(e.into_panic())
                    }
                    // Only a runtime shutting down cancels it: the read ends with it.
                    Err(UcmError::Protocol(
                        "the read-ahead request was cancelled".into(),
                    ))
                })?,
                // A read-ahead at another offset (the page before was short after all) is
                // dropped, which aborts it.
                _ => self.session.fetch("cdrapi", params(offset)).await?,
            };
            if read_ahead {
                let at = offset + pager.full_page();
                let session = self.session.clone();
                let params = params(at);
                // In the poll's span, so its log lines name the target and reach the poll's
                // journal.
                let fetch = async move { session.fetch("cdrapi", params).await }.in_current_span();
                prefetched = Some((at, AbortOnDropHandle::new(tokio::spawn(fetch))));
            }
            let page = match g.take(&body, self.state.as_ref(), &self.extensions, tz, &plan) {
                Ok(page) => page,
                Err(refusal) => {
                    // Aborted first: the session lock is held by the request in flight.
                    drop(prefetched.take());
                    return Err(self.session.refused("cdrapi", refusal).await);
                }
            };
            drop(body);
            let next = pager.next(page.entries, page.fresh);
            g.report.pages = pager.pages();
            match next {
                Ok(Next::Page { offset: at }) => {
                    offset = at;
                    read_ahead = pager.is_full(page.entries);
                }
                Ok(Next::Relogin { offset: at }) => {
                    drop(prefetched.take());
                    tracing::info!(
                        offset = at,
                        "an empty cdrapi page where calls were due: asking again with a fresh login, in case the UCM dropped the session without saying so"
                    );
                    self.session.renew().await;
                    offset = at;
                    read_ahead = false;
                }
                Ok(Next::Done) => break,
                Err(PagingError::OffsetIgnored { page, offset }) => {
                    drop(prefetched.take());
                    tracing::warn!(
                        "the UCM ignores cdrapi's offset: page {page} (offset {offset}) held only entries already read; \
                         reading this window, and every later one, in time slices"
                    );
                    sliced = true;
                    break;
                }
                Err(e) => {
                    drop(prefetched.take());
                    return Err(self.stop_read(e, &mut g, &plan, pager.paging()));
                }
            }
            self.commit_part(&mut g, &plan, pager.paging())?;
        }
        drop(prefetched);
        let mut learned = pager.paging();
        if sliced {
            learned = self
                .read_slices(&plan, &ask, entries_due, learned, &mut g)
                .await?;
        }
        if self.window_came_back_shifted(&plan, g.oldest) {
            if let Some(s) = &mut self.state {
                s.paging.filter_reads_utc = true;
            }
            return Ok(None);
        }
        self.commit(&mut g.pending, &mut g.report, &plan, learned)?;
        tracing::debug!(
            filter = ?plan.filter,
            from = %state::from_local_secs(plan.from),
            to = ?plan.to.map(state::from_local_secs),
            entries = g.report.entries,
            new_calls = g.report.new_calls,
            "read done"
        );
        Ok(Some(g.report))
    }

    /// Reads the plan's window in time slices (see [`Slicer`]), for a UCM that ignores
    /// `offset`, adding to what the read `gathered` before; returns what it learned of the
    /// paging.
    async fn read_slices(
        &mut self,
        plan: &Plan,
        ask: &(dyn Fn(Slice, usize) -> Map<String, Value> + Sync),
        entries_due: bool,
        paging: Paging,
        g: &mut Gathered,
    ) -> Result<Paging, UcmError> {
        let pages_before = g.report.pages;
        let window = Slice {
            from: plan.from,
            to: plan.to,
        };
        let mut slicer = Slicer::new(window, paging, entries_due);
        let mut slice = slicer.first();
        loop {
            let body = self.session.fetch("cdrapi", ask(slice, 0)).await?;
            let tz = self.target.timezone;
            let page = match g.take(&body, self.state.as_ref(), &self.extensions, tz, plan) {
                Ok(page) => page,
                Err(refusal) => return Err(self.session.refused("cdrapi", refusal).await),
            };
            drop(body);
            let next = slicer.next(page.entries, page.times, self.local_now());
            g.report.pages = pages_before + slicer.pages();
            match next {
                Ok(Step::Read(s)) => slice = s,
                Ok(Step::Relogin(s)) => {
                    tracing::info!(
                        from = %from_local_secs(s.from),
                        "an empty cdrapi slice where the page before showed calls: asking again with a fresh login, \
                         in case the UCM dropped the session without saying so"
                    );
                    self.session.renew().await;
                    slice = s;
                }
                Ok(Step::Done) => return Ok(slicer.paging()),
                Err(e) => return Err(self.stop_read(e, g, plan, slicer.paging())),
            }
            self.commit_part(g, plan, slicer.paging())?;
        }
    }

    /// Commits a catch-up part-way, every [`COMMIT_EVERY_PAGES`] pages. A baseline commits only
    /// whole: a state saved halfway would make the rest of the history look new after a
    /// failure.
    fn commit_part(
        &mut self,
        g: &mut Gathered,
        plan: &Plan,
        paging: Paging,
    ) -> Result<(), UcmError> {
        if plan.kind != PollKind::Baseline && g.report.pages % COMMIT_EVERY_PAGES == 0 {
            self.commit(&mut g.pending, &mut g.report, plan, paging)?;
        }
        Ok(())
    }

    /// Ends a read the paging cannot go on with. What was read is sound and stays counted,
    /// except half a baseline.
    fn stop_read(
        &mut self,
        e: PagingError,
        g: &mut Gathered,
        plan: &Plan,
        paging: Paging,
    ) -> UcmError {
        tracing::warn!("{e}");
        if plan.kind != PollKind::Baseline {
            if let Err(failed) = self.commit(&mut g.pending, &mut g.report, plan, paging) {
                return failed;
            }
        }
        UcmError::Protocol(e.to_string())
    }

    /// Whether an incremental read missed the newest call known, although the window asked for
    /// starts before it, while the UCM's zone is ahead of UTC: the UCM read the window's start
    /// as UTC, which moved it later by the zone's offset (docs/ucm-api.md §5.1). Logged once;
    /// from then on windows are sent converted to UTC.
    fn window_came_back_shifted(&self, plan: &Plan, oldest: Option<LocalSecs>) -> bool {
        let Some(s) = &self.state else {
            return false;
        };
        let Some(w) = s.watermark else {
            return false;
        };
        let tz = self.target.timezone;
        let shifted = plan.kind == PollKind::Incremental
            && plan.filter == Filter::Start
            && plan.to.is_none()
            && !s.paging.filter_reads_utc
            && w >= plan.from
            && oldest.is_none_or(|o| o > w)
            && as_utc(tz, plan.from) < plan.from;
        if shifted {
            tracing::warn!(
                timezone = %tz,
                "the UCM left out its newest known call from a window that starts before it: it reads startTime as UTC, \
                 not in its own time zone; windows are sent in UTC from now on"
            );
        }
        shifted
    }

    /// Marks the pending keys seen and saves the state, then applies the counts. When the state
    /// cannot be saved, the keys are unmarked again and nothing is applied: the next poll reads
    /// the same window and counts those calls then.
    fn commit(
        &mut self,
        pending: &mut Pending,
        report: &mut PollReport,
        plan: &Plan,
        paging: Paging,
    ) -> Result<(), UcmError> {
        let p = std::mem::take(pending);
        let baseline = plan.kind == PollKind::Baseline;
        let state = self
            .state
            .get_or_insert_with(|| PollState::new(&self.target.url, plan.from));
        let before = (state.watermark, state.trunks.len(), state.paging);
        if baseline {
            state.baseline_start = state.baseline_start.min(plan.from);
        }
        // Keys older than this poll's horizon go before the new ones come in; keys this poll may
        // still meet stay, whatever order the UCM serves its pages in.
        state.prune(plan.horizon.min(state.horizon(self.reach.sweep_back())));
        state.calls.extend(p.calls.iter().copied());
        state.legs.extend(p.legs.iter().copied());
        if let Some(w) = p.watermark {
            if w > plan.ceiling {
                tracing::warn!(
                    start = %state::from_local_secs(w),
                    "a CDR starts in the future of this host's clock (in the UCM's zone): counted, but the watermark stops at now + {} min", WATERMARK_SLACK / 60
                );
            }
            let w = w.min(plan.ceiling);
            state.watermark = Some(state.watermark.map_or(w, |old| old.max(w)));
        }
        for t in p.trunks {
            if !t.is_empty() && !state.trunks.contains(&t) {
                state.trunks.push(t);
            }
        }
        state.paging = paging;
        if let Err(e) = state::save(&self.state_path, state) {
            for (k, _) in &p.calls {
                state.calls.remove(k);
            }
            for (k, _) in &p.legs {
                state.legs.remove(k);
            }
            (state.watermark, state.paging) = (before.0, before.2);
            state.trunks.truncate(before.1);
            if baseline && state.calls.is_empty() && before.0.is_none() {
                // Half a baseline is no baseline.
                self.state = None;
            }
            return Err(UcmError::State(format!("{e:#}")));
        }
        report.new_calls += p.tally.call_count();
        report.new_records += p.tally.records;
        report.late_records += p.tally.late_records;
        self.notes.absorb(p.notes);
        if !baseline {
            self.metrics.apply(&p.tally);
        }
        if let Some(s) = &self.state {
            self.metrics.add_trunks(&s.trunks);
        }
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

    /// Saves the state and logs out: the clean-stop path.
    pub async fn close(self) {
        self.save_state();
        self.session.logout().await;
    }
}
