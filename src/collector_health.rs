//! Whether each live-status collector's last run worked, and why runs failed: a few numbers per
//! collector, written out as `ucm_collector_up` and `ucm_collector_errors_total` per scrape.
//!
//! Kept as plain numbers rather than `prometheus` series: every collector's error counter
//! exists from the start at 0 (so that `increase()` sees its first failure), which as series
//! objects cost a target ~44 KB.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::error::Reason;
use crate::exposition::Encoded;

const UP_HELP: &str = "1 if the live-status collector's last run succeeded, 0 if it failed or is \
                       disabled for this API user or firmware.";
const ERRORS_HELP: &str =
    "Failed live-status collector runs, by collector and reason (as ucm_poll_errors_total).";

/// Up, and failed runs per reason in the order of [`Reason::ALL`].
type Counts = (bool, [u64; Reason::ALL.len()]);

/// The health of one target's collectors, by collector name.
#[derive(Debug, Default)]
pub struct Health(Mutex<BTreeMap<&'static str, Counts>>);

impl Health {
    fn with<T>(&self, collector: &'static str, f: impl FnOnce(&mut Counts) -> T) -> T {
        let mut all = self.0.lock().expect("not poisoned");
        f(all
            .entry(collector)
            .or_insert((false, [0; Reason::ALL.len()])))
    }

    /// Shows a collector as down with no errors, until its first run says otherwise.
    pub fn enable(&self, collector: &'static str) {
        self.with(collector, |_| ());
    }

    pub fn set_up(&self, collector: &'static str, up: bool) {
        self.with(collector, |c| c.0 = up);
    }

    /// Counts a failed run and shows the collector as down.
    pub fn failed(&self, collector: &'static str, reason: Reason) {
        let i = Reason::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("every reason is in Reason::ALL");
        self.with(collector, |c| {
            c.0 = false;
            c.1[i] += 1;
        });
    }

    /// Each collector and whether its last run worked, by name.
    pub fn up(&self) -> Vec<(String, bool)> {
        let all = self.0.lock().expect("not poisoned");
        all.iter()
            .map(|(c, (up, _))| (c.to_string(), *up))
            .collect()
    }

    /// The two families, as a registry would gather them; none without collectors.
    pub fn encode(&self) -> Vec<Encoded> {
        let all = self.0.lock().expect("not poisoned");
        if all.is_empty() {
            return Vec::new();
        }
        let mut reasons: Vec<(usize, Reason)> = Reason::ALL.into_iter().enumerate().collect();
        reasons.sort_by_key(|(_, r)| r.as_str());
        let errors = all.iter().flat_map(|(c, (_, n))| {
            reasons
                .iter()
                .map(move |(i, r)| ([*c, r.as_str()], n[*i] as f64))
        });
        vec![
            Encoded::new(
                "ucm_collector_errors_total",
                ERRORS_HELP,
                "counter",
                &["collector", "reason"],
                errors,
            ),
            Encoded::new(
                "ucm_collector_up",
                UP_HELP,
                "gauge",
                &["collector"],
                all.iter()
                    .map(|(c, (up, _))| ([*c], f64::from(u8::from(*up)))),
            ),
        ]
    }
}
