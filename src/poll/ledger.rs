//! What has been counted: the poll state and the counters, changed together by one commit
//! (docs/design.md §3.4), so a counted call always has its keys on disk and a call whose keys
//! are on disk is never counted again.

use std::path::PathBuf;
use std::sync::Arc;

use super::ingest::{Pending, ReadNotes};
use super::plan::{Plan, PollKind, WATERMARK_SLACK};
use crate::clock::{from_local_secs, LocalSecs};
use crate::error::UcmError;
use crate::metrics::TargetMetrics;
use crate::state::{self, Loaded, Paging, PollState, WindowRecord};

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
}

impl Ledger {
    /// Loads the target's state file; an unusable one is moved aside and a baseline follows.
    pub fn open(path: PathBuf, url: &str, sweep_back: i64, metrics: Arc<TargetMetrics>) -> Self {
        let state = match state::load(&path, url) {
            Loaded::Found(s) => {
                tracing::info!(
                    path = %path.display(),
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
                state::quarantine(&path);
                None
            }
        };
        Ledger {
            state,
            future_warned: None,
            path,
            url: url.to_string(),
            sweep_back,
            metrics,
        }
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
        let p = std::mem::take(pending);
        let baseline = plan.kind == PollKind::Baseline;
        let state = self
            .state
            .get_or_insert_with(|| PollState::new(&self.url, plan.from));
        let before = (state.watermark, state.trunks.len(), state.paging);
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
        if let Err(e) = state::save(&self.path, state) {
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
        if !baseline {
            self.metrics.apply(&p.tally);
        }
        self.metrics.add_trunks(&state.trunks);
        Ok(Committed {
            calls: p.tally.call_count(),
            records: p.tally.records,
            late_records: p.tally.late_records,
            notes: p.notes,
        })
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

    /// Saves the state as it is: the clean-stop path.
    pub fn save(&self) {
        if let Some(s) = &self.state {
            if let Err(e) = state::save(&self.path, s) {
                tracing::error!(
                    "cannot save poll state: {e:#}; after a crash some calls may be counted twice"
                );
            }
        }
    }
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
