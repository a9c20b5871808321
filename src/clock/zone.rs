//! The zone the UCM's naive local times are read in.
//!
//! A UCM writes every time (CDR start and end, `system-time`) on its own local clock without a
//! zone; only `getSystemStatus` adds its current UTC offset. A configured IANA zone knows every
//! past and future offset; the UCM's reported offset is only true for now, which is all the
//! poller needs of it (its "now" and a ceiling), re-read every status interval so a DST change
//! is picked up within one.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDateTime, Offset, TimeZone, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// An IANA zone: the `timezone` setting, or the host's until the UCM tells its offset.
    Named(chrono_tz::Tz),
    /// The UTC offset the UCM last reported.
    Offset(FixedOffset),
}

impl Zone {
    pub const UTC: Zone = Zone::Named(chrono_tz::UTC);

    /// The wall time `at` read on a clock in this zone.
    pub fn local(self, at: DateTime<Utc>) -> NaiveDateTime {
        match self {
            Zone::Named(tz) => at.with_timezone(&tz).naive_local(),
            Zone::Offset(off) => at.with_timezone(&off).naive_local(),
        }
    }

    /// The instant of a local time in this zone; an ambiguous one (DST fall-back) is the
    /// earlier instant, a skipped one (spring-forward) has none.
    pub fn instant(self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self {
            Zone::Named(tz) => tz
                .from_local_datetime(&local)
                .earliest()
                .map(|t| t.with_timezone(&Utc)),
            Zone::Offset(off) => off
                .from_local_datetime(&local)
                .single()
                .map(|t| t.with_timezone(&Utc)),
        }
    }

    /// Seconds east of UTC at `at`.
    pub fn offset_secs(self, at: DateTime<Utc>) -> i32 {
        match self {
            Zone::Named(tz) => tz.offset_from_utc_datetime(&at.naive_utc()).fix(),
            Zone::Offset(off) => off,
        }
        .local_minus_utc()
    }
}

impl From<chrono_tz::Tz> for Zone {
    fn from(tz: chrono_tz::Tz) -> Self {
        Zone::Named(tz)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Named(tz) => write!(f, "{}", tz.name()),
            Zone::Offset(off) => write!(f, "{}", utc_offset(off.local_minus_utc())),
        }
    }
}

/// An offset as the UCM writes it: `UTC+05:30`, `UTC-03:00`.
pub fn utc_offset(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.unsigned_abs();
    format!("UTC{sign}{:02}:{:02}", a / 3600, a % 3600 / 60)
}

/// `getSystemStatus`'s `system-time`: `DD-MM-YYYY HH:MM:SS UTC+HH:MM` or `YYYY-MM-DD HH:MM:SS
/// UTC+HH:MM` (firmware differ, docs/ucm-api.md §7.2), the offset sometimes missing. The UCM's
/// local time and its offset, if it gave one; `None` for text that is neither.
pub fn parse_system_time(raw: &str) -> Option<(NaiveDateTime, Option<FixedOffset>)> {
    let mut parts = raw.split_whitespace();
    let (date, time) = (parts.next()?, parts.next()?);
    let local = [
        "%d-%m-%Y %H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%d/%m/%Y %H:%M:%S",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(&format!("{date} {time}"), f).ok())?;
    let Some(zone) = parts.next() else {
        return Some((local, None));
    };
    let off = zone.trim_start_matches("UTC").trim_start_matches("GMT");
    if off.is_empty() {
        return Some((local, FixedOffset::east_opt(0)));
    }
    let sign = if off.starts_with('-') { -1 } else { 1 };
    let digits = off.trim_start_matches(['+', '-']);
    let (h, m) = digits.split_once(':').unwrap_or((digits, "0"));
    let (h, m) = (h.parse::<i32>().ok()?, m.parse::<i32>().ok()?);
    // Real offsets are within ±14 h; anything else is garbled text, not a zone.
    if !(0..=14).contains(&h) || !(0..60).contains(&m) {
        return None;
    }
    Some((
        local,
        Some(FixedOffset::east_opt(sign * (h * 3600 + m * 60))?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn both_date_orders_and_offsets_of_either_sign() {
        let east = FixedOffset::east_opt(5 * 3600 + 1800);
        assert_eq!(
            parse_system_time("23-11-2022 14:37:26 UTC+05:30"),
            Some((at("2022-11-23 14:37:26"), east))
        );
        assert_eq!(
            parse_system_time("1970-01-01 00:00:00 UTC-03:00"),
            Some((at("1970-01-01 00:00:00"), FixedOffset::west_opt(3 * 3600)))
        );
        assert_eq!(
            parse_system_time("2022-11-23 14:37:26"),
            Some((at("2022-11-23 14:37:26"), None))
        );
        assert_eq!(
            parse_system_time("2022-11-23 14:37:26 UTC"),
            Some((at("2022-11-23 14:37:26"), FixedOffset::east_opt(0)))
        );
        for garbled in [
            "",
            "yesterday",
            "2022-11-23 14:37:26 UTC+24:00",
            "2022-11-23 14:37:26 UTC+0x:00",
        ] {
            assert_eq!(parse_system_time(garbled), None, "{garbled:?}");
        }
    }

    #[test]
    fn a_named_zone_follows_its_rules_an_offset_stays() {
        let berlin = Zone::Named(chrono_tz::Europe::Berlin);
        let winter = at("2027-01-10 12:00:00").and_utc();
        let summer = at("2027-07-10 12:00:00").and_utc();
        assert_eq!(
            (berlin.offset_secs(winter), berlin.offset_secs(summer)),
            (3600, 7200)
        );
        let plus5 = Zone::Offset(FixedOffset::east_opt(5 * 3600).unwrap());
        assert_eq!(plus5.offset_secs(summer), 5 * 3600);
        assert_eq!(plus5.local(winter), at("2027-01-10 17:00:00"));
        assert_eq!(plus5.instant(at("2027-01-10 17:00:00")), Some(winter));
        // Spring-forward skips 02:00-03:00 in Berlin: no instant; the offset has none missing.
        assert_eq!(berlin.instant(at("2027-03-28 02:30:00")), None);
        assert_eq!(
            (berlin.to_string(), plus5.to_string()),
            ("Europe/Berlin".into(), "UTC+05:00".into())
        );
        assert_eq!(utc_offset(-(3 * 3600 + 1800)), "UTC-03:30");
    }
}
