//! Any answer body of the UCM's JSON API: `ucm::decode_envelope` and the refusal policy
//! (`envelope::refusal_error`), the list helpers (`lists::rows_of`, `lists::number`), the
//! channel-list rows (`poll::parse_rows`) followed by the channel tracker over two snapshots,
//! and the CDR page decoder (`cdrapi::decode_page`) on the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use ucm_exporter::poll::{parse_rows, Tracker};
use ucm_exporter::ucm::cdrapi::decode_page;
use ucm_exporter::ucm::envelope::{
    lenient_i64, looks_like_forbidden_page, refusal_error, status_meaning, status_refusal,
};
use ucm_exporter::ucm::lists::{number, rows_of};
use ucm_exporter::ucm::{decode_envelope, Refusal};

fuzz_target!(|data: &[u8]| {
    let _ = looks_like_forbidden_page(data);
    match decode_envelope(data) {
        Ok(response) => {
            // Only an envelope whose status reads as 0 is accepted.
            let v: Value = serde_json::from_slice(data).expect("it decoded once");
            assert_eq!(v.get("status").and_then(lenient_i64), Some(0));
            assert!(status_refusal(&v).is_none());
            let _ = number(response.get("total_page"));
            for key in [
                "channel",
                "account",
                "trunks",
                "member",
                "CallQueuesMessage",
            ] {
                let rows = rows_of(&response, key);
                if key != "channel" {
                    continue;
                }
                let parsed = parse_rows(&rows, ucm_exporter::clock::Zone::Named(chrono_tz::America::Sao_Paulo));
                assert!(parsed.len() <= rows.len());
                for row in &parsed {
                    assert!(!row.channels.is_empty());
                }
                // The rows as one snapshot, then an empty one: every call ended.
                let mut tracker = Tracker::default();
                if tracker.observe(&parsed, None, i64::MAX).is_ok() {
                    tracker.swept();
                    let _ = tracker.observe(&[], None, i64::MAX);
                    if let Some(w) = tracker.windows(20) {
                        for (lo, hi) in &w.targets {
                            assert!(lo <= hi);
                        }
                    }
                    let _ = tracker.live_channels();
                }
            }
        }
        Err(refusal) => {
            if let Refusal::Status { status, .. } = &refusal {
                assert_ne!(*status, 0);
                let _ = status_meaning(*status);
            }
            let err = refusal_error("cdrapi", refusal);
            let _ = err.reason();
            let _ = err.to_string();
        }
    }
    match decode_page(data) {
        Ok(_) => {}
        Err(refusal) => {
            let _ = refusal_error("cdrapi", refusal).to_string();
        }
    }
});
