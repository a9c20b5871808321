//! Decoding of `cdrapi` answer bodies.
//!
//! Firmware versions disagree on the details (strings or numbers, extra fields, `cdr` empty or not, `cdr_root`
//! bare or wrapped), so every value is read leniently and unknown fields are skipped. Strings borrow from the
//! body wherever JSON allows it, and entries are decoded by hand-written map visitors rather than through a map
//! of all fields, because every poll re-reads an overlap window and a first poll may fetch a long backlog.

use std::borrow::Cow;
use std::fmt;

use chrono::{NaiveDate, NaiveDateTime};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::error::Category;
use xxhash_rust::xxh3::{xxh3_64, Xxh3Default};

/// What a `cdrapi` answer said, once it is known to be JSON of a recognised shape.
#[derive(Debug)]
pub enum CdrResponse<'a> {
    /// `{"cdr_root":[...]}`, or the same list inside a `{"response":{...},"status":0}` envelope (erxes defends
    /// against that form, so some firmware may send it).
    Records(Vec<Entry<'a>>),
    /// The usual API envelope without records: `-6`/`-8` mean the session expired, `-47` no permission, etc.
    /// A non-zero `status` wins even if records came along, since the UCM itself declared the answer failed.
    /// `status` 0 without `cdr_root` is reported here too, so the caller can call it a protocol error.
    Status {
        status: i64,
        error_msg: Option<String>,
    },
}

/// Why a body could not be decoded. Reasons are capped in length and never carry the body, which holds phone
/// numbers and would flood the log.
#[derive(thiserror::Error, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The UCM answers a client IP that is not permitted with an HTML 403 page instead of JSON.
    #[error("the UCM answered with an HTML page (title {title:?}), not JSON; is this host a permitted IP of the API user?")]
    Html { title: String },
    #[error("the answer is not valid JSON: {0}")]
    NotJson(String),
    #[error("the JSON answer has neither cdr_root nor status: {0}")]
    Unexpected(String),
}

/// Decodes a `cdrapi` answer. Strings in the result borrow from `body`.
pub fn parse_cdr_response(body: &[u8]) -> Result<CdrResponse<'_>, DecodeError> {
    let text = trim_start(body);
    if text.is_empty() {
        return Err(DecodeError::NotJson("empty body".into()));
    }
    if text[0] == b'<' {
        return Err(DecodeError::Html {
            title: html_title(text),
        });
    }
    // sonic-rs decodes a page about 1.5x faster than serde_json through the same visitors. When it refuses
    // a body, serde_json gets the last word: its verdict and message decide, so a parser quirk can neither
    // drop a page nor change what the log says about a bad one.
    let root: Root<'_> = match sonic_rs::from_slice(text) {
        Ok(root) => root,
        Err(_) => serde_json::from_slice(text).map_err(|e| {
            let reason = shorten(e.to_string());
            match e.classify() {
                Category::Data => DecodeError::Unexpected(reason),
                Category::Syntax | Category::Eof | Category::Io => DecodeError::NotJson(reason),
            }
        })?,
    };
    match (root.status, root.cdr_root) {
        (Some(status), _) if status != 0 => Ok(CdrResponse::Status {
            status,
            error_msg: root.error_msg,
        }),
        (_, Some(entries)) => Ok(CdrResponse::Records(entries)),
        (Some(status), None) => Ok(CdrResponse::Status {
            status,
            error_msg: root.error_msg,
        }),
        (None, None) => Err(DecodeError::Unexpected(
            "an object without cdr_root or status".into(),
        )),
    }
}

fn trim_start(body: &[u8]) -> &[u8] {
    body.strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(body)
        .trim_ascii_start()
}

/// The title tells "403 Forbidden" from a captive portal or a proxy's error page in the log.
fn html_title(html: &[u8]) -> String {
    let head = &html[..html.len().min(4096)];
    let lower = head.to_ascii_lowercase();
    let Some(open) = find(&lower, b"<title") else {
        return String::new();
    };
    let Some(gt) = find(&lower[open..], b">") else {
        return String::new();
    };
    let from = open + gt + 1;
    let to = find(&lower[from..], b"</").map_or(lower.len(), |end| from + end);
    let title = String::from_utf8_lossy(&head[from..to]);
    shorten(title.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// serde messages can quote a whole offending string value; keep log lines bounded.
fn shorten(mut s: String) -> String {
    const MAX: usize = 120;
    if s.len() > MAX {
        let mut cut = MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Parses the UCM's naive local timestamps, `YYYY-MM-DD HH:MM:SS`, also with a `T` separator and fractional
/// seconds (dropped). Hand-rolled because it runs for every leg and the layout is fixed, so a format-string
/// parser buys nothing.
pub fn parse_timestamp(s: &str) -> Option<NaiveDateTime> {
    let b = s.trim_ascii().as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b' ' | b'T') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    match &b[19..] {
        [] => {}
        [b'.', frac @ ..] if !frac.is_empty() && frac.iter().all(u8::is_ascii_digit) => {}
        _ => return None,
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        b[from..to].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let year = i32::try_from(num(0, 4)?).ok()?;
    NaiveDate::from_ymd_opt(year, num(5, 7)?, num(8, 10)?)?.and_hms_opt(
        num(11, 13)?,
        num(14, 16)?,
        num(17, 19)?,
    )
}

/// One top-level element of `cdr_root`: a flat single-leg record or a grouped `main_cdr` + `sub_cdr_N` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    cdr: Cow<'a, str>,
    main: Option<MainCdr<'a>>,
    legs: Vec<Leg<'a>>,
}

/// What is kept of a grouped call's `main_cdr` summary: its ids. Its `duration`/`billsec` are sums over the
/// legs, so keeping them would only invite counting them twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MainCdr<'a> {
    pub session: Cow<'a, str>,
    pub start: Cow<'a, str>,
}

impl<'a> Entry<'a> {
    /// Top-level `cdr` id; `""` on some firmware (UCM6302 1.0.17.11).
    pub fn cdr(&self) -> &str {
        &self.cdr
    }

    /// The ids of a grouped call's summary, when it has one.
    pub fn main_cdr(&self) -> Option<&MainCdr<'a>> {
        self.main.as_ref()
    }

    /// The call's legs in the order docs/design.md §6 reads them: the flat record, or `sub_cdr_N` by numeric N; ForkCDR copies
    /// of another leg and `sub_cdr_N` values that are not objects are already gone.
    pub fn legs(&self) -> &[Leg<'a>] {
        &self.legs
    }

    /// De-duplication key of the call, equal across polls and exporter restarts (it is persisted), so it hashes
    /// the UCM's own ids with a fixed algorithm. `cdr` is empty on some firmware, hence the fallbacks;
    /// `AcctId` restarts monthly and only disambiguates, never identifies on its own.
    pub fn call_key(&self) -> u64 {
        let first = self.key_leg();
        let main = self.main.as_ref();
        let id = [
            Some(&self.cdr),
            main.map(|m| &m.session),
            first.map(|l| &l.session),
            first.map(|l| &l.uniqueid),
        ]
        .into_iter()
        .flatten()
        .find(|s| !s.is_empty());
        let start = main
            .map(|m| &m.start)
            .filter(|s| !s.is_empty())
            .or(first.map(|l| &l.start));
        hash_parts(&[
            id.map_or("", |s| s),
            start.map_or("", |s| s),
            first.map_or("", |l| &l.acct_id),
        ])
    }

    /// The leg whose ids the call key takes: the first that is not a ForkCDR leg, else the first.
    /// Before ForkCDR segments were kept, the first leg never was one, so this keeps the keys of
    /// calls already counted unchanged across that upgrade (docs/design.md §3.1).
    fn key_leg(&self) -> Option<&Leg<'a>> {
        self.legs
            .iter()
            .find(|l| !l.is_fork())
            .or(self.legs.first())
    }

    /// When the call started, for the poller's watermark: the summary's start, else the first leg's.
    pub fn start(&self) -> Option<NaiveDateTime> {
        self.main
            .as_ref()
            .and_then(|m| parse_timestamp(&m.start))
            .or_else(|| self.legs.first().and_then(|l| parse_timestamp(&l.start)))
    }
}

/// One CDR row: the fields that classification and the keys use; the rest of the record is skipped while
/// decoding (unused strings cost UTF-8 validation and memory per leg).
/// Numbers that do not parse are 0, absent strings are empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leg<'a> {
    pub acct_id: Cow<'a, str>,
    pub channel: Cow<'a, str>,
    pub dstchannel: Cow<'a, str>,
    /// The dialled number: a queue's or ring group's own number on legs some firmware writes as
    /// plain dials (docs/design.md §6.1).
    pub dst: Cow<'a, str>,
    pub lastapp: Cow<'a, str>,
    pub start: Cow<'a, str>,
    pub duration: u64,
    pub billsec: u64,
    pub disposition: Cow<'a, str>,
    pub uniqueid: Cow<'a, str>,
    pub userfield: Cow<'a, str>,
    pub channel_ext: Cow<'a, str>,
    pub dstchannel_ext: Cow<'a, str>,
    pub session: Cow<'a, str>,
    pub action_type: Cow<'a, str>,
    pub src_trunk_name: Cow<'a, str>,
    pub dst_trunk_name: Cow<'a, str>,
    /// N of `sub_cdr_N`, to put legs in numeric order whatever the key order of the JSON object.
    sub_index: u32,
}

impl Leg<'_> {
    /// De-duplication key of the leg (`AcctId` alone restarts monthly), stable like [`Entry::call_key`].
    pub fn key(&self) -> u64 {
        hash_parts(&[
            &self.session,
            &self.uniqueid,
            &self.start,
            &self.acct_id,
            &self.channel,
            &self.dstchannel,
        ])
    }

    /// Start parsed as naive UCM local time.
    pub fn start_time(&self) -> Option<NaiveDateTime> {
        parse_timestamp(&self.start)
    }

    /// A row written by `ForkCDR`: either a copy of another leg or, on some firmware, a segment of
    /// its own (the IVR part of an inbound call); [`drop_fork_copies`] tells them apart.
    pub fn is_fork(&self) -> bool {
        self.lastapp.trim_ascii().eq_ignore_ascii_case("ForkCDR")
    }

    /// Whether this ForkCDR leg copies `other`, an earlier leg when both are ForkCDR legs. A copy
    /// keeps the channel and start of what it copies, while its duration, billsec, disposition
    /// and dstchannel may differ; a segment has a start of its own. Two ForkCDR legs are copies
    /// only when their durations match too: one may be a segment within the other.
    fn copies(&self, other: &Leg<'_>) -> bool {
        self.channel == other.channel
            && self.start.trim_ascii() == other.start.trim_ascii()
            && (!other.is_fork() || self.duration == other.duration)
    }
}

/// Drops the ForkCDR legs that duplicate another leg of the entry (docs/design.md §6): the
/// same `channel` and `start` as a leg of another application, or the same `channel`, `start`
/// and `duration` as a ForkCDR leg earlier in leg order. Every other ForkCDR leg is a segment of
/// the call and stays, so a call made of ForkCDR legs alone keeps its first one.
fn drop_fork_copies(legs: &mut Vec<Leg<'_>>) {
    if !legs.iter().any(Leg::is_fork) {
        return;
    }
    let copy: Vec<bool> =
        legs.iter()
            .enumerate()
            .map(|(i, leg)| {
                leg.is_fork()
                    && legs.iter().enumerate().any(|(j, other)| {
                        j != i && (!other.is_fork() || j < i) && leg.copies(other)
                    })
            })
            .collect();
    let mut copies = copy.into_iter();
    legs.retain(|_| !copies.next().unwrap_or(false));
}

/// xxh3 is specified independently of Rust's `Hash`, so keys survive compiler and crate upgrades. The unit
/// separator keeps `("a|b", "c")` and `("a", "b|c")` apart. The parts are joined on the stack and hashed in one
/// shot (xxh3's one-shot and streaming forms give the same value): the streaming state costs more to set up
/// than hashing a leg's ~150 bytes, and this runs for every leg of every page.
fn hash_parts(parts: &[&str]) -> u64 {
    let mut buf = [0u8; 512];
    let mut len = 0;
    for part in parts {
        let end = len + part.len() + 1;
        if end > buf.len() {
            return hash_parts_streaming(parts);
        }
        buf[len..end - 1].copy_from_slice(part.as_bytes());
        buf[end - 1] = 0x1f;
        len = end;
    }
    xxh3_64(&buf[..len])
}

fn hash_parts_streaming(parts: &[&str]) -> u64 {
    let mut h = Xxh3Default::new();
    for part in parts {
        h.update(part.as_bytes());
        h.update(&[0x1f]);
    }
    h.digest()
}

#[derive(Clone, Copy)]
enum LegField {
    AcctId,
    Channel,
    DstChannel,
    Dst,
    LastApp,
    Start,
    Duration,
    Billsec,
    Disposition,
    UniqueId,
    UserField,
    ChannelExt,
    DstChannelExt,
    Session,
    ActionType,
    SrcTrunkName,
    DstTrunkName,
    Ignored,
}

impl FromKey for LegField {
    fn from_key(key: &[u8]) -> Self {
        match key {
            b"AcctId" => Self::AcctId,
            b"channel" => Self::Channel,
            b"dstchannel" => Self::DstChannel,
            b"dst" => Self::Dst,
            b"lastapp" => Self::LastApp,
            b"start" => Self::Start,
            b"duration" => Self::Duration,
            b"billsec" => Self::Billsec,
            b"disposition" => Self::Disposition,
            b"uniqueid" => Self::UniqueId,
            b"userfield" => Self::UserField,
            b"channel_ext" => Self::ChannelExt,
            b"dstchannel_ext" => Self::DstChannelExt,
            b"session" => Self::Session,
            b"action_type" => Self::ActionType,
            b"src_trunk_name" => Self::SrcTrunkName,
            b"dst_trunk_name" => Self::DstTrunkName,
            _ => Self::Ignored,
        }
    }
}

impl<'de> Leg<'de> {
    fn read_field<A: MapAccess<'de>>(
        &mut self,
        field: LegField,
        map: &mut A,
    ) -> Result<(), A::Error> {
        let slot = match field {
            LegField::Duration => {
                self.duration = map.next_value::<Seconds>()?.0;
                return Ok(());
            }
            LegField::Billsec => {
                self.billsec = map.next_value::<Seconds>()?.0;
                return Ok(());
            }
            LegField::Ignored => {
                map.next_value::<IgnoredAny>()?;
                return Ok(());
            }
            LegField::AcctId => &mut self.acct_id,
            LegField::Channel => &mut self.channel,
            LegField::DstChannel => &mut self.dstchannel,
            LegField::Dst => &mut self.dst,
            LegField::LastApp => &mut self.lastapp,
            LegField::Start => &mut self.start,
            LegField::Disposition => &mut self.disposition,
            LegField::UniqueId => &mut self.uniqueid,
            LegField::UserField => &mut self.userfield,
            LegField::ChannelExt => &mut self.channel_ext,
            LegField::DstChannelExt => &mut self.dstchannel_ext,
            LegField::Session => &mut self.session,
            LegField::ActionType => &mut self.action_type,
            LegField::SrcTrunkName => &mut self.src_trunk_name,
            LegField::DstTrunkName => &mut self.dst_trunk_name,
        };
        *slot = map.next_value::<Text<'de>>()?.0;
        Ok(())
    }
}

/// Map keys are classified straight from the raw key bytes: nothing is allocated and, since a key only has to
/// match one of a few ASCII names, serde_json can skip validating it as UTF-8.
trait FromKey: Sized {
    fn from_key(key: &[u8]) -> Self;
}

struct Key<K>(K);

impl<'de, K: FromKey> Deserialize<'de> for Key<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor<K>(std::marker::PhantomData<K>);
        impl<K: FromKey> Visitor<'_> for KeyVisitor<K> {
            type Value = Key<K>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(Key(K::from_key(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(K::from_key(v.as_bytes())))
            }
        }
        d.deserialize_bytes(KeyVisitor(std::marker::PhantomData))
    }
}

enum EntryField {
    Cdr,
    Main,
    Sub(u32),
    Leg(LegField),
}

impl FromKey for EntryField {
    fn from_key(key: &[u8]) -> Self {
        match key {
            b"cdr" => Self::Cdr,
            b"main_cdr" => Self::Main,
            _ => match key.strip_prefix(b"sub_cdr_") {
                Some(n) if !n.is_empty() => n
                    .iter()
                    .try_fold(0u32, |acc, &c| {
                        c.is_ascii_digit()
                            .then_some(acc)?
                            .checked_mul(10)?
                            .checked_add(u32::from(c - b'0'))
                    })
                    .map_or(Self::Leg(LegField::Ignored), Self::Sub),
                _ => Self::Leg(LegField::from_key(key)),
            },
        }
    }
}

enum RootField {
    CdrRoot,
    Response,
    Status,
    ErrorMsg,
    Ignored,
}

impl FromKey for RootField {
    fn from_key(key: &[u8]) -> Self {
        match key {
            b"cdr_root" => Self::CdrRoot,
            b"response" => Self::Response,
            b"status" => Self::Status,
            b"error_msg" => Self::ErrorMsg,
            _ => Self::Ignored,
        }
    }
}

/// A string field as the UCM sends it, or a number/boolean sent in its place (rendered as decimal text so
/// that keys hash alike either way); `null`, objects and arrays read as empty.
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(if v { "true" } else { "false" })))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed("")))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed("")))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq)?;
                Ok(Text(Cow::Borrowed("")))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map)?;
                Ok(Text(Cow::Borrowed("")))
            }
        }
        d.deserialize_any(TextVisitor)
    }
}

/// A seconds count (`"12"`, `12`, `"12.0"`); anything unparseable or negative counts as 0 so one odd field
/// does not drop a call.
struct Seconds(u64);

fn seconds_from_f64(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        // Truncation (saturating for huge values) is the intent: CDR seconds are whole numbers.
        v as u64
    } else {
        0
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SecondsVisitor;
        impl<'de> Visitor<'de> for SecondsVisitor {
            type Value = u64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of seconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
                Ok(v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
                Ok(u64::try_from(v).unwrap_or(0))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
                Ok(seconds_from_f64(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
                let v = v.trim_ascii();
                Ok(v.parse::<u64>()
                    .unwrap_or_else(|_| v.parse::<f64>().map_or(0, seconds_from_f64)))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<u64, E> {
                Ok(0)
            }
            fn visit_unit<E: de::Error>(self) -> Result<u64, E> {
                Ok(0)
            }
            fn visit_none<E: de::Error>(self) -> Result<u64, E> {
                Ok(0)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<u64, A::Error> {
                drain_seq(seq).map(|()| 0)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<u64, A::Error> {
                drain_map(map).map(|()| 0)
            }
        }
        d.deserialize_any(SecondsVisitor).map(Seconds)
    }
}

/// `status` as a number or numeric string; anything else reads as absent.
struct Status(Option<i64>);

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Text::deserialize(d)?.0;
        Ok(Status(text.trim_ascii().parse().ok()))
    }
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Runs an object visitor on objects and yields `None` for any other JSON value, which is how stray non-object
/// `sub_cdr_N`, `main_cdr`, `response` or `cdr_root` elements are skipped instead of failing the page.
struct ObjectOrSkip<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for ObjectOrSkip<V> {
    type Value = Option<V::Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.visit_map(map).map(Some)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain_seq(seq)?;
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

struct MaybeLeg<'de>(Option<Leg<'de>>);

impl<'de> Deserialize<'de> for MaybeLeg<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LegVisitor;
        impl<'de> Visitor<'de> for LegVisitor {
            type Value = Leg<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a CDR object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut leg = Leg::default();
                while let Some(Key(field)) = map.next_key::<Key<LegField>>()? {
                    leg.read_field(field, &mut map)?;
                }
                Ok(leg)
            }
        }
        d.deserialize_any(ObjectOrSkip(LegVisitor)).map(MaybeLeg)
    }
}

/// `main_cdr` read for its two ids only: its other ~40 fields are skipped unvalidated, which matters because
/// every grouped entry has one.
struct MaybeMain<'de>(Option<MainCdr<'de>>);

impl<'de> Deserialize<'de> for MaybeMain<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MainVisitor;
        impl<'de> Visitor<'de> for MainVisitor {
            type Value = MainCdr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a main_cdr object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut main = MainCdr {
                    session: Cow::Borrowed(""),
                    start: Cow::Borrowed(""),
                };
                while let Some(Key(field)) = map.next_key::<Key<LegField>>()? {
                    match field {
                        LegField::Session => main.session = map.next_value::<Text>()?.0,
                        LegField::Start => main.start = map.next_value::<Text>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(main)
            }
        }
        d.deserialize_any(ObjectOrSkip(MainVisitor)).map(MaybeMain)
    }
}

struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = Entry<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a cdr_root entry")
    }
    /// Grouping is decided by the presence of `main_cdr`/`sub_cdr_N`, not by counting keys as some clients do,
    /// because the number of fields per record grows with firmware.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut cdr = Cow::Borrowed("");
        let mut main = None;
        let mut grouped = false;
        let mut flat = Leg::default();
        let mut legs = Vec::new();
        while let Some(Key(field)) = map.next_key::<Key<EntryField>>()? {
            match field {
                EntryField::Cdr => cdr = map.next_value::<Text>()?.0,
                EntryField::Main => {
                    grouped = true;
                    main = map.next_value::<MaybeMain>()?.0;
                }
                EntryField::Sub(n) => {
                    grouped = true;
                    if let Some(mut leg) = map.next_value::<MaybeLeg>()?.0 {
                        leg.sub_index = n;
                        legs.push(leg);
                    }
                }
                EntryField::Leg(f) => flat.read_field(f, &mut map)?,
            }
        }
        if grouped {
            legs.sort_by_key(|l| l.sub_index);
            drop_fork_copies(&mut legs);
        } else {
            legs.push(flat);
        }
        Ok(Entry { cdr, main, legs })
    }
}

/// `cdr_root`: a list of entries (non-object elements skipped); `null` reads as no entries.
struct CdrRoot<'de>(Vec<Entry<'de>>);

impl<'de> Deserialize<'de> for CdrRoot<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MaybeEntry<'de>(Option<Entry<'de>>);
        impl<'de> Deserialize<'de> for MaybeEntry<'de> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(ObjectOrSkip(EntryVisitor))
                    .map(MaybeEntry)
            }
        }
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = CdrRoot<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of CDR entries")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(MaybeEntry(entry)) = seq.next_element()? {
                    entries.extend(entry);
                }
                Ok(CdrRoot(entries))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(CdrRoot(Vec::new()))
            }
        }
        d.deserialize_any(ListVisitor)
    }
}

/// The answer's top level, with the fields of a `response` envelope folded in.
#[derive(Default)]
struct Root<'de> {
    cdr_root: Option<Vec<Entry<'de>>>,
    status: Option<i64>,
    error_msg: Option<String>,
}

impl<'de> Root<'de> {
    /// Reads one object level; `nested` is false for the top level, true inside `response`.
    fn read<A: MapAccess<'de>>(&mut self, mut map: A, nested: bool) -> Result<(), A::Error> {
        while let Some(Key(field)) = map.next_key::<Key<RootField>>()? {
            match field {
                RootField::CdrRoot => {
                    let entries = map.next_value::<CdrRoot>()?.0;
                    // A bare top-level list is the documented form; it wins over a wrapped one.
                    if !nested || self.cdr_root.is_none() {
                        self.cdr_root = Some(entries);
                    }
                }
                RootField::Status if !nested => self.status = map.next_value::<Status>()?.0,
                RootField::ErrorMsg if nested => {
                    let msg = map.next_value::<Text>()?.0;
                    self.error_msg = (!msg.is_empty()).then(|| msg.into_owned());
                }
                RootField::Response if !nested => {
                    map.next_value_seed(ResponseSeed(self))?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct ResponseSeed<'r, 'de>(&'r mut Root<'de>);

impl<'de> de::DeserializeSeed<'de> for ResponseSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(ObjectOrSkip(self)).map(drop)
    }
}

impl<'de> Visitor<'de> for ResponseSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a response object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.0.read(map, true)
    }
}

impl<'de> Deserialize<'de> for Root<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RootVisitor;
        impl<'de> Visitor<'de> for RootVisitor {
            type Value = Root<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let mut root = Root::default();
                root.read(map, false)?;
                Ok(root)
            }
        }
        d.deserialize_map(RootVisitor)
    }
}
