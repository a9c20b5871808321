//! A counter vector whose series cost a few dozen bytes each.
//!
//! The `prometheus` crate's vectors give every series a copy of its family's description, help
//! text included, and its label pairs as protobuf strings: over half a kilobyte a series. A
//! target has hundreds of series at zero (each trunk by direction and disposition, each error
//! reason, each API action), and for a fleet of a thousand targets those copies were a third of
//! the exporter's memory. Here a series is its label values in one allocation and a number; the
//! family is gathered and encoded like any counter.

use std::sync::{Arc, Mutex};

use foldhash::HashMap;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, LabelPair, Metric, MetricFamily, MetricType};

use crate::exposition::{write_sample, LabelOrder, TextFamily, Value};
use crate::series::Labels;

/// Clones share their series, as the `prometheus` crate's vectors do.
#[derive(Clone)]
pub struct IntCounterVec(Arc<Inner>);

struct Inner {
    desc: Desc,
    order: LabelOrder,
    series: Mutex<HashMap<Labels, u64>>,
}

impl IntCounterVec {
    pub fn new(name: &str, help: &str, labels: &[&str]) -> Self {
        let desc = desc(name, help, labels);
        IntCounterVec(Arc::new(Inner {
            order: LabelOrder::new(&desc.variable_labels),
            desc,
            series: Mutex::default(),
        }))
    }

    pub fn label_count(&self) -> usize {
        self.0.desc.variable_labels.len()
    }

    /// Creates the series at zero if it does not exist.
    pub fn touch(&self, labels: &[&str]) {
        self.inc_by(labels, 0);
    }

    pub fn inc(&self, labels: &[&str]) {
        self.inc_by(labels, 1);
    }

    /// Adds `n` to a series, creating it. `labels` must be as many as the family's label names.
    pub fn inc_by(&self, labels: &[&str], n: u64) {
        debug_assert_eq!(labels.len(), self.label_count(), "{}", self.0.desc.fq_name);
        *self
            .0
            .series
            .lock()
            .expect("not poisoned")
            .entry(Labels::new(labels))
            .or_default() += n;
    }

    /// The value of a series; 0 for one that does not exist. Scrapes read the gathered family;
    /// this is for tests.
    #[cfg(test)]
    pub fn get(&self, labels: &[&str]) -> u64 {
        let series = self.0.series.lock().expect("not poisoned");
        series.get(&Labels::new(labels)).copied().unwrap_or(0)
    }
}

impl TextFamily for IntCounterVec {
    fn name(&self) -> &str {
        &self.0.desc.fq_name
    }

    fn write_text(&self, out: &mut Vec<u8>) {
        let series = self.0.series.lock().expect("not poisoned");
        let name = &self.0.desc.fq_name;
        let all = series.iter().map(|(l, &v)| (l, v));
        self.0
            .order
            .write_family(out, &self.0.desc, "counter", all, |out, labels, v| {
                write_sample(out, name, "", labels, None, Value::Int(v))
            });
    }
}

impl Collector for IntCounterVec {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.0.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let series = self.0.series.lock().expect("not poisoned");
        let metrics = series
            .iter()
            .map(|(labels, &v)| {
                let mut c = Counter::default();
                c.set_value(v as f64);
                let mut m = Metric::default();
                m.set_label(label_pairs(&self.0.desc, labels));
                m.set_counter(c);
                m
            })
            .collect();
        vec![family(&self.0.desc, MetricType::COUNTER, metrics)]
    }
}

/// The description of a family with these label names and no constant labels.
pub(crate) fn desc(name: &str, help: &str, labels: &[&str]) -> Desc {
    let names = labels.iter().map(|l| l.to_string()).collect();
    Desc::new(name.into(), help.into(), names, Default::default()).expect("valid metric")
}

/// The label pairs of one series, sorted by name as the text format has them.
pub(crate) fn label_pairs(desc: &Desc, labels: &Labels) -> Vec<LabelPair> {
    let mut pairs: Vec<LabelPair> = desc
        .variable_labels
        .iter()
        .zip(labels.iter())
        .map(|(n, l)| {
            let mut p = LabelPair::default();
            p.set_name(n.clone());
            p.set_value(l.to_string());
            p
        })
        .collect();
    pairs.sort_by(|a, b| a.name().cmp(b.name()));
    pairs
}

/// A gathered family of `metrics`; the registry sorts them.
pub(crate) fn family(desc: &Desc, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(desc.fq_name.clone());
    family.set_help(desc.help.clone());
    family.set_field_type(kind);
    family.set_metric(metrics);
    family
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Registry, TextEncoder};

    /// The same series through this vector and through the `prometheus` crate's encode to the
    /// same text: label order, escapes, zero series, and families without labels.
    #[test]
    fn encodes_as_the_prometheus_crates_counter_vector() {
        let rows: [(&[&str; 2], u64); 5] = [
            (&["b", "x\"y"], 3),
            (&["a", "back\\slash"], 0),
            (&["a", "new\nline"], 12_345_678_901),
            (&["", "é"], 1),
            (&["b", ""], 0),
        ];
        let (mine, theirs) = (Registry::new(), Registry::new());
        let m = IntCounterVec::new("x_total", "Help \\ with\nlines.", &["zone", "name"]);
        let t = prometheus::IntCounterVec::new(
            prometheus::Opts::new("x_total", "Help \\ with\nlines."),
            &["zone", "name"],
        )
        .unwrap();
        for (labels, n) in rows {
            m.inc_by(labels, n);
            m.touch(labels);
            t.with_label_values(labels).inc_by(n);
        }
        m.inc(&["a", "new\nline"]);
        t.with_label_values(&["a", "new\nline"]).inc();
        let lone = IntCounterVec::new("y_total", "No labels.", &[]);
        lone.inc_by(&[], 4);
        let lone_t = prometheus::IntCounter::new("y_total", "No labels.").unwrap();
        lone_t.inc_by(4);
        mine.register(Box::new(m.clone())).unwrap();
        mine.register(Box::new(lone.clone())).unwrap();
        theirs.register(Box::new(t)).unwrap();
        theirs.register(Box::new(lone_t)).unwrap();
        let text = |r: &Registry| TextEncoder::new().encode_to_string(&r.gather()).unwrap();
        assert_eq!(text(&mine), text(&theirs));
        // Written straight from the series, without gathering.
        let mut direct = Vec::new();
        m.write_text(&mut direct);
        lone.write_text(&mut direct);
        assert_eq!(String::from_utf8(direct).unwrap(), text(&theirs));
        // A family without series writes nothing, as a registry leaves it out.
        let mut none = Vec::new();
        IntCounterVec::new("z_total", "Never.", &["a"]).write_text(&mut none);
        assert!(none.is_empty());
        assert_eq!(m.get(&["a", "new\nline"]), 12_345_678_902);
        assert_eq!(m.get(&["c", "none"]), 0);
        assert_eq!((m.label_count(), lone.label_count()), (2, 0));
    }
}
