//! The Debian package: `cargo deb` builds it (profile `deb`: the exporter without the demo,
//! unoptimised so that its build from nothing stays short; files and metadata as a release
//! build packages them),
//! `dpkg -i` installs it on this machine, and what an operator relies on is checked for real:
//! the files, the conffile, the system user and the state dir it owns, the unit
//! (`systemd-analyze verify`), `ucm-exporter --version`, the example config (refused until a
//! URL is filled in, then `check` passes against a simulated UCM as the service's user), and
//! that `dpkg -r` and `dpkg -P` take it all away again. It needs root and dpkg, as on the CI
//! machine; where dpkg is absent it says so and checks nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use common::*;

const PACKAGE: &str = "ucm-exporter";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a command to completion; its output, whatever its exit status.
fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

/// Runs a command that must succeed; its stdout and stderr.
fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    let said = text(&out);
    assert!(out.status.success(), "{program} {args:?} failed:\n{said}");
    said
}

fn installed() -> bool {
    run("dpkg-query", &["-W", "-f=${Status}", PACKAGE])
        .stdout
        .starts_with(b"install ok installed")
}

fn user_exists() -> bool {
    run("getent", &["passwd", PACKAGE]).status.success()
}

/// `owner:group mode` of a path.
fn owner_and_mode(path: &str) -> String {
    ok("stat", &["-c", "%U:%G %a", path]).trim().to_string()
}

/// Builds the package with `cargo deb` into `out`; its path.
fn build_deb(out: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(&cargo)
        .args(["deb", "--locked", "--profile", "deb", "--output"])
        .arg(out)
        .current_dir(repo())
        .output()
        .expect("cargo runs");
    let said = text(&built);
    assert!(
        built.status.success(),
        "cargo deb failed (cargo-deb is needed: cargo install cargo-deb --locked; \
         scripts/test.sh installs it):\n{said}"
    );
    let debs: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "{debs:?}\n{said}");
    debs[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_debian_package_installs_configures_and_purges_cleanly() {
    if run("sh", &["-c", "command -v dpkg"]).stdout.is_empty() {
        eprintln!(
            "SKIPPED the_debian_package_installs_configures_and_purges_cleanly: no dpkg on this \
             machine, so the Debian package cannot be installed here"
        );
        return;
    }
    assert_eq!(
        ok("id", &["-u"]).trim(),
        "0",
        "installing the package needs root (the CI machine runs the tests as root)"
    );
    let started = Instant::now();
    let out = tempfile::tempdir().unwrap();
    let deb = build_deb(out.path());
    let built_in = started.elapsed();
    let deb = deb.to_str().unwrap();

    // What the package holds, before it is installed.
    let contents = ok("dpkg-deb", &["--contents", deb]);
    let info = ok("dpkg-deb", &["--info", deb]);
    assert!(info.contains("Package: ucm-exporter"), "{info}");
    assert!(info.contains("adduser"), "depends on adduser: {info}");
    let unit_path = if contents.contains("./usr/lib/systemd/system/ucm-exporter.service") {
        "/usr/lib/systemd/system/ucm-exporter.service"
    } else {
        "/lib/systemd/system/ucm-exporter.service"
    };

    // A run that failed half-way may have left it installed.
    if installed() {
        ok("dpkg", &["--purge", PACKAGE]);
    }
    ok("dpkg", &["-i", deb]);
    assert!(installed());

    let files = ok("dpkg", &["-L", PACKAGE]);
    for f in [
        "/usr/bin/ucm-exporter",
        "/etc/ucm-exporter/config.yml",
        "/usr/share/ucm-exporter/alerts.yaml",
        "/usr/share/ucm-exporter/alertmanager.yml",
        "/usr/share/ucm-exporter/dashboards/ucm-overview.json",
        "/usr/share/ucm-exporter/dashboards/ucm-extensions.json",
        "/usr/share/doc/ucm-exporter/README.md",
        unit_path,
    ] {
        assert!(files.lines().any(|l| l == f), "{f} not installed:\n{files}");
        assert!(Path::new(f).is_file(), "{f} missing");
    }
    for (installed, shipped) in [
        (
            "/usr/share/ucm-exporter/alerts.yaml",
            "dashboards/alerts.yaml",
        ),
        (unit_path, "deploy/debian/ucm-exporter.service"),
        ("/etc/ucm-exporter/config.yml", "deploy/debian/config.yml"),
    ] {
        assert_eq!(
            std::fs::read_to_string(installed).unwrap(),
            std::fs::read_to_string(repo().join(shipped)).unwrap(),
            "{installed} is {shipped}"
        );
    }
    let conffiles = ok("dpkg-query", &["-W", "-f=${Conffiles}", PACKAGE]);
    assert!(
        conffiles.contains("/etc/ucm-exporter/config.yml"),
        "conffiles: {conffiles}"
    );

    // The system user, and what it owns or may read.
    let passwd = ok("getent", &["passwd", PACKAGE]);
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    let uid: u32 = fields[2].parse().unwrap();
    assert!(uid < 1000, "a system user: {passwd}");
    assert_eq!(fields[5], "/var/lib/ucm-exporter", "{passwd}");
    assert!(
        fields[6].ends_with("nologin") || fields[6].ends_with("false"),
        "{passwd}"
    );
    assert_eq!(
        owner_and_mode("/var/lib/ucm-exporter"),
        "ucm-exporter:ucm-exporter 750"
    );
    assert_eq!(owner_and_mode("/etc/ucm-exporter"), "root:ucm-exporter 750");
    assert_eq!(
        owner_and_mode("/etc/ucm-exporter/config.yml"),
        "root:ucm-exporter 640"
    );

    let version = ok("/usr/bin/ucm-exporter", &["--version"]);
    assert!(
        version.contains(env!("CARGO_PKG_VERSION")),
        "--version: {version}"
    );
    let demo = run("/usr/bin/ucm-exporter", &["demo"]);
    assert!(
        !demo.status.success() && text(&demo).contains("this build has no demo"),
        "the packaged exporter has no demo: {}",
        text(&demo)
    );

    let verify = run("systemd-analyze", &["verify", unit_path]);
    assert!(
        verify.status.success() && text(&verify).trim().is_empty(),
        "systemd-analyze verify {unit_path}:\n{}",
        text(&verify)
    );

    // The example config: once the password and the certificate are in place, refused until
    // its url is filled in, naming it; then `check` passes as the service's user.
    let sim = start_sim(live_sim_config(21)).await;
    for (path, content) in [
        (
            "/etc/ucm-exporter/office.password",
            ucm_sim::SimConfig::default().password,
        ),
        ("/etc/ucm-exporter/office-ca.pem", sim.ca_pem()),
    ] {
        std::fs::write(path, content).unwrap();
        ok("chown", &["root:ucm-exporter", path]);
        ok("chmod", &["0640", path]);
    }
    let check = ["-u", PACKAGE, "--", "/usr/bin/ucm-exporter", "check"];
    let check_args = [
        &check[..],
        &["--config.file", "/etc/ucm-exporter/config.yml"],
    ]
    .concat();
    let refused = run("runuser", &check_args);
    assert!(
        !refused.status.success() && text(&refused).contains("url"),
        "the example config is refused until its url is filled in, naming it:\n{}",
        text(&refused)
    );
    let shipped = std::fs::read_to_string("/etc/ucm-exporter/config.yml").unwrap();
    assert_eq!(shipped.matches("url: ''").count(), 1);
    std::fs::write(
        "/etc/ucm-exporter/config.yml",
        shipped.replace("url: ''", &format!("url: {}", sim.url())),
    )
    .unwrap();
    let checked = tokio::task::spawn_blocking(move || run("runuser", &check_args))
        .await
        .unwrap();
    let said = text(&checked);
    assert!(
        checked.status.success() && said.contains("OK"),
        "ucm-exporter check with the filled-in example config:\n{said}"
    );
    sim.shutdown().await;

    // Removed: the program goes, the configuration and the user stay; purged: all of it goes.
    std::fs::remove_file("/etc/ucm-exporter/office.password").unwrap();
    std::fs::remove_file("/etc/ucm-exporter/office-ca.pem").unwrap();
    ok("dpkg", &["-r", PACKAGE]);
    assert!(!Path::new("/usr/bin/ucm-exporter").exists());
    assert!(!Path::new(unit_path).exists());
    assert!(!Path::new("/usr/share/ucm-exporter").exists());
    assert!(Path::new("/etc/ucm-exporter/config.yml").exists());
    assert!(user_exists());
    ok("dpkg", &["-P", PACKAGE]);
    assert!(!installed());
    for gone in ["/etc/ucm-exporter", "/var/lib/ucm-exporter"] {
        assert!(!Path::new(gone).exists(), "{gone} left after purge");
    }
    assert!(!user_exists(), "user ucm-exporter left after purge");
    assert!(
        !run("getent", &["group", PACKAGE]).status.success(),
        "group ucm-exporter left after purge"
    );
    eprintln!(
        "package: built in {:.1} s, installed, checked and purged in {:.1} s",
        built_in.as_secs_f64(),
        (started.elapsed() - built_in).as_secs_f64()
    );
}
