//! Which windows a target's polls use, and the probes that decide it (docs/design.md §2.4).
//!
//! Start windows work on every UCM. End windows are used only after the running UCM answered
//! an end-filtered question exactly right; channel-bounded windows only while the API user may
//! read the channel lists. Both are checked by a full sweep every `safety_sweep_interval`: a
//! call it finds that the fast mode should have read already counts in
//! `ucm_cdr_late_records_total`, and the target goes back to start windows for good (until a
//! restart), saying why.

use std::time::Duration;

use super::channels::{self, merge_windows, ChannelWindows, Snapshot, Tracker};
use super::ingest::{ReadNotes, Span};
use super::plan::{
    self, ceiling, Filter, Plan, PollKind, PollPlan, Reach, WindowMode, WATERMARK_SLACK,
};
use super::probe::{self, question, EndProbe, Question};
use super::report::PollReport;
use crate::cdr::ExtensionPattern;
use crate::clock::LocalSecs;
use crate::clock::Zone;
use crate::config::WindowPreference;
use crate::state::{PollState, WindowRecord};
use crate::ucm::Session;

/// How often the probes are repeated: firmware can change under a running exporter.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(3 * 3600);

/// End probes in a row that got no answer to judge before the answer counts as "not
/// honoured" until the next [`PROBE_INTERVAL`]: a UCM that never answers the question is not
/// asked at every poll.
pub const MAX_UNANSWERED: u32 = 3;

/// Calls kept for the end probe's question: the latest by end, which is where the question
/// looks (a pivot that ended a minute or so before the poll, and the calls around it). Every
/// target keeps up to twice this many (32 bytes each); at 4096 every target of a fleet grew by
/// 2 KB an hour (at 60 calls an hour) for days, towards a quarter of a megabyte each.
pub const SPANS_KEPT: usize = 256;

#[derive(Debug)]
pub struct Windows {
    pref: WindowPreference,
    pub mode: WindowMode,
    /// The spelling of the end-filter parameter this UCM honours, once proven.
    end_param: Option<&'static str>,
    /// Whether its end windows return the calls that failed (which it may write without an
    /// `end`); `None` until a failed call could be asked about.
    end_sees_failed: Option<bool>,
    /// Monotonic time when the end probe is asked again; `None`: at the first chance.
    end_due: Option<Duration>,
    /// End probes in a row without an answer to judge.
    end_unanswered: u32,
    /// Whether the API user may read the channel lists; `None` until tried.
    channels_allowed: Option<bool>,
    /// Monotonic time when the channel lists are tried again.
    channels_due: Option<Duration>,
    ends_read_to: Option<LocalSecs>,
    held: Vec<LocalSecs>,
    tracker: Tracker,
    spans: Vec<Span>,
    /// Why the fast modes were given up, if they were.
    fallback: Option<String>,
    /// Monotonic time when the fast modes are examined again after a fallback.
    fallback_until: Option<Duration>,
    /// Whether this poll's channel snapshot was taken: without it a channel-bounded poll
    /// cannot know which calls ended, and reads start windows instead.
    snapshot_taken: bool,
}

/// What the probes need of the poller.
pub struct Probing<'a> {
    pub session: &'a Session,
    pub tz: Zone,
    pub extensions: &'a ExtensionPattern,
    /// The newest call start read.
    pub watermark: Option<LocalSecs>,
    /// The UCM reads window times as UTC.
    pub reads_utc: bool,
    /// This host's clock in the UCM's zone.
    pub local_now: LocalSecs,
    pub monotonic: Duration,
}

impl Windows {
    pub fn new(pref: WindowPreference) -> Self {
        Windows {
            pref,
            mode: WindowMode::Start,
            end_param: None,
            end_sees_failed: None,
            end_due: None,
            end_unanswered: 0,
            channels_allowed: None,
            channels_due: None,
            ends_read_to: None,
            held: Vec::new(),
            tracker: Tracker::default(),
            spans: Vec::new(),
            fallback: None,
            fallback_until: None,
            snapshot_taken: false,
        }
    }

    /// Channel rows whose start lies further back than `reach`'s `max_call_duration` before the
    /// watermark are not trusted to bound a window: no call that old is counted.
    pub fn with_reach(mut self, reach: &Reach) -> Self {
        self.tracker = Tracker::with_max_call_duration(plan::secs(reach.max_call_duration));
        self
    }

    fn fast_allowed(&self, reach: &Reach) -> bool {
        reach.safety_sweep_interval.is_some() && self.fallback.is_none()
    }

    pub fn end_param(&self) -> Option<&'static str> {
        self.end_param
    }

    /// What the planner needs of the fast modes. A channel-bounded poll without this poll's
    /// snapshot cannot know which calls ended, so it reads start windows instead.
    fn fast(&self, reach: &Reach) -> Fast {
        let mode = match self.mode {
            WindowMode::Channels if !self.snapshot_taken => {
                tracing::debug!("no channel snapshot this poll: start windows");
                WindowMode::Start
            }
            m => m,
        };
        Fast {
            mode: Some(mode),
            end_sees_failed: self.end_sees_failed,
            ends_read_to: self.ends_read_to,
            held: self.held.clone(),
            channels: (self.mode == WindowMode::Channels)
                .then(|| self.tracker.windows(reach.end_margin_secs()))
                .flatten(),
        }
    }

    /// The reads of the next poll: the one rule of what each poll must read, in every mode
    /// (see [`plan_poll`]).
    pub fn plan(
        &self,
        state: Option<&PollState>,
        now: LocalSecs,
        since_sweep: Option<Duration>,
        reach: &Reach,
    ) -> PollPlan {
        plan_poll(state, now, since_sweep, reach, &self.fast(reach))
    }

    /// Probes the modes when due, and takes the channel snapshot of a channel-bounded poll,
    /// before the poll is planned; then chooses the mode.
    pub async fn refresh(&mut self, reach: &Reach, p: Probing<'_>) {
        self.reexamine(p.monotonic);
        if self.wants_snapshot(reach, p.monotonic) {
            let snapshot = channels::snapshot(p.session, p.tz).await;
            self.observe(snapshot, p.watermark, ceiling(p.local_now), p.monotonic);
        }
        let settled = p.local_now - reach.end_margin_secs() - 60;
        let utc = p.reads_utc.then_some(p.tz);
        let probed = self.end_probe_due(reach, p.monotonic);
        if probed {
            let q = self.question(settled);
            let result = probe::probe_end(p.session, q, utc, p.extensions).await;
            self.probed_end(result, p.monotonic);
        }
        // Whether end windows return the failed calls is asked with each probe, and as soon as
        // a failed call has been read while it is not known.
        let failed_q = probe::failed_question(&self.spans, settled);
        if let (Some(param), Some(q)) = (self.end_param, failed_q) {
            if probed || self.end_sees_failed.is_none() {
                let seen = probe::probe_failed(p.session, &q, param, utc, p.extensions).await;
                self.probed_failed(seen);
            }
        }
        self.decide(reach);
    }

    /// Snapshots are taken every poll in channel mode, and every probe interval otherwise while
    /// channel mode may become the choice.
    pub fn wants_snapshot(&self, reach: &Reach, now: Duration) -> bool {
        if !self.fast_allowed(reach) || !self.pref.allows_channels() {
            return false;
        }
        self.mode == WindowMode::Channels
            || (self.mode == WindowMode::Start && due(self.channels_due, now))
    }

    pub fn observe(
        &mut self,
        snapshot: Snapshot,
        watermark: Option<LocalSecs>,
        ceiling: LocalSecs,
        now: Duration,
    ) {
        self.channels_due = Some(now + PROBE_INTERVAL);
        self.snapshot_taken = false;
        match snapshot {
            Snapshot::Rows(rows) => match self.tracker.observe(&rows, watermark, ceiling) {
                Ok(()) => {
                    if self.channels_allowed != Some(true) {
                        tracing::info!(
                            rows = rows.len(),
                            "the channel lists are readable: channel-bounded windows are possible"
                        );
                    }
                    self.channels_allowed = Some(true);
                    self.snapshot_taken = true;
                }
                Err(why) => {
                    if self.channels_allowed != Some(false) {
                        tracing::info!(
                            "the channel lists cannot bound windows: {why}; asked again in {} h",
                            PROBE_INTERVAL.as_secs() / 3600
                        );
                    }
                    self.channels_allowed = Some(false);
                }
            },
            Snapshot::Refused(e) => {
                if self.channels_allowed != Some(false) {
                    tracing::info!(
                        "the channel lists cannot be read ({e}); no channel-bounded windows, asked again in {} h",
                        PROBE_INTERVAL.as_secs() / 3600
                    );
                }
                self.channels_allowed = Some(false);
                self.tracker.lost();
            }
            Snapshot::Failed(e) => {
                tracing::warn!(
                    "cannot read the channel lists ({e}); the next channel-bounded poll is a sweep"
                );
                self.tracker.lost();
            }
        }
    }

    /// The end probe is due at the start, every probe interval, and as soon as calls have been
    /// read to ask about.
    pub fn end_probe_due(&self, reach: &Reach, now: Duration) -> bool {
        self.fast_allowed(reach)
            && self.pref.allows_end()
            && due(self.end_due, now)
            && !self.spans.is_empty()
    }

    pub fn question(&self, settled: LocalSecs) -> Option<Question> {
        question(&self.spans, settled)
    }

    pub fn probed_end(&mut self, result: Option<EndProbe>, now: Duration) {
        let Some(result) = result else {
            // No call to ask about yet: asked again next poll.
            return;
        };
        if let EndProbe::Unanswered(why) = &result {
            self.end_unanswered += 1;
            if self.end_unanswered < MAX_UNANSWERED {
                tracing::debug!("the end probe got no answer, asked again next poll: {why}");
                return;
            }
        }
        self.end_unanswered = 0;
        self.end_due = Some(now + PROBE_INTERVAL);
        match result {
            EndProbe::Honoured(param) => {
                if self.end_param != Some(param) {
                    tracing::info!(param, "the UCM filters cdrapi on call end when asked");
                }
                self.end_param = Some(param);
            }
            EndProbe::NotHonoured(why) => {
                tracing::info!("the UCM does not filter cdrapi on call end: {why}");
                self.end_param = None;
                self.end_sees_failed = None;
            }
            EndProbe::Unanswered(why) => {
                tracing::info!(
                    "the end probe got no answer {MAX_UNANSWERED} polls in a row: start or channel-bounded windows until it is asked again: {why}"
                );
                self.end_param = None;
            }
        }
    }

    /// Takes the answer to whether end windows return the failed calls.
    pub fn probed_failed(&mut self, seen: Option<bool>) {
        let Some(seen) = seen else {
            return;
        };
        if self.end_sees_failed != Some(seen) {
            if seen {
                tracing::info!("the UCM's end windows return the calls that failed");
            } else {
                tracing::info!(
                    "the UCM's end windows leave out calls that failed (written without an end): \
                     end-window polls also read the starts of the last {ENDLESS_SPAN} s before their window"
                );
            }
        }
        self.end_sees_failed = Some(seen);
    }

    /// Chooses the mode from what the probes showed.
    pub fn decide(&mut self, reach: &Reach) {
        let mode = if !self.fast_allowed(reach) {
            WindowMode::Start
        } else if self.pref.allows_end() && self.end_param.is_some() {
            WindowMode::End
        } else if self.pref.allows_channels() && self.channels_allowed == Some(true) {
            WindowMode::Channels
        } else {
            WindowMode::Start
        };
        if mode != self.mode {
            tracing::info!(
                from = self.mode.as_str(),
                to = mode.as_str(),
                "CDR window mode changed"
            );
            if self.mode == WindowMode::Channels {
                // Snapshots stop: when channel mode returns, it starts with a sweep.
                self.tracker.lost();
            }
            self.mode = mode;
        }
    }

    pub fn read_failed(&mut self) {
        self.tracker.lost();
        self.snapshot_taken = false;
    }

    /// The UCM's clock went back `by` seconds with its UTC offset (DST fall-back): calls now
    /// end up to `by` before the newest end read, so end windows reach back as far; the channel
    /// lists, whose times straddle the step, bound no window until a sweep.
    pub fn clock_stepped_back(&mut self, by: LocalSecs) {
        self.ends_read_to = self.ends_read_to.map(|e| e.saturating_sub(by));
        self.tracker.lost();
    }

    /// After a successful poll: what its reads covered, and whether a safety sweep found that
    /// the fast mode missed calls.
    pub fn polled(
        &mut self,
        poll: &PollPlan,
        notes: ReadNotes,
        report: &PollReport,
        (ceiling, now): (LocalSecs, Duration),
    ) {
        let swept = poll.kind.reads_back_fully();
        let ends_all = swept || poll.reads.iter().any(|p| p.filter == Filter::End);
        if ends_all {
            if let Some(e) = notes.newest_end {
                // Not past this host's "now" in the UCM's zone: an end ahead of it (a UCM
                // clock stepped back, a call stamped on the clock before the step) must not
                // move the next window past calls that end meanwhile.
                let e = e.min(ceiling.saturating_sub(WATERMARK_SLACK));
                self.ends_read_to = Some(self.ends_read_to.map_or(e, |old| old.max(e)));
            }
        }
        self.held = notes.held;
        self.snapshot_taken = false;
        if poll.mode == WindowMode::Channels {
            self.tracker.read(&notes.uniqueids);
            if swept {
                self.tracker.swept();
            }
        }
        self.spans.extend(notes.spans);
        if self.spans.len() > 2 * SPANS_KEPT {
            // Keep the calls that ended last: the probe asks about recent ends.
            self.spans.sort_unstable_by_key(|s| s.end);
            let cut = self.spans.len() - SPANS_KEPT;
            self.spans.drain(..cut);
            // A page of many calls may have grown the vector past the bound.
            self.spans.shrink_to(2 * SPANS_KEPT);
        }
        if report.late_records > 0 && poll.kind == PollKind::Sweep && poll.mode != WindowMode::Start
        {
            let why = format!(
                "the safety sweep found {} CDR legs that {} windows had missed (counted now, late)",
                report.late_records,
                poll.mode.as_str()
            );
            tracing::warn!(
                "{why}; falling back to start windows for {} h, then the fast modes are examined again",
                FALLBACK_RETRY.as_secs() / 3600
            );
            self.fallback = Some(why);
            self.fallback_until = Some(now + FALLBACK_RETRY);
            self.mode = WindowMode::Start;
            self.tracker.lost();
        }
    }

    /// Ends a fallback whose time is up: the probes start afresh, as at a first start.
    fn reexamine(&mut self, now: Duration) {
        if self.fallback.is_none() || !due(self.fallback_until, now) {
            return;
        }
        let why = self.fallback.take().unwrap_or_default();
        tracing::info!(
            "examining the fast window modes again, {} h after the fallback ({why})",
            FALLBACK_RETRY.as_secs() / 3600
        );
        self.fallback_until = None;
        (self.end_param, self.end_sees_failed, self.end_due) = (None, None, None);
        (self.channels_allowed, self.channels_due) = (None, None);
    }

    /// What the state file keeps of the modes; `wall` and `mono` are this host's clocks now.
    pub fn record(&self, wall: i64, mono: Duration) -> WindowRecord {
        let at = |d: Option<Duration>| d.map(|d| wall.saturating_add(secs_between(mono, d)));
        WindowRecord {
            mode: self.mode.as_str().to_string(),
            end_param: self.end_param.map(str::to_string),
            end_sees_failed: self.end_sees_failed,
            end_probe_due: at(self.end_due),
            channels_allowed: self.channels_allowed,
            channels_check_due: at(self.channels_due),
            fallback: self.fallback.clone(),
            fallback_until: at(self.fallback_until),
        }
    }

    /// Continues with what a state file kept: no probe is asked before its time, and a
    /// fallback holds until its time, counted on this host's clock across the restart (at most
    /// one interval ahead, should that clock have stepped back).
    pub fn restore(&mut self, r: &WindowRecord, wall: i64, mono: Duration, reach: &Reach) {
        let at = |t: Option<i64>, most: Duration| {
            t.map(|t| {
                let left = u64::try_from(t.saturating_sub(wall)).unwrap_or(0);
                mono + Duration::from_secs(left).min(most)
            })
        };
        self.end_param = r
            .end_param
            .as_deref()
            .and_then(|p| probe::PARAMS.into_iter().find(|k| *k == p));
        self.end_sees_failed = r.end_sees_failed.filter(|_| self.end_param.is_some());
        self.end_due = at(r.end_probe_due, PROBE_INTERVAL);
        self.channels_allowed = r.channels_allowed;
        self.channels_due = at(r.channels_check_due, PROBE_INTERVAL);
        self.fallback = r.fallback.clone();
        self.fallback_until = at(r.fallback_until, FALLBACK_RETRY).filter(|_| r.fallback.is_some());
        self.decide(reach);
        tracing::info!(
            mode = self.mode.as_str(),
            end_param = self.end_param,
            fallback = self.fallback.as_deref(),
            "window mode as saved before the restart"
        );
    }

    /// Why the fast modes were given up, if they were.
    pub fn fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }
}

fn due(at: Option<Duration>, now: Duration) -> bool {
    at.is_none_or(|t| now >= t)
}

/// Seconds from `now` to `then` on one monotonic clock, negative when `then` has passed.
fn secs_between(now: Duration, then: Duration) -> i64 {
    let s = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    s(then).saturating_sub(s(now))
}

/// How long a target whose fast modes missed calls stays on start windows before it examines
/// them again: firmware, permissions and load change, and one bad hour should not cost the
/// lighter reads for good.
pub const FALLBACK_RETRY: Duration = Duration::from_secs(24 * 3600);

/// A call that fails before it is set up lasts at most this long (a real UCM's: 0 to 8 s). On
/// a UCM whose end windows leave such calls out, an end-window poll also reads the starts from
/// this long before its end window: every such call not yet read started there.
pub const ENDLESS_SPAN: i64 = 30;

/// What the fast modes know at the time of a poll, from earlier reads and the channel lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fast {
    pub mode: Option<WindowMode>,
    /// Whether end windows return the calls that failed; unless known to, an end-window poll
    /// also reads the recent starts.
    pub end_sees_failed: Option<bool>,
    /// Every call that ended before this (and started inside the horizon) has been read; set by
    /// sweeps and end reads only.
    pub ends_read_to: Option<LocalSecs>,
    /// Starts of grouped entries the last poll held back (settle): read again until counted.
    pub held: Vec<LocalSecs>,
    /// Channel mode's windows; `None` until the channel lists have been followed since a sweep.
    pub channels: Option<ChannelWindows>,
}

/// Plans one poll in the mode `fast` allows: the start-window [`plan`] in start mode, at the
/// first start and whenever the fast mode cannot yet say what it has read; otherwise the fast
/// reads, followed by a full sweep every `safety_sweep_interval` that checks them.
pub fn plan_poll(
    state: Option<&PollState>,
    now: LocalSecs,
    since_sweep: Option<Duration>,
    reach: &Reach,
    fast: &Fast,
) -> PollPlan {
    let start_mode = |since| {
        let p = plan::plan(state, now, since, reach);
        PollPlan {
            kind: p.kind,
            mode: WindowMode::Start,
            reads: vec![p],
        }
    };
    let (Some(mode), Some(safety)) = (fast.mode, reach.safety_sweep_interval) else {
        return start_mode(since_sweep);
    };
    if state.is_none() || mode == WindowMode::Start {
        return start_mode(since_sweep);
    }
    let base = plan::plan(state, now, None, reach);
    let fast_reads = match mode {
        WindowMode::End => end_reads(&base, fast, reach),
        WindowMode::Channels => channel_reads(&base, fast),
        WindowMode::Start => unreachable!("handled above"),
    };
    // Nothing says what the fast mode has read yet: a sweep reads it all.
    let Some((mut reads, late_before)) = fast_reads else {
        return PollPlan {
            kind: PollKind::Sweep,
            mode,
            reads: vec![base],
        };
    };
    let kind = if since_sweep.is_none_or(|d| d >= safety) {
        reads.push(Plan {
            late_before: Some(late_before),
            ..base
        });
        PollKind::Sweep
    } else {
        PollKind::Incremental
    };
    PollPlan { kind, mode, reads }
}

/// The end read of an end-mode poll, from the newest end read minus `end_margin` (or the start
/// of an entry held back), and the time before which a call the safety sweep finds is late.
/// `None` until an end read or a sweep has said which ends were read.
fn end_reads(base: &Plan, fast: &Fast, reach: &Reach) -> Option<(Vec<Plan>, LocalSecs)> {
    let read_to = fast.ends_read_to?;
    let from = fast
        .held
        .iter()
        .copied()
        .fold(read_to.saturating_sub(reach.end_margin_secs()), i64::min)
        .max(base.horizon);
    let read = Plan {
        kind: PollKind::Incremental,
        filter: Filter::End,
        from,
        ..*base
    };
    let mut reads = vec![read];
    if fast.end_sees_failed != Some(true) {
        // A failed call written without an end, not read yet, ended after the last end read's
        // window began (its CDR appears within `end_margin`), so it started at most
        // ENDLESS_SPAN before this one.
        reads.push(Plan {
            filter: Filter::Start,
            from: from.saturating_sub(ENDLESS_SPAN).max(base.horizon),
            ..read
        });
    }
    Some((reads, from))
}

/// The reads of a channel-bounded poll: the recent starts, then a targeted window around each
/// call the channel lists saw end (and each entry held back), clipped where the recent window
/// takes over. `None` until the lists have been followed since a sweep.
fn channel_reads(base: &Plan, fast: &Fast) -> Option<(Vec<Plan>, LocalSecs)> {
    let c = fast.channels.as_ref()?;
    let recent_from = c.recent_from.max(base.horizon);
    let incremental = Plan {
        kind: PollKind::Incremental,
        ..*base
    };
    let mut reads = vec![Plan {
        from: recent_from,
        ..incremental
    }];
    let held = fast.held.iter().map(|&s| (s, s));
    for (lo, hi) in merge_windows(c.targets.iter().copied().chain(held).collect()) {
        let (lo, hi) = (lo.max(base.horizon), hi.min(recent_from.saturating_sub(1)));
        if lo <= hi {
            reads.push(Plan {
                from: lo,
                to: Some(hi),
                ..incremental
            });
        }
    }
    Some((reads, c.late_before))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn reach() -> Reach {
        Reach {
            max_call_duration: 4 * HOUR,
            sweep_interval: Duration::from_secs(300),
            overlap: Duration::from_secs(120),
            poll_interval: Duration::from_secs(60),
            settle: Duration::from_secs(10),
            safety_sweep_interval: Some(HOUR),
            end_margin: Duration::from_secs(60),
        }
    }

    fn windows() -> Windows {
        let mut w = Windows::new(WindowPreference::Auto);
        w.spans.push(Span {
            key: 1,
            start: 0,
            end: 100,
            failed: false,
        });
        w
    }

    #[test]
    fn an_unanswered_end_probe_is_asked_again_and_keeps_the_end_windows() {
        let (r, mut w) = (reach(), windows());
        w.probed_end(Some(EndProbe::Honoured("timeFilterType")), HOUR);
        w.decide(&r);
        assert_eq!(w.mode, WindowMode::End);
        // Three hours on, the UCM is down while the probe asks again.
        let later = HOUR + PROBE_INTERVAL;
        assert!(w.end_probe_due(&r, later));
        for poll in 0..MAX_UNANSWERED - 1 {
            let now = later + Duration::from_secs(60 * u64::from(poll));
            w.probed_end(Some(EndProbe::Unanswered("connect".into())), now);
            w.decide(&r);
            assert_eq!(w.mode, WindowMode::End, "a passing fault keeps end windows");
            assert!(w.end_probe_due(&r, now), "asked again at the next poll");
        }
        w.probed_end(Some(EndProbe::Honoured("timeFilterType")), later + HOUR);
        assert!(!w.end_probe_due(&r, later + HOUR + HOUR));
        assert_eq!(w.end_unanswered, 0);
    }

    #[test]
    fn an_end_probe_never_answered_gives_the_end_windows_up_for_a_while() {
        let (r, mut w) = (reach(), windows());
        for poll in 0..MAX_UNANSWERED {
            w.probed_end(Some(EndProbe::Unanswered("timeout".into())), HOUR);
            assert_eq!(w.end_probe_due(&r, HOUR), poll + 1 < MAX_UNANSWERED);
        }
        w.decide(&r);
        assert_eq!(w.mode, WindowMode::Start);
        assert!(w.end_probe_due(&r, HOUR + PROBE_INTERVAL));
        // A wrong answer is an answer: no retry before the interval.
        let mut w = windows();
        w.probed_end(Some(EndProbe::NotHonoured("empty".into())), HOUR);
        assert!(!w.end_probe_due(&r, HOUR + HOUR));
        assert_eq!(w.end_param(), None);
    }

    /// The rule of what each poll reads, on the start plan's settings.
    mod planning {
        use super::*;
        use crate::poll::plan::fixtures::{reach, state, H, M};
        use crate::poll::plan::plan;

        fn fast_reach() -> Reach {
            Reach {
                safety_sweep_interval: Some(Duration::from_secs(3600)),
                ..reach()
            }
        }

        /// 4 h of max_call_duration, the 1 h safety sweep and a 1 min poll.
        const FAST_BACK: i64 = 5 * H + M;

        #[test]
        fn end_windows_read_from_the_newest_end_read_minus_the_margin() {
            let s = state(90 * H, Some(99 * H));
            let min = |m: u64| Some(Duration::from_secs(m * 60));
            // At a UCM whose end windows are known to return failed calls.
            let fast = Fast {
                mode: Some(WindowMode::End),
                ends_read_to: Some(99 * H + 30),
                end_sees_failed: Some(true),
                ..Fast::default()
            };
            let p = plan_poll(Some(&s), 100 * H, min(5), &fast_reach(), &fast);
            assert_eq!(
                (p.kind, p.mode, p.reads.len()),
                (PollKind::Incremental, WindowMode::End, 1)
            );
            let r = p.reads[0];
            assert_eq!(
                (r.filter, r.from, r.to, r.late_before),
                (Filter::End, 99 * H, None, None)
            );
            assert_eq!(
                r.horizon,
                99 * H - FAST_BACK,
                "keys are kept for the longer sweep interval"
            );
            // A held entry keeps the window at its start until it is counted.
            let held = Fast {
                held: vec![98 * H],
                ..fast.clone()
            };
            assert_eq!(
                plan_poll(Some(&s), 100 * H, min(5), &fast_reach(), &held).reads[0].from,
                98 * H
            );
            // The safety sweep comes after the end read, and calls it finds that ended before the end
            // read's window are late.
            let p = plan_poll(Some(&s), 100 * H, min(60), &fast_reach(), &fast);
            assert_eq!(p.kind, PollKind::Sweep);
            assert_eq!(p.reads.len(), 2);
            assert_eq!(
                (p.reads[1].filter, p.reads[1].from),
                (Filter::Start, 99 * H - FAST_BACK)
            );
            assert_eq!(p.reads[1].late_before, Some(99 * H));
            // Until end windows are known to return failed calls (written without an end on
            // some UCMs), the starts from ENDLESS_SPAN before the end window are read too.
            for sees in [None, Some(false)] {
                let doubt = Fast {
                    end_sees_failed: sees,
                    ..fast.clone()
                };
                let p = plan_poll(Some(&s), 100 * H, min(5), &fast_reach(), &doubt);
                let windows: Vec<_> = p.reads.iter().map(|r| (r.filter, r.from, r.to)).collect();
                assert_eq!(
                    windows,
                    [
                        (Filter::End, 99 * H, None),
                        (Filter::Start, 99 * H - ENDLESS_SPAN, None)
                    ]
                );
                assert_eq!(p.kind, PollKind::Incremental);
            }
            // Without a known end coverage the end mode sweeps first.
            let unknown = Fast {
                ends_read_to: None,
                ..fast.clone()
            };
            let p = plan_poll(Some(&s), 100 * H, min(5), &fast_reach(), &unknown);
            assert_eq!(
                (p.kind, p.reads.len(), p.reads[0].late_before),
                (PollKind::Sweep, 1, None)
            );
        }

        #[test]
        fn channel_windows_read_recent_starts_and_each_ended_call() {
            let s = state(90 * H, Some(99 * H));
            let fast = Fast {
                mode: Some(WindowMode::Channels),
                channels: Some(ChannelWindows {
                    recent_from: 99 * H - 2 * M,
                    targets: vec![
                        (97 * H, 97 * H + 2),
                        (99 * H - 3 * M, 99 * H),
                        (80 * H, 80 * H + 2),
                    ],
                    late_before: 99 * H - M,
                }),
                held: vec![98 * H],
                ..Fast::default()
            };
            let p = plan_poll(
                Some(&s),
                100 * H,
                Some(Duration::from_secs(60)),
                &fast_reach(),
                &fast,
            );
            let windows: Vec<_> = p.reads.iter().map(|r| (r.filter, r.from, r.to)).collect();
            assert_eq!(
                windows,
                vec![
                    (Filter::Start, 99 * H - 2 * M, None),
                    (Filter::Start, 97 * H, Some(97 * H + 2)),
                    (Filter::Start, 98 * H, Some(98 * H)),
                    // Clipped where the recent window takes over; one older than the horizon is
                    // not read at all.
                    (Filter::Start, 99 * H - 3 * M, Some(99 * H - 2 * M - 1)),
                ]
            );
            assert!(p
                .reads
                .iter()
                .all(|r| r.kind == PollKind::Incremental && r.late_before.is_none()));
            // Not followed since a sweep: a sweep.
            let unready = Fast {
                channels: None,
                ..fast.clone()
            };
            let p = plan_poll(
                Some(&s),
                100 * H,
                Some(Duration::from_secs(60)),
                &fast_reach(),
                &unready,
            );
            assert_eq!((p.kind, p.reads.len()), (PollKind::Sweep, 1));
            // The safety sweep judges by the channel windows' late_before.
            let p = plan_poll(Some(&s), 100 * H, None, &fast_reach(), &fast);
            assert_eq!(p.reads.last().unwrap().late_before, Some(99 * H - M));
        }

        #[test]
        fn start_mode_and_a_first_start_ignore_the_fast_modes() {
            let s = state(90 * H, Some(99 * H));
            let fast = Fast {
                mode: Some(WindowMode::End),
                ends_read_to: Some(99 * H),
                ..Fast::default()
            };
            let since = Some(Duration::from_secs(60));
            // Fast modes off in the config: the start plan, sweeping every sweep_interval.
            let p = plan_poll(Some(&s), 100 * H, since, &reach(), &fast);
            assert_eq!(
                (p.mode, p.reads),
                (
                    WindowMode::Start,
                    vec![plan(Some(&s), 100 * H, since, &reach())]
                )
            );
            let p = plan_poll(None, 100 * H, None, &fast_reach(), &fast);
            assert_eq!((p.kind, p.mode), (PollKind::Baseline, WindowMode::Start));
        }
    }
}
