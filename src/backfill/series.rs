//! The backfilled series as OpenMetrics samples: the call counters and histograms exactly as
//! [`TargetMetrics`] encodes them for `/metrics`, each sample written with a timestamp.
//!
//! A series is written from the step before its first call on (at 0 there), then at every step:
//! `increase()` between any two sample times is then exact, with no extrapolation, and series
//! that never change cost nothing. A histogram's series (buckets, sum, count of one label set)
//! start together, so that a quantile never sees some buckets without the others.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use super::slice::Grid;
use crate::metrics::{CallTally, TargetMetrics};

/// The values written last, by family as the text format names it (`ucm_calls_total`): what a
/// resumed run continues from.
pub type Totals = BTreeMap<String, Family>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Family {
    /// `counter` or `histogram`.
    pub kind: String,
    /// Sample (`name{labels}`) → value.
    pub samples: BTreeMap<String, f64>,
}

pub struct Series {
    /// What earlier runs counted; this run's [`TargetMetrics`] starts from zero.
    base: Totals,
    now: Totals,
    /// Label sets (histograms: without `le`) that have been written.
    active: HashSet<String>,
    /// `name="value"` of the extra labels, comma-separated.
    labels: String,
}

impl Series {
    pub fn new(base: Totals, labels: &[(String, String)]) -> Series {
        let active = base
            .values()
            .flat_map(|f| f.samples.keys().map(|k| unit(&f.kind, k)))
            .collect();
        let labels = labels
            .iter()
            .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
            .collect::<Vec<_>>()
            .join(",");
        Series {
            now: base.clone(),
            base,
            active,
            labels,
        }
    }

    pub fn totals(&self) -> &Totals {
        &self.now
    }

    /// Counts a day's tallies into `metrics` step by step, and writes the samples of each step.
    pub fn write_slice(
        &mut self,
        grid: &Grid,
        mut steps: BTreeMap<usize, CallTally>,
        metrics: &TargetMetrics,
        out: &mut impl Write,
    ) -> io::Result<()> {
        for k in 0..grid.steps() {
            let mut started = Vec::new();
            if let Some(tally) = steps.remove(&k) {
                metrics.apply(&tally);
                self.update(&metrics.prepared().text(), &mut started);
            }
            self.write_step(grid.sample_time(k), grid.sample_time(k + 1), &started, out)?;
        }
        Ok(())
    }

    /// Takes the values of the text exposition of the call series; `started` gets the samples
    /// of label sets written for the first time, as (family, sample).
    fn update(&mut self, text: &[u8], started: &mut Vec<(String, String)>) {
        let text = String::from_utf8_lossy(text);
        let mut values: Vec<(&str, &str, &str, f64)> = Vec::new();
        let (mut family, mut kind) = ("", None);
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, k) = rest.split_once(' ').unwrap_or((rest, ""));
                family = name;
                // Gauges (the newest call's start) are a state, not a count of the past.
                kind = matches!(k, "counter" | "histogram").then_some(k);
                continue;
            }
            let (Some(kind), false) = (kind, line.starts_with('#')) else {
                continue;
            };
            let Some((key, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let base = self
                .base
                .get(family)
                .and_then(|f| f.samples.get(key))
                .copied()
                .unwrap_or(0.0);
            values.push((
                family,
                kind,
                key,
                base + value.parse::<f64>().unwrap_or(0.0),
            ));
        }
        let counted: HashSet<String> = values
            .iter()
            .filter(|v| v.3 != 0.0)
            .map(|(_, kind, key, _)| unit(kind, key))
            .collect();
        let mut starting = HashSet::new();
        for (family, kind, key, value) in values {
            let u = unit(kind, key);
            if !self.active.contains(&u) {
                if !counted.contains(&u) {
                    continue;
                }
                started.push((family.to_string(), key.to_string()));
                starting.insert(u);
            }
            let f = self
                .now
                .entry(family.to_string())
                .or_insert_with(|| Family {
                    kind: kind.to_string(),
                    samples: BTreeMap::new(),
                });
            f.samples.insert(key.to_string(), value);
        }
        self.active.extend(starting);
    }

    /// Writes every written series at `at`, after the zeros at `before` of those it starts.
    fn write_step(
        &self,
        before: i64,
        at: i64,
        started: &[(String, String)],
        out: &mut impl Write,
    ) -> io::Result<()> {
        for (name, f) in &self.now {
            if f.samples.is_empty() {
                continue;
            }
            // OpenMetrics names a counter's family without the `_total` of its samples.
            let family = match f.kind.as_str() {
                "counter" => name.strip_suffix("_total").unwrap_or(name),
                _ => name,
            };
            writeln!(out, "# TYPE {family} {}", f.kind)?;
            for (_, key) in started.iter().filter(|(n, _)| n == name) {
                writeln!(out, "{} 0 {before}", self.labelled(key))?;
            }
            for (key, value) in &f.samples {
                writeln!(out, "{} {value} {at}", self.labelled(key))?;
            }
        }
        Ok(())
    }

    /// A sample's name and labels with the extra labels added.
    fn labelled(&self, key: &str) -> String {
        if self.labels.is_empty() {
            return key.to_string();
        }
        match key.strip_suffix('}') {
            Some(open) => format!("{open},{}}}", self.labels),
            None => format!("{key}{{{}}}", self.labels),
        }
    }
}

/// The label set a sample belongs to: for a histogram, its name without `_bucket`, `_sum` or
/// `_count` and its labels without `le` (which the encoder writes last).
fn unit(kind: &str, key: &str) -> String {
    if kind != "histogram" {
        return key.to_string();
    }
    let (name, labels) = key.split_at(key.find('{').unwrap_or(key.len()));
    let name = ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    let labels = match labels.rfind("le=\"") {
        Some(i) => labels[..i].trim_end_matches(','),
        None => labels.trim_end_matches('}'),
    };
    format!("{name}{labels}")
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_is_one_label_set() {
        let u = |k| unit("histogram", k);
        assert_eq!(u("w_bucket{a=\"x\",le=\"5\"}"), "w{a=\"x\"");
        assert_eq!(u("w_sum{a=\"x\"}"), "w{a=\"x\"");
        assert_eq!(u("w_count{a=\"x\"}"), "w{a=\"x\"");
        assert_eq!(u("w_bucket{le=\"+Inf\"}"), "w{");
        assert_eq!(u("w_count"), "w");
        assert_eq!(unit("counter", "c_total{a=\"x\"}"), "c_total{a=\"x\"}");
    }

    #[test]
    fn samples_start_at_zero_the_step_before_their_first_call_and_carry_the_labels() {
        let text =
            b"# HELP c_total C.\n# TYPE c_total counter\nc_total{t=\"a\"} 0\nc_total{t=\"b\"} 2\n\
                     # TYPE g gauge\ng 5\n";
        let labels = [("instance".to_string(), "office \"1\"".to_string())];
        let mut s = Series::new(Totals::new(), &labels);
        let mut started = Vec::new();
        s.update(text, &mut started);
        assert_eq!(
            started,
            [("c_total".to_string(), "c_total{t=\"b\"}".to_string())]
        );
        let mut out = Vec::new();
        s.write_step(100, 400, &started, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "# TYPE c counter\n\
             c_total{t=\"b\",instance=\"office \\\"1\\\"\"} 0 100\n\
             c_total{t=\"b\",instance=\"office \\\"1\\\"\"} 2 400\n"
        );
        // Resumed: the earlier run's values are the base of this run's counts.
        let mut resumed = Series::new(s.totals().clone(), &[]);
        let mut started = Vec::new();
        resumed.update(
            b"# TYPE c_total counter\nc_total{t=\"b\"} 1\n",
            &mut started,
        );
        assert!(started.is_empty());
        assert_eq!(resumed.totals()["c_total"].samples["c_total{t=\"b\"}"], 3.0);
    }
}
