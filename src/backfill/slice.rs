//! One day of a backfill: read from the UCM as a poll reads a bounded window (the same
//! [`Strategy`], paging rules and request budget), each call counted once by its call and leg
//! keys, into a tally per step of its start.

use std::collections::BTreeMap;
use std::sync::Arc;

use foldhash::HashSet;
use serde_json::{Map, Value};

use crate::cdr::{self, ExtensionPattern, Skip};
use crate::clock::Zone;
use crate::clock::{as_utc, from_local_secs, local_secs, LocalSecs, SharedClock};
use crate::error::UcmError;
use crate::metrics::CallTally;
use crate::poll::{
    unix_time, PageSummary, PagingError, Request, Slice, Slicer, Strategy, Turn, MAX_PAGES_PER_READ,
};
use crate::state::Paging;
use crate::ucm::cdrapi::{decode_page, window_params, PAGE_SIZE};
use crate::ucm::{Refusal, Session};

/// Unix time of a time of the UCM's clock: the one place the backfill reads the target's zone,
/// the way the poller stamps `ucm_cdr_last_record_timestamp_seconds`.
fn unix(tz: Zone, t: LocalSecs) -> i64 {
    unix_time(tz, from_local_secs(t))
}

/// A day `[from, to)` of the UCM's clock and its samples' Unix times: the day's start, every
/// `step` after it, and the day's end. A call counts in the step its start falls in, so the
/// sample at a step's end holds every call that started before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub from: LocalSecs,
    pub to: LocalSecs,
    /// Unix time of `from` and of `to`.
    pub start: i64,
    pub end: i64,
    pub step: i64,
    tz: Zone,
}

impl Grid {
    pub fn new(from: LocalSecs, to: LocalSecs, step: i64, tz: Zone) -> Grid {
        let (start, end) = (unix(tz, from), unix(tz, to));
        Grid {
            from,
            to,
            start,
            // A zone's step back cannot make a day end before it starts.
            end: end.max(start + 1),
            step: step.max(1),
            tz,
        }
    }

    /// Steps in the day; the last may be shorter.
    pub fn steps(&self) -> usize {
        ((self.end - self.start + self.step - 1) / self.step) as usize
    }

    /// Unix time of the sample at the end of step `k` (`k = 0` for the day's start).
    pub fn sample_time(&self, k: usize) -> i64 {
        (self.start + k as i64 * self.step).min(self.end)
    }

    /// The step a call that started at `start` (the UCM's clock) counts in.
    fn step_of(&self, start: LocalSecs) -> usize {
        let k = (unix(self.tz, start) - self.start).div_euclid(self.step);
        k.clamp(0, self.steps() as i64 - 1) as usize
    }
}

/// What a day's read found.
#[derive(Debug, Default)]
pub struct SliceRead {
    /// Step → what its calls add.
    pub steps: BTreeMap<usize, CallTally>,
    pub calls: u64,
    pub requests: usize,
}

/// The keys of a day, as the poll state keeps them: a call counts when its entry is new and it
/// brings a leg not seen before.
#[derive(Default)]
struct Seen {
    calls: HashSet<u64>,
    legs: HashSet<u64>,
    skipped: HashSet<u64>,
    /// Call keys of every entry read, in the window or not, for telling a page served again.
    read: HashSet<u64>,
}

pub struct Reader<'a> {
    pub session: &'a Arc<Session>,
    pub extensions: &'a ExtensionPattern,
    pub tz: Zone,
    /// What the UCM has shown of its paging, carried from day to day.
    pub paging: &'a mut Paging,
    pub clock: &'a SharedClock,
}

impl Reader<'_> {
    /// Reads the grid's day, within one read's request budget.
    pub async fn read(&mut self, grid: &Grid) -> Result<SliceRead, UcmError> {
        // `endTime` is inclusive: the day's last second, so that days do not overlap.
        let window = Slice {
            from: grid.from,
            to: Some(grid.to - 1),
        };
        let mut strategy = Strategy::for_window(window, *self.paging, false);
        let mut request = strategy.first();
        let (mut seen, mut out) = (Seen::default(), SliceRead::default());
        loop {
            if out.requests >= MAX_PAGES_PER_READ {
                let e = PagingError::Endless {
                    pages: strategy.pages(),
                };
                return Err(UcmError::Protocol(e.to_string()));
            }
            out.requests += 1;
            let body = self.session.fetch("cdrapi", self.params(request)).await?;
            let page = match self.take(&body, grid, &mut seen, &mut out) {
                Ok(page) => page,
                Err(refusal) => return Err(self.session.refused("cdrapi", refusal).await),
            };
            drop(body);
            let now = local_secs(self.clock.local_now(self.tz));
            match strategy.after(&page, now) {
                Ok(Turn::Ask(next)) => request = next,
                Ok(Turn::Relogin(next)) => {
                    self.session.renew().await;
                    request = next;
                }
                Ok(Turn::Done) => {
                    *self.paging = Paging {
                        filter_reads_utc: self.paging.filter_reads_utc,
                        ..strategy.paging()
                    };
                    return Ok(out);
                }
                Err(PagingError::OffsetIgnored { page, offset }) => {
                    tracing::warn!(
                        "the UCM ignores cdrapi's offset: page {page} (offset {offset}) held only entries already read; \
                         reading in time slices"
                    );
                    strategy = Strategy::Sliced(Slicer::new(window, strategy.paging(), false));
                    request = strategy.first();
                }
                Err(e) => return Err(UcmError::Protocol(e.to_string())),
            }
        }
    }

    /// The cdrapi parameters of a request; in UTC at a UCM the poller found reading `startTime`
    /// so.
    fn params(&self, r: Request) -> Map<String, Value> {
        let utc = self.paging.filter_reads_utc;
        let sent = |t: LocalSecs| if utc { as_utc(self.tz, t) } else { t };
        window_params(
            sent(r.slice.from),
            r.slice.to.map(sent),
            None,
            r.offset,
            PAGE_SIZE,
        )
    }

    /// Counts the new calls of a page that started within the day.
    fn take(
        &self,
        body: &[u8],
        grid: &Grid,
        seen: &mut Seen,
        out: &mut SliceRead,
    ) -> Result<PageSummary, Refusal> {
        let entries = decode_page(body)?;
        let mut page = PageSummary::of(entries.len());
        let within = |t: LocalSecs| (grid.from..grid.to).contains(&t);
        for entry in &entries {
            let Some(call) = cdr::classify(entry, self.extensions) else {
                page.fresh += 1;
                // Only an entry whose start places it in this day can be told apart from the
                // same entry served for another day.
                let start = entry.start().map(local_secs);
                if let Some(s) = start.filter(|&s| within(s)) {
                    if seen.skipped.insert(entry.call_key()) {
                        let tally = out.steps.entry(grid.step_of(s)).or_default();
                        tally.skipped[Skip::of_unclassified(entry) as usize] += 1;
                    }
                }
                continue;
            };
            page.fresh += usize::from(seen.read.insert(call.key));
            let start = local_secs(call.start);
            page.oldest = Some(page.oldest.map_or(start, |o| o.min(start)));
            page.times = Some(
                page.times
                    .map_or((start, start), |(a, b)| (a.min(start), b.max(start))),
            );
            if !within(start) {
                continue;
            }
            let new_call = seen.calls.insert(call.key);
            let mut new_legs = 0;
            for &k in &call.leg_keys {
                new_legs += u64::from(seen.legs.insert(k));
            }
            let tally = out.steps.entry(grid.step_of(start)).or_default();
            tally.records += new_legs;
            if new_call && new_legs > 0 {
                tally.add_call(&call, Some(unix(self.tz, start)));
                out.calls += 1;
            }
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_has_samples_at_its_start_every_step_and_its_end() {
        let from = at("2026-03-01 00:00:00");
        let g = Grid::new(from, from + 3600 + 60, 1800, Zone::UTC);
        assert_eq!(g.steps(), 3);
        let times: Vec<i64> = (0..=g.steps())
            .map(|k| g.sample_time(k) - g.start)
            .collect();
        assert_eq!(times, [0, 1800, 3600, 3660]);
        // A call at a step's first second counts in that step; the day's last second in the
        // last step.
        assert_eq!(g.step_of(from), 0);
        assert_eq!(g.step_of(from + 1799), 0);
        assert_eq!(g.step_of(from + 1800), 1);
        assert_eq!(g.step_of(from + 3659), 2);
    }

    #[test]
    fn a_day_of_a_zone_is_its_unix_span() {
        // 2026-03-29 in Paris has 23 hours: the clocks go from 02:00 to 03:00.
        let tz = Zone::Named(chrono_tz::Europe::Paris);
        let from = at("2026-03-29 00:00:00");
        let g = Grid::new(from, from + 24 * 3600, 3600, tz);
        assert_eq!(g.end - g.start, 23 * 3600);
        assert_eq!(g.steps(), 23);
        // 03:30 local is 01:30 UTC, two and a half hours after the day's start (23:00 UTC).
        assert_eq!(g.step_of(from + 3 * 3600 + 1800), 2);
    }

    fn at(s: &str) -> LocalSecs {
        local_secs(chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap())
    }
}
