//! The figures of a poll and of each of its reads, for logs, `check` and tests.

use super::plan::{PollKind, WindowMode};

/// The figures of one successful poll (or of one read of it).
#[derive(Debug, Clone, PartialEq)]
pub struct PollReport {
    pub kind: PollKind,
    pub mode: WindowMode,
    /// cdrapi reads (windows) of the poll.
    pub reads: usize,
    pub pages: usize,
    pub entries: usize,
    pub new_calls: u64,
    pub new_records: u64,
    /// New legs the poll's safety sweep found that the fast mode had missed.
    pub late_records: u64,
}

impl PollReport {
    pub fn new(kind: PollKind, mode: WindowMode) -> Self {
        PollReport {
            kind,
            mode,
            reads: 0,
            pages: 0,
            entries: 0,
            new_calls: 0,
            new_records: 0,
            late_records: 0,
        }
    }

    pub fn add(&mut self, r: &PollReport) {
        self.reads += r.reads;
        self.pages += r.pages;
        self.entries += r.entries;
        self.new_calls += r.new_calls;
        self.new_records += r.new_records;
        self.late_records += r.late_records;
    }
}
