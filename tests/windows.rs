//! The CDR window modes against the simulator over HTTPS: the probe picks the mode each UCM
//! supports, every mode counts each call exactly once, the fast modes count a call at the first
//! poll after its CDR appears, and a fast path that misses calls is caught by the safety sweep,
//! counted late and given up.

mod common;

use std::time::Duration;

use common::*;
use ucm_exporter::config::{Target, WindowPreference};
use ucm_exporter::poll::{PollKind, WindowMode};
use ucm_sim::{EndColumn, EndFilter, Fault, FaultRule, Quirks, SimHandle};

const MIN: Duration = Duration::from_secs(60);

fn fast_target(sim: &SimHandle) -> Target {
    let mut t = target_for(sim, "office");
    t.window_mode = WindowPreference::Auto;
    t.sweep_interval = MIN * 10;
    t.safety_sweep_interval = MIN * 60;
    t.poll_interval = MIN;
    t
}

/// A fast-mode poller just after its baseline, at a UCM with the end filter `f`: the simulator,
/// the state's directory, the poller, its metrics and the simulator's time of the baseline.
async fn started(
    seed: u64,
    f: EndFilter,
) -> (
    SimHandle,
    tempfile::TempDir,
    ucm_exporter::poll::Poller,
    std::sync::Arc<ucm_exporter::metrics::TargetMetrics>,
    chrono::NaiveDateTime,
) {
    let sim = start_sim(busy_sim_config(seed)).await;
    end_filter(&sim, f);
    let dir = tempfile::tempdir().unwrap();
    let (mut poller, metrics) = poller(&sim, fast_target(&sim), dir.path());
    poller.poll_and_record().await.unwrap();
    let t0 = sim.now();
    (sim, dir, poller, metrics, t0)
}

fn end_filter(sim: &SimHandle, f: EndFilter) {
    sim.set_quirks(Quirks {
        end_filter: f,
        ..Quirks::default()
    });
}

fn deny_channels(sim: &SimHandle) {
    for action in ["listBridgedChannels", "listUnBridgedChannels"] {
        sim.add_fault(FaultRule {
            fault: Fault::Status(-47),
            action: Some(action.into()),
            times: None,
        });
    }
}

/// What a UCM supports, and the mode the exporter must end up in.
#[derive(Clone, Copy, Debug)]
enum Ucm {
    EndHonoured,
    /// End windows compare with the written `end` column, which the calls that failed before
    /// they were set up do not have: end windows miss them, and the polls read them by start.
    EndWrittenColumn,
    EndIgnoredChannelsAllowed,
    /// Channel rows without uniqueids: a bridged call's start is unknown, so the channel lists
    /// cannot bound windows.
    ChannelsWithoutUniqueids,
    NeitherFast,
}

impl Ucm {
    fn set_up(self, sim: &SimHandle) {
        match self {
            Ucm::EndHonoured => end_filter(sim, EndFilter::Honoured),
            Ucm::EndWrittenColumn => sim.set_quirks(Quirks {
                end_column: EndColumn::Written,
                ..Quirks::default()
            }),
            Ucm::EndIgnoredChannelsAllowed => end_filter(sim, EndFilter::Ignored),
            Ucm::ChannelsWithoutUniqueids => sim.set_quirks(Quirks {
                end_filter: EndFilter::EmptyList,
                no_channel_uniqueids: true,
                ..Quirks::default()
            }),
            Ucm::NeitherFast => {
                end_filter(sim, EndFilter::EmptyList);
                deny_channels(sim);
            }
        }
    }

    fn mode(self) -> WindowMode {
        match self {
            Ucm::EndHonoured | Ucm::EndWrittenColumn => WindowMode::End,
            Ucm::EndIgnoredChannelsAllowed => WindowMode::Channels,
            Ucm::ChannelsWithoutUniqueids | Ucm::NeitherFast => WindowMode::Start,
        }
    }
}

/// Busy traffic polled every minute: in the fast modes the counts equal the ground truth after
/// every poll (each call counted at the first poll after its CDR appears), in every mode after
/// the safety sweep and after a restart; and the fast modes read each call about once.
async fn exact_in_mode(ucm: Ucm, seed: u64) {
    let sim = start_sim(busy_sim_config(seed)).await;
    ucm.set_up(&sim);
    let dir = tempfile::tempdir().unwrap();
    let target = fast_target(&sim);
    let (mut poller, metrics) = poller(&sim, target.clone(), dir.path());
    assert_eq!(
        poller.poll_and_record().await.unwrap().kind,
        PollKind::Baseline
    );
    let t0 = sim.now();
    let (mut fast_entries, mut fast_calls) = (0, 0);
    for i in 0..30 {
        sim.advance(MIN);
        let before = sim.stats().cdr_entries_served;
        let r = poller.poll_and_record().await.expect("poll");
        if i < 2 {
            continue; // probing; the first channel-bounded poll sweeps
        }
        assert_eq!(r.mode, ucm.mode(), "poll {i}: {r:?}");
        if ucm.mode() != WindowMode::Start {
            assert_eq!(r.kind, PollKind::Incremental, "poll {i}");
            assert_matches_truth(&Scrape::of(&metrics), &sim.truth(t0, sim.now()));
            fast_entries += sim.stats().cdr_entries_served - before;
            fast_calls += r.new_calls;
        }
    }
    assert_eq!(poller.window_mode(), ucm.mode());
    let per_call = fast_entries as f64 / fast_calls.max(1) as f64;
    eprintln!("{ucm:?}: {per_call:.2} entries read per new call between sweeps");
    match ucm {
        Ucm::EndHonoured => assert!(per_call <= 1.5, "{per_call:.2} entries read per new call"),
        Ucm::EndWrittenColumn => {
            assert!(per_call <= 2.5, "{per_call:.2} entries read per new call")
        }
        Ucm::EndIgnoredChannelsAllowed => {
            assert!(per_call <= 3.0, "{per_call:.2} entries read per new call")
        }
        Ucm::ChannelsWithoutUniqueids | Ucm::NeitherFast => {}
    }
    // The safety sweep finds nothing the fast path missed.
    sweep_after(&sim, &mut poller, MIN * 60).await;
    let scrape = Scrape::of(&metrics);
    assert_eq!(scrape.value("ucm_cdr_late_records_total", &[]), 0.0);
    assert_eq!(
        scrape.value("ucm_cdr_window_mode", &[("mode", ucm.mode().as_str())]),
        1.0
    );
    assert_matches_truth(&scrape, &sim.truth(t0, sim.now()));
    assert_eq!(
        poller.window_mode(),
        ucm.mode(),
        "{:?}",
        poller.window_fallback()
    );
    poller.close().await;

    // A restart (SIGTERM: the poller closes, saving its state): the mode and what the probes
    // found carry over, so no probe is asked before its time; the first poll sweeps the
    // downtime; nothing counts twice, and the counters continue from the state file.
    sim.advance(MIN * 7);
    let (mut second, m2) = common::poller(&sim, target, dir.path());
    assert_eq!(second.window_mode(), ucm.mode(), "restored");
    let questions = sim.stats().end_window_questions;
    assert_eq!(
        second.poll_and_record().await.unwrap().kind,
        PollKind::Sweep
    );
    poll_every(&sim, &mut second, MIN, 5).await;
    assert_eq!(second.window_mode(), ucm.mode());
    assert_eq!(
        sim.stats().end_window_questions,
        questions,
        "no end probe before its time"
    );
    sweep_after(&sim, &mut second, MIN * 60).await;
    assert_matches_truth(&Scrape::of(&m2), &sim.truth(t0, sim.now()));
    assert_eq!(
        Scrape::of(&m2).value("ucm_cdr_late_records_total", &[]),
        0.0
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn end_windows_count_every_call_once_at_the_first_poll_after_it_ends() {
    exact_in_mode(Ucm::EndHonoured, 301).await;
}

#[tokio::test]
async fn end_windows_that_miss_the_calls_written_without_an_end_still_count_them_at_once() {
    exact_in_mode(Ucm::EndWrittenColumn, 306).await;
}

#[tokio::test]
async fn channel_windows_count_every_call_once_at_the_first_poll_after_it_ends() {
    exact_in_mode(Ucm::EndIgnoredChannelsAllowed, 302).await;
}

#[tokio::test]
async fn channel_lists_without_uniqueids_leave_start_windows() {
    exact_in_mode(Ucm::ChannelsWithoutUniqueids, 304).await;
}

/// A channel list that fails once leaves a gap in what the channel windows know: that poll
/// reads start windows, the next one sweeps, and from then on each poll is exact again.
#[tokio::test]
async fn a_failed_channel_snapshot_is_followed_by_a_sweep() {
    let (sim, _dir, mut poller, metrics, t0) = started(305, EndFilter::Ignored).await;
    poll_every(&sim, &mut poller, MIN, 3).await;
    assert_eq!(poller.window_mode(), WindowMode::Channels);
    sim.add_fault(FaultRule {
        fault: Fault::Http500,
        action: Some("listUnBridgedChannels".into()),
        times: Some(1),
    });
    let mut kinds = Vec::new();
    for _ in 0..3 {
        sim.advance(MIN);
        let r = poller.poll_and_record().await.unwrap();
        kinds.push((r.kind, r.mode));
    }
    assert_eq!(
        kinds,
        [
            (PollKind::Incremental, WindowMode::Start),
            (PollKind::Sweep, WindowMode::Channels),
            (PollKind::Incremental, WindowMode::Channels),
        ]
    );
    assert_matches_truth(&Scrape::of(&metrics), &sim.truth(t0, sim.now()));
    poll_every(&sim, &mut poller, MIN, 3).await;
    assert_matches_truth(&Scrape::of(&metrics), &sim.truth(t0, sim.now()));
    sim.shutdown().await;
}

#[tokio::test]
async fn start_windows_count_every_call_once_where_nothing_faster_works() {
    exact_in_mode(Ucm::NeitherFast, 303).await;
}

/// The probe tries both spellings of the filter type and believes only an exact answer; the
/// channel lists are used where the end filter fails and the API user may read them.
#[tokio::test]
async fn the_probe_picks_the_mode_each_ucm_supports() {
    let cases = [
        (
            EndFilter::Honoured,
            true,
            WindowMode::End,
            Some("timeFilterType"),
        ),
        (
            EndFilter::TypoOnly,
            true,
            WindowMode::End,
            Some("tineFilterType"),
        ),
        (EndFilter::Ignored, true, WindowMode::Channels, None),
        (EndFilter::EmptyList, true, WindowMode::Channels, None),
        (EndFilter::Ignored, false, WindowMode::Start, None),
    ];
    for (i, (filter, channels, mode, param)) in cases.into_iter().enumerate() {
        let sim = start_sim(busy_sim_config(310 + i as u64)).await;
        end_filter(&sim, filter);
        if !channels {
            deny_channels(&sim);
        }
        let dir = tempfile::tempdir().unwrap();
        let (mut poller, metrics) = poller(&sim, fast_target(&sim), dir.path());
        poll_every(&sim, &mut poller, MIN, 3).await;
        assert_eq!(
            poller.window_mode(),
            mode,
            "{filter:?}, channels {channels}"
        );
        assert_eq!(poller.end_filter_param(), param, "{filter:?}");
        let gauge = |m: WindowMode| {
            Scrape::of(&metrics).value("ucm_cdr_window_mode", &[("mode", m.as_str())])
        };
        for m in WindowMode::ALL {
            assert_eq!(gauge(m), f64::from(m == mode), "{filter:?}: {m:?}");
        }
        sim.shutdown().await;
    }
}

/// A probe that meets a passing fault (both of its requests answered HTTP 500) has no answer to
/// judge: it asks again at the next poll, instead of giving the end windows up for hours.
#[tokio::test]
async fn an_end_probe_that_meets_a_fault_asks_again_at_the_next_poll() {
    let (sim, _dir, mut poller, metrics, t0) = started(306, EndFilter::Honoured).await;
    sim.add_fault(FaultRule {
        fault: Fault::Http500,
        action: Some("cdrapi".into()),
        times: Some(2),
    });
    sim.advance(MIN);
    poller.poll_and_record().await.unwrap();
    assert_eq!(poller.end_filter_param(), None, "the probe got no answer");
    assert_ne!(poller.window_mode(), WindowMode::End);
    poll_every(&sim, &mut poller, MIN, 2).await;
    assert_eq!(poller.end_filter_param(), Some("timeFilterType"));
    assert_eq!(poller.window_mode(), WindowMode::End);
    assert_matches_truth(&Scrape::of(&metrics), &sim.truth(t0, sim.now()));
    sim.shutdown().await;
}

/// `window_mode: start` never probes: no channel list and no end filter is ever asked for.
#[tokio::test]
async fn window_mode_start_asks_for_nothing_else() {
    let sim = start_sim(busy_sim_config(320)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut target = fast_target(&sim);
    target.window_mode = WindowPreference::Start;
    let (mut poller, _) = poller(&sim, target, dir.path());
    poll_every(&sim, &mut poller, MIN, 4).await;
    assert_eq!(poller.window_mode(), WindowMode::Start);
    let stats = sim.stats();
    assert_eq!(stats.requests.get("listBridgedChannels"), None, "{stats:?}");
    assert_eq!(stats.cdr_entries_end_filtered, 0);
    sim.shutdown().await;
}

/// A UCM whose end filter passed the probe but later reads it as a start filter (a firmware
/// update under a running exporter): the end windows miss the long calls, the safety sweep
/// counts them late, and the target falls back to start windows, exact.
#[tokio::test]
async fn an_end_filter_that_stops_working_is_caught_by_the_safety_sweep() {
    let (sim, dir, mut poller, metrics, t0) = started(330, EndFilter::Honoured).await;
    poll_every(&sim, &mut poller, MIN, 3).await;
    assert_eq!(poller.window_mode(), WindowMode::End);
    end_filter(&sim, EndFilter::Ignored);
    poll_every(&sim, &mut poller, MIN, 20).await;
    let truth = sim.truth(t0, sim.now());
    assert!(
        Scrape::of(&metrics).sum("ucm_calls_total") < truth.total_calls as f64,
        "the broken fast path misses the calls that started before its window"
    );
    sweep_after(&sim, &mut poller, MIN * 40).await;
    let scrape = Scrape::of(&metrics);
    assert!(scrape.value("ucm_cdr_late_records_total", &[]) > 0.0);
    assert_eq!(poller.window_mode(), WindowMode::Start);
    assert!(poller
        .window_fallback()
        .unwrap()
        .contains("end windows had missed"));
    assert_eq!(
        scrape.value("ucm_cdr_window_mode", &[("mode", "start")]),
        1.0
    );
    assert_matches_truth(&scrape, &sim.truth(t0, sim.now()));
    let until = scrape.value("ucm_cdr_window_fallback_until_timestamp_seconds", &[]);
    let fell_back_at = sim.now().and_utc().timestamp() as f64;
    assert_eq!(
        until,
        fell_back_at + 24.0 * 3600.0,
        "examined again in 24 h"
    );
    // Later polls stay exact in start windows.
    poll_every(&sim, &mut poller, MIN, 3).await;
    sweep_after(&sim, &mut poller, MIN * 10).await;
    assert_matches_truth(&Scrape::of(&metrics), &sim.truth(t0, sim.now()));

    // The fallback holds across a restart: no probe, start windows.
    poller.close().await;
    let questions = sim.stats().end_window_questions;
    let (mut second, m2) = common::poller(&sim, fast_target(&sim), dir.path());
    assert_eq!(second.window_mode(), WindowMode::Start);
    assert!(second.window_fallback().is_some());
    poll_every(&sim, &mut second, MIN, 3).await;
    assert_eq!(second.window_mode(), WindowMode::Start);
    assert_eq!(sim.stats().end_window_questions, questions);
    assert_eq!(
        Scrape::of(&m2).value("ucm_cdr_window_fallback_until_timestamp_seconds", &[]),
        until
    );
    // Its time up, the modes are examined afresh: the end filter works again, end windows.
    end_filter(&sim, EndFilter::Honoured);
    let t1 = sim.now();
    sim.advance(
        chrono::Duration::seconds(until as i64 - t1.and_utc().timestamp())
            .to_std()
            .unwrap(),
    );
    poll_every(&sim, &mut second, MIN, 3).await;
    assert!(sim.stats().end_window_questions > questions, "probed again");
    assert_eq!(second.window_mode(), WindowMode::End);
    assert_eq!(second.window_fallback(), None);
    assert_eq!(
        Scrape::of(&m2).value("ucm_cdr_window_fallback_until_timestamp_seconds", &[]),
        0.0
    );
    sim.shutdown().await;
}

/// A CDR written long after its call ended (here: half an hour) is outside every end window;
/// the safety sweep counts it, as late, and ends the fast mode.
#[tokio::test]
async fn a_cdr_written_later_than_the_margin_is_counted_late_not_lost() {
    let (sim, _dir, mut poller, metrics, t0) = started(340, EndFilter::Honoured).await;
    poll_every(&sim, &mut poller, MIN, 2).await;
    assert_eq!(poller.window_mode(), WindowMode::End);
    let start = sim.now() - chrono::Duration::minutes(40);
    sim.add_call_visible_now(flat_call("4998", start, 10 * 60, "777100"));
    poll_every(&sim, &mut poller, MIN, 3).await;
    let extension = |s: &Scrape| s.answered_from("4998");
    assert_eq!(
        extension(&Scrape::of(&metrics)),
        None,
        "outside the end windows"
    );
    sweep_after(&sim, &mut poller, MIN * 60).await;
    let scrape = Scrape::of(&metrics);
    assert_eq!(extension(&scrape), Some(1.0));
    assert_eq!(scrape.value("ucm_cdr_late_records_total", &[]), 1.0);
    assert_eq!(poller.window_mode(), WindowMode::Start);
    assert_matches_truth(&scrape, &sim.truth(t0, sim.now()));
    sim.shutdown().await;
}

/// A 3-hour call is counted at the first poll after it ends, in both fast modes: the end window
/// reads it by its end, the channel windows by the start its channels showed.
#[tokio::test]
async fn a_three_hour_call_is_counted_at_the_first_poll_after_it_ends() {
    for (ucm, seed) in [
        (Ucm::EndHonoured, 350),
        (Ucm::EndIgnoredChannelsAllowed, 351),
    ] {
        let sim = start_sim(busy_sim_config(seed)).await;
        ucm.set_up(&sim);
        let dir = tempfile::tempdir().unwrap();
        let (mut poller, metrics) = poller(&sim, fast_target(&sim), dir.path());
        // Ends 5 min 30 s from now, 3 hours after it started.
        let start = sim.now() - chrono::Duration::seconds(3 * 3600 - 330);
        sim.add_live_call(flat_call("4997", start, 3 * 3600, "777200"));
        poll_every(&sim, &mut poller, MIN, 3).await;
        assert_eq!(poller.window_mode(), ucm.mode());
        let counted =
            |m: &ucm_exporter::metrics::TargetMetrics| Scrape::of(m).answered_from("4997");
        poll_every(&sim, &mut poller, MIN, 2).await;
        assert_eq!(counted(&metrics), None, "{ucm:?}: still in progress");
        // 5 min after the start of the loop: it ends 30 s before the next poll.
        poll_every(&sim, &mut poller, MIN, 1).await;
        assert_eq!(
            counted(&metrics),
            Some(1.0),
            "{ucm:?}: counted at the first poll after its end"
        );
        poll_every(&sim, &mut poller, MIN, 2).await;
        assert_eq!(counted(&metrics), Some(1.0), "{ucm:?}: once");
        assert_eq!(
            Scrape::of(&metrics).value("ucm_cdr_late_records_total", &[]),
            0.0
        );
        sim.shutdown().await;
    }
}

/// `check` runs the same probes and says which windows the exporter will use, and what to grant
/// when the channel lists are refused.
#[tokio::test]
async fn check_says_which_windows_the_ucm_gets() {
    let cases: [(EndFilter, bool, &str); 4] = [
        (
            EndFilter::Honoured,
            true,
            "windows: OK: end windows (the UCM filters on call end with timeFilterType)",
        ),
        (EndFilter::TypoOnly, true, "with tineFilterType"),
        (
            EndFilter::Ignored,
            true,
            "windows: OK: channel-bounded (end filter not honoured",
        ),
        (
            EndFilter::EmptyList,
            false,
            "grant listBridgedChannels and listUnBridgedChannels",
        ),
    ];
    for (filter, channels, want) in cases {
        let sim = start_sim(busy_sim_config(360)).await;
        end_filter(&sim, filter);
        if !channels {
            deny_channels(&sim);
        }
        let dir = tempfile::tempdir().unwrap();
        let settings = ucm_exporter::config::Settings::new(dir.path(), vec![fast_target(&sim)]);
        let (lines, ok) = ucm_exporter::check::run(&settings, sim_clock(&sim), false).await;
        assert!(ok, "{lines:?}");
        let text = lines.join("\n");
        assert!(text.contains(want), "{filter:?}: want {want:?} in\n{text}");
        sim.shutdown().await;
    }
}
