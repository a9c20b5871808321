//! A page of records into what is new in it: call and leg keys not seen before, and the counts
//! they imply, held aside until the poll commits them.
//!
//! Overlapping windows and shifting pages deliver records more than once; call and leg keys make
//! each count once.

use std::collections::BTreeSet;

use chrono::NaiveDateTime;
use foldhash::HashSet;

use crate::cdr::{self, ExtensionPattern, Skip};
use crate::clock::Zone;
use crate::clock::{local_secs, LocalSecs};
use crate::metrics::CallTally;
use crate::state::PollState;
use crate::ucm::cdrapi::decode_page;
use crate::ucm::Refusal;

use super::channels::uid_hash;
use super::plan::{Filter, Plan};

/// Collected but not yet committed results of a poll.
#[derive(Default)]
pub struct Pending {
    pub(super) calls: Vec<(u64, LocalSecs)>,
    pub(super) legs: Vec<(u64, LocalSecs)>,
    call_set: HashSet<u64>,
    leg_set: HashSet<u64>,
    pub(super) tally: CallTally,
    pub(super) watermark: Option<LocalSecs>,
    pub(super) trunks: BTreeSet<String>,
    pub(super) notes: ReadNotes,
}

/// What a read learns beyond counts, for the window modes: kept to the end of the poll, not
/// only to the next commit.
#[derive(Debug, Default)]
pub struct ReadNotes {
    /// The newest end of a call read and not held back.
    pub newest_end: Option<LocalSecs>,
    /// Starts of grouped entries held back (settle).
    pub held: Vec<LocalSecs>,
    /// Hashes of the uniqueids of the calls read (see `channels::uid_hash`).
    pub uniqueids: HashSet<u64>,
    /// Calls read, for the end-window probe.
    pub spans: Vec<Span>,
}

impl ReadNotes {
    pub fn absorb(&mut self, other: ReadNotes) {
        self.newest_end = self.newest_end.max(other.newest_end);
        self.held.extend(other.held);
        self.uniqueids.extend(other.uniqueids);
        self.spans.extend(other.spans);
    }
}

/// A call the exporter has read: its key, start and end, in the UCM's local seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub key: u64,
    pub start: LocalSecs,
    pub end: LocalSecs,
    /// A flat call that failed: a UCM may write it without an `end` (docs/ucm-api.md §6.1), so
    /// whether an end window returns it is a question of its own.
    pub failed: bool,
}

impl Span {
    pub fn of(call: &cdr::Call<'_>) -> Span {
        let start = local_secs(call.start);
        Span {
            key: call.key,
            start,
            end: start.saturating_add(call.ends_after),
            failed: !call.grouped && call.disposition == cdr::Disposition::Failed,
        }
    }
}

impl Pending {
    /// The increments gathered so far.
    pub fn tally(&self) -> &CallTally {
        &self.tally
    }
}

/// Converts a naive UCM time to Unix time in the zone in use; ambiguous times (DST fall-back)
/// take the earlier instant, skipped ones are read as UTC offset-free.
pub(crate) fn unix_time(tz: Zone, t: NaiveDateTime) -> i64 {
    tz.instant(t)
        .map_or_else(|| t.and_utc().timestamp(), |d| d.timestamp())
}

/// What one page held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSummary {
    /// Top-level entries.
    pub entries: usize,
    /// Entries not already read earlier in the same read (new to it, whether counted before or
    /// not; an entry without a call key by its written identity): a later page with none is a
    /// page served again.
    pub fresh: usize,
    /// The oldest call start on the page.
    pub oldest: Option<LocalSecs>,
    /// The earliest and latest time the window filters on (call starts, or ends) on the page:
    /// where a sliced read knows entries to be.
    pub times: Option<(LocalSecs, LocalSecs)>,
    /// Grouped entries held back because they ended less than `settle` ago.
    pub held: usize,
}

impl PageSummary {
    /// A page of `entries` top-level entries, before any is looked at.
    pub fn of(entries: usize) -> PageSummary {
        PageSummary {
            entries,
            fresh: 0,
            oldest: None,
            times: None,
            held: 0,
        }
    }
}

/// Decodes one cdrapi page and adds what is new in it to `pending`, within the `plan`'s horizon
/// and settle time. `read` holds the call keys of the read so far. Public (hidden) so that the
/// benchmarks measure the exact per-page path a poll runs rather than a copy of it.
#[doc(hidden)]
pub fn ingest(
    body: &[u8],
    state: Option<&PollState>,
    pending: &mut Pending,
    read: &mut HashSet<u64>,
    extensions: &ExtensionPattern,
    tz: Zone,
    plan: &Plan,
) -> Result<PageSummary, Refusal> {
    let entries = decode_page(body)?;
    let mut page = PageSummary::of(entries.len());
    for entry in &entries {
        let Some(call) = cdr::classify(entry, extensions) else {
            // Not a call, so it has no call key; it is new to the read only the first time its
            // identity (the entry's ids and start as written) is read, so that a page served
            // again is told as one however many such entries it holds.
            page.fresh += usize::from(read.insert(entry.call_key()));
            let at = entry.start().map_or(plan.horizon, local_secs);
            let reason = Skip::of_unclassified(entry);
            pending.skip(state, entry.call_key(), at.max(plan.horizon), reason);
            continue;
        };
        page.fresh += usize::from(read.insert(call.key));
        let span = Span::of(&call);
        page.oldest = Some(page.oldest.map_or(span.start, |o| o.min(span.start)));
        let t = match plan.filter {
            Filter::Start => span.start,
            Filter::End => span.end,
        };
        page.times = Some(page.times.map_or((t, t), |(a, b)| (a.min(t), b.max(t))));
        if span.start < plan.horizon {
            pending.skip(state, call.key, span.end.max(plan.horizon), Skip::TooOld);
            continue;
        }
        // A grouped entry that ended less than `settle` ago may still gain legs (a transfer
        // leg written later): neither counted nor marked seen yet, so a later read counts it
        // once, complete (docs/design.md §3.2).
        if call.grouped && span.end > plan.settled_before {
            page.held += 1;
            pending.notes.held.push(span.start);
            continue;
        }
        pending.add(state, &call, span, tz, plan);
    }
    Ok(page)
}

/// Where a skipped entry is remembered: among the call keys, under a key of its own, so that it
/// is kept, saved, pruned and undone with them but never taken for a call.
fn skipped_key(key: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(&key.to_le_bytes(), 0x736b_6970)
}

impl Pending {
    /// Counts a skipped entry in `ucm_cdr_skipped_total` the first time it is read: windows
    /// overlap and sweeps re-read, so counting reads would grow the counter with every poll
    /// (docs/design.md §3.3). `at` is how long it is remembered: until the horizon passes it,
    /// after which no window reaches the entry again.
    fn skip(&mut self, state: Option<&PollState>, key: u64, at: LocalSecs, reason: Skip) {
        let key = skipped_key(key);
        let seen = state.is_some_and(|s| s.calls.contains_key(&key)) || !self.call_set.insert(key);
        if !seen {
            self.calls.push((key, at));
            self.tally.skipped[reason as usize] += 1;
        }
    }

    /// Adds a call within the read's horizon: its keys not seen before, and its counts when it
    /// is new (docs/design.md §3.2).
    fn add(
        &mut self,
        state: Option<&PollState>,
        call: &cdr::Call<'_>,
        span: Span,
        tz: Zone,
        plan: &Plan,
    ) {
        let notes = &mut self.notes;
        notes.newest_end = notes.newest_end.max(Some(span.end));
        if !call.uniqueid.is_empty() {
            notes.uniqueids.insert(uid_hash(call.uniqueid));
        }
        notes.spans.push(span);
        let seen_call = state.is_some_and(|s| s.calls.contains_key(&call.key))
            || self.call_set.contains(&call.key);
        if !seen_call {
            self.call_set.insert(call.key);
            self.calls.push((call.key, span.start));
        }
        let mut new_legs = 0u64;
        for &k in &call.leg_keys {
            if !state.is_some_and(|s| s.legs.contains_key(&k)) && self.leg_set.insert(k) {
                self.legs.push((k, span.start));
                new_legs += 1;
            }
        }
        self.tally.records += new_legs;
        if plan.is_late(span.end) {
            self.tally.late_records += new_legs;
        }
        self.watermark = Some(self.watermark.map_or(span.start, |w| w.max(span.start)));
        if !call.trunk.is_empty() && !self.trunks.contains(call.trunk) {
            self.trunks.insert(call.trunk.to_string());
        }
        // A call counts when its entry is new and it brings at least one leg not seen before:
        // an entry whose id changed but whose legs were all counted is the same call.
        if !seen_call && new_legs > 0 {
            self.tally.add_call(call, Some(unix_time(tz, call.start)));
        }
    }
}
