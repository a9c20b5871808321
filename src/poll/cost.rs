//! What a poll is expected to cost in requests: the size of its request budget
//! (`ucm::budget`, docs/design.md §2.5), worked out from its plan and what the state knows of
//! the UCM's traffic and paging, before the poll sends anything.

use crate::clock::LocalSecs;
use crate::state::{Paging, PollState};
use crate::ucm::cdrapi::PAGE_SIZE;

use super::plan::{Plan, PollKind, PollPlan};

/// Requests of a poll beyond its reads: a login (two requests) and a renewal, the window
/// probes and channel lists, the trunk list.
pub const POLL_MARGIN: usize = 20;

/// Requests of each read beyond its pages: the page that confirms a short page's end, the
/// read-ahead past the end, an empty answer asked again after a fresh login (three requests).
pub const READ_MARGIN: usize = 5;

/// The budget of a baseline, whose window holds an unknown number of calls: 1000 pages of
/// calls, or several hundred in slices; more than a day of any UCM's calls.
pub const BASELINE_REQUESTS: usize = 1000;

/// The budget of a poll of `poll`, at `now` in the UCM's zone.
pub fn poll_budget(poll: &PollPlan, state: Option<&PollState>, now: LocalSecs) -> usize {
    let Some(state) = state.filter(|_| poll.kind != PollKind::Baseline) else {
        return BASELINE_REQUESTS + POLL_MARGIN;
    };
    let traffic = Traffic::of(state);
    let reads: usize = poll
        .reads
        .iter()
        .map(|r| {
            let to = r.to.unwrap_or(now).max(r.from);
            let entries = traffic.expected(state, r.from, to, now);
            read_requests(state.paging, entries, to - r.from)
        })
        .sum();
    // A quarter more, for calls that come in a burst the average does not show.
    reads + reads / 4 + POLL_MARGIN
}

/// The requests a read of `plan` needs beyond its budget once it finds that the UCM ignores
/// `offset` and goes on in slices: what the read costs in slices at the state's traffic. A
/// baseline's budget already covers it.
pub fn sliced_extra(state: Option<&PollState>, plan: &Plan, now: LocalSecs) -> usize {
    let Some(state) = state.filter(|_| plan.kind != PollKind::Baseline) else {
        return 0;
    };
    let sliced = Paging {
        offset_ignored: true,
        ..state.paging
    };
    let to = plan.to.unwrap_or(now).max(plan.from);
    let entries = Traffic::of(state).expected(state, plan.from, to, now);
    let r = read_requests(sliced, entries, to - plan.from);
    r + r / 4
}

/// The requests one read of `entries` entries over `span` seconds is expected to need: one per
/// page where the UCM honours `offset`; in slices, about two per page at every depth the calls
/// make the slicer halve to, and two per halving that only narrows down on where they are.
fn read_requests(paging: Paging, entries: usize, span: i64) -> usize {
    let page = paging.cap.unwrap_or(PAGE_SIZE).clamp(1, PAGE_SIZE);
    let pages = entries.div_ceil(page).max(1);
    if paging.offset_ignored {
        let depth = (u64::BITS - span.max(1).unsigned_abs().leading_zeros()) as usize;
        4 * pages + 2 * depth + READ_MARGIN
    } else {
        pages + READ_MARGIN
    }
}

/// The calls the state knows of, and how many a second came on average.
struct Traffic {
    per_second: f64,
}

impl Traffic {
    fn of(state: &PollState) -> Traffic {
        let oldest = state.calls.values().copied().min();
        let per_second = match (oldest, state.watermark) {
            (Some(o), Some(w)) => state.calls.len() as f64 / ((w - o).max(60) as f64),
            _ => 0.0,
        };
        Traffic { per_second }
    }

    /// Entries expected in a window from `from` to `to`: the known calls in it or the average
    /// rate over its length, whichever is more, and the calls since the watermark.
    fn expected(&self, state: &PollState, from: LocalSecs, to: LocalSecs, now: LocalSecs) -> usize {
        let known = state
            .calls
            .values()
            .filter(|&&s| s >= from && s <= to)
            .count();
        let by_rate = (self.per_second * (to - from) as f64).ceil() as usize;
        let since = now - state.watermark.unwrap_or(now);
        let new = (self.per_second * since.max(0) as f64).ceil() as usize;
        known.max(by_rate) + new
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poll::plan::{Filter, Plan, WindowMode};
    use crate::state::Paging;

    fn state(calls: i64, every: i64, paging: Paging) -> PollState {
        let mut s = PollState::new("https://ucm", 0);
        for i in 0..calls {
            s.calls.insert(i as u64, i * every);
        }
        s.watermark = Some((calls - 1) * every);
        s.paging = paging;
        s
    }

    fn poll(kind: PollKind, from: LocalSecs) -> PollPlan {
        PollPlan {
            kind,
            mode: WindowMode::Start,
            reads: vec![Plan {
                kind,
                from,
                ..Plan::WHOLE
            }],
        }
    }

    #[test]
    fn an_incremental_poll_is_allowed_a_few_requests_and_a_sweep_its_pages() {
        // 20,000 calls, one every 2 s: a sweep over all of them is 20 pages.
        let s = state(20_000, 2, Paging::default());
        let now = 40_000;
        let incremental = poll_budget(&poll(PollKind::Incremental, now - 600), Some(&s), now);
        let with_quarter = |reads: usize| reads + reads / 4 + POLL_MARGIN;
        assert_eq!(incremental, with_quarter(1 + READ_MARGIN));
        let sweep = poll_budget(&poll(PollKind::Sweep, 0), Some(&s), now);
        // 20,000 known and one new since the watermark: 21 pages.
        assert_eq!(sweep, with_quarter(21 + READ_MARGIN));
        // The same at a UCM that ignores offset: slices cost more, and are allowed more.
        let ignored = Paging {
            offset_ignored: true,
            ..Paging::default()
        };
        let s = state(20_000, 2, ignored);
        let sliced = poll_budget(&poll(PollKind::Sweep, 0), Some(&s), now);
        assert!(sliced > 4 * 20 && sliced < 200, "{sliced}");
    }

    #[test]
    fn calls_since_the_watermark_are_expected_at_the_known_rate() {
        let s = state(1000, 10, Paging::default());
        // Ten hours after the watermark: 3,600 more calls, four more pages.
        let later = 999 * 10 + 36_000;
        let b = poll_budget(&poll(PollKind::Sweep, 9_000), Some(&s), later);
        assert!(b >= (5 + READ_MARGIN) + POLL_MARGIN, "{b}");
        // A baseline knows nothing yet.
        let b = poll_budget(&poll(PollKind::Baseline, 0), None, 0);
        assert_eq!(b, BASELINE_REQUESTS + POLL_MARGIN);
        let mut end = poll(PollKind::Incremental, 9_000);
        end.reads[0].filter = Filter::End;
        assert!(poll_budget(&end, Some(&s), 10_000) >= 1 + READ_MARGIN + POLL_MARGIN);
    }
}
