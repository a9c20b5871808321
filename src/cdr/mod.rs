//! Call detail records: decoding `cdrapi` answers and turning each `cdr_root` entry into one call.
//!
//! Decoding (`parse`) and the counting rules of docs/design.md §6 (`classify`, and `groups` for queues, ring groups
//! and IVRs, over the shared values of `labels`) are kept apart so that the rules can be read
//! and tested against that text without the serde machinery in the way.

mod classify;
mod groups;
mod labels;
mod parse;
#[cfg(test)]
mod tests;

pub use classify::{classify, Call, Skip};
pub use groups::{
    named_group, GroupKind, GroupOutcome, GroupVisit, IvrOutcome, IvrVisit, MemberOutcome,
};
pub use labels::{Direction, Disposition, ExtensionPattern, Role};
pub use parse::{
    parse_cdr_response, parse_timestamp, CdrResponse, DecodeError, Entry, Leg, MainCdr,
};
