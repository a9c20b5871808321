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
use crate::series::{HistValue, Labels};

/// Clones share their series, as the `prometheus` crate's vectors do.
#[derive(Clone)]
pub struct IntHistogramVec(Arc<Inner>);

struct Inner {
    desc: Desc,
    bounds: Vec<f64>,
    series: Mutex<HashMap<Labels, HistValue>>,
}

impl IntHistogramVec {
    pub fn new(name: &str, help: &str, labels: &[&str], bounds: &[f64]) -> Self {
        IntHistogramVec(Arc::new(Inner {
            desc: desc(name, help, labels),
            bounds: bounds.to_vec(),
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
