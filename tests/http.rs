//! The exporter's HTTP side, scraped for real: content type, gzip, `/probe` with two targets,
//! readiness, the landing page, and `promtool check metrics` on the exposition.

mod common;

use std::io::Read;
use std::time::Duration;

use common::*;
use ucm_exporter::cdr::{Disposition, Role};
use ucm_exporter::config::Settings;
use ucm_exporter::exporter::Exporter;
use ucm_exporter::metrics::CallTally;
use ucm_sim::{Fault, FaultRule};

fn settings(targets: Vec<ucm_exporter::config::Target>, dir: &std::path::Path) -> Settings {
    Settings::new(dir, targets)
}

async fn wait_ready(base: &str) {
    for _ in 0..200 {
        if get(&format!("{base}/-/ready")).await.status() == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the exporter never became ready");
}

#[tokio::test]
async fn two_targets_via_probe_keep_separate_counts() {
    let a = start_sim(busy_sim_config(31)).await;
    let b = start_sim(busy_sim_config(32)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut ta = target_for(&a, "alpha");
    let mut tb = target_for(&b, "beta");
    ta.sweep_interval = Duration::ZERO;
    tb.sweep_interval = Duration::ZERO;
    ta.poll_interval = Duration::from_millis(300);
    tb.poll_interval = Duration::from_millis(300);
    // One clock for both: the two simulators start at the same moment, and every poll here
    // sweeps, so only the baselines read the clock.
    let running = Exporter::new(settings(vec![ta, tb], dir.path()))
        .listen("127.0.0.1:0")
        .clock(sim_clock(&a))
        .start()
        .await
        .unwrap();
    let base = format!("http://{}", running.addr());
    wait_ready(&base).await;
    // Both baselines are taken once ready; count from here.
    let (a0, b0) = (a.now(), b.now());
    a.advance(Duration::from_secs(20 * 60));
    b.advance(Duration::from_secs(5 * 60));
    let (a1, b1) = (a.now(), b.now());
    let (ta_truth, tb_truth) = (a.truth(a0, a1), b.truth(b0, b1));
    assert_ne!(ta_truth.total_calls, tb_truth.total_calls);
    // Wait until both pollers have read everything (two more polls each).
    let mut matched = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let sa = Scrape::parse(
            &get(&format!("{base}/probe?target=alpha"))
                .await
                .text()
                .await
                .unwrap(),
        );
        let sb = Scrape::parse(
            &get(&format!("{base}/probe?target=beta"))
                .await
                .text()
                .await
                .unwrap(),
        );
        if sa.sum("ucm_calls_total") as u64 == ta_truth.total_calls
            && sb.sum("ucm_calls_total") as u64 == tb_truth.total_calls
        {
            assert_matches_truth(&sa, &ta_truth);
            assert_matches_truth(&sb, &tb_truth);
            matched = true;
            break;
        }
    }
    assert!(matched, "the probes never showed the simulators' calls");

    // With two targets, /metrics holds only the exporter's own metrics.
    let own = get(&format!("{base}/metrics")).await.text().await.unwrap();
    assert!(own.contains("ucm_exporter_build_info{"));
    assert!(own.contains("process_resident_memory_bytes"));
    assert!(!own.contains("ucm_calls_total"));

    for (query, why) in [
        ("", "missing parameter"),
        ("?target=gamma", "unknown target"),
        ("?target=", "missing parameter"),
    ] {
        let r = get(&format!("{base}/probe{query}")).await;
        assert_eq!(r.status(), 400);
        let body = r.text().await.unwrap();
        assert!(body.contains(why), "{body}");
        assert_eq!(body.lines().count(), 1);
    }
    // A URL is never a target: nothing is fetched from it.
    let r = get(&format!("{base}/probe?target=https://127.0.0.1:1/api")).await;
    assert_eq!(r.status(), 400);
    running.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn metrics_endpoint_format_gzip_landing_and_readiness() {
    let sim = start_sim(busy_sim_config(33)).await;
    // The first poll hangs for a moment, so readiness can be seen going from 503 to 200.
    sim.add_fault(FaultRule {
        fault: Fault::Delay(Duration::from_millis(800)),
        action: Some("challenge".into()),
        times: Some(1),
    });
    let dir = tempfile::tempdir().unwrap();
    let running = Exporter::new(settings(vec![target_for(&sim, "office")], dir.path()))
        .listen("127.0.0.1:0")
        .clock(sim_clock(&sim))
        .start()
        .await
        .unwrap();
    let base = format!("http://{}", running.addr());
    let r = get(&format!("{base}/-/ready")).await;
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("office"));
    assert_eq!(get(&format!("{base}/-/healthy")).await.status(), 200);
    wait_ready(&base).await;

    let r = get(&format!("{base}/metrics")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let plain = r.text().await.unwrap();
    let scrape = Scrape::parse(&plain);
    assert_eq!(scrape.value("ucm_up", &[]), 1.0);
    assert_eq!(
        scrape.value(
            "ucm_calls_total",
            &[
                ("direction", "inbound"),
                ("trunk", ""),
                ("disposition", "no_answer")
            ]
        ),
        0.0,
        "missed-call series exist at 0 from the start"
    );
    assert!(!plain.contains(&ucm_sim::SimConfig::default().password));

    let text = get_gzip(&format!("{base}/metrics")).await;
    assert!(text.contains("ucm_up 1"));
    assert!(text.contains("ucm_exporter_build_info{"));

    // Counts applied after the first scrapes show in the next ones, gzip or not, on both paths.
    let mut tally = CallTally::default();
    tally.add_extension_calls("98765", Role::Callee, Disposition::Voicemail, 7);
    tally.add_extension_talk("98765", Role::Caller, 321);
    running.target_metrics("office").unwrap().apply(&tally);
    let want = [
        "ucm_extension_calls_total{disposition=\"voicemail\",extension=\"98765\",role=\"callee\"} 7\n",
        "ucm_extension_talk_seconds_total{extension=\"98765\",role=\"caller\"} 321\n",
        "ucm_up 1\n",
    ];
    let after = get_gzip(&format!("{base}/metrics")).await;
    let probed = get_gzip(&format!("{base}/probe?target=office")).await;
    let plain_after = get(&format!("{base}/metrics")).await.text().await.unwrap();
    for line in want {
        for (what, body) in [
            ("gzip", &after),
            ("probe", &probed),
            ("plain", &plain_after),
        ] {
            assert!(body.contains(line), "{what} scrape lacks {line}");
        }
    }
    assert!(after.contains("process_resident_memory_bytes"));
    assert!(!probed.contains("ucm_exporter_build_info"));

    let landing = get(&base).await;
    assert!(landing.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = landing.text().await.unwrap();
    assert!(html.contains("href=\"/metrics\"") && html.contains("/probe?target=office"));
    assert_eq!(get(&format!("{base}/nope")).await.status(), 404);
    let post = reqwest::Client::new()
        .post(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);

    promtool_accepts(&plain);
    promtool_accepts(&after);

    let started = std::time::Instant::now();
    running.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let saved = std::fs::read_to_string(dir.path().join("office.json")).unwrap();
    assert!(saved.contains("\"watermark\""));
    sim.shutdown().await;
}

/// A scrape as Prometheus makes it (always asking for gzip), decoded.
async fn get_gzip(url: &str) -> String {
    let r = reqwest::Client::new()
        .get(url)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(r.headers()["vary"], "Accept-Encoding");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&r.bytes().await.unwrap()[..])
        .read_to_string(&mut text)
        .unwrap();
    text
}

/// The landing page's row of a target (one line each).
fn row<'a>(html: &'a str, name: &str) -> &'a str {
    let start = format!("<tr><td>{name}</td>");
    html.lines().find(|l| l.starts_with(&start)).unwrap_or("")
}

/// GETs `url` until `done` holds for its body, within a deadline; returns that body.
async fn body_when(url: &str, done: impl Fn(&str) -> bool) -> String {
    let mut body = String::new();
    for _ in 0..200 {
        body = get(url).await.text().await.unwrap();
        if done(&body) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never showed what was awaited; last answer:\n{body}");
}

/// Every poll time on the simulator's frozen clock, as the landing page writes it.
fn frozen_time(sim: &ucm_sim::SimHandle) -> String {
    sim.now()
        .and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test]
async fn landing_page_shows_each_targets_last_success_and_last_error() {
    let flaky = start_sim(busy_sim_config(34)).await;
    // Its first poll fails on the CDR request; the later ones succeed.
    flaky.add_fault(FaultRule {
        fault: Fault::Http500,
        action: Some("cdrapi".into()),
        times: Some(1),
    });
    let locked = start_sim(busy_sim_config(35)).await;
    // Every login refused: this one never succeeds.
    locked.add_fault(FaultRule {
        fault: Fault::LoginFails,
        action: None,
        times: None,
    });
    let dir = tempfile::tempdir().unwrap();
    let targets = vec![target_for(&flaky, "flaky"), target_for(&locked, "locked")];
    let running = Exporter::new(settings(targets, dir.path()))
        .listen("127.0.0.1:0")
        .clock(sim_clock(&flaky))
        .start()
        .await
        .unwrap();
    let base = format!("http://{}", running.addr());
    let at = frozen_time(&flaky);

    let html = body_when(&base, |h| {
        row(h, "flaky").contains("<td>ok</td>") && row(h, "locked").contains("<td>failed</td>")
    })
    .await;
    let flaky_row = row(&html, "flaky");
    assert!(
        flaky_row.contains(&format!(
            "<td>yes</td><td>ok</td><td>{at}</td>\
             <td><code>http</code> at {at}: the UCM answered HTTP 500</td>"
        )),
        "{flaky_row}"
    );
    // Start windows (these targets' setting), and the six live-status collectors on by default.
    assert!(flaky_row.contains("<td>start</td><td>"), "{flaky_row}");
    assert!(flaky_row.contains(" of 6 working"), "{flaky_row}");
    assert!(flaky_row.contains("href=\"/probe?target=flaky\""));
    assert!(flaky_row.contains("href=\"/probe?target=flaky&amp;debug=true\""));
    let locked_row = row(&html, "locked");
    assert!(
        locked_row.contains(&format!(
            "<td>yes</td><td>failed</td><td>never</td><td><code>auth</code> at {at}: "
        )),
        "{locked_row}"
    );

    // Every poll of the locked target fails, so its last poll's log says so, whichever it is.
    let debug = body_when(&format!("{base}/probe?target=locked&debug=true"), |b| {
        b.contains("Log of the last poll:\n")
    })
    .await;
    let (log, metrics) = debug
        .split_once("\nMetrics that /probe?target=locked returns:\n")
        .expect("a log section, then the metrics");
    assert!(
        log.lines()
            .any(|l| l.contains(" WARN ucm_exporter::poll: poll failed: ")
                && l.contains("reason=auth")),
        "{log}"
    );
    let scrape = Scrape::parse(metrics);
    assert_eq!(scrape.value("ucm_up", &[]), 0.0);
    assert!(scrape.value("ucm_poll_errors_total", &[("reason", "auth")]) >= 1.0);
    assert!(!debug.contains(&ucm_sim::SimConfig::default().password));

    running.shutdown().await;
    flaky.shutdown().await;
    locked.shutdown().await;
}

#[tokio::test]
async fn probe_debug_shows_the_last_polls_log_then_its_metrics() {
    let sim = start_sim(busy_sim_config(36)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut target = target_for(&sim, "quiet");
    // One poll, at start: what the debug page shows cannot change under the test.
    target.poll_interval = Duration::from_secs(3600);
    let running = Exporter::new(settings(vec![target], dir.path()))
        .listen("127.0.0.1:0")
        .clock(sim_clock(&sim))
        .start()
        .await
        .unwrap();
    let base = format!("http://{}", running.addr());
    wait_ready(&base).await;

    let r = get(&format!("{base}/probe?target=quiet&debug=true")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    let body = r.text().await.unwrap();
    let (log, metrics) = body
        .split_once("\nMetrics that /probe?target=quiet returns:\n")
        .expect("a log section, then the metrics");
    let lines: Vec<&str> = log
        .split_once("Log of the last poll:\n")
        .expect("the first poll has finished")
        .1
        .lines()
        .collect();
    let has = |what: &str| lines.iter().any(|l| l.contains(what));
    assert!(
        has(" INFO ucm_exporter::ucm::session: logged in to the UCM user=cdrapi"),
        "{log}"
    );
    // A debug line, kept whatever the log level: the poll's figures.
    assert!(
        has(" DEBUG ucm_exporter::poll: poll done kind=\"baseline\""),
        "{log}"
    );
    assert!(!has("poll failed"), "{log}");
    for l in &lines {
        let time = l.split(' ').next().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(time).is_ok(),
            "a line starts with its time: {l}"
        );
    }
    // The metrics are exactly what /probe returns (no poll ran in between).
    let probe = get(&format!("{base}/probe?target=quiet"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(metrics, probe);
    assert_eq!(Scrape::parse(metrics).value("ucm_up", &[]), 1.0);
    assert!(!body.contains(&ucm_sim::SimConfig::default().password));

    // The landing page: a success and no error yet.
    let html = get(&base).await.text().await.unwrap();
    let at = frozen_time(&sim);
    assert!(
        row(&html, "quiet").contains(&format!(
            "<td>yes</td><td>ok</td><td>{at}</td><td>none</td>"
        )),
        "{html}"
    );

    // An unknown target is refused with or without debug.
    let r = get(&format!("{base}/probe?target=loud&debug=true")).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("unknown target \"loud\""));
    running.shutdown().await;
    sim.shutdown().await;
}
