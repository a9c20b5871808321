//! The UCM's live-status values into bounded label values and numbers, leniently: each firmware
//! words them its own way (docs/ucm-api.md §7).

use crate::clock::{parse_system_time, Zone};

/// What a trunk's status string says: its label value, and whether it is up (`None`: not
/// monitored, disabled or not known, so no `ucm_trunk_up` series).
pub fn trunk_status(raw: &str, out_of_service: bool) -> (&'static str, Option<bool>) {
    if out_of_service {
        return ("disabled", None);
    }
    let s = raw.trim().to_ascii_lowercase();
    match s.as_str() {
        "registered" => ("registered", Some(true)),
        "ok" | "reachable" => ("reachable", Some(true)),
        "lagged" => ("lagged", Some(true)),
        "available" | "idle" => ("available", Some(true)),
        "busy" | "inuse" => ("busy", Some(true)),
        "unmonitored" => ("unmonitored", None),
        "unknown" => ("unknown", None),
        "" | "unavailable" | "unvailable" => ("unavailable", Some(false)),
        "unreachable" => ("unreachable", Some(false)),
        "unregistered" => ("unregistered", Some(false)),
        "failed" => ("failed", Some(false)),
        "rejected" => ("rejected", Some(false)),
        "timeout" => ("timeout", Some(false)),
        "errorconfigured" => ("error_configured", Some(false)),
        "no" => ("no_auth", Some(false)),
        _ if s.contains("no authentication") => ("no_auth", Some(false)),
        _ if s.contains("auth. sent") || s.contains("request") => ("trying", Some(false)),
        _ => ("other", None),
    }
}

/// An extension's status string as a bounded label value.
pub fn extension_status(raw: &str, out_of_service: bool) -> &'static str {
    if out_of_service {
        return "disabled";
    }
    let s = raw.trim().to_ascii_lowercase();
    match s.as_str() {
        "idle" => "idle",
        "" | "unavailable" => "unavailable",
        "inuse" | "inuse&ringing" => "inuse",
        "ring" | "ringing" => "ringing",
        "busy" => "busy",
        "hold" | "inuse&hold" => "hold",
        "unknown" => "unknown",
        "unconfigured" | "errorconfigured" => "unconfigured",
        "paused" => "paused",
        _ => "other",
    }
}

/// Whether an extension of this status is registered (reachable by calls).
pub fn registered(status: &str) -> bool {
    !matches!(
        status,
        "unavailable" | "disabled" | "unknown" | "unconfigured"
    )
}

/// An unbridged channel's state as a label value; `None` for rows the UCM's own Active Calls
/// page hides (reserved, down, `Ring` and `Local/` helper channels of normal, queue and
/// conference services).
pub fn channel_state(state: &str, channel: &str, service: &str) -> Option<&'static str> {
    let state = state.trim().to_ascii_lowercase();
    let service = service.trim().to_ascii_lowercase();
    if matches!(state.as_str(), "rsrvd" | "down" | "ring") {
        return None;
    }
    if channel.trim().to_ascii_lowercase().starts_with("local")
        && matches!(service.as_str(), "normal" | "queue" | "confbridge")
    {
        return None;
    }
    Some(match state.as_str() {
        "ringing" => "ringing",
        "dialing" => "dialing",
        "pre-ring" => "pre_ring",
        "up" => "up",
        _ => "other",
    })
}

/// `up-time` in seconds: a number of seconds, `HH:MM:SS` (hours may pass 24), `D HH:MM:SS`, or
/// `D day(s) HH:MM:SS` / `D days, HH:MM:SS`.
pub fn uptime(raw: &str) -> Option<u64> {
    let s = raw.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then_some(secs as u64);
    }
    let (days, clock) = match s.rsplit_once(|c: char| c.is_whitespace() || c == ',') {
        Some((d, c)) => {
            let digits: String = d.chars().take_while(char::is_ascii_digit).collect();
            (digits.parse::<u64>().ok()?, c)
        }
        None => (0, s),
    };
    let mut parts = clock.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, sec) = (parts.next()??, parts.next()??, parts.next()??);
    if parts.next().is_some() || m >= 60 || sec >= 60 {
        return None;
    }
    // Checked: the text is the UCM's, and a garbled number must not wrap into a boot time.
    days.checked_mul(86_400)?
        .checked_add(h.checked_mul(3600)?)?
        .checked_add(m * 60 + sec)
}

/// `system-time` (see [`parse_system_time`]) as Unix seconds; without an offset in the text,
/// read in `fallback`.
pub fn system_time(raw: &str, fallback: Zone) -> Option<i64> {
    let (local, offset) = parse_system_time(raw)?;
    offset
        .map_or(fallback, Zone::Offset)
        .instant(local)
        .map(|t| t.timestamp())
}

/// A size in bytes: a number of KiB (what the UCM's storage page is believed to report), or a
/// number with a unit (`512M`, `1.5 GB`, `2048 KiB`).
pub fn size_bytes(raw: &str) -> Option<f64> {
    let s = raw.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match unit
        .trim()
        .to_ascii_lowercase()
        .trim_end_matches("ib")
        .trim_end_matches('b')
    {
        "" | "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0f64.powi(4),
        _ => return None,
    };
    let bytes = n * mult;
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trunk_statuses_of_both_guis() {
        assert_eq!(
            trunk_status("Registered", false),
            ("registered", Some(true))
        );
        assert_eq!(trunk_status("OK", false), ("reachable", Some(true)));
        assert_eq!(
            trunk_status("Unreachable", false),
            ("unreachable", Some(false))
        );
        assert_eq!(trunk_status("Unmonitored", false), ("unmonitored", None));
        assert_eq!(trunk_status("", false), ("unavailable", Some(false)));
        assert_eq!(
            trunk_status("Unvailable", false),
            ("unavailable", Some(false))
        );
        assert_eq!(trunk_status("Auth. Sent", false), ("trying", Some(false)));
        assert_eq!(trunk_status("Request Sent", false), ("trying", Some(false)));
        assert_eq!(
            trunk_status("No Authentication", false),
            ("no_auth", Some(false))
        );
        assert_eq!(trunk_status("Registered", true), ("disabled", None));
        assert_eq!(trunk_status("gibberish", false), ("other", None));
    }

    #[test]
    fn extension_statuses_in_any_casing() {
        assert_eq!(extension_status("Idle", false), "idle");
        assert_eq!(extension_status("InUse&Ringing", false), "inuse");
        assert_eq!(extension_status("inuse&hold", false), "hold");
        assert_eq!(extension_status("", false), "unavailable");
        assert_eq!(extension_status("Idle", true), "disabled");
        assert_eq!(extension_status("Weird", false), "other");
        assert!(registered("idle") && registered("inuse") && !registered("unavailable"));
    }

    #[test]
    fn channel_states_filtered_as_the_gui_does() {
        assert_eq!(
            channel_state("Ringing", "PJSIP/2001-1", "normal"),
            Some("ringing")
        );
        assert_eq!(channel_state("Up", "PJSIP/trunk_1-2", "queue"), Some("up"));
        assert_eq!(channel_state("Ring", "PJSIP/2001-1", "normal"), None);
        assert_eq!(channel_state("Rsrvd", "PJSIP/2001-1", "normal"), None);
        assert_eq!(channel_state("Up", "Local/6500@queue-1", "queue"), None);
        assert_eq!(
            channel_state("Up", "Local/6500@x-1", "macro-dial"),
            Some("up")
        );
    }

    #[test]
    fn uptime_in_every_form() {
        assert_eq!(uptime("93784"), Some(93784));
        assert_eq!(uptime("00:42:53"), Some(2573));
        assert_eq!(uptime("26:03:04"), Some(93784));
        assert_eq!(uptime("1 02:03:04"), Some(93784));
        assert_eq!(uptime("1 day(s) 02:03:04"), Some(93784));
        assert_eq!(uptime("3 days, 00:00:01"), Some(3 * 86400 + 1));
        assert_eq!(uptime("12:61:00"), None);
        assert_eq!(uptime("soon"), None);
        assert_eq!(uptime("-5"), None);
    }

    #[test]
    fn system_time_in_both_date_orders() {
        let utc = Zone::UTC;
        let t = 1_669_214_246; // 2022-11-23 14:37:26 UTC
        assert_eq!(system_time("23-11-2022 14:37:26 UTC+00:00", utc), Some(t));
        assert_eq!(system_time("2022-11-23 15:37:26 UTC+01:00", utc), Some(t));
        assert_eq!(system_time("2022-11-23 09:37:26 UTC-05:00", utc), Some(t));
        let berlin = Zone::Named(chrono_tz::Europe::Berlin);
        assert_eq!(system_time("2022-11-23 15:37:26", berlin), Some(t));
        assert_eq!(system_time("yesterday", utc), None);
    }

    #[test]
    fn sizes_in_kib_or_with_units() {
        assert_eq!(size_bytes("2048"), Some(2048.0 * 1024.0));
        assert_eq!(size_bytes("1.5G"), Some(1.5 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(size_bytes("512 MB"), Some(512.0 * 1024.0 * 1024.0));
        assert_eq!(size_bytes("23%"), None);
        assert_eq!(size_bytes(""), None);
    }

    /// Inputs the fuzzer found (fuzz/regressions/live_values): numbers too large for the
    /// arithmetic are garbled values, not panics.
    #[test]
    fn overflowing_values_are_rejected() {
        for name in ["uptime-days-overflow", "uptime-hours-overflow"] {
            let text = std::fs::read_to_string(format!(
                "{}/fuzz/regressions/live_values/{name}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap();
            assert_eq!(uptime(&text), None, "{name}");
        }
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/regressions/live_values/system-time-offset-overflow"
        ))
        .unwrap();
        assert_eq!(system_time(&text, Zone::UTC), None);
        assert_eq!(
            system_time("2022-11-23 15:37:26 UTC+24:00", Zone::UTC),
            None
        );
        assert!(system_time("2022-11-23 15:37:26 UTC+14:00", Zone::UTC).is_some());
        assert_eq!(
            uptime("213503982334601 00:00:00"),
            Some(213_503_982_334_601 * 86_400)
        );
    }
}
