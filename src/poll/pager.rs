//! How one read pages through a window, trusting the UCM's paging no more than
//! docs/ucm-api.md §5.4 allows: a short page ends a read only once the UCM is known not to cap
//! `numRecords` below it, an empty page that may be a silently expired session is asked for
//! again with a fresh login, and a UCM that ignores `offset` is caught on its first repeated
//! page instead of being paged 2000 times.
//!
//! A UCM that ignores `offset` is then read in time slices instead ([`Slicer`]): a window whose
//! page may have been cut short is halved, and each half read from its first entry, until every
//! slice fits in one page.
//!
//! Pure state machines: [`Pager::next`] and [`Slicer::next`] are told what each page held and
//! say what to ask for next, so every rule is tested without a network.

use crate::clock::LocalSecs;
use crate::state::Paging;
use crate::ucm::cdrapi::PAGE_SIZE;

/// Entries that make a page full: more may follow it.
fn full(paging: &Paging) -> usize {
    paging.cap.unwrap_or(PAGE_SIZE)
}

/// What to do after a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Ask for the page at this offset.
    Page { offset: usize },
    /// Log in afresh, then ask for the page at this offset again: an empty answer where entries
    /// were due may be a session the UCM dropped without saying so.
    Relogin { offset: usize },
    /// The read is complete.
    Done,
}

/// Why a read cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PagingError {
    /// A page after the first held only entries already read: the UCM ignores `offset`.
    OffsetIgnored { page: usize, offset: usize },
    /// The read's request budget (`read::MAX_PAGES_PER_READ`) spent, and no end.
    Endless { pages: usize },
    /// A one-second slice still filled a page: with `offset` ignored, the rest of that second
    /// cannot be read.
    Crowded { at: LocalSecs, entries: usize },
}

impl std::fmt::Display for PagingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PagingError::OffsetIgnored { page, offset } => write!(
                f,
                "the UCM ignores cdrapi's offset: page {page} (offset {offset}) held only entries already read; \
                 stopping this read instead of paging on"
            ),
            PagingError::Endless { pages } => {
                write!(f, "cdrapi paged {pages} times without an end; stopping this read")
            }
            PagingError::Crowded { at, entries } => write!(
                f,
                "the UCM ignores cdrapi's offset and {entries} entries fall within the second {}: \
                 the rest of that second cannot be read; stopping this read",
                crate::clock::from_local_secs(*at)
            ),
        }
    }
}

/// The paging of one read.
#[derive(Debug)]
pub struct Pager {
    paging: Paging,
    /// The window holds entries for sure (a baseline, or a known call lies inside it), so an
    /// empty first page is suspect.
    entries_due: bool,
    offset: usize,
    pages: usize,
    /// The last page was full: an empty page now is suspect.
    after_full: bool,
    /// Entries of a short page whose end is being confirmed by asking for the next offset.
    confirming: Option<usize>,
    relogged: bool,
}

impl Pager {
    pub fn new(paging: Paging, entries_due: bool) -> Self {
        Pager {
            paging,
            entries_due,
            offset: 0,
            pages: 0,
            after_full: false,
            confirming: None,
            relogged: false,
        }
    }

    /// What has been learned of the UCM's paging so far.
    pub fn paging(&self) -> Paging {
        self.paging
    }

    pub fn offset(&self) -> usize {
        self.offset
    }

    pub fn pages(&self) -> usize {
        self.pages
    }

    /// Entries in a full page of this UCM: the step of a read-ahead.
    pub fn full_page(&self) -> usize {
        full(&self.paging)
    }

    /// Whether a page just received is full, so the one after the next is worth asking for
    /// ahead.
    pub fn is_full(&self, entries: usize) -> bool {
        entries >= full(&self.paging)
    }

    /// Takes the page just received: its number of top-level entries, and how many of them were
    /// not already read earlier in this read.
    pub fn next(&mut self, entries: usize, fresh: usize) -> Result<Next, PagingError> {
        self.pages += 1;
        let largest = self.paging.largest_page;
        self.paging.largest_page = largest.max(entries.min(PAGE_SIZE));
        if self.pages > 1 && entries > 0 && fresh == 0 {
            return Err(PagingError::OffsetIgnored {
                page: self.pages,
                offset: self.offset,
            });
        }
        if let Some(short) = self.confirming.take() {
            match entries {
                // The short page was the end.
                0 => return Ok(Next::Done),
                // Two pages of the same short size in a row: the UCM caps pages at that size.
                n if n == short => {
                    tracing::warn!(
                        cap = n,
                        "the UCM answers at most {n} CDR entries per page although {PAGE_SIZE} were asked; paging in steps of {n}"
                    );
                    self.paging.cap = Some(n);
                }
                // Fewer: the last page of a capped UCM, or calls that ended meanwhile. Either way
                // the read goes on until a page proves the end.
                _ => {}
            }
        }
        if entries == 0 {
            let suspect = self.after_full || (self.pages == 1 && self.entries_due);
            if suspect && !self.relogged {
                self.relogged = true;
                self.pages -= 1;
                return Ok(Next::Relogin {
                    offset: self.offset,
                });
            }
            return Ok(Next::Done);
        }
        self.offset += entries;
        if entries > PAGE_SIZE {
            // A firmware that ignores numRecords and sent everything.
            return Ok(Next::Done);
        }
        self.after_full = entries >= full(&self.paging);
        if self.after_full {
            return Ok(Next::Page {
                offset: self.offset,
            });
        }
        if entries < largest || self.paging.cap.is_some() {
            return Ok(Next::Done);
        }
        // A short page as large as any this UCM has served: it may be a cap. One more request
        // tells; needed only until the UCM has served a larger page (a 1000-entry page ends it
        // for good).
        self.confirming = Some(entries);
        Ok(Next::Page {
            offset: self.offset,
        })
    }
}

/// A time slice of a window: the times the window filters on (call starts, or ends), both
/// included, as the UCM includes both; `to: None` runs to whatever the UCM holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    pub from: LocalSecs,
    pub to: Option<LocalSecs>,
}

impl Slice {
    /// The two halves of a slice whose page may have been cut short; `None` for a single
    /// second. The halves share their middle second, so a UCM that reads `endTime` as
    /// exclusive loses nothing either (the read's key set drops what is read twice). An open
    /// slice is halved at the middle of what lies before `now`, or a minute on where nothing
    /// does (a UCM clock ahead of the host's).
    fn halves(self, now: LocalSecs) -> Option<(Slice, Slice)> {
        let (a, b) = (self.from, self.to);
        let mid = match b {
            Some(b) if b <= a => return None,
            Some(b) if b - a == 1 => {
                return Some((
                    Slice {
                        from: a,
                        to: Some(a),
                    },
                    Slice {
                        from: b,
                        to: Some(b),
                    },
                ))
            }
            Some(b) => a + (b - a) / 2,
            None if now.saturating_sub(a) >= 2 => a + (now - a) / 2,
            None => a.saturating_add(60),
        };
        Some((
            Slice {
                from: a,
                to: Some(mid),
            },
            Slice { from: mid, to: b },
        ))
    }

    fn holds(self, lo: LocalSecs, hi: LocalSecs) -> bool {
        lo <= self.to.unwrap_or(LocalSecs::MAX) && hi >= self.from
    }
}

/// What to do after a page of a sliced read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Ask for this slice.
    Read(Slice),
    /// Log in afresh, then ask for this slice again: it came back empty although the page
    /// before showed entries in it.
    Relogin(Slice),
    /// Every slice was read.
    Done,
}

/// The slices of one read at a UCM that ignores `offset`. Each request asks for a slice from its
/// first entry; a page that may have been cut short (as large as the largest the UCM has
/// served, or its cap) has its slice halved, and both halves are read. The UCM's order does not
/// matter: the slices are bounded by the time filter itself.
#[derive(Debug)]
pub struct Slicer {
    /// Slices to read after the current one, the next last, each with whether it is known to
    /// hold entries.
    todo: Vec<(Slice, bool)>,
    current: (Slice, bool),
    paging: Paging,
    pages: usize,
    relogged: bool,
}

impl Slicer {
    /// A sliced read of `window`, whose first slice is the whole window; `entries_due` as for
    /// [`Pager::new`].
    pub fn new(window: Slice, paging: Paging, entries_due: bool) -> Self {
        Slicer {
            todo: Vec::new(),
            current: (window, entries_due),
            paging: Paging {
                offset_ignored: true,
                ..paging
            },
            pages: 0,
            relogged: false,
        }
    }

    /// The slice to ask for first.
    pub fn first(&self) -> Slice {
        self.current.0
    }

    pub fn paging(&self) -> Paging {
        self.paging
    }

    pub fn pages(&self) -> usize {
        self.pages
    }

    /// Takes the page of the current slice: its number of top-level entries and the earliest
    /// and latest time the window filters on among them. `now` is the host's time, in the
    /// UCM's zone, where an open slice is halved.
    pub fn next(
        &mut self,
        entries: usize,
        times: Option<(LocalSecs, LocalSecs)>,
        now: LocalSecs,
    ) -> Result<Step, PagingError> {
        self.pages += 1;
        let (slice, due) = self.current;
        if entries == 0 && due && !self.relogged {
            self.relogged = true;
            return Ok(Step::Relogin(slice));
        }
        // Without a known cap, a page as large as any the UCM has served may have been cut
        // short; a page longer than asked is the whole answer (numRecords ignored).
        let full = self.paging.cap.unwrap_or(self.paging.largest_page).max(1);
        self.paging.largest_page = self.paging.largest_page.max(entries.min(PAGE_SIZE));
        if entries >= full && entries <= PAGE_SIZE {
            let Some((lo, hi)) = slice.halves(now) else {
                return Err(PagingError::Crowded {
                    at: slice.from,
                    entries,
                });
            };
            let due = |s: Slice| times.is_some_and(|(a, b)| s.holds(a, b));
            self.todo.push((hi, due(hi)));
            self.todo.push((lo, due(lo)));
        }
        Ok(match self.todo.pop() {
            Some(next) => {
                self.current = next;
                Step::Read(next.0)
            }
            None => Step::Done,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a pager over pages of the given sizes (all entries fresh), returning the requests
    /// it made after the first.
    fn run(paging: Paging, due: bool, pages: &[usize]) -> (Vec<Next>, Paging) {
        let mut p = Pager::new(paging, due);
        let mut out = Vec::new();
        for &n in pages {
            let next = p.next(n, n).unwrap();
            out.push(next);
            if next == Next::Done {
                break;
            }
        }
        (out, p.paging())
    }

    #[test]
    fn a_known_short_page_ends_a_read_in_one_request() {
        let known = Paging {
            largest_page: 400,
            ..Paging::default()
        };
        assert_eq!(run(known, true, &[330]).0, vec![Next::Done]);
        // Once a page of 1000 came, every short page is an end.
        assert_eq!(
            run(Paging::default(), false, &[1000, 999]).0,
            vec![Next::Page { offset: 1000 }, Next::Done]
        );
    }

    #[test]
    fn a_page_as_large_as_a_proven_end_is_confirmed_again() {
        // A window of exactly 100 entries at a UCM that caps pages at 100 looks like an end of
        // 100; a later page of 100 may still be a capped one.
        let (_, learned) = run(Paging::default(), true, &[100, 0]);
        assert_eq!(learned.largest_page, 100);
        let (reqs, learned) = run(learned, true, &[100, 100, 3]);
        assert_eq!(
            reqs,
            vec![
                Next::Page { offset: 100 },
                Next::Page { offset: 200 },
                Next::Done
            ]
        );
        assert_eq!(learned.cap, Some(100));
    }

    #[test]
    fn a_short_page_of_a_new_size_is_confirmed_once() {
        let (reqs, learned) = run(Paging::default(), true, &[330, 0]);
        assert_eq!(reqs, vec![Next::Page { offset: 330 }, Next::Done]);
        assert_eq!(learned.largest_page, 330);
        assert_eq!(learned.cap, None);
    }

    #[test]
    fn a_cap_is_learned_from_two_equal_short_pages_and_paged_through() {
        let (reqs, learned) = run(Paging::default(), true, &[100, 100, 100, 40]);
        assert_eq!(
            reqs,
            vec![
                Next::Page { offset: 100 },
                Next::Page { offset: 200 },
                Next::Page { offset: 300 },
                Next::Done
            ]
        );
        assert_eq!(learned.cap, Some(100));
        // Once known, the cap's pages are full pages and the last short one ends the read.
        let (reqs, _) = run(learned, true, &[100, 7]);
        assert_eq!(reqs, vec![Next::Page { offset: 100 }, Next::Done]);
    }

    #[test]
    fn an_empty_page_after_a_full_one_is_asked_again_after_a_fresh_login() {
        let (reqs, _) = run(Paging::default(), false, &[1000, 0, 0]);
        assert_eq!(
            reqs,
            vec![
                Next::Page { offset: 1000 },
                Next::Relogin { offset: 1000 },
                Next::Done
            ]
        );
        // The second answer holds the rest: the read goes on.
        let (reqs, _) = run(Paging::default(), false, &[1000, 0, 1000, 5, 0]);
        assert_eq!(reqs[2], Next::Page { offset: 2000 });
    }

    #[test]
    fn an_empty_first_page_is_suspect_only_where_entries_are_due() {
        assert_eq!(
            run(Paging::default(), true, &[0]).0,
            vec![Next::Relogin { offset: 0 }]
        );
        assert_eq!(run(Paging::default(), false, &[0]).0, vec![Next::Done]);
    }

    #[test]
    fn a_repeated_page_means_offset_is_ignored() {
        let mut p = Pager::new(Paging::default(), false);
        assert_eq!(p.next(1000, 1000), Ok(Next::Page { offset: 1000 }));
        assert_eq!(
            p.next(1000, 0),
            Err(PagingError::OffsetIgnored {
                page: 2,
                offset: 1000
            })
        );
        // A UCM capping at 100 and ignoring offset is caught on its second page as well.
        let mut p = Pager::new(Paging::default(), false);
        assert_eq!(p.next(100, 100), Ok(Next::Page { offset: 100 }));
        assert!(p.next(100, 0).is_err());
    }

    #[test]
    fn a_page_larger_than_asked_is_everything() {
        assert_eq!(run(Paging::default(), true, &[5000]).0, vec![Next::Done]);
    }

    fn slice(from: LocalSecs, to: Option<LocalSecs>) -> Slice {
        Slice { from, to }
    }

    /// Runs a slicer over a UCM that answers each slice with the first `cap` of `starts` inside
    /// it, returning the slices asked for and whether every start was seen.
    fn sliced(
        starts: &[LocalSecs],
        cap: usize,
        largest: usize,
        now: LocalSecs,
    ) -> (Vec<Slice>, bool) {
        let paging = Paging {
            largest_page: largest,
            ..Paging::default()
        };
        let mut s = Slicer::new(slice(0, None), paging, true);
        let mut asked = vec![s.first()];
        let mut seen = std::collections::BTreeSet::new();
        let mut current = s.first();
        loop {
            let page: Vec<LocalSecs> = starts
                .iter()
                .copied()
                .filter(|&t| current.holds(t, t))
                .take(cap)
                .collect();
            seen.extend(page.iter().copied());
            let times = page
                .iter()
                .min()
                .zip(page.iter().max())
                .map(|(a, b)| (*a, *b));
            match s.next(page.len(), times, now).unwrap() {
                Step::Read(next) | Step::Relogin(next) => {
                    asked.push(next);
                    current = next;
                }
                Step::Done => break,
            }
        }
        let all = starts.iter().all(|t| seen.contains(t));
        (asked, all)
    }

    #[test]
    fn a_window_that_fits_one_page_is_one_request() {
        let (asked, all) = sliced(&[10, 20, 30], 100, 100, 1000);
        assert_eq!(asked, vec![slice(0, None)]);
        assert!(all);
    }

    #[test]
    fn slices_are_halved_until_each_fits_a_page() {
        // 1000 calls, one a second, at a UCM that serves at most 100 per answer in any order.
        let starts: Vec<LocalSecs> = (0..1000).rev().collect();
        let (asked, all) = sliced(&starts, 100, 100, 1000);
        assert!(all, "every call read");
        // About two requests for each page's worth of calls, not one per page per level.
        assert!(asked.len() <= 40, "{} requests", asked.len());
        assert_eq!(asked[1], slice(0, Some(500)), "the first half, read next");
    }

    #[test]
    fn a_crowded_second_is_an_error_not_a_loop() {
        let mut s = Slicer::new(slice(5, Some(6)), Paging::default(), false);
        assert_eq!(
            s.next(1000, Some((5, 6)), 100),
            Ok(Step::Read(slice(5, Some(5))))
        );
        assert_eq!(
            s.next(1000, Some((5, 5)), 100),
            Err(PagingError::Crowded {
                at: 5,
                entries: 1000
            })
        );
    }

    #[test]
    fn an_empty_slice_where_the_page_before_showed_calls_is_asked_again_after_a_fresh_login() {
        let mut s = Slicer::new(slice(0, Some(100)), Paging::default(), false);
        assert_eq!(
            s.next(1000, Some((60, 100)), 200),
            Ok(Step::Read(slice(0, Some(50))))
        );
        // Nothing was seen before 60: an empty first half is believed.
        assert_eq!(s.next(0, None, 200), Ok(Step::Read(slice(50, Some(100)))));
        assert_eq!(
            s.next(0, None, 200),
            Ok(Step::Relogin(slice(50, Some(100))))
        );
        assert_eq!(s.next(7, Some((60, 70)), 200), Ok(Step::Done));
        assert!(s.paging().offset_ignored);
        assert_eq!(s.paging().largest_page, 1000);
    }

    #[test]
    fn an_open_slice_is_halved_before_now_or_a_minute_on() {
        assert_eq!(
            slice(100, None).halves(300),
            Some((slice(100, Some(200)), slice(200, None)))
        );
        assert_eq!(
            slice(100, None).halves(50),
            Some((slice(100, Some(160)), slice(160, None)))
        );
        assert_eq!(slice(7, Some(7)).halves(0), None);
    }

    #[test]
    fn a_page_longer_than_asked_is_the_whole_slice() {
        let mut s = Slicer::new(slice(0, None), Paging::default(), true);
        assert_eq!(s.next(2506, Some((0, 9)), 10), Ok(Step::Done));
    }

    proptest::proptest! {
        /// Whatever the order the UCM lists calls in and whatever its cap, a sliced read sees
        /// every call, as long as no single second holds a page of them.
        #[test]
        fn a_sliced_read_sees_every_call(
            starts in proptest::collection::vec(0i64..5000, 0..1500),
            cap in 10usize..400,
            now in 0i64..6000,
        ) {
            let mut per_second = std::collections::BTreeMap::new();
            for t in &starts {
                *per_second.entry(*t).or_insert(0usize) += 1;
            }
            proptest::prop_assume!(per_second.values().all(|&n| n < cap));
            let (asked, all) = sliced(&starts, cap, cap, now);
            proptest::prop_assert!(all);
            // No blow-up: the slices of one depth overlap only in the seconds two of them
            // share, so they hold at most twice the calls, and each slice halved held a page
            // of them: at most 2 (pages + 1) halved per depth, two requests each.
            let depth = 65 - (now.max(5000) as u64).leading_zeros() as usize;
            let bound = 4 * depth * (starts.len().div_ceil(cap) + 1) + 1;
            proptest::prop_assert!(asked.len() <= bound, "{} requests, bound {bound}", asked.len());
        }
    }
}
