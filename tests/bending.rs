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
    assert!(
        err.to_string().contains("office.json"),
        "names the path: {err}"
    );
    let scrape = Scrape::of(&metrics);
    assert_eq!(
        scrape.sum("ucm_calls_total"),
        0.0,
        "nothing of the failed poll counts"
    );
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
    poll_every(&sim, &mut first, MIN * 20, 12).await;
    let t1 = sim.now();
    assert_matches_truth(&Scrape::of(&m1), &sim.truth(t0, t1));
    first.close().await;

    target.max_call_duration = MIN * 360;
    let (mut second, m2) = poller(&sim, target, dir.path());
    sim.advance(MIN * 10);
    let r = second.poll_and_record().await.unwrap();
    assert_eq!(r.kind, PollKind::Sweep);
    // The counters continue from the state file: the first run's calls and the second's.
    assert_matches_truth(&Scrape::of(&m2), &sim.truth(t0, sim.now()));
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
    poll_every(&sim, &mut first, MIN * 10, 4).await;
    let t1 = sim.now();
    assert_matches_truth(&Scrape::of(&m1), &sim.truth(t0, t1));
    first.close().await;

    target.max_call_duration = MIN * 150;
    target.overlap = MIN * 3;
    target.sweep_interval = MIN * 30;
    let (mut second, m2) = poller(&sim, target, dir.path());
    poll_every(&sim, &mut second, MIN * 5, 7).await;
    sweep_after(&sim, &mut second, MIN * 30).await;
    // The counters continue from the state file: the first run's calls and the second's.
    assert_matches_truth(&Scrape::of(&m2), &sim.truth(t0, sim.now()));
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
            let (lines, ok) = ucm_exporter::check::run(&settings, sim_clock(&sim), false).await;
            assert!(!ok);
            assert!(lines[0].contains("FAILED (auth)"), "{lines:?}");
        }
    }
    assert!(sim.now() - t0 < chrono::Duration::hours(1));
    assert_eq!(
        sim.stats().logins_failed,
        3,
        "three attempts in the hour, then none"
    );

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
    p.poll_and_record()
        .await
        .expect("a corrected password logs in at once");
    assert_eq!(sim.stats().logins_ok, 1);
    sim.shutdown().await;
}

/// Polls like a day at the office: a baseline, steps of a few minutes and a long gap, then a
/// last sweep; returns the moment counting began. Every call that ended after it is then
/// counted exactly once, which the caller checks against the ground truth.
async fn office_day(
    sim: &ucm_sim::SimHandle,
    poller: &mut ucm_exporter::poll::Poller,
) -> chrono::NaiveDateTime {
    let base = poller.poll_and_record().await.expect("baseline");
    assert_eq!(base.kind, PollKind::Baseline);
    let t0 = sim.now();
    for m in [2, 3, 1, 5, 45, 2, 4, 30, 1] {
        sim.advance(MIN * m);
        poller.poll_and_record().await.expect("poll");
    }
    sweep_after(sim, poller, MIN * 10).await;
    t0
}

fn day_target(sim: &ucm_sim::SimHandle) -> ucm_exporter::config::Target {
    let mut target = target_for(sim, "office");
    target.sweep_interval = MIN * 10;
    target
}

/// A UCM that answers at most 100 (or 500) entries a page although 1000 were asked: the first
/// short page is not taken for the end until the next one shows it is. (Guard: `Pager`'s
/// confirmation of a short page of a new size.)
#[tokio::test]
async fn a_ucm_that_caps_pages_below_1000_is_read_to_the_end() {
    for cap in [100, 500] {
        let sim = start_sim(busy_sim_config(75)).await;
        sim.set_quirks(ucm_sim::Quirks {
            page_cap: Some(cap),
            ..Default::default()
        });
        let dir = tempfile::tempdir().unwrap();
        let (mut poller, metrics) = poller(&sim, day_target(&sim), dir.path());
        let t0 = office_day(&sim, &mut poller).await;
        assert_matches_truth(&Scrape::of(&metrics), &sim.truth(t0, sim.now()));
        assert_eq!(
            poller.state().unwrap().paging.cap,
            Some(cap),
            "the cap is learned"
        );
        // Once learned, a poll of a few hundred entries costs what the cap makes it cost.
        let before = sim.stats().requests["cdrapi"];
        sim.advance(MIN);
        let r = poller.poll_and_record().await.unwrap();
        let sent = sim.stats().requests["cdrapi"] - before;
        assert!(
            sent as usize <= r.entries / cap + 2,
            "{sent} requests for {} entries",
            r.entries
        );
        sim.shutdown().await;
    }
}

/// A UCM that ignores `offset` and serves page 1 again: caught on the first repeated page, and
/// the read goes on in time slices, each halved until it fits a page, so every call counts
/// exactly once, at a few requests per page of calls rather than 2000 pages. The finding is kept:
/// later reads slice from their first request. (Guard: `Pager`'s check for a page with no entry
/// new to the read, then `Slicer`.)
#[tokio::test]
async fn a_ucm_that_ignores_offset_is_read_in_time_slices() {
    let sim = start_sim(busy_sim_config(76)).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut poller, metrics) = poller(&sim, day_target(&sim), dir.path());
    poller.poll_and_record().await.unwrap();
    let t0 = sim.now();
    sim.set_quirks(ucm_sim::Quirks {
        ignore_offset: true,
        ..Default::default()
    });
    // An hour and a half of calls: more than a page.
    sim.advance(MIN * 90);
    let before = sim.stats().requests["cdrapi"];
    let report = poller.poll_and_record().await.unwrap();
    let sent = sim.stats().requests["cdrapi"] - before;
    // The poll is a sweep of the last few hours: many pages of calls.
    let calls = poller.state().unwrap().calls.len();
    let pages = calls.div_ceil(1000) as u64;
    println!("a sliced sweep: {sent} requests for {calls} calls");
    assert!(pages >= 5 && report.entries > 1000, "{pages} pages");
    assert!(
        sent <= 4 * pages,
        "{sent} requests for {pages} pages of calls"
    );
    assert!(poller.state().unwrap().paging.offset_ignored);
    assert_matches_truth(&Scrape::of(&metrics), &sim.truth(t0, sim.now()));
    // The next poll asks for its slice at once: one request.
    sim.advance(MIN);
    let before = sim.stats().requests["cdrapi"];
    poller.poll_and_record().await.unwrap();
    assert_eq!(sim.stats().requests["cdrapi"] - before, 1);
    sim.shutdown().await;
}

/// The same from the first start, in every sort order, at a UCM that also caps its pages at 100:
/// the baseline, a working day of polls and the sweeps are sliced, and every call counts once.
#[tokio::test]
async fn a_ucm_that_ignores_offset_and_caps_pages_counts_exactly_in_any_order() {
    for order in [
        ucm_sim::Order::StartAsc,
        ucm_sim::Order::EndAsc,
        ucm_sim::Order::StartDesc,
    ] {
        let sim = start_sim(busy_sim_config(78)).await;
        sim.set_quirks(ucm_sim::Quirks {
            order,
            page_cap: Some(100),
            ignore_offset: true,
            ..Default::default()
        });
        let dir = tempfile::tempdir().unwrap();
        let (mut poller, metrics) = poller(&sim, day_target(&sim), dir.path());
        let t0 = office_day(&sim, &mut poller).await;
        assert_matches_truth(&Scrape::of(&metrics), &sim.truth(t0, sim.now()));
        let paging = poller.state().unwrap().paging;
        assert!(paging.offset_ignored, "{order:?}");
        assert_eq!(paging.largest_page, 100, "{order:?}");
        sim.shutdown().await;
    }
}

/// A UCM that sorts by `AcctId` (end order) or newest first: exact all the same, also across a
/// catch-up long enough to commit part-way. (Guard: `Poller::commit` keeps the keys a poll may
/// still meet, whatever order the pages come in.)
#[tokio::test]
async fn a_ucm_that_sorts_by_end_or_newest_first_counts_exactly() {
    for order in [ucm_sim::Order::EndAsc, ucm_sim::Order::StartDesc] {
        let sim = start_sim(ucm_sim::SimConfig {
            calls_per_hour: 4000.0,
            ..busy_sim_config(77)
        })
        .await;
        sim.set_quirks(ucm_sim::Quirks {
            order,
            page_cap: Some(100),
            ..Default::default()
        });
        let dir = tempfile::tempdir().unwrap();
        let (mut poller, metrics) = poller(&sim, day_target(&sim), dir.path());
        let t0 = office_day(&sim, &mut poller).await;
        assert_matches_truth(&Scrape::of(&metrics), &sim.truth(t0, sim.now()));
        sim.shutdown().await;
    }
}

/// A session the UCM drops without a status answers an empty `cdr_root`: in the middle of a
/// baseline that must not look like the end of the history, or the rest of it would be counted
/// as new calls later. (Guard: `Pager`'s fresh login after an empty page where calls were due.)
#[tokio::test]
async fn a_silently_expired_session_does_not_end_a_baseline_early() {
    let sim = start_sim(ucm_sim::SimConfig {
        cookie_ttl: Duration::from_secs(86400),
        ..busy_sim_config(78)
    })
    .await;
    sim.set_quirks(ucm_sim::Quirks {
        silent_expiry: true,
        ..Default::default()
    });
    sim.add_fault(ucm_sim::FaultRule {
        fault: ucm_sim::Fault::SilentlyExpireAfterPages(4),
        action: None,
        times: Some(1),
    });
    let dir = tempfile::tempdir().unwrap();
    let mut target = day_target(&sim);
    target.session_renew_after = Duration::from_secs(86400);
    let (mut poller, metrics) = poller(&sim, target, dir.path());
    let base = poller.poll_and_record().await.unwrap();
    assert_eq!(base.kind, PollKind::Baseline);
    assert!(base.pages > 6, "{base:?}");
    assert!(sim.stats().silent_expiry_pages >= 1, "the fault fired");
    assert_eq!(Scrape::of(&metrics).value("ucm_logins_total", &[]), 2.0);
    let t0 = sim.now();
    sim.advance(MIN * 10);
    poller.poll_and_record().await.unwrap();
    assert_matches_truth(&Scrape::of(&metrics), &sim.truth(t0, sim.now()));
    sim.shutdown().await;
}

/// One CDR stamped two days ahead (a clock corrected by NTP, a bogus row) is counted, but the
/// watermark stops a few minutes ahead of the exporter's clock, so the calls after it are still
/// read. (Guard: `Plan::ceiling` in `Poller::commit`.)
#[tokio::test]
async fn a_cdr_from_the_future_is_counted_without_moving_the_window_past_later_calls() {
    let sim = start_sim(busy_sim_config(79)).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut poller, metrics) = poller(&sim, day_target(&sim), dir.path());
    poller.poll_and_record().await.unwrap();
    let t0 = sim.now();
    sim.advance(Duration::from_secs(1));
    let at = |d: chrono::Duration| (sim.now() + d).format("%Y-%m-%d %H:%M:%S").to_string();
    sim.add_call_visible_now(serde_json::json!({
        "AcctId": "999999", "src": "2001", "dst": "2002", "channel": "PJSIP/2001-00ff",
        "dstchannel": "PJSIP/2002-0100", "lastapp": "Dial",
        "start": at(chrono::Duration::days(2)),
        "answer": at(chrono::Duration::days(2) + chrono::Duration::seconds(4)),
        "end": at(chrono::Duration::days(2) + chrono::Duration::seconds(64)),
        "duration": "64", "billsec": "60", "disposition": "ANSWERED", "userfield": "Internal",
        "channel_ext": "2001", "dstchannel_ext": "2002", "session": "future-1",
        "src_trunk_name": "", "dst_trunk_name": ""
    }));
    poll_every(&sim, &mut poller, MIN * 5, 6).await;
    let ceiling = ucm_exporter::clock::local_secs(sim.now()) + ucm_exporter::poll::WATERMARK_SLACK;
    assert!(poller.state().unwrap().watermark.unwrap() <= ceiling);
    sweep_after(&sim, &mut poller, MIN * 10).await;
    assert_matches_truth(&Scrape::of(&metrics), &sim.truth(t0, sim.now()));
    sim.shutdown().await;
}

/// `check` probes the paging the exporter relies on with a few small requests and says what it
/// found, as OK or as a warning with what the exporter does about it.
#[tokio::test]
async fn check_reports_how_the_ucm_pages() {
    let cases: [(ucm_sim::Quirks, chrono_tz::Tz, &[&str]); 5] = [
        (
            Default::default(),
            chrono_tz::UTC,
            &[
                "OK: offset is honoured",
                "OK: oldest call first",
                "OK: startTime is read in the UCM's local time",
            ],
        ),
        (
            ucm_sim::Quirks {
                ignore_offset: true,
                ..Default::default()
            },
            chrono_tz::UTC,
            &["WARNING: offset is ignored"],
        ),
        (
            ucm_sim::Quirks {
                order: ucm_sim::Order::StartDesc,
                ..Default::default()
            },
            chrono_tz::UTC,
            &["OK: newest call first"],
        ),
        (
            ucm_sim::Quirks {
                page_cap: Some(50),
                ..Default::default()
            },
            chrono_tz::UTC,
            &["WARNING: pages hold at most 50 entries"],
        ),
        (
            ucm_sim::Quirks {
                filter_reads_utc: true,
                ..Default::default()
            },
            chrono_tz::Europe::Berlin,
            &["WARNING: a window starting at a call's own start misses that call"],
        ),
    ];
    for (quirks, tz, want) in cases {
        let sim = start_sim(ucm_sim::SimConfig {
            timezone: tz,
            quirks: quirks.clone(),
            ..busy_sim_config(80)
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let mut target = target_for(&sim, "office");
        target.timezone = Some(tz);
        let settings = ucm_exporter::config::Settings::new(dir.path(), vec![target]);
        let (lines, ok) = ucm_exporter::check::run(&settings, sim_clock(&sim), false).await;
        assert!(ok, "{lines:?}");
        let text = lines.join("\n");
        for w in want {
            assert!(text.contains(w), "{quirks:?}: want {w:?} in\n{text}");
        }
        sim.shutdown().await;
    }
}

/// The UCM's clock steps back an hour (DST fall-back, or an NTP correction) or forward an hour
/// (spring-forward) in the middle of the day: calls stamped in the repeated hour start before
/// the watermark and are read by the next sweep; every call is counted once. (Guard: the sweep's
/// reach; a step back past it would lose calls.)
#[tokio::test]
async fn dst_steps_of_the_ucm_clock_count_every_call_once() {
    for step in [-60, 60] {
        let sim = start_sim(busy_sim_config(81)).await;
        let dir = tempfile::tempdir().unwrap();
        let (mut poller, metrics) = poller(&sim, day_target(&sim), dir.path());
        poller.poll_and_record().await.unwrap();
        let t0 = sim.now();
        poll_every(&sim, &mut poller, MIN * 5, 6).await;
        // What became visible before the step; a step back lowers those readings, so the
        // truth is taken in two spans.
        let mut truth = sim.truth(t0, sim.now());
        sim.step_clock(chrono::Duration::minutes(step));
        let t1 = sim.now();
        poll_every(&sim, &mut poller, MIN * 5, 12).await;
        sweep_after(&sim, &mut poller, MIN * 10).await;
        truth.merge(&sim.truth(t1, sim.now()));
        assert_matches_truth(&Scrape::of(&metrics), &truth);
        sim.shutdown().await;
    }
}

/// A UCM in a zone ahead of UTC that reads `startTime` as UTC moves every window later by its
/// offset, so a poll would miss the calls of the overlap. Seen on the first poll after the
/// baseline (the newest known call is missing from a window that starts before it), logged,
/// and from then on windows are sent in UTC: the same poll reads its window again and counts
/// exactly. (Guard: `Poller::window_came_back_shifted`.)
#[tokio::test]
async fn a_ucm_that_reads_start_time_as_utc_is_detected_and_read_exactly() {
    let berlin = chrono_tz::Europe::Berlin;
    let sim = start_sim(ucm_sim::SimConfig {
        timezone: berlin,
        quirks: ucm_sim::Quirks {
            filter_reads_utc: true,
            ..Default::default()
        },
        ..busy_sim_config(82)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut target = day_target(&sim);
    target.timezone = Some(berlin);
    let overlap = target.overlap;
    let (mut poller, metrics) = poller(&sim, target, dir.path());
    poller.poll_and_record().await.unwrap();
    let t0 = sim.now();
    let watermark = poller.state().unwrap().watermark.expect("calls were seen");
    let from = ucm_exporter::clock::from_local_secs(watermark) - overlap;
    sim.advance(MIN * 2);
    let r = poller.poll_and_record().await.unwrap();
    assert_eq!(r.kind, PollKind::Incremental);
    assert!(poller.state().unwrap().paging.filter_reads_utc, "detected");
    assert_matches_truth(
        &Scrape::of(&metrics),
        &sim.truth_started_from(t0, sim.now(), from),
    );
    // And on through a sweep, exactly.
    poll_every(&sim, &mut poller, MIN * 3, 5).await;
    sweep_after(&sim, &mut poller, MIN * 10).await;
    assert_matches_truth(&Scrape::of(&metrics), &sim.truth(t0, sim.now()));
    sim.shutdown().await;
}

/// A UCM wrongly found to read `startTime` as UTC (a saved finding, here written into the
/// state file) answers the first window sent in UTC with calls from before the window's local
/// start: the finding is undone and later windows go out as they are, counting exactly.
/// (Guard: `Ledger::unlearn_filter_reads_utc`.)
#[tokio::test]
async fn a_false_utc_finding_is_undone_by_the_next_read() {
    let berlin = chrono_tz::Europe::Berlin;
    let sim = start_sim(ucm_sim::SimConfig {
        timezone: berlin,
        ..busy_sim_config(86)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut target = day_target(&sim);
    target.timezone = Some(berlin);
    let (mut poller, _) = poller(&sim, target.clone(), dir.path());
    poller.poll_and_record().await.unwrap();
    poller.close().await;
    let path = dir.path().join("office.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    state["paging"]["filter_reads_utc"] = true.into();
    std::fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();

    let t0 = sim.now();
    let (mut poller, metrics) = common::poller(&sim, target, dir.path());
    assert!(poller.state().unwrap().paging.filter_reads_utc);
    sim.advance(MIN * 2);
    poller.poll_and_record().await.unwrap();
    assert!(!poller.state().unwrap().paging.filter_reads_utc, "undone");
    poll_every(&sim, &mut poller, MIN * 3, 5).await;
    assert!(!poller.state().unwrap().paging.filter_reads_utc);
    sweep_after(&sim, &mut poller, MIN * 10).await;
    assert_matches_truth(&Scrape::of(&metrics), &sim.truth(t0, sim.now()));
    sim.shutdown().await;
}

/// A call of exactly `max_call_duration` that ends just after a sweep is read by the next
/// sweep, a sweep interval and a poll later, when the watermark has moved on by as much.
/// (Guard: `Reach::sweep_back`; a sweep reaching back only `max_call_duration` misses it.)
#[tokio::test]
async fn a_call_of_exactly_max_call_duration_ending_after_a_sweep_is_counted() {
    let sim = start_sim(busy_sim_config(83)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut target = day_target(&sim);
    target.max_call_duration = MIN * 30;
    let (mut poller, metrics) = poller(&sim, target, dir.path());
    poller.poll_and_record().await.unwrap();
    sweep_after(&sim, &mut poller, MIN * 10).await;
    // Ends a second after that sweep; lasts exactly max_call_duration.
    let start = sim.now() - chrono::Duration::minutes(30) + chrono::Duration::seconds(1);
    sim.add_call(flat_call("4999", start, 30 * 60, "777001"));
    poll_every(&sim, &mut poller, MIN, 9).await;
    let caller = |s: &Scrape| s.answered_from("4999");
    assert_eq!(caller(&Scrape::of(&metrics)), None, "not before the sweep");
    sweep_after(&sim, &mut poller, MIN).await;
    assert_eq!(caller(&Scrape::of(&metrics)), Some(1.0));
    sim.shutdown().await;
}

/// An entry that cannot be counted (here: a summary without legs) is counted in
/// `ucm_cdr_skipped_total{reason="no_legs"}`, whose series exist at 0 from the start, once
/// however often the overlap of later polls reads it again. A ForkCDR leg alone is a call.
#[tokio::test]
async fn entries_that_cannot_be_counted_show_in_the_skipped_counter() {
    let sim = start_sim(ucm_sim::SimConfig {
        calls_per_hour: 0.0,
        ..busy_sim_config(84)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (mut poller, metrics) = poller(&sim, day_target(&sim), dir.path());
    poller.poll_and_record().await.unwrap();
    let scrape = Scrape::of(&metrics);
    for reason in ["no_legs", "bad_start", "too_old"] {
        assert_eq!(
            scrape.value("ucm_cdr_skipped_total", &[("reason", reason)]),
            0.0
        );
    }
    let start = sim.now();
    let mut fork = flat_call("2002", start, 60, "777002");
    fork["lastapp"] = "ForkCDR".into();
    sim.add_call(serde_json::json!({
        "cdr": "fork-only", "main_cdr": {"start": fork["start"], "session": "fork-only"},
        "sub_cdr_1": fork
    }));
    sim.add_call(serde_json::json!({
        "cdr": "summary-only",
        "main_cdr": {"start": fork["start"], "session": "summary-only", "duration": "60"}
    }));
    // Every poll's overlap reaches back past both entries: each poll reads them again.
    for _ in 0..3 {
        sim.advance(MIN * 2);
        poller.poll_and_record().await.unwrap();
        let scrape = Scrape::of(&metrics);
        assert_eq!(
            scrape.value("ucm_cdr_skipped_total", &[("reason", "no_legs")]),
            1.0
        );
        assert_eq!(scrape.sum("ucm_calls_total"), 1.0);
    }
    sim.shutdown().await;
}

/// An inbound call to 2001 that nobody answered there, transferred to 2002 who answered: a
/// grouped entry whose second leg decides its outcome.
fn transferred_call(start: chrono::NaiveDateTime, id: &str) -> serde_json::Value {
    let at = |d: i64| {
        (start + chrono::Duration::seconds(d))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let leg = |acct: &str, dst: &str, s: i64, secs: i64, billsec: i64, disp: &str| {
        serde_json::json!({
            "AcctId": acct, "src": "030555", "dst": dst, "channel": "PJSIP/trunk_1-0042",
            "dstchannel": format!("PJSIP/{dst}-0043"), "lastapp": "Dial", "start": at(s),
            "answer": if billsec > 0 { at(s + secs - billsec) } else { String::new() },
            "end": at(s + secs), "duration": secs.to_string(), "billsec": billsec.to_string(),
            "disposition": disp, "userfield": "Inbound", "channel_ext": "trunk_1",
            "dstchannel_ext": dst, "session": format!("s-{id}"), "src_trunk_name": "Telekom",
            "dst_trunk_name": ""
        })
    };
    serde_json::json!({
        "cdr": format!("c-{id}"),
        "main_cdr": {"start": at(0), "session": format!("s-{id}"), "src": "030555", "dst": "2001"},
        "sub_cdr_1": leg(&format!("{id}1"), "2001", 0, 20, 0, "NO ANSWER"),
        "sub_cdr_2": leg(&format!("{id}2"), "2002", 20, 100, 90, "ANSWERED"),
    })
}

/// A UCM that writes a call's later legs (a transfer) only some time after the call first
/// appears: with `settle` longer than that, a grouped call is counted once, complete, with its
/// final outcome, in every window mode; with `settle` 0 (the default) it is counted once at
/// first sight, with the legs it had then. (Guard: the hold in `poll::ingest`, and the windows
/// that reach back to a held call's start in the fast modes.)
#[tokio::test]
async fn a_call_that_gains_legs_later_is_counted_once_with_its_final_outcome() {
    use ucm_exporter::config::WindowPreference;
    use ucm_exporter::poll::WindowMode;
    use ucm_sim::EndFilter;
    let cases = [
        (
            3,
            WindowPreference::Start,
            EndFilter::Honoured,
            WindowMode::Start,
        ),
        (
            3,
            WindowPreference::Auto,
            EndFilter::Honoured,
            WindowMode::End,
        ),
        (
            3,
            WindowPreference::Auto,
            EndFilter::Ignored,
            WindowMode::Channels,
        ),
        (
            0,
            WindowPreference::Start,
            EndFilter::Honoured,
            WindowMode::Start,
        ),
    ];
    for (settle, pref, end_filter, mode) in cases {
        let sim = start_sim(ucm_sim::SimConfig {
            calls_per_hour: 0.0,
            quirks: ucm_sim::Quirks {
                late_legs_delay: Some(MIN * 2),
                end_filter,
                ..Default::default()
            },
            ..busy_sim_config(85)
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let mut target = day_target(&sim);
        target.settle = MIN * settle;
        target.window_mode = pref;
        let (mut poller, metrics) = poller(&sim, target, dir.path());
        poller.poll_and_record().await.unwrap();
        let t0 = sim.now();
        // A first call, so the end probe has one to ask about.
        sim.add_call(transferred_call(
            sim.now() - chrono::Duration::seconds(60),
            "870",
        ));
        poll_every(&sim, &mut poller, MIN, 6).await;
        assert_eq!(poller.window_mode(), mode, "{pref:?}, {end_filter:?}");
        for i in 0..3 {
            let start = sim.now() - chrono::Duration::seconds(60) + chrono::Duration::minutes(i);
            sim.add_call(transferred_call(start, &format!("88{i}")));
        }
        poll_every(&sim, &mut poller, MIN, 12).await;
        let scrape = Scrape::of(&metrics);
        assert_eq!(
            scrape.sum("ucm_calls_total"),
            4.0,
            "{mode:?}: each counted once"
        );
        let answered = scrape.value(
            "ucm_calls_total",
            &[
                ("direction", "inbound"),
                ("trunk", "Telekom"),
                ("disposition", "answered"),
            ],
        );
        if settle > 0 {
            assert_eq!(answered, 4.0, "{mode:?}: the final outcome");
            assert_matches_truth(&scrape, &sim.truth(t0, sim.now()));
        } else {
            // Seen while the transfer leg was still unwritten.
            assert_eq!(answered, 0.0);
        }
        sim.shutdown().await;
    }
}

fn sim_time(t: chrono::NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A UCM that ignores `offset`, with an entry in the window that yields no call (a summary
/// without legs): the page served again is told as one all the same, because such an entry is
/// new to a read only the first time it is read, and the read goes on in slices at a few
/// requests a poll. Before, the entry counted as new on every repeat of the page, two equal
/// pages taught the pager a false cap, and every poll paged to its 2000-request guard and failed.
/// (Guard: `ingest`'s freshness of an entry without a call key; the poll's request budget.)
#[tokio::test]
async fn a_key_less_entry_at_a_ucm_that_ignores_offset_costs_a_few_requests_not_2000() {
    let sim = start_sim(ucm_sim::SimConfig {
        calls_per_hour: 30.0,
        ..busy_sim_config(92)
    })
    .await;
    sim.set_quirks(ucm_sim::Quirks {
        ignore_offset: true,
        ..Default::default()
    });
    let start = sim_time(sim.now() - chrono::Duration::minutes(5));
    sim.add_call(serde_json::json!({
        "cdr": "summary-only",
        "main_cdr": {"start": start, "session": "summary-only", "duration": "60"}
    }));
    let dir = tempfile::tempdir().unwrap();
    let (mut poller, metrics) = poller(&sim, day_target(&sim), dir.path());
    let (base, sent) = poll_within_budget(&sim, &mut poller, &metrics).await;
    assert_eq!(base.expect("baseline").kind, PollKind::Baseline);
    // A login, two pages, then slices: the window of 28 hours is halved down to the 6 hours
    // that hold calls (each halving asks two slices), and the page is proven whole.
    assert!(sent <= 20, "{sent} requests for the baseline");
    let t0 = sim.now();
    // One more after the baseline, which counts it as skipped.
    let start = sim_time(sim.now() + chrono::Duration::minutes(1));
    sim.add_call(serde_json::json!({
        "cdr": "summary-later",
        "main_cdr": {"start": start, "session": "summary-later", "duration": "30"}
    }));
    // Polls and sweeps while the entries stay within their reach: a few requests each.
    for m in [1, 2, 10, 1, 10] {
        sim.advance(MIN * m);
        let (r, sent) = poll_within_budget(&sim, &mut poller, &metrics).await;
        r.expect("poll");
        assert!(sent <= 6, "{sent} requests for a poll");
    }
    let paging = poller.state().unwrap().paging;
    assert!(paging.offset_ignored);
    assert_eq!(
        paging.cap, None,
        "no cap is learned from a page served again"
    );
    let scrape = Scrape::of(&metrics);
    assert_eq!(
        scrape.value("ucm_cdr_skipped_total", &[("reason", "no_legs")]),
        1.0
    );
    assert_eq!(scrape.sum("ucm_request_budget_exhausted_total"), 0.0);
    assert_matches_truth(&scrape, &sim.truth(t0, sim.now()));
    sim.shutdown().await;
}

/// A cap the state believes although the UCM no longer caps (learned when it capped its pages
/// at 37; an older version also learned one from a page served again), at a UCM that now
/// ignores `offset`, with 40 calls in one second: the first page larger than the cap, or the
/// first halving whose halves hold nothing new, proves the cap wrong and it is forgotten; a
/// second that fills a page is taken whole. Before, every poll halved its slices down to that
/// second and failed, and the watermark never moved again. (Guard: `Pager` and `Slicer` prove a
/// cap before they rely on it; `Slicer`'s crowded second.)
#[tokio::test]
async fn a_false_cap_and_a_crowded_second_never_stall_the_watermark() {
    let sim = start_sim(ucm_sim::SimConfig {
        calls_per_hour: 60.0,
        ..busy_sim_config(93)
    })
    .await;
    sim.set_quirks(ucm_sim::Quirks {
        page_cap: Some(37),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let (mut poller, metrics) = poller(&sim, day_target(&sim), dir.path());
    poller.poll_and_record().await.expect("baseline");
    assert_eq!(poller.state().unwrap().paging.cap, Some(37));
    let t0 = sim.now();
    sim.set_quirks(ucm_sim::Quirks {
        ignore_offset: true,
        ..Default::default()
    });
    let crowd = sim.now() + chrono::Duration::minutes(1);
    for i in 0..40 {
        let ext = (2100 + i).to_string();
        sim.add_call(flat_call(&ext, crowd, 30, &format!("crowd-{i}")));
    }
    for m in [1, 1, 1, 10, 2, 10] {
        sim.advance(MIN * m);
        let (r, sent) = poll_within_budget(&sim, &mut poller, &metrics).await;
        r.expect("poll");
        assert!(sent <= 12, "{sent} requests for a poll");
    }
    let state = poller.state().unwrap();
    assert!(state.paging.offset_ignored);
    assert_eq!(state.paging.cap, None, "the false cap is forgotten");
    let crowd_secs = ucm_exporter::clock::local_secs(crowd);
    assert!(
        state.watermark.unwrap() > crowd_secs,
        "the watermark moves on"
    );
    let scrape = Scrape::of(&metrics);
    assert_eq!(scrape.sum("ucm_poll_errors_total"), 0.0);
    assert_matches_truth(&scrape, &sim.truth(t0, sim.now()));
    sim.shutdown().await;
}

/// A UCM that ignores `offset` and holds a single call: whether its one-entry page was cut
/// cannot be told (a UCM might cap its pages at one entry), so the read narrows down to that
/// call's second and takes it. Before, the slicer halved down to that second and then failed
/// the baseline, and every baseline after it. (Guard: `Slicer`'s crowded second.)
#[tokio::test]
async fn a_single_entry_answer_after_slicing_began_does_not_fail() {
    let sim = start_sim(ucm_sim::SimConfig {
        calls_per_hour: 0.0,
        ..busy_sim_config(94)
    })
    .await;
    sim.set_quirks(ucm_sim::Quirks {
        ignore_offset: true,
        ..Default::default()
    });
    sim.add_call(flat_call(
        "2002",
        sim.now() - chrono::Duration::minutes(10),
        60,
        "only",
    ));
    let dir = tempfile::tempdir().unwrap();
    let (mut poller, metrics) = poller(&sim, day_target(&sim), dir.path());
    let (base, sent) = poll_within_budget(&sim, &mut poller, &metrics).await;
    base.expect("baseline");
    // Two requests a halving of the 28-hour window down to one second (some 18 halvings, the
    // open end halved before the host's clock), a login and the two pages before.
    assert!(sent <= 2 * 20 + 6, "{sent} requests for the baseline");
    assert!(poller.state().unwrap().paging.offset_ignored);
    let t0 = sim.now();
    sim.add_call(flat_call("2003", sim.now(), 60, "next"));
    sim.advance(MIN * 2);
    let (r, sent) = poll_within_budget(&sim, &mut poller, &metrics).await;
    r.expect("poll");
    assert!(sent <= 4, "{sent} requests for a poll");
    let scrape = Scrape::of(&metrics);
    assert_eq!(scrape.sum("ucm_calls_total"), 1.0);
    assert_matches_truth(&scrape, &sim.truth(t0, sim.now()));
    sim.shutdown().await;
}
