//! The live-status value parsers of `live::values`, on any text: `uptime`, `system_time` (with a
//! fixed and a DST zone as fallback), `size_bytes`, the status strings of trunks, extensions
//! and channels, and `poll::uid_hash`. The input is split on `|` for the three-field
//! `channel_state`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ucm_exporter::live::values::{
    channel_state, extension_status, registered, size_bytes, system_time, trunk_status, uptime,
};
use ucm_exporter::poll::uid_hash;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let s = text.as_ref();

    let _ = uptime(s);
    let _ = system_time(s, ucm_exporter::clock::Zone::UTC);
    let _ = system_time(s, ucm_exporter::clock::Zone::Named(chrono_tz::America::New_York));
    if let Some(bytes) = size_bytes(s) {
        assert!(bytes.is_finite() && bytes >= 0.0, "size {bytes} of {s:?}");
    }
    for out_of_service in [false, true] {
        let (label, up) = trunk_status(s, out_of_service);
        assert!(!label.is_empty());
        if out_of_service {
            assert_eq!((label, up), ("disabled", None));
        }
        let status = extension_status(s, out_of_service);
        let _ = registered(status);
    }
    let mut fields = s.splitn(3, '|');
    let (state, channel, service) = (
        fields.next().unwrap_or(""),
        fields.next().unwrap_or(""),
        fields.next().unwrap_or(""),
    );
    let _ = channel_state(state, channel, service);
    assert_eq!(uid_hash(s), uid_hash(s.trim()));
});
