//! Ground truth: what the exporter should show for a set of CDR entries.
//!
//! This is a deliberately separate, literal reading of the counting rules of docs/design.md §6
//! (and of the group rules for queues, ring groups and IVRs, [`classify`]'s `groups` and `ivrs`)
//! over the JSON a UCM serves. It never looks at the generator's own idea of a call, so a test
//! that compares the exporter with this module compares two independent readings of those rules,
//! and the generator's intent is checked against it in unit tests.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Label values exactly as the exporter's metrics would carry them (docs/design.md §6).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truth {
    /// (direction, trunk, disposition) -> calls
    #[serde(with = "tuple_map")]
    pub calls: BTreeMap<(String, String, String), u64>,
    /// (direction, trunk) -> (answered calls, talk seconds sum)
    #[serde(with = "tuple_map")]
    pub talk: BTreeMap<(String, String), (u64, u64)>,
    /// (direction, trunk, disposition) -> (calls, wait seconds sum)
    #[serde(with = "tuple_map")]
    pub wait: BTreeMap<(String, String, String), (u64, u64)>,
    /// (extension, role, disposition) -> calls
    #[serde(with = "tuple_map")]
    pub extension_calls: BTreeMap<(String, String, String), u64>,
    /// (extension, role) -> seconds
    #[serde(with = "tuple_map")]
    pub extension_talk: BTreeMap<(String, String), u64>,
    /// Legs (sub_cdr_N or flat), ForkCDR copies excluded, main_cdr never a leg.
    pub records: u64,
    pub newest_start: Option<NaiveDateTime>,
    pub total_calls: u64,
    /// (kind, group, outcome) -> visits; kind `queue` or `ringgroup` (`ucm_group_calls_total`)
    #[serde(with = "tuple_map", default)]
    pub group_calls: BTreeMap<(String, String, String), u64>,
    /// (kind, group, outcome) -> (visits, wait seconds sum) (`ucm_group_wait_seconds`)
    #[serde(with = "tuple_map", default)]
    pub group_wait: BTreeMap<(String, String, String), (u64, u64)>,
    /// (kind, group, outcome, threshold) -> visits whose wait is at most `threshold` seconds, for
    /// each of [`SERVICE_LEVELS`]: the histogram's service-level buckets. Every threshold is
    /// present (maybe 0) for each (kind, group, outcome) of `group_wait`.
    #[serde(with = "tuple_map", default)]
    pub group_wait_within: BTreeMap<(String, String, String, u64), u64>,
    /// (kind, group, extension, outcome) -> visits; outcome `answered` or `missed`, no
    /// `extensions.max` cap (`ucm_group_member_calls_total`)
    #[serde(with = "tuple_map", default)]
    pub group_members: BTreeMap<(String, String, String, String), u64>,
    /// (ivr, outcome) -> visits; outcome `routed`, `hangup` or `timeout` (`ucm_ivr_calls_total`)
    #[serde(with = "tuple_map", default)]
    pub ivr_calls: BTreeMap<(String, String), u64>,
}

/// The default `groups.service_level_seconds`: the wait thresholds `group_wait_within` counts.
pub const SERVICE_LEVELS: [u64; 4] = [10, 20, 30, 60];

/// JSON object keys must be strings, so tuple keys travel as `[[k1, k2, ...], value]` pairs.
mod tuple_map {
    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<K: Serialize + Ord, V: Serialize, S: Serializer>(
        m: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: DeserializeOwned + Ord,
        V: DeserializeOwned,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

/// One call as the counting rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallClass {
    pub direction: &'static str,
    pub trunk: String,
    pub disposition: &'static str,
    pub talk: u64,
    pub wait: u64,
    /// (extension, role, disposition), once per extension and role
    pub extensions: Vec<(String, &'static str, &'static str)>,
    /// (extension, role, seconds) per person-answered leg side
    pub extension_talk: Vec<(String, &'static str, u64)>,
    pub legs: u64,
    pub start: Option<NaiveDateTime>,
    /// Queue and ring group visits, in the order the groups are first named.
    pub groups: Vec<GroupVisit>,
    /// IVR visits as (ivr, outcome), in the order first named.
    pub ivrs: Vec<(String, &'static str)>,
}

/// One call's visit to a queue or ring group, as the group rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupVisit {
    /// `queue` or `ringgroup`.
    pub kind: &'static str,
    pub group: String,
    /// `answered`, `voicemail`, `timeout` or `abandoned`.
    pub outcome: &'static str,
    pub wait: u64,
    /// (extension, `answered` | `missed`), once per extension, in the order first rung.
    pub members: Vec<(String, &'static str)>,
}

fn field<'a>(leg: &'a Value, key: &str) -> &'a str {
    leg.get(key).and_then(Value::as_str).unwrap_or("")
}

fn num(leg: &Value, key: &str) -> i64 {
    field(leg, key).trim().parse().unwrap_or(0)
}

fn time(leg: &Value, key: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(field(leg, key), "%Y-%m-%d %H:%M:%S").ok()
}

/// The default `extensions.pattern` of docs/design.md §6, `^[0-9]{2,7}$`.
pub fn is_extension(s: &str) -> bool {
    (2..=7).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// Firmware differs in case and stray blanks; the rules' values are words, not bytes.
fn is(leg: &Value, key: &str, word: &str) -> bool {
    field(leg, key).trim().eq_ignore_ascii_case(word)
}

fn fork(leg: &Value) -> bool {
    is(leg, "lastapp", "ForkCDR")
}

/// A ForkCDR leg that starts on the channel of a leg of another application at the same
/// second, or that equals an earlier ForkCDR leg in channel, start and duration: a copy, not a
/// part of the call. So of two identical ForkCDR legs the first stays.
fn fork_copy(legs: &[&Value], i: usize) -> bool {
    fn at(l: &Value) -> (&str, &str) {
        (field(l, "channel"), field(l, "start").trim())
    }
    let leg = legs[i];
    fork(leg)
        && legs.iter().enumerate().any(|(j, other)| {
            j != i
                && at(other) == at(leg)
                && (!fork(other) || (j < i && num(other, "duration") == num(leg, "duration")))
        })
}

/// Legs in the rules' order: flat = itself; grouped = sub_cdr_N by numeric N; ForkCDR copies
/// of another leg dropped.
pub fn legs(entry: &Value) -> Vec<&Value> {
    let Some(obj) = entry.as_object() else {
        return Vec::new();
    };
    let mut legs: Vec<(u64, &Value)> = if obj.contains_key("main_cdr") {
        obj.iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("sub_cdr_")?.parse().ok()?, v)))
            .collect()
    } else {
        vec![(0, entry)]
    };
    legs.sort_by_key(|(n, _)| *n);
    let all: Vec<&Value> = legs.into_iter().map(|(_, v)| v).collect();
    (0..all.len())
        .filter(|&i| !fork_copy(&all, i))
        .map(|i| all[i])
        .collect()
}

fn is_voicemail(leg: &Value) -> bool {
    field(leg, "lastapp")
        .trim()
        .eq_ignore_ascii_case("VoiceMail")
        || field(leg, "action_type").trim().eq_ignore_ascii_case("VM")
}

fn answered(leg: &Value) -> bool {
    is(leg, "disposition", "ANSWERED")
}

fn person_answered(leg: &Value) -> bool {
    answered(leg) && !field(leg, "dstchannel").is_empty() && !is_voicemail(leg)
}

/// Outcome rank, best first, as docs/design.md §6 orders extension outcomes.
const OUTCOMES: [&str; 5] = ["answered", "voicemail", "no_answer", "busy", "failed"];

fn leg_outcome(leg: &Value) -> &'static str {
    if person_answered(leg) {
        "answered"
    } else if answered(leg) && is_voicemail(leg) {
        "voicemail"
    } else if answered(leg) || is(leg, "disposition", "NO ANSWER") {
        "no_answer"
    } else if is(leg, "disposition", "BUSY") {
        "busy"
    } else {
        "failed"
    }
}

fn rank(outcome: &str) -> usize {
    OUTCOMES
        .iter()
        .position(|o| *o == outcome)
        .unwrap_or(OUTCOMES.len())
}

/// Classifies one `cdr_root` entry; `None` when no leg is left (not a call).
pub fn classify(entry: &Value) -> Option<CallClass> {
    let legs = legs(entry);
    let first = *legs.first()?;

    let src_trunk = legs
        .iter()
        .map(|l| field(l, "src_trunk_name"))
        .find(|s| !s.is_empty());
    let dst_trunk = legs
        .iter()
        .map(|l| field(l, "dst_trunk_name"))
        .find(|s| !s.is_empty());
    let direction = match field(first, "userfield").to_ascii_lowercase().as_str() {
        "inbound" => "inbound",
        "outbound" => "outbound",
        "internal" => "internal",
        "external" => "external",
        _ => match (src_trunk, dst_trunk) {
            (Some(_), Some(_)) => "external",
            (Some(_), None) => "inbound",
            (None, Some(_)) => "outbound",
            (None, None) => "internal",
        },
    };
    let trunk = match direction {
        "inbound" | "external" => src_trunk.unwrap_or(""),
        "outbound" => dst_trunk.unwrap_or(""),
        _ => "",
    }
    .to_string();

    let first_person = legs.iter().find(|l| person_answered(l));
    let disposition = if first_person.is_some() {
        "answered"
    } else if legs.iter().any(|l| answered(l) && is_voicemail(l)) {
        "voicemail"
    } else if legs
        .iter()
        .any(|l| is(l, "disposition", "NO ANSWER") || answered(l))
    {
        "no_answer"
    } else if legs.iter().any(|l| is(l, "disposition", "BUSY")) {
        "busy"
    } else {
        "failed"
    };

    let talk: i64 = legs
        .iter()
        .filter(|l| person_answered(l))
        .map(|l| num(l, "billsec"))
        .sum();
    let first_start = time(first, "start");
    let wait = match (first_person, first_start) {
        (Some(p), Some(s0)) => {
            let to_leg = time(p, "start").map_or(0, |s| (s - s0).num_seconds());
            to_leg + num(p, "duration") - num(p, "billsec")
        }
        (None, Some(s0)) => legs
            .iter()
            .filter_map(|l| Some((time(l, "start")? - s0).num_seconds() + num(l, "duration")))
            .max()
            .unwrap_or(0),
        _ => 0,
    };

    let mut extensions = Vec::new();
    // A caller extension only for calls placed inside the PBX (docs/design.md §6).
    let caller = field(first, "channel_ext");
    if is_extension(caller) && matches!(direction, "internal" | "outbound") {
        extensions.push((caller.to_string(), "caller", disposition));
    }
    let mut callee: BTreeMap<&str, &'static str> = BTreeMap::new();
    for l in &legs {
        let ext = field(l, "dstchannel_ext");
        if is_extension(ext) {
            let o = leg_outcome(l);
            let best = callee.entry(ext).or_insert(o);
            if rank(o) < rank(best) {
                *best = o;
            }
        }
    }
    extensions.extend(
        callee
            .into_iter()
            .map(|(e, o)| (e.to_string(), "callee", o)),
    );

    let mut extension_talk = Vec::new();
    for l in legs.iter().filter(|l| person_answered(l)) {
        let secs = num(l, "billsec").max(0) as u64;
        for (key, role) in [("channel_ext", "caller"), ("dstchannel_ext", "callee")] {
            let ext = field(l, key);
            if is_extension(ext) {
                extension_talk.push((ext.to_string(), role, secs));
            }
        }
    }

    let start = entry
        .get("main_cdr")
        .map_or_else(|| time(entry, "start"), |m| time(m, "start"));
    let (groups, ivrs) = visits(&legs);
    Some(CallClass {
        direction,
        trunk,
        disposition,
        talk: talk.max(0) as u64,
        wait: wait.max(0) as u64,
        extensions,
        extension_talk,
        legs: legs.len() as u64,
        start,
        groups,
        ivrs,
    })
}

/// Group rule 1: the (kind, group) a leg's `action_type` names: `QUEUE[n]`, `RINGGROUP[n]` or
/// `IVR[n]` (trimmed, kind word any case), `n` trimmed, non-empty, at most 32 bytes, nothing but
/// blanks after the `]`.
fn named_group(leg: &Value) -> Option<(&'static str, &str)> {
    let action = field(leg, "action_type").trim();
    let (word, rest) = action.split_once('[')?;
    let kind = if word.eq_ignore_ascii_case("QUEUE") {
        "queue"
    } else if word.eq_ignore_ascii_case("RINGGROUP") {
        "ringgroup"
    } else if word.eq_ignore_ascii_case("IVR") {
        "ivr"
    } else {
        return None;
    };
    let (n, after) = rest.split_once(']')?;
    let n = n.trim();
    (after.trim().is_empty() && !n.is_empty() && n.len() <= 32).then_some((kind, n))
}

/// Group rule 2's plain dial: `action_type`, trimmed, empty or `DIAL` (any case).
fn plain_dial(leg: &Value) -> bool {
    let action = field(leg, "action_type").trim();
    action.is_empty() || action.eq_ignore_ascii_case("DIAL")
}

/// A leg's end: its start plus its `duration`.
fn end_of(leg: &Value) -> Option<NaiveDateTime> {
    Some(time(leg, "start")? + chrono::Duration::seconds(num(leg, "duration")))
}

/// `leg` starts at or after `t` (false when either is unknown).
fn starts_from(leg: &Value, t: Option<NaiveDateTime>) -> bool {
    matches!((time(leg, "start"), t), (Some(s), Some(t)) if s >= t)
}

/// The group rules (2 to 6) over a call's legs: its queue and ring group visits, and its IVR
/// visits as (ivr, outcome).
fn visits(legs: &[&Value]) -> (Vec<GroupVisit>, Vec<(String, &'static str)>) {
    let mut named: Vec<(&'static str, &str)> = Vec::new();
    for l in legs {
        if let Some(g) = named_group(l) {
            if !named.contains(&g) {
                named.push(g);
            }
        }
    }
    let (mut groups, mut ivrs) = (Vec::new(), Vec::new());
    for (kind, group) in named {
        let is_visit: Vec<bool> = legs
            .iter()
            .map(|l| {
                named_group(l) == Some((kind, group))
                    || (kind != "ivr" && plain_dial(l) && field(l, "dst").trim() == group)
            })
            .collect();
        let visit_legs = || {
            legs.iter()
                .zip(&is_visit)
                .filter(|(_, v)| **v)
                .map(|(l, _)| *l)
        };
        let entry = visit_legs().filter_map(|l| time(l, "start")).min();
        let leave = visit_legs().filter_map(end_of).max();
        let others = || {
            legs.iter()
                .zip(&is_visit)
                .filter(|(_, v)| !**v)
                .map(|(l, _)| *l)
        };

        if kind == "ivr" {
            let outcome = if others().any(|l| starts_from(l, entry)) {
                "routed"
            } else {
                // The visit leg that ends last, the first in leg order on ties.
                let mut last: Option<&Value> = None;
                for l in visit_legs() {
                    if last.is_none_or(|b| end_of(l) > end_of(b)) {
                        last = Some(l);
                    }
                }
                let ended_by_menu = last.is_some_and(|l| {
                    ["Hangup", "Playback", "Congestion"]
                        .iter()
                        .any(|app| is(l, "lastapp", app))
                });
                if ended_by_menu {
                    "timeout"
                } else {
                    "hangup"
                }
            };
            ivrs.push((group.to_string(), outcome));
            continue;
        }

        let within = |l: &Value| match (time(l, "start"), entry, leave) {
            (Some(s), Some(a), Some(b)) => a <= s && s < b,
            _ => false,
        };
        let answering = legs
            .iter()
            .zip(&is_visit)
            .find(|(l, v)| person_answered(l) && (**v || within(l)))
            .map(|(l, _)| *l);
        let outcome = if answering.is_some() {
            "answered"
        } else if others().any(|l| answered(l) && is_voicemail(l) && starts_from(l, entry)) {
            "voicemail"
        } else if others().any(|l| starts_from(l, leave)) {
            "timeout"
        } else {
            "abandoned"
        };
        let secs = |a: Option<NaiveDateTime>, b: Option<NaiveDateTime>| match (a, b) {
            (Some(a), Some(b)) => (b - a).num_seconds(),
            _ => 0,
        };
        let wait = match answering {
            Some(l) => secs(entry, time(l, "start")) + num(l, "duration") - num(l, "billsec"),
            None => secs(entry, leave),
        };

        let mut members: Vec<(String, &'static str)> = Vec::new();
        for l in visit_legs().filter(|l| !is_voicemail(l)) {
            let ext = field(l, "dstchannel_ext");
            if !is_extension(ext) {
                continue;
            }
            let took = person_answered(l);
            match members.iter_mut().find(|(e, _)| e == ext) {
                Some(m) if took => m.1 = "answered",
                Some(_) => {}
                None => members.push((ext.to_string(), if took { "answered" } else { "missed" })),
            }
        }
        groups.push(GroupVisit {
            kind,
            group: group.to_string(),
            outcome,
            wait: wait.max(0) as u64,
            members,
        });
    }
    (groups, ivrs)
}

impl Truth {
    pub fn add(&mut self, c: &CallClass) {
        let (d, t, disp) = (
            c.direction.to_string(),
            c.trunk.clone(),
            c.disposition.to_string(),
        );
        *self
            .calls
            .entry((d.clone(), t.clone(), disp.clone()))
            .or_default() += 1;
        if c.disposition == "answered" {
            let e = self.talk.entry((d.clone(), t.clone())).or_default();
            e.0 += 1;
            e.1 += c.talk;
        }
        let w = self.wait.entry((d, t, disp)).or_default();
        w.0 += 1;
        w.1 += c.wait;
        for (ext, role, disp) in &c.extensions {
            *self
                .extension_calls
                .entry((ext.clone(), role.to_string(), disp.to_string()))
                .or_default() += 1;
        }
        for (ext, role, secs) in &c.extension_talk {
            *self
                .extension_talk
                .entry((ext.clone(), role.to_string()))
                .or_default() += secs;
        }
        for g in &c.groups {
            let key = (g.kind.to_string(), g.group.clone(), g.outcome.to_string());
            *self.group_calls.entry(key.clone()).or_default() += 1;
            let w = self.group_wait.entry(key.clone()).or_default();
            w.0 += 1;
            w.1 += g.wait;
            for level in SERVICE_LEVELS {
                let (k, grp, o) = key.clone();
                *self
                    .group_wait_within
                    .entry((k, grp, o, level))
                    .or_default() += u64::from(g.wait <= level);
            }
            for (ext, outcome) in &g.members {
                *self
                    .group_members
                    .entry((
                        g.kind.to_string(),
                        g.group.clone(),
                        ext.clone(),
                        outcome.to_string(),
                    ))
                    .or_default() += 1;
            }
        }
        for (ivr, outcome) in &c.ivrs {
            *self
                .ivr_calls
                .entry((ivr.clone(), outcome.to_string()))
                .or_default() += 1;
        }
        self.records += c.legs;
        self.total_calls += 1;
        if c.start.is_some() && c.start > self.newest_start {
            self.newest_start = c.start;
        }
    }

    /// Adds another truth, as of two spans of time read one after the other.
    pub fn merge(&mut self, other: &Truth) {
        fn sum<K: Ord + Clone, V: Copy + Default>(
            a: &mut BTreeMap<K, V>,
            b: &BTreeMap<K, V>,
            add: impl Fn(V, V) -> V,
        ) {
            for (k, v) in b {
                let e = a.entry(k.clone()).or_default();
                *e = add(*e, *v);
            }
        }
        sum(&mut self.calls, &other.calls, |x, y| x + y);
        sum(&mut self.talk, &other.talk, |x, y| (x.0 + y.0, x.1 + y.1));
        sum(&mut self.wait, &other.wait, |x, y| (x.0 + y.0, x.1 + y.1));
        sum(&mut self.extension_calls, &other.extension_calls, |x, y| {
            x + y
        });
        sum(&mut self.extension_talk, &other.extension_talk, |x, y| {
            x + y
        });
        sum(&mut self.group_calls, &other.group_calls, |x, y| x + y);
        sum(&mut self.group_wait, &other.group_wait, |x, y| {
            (x.0 + y.0, x.1 + y.1)
        });
        sum(
            &mut self.group_wait_within,
            &other.group_wait_within,
            |x, y| x + y,
        );
        sum(&mut self.group_members, &other.group_members, |x, y| x + y);
        sum(&mut self.ivr_calls, &other.ivr_calls, |x, y| x + y);
        self.records += other.records;
        self.total_calls += other.total_calls;
        self.newest_start = self.newest_start.max(other.newest_start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// docs/ucm-api.md §5.2, flat record, verbatim.
    pub fn flat_example() -> Value {
        json!({
          "cdr": "1683833430724538-2001",
          "AcctId": "1", "accountcode": "", "src": "2001", "dst": "2000",
          "dcontext": "from-internal", "clid": "\"\" <2001>",
          "channel": "PJSIP/2001-00000000", "dstchannel": "PJSIP/2000-00000001",
          "lastapp": "Dial",
          "lastdata": "PJSIP/2000/sip:2000@172.168.1.243:5060,60,zb(callee-handler^s^1)",
          "start": "2023-05-11 16:30:30", "answer": "2023-05-11 16:30:35", "end": "2023-05-11 16:30:42",
          "duration": "12", "billsec": "6", "disposition": "ANSWERED", "amaflags": "DOCUMENTATION",
          "uniqueid": "1683833430.0", "userfield": "Internal",
          "channel_ext": "2001", "dstchannel_ext": "2000", "service": "s", "caller_name": "",
          "recordfiles": "", "dstanswer": "2000", "chanext": "", "dstchanext": "",
          "session": "1683833430724538-2001", "action_owner": "2001", "action_type": "DIAL",
          "src_trunk_name": "", "dst_trunk_name": ""
        })
    }

    /// docs/ucm-api.md §5.2, grouped record, verbatim; sub_cdr_2's "(remaining fields as above)"
    /// filled in from sub_cdr_1.
    pub fn grouped_example() -> Value {
        json!({
          "cdr": "1683899266980541-1015",
          "main_cdr": {
            "AcctId": "", "accountcode": "", "src": "1015", "dst": "2004", "dcontext": "", "clid": "",
            "channel": "", "dstchannel": "", "lastapp": "", "lastdata": "",
            "start": "2023-05-12 10:47:46", "answer": "", "end": "",
            "duration": "15", "billsec": "15", "disposition": "", "amaflags": "", "uniqueid": "",
            "userfield": "", "channel_ext": "", "dstchannel_ext": "", "service": "", "caller_name": "",
            "recordfiles": "", "dstanswer": "", "chanext": "", "dstchanext": "",
            "session": "1683899266980541-1015", "action_owner": "", "action_type": "DIAL",
            "src_trunk_name": "", "dst_trunk_name": ""
          },
          "sub_cdr_1": {
            "AcctId": "24", "src": "1015", "dst": "2004", "dcontext": "did-local",
            "clid": "\"1015\" <1015>", "channel": "PJSIP/trunk_2-0000002b", "dstchannel": "",
            "lastapp": "Dial", "lastdata": "PJSIP/2004,60,zb(callee-handler^s^1)",
            "start": "2023-05-12 10:47:46", "answer": "2023-05-12 10:47:47", "end": "2023-05-12 10:47:47",
            "duration": "0", "billsec": "0", "disposition": "NO ANSWER", "amaflags": "DOCUMENTATION",
            "uniqueid": "1683899266.91", "userfield": "Inbound", "channel_ext": "trunk_2",
            "dstchannel_ext": "2004", "service": "s", "caller_name": "1015", "recordfiles": "",
            "dstanswer": "", "session": "1683899266980541-1015", "action_owner": "1015",
            "action_type": "DIAL", "src_trunk_name": "groff", "dst_trunk_name": "",
            "accountcode": "", "chanext": "", "dstchanext": ""
          },
          "sub_cdr_2": {
            "AcctId": "25", "src": "1015", "dst": "2004", "dcontext": "did-local",
            "clid": "\"1015\" <1015>", "channel": "PJSIP/trunk_2-0000002b", "dstchannel": "",
            "lastapp": "VoiceMail", "lastdata": "2004@default,u",
            "start": "2023-05-12 10:47:47", "answer": "2023-05-12 10:47:47", "end": "2023-05-12 10:48:02",
            "duration": "15", "billsec": "15", "disposition": "ANSWERED", "amaflags": "DOCUMENTATION",
            "uniqueid": "1683899266.91", "userfield": "Inbound", "channel_ext": "trunk_2",
            "dstchannel_ext": "2004", "service": "s", "caller_name": "1015", "recordfiles": "",
            "dstanswer": "2004", "session": "1683899266980541-1015", "action_owner": "1015",
            "action_type": "VM", "src_trunk_name": "groff", "dst_trunk_name": "",
            "accountcode": "", "chanext": "", "dstchanext": ""
          }
        })
    }

    /// docs/ucm-api.md §5.2, UCM6302 parked call, verbatim excerpt (absent keys stay absent).
    pub fn parked_example() -> Value {
        json!({
          "cdr": "",
          "main_cdr": { "src": "07XXXXXXXXX", "dst": "01XXXXXXXXX", "start": "2022-08-22 09:33:56",
                        "duration": "65", "billsec": "65", "session": "1661157236570719-07XXXXXXXXX",
                        "action_type": "DIAL" },
          "sub_cdr_1": { "AcctId": "71047", "dst": "71", "dcontext": "from-internal-xfer",
                         "channel": "PJSIP/trunk_2-000004e1", "lastapp": "Park", "lastdata": "default:71",
                         "duration": "35", "billsec": "35", "disposition": "ANSWERED",
                         "userfield": "Inbound", "channel_ext": "trunk_2", "action_type": "PARKEDCALL",
                         "src_trunk_name": "Daisy", "nat_call": "no", "nat_call_peer": "no",
                         "video_call": "no", "gdms_unique_code": "", "gds_call": "no", "gsc_call": "no",
                         "wave_src_seqid": "", "wave_dst_seqid": "", "device_info": "",
                         "device_info_peer": "", "recordfiles_desc": "" },
          "sub_cdr_2": { "AcctId": "71048", "dst": "203", "dstchannel": "PJSIP/203-000004eb",
                         "duration": "30", "billsec": "30", "disposition": "ANSWERED",
                         "recordfiles": "2022-08/auto-1661157307-07XXXXXXXXX-203.wav@",
                         "session": "166115730767640-203", "wave_dst_seqid": "1257",
                         "device_info_peer": "GXP2160",
                         "recordfiles_desc": "duration=31,size=489324B,start-time=1661157307@" }
        })
    }

    fn key3(a: &str, b: &str, c: &str) -> (String, String, String) {
        (a.into(), b.into(), c.into())
    }

    #[test]
    fn flat_example_is_internal_answered() {
        let c = classify(&flat_example()).unwrap();
        assert_eq!(
            (c.direction, c.trunk.as_str(), c.disposition),
            ("internal", "", "answered")
        );
        assert_eq!((c.talk, c.wait, c.legs), (6, 6, 1));
        assert_eq!(
            c.extensions,
            vec![
                ("2001".into(), "caller", "answered"),
                ("2000".into(), "callee", "answered")
            ]
        );
        assert_eq!(
            c.extension_talk,
            vec![("2001".into(), "caller", 6), ("2000".into(), "callee", 6)]
        );
    }

    #[test]
    fn grouped_example_is_inbound_voicemail_via_groff() {
        let c = classify(&grouped_example()).unwrap();
        assert_eq!(
            (c.direction, c.trunk.as_str(), c.disposition),
            ("inbound", "groff", "voicemail")
        );
        // 10:47:46 -> latest end 10:48:02
        assert_eq!((c.talk, c.wait, c.legs), (0, 16, 2));
        assert_eq!(c.extensions, vec![("2004".into(), "callee", "voicemail")]);
        assert!(c.extension_talk.is_empty());
    }

    #[test]
    fn parked_example_is_inbound_answered_by_203() {
        let c = classify(&parked_example()).unwrap();
        assert_eq!(
            (c.direction, c.trunk.as_str(), c.disposition),
            ("inbound", "Daisy", "answered")
        );
        // Park leg ANSWERED by the application at 09:33:56; sub_cdr_2 carries no start in the
        // excerpt, so the wait falls back to that leg's ring time (duration - billsec = 0).
        assert_eq!((c.talk, c.wait, c.legs), (30, 0, 2));
        // The excerpt has no dstchannel_ext, and the rules take extensions from that field
        // only; with the field present, 203 is the answering callee.
        assert!(c.extensions.is_empty());
        let mut full = parked_example();
        full["sub_cdr_2"]["dstchannel_ext"] = json!("203");
        let c = classify(&full).unwrap();
        assert_eq!(c.extensions, vec![("203".into(), "callee", "answered")]);
        assert_eq!(c.extension_talk, vec![("203".into(), "callee", 30)]);
    }

    #[test]
    fn aggregation_matches_label_keys() {
        let mut t = Truth::default();
        for e in [flat_example(), grouped_example(), parked_example()] {
            t.add(&classify(&e).unwrap());
        }
        assert_eq!(t.calls.get(&key3("internal", "", "answered")), Some(&1));
        assert_eq!(
            t.calls.get(&key3("inbound", "groff", "voicemail")),
            Some(&1)
        );
        assert_eq!(t.calls.get(&key3("inbound", "Daisy", "answered")), Some(&1));
        assert_eq!(
            t.talk.get(&("inbound".into(), "Daisy".into())),
            Some(&(1, 30))
        );
        assert_eq!(
            t.wait.get(&key3("inbound", "groff", "voicemail")),
            Some(&(1, 16))
        );
        assert_eq!((t.records, t.total_calls), (5, 3));
        assert_eq!(t.newest_start.unwrap().to_string(), "2023-05-12 10:47:46");
        let back: Truth = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn legs_order_numerically_and_drop_forkcdr_copies() {
        let mut e = json!({"cdr": "x", "main_cdr": {"start": "2024-01-01 00:00:00"}});
        for n in 1..=11 {
            let app = if n == 1 { "ForkCDR" } else { "Dial" };
            e[format!("sub_cdr_{n}")] = json!({"lastapp": app, "dst": n.to_string()});
        }
        let dsts: Vec<&str> = legs(&e).iter().map(|l| field(l, "dst")).collect();
        assert_eq!(dsts, ["2", "3", "4", "5", "6", "7", "8", "9", "10", "11"]);
        // A ForkCDR leg with a span of its own is a part of the call, and alone it is the call.
        e["sub_cdr_1"]["start"] = json!("2023-12-31 23:59:40");
        assert_eq!(legs(&e).len(), 11);
        let only_fork = json!({"lastapp": "ForkCDR", "start": "2024-01-01 00:00:00"});
        assert_eq!(legs(&only_fork).len(), 1);
        assert!(classify(&only_fork).is_some());
    }

    #[test]
    fn empty_userfield_falls_back_to_trunk_names() {
        let mut e = flat_example();
        e["userfield"] = json!("");
        e["src_trunk_name"] = json!("a");
        e["dst_trunk_name"] = json!("b");
        assert_eq!(classify(&e).unwrap().direction, "external");
        assert_eq!(classify(&e).unwrap().trunk, "a");
        e["src_trunk_name"] = json!("");
        assert_eq!(classify(&e).unwrap().direction, "outbound");
        assert_eq!(classify(&e).unwrap().trunk, "b");
    }

    // Group rules (queues, ring groups, IVRs): hand-written entries, one per scenario shape.

    /// The time `secs` after 10:00:00 on 2024-05-01, as CDRs print it.
    fn at(secs: i64) -> String {
        let t0 = NaiveDateTime::parse_from_str("2024-05-01 10:00:00", "%Y-%m-%d %H:%M:%S").unwrap();
        (t0 + chrono::Duration::seconds(secs))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    }

    /// An inbound leg from `start` s lasting `duration` s, `billsec` of them talked.
    fn gleg(
        start: i64,
        (duration, billsec): (i64, i64),
        disposition: &str,
        action: &str,
        dst: &str,
    ) -> Value {
        json!({"start": at(start), "duration": duration.to_string(), "billsec": billsec.to_string(),
               "disposition": disposition, "action_type": action, "dst": dst, "lastapp": "Dial",
               "dstchannel": "", "dstchannel_ext": "", "userfield": "Inbound",
               "channel": "PJSIP/trunk_2-00000001", "channel_ext": "trunk_2", "src_trunk_name": "groff"})
    }

    /// `l` rings (and, answered, talks to) extension `ext`.
    fn rings(mut l: Value, ext: &str) -> Value {
        l["dstchannel_ext"] = json!(ext);
        if l["disposition"] == "ANSWERED" {
            l["dstchannel"] = json!(format!("PJSIP/{ext}-0000000a"));
        }
        l
    }

    fn app(mut l: Value, lastapp: &str) -> Value {
        l["lastapp"] = json!(lastapp);
        l
    }

    fn hold(start: i64, secs: i64) -> Value {
        app(
            gleg(start, (secs, secs), "ANSWERED", "QUEUE[6500]", "6500"),
            "Queue",
        )
    }

    fn voicemail(
        start: i64,
        (duration, billsec): (i64, i64),
        disposition: &str,
        dst: &str,
    ) -> Value {
        let l = gleg(start, (duration, billsec), disposition, "VM", dst);
        app(rings(l, "2000"), "VoiceMail")
    }

    fn grouped(legs: Vec<Value>) -> Value {
        let mut e = json!({"cdr": "g", "main_cdr": {"start": legs[0]["start"].clone(), "action_type": "DIAL"}});
        for (n, l) in legs.into_iter().enumerate() {
            e[format!("sub_cdr_{}", n + 1)] = l;
        }
        e
    }

    fn visit(
        kind: &'static str,
        group: &str,
        outcome: &'static str,
        wait: u64,
        members: &[(&str, &'static str)],
    ) -> GroupVisit {
        GroupVisit {
            kind,
            group: group.into(),
            outcome,
            wait,
            members: members.iter().map(|(e, o)| (e.to_string(), *o)).collect(),
        }
    }

    #[test]
    fn ivr_to_queue_answered_by_the_second_agent() {
        let e = grouped(vec![
            app(
                gleg(0, (8, 8), "ANSWERED", "IVR[7000]", "7000"),
                "BackGround",
            ),
            hold(8, 26),
            rings(gleg(9, (15, 0), "NO ANSWER", "QUEUE[6500]", "6500"), "2004"),
            rings(
                gleg(24, (70, 60), "ANSWERED", "QUEUE[6500]", "6500"),
                "2006",
            ),
        ]);
        let c = classify(&e).unwrap();
        assert_eq!(c.disposition, "answered");
        assert_eq!(c.ivrs, vec![("7000".to_string(), "routed")]);
        // Entry 10:00:08; the answering leg starts 16 s later and rang 10 s.
        assert_eq!(
            c.groups,
            vec![visit(
                "queue",
                "6500",
                "answered",
                26,
                &[("2004", "missed"), ("2006", "answered")]
            )]
        );
    }

    #[test]
    fn queue_abandon_counts_plain_dial_agent_legs_as_the_queue_s() {
        // Firmware that writes agent legs as plain dials: action_type empty or DIAL (any case,
        // blanks around), dst the queue.
        let e = grouped(vec![
            hold(0, 40),
            rings(gleg(1, (20, 0), "NO ANSWER", "", "6500"), "2004"),
            rings(gleg(1, (39, 0), "NO ANSWER", " dial ", " 6500 "), "2006"),
        ]);
        let c = classify(&e).unwrap();
        assert_eq!(c.disposition, "no_answer");
        assert_eq!(
            c.groups,
            vec![visit(
                "queue",
                "6500",
                "abandoned",
                40,
                &[("2004", "missed"), ("2006", "missed")]
            )]
        );
        assert!(c.ivrs.is_empty());
    }

    #[test]
    fn queue_timeout_to_voicemail() {
        // The voicemail leg's dst is the queue, but VM is no plain dial: not one of its legs.
        let legs = |vm: Value| {
            grouped(vec![
                hold(0, 60),
                rings(gleg(1, (30, 0), "NO ANSWER", "QUEUE[6500]", "6500"), "2004"),
                rings(gleg(1, (59, 0), "NO ANSWER", "QUEUE[6500]", "6500"), "2007"),
                vm,
            ])
        };
        let members = [("2004", "missed"), ("2007", "missed")];
        let c = classify(&legs(voicemail(60, (20, 20), "ANSWERED", "6500"))).unwrap();
        assert_eq!(c.disposition, "voicemail");
        assert_eq!(
            c.groups,
            vec![visit("queue", "6500", "voicemail", 60, &members)]
        );
        // No message left: the queue merely gave up and the call went on.
        let c = classify(&legs(voicemail(60, (3, 0), "NO ANSWER", "2000"))).unwrap();
        assert_eq!(c.disposition, "no_answer");
        assert_eq!(
            c.groups,
            vec![visit("queue", "6500", "timeout", 60, &members)]
        );
        // A voicemail leg written as a plain dial to the queue is one of its legs, so neither
        // voicemail nor timeout applies: the call ended in the queue, by the letter of the rules.
        let mut plain = voicemail(60, (20, 20), "ANSWERED", "6500");
        plain["action_type"] = json!("");
        let c = classify(&legs(plain)).unwrap();
        assert_eq!(
            c.groups,
            vec![visit("queue", "6500", "abandoned", 80, &members)]
        );
    }

    #[test]
    fn queue_timeout_to_a_failover_extension() {
        for (disp, call) in [("ANSWERED", "answered"), ("NO ANSWER", "no_answer")] {
            let e = grouped(vec![
                hold(0, 60),
                rings(gleg(1, (45, 0), "NO ANSWER", "QUEUE[6500]", "6500"), "2004"),
                rings(
                    gleg(
                        60,
                        (35, if disp == "ANSWERED" { 25 } else { 0 }),
                        disp,
                        "DIAL",
                        "2000",
                    ),
                    "2000",
                ),
            ]);
            let c = classify(&e).unwrap();
            assert_eq!(c.disposition, call);
            // The failover leg starts at leave, not before: it is no answer of the queue's.
            assert_eq!(
                c.groups,
                vec![visit("queue", "6500", "timeout", 60, &[("2004", "missed")])]
            );
        }
    }

    #[test]
    fn ring_group_as_a_queue_member() {
        let rg = |ext: &str, disp: &str, billsec: i64| {
            rings(
                gleg(1, (12 + billsec, billsec), disp, "RINGGROUP[6400]", "6500"),
                ext,
            )
        };
        let e = grouped(vec![
            hold(0, 13),
            rg("2001", "NO ANSWER", 0),
            rg("2002", "ANSWERED", 90),
            rg("2003", "NO ANSWER", 0),
        ]);
        let c = classify(&e).unwrap();
        assert_eq!(c.disposition, "answered");
        // The queue's only leg is the hold leg; the group's leg that answered started inside the
        // queue's span, so it answered the queue too.
        assert_eq!(
            c.groups,
            vec![
                visit("queue", "6500", "answered", 13, &[]),
                visit(
                    "ringgroup",
                    "6400",
                    "answered",
                    12,
                    &[("2001", "missed"), ("2002", "answered"), ("2003", "missed")]
                ),
            ]
        );
        let e = grouped(vec![
            hold(0, 40),
            rg("2001", "NO ANSWER", 0),
            rg("2002", "NO ANSWER", 0),
            rg("2003", "NO ANSWER", 0),
        ]);
        let c = classify(&e).unwrap();
        assert_eq!(c.disposition, "no_answer");
        let missed = [("2001", "missed"), ("2002", "missed"), ("2003", "missed")];
        assert_eq!(
            c.groups,
            vec![
                visit("queue", "6500", "abandoned", 40, &[]),
                visit("ringgroup", "6400", "abandoned", 12, &missed),
            ]
        );
    }

    #[test]
    fn transfer_out_of_a_queue() {
        // The transfer leg's dst is the queue, but TRANSFER is no plain dial.
        let mut xfer = rings(gleg(106, (70, 60), "ANSWERED", "TRANSFER", "6500"), "2010");
        xfer["dcontext"] = json!("from-internal-xfer");
        let e = grouped(vec![
            hold(0, 6),
            rings(
                gleg(1, (105, 100), "ANSWERED", "QUEUE[6500]", "6500"),
                "2004",
            ),
            rings(gleg(1, (3, 0), "NO ANSWER", "QUEUE[6500]", "6500"), "2007"),
            xfer,
        ]);
        let c = classify(&e).unwrap();
        assert_eq!(c.disposition, "answered");
        assert_eq!(
            c.groups,
            vec![visit(
                "queue",
                "6500",
                "answered",
                6,
                &[("2004", "answered"), ("2007", "missed")]
            )]
        );
    }

    #[test]
    fn ivr_outcomes() {
        let menu = |lastapp: &str| {
            let mut l = app(gleg(0, (30, 30), "ANSWERED", "IVR[7000]", "7000"), lastapp);
            l["cdr"] = json!("flat");
            l
        };
        for (lastapp, outcome) in [
            ("Hangup", "timeout"),
            (" playback ", "timeout"),
            ("CONGESTION", "timeout"),
            ("BackGround", "hangup"),
            ("WaitExten", "hangup"),
            ("Read", "hangup"),
        ] {
            let c = classify(&menu(lastapp)).unwrap();
            assert_eq!(c.ivrs, vec![("7000".to_string(), outcome)], "{lastapp}");
            assert_eq!(c.disposition, "no_answer");
            assert!(c.groups.is_empty(), "IVRs get no group visit");
        }
        // Routed: the menu sends the caller to an extension.
        let e = grouped(vec![
            app(
                gleg(0, (12, 12), "ANSWERED", "IVR[7000]", "7000"),
                "BackGround",
            ),
            rings(gleg(12, (5, 0), "NO ANSWER", "DIAL", "2003"), "2003"),
        ]);
        assert_eq!(
            classify(&e).unwrap().ivrs,
            vec![("7000".to_string(), "routed")]
        );
        // Of two menu legs ending together, the first in leg order decides.
        let e = grouped(vec![
            app(
                gleg(0, (20, 20), "ANSWERED", "IVR[7000]", "7000"),
                "BackGround",
            ),
            app(
                gleg(10, (10, 10), "ANSWERED", "ivr[7000]", "7000"),
                "Hangup",
            ),
        ]);
        assert_eq!(
            classify(&e).unwrap().ivrs,
            vec![("7000".to_string(), "hangup")]
        );
    }

    #[test]
    fn ring_group_abandoned_voicemail_and_timeout() {
        let group = || {
            ["2001", "2002", "2003"]
                .map(|m| rings(gleg(0, (20, 0), "NO ANSWER", "RINGGROUP[6400]", "6400"), m))
                .to_vec()
        };
        let missed = [("2001", "missed"), ("2002", "missed"), ("2003", "missed")];
        let c = classify(&grouped(group())).unwrap();
        assert_eq!(
            c.groups,
            vec![visit("ringgroup", "6400", "abandoned", 20, &missed)]
        );
        let mut legs = group();
        legs.push(voicemail(20, (30, 30), "ANSWERED", "6400"));
        let c = classify(&grouped(legs)).unwrap();
        assert_eq!(c.disposition, "voicemail");
        assert_eq!(
            c.groups,
            vec![visit("ringgroup", "6400", "voicemail", 20, &missed)]
        );
        let mut legs = group();
        legs.push(rings(
            gleg(20, (10, 0), "NO ANSWER", "DIAL", "2000"),
            "2000",
        ));
        let c = classify(&grouped(legs)).unwrap();
        assert_eq!(
            c.groups,
            vec![visit("ringgroup", "6400", "timeout", 20, &missed)]
        );
        // A leg that starts before the group gave up is no timeout.
        let mut legs = group();
        legs.push(rings(
            gleg(19, (10, 0), "NO ANSWER", "DIAL", "2000"),
            "2000",
        ));
        let c = classify(&grouped(legs)).unwrap();
        assert_eq!(c.groups[0].outcome, "abandoned");
    }

    #[test]
    fn only_well_formed_action_types_name_a_group() {
        let named =
            |a: &str| named_group(&json!({ "action_type": a })).map(|(k, g)| (k, g.to_string()));
        assert_eq!(named(" queue[ 6500 ] "), Some(("queue", "6500".into())));
        assert_eq!(named("RingGroup[6400]"), Some(("ringgroup", "6400".into())));
        assert_eq!(named("IVR[7000]\t"), Some(("ivr", "7000".into())));
        let long = "1".repeat(32);
        assert_eq!(
            named(&format!("QUEUE[{long}]")),
            Some(("queue", long.clone()))
        );
        for bad in [
            "QUEUE[6500]x",
            "QUEUE[ ]",
            "QUEUE[]",
            "QUEUE 6500",
            "QUEUE [6500]",
            "PARKEDCALL[71]",
            "QUEUE[6500",
            "DIAL",
            "",
        ] {
            assert_eq!(named(bad), None, "{bad}");
        }
        assert_eq!(named(&format!("QUEUE[{long}1]")), None);
    }

    #[test]
    fn group_truth_adds_merges_and_round_trips() {
        let calls = [
            // queue answered after 26 s, IVR routed
            grouped(vec![
                app(
                    gleg(0, (8, 8), "ANSWERED", "IVR[7000]", "7000"),
                    "BackGround",
                ),
                hold(8, 26),
                rings(gleg(9, (15, 0), "NO ANSWER", "QUEUE[6500]", "6500"), "2004"),
                rings(
                    gleg(24, (70, 60), "ANSWERED", "QUEUE[6500]", "6500"),
                    "2006",
                ),
            ]),
            // queue answered after 6 s
            grouped(vec![
                hold(0, 6),
                rings(
                    gleg(1, (105, 100), "ANSWERED", "QUEUE[6500]", "6500"),
                    "2004",
                ),
            ]),
            // queue abandoned after 40 s
            grouped(vec![
                hold(0, 40),
                rings(gleg(1, (20, 0), "NO ANSWER", "", "6500"), "2004"),
            ]),
        ];
        let mut whole = Truth::default();
        let mut halves = (Truth::default(), Truth::default());
        for (i, e) in calls.iter().enumerate() {
            let c = classify(e).unwrap();
            whole.add(&c);
            if i == 0 {
                halves.0.add(&c)
            } else {
                halves.1.add(&c)
            }
        }
        let k3 = |o: &str| key3("queue", "6500", o);
        assert_eq!(
            whole.group_calls,
            BTreeMap::from([(k3("answered"), 2), (k3("abandoned"), 1)])
        );
        assert_eq!(whole.group_wait[&k3("answered")], (2, 32));
        assert_eq!(whole.group_wait[&k3("abandoned")], (1, 40));
        let within = |o: &str, level: u64| {
            whole.group_wait_within[&("queue".into(), "6500".into(), o.into(), level)]
        };
        assert_eq!(
            SERVICE_LEVELS.map(|l| within("answered", l)),
            [1, 1, 2, 2],
            "6 s and 26 s against 10, 20, 30, 60"
        );
        assert_eq!(SERVICE_LEVELS.map(|l| within("abandoned", l)), [0, 0, 0, 1]);
        assert_eq!(whole.group_wait_within.len(), 8);
        let m = |e: &str, o: &str| {
            (
                "queue".to_string(),
                "6500".to_string(),
                e.to_string(),
                o.to_string(),
            )
        };
        assert_eq!(
            whole.group_members,
            BTreeMap::from([
                (m("2004", "missed"), 2),
                (m("2004", "answered"), 1),
                (m("2006", "answered"), 1)
            ])
        );
        assert_eq!(
            whole.ivr_calls,
            BTreeMap::from([(("7000".to_string(), "routed".to_string()), 1)])
        );
        let mut merged = halves.0.clone();
        merged.merge(&halves.1);
        assert_eq!(merged, whole);
        let back: Truth = serde_json::from_str(&serde_json::to_string(&whole).unwrap()).unwrap();
        assert_eq!(back, whole);
        // A truth written before the group maps existed still reads.
        let mut old = serde_json::to_value(Truth::default()).unwrap();
        for k in [
            "group_calls",
            "group_wait",
            "group_wait_within",
            "group_members",
            "ivr_calls",
        ] {
            old.as_object_mut().unwrap().remove(k);
        }
        assert_eq!(
            serde_json::from_value::<Truth>(old).unwrap(),
            Truth::default()
        );
    }

    #[test]
    fn calls_without_groups_have_no_visits() {
        for e in [flat_example(), grouped_example(), parked_example()] {
            let c = classify(&e).unwrap();
            assert!(c.groups.is_empty() && c.ivrs.is_empty());
        }
    }
}
