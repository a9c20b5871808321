//! A histogram vector over whole-second observations whose series can be set from saved values.
//!
//! The `prometheus` crate's histograms can only be observed, so a histogram restored from the
//! state file would need its observations again, which are gone. This one keeps each series as
//! a [`HistValue`] (exact: the observations are whole seconds) and is encoded like any
//! histogram.

use std::sync::{Arc, Mutex};

use foldhash::HashMap;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Bucket, Histogram, Metric, MetricFamily, MetricType};

use crate::counter::{desc, family, label_pairs};
use crate::exposition::{write_sample, write_value, LabelOrder, TextFamily, Value};
use crate::series::{HistValue, Labels};

/// Clones share their series, as the `prometheus` crate's vectors do.
#[derive(Clone)]
pub struct IntHistogramVec(Arc<Inner>);

struct Inner {
    desc: Desc,
    order: LabelOrder,
    bounds: Vec<f64>,
    /// The bounds as `le` values, `+Inf` last unless a bound is infinite.
    le: Vec<String>,
    series: Mutex<HashMap<Labels, HistValue>>,
}

impl IntHistogramVec {
    pub fn new(name: &str, help: &str, labels: &[&str], bounds: &[f64]) -> Self {
        let desc = desc(name, help, labels);
        let mut le: Vec<String> = bounds.iter().map(f64::to_string).collect();
        if !bounds
            .iter()
            .any(|b| b.is_infinite() && b.is_sign_positive())
        {
            le.push("+Inf".to_string());
        }
        IntHistogramVec(Arc::new(Inner {
            order: LabelOrder::new(&desc.variable_labels),
            desc,
            bounds: bounds.to_vec(),
            le,
            series: Mutex::default(),
        }))
    }

    pub fn name(&self) -> &str {
        &self.0.desc.fq_name
    }

    pub fn bounds(&self) -> &[f64] {
        &self.0.bounds
    }

    pub fn label_count(&self) -> usize {
        self.0.desc.variable_labels.len()
    }

    /// Creates the series at zero if it does not exist.
    pub fn touch(&self, labels: &[&str]) {
        self.add(labels, &HistValue::zero(&self.0.bounds));
    }

    /// Adds counted observations to a series (its bounds must be this vector's).
    pub fn add(&self, labels: &[&str], v: &HistValue) {
        let mut series = self.0.series.lock().expect("not poisoned");
        let have = series
            .entry(Labels::new(labels))
            .or_insert_with(|| HistValue::zero(&self.0.bounds));
        for (a, b) in have.buckets.iter_mut().zip(&v.buckets) {
            *a += b;
        }
        have.count += v.count;
        have.sum += v.sum;
    }
}

impl TextFamily for IntHistogramVec {
    fn name(&self) -> &str {
        &self.0.desc.fq_name
    }

    fn write_text(&self, out: &mut Vec<u8>) {
        let series = self.0.series.lock().expect("not poisoned");
        let (name, desc) = (&self.0.desc.fq_name, &self.0.desc);
        // The start of a series' bucket lines, `NAME_bucket{a="x",le="`, made once per series:
        // a target's histograms are most of its call series' text, and writing every bucket
        // line's labels again (escapes checked) was most of the cost of publishing them.
        let mut bucket = Vec::new();
        self.0
            .order
            .write_family(out, desc, "histogram", series.iter(), |out, labels, v| {
                bucket.clear();
                bucket.extend_from_slice(name.as_bytes());
                bucket.extend_from_slice(b"_bucket");
                labels.write_open(&mut bucket);
                let bare = bucket.ends_with(b"{");
                if !bare {
                    bucket.push(b',');
                }
                bucket.extend_from_slice(b"le=\"");
                let line = |out: &mut Vec<u8>, le: &str, n: u64| {
                    out.extend_from_slice(&bucket);
                    out.extend_from_slice(le.as_bytes());
                    out.extend_from_slice(b"\"} ");
                    write_value(out, Value::Int(n));
                };
                let mut cumulative = 0;
                for (le, n) in self.0.le.iter().zip(&v.buckets) {
                    cumulative += n;
                    line(out, le, cumulative);
                }
                // Past the bounds, the `+Inf` bucket: every observation.
                if let Some(inf) = self.0.le.get(v.buckets.len()) {
                    line(out, inf, v.count);
                }
                write_sample(out, name, "_sum", labels, None, Value::Int(v.sum));
                write_sample(out, name, "_count", labels, None, Value::Int(v.count));
            });
    }
}

impl Collector for IntHistogramVec {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.0.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let series = self.0.series.lock().expect("not poisoned");
        let mut metrics = Vec::with_capacity(series.len());
        for (labels, v) in series.iter() {
            let mut cumulative = 0;
            let buckets = self
                .0
                .bounds
                .iter()
                .zip(&v.buckets)
                .map(|(&le, n)| {
                    cumulative += n;
                    let mut b = Bucket::default();
                    b.set_upper_bound(le);
                    b.set_cumulative_count(cumulative);
                    b
                })
                .collect();
            let mut h = Histogram::default();
            h.set_sample_count(v.count);
            h.set_sample_sum(v.sum as f64);
            h.set_bucket(buckets);
            let mut m = Metric::default();
            m.set_label(label_pairs(&self.0.desc, labels));
            m.set_histogram(h);
            metrics.push(m);
        }
        vec![family(&self.0.desc, MetricType::HISTOGRAM, metrics)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{HistogramOpts, Registry, TextEncoder};

    /// The same whole-second observations through this vector, written directly or gathered,
    /// and through the `prometheus` crate's histogram give the same text.
    #[test]
    fn writes_as_the_prometheus_crates_histogram_vector() {
        let bounds = [1.0, 2.5, 10.0, 1e6];
        let labels = ["zone", "kind"];
        let mine = IntHistogramVec::new("h_seconds", "Waits \\ in\nseconds.", &labels, &bounds);
        let theirs = prometheus::HistogramVec::new(
            HistogramOpts::new("h_seconds", "Waits \\ in\nseconds.").buckets(bounds.to_vec()),
            &labels,
        )
        .unwrap();
        let observed: [([&str; 2], &[u64]); 4] = [
            (["b", "x"], &[0, 2, 3, 11, 400, 2_000_000]),
            (["a", "y\"q"], &[1]),
            (["a", "new\nline"], &[10, 10]),
            (["", "é"], &[3]),
        ];
        for (l, secs) in observed {
            let mut v = HistValue::zero(&bounds);
            for &s in secs {
                v.observe(&bounds, s);
                theirs.with_label_values(&l).observe(s as f64);
            }
            mine.add(&l, &v);
        }
        mine.touch(&["c", "z"]);
        theirs.with_label_values(&["c", "z"]);
        let text = |c: Box<dyn Collector>| {
            let r = Registry::new();
            r.register(c).unwrap();
            TextEncoder::new().encode_to_string(&r.gather()).unwrap()
        };
        let want = text(Box::new(theirs));
        let mut direct = Vec::new();
        mine.write_text(&mut direct);
        assert_eq!(String::from_utf8(direct).unwrap(), want);
        assert_eq!(text(Box::new(mine.clone())), want);
        let mut none = Vec::new();
        IntHistogramVec::new("e_seconds", "Empty.", &[], &bounds).write_text(&mut none);
        assert!(none.is_empty());
        // A series without labels: its bucket lines hold `le` alone.
        let bare = IntHistogramVec::new("p_seconds", "Plain.", &[], &bounds);
        let plain = prometheus::Histogram::with_opts(
            HistogramOpts::new("p_seconds", "Plain.").buckets(bounds.to_vec()),
        )
        .unwrap();
        let mut v = HistValue::zero(&bounds);
        for s in [2, 7, 90] {
            v.observe(&bounds, s);
            plain.observe(s as f64);
        }
        bare.add(&[], &v);
        let mut direct = Vec::new();
        bare.write_text(&mut direct);
        assert_eq!(String::from_utf8(direct).unwrap(), text(Box::new(plain)));
    }
}
