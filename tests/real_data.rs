//! Real UCM answers (tests/fixtures/real, sources in its README) through the whole pipeline:
//! served by the simulator over HTTPS, polled by the exporter, read back from its metrics. Every
//! expected value below is worked out by hand from the entries with the rules of
//! docs/design.md §6 and §6.1, one comment per call; none comes from the exporter's code or from
//! the simulator's truth.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use serde_json::Value;
use ucm_sim::SimConfig;

fn fixture(name: &str) -> Vec<Value> {
    let path = format!("{}/tests/fixtures/real/{name}", env!("CARGO_MANIFEST_DIR"));
    let page: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    page["cdr_root"].as_array().unwrap().clone()
}

fn map(pairs: &[(&[&str], f64)]) -> BTreeMap<Vec<String>, f64> {
    pairs
        .iter()
        .map(|(k, v)| (k.iter().map(|s| s.to_string()).collect(), *v))
        .collect()
}

#[tokio::test]
async fn real_cdrapi_answers_count_as_derived_by_hand() {
    let sim = start_sim(SimConfig {
        calls_per_hour: 0.0,
        ..busy_sim_config(61)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (mut poller, metrics) = poller(&sim, target_for(&sim, "office"), dir.path());
    poller.poll_and_record().await.unwrap();
    let base = sim.now() - chrono::Duration::hours(3);
    let mut n = 0;
    for name in ["ucm62xx_cdrapi.json", "ucm6302_cdrapi.json"] {
        for mut entry in fixture(name) {
            let mut s = Vec::new();
            entry_starts(&entry, &mut s);
            let first = s.into_iter().min().expect("every entry has a start");
            shift_entry(&mut entry, base + chrono::Duration::minutes(2 * n) - first);
            sim.add_call(entry);
            n += 1;
        }
    }
    assert_eq!(n, 27);
    sim.advance(Duration::from_secs(60));
    poller.poll_and_record().await.unwrap();
    // The same window again: nothing may count twice.
    sim.advance(Duration::from_secs(60));
    poller.poll_and_record().await.unwrap();
    let scrape = Scrape::of(&metrics);
    let expect = |name: &str, keys: &[&str], want: BTreeMap<Vec<String>, f64>| {
        assert_eq!(scrape.by(name, keys), want, "{name}");
    };

    // ucm62xx_cdrapi.json, in file order. "a → b" is channel_ext → dstchannel_ext; times are
    // offsets from the call's first leg; wait is "until answered" or "until the last leg ends".
    //  1. flat Internal, 2001 → 2000 ANSWERED with a dstchannel, 12 s, billsec 6: internal
    //     answered, talk 6, wait 12-6 = 6; caller 2001 answered, callee 2000 answered.
    //  2. flat Internal, 2001 → 2000 NO ANSWER, 8 s: internal no_answer, wait 8.
    //  3. flat Inbound (trunk groff), trunk_2 → 2000 ANSWERED, 24 s, billsec 18: inbound groff
    //     answered, talk 18, wait 6; callee 2000 answered.
    //  4. flat Outbound (dst trunk groff), 2000 → trunk_2 ANSWERED, 22 s, billsec 15: outbound
    //     groff answered, talk 15, wait 7; caller 2000 answered (trunk_2 is no extension).
    //  5. flat Inbound groff, trunk_2 → 2000 NO ANSWER, 0 s: inbound groff no_answer, wait 0.
    //  6. flat Outbound (dst trunk Telular-D), 2001 → o1 NO ANSWER, 19 s: outbound Telular-D
    //     no_answer, wait 19; caller 2001 no_answer (o1 is no extension).
    //  7. grouped Inbound groff: NO ANSWER to 2004 at 0 (0 s), then VoiceMail ANSWERED at 1
    //     (15 s): voicemail, wait 1+15 = 16; callee 2004 voicemail.
    //  8. flat Internal, 2000 → 2001, Dial ANSWERED without dstchannel, action_type VM, 9 s: a
    //     voicemail leg: voicemail, wait 9; caller 2000 voicemail, callee 2001 voicemail.
    //  9. grouped Internal, 2000 → 2001 BUSY at 0 (9 s, no end, no answer), VoiceMail ANSWERED
    //     at 1 (8 s): voicemail, wait max(9, 1+8) = 9; caller 2000 and callee 2001 voicemail.
    // 10. flat Internal, 2000 → 2001 FAILED (Set), 0 s, no end: failed, wait 0; caller 2000
    //     failed, callee 2001 failed.
    // 11. flat Internal, 2000 → "2" FAILED (Playback), 5 s, no end: failed, wait 5; caller 2000
    //     failed ("2" is too short for an extension).
    // 12. grouped Internal, 2100 → 2001 NO ANSWER at 0 (32 s), VoiceMail ANSWERED at 33 (9 s):
    //     voicemail, wait 33+9 = 42; caller 2100 voicemail, callee 2001 voicemail.
    // 13. flat Internal, 2100 → 22 FAILED (ExecIf), 0 s, no end: failed, wait 0; caller 2100
    //     failed, callee 22 failed.
    // 14. flat Internal, 2004 → an 11-digit number FAILED (Congestion), 7 s, no end: failed,
    //     wait 7; caller 2004 failed.
    // 15. flat Inbound groff, trunk_2 → 2000 FAILED (Wait), 2 s, no end: inbound groff failed,
    //     wait 2; callee 2000 failed.
    // 16. grouped Inbound groff, trunk_2 → 2100 BUSY at 0 (38 s, no end), VoiceMail ANSWERED at
    //     16 (22 s): voicemail, wait max(38, 16+22) = 38; callee 2100 voicemail.
    // 17. flat Internal, 2100 → 2006 BUSY, 0 s, no end: busy, wait 0; caller 2100 busy, callee
    //     2006 busy.
    // 18. grouped Inbound (trunk SIPUS_GW1): a ForkCDR leg at 0 (10 s, NO ANSWER) and the Dial
    //     leg at 0 (52 s, billsec 39, ANSWERED by 2100) on the same channel: the ForkCDR leg
    //     starts with the Dial leg, a copy, so 1 leg. answered, talk 39, wait 52-39 = 13;
    //     callee 2100 answered.
    // 19. flat Inbound (Telular-D): one ForkCDR leg, IVR[7000], ANSWERED without dstchannel,
    //     58 s: a call of that one leg: no_answer, wait 58; callee 7000 no_answer; IVR 7000:
    //     no leg after it and lastapp ForkCDR: hangup.
    // 20. grouped Inbound Telular-D: ForkCDR IVR[7000] ANSWERED without dstchannel at 0 (23 s),
    //     Dial IVR[7000] at 23 ANSWERED by 2100 (11 s, billsec 7): answered, talk 7, wait 23 +
    //     11-7 = 27; callees 7000 no_answer, 2100 answered; IVR 7000: both legs name it, none
    //     outside the visit, the last to end is a Dial leg: hangup.
    // 21. grouped Inbound Telular-D: ForkCDR IVR[7000] at 0 (23 s), Dial IVR[7000] NO ANSWER to
    //     2100 at 23 (3 s): no_answer, wait 26; callees 7000 and 2100 no_answer; IVR hangup.
    // 22. flat Inbound Telular-D, Playback IVR[7000] ANSWERED without dstchannel, 15 s:
    //     no_answer, wait 15; callee 7000 no_answer; IVR 7000: the menu played and hung up:
    //     timeout.
    // 23. grouped, first leg Outbound (dst trunk groff): 2100 → trunk_2 ANSWERED at 0 (179 s,
    //     billsec 174), then a TRANSFER leg trunk_2 → 2102 ANSWERED at 180 (356 s): outbound
    //     groff answered, talk 174+356 = 530, wait 179-174 = 5; caller 2100 answered (talk
    //     174), callee 2102 answered (talk 356).
    // 24. flat Internal, 2000 → an 11-digit number FAILED (Hangup), 4 s, no end: failed, wait
    //     4; caller 2000 failed.
    // ucm6302_cdrapi.json (UCM6302: `cdr` empty, 44 keys per leg):
    // 25. grouped Inbound (trunk Daisy): Park ANSWERED without dstchannel at 0 (35 s), Park
    //     ANSWERED to 203 with a dstchannel at 35 (30 s, billsec 30): answered, talk 30, wait
    //     35 + 0 = 35; callees 71 no_answer, 203 answered (talk 30).
    // 26. flat Internal, 203 → 71 ParkedCall ANSWERED without dstchannel, 31 s: no_answer, wait
    //     31; caller 203 no_answer, callee 71 no_answer.
    // 27. flat Outbound (Daisy), 230 → trunk_2 ANSWERED, 433 s, billsec 420: answered, talk
    //     420, wait 13; caller 230 answered (talk 420).
    let calls = map(&[
        (&["internal", "", "answered"], 1.0),           // 1
        (&["internal", "", "no_answer"], 2.0),          // 2, 26
        (&["internal", "", "voicemail"], 3.0),          // 8, 9, 12
        (&["internal", "", "failed"], 5.0),             // 10, 11, 13, 14, 24
        (&["internal", "", "busy"], 1.0),               // 17
        (&["inbound", "groff", "answered"], 1.0),       // 3
        (&["inbound", "groff", "no_answer"], 1.0),      // 5
        (&["inbound", "groff", "voicemail"], 2.0),      // 7, 16
        (&["inbound", "groff", "failed"], 1.0),         // 15
        (&["inbound", "SIPUS_GW1", "answered"], 1.0),   // 18
        (&["inbound", "Telular-D", "answered"], 1.0),   // 20
        (&["inbound", "Telular-D", "no_answer"], 3.0),  // 19, 21, 22
        (&["inbound", "Daisy", "answered"], 1.0),       // 25
        (&["outbound", "groff", "answered"], 2.0),      // 4, 23
        (&["outbound", "Telular-D", "no_answer"], 1.0), // 6
        (&["outbound", "Daisy", "answered"], 1.0),      // 27
    ]);
    expect(
        "ucm_calls_total",
        &["direction", "trunk", "disposition"],
        calls,
    );
    let talk = map(&[
        (&["internal", ""], 6.0),
        (&["inbound", "groff"], 18.0),
        (&["inbound", "SIPUS_GW1"], 39.0),
        (&["inbound", "Telular-D"], 7.0),
        (&["inbound", "Daisy"], 30.0),
        (&["outbound", "groff"], 15.0 + 530.0),
        (&["outbound", "Daisy"], 420.0),
    ]);
    expect("ucm_call_talk_seconds_sum", &["direction", "trunk"], talk);
    // Zero waits (5, 10, 13, 17) add nothing to a sum; their calls are in the counts above.
    let wait = map(&[
        (&["internal", "", "answered"], 6.0),
        (&["internal", "", "no_answer"], 8.0 + 31.0),
        (&["internal", "", "voicemail"], 9.0 + 9.0 + 42.0),
        (&["internal", "", "failed"], 5.0 + 7.0 + 4.0),
        (&["inbound", "groff", "answered"], 6.0),
        (&["inbound", "groff", "voicemail"], 16.0 + 38.0),
        (&["inbound", "groff", "failed"], 2.0),
        (&["inbound", "SIPUS_GW1", "answered"], 13.0),
        (&["inbound", "Telular-D", "answered"], 27.0),
        (&["inbound", "Telular-D", "no_answer"], 58.0 + 26.0 + 15.0),
        (&["inbound", "Daisy", "answered"], 35.0),
        (&["outbound", "groff", "answered"], 7.0 + 5.0),
        (&["outbound", "Telular-D", "no_answer"], 19.0),
        (&["outbound", "Daisy", "answered"], 13.0),
    ]);
    expect(
        "ucm_call_wait_seconds_sum",
        &["direction", "trunk", "disposition"],
        wait,
    );
    let extensions = map(&[
        (&["2001", "caller", "answered"], 1.0),  // 1
        (&["2001", "caller", "no_answer"], 2.0), // 2, 6
        (&["2000", "caller", "answered"], 1.0),  // 4
        (&["2000", "caller", "voicemail"], 2.0), // 8, 9
        (&["2000", "caller", "failed"], 3.0),    // 10, 11, 24
        (&["2100", "caller", "voicemail"], 1.0), // 12
        (&["2100", "caller", "failed"], 1.0),    // 13
        (&["2100", "caller", "busy"], 1.0),      // 17
        (&["2100", "caller", "answered"], 1.0),  // 23
        (&["2004", "caller", "failed"], 1.0),    // 14
        (&["203", "caller", "no_answer"], 1.0),  // 26
        (&["230", "caller", "answered"], 1.0),   // 27
        (&["2000", "callee", "answered"], 2.0),  // 1, 3
        (&["2000", "callee", "no_answer"], 2.0), // 2, 5
        (&["2000", "callee", "failed"], 1.0),    // 15
        (&["2001", "callee", "voicemail"], 3.0), // 8, 9, 12
        (&["2001", "callee", "failed"], 1.0),    // 10
        (&["2004", "callee", "voicemail"], 1.0), // 7
        (&["2100", "callee", "voicemail"], 1.0), // 16
        (&["2100", "callee", "answered"], 2.0),  // 18, 20
        (&["2100", "callee", "no_answer"], 1.0), // 21
        (&["22", "callee", "failed"], 1.0),      // 13
        (&["2006", "callee", "busy"], 1.0),      // 17
        (&["7000", "callee", "no_answer"], 4.0), // 19, 20, 21, 22
        (&["2102", "callee", "answered"], 1.0),  // 23
        (&["71", "callee", "no_answer"], 2.0),   // 25, 26
        (&["203", "callee", "answered"], 1.0),   // 25
    ]);
    expect(
        "ucm_extension_calls_total",
        &["extension", "role", "disposition"],
        extensions,
    );
    let extension_talk = map(&[
        (&["2001", "caller"], 6.0),        // 1
        (&["2000", "callee"], 6.0 + 18.0), // 1, 3
        (&["2000", "caller"], 15.0),       // 4
        (&["2100", "callee"], 39.0 + 7.0), // 18, 20
        (&["2100", "caller"], 174.0),      // 23
        (&["2102", "callee"], 356.0),      // 23
        (&["203", "callee"], 30.0),        // 25
        (&["230", "caller"], 420.0),       // 27
    ]);
    expect(
        "ucm_extension_talk_seconds_total",
        &["extension", "role"],
        extension_talk,
    );
    // 19, 20, 21; 22
    let ivrs = map(&[(&["7000", "hangup"], 3.0), (&["7000", "timeout"], 1.0)]);
    expect("ucm_ivr_calls_total", &["ivr", "outcome"], ivrs);
    assert!(scrape.by("ucm_group_calls_total", &["group"]).is_empty());
    // Legs: 16 flat entries, 7 grouped ones of 2 legs (ForkCDR segments included) and entry 18
    // of 1 in the first file; 2 + 1 + 1 in the second.
    assert_eq!(
        scrape.value("ucm_cdr_records_total", &[]),
        16.0 + 14.0 + 1.0 + 4.0
    );
    assert_eq!(scrape.sum("ucm_cdr_skipped_total"), 0.0);
    sim.shutdown().await;
}
