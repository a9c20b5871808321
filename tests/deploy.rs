//! The deployment files: the Dockerfile (built and run without Docker by
//! scripts/docker-build-check.sh), the demo compose stack and its Prometheus config, the
//! Alertmanager routing (`amtool`), and the systemd units (`systemd-analyze verify`), the
//! Debian package's among them.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;

const BIN: &str = env!("CARGO_BIN_EXE_ucm-exporter");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs the script with the binaries `cargo test` has already built (debug profile): the
/// release build it runs by default would double CI's compile time, and the script checks that
/// its build command is the Dockerfile's. Everything after the build — layout, unprivileged
/// user, default command, compose shape, HEALTHCHECK, state volume — runs for real.
#[test]
fn docker_build_check_script_runs_the_image_steps() {
    let bin_dir = Path::new(BIN).parent().unwrap();
    assert!(
        bin_dir.join("ucm-sim").exists(),
        "ucm-sim is built beside ucm-exporter"
    );
    let out = Command::new("bash")
        .arg(repo().join("scripts/docker-build-check.sh"))
        .env("BIN_DIR", bin_dir)
        .output()
        .expect("bash runs");
    let said = output_text(&out);
    eprintln!("{said}");
    assert!(
        out.status.success(),
        "docker-build-check.sh failed:\n{said}"
    );
    assert!(said.contains("demo: HEALTHCHECK passed"), "{said}");
    assert!(said.contains("ucm_up 1 against ucm-sim"), "{said}");
    assert!(
        said.trim_end().ends_with("docker-build-check: OK"),
        "{said}"
    );
}

#[test]
fn dockerfile_is_multi_stage_non_root_with_healthcheck_and_labels() {
    let df = read("Dockerfile");
    assert_eq!(
        df.matches("\nFROM ").count(),
        2,
        "a build stage and a runtime stage"
    );
    assert!(df.contains("FROM debian:${DEBIAN_RELEASE}-slim"));
    assert!(
        df.contains("cargo fetch --locked"),
        "dependencies in their own layer"
    );
    assert!(df.contains("&& cargo build --release --locked --workspace"));
    assert!(df.contains("ca-certificates"));
    let user = df
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with('0') && !user.starts_with("root"),
        "USER {user}"
    );
    for needle in [
        "EXPOSE 9736",
        "ENTRYPOINT [\"ucm-exporter\"]",
        "VOLUME [\"/var/lib/ucm-exporter\"]",
        "HEALTHCHECK ",
        "/-/healthy",
        "org.opencontainers.image.revision",
        "/usr/local/bin/ucm-sim",
    ] {
        assert!(df.contains(needle), "Dockerfile lacks {needle}");
    }
    let ignore = read(".dockerignore");
    for needed in [
        "!Cargo.toml",
        "!Cargo.lock",
        "!build.rs",
        "!src/",
        "!benches/",
        "!crates/",
    ] {
        assert!(
            ignore.lines().any(|l| l == needed),
            ".dockerignore drops {needed}"
        );
    }
}

/// The compose stack can only be started where Docker runs; here every file it mounts must
/// exist, every exporter flag must parse, and promtool must accept the Prometheus config with
/// the rule file it mounts.
#[test]
fn compose_stack_and_prometheus_config_are_consistent() {
    let compose: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/docker-compose.yml")).unwrap();
    let services = compose["services"].as_mapping().unwrap();
    for name in [
        "ucm-sim",
        "ucm-exporter",
        "prometheus",
        "alertmanager",
        "grafana",
    ] {
        assert!(services.contains_key(name), "service {name}");
    }
    let mut mounted = Vec::new();
    for (_, svc) in services {
        for v in svc["volumes"].as_sequence().into_iter().flatten() {
            let src = v.as_str().unwrap().split(':').next().unwrap();
            if src.starts_with('.') {
                mounted.push(src.to_string());
                // dashboards/ and deploy/grafana/ come from another issue; they must be there
                // by the time the stack ships.
                assert!(
                    repo().join("deploy").join(src).exists(),
                    "docker-compose.yml mounts {src}, which does not exist"
                );
            }
        }
    }
    for want in [
        "./prometheus.yml",
        "./alertmanager.yml",
        "../dashboards/alerts.yaml",
        "./grafana/provisioning",
        "../dashboards",
    ] {
        assert!(mounted.iter().any(|m| m == want), "{want} is mounted");
    }
    let cmd: Vec<String> = services["ucm-exporter"]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let cli = ucm_exporter::cli::Cli::try_parse_from(
        std::iter::once("ucm-exporter".to_string()).chain(cmd),
    )
    .expect("the compose stack's exporter flags parse");
    assert!(!cli.nothing_configured());

    let dir = tempfile::tempdir().unwrap();
    let prom = read("deploy/prometheus.yml").replace(
        "/etc/prometheus/ucm-alerts.yaml",
        repo().join("dashboards/alerts.yaml").to_str().unwrap(),
    );
    let path = dir.path().join("prometheus.yml");
    std::fs::write(&path, prom).unwrap();
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(&path)
        .output()
        .expect("promtool is needed: install Debian's `prometheus` package (scripts/test.sh does)");
    assert!(
        out.status.success(),
        "promtool check config: {}",
        output_text(&out)
    );
}

/// amtool (Debian package `prometheus-alertmanager`) accepts the routing file and routes each
/// severity to its receiver; tests/alert_delivery.rs delivers through it.
#[test]
fn alertmanager_config_checks_and_routes_each_severity() {
    let path = repo().join("deploy/alertmanager.yml");
    let amtool = |args: &[&str]| {
        let out = Command::new("amtool").args(args).output().expect(
            "amtool is needed: install Debian's `prometheus-alertmanager` package (scripts/test.sh does)",
        );
        assert!(
            out.status.success(),
            "amtool {args:?}: {}",
            output_text(&out)
        );
        // stdout only: amtool warns on stderr that --config.file overrides its default URL.
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let file = format!("--config.file={}", path.display());
    let said = amtool(&["check-config", path.to_str().unwrap()]);
    assert!(
        said.contains("SUCCESS") && said.contains("1 inhibit rules"),
        "{said}"
    );
    for severity in ["critical", "warning", "info"] {
        let said = amtool(&[
            "config",
            "routes",
            "test",
            &file,
            &format!("severity={severity}"),
            "alertname=UcmTrunkDown",
            "job=ucm",
            "instance=office",
        ]);
        assert_eq!(said.trim(), format!("ucm-{severity}"), "{severity}");
    }
    let doc: serde_yaml::Value = serde_yaml::from_str(&read("deploy/alertmanager.yml")).unwrap();
    let group_by: Vec<&str> = doc["route"]["group_by"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(group_by, ["job", "instance"], "one notification per UCM");
}

/// The lines of a unit's [Service] section that confine it, from `UMask=` on.
fn hardening(unit: &str) -> Vec<&str> {
    let service = unit
        .split("[Service]")
        .nth(1)
        .unwrap()
        .split("[Install]")
        .next()
        .unwrap();
    service
        .lines()
        .skip_while(|l| !l.starts_with("UMask="))
        .filter(|l| l.contains('=') && !l.starts_with('#'))
        .collect()
}

/// `systemd-analyze verify` checks the unit with ExecStart's binary pointed at the one just
/// built (verify checks that it exists), and `security` rates its exposure.
fn verify_unit(unit: &str, exec: &str) {
    assert!(
        Command::new("systemd-analyze").arg("--version").output().is_ok(),
        "systemd-analyze is needed by this test: install Debian's `systemd` package (scripts/test.sh does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ucm-exporter.service");
    std::fs::write(&path, unit.replace(exec, BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = output_text(&out);
    // Unknown keys are only warnings (exit 0): any output is a failure.
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify:\n{said}"
    );
    // Exposure 0.0 (locked down) … 10.0 (unsafe); these units score about 1.2.
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze security: exposure above 2.0:\n{}",
        output_text(&out)
    );
}

/// The Debian package's unit runs as the package's system user instead of a dynamic one, and
/// is confined exactly as deploy/ucm-exporter.service is.
#[test]
fn package_unit_is_hardened_as_the_shipped_one() {
    let shipped = read("deploy/ucm-exporter.service");
    let unit = read("deploy/debian/ucm-exporter.service");
    let want = hardening(&shipped);
    assert!(want.len() > 20, "{want:?}");
    assert_eq!(hardening(&unit), want);
    for needle in [
        "User=ucm-exporter",
        "StateDirectory=ucm-exporter",
        "ExecStart=/usr/bin/ucm-exporter",
        "--config.file=/etc/ucm-exporter/config.yml",
        "--state.dir=/var/lib/ucm-exporter",
    ] {
        assert!(unit.contains(needle), "the package's unit lacks {needle}");
    }
    assert!(!unit.contains("DynamicUser"));
    verify_unit(&unit, "/usr/bin/ucm-exporter");
    let manifest = read("Cargo.toml");
    let deb = manifest
        .split("\n[package.metadata.deb]\n")
        .nth(1)
        .expect("Cargo.toml has [package.metadata.deb]");
    let deb = deb.split("\n[").next().unwrap();
    assert!(
        deb.lines().any(|l| l == "default-features = false"),
        "the package's exporter is built without the demo"
    );
    assert!(
        deb.contains(r#"unit-name = "ucm-exporter", unit-scripts = "deploy/debian/""#),
        "the package ships deploy/debian/ucm-exporter.service as its unit"
    );
}

/// `systemd-analyze verify` checks the unit. It comes with Debian's `systemd` package, which the
/// README's test command installs when it is missing.
#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let unit = read("deploy/ucm-exporter.service");
    for needle in [
        "DynamicUser=yes",
        "StateDirectory=ucm-exporter",
        "LoadCredential=",
        "/run/credentials/ucm-exporter.service/",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "--state.dir=/var/lib/ucm-exporter",
    ] {
        assert!(unit.contains(needle), "the unit lacks {needle}");
    }
    verify_unit(&unit, "/usr/local/bin/ucm-exporter");
}
