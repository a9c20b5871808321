//! The text exposition format 0.0.4, plain or gzip, built from a part prepared in advance and a
//! part encoded per scrape.
//!
//! Encoding every series of a busy target takes tens of milliseconds, and twenty scrapers at
//! once would queue behind each other for most of a second, yet nearly all of those series
//! change only when a poll brings calls. So those families are encoded, and compressed, once per
//! change into a [`Prepared`] that every scrape shares until the next change; a scrape encodes
//! only the few small families that change between polls (poll health, process metrics).
//!
//! The gzip answer reuses the compressed prepared part as it is, the way pigz joins blocks
//! compressed apart: the prepared deflate stream ends in a sync flush, which leaves it
//! byte-aligned and not final, so the scrape's own deflate stream (ended as usual) can follow it
//! directly, and the CRC-32 of the whole is the prepared CRC extended by the scrape's bytes. The
//! result is one ordinary gzip member that any decoder accepts.
//!
//! Only the compressed part is kept. Prometheus always asks for gzip; a plain answer (curl, a
//! browser) inflates it again, while keeping the text too cost a fleet of a thousand targets
//! over 200 MiB.

use std::cell::RefCell;
use std::io::Write;

use bytes::Bytes;
use flate2::write::DeflateEncoder;
use flate2::{Compression, Crc};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, Registry, TextEncoder};

use crate::series::Labels;

/// No file name, no modification time (0), OS "unknown": the body does not depend on when or
/// where it was made.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0xff];

/// Families encoded once and shared by every scrape until they change.
#[derive(Debug)]
pub struct Prepared {
    /// Raw deflate of `text`, ended by a sync flush rather than a final block so that more
    /// deflate data may follow it.
    deflated: Bytes,
    crc: Crc,
}

impl Prepared {
    /// `families` must be sorted by name and must not share a name with the families a scrape
    /// adds (see [`body`]).
    pub fn new(families: &[&dyn TextFamily]) -> Self {
        TEXT.with_borrow_mut(|text| {
            text.clear();
            for f in families {
                f.write_text(text);
            }
            let prepared = Self::from_text(text);
            if text.capacity() > TEXT_KEEP {
                *text = Vec::new();
            }
            prepared
        })
    }

    fn from_text(text: &[u8]) -> Self {
        let mut deflated = deflate(Vec::with_capacity(text.len() / 8), text, End::Open);
        // Kept for as long as nothing changes: no growth slack.
        deflated.shrink_to_fit();
        let mut crc = Crc::new();
        crc.update(text);
        Prepared {
            deflated: deflated.into(),
            crc,
        }
    }

    /// The prepared families as text, inflated from the kept deflate stream.
    pub fn text(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.crc.amount() as usize);
        let mut inflate = flate2::Decompress::new(false);
        // One call inflates the whole stream: the output has room for all of it, and a stream
        // that ends in a sync flush rather than a final block is simply input run out.
        inflate
            .decompress_vec(&self.deflated, &mut out, flate2::FlushDecompress::Sync)
            .expect("the prepared stream is deflate written by this process");
        debug_assert_eq!(out.len(), self.crc.amount() as usize);
        out
    }
}

/// The families of several registries, sorted by name as the text format has them.
pub fn gather(registries: &[&Registry]) -> Vec<MetricFamily> {
    let mut families = Vec::new();
    for r in registries {
        families.extend(r.gather());
    }
    families.sort_by(|a, b| a.name().cmp(b.name()));
    families
}

fn encode(families: &[MetricFamily], out: &mut Vec<u8>) {
    TextEncoder::new()
        .encode(families, out)
        .expect("encoding gathered families into a Vec cannot fail");
}

thread_local! {
    /// The text of the families a publication prepares, reused from one to the next: a thousand
    /// targets each publishing a few hundred KB a minute paid more for fresh pages than for
    /// writing the text.
    static TEXT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// A deflate compressor and its tables (a few hundred KB), reset rather than rebuilt for
    /// each publication and each gzip scrape.
    static DEFLATE: RefCell<Option<DeflateEncoder<Vec<u8>>>> = const { RefCell::new(None) };
}

/// The largest buffer [`TEXT`] keeps between publications, per thread.
const TEXT_KEEP: usize = 4 << 20;

/// How [`deflate`] ends its stream.
enum End {
    /// With a sync flush: byte-aligned and not final, so more deflate data may follow.
    Open,
    /// With the final block.
    Final,
}

/// `out` with `text` appended as a raw deflate stream of its own, compressed by this thread's
/// compressor.
fn deflate(out: Vec<u8>, text: &[u8], end: End) -> Vec<u8> {
    DEFLATE.with_borrow_mut(|slot| {
        let enc = match slot {
            Some(enc) => {
                // Ends the previous stream into the empty Vec taken below, which is dropped,
                // and starts this one with the compressor's tables as they were allocated.
                let _ = enc.reset(out);
                enc
            }
            None => slot.insert(DeflateEncoder::new(out, Compression::fast())),
        };
        enc.write_all(text).expect("writing to a Vec cannot fail");
        match end {
            // `flush` on a deflate writer is a sync flush: it ends the block and pads to a byte
            // boundary without marking the stream finished.
            End::Open => enc.flush().expect("writing to a Vec cannot fail"),
            End::Final => enc.try_finish().expect("writing to a Vec cannot fail"),
        }
        std::mem::take(enc.get_mut())
    })
}

/// A family that writes itself in the text format, byte for byte as [`TextEncoder`] writes it
/// once a registry has gathered it: series sorted by their label values (label names sorted),
/// and nothing for a family without series. The call series are written this way at every
/// publication; building a protobuf for each of a target's thousand-odd series first, then
/// encoding those, cost three times as much.
pub trait TextFamily: Send + Sync {
    fn name(&self) -> &str;
    fn write_text(&self, out: &mut Vec<u8>);
}

/// A family's label names sorted as the text format has them, and where each one's value sits
/// among the values in the order the family declares its names.
pub(crate) struct LabelOrder {
    names: Box<[String]>,
    declared_at: Box<[usize]>,
}

impl LabelOrder {
    pub fn new(declared: &[String]) -> Self {
        let mut declared_at: Vec<usize> = (0..declared.len()).collect();
        declared_at.sort_by(|&a, &b| declared[a].cmp(&declared[b]));
        LabelOrder {
            names: declared_at.iter().map(|&i| declared[i].clone()).collect(),
            declared_at: declared_at.into(),
        }
    }

    /// Writes the family `desc` describes, of type `kind`, with `series` (label values in
    /// declared order, and what each series holds) sorted as a registry sorts them, each
    /// through `write`; nothing when there are no series.
    pub fn write_family<'a, V: Copy>(
        &self,
        out: &mut Vec<u8>,
        desc: &Desc,
        kind: &str,
        series: impl ExactSizeIterator<Item = (&'a Labels, V)>,
        write: impl FnMut(&mut Vec<u8>, &SeriesLabels<'_>, V),
    ) {
        if series.len() == 0 {
            return;
        }
        write_header(out, &desc.fq_name, &desc.help, kind);
        self.write_sorted(out, series, write);
    }

    fn write_sorted<'a, V: Copy>(
        &self,
        out: &mut Vec<u8>,
        series: impl ExactSizeIterator<Item = (&'a Labels, V)>,
        mut write: impl FnMut(&mut Vec<u8>, &SeriesLabels<'_>, V),
    ) {
        let k = self.names.len();
        let mut values: Vec<&str> = Vec::with_capacity(series.len() * k);
        let mut held = Vec::with_capacity(series.len());
        let mut declared: Vec<&str> = Vec::with_capacity(k);
        for (labels, v) in series {
            declared.clear();
            declared.extend(labels.iter());
            debug_assert_eq!(declared.len(), k);
            values.extend(self.declared_at.iter().map(|&i| declared[i]));
            held.push(v);
        }
        let of = |i: usize| &values[i * k..(i + 1) * k];
        let mut order: Vec<usize> = (0..held.len()).collect();
        order.sort_unstable_by(|&a, &b| of(a).cmp(of(b)));
        for i in order {
            let labels = SeriesLabels {
                names: &self.names,
                values: of(i),
            };
            write(out, &labels, held[i]);
        }
    }
}

/// The label set of one series: names sorted, and their values.
pub(crate) struct SeriesLabels<'a> {
    names: &'a [String],
    values: &'a [&'a str],
}

impl SeriesLabels<'_> {
    /// A series without labels.
    pub const NONE: SeriesLabels<'static> = SeriesLabels {
        names: &[],
        values: &[],
    };

    /// `{a="x",b="y"` without the closing brace, and `{` alone for no labels: the part the lines
    /// of a histogram series share, written once for all of them (see `histogram.rs`).
    pub(crate) fn write_open(&self, out: &mut Vec<u8>) {
        let start = out.len();
        self.write(out, None);
        match out.len() - start {
            0 => out.push(b'{'),
            _ => {
                out.pop();
            }
        }
    }

    /// `{a="x",b="y"}` with `extra` (such as `le`) last; nothing for no labels.
    fn write(&self, out: &mut Vec<u8>, extra: Option<(&str, &str)>) {
        let pairs = self
            .names
            .iter()
            .map(String::as_str)
            .zip(self.values.iter().copied())
            .chain(extra);
        let mut sep = b'{';
        for (n, v) in pairs {
            out.push(sep);
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b"=\"");
            out.extend_from_slice(escape(v, true).as_bytes());
            out.push(b'"');
            sep = b',';
        }
        if sep == b',' {
            out.push(b'}');
        }
    }
}

/// `# HELP` and `# TYPE` lines as [`TextEncoder`] writes them.
fn write_header(out: &mut Vec<u8>, name: &str, help: &str, kind: &str) {
    if !help.is_empty() {
        out.extend_from_slice(b"# HELP ");
        out.extend_from_slice(name.as_bytes());
        out.push(b' ');
        out.extend_from_slice(escape(help, false).as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"# TYPE ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(kind.as_bytes());
    out.push(b'\n');
}

/// One sample line: `name` and `suffix`, the series' labels and `extra`, and `value`.
pub(crate) fn write_sample(
    out: &mut Vec<u8>,
    name: &str,
    suffix: &str,
    labels: &SeriesLabels<'_>,
    extra: Option<(&str, &str)>,
    value: Value,
) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(suffix.as_bytes());
    labels.write(out, extra);
    out.push(b' ');
    write_value(out, value);
}

/// A sample's value and the line's end.
pub(crate) fn write_value(out: &mut Vec<u8>, value: Value) {
    match value {
        // Written as the f64 it is gathered as: the same digits up to 2^53.
        Value::Int(n) if n <= 1 << 53 => {
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes())
        }
        Value::Int(n) => write!(out, "{}", n as f64).expect("writing to a Vec cannot fail"),
        Value::Float(v) => write!(out, "{v}").expect("writing to a Vec cannot fail"),
    }
    out.push(b'\n');
}

/// A sample's value.
#[derive(Clone, Copy)]
pub(crate) enum Value {
    Int(u64),
    Float(f64),
}

/// Plain counters and gauges of the `prometheus` crate among the call series.
impl TextFamily for prometheus::IntCounter {
    fn name(&self) -> &str {
        &self.desc()[0].fq_name
    }

    fn write_text(&self, out: &mut Vec<u8>) {
        write_single(out, self.desc()[0], "counter", Value::Int(self.get()));
    }
}

impl TextFamily for prometheus::Gauge {
    fn name(&self) -> &str {
        &self.desc()[0].fq_name
    }

    fn write_text(&self, out: &mut Vec<u8>) {
        write_single(out, self.desc()[0], "gauge", Value::Float(self.get()));
    }
}

/// A family of one series without labels.
fn write_single(out: &mut Vec<u8>, d: &Desc, kind: &str, value: Value) {
    write_header(out, &d.fq_name, &d.help, kind);
    write_sample(out, &d.fq_name, "", &SeriesLabels::NONE, None, value);
}

/// One family already in the text format: what a live-status run leaves for every scrape until
/// the next, so that a scrape copies bytes instead of building and encoding protobufs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    name: &'static str,
    text: Box<str>,
}

impl Encoded {
    /// A family as [`TextEncoder`] writes it once a registry gathered it: `labels` are the label
    /// names in sorted order, and `series` their values in that order, sorted by them (a
    /// registry's order), each with its value. `kind` is the `# TYPE` word.
    pub fn new<L, S>(
        name: &'static str,
        help: &str,
        kind: &str,
        labels: &[&str],
        series: impl IntoIterator<Item = (L, f64)>,
    ) -> Self
    where
        L: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut t = format!(
            "# HELP {name} {}\n# TYPE {name} {kind}\n",
            escape(help, false)
        );
        for (values, v) in series {
            t.push_str(name);
            for (i, (l, v)) in labels.iter().zip(values).enumerate() {
                t.push(if i == 0 { '{' } else { ',' });
                t.push_str(l);
                t.push_str("=\"");
                t.push_str(&escape(v.as_ref(), true));
                t.push('"');
            }
            if !labels.is_empty() {
                t.push('}');
            }
            t.push(' ');
            t.push_str(&v.to_string());
            t.push('\n');
        }
        Encoded {
            name,
            text: t.into_boxed_str(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// Escapes as the text format wants: backslash and newline, and in label values the double quote.
fn escape(s: &str, quote: bool) -> std::borrow::Cow<'_, str> {
    let special = |c: char| c == '\\' || c == '\n' || (quote && c == '"');
    if !s.contains(special) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.into()
}

/// `fresh` and `encoded` (each sorted by name, no name in both) as one text sorted by name.
fn merged_text(fresh: &[MetricFamily], encoded: &[&Encoded], out: &mut Vec<u8>) {
    let mut encoded = encoded.iter().peekable();
    for f in fresh {
        while let Some(e) = encoded.next_if(|e| e.name < f.name()) {
            out.extend_from_slice(e.text.as_bytes());
        }
        encode(std::slice::from_ref(f), out);
    }
    for e in encoded {
        out.extend_from_slice(e.text.as_bytes());
    }
}

/// A response body: the prepared families (if any), then `fresh` encoded now; gzip-compressed
/// when `gzip`. `fresh` must be sorted by name; the two parts are each sorted, not merged, which
/// the text format allows as long as no family appears in both.
pub fn body(prepared: Option<&Prepared>, fresh: &[MetricFamily], gzip: bool) -> Vec<u8> {
    body_with(prepared, fresh, &[], gzip)
}

/// [`body`] with families already encoded merged into `fresh` by name.
pub fn body_with(
    prepared: Option<&Prepared>,
    fresh: &[MetricFamily],
    encoded: &[&Encoded],
    gzip: bool,
) -> Vec<u8> {
    if !gzip {
        let mut out = prepared.map(Prepared::text).unwrap_or_default();
        out.reserve(16 * 1024);
        merged_text(fresh, encoded, &mut out);
        return out;
    }
    let mut text = Vec::with_capacity(16 * 1024);
    merged_text(fresh, encoded, &mut text);
    let deflated = prepared.map_or(&[][..], |p| &p.deflated[..]);
    let mut out = Vec::with_capacity(GZIP_HEADER.len() + deflated.len() + text.len() / 4 + 64);
    out.extend_from_slice(&GZIP_HEADER);
    out.extend_from_slice(deflated);
    // A deflate stream of its own: its back-references stay within its own bytes, so it does
    // not matter that the compressor never saw the prepared part.
    let mut out = deflate(out, &text, End::Final);
    // `Crc` cannot be cloned; extending an empty one by the prepared CRC copies it.
    let mut crc = Crc::new();
    if let Some(p) = prepared {
        crc.combine(&p.crc);
    }
    crc.update(&text);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE: the uncompressed length modulo 2^32, as `amount` counts it.
    out.extend_from_slice(&crc.amount().to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts};

    /// Gathered families written as they are.
    impl TextFamily for MetricFamily {
        fn name(&self) -> &str {
            MetricFamily::name(self)
        }

        fn write_text(&self, out: &mut Vec<u8>) {
            encode(std::slice::from_ref(self), out);
        }
    }

    fn prepared(families: &[MetricFamily]) -> Prepared {
        Prepared::new(
            &families
                .iter()
                .map(|f| f as &dyn TextFamily)
                .collect::<Vec<_>>(),
        )
    }

    /// Two registries whose family names interleave (`a_`, `c_` in one, `b_` in the other), with
    /// `n` series in the big one so its text spans many deflate blocks.
    fn registries(n: usize) -> (Registry, Registry) {
        let big = Registry::new();
        let calls =
            IntCounterVec::new(Opts::new("b_calls_total", "Calls."), &["ext", "role"]).unwrap();
        let talk = HistogramVec::new(
            HistogramOpts::new("b_talk_seconds", "Talk.").buckets(vec![5., 60., 600.]),
            &["dir"],
        )
        .unwrap();
        big.register(Box::new(calls.clone())).unwrap();
        big.register(Box::new(talk.clone())).unwrap();
        for i in 0..n {
            calls
                .with_label_values(&[&format!("{}", 1000 + i), "caller"])
                .inc_by(i as u64);
        }
        talk.with_label_values(&["in"]).observe(42.0);
        let small = Registry::new();
        let up = IntGauge::new("c_up", "Up.").unwrap();
        up.set(1);
        small.register(Box::new(up)).unwrap();
        let errs = IntCounterVec::new(Opts::new("a_errors_total", "Errors."), &["reason"]).unwrap();
        errs.with_label_values(&["timeout"]).inc();
        small.register(Box::new(errs)).unwrap();
        (big, small)
    }

    /// The text split into families (each starts at its `# HELP` line), sorted.
    fn family_blocks(text: &[u8]) -> Vec<String> {
        let text = std::str::from_utf8(text).unwrap();
        let mut blocks: Vec<String> = Vec::new();
        for line in text.split_inclusive('\n') {
            match blocks.last_mut() {
                Some(b) if !line.starts_with("# HELP ") => b.push_str(line),
                _ => blocks.push(line.to_string()),
            }
        }
        blocks.sort();
        blocks
    }

    fn gunzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body).read_to_end(&mut out)?;
        Ok(out)
    }

    /// Each case: the prepared part (or none) and the fresh part.
    fn cases() -> Vec<(Option<Prepared>, Vec<MetricFamily>, Vec<MetricFamily>)> {
        let mut v = Vec::new();
        for n in [0, 3, 20_000] {
            let (big, small) = registries(n);
            let all = gather(&[&big, &small]);
            v.push((Some(prepared(&gather(&[&big]))), gather(&[&small]), all));
            // Nothing fresh.
            v.push((
                Some(prepared(&gather(&[&big]))),
                Vec::new(),
                gather(&[&big]),
            ));
            // Nothing prepared.
            v.push((None, gather(&[&big, &small]), gather(&[&big, &small])));
        }
        v
    }

    #[test]
    fn plain_body_holds_exactly_what_the_text_encoder_gives() {
        for (prepared, fresh, all) in cases() {
            let body = body(prepared.as_ref(), &fresh, false);
            let want = TextEncoder::new()
                .encode_to_string(&all)
                .unwrap_or_default();
            assert_eq!(family_blocks(&body), family_blocks(want.as_bytes()));
            // Each part keeps its own order: the prepared text first, as prepared.
            let prefix = prepared.as_ref().map(Prepared::text).unwrap_or_default();
            assert!(body.starts_with(&prefix));
        }
        // The big case really is big: many deflate blocks, past the encoder's 32 KiB buffer.
        let (big, _) = registries(20_000);
        assert!(prepared(&gather(&[&big])).text().len() > 500_000);
    }

    #[test]
    fn gzip_body_decodes_to_the_plain_body() {
        for (prepared, fresh, _) in cases() {
            let plain = body(prepared.as_ref(), &fresh, false);
            let gz = body(prepared.as_ref(), &fresh, true);
            assert_eq!(&gz[..10], &GZIP_HEADER);
            assert!(gz.len() < plain.len() / 2 || plain.len() < 1000);
            assert_eq!(gunzip(&gz).unwrap(), plain);
            // The decoder does check the trailer: a wrong CRC is refused.
            let mut bad = gz.clone();
            let crc_at = bad.len() - 8;
            bad[crc_at] ^= 1;
            assert!(gunzip(&bad).is_err());
        }
    }

    #[test]
    fn gzip_body_decodes_with_the_gzip_tool() {
        for (prepared, fresh, _) in cases() {
            let plain = body(prepared.as_ref(), &fresh, false);
            let gz = body(prepared.as_ref(), &fresh, true);
            let mut child = std::process::Command::new("gzip")
                .arg("-dc")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("gzip (the command-line tool) is needed by this test");
            let mut stdin = child.stdin.take().unwrap();
            // Written from a thread: gzip's output pipe fills while we are still writing.
            let writer = std::thread::spawn(move || stdin.write_all(&gz));
            let out = child.wait_with_output().unwrap();
            writer.join().unwrap().unwrap();
            // gzip also warns (exit status 2) about trailing garbage or a bad length.
            assert!(
                out.status.success() && out.stderr.is_empty(),
                "gzip -d: {:?} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.stdout, plain);
        }
    }

    /// The families a gauge and a counter vector give, gathered, and the same as [`Encoded`]:
    /// labels given out of order, values a label must escape, and values of every shape.
    #[test]
    fn encoded_families_are_what_the_text_encoder_writes() {
        let r = Registry::new();
        let g = prometheus::GaugeVec::new(
            Opts::new(
                "m_gauge",
                "Help with a \\ backslash,\na newline and \"quotes\".",
            ),
            &["zone", "a_name"],
        )
        .unwrap();
        let c = IntCounterVec::new(Opts::new("m_total", "Counted."), &["reason"]).unwrap();
        let lone = prometheus::Gauge::new("m_lone", "No labels.").unwrap();
        r.register(Box::new(g.clone())).unwrap();
        r.register(Box::new(c.clone())).unwrap();
        r.register(Box::new(lone.clone())).unwrap();
        let rows: [(&str, &str, f64); 6] = [
            ("b", "x\"y", 1.0),
            ("a", "back\\slash", 0.5),
            ("a", "new\nline", -3.0),
            ("", "é ü", 1e21),
            ("b", "", 123_456_789.0),
            ("a", "a", 0.1 + 0.2),
        ];
        let mut series: Vec<(Vec<String>, f64)> = Vec::new();
        for (zone, name, v) in rows {
            g.with_label_values(&[zone, name]).set(v);
            // Sorted label names: a_name, zone.
            series.push((vec![name.to_string(), zone.to_string()], v));
        }
        series.sort_by(|a, b| a.0.cmp(&b.0));
        c.with_label_values(&["timeout"]).inc_by(7);
        c.with_label_values(&["connect"]);
        lone.set(42.0);
        let want = TextEncoder::new().encode_to_string(&r.gather()).unwrap();
        let mine = [
            Encoded::new(
                "m_gauge",
                "Help with a \\ backslash,\na newline and \"quotes\".",
                "gauge",
                &["a_name", "zone"],
                series.iter().map(|(k, v)| (&k[..], *v)),
            ),
            Encoded::new("m_lone", "No labels.", "gauge", &[], [([""; 0], 42.0)]),
            Encoded::new(
                "m_total",
                "Counted.",
                "counter",
                &["reason"],
                [(["connect"], 0.0), (["timeout"], 7.0)],
            ),
        ];
        let mut got = Vec::new();
        merged_text(&[], &mine.iter().collect::<Vec<_>>(), &mut got);
        assert_eq!(String::from_utf8(got).unwrap(), want);
    }

    /// Encoded families fall into their place by name among the families encoded per scrape.
    #[test]
    fn encoded_families_merge_by_name() {
        let (big, small) = registries(3);
        let all = gather(&[&big, &small]);
        let want = TextEncoder::new().encode_to_string(&all).unwrap();
        // b_calls_total from the big registry, already encoded; a_ and c_ encoded per scrape.
        let one = |name: &str| -> Vec<MetricFamily> {
            all.iter().filter(|f| f.name() == name).cloned().collect()
        };
        let calls = Encoded {
            name: "b_calls_total",
            text: TextEncoder::new()
                .encode_to_string(&one("b_calls_total"))
                .unwrap()
                .into(),
        };
        let fresh: Vec<MetricFamily> = all
            .iter()
            .filter(|f| f.name() != "b_calls_total")
            .cloned()
            .collect();
        let plain = body_with(None, &fresh, &[&calls], false);
        assert_eq!(String::from_utf8(plain.clone()).unwrap(), want);
        assert_eq!(
            gunzip(&body_with(None, &fresh, &[&calls], true)).unwrap(),
            plain
        );
    }
}
