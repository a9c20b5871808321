//! Fixture-driven tests of the counting rules (docs/design.md §6). Fixtures under `tests/fixtures/cdr/` are
//! `cdr_root` pages shaped like the device captures in docs/ucm-api.md §5.2; expected values are exact.

use chrono::NaiveDateTime;

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/cdr/",
            $name
        ))
        .as_slice()
    };
}

fn records(body: &[u8]) -> Vec<Entry<'_>> {
    match parse_cdr_response(body) {
        Ok(CdrResponse::Records(entries)) => entries,
        Ok(CdrResponse::Status { status, error_msg }) => panic!("status {status} {error_msg:?}"),
        Err(e) => panic!("{e}"),
    }
}

fn pattern() -> ExtensionPattern {
    ExtensionPattern::new(ExtensionPattern::DEFAULT).unwrap()
}

fn ts(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
}

fn call<'a>(entry: &'a Entry<'a>) -> Call<'a> {
    classify(entry, &pattern()).expect("entry classifies as a call")
}

/// Everything of a call but the keys, for one exact comparison per case.
#[derive(Debug, PartialEq)]
struct Summary<'a> {
    direction: Direction,
    trunk: &'a str,
    disposition: Disposition,
    talk: u64,
    wait: u64,
    caller: Option<&'a str>,
    callees: Vec<(&'a str, Disposition)>,
    extension_talk: Vec<(&'a str, Role, u64)>,
}

fn summary<'a>(c: &Call<'a>) -> Summary<'a> {
    Summary {
        direction: c.direction,
        trunk: c.trunk,
        disposition: c.disposition,
        talk: c.talk_seconds,
        wait: c.wait_seconds,
        caller: c.caller,
        callees: c.callees.clone(),
        extension_talk: c.extension_talk.clone(),
    }
}

use Direction::{External, Inbound, Internal, Outbound};
use Disposition::{Answered, Busy, Failed, NoAnswer, Voicemail};
use Role::{Callee, Caller};

#[test]
fn verbatim_flat_internal_answered() {
    let entries = records(fixture!("flat_internal_answered.json"));
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e.legs().len(), 1);
    assert!(e.main_cdr().is_none());
    assert_eq!(e.cdr(), "1683833430724538-2001");
    assert_eq!(e.start(), Some(ts("2023-05-11 16:30:30")));
    let leg = &e.legs()[0];
    assert_eq!((leg.duration, leg.billsec), (12, 6));
    let c = call(e);
    assert_eq!(c.start, ts("2023-05-11 16:30:30"));
    assert_eq!(
        summary(&c),
        Summary {
            direction: Internal,
            trunk: "",
            disposition: Answered,
            talk: 6,
            wait: 6, // 0 s before the leg + 12 s duration - 6 s billsec
            caller: Some("2001"),
            callees: vec![("2000", Answered)],
            extension_talk: vec![("2001", Caller, 6), ("2000", Callee, 6)],
        }
    );
    assert_eq!(c.leg_keys, vec![leg.key()]);
}

#[test]
fn verbatim_grouped_inbound_voicemail() {
    let entries = records(fixture!("grouped_inbound_voicemail.json"));
    let e = &entries[0];
    assert_eq!(
        e.main_cdr().map(|m| (&*m.session, &*m.start)),
        Some(("1683899266980541-1015", "2023-05-12 10:47:46"))
    );
    let acct: Vec<&str> = e.legs().iter().map(|l| &*l.acct_id).collect();
    assert_eq!(acct, ["24", "25"]);
    let c = call(e);
    assert_eq!(
        summary(&c),
        Summary {
            direction: Inbound,
            trunk: "groff",
            disposition: Voicemail,
            talk: 0,
            wait: 16, // 10:47:46 until the voicemail leg ends at 10:48:02
            caller: None,
            callees: vec![("2004", Voicemail)],
            extension_talk: vec![],
        }
    );
    assert_eq!(c.leg_keys.len(), 2);
}

#[test]
fn verbatim_parked_call_answered_by_203() {
    let entries = records(fixture!("grouped_parked_daisy.json"));
    let e = &entries[0];
    assert_eq!(e.cdr(), "");
    assert_eq!(e.start(), Some(ts("2022-08-22 09:33:56")));
    let c = call(e);
    assert_eq!(
        summary(&c),
        Summary {
            direction: Inbound,
            trunk: "Daisy",
            disposition: Answered,
            talk: 30,
            wait: 71, // park leg from 09:33:56, 203 picks up at 09:35:07 with no ring time
            caller: None,
            callees: vec![("203", Answered)],
            extension_talk: vec![("203", Callee, 30)],
        }
    );
}

#[test]
fn ivr_only_is_no_answer() {
    let entries = records(fixture!("ivr_hangup_no_answer.json"));
    assert_eq!(
        summary(&call(&entries[0])),
        Summary {
            direction: Inbound,
            trunk: "Telco",
            disposition: NoAnswer,
            talk: 0,
            wait: 14,
            caller: None,
            callees: vec![],
            extension_talk: vec![],
        }
    );
}

#[test]
fn queue_abandon_is_no_answer() {
    let entries = records(fixture!("queue_abandon_no_answer.json"));
    assert_eq!(
        summary(&call(&entries[0])),
        Summary {
            direction: Inbound,
            trunk: "Telco",
            disposition: NoAnswer,
            talk: 0,
            wait: 45, // latest end, not 45 + 20 + 20 + 15
            caller: None,
            callees: vec![("1001", NoAnswer), ("1002", NoAnswer)],
            extension_talk: vec![],
        }
    );
}

#[test]
fn ring_all_wait_is_latest_end_not_sum() {
    let entries = records(fixture!("ringall_overlapping.json"));
    assert_eq!(
        summary(&call(&entries[0])),
        Summary {
            direction: Internal,
            trunk: "",
            disposition: NoAnswer,
            talk: 0,
            wait: 20, // the legs add up to 59 s
            caller: Some("2001"),
            callees: vec![("2002", NoAnswer), ("2003", NoAnswer), ("2004", NoAnswer)],
            extension_talk: vec![],
        }
    );
    assert_eq!(
        summary(&call(&entries[1])),
        Summary {
            direction: Internal,
            trunk: "",
            disposition: Answered,
            talk: 33,
            wait: 7,
            caller: Some("2001"),
            callees: vec![("2002", NoAnswer), ("2003", Answered), ("2004", NoAnswer)],
            extension_talk: vec![("2001", Caller, 33), ("2003", Callee, 33)],
        }
    );
}

#[test]
fn busy_and_no_answer_beats_busy() {
    let entries = records(fixture!("busy.json"));
    assert_eq!(
        summary(&call(&entries[0])),
        Summary {
            direction: Internal,
            trunk: "",
            disposition: Busy,
            talk: 0,
            wait: 3,
            caller: Some("2001"),
            callees: vec![("2005", Busy)],
            extension_talk: vec![],
        }
    );
    assert_eq!(
        summary(&call(&entries[1])),
        Summary {
            direction: Internal,
            trunk: "",
            disposition: NoAnswer,
            talk: 0,
            wait: 27,
            caller: Some("2001"),
            callees: vec![("2005", Busy), ("2006", NoAnswer)],
            extension_talk: vec![],
        }
    );
}

#[test]
fn failed_congestion_unknown_and_busy_beats_failed() {
    let entries = records(fixture!("failed.json"));
    let calls: Vec<Summary> = entries.iter().map(|e| summary(&call(e))).collect();
    assert_eq!(
        calls[0],
        Summary {
            direction: Outbound,
            trunk: "Carrier",
            disposition: Failed,
            talk: 0,
            wait: 4,
            caller: Some("2001"),
            callees: vec![],
            extension_talk: vec![],
        }
    );
    assert_eq!((calls[1].disposition, calls[1].wait), (Failed, 1));
    assert_eq!(calls[1].callees, vec![("2007", Failed)]);
    assert_eq!(calls[2].disposition, Failed);
    assert_eq!(calls[2].callees, vec![("2008", Failed)]);
    assert_eq!(calls[3].disposition, Busy);
    assert_eq!(calls[3].callees, vec![("2009", Failed), ("2010", Busy)]);
    assert_eq!(calls[3].caller, Some("2001"));
}

#[test]
fn voicemail_variants() {
    let entries = records(fixture!("voicemail_variants.json"));
    let by_action_type = call(&entries[0]);
    assert_eq!(by_action_type.disposition, Voicemail);
    assert_eq!(by_action_type.callees, vec![("2002", Voicemail)]);
    assert_eq!(by_action_type.caller, Some("2001"));
    assert_eq!(
        (by_action_type.talk_seconds, by_action_type.wait_seconds),
        (0, 30)
    );

    assert_eq!(
        summary(&call(&entries[1])),
        Summary {
            direction: Internal,
            trunk: "",
            disposition: Answered,
            talk: 45,
            wait: 25, // 2003's leg starts 20 s in and rang 5 s
            caller: Some("2001"),
            callees: vec![("2002", Voicemail), ("2003", Answered)],
            extension_talk: vec![("2001", Caller, 45), ("2003", Callee, 45)],
        }
    );
    let unanswered = call(&entries[2]);
    assert_eq!(unanswered.disposition, NoAnswer);
    assert_eq!(unanswered.callees, vec![("2002", NoAnswer)]);
}

#[test]
fn forkcdr_copies_are_dropped_first() {
    let entries = records(fixture!("forkcdr.json"));
    assert_eq!(entries.len(), 3);
    let e = &entries[0];
    let acct: Vec<&str> = e.legs().iter().map(|l| &*l.acct_id).collect();
    assert_eq!(acct, ["602"]);
    let c = call(e);
    assert_eq!(c.start, ts("2023-11-14 09:00:00"));
    assert_eq!(
        summary(&c),
        Summary {
            direction: Outbound, // the ForkCDR copy before it says Internal
            trunk: "Carrier",
            disposition: Answered,
            talk: 56,
            wait: 4,
            caller: Some("2001"),
            callees: vec![],
            extension_talk: vec![("2001", Caller, 56)],
        }
    );
    assert_eq!(c.leg_keys.len(), 1);
    // A ForkCDR leg that copies no other leg is the call: ANSWERED without a destination
    // channel (an application answered), 70 s.
    for only_fork in &entries[1..] {
        assert_eq!(only_fork.legs().len(), 1);
        let c = call(only_fork);
        assert_eq!((c.direction, c.disposition), (Internal, NoAnswer));
        assert_eq!(c.wait_seconds, 70);
    }
}

#[test]
fn forkcdr_segments_are_legs_of_their_call() {
    let entries = records(fixture!("forkcdr_segments.json"));
    assert_eq!(entries.len(), 4);
    let apps =
        |e: &Entry<'_>| -> Vec<String> { e.legs().iter().map(|l| l.lastapp.to_string()).collect() };
    // 1. The IVR part as a ForkCDR leg (14:21:50, 23 s), the Dial leg from where it ends
    // (14:22:13, rang 4 s, talked 7 s): wait = 23 + 4. Both legs name IVR[7000], so no leg lies
    // outside the visit and the last to end is a Dial leg: `hangup` by §6.1.
    let ivr = call(&entries[0]);
    assert_eq!(apps(&entries[0]), ["ForkCDR", "Dial"]);
    assert_eq!((ivr.direction, ivr.disposition), (Inbound, Answered));
    assert_eq!((ivr.talk_seconds, ivr.wait_seconds), (7, 27));
    assert_eq!(ivr.start, ts("2023-10-18 14:21:50"));
    assert_eq!(ivr.ivrs.len(), 1);
    assert_eq!(ivr.ivrs[0].outcome, IvrOutcome::Hangup);
    // 2. A call of one flat ForkCDR leg in the IVR, 58 s: not answered by a person, the caller
    // hung up in the menu (lastapp is neither Hangup, Playback nor Congestion).
    let single = call(&entries[1]);
    assert_eq!((single.direction, single.disposition), (Inbound, NoAnswer));
    assert_eq!(single.wait_seconds, 58);
    assert_eq!(single.ivrs[0].outcome, IvrOutcome::Hangup);
    // 3. A ForkCDR leg with the Dial leg's channel and start but its own length (10 s NO
    // ANSWER) is a copy: its time lies within the Dial leg, answered after 13 s.
    let ring = call(&entries[2]);
    assert_eq!(apps(&entries[2]), ["Dial"]);
    assert_eq!(
        (ring.disposition, ring.wait_seconds, ring.talk_seconds),
        (Answered, 13, 39)
    );
    // 4. A copy (same channel and start as the Dial leg) goes, whatever its disposition and
    // dstchannel say; so does a second ForkCDR leg equal to the first in channel, start and
    // duration.
    assert_eq!(apps(&entries[3]), ["ForkCDR", "Dial"]);
    let acct: Vec<&str> = entries[3].legs().iter().map(|l| &*l.acct_id).collect();
    assert_eq!(acct, ["301", "303"]);
}

#[test]
fn forkcdr_segments_keep_the_call_key_of_the_other_legs() {
    // Before segments were kept, the ForkCDR leg was dropped and the Dial leg came first. The
    // key must not change, or an upgrade would count calls already counted again.
    let body = fixture!("forkcdr_segments.json");
    let mut page: serde_json::Value = serde_json::from_slice(body).unwrap();
    let first = page["cdr_root"][0].as_object_mut().unwrap();
    assert_eq!(first["sub_cdr_1"]["lastapp"], "ForkCDR");
    first.remove("sub_cdr_1");
    let without = serde_json::to_vec(&page).unwrap();
    let (now, then) = (records(body), records(&without));
    assert_eq!(now[0].legs().len(), 2);
    assert_eq!(then[0].legs().len(), 1);
    assert_eq!(now[0].call_key(), then[0].call_key());
}

#[test]
fn sub_cdr_numeric_order_and_non_object_subs() {
    let entries = records(fixture!("sub_cdr_order.json"));
    let e = &entries[0];
    let acct: Vec<&str> = e.legs().iter().map(|l| &*l.acct_id).collect();
    assert_eq!(
        acct,
        ["101", "102", "103", "104", "106", "107", "108", "109", "110", "111"]
    );
    assert_eq!(e.main_cdr().map(|m| &*m.start), Some("2023-11-14 15:00:01"));
    let c = call(e);
    assert_eq!((c.direction, c.trunk), (Inbound, "T1"));
    assert_eq!(c.wait_seconds, 20); // sub_cdr_11 ends at 15:00:21
    assert_eq!(c.callees.first(), Some(&("2001", NoAnswer)));
    assert_eq!(c.callees.last(), Some(&("2011", NoAnswer)));
    assert_eq!(c.leg_keys.len(), 10);
}

#[test]
fn direction_and_trunk_rules() {
    let entries = records(fixture!("direction_trunk.json"));
    let got: Vec<(Direction, &str)> = entries
        .iter()
        .map(|e| {
            let c = call(e);
            (c.direction, c.trunk)
        })
        .collect();
    assert_eq!(
        got,
        [
            (External, "InTrunk"), // empty userfield, both trunk names
            (Inbound, "InTrunk"),  // only src_trunk_name
            (Outbound, "OutTrunk"),
            (Internal, ""),
            (Outbound, "OutTrunk"), // unknown userfield "EXT" falls back
            (Inbound, ""),          // " inBOUND ", no trunk name anywhere
            (External, "Late"),     // first non-empty names over all legs, trimmed
            (Outbound, "OutTrunk"),
            (External, ""),
            (Internal, ""),
        ]
    );
}

#[test]
fn lenient_values() {
    let body = fixture!("lenient_values.json");
    let entries = records(body);
    assert_eq!(
        entries.len(),
        6,
        "the three non-object elements are skipped"
    );

    let numbers = &entries[0];
    let leg = &numbers.legs()[0];
    assert_eq!((&*leg.acct_id, leg.duration, leg.billsec), ("7", 12, 6));
    assert_eq!(leg.src_trunk_name, "");
    let c = call(numbers);
    assert_eq!(c.start, ts("2023-11-14 19:00:00"));
    assert_eq!(
        summary(&c),
        Summary {
            direction: Internal,
            trunk: "",
            disposition: Answered,
            talk: 6,
            wait: 6,
            caller: Some("2001"),
            callees: vec![("2000", Answered)],
            extension_talk: vec![("2001", Caller, 6), ("2000", Callee, 6)],
        }
    );

    let garbage_numbers = call(&entries[1]);
    assert_eq!(garbage_numbers.disposition, NoAnswer);
    assert_eq!(garbage_numbers.wait_seconds, 0);
    assert_eq!(entries[1].legs()[0].duration, 0);

    assert!(
        classify(&entries[2], &pattern()).is_none(),
        "start 'yesterday'"
    );
    assert_eq!(entries[2].start(), None);
    assert!(
        classify(&entries[3], &pattern()).is_none(),
        "a leg without start"
    );
    assert_eq!(entries[3].start(), Some(ts("2023-11-14 19:03:00")));
    assert_eq!(
        entries[4].legs().len(),
        1,
        "an empty object is a flat entry"
    );
    assert!(classify(&entries[4], &pattern()).is_none());

    let escaped = call(&entries[5]);
    assert_eq!(escaped.callees, vec![("2003", Answered)]);
    assert_eq!((escaped.talk_seconds, escaped.wait_seconds), (4, 6));
}

#[test]
fn numbers_and_strings_give_the_same_keys() {
    let as_strings = br#"{"cdr_root":[{"cdr":"","session":"s-1","AcctId":"7","start":"2023-11-14 19:00:00","duration":"12"}]}"#;
    let as_numbers = br#"{"cdr_root":[{"cdr":"","session":"s-1","AcctId":7,"start":"2023-11-14 19:00:00","duration":12,"x":[]}]}"#;
    let (a, b) = (records(as_strings), records(as_numbers));
    assert_eq!(a[0].call_key(), b[0].call_key());
    assert_eq!(a[0].legs()[0].key(), b[0].legs()[0].key());
}

#[test]
fn wrapped_response_form() {
    let entries = records(fixture!("wrapped.json"));
    assert_eq!(entries.len(), 1);
    assert_eq!(call(&entries[0]).talk_seconds, 7);
}

#[test]
fn top_level_cdr_root_wins_over_wrapped() {
    let body = br#"{"response":{"cdr_root":[{},{}]},"cdr_root":[{}],"status":0}"#;
    assert_eq!(records(body).len(), 1);
}

#[test]
fn empty_and_null_cdr_root() {
    assert!(records(br#"{"cdr_root": []}"#).is_empty());
    assert!(records(br#" {"cdr_root": null}"#).is_empty());
}

#[test]
fn error_envelope_is_status() {
    match parse_cdr_response(fixture!("error_envelope.json")).unwrap() {
        CdrResponse::Status { status, error_msg } => {
            assert_eq!((status, error_msg.as_deref()), (-6, Some("Cookie error")));
        }
        CdrResponse::Records(_) => panic!("records"),
    }
    for (body, want) in [
        (&br#"{"response":{},"status":-6}"#[..], -6),
        (br#"{"status":"-47","response":{"error_msg":""}}"#, -47),
        (br#"{"response":{"cdr_root":[]},"status":-8}"#, -8),
        (br#"{"response":{},"status":0}"#, 0),
    ] {
        match parse_cdr_response(body).unwrap() {
            CdrResponse::Status { status, error_msg } => {
                assert_eq!((status, error_msg), (want, None));
            }
            CdrResponse::Records(_) => panic!("records for {}", String::from_utf8_lossy(body)),
        }
    }
}

#[test]
fn html_page_is_html_error() {
    let page = b"\r\n<!DOCTYPE html>\n<html><head><TITLE>403\n Forbidden</TITLE></head><body>nope</body></html>";
    assert_eq!(
        parse_cdr_response(page).unwrap_err(),
        DecodeError::Html {
            title: "403 Forbidden".into()
        }
    );
    assert_eq!(
        parse_cdr_response(b"<html></html>").unwrap_err(),
        DecodeError::Html {
            title: String::new()
        }
    );
}

#[test]
fn broken_bodies() {
    let full = fixture!("flat_internal_answered.json");
    let truncated = &full[..full.len() / 2];
    let err = parse_cdr_response(truncated).unwrap_err();
    assert!(matches!(err, DecodeError::NotJson(_)), "{err:?}");
    assert!(err.to_string().len() < 200);
    assert!(
        !err.to_string().contains("2001"),
        "never quotes the body: {err}"
    );

    assert!(matches!(
        parse_cdr_response(b"").unwrap_err(),
        DecodeError::NotJson(_)
    ));
    assert!(matches!(
        parse_cdr_response(b"Forbidden").unwrap_err(),
        DecodeError::NotJson(_)
    ));
    for unexpected in [
        &b"{}"[..],
        b"[1,2]",
        b"{\"response\":{}}",
        b"{\"cdr_root\":\"x\"}",
    ] {
        let err = parse_cdr_response(unexpected).unwrap_err();
        assert!(matches!(err, DecodeError::Unexpected(_)), "{err:?}");
    }
}

#[test]
fn call_key_is_stable_and_distinct() {
    let body = fixture!("flat_internal_answered.json");
    let first = records(body);
    let again = records(body);
    assert_eq!(first[0].call_key(), again[0].call_key());
    // Fixed value: changing the key derivation re-counts every call in the overlap window after an upgrade.
    assert_eq!(first[0].call_key(), 0x7d12_d609_6bab_5f37);
    assert_eq!(first[0].legs()[0].key(), 0x1483_995e_f68c_b94a);

    let ring = records(fixture!("ringall_overlapping.json"));
    assert_ne!(ring[0].call_key(), ring[1].call_key());
    let legs: std::collections::HashSet<u64> = ring
        .iter()
        .flat_map(|e| e.legs().iter().map(Leg::key))
        .collect();
    assert_eq!(legs.len(), 6);

    // Empty top-level cdr: the key falls back to main_cdr's session, so equal-looking entries still differ.
    let daisy = records(fixture!("grouped_parked_daisy.json"));
    assert_ne!(
        daisy[0].call_key(),
        records(b"{\"cdr_root\":[{\"cdr\":\"\",\"main_cdr\":{}}]}")[0].call_key()
    );
}

#[test]
fn call_key_fallbacks() {
    let key = |body: &'static [u8]| records(body)[0].call_key();
    // cdr empty: main_cdr session, else the flat leg's session, else its uniqueid.
    assert_eq!(
        key(br#"{"cdr_root":[{"cdr":"","main_cdr":{"session":"S","start":"T"},"sub_cdr_1":{"AcctId":"1","start":"X"}}]}"#),
        key(br#"{"cdr_root":[{"cdr":"S","main_cdr":{"start":"T"},"sub_cdr_1":{"AcctId":"1","start":"Y"}}]}"#),
    );
    assert_eq!(
        key(br#"{"cdr_root":[{"cdr":"","session":"S","start":"T","AcctId":"1"}]}"#),
        key(br#"{"cdr_root":[{"cdr":"","uniqueid":"S","start":"T","AcctId":"1"}]}"#),
    );
    assert_ne!(
        key(br#"{"cdr_root":[{"cdr":"","session":"S","start":"T","AcctId":"1"}]}"#),
        key(br#"{"cdr_root":[{"cdr":"","session":"S","start":"T","AcctId":"2"}]}"#),
    );
}

#[test]
fn timestamps() {
    let t = ts("2023-05-11 16:30:30");
    for ok in [
        "2023-05-11 16:30:30",
        "2023-05-11T16:30:30",
        " 2023-05-11 16:30:30.999 ",
        "2023-05-11T16:30:30.5",
    ] {
        assert_eq!(parse_timestamp(ok), Some(t), "{ok}");
    }
    for bad in [
        "",
        "2023-05-11",
        "2023-05-11 16:30",
        "2023-13-11 16:30:30",
        "2023-05-11 16:30:30.",
        "2023-05-11 16:30:30+02:00",
        "2023/05/11 16:30:30",
        "2023-05-11 16:3x:30",
    ] {
        assert_eq!(parse_timestamp(bad), None, "{bad}");
    }
}

#[test]
fn extension_pattern() {
    let p = pattern();
    assert!(p.is_local("2001"));
    assert!(p.is_local("20"));
    assert!(!p.is_local("2"));
    assert!(!p.is_local(""));
    assert!(!p.is_local("07123456789"));
    assert!(!p.is_local("trunk_2"));
    let any = ExtensionPattern::new(".*").unwrap();
    assert!(!any.is_local("trunk_2"));
    assert!(!any.is_local("TRUNK_10"));
    assert!(!any.is_local(""));
    assert!(any.is_local("sales"));
    assert!(ExtensionPattern::new("(").is_err());
    // The default is checked by hand, without a regex: it must agree with the regex it names.
    let re = regex::Regex::new(ExtensionPattern::DEFAULT).unwrap();
    assert_eq!(p.as_str(), ExtensionPattern::DEFAULT);
    for ext in [
        "", "1", "12", "1234567", "12345678", "12\n", "\n12", "1 2", "١٢", "00", "+123", "trunk_12",
    ] {
        assert_eq!(p.is_local(ext), re.is_match(ext), "{ext:?}");
    }
}

#[test]
fn label_strings_and_order() {
    let names: Vec<&str> = Disposition::ALL.iter().map(|d| d.as_str()).collect();
    assert_eq!(
        names,
        ["answered", "voicemail", "no_answer", "busy", "failed"]
    );
    assert!(Disposition::ALL.windows(2).all(|w| w[0] > w[1]));
    let names: Vec<&str> = Direction::ALL.iter().map(|d| d.as_str()).collect();
    assert_eq!(names, ["inbound", "outbound", "internal", "external"]);
    let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(names, ["caller", "callee"]);
}

#[test]
fn only_internal_and_outbound_calls_have_a_caller_extension() {
    // An inbound trunk whose channel_ext looks like an extension number (some firmware writes
    // the DID there): it places no call from that "extension".
    let body = br#"{"cdr_root":[
        {"AcctId":"1","src":"030123","dst":"2001","channel":"PJSIP/trunk_1-0001","dstchannel":"PJSIP/2001-0002",
         "lastapp":"Dial","start":"2026-03-04 10:00:00","answer":"2026-03-04 10:00:05","end":"2026-03-04 10:01:05",
         "duration":"65","billsec":"60","disposition":"ANSWERED","userfield":"Inbound","channel_ext":"4711",
         "dstchannel_ext":"2001","session":"s1","src_trunk_name":"Telekom","dst_trunk_name":""},
        {"AcctId":"2","src":"2002","dst":"2003","channel":"PJSIP/2002-0003","dstchannel":"PJSIP/2003-0004",
         "lastapp":"Dial","start":"2026-03-04 10:02:00","answer":"2026-03-04 10:02:03","end":"2026-03-04 10:03:03",
         "duration":"63","billsec":"60","disposition":"ANSWERED","userfield":"Internal","channel_ext":"2002",
         "dstchannel_ext":"2003","session":"s2","src_trunk_name":"","dst_trunk_name":""}
    ]}"#;
    let entries = records(body);
    let inbound = call(&entries[0]);
    assert_eq!(inbound.direction, Direction::Inbound);
    assert_eq!(inbound.caller, None);
    assert_eq!(inbound.callees, vec![("2001", Disposition::Answered)]);
    let internal = call(&entries[1]);
    assert_eq!(internal.caller, Some("2002"));
}

/// (kind, group, outcome, wait, members) of each queue or ring group visit of one call.
type Visits<'a> = Vec<(
    GroupKind,
    &'a str,
    GroupOutcome,
    u64,
    Vec<(&'a str, MemberOutcome)>,
)>;

fn visits<'a>(c: &Call<'a>) -> Visits<'a> {
    c.groups
        .iter()
        .map(|v| {
            (
                v.kind,
                v.group,
                v.outcome,
                v.wait_seconds,
                v.members.clone(),
            )
        })
        .collect()
}

fn ivrs<'a>(c: &Call<'a>) -> Vec<(&'a str, IvrOutcome)> {
    c.ivrs.iter().map(|v| (v.ivr, v.outcome)).collect()
}

use GroupKind::{Queue, RingGroup};
use MemberOutcome::{Answered as Took, Missed};

#[test]
fn ivr_then_queue_answered_by_the_second_agent() {
    let entries = records(fixture!("groups_ivr_queue_second_agent.json"));
    let c = call(&entries[0]);
    assert_eq!(ivrs(&c), [("7000", IvrOutcome::Routed)]);
    // From entering the queue (12 s) to the second agent's leg (28 s) plus its 9 s of ringing.
    assert_eq!(
        visits(&c),
        [(
            Queue,
            "6500",
            GroupOutcome::Answered,
            25,
            vec![("2004", Missed), ("2006", Took)]
        )]
    );
    assert_eq!(c.disposition, Disposition::Answered);
}

#[test]
fn queue_abandoned_when_the_call_ends_in_it() {
    let entries = records(fixture!("groups_queue_abandon.json"));
    let c = call(&entries[0]);
    assert_eq!(
        visits(&c),
        [(
            Queue,
            "6500",
            GroupOutcome::Abandoned,
            47,
            vec![("2004", Missed), ("2006", Missed)]
        )]
    );
    assert_eq!(c.disposition, Disposition::NoAnswer);
}

#[test]
fn queue_timeout_to_voicemail_with_and_without_a_message() {
    let entries = records(fixture!("groups_queue_timeout_voicemail.json"));
    let (message, none) = (call(&entries[0]), call(&entries[1]));
    assert_eq!(
        visits(&message),
        [(
            Queue,
            "6500",
            GroupOutcome::Voicemail,
            60,
            vec![("2004", Missed)]
        )]
    );
    // No message left: the queue still gave up and the call went on.
    assert_eq!(
        visits(&none),
        [(
            Queue,
            "6500",
            GroupOutcome::Timeout,
            60,
            vec![("2004", Missed)]
        )]
    );
}

#[test]
fn queue_timeout_to_a_failover_extension_that_answers() {
    let entries = records(fixture!("groups_queue_failover.json"));
    let c = call(&entries[0]);
    // The call was answered, but not by the queue: 2000 took it after the queue gave up.
    assert_eq!(c.disposition, Disposition::Answered);
    assert_eq!(
        visits(&c),
        [(
            Queue,
            "6500",
            GroupOutcome::Timeout,
            90,
            vec![("2006", Missed)]
        )]
    );
}

#[test]
fn ring_group_as_a_queue_member_answers_for_both() {
    let entries = records(fixture!("groups_ringgroup_in_queue.json"));
    let c = call(&entries[0]);
    assert_eq!(
        visits(&c),
        [
            (Queue, "6500", GroupOutcome::Answered, 18, vec![]),
            (
                RingGroup,
                "6400",
                GroupOutcome::Answered,
                16,
                vec![("2002", Took), ("2001", Missed), ("2003", Missed)]
            ),
        ]
    );
}

#[test]
fn transfer_out_of_a_queue_stays_answered_by_the_agent() {
    let entries = records(fixture!("groups_queue_transfer.json"));
    let c = call(&entries[0]);
    assert_eq!(
        visits(&c),
        [(
            Queue,
            "6500",
            GroupOutcome::Answered,
            8,
            vec![("2007", Took)]
        )]
    );
    assert_eq!(
        c.callees,
        [
            ("2007", Disposition::Answered),
            ("2010", Disposition::Answered)
        ]
    );
}

#[test]
fn agent_legs_written_as_plain_dials_to_the_queue_number_are_members() {
    let entries = records(fixture!("groups_agent_legs_as_dial.json"));
    let c = call(&entries[0]);
    assert_eq!(
        visits(&c),
        [(
            Queue,
            "6500",
            GroupOutcome::Answered,
            30,
            vec![("2004", Missed), ("2007", Took), ("2006", Missed)]
        )]
    );
}

#[test]
fn ivr_outcomes_hangup_timeout_routed() {
    let entries = records(fixture!("groups_ivr_outcomes.json"));
    let got: Vec<_> = entries.iter().map(|e| ivrs(&call(e))).collect();
    assert_eq!(
        got,
        [
            vec![("7000", IvrOutcome::Hangup)],
            vec![("7000", IvrOutcome::Timeout)],
            vec![("7000", IvrOutcome::Routed)],
        ]
    );
    assert!(entries.iter().all(|e| call(e).groups.is_empty()));
}

#[test]
fn ring_group_nobody_answers_and_the_call_ends() {
    let entries = records(fixture!("groups_ringgroup_abandon.json"));
    let c = call(&entries[0]);
    assert_eq!(
        visits(&c),
        [(
            RingGroup,
            "6400",
            GroupOutcome::Abandoned,
            25,
            vec![("2001", Missed), ("2002", Missed), ("2003", Missed)]
        )]
    );
}

#[test]
fn calls_without_groups_have_no_visits() {
    let entries = records(fixture!("flat_internal_answered.json"));
    let c = call(&entries[0]);
    assert!(c.groups.is_empty() && c.ivrs.is_empty());
}
