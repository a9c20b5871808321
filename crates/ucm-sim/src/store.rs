//! The simulated CDR database: pre-rendered entries in call-start order.
//!
//! Entries are kept as JSON text so that a 1000-entry page is a concatenation, not a
//! serialisation; the few fields that filters and visibility need sit beside the text.
//!
//! Times: `start`/`end` are the stamps as served (the UCM's clock), `visible_at` is steady time
//! (see `clock.rs`). A generated call is stamped with the clock offset in force when it starts,
//! so calls placed after a clock step carry the stepped clock's times.

use std::collections::VecDeque;

use chrono::Datelike;
use chrono_tz::Tz;
use serde_json::Value;

use super::clock::{from_secs, LocalSecs, Reading, SteadySecs, Step};
use super::live::{Bridge, Channel, QueueCall};
use super::render::{render, Layout};
use super::traffic::{calls_in_slot, Call, Leg};
use super::truth::{self, Truth};
use super::Firmware;

#[derive(Debug)]
pub struct Entry {
    /// Call start (`main_cdr.start` or the flat `start`): what startTime/endTime filter on.
    pub start: LocalSecs,
    /// Latest leg end: when the UCM writes the CDR.
    pub end: LocalSecs,
    /// Every leg was written without an `end` (a call that failed before it was set up): a UCM
    /// that filters `timeFilterType: End` on the written column never returns it.
    pub endless: bool,
    /// Steady time from which the entry is served.
    pub visible_at: SteadySecs,
    /// Clock steps taken before the entry was stored (see [`visible_reading`]).
    pub epoch: usize,
    /// The first `sub_cdr_N` that the late-legs quirk holds back; None = nothing to hold back.
    pub late_from: Option<u32>,
    pub src: String,
    pub dst: String,
    pub billsec: i64,
    pub json: Box<str>,
    /// For the channel lists; empty for entries injected without `live`.
    pub bridges: Vec<Bridge>,
    pub channels: Vec<Channel>,
    /// For the queue actions while the call is under way; None when it went through no queue
    /// or was injected without `live`.
    pub queue: Option<QueueCall>,
}

/// What a queue call left in its members' statistics once it ended.
#[derive(Debug, Clone)]
pub struct QueueOutcome {
    pub ended_at: SteadySecs,
    pub queue: String,
    pub answered_by: Option<u32>,
    pub talk_secs: i64,
    pub rung: Vec<u32>,
}

#[derive(Debug)]
pub struct Store {
    entries: Vec<Entry>,
    seed: u64,
    calls_per_hour: f64,
    flat: bool,
    firmware: Firmware,
    /// Calls that failed before they were set up are written without an `end`, as a real UCM
    /// writes them; off, they carry the end their duration gives.
    endless: bool,
    /// Start (steady) of the next hour slot to generate.
    next_slot: SteadySecs,
    /// Generated calls that have not started yet, oldest first, in steady time: they are
    /// stamped when they start, with the clock as it is then.
    pending: VecDeque<Call>,
    /// Calls of bursts (`traffic::burst`) not started yet, oldest first.
    bursts: VecDeque<Call>,
    /// (year * 12 + month, next AcctId): the UCM keeps monthly CDR tables, so AcctId restarts.
    acct: (i32, u64),
    generated: u64,
    tz: Tz,
    /// Longest `end - start` of any entry: how far before a window an entry that ends in it can
    /// start, which bounds the start-ordered scan of an end filter.
    longest: i64,
    /// The same over entries with channels, for the channel lists.
    longest_live: i64,
    /// By `ended_at`, so that statistics since a boot are a range.
    queue_log: Vec<QueueOutcome>,
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn secs_of(v: &Value, k: &str) -> Option<LocalSecs> {
    chrono::NaiveDateTime::parse_from_str(str_of(v, k), "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(super::clock::to_secs)
}

fn num_of(v: &Value, k: &str) -> i64 {
    str_of(v, k).parse().unwrap_or(0)
}

/// The first leg is written with the entry, and so is a ForkCDR copy placed before it: a copy is
/// written with the leg it copies.
fn late_from(legs: usize, grouped: bool, first_is_fork: bool) -> Option<u32> {
    let early = if first_is_fork { 2 } else { 1 };
    (grouped && legs > early).then(|| early as u32 + 1)
}

/// (start, latest leg end) of a `cdr_root` entry as a test writes it; None without a readable
/// start.
pub fn entry_times(v: &Value) -> Option<(LocalSecs, LocalSecs)> {
    v.as_object()?;
    let start = secs_of(v.get("main_cdr").unwrap_or(v), "start")?;
    Some((start, latest_end(v, start)))
}

/// The latest leg end, and never before `start`; `start` when no leg has readable times.
fn latest_end(v: &Value, start: LocalSecs) -> LocalSecs {
    legs_of(v)
        .iter()
        .filter_map(|(_, l)| Some(secs_of(l, "start")? + num_of(l, "duration")))
        .max()
        .unwrap_or(start)
        .max(start)
}

/// A leg as a test wrote it, with what the channel lists need; `start` when it has no readable
/// start of its own.
fn leg_of(l: &Value, start: LocalSecs) -> Leg {
    let duration = num_of(l, "duration");
    let billsec = num_of(l, "billsec").clamp(0, duration.max(0));
    let text = |k: &str| str_of(l, k).to_string();
    Leg {
        src: text("src"),
        dst: text("dst"),
        channel: text("channel"),
        dstchannel: text("dstchannel"),
        dstchannel_ext: text("dstchannel_ext"),
        lastapp: text("lastapp"),
        caller_name: text("caller_name"),
        uniqueid: text("uniqueid"),
        start: secs_of(l, "start").unwrap_or(start),
        ring: duration.max(0) - billsec,
        billsec,
        disposition: if str_of(l, "disposition")
            .trim()
            .eq_ignore_ascii_case("ANSWERED")
        {
            "ANSWERED"
        } else {
            "NO ANSWER"
        },
        ..Leg::default()
    }
}

fn legs_of(v: &Value) -> Vec<(u32, &Value)> {
    match v.get("main_cdr") {
        Some(_) => {
            let mut legs: Vec<(u32, &Value)> = v
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, l)| Some((k.strip_prefix("sub_cdr_")?.parse().ok()?, l)))
                .collect();
            legs.sort_by_key(|(n, _)| *n);
            legs
        }
        None => vec![(0, v)],
    }
}

/// The clock's reading when an entry became visible: where it lies on the clock's time line,
/// which is what `Truth` windows are given in.
///
/// Steps before visibility set the offset it is read with. A backward step after it brings the
/// reading down to the clock's reading just after that step: the entry stays served while the
/// clock shows earlier times, so `truth(any early time, now)` keeps covering everything served.
pub fn visible_reading(e: &Entry, steps: &[Step]) -> LocalSecs {
    let mut offset = 0;
    let mut reading: Option<LocalSecs> = None;
    for (j, s) in steps.iter().enumerate() {
        if j < e.epoch || s.at < e.visible_at {
            offset = s.offset;
            continue;
        }
        let r = reading.get_or_insert(e.visible_at + offset);
        if s.offset < offset {
            *r = (*r).min(s.at + s.offset);
        }
        offset = s.offset;
    }
    reading.unwrap_or_else(|| e.visible_at + offset)
}

impl Store {
    /// Whether calls that failed before they were set up are written without an `end`.
    pub fn set_endless(&mut self, on: bool) {
        self.endless = on;
    }

    pub fn new(
        seed: u64,
        (calls_per_hour, flat): (f64, bool),
        (firmware, tz): (Firmware, Tz),
        first_slot: SteadySecs,
    ) -> Self {
        Store {
            entries: Vec::new(),
            seed,
            calls_per_hour,
            flat,
            firmware,
            endless: true,
            next_slot: first_slot.div_euclid(3600) * 3600,
            pending: VecDeque::new(),
            bursts: VecDeque::new(),
            acct: (0, 1),
            generated: 0,
            tz,
            longest: 0,
            longest_live: 0,
            queue_log: Vec::new(),
        }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Stores every generated call that has started by `now`. Calls that have not ended yet are
    /// stored but stay invisible until steady time passes their end.
    pub fn generate_until(&mut self, now: Reading) {
        if self.calls_per_hour > 0.0 {
            while self.next_slot <= now.steady {
                self.pending.extend(calls_in_slot(
                    self.seed,
                    self.next_slot,
                    (self.calls_per_hour, self.flat),
                    self.tz,
                ));
                self.next_slot += 3600;
            }
        }
        let due = |q: &VecDeque<Call>| q.front().is_some_and(|c| c.start() <= now.steady);
        loop {
            let next = if due(&self.pending) {
                self.pending.pop_front()
            } else if due(&self.bursts) {
                self.bursts.pop_front()
            } else {
                break;
            };
            let mut call = next.expect("front checked");
            call.shift(now.offset(), self.tz);
            self.push_generated(&call, now);
        }
    }

    /// Schedules the calls of a burst, placed in steady time; each is stored as it starts, like
    /// the generated traffic.
    pub fn add_burst(&mut self, calls: Vec<Call>) {
        self.bursts.extend(calls);
        self.bursts.make_contiguous().sort_by_key(|c| c.start());
    }

    fn push_generated(&mut self, call: &Call, now: Reading) {
        let start = call.start();
        let day = from_secs(start).date();
        let month = day.year() * 12 + day.month() as i32;
        if month != self.acct.0 {
            self.acct = (month, 1);
        }
        let layout = match self.firmware {
            Firmware::Ucm62xx => Layout::Ucm62xx,
            Firmware::Ucm63xx => Layout::Ucm63xx,
            Firmware::Mixed if self.generated % 2 == 0 => Layout::Ucm62xx,
            Firmware::Mixed => Layout::Ucm63xx,
        };
        let endless = self.endless && call.legs.iter().all(|l| l.endless);
        let json = if self.endless {
            render(call, self.acct.1, layout)
        } else {
            let mut whole = call.clone();
            whole.legs.iter_mut().for_each(|l| l.endless = false);
            render(&whole, self.acct.1, layout)
        };
        self.acct.1 += call.legs.len() as u64;
        self.generated += 1;
        let (bridges, channels) = super::live::of_call(&call.legs, self.tz);
        let queue = super::live::queue_of_call(&call.legs);
        let first = &call.legs[0];
        let grouped = call.grouped || call.legs.len() > 1;
        self.insert(Entry {
            start,
            end: call.end(),
            endless,
            visible_at: call.end() - now.offset(),
            epoch: now.epoch,
            late_from: late_from(call.legs.len(), grouped, first.lastapp == "ForkCDR"),
            src: first.src.clone(),
            dst: first.dst.clone(),
            billsec: call.legs.iter().map(|l| l.billsec).sum(),
            json: json.into_boxed_str(),
            bridges,
            channels,
            queue,
        });
    }

    /// Adds an entry written by a test, as a UCM would render it. It becomes visible when the
    /// clock, as it reads at `now`, reaches its latest leg end; or at once with `visible_now`.
    /// With `live`, its legs also make channels for the channel lists while the call is under
    /// way.
    pub fn add_value(&mut self, v: &Value, now: Reading, visible_now: bool, live: bool) {
        let head = v.get("main_cdr").unwrap_or(v);
        // An unreadable start is kept as 1970 (a test of what a client does with it).
        let start = secs_of(head, "start").unwrap_or_default();
        let end = latest_end(v, start);
        let legs = legs_of(v);
        // A ForkCDR copy of the next leg (same channel and start), not a segment of its own.
        let first_is_fork = match legs.as_slice() {
            [(_, a), (_, b), ..] => {
                str_of(a, "lastapp").eq_ignore_ascii_case("ForkCDR")
                    && str_of(a, "channel") == str_of(b, "channel")
                    && str_of(a, "start") == str_of(b, "start")
            }
            _ => false,
        };
        // Written now: served from now on, and counted by the truth as appearing now, even when
        // its call ended long ago (a CDR the UCM wrote late).
        let visible_at = if visible_now {
            now.steady
        } else {
            end - now.offset()
        };
        let (bridges, channels, queue) = if live {
            let legs: Vec<Leg> = legs.iter().map(|(_, l)| leg_of(l, start)).collect();
            let (bridges, channels) = super::live::of_call(&legs, self.tz);
            (bridges, channels, super::live::queue_of_call(&legs))
        } else {
            (Vec::new(), Vec::new(), None)
        };
        let endless = legs.iter().all(|(_, l)| str_of(l, "end").trim().is_empty());
        self.insert(Entry {
            start,
            end,
            endless,
            visible_at,
            epoch: now.epoch,
            late_from: late_from(legs.len(), v.get("main_cdr").is_some(), first_is_fork),
            src: str_of(head, "src").to_string(),
            dst: str_of(head, "dst").to_string(),
            billsec: num_of(head, "billsec"),
            json: v.to_string().into_boxed_str(),
            bridges,
            channels,
            queue,
        });
    }

    fn insert(&mut self, e: Entry) {
        if let Some(q) = &e.queue {
            // A queue call counts in its members' statistics once its CDR is written.
            let at = self
                .queue_log
                .partition_point(|o| o.ended_at <= e.visible_at);
            self.queue_log.insert(
                at,
                QueueOutcome {
                    ended_at: e.visible_at,
                    queue: q.queue.clone(),
                    answered_by: q.answered_by(),
                    talk_secs: q.talk_secs(),
                    rung: q.rung.clone(),
                },
            );
        }
        let length = e.end.saturating_sub(e.start);
        self.longest = self.longest.max(length);
        if !e.bridges.is_empty() || !e.channels.is_empty() {
            self.longest_live = self.longest_live.max(length);
        }
        let at = self.entries.partition_point(|x| x.start <= e.start);
        self.entries.insert(at, e);
    }

    /// Queue calls whose CDR was written in `(after, to]` (steady time): a call that ends in the
    /// second of a reboot counts before it.
    pub fn queue_outcomes(&self, after: SteadySecs, to: SteadySecs) -> &[QueueOutcome] {
        let lo = self.queue_log.partition_point(|o| o.ended_at <= after);
        let hi = self.queue_log.partition_point(|o| o.ended_at <= to);
        &self.queue_log[lo..hi.max(lo)]
    }

    /// Longest `end - start` of any entry stored.
    pub fn longest(&self) -> i64 {
        self.longest
    }

    /// Index range of the entries that may have a channel live at `now`.
    pub fn live_range(&self, now: LocalSecs) -> std::ops::Range<usize> {
        self.start_range(now.saturating_sub(self.longest_live), now)
    }

    /// Index range of entries whose start lies in `[from, to]`.
    pub fn start_range(&self, from: LocalSecs, to: LocalSecs) -> std::ops::Range<usize> {
        let lo = self.entries.partition_point(|e| e.start < from);
        let hi = self.entries.partition_point(|e| e.start <= to);
        lo..hi.max(lo)
    }

    /// Truth over the entries visible at `now` whose visible reading lies in `(after, until]`
    /// and whose start lies in `started`. Each call is classified from all its legs, whether or
    /// not some are still held back by the late-legs quirk.
    pub fn truth_where(
        &self,
        (after, until): (LocalSecs, LocalSecs),
        started: std::ops::Range<LocalSecs>,
        now: Reading,
        steps: &[Step],
    ) -> Truth {
        let mut t = Truth::default();
        for e in self.entries.iter().filter(|e| {
            e.visible_at <= now.steady && started.contains(&e.start) && {
                let r = visible_reading(e, steps);
                r > after && r <= until
            }
        }) {
            let v: Value = serde_json::from_str(&e.json).expect("stored entries are JSON");
            if let Some(c) = truth::classify(&v) {
                t.add(&c);
            }
        }
        t
    }
}

/// `e` as served before its late legs are written: the legs from `late_from` on removed and
/// `main_cdr`'s sums taken over the legs that remain.
pub fn without_late_legs(json: &str, late_from: u32) -> String {
    let Ok(Value::Object(mut v)) = serde_json::from_str::<Value>(json) else {
        return json.to_string();
    };
    v.retain(|k, _| {
        k.strip_prefix("sub_cdr_")
            .and_then(|n| n.parse::<u32>().ok())
            .is_none_or(|n| n < late_from)
    });
    let sum = |key: &str| -> i64 {
        v.iter()
            .filter(|(k, _)| k.starts_with("sub_cdr_"))
            .map(|(_, l)| num_of(l, key))
            .sum()
    };
    let (duration, billsec) = (sum("duration"), sum("billsec"));
    if let Some(Value::Object(main)) = v.get_mut("main_cdr") {
        for (k, n) in [("duration", duration), ("billsec", billsec)] {
            if main.contains_key(k) {
                main.insert(k.into(), Value::String(n.to_string()));
            }
        }
    }
    Value::Object(v).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn generation_does_not_depend_on_the_steps_taken() {
        let mut a = Store::new(
            5,
            (200.0, false),
            (Firmware::Mixed, chrono_tz::UTC),
            1000 * 3600,
        );
        let mut b = Store::new(
            5,
            (200.0, false),
            (Firmware::Mixed, chrono_tz::UTC),
            1000 * 3600,
        );
        a.generate_until(Reading::unstepped(1010 * 3600));
        for h in 0..=40 {
            b.generate_until(Reading::unstepped(1000 * 3600 + h * 900));
        }
        let ja: Vec<&str> = a.entries().iter().map(|e| &*e.json).collect();
        let jb: Vec<&str> = b.entries().iter().map(|e| &*e.json).collect();
        assert!(ja.len() > 100);
        assert_eq!(ja, jb);
    }

    #[test]
    fn injected_entries_keep_start_order() {
        let mut s = Store::new(1, (0.0, false), (Firmware::Mixed, chrono_tz::UTC), 0);
        for start in [
            "2024-01-01 10:00:05",
            "2024-01-01 10:00:01",
            "2024-01-01 10:00:03",
        ] {
            s.add_value(
                &json!({"start": start, "duration": "10", "disposition": "ANSWERED"}),
                Reading::unstepped(0),
                false,
                false,
            );
        }
        let starts: Vec<i64> = s.entries().iter().map(|e| e.start % 60).collect();
        assert_eq!(starts, [1, 3, 5]);
        assert_eq!(s.entries()[0].end - s.entries()[0].start, 10);
    }

    fn entry(visible_at: SteadySecs, epoch: usize) -> Entry {
        Entry {
            start: 0,
            end: 0,
            endless: false,
            visible_at,
            epoch,
            late_from: None,
            src: String::new(),
            dst: String::new(),
            billsec: 0,
            json: "{}".into(),
            bridges: Vec::new(),
            channels: Vec::new(),
            queue: None,
        }
    }

    #[test]
    fn visible_reading_follows_the_clock_and_backward_steps() {
        let steps = [
            Step {
                at: 100,
                offset: 50,
            }, // forward 50
            Step {
                at: 200,
                offset: -30,
            }, // back 80
            Step { at: 300, offset: 0 }, // forward 30
        ];
        // Visible before any step: its own time, which the step back at 200 (to reading 170)
        // leaves alone.
        assert_eq!(visible_reading(&entry(90, 0), &steps), 90);
        // Visible at reading 200 (steady 150 + 50): brought down to 170 by the step back.
        assert_eq!(visible_reading(&entry(150, 0), &steps[..1]), 200);
        assert_eq!(visible_reading(&entry(150, 0), &steps), 170);
        // After the step back, read with the offset of its time; a later forward step keeps it.
        assert_eq!(visible_reading(&entry(250, 0), &steps), 220);
        assert_eq!(visible_reading(&entry(350, 0), &steps), 350);
        // Stored right after the step at 100 and visible at that instant: the new offset.
        assert_eq!(visible_reading(&entry(100, 1), &steps[..1]), 150);
        // Visible at 100 but stored before the step: it was visible at the old reading.
        assert_eq!(visible_reading(&entry(100, 0), &steps[..1]), 100);
    }

    #[test]
    fn late_legs_are_the_ones_after_the_first() {
        assert_eq!(late_from(1, false, false), None);
        assert_eq!(late_from(1, true, false), None);
        assert_eq!(late_from(2, true, false), Some(2));
        assert_eq!(late_from(2, true, true), None);
        assert_eq!(late_from(3, true, true), Some(3));
        let whole = json!({"cdr": "c", "main_cdr": {"start": "2024-01-01 10:00:00", "duration": "75", "billsec": "50", "src": "1"},
            "sub_cdr_1": {"duration": "10", "billsec": "0"},
            "sub_cdr_2": {"duration": "30", "billsec": "25"},
            "sub_cdr_10": {"duration": "35", "billsec": "25"}});
        let early: Value = serde_json::from_str(&without_late_legs(&whole.to_string(), 2)).unwrap();
        assert_eq!(
            early,
            json!({"cdr": "c", "main_cdr": {"start": "2024-01-01 10:00:00", "duration": "10", "billsec": "0", "src": "1"},
                   "sub_cdr_1": {"duration": "10", "billsec": "0"}})
        );
    }
}
