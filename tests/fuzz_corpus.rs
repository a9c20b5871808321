//! The fuzzers' committed inputs, replayed on stable Rust in every test run: the seed corpora
//! and every input that once crashed a target (`fuzz/regressions/`). The fuzz targets themselves
//! need nightly and cargo-fuzz (scripts/fuzz.sh); this keeps what they found from coming back.

use std::path::{Path, PathBuf};

use ucm_exporter::cdr::{classify, parse_cdr_response, CdrResponse, ExtensionPattern};
use ucm_exporter::config::{parse_file, resolve, FlagOverrides};
use ucm_exporter::live::values::{size_bytes, system_time, uptime};
use ucm_exporter::state::{load, Loaded};
use ucm_exporter::ucm::decode_envelope;

/// Every committed input of a target: its seeds and its regressions.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            out.push((path, bytes));
        }
    }
    out.sort();
    out
}

#[test]
fn cdr_responses_decode_and_classify_without_panicking() {
    let patterns = [
        ExtensionPattern::new(ExtensionPattern::DEFAULT).unwrap(),
        ExtensionPattern::new("^.+$").unwrap(),
    ];
    let all = inputs("cdr_response");
    assert!(all.len() >= 10, "the seed corpus is committed");
    let mut calls = 0;
    for (_, body) in &all {
        if let Ok(CdrResponse::Records(entries)) = parse_cdr_response(body) {
            for e in &entries {
                for p in &patterns {
                    calls += usize::from(classify(e, p).is_some());
                }
            }
        }
    }
    assert!(calls > 0, "some seeds are calls");
}

#[test]
fn envelopes_decode_without_panicking() {
    let all = inputs("envelope");
    assert!(!all.is_empty());
    for (_, body) in &all {
        let _ = decode_envelope(body);
    }
}

#[test]
fn config_files_resolve_or_fail_with_a_reason() {
    let all = inputs("config");
    assert!(!all.is_empty());
    let env = |k: &str| (k == "OFFICE_PW").then(|| "pw".to_string());
    for (path, bytes) in &all {
        let Ok(text) = std::str::from_utf8(bytes) else {
            continue;
        };
        match parse_file(text, path)
            .and_then(|f| resolve(Some((&f, path)), None, &FlagOverrides::default(), &env))
        {
            Ok(s) => assert!(s.extension_max >= 1),
            Err(e) => assert!(!format!("{e:#}").is_empty()),
        }
    }
}

#[test]
fn state_files_load_or_are_set_aside_with_a_reason() {
    let all = inputs("state_file");
    assert!(!all.is_empty());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("office.json");
    for (_, bytes) in &all {
        std::fs::write(&path, bytes).unwrap();
        if let Loaded::Unusable(why) = load(&path) {
            assert!(!why.is_empty());
        }
    }
}

#[test]
fn live_values_parse_without_panicking() {
    let all = inputs("live_values");
    assert!(
        all.iter()
            .any(|(p, _)| p.to_string_lossy().contains("regressions")),
        "the crashes the fuzzer found are replayed"
    );
    for (_, bytes) in &all {
        let text = String::from_utf8_lossy(bytes);
        let _ = uptime(&text);
        let _ = system_time(
            &text,
            ucm_exporter::clock::Zone::Named(chrono_tz::America::New_York),
        );
        let _ = size_bytes(&text);
    }
}
