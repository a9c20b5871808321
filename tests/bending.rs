//! A UCM (or a host) that bends what the polling rests on: each test switches one behaviour on
//! in the simulator and compares the exporter's counts with the simulator's ground truth. Each
//! names the guard it exercises; without that guard it fails.

mod common;

use std::time::Duration;

use common::*;
use ucm_exporter::poll::PollKind;

const MIN: Duration = Duration::from_secs(60);

/// A state file that cannot be written fails the poll with reason `state`, counts nothing of it,
/// and loses nothing: the next poll reads the same window and counts those calls.
/// (Guard: `Poller::commit` unmarks the poll's keys when the save fails.)
#[tokio::test]
async fn a_state_file_that_cannot_be_written_fails_the_poll_and_loses_nothing() {
    let sim = start_sim(busy_sim_config(71)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut target = target_for(&sim, "office");
    target.sweep_interval = Duration::ZERO;
    let (mut poller, metrics) = poller(&sim, target, dir.path());
    poller.poll_and_record().await.unwrap();
    let t0 = sim.now();
    // A directory where the state's temporary file goes: the write fails even for root, for
    // whom a read-only directory would not.
    let blocker = dir.path().join("office.json.tmp");
    std::fs::create_dir(&blocker).unwrap();
    sim.advance(MIN * 20);
    let err = poller.poll_and_record().await.unwrap_err();
    assert_eq!(err.reason().as_str(), "state", "{err}");
    assert!(err.to_string().contains("office.json"), "names the path: {err}");
    let scrape = Scrape::of(&metrics);
    assert_eq!(scrape.sum("ucm_calls_total"), 0.0, "nothing of the failed poll counts");
    assert_eq!(
        scrape.value("ucm_poll_errors_total", &[("reason", "state")]),
        1.0
    );
    assert_eq!(scrape.value("ucm_up", &[]), 0.0);

    std::fs::remove_dir(&blocker).unwrap();
    sim.advance(MIN);
    poller.poll_and_record().await.unwrap();
    let truth = sim.truth(t0, sim.now());
    assert!(truth.total_calls > 100, "{}", truth.total_calls);
    assert_matches_truth(&Scrape::of(&metrics), &truth);
    sim.shutdown().await;
}

/// Raising `max_call_duration` between runs must not read back below the keys already
/// forgotten, or calls counted long ago would count again. (Guard: `PollState::pruned_below`.)
#[tokio::test]
async fn raising_max_call_duration_between_runs_counts_nothing_twice() {
    let sim = start_sim(busy_sim_config(72)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut target = target_for(&sim, "office");
    target.sweep_interval = Duration::ZERO;
    // Longer than the simulator's longest calls (2 h), so the first run is exact too.
    target.max_call_duration = MIN * 150;
    let (mut first, m1) = poller(&sim, target.clone(), dir.path());
    first.poll_and_record().await.unwrap();
    let t0 = sim.now();
    for _ in 0..12 {
        sim.advance(MIN * 20);
        first.poll_and_record().await.unwrap();
    }
    let t1 = sim.now();
    assert_matches_truth(&Scrape::of(&m1), &sim.truth(t0, t1));
    first.close().await;

    target.max_call_duration = MIN * 360;
    let (mut second, m2) = poller(&sim, target, dir.path());
    sim.advance(MIN * 10);
    let r = second.poll_and_record().await.unwrap();
    assert_eq!(r.kind, PollKind::Sweep);
    assert_matches_truth(&Scrape::of(&m2), &sim.truth(t1, sim.now()));
    sim.shutdown().await;
}

/// Lowering it, and changing overlap and sweep interval, between runs: exact as well.
#[tokio::test]
async fn lowering_max_call_duration_and_changing_windows_between_runs_stays_exact() {
    let sim = start_sim(busy_sim_config(73)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut target = target_for(&sim, "office");
    target.sweep_interval = MIN * 10;
    let (mut first, m1) = poller(&sim, target.clone(), dir.path());
    first.poll_and_record().await.unwrap();
    let t0 = sim.now();
    for _ in 0..4 {
        sim.advance(MIN * 10);
        first.poll_and_record().await.unwrap();
    }
    let t1 = sim.now();
    assert_matches_truth(&Scrape::of(&m1), &sim.truth(t0, t1));
    first.close().await;

    target.max_call_duration = MIN * 150;
    target.overlap = MIN * 3;
    target.sweep_interval = MIN * 30;
    let (mut second, m2) = poller(&sim, target, dir.path());
    for _ in 0..7 {
        sim.advance(MIN * 5);
        second.poll_and_record().await.unwrap();
    }
    sim.advance(MIN * 30);
    assert_eq!(second.poll_and_record().await.unwrap().kind, PollKind::Sweep);
    assert_matches_truth(&Scrape::of(&m2), &sim.truth(t1, sim.now()));
    sim.shutdown().await;
}

/// A wrong password costs the UCM at most three login attempts an hour, however often the
/// exporter restarts and whatever `check` runs meanwhile, so the UCM's login security (5 by
/// default) never blacklists the exporter's IP; a corrected password is tried at once.
/// (Guard: `ucm::login_guard`, the count shared through the state directory.)
#[tokio::test]
async fn a_wrong_password_costs_at_most_three_logins_an_hour_across_restarts_and_check() {
    let sim = start_sim(ucm_sim::SimConfig {
        password: "the-right-one".into(),
        ..busy_sim_config(74)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let target = target_for(&sim, "office");
    let t0 = sim.now();
    for run in 0..5 {
        let (mut p, metrics) = poller(&sim, target.clone(), dir.path());
        for _ in 0..5 {
            let err = p.poll_and_record().await.unwrap_err();
            assert_eq!(err.reason().as_str(), "auth", "{err}");
            sim.advance(MIN);
        }
        assert_eq!(Scrape::of(&metrics).value("ucm_up", &[]), 0.0);
        p.close().await;
        if run == 2 {
            let settings = ucm_exporter::config::Settings::new(dir.path(), vec![target.clone()]);
            let (lines, ok) =
                ucm_exporter::check::run(&settings, sim_clock(&sim), false).await;
            assert!(!ok);
            assert!(lines[0].contains("FAILED (auth)"), "{lines:?}");
        }
    }
    assert!(sim.now() - t0 < chrono::Duration::hours(1));
    assert_eq!(sim.stats().logins_failed, 3, "three attempts in the hour, then none");

    // An hour after the third, one more attempt; then none for another hour.
    sim.advance(MIN * 40);
    let (mut p, _) = poller(&sim, target.clone(), dir.path());
    for _ in 0..3 {
        p.poll_and_record().await.unwrap_err();
        sim.advance(MIN);
    }
    assert_eq!(sim.stats().logins_failed, 4);

    // The right password is tried at once and clears the block.
    let mut fixed = target.clone();
    fixed.password = ucm_exporter::config::Secret::new("the-right-one");
    let (mut p, _) = poller(&sim, fixed, dir.path());
    p.poll_and_record().await.expect("a corrected password logs in at once");
    assert_eq!(sim.stats().logins_ok, 1);
    sim.shutdown().await;
}
