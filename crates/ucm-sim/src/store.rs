//! The simulated CDR database: pre-rendered entries in call-start order.
//!
//! Entries are kept as JSON text so that a 1000-entry page is a concatenation, not a
//! serialisation; the few fields that filters and visibility need sit beside the text.

use chrono::Datelike;
use serde_json::Value;

use super::clock::{from_secs, LocalSecs};
use super::render::{render, Layout};
use super::traffic::{calls_in_slot, Call};
use super::truth::{self, Truth};
use super::Firmware;

/// A two-party connection, for `listBridgedChannels`.
#[derive(Debug, Clone)]
pub struct Bridge {
    pub from: LocalSecs,
    pub to: LocalSecs,
    pub channel1: String,
    pub channel2: String,
    pub callerid1: String,
    pub callerid2: String,
    pub name1: String,
}

#[derive(Debug)]
pub struct Entry {
    /// Call start (`main_cdr.start` or the flat `start`): what startTime/endTime filter on.
    pub start: LocalSecs,
    /// Latest leg end: the entry is visible once the clock reaches it.
    pub end: LocalSecs,
    pub src: String,
    pub dst: String,
    pub billsec: i64,
    pub json: Box<str>,
    pub bridges: Vec<Bridge>,
}

#[derive(Debug)]
pub struct Store {
    entries: Vec<Entry>,
    seed: u64,
    calls_per_hour: f64,
    firmware: Firmware,
    /// Start of the next hour slot to generate.
    next_slot: LocalSecs,
    /// (year * 12 + month, next AcctId): the UCM keeps monthly CDR tables, so AcctId restarts.
    acct: (i32, u64),
    generated: u64,
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

impl Store {
    pub fn new(seed: u64, calls_per_hour: f64, firmware: Firmware, first_slot: LocalSecs) -> Self {
        Store {
            entries: Vec::new(),
            seed,
            calls_per_hour,
            firmware,
            next_slot: first_slot.div_euclid(3600) * 3600,
            acct: (0, 1),
            generated: 0,
        }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Generates every hour slot that has begun by `now`. Calls of the current slot that have
    /// not ended yet are stored but stay invisible until the clock passes their end.
    pub fn generate_until(&mut self, now: LocalSecs) {
        if self.calls_per_hour <= 0.0 {
            return;
        }
        while self.next_slot <= now {
            for call in calls_in_slot(self.seed, self.next_slot, self.calls_per_hour) {
                self.push_generated(&call);
            }
            self.next_slot += 3600;
        }
    }

    fn push_generated(&mut self, call: &Call) {
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
        let json = render(call, self.acct.1, layout);
        self.acct.1 += call.legs.len() as u64;
        self.generated += 1;
        let bridges = call
            .legs
            .iter()
            .filter(|l| l.answered() && !l.dstchannel.is_empty() && l.lastapp != "ForkCDR")
            .map(|l| Bridge {
                from: l.start + l.ring,
                to: l.end(),
                channel1: l.channel.clone(),
                channel2: l.dstchannel.clone(),
                callerid1: l.src.clone(),
                callerid2: l.dst.clone(),
                name1: l.caller_name.clone(),
            })
            .collect();
        let first = &call.legs[0];
        self.insert(Entry {
            start,
            end: call.end(),
            src: first.src.clone(),
            dst: first.dst.clone(),
            billsec: call.legs.iter().map(|l| l.billsec).sum(),
            json: json.into_boxed_str(),
            bridges,
        });
    }

    /// Adds an entry written by a test, as a UCM would render it.
    pub fn add_value(&mut self, v: &Value) {
        let head = v.get("main_cdr").unwrap_or(v);
        let legs: Vec<&Value> = match v.get("main_cdr") {
            Some(_) => v
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| k.starts_with("sub_cdr_"))
                .map(|(_, l)| l)
                .collect(),
            None => vec![v],
        };
        let start = secs_of(head, "start").unwrap_or_default();
        let end = legs
            .iter()
            .filter_map(|l| Some(secs_of(l, "start")? + num_of(l, "duration")))
            .max()
            .unwrap_or(start)
            .max(start);
        self.insert(Entry {
            start,
            end,
            src: str_of(head, "src").to_string(),
            dst: str_of(head, "dst").to_string(),
            billsec: num_of(head, "billsec"),
            json: v.to_string().into_boxed_str(),
            bridges: Vec::new(),
        });
    }

    fn insert(&mut self, e: Entry) {
        let at = self.entries.partition_point(|x| x.start <= e.start);
        self.entries.insert(at, e);
    }

    /// Index range of entries whose start lies in `[from, to]`.
    pub fn start_range(&self, from: LocalSecs, to: LocalSecs) -> std::ops::Range<usize> {
        let lo = self.entries.partition_point(|e| e.start < from);
        let hi = self.entries.partition_point(|e| e.start <= to);
        lo..hi.max(lo)
    }

    /// Ground truth over entries that became visible in `(after, until]`.
    pub fn truth(&self, after: LocalSecs, until: LocalSecs) -> Truth {
        self.truth_where(after, until, LocalSecs::MIN)
    }

    /// Truth over the calls visible in `(after, until]` that started at or after `started_from`.
    pub fn truth_where(
        &self,
        after: LocalSecs,
        until: LocalSecs,
        started_from: LocalSecs,
    ) -> Truth {
        let mut t = Truth::default();
        for e in self
            .entries
            .iter()
            .filter(|e| e.end > after && e.end <= until && e.start >= started_from)
        {
            let v: Value = serde_json::from_str(&e.json).expect("stored entries are JSON");
            if let Some(c) = truth::classify(&v) {
                t.add(&c);
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn generation_does_not_depend_on_the_steps_taken() {
        let mut a = Store::new(5, 200.0, Firmware::Mixed, 1000 * 3600);
        let mut b = Store::new(5, 200.0, Firmware::Mixed, 1000 * 3600);
        a.generate_until(1010 * 3600);
        for h in 0..=40 {
            b.generate_until(1000 * 3600 + h * 900);
        }
        let ja: Vec<&str> = a.entries().iter().map(|e| &*e.json).collect();
        let jb: Vec<&str> = b.entries().iter().map(|e| &*e.json).collect();
        assert!(ja.len() > 100);
        assert_eq!(ja, jb);
    }

    #[test]
    fn injected_entries_keep_start_order() {
        let mut s = Store::new(1, 0.0, Firmware::Mixed, 0);
        for start in [
            "2024-01-01 10:00:05",
            "2024-01-01 10:00:01",
            "2024-01-01 10:00:03",
        ] {
            s.add_value(&json!({"start": start, "duration": "10", "disposition": "ANSWERED"}));
        }
        let starts: Vec<i64> = s.entries().iter().map(|e| e.start % 60).collect();
        assert_eq!(starts, [1, 3, 5]);
        assert_eq!(s.entries()[0].end - s.entries()[0].start, 10);
    }
}
