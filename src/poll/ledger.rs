//! What has been counted: the poll state and the counters, changed together by one commit
//! (docs/design.md §3.4): the keys and the series' values go to disk in one atomic write before
//! any scrape can show the values, so a counted call always has its keys on disk, a call whose
//! keys are on disk is never counted again, and the counters continue from the file after any
//! stop (§3.5).

use std::path::PathBuf;
use std::sync::Arc;

use super::ingest::{Pending, ReadNotes};
use super::plan::{Plan, PollKind, WATERMARK_SLACK};
use crate::clock::{from_local_secs, LocalSecs};
use crate::error::UcmError;
use crate::metrics::TargetMetrics;
use crate::series::SeriesValues;
use crate::state::{self, Loaded, Paging, PollState, UcmIdentity, WindowRecord};

/// A read other than a baseline commits (state written, counters applied) at least every this
/// many pages, so a long backlog shows progress and bounds what a crash can lose.
pub const COMMIT_EVERY_PAGES: usize = 10;

/// What one commit made count, for the read's report.
#[derive(Debug, Default)]
pub struct Committed {
    pub calls: u64,
    pub records: u64,
    pub late_records: u64,
    /// What the committed entries tell the window modes.
    pub notes: ReadNotes,
}

pub struct Ledger {
    state: Option<PollState>,
    /// The start last logged as beyond the watermark's ceiling.
    future_warned: Option<LocalSecs>,
    path: PathBuf,
    url: String,
    /// How far back keys are kept from the watermark (`Reach::sweep_back`).
    sweep_back: i64,
    metrics: Arc<TargetMetrics>,
    /// Why the state file is not used or written at all (a later version's): the target is not
    /// polled.
    refused: Option<String>,
    /// Whether the UCM still has to say who it is before the keys can be trusted; with the
    /// state of another URL held aside until it does.
    identity: Identity,
    /// What a state this process begins starts from.
    fresh: Fresh,
    /// What the file holds besides keys and series, as this process last wrote it; `None`
    /// until it has, so the first commit of a process always writes. A commit that adds
    /// nothing and changes none of it is not written: a quiet UCM's polls cost no write.
    written: Option<state::Head>,
}

/// What a state this process begins (none was found, or the keys of another UCM were dropped)
/// starts from: the series at zero or as the target had counted them, since when they count,
/// and the UCM's identity if it was asked before the state began.
#[derive(Debug, Default)]
struct Fresh {
    series: SeriesValues,
    since: i64,
    ucm: Option<UcmIdentity>,
}

/// Where the check of the UCM's identity stands.
#[derive(Debug)]
enum Identity {
    /// Asked at the first poll; a state of the same URL is in use meanwhile.
    Unasked,
    /// Asked at the first poll; the state was saved under another URL and is used only if the
    /// UCM there is the same one.
    Moved(Box<PollState>),
    Settled,
}

impl Ledger {
    /// Loads the target's state file and shows its series' values before any scrape; an
    /// unusable one is moved aside and a baseline follows with the series at zero. `now`: Unix
    /// time, when the series start from zero if they do.
    pub fn open(
        path: PathBuf,
        url: &str,
        sweep_back: i64,
        metrics: Arc<TargetMetrics>,
        now: i64,
    ) -> Self {
        let mut ledger = Ledger {
            state: None,
            future_warned: None,
            path,
            url: url.to_string(),
            sweep_back,
            metrics,
            refused: None,
            identity: Identity::Unasked,
            fresh: Fresh {
                since: now,
                ..Fresh::default()
            },
            written: None,
        };
        match state::load(&ledger.path) {
            Loaded::Found(s) => ledger.resume(*s, now),
            Loaded::Missing => {
                tracing::info!("no saved poll state: the first poll takes a baseline and counts only calls after it; the call series start from zero");
            }
            Loaded::Unusable(why) => {
                tracing::warn!("{why}; moving it aside and taking a new baseline; the call series start from zero");
                state::quarantine(&ledger.path);
            }
            Loaded::Newer(why) => {
                tracing::error!("{why}");
                ledger.refused = Some(why);
            }
        }
        let since = match (&ledger.state, &ledger.identity) {
            (Some(s), _) => s.series_since,
            (None, Identity::Moved(s)) => s.series_since,
            _ => None,
        };
        let since = since.unwrap_or(ledger.fresh.since);
        ledger.metrics.counters_reset.set(since as f64);
        ledger
    }

    /// Takes a loaded state up: its series' values shown, and its keys used (the same URL) or
    /// held until the UCM says whether it is the same one (another URL).
    fn resume(&mut self, mut s: PollState, now: i64) {
        let changed = match self.metrics.check(&s.series) {
            Ok(changed) => changed,
            Err(why) => {
                tracing::warn!(
                    "{} holds call series this exporter does not have ({why}); moving it aside and taking a new baseline; the call series start from zero",
                    self.path.display()
                );
                state::quarantine(&self.path);
                return;
            }
        };
        for family in changed {
            tracing::warn!(family, "the buckets of this histogram changed (groups.service_level_seconds); its series start from zero");
            s.series.histograms.remove(&family);
        }
        if s.series_since.is_none() {
            tracing::info!("the state file predates kept call series: they start from zero now");
            s.series_since = Some(now);
        } else {
            self.metrics.counters_restored.set(now as f64);
        }
        self.metrics.restore(&s.series);
        self.metrics.add_trunks(&s.trunks);
        tracing::info!(
            path = %self.path.display(),
            known_calls = s.calls.len(),
            series = s.series.len(),
            "resuming from saved poll state and call series"
        );
        if s.url == self.url {
            self.state = Some(s);
        } else if s.ucm.as_ref().is_some_and(UcmIdentity::is_known) {
            tracing::info!(saved = %s.url, "the state was saved under another URL: it is used if the UCM there says it is the same one");
            self.identity = Identity::Moved(Box::new(s));
        } else {
            tracing::warn!(
                "{} belongs to {}, not {}, and does not say which UCM that was; moving it aside and taking a new baseline (the call series continue)",
                self.path.display(),
                s.url,
                self.url
            );
            state::quarantine(&self.path);
            self.fresh.series = s.series;
            self.fresh.since = s.series_since.unwrap_or(now);
        }
    }

    /// Why the target is not polled, if its state file is of a later version.
    pub fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }

    /// Whether the UCM's identity is still to be asked (once per process).
    pub fn identity_due(&self) -> bool {
        !matches!(self.identity, Identity::Settled)
    }

    /// Whether the keys wait for the identity: the state was saved under another URL.
    pub fn identity_required(&self) -> bool {
        matches!(self.identity, Identity::Moved(_))
    }

    /// What the UCM said of itself (`None`: it may not say). The state of another URL is used
    /// when this is the UCM it names; a state whose UCM is known to be another is dropped for a
    /// new baseline. The series continue either way.
    pub fn settle_identity(&mut self, id: Option<UcmIdentity>) {
        let held = match std::mem::replace(&mut self.identity, Identity::Settled) {
            Identity::Moved(s) => Some(*s),
            _ => self.state.take(),
        };
        let Some(mut s) = held else {
            self.fresh.ucm = id;
            return;
        };
        let same = match (&s.ucm, &id) {
            (Some(saved), Some(now)) => saved.same_as(now),
            _ => None,
        };
        let moved = s.url != self.url;
        if same == Some(false) || (moved && same.is_none()) {
            let why = match (&id, same) {
                (None, _) => {
                    "the UCM does not say which it is (getSystemStatus refused)".to_string()
                }
                (Some(_), None) => "the state does not say which UCM it was saved for".to_string(),
                _ => format!(
                    "the UCM there is another one ({:?}, the state's is {:?})",
                    id, s.ucm
                ),
            };
            tracing::warn!(
                saved = %s.url,
                "{}: {why}; moving the state aside and taking a new baseline (the call series continue)",
                self.path.display()
            );
            state::quarantine(&self.path);
            self.fresh = Fresh {
                series: s.series,
                since: s.series_since.unwrap_or(self.fresh.since),
                ucm: id,
            };
            return;
        }
        if moved {
            tracing::info!(saved = %s.url, url = %self.url, "the UCM at the new URL is the one the state was saved for: counting continues from it");
            s.url = self.url.clone();
        }
        if id.is_some() {
            s.ucm = id;
        }
        self.state = Some(s);
    }

    pub fn state(&self) -> Option<&PollState> {
        self.state.as_ref()
    }

    /// What the UCM has shown of its paging so far.
    pub fn paging(&self) -> Paging {
        self.state.as_ref().map(|s| s.paging).unwrap_or_default()
    }

    pub fn watermark(&self) -> Option<LocalSecs> {
        self.state.as_ref().and_then(|s| s.watermark)
    }

    /// Moves the watermark back `by` seconds, for a UCM clock that went back with its UTC
    /// offset: the calls started since are read by the next window, not the next sweep. Kept
    /// in memory; the next commit saves it (a restart before that sweeps anyway).
    pub fn rewind_watermark(&mut self, by: LocalSecs) {
        if let Some(s) = self.state.as_mut() {
            s.watermark = s.watermark.map(|w| w.saturating_sub(by));
        }
    }

    /// Whether a read that has taken `pages` pages commits now. A baseline commits only whole:
    /// a state saved halfway would make the rest of the history look new after a failure
    /// (docs/design.md §3.7).
    pub fn commit_due(plan: &Plan, pages: usize) -> bool {
        plan.kind != PollKind::Baseline && pages % COMMIT_EVERY_PAGES == 0
    }

    /// Commits what a read that cannot go on has gathered: what was read is sound and stays
    /// counted, except half a baseline.
    pub fn commit_stopped(
        &mut self,
        pending: &mut Pending,
        plan: &Plan,
        paging: Paging,
    ) -> Result<Committed, UcmError> {
        if plan.kind == PollKind::Baseline {
            return Ok(Committed::default());
        }
        self.commit(pending, plan, paging)
    }

    /// Marks the pending keys seen and saves the state, then applies the counts. When the state
    /// cannot be saved, the keys are unmarked again and nothing is applied: the next poll reads
    /// the same window and counts those calls then.
    pub fn commit(
        &mut self,
        pending: &mut Pending,
        plan: &Plan,
        paging: Paging,
    ) -> Result<Committed, UcmError> {
        if let Some(why) = &self.refused {
            return Err(UcmError::State(why.clone()));
        }
        let p = std::mem::take(pending);
        let baseline = plan.kind == PollKind::Baseline;
        // A baseline counts nothing; the increments are resolved before the state is borrowed.
        let delta = match baseline {
            true => SeriesValues::default(),
            false => self.metrics.resolve(&p.tally),
        };
        let state = begin(&mut self.state, &mut self.fresh, &self.url, plan);
        let before = (state.watermark, state.trunks.len(), state.paging);
        let last_record = state.series.last_record;
        state.series.add(&delta).map_err(UcmError::State)?;
        if baseline {
            state.baseline_start = state.baseline_start.min(plan.from);
        }
        // Keys older than this poll's horizon go before the new ones come in; keys this poll may
        // still meet stay, whatever order the UCM serves its pages in.
        state.prune(plan.horizon.min(state.horizon(self.sweep_back)));
        state.calls.extend(p.calls.iter().copied());
        state.legs.extend(p.legs.iter().copied());
        if let Some(w) = p.watermark {
            raise_watermark(state, w, plan.ceiling, &mut self.future_warned);
        }
        for t in &p.trunks {
            if !t.is_empty() && !state.trunks.contains(t) {
                state.trunks.push(t.clone());
            }
        }
        // Whether windows go out in UTC is the ledger's finding, not the pager's copy of it.
        state.paging = Paging {
            filter_reads_utc: state.paging.filter_reads_utc,
            ..paging
        };
        let quiet = !baseline && delta.is_empty() && p.calls.is_empty() && p.legs.is_empty();
        let head = state.head();
        if quiet && self.written.as_ref() == Some(&head) {
            return Ok(Committed {
                notes: p.notes,
                ..Committed::default()
            });
        }
        if let Err(e) = state::save(&self.path, state) {
            self.undo(&p, &delta, before, last_record, baseline);
            return Err(UcmError::State(format!(
                "cannot save the poll state: {e:#}; the poll's calls are counted once it can"
            )));
        }
        let state = self.state.as_ref().expect("begun");
        self.written = Some(head);
        // Only now, with the file holding them, may a scrape see the new values.
        self.metrics.add(&delta);
        self.metrics.add_trunks(&state.trunks);
        Ok(Committed {
            calls: p.tally.call_count(),
            records: p.tally.records,
            late_records: p.tally.late_records,
            notes: p.notes,
        })
    }

    /// Takes back in memory what a commit whose state could not be written changed: its keys,
    /// watermark, paging, trunks and increments; half a baseline leaves no state at all.
    fn undo(
        &mut self,
        p: &Pending,
        delta: &SeriesValues,
        before: (Option<LocalSecs>, usize, Paging),
        last_record: Option<i64>,
        baseline: bool,
    ) {
        let Some(state) = self.state.as_mut() else {
            return;
        };
        for (k, _) in &p.calls {
            state.calls.remove(k);
        }
        for (k, _) in &p.legs {
            state.legs.remove(k);
        }
        (state.watermark, state.paging) = (before.0, before.2);
        state.trunks.truncate(before.1);
        state.series.sub(delta, last_record);
        if baseline && state.calls.is_empty() && before.0.is_none() {
            // Half a baseline is no baseline; what it would have started from stays.
            if let Some(s) = self.state.take() {
                self.fresh = Fresh {
                    series: s.series,
                    since: s.series_since.unwrap_or(self.fresh.since),
                    ucm: s.ucm,
                };
            }
        }
    }

    /// The UCM reads `startTime` as UTC: every later window is sent converted (saved with the
    /// next commit).
    pub fn learn_filter_reads_utc(&mut self) {
        if let Some(s) = &mut self.state {
            s.paging.filter_reads_utc = true;
        }
    }

    /// A window sent in UTC came back with calls from before it in local time: the UCM reads
    /// `startTime` in its own time after all, and windows go out as they are again.
    pub fn unlearn_filter_reads_utc(&mut self) {
        if let Some(s) = &mut self.state {
            s.paging.filter_reads_utc = false;
        }
    }

    /// What the window modes found, saved with every commit from now on.
    pub fn set_windows(&mut self, record: WindowRecord) {
        if let Some(s) = &mut self.state {
            s.windows = Some(Box::new(record));
        }
    }

    /// What the window modes found before the restart, if the state kept it.
    pub fn windows(&self) -> Option<&WindowRecord> {
        self.state.as_ref().and_then(|s| s.windows.as_deref())
    }

    /// Trunk names the UCM listed, kept so their series exist after a restart.
    pub fn add_trunks(&mut self, names: &[String]) {
        if let Some(s) = &mut self.state {
            for n in names {
                if !s.trunks.contains(n) {
                    s.trunks.push(n.clone());
                }
            }
        }
        self.metrics.add_trunks(names);
    }

    /// Saves the state as it is: the clean-stop path, and a window fallback kept at once.
    pub fn save(&mut self) {
        if let (Some(s), None) = (&self.state, &self.refused) {
            match state::save(&self.path, s) {
                Ok(()) => self.written = Some(s.head()),
                Err(e) => {
                    self.written = None;
                    tracing::error!(
                        "cannot save poll state: {e:#}; after a crash some calls may be counted twice"
                    );
                }
            }
        }
    }
}

/// The state a commit changes; a new one when this process has none yet, starting from what
/// `fresh` holds.
fn begin<'a>(
    state: &'a mut Option<PollState>,
    fresh: &mut Fresh,
    url: &str,
    plan: &Plan,
) -> &'a mut PollState {
    state.get_or_insert_with(|| {
        let mut s = PollState::new(url, plan.from);
        s.series = std::mem::take(&mut fresh.series);
        s.series_since = Some(fresh.since);
        s.ucm = fresh.ucm.take();
        s
    })
}

/// Raises the watermark to `newest`, but no further than `ceiling` (docs/design.md §3.4). A
/// start beyond it is logged once, not at every commit that reads it again (as the windows
/// after a DST fall-back do for an hour).
fn raise_watermark(
    state: &mut PollState,
    newest: LocalSecs,
    ceiling: LocalSecs,
    warned: &mut Option<LocalSecs>,
) {
    if newest > ceiling && *warned != Some(newest) {
        *warned = Some(newest);
        tracing::warn!(
            start = %from_local_secs(newest),
            "a CDR starts in the future of this host's clock (in the UCM's zone): counted, but the watermark stops at now + {} min", WATERMARK_SLACK / 60
        );
    }
    let w = newest.min(ceiling);
    state.watermark = Some(state.watermark.map_or(w, |old| old.max(w)));
}
