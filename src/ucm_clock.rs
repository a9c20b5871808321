//! The UCM's clock as this exporter knows it: the UTC offset it reports, how far it runs from
//! this host's, and so the zone its CDR times are read in (docs/design.md §2.6).
//!
//! A UCM writes CDR times on its local clock without an offset. Which zone that is matters for
//! load, not for exactness: the poller reads the host's clock in that zone as the UCM's "now",
//! and a "now" hours behind the UCM's caps the watermark below the calls it has read, so every
//! poll reads those hours again. With no `timezone` set the exporter therefore reads
//! `getSystemStatus` before its first poll and on every status cycle, and follows the offset
//! the UCM reports there (a DST change included); with `timezone` set it only compares.

use std::sync::{Arc, Mutex};

use chrono::FixedOffset;
use serde_json::{Map, Value};

use crate::clock::{parse_system_time, utc_offset, SharedClock, Zone};
use crate::config::Target;
use crate::error::UcmError;
use crate::metrics::TargetMetrics;
use crate::status::TargetStatus;
use crate::ucm::{decode_envelope, is_refusal, Session};

pub struct UcmClock {
    configured: Option<chrono_tz::Tz>,
    fallback: chrono_tz::Tz,
    clock: SharedClock,
    metrics: Arc<TargetMetrics>,
    status: Arc<TargetStatus>,
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// The offset the UCM last reported.
    offset: Option<FixedOffset>,
    /// The UCM's clock minus this host's, in seconds.
    skew: Option<i64>,
    /// The UCM answered, or refused, at least once: a follower's first poll need not ask.
    settled: bool,
    /// Why the UCM's offset is not known, while it is not: refused, or given without one.
    unknown_because: Option<String>,
    /// A configured zone that disagrees with the UCM was logged; cleared when they agree.
    disagreement_logged: bool,
}

impl UcmClock {
    pub fn new(
        target: &Target,
        clock: SharedClock,
        metrics: Arc<TargetMetrics>,
        status: Arc<TargetStatus>,
    ) -> Self {
        let c = UcmClock {
            configured: target.timezone,
            fallback: target.fallback_zone,
            clock,
            metrics,
            status,
            seen: Mutex::default(),
        };
        c.show(&c.lock());
        c
    }

    /// The zone the UCM's times are read in now: the configured one, else the UCM's last
    /// reported offset, else the host's.
    pub fn zone(&self) -> Zone {
        self.zone_of(&self.lock())
    }

    fn zone_of(&self, seen: &Seen) -> Zone {
        match (self.configured, seen.offset) {
            (Some(tz), _) => Zone::Named(tz),
            (None, Some(off)) => Zone::Offset(off),
            (None, None) => Zone::Named(self.fallback),
        }
    }

    /// Whether the poll about to run should ask the UCM for its offset first: it follows the
    /// UCM and has heard nothing from it yet.
    pub fn needs_reading(&self) -> bool {
        self.configured.is_none() && !self.lock().settled
    }

    /// Whether nothing but this clock needs `getSystemStatus`: a follower reads it on every
    /// status cycle, whichever collectors run.
    pub fn follows(&self) -> bool {
        self.configured.is_none()
    }

    /// Asks the UCM for its time. An answer that is no time (a refusal: this API user may not
    /// read the status; an error or a garbled answer of this action alone) settles on the
    /// fallback zone with a warning, and is `Ok(false)`; an error that stops every request
    /// (the UCM unreachable, the login rejected, a rate limit) is the caller's.
    pub async fn read(&self, session: &Session) -> Result<bool, UcmError> {
        match session
            .call("getSystemStatus", Map::new(), |b| decode_envelope(b))
            .await
        {
            Ok(status) => {
                self.observe(
                    status
                        .get("system-time")
                        .and_then(Value::as_str)
                        .unwrap_or(""),
                );
                Ok(true)
            }
            Err(e)
                if is_refusal(&e)
                    || matches!(
                        e,
                        UcmError::Http(_) | UcmError::Protocol(_) | UcmError::Decode(_)
                    ) =>
            {
                self.unanswered(&e);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// A `system-time` the UCM gave, here or to the system collector.
    pub fn observe(&self, raw: &str) {
        let mut seen = self.lock();
        seen.settled = true;
        let Some((local, offset)) = parse_system_time(raw) else {
            self.unknown(&mut seen, format!("its system-time {raw:?} is not a time"));
            self.show(&seen);
            return;
        };
        let now = self.clock.now();
        match offset {
            Some(off) => {
                let previous = seen.offset.replace(off);
                seen.unknown_because = None;
                if self.configured.is_none() && previous != Some(off) {
                    tracing::info!(
                        ucm_offset = %utc_offset(off.local_minus_utc()),
                        previous = %previous.map_or("none".into(), |p| utc_offset(p.local_minus_utc())),
                        "CDR times are read in the UTC offset the UCM reports (timezone not set)"
                    );
                }
            }
            None => self.unknown(
                &mut seen,
                format!("its system-time {raw:?} gives no UTC offset"),
            ),
        }
        let zone = self.zone_of(&seen);
        let at = seen.offset.map_or(zone, Zone::Offset).instant(local);
        seen.skew = at.map(|t| t.timestamp() - now.timestamp());
        self.compare(&mut seen);
        self.show(&seen);
    }

    /// `getSystemStatus` gave no time: refused to this API user, or failed on its own.
    pub fn unanswered(&self, e: &UcmError) {
        let mut seen = self.lock();
        seen.settled = true;
        self.unknown(&mut seen, format!("getSystemStatus gave no time ({e})"));
        self.show(&seen);
    }

    /// The offset stays as last known (or unknown); a follower that never knew it says once
    /// which zone it reads CDR times in instead.
    fn unknown(&self, seen: &mut Seen, why: String) {
        if seen.unknown_because.is_none() && seen.offset.is_none() {
            let zone = self.zone_of(seen);
            if self.configured.is_none() {
                tracing::warn!(
                    zone = %zone,
                    "the UCM's UTC offset is unknown: {why}; CDR times are read in this host's zone \
                     until it is known; set timezone to the UCM's zone if they differ"
                );
            } else {
                tracing::info!(zone = %zone, "the UCM's UTC offset is unknown: {why}; the configured zone is used");
            }
        }
        seen.unknown_because = Some(why);
    }

    /// Logs once when a configured zone disagrees with the offset the UCM reports now.
    fn compare(&self, seen: &mut Seen) {
        let (Some(tz), Some(off)) = (self.configured, seen.offset) else {
            return;
        };
        let ours = Zone::Named(tz).offset_secs(self.clock.now());
        if ours == off.local_minus_utc() {
            seen.disagreement_logged = false;
        } else if !seen.disagreement_logged {
            seen.disagreement_logged = true;
            let cost = if ours < off.local_minus_utc() {
                "every poll reads the difference again and call timestamps are off"
            } else {
                "call timestamps are off"
            };
            tracing::warn!(
                timezone = tz.name(),
                configured_offset = %utc_offset(ours),
                ucm_offset = %utc_offset(off.local_minus_utc()),
                "the configured timezone disagrees with the UTC offset the UCM reports: {cost}; \
                 set timezone to the UCM's zone, or leave it unset to follow the UCM"
            );
        }
    }

    /// Gauges and the landing page's line.
    fn show(&self, seen: &Seen) {
        let zone = self.zone_of(seen);
        let now = self.clock.now();
        let g = &self.metrics.utc_offset;
        g.with_label_values(&["exporter"])
            .set(i64::from(zone.offset_secs(now)));
        if let Some(off) = seen.offset {
            g.with_label_values(&["ucm"])
                .set(i64::from(off.local_minus_utc()));
        }
        if let Some(skew) = seen.skew {
            self.metrics
                .clock_skew
                .with_label_values::<&str>(&[])
                .set(skew);
        }
        self.status.set_clock(self.describe_with(seen));
    }

    /// One line for people: the zone in use, where it comes from, and what the UCM says.
    pub fn describe(&self) -> String {
        self.describe_with(&self.lock())
    }

    fn describe_with(&self, seen: &Seen) -> String {
        let zone = self.zone_of(seen);
        let source = match (self.configured, seen.offset) {
            (Some(_), _) => "configured",
            (None, Some(_)) => "the UCM's",
            (None, None) => "this host's, until the UCM tells its offset",
        };
        let mut line = format!("CDR times read in {zone} ({source})");
        match (seen.offset, &seen.unknown_because) {
            (Some(off), _) => {
                line.push_str(&format!(
                    "; the UCM says {}",
                    utc_offset(off.local_minus_utc())
                ));
                if self.configured.is_some() && seen.disagreement_logged {
                    line.push_str(", which disagrees");
                }
            }
            (None, Some(why)) => line.push_str(&format!("; the UCM's offset is unknown: {why}")),
            (None, None) => line.push_str("; the UCM's offset not read yet"),
        }
        if let Some(skew) = seen.skew {
            line.push_str(&format!("; its clock minus this host's: {skew:+} s"));
        }
        line
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::config::Secret;
    use chrono::{DateTime, Utc};
    use std::time::Duration;

    struct At(DateTime<Utc>);

    impl Clock for At {
        fn now(&self) -> DateTime<Utc> {
            self.0
        }
        fn monotonic(&self) -> Duration {
            Duration::ZERO
        }
    }

    fn clock(configured: Option<chrono_tz::Tz>) -> (UcmClock, Arc<TargetMetrics>) {
        let mut t = Target::new("office", "https://ucm", "cdrapi", Secret::new("pw"));
        t.timezone = configured;
        t.fallback_zone = chrono_tz::Europe::Lisbon;
        let now = DateTime::parse_from_rfc3339("2026-03-04T10:00:00Z").unwrap();
        let metrics = Arc::new(TargetMetrics::new(1));
        let c = UcmClock::new(
            &t,
            Arc::new(At(now.with_timezone(&Utc))),
            metrics.clone(),
            Arc::default(),
        );
        (c, metrics)
    }

    fn offset(m: &TargetMetrics, source: &str) -> i64 {
        m.utc_offset.with_label_values(&[source]).get()
    }

    #[test]
    fn a_follower_reads_times_in_the_offset_the_ucm_reports() {
        let (c, m) = clock(None);
        assert!(c.follows() && c.needs_reading());
        assert_eq!(c.zone(), Zone::Named(chrono_tz::Europe::Lisbon));
        // 15:00:07 at UTC+05:00 is 7 s ahead of this host's 10:00:00 UTC.
        c.observe("04-03-2026 15:00:07 UTC+05:00");
        assert!(!c.needs_reading());
        let plus5 = FixedOffset::east_opt(5 * 3600).unwrap();
        assert_eq!(c.zone(), Zone::Offset(plus5));
        assert_eq!((offset(&m, "ucm"), offset(&m, "exporter")), (18000, 18000));
        assert_eq!(m.clock_skew.with_label_values::<&str>(&[]).get(), 7);
        assert_eq!(
            c.describe(),
            "CDR times read in UTC+05:00 (the UCM's); the UCM says UTC+05:00; its clock minus this host's: +7 s"
        );
        // A garbled time later keeps the offset known.
        c.observe("yesterday");
        assert_eq!(c.zone(), Zone::Offset(plus5));
    }

    #[test]
    fn a_follower_without_an_answer_uses_the_host_zone_and_says_why() {
        let (c, m) = clock(None);
        c.unanswered(&UcmError::Permission {
            action: "getSystemStatus".into(),
        });
        assert!(!c.needs_reading());
        assert_eq!(c.zone(), Zone::Named(chrono_tz::Europe::Lisbon));
        assert_eq!(offset(&m, "exporter"), 0);
        assert!(c
            .describe()
            .contains("the UCM's offset is unknown: getSystemStatus gave no time"));
        // No offset in the text: the time is still read, in the zone in use.
        let (c, _) = clock(None);
        c.observe("2026-03-04 10:00:00");
        assert_eq!(c.zone(), Zone::Named(chrono_tz::Europe::Lisbon));
        assert!(
            c.describe().contains("gives no UTC offset"),
            "{}",
            c.describe()
        );
    }

    #[test]
    fn a_configured_zone_stays_and_a_disagreement_shows_until_they_agree() {
        let (c, m) = clock(Some(chrono_tz::UTC));
        assert!(!c.follows() && !c.needs_reading());
        c.observe("2026-03-04 15:00:00 UTC+05:00");
        assert_eq!(c.zone(), Zone::UTC);
        assert_eq!((offset(&m, "ucm"), offset(&m, "exporter")), (18000, 0));
        assert!(c.describe().contains("which disagrees"), "{}", c.describe());
        c.observe("2026-03-04 10:00:00 UTC+00:00");
        assert!(!c.describe().contains("disagrees"), "{}", c.describe());
    }
}
