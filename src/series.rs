//! The values of a target's call series as plain data: what the state file keeps, so that the
//! counters continue across a restart, a kill or a power loss (docs/design.md §3.5).
//!
//! The same type carries a commit's increments: the ledger adds them to the state's values,
//! writes the file, and only then adds them to the metrics, so a scrape never shows a value the
//! file does not hold. At start the metrics add the state's values to their zeros.

use std::collections::BTreeMap;

use serde::de::Deserializer;
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

/// Label values of one series, in the order of its family's label names, held in one
/// allocation: the state file is written at every commit, and with tens of thousands of series
/// following a pointer per value made that write several times slower (`benches/state_write.rs`).
/// In the file, a list of strings.
///
/// Each value is stored followed by a NUL, so no value can hold one: a NUL in a value from the
/// UCM is kept as U+FFFD, which no dashboard can tell apart from what the UCM meant.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Box<str>);

impl Labels {
    pub fn new(values: &[&str]) -> Self {
        let mut joined = String::with_capacity(values.iter().map(|v| v.len() + 1).sum());
        for v in values {
            if v.contains('\0') {
                joined.push_str(&v.replace('\0', "\u{fffd}"));
            } else {
                joined.push_str(v);
            }
            joined.push('\0');
        }
        Labels(joined.into_boxed_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        // A byte scan: the values are short, and `str::split` on a char costs more per value
        // than finding its end, and every state write reads every series' values.
        let mut rest: &str = &self.0;
        std::iter::from_fn(move || {
            let end = rest.bytes().position(|b| b == 0)?;
            let (value, tail) = rest.split_at(end);
            rest = &tail[1..];
            Some(value)
        })
    }

    pub fn len(&self) -> usize {
        self.0.bytes().filter(|&b| b == 0).count()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The values as a vector, for matching on them.
    pub fn to_vec(&self) -> Vec<&str> {
        self.iter().collect()
    }
}

impl std::fmt::Debug for Labels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let values = Vec::<String>::deserialize(d)?;
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        Ok(Labels::new(&values))
    }
}

/// The series of one family by their label values; in the file, a list of `[labels, value]`
/// pairs (JSON object keys can only be strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series<V>(pub BTreeMap<Labels, V>);

impl<V> Default for Series<V> {
    fn default() -> Self {
        Series(BTreeMap::new())
    }
}

impl<V: Serialize> Serialize for Series<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Series<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Series(
            Vec::<(Labels, V)>::deserialize(d)?.into_iter().collect(),
        ))
    }
}

/// One histogram series. Every observation is whole seconds, so the sum is exact too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistValue {
    /// Observations per bucket, not cumulative: `buckets[i]` counts those above bound `i - 1`
    /// and at most bound `i`; observations above the last bound are only in `count`.
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum: u64,
}

impl HistValue {
    /// A series with no observations, for these bounds.
    pub fn zero(bounds: &[f64]) -> Self {
        HistValue {
            buckets: vec![0; bounds.len()],
            count: 0,
            sum: 0,
        }
    }

    /// Adds one observation of `secs` under `bounds`.
    pub fn observe(&mut self, bounds: &[f64], secs: u64) {
        if let Some(i) = bounds.iter().position(|&b| secs as f64 <= b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += secs;
    }

    fn add(&mut self, other: &HistValue) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
    }

    fn sub(&mut self, other: &HistValue) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a -= b;
        }
        self.count -= other.count;
        self.sum -= other.sum;
    }
}

/// The series of one histogram family, with the bucket bounds they were counted under.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histograms {
    pub le: Vec<f64>,
    pub series: Series<HistValue>,
}

/// Every call series' value, by family name; or a commit's increments of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SeriesValues {
    pub counters: BTreeMap<String, Series<u64>>,
    pub histograms: BTreeMap<String, Histograms>,
    /// Unix start time of the newest call counted (a gauge: the largest wins).
    pub last_record: Option<i64>,
}

impl SeriesValues {
    pub fn is_empty(&self) -> bool {
        self.counters.values().all(|s| s.0.is_empty())
            && self.histograms.values().all(|h| h.series.0.is_empty())
            && self.last_record.is_none()
    }

    /// Number of series, for logs and benchmarks.
    pub fn len(&self) -> usize {
        self.counters.values().map(|s| s.0.len()).sum::<usize>()
            + self
                .histograms
                .values()
                .map(|h| h.series.0.len())
                .sum::<usize>()
    }

    /// Adds `n` to a counter series.
    pub fn count(&mut self, family: &str, labels: &[&str], n: u64) {
        let series = &mut self.counters.entry(family.to_string()).or_default().0;
        *series.entry(owned(labels)).or_default() += n;
    }

    /// Adds one observation to a histogram series counted under `bounds`.
    pub fn observe(&mut self, family: &str, bounds: &[f64], labels: &[&str], secs: u64) {
        let h = self
            .histograms
            .entry(family.to_string())
            .or_insert_with(|| Histograms {
                le: bounds.to_vec(),
                series: Series::default(),
            });
        h.series
            .0
            .entry(owned(labels))
            .or_insert_with(|| HistValue::zero(bounds))
            .observe(bounds, secs);
    }

    /// Adds increments. A histogram family counted under other bounds than these values' is
    /// refused whole, before anything changes.
    pub fn add(&mut self, delta: &SeriesValues) -> Result<(), String> {
        for (name, d) in &delta.histograms {
            if let Some(h) = self.histograms.get(name) {
                if h.le != d.le {
                    return Err(format!(
                        "{name}: buckets {:?} where the values have {:?}",
                        d.le, h.le
                    ));
                }
            }
        }
        for (name, d) in &delta.counters {
            let series = &mut self.counters.entry(name.clone()).or_default().0;
            for (labels, n) in &d.0 {
                match series.get_mut(labels) {
                    Some(v) => *v += n,
                    None => {
                        series.insert(labels.clone(), *n);
                    }
                }
            }
        }
        for (name, d) in &delta.histograms {
            let h = self
                .histograms
                .entry(name.clone())
                .or_insert_with(|| Histograms {
                    le: d.le.clone(),
                    series: Series::default(),
                });
            for (labels, v) in &d.series.0 {
                match h.series.0.get_mut(labels) {
                    Some(have) => have.add(v),
                    None => {
                        h.series.0.insert(labels.clone(), v.clone());
                    }
                }
            }
        }
        self.last_record = self.last_record.max(delta.last_record);
        Ok(())
    }

    /// Takes back increments [`Self::add`] added, when the file that should have held them
    /// could not be written. `last_record` is restored from `previous_last_record`.
    pub fn sub(&mut self, delta: &SeriesValues, previous_last_record: Option<i64>) {
        for (name, d) in &delta.counters {
            if let Some(series) = self.counters.get_mut(name) {
                for (labels, n) in &d.0 {
                    if let Some(v) = series.0.get_mut(labels) {
                        *v -= n;
                    }
                }
            }
        }
        for (name, d) in &delta.histograms {
            if let Some(h) = self.histograms.get_mut(name) {
                for (labels, v) in &d.series.0 {
                    if let Some(have) = h.series.0.get_mut(labels) {
                        have.sub(v);
                    }
                }
            }
        }
        self.last_record = previous_last_record;
    }
}

fn owned(labels: &[&str]) -> Labels {
    Labels::new(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_keep_their_number_and_order_and_a_nul_cannot_split_one() {
        for values in [&[][..], &[""], &["", ""], &["inbound", "", "answered"]] {
            let l = Labels::new(values);
            assert_eq!(l.to_vec(), values);
            assert_eq!(l.len(), values.len());
            let text = serde_json::to_string(&l).unwrap();
            assert_eq!(serde_json::from_str::<Labels>(&text).unwrap(), l);
        }
        assert_ne!(Labels::new(&[]), Labels::new(&[""]));
        let odd = Labels::new(&["a\0b", "c"]);
        assert_eq!(odd.to_vec(), ["a\u{fffd}b", "c"]);
        assert_eq!(format!("{odd:?}"), "[\"a\u{fffd}b\", \"c\"]");
    }

    #[test]
    fn add_then_sub_leaves_the_values_as_they_were_and_the_file_form_round_trips() {
        let bounds = [5.0, 15.0];
        let mut v = SeriesValues::default();
        v.count("ucm_calls_total", &["inbound", "", "answered"], 2);
        v.observe("ucm_call_talk_seconds", &bounds, &["inbound", ""], 3);
        let before = v.clone();
        let mut d = SeriesValues::default();
        d.count("ucm_calls_total", &["inbound", "", "answered"], 1);
        d.count("ucm_calls_total", &["outbound", "Daisy", "busy"], 4);
        d.observe("ucm_call_talk_seconds", &bounds, &["inbound", ""], 10);
        d.observe("ucm_call_talk_seconds", &bounds, &["inbound", ""], 99);
        d.last_record = Some(1_700_000_000);
        v.add(&d).unwrap();
        let talk = &v.histograms["ucm_call_talk_seconds"].series.0[&Labels::new(&["inbound", ""])];
        assert_eq!(
            (talk.buckets.clone(), talk.count, talk.sum),
            (vec![1, 1], 3, 112)
        );
        assert_eq!(v.len(), 3);
        let text = serde_json::to_string(&v).unwrap();
        assert!(text.contains(r#"[["inbound","","answered"],3]"#), "{text}");
        assert_eq!(serde_json::from_str::<SeriesValues>(&text).unwrap(), v);
        v.sub(&d, None);
        v.counters
            .get_mut("ucm_calls_total")
            .unwrap()
            .0
            .retain(|_, n| *n > 0);
        assert_eq!(v, before);
        // Other bounds for a family already counted are refused whole.
        let mut other = SeriesValues::default();
        other.observe("ucm_call_talk_seconds", &[1.0], &["inbound", ""], 1);
        other.count("ucm_calls_total", &["inbound", "", "answered"], 1);
        assert!(v.add(&other).is_err());
        assert_eq!(v, before);
    }
}
