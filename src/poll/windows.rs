//! Which windows a target's polls use, and the probes that decide it (docs/design.md §2.4).
//!
//! Start windows work on every UCM. End windows are used only after the running UCM answered
//! an end-filtered question exactly right; channel-bounded windows only while the API user may
//! read the channel lists. Both are checked by a full sweep every `safety_sweep_interval`: a
//! call it finds that the fast mode should have read already counts in
//! `ucm_cdr_late_records_total`, and the target goes back to start windows for good (until a
//! restart), saying why.

use std::time::Duration;

use foldhash::HashSet;
use serde_json::Map;

use super::channels::{parse_rows, Row, Tracker};
use super::ingest::{ReadNotes, Span};
use super::plan::{Fast, Filter, PollKind, PollPlan, Reach, WindowMode};
use super::probe::{judge, question, EndProbe, Question, PARAMS};
use crate::cdr::{self, ExtensionPattern};
use crate::config::WindowPreference;
use crate::error::{Reason, UcmError};
use crate::state::LocalSecs;
use crate::ucm::cdrapi::{decode_page, window_params};
use crate::ucm::{lists, Session};

/// How often the probes are repeated: firmware can change under a running exporter.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(3 * 3600);

/// End probes in a row that got no answer to judge before the answer counts as "not
/// honoured" until the next [`PROBE_INTERVAL`]: a UCM that never answers the question is not
/// asked at every poll.
const MAX_UNANSWERED: u32 = 3;

/// Calls kept for the end probe's question.
const SPANS_KEPT: usize = 4096;

/// The channel actions of one snapshot.
pub const CHANNEL_ACTIONS: [&str; 2] = ["listBridgedChannels", "listUnBridgedChannels"];

#[derive(Debug)]
pub struct Windows {
    pref: WindowPreference,
    pub mode: WindowMode,
    /// The spelling of the end-filter parameter this UCM honours, once proven.
    end_param: Option<&'static str>,
    /// Monotonic time of the last end probe that could ask its question.
    end_probed: Option<Duration>,
    /// End probes in a row without an answer to judge.
    end_unanswered: u32,
    /// Whether the API user may read the channel lists; `None` until tried.
    channels_allowed: Option<bool>,
    channels_checked: Option<Duration>,
    ends_read_to: Option<LocalSecs>,
    held: Vec<LocalSecs>,
    tracker: Tracker,
    spans: Vec<Span>,
    /// Why the fast modes were given up, if they were.
    fallback: Option<String>,
    /// Whether this poll's channel snapshot was taken: without it a channel-bounded poll
    /// cannot know which calls ended, and reads start windows instead.
    snapshot_taken: bool,
}

/// A channel snapshot, or why there is none.
pub enum Snapshot {
    Rows(Vec<Row>),
    /// The API user may not read the lists, or the firmware does not know them.
    Refused(UcmError),
    Failed(UcmError),
}

impl Windows {
    pub fn new(pref: WindowPreference) -> Self {
        Windows {
            pref,
            mode: WindowMode::Start,
            end_param: None,
            end_probed: None,
            end_unanswered: 0,
            channels_allowed: None,
            channels_checked: None,
            ends_read_to: None,
            held: Vec::new(),
            tracker: Tracker::default(),
            spans: Vec::new(),
            fallback: None,
            snapshot_taken: false,
        }
    }

    fn fast_allowed(&self, reach: &Reach) -> bool {
        reach.safety_sweep_interval.is_some() && self.fallback.is_none()
    }

    pub fn end_param(&self) -> Option<&'static str> {
        self.end_param
    }

    /// What the planner needs of the fast modes.
    pub fn fast(&self, reach: &Reach) -> Fast {
        let mode = match self.mode {
            WindowMode::Channels if !self.snapshot_taken => WindowMode::Start,
            m => m,
        };
        Fast {
            mode: Some(mode),
            ends_read_to: self.ends_read_to,
            held: self.held.clone(),
            channels: (self.mode == WindowMode::Channels)
                .then(|| self.tracker.windows(reach.end_margin_secs()))
                .flatten(),
        }
    }

    /// Snapshots are taken every poll in channel mode, and every probe interval otherwise while
    /// channel mode may become the choice.
    pub fn wants_snapshot(&self, reach: &Reach, now: Duration) -> bool {
        if !self.fast_allowed(reach) || !self.pref.allows_channels() {
            return false;
        }
        self.mode == WindowMode::Channels
            || (self.mode == WindowMode::Start && due(self.channels_checked, now))
    }

    pub fn observe(
        &mut self,
        snapshot: Snapshot,
        watermark: Option<LocalSecs>,
        ceiling: LocalSecs,
        now: Duration,
    ) {
        self.channels_checked = Some(now);
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
            && due(self.end_probed, now)
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
        self.end_probed = Some(now);
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
            }
            EndProbe::Unanswered(why) => {
                tracing::info!(
                    "the end probe got no answer {MAX_UNANSWERED} polls in a row: start or channel-bounded windows until it is asked again: {why}"
                );
                self.end_param = None;
            }
        }
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

    /// After a successful poll: what its reads covered, and whether a safety sweep found that
    /// the fast mode missed calls.
    pub fn polled(
        &mut self,
        poll: &PollPlan,
        notes: ReadNotes,
        report: &super::PollReport,
        ceiling: LocalSecs,
    ) {
        let swept = poll.kind.reads_back_fully();
        let ends_all = swept || poll.reads.iter().any(|p| p.filter == Filter::End);
        if ends_all {
            if let Some(e) = notes.newest_end {
                let e = e.min(ceiling);
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
        }
        if report.late_records > 0 && poll.kind == PollKind::Sweep && poll.mode != WindowMode::Start
        {
            let why = format!(
                "the safety sweep found {} CDR legs that {} windows had missed (counted now, late)",
                report.late_records,
                poll.mode.as_str()
            );
            tracing::warn!("{why}; falling back to start windows until restart");
            self.fallback = Some(why);
            self.mode = WindowMode::Start;
            self.tracker.lost();
        }
    }

    /// Why the fast modes were given up, if they were.
    pub fn fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }
}

fn due(last: Option<Duration>, now: Duration) -> bool {
    last.is_none_or(|t| now.saturating_sub(t) >= PROBE_INTERVAL)
}

/// Whether an error says the action is not there for this user or firmware, rather than that
/// the UCM or the network failed this once.
pub fn is_refusal(e: &UcmError) -> bool {
    matches!(
        e.reason(),
        Reason::Permission | Reason::Protocol | Reason::Decode
    )
}

/// Reads both channel lists, every page.
pub async fn snapshot(session: &Session, tz: chrono_tz::Tz) -> Snapshot {
    let mut rows = Vec::new();
    for action in CHANNEL_ACTIONS {
        match lists::all_rows(session, action, &Map::new(), "channel").await {
            Ok(list) => rows.extend(parse_rows(&list, tz)),
            Err(e) if is_refusal(&e) => return Snapshot::Refused(e),
            Err(e) => return Snapshot::Failed(e),
        }
    }
    Snapshot::Rows(rows)
}

/// Asks the question with each spelling of the parameter until one is answered right.
/// `None` when there is no question yet; `Err` with what was wrong with each answer. `utc`:
/// the UCM reads window times as UTC in this zone.
pub async fn probe_end(
    session: &Session,
    q: Option<Question>,
    utc: Option<chrono_tz::Tz>,
    ext: &ExtensionPattern,
) -> Option<EndProbe> {
    let q = q?;
    let sent = |t| utc.map_or(t, |tz| super::as_utc(tz, t));
    let mut why = Vec::new();
    let mut unanswered = false;
    for param in PARAMS {
        let params = window_params(sent(q.from), Some(sent(q.to)), Some(param), 0, 1000);
        let answer = session
            .call("cdrapi", params, |body| {
                let entries = decode_page(body)?;
                Ok(entries
                    .iter()
                    .filter_map(|e| cdr::classify(e, ext).map(|c| c.key))
                    .collect::<HashSet<u64>>())
            })
            .await;
        match answer {
            Ok(keys) => match judge(&q, &keys) {
                Ok(()) => return Some(EndProbe::Honoured(param)),
                Err(w) => why.push(format!("{param}: {w}")),
            },
            Err(e) => {
                unanswered |= !is_refusal(&e);
                why.push(format!("{param}: {e}"));
            }
        }
    }
    let why = why.join("; ");
    Some(if unanswered {
        EndProbe::Unanswered(why)
    } else {
        EndProbe::NotHonoured(why)
    })
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
}
