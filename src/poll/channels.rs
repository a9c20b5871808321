//! Channel-bounded windows: the live channel lists (`listBridgedChannels`,
//! `listUnBridgedChannels`, docs/ucm-api.md §7.6) say which calls are in progress and since
//! when, so a start-filtered poll need not reach back a fixed overlap for long calls.
//!
//! Each poll takes a snapshot of the lists before it reads CDRs. A call longer than a poll
//! interval is in progress at some snapshot; when its channels leave the lists, the next two
//! polls read a narrow window around its start (its CDR may be written a little after the
//! channels go). A shorter call lies between two snapshots and started after the snapshot two
//! polls back, which the recent window reaches. What this rests on, and how a safety sweep
//! checks it, is in docs/design.md §2.4.

use std::collections::VecDeque;
use std::hash::BuildHasher;

use chrono::NaiveDateTime;
use foldhash::{HashMap, HashMapExt, HashSet};
use serde_json::{Map, Value};

use crate::clock::Zone;
use crate::clock::{local_secs, LocalSecs};
use crate::error::UcmError;
use crate::ucm::{is_refusal, lists, Session};

/// Polls a window is read after its channels left the lists, unless its CDR shows up first.
pub const READS_PER_ENDED_CALL: u8 = 2;

/// The channel actions of one snapshot.
pub const CHANNEL_ACTIONS: [&str; 2] = ["listBridgedChannels", "listUnBridgedChannels"];

/// A channel snapshot, or why there is none.
pub enum Snapshot {
    Rows(Vec<Row>),
    /// The API user may not read the lists, or the firmware does not know them.
    Refused(UcmError),
    Failed(UcmError),
}

/// Reads both channel lists, every page.
pub async fn snapshot(session: &Session, tz: Zone) -> Snapshot {
    let mut rows = Vec::new();
    for action in CHANNEL_ACTIONS {
        match lists::all_rows(session, action, &Map::new(), "channel").await {
            Ok(list) => rows.extend(parse_rows(&list, tz)),
            Err(e) if is_refusal(&e) => return Snapshot::Refused(e),
            Err(e) => return Snapshot::Failed(e),
        }
    }
    Snapshot::Rows(rows)
}

/// The windows of a channel-bounded poll (see `channels`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelWindows {
    /// Every call that started at or after this and ended since the last poll is read here.
    pub recent_from: LocalSecs,
    /// Start ranges of calls the channel lists saw end, merged.
    pub targets: Vec<(LocalSecs, LocalSecs)>,
    /// A call a safety sweep finds that ended before this should have been read already.
    pub late_before: LocalSecs,
}

/// Windows closer than this are read as one: a request costs more than the few calls between.
pub const MERGE_GAP: i64 = 10;
/// At most this many targeted windows per poll; beyond, the closest are merged.
pub const MAX_TARGETED_READS: usize = 16;

/// Sorts and merges start ranges: overlapping or closer than [`MERGE_GAP`], then the closest
/// pairs until at most [`MAX_TARGETED_READS`] remain.
pub fn merge_windows(mut w: Vec<(LocalSecs, LocalSecs)>) -> Vec<(LocalSecs, LocalSecs)> {
    w.sort_unstable();
    let mut out: Vec<(LocalSecs, LocalSecs)> = Vec::with_capacity(w.len());
    for (lo, hi) in w {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(MERGE_GAP) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    while out.len() > MAX_TARGETED_READS {
        let i = (1..out.len())
            .min_by_key(|&i| out[i].0.saturating_sub(out[i - 1].1))
            .expect("more than one window");
        let (_, hi) = out.remove(i);
        out[i - 1].1 = out[i - 1].1.max(hi);
    }
    out
}

/// A hash of an Asterisk uniqueid, to match channels with CDRs without keeping the strings.
pub fn uid_hash(uniqueid: &str) -> u64 {
    foldhash::fast::FixedState::with_seed(0x75_63_6d).hash_one(uniqueid.trim())
}

/// One row of a channel list: the channels of one call (two when bridged) and what the row
/// says of when the call started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub channels: Vec<String>,
    /// Uniqueid hashes of the row's channels.
    pub uniqueids: Vec<u64>,
    /// The earliest channel creation the row states (`alloc_time`, a uniqueid's epoch).
    pub start: Option<LocalSecs>,
    /// The bridge time: when the call was answered, which may be minutes after it started
    /// (an IVR, a queue, a transfer), so it only bounds the snapshot's time.
    pub bridged_at: Option<LocalSecs>,
    /// A callee's channel being rung (state `Ringing`): it leaving the lists says nothing of
    /// the call's end, and its creation is not the call's start.
    pub ringing: bool,
    /// The row's times disagree (a uniqueid's epoch far from `alloc_time`, or after the bridge
    /// time), so none of them says when the call started.
    pub doubtful: bool,
}

/// How far a channel's creation time may lie from `alloc_time`, or past the bridge time, and
/// still be the same instant: the times are whole seconds taken a moment apart.
pub const ROW_TIME_SLACK: i64 = 2;

fn text<'a>(row: &'a Value, key: &str) -> Option<&'a str> {
    row.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn local_time(s: &str) -> Option<LocalSecs> {
    let s = s.replace('T', " ");
    NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(local_secs)
}

/// The creation time of a channel from its uniqueid (`<unix epoch>.<sequence>`), in the UCM's
/// local seconds.
fn uniqueid_start(uid: &str, tz: Zone) -> Option<LocalSecs> {
    let epoch: i64 = uid.split('.').next()?.parse().ok()?;
    // Sequence-only or garbage ids are not times; a real epoch is after 2001.
    if epoch < 1_000_000_000 {
        return None;
    }
    Some(local_secs(
        tz.local(chrono::DateTime::from_timestamp(epoch, 0)?),
    ))
}

/// Reads the rows of `listBridgedChannels` or `listUnBridgedChannels`, whichever fields they
/// have. Rows without a channel name are ignored.
pub fn parse_rows(rows: &[Value], tz: Zone) -> Vec<Row> {
    rows.iter()
        .filter_map(|r| {
            let alloc = text(r, "alloc_time").and_then(local_time);
            let mut row = Row {
                channels: Vec::new(),
                uniqueids: Vec::new(),
                start: alloc,
                bridged_at: text(r, "bridge_time").and_then(local_time),
                ringing: text(r, "state").is_some_and(|s| s.eq_ignore_ascii_case("ringing")),
                doubtful: false,
            };
            let after_bridge = |t: LocalSecs| {
                row.bridged_at
                    .is_some_and(|b| t > b.saturating_add(ROW_TIME_SLACK))
            };
            let mut doubtful = alloc.is_some_and(after_bridge);
            for (chan, uid) in [
                ("channel", "uniqueid"),
                ("channel1", "uniqueid1"),
                ("channel2", "uniqueid2"),
            ] {
                if let Some(c) = text(r, chan) {
                    row.channels.push(c.to_string());
                }
                if let Some(u) = text(r, uid) {
                    row.uniqueids.push(uid_hash(u));
                    let created = uniqueid_start(u, tz);
                    // `alloc_time` belongs to the row's single channel, as `uniqueid` does.
                    let off_alloc = uid == "uniqueid"
                        && created
                            .zip(alloc)
                            .is_some_and(|(c, a)| c.abs_diff(a) > ROW_TIME_SLACK.unsigned_abs());
                    doubtful |= off_alloc || created.is_some_and(after_bridge);
                    row.start = earliest(row.start, created);
                }
            }
            row.doubtful = doubtful;
            (!row.channels.is_empty()).then_some(row)
        })
        .collect()
}

/// The earlier of two times, either of which may be missing.
fn earliest(a: Option<LocalSecs>, b: Option<LocalSecs>) -> Option<LocalSecs> {
    a.into_iter().chain(b).min()
}

/// What is known of one live channel: when its call started (`None` when its row's times
/// cannot be trusted), and the uniqueids of its call.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Live {
    start: Option<LocalSecs>,
    uniqueids: Vec<u64>,
}

impl Live {
    /// A start that cannot be trusted spoils the merged one: the call may have started at
    /// either.
    fn merge(&mut self, other: &Live) {
        self.start = self.start.zip(other.start).map(|(a, b)| a.min(b));
        for u in &other.uniqueids {
            if !self.uniqueids.contains(u) {
                self.uniqueids.push(*u);
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Ended {
    lo: LocalSecs,
    hi: LocalSecs,
    uniqueids: Vec<u64>,
    reads_left: u8,
}

/// Follows the channel lists from poll to poll.
#[derive(Debug, Default)]
pub struct Tracker {
    /// A call under way started at most this long before the newest call start read; a row
    /// stating an older start is not believed. `None`: no such bound.
    max_call_duration: Option<i64>,
    live: HashMap<String, Live>,
    ended: Vec<Ended>,
    /// Lower bounds of the UCM's clock at the last three snapshots, oldest first.
    floors: VecDeque<LocalSecs>,
    /// Whether every snapshot since the last sweep was taken: only then do the windows cover
    /// every call that ended since.
    ready: bool,
}

impl Tracker {
    /// A tracker that also refuses row starts older than `max_call_duration` (seconds) before
    /// the watermark: a call that old is not counted, so its start is a wrong time.
    pub fn with_max_call_duration(secs: i64) -> Tracker {
        Tracker {
            max_call_duration: Some(secs),
            ..Tracker::default()
        }
    }

    /// Whether a row's start can bound its call's window: its times agree, it is not after the
    /// snapshot's time bound (`ceiling`), and not older than a counted call can be.
    fn trusted(&self, row: &Row, watermark: Option<LocalSecs>, ceiling: LocalSecs) -> bool {
        let oldest = watermark
            .zip(self.max_call_duration)
            .map_or(LocalSecs::MIN, |(w, d)| w.saturating_sub(d));
        !row.doubtful && row.start.is_some_and(|s| s <= ceiling && s >= oldest)
    }

    /// Takes in a snapshot. `watermark` (the newest call start read) and every time in the rows
    /// are times the UCM's clock has passed, so their maximum bounds the snapshot's time from
    /// below without trusting this host's clock; `ceiling` caps a bogus future time.
    ///
    /// `Err` when a row of a call under way states no start (neither a uniqueid nor an
    /// `alloc_time`): its window could not be bounded, so such lists cannot bound windows.
    /// A row whose start cannot be trusted (see [`Tracker::trusted`]) raises no floor, and when
    /// its call ends the call is read in a window from the horizon instead of around its start.
    pub fn observe(
        &mut self,
        rows: &[Row],
        watermark: Option<LocalSecs>,
        ceiling: LocalSecs,
    ) -> Result<(), String> {
        let mut live: HashMap<String, Live> = HashMap::with_capacity(rows.len() * 2);
        let mut floor = watermark;
        for row in rows {
            let trusted = self.trusted(row, watermark, ceiling);
            if trusted {
                floor = floor.max(row.start).max(row.bridged_at);
            }
            if row.ringing {
                continue;
            }
            if row.start.is_none() {
                self.lost();
                return Err(format!(
                    "a row of channel {} states no start (no uniqueid, no alloc_time)",
                    row.channels.join(" + ")
                ));
            }
            if !trusted {
                tracing::info!(
                    channels = %row.channels.join(" + "),
                    start = ?row.start,
                    bridged_at = ?row.bridged_at,
                    "a channel row's start disagrees with its other times or the poll's window; \
                     its call is read from the horizon when it ends"
                );
            }
            let mut est = Live {
                start: row.start.filter(|_| trusted),
                uniqueids: row.uniqueids.clone(),
            };
            // A channel seen earlier (ringing in, waiting in a queue) lends its start to the
            // bridge it is in now.
            for c in &row.channels {
                if let Some(known) = self.live.get(c) {
                    est.merge(known);
                }
            }
            for c in &row.channels {
                live.entry(c.clone())
                    .and_modify(|l| l.merge(&est))
                    .or_insert_with(|| est.clone());
            }
        }
        self.end_gone(&live);
        self.live = live;
        self.floors
            .push_back(floor.unwrap_or(LocalSecs::MIN).min(ceiling));
        while self.floors.len() > 3 {
            self.floors.pop_front();
        }
        Ok(())
    }

    /// The calls of channels that left the lists: their windows are read next.
    fn end_gone(&mut self, still: &HashMap<String, Live>) {
        for (c, l) in self.live.drain() {
            if still.contains_key(&c) {
                continue;
            }
            // A CDR's start is its caller channel's creation, written after the uniqueid was
            // taken: the same second or the next. Without a start to believe, everything from
            // the horizon up to the recent window (the window is clipped to both).
            let (lo, hi) = l
                .start
                .map_or((LocalSecs::MIN, LocalSecs::MAX), |s| (s, s + 1));
            let ended = Ended {
                lo,
                hi,
                uniqueids: l.uniqueids,
                reads_left: READS_PER_ENDED_CALL,
            };
            if !self.ended.contains(&ended) {
                self.ended.push(ended);
            }
        }
    }

    /// A snapshot could not be taken: calls may end unseen until the next sweep.
    pub fn lost(&mut self) {
        self.ready = false;
        self.floors.clear();
    }

    /// A sweep read everything, after this poll's snapshot: the windows cover from here on.
    pub fn swept(&mut self) {
        self.ready = !self.floors.is_empty();
        self.ended.clear();
    }

    /// The windows of this poll, after its snapshot; `None` when a sweep must come first.
    pub fn windows(&self, end_margin: i64) -> Option<ChannelWindows> {
        if !self.ready {
            return None;
        }
        // The floors before this poll's own snapshot.
        let n = self.floors.len();
        let earlier: Vec<LocalSecs> = self
            .floors
            .iter()
            .take(n.saturating_sub(1))
            .copied()
            .collect();
        let (recent_from, late_before) = match earlier.as_slice() {
            [] => return None,
            [one] => (
                one.saturating_sub(end_margin),
                one.saturating_sub(end_margin),
            ),
            [.., two_back, one_back] => (
                (*two_back).min(*one_back),
                one_back.saturating_sub(end_margin),
            ),
        };
        Some(ChannelWindows {
            recent_from,
            targets: merge_windows(self.ended.iter().map(|e| (e.lo, e.hi)).collect()),
            late_before,
        })
    }

    /// After the poll's reads: windows whose call was read are done, the others are read once
    /// more, then left to the safety sweep.
    pub fn read(&mut self, uniqueids: &HashSet<u64>) {
        self.ended.retain_mut(|e| {
            e.reads_left = e.reads_left.saturating_sub(1);
            e.reads_left > 0 && !e.uniqueids.iter().any(|u| uniqueids.contains(u))
        });
    }

    /// Calls in progress at the last snapshot.
    pub fn live_channels(&self) -> usize {
        self.live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T: LocalSecs = 1_000_000;

    fn row(ch: &[&str], start: Option<LocalSecs>, bridged: Option<LocalSecs>, uid: &str) -> Row {
        Row {
            channels: ch.iter().map(|c| c.to_string()).collect(),
            uniqueids: if uid.is_empty() {
                vec![]
            } else {
                vec![uid_hash(uid)]
            },
            start,
            bridged_at: bridged,
            ringing: false,
            doubtful: false,
        }
    }

    fn observe(tr: &mut Tracker, rows: &[Row], watermark: Option<LocalSecs>) {
        tr.observe(rows, watermark, i64::MAX).unwrap();
    }

    #[test]
    fn rows_of_both_lists_with_or_without_uniqueids() {
        let tz = Zone::Named(chrono_tz::Europe::Berlin);
        // 2026-03-04 10:00:00 in Berlin is 09:00:00 UTC.
        let bridged = json!({"channel": [
            {"channel1": "PJSIP/trunk_1-0001", "channel2": "PJSIP/2001-0002", "bridge_time": "2026-03-04 10:00:20",
             "uniqueid1": "1772614800.7", "uniqueid2": "1772614810.8"},
            {"channel1": "PJSIP/2002-0003", "channel2": "PJSIP/2003-0004", "bridge_time": "2026-03-04 10:01:00"},
            {"bridge_time": "2026-03-04 10:01:00"}
        ]});
        let rows = parse_rows(crate::ucm::lists::rows_of(&bridged, "channel"), tz);
        let t = |s: &str| local_time(s).unwrap();
        assert_eq!(rows.len(), 2, "a row without channels is no call");
        assert_eq!(rows[0].start, Some(t("2026-03-04 10:00:00")));
        assert_eq!(rows[0].bridged_at, Some(t("2026-03-04 10:00:20")));
        assert_eq!(
            rows[0].uniqueids,
            vec![uid_hash("1772614800.7"), uid_hash("1772614810.8")]
        );
        assert_eq!((rows[1].start, rows[1].uniqueids.len()), (None, 0));
        let unbridged = json!({"channel": [
            {"channel": "PJSIP/2004-0005", "state": "Ringing", "alloc_time": "2026-03-04 09:59:58", "uniqueid": "17"},
            {"channel": "PJSIP/trunk_2-0006", "state": "Up", "alloc_time": "2026-03-04 09:59:50"}
        ]});
        let rows = parse_rows(crate::ucm::lists::rows_of(&unbridged, "channel"), tz);
        assert_eq!(
            rows[0].start,
            Some(t("2026-03-04 09:59:58")),
            "a uniqueid that is no epoch is no time"
        );
        assert_eq!((rows[0].ringing, rows[1].ringing), (true, false));
        assert!(parse_rows(&[json!("none")], tz).is_empty());
    }

    #[test]
    fn a_long_call_is_read_around_its_start_when_it_ends() {
        let mut tr = Tracker::default();
        observe(
            &mut tr,
            &[row(&["A", "B"], Some(T), Some(T + 10), "u1")],
            Some(T + 50),
        );
        tr.swept();
        observe(
            &mut tr,
            &[row(&["A", "B"], Some(T), Some(T + 10), "u1")],
            Some(T + 100),
        );
        let w = tr.windows(30).unwrap();
        assert!(w.targets.is_empty(), "still in progress");
        assert_eq!(
            w.recent_from,
            T + 50 - 30,
            "one snapshot back: its floor minus the margin"
        );
        tr.read(&HashSet::default());
        // Gone: its start is read.
        observe(&mut tr, &[], Some(T + 200));
        let w = tr.windows(30).unwrap();
        assert_eq!(w.targets, vec![(T, T + 1)]);
        assert_eq!(w.recent_from, T + 50, "two snapshots back");
        assert_eq!(w.late_before, T + 100 - 30);
        // Its CDR was not there yet: read once more; then it was, and the window is done.
        tr.read(&HashSet::default());
        assert_eq!(tr.windows(30).unwrap().targets.len(), 1);
        tr.read(&[uid_hash("u1")].into_iter().collect());
        observe(&mut tr, &[], Some(T + 300));
        assert!(tr.windows(30).unwrap().targets.is_empty());
        // Without a matching CDR a window is read twice, then left to the safety sweep.
        observe(
            &mut tr,
            &[row(&["C"], Some(T + 250), None, "")],
            Some(T + 300),
        );
        observe(&mut tr, &[], Some(T + 400));
        tr.read(&HashSet::default());
        tr.read(&HashSet::default());
        observe(&mut tr, &[], Some(T + 500));
        assert!(tr.windows(30).unwrap().targets.is_empty());
    }

    #[test]
    fn lists_that_state_no_start_cannot_bound_windows() {
        let mut tr = Tracker::default();
        observe(&mut tr, &[], Some(T));
        tr.swept();
        let no_start = row(&["A", "B"], None, Some(T), "");
        let err = tr.observe(&[no_start], Some(T), i64::MAX).unwrap_err();
        assert!(err.contains("A + B"), "{err}");
        assert!(tr.windows(30).is_none());
        // A ringing callee's row needs none: its creation is not a call's start.
        let ringing = Row {
            ringing: true,
            ..row(&["C"], None, None, "")
        };
        assert!(tr.observe(&[ringing], Some(T), i64::MAX).is_ok());
    }

    /// The targets once channel A, seen as `first`, joined B in a bridge and the call ended.
    fn targets_after_a_bridge_with(first: Row) -> Vec<(LocalSecs, LocalSecs)> {
        let mut tr = Tracker::default();
        observe(&mut tr, &[first], None);
        tr.swept();
        observe(
            &mut tr,
            &[row(&["A", "B"], Some(T + 30), Some(T + 40), "")],
            None,
        );
        tr.read(&HashSet::default());
        observe(&mut tr, &[], None);
        tr.windows(30).unwrap().targets
    }

    #[test]
    fn a_channel_seen_before_lends_its_start_to_the_bridge_it_joins() {
        let first = row(&["A"], Some(T), None, "");
        assert_eq!(targets_after_a_bridge_with(first), vec![(T, T + 1)]);
    }

    #[test]
    fn a_rung_channel_that_stops_ringing_ends_no_call() {
        let mut tr = Tracker::default();
        let ringing = Row {
            ringing: true,
            ..row(&["B"], Some(T + 5), None, "")
        };
        observe(&mut tr, &[row(&["A"], Some(T), None, ""), ringing], None);
        tr.swept();
        observe(&mut tr, &[row(&["A"], Some(T), None, "")], None);
        assert!(tr.windows(30).unwrap().targets.is_empty());
        assert_eq!(
            tr.floors.back(),
            Some(&T),
            "its time still bounds the snapshot's"
        );
    }

    #[test]
    fn a_lost_snapshot_needs_a_sweep() {
        let mut tr = Tracker::default();
        assert!(tr.windows(30).is_none(), "nothing followed yet");
        observe(&mut tr, &[], Some(T));
        assert!(tr.windows(30).is_none(), "not since a sweep");
        tr.swept();
        observe(&mut tr, &[], Some(T));
        assert!(tr.windows(30).is_some());
        tr.lost();
        observe(&mut tr, &[], Some(T));
        assert!(tr.windows(30).is_none());
    }

    #[test]
    fn floors_never_pass_the_ceiling() {
        // A bridge time past the ceiling is capped; a start past it is not believed at all.
        let mut tr = Tracker::default();
        tr.observe(
            &[row(&["A"], Some(T), Some(T + 10_000), "")],
            Some(T),
            T + 100,
        )
        .unwrap();
        tr.swept();
        tr.observe(&[], Some(T), T + 100).unwrap();
        assert_eq!(tr.windows(0).unwrap().recent_from, T + 100);
        let mut tr = Tracker::default();
        tr.observe(&[row(&["A"], Some(T + 10_000), None, "")], Some(T), T + 100)
            .unwrap();
        tr.swept();
        tr.observe(&[], Some(T), T + 100).unwrap();
        assert_eq!(tr.windows(0).unwrap().recent_from, T);
    }

    #[test]
    fn a_uniqueid_far_from_alloc_time_or_after_the_bridge_makes_the_row_doubtful() {
        let tz = Zone::Named(chrono_tz::Europe::Berlin);
        // 1772614800 is 2026-03-04 10:00:00 in Berlin.
        let rows = json!({"channel": [
            {"channel": "PJSIP/a-1", "state": "Up", "alloc_time": "2026-03-04 10:00:01", "uniqueid": "1772614800.1"},
            {"channel": "PJSIP/b-2", "state": "Up", "alloc_time": "2026-03-04 10:00:00", "uniqueid": "1234567890.2"},
            {"channel1": "PJSIP/c-3", "channel2": "PJSIP/d-4", "bridge_time": "2026-03-04 09:00:00",
             "uniqueid1": "1772614800.3", "uniqueid2": "1772614801.4"},
            {"channel1": "PJSIP/e-5", "channel2": "PJSIP/f-6", "bridge_time": "2026-03-04 10:05:00",
             "uniqueid1": "1772614800.5", "uniqueid2": "1772614900.6"}
        ]});
        let rows = parse_rows(crate::ucm::lists::rows_of(&rows, "channel"), tz);
        let doubtful: Vec<bool> = rows.iter().map(|r| r.doubtful).collect();
        // Agreeing within a second; a 2009 uniqueid against a 2026 alloc_time; channels
        // created an hour after their bridge; a callee created 100 s after the caller.
        assert_eq!(doubtful, [false, true, true, false]);
    }

    #[test]
    fn a_row_start_that_cannot_be_trusted_widens_the_window_and_raises_no_floor() {
        // After the ceiling, doubtful, older than a counted call can be: each is read from the
        // horizon up to the recent window when its call ends, never around its stated start.
        let cases = [
            (
                "after the ceiling",
                row(&["A"], Some(T + 900), None, "u"),
                false,
            ),
            (
                "doubtful",
                Row {
                    doubtful: true,
                    ..row(&["A"], Some(T - 50), None, "u")
                },
                false,
            ),
            ("too old", row(&["A"], Some(T - 5 * 3600), None, "u"), false),
            ("trusted", row(&["A"], Some(T - 50), None, "u"), true),
        ];
        for (what, r, trusted) in cases {
            let mut tr = Tracker::with_max_call_duration(4 * 3600);
            tr.observe(&[], Some(T), T + 300).unwrap();
            tr.swept();
            tr.observe(std::slice::from_ref(&r), Some(T), T + 300)
                .unwrap();
            assert_eq!(tr.floors.back(), Some(&T), "{what}: the watermark's floor");
            tr.read(&HashSet::default());
            tr.observe(&[], Some(T + 10), T + 300).unwrap();
            let w = tr.windows(30).unwrap();
            let want = if trusted {
                vec![(T - 50, T - 49)]
            } else {
                vec![(LocalSecs::MIN, LocalSecs::MAX)]
            };
            assert_eq!(w.targets, want, "{what}");
        }
    }

    #[test]
    fn a_bridge_that_joins_a_doubtful_channel_has_no_start_to_trust() {
        let doubtful = Row {
            doubtful: true,
            ..row(&["A"], Some(T), None, "")
        };
        assert_eq!(
            targets_after_a_bridge_with(doubtful),
            vec![(LocalSecs::MIN, LocalSecs::MAX)]
        );
    }

    #[test]
    fn windows_merge_when_close_and_stay_few() {
        assert_eq!(
            merge_windows(vec![(100, 102), (0, 2), (110, 115)]),
            vec![(0, 2), (100, 115)]
        );
        let many: Vec<_> = (0..20).map(|i| (i * 1000, i * 1000 + 2 + i)).collect();
        let merged = merge_windows(many);
        assert_eq!(merged.len(), MAX_TARGETED_READS);
        assert_eq!((merged[0].0, merged.last().unwrap().1), (0, 19 * 1000 + 21));
    }
}
