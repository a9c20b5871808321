//! The real binary: the demo, `check`, config errors, clean shutdown on SIGTERM, and logs that
//! never show a password, token or cookie.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use ucm_sim::SimConfig;

const BIN: &str = env!("CARGO_BIN_EXE_ucm-exporter");

/// Forwards a child's output lines to a channel, so a test can wait for one with a deadline.
fn lines_of(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for_line(rx: &mpsc::Receiver<String>, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(needle) => return l,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("no line containing {needle:?} within {timeout:?}");
}

/// A child process that is killed if the test fails before it is stopped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command) -> Running {
    Running(cmd.spawn().expect("the binary starts"))
}

/// The exporter on `cfg`, listening on a free port, its stdout dropped.
fn exporter(cfg: &std::path::Path, extra: &[&str], stderr: Stdio) -> Running {
    spawn(
        Command::new(BIN)
            .args([
                "--config.file",
                cfg.to_str().unwrap(),
                "--web.listen-address",
                "127.0.0.1:0",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(stderr),
    )
}

fn sigterm_and_wait(mut child: Running) -> std::process::ExitStatus {
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the exporter did not exit within 5 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn write_config(
    dir: &std::path::Path,
    sim: &ucm_sim::SimHandle,
    password: &str,
) -> std::path::PathBuf {
    let pw = dir.join("office.password");
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    let cfg = dir.join("ucm-exporter.yml");
    std::fs::write(
        &cfg,
        format!(
            "poll_interval: 1s\nstate_dir: {state}\ntargets:\n  - name: office\n    url: {url}\n    username: cdrapi\n    \
             password_file: {pw}\n    timezone: UTC\n    tls:\n      ca_file: {ca}\n",
            state = dir.join("state").display(),
            url = sim.url(),
            pw = pw.display(),
            ca = sim.ca_path().display(),
        ),
    )
    .unwrap();
    cfg
}

#[tokio::test]
async fn demo_shows_calls_growing_and_stops_on_sigterm() {
    ucm_exporter::ucm::install_crypto_provider();
    let mut child = spawn(
        Command::new(BIN)
            .args([
                "demo",
                "--web.listen-address",
                "127.0.0.1:0",
                "--poll.interval",
                "1s",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let out = lines_of(child.0.stdout.take().unwrap());
    let line = wait_for_line(&out, "metrics:", Duration::from_secs(60));
    let url = line.split_whitespace().last().unwrap().to_string();
    assert!(
        url.starts_with("http://localhost:") && url.ends_with("/metrics"),
        "{line}"
    );
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::Client::new().get(&url).send().await {
            let s = Scrape::parse(&r.text().await.unwrap());
            if s.get("ucm_up", &[]) == Some(1.0) {
                let calls = s.sum("ucm_calls_total");
                if seen.last() != Some(&calls) {
                    seen.push(calls);
                }
                if seen.len() >= 3 {
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        seen.len() >= 3 && seen.windows(2).all(|w| w[1] > w[0]),
        "ucm_calls_total should grow: {seen:?}"
    );
    assert!(sigterm_and_wait(child).success());
}

// Multi-threaded: the simulator keeps serving while this thread waits on the child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_logs_never_show_secrets_and_exit_cleanly() {
    let sim = start_sim(live_sim_config(41)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &sim, "cdrapi-secret");
    let mut child = exporter(&cfg, &["--log.level", "debug"], Stdio::piped());
    let err = lines_of(child.0.stderr.take().unwrap());
    let mut log = vec![wait_for_line(&err, "poll done", Duration::from_secs(30))];
    // Lose the session, so the log also covers a renewal.
    sim.invalidate_sessions();
    sim.advance(Duration::from_secs(120));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(sigterm_and_wait(child).success());
    log.extend(err.try_iter());
    let log = log.join("\n");
    assert!(log.contains("logging in again"), "{log}");
    assert!(log.contains("logged out"), "{log}");
    assert!(log.contains("office"), "log lines name the target: {log}");
    assert!(!log.contains("cdrapi-secret"), "password in the log");
    let token_or_cookie = regex::Regex::new(r"[0-9a-f]{32}|sid[0-9]+").unwrap();
    assert!(
        !token_or_cookie.is_match(&log),
        "token or cookie in the log: {log}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_says_ok_or_what_to_fix() {
    let sim = start_sim(live_sim_config(42)).await;
    let dir = tempfile::tempdir().unwrap();
    let good = write_config(dir.path(), &sim, "cdrapi-secret");
    let out = Command::new(BIN)
        .args(["check", "--config.file", good.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("office: OK") && stdout.contains("entries"),
        "{stdout}"
    );

    let bad_dir = tempfile::tempdir().unwrap();
    let bad = write_config(bad_dir.path(), &sim, "wrong");
    let out = Command::new(BIN)
        .args(["check", "--config.file", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("office: FAILED (auth)") && stdout.contains("password"),
        "{stdout}"
    );
    sim.shutdown().await;
}

#[test]
fn config_typos_are_named_with_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.yml");
    std::fs::write(&cfg, "targets:\n  - name: office\n    url: https://ucm:8089\n    username: cdrapi\n    pasword_file: /x\n").unwrap();
    let out = Command::new(BIN)
        .args(["--config.file", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.yml") && stderr.contains("pasword_file"),
        "{stderr}"
    );

    let out = Command::new(BIN)
        .args(["--ucm.url", "https://127.0.0.1:8089"])
        .env_remove("UCM_PASSWORD")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("UCM_PASSWORD"));
}

#[test]
fn a_wrong_password_in_the_log_is_explained_once() {
    // Run against a simulator in its own runtime: the binary sees a rejected login.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(start_sim(SimConfig {
        password: "other".into(),
        ..live_sim_config(43)
    }));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &sim, "cdrapi-secret");
    let mut child = exporter(&cfg, &[], Stdio::piped());
    let err = lines_of(child.0.stderr.take().unwrap());
    let line = wait_for_line(&err, "login rejected", Duration::from_secs(30));
    assert!(
        line.contains("HTTPS API Settings (New)") && line.contains("blacklisted"),
        "{line}"
    );
    std::thread::sleep(Duration::from_millis(2500)); // two more polls, no new attempt
    assert!(sigterm_and_wait(child).success());
    assert_eq!(sim.stats().logins_failed, 1);
    rt.block_on(sim.shutdown());
}

/// A login cut short by SIGTERM got no verdict from the UCM: it must not count towards the
/// rationing of logins that follows three rejections. (A SIGKILL mid-login does count; see
/// `login_guard`.)
#[test]
fn a_shutdown_mid_login_does_not_count_as_a_rejected_login() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(start_sim(live_sim_config(47)));
    sim.add_fault(ucm_sim::FaultRule {
        fault: ucm_sim::Fault::Delay(Duration::from_secs(8)),
        action: Some("login".into()),
        times: Some(1),
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &sim, "cdrapi-secret");
    let child = exporter(&cfg, &[], Stdio::null());
    // The attempt is on record (as a rejection, until it ends) before the login is sent.
    let logins = dir.path().join("state").join("logins");
    let failures = || -> Option<u64> {
        let file = std::fs::read_dir(&logins)
            .ok()?
            .flatten()
            .find(|e| e.path().extension().is_some_and(|x| x == "json"))?;
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(file.path()).ok()?).ok()?;
        record["failures"].as_u64()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while failures() != Some(1) {
        assert!(Instant::now() < deadline, "no login attempt on record");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(sim.stats().logins_ok, 0, "the login is still in flight");
    assert!(sigterm_and_wait(child).success());
    assert_eq!(failures(), Some(0), "the cancelled login still counts");
    rt.block_on(sim.shutdown());
}
