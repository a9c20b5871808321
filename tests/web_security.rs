//! `--web.config.file`: basic auth, TLS with a generated certificate, certificate rotation
//! without a restart, refusal of invalid files, `promtool check web-config` on the shipped
//! example, and scrapes that still answer while 200 slow clients hold connections open.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::AsyncWriteExt;
use ucm_exporter::config::Settings;
use ucm_exporter::exporter::{Exporter, Running};
use ucm_sim::SimHandle;

const BIN: &str = env!("CARGO_BIN_EXE_ucm-exporter");

fn settings(sim: &SimHandle, dir: &Path) -> Settings {
    Settings::new(dir.join("state"), vec![target_for(sim, "office")])
}

/// A self-signed certificate for 127.0.0.1, written as `name.crt` and `name.key` by rename,
/// the way a renewal tool replaces them.
fn write_cert(dir: &Path, name: &str) -> String {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    for (ext, pem) in [
        ("crt", ck.cert.pem()),
        ("key", ck.signing_key.serialize_pem()),
    ] {
        let tmp = dir.join(format!(".{name}.{ext}.tmp"));
        std::fs::write(&tmp, pem).unwrap();
        std::fs::rename(&tmp, dir.join(format!("{name}.{ext}"))).unwrap();
    }
    ck.cert.pem()
}

fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

async fn start(sim: &SimHandle, dir: &Path, web: Option<&Path>) -> anyhow::Result<Running> {
    Exporter::new(settings(sim, dir))
        .listen("127.0.0.1:0")
        .web_config(web)
        .clock(sim_clock(sim))
        .start()
        .await
}

/// A client that trusts exactly `ca_pem`, with no connection reuse, so every request is a new
/// handshake and sees the certificate served right now.
fn tls_client(ca_pem: &str) -> reqwest::Client {
    ucm_exporter::ucm::install_crypto_provider();
    reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes()).unwrap())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test]
async fn basic_auth_rejects_wrong_password_and_accepts_right_one_on_every_path() {
    let sim = start_sim(busy_sim_config(61)).await;
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("s3cret pass", 4).unwrap();
    let web = write_file(
        dir.path(),
        "web.yml",
        &format!("basic_auth_users:\n  prom: '{hash}'\n"),
    );
    let running = start(&sim, dir.path(), Some(&web)).await.unwrap();
    let base = format!("http://{}", running.addr());
    let client = reqwest::Client::new();
    for path in [
        "/metrics",
        "/probe?target=office",
        "/",
        "/-/healthy",
        "/-/ready",
        "/sd",
    ] {
        let url = format!("{base}{path}");
        let r = client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} without credentials");
        assert_eq!(r.headers()["www-authenticate"], "Basic");
        for (user, pass) in [("prom", "wrong"), ("nobody", "s3cret pass"), ("prom", "")] {
            let r = client
                .get(&url)
                .basic_auth(user, Some(pass))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{path} as {user}:{pass}");
        }
    }
    let r = client
        .get(format!("{base}/metrics"))
        .basic_auth("prom", Some("s3cret pass"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("ucm_exporter_build_info"));
    let r = client
        .get(format!("{base}/-/healthy"))
        .basic_auth("prom", Some("s3cret pass"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .get(format!("{base}/sd"))
        .basic_auth("prom", Some("s3cret pass"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("\"__param_target\":\"office\""));
    // Nobody reloads without credentials.
    let r = client
        .post(format!("{base}/-/reload"))
        .basic_auth("prom", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A changed user list applies to the next request, without a restart.
    let hash2 = bcrypt::hash("other", 4).unwrap();
    std::fs::write(&web, format!("basic_auth_users:\n  prom: '{hash2}'\n")).unwrap();
    let r = client
        .get(format!("{base}/metrics"))
        .basic_auth("prom", Some("s3cret pass"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the old password no longer works");
    let r = client
        .get(format!("{base}/metrics"))
        .basic_auth("prom", Some("other"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    running.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn tls_scrape_and_certificate_rotation_without_restart() {
    let sim = start_sim(busy_sim_config(62)).await;
    let dir = tempfile::tempdir().unwrap();
    let first = write_cert(dir.path(), "server");
    let web = write_file(
        dir.path(),
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    );
    let running = start(&sim, dir.path(), Some(&web)).await.unwrap();
    let port = running.addr().port();
    let url = format!("https://127.0.0.1:{port}/metrics");

    let r = tls_client(&first).get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("ucm_exporter_build_info"));
    // Plain HTTP to the TLS port gets nothing.
    assert!(reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .is_err());

    // Renewal: new certificate and key in place; the next handshake serves them.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = write_cert(dir.path(), "server");
    assert_ne!(first, second);
    let r = tls_client(&second).get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200, "the renewed certificate is served");
    assert!(
        tls_client(&first).get(&url).send().await.is_err(),
        "the old certificate is no longer served"
    );

    // A broken renewal (a key that does not fit) keeps the last good certificate in force.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    std::fs::write(
        dir.path().join("server.key"),
        other.signing_key.serialize_pem(),
    )
    .unwrap();
    let r = tls_client(&second).get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200, "the last good certificate stays");
    running.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn invalid_web_config_refuses_to_start_with_a_clear_message() {
    let sim = start_sim(busy_sim_config(63)).await;
    let dir = tempfile::tempdir().unwrap();
    write_cert(dir.path(), "a");
    for (text, says) in [
        (
            "basic_auth_users:\n  prom: not-a-hash\n",
            "basic_auth_users.prom: not a bcrypt hash",
        ),
        (
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n",
            "tls_server_config.cert_file",
        ),
        (
            "tls_server_config:\n  cert_flie: x.crt\n",
            "unknown field `cert_flie`",
        ),
        (
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  min_version: TLS99\n",
            "min_version: unknown TLS version",
        ),
    ] {
        let web = write_file(dir.path(), "web.yml", text);
        let err = match start(&sim, dir.path(), Some(&web)).await {
            Ok(_) => panic!("started with an invalid web config:\n{text}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("invalid --web.config.file"), "{err}");
        assert!(err.contains(says), "{text}: {err}");
    }

    // The real binary: exits non-zero before polling anything, and says what is wrong.
    let web = write_file(dir.path(), "web.yml", "basic_auth_users:\n  prom: plain\n");
    let out = std::process::Command::new(BIN)
        .args([
            "--ucm.url",
            &sim.url(),
            "--web.listen-address",
            "127.0.0.1:0",
        ])
        .arg("--state.dir")
        .arg(dir.path().join("state"))
        .arg("--web.config.file")
        .arg(&web)
        .env("UCM_PASSWORD", "x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid --web.config.file") && stderr.contains("basic_auth_users.prom"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("plain"),
        "the configured secret is not echoed: {stderr}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn shipped_example_passes_promtool_and_serves() {
    let sim = start_sim(busy_sim_config(64)).await;
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/web-config.example.yml"),
    )
    .unwrap();
    let web = write_file(dir.path(), "web-config.yml", &example);
    let ca = write_cert(dir.path(), "ucm-exporter");

    let out = std::process::Command::new("promtool")
        .args(["check", "web-config"])
        .arg(&web)
        .output()
        .expect("promtool is needed by this test: install Debian's `prometheus` package (scripts/test.sh does)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check web-config: {said}");
    assert!(said.contains("SUCCESS"), "{said}");

    // And promtool rejects what the exporter rejects.
    let bad = write_file(
        dir.path(),
        "bad.yml",
        &example.replace("prometheus: $2b$", "prometheus: $9z$"),
    );
    let out = std::process::Command::new("promtool")
        .args(["check", "web-config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(start(&sim, dir.path(), Some(&bad)).await.is_err());

    let running = start(&sim, dir.path(), Some(&web)).await.unwrap();
    let url = format!("https://127.0.0.1:{}/-/healthy", running.addr().port());
    let r = tls_client(&ca).get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    let r = tls_client(&ca)
        .get(&url)
        .basic_auth("prometheus", Some("change-me"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    running.shutdown().await;
    sim.shutdown().await;
}

/// Opens `n` connections that never finish a request: half send nothing, half trickle an
/// endless request header one byte every 200 ms.
async fn slow_clients(addr: std::net::SocketAddr, n: usize) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let _ = s
                    .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    .await;
                for _ in 0..150 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if s.write_all(b"a").await.is_err() {
                        return;
                    }
                }
            } else {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            drop(s);
        }));
    }
    tasks
}

#[tokio::test]
async fn scrapes_answer_while_200_slow_clients_hold_connections() {
    let sim = start_sim(busy_sim_config(65)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write_cert(dir.path(), "server");
    let tls_web = write_file(
        dir.path(),
        "tls.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    );
    for tls in [false, true] {
        let running = start(&sim, dir.path(), tls.then_some(tls_web.as_path()))
            .await
            .unwrap();
        let addr = running.addr();
        let (scheme, client) = if tls {
            ("https", tls_client(&ca))
        } else {
            ("http", reqwest::Client::new())
        };
        let url = format!("{scheme}://127.0.0.1:{}/metrics", addr.port());
        let slow = slow_clients(addr, 200).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut worst = Duration::ZERO;
        for _ in 0..5 {
            let t = Instant::now();
            let r = client
                .get(&url)
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .expect("scrape answers while slow clients hold connections");
            assert_eq!(r.status(), 200);
            assert!(r.text().await.unwrap().contains("ucm_exporter_build_info"));
            worst = worst.max(t.elapsed());
        }
        eprintln!("tls={tls}: slowest of 5 scrapes with 200 slow connections open: {worst:?}");
        assert!(worst < Duration::from_secs(2), "scrape took {worst:?}");
        for t in slow {
            t.abort();
        }
        running.shutdown().await;
    }

    // Request bodies are refused unread, and oversized headers are refused.
    let running = start(&sim, dir.path(), None).await.unwrap();
    let base = format!("http://{}", running.addr());
    let r = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .body(vec![b'x'; 16])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .header("X-Big", "y".repeat(64 * 1024))
        .send()
        .await;
    assert!(r.map(|r| r.status() == 431).unwrap_or(true));
    running.shutdown().await;
    sim.shutdown().await;
}
