//! Switches for the API behaviours that docs/ucm-api.md marks uncertain (§3, §5.1, §5.2, §5.4, §7),
//! so a client's guards can be tested against a UCM that goes the other way. The default is the
//! behaviour the document calls known or most likely.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The order of `cdr_root` entries; `offset` counts entries in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Order {
    /// Oldest call start first, the order docs/ucm-api.md §5.2 reports.
    #[default]
    #[serde(alias = "start-asc", alias = "start_asc")]
    StartAsc,
    /// In the order the CDRs were written, which is the order of call end (the order a row id
    /// such as `AcctId` counts on a device): a long call comes after the short calls that ended
    /// before it.
    #[serde(alias = "end-asc", alias = "end_asc")]
    EndAsc,
    /// Newest call start first.
    #[serde(alias = "start-desc", alias = "start_desc")]
    StartDesc,
}

/// What cdrapi makes of `timeFilterType: "End"`, which would put the `startTime`/`endTime`
/// window on the call's end instead of its start. Whether a UCM knows the parameter is open
/// (docs/ucm-api.md §5.1, §9), and the vendor's guide spells it `tineFilterType`, so clients send
/// either; each reading a device might take is here. The value is `Start` or `End` in any
/// casing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum EndFilter {
    /// Both spellings are understood; `End` in either filters on the call's end (its latest leg
    /// end, when the CDR is written). Another value is unreadable: an empty list, as for any
    /// unreadable parameter.
    #[default]
    #[serde(alias = "honoured")]
    Honoured,
    /// Only the guide's spelling `tineFilterType` is understood; `timeFilterType` is ignored.
    #[serde(alias = "typo-only", alias = "typo_only")]
    TypoOnly,
    /// Both spellings are ignored: the window stays on the call's start.
    #[serde(alias = "ignored")]
    Ignored,
    /// A request that carries either spelling, whatever its value, gets `{"cdr_root":[]}`: the
    /// UCM treats it as a parameter it cannot read.
    #[serde(alias = "empty-list", alias = "empty_list")]
    EmptyList,
}

/// Which end `timeFilterType: End` compares with. A call that failed before it was set up is
/// written with an empty `end` (docs/ucm-api.md §6.1), so the two readings differ for it alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum EndColumn {
    /// The end the call's start and duration give, also for a row written without one.
    #[default]
    #[serde(alias = "computed")]
    Computed,
    /// The written `end` column, as an SQL compare would: a row with an empty `end` never
    /// matches an end window.
    #[serde(alias = "written")]
    Written,
}

/// How `listAccount` (and the queue member list) words an extension's status; the vendor's guide
/// names only `Idle` and `Unavailable` (docs/ucm-api.md §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum AccountCasing {
    /// `Idle`, `InUse`, `Ringing`, `Unavailable`.
    #[default]
    #[serde(alias = "mixed")]
    Mixed,
    /// `idle`, `inuse`, `ringing`, `unavailable`.
    #[serde(alias = "lower")]
    Lower,
    /// As `Mixed`, but a phone in a call that also rings shows `InUse&Ringing`.
    #[serde(alias = "compound")]
    Compound,
}

/// How `getSystemStatus` writes `up-time`, which is known only below a day and differs between
/// firmware (docs/ucm-api.md §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum UptimeFormat {
    /// `HH:MM:SS` below a day, `D HH:MM:SS` from a day on.
    #[default]
    #[serde(alias = "hms")]
    Hms,
    /// Whole seconds as a string, `"93784"`, as older firmware is said to answer.
    #[serde(alias = "seconds")]
    Seconds,
    /// Hours that run past 24: `"26:03:04"`.
    #[serde(alias = "hours-over-24", alias = "hours_over_24")]
    HoursOver24,
    /// `"1 day(s) 02:03:04"`, also below a day (`"0 day(s) 00:00:05"`).
    #[serde(alias = "days-word", alias = "days_word")]
    DaysWord,
}

/// The date order of `getSystemStatus`'s `system-time` (docs/ucm-api.md §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SystemTimeFormat {
    /// `23-11-2022 14:37:26 UTC+01:00`.
    #[default]
    #[serde(alias = "day-first", alias = "day_first")]
    DayFirst,
    /// `2022-11-23 14:37:26 UTC+01:00`.
    #[serde(alias = "year-first", alias = "year_first")]
    YearFirst,
}

/// How this UCM bends the uncertain parts of the API; [`Quirks::default`] bends none.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quirks {
    /// Entries per cdrapi answer at most, whatever `numRecords` asks; replaces
    /// `SimConfig::max_records` while set (so it can also be above 1000, like the oversized
    /// answer of docs/ucm-api.md §5.4). At least 1.
    pub page_cap: Option<usize>,
    /// cdrapi ignores `offset`: every request gets the first page.
    pub ignore_offset: bool,
    pub order: Order,
    /// An expired or unknown cookie gets a bare `{"cdr_root":[]}` from cdrapi instead of
    /// status -6 (other actions still answer -6): expiry looks like a quiet PBX.
    pub silent_expiry: bool,
    /// `startTime`/`endTime` without an explicit offset are read as UTC instead of the UCM's
    /// local time, while CDR times stay local; no effect when the zone is UTC.
    pub filter_reads_utc: bool,
    /// A grouped entry is served with only its first leg (plus a ForkCDR copy of it) until this
    /// long after the call ended; then its remaining `sub_cdr_N` legs appear. None = every
    /// entry is whole as soon as it is visible.
    #[serde(with = "humantime_serde")]
    pub late_legs_delay: Option<Duration>,
    pub end_filter: EndFilter,
    pub end_column: EndColumn,
    /// The channel lists leave out `uniqueid1`/`uniqueid2` (bridged) and `uniqueid`
    /// (unbridged), which docs/ucm-api.md §7.6 only believes present: for a client that must
    /// cope without them.
    pub no_channel_uniqueids: bool,
    /// `getSIPTrunk` carries the trunk's live `status`, which docs/ucm-api.md §7.5 only
    /// suspects it does.
    pub sip_trunk_status: bool,
    pub account_status_casing: AccountCasing,
    pub uptime_format: UptimeFormat,
    pub system_time_format: SystemTimeFormat,
    /// `getQueueCalling` answers its rows as `CallQueues: [rows]` instead of
    /// `CallQueues: {"member": [rows]}`, the way a one-element list may come as a single object
    /// elsewhere (docs/ucm-api.md §7.7).
    pub queue_calling_array: bool,
    /// Actions this UCM does not know (older firmware, or a newer one that renamed them): they
    /// get the answer of any unknown action, `-1` (docs/ucm-api.md §4), whatever the session.
    pub unknown_actions: Vec<String>,
}

impl Quirks {
    /// Why these quirks cannot be applied, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.page_cap == Some(0) {
            return Err("page_cap must be at least 1 (null for no cap beyond max_records)".into());
        }
        Ok(())
    }

    /// The entries one cdrapi answer may hold.
    pub(crate) fn cap(&self, max_records: usize) -> usize {
        self.page_cap.unwrap_or(max_records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_form() {
        let q: Quirks = serde_json::from_str(
            r#"{"page_cap":100,"ignore_offset":true,"order":"EndAsc","silent_expiry":true,
                "filter_reads_utc":true,"late_legs_delay":"2m","end_filter":"TypoOnly","end_column":"written",
                "no_channel_uniqueids":true,"sip_trunk_status":true,
                "account_status_casing":"Compound","uptime_format":"hours-over-24",
                "system_time_format":"YearFirst","queue_calling_array":true,
                "unknown_actions":["listAllTrunk"]}"#,
        )
        .unwrap();
        assert_eq!(
            q,
            Quirks {
                page_cap: Some(100),
                ignore_offset: true,
                order: Order::EndAsc,
                silent_expiry: true,
                filter_reads_utc: true,
                late_legs_delay: Some(Duration::from_secs(120)),
                end_filter: EndFilter::TypoOnly,
                end_column: EndColumn::Written,
                no_channel_uniqueids: true,
                sip_trunk_status: true,
                account_status_casing: AccountCasing::Compound,
                uptime_format: UptimeFormat::HoursOver24,
                system_time_format: SystemTimeFormat::YearFirst,
                queue_calling_array: true,
                unknown_actions: vec!["listAllTrunk".into()],
            }
        );
        let back: Quirks = serde_json::from_str(&serde_json::to_string(&q).unwrap()).unwrap();
        assert_eq!(back, q);
        assert_eq!(
            serde_json::from_str::<Quirks>("{}").unwrap(),
            Quirks::default()
        );
        let o: Quirks = serde_json::from_str(r#"{"order":"start-desc"}"#).unwrap();
        assert_eq!(o.order, Order::StartDesc);
        for (text, f) in [
            ("honoured", EndFilter::Honoured),
            ("typo-only", EndFilter::TypoOnly),
            ("Ignored", EndFilter::Ignored),
            ("empty_list", EndFilter::EmptyList),
        ] {
            let q: Quirks = serde_json::from_str(&format!(r#"{{"end_filter":"{text}"}}"#)).unwrap();
            assert_eq!(q.end_filter, f);
        }
        assert!(serde_json::from_str::<Quirks>(r#"{"end_filter":"sometimes"}"#).is_err());
        for (text, f) in [
            ("hms", UptimeFormat::Hms),
            ("Seconds", UptimeFormat::Seconds),
            ("days-word", UptimeFormat::DaysWord),
        ] {
            let q: Quirks =
                serde_json::from_str(&format!(r#"{{"uptime_format":"{text}"}}"#)).unwrap();
            assert_eq!(q.uptime_format, f);
        }
        let q: Quirks = serde_json::from_str(
            r#"{"account_status_casing":"lower","system_time_format":"year-first"}"#,
        )
        .unwrap();
        assert_eq!(
            (q.account_status_casing, q.system_time_format),
            (AccountCasing::Lower, SystemTimeFormat::YearFirst)
        );
        assert!(serde_json::from_str::<Quirks>(r#"{"page_cap":-1}"#).is_err());
        assert!(serde_json::from_str::<Quirks>(r#"{"ignore_ofset":true}"#).is_err());
        assert!(serde_json::from_str::<Quirks>(r#"{"order":"sideways"}"#).is_err());
        assert!(Quirks {
            page_cap: Some(0),
            ..Quirks::default()
        }
        .check()
        .is_err());
    }
}
