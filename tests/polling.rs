//! Incremental collection against the simulator over HTTPS: every call counted exactly once,
//! across overlapping windows, paging, sweeps, session loss and restarts.

mod common;

use std::time::Duration;

use common::*;
use ucm_exporter::poll::PollKind;
use ucm_sim::{Fault, FaultRule};

const MIN: Duration = Duration::from_secs(60);

#[tokio::test]
async fn every_call_is_counted_exactly_once_across_many_overlapping_polls() {
    let sim = start_sim(busy_sim_config(7)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut target = target_for(&sim, "office");
    target.sweep_interval = MIN * 10;
    let (mut poller, metrics) = poller(&sim, target, dir.path());

    let baseline = poller.poll_and_record().await.expect("baseline poll");
    assert_eq!(baseline.kind, PollKind::Baseline);
    assert!(
        baseline.pages > 1,
        "six busy hours of history need paging: {baseline:?}"
    );
    let t0 = sim.now();
    assert_eq!(
        Scrape::of(&metrics).sum("ucm_calls_total"),
        0.0,
        "history is not counted"
    );

    // Steps of a few minutes (short overlapping windows), a long gap that needs several pages,
    // and a sweep whenever 10 simulated minutes have passed, for the long calls.
    let steps = [2, 3, 1, 5, 2, 45, 2, 4, 1, 30, 3, 2, 2, 70, 1, 5];
    let mut paged = false;
    let mut swept = 0;
    for m in steps {
        sim.advance(MIN * m);
        let r = poller.poll_and_record().await.expect("poll");
        paged |= r.pages > 1;
        swept += (r.kind == PollKind::Sweep) as u32;
    }
    // A last sweep catches the long calls that ended since the previous one.
    sim.advance(MIN * 10);
    let last = poller.poll_and_record().await.unwrap();
    assert_eq!(last.kind, PollKind::Sweep);
    assert!(paged, "some poll should have needed more than one page");
    assert!(swept >= 4, "sweeps happened {swept} times");

    let truth = sim.truth(t0, sim.now());
    assert!(
        truth.total_calls > 1500,
        "enough traffic to mean something: {}",
        truth.total_calls
    );
    let scrape = Scrape::of(&metrics);
    assert_matches_truth(&scrape, &truth);
    assert_eq!(scrape.value("ucm_up", &[]), 1.0);
    let newest = truth.newest_start.unwrap().and_utc().timestamp() as f64;
    assert_eq!(
        scrape.value("ucm_cdr_last_record_timestamp_seconds", &[]),
        newest
    );

    // Polling again with nothing new counts nothing.
    poller.poll_and_record().await.unwrap();
    assert_matches_truth(&Scrape::of(&metrics), &truth);
    sim.shutdown().await;
}

/// A backlog is read with the next page requested while the current one is decoded, on a
/// runtime where the two really overlap: counts stay exact, a session lost mid-way is recovered,
/// and the only extra cost is at most one request past the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_read_ahead_a_page_at_a_time() {
    let sim = start_sim(ucm_sim::SimConfig {
        cookie_ttl: Duration::from_secs(86400),
        ..busy_sim_config(21)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut target = target_for(&sim, "office");
    target.sweep_interval = Duration::ZERO;
    target.session_renew_after = Duration::from_secs(86400);
    let (mut poller, metrics) = poller(&sim, target, dir.path());
    let before = sim.stats();
    let baseline = poller.poll_and_record().await.unwrap();
    let after = sim.stats();
    assert!(baseline.pages >= 3, "{baseline:?}");
    // The request past the end is sent while the last page is decoded; when that page is short
    // the read ends and drops it, so whether it reached the UCM depends on the scheduler.
    let sent = after.requests["cdrapi"] - before.requests.get("cdrapi").copied().unwrap_or(0);
    let pages = baseline.pages as u64;
    assert!(
        (pages..=pages + 1).contains(&sent),
        "one request per page, at most one past the end: {sent} for {pages} pages"
    );
    let t0 = sim.now();
    sim.advance(MIN * 150);
    sim.add_fault(FaultRule {
        fault: Fault::InvalidateAfterPages(2),
        action: None,
        times: Some(1),
    });
    let logins_before = Scrape::of(&metrics).value("ucm_logins_total", &[]);
    let r = poller.poll_and_record().await.unwrap();
    assert!(r.pages >= 3, "{r:?}");
    let scrape = Scrape::of(&metrics);
    assert_eq!(scrape.value("ucm_logins_total", &[]), logins_before + 1.0);
    assert_matches_truth(&scrape, &sim.truth(t0, sim.now()));
    sim.shutdown().await;
}

/// Between sweeps a poll reads back only the overlap: one request, and exactly the calls that
/// started within the window it asked for. A call that ended in the step but started before
/// that window is counted by the next sweep, which the test then runs.
#[tokio::test]
async fn a_fast_poll_reads_only_the_overlap_and_costs_one_request() {
    let sim = start_sim(busy_sim_config(8)).await;
    let dir = tempfile::tempdir().unwrap();
    let target = target_for(&sim, "office");
    let (overlap, sweep_interval) = (target.overlap, target.sweep_interval);
    let (mut poller, metrics) = poller(&sim, target, dir.path());
    poller.poll_and_record().await.unwrap();
    let t0 = sim.now();
    let watermark = poller.state().unwrap().watermark.expect("calls were seen");
    let from = ucm_exporter::clock::from_local_secs(watermark) - overlap;
    let before = sim.stats();
    sim.advance(MIN);
    let r = poller.poll_and_record().await.unwrap();
    assert_eq!(r.kind, PollKind::Incremental);
    let after = sim.stats();
    assert_eq!(after.requests["cdrapi"] - before.requests["cdrapi"], 1);
    // 10 minutes of overlap at ~2000 calls/hour, not hours of history.
    let served = after.cdr_entries_served - before.cdr_entries_served;
    assert!(
        served < 1000,
        "served {served} entries for a one-minute step"
    );
    let t1 = sim.now();
    assert_matches_truth(&Scrape::of(&metrics), &sim.truth_started_from(t0, t1, from));
    // The next sweep counts the rest of the step's calls, and what ended since.
    sweep_after(&sim, &mut poller, sweep_interval).await;
    assert_matches_truth(&Scrape::of(&metrics), &sim.truth(t0, sim.now()));
    sim.shutdown().await;
}

#[tokio::test]
async fn cookie_expiry_in_the_middle_of_paging_loses_nothing() {
    // A day-long cookie: only the injected fault ends the session, not the clock jump.
    let sim = start_sim(ucm_sim::SimConfig {
        cookie_ttl: Duration::from_secs(86400),
        ..busy_sim_config(9)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut target = target_for(&sim, "office");
    // Every poll sweeps, so the exact comparison includes long calls.
    target.sweep_interval = Duration::ZERO;
    target.session_renew_after = Duration::from_secs(86400);
    let (mut poller, metrics) = poller(&sim, target, dir.path());
    poller.poll_and_record().await.unwrap();
    let t0 = sim.now();
    sim.advance(MIN * 50);
    sim.add_fault(FaultRule {
        fault: Fault::InvalidateAfterPages(1),
        action: None,
        times: Some(1),
    });
    let logins_before = Scrape::of(&metrics).value("ucm_logins_total", &[]);
    let r = poller
        .poll_and_record()
        .await
        .expect("the poll recovers by logging in again");
    assert!(r.pages >= 2, "{r:?}");
    let scrape = Scrape::of(&metrics);
    assert_eq!(scrape.value("ucm_logins_total", &[]), logins_before + 1.0);
    assert_eq!(
        scrape.value("ucm_poll_errors_total", &[("reason", "auth")]),
        0.0
    );
    assert_matches_truth(&scrape, &sim.truth(t0, sim.now()));
    sim.shutdown().await;
}

/// The session is renewed before the cookie's lifetime runs out, so the UCM never has to say
/// the session is gone: one login per `session_renew_after`, never one per poll.
#[tokio::test]
async fn logins_stay_at_one_per_cookie_lifetime() {
    let sim = start_sim(ucm_sim::SimConfig {
        cookie_ttl: Duration::from_secs(600),
        cookie_mode: ucm_sim::CookieMode::Absolute,
        ..busy_sim_config(10)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut target = target_for(&sim, "office");
    target.session_renew_after = Duration::from_secs(540);
    let (mut poller, metrics) = poller(&sim, target, dir.path());
    let t0 = sim.now();
    // An hour of polls a minute apart: logins at 0, 9, 18, 27, 36, 45 and 54 minutes.
    for _ in 0..60 {
        poller.poll_and_record().await.expect("no poll fails");
        sim.advance(MIN);
    }
    // An hour after the baseline: a sweep, so every call that ended is counted.
    assert_eq!(
        poller.poll_and_record().await.unwrap().kind,
        PollKind::Sweep
    );
    let scrape = Scrape::of(&metrics);
    assert_eq!(scrape.value("ucm_logins_total", &[]), 7.0);
    assert_eq!(scrape.value("ucm_login_failures_total", &[]), 0.0);
    assert_eq!(sim.stats().logins_ok, 7);
    assert_matches_truth(&scrape, &sim.truth(t0, sim.now()));
    sim.shutdown().await;
}

#[tokio::test]
async fn restart_counts_the_calls_of_the_downtime_once() {
    let sim = start_sim(busy_sim_config(11)).await;
    let dir = tempfile::tempdir().unwrap();
    let target = target_for(&sim, "office");

    let (mut first, m1) = poller(&sim, target.clone(), dir.path());
    first.poll_and_record().await.unwrap();
    let t0 = sim.now();
    sweep_after(&sim, &mut first, target.sweep_interval).await;
    let t1 = sim.now();
    assert_matches_truth(&Scrape::of(&m1), &sim.truth(t0, t1));
    first.close().await; // the clean-stop path: state saved, logged out

    sim.advance(MIN * 40); // the exporter is down
    let (mut second, m2) = poller(&sim, target.clone(), dir.path());
    // The counters continue from the state file, before the first poll.
    assert_matches_truth(&Scrape::of(&m2), &sim.truth(t0, t1));
    let r = second.poll_and_record().await.unwrap();
    assert_eq!(
        r.kind,
        PollKind::Sweep,
        "the saved state is used, and the first poll after a start sweeps"
    );
    assert_matches_truth(&Scrape::of(&m2), &sim.truth(t0, sim.now()));
    sweep_after(&sim, &mut second, target.sweep_interval).await;
    assert_matches_truth(&Scrape::of(&m2), &sim.truth(t0, sim.now()));
    sim.shutdown().await;
}

/// A process killed right after a commit that no scrape saw (here: dropped without its
/// clean stop) loses nothing: the file holds the commit's counts with its keys, and the next
/// process shows them before its first poll and counts on. Histograms too.
#[tokio::test]
async fn counters_continue_after_a_kill_right_after_a_commit_nobody_scraped() {
    let sim = start_sim(busy_sim_config(14)).await;
    let dir = tempfile::tempdir().unwrap();
    let target = target_for(&sim, "office");
    let (mut first, _) = poller(&sim, target.clone(), dir.path());
    first.poll_and_record().await.unwrap();
    let t0 = sim.now();
    let restored_at = sim.now();
    sweep_after(&sim, &mut first, target.sweep_interval).await;
    let t1 = sim.now();
    drop(first); // killed: no clean stop, no scrape of the last commit
    let (mut second, m) = poller(&sim, target.clone(), dir.path());
    let s = Scrape::of(&m);
    assert_matches_truth(&s, &sim.truth(t0, t1));
    assert_groups_match_truth(&s, &sim.truth(t0, t1));
    assert!(s.value("ucm_cdr_counters_restored_timestamp_seconds", &[]) > 0.0);
    let reset = s.value("ucm_cdr_counters_reset_timestamp_seconds", &[]);
    assert!(reset > 0.0 && reset <= restored_at.and_utc().timestamp() as f64 + 1.0);
    sim.advance(MIN * 15);
    second.poll_and_record().await.unwrap();
    drop(second);
    let (_third, m) = poller(&sim, target, dir.path());
    let s = Scrape::of(&m);
    assert_matches_truth(&s, &sim.truth(t0, sim.now()));
    assert_groups_match_truth(&s, &sim.truth(t0, sim.now()));
    assert_eq!(
        s.value("ucm_cdr_counters_reset_timestamp_seconds", &[]),
        reset,
        "the series count since the same moment"
    );
    sim.shutdown().await;
}

/// A poll that finds nothing new leaves the state file as the last write left it, so a quiet
/// UCM's polls cost no write; the next call counted is written before it shows, and a process
/// killed after quiet polls counts on exactly from the file they left.
#[tokio::test]
async fn a_poll_that_finds_nothing_new_writes_no_state_and_loses_nothing() {
    use std::os::unix::fs::MetadataExt;
    let sim = start_sim(ucm_sim::SimConfig {
        calls_per_hour: 0.0,
        ..busy_sim_config(16)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let target = target_for(&sim, "office");
    let file = dir.path().join("office.json");
    // Each write puts another inode under the name (the one the temporary file held), so the
    // inode number tells whether a poll wrote; the links held keep every number in use.
    let links = std::cell::Cell::new(0);
    let written = || {
        links.set(links.get() + 1);
        let held = dir.path().join(format!("held-{}", links.get()));
        std::fs::hard_link(&file, held).unwrap();
        std::fs::metadata(&file).unwrap().ino()
    };
    let (mut first, metrics) = poller(&sim, target.clone(), dir.path());
    let t0 = sim.now();
    poll_every(&sim, &mut first, MIN, 3).await;
    let quiet = written();
    poll_every(&sim, &mut first, MIN, 4).await;
    assert_eq!(written(), quiet, "quiet polls wrote the state");
    sim.add_call(flat_call("2001", sim.now(), 30, "one"));
    sim.advance(MIN * 2);
    first.poll_and_record().await.unwrap();
    assert_ne!(written(), quiet, "a counted call is written");
    assert_eq!(Scrape::of(&metrics).sum("ucm_calls_total"), 1.0);
    let counted = written();
    poll_every(&sim, &mut first, MIN, 3).await;
    assert_eq!(written(), counted);
    drop(first); // killed
    let (mut second, m) = poller(&sim, target, dir.path());
    assert_eq!(Scrape::of(&m).sum("ucm_calls_total"), 1.0);
    sim.add_call(flat_call("2002", sim.now(), 30, "two"));
    sim.advance(MIN * 2);
    second.poll_and_record().await.unwrap();
    assert_matches_truth(&Scrape::of(&m), &sim.truth(t0, sim.now()));
    assert_eq!(Scrape::of(&m).sum("ucm_calls_total"), 2.0);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_corrupt_state_file_means_a_new_baseline_not_a_crash() {
    let sim = start_sim(busy_sim_config(12)).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("office.json"),
        b"{\"version\":1,\"calls\":[[1,",
    )
    .unwrap();
    let mut target = target_for(&sim, "office");
    target.sweep_interval = Duration::ZERO;
    let (mut poller, metrics) = poller(&sim, target, dir.path());
    let r = poller.poll_and_record().await.unwrap();
    assert_eq!(r.kind, PollKind::Baseline);
    assert!(
        dir.path().join("office.json.bad").exists(),
        "the bad file is kept aside"
    );
    let t0 = sim.now();
    sim.advance(MIN * 20);
    poller.poll_and_record().await.unwrap();
    assert_matches_truth(&Scrape::of(&metrics), &sim.truth(t0, sim.now()));
    // The new state file is valid again.
    let text = std::fs::read_to_string(dir.path().join("office.json")).unwrap();
    assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_baseline_that_fails_halfway_is_taken_again_and_counts_no_history() {
    let sim = start_sim(busy_sim_config(13)).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut poller, metrics) = poller(&sim, target_for(&sim, "office"), dir.path());
    // Log in with a poll that fails, so the next login is the one after the session loss.
    sim.add_fault(FaultRule {
        fault: Fault::Http500,
        action: Some("cdrapi".into()),
        times: Some(1),
    });
    assert_eq!(poll_error(&mut poller).await, "http");
    // The baseline loses its session after 8 pages and cannot log in again.
    sim.add_fault(FaultRule {
        fault: Fault::InvalidateAfterPages(8),
        action: None,
        times: None,
    });
    sim.add_fault(FaultRule {
        fault: Fault::Status(-9),
        action: Some("challenge".into()),
        times: Some(1),
    });
    let err = poller.poll_and_record().await.unwrap_err();
    assert_eq!(err.reason().as_str(), "protocol", "{err}");
    assert!(poller.state().is_none(), "half a baseline is not saved");
    sim.clear_faults();
    let r = poller.poll_and_record().await.unwrap();
    assert!(r.kind == PollKind::Baseline && r.pages > 8, "{r:?}");
    assert_eq!(Scrape::of(&metrics).sum("ucm_calls_total"), 0.0);
    sim.shutdown().await;
}
