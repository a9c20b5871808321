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
        if let Some(cap) = self
            .paging
            .cap
            .filter(|&c| entries > c && entries <= PAGE_SIZE)
        {
            tracing::warn!(
                cap,
                entries,
                "the UCM served a page of {entries} entries although its pages were taken to be capped at {cap}: \
                 that cap is forgotten"
            );
            self.paging.cap = None;
        }
        if let Some(short) = self.confirming.take() {
            match entries {
                // The short page was the end.
                0 => return Ok(Next::Done),
                // Two pages of the same short size in a row, the second all new to the read at
                // the offset after the first: the first was cut, the UCM caps pages at that
                // size. A page served again (one that holds entries already read) proves
                // nothing.
                n if n == short && fresh == n => {
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
/// first entry; a page that may have been cut short (as large as the UCM's proven cap, or, with
/// none proven, as the largest page it has served) has its slice halved, and both halves are
/// read. The UCM's order does not matter: the slices are bounded by the time filter itself.
///
/// Whether such a page was cut is proven by its halves: an entry in either that the page did
/// not hold proves the cut, and with it the cap; halves that hold nothing new prove the page
/// whole, and pages of its size are trusted from then on. Every read proves its cap again, so
/// a cap once wrongly believed costs one halving per read, never a stalled one.
#[derive(Debug)]
pub struct Slicer {
    /// Slices to read after the current one, the next last.
    todo: Vec<Part>,
    current: Part,
    paging: Paging,
    /// Pages of at least this many entries may have been cut short.
    suspect: usize,
    /// A cut was proven in this read: `paging.cap` is this UCM's cap.
    proven: bool,
    /// Each halving of the read: the entries of the page halved, and what its halves showed.
    halvings: Vec<Halving>,
    pages: usize,
    relogged: bool,
}

/// One slice to read: whether it is known to hold entries, and the halving it is a half of.
#[derive(Debug, Clone, Copy)]
struct Part {
    slice: Slice,
    due: bool,
    half_of: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
struct Halving {
    entries: usize,
    halves_read: u8,
    /// The larger page of its halves so far.
    largest_half: usize,
    cut: bool,
    /// A half whose own page may have been cut, waiting until this halving is decided.
    waiting: Option<Suspect>,
}

impl Halving {
    fn decided(&self) -> bool {
        self.cut || self.halves_read == 2
    }
}

/// A page that may have been cut short, and what it showed of its slice.
#[derive(Debug, Clone, Copy)]
struct Suspect {
    slice: Slice,
    entries: usize,
    times: Option<(LocalSecs, LocalSecs)>,
}

impl Slicer {
    /// A sliced read of `window`, whose first slice is the whole window; `entries_due` as for
    /// [`Pager::new`].
    pub fn new(window: Slice, paging: Paging, entries_due: bool) -> Self {
        Slicer {
            todo: Vec::new(),
            current: Part {
                slice: window,
                due: entries_due,
                half_of: None,
            },
            suspect: paging.cap.unwrap_or(paging.largest_page).max(1),
            paging: Paging {
                offset_ignored: true,
                ..paging
            },
            proven: false,
            halvings: Vec::new(),
            pages: 0,
            relogged: false,
        }
    }

    /// The slice to ask for first.
    pub fn first(&self) -> Slice {
        self.current.slice
    }

    pub fn paging(&self) -> Paging {
        self.paging
    }

    pub fn pages(&self) -> usize {
        self.pages
    }

    /// Takes the page of the current slice: its number of top-level entries, how many of them
    /// are new to the read, and the earliest and latest time the window filters on among them.
    /// `now` is the host's time, in the UCM's zone, where an open slice is halved.
    pub fn next(
        &mut self,
        entries: usize,
        fresh: usize,
        times: Option<(LocalSecs, LocalSecs)>,
        now: LocalSecs,
    ) -> Result<Step, PagingError> {
        self.pages += 1;
        let part = self.current;
        if entries == 0 && part.due && !self.relogged {
            self.relogged = true;
            return Ok(Step::Relogin(part.slice));
        }
        self.paging.largest_page = self.paging.largest_page.max(entries.min(PAGE_SIZE));
        let page = Suspect {
            slice: part.slice,
            entries,
            times,
        };
        let mut to_halve = Vec::new();
        if let Some(h) = part.half_of {
            to_halve.extend(self.judge(h, entries, fresh > 0));
        }
        // A page longer than asked is the whole answer (numRecords ignored).
        if entries >= self.suspect && entries <= PAGE_SIZE {
            // A half whose sibling is still to tell whether their page was cut waits for it:
            // if it was not, neither half needs halving.
            match part.half_of.filter(|&h| !self.halvings[h].decided()) {
                Some(h) => self.halvings[h].waiting = Some(page),
                None => to_halve.push(page),
            }
        }
        for page in to_halve {
            if page.entries >= self.suspect {
                self.halve(page, now);
            }
        }
        Ok(match self.todo.pop() {
            Some(next) => {
                self.current = next;
                Step::Read(next.slice)
            }
            None => Step::Done,
        })
    }

    /// Reads both halves of a page that may have been cut, or takes the page whole where its
    /// slice is a single second.
    fn halve(&mut self, page: Suspect, now: LocalSecs) {
        let Some((lo, hi)) = page.slice.halves(now) else {
            self.crowded(page.slice.from, page.entries);
            return;
        };
        let due = |s: Slice| page.times.is_some_and(|(a, b)| s.holds(a, b));
        let id = self.halvings.len();
        self.halvings.push(Halving {
            entries: page.entries,
            halves_read: 0,
            largest_half: 0,
            cut: false,
            waiting: None,
        });
        for half in [hi, lo] {
            self.todo.push(Part {
                slice: half,
                due: due(half),
                half_of: Some(id),
            });
        }
    }

    /// What a half of `entries` entries just read tells of the page it is half of: new entries
    /// prove that page cut, and the UCM's cap its size; two smaller halves with nothing new
    /// prove it whole (were it cut, each would be whole below the cap, and together they would
    /// hold more). A half that served the page's entries again leaves the question to its own
    /// halves. Once that is known, the half that waited for it is handed back to be halved if
    /// it still must be.
    fn judge(&mut self, h: usize, entries: usize, fresh: bool) -> Option<Suspect> {
        let halving = &mut self.halvings[h];
        halving.halves_read += 1;
        halving.largest_half = halving.largest_half.max(entries);
        if fresh && !halving.cut {
            halving.cut = true;
            if !self.proven {
                self.proven = true;
                let cap = halving.entries;
                if self.paging.cap != Some(cap) {
                    tracing::warn!(
                        cap,
                        "the UCM answers at most {cap} CDR entries per page although {PAGE_SIZE} were asked"
                    );
                }
                self.paging.cap = Some(cap);
                self.suspect = cap;
            }
        }
        let halving = &mut self.halvings[h];
        let whole =
            halving.halves_read == 2 && !halving.cut && halving.largest_half < halving.entries;
        let entries = halving.entries;
        if whole && !self.proven && entries >= self.suspect {
            if let Some(cap) = self.paging.cap.take() {
                tracing::info!(
                    cap,
                    "a page of {entries} entries held every entry of its slice: the UCM's pages are not capped at {cap}"
                );
            }
            self.suspect = entries + 1;
        }
        let halving = &mut self.halvings[h];
        if halving.decided() {
            halving.waiting.take()
        } else {
            None
        }
    }

    /// A one-second slice that fills a page cannot be halved: what the page holds is taken, and
    /// the read moves on. Unless a cut was proven, the page most likely held the whole second;
    /// if it was, the rest of that second cannot be read at a UCM that ignores `offset`.
    fn crowded(&self, at: LocalSecs, entries: usize) {
        if self.proven {
            tracing::warn!(
                entries,
                second = %crate::clock::from_local_secs(at),
                "the UCM ignores cdrapi's offset and caps its pages at {entries}, and as many entries fall within \
                 one second: those are taken, any more in that second cannot be read; the read goes on"
            );
        } else {
            tracing::debug!(
                entries,
                second = %crate::clock::from_local_secs(at),
                "a one-second slice filled a page; taken as the whole second"
            );
        }
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
        sliced_from(paging, starts, cap, now)
    }

    fn sliced_from(
        paging: Paging,
        starts: &[LocalSecs],
        cap: usize,
        now: LocalSecs,
    ) -> (Vec<Slice>, bool) {
        let mut s = Slicer::new(slice(0, None), paging, true);
        let mut asked = vec![s.first()];
        // Calls by their index: several may start in the same second.
        let mut seen = std::collections::BTreeSet::new();
        let mut current = s.first();
        loop {
            let page: Vec<(usize, LocalSecs)> = starts
                .iter()
                .copied()
                .enumerate()
                .filter(|&(_, t)| current.holds(t, t))
                .take(cap)
                .collect();
            let fresh = page.iter().filter(|(i, _)| seen.insert(*i)).count();
            let times = page
                .iter()
                .map(|p| p.1)
                .min()
                .zip(page.iter().map(|p| p.1).max());
            match s.next(page.len(), fresh, times, now).unwrap() {
                Step::Read(next) | Step::Relogin(next) => {
                    asked.push(next);
                    current = next;
                }
                Step::Done => break,
            }
            assert!(asked.len() < 100_000, "endless");
        }
        let all = (0..starts.len()).all(|i| seen.contains(&i));
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
    fn a_crowded_second_is_taken_whole_and_the_read_goes_on() {
        let mut s = Slicer::new(slice(5, Some(6)), Paging::default(), false);
        assert_eq!(
            s.next(1000, 1000, Some((5, 5)), 100),
            Ok(Step::Read(slice(5, Some(5))))
        );
        // The second 5 alone fills a page, with calls the first did not hold: the first was
        // cut, and so may this one be, but it cannot be halved: it is taken as it came.
        assert_eq!(
            s.next(1000, 10, Some((5, 5)), 100),
            Ok(Step::Read(slice(6, Some(6))))
        );
        assert_eq!(s.paging().cap, Some(1000));
        assert_eq!(s.next(0, 0, None, 100), Ok(Step::Done));
    }

    #[test]
    fn a_single_entry_answer_after_slicing_began_is_narrowed_to_its_second_and_taken() {
        for largest in [0, 1] {
            let paging = Paging {
                largest_page: largest,
                ..Paging::default()
            };
            // Whether a UCM that caps its pages at one entry holds more in that second cannot
            // be told; the read narrows down to it, two requests a halving, and ends.
            let (asked, all) = sliced_from(paging, &[4_000_000], 1000, 5_000_000);
            assert!(all);
            assert!(asked.len() <= 2 * 23 + 3, "{}", asked.len());
            // With a second entry, the halves prove the page of two whole at once.
            let (asked, all) = sliced_from(paging, &[1_000_000, 4_000_000], 1000, 5_000_000);
            assert!(all);
            assert_eq!(asked.len(), 3, "{asked:?}");
        }
    }

    #[test]
    fn a_cap_believed_wrongly_is_disproven_by_one_halving_and_forgotten() {
        // A state from a version that learned a false cap of 37 from a page served again.
        let paging = Paging {
            cap: Some(37),
            largest_page: 37,
            ..Paging::default()
        };
        // 300 calls, 40 of them in one second, at a UCM that serves 1000 per page.
        let mut starts: Vec<LocalSecs> = (0..260).map(|i| i * 10).collect();
        starts.extend(std::iter::repeat_n(1234, 40));
        let mut s = Slicer::new(slice(0, None), paging, true);
        let window = |sl: Slice| starts.iter().filter(|&&t| sl.holds(t, t)).count();
        let mut current = s.first();
        let mut asked = 1;
        let mut first = true;
        loop {
            let n = window(current);
            let fresh = if first { n } else { 0 };
            first = false;
            match s.next(n, fresh, Some((0, 2590)), 3000).unwrap() {
                Step::Read(next) | Step::Relogin(next) => {
                    current = next;
                    asked += 1;
                }
                Step::Done => break,
            }
        }
        assert_eq!(asked, 3, "the whole window, then its two halves");
        assert_eq!(s.paging().cap, None);
        // A real cap is proven by the halves: they hold calls the page did not.
        let (asked, all) = sliced(&(0..300).collect::<Vec<_>>(), 100, 100, 400);
        assert!(all && asked.len() > 3);
    }

    #[test]
    fn an_empty_slice_where_the_page_before_showed_calls_is_asked_again_after_a_fresh_login() {
        let mut s = Slicer::new(slice(0, Some(100)), Paging::default(), false);
        assert_eq!(
            s.next(1000, 1000, Some((60, 100)), 200),
            Ok(Step::Read(slice(0, Some(50))))
        );
        // Nothing was seen before 60: an empty first half is believed.
        assert_eq!(
            s.next(0, 0, None, 200),
            Ok(Step::Read(slice(50, Some(100))))
        );
        assert_eq!(
            s.next(0, 0, None, 200),
            Ok(Step::Relogin(slice(50, Some(100))))
        );
        assert_eq!(s.next(7, 7, Some((60, 70)), 200), Ok(Step::Done));
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
        assert_eq!(s.next(2506, 2506, Some((0, 9)), 10), Ok(Step::Done));
    }

    proptest::proptest! {
        /// Whatever the order the UCM lists calls in and whatever its cap, a sliced read sees
        /// every call, as long as no single second holds a page of them, and ends whatever the
        /// seconds hold.
        #[test]
        fn a_sliced_read_sees_every_call(
            starts in proptest::collection::vec(0i64..5000, 0..1500),
            cap in 10usize..400,
            largest in 0usize..400,
            now in 0i64..6000,
        ) {
            let mut per_second = std::collections::BTreeMap::new();
            for t in &starts {
                *per_second.entry(*t).or_insert(0usize) += 1;
            }
            let (asked, all) = sliced(&starts, cap, largest.min(cap), now);
            if per_second.values().all(|&n| n < cap) {
                proptest::prop_assert!(all);
            }
            // No blow-up: the slices of one depth overlap only in the seconds two of them
            // share, so they hold at most twice the calls, and each slice halved held a page
            // of them: at most 2 (pages + 1) halved per depth, two requests each.
            let depth = 65 - (now.max(5000) as u64).leading_zeros() as usize;
            let bound = 4 * depth * (starts.len().div_ceil(cap) + 1) + 1;
            proptest::prop_assert!(asked.len() <= bound, "{} requests, bound {bound}", asked.len());
        }
    }
}
