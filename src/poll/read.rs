//! One read of a poll: asking the UCM for one window, page by page, and committing what it
//! finds (docs/design.md §2.2).
//!
//! A read follows one of three named strategies behind one driver ([`read`]):
//!
//! - **paged**: an open window asked at growing `offset`s ([`Pager`]);
//! - **targeted**: a bounded window (`startTime`..`endTime`, a channel window) asked the same
//!   way, where an empty answer is no sign of a dropped session;
//! - **sliced**: a window asked in time slices, halved until each fits a page ([`Slicer`]), at
//!   a UCM that ignores `offset`. A paged read that finds it so hands over to slicing.
//!
//! Whatever the strategy, the driver holds the one request budget of a read
//! ([`MAX_PAGES_PER_READ`]), commits by the one rule of [`Ledger::commit_due`], and keeps at
//! most one request in flight ahead of the page it decodes ([`ReadAhead`]).

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use foldhash::HashSet;
use serde_json::{Map, Value};
use tokio::task::JoinError;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use super::ingest::{ingest, PageSummary, Pending, ReadNotes};
use super::ledger::Ledger;
use super::pager::{Next, Pager, PagingError, Slice, Slicer, Step};
use super::plan::{Filter, Plan, PollKind, WindowMode};
use super::report::PollReport;
use crate::cdr::ExtensionPattern;
use crate::clock::Zone;
use crate::clock::{as_utc, from_local_secs, LocalSecs};
use crate::error::UcmError;
use crate::state::{Paging, PollState};
use crate::ucm::budget::{grant_current, within_current_poll};
use crate::ucm::cdrapi::{window_params, PAGE_SIZE};
use crate::ucm::{Refusal, Session};

/// The request budget of one read, whatever its strategy and however it changes strategy on
/// the way: a UCM that pages without end in a way no other rule catches costs at most this many
/// requests (read-aheads included) before the read stops with reason `protocol`.
pub const MAX_PAGES_PER_READ: usize = 2000;

/// What a read asks the UCM for: a slice of its window at an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub slice: Slice,
    pub offset: usize,
}

/// What to do after a page, whatever the strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    Ask(Request),
    /// Log in afresh, then ask this again: an empty answer where entries were due may be a
    /// session the UCM dropped without saying so.
    Relogin(Request),
    Done,
}

/// A read's way through its window.
#[derive(Debug)]
pub enum Strategy {
    Paged { pager: Pager, window: Slice },
    Sliced(Slicer),
}

impl Strategy {
    /// Paged (or targeted) at a UCM that honours `offset`, sliced at one that does not.
    pub fn for_window(window: Slice, paging: Paging, entries_due: bool) -> Strategy {
        if paging.offset_ignored {
            Strategy::Sliced(Slicer::new(window, paging, entries_due))
        } else {
            Strategy::Paged {
                pager: Pager::new(paging, entries_due),
                window,
            }
        }
    }

    /// The strategy's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Paged { window, .. } if window.to.is_some() => "targeted",
            Strategy::Paged { .. } => "paged",
            Strategy::Sliced(_) => "sliced",
        }
    }

    pub fn first(&self) -> Request {
        match self {
            Strategy::Paged { window, .. } => Request {
                slice: *window,
                offset: 0,
            },
            Strategy::Sliced(s) => Request {
                slice: s.first(),
                offset: 0,
            },
        }
    }

    /// Takes the page just read; `now` is the host's clock in the UCM's zone, where an open
    /// slice is halved.
    pub fn after(&mut self, page: &PageSummary, now: LocalSecs) -> Result<Turn, PagingError> {
        let at = |slice: Slice, offset| Request { slice, offset };
        match self {
            Strategy::Paged { pager, window } => {
                Ok(match pager.next(page.entries, page.fresh)? {
                    Next::Page { offset } => Turn::Ask(at(*window, offset)),
                    Next::Relogin { offset } => Turn::Relogin(at(*window, offset)),
                    Next::Done => Turn::Done,
                })
            }
            Strategy::Sliced(s) => Ok(match s.next(page.entries, page.fresh, page.times, now)? {
                Step::Read(slice) => Turn::Ask(at(slice, 0)),
                Step::Relogin(slice) => Turn::Relogin(at(slice, 0)),
                Step::Done => Turn::Done,
            }),
        }
    }

    /// After a full page the next one is likely full too (a backlog or a sweep): the request
    /// after `next` is worth sending while `next`'s page is decoded. Only offsets are known
    /// ahead; a slice's halves are not.
    pub fn ahead_of(&self, next: Request, page: &PageSummary) -> Option<Request> {
        match self {
            Strategy::Paged { pager, .. } if pager.is_full(page.entries) => Some(Request {
                offset: next.offset + pager.full_page(),
                ..next
            }),
            _ => None,
        }
    }

    /// What has been learned of the UCM's paging so far.
    pub fn paging(&self) -> Paging {
        match self {
            Strategy::Paged { pager, .. } => pager.paging(),
            Strategy::Sliced(s) => s.paging(),
        }
    }

    pub fn pages(&self) -> usize {
        match self {
            Strategy::Paged { pager, .. } => pager.pages(),
            Strategy::Sliced(s) => s.pages(),
        }
    }
}

/// The one request a read may have in flight ahead of the page it decodes. Dropping it, or
/// [`ReadAhead::take`] for another request, aborts the request at once, before the read sends
/// its own: the request in flight holds the target's session, so the read's own request would
/// otherwise wait behind an answer nobody reads.
pub struct ReadAhead<T> {
    pending: Option<(Request, AbortOnDropHandle<T>)>,
}

impl<T: Send + 'static> ReadAhead<T> {
    pub fn new() -> Self {
        ReadAhead { pending: None }
    }

    /// Sends `request` ahead; in the caller's span, so its log lines name the target and reach
    /// the poll's journal.
    pub fn start(&mut self, request: Request, fetch: impl Future<Output = T> + Send + 'static) {
        let task = tokio::spawn(fetch.in_current_span());
        self.pending = Some((request, AbortOnDropHandle::new(task)));
    }

    /// The answer to `request` if it was sent ahead; `None` otherwise, after aborting whatever
    /// else was.
    pub async fn take(&mut self, request: Request) -> Option<Result<T, JoinError>> {
        match self.pending.take() {
            Some((asked, task)) if asked == request => Some(task.await),
            _ => None,
        }
    }

    /// Aborts the request sent ahead, if any.
    pub fn cancel(&mut self) {
        self.pending = None;
    }
}

impl<T: Send + 'static> Default for ReadAhead<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// The answer of a request sent ahead.
fn joined(answer: Result<Result<Bytes, UcmError>, JoinError>) -> Result<Bytes, UcmError> {
    answer.unwrap_or_else(|e| {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic())
        }
        // Only a runtime shutting down cancels it: the read ends with it.
        Err(UcmError::Protocol(
            "the read-ahead request was cancelled".into(),
        ))
    })
}

/// The requests one read may still send.
#[derive(Debug)]
struct Budget {
    sent: usize,
}

impl Budget {
    /// Takes one request from the budget; `false` when it is spent.
    fn spend(&mut self) -> bool {
        let ok = self.sent < MAX_PAGES_PER_READ;
        self.sent += usize::from(ok);
        ok
    }
}

/// What a read has gathered and not yet committed, and its figures so far.
struct Gathered {
    budget: Budget,
    pending: Pending,
    /// The call keys of the entries read, for telling a page served again.
    read: HashSet<u64>,
    report: PollReport,
    /// The oldest call start read.
    oldest: Option<LocalSecs>,
}

/// What one read needs of its poller.
pub struct Reader<'a> {
    pub session: &'a Arc<Session>,
    pub ledger: &'a mut Ledger,
    pub extensions: &'a ExtensionPattern,
    pub tz: Zone,
    /// The host's clock in the UCM's zone now.
    pub now: &'a (dyn Fn() -> LocalSecs + Sync),
    pub mode: WindowMode,
    /// The end-filter parameter the UCM honours, for an end window.
    pub end_param: Option<&'static str>,
    /// What the committed entries of the poll's reads tell the window modes.
    pub notes: &'a mut ReadNotes,
}

/// How a read ended.
#[derive(Debug)]
pub enum Outcome {
    Read(PollReport),
    /// The answer showed that the UCM reads `startTime` as UTC: nothing was committed from the
    /// last part of the read, and the same window is to be read again, sent in UTC.
    Shifted,
}

impl Reader<'_> {
    /// Reads the plan's window and commits what it finds.
    pub async fn read(&mut self, plan: &Plan) -> Result<Outcome, UcmError> {
        let due = entries_due(plan, self.ledger.watermark());
        let window = Slice {
            from: plan.from,
            to: plan.to,
        };
        let mut strategy = Strategy::for_window(window, self.ledger.paging(), due);
        let mut g = Gathered {
            budget: Budget { sent: 0 },
            pending: Pending::default(),
            read: HashSet::default(),
            report: PollReport::new(plan.kind, self.mode),
            oldest: None,
        };
        g.report.reads = 1;
        // A paged read that finds the UCM ignoring `offset` hands over to slicing, knowing so.
        let mut pages_before = 0;
        while let Some(learned) = self.run(&mut strategy, &mut g, plan, pages_before).await? {
            pages_before = g.report.pages;
            let extra = super::cost::sliced_extra(self.ledger.state(), plan, (self.now)());
            grant_current(extra);
            strategy = Strategy::Sliced(Slicer::new(window, learned, due));
        }
        let utc = self.ledger.paging().filter_reads_utc;
        if utc && plan.filter == Filter::Start && g.oldest.is_some_and(|o| o < plan.from - 1) {
            tracing::warn!(
                "a window sent in UTC came back with calls from before its start in the UCM's own time: \
                 the UCM reads startTime in its own time zone after all; windows are sent so again"
            );
            self.ledger.unlearn_filter_reads_utc();
        }
        if came_back_shifted(self.ledger.state(), plan, g.oldest, self.tz) {
            self.ledger.learn_filter_reads_utc();
            return Ok(Outcome::Shifted);
        }
        let done = self
            .ledger
            .commit(&mut g.pending, plan, strategy.paging())?;
        self.absorb(&mut g.report, done);
        tracing::debug!(
            strategy = strategy.name(),
            filter = ?plan.filter,
            from = %from_local_secs(plan.from),
            to = ?plan.to.map(from_local_secs),
            entries = g.report.entries,
            new_calls = g.report.new_calls,
            "read done"
        );
        Ok(Outcome::Read(g.report))
    }

    /// Drives one strategy to its end. `Some(paging)` when a paged read found that the UCM
    /// ignores `offset`: the read goes on in slices, knowing that.
    async fn run(
        &mut self,
        strategy: &mut Strategy,
        g: &mut Gathered,
        plan: &Plan,
        pages_before: usize,
    ) -> Result<Option<Paging>, UcmError> {
        let mut request = strategy.first();
        let mut ahead = ReadAhead::new();
        let mut send_ahead = None;
        loop {
            let body = match ahead.take(request).await {
                Some(answer) => joined(answer)?,
                None if g.budget.spend() => {
                    let params = self.params(plan, request);
                    self.session.fetch("cdrapi", params).await?
                }
                None => {
                    let e = PagingError::Endless {
                        pages: g.report.pages,
                    };
                    return Err(self.stop(e, g, plan, strategy.paging()));
                }
            };
            // A read-ahead past the budget is not sent; the request it stood for still is, and
            // stops the read when the budget says so.
            if let Some(next) = send_ahead.take().filter(|_| g.budget.spend()) {
                let (session, params) = (self.session.clone(), self.params(plan, next));
                let fetch = async move { session.fetch("cdrapi", params).await };
                ahead.start(next, within_current_poll(fetch));
            }
            let page = match self.take(g, &body, plan) {
                Ok(page) => page,
                Err(refusal) => {
                    ahead.cancel();
                    return Err(self.session.refused("cdrapi", refusal).await);
                }
            };
            drop(body);
            let turn = strategy.after(&page, (self.now)());
            g.report.pages = pages_before + strategy.pages();
            match turn {
                Ok(Turn::Ask(next)) => {
                    send_ahead = strategy.ahead_of(next, &page);
                    request = next;
                }
                Ok(Turn::Relogin(next)) => {
                    ahead.cancel();
                    self.relogin(strategy, next).await;
                    request = next;
                }
                Ok(Turn::Done) => return Ok(None),
                Err(PagingError::OffsetIgnored { page, offset }) => {
                    tracing::warn!(
                        "the UCM ignores cdrapi's offset: page {page} (offset {offset}) held only entries already read; \
                         reading this window, and every later one, in time slices"
                    );
                    return Ok(Some(strategy.paging()));
                }
                Err(e) => return Err(self.stop(e, g, plan, strategy.paging())),
            }
            if Ledger::commit_due(plan, g.report.pages) {
                let done = self
                    .ledger
                    .commit(&mut g.pending, plan, strategy.paging())?;
                self.absorb(&mut g.report, done);
            }
        }
    }

    /// Logs in afresh before `next` is asked again.
    async fn relogin(&self, strategy: &Strategy, next: Request) {
        tracing::info!(
            strategy = strategy.name(),
            offset = next.offset,
            from = %from_local_secs(next.slice.from),
            "an empty cdrapi page where calls were due: asking again with a fresh login, \
             in case the UCM dropped the session without saying so"
        );
        self.session.renew().await;
    }

    /// The cdrapi parameters of a request: in UTC at a UCM that reads `startTime` so, with the
    /// end filter for an end window.
    fn params(&self, plan: &Plan, r: Request) -> Map<String, Value> {
        let utc = self.ledger.paging().filter_reads_utc;
        let sent = |t: LocalSecs| if utc { as_utc(self.tz, t) } else { t };
        let end_filter = match plan.filter {
            Filter::End => self.end_param,
            Filter::Start => None,
        };
        window_params(
            sent(r.slice.from),
            r.slice.to.map(sent),
            end_filter,
            r.offset,
            PAGE_SIZE,
        )
    }

    /// Adds a page to what the read gathered.
    fn take(&self, g: &mut Gathered, body: &[u8], plan: &Plan) -> Result<PageSummary, Refusal> {
        let state: Option<&PollState> = self.ledger.state();
        let page = ingest(
            body,
            state,
            &mut g.pending,
            &mut g.read,
            self.extensions,
            self.tz,
            plan,
        )?;
        g.report.entries += page.entries;
        g.oldest = g.oldest.into_iter().chain(page.oldest).min();
        Ok(page)
    }

    /// Ends a read the paging cannot go on with: what was read stays counted, except half a
    /// baseline.
    fn stop(&mut self, e: PagingError, g: &mut Gathered, plan: &Plan, paging: Paging) -> UcmError {
        tracing::warn!("{e}");
        match self.ledger.commit_stopped(&mut g.pending, plan, paging) {
            Ok(done) => {
                self.absorb(&mut g.report, done);
                UcmError::Protocol(e.to_string())
            }
            Err(failed) => failed,
        }
    }

    fn absorb(&mut self, report: &mut PollReport, done: super::ledger::Committed) {
        report.new_calls += done.calls;
        report.new_records += done.records;
        report.late_records += done.late_records;
        self.notes.absorb(done.notes);
    }
}

/// Whether the window must hold entries, so that an empty answer is suspect: a baseline always
/// finds history, a known call inside the window must come back, and an end window starts
/// before the newest end read. A narrow window around a start may well be empty.
fn entries_due(plan: &Plan, watermark: Option<LocalSecs>) -> bool {
    match (plan.filter, plan.to) {
        (Filter::End, _) => true,
        (Filter::Start, Some(_)) => false,
        (Filter::Start, None) => {
            plan.kind == PollKind::Baseline || watermark.is_some_and(|w| w >= plan.from)
        }
    }
}

/// Whether an incremental read missed the newest call known, although the window asked for
/// starts before it, while the UCM's zone is ahead of UTC: the UCM read the window's start as
/// UTC, which moved it later by the zone's offset (docs/ucm-api.md §5.1). Logged once; from
/// then on windows are sent converted to UTC.
fn came_back_shifted(
    state: Option<&PollState>,
    plan: &Plan,
    oldest: Option<LocalSecs>,
    tz: Zone,
) -> bool {
    let Some(s) = state else {
        return false;
    };
    let Some(w) = s.watermark else {
        return false;
    };
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    fn request(offset: usize) -> Request {
        Request {
            slice: Slice { from: 0, to: None },
            offset,
        }
    }

    /// A request in flight that holds the session until it is answered or aborted.
    async fn holding(
        session: Arc<tokio::sync::Mutex<()>>,
        answer: Arc<tokio::sync::Notify>,
        started: Arc<AtomicUsize>,
    ) -> usize {
        let _held = session.lock().await;
        started.fetch_add(1, Ordering::SeqCst);
        answer.notified().await;
        7
    }

    /// Waits for what must happen; a generous bound only turns a hang into a failure.
    async fn soon<T>(what: &str, f: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(30), f)
            .await
            .unwrap_or_else(|_| panic!("{what} did not happen"))
    }

    /// Waits until more than `before` read-aheads hold the session.
    async fn holds(started: &AtomicUsize, before: usize) {
        soon("the read-ahead holding the session", async {
            while started.load(Ordering::SeqCst) == before {
                tokio::task::yield_now().await;
            }
        })
        .await;
    }

    #[tokio::test]
    async fn a_read_ahead_for_another_request_is_aborted_before_the_read_asks_itself() {
        let session = Arc::new(tokio::sync::Mutex::new(()));
        let answer = Arc::new(tokio::sync::Notify::new());
        let started = Arc::new(AtomicUsize::new(0));
        let mut ahead = ReadAhead::new();
        ahead.start(
            request(2000),
            holding(session.clone(), answer.clone(), started.clone()),
        );
        holds(&started, 0).await;
        assert!(session.try_lock().is_err(), "the read-ahead holds it");
        // The page before was short: the read asks for another offset.
        assert!(ahead.take(request(1500)).await.is_none());
        // The read's own request gets the session without the read-ahead ever being answered.
        drop(soon("the session freed", session.lock()).await);
        assert!(ahead.take(request(2000)).await.is_none(), "nothing left");
    }

    #[tokio::test]
    async fn a_read_ahead_for_the_request_is_its_answer_and_cancel_or_drop_aborts_it() {
        let session = Arc::new(tokio::sync::Mutex::new(()));
        let answer = Arc::new(tokio::sync::Notify::new());
        let started = Arc::new(AtomicUsize::new(0));
        let mut ahead = ReadAhead::new();
        ahead.start(
            request(1000),
            holding(session.clone(), answer.clone(), started.clone()),
        );
        answer.notify_one();
        let got = soon("the answer", ahead.take(request(1000))).await;
        assert_eq!(got.unwrap().unwrap(), 7);
        for cancel in [true, false] {
            let mut ahead = ReadAhead::new();
            let before = started.load(Ordering::SeqCst);
            ahead.start(
                request(1000),
                holding(session.clone(), answer.clone(), started.clone()),
            );
            holds(&started, before).await;
            if cancel {
                ahead.cancel();
            } else {
                drop(ahead);
            }
            drop(soon("the session freed", session.lock()).await);
        }
    }

    #[test]
    fn a_read_has_one_request_budget() {
        let mut b = Budget { sent: 0 };
        assert!((0..MAX_PAGES_PER_READ).all(|_| b.spend()));
        assert!(!b.spend(), "spent");
        assert!(!b.spend(), "stays spent");
    }

    fn page(entries: usize, fresh: usize) -> PageSummary {
        PageSummary {
            entries,
            fresh,
            oldest: None,
            times: Some((0, 10)),
            held: 0,
        }
    }

    #[test]
    fn strategies_by_name_and_the_read_ahead_they_allow() {
        let open = Slice { from: 0, to: None };
        let bounded = Slice {
            from: 0,
            to: Some(5),
        };
        let paging = Paging::default();
        let mut paged = Strategy::for_window(open, paging, false);
        assert_eq!(paged.name(), "paged");
        assert_eq!(
            Strategy::for_window(bounded, paging, false).name(),
            "targeted"
        );
        let ignored = Paging {
            offset_ignored: true,
            ..paging
        };
        assert_eq!(Strategy::for_window(open, ignored, false).name(), "sliced");
        // A full page asks for the next, and the one after it goes out ahead.
        let full = page(PAGE_SIZE, PAGE_SIZE);
        let next = match paged.after(&full, 100) {
            Ok(Turn::Ask(r)) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(next, request(PAGE_SIZE));
        assert_eq!(paged.ahead_of(next, &full), Some(request(2 * PAGE_SIZE)));
        // A page served again: the UCM ignores offset, and the read hands over to slices.
        assert!(matches!(
            paged.after(&page(PAGE_SIZE, 0), 100),
            Err(PagingError::OffsetIgnored { .. })
        ));
        // Slices are not known ahead.
        let mut sliced = Strategy::for_window(open, ignored, false);
        let full_slice = page(PAGE_SIZE, PAGE_SIZE);
        let next = match sliced.after(&full_slice, 100) {
            Ok(Turn::Ask(r)) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(next.offset, 0);
        assert_eq!(sliced.ahead_of(next, &full_slice), None);
    }
}
