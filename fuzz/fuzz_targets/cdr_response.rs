//! A `cdrapi` answer body, as the UCM (or anything in its place) may send it: decoded by
//! `cdr::parse_cdr_response`, every entry classified by `cdr::classify` with the default and a
//! permissive extension pattern, and the same bytes run through the per-page path of a poll
//! (`poll::ingest`) twice, which must count nothing the second time.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ucm_exporter::cdr::{
    classify, parse_cdr_response, CdrResponse, Disposition, ExtensionPattern, Skip,
};
use ucm_exporter::poll::{self, Pending, Plan};

fn patterns() -> &'static (ExtensionPattern, ExtensionPattern) {
    static P: OnceLock<(ExtensionPattern, ExtensionPattern)> = OnceLock::new();
    P.get_or_init(|| {
        (
            ExtensionPattern::new(ExtensionPattern::DEFAULT).unwrap(),
            // Not the default string, so the regex path of `is_local` runs too.
            ExtensionPattern::new("^.+$").unwrap(),
        )
    })
}

fn is_trunk(ext: &str) -> bool {
    ext.get(..6)
        .is_some_and(|p| p.eq_ignore_ascii_case("trunk_"))
}

fuzz_target!(|data: &[u8]| {
    let (default, permissive) = patterns();
    let Ok(CdrResponse::Records(entries)) = parse_cdr_response(data) else {
        return;
    };
    let mut classified = 0u64;
    for entry in &entries {
        let _ = entry.start();
        for leg in entry.legs() {
            // ForkCDR duplicates are dropped while decoding.
            assert!(!leg.lastapp.trim_ascii().eq_ignore_ascii_case("ForkCDR"));
            let _ = leg.key();
        }
        for ext in [default, permissive] {
            let Some(call) = classify(entry, ext) else {
                match Skip::of_unclassified(entry) {
                    Skip::NoLegs => assert!(entry.legs().is_empty()),
                    _ => assert!(entry.legs().iter().any(|l| l.start_time().is_none())),
                }
                continue;
            };
            let legs = entry.legs();
            assert!(!legs.is_empty(), "a classified call has at least one leg");
            assert_eq!(call.leg_keys.len(), legs.len());
            assert_eq!(call.key, entry.call_key());
            assert_eq!(call.grouped, entry.main_cdr().is_some());
            assert_eq!(Some(call.start), legs[0].start_time());
            assert!(call.ends_after >= 0);
            let best = legs.iter().map(|l| l.outcome()).max().unwrap();
            assert_eq!(call.disposition, best);
            if call.disposition != Disposition::Answered {
                assert_eq!(call.talk_seconds, 0);
                assert!(call.extension_talk.is_empty());
            }
            for (i, (callee, _)) in call.callees.iter().enumerate() {
                assert!(ext.is_local(callee) && !is_trunk(callee));
                assert!(call.callees[..i].iter().all(|(c, _)| c != callee));
            }
            if let Some(caller) = call.caller {
                assert!(ext.is_local(caller) && !is_trunk(caller));
            }
            assert_eq!(call.trunk, call.trunk.trim_ascii());
            let _ = poll::Span::of(&call);
            if std::ptr::eq(ext, default) {
                classified += 1;
            }
        }
    }

    // The whole per-page path, then the same page again: de-duplication counts nothing twice.
    let tz = ucm_exporter::clock::Zone::Named(chrono_tz::Europe::Berlin);
    let mut pending = Pending::default();
    let mut read = Default::default();
    let mut feed = |pending: &mut Pending| {
        poll::ingest(data, None, pending, &mut read, default, tz, &Plan::WHOLE)
            .expect("a body that decodes to records is a page")
    };
    assert_eq!(feed(&mut pending).entries, entries.len());
    let (calls, records) = (pending.tally().call_count(), pending.tally().records);
    assert!(calls <= classified);
    assert_eq!(feed(&mut pending).entries, entries.len());
    assert_eq!(pending.tally().call_count(), calls);
    assert_eq!(pending.tally().records, records);
});
