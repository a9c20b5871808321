//! The UCM's naive local time, in whole seconds.
//!
//! A UCM stamps its CDRs with its own wall clock and no offset. Keys, watermarks and windows
//! stay in that clock's seconds (seconds since 1970-01-01 00:00:00 *on that clock*, not Unix
//! time), so a wrong zone setting on this side never changes which calls are the same; only a
//! window sent to a UCM that reads it as UTC passes through a zone ([`as_utc`]).

use chrono::NaiveDateTime;

use super::zone::Zone;

/// Seconds of the UCM's naive local clock.
pub type LocalSecs = i64;

pub fn local_secs(t: NaiveDateTime) -> LocalSecs {
    t.and_utc().timestamp()
}

pub fn from_local_secs(s: LocalSecs) -> NaiveDateTime {
    chrono::DateTime::from_timestamp(s, 0).map_or(NaiveDateTime::MIN, |d| d.naive_utc())
}

/// The naive UTC time of a naive local time in `zone`, in the same unit; a time the zone skips
/// (DST spring-forward) is left as it is.
pub fn as_utc(zone: Zone, local: LocalSecs) -> LocalSecs {
    zone.instant(from_local_secs(local))
        .map_or(local, |t| local_secs(t.naive_utc()))
}
