//! Ground truth: what the exporter should show for a set of CDR entries.
//!
//! This is a deliberately separate, literal reading of the counting rules of docs/design.md §6
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
    /// Legs (sub_cdr_N or flat), ForkCDR legs excluded, main_cdr never a leg.
    pub records: u64,
    pub newest_start: Option<NaiveDateTime>,
    pub total_calls: u64,
}

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

/// Legs in the rules' order: flat = itself; grouped = sub_cdr_N by numeric N; ForkCDR dropped.
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
    legs.into_iter()
        .map(|(_, v)| v)
        .filter(|l| !field(l, "lastapp").trim().eq_ignore_ascii_case("ForkCDR"))
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
    })
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
    fn legs_order_numerically_and_drop_forkcdr() {
        let mut e = json!({"cdr": "x", "main_cdr": {"start": "2024-01-01 00:00:00"}});
        for n in 1..=11 {
            let app = if n == 1 { "ForkCDR" } else { "Dial" };
            e[format!("sub_cdr_{n}")] = json!({"lastapp": app, "dst": n.to_string()});
        }
        let dsts: Vec<&str> = legs(&e).iter().map(|l| field(l, "dst")).collect();
        assert_eq!(dsts, ["2", "3", "4", "5", "6", "7", "8", "9", "10", "11"]);
        let only_fork = json!({"lastapp": "ForkCDR", "start": "2024-01-01 00:00:00"});
        assert_eq!(classify(&only_fork), None);
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
}
