//! Static checks of the Grafana dashboards and the Prometheus rules in `dashboards/`, and
//! `promtool check rules` / `promtool test rules` on them.
//!
//! The metric names a query may use are taken from the exporter's own registries (plus the
//! recording rules), not from a copy of the metric list, so renaming a metric in the exporter
//! breaks this test rather than silently emptying a dashboard panel.
//!
//! Range windows: dashboard queries use only `$__rate_interval` (rates) and `$__range` (totals
//! over the dashboard's time range). "Per hour" panels multiply a rate by 3600 instead of using a
//! fixed `[1h]`, and the one-hour and 15-minute views that alerts use come from the recording
//! rules, so no literal window appears in a dashboard. The rule file itself needs fixed windows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use ucm_exporter::cdr::{
    classify, parse_cdr_response, CdrResponse, Disposition, ExtensionPattern, Role,
};
use ucm_exporter::metrics::{exporter_text, CallTally, TargetMetrics};

const DASHBOARDS: [&str; 2] = ["ucm-overview.json", "ucm-extensions.json"];
const ALLOWED_WINDOWS: [&str; 2] = ["$__rate_interval", "$__range"];
const PROMTOOL_HINT: &str = "promtool is needed by this test: install Debian package prometheus \
     (apt-get install prometheus; scripts/test.sh installs it)";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards")
}

fn load(name: &str) -> (String, Value) {
    let text = std::fs::read_to_string(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    (text, json)
}

/// Panels with rows flattened, including the panels a collapsed row keeps inside itself.
fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

/// (panel title, expr) of every query of a dashboard.
fn queries(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(dash) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("every target has an expr");
            out.push((p["title"].as_str().unwrap_or("").to_string(), expr.into()));
        }
    }
    out
}

fn variables(dash: &Value) -> BTreeMap<String, &Value> {
    dash["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| (v["name"].as_str().unwrap().to_string(), v))
        .collect()
}

/// The PromQL selector inside a `label_values(selector, label)` variable query.
fn label_values_selector(q: &str) -> (&str, &str) {
    let inner = q
        .strip_prefix("label_values(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("variable query is not label_values(..): {q}"));
    let (sel, label) = inner
        .rsplit_once(',')
        .expect("label_values(selector, label)");
    (sel.trim(), label.trim())
}

/// What a small PromQL lexer finds in an expression: metric selectors (name and the text of
/// their matchers) and range windows.
#[derive(Debug, Default)]
struct Parsed {
    selectors: Vec<(String, String)>,
    windows: Vec<String>,
}

const NOT_METRICS: [&str; 25] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
];
/// Keywords followed by a parenthesised list of label names, not an expression.
const LABEL_LISTS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn parse(expr: &str) -> Parsed {
    let c: Vec<char> = expr.chars().collect();
    let mut out = Parsed::default();
    let mut i = 0;
    let until = |from: usize, end: char| -> usize {
        let mut j = from;
        let mut quote = None;
        while j < c.len() {
            match (quote, c[j]) {
                (Some(q), '\\') if q != '`' => j += 1,
                (Some(q), ch) if ch == q => quote = None,
                (None, '"' | '\'' | '`') => quote = Some(c[j]),
                (None, ch) if ch == end => return j,
                _ => {}
            }
            j += 1;
        }
        panic!("unterminated {end:?} in {expr}");
    };
    while i < c.len() {
        let ch = c[i];
        if ch == '#' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '"' || ch == '\'' || ch == '`' {
            i += 1;
            while c[i] != ch {
                if c[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else if ch == '[' {
            let end = until(i + 1, ']');
            out.windows.push(c[i + 1..end].iter().collect());
            i = end + 1;
        } else if ch == '{' {
            panic!("selector without a metric name in {expr}");
        } else if ch.is_ascii_digit() || ch == '.' {
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.') {
                i += 1;
            }
        } else if ch.is_ascii_alphabetic() || ch == '_' || ch == ':' {
            let start = i;
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_' || c[i] == ':') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let mut j = i;
            while j < c.len() && c[j].is_whitespace() {
                j += 1;
            }
            let next = c.get(j).copied();
            if LABEL_LISTS.contains(&word.as_str()) && next == Some('(') {
                i = until(j + 1, ')') + 1;
            } else if next == Some('(') || NOT_METRICS.contains(&word.as_str()) {
                // A function call or an operator keyword.
            } else if next == Some('{') {
                let end = until(j + 1, '}');
                out.selectors
                    .push((word, c[j + 1..end].iter().collect::<String>()));
                i = end + 1;
            } else {
                out.selectors.push((word, String::new()));
            }
        } else {
            i += 1;
        }
    }
    out
}

/// CDR fixtures whose calls pass a queue, a ring group and an IVR: group series appear only
/// once a call has named a group.
const GROUP_FIXTURES: [&str; 3] = [
    "queue_abandon_no_answer.json",
    "ringall_overlapping.json",
    "ivr_hangup_no_answer.json",
];

/// The exporter's text exposition of one target after one call with an extension and the calls
/// of [`GROUP_FIXTURES`] (read and classified as a poll reads them) have been applied, followed by
/// the exporter's own series.
fn exporter_exposition() -> String {
    let m = TargetMetrics::new(10);
    m.add_trunk("Daisy");
    let mut tally = CallTally::default();
    tally.add_extension_calls("101", Role::Callee, Disposition::Answered, 1);
    tally.add_extension_talk("101", Role::Callee, 30);
    let ext = ExtensionPattern::new(ExtensionPattern::DEFAULT).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cdr");
    for name in GROUP_FIXTURES {
        let body = std::fs::read(fixtures.join(name)).unwrap();
        let Ok(CdrResponse::Records(entries)) = parse_cdr_response(&body) else {
            panic!("{name}: not a list of records");
        };
        for entry in &entries {
            let call = classify(entry, &ext).unwrap_or_else(|| panic!("{name}: not a call"));
            tally.add_call(&call, None);
        }
    }
    m.apply(&tally);
    let mut text = m.text();
    text.extend(exporter_text());
    String::from_utf8(text).unwrap()
}

/// Names of every series the exporter can expose, from its registries after the calls of
/// [`exporter_exposition`] (extension and group series appear only with calls), plus the
/// live-status series, which exist only after a collector has run against a UCM and so come from
/// their list.
fn exporter_metric_names() -> BTreeSet<String> {
    let text = exporter_exposition();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            names.insert(name.to_string());
            if kind == "histogram" || kind == "summary" {
                for s in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{s}"));
                }
            }
        }
    }
    names.extend(ucm_exporter::live::METRICS.iter().map(|n| n.to_string()));
    for must in [
        "ucm_calls_total",
        "ucm_extension_calls_total",
        "ucm_extension_talk_seconds_total",
        "ucm_call_wait_seconds_bucket",
        "ucm_group_calls_total",
        "ucm_group_wait_seconds_bucket",
        "ucm_group_member_calls_total",
        "ucm_ivr_calls_total",
        "ucm_group_info",
    ] {
        assert!(names.contains(must), "{must} missing from {names:?}");
    }
    names
}

fn rules() -> serde_yaml::Value {
    let text = std::fs::read_to_string(dir().join("alerts.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

fn all_rules(doc: &serde_yaml::Value) -> Vec<&serde_yaml::Value> {
    doc["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules"))
        .collect()
}

fn recording_rule_names() -> BTreeSet<String> {
    all_rules(&rules())
        .into_iter()
        .filter_map(|r| r["record"].as_str().map(String::from))
        .collect()
}

fn known_names() -> BTreeSet<String> {
    let mut names = exporter_metric_names();
    names.extend(recording_rule_names());
    names
}

#[test]
fn dashboards_are_provisionable_with_a_datasource_variable() {
    for (file, uid, vars) in [
        (
            "ucm-overview.json",
            "ucm-overview",
            &["datasource", "job", "instance", "trunk", "group"][..],
        ),
        (
            "ucm-extensions.json",
            "ucm-extensions",
            &["datasource", "job", "instance", "extension"][..],
        ),
    ] {
        let (text, d) = load(file);
        assert_eq!(d["uid"], uid, "{file}: fixed uid");
        assert!(d["id"].is_null(), "{file}: id must be null to provision");
        assert!(
            !text.contains("${DS_") && d.get("__inputs").is_none(),
            "{file}: no import placeholders"
        );
        let v = variables(&d);
        assert_eq!(
            v.keys().map(String::as_str).collect::<Vec<_>>().len(),
            vars.len(),
            "{file}: variables {:?}",
            v.keys()
        );
        for name in vars {
            assert!(v.contains_key(*name), "{file}: variable {name} missing");
        }
        assert_eq!(v["datasource"]["type"], "datasource");
        assert_eq!(v["datasource"]["query"], "prometheus");
        for name in &vars[1..] {
            let q = &v[*name];
            assert_eq!(q["type"], "query", "{file}: {name}");
            assert_eq!(q["datasource"]["uid"], "${datasource}", "{file}: {name}");
            let (sel, label) = label_values_selector(q["definition"].as_str().unwrap());
            assert_eq!(label, *name, "{file}: {name} lists its own label");
            assert_eq!(q["query"]["query"], q["definition"], "{file}: {name}");
            let known = known_names();
            for (metric, _) in parse(sel).selectors {
                assert!(known.contains(&metric), "{file}: {name}: unknown {metric}");
            }
        }
        for p in panels(&d) {
            let title = p["title"].as_str().unwrap_or("");
            if p["type"] == "row" {
                continue;
            }
            assert!(
                p["description"].as_str().is_some_and(|s| s.len() > 20),
                "{file}: panel {title:?} needs a description"
            );
            assert!(
                p["fieldConfig"]["defaults"]["unit"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{file}: panel {title:?} needs a unit"
            );
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{file}: {title}");
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{file}: {title} has no query");
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{file}: {title}");
            }
        }
    }
}

#[test]
fn every_query_selects_job_and_instance_uses_known_metrics_and_rate_interval() {
    let known = known_names();
    let mut count = 0;
    for file in DASHBOARDS {
        let (_, d) = load(file);
        let qs = queries(&d);
        assert!(qs.len() >= 8, "{file}: only {} queries", qs.len());
        for (title, expr) in qs {
            count += 1;
            let p = parse(&expr);
            assert!(
                !p.selectors.is_empty(),
                "{file}: {title}: no metric in {expr}"
            );
            for (metric, matchers) in &p.selectors {
                assert!(
                    known.contains(metric),
                    "{file}: {title}: {metric} is not a metric of the exporter nor a recording rule"
                );
                let m: String = matchers.chars().filter(|c| !c.is_whitespace()).collect();
                assert!(
                    m.contains(r#"job=~"$job""#) && m.contains(r#"instance=~"$instance""#),
                    "{file}: {title}: {metric} must select job and instance: {expr}"
                );
                if file == "ucm-extensions.json" {
                    assert!(
                        m.contains(r#"extension=~"$extension""#),
                        "{file}: {title}: {metric} must select $extension"
                    );
                }
            }
            for w in &p.windows {
                assert!(
                    ALLOWED_WINDOWS.contains(&w.as_str()),
                    "{file}: {title}: window [{w}] (only {ALLOWED_WINDOWS:?}): {expr}"
                );
            }
            if expr.contains("rate(") {
                assert!(
                    expr.contains("[$__rate_interval]") || expr.contains("[$__range]"),
                    "{file}: {title}: {expr}"
                );
            }
        }
    }
    assert!(count >= 40, "{count} queries");
}

#[test]
fn the_lexer_finds_selectors_and_windows() {
    let p = parse(
        r#"sum by (le, job) (rate(a_bucket{job=~"$job", x="{[}"}[$__rate_interval])) / on (job) group_left b > 0 # c{d}"#,
    );
    assert_eq!(
        p.selectors,
        vec![
            (
                "a_bucket".to_string(),
                r#"job=~"$job", x="{[}""#.to_string()
            ),
            ("b".to_string(), String::new())
        ]
    );
    assert_eq!(p.windows, vec!["$__rate_interval".to_string()]);
    let p = parse("increase(x[1h] offset 1w) >= 10");
    assert_eq!(p.windows, vec!["1h".to_string()]);
    assert_eq!(p.selectors.len(), 1);
}

#[test]
fn rules_follow_the_mixin_conventions_and_use_known_metrics() {
    let known = known_names();
    let doc = rules();
    let camel = regex::Regex::new("^Ucm([A-Z][a-z0-9]+)+$").unwrap();
    let recorded = regex::Regex::new("^[a-z_]+:[a-z0-9_]+:[a-z0-9_]+$").unwrap();
    let mut alerts = 0;
    for r in all_rules(&doc) {
        let expr = r["expr"].as_str().expect("expr");
        for (metric, _) in parse(expr).selectors {
            assert!(known.contains(&metric), "unknown metric {metric} in {expr}");
        }
        if let Some(name) = r["record"].as_str() {
            assert!(recorded.is_match(name), "recording rule name {name}");
            continue;
        }
        alerts += 1;
        let name = r["alert"].as_str().expect("alert or record");
        assert!(camel.is_match(name), "alert name {name}");
        let sev = r["labels"]["severity"].as_str().unwrap_or("");
        assert!(
            ["critical", "warning", "info"].contains(&sev),
            "{name}: severity {sev:?}"
        );
        for a in ["summary", "description", "runbook_url"] {
            assert!(
                r["annotations"][a].as_str().is_some_and(|s| !s.is_empty()),
                "{name}: annotation {a}"
            );
        }
    }
    assert_eq!(alerts, 18);
}

/// Each alert's `runbook_url` leads to its own heading under README "Runbook", so whoever is
/// paged lands on what to check; a renamed alert or heading breaks the link, and this test.
#[test]
fn every_alert_links_to_its_runbook_section() {
    let readme = std::fs::read_to_string(dir().join("../README.md")).unwrap();
    let runbook = readme
        .split_once("\n## Runbook\n")
        .expect("README has a Runbook section")
        .1;
    let runbook = runbook.split("\n## ").next().unwrap();
    let headings: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    for r in all_rules(&rules()) {
        let Some(name) = r["alert"].as_str() else {
            continue;
        };
        let url = r["annotations"]["runbook_url"].as_str().unwrap_or("");
        assert_eq!(
            url,
            format!(
                "https://github.com/ucm-exporter/ucm-exporter/blob/main/README.md#{}",
                name.to_lowercase()
            ),
            "{name}: runbook_url"
        );
        assert!(
            headings.contains(&name.to_lowercase()),
            "README Runbook has no section ### {name}"
        );
    }
}

#[test]
fn every_alert_is_tested_both_firing_and_not_firing() {
    let alerts: BTreeSet<String> = all_rules(&rules())
        .into_iter()
        .filter_map(|r| r["alert"].as_str().map(String::from))
        .collect();
    let text = std::fs::read_to_string(dir().join("alerts.test.yaml")).unwrap();
    let tests: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let (mut firing, mut silent) = (BTreeSet::new(), BTreeSet::new());
    for group in tests["tests"].as_sequence().unwrap() {
        for t in group["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = t["alertname"].as_str().unwrap().to_string();
            let empty = t["exp_alerts"].as_sequence().is_none_or(|s| s.is_empty());
            if empty {
                silent.insert(name);
            } else {
                firing.insert(name);
            }
        }
    }
    assert_eq!(firing, alerts, "alerts tested firing");
    assert_eq!(silent, alerts, "alerts tested not firing");
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir())
        .output()
        .unwrap_or_else(|e| panic!("running promtool: {e}. {PROMTOOL_HINT}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{said}");
    said
}

#[test]
fn promtool_check_rules_accepts_the_rule_file() {
    let said = promtool(&["check", "rules", "alerts.yaml"]);
    assert!(said.contains("SUCCESS: 29 rules found"), "{said}");
}

#[test]
fn promtool_rule_unit_tests_pass() {
    let said = promtool(&["test", "rules", "alerts.test.yaml"]);
    assert!(said.contains("SUCCESS"), "{said}");
}

/// The queue panels follow the `group` variable (which lists queues), as the extension dashboard
/// follows `extension`; ring group and IVR panels show every group of the selected UCMs.
#[test]
fn queue_queries_select_the_group_variable() {
    let (_, d) = load("ucm-overview.json");
    let mut queue_selectors = 0;
    for (title, expr) in queries(&d) {
        for (metric, matchers) in parse(&expr).selectors {
            let m: String = matchers.chars().filter(|c| !c.is_whitespace()).collect();
            let group_metric = metric.starts_with("ucm_group_") || metric.contains(":ucm_group_");
            if group_metric && m.contains(r#"kind="queue""#) {
                queue_selectors += 1;
                assert!(
                    m.contains(r#"group=~"$group""#),
                    "{title}: {metric} must select $group: {expr}"
                );
            } else {
                assert!(
                    !m.contains("$group"),
                    "{title}: {metric} is not a queue series but selects $group: {expr}"
                );
            }
        }
    }
    assert!(queue_selectors >= 20, "{queue_selectors} queue selectors");
}

/// The service-level rule reads the `le="20"` bucket of `ucm_group_wait_seconds`: that bound must
/// be a bucket with the default configuration, or the rule silently finds nothing.
#[test]
fn the_service_level_bucket_exists_by_default() {
    let text = exporter_exposition();
    let doc = rules();
    let rule = all_rules(&doc)
        .into_iter()
        .find(|r| r["record"] == "instance_group:ucm_group_calls_answered_within_20s:ratio_rate1h")
        .expect("the service-level recording rule");
    assert!(rule["expr"].as_str().unwrap().contains(r#"le="20""#));
    assert!(
        text.lines()
            .any(|l| l.starts_with("ucm_group_wait_seconds_bucket{")
                && l.contains(r#"outcome="answered""#)
                && l.contains(r#"le="20""#)),
        "no le=\"20\" bucket of answered group waits in:\n{text}"
    );
}
