//! Reloading the configuration while the exporter runs: targets added, removed and changed
//! (from the main file and from `targets_dir`), the others left alone with their sessions and
//! counts; a broken configuration refused with the old targets still polling. In-process on the
//! simulators' frozen clock through `POST /-/reload`, and as the real binary through SIGHUP.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use common::*;
use ucm_exporter::cli::Cli;
use ucm_exporter::exporter::Exporter;
use ucm_sim::{SimConfig, SimHandle};

const STEP: Duration = Duration::from_secs(4 * 60);

/// One `targets:` entry for `sim`, with `extra` keys (indented as the entry's).
fn entry(name: &str, sim: &SimHandle, extra: &str) -> String {
    format!(
        "  - name: {name}\n    url: {url}\n    username: cdrapi\n    password: {pw}\n    \
         timezone: UTC\n    tls:\n      ca_file: {ca}\n{extra}",
        url = sim.url(),
        pw = SimConfig::default().password,
        ca = sim.ca_path().display(),
    )
}

/// The main file: polls every second on the start windows, each poll after a step a sweep (so
/// that a scrape matches the truth once a poll has run), sessions that outlive the steps.
fn main_file(dir: &Path, entries: &[String], tail: &str) -> String {
    format!(
        "poll_interval: 1s\nsweep_interval: 1s\nwindow_mode: start\nrequest_timeout: 5s\n\
         session_renew_after: 1h\nstate_dir: {state}\ntargets_dir: customers\n{tail}targets:\n{}",
        entries.concat(),
        state = dir.join("state").display(),
    )
}

fn logouts(sim: &SimHandle) -> u64 {
    sim.stats().requests.get("logout").copied().unwrap_or(0)
}

async fn post(url: &str) -> (u16, String) {
    let r = reqwest::Client::new().post(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn exporter_metric(base: &str, name: &str) -> f64 {
    let text = get(&format!("{base}/metrics")).await.text().await.unwrap();
    Scrape::parse(&text).value(name, &[])
}

/// Advances every simulator by `d`, keeping their clocks together (the exporter reads the
/// first one's).
fn advance(sims: &[&SimHandle], d: Duration) {
    for s in sims {
        s.advance(d);
    }
}

#[tokio::test]
async fn reload_adds_removes_and_restarts_targets_and_leaves_the_others_alone() {
    let (a, b, c, d) = (
        start_sim(busy_sim_config(41)).await,
        start_sim(busy_sim_config(42)).await,
        start_sim(busy_sim_config(43)).await,
        start_sim(busy_sim_config(44)).await,
    );
    let sims = [&a, &b, &c, &d];
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ucm-exporter.yml");
    let customers = dir.path().join("customers");
    std::fs::create_dir(&customers).unwrap();
    let main_v1 = main_file(
        dir.path(),
        &[entry("alpha", &a, ""), entry("bravo", &b, "")],
        "",
    );
    std::fs::write(&cfg, &main_v1).unwrap();
    std::fs::write(
        customers.join("acme.yml"),
        format!("targets:\n{}", entry("charlie", &c, "")),
    )
    .unwrap();
    // Neither is read: not YAML by name, and an editor's hidden swap file.
    std::fs::write(customers.join("README.txt"), "not: [yaml").unwrap();
    std::fs::write(customers.join(".acme.yml.swp"), "targets: [").unwrap();

    let cli =
        Cli::try_parse_from(["ucm-exporter", "--config.file", cfg.to_str().unwrap()]).unwrap();
    let settings = cli.settings(&|_| None).unwrap();
    let names: Vec<&str> = settings.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["alpha", "bravo", "charlie"]);
    let cli = Arc::new(cli);
    let running = Exporter::new(settings)
        .listen("127.0.0.1:0")
        .clock(sim_clock(&a))
        .reload_from(Arc::new(move || cli.settings(&|_| None)))
        .start()
        .await
        .unwrap();
    let base = format!("http://{}", running.addr());
    wait_exporter_ready(&base).await;
    assert_eq!(
        exporter_metric(&base, "ucm_exporter_config_last_reload_successful").await,
        1.0
    );
    let probe = |n: &str| format!("{base}/probe?target={n}");
    let t0 = a.now();
    advance(&sims, STEP);
    for (n, s) in [("alpha", &a), ("bravo", &b), ("charlie", &c)] {
        wait_for_calls(&probe(n), s.truth(t0, s.now()).total_calls, PATIENCE).await;
    }
    let a_before = a.stats();
    let (b_out, c_out, c_logins) = (logouts(&b), logouts(&c), c.stats().logins_ok);

    // bravo removed, charlie changed (its own file), delta added in a new customer's file.
    std::fs::write(&cfg, main_file(dir.path(), &[entry("alpha", &a, "")], "")).unwrap();
    std::fs::write(
        customers.join("acme.yml"),
        format!(
            "targets:\n{}",
            entry("charlie", &c, "    status_interval: 20s\n")
        ),
    )
    .unwrap();
    std::fs::write(
        customers.join("beta.yaml"),
        format!("targets:\n{}", entry("delta", &d, "")),
    )
    .unwrap();
    let (status, body) = post(&format!("{base}/-/reload")).await;
    assert_eq!((status, body.as_str()), (200, "configuration reloaded\n"));
    // Stopped as at shutdown: logged out before the reload answered.
    assert_eq!(logouts(&b), b_out + 1, "the removed target logs out");
    assert_eq!(logouts(&c), c_out + 1, "the changed target logs out");
    let r = get(&probe("bravo")).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("unknown target"));
    let page = get(&format!("{base}/")).await.text().await.unwrap();
    assert!(!page.contains("bravo") && page.contains("delta") && page.contains("charlie"));
    wait_exporter_ready(&base).await;
    let t1 = a.now();
    advance(&sims, STEP);
    let t2 = a.now();
    // alpha counted on without a gap; charlie restarted on its state file, counts kept; delta
    // counts from its baseline, taken before the step.
    wait_for_calls(&probe("alpha"), a.truth(t0, t2).total_calls, PATIENCE).await;
    wait_for_calls(&probe("charlie"), c.truth(t0, t2).total_calls, PATIENCE).await;
    wait_for_calls(&probe("delta"), d.truth(t1, t2).total_calls, PATIENCE).await;
    assert_eq!(c.stats().logins_ok, c_logins + 1, "charlie logged in again");
    let a_after = a.stats();
    assert_eq!(
        (a_after.logins_ok, a_after.sessions_created),
        (a_before.logins_ok, a_before.sessions_created),
        "alpha kept its session"
    );
    assert_eq!(logouts(&a), 0);

    // A typo in the main file: refused, reported, and alpha goes on polling.
    let stamp = "ucm_exporter_config_last_reload_success_timestamp_seconds";
    let good_at = exporter_metric(&base, stamp).await;
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, good.replace("poll_interval", "poll_intervall")).unwrap();
    let (status, body) = post(&format!("{base}/-/reload")).await;
    assert_eq!(status, 500);
    assert!(
        body.contains("unknown field `poll_intervall`") && body.contains("ucm-exporter.yml"),
        "{body}"
    );
    assert_eq!(
        exporter_metric(&base, "ucm_exporter_config_last_reload_successful").await,
        0.0
    );
    // The same name in two files is refused, naming both.
    std::fs::write(&cfg, &good).unwrap();
    std::fs::write(
        customers.join("gamma.yml"),
        format!("targets:\n{}", entry("delta", &d, "")),
    )
    .unwrap();
    let (status, body) = post(&format!("{base}/-/reload")).await;
    assert_eq!(status, 500);
    assert!(
        body.contains("\"delta\"") && body.contains("beta.yaml") && body.contains("gamma.yml"),
        "{body}"
    );
    // So is moving the state: only a restart can.
    std::fs::remove_file(customers.join("gamma.yml")).unwrap();
    std::fs::write(
        &cfg,
        good.replace(
            &dir.path().join("state").display().to_string(),
            &dir.path().join("elsewhere").display().to_string(),
        ),
    )
    .unwrap();
    let (status, body) = post(&format!("{base}/-/reload")).await;
    assert_eq!(status, 500);
    assert!(body.contains("state_dir changed"), "{body}");
    advance(&sims, STEP);
    let t3 = a.now();
    wait_for_calls(&probe("alpha"), a.truth(t0, t3).total_calls, PATIENCE).await;
    wait_for_calls(&probe("delta"), d.truth(t1, t3).total_calls, PATIENCE).await;

    // Fixed: accepted again, nothing restarted, and the time of success moved on.
    std::fs::write(&cfg, &good).unwrap();
    let (c_out, d_out) = (logouts(&c), logouts(&d));
    let (status, _) = post(&format!("{base}/-/reload")).await;
    assert_eq!(status, 200);
    assert_eq!(
        exporter_metric(&base, "ucm_exporter_config_last_reload_successful").await,
        1.0
    );
    let now_at = exporter_metric(&base, stamp).await;
    assert_eq!(
        now_at - good_at,
        (t3 - t1).as_seconds_f64(),
        "{good_at} {now_at}"
    );
    assert_eq!((logouts(&c), logouts(&d)), (c_out, d_out));
    assert_eq!(a.stats().logins_ok, a_before.logins_ok);
    // Reload takes POST only.
    let r = get(&format!("{base}/-/reload")).await;
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");

    running.shutdown().await;
    for s in [a, b, c, d] {
        s.shutdown().await;
    }
}

const PATIENCE: Duration = Duration::from_secs(30);

const BIN: &str = env!("CARGO_BIN_EXE_ucm-exporter");

/// The exporter binary, killed if the test fails before it stops.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hangup(child: &Child) {
    let status = Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Polls `url` until `ok` holds for its status and body.
async fn wait_until(url: &str, what: &str, ok: impl Fn(u16, &str) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let r = get(url).await;
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        if ok(status, &body) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {url} said {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sighup_reloads_the_running_binary() {
    ucm_exporter::ucm::install_crypto_provider();
    let sim = start_sim(live_sim_config(45)).await;
    let dir = tempfile::tempdir().unwrap();
    let customers: PathBuf = dir.path().join("customers");
    std::fs::create_dir(&customers).unwrap();
    let cfg = dir.path().join("ucm-exporter.yml");
    std::fs::write(&cfg, main_file(dir.path(), &[entry("first", &sim, "")], "")).unwrap();
    let mut child = Child(
        Command::new(BIN)
            .args([
                "--config.file",
                cfg.to_str().unwrap(),
                "--web.listen-address",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(l);
        }
    });
    let addr = loop {
        let l = rx
            .recv_timeout(PATIENCE)
            .expect("the exporter logs its address");
        if let Some(i) = l.find("address=") {
            break l[i + "address=".len()..]
                .split_whitespace()
                .next()
                .unwrap()
                .to_string();
        }
    };
    let base = format!("http://{addr}");
    wait_exporter_ready(&base).await;

    // A customer's file dropped into the directory appears on SIGHUP.
    std::fs::write(
        customers.join("second.yml"),
        format!("targets:\n{}", entry("second", &sim, "")),
    )
    .unwrap();
    hangup(&child);
    wait_until(
        &format!("{base}/probe?target=second"),
        "second added",
        |s, _| s == 200,
    )
    .await;
    // Ready once its first poll, and so its login, is done.
    wait_exporter_ready(&base).await;
    let logins = sim.stats().logins_ok;
    // Its file removed: it stops and logs out, and first is not touched.
    std::fs::remove_file(customers.join("second.yml")).unwrap();
    hangup(&child);
    wait_until(
        &format!("{base}/probe?target=second"),
        "second removed",
        |s, _| s == 400,
    )
    .await;
    let log: Vec<String> = rx.try_iter().collect();
    assert_eq!(logouts(&sim), 1, "{}", log.join("\n"));
    assert_eq!(sim.stats().logins_ok, logins);
    wait_until(&format!("{base}/metrics"), "reload metric", |_, b| {
        b.contains("ucm_exporter_config_last_reload_successful 1")
    })
    .await;
    drop(child);
    sim.shutdown().await;
}
