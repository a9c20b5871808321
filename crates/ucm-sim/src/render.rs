//! Renders generated calls as a UCM renders `cdr_root` entries: every value a string, flat
//! entries for single-leg calls, `main_cdr` + `sub_cdr_N` for the rest, and the firmware's
//! field set.

use std::fmt::Write;

use super::clock::fmt_secs;
use super::traffic::{Call, Leg};

/// Field layout of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// UCM62xx: top-level `cdr` equals the session, 33 keys per flat record (32 per `sub_cdr_N`
    /// and `main_cdr`), the IVR part of a call as a ForkCDR leg.
    Ucm62xx,
    /// UCM63xx: top-level `cdr` is `""`, 11 newer fields per leg (44 keys flat).
    Ucm63xx,
}

const NEWER_FIELDS: [&str; 11] = [
    "nat_call",
    "nat_call_peer",
    "video_call",
    "gdms_unique_code",
    "gds_call",
    "gsc_call",
    "wave_src_seqid",
    "wave_dst_seqid",
    "device_info",
    "device_info_peer",
    "recordfiles_desc",
];

/// Appends `s` as a JSON string literal.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn kv(out: &mut String, k: &str, v: &str) {
    if !out.ends_with('{') {
        out.push(',');
    }
    push_str(out, k);
    out.push(':');
    push_str(out, v);
}

/// The 32 leg fields in the order of the verbatim capture, as (key, value) pairs.
fn leg_fields(l: &Leg, acct_id: u64) -> [(&'static str, String); 32] {
    let answered = l.answered();
    [
        ("AcctId", acct_id.to_string()),
        ("accountcode", String::new()),
        ("src", l.src.clone()),
        ("dst", l.dst.clone()),
        ("dcontext", l.dcontext.clone()),
        ("clid", l.clid.clone()),
        ("channel", l.channel.clone()),
        ("dstchannel", l.dstchannel.clone()),
        ("lastapp", l.lastapp.clone()),
        ("lastdata", l.lastdata.clone()),
        ("start", fmt_secs(l.start)),
        (
            "answer",
            if answered {
                fmt_secs(l.start + l.ring)
            } else {
                String::new()
            },
        ),
        (
            "end",
            if l.endless {
                String::new()
            } else {
                fmt_secs(l.end())
            },
        ),
        ("duration", (l.ring + l.billsec).to_string()),
        ("billsec", l.billsec.to_string()),
        ("disposition", l.disposition.to_string()),
        ("amaflags", "DOCUMENTATION".into()),
        ("uniqueid", l.uniqueid.clone()),
        ("userfield", l.userfield.to_string()),
        ("channel_ext", l.channel_ext.clone()),
        ("dstchannel_ext", l.dstchannel_ext.clone()),
        ("service", "s".into()),
        ("caller_name", l.caller_name.clone()),
        ("recordfiles", l.recordfiles.clone()),
        ("dstanswer", l.dstanswer.clone()),
        ("chanext", String::new()),
        ("dstchanext", String::new()),
        ("session", l.session.clone()),
        ("action_owner", l.action_owner.clone()),
        ("action_type", l.action_type.clone()),
        ("src_trunk_name", l.src_trunk_name.clone()),
        ("dst_trunk_name", l.dst_trunk_name.clone()),
    ]
}

fn newer_value(l: &Leg, key: &str) -> String {
    match key {
        "nat_call" | "nat_call_peer" | "video_call" | "gds_call" | "gsc_call" => "no".into(),
        "device_info" if !l.channel_ext.starts_with("trunk_") => "GXP2170".into(),
        "device_info_peer"
            if !l.dstchannel.is_empty() && !l.dstchannel_ext.starts_with("trunk_") =>
        {
            "GXP2160".into()
        }
        "recordfiles_desc" if !l.recordfiles.is_empty() => {
            format!(
                "duration={},size={}B,start-time={}@",
                l.billsec,
                l.billsec * 16000,
                l.start
            )
        }
        _ => String::new(),
    }
}

fn push_leg(out: &mut String, l: &Leg, acct_id: u64, layout: Layout) {
    for (k, v) in leg_fields(l, acct_id) {
        // UCM62xx firmware writes the IVR part of a call as a ForkCDR leg of its own.
        if k == "lastapp" && l.ivr_part && layout == Layout::Ucm62xx {
            kv(out, k, "ForkCDR");
            continue;
        }
        kv(out, k, &v);
    }
    if layout == Layout::Ucm63xx {
        for k in NEWER_FIELDS {
            kv(out, k, &newer_value(l, k));
        }
    }
}

/// Renders `call`, numbering its legs' AcctId from `first_acct_id`.
pub fn render(call: &Call, first_acct_id: u64, layout: Layout) -> String {
    let first = &call.legs[0];
    let cdr = if layout == Layout::Ucm62xx {
        first.session.as_str()
    } else {
        ""
    };
    let mut out = String::with_capacity(1200 * (call.legs.len() + 1));
    out.push('{');
    kv(&mut out, "cdr", cdr);
    if call.legs.len() == 1 && !call.grouped {
        push_leg(&mut out, first, first_acct_id, layout);
        out.push('}');
        return out;
    }
    // main_cdr: a summary whose duration/billsec are the sums over the legs; only src, dst,
    // start, duration, billsec, session and action_type are filled.
    let duration: i64 = call.legs.iter().map(|l| l.ring + l.billsec).sum();
    let billsec: i64 = call.legs.iter().map(|l| l.billsec).sum();
    out.push_str(",\"main_cdr\":{");
    for (k, _) in leg_fields(first, 0) {
        let v = match k {
            "src" => first.src.clone(),
            "dst" => first.dst.clone(),
            "start" => fmt_secs(call.start()),
            "duration" => duration.to_string(),
            "billsec" => billsec.to_string(),
            "session" => first.session.clone(),
            "action_type" => "DIAL".into(),
            _ => String::new(),
        };
        kv(&mut out, k, &v);
    }
    if layout == Layout::Ucm63xx {
        for k in NEWER_FIELDS {
            kv(&mut out, k, "");
        }
    }
    out.push('}');
    for (n, leg) in call.legs.iter().enumerate() {
        let _ = write!(out, ",\"sub_cdr_{}\":{{", n + 1);
        push_leg(&mut out, leg, first_acct_id + n as u64, layout);
        out.push('}');
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::calls_in_slot;
    use crate::truth::classify;
    use serde_json::Value;

    #[test]
    fn rendering_is_ucm_shaped() {
        let calls = calls_in_slot(3, 10 * 3600, (400.0, false), chrono_tz::UTC);
        let mut saw_grouped = false;
        for (i, c) in calls.iter().enumerate() {
            let layout = if i % 2 == 0 {
                Layout::Ucm62xx
            } else {
                Layout::Ucm63xx
            };
            let v: Value = serde_json::from_str(&render(c, 1, layout)).unwrap();
            let obj = v.as_object().unwrap();
            let per_leg = if layout == Layout::Ucm62xx { 32 } else { 43 };
            if let Some(main) = obj.get("main_cdr") {
                saw_grouped = true;
                assert_eq!(obj.len(), c.legs.len() + 2);
                let sum: i64 = (1..=c.legs.len())
                    .map(|n| {
                        obj[&format!("sub_cdr_{n}")]["duration"]
                            .as_str()
                            .unwrap()
                            .parse::<i64>()
                            .unwrap()
                    })
                    .sum();
                assert_eq!(main["duration"].as_str().unwrap(), sum.to_string());
                assert_eq!(main.as_object().unwrap().len(), per_leg);
            } else {
                assert_eq!(obj.len(), per_leg + 1);
            }
            assert_eq!(obj["cdr"] == "", layout == Layout::Ucm63xx);
            fn all_strings(v: &Value) -> bool {
                match v {
                    Value::Object(m) => m.values().all(all_strings),
                    Value::String(_) => true,
                    _ => false,
                }
            }
            assert!(all_strings(&v));
        }
        assert!(saw_grouped);
    }

    /// UCM62xx writes the IVR part of some calls as a ForkCDR leg with its own span, before the
    /// Dial leg that starts where it ends, or as the whole call; UCM63xx does not.
    #[test]
    fn ivr_parts_are_forkcdr_legs_on_ucm62xx() {
        let calls = calls_in_slot(5, 10 * 3600, (2000.0, false), chrono_tz::UTC);
        let (mut alone, mut before_dial) = (0, 0);
        for c in &calls {
            let forks = |layout| {
                let v: Value = serde_json::from_str(&render(c, 1, layout)).unwrap();
                let legs: Vec<Value> = match v.get("main_cdr") {
                    Some(_) => (1..=c.legs.len())
                        .map(|n| v[format!("sub_cdr_{n}")].clone())
                        .collect(),
                    None => vec![v.clone()],
                };
                (
                    legs.iter().filter(|l| l["lastapp"] == "ForkCDR").count(),
                    legs,
                )
            };
            assert_eq!(
                forks(Layout::Ucm63xx).0,
                usize::from(c.legs[0].lastapp == "ForkCDR")
            );
            let (n, legs) = forks(Layout::Ucm62xx);
            if !c.legs[0].ivr_part {
                continue;
            }
            assert_eq!(n, 1);
            assert_eq!(legs[0]["action_type"], "IVR[7000]");
            assert_eq!(legs[0]["disposition"], "ANSWERED");
            match legs.get(1) {
                None => alone += 1,
                Some(dial) => {
                    assert_eq!(dial["start"], legs[0]["end"]);
                    before_dial += 1;
                }
            }
        }
        assert!(alone > 0 && before_dial > 0, "{alone} {before_dial}");
    }

    /// Every scenario's stated outcome is what the classifier of `truth.rs` reads from the rendering.
    #[test]
    fn classifier_agrees_with_generator_intent() {
        let mut n = 0;
        let mut seen = std::collections::BTreeSet::new();
        let mut group_seen = std::collections::BTreeSet::new();
        for slot in 0..48 {
            for c in calls_in_slot(11, (400_000 + slot) * 3600, (300.0, false), chrono_tz::UTC) {
                let v: Value = serde_json::from_str(&render(&c, 1, Layout::Ucm62xx)).unwrap();
                let got = classify(&v).unwrap();
                assert_eq!(
                    (got.direction, got.trunk.as_str(), got.disposition),
                    (
                        c.intent.direction,
                        c.intent.trunk.as_str(),
                        c.intent.disposition
                    ),
                    "scenario {} rendered {v}",
                    c.intent.scenario
                );
                let groups: Vec<(&str, String, &str)> = got
                    .groups
                    .iter()
                    .map(|g| (g.kind, g.group.clone(), g.outcome))
                    .collect();
                assert_eq!(
                    groups, c.intent.groups,
                    "groups of scenario {} rendered {v}",
                    c.intent.scenario
                );
                let ivr: Vec<(String, &str)> = c
                    .intent
                    .ivr
                    .map(|o| (crate::traffic::IVR.to_string(), o))
                    .into_iter()
                    .collect();
                assert_eq!(
                    got.ivrs, ivr,
                    "IVR of scenario {} rendered {v}",
                    c.intent.scenario
                );
                for g in &got.groups {
                    group_seen.insert((g.kind, g.outcome));
                    for (_, o) in &g.members {
                        group_seen.insert((g.kind, o));
                    }
                }
                for (_, o) in &got.ivrs {
                    group_seen.insert(("ivr", o));
                }
                seen.insert((got.direction, got.disposition));
                n += 1;
            }
        }
        assert!(n > 3000, "only {n} calls");
        for d in ["inbound", "outbound", "internal", "external"] {
            for disp in ["answered", "no_answer", "busy"] {
                assert!(seen.contains(&(d, disp)), "never generated {d}/{disp}");
            }
        }
        for (d, disp) in [
            ("inbound", "voicemail"),
            ("internal", "voicemail"),
            ("inbound", "failed"),
            ("outbound", "failed"),
            ("internal", "failed"),
        ] {
            assert!(seen.contains(&(d, disp)), "never generated {d}/{disp}");
        }
        assert_eq!(group_seen, every_group_outcome());
    }

    /// (kind, outcome) of every group, member and IVR outcome the rules know.
    fn every_group_outcome() -> std::collections::BTreeSet<(&'static str, &'static str)> {
        let mut all = std::collections::BTreeSet::new();
        for kind in ["queue", "ringgroup"] {
            for o in ["answered", "abandoned", "timeout", "voicemail", "missed"] {
                all.insert((kind, o));
            }
        }
        for o in ["routed", "hangup", "timeout"] {
            all.insert(("ivr", o));
        }
        all
    }

    /// Within one busy hour of a few hundred calls, every group, member and IVR outcome occurs,
    /// whatever the seed.
    #[test]
    fn a_busy_hour_shows_every_group_outcome() {
        for seed in 1..=20 {
            // 10:00, the busiest hour: about 2.3 times the daily average.
            let calls = calls_in_slot(seed, 10 * 3600, (130.0, false), chrono_tz::UTC);
            assert!((200..450).contains(&calls.len()), "{}", calls.len());
            let mut seen = std::collections::BTreeSet::new();
            for c in &calls {
                let v: Value = serde_json::from_str(&render(c, 1, Layout::Ucm63xx)).unwrap();
                let got = classify(&v).unwrap();
                for g in &got.groups {
                    seen.insert((g.kind, g.outcome));
                    for (_, o) in &g.members {
                        seen.insert((g.kind, o));
                    }
                }
                for (_, o) in &got.ivrs {
                    seen.insert(("ivr", o));
                }
            }
            let missing: Vec<_> = every_group_outcome().difference(&seen).cloned().collect();
            assert!(missing.is_empty(), "seed {seed}: never {missing:?}");
        }
    }
}
