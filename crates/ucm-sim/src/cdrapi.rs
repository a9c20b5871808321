//! The `cdrapi` action: filters, paging and rendering, with the legacy API's habit of answering
//! a filter it cannot read with an empty `cdr_root` instead of an error.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use chrono_tz::Tz;
use serde_json::{Map, Value};

use super::clock::{to_secs, LocalSecs, SteadySecs};
use super::quirks::{EndColumn, EndFilter, Order, Quirks};
use super::store::{without_late_legs, Entry, Store};

/// A parsed cdrapi request; `None` from [`Query::parse`] means "answer an empty cdr_root".
#[derive(Debug)]
pub struct Query {
    pub format: Format,
    pub num_records: usize,
    pub offset: usize,
    pub start: Option<LocalSecs>,
    pub end: Option<LocalSecs>,
    pub caller: Option<Vec<Pattern>>,
    pub callee: Option<Vec<Pattern>>,
    pub min_dur: Option<i64>,
    pub max_dur: Option<i64>,
    /// `start`/`end` apply to the call's end (`timeFilterType=End`, as the quirk reads it).
    pub on_end: bool,
    /// An end window compares with the written `end` column, which a row without one never
    /// matches.
    pub end_written: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Xml,
}

/// One item of a caller/callee filter list.
#[derive(Debug, PartialEq, Eq)]
pub enum Pattern {
    /// `a-b` numeric range; `0-0` matches empty and non-numeric numbers.
    Range(u64, u64),
    /// Literal with `_` = one character and `@` = any run.
    Glob(String),
}

/// A number or a string of digits, as clients send both.
fn uint(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    }
}

/// Parses the time formats of the legacy CDR API guide (docs/ucm-api.md §5.1) into local time:
/// `YYYY-MM-DD[T| ]HH:MM[:SS[.SSS]]`, date only (00:00), time only (2000-01-01), an optional
/// `Z`/`±HH:MM`/`±HHMM` offset (converted into `tz`), epoch seconds, and `now`.
pub fn parse_time(s: &str, tz: Tz, now: NaiveDateTime) -> Option<NaiveDateTime> {
    read_time(s, tz, now, false)
}

/// [`parse_time`], reading a time without an offset as UTC when `naive_is_utc` (the
/// `filter_reads_utc` quirk).
fn read_time(s: &str, tz: Tz, now: NaiveDateTime, naive_is_utc: bool) -> Option<NaiveDateTime> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("now") {
        return Some(now);
    }
    if !s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        let utc = DateTime::from_timestamp(s.parse().ok()?, 0)?;
        return Some(utc.with_timezone(&tz).naive_local());
    }
    let (body, offset) = split_offset(s);
    let local = parse_naive(body)?;
    match offset {
        None if naive_is_utc => Some(local.and_utc().with_timezone(&tz).naive_local()),
        None => Some(local),
        Some(off) => {
            let fixed = chrono::FixedOffset::east_opt(off)?;
            let instant = fixed.from_local_datetime(&local).single()?;
            Some(instant.with_timezone(&tz).naive_local())
        }
    }
}

/// Splits a trailing `Z`, `±HH:MM` or `±HHMM` off a date-time; a bare date keeps its dashes.
fn split_offset(s: &str) -> (&str, Option<i32>) {
    if let Some(body) = s.strip_suffix('Z').or_else(|| s.strip_suffix('z')) {
        return (body, Some(0));
    }
    let has_time = s.contains(':');
    for len in [6, 5] {
        if s.len() <= len || !has_time {
            continue;
        }
        let (body, off) = s.split_at(s.len() - len);
        let sign = match off.as_bytes()[0] {
            b'+' => 1,
            b'-' => -1,
            _ => continue,
        };
        let digits: String = off[1..].chars().filter(|c| *c != ':').collect();
        let colon_ok = if len == 6 {
            off.as_bytes()[3] == b':'
        } else {
            !off.contains(':')
        };
        if digits.len() == 4
            && colon_ok
            && digits.bytes().all(|b| b.is_ascii_digit())
            && body.contains(':')
        {
            let h: i32 = digits[..2].parse().unwrap_or(0);
            let m: i32 = digits[2..].parse().unwrap_or(0);
            return (body, Some(sign * (h * 3600 + m * 60)));
        }
    }
    (s, None)
}

fn parse_naive(s: &str) -> Option<NaiveDateTime> {
    for sep in ['T', ' '] {
        for fmt in ["%Y-%m-%d{}%H:%M:%S%.f", "%Y-%m-%d{}%H:%M"] {
            if let Ok(t) = NaiveDateTime::parse_from_str(s, &fmt.replace("{}", &sep.to_string())) {
                return Some(t);
            }
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0);
    }
    let default_day = NaiveDate::from_ymd_opt(2000, 1, 1)?;
    ["%H:%M:%S%.f", "%H:%M"]
        .iter()
        .find_map(|f| NaiveTime::parse_from_str(s, f).ok())
        .map(|t| default_day.and_time(t))
}

fn parse_patterns(s: &str) -> Option<Vec<Pattern>> {
    s.split(',')
        .map(|item| {
            if item.is_empty()
                || !item
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_@-+*#".contains(&b))
            {
                return None;
            }
            match item.split_once('-') {
                Some((a, b))
                    if !a.is_empty()
                        && a.bytes().all(|c| c.is_ascii_digit())
                        && b.bytes().all(|c| c.is_ascii_digit()) =>
                {
                    Some(Pattern::Range(a.parse().ok()?, b.parse().ok()?))
                }
                _ => Some(Pattern::Glob(item.to_string())),
            }
        })
        .collect()
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'@'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
        (Some(b'_'), Some(_)) => glob(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob(&p[1..], &s[1..]),
        _ => false,
    }
}

fn matches(patterns: &[Pattern], number: &str) -> bool {
    patterns.iter().any(|p| match p {
        Pattern::Range(0, 0) => number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()),
        Pattern::Range(a, b) => {
            number.parse::<u64>().is_ok_and(|n| (*a..=*b).contains(&n)) && !number.is_empty()
        }
        Pattern::Glob(g) => glob(g.as_bytes(), number.as_bytes()),
    })
}

/// Whether the window applies to the call's end; None = answer an empty list (`EmptyList`
/// seeing a spelling, or a value other than `Start`/`End` in a spelling that is understood).
fn end_filter(req: &Map<String, Value>, quirk: EndFilter) -> Option<bool> {
    const SPELLINGS: [&str; 2] = ["timeFilterType", "tineFilterType"];
    let understood: &[&str] = match quirk {
        EndFilter::Honoured => &SPELLINGS,
        EndFilter::TypoOnly => &SPELLINGS[1..],
        EndFilter::Ignored => &[],
        EndFilter::EmptyList if SPELLINGS.iter().any(|k| req.contains_key(*k)) => return None,
        EndFilter::EmptyList => &[],
    };
    let mut on_end = false;
    for k in understood {
        match req.get(*k) {
            None => {}
            Some(Value::String(s)) if s.eq_ignore_ascii_case("end") => on_end = true,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("start") => {}
            Some(_) => return None,
        }
    }
    Some(on_end)
}

impl Query {
    /// Reads the request; `None` = some parameter is unreadable (answer an empty list).
    /// `quirks` decide the page cap, whether `offset` counts and how times are read.
    pub fn parse(
        req: &Map<String, Value>,
        tz: Tz,
        now: NaiveDateTime,
        max_records: usize,
        quirks: &Quirks,
    ) -> Option<Query> {
        let text = |k: &str| -> Option<Option<&str>> {
            match req.get(k) {
                None => Some(None),
                Some(Value::String(s)) => Some(Some(s.as_str())),
                Some(_) => None,
            }
        };
        let format = match text("format")? {
            Some("json") => Format::Json,
            Some("xml") => Format::Xml,
            None | Some("csv") => Format::Csv,
            Some(_) => return None,
        };
        let number = |k: &str| -> Option<Option<u64>> {
            match req.get(k) {
                None => Some(None),
                Some(v) => Some(Some(uint(v)?)),
            }
        };
        let num_records = number("numRecords")?.unwrap_or(1000) as usize;
        let offset = number("offset")?.unwrap_or(0) as usize;
        let time = |k: &str| -> Option<Option<LocalSecs>> {
            match text(k)? {
                None => Some(None),
                Some(s) => Some(Some(to_secs(read_time(
                    s,
                    tz,
                    now,
                    quirks.filter_reads_utc,
                )?))),
            }
        };
        let on_end = end_filter(req, quirks.end_filter)?;
        let pats = |k: &str| -> Option<Option<Vec<Pattern>>> {
            match text(k)? {
                None => Some(None),
                Some(s) => Some(Some(parse_patterns(s)?)),
            }
        };
        Some(Query {
            format,
            num_records: num_records.min(quirks.cap(max_records)),
            offset: if quirks.ignore_offset { 0 } else { offset },
            start: time("startTime")?,
            end: time("endTime")?,
            caller: pats("caller")?,
            callee: pats("callee")?,
            min_dur: number("minDur")?.map(|n| n as i64),
            max_dur: number("maxDur")?.map(|n| n as i64),
            on_end,
            end_written: quirks.end_column == EndColumn::Written,
        })
    }

    fn selects(&self, e: &Entry, now: SteadySecs) -> bool {
        e.visible_at <= now
            && self.caller.as_ref().is_none_or(|p| matches(p, &e.src))
            && self.callee.as_ref().is_none_or(|p| matches(p, &e.dst))
            && self.min_dur.is_none_or(|m| e.billsec >= m)
            && self.max_dur.is_none_or(|m| e.billsec <= m)
    }

    /// The page: visible matching entries in `order`, then `offset` top-level entries skipped.
    pub fn page<'s>(&self, store: &'s Store, now: SteadySecs, order: Order) -> Vec<&'s Entry> {
        let (from, to) = (self.start.unwrap_or(i64::MIN), self.end.unwrap_or(i64::MAX));
        // The store is in start order; a call that ends in the window started at most the
        // longest call's length before it.
        let range = if self.on_end {
            store.start_range(from.saturating_sub(store.longest()), to)
        } else {
            store.start_range(from, to)
        };
        let visible = store.entries()[range]
            .iter()
            .filter(|e| {
                !self.on_end || ((from..=to).contains(&e.end) && !(self.end_written && e.endless))
            })
            .filter(|e| self.selects(e, now));
        match order {
            Order::StartAsc => visible.skip(self.offset).take(self.num_records).collect(),
            Order::StartDesc => visible
                .rev()
                .skip(self.offset)
                .take(self.num_records)
                .collect(),
            Order::EndAsc => {
                let mut all: Vec<&Entry> = visible.collect();
                // Stable: calls that end in the same second stay in start order.
                all.sort_by_key(|e| e.end);
                all.into_iter()
                    .skip(self.offset)
                    .take(self.num_records)
                    .collect()
            }
        }
    }
}

/// The entries' JSON as served at `now`: whole, or without the legs the late-legs quirk still
/// holds back (`late` = that quirk's delay in seconds).
pub fn as_served<'s>(
    entries: &[&'s Entry],
    now: SteadySecs,
    late: Option<i64>,
) -> (Vec<Cow<'s, str>>, u64) {
    let mut partial = 0;
    let texts = entries
        .iter()
        .map(|e| match (late, e.late_from) {
            (Some(delay), Some(from)) if now < e.visible_at.saturating_add(delay) => {
                partial += 1;
                Cow::Owned(without_late_legs(&e.json, from))
            }
            _ => Cow::Borrowed(&*e.json),
        })
        .collect();
    (texts, partial)
}

/// `{"cdr_root":[…]}` from the pre-rendered entries.
pub fn render_json(entries: &[Cow<'_, str>]) -> String {
    let mut out = String::with_capacity(14 + entries.iter().map(|e| e.len() + 1).sum::<usize>());
    out.push_str("{\"cdr_root\":[");
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(e);
    }
    out.push_str("]}");
    out
}

/// Legs as rows, the way the legacy API answered without `format=json`.
fn leg_rows(entries: &[Cow<'_, str>]) -> Vec<Map<String, Value>> {
    let mut rows = Vec::new();
    for e in entries {
        let Ok(Value::Object(v)) = serde_json::from_str::<Value>(e) else {
            continue;
        };
        if v.contains_key("main_cdr") {
            let mut subs: Vec<(u64, Map<String, Value>)> = v
                .iter()
                .filter_map(|(k, l)| {
                    Some((
                        k.strip_prefix("sub_cdr_")?.parse().ok()?,
                        l.as_object()?.clone(),
                    ))
                })
                .collect();
            subs.sort_by_key(|(n, _)| *n);
            rows.extend(subs.into_iter().map(|(_, l)| l));
        } else {
            rows.push(v);
        }
    }
    rows
}

const CSV_FIELDS: [&str; 22] = [
    "AcctId",
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
    "uniqueid",
    "userfield",
    "channel_ext",
    "dstchannel_ext",
    "session",
];

pub fn render_csv(entries: &[Cow<'_, str>]) -> String {
    let mut out = String::new();
    for row in leg_rows(entries) {
        let cells: Vec<String> = CSV_FIELDS
            .iter()
            .map(|k| {
                format!(
                    "\"{}\"",
                    row.get(*k)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .replace('"', "\"\"")
                )
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

pub fn render_xml(entries: &[Cow<'_, str>]) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<root_cdr>\n");
    for row in leg_rows(entries) {
        out.push_str("  <cdr>");
        for k in CSV_FIELDS {
            let v = row.get(k).and_then(Value::as_str).unwrap_or("");
            out.push_str(&format!("<{k}>{}</{k}>", esc(v)));
        }
        out.push_str("</cdr>\n");
    }
    out.push_str("</root_cdr>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Option<String> {
        let now =
            NaiveDateTime::parse_from_str("2024-05-01 12:00:00", "%Y-%m-%d %H:%M:%S").unwrap();
        parse_time(s, chrono_tz::Europe::Berlin, now)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
    }

    #[test]
    fn accepted_time_formats() {
        assert_eq!(
            t("2024-05-01T09:00").as_deref(),
            Some("2024-05-01 09:00:00")
        );
        assert_eq!(
            t("2024-05-01T09:00:07").as_deref(),
            Some("2024-05-01 09:00:07")
        );
        assert_eq!(
            t("2024-05-01T09:00:07.250").as_deref(),
            Some("2024-05-01 09:00:07")
        );
        assert_eq!(
            t("2024-05-01 09:00:07").as_deref(),
            Some("2024-05-01 09:00:07")
        );
        assert_eq!(t("2024-05-01").as_deref(), Some("2024-05-01 00:00:00"));
        assert_eq!(t("09:30").as_deref(), Some("2000-01-01 09:30:00"));
        assert_eq!(t("now").as_deref(), Some("2024-05-01 12:00:00"));
        // Berlin is UTC+2 in May.
        assert_eq!(
            t("2024-05-01T09:00:00-06:00").as_deref(),
            Some("2024-05-01 17:00:00")
        );
        assert_eq!(
            t("2024-05-01T09:00:00+0200").as_deref(),
            Some("2024-05-01 09:00:00")
        );
        assert_eq!(
            t("2024-05-01T09:00:00Z").as_deref(),
            Some("2024-05-01 11:00:00")
        );
        assert_eq!(t("1714554000").as_deref(), Some("2024-05-01 11:00:00"));
        for bad in [
            "",
            "yesterday",
            "2024-13-01",
            "2024-05-01T25:00",
            "2024/05/01",
        ] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn naive_times_read_as_utc() {
        let now =
            NaiveDateTime::parse_from_str("2024-05-01 12:00:00", "%Y-%m-%d %H:%M:%S").unwrap();
        let read = |s: &str| {
            read_time(s, chrono_tz::Europe::Berlin, now, true)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        };
        assert_eq!(
            read("2024-05-01T09:00:00").as_deref(),
            Some("2024-05-01 11:00:00")
        );
        assert_eq!(read("2024-05-01").as_deref(), Some("2024-05-01 02:00:00"));
        // Times that say what they mean are read the same either way.
        assert_eq!(t("2024-05-01T09:00:00Z"), read("2024-05-01T09:00:00Z"));
        assert_eq!(t("1714554000"), read("1714554000"));
        assert_eq!(t("now"), read("now"));
    }

    #[test]
    fn caller_patterns() {
        let p = parse_patterns("2001,2005-2010,_4@").unwrap();
        assert!(
            matches(&p, "2001") && matches(&p, "2007") && matches(&p, "14") && matches(&p, "0400")
        );
        assert!(!matches(&p, "2011") && !matches(&p, "2004"));
        let z = parse_patterns("0-0").unwrap();
        assert!(matches(&z, "") && matches(&z, "anonymous") && !matches(&z, "2001"));
        assert_eq!(parse_patterns("20;01"), None);
    }

    #[test]
    fn end_filter_spellings_per_quirk() {
        let req = |pairs: &[&(&str, Value)]| -> Map<String, Value> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect()
        };
        let time = ("timeFilterType", Value::from("END"));
        let tine = ("tineFilterType", Value::from("end"));
        let start = ("timeFilterType", Value::from("Start"));
        let odd = ("timeFilterType", Value::from(1));
        use EndFilter::*;
        for (quirk, asked, got) in [
            (Honoured, req(&[]), Some(false)),
            (Honoured, req(&[&time]), Some(true)),
            (Honoured, req(&[&tine]), Some(true)),
            (Honoured, req(&[&start]), Some(false)),
            (Honoured, req(&[&start, &tine]), Some(true)),
            (Honoured, req(&[&odd]), None),
            (TypoOnly, req(&[&time]), Some(false)),
            (TypoOnly, req(&[&odd]), Some(false)),
            (TypoOnly, req(&[&tine]), Some(true)),
            (Ignored, req(&[&time, &tine]), Some(false)),
            (EmptyList, req(&[&start]), None),
            (EmptyList, req(&[]), Some(false)),
        ] {
            assert_eq!(end_filter(&asked, quirk), got, "{quirk:?} {asked:?}");
        }
    }
}
