//! The counting rules (docs/design.md §6) end to end: CDR fixtures shaped like the device
//! captures of docs/ucm-api.md §5.2 are served by the simulator over HTTPS, polled, and the scrape is compared
//! with the expected label values and with the simulator's independent classifier.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use ucm_sim::SimConfig;

const FIXTURES: [&str; 10] = [
    "flat_internal_answered",
    "grouped_inbound_voicemail",
    "grouped_parked_daisy",
    "ivr_hangup_no_answer",
    "queue_abandon_no_answer",
    "ringall_overlapping",
    "busy",
    "failed",
    "voicemail_variants",
    "forkcdr",
];

#[tokio::test]
async fn fixtures_of_every_rule_are_classified_as_documented() {
    let sim = start_sim(SimConfig {
        calls_per_hour: 0.0,
        ..busy_sim_config(51)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (mut poller, metrics) = poller(&sim, target_for(&sim, "office"), dir.path());
    poller.poll_and_record().await.unwrap();
    let t0 = sim.now();
    let base = t0 - chrono::Duration::hours(3);
    let mut n = 0;
    for name in FIXTURES {
        let path = format!(
            "{}/tests/fixtures/cdr/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let page: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for mut entry in page["cdr_root"].as_array().unwrap().iter().cloned() {
            let mut starts = Vec::new();
            entry_starts(&entry, &mut starts);
            let Some(first) = starts.into_iter().min() else {
                continue;
            };
            shift_entry(&mut entry, base + chrono::Duration::minutes(2 * n) - first);
            sim.add_call(entry);
            n += 1;
        }
    }
    sim.advance(Duration::from_secs(60));
    poller.poll_and_record().await.unwrap();
    let scrape = Scrape::of(&metrics);
    // Only the injected fixtures exist (no generated traffic), whose ends lie before t0.
    let truth = sim.truth(t0 - chrono::Duration::days(1), sim.now());
    assert_matches_truth(&scrape, &truth);

    let calls = |d: &str, t: &str, disp: &str| {
        scrape.value(
            "ucm_calls_total",
            &[("direction", d), ("trunk", t), ("disposition", disp)],
        )
    };
    let ext = |e: &str, role: &str, disp: &str| {
        scrape.get(
            "ucm_extension_calls_total",
            &[("extension", e), ("role", role), ("disposition", disp)],
        )
    };
    // The three device captures of docs/ucm-api.md §5.2.
    assert!(calls("internal", "", "answered") >= 1.0);
    assert!(ext("2001", "caller", "answered").unwrap_or(0.0) >= 1.0);
    assert!(ext("2000", "callee", "answered").unwrap_or(0.0) >= 1.0);
    assert_eq!(calls("inbound", "groff", "voicemail"), 1.0);
    assert_eq!(ext("2004", "callee", "voicemail"), Some(1.0));
    assert_eq!(calls("inbound", "Daisy", "answered"), 1.0);
    assert_eq!(ext("203", "callee", "answered"), Some(1.0));
    assert_eq!(
        scrape.value(
            "ucm_extension_talk_seconds_total",
            &[("extension", "203"), ("role", "callee")]
        ),
        30.0
    );
    // An IVR, a queue's hold music or a park slot is not a person answering.
    // The IVR hang-up and the queue abandon, both over trunk Telco; agents 1001 and 1002 rang.
    assert_eq!(calls("inbound", "Telco", "no_answer"), 2.0);
    assert_eq!(calls("inbound", "Telco", "answered"), 0.0);
    assert_eq!(
        ext("1001", "callee", "no_answer"),
        Some(1.0),
        "once per call, not per leg"
    );
    assert_eq!(ext("1002", "callee", "no_answer"), Some(1.0));
    for disp in ["answered", "voicemail", "no_answer", "busy", "failed"] {
        let total: f64 = scrape
            .by("ucm_calls_total", &["disposition"])
            .get(&vec![disp.to_string()])
            .copied()
            .unwrap_or(0.0);
        assert!(total >= 1.0, "no fixture call ended up {disp}");
    }
    // Every fixture entry is a call, also those made of one ForkCDR leg that copies nothing.
    assert_eq!(scrape.sum("ucm_calls_total") as usize, n as usize);
    sim.shutdown().await;
}
