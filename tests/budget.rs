//! The hard request budget against the simulator: whatever the UCM bends (a page cap, an
//! ignored `offset`, any sort order, entries that yield no call, a second crowded with calls,
//! faults), a poll never sends more requests than its budget, and while no budget was spent the
//! counts are exactly the simulator's ground truth. And the hour's budget, once spent, fails the
//! polls with a reason of their own until the hour has passed, losing nothing.

mod common;

use std::time::Duration;

use common::*;
use proptest::prelude::*;
use ucm_sim::{Fault, FaultRule, Order, Quirks};

const MIN: Duration = Duration::from_secs(60);

/// How the simulated UCM bends the API in one case.
#[derive(Debug, Clone)]
struct Bends {
    seed: u64,
    page_cap: Option<usize>,
    ignore_offset: bool,
    order: Order,
    /// Summaries without legs, and entries whose leg starts do not parse.
    key_less: usize,
    bad_starts: usize,
    /// Calls that start in the same second.
    crowd: usize,
    fault: Option<Fault>,
}

fn bends() -> impl Strategy<Value = Bends> {
    (
        any::<u64>(),
        prop_oneof![Just(None), Just(Some(37)), Just(Some(100)), Just(Some(250))],
        any::<bool>(),
        prop_oneof![
            Just(Order::StartAsc),
            Just(Order::EndAsc),
            Just(Order::StartDesc)
        ],
        0usize..3,
        0usize..3,
        0usize..60,
        prop_oneof![
            Just(None),
            Just(Some(Fault::Http500)),
            Just(Some(Fault::SilentlyExpireAfterPages(2))),
            Just(Some(Fault::InvalidateAfterPages(1))),
        ],
    )
        .prop_map(
            |(seed, page_cap, ignore_offset, order, key_less, bad_starts, crowd, fault)| {
                // At a UCM that ignores `offset`, no request can reach the calls of a second
                // beyond its cap: exactness is asked only of what can be read.
                let crowd = match page_cap {
                    Some(cap) if ignore_offset => crowd.min(cap - 1),
                    _ => crowd,
                };
                Bends {
                    seed,
                    page_cap,
                    ignore_offset,
                    order,
                    key_less,
                    bad_starts,
                    crowd,
                    fault,
                }
            },
        )
}

fn at(t: chrono::NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Places the entries that yield no call and the crowded second, around `now`.
fn place_odd_entries(sim: &ucm_sim::SimHandle, b: &Bends) {
    let now = sim.now();
    for i in 0..b.key_less {
        let start = at(now - chrono::Duration::minutes(7 + 13 * i as i64));
        sim.add_call(serde_json::json!({
            "cdr": format!("summary-{i}"),
            "main_cdr": {"start": start, "session": format!("summary-{i}"), "duration": "60"}
        }));
    }
    for i in 0..b.bad_starts {
        let start = now - chrono::Duration::minutes(3 + 17 * i as i64);
        let mut leg = flat_call("2005", start, 40, &format!("bad-{i}"));
        leg["start"] = "2026-13-45 99:99:99".into();
        sim.add_call(serde_json::json!({
            "cdr": format!("bad-{i}"),
            "main_cdr": {"start": at(start), "session": format!("bad-{i}"), "duration": "40"},
            "sub_cdr_1": leg
        }));
    }
    let crowd = now + chrono::Duration::minutes(1);
    for i in 0..b.crowd {
        let ext = (2100 + i).to_string();
        sim.add_call(flat_call(&ext, crowd, 30, &format!("crowd-{i}")));
    }
}

/// A baseline, polls and sweeps at a UCM bent as `b`; a fault after the baseline, cleared
/// before the last sweep.
async fn poll_a_bent_ucm(b: Bends) -> Result<(), TestCaseError> {
    let sim = start_sim(ucm_sim::SimConfig {
        calls_per_hour: 300.0,
        ..busy_sim_config(b.seed)
    })
    .await;
    sim.set_quirks(Quirks {
        page_cap: b.page_cap,
        ignore_offset: b.ignore_offset,
        order: b.order,
        ..Default::default()
    });
    place_odd_entries(&sim, &b);
    let dir = tempfile::tempdir().unwrap();
    let mut target = target_for(&sim, "office");
    target.sweep_interval = MIN * 10;
    let (mut poller, metrics) = poller(&sim, target, dir.path());
    // Each call checks the poll's requests against its budget.
    let (base, _) = poll_within_budget(&sim, &mut poller, &metrics).await;
    prop_assert!(base.is_ok(), "{base:?}");
    let t0 = sim.now();
    if let Some(fault) = b.fault.clone() {
        sim.add_fault(FaultRule {
            fault,
            action: Some("cdrapi".into()),
            times: Some(1),
        });
    }
    for m in [1, 3, 10, 1, 2] {
        sim.advance(MIN * m);
        // A fault may fail a poll; the budget holds all the same.
        let _ = poll_within_budget(&sim, &mut poller, &metrics).await;
    }
    sim.clear_faults();
    sim.advance(MIN * 10);
    let (last, _) = poll_within_budget(&sim, &mut poller, &metrics).await;
    let scrape = Scrape::of(&metrics);
    if scrape.sum("ucm_request_budget_exhausted_total") == 0.0 {
        prop_assert!(last.is_ok(), "{last:?}");
        assert_matches_truth(&scrape, &sim.truth(t0, sim.now()));
    }
    sim.shutdown().await;
    Ok(())
}

proptest! {
    // Each case runs a simulator over HTTPS through nine polls: few cases, no file of
    // failures (a failing case prints its bends).
    #![proptest_config(ProptestConfig {
        cases: 16,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Requests per poll never exceed the poll's budget, and counts are exact whenever no
    /// budget was spent.
    #[test]
    fn requests_per_poll_stay_within_the_budget_and_counts_are_exact_within_it(b in bends()) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(poll_a_bent_ucm(b))?;
    }
}

/// A target whose hour's budget is spent fails its polls with reason `budget`, counted in
/// `ucm_request_budget_exhausted_total{scope="hour"}`, without sending a request; once an hour
/// has passed since the first of them, polls go on and every call counts once.
#[tokio::test]
async fn a_spent_hour_fails_polls_with_reason_budget_and_loses_nothing() {
    let sim = start_sim(busy_sim_config(95)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut target = target_for(&sim, "office");
    target.max_requests_per_hour = 100;
    let (mut poller, metrics) = poller(&sim, target, dir.path());
    poller.poll_and_record().await.expect("baseline");
    let t0 = sim.now();
    let mut failed = 0;
    for _ in 0..120 {
        sim.advance(Duration::from_secs(10));
        let before = requests_served(&sim);
        match poller.poll_and_record().await {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.reason().as_str(), "budget", "{e}");
                assert!(e.to_string().contains("hour"), "{e}");
                assert_eq!(requests_served(&sim), before, "nothing is sent");
                failed += 1;
            }
        }
    }
    assert!(
        failed > 0,
        "100 requests cannot last a baseline and 120 polls"
    );
    assert!(requests_served(&sim) <= 100);
    let scrape = Scrape::of(&metrics);
    assert_eq!(
        scrape.value("ucm_poll_errors_total", &[("reason", "budget")]),
        failed as f64
    );
    assert!(scrape.value("ucm_request_budget_exhausted_total", &[("scope", "hour")]) >= 1.0);
    sim.advance(MIN * 60);
    poller.poll_and_record().await.expect("a new hour");
    assert_matches_truth(&Scrape::of(&metrics), &sim.truth(t0, sim.now()));
    sim.shutdown().await;
}
