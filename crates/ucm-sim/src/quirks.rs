//! Switches for the API behaviours that docs/ucm-api.md marks uncertain (§3, §5.1, §5.2, §5.4, §7.6),
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
    /// The channel lists leave out `uniqueid1`/`uniqueid2` (bridged) and `uniqueid`
    /// (unbridged), which docs/ucm-api.md §7.6 only believes present: for a client that must
    /// cope without them.
    pub no_channel_uniqueids: bool,
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
                "filter_reads_utc":true,"late_legs_delay":"2m","end_filter":"TypoOnly",
                "no_channel_uniqueids":true}"#,
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
                no_channel_uniqueids: true,
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
