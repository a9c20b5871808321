//! How one read pages through a window, trusting the UCM's paging no more than
//! docs/ucm-api.md §5.4 allows: a short page ends a read only once the UCM is known not to cap
//! `numRecords` below it, an empty page that may be a silently expired session is asked for
//! again with a fresh login, and a UCM that ignores `offset` is caught on its first repeated
//! page instead of being paged 2000 times.
//!
//! A pure state machine: [`Pager::next`] is told what each page held and says what to ask for
//! next, so every rule is tested without a network.

use serde::{Deserialize, Serialize};

use crate::ucm::cdrapi::PAGE_SIZE;

/// Guard against a UCM that pages without end in a way no other rule catches.
pub const MAX_PAGES_PER_READ: usize = 2000;

/// What a target's UCM has shown of its paging, kept in the state file so it is learned once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paging {
    /// The UCM answered at most this many entries per page although it was asked for more.
    pub cap: Option<usize>,
    /// The largest page the UCM has served (up to [`PAGE_SIZE`]). A cap, if any, is at least
    /// this large (or exactly this: that page may have been a capped one), so a page of fewer
    /// entries is the end of a read. Once a page of 1000 was served, every short page is.
    pub largest_page: usize,
    /// The UCM reads `startTime` as UTC, not as the local time of its CDRs: windows are sent
    /// converted to UTC.
    #[serde(default)]
    pub filter_reads_utc: bool,
}

impl Paging {
    /// Entries that make a page full: more may follow it.
    fn full(&self) -> usize {
        self.cap.unwrap_or(PAGE_SIZE)
    }
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
    /// [`MAX_PAGES_PER_READ`] pages and no end.
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
        self.paging.full()
    }

    /// Whether a page just received is full, so the one after the next is worth asking for
    /// ahead.
    pub fn is_full(&self, entries: usize) -> bool {
        entries >= self.paging.full()
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
        if self.pages >= MAX_PAGES_PER_READ {
            return Err(PagingError::Endless { pages: self.pages });
        }
        self.offset += entries;
        if entries > PAGE_SIZE {
            // A firmware that ignores numRecords and sent everything.
            return Ok(Next::Done);
        }
        self.after_full = entries >= self.paging.full();
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

    #[test]
    fn paging_stops_after_the_maximum_number_of_pages() {
        let mut p = Pager::new(Paging::default(), false);
        let mut last = Ok(Next::Done);
        for _ in 0..MAX_PAGES_PER_READ {
            last = p.next(1000, 1000);
            if last.is_err() {
                break;
            }
        }
        assert_eq!(
            last,
            Err(PagingError::Endless {
                pages: MAX_PAGES_PER_READ
            })
        );
    }
}
