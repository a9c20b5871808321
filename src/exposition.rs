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

use std::io::Write;

use bytes::Bytes;
use flate2::write::DeflateEncoder;
use flate2::{Compression, Crc};
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, Registry, TextEncoder};

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
    pub fn new(families: &[MetricFamily]) -> Self {
        let mut text = Vec::with_capacity(64 * 1024);
        encode(families, &mut text);
        let mut enc = DeflateEncoder::new(Vec::with_capacity(text.len() / 8), Compression::fast());
        enc.write_all(&text).expect("writing to a Vec cannot fail");
        // `flush` on a deflate writer is a sync flush: it ends the block and pads to a byte
        // boundary without marking the stream finished.
        enc.flush().expect("writing to a Vec cannot fail");
        // Taking the output leaves the encoder an empty Vec; the final block it writes there
        // when dropped is thrown away with it.
        let mut deflated = std::mem::take(enc.get_mut());
        // Kept for as long as nothing changes: no growth slack.
        deflated.shrink_to_fit();
        let mut crc = Crc::new();
        crc.update(&text);
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
    let mut enc = DeflateEncoder::new(out, Compression::fast());
    enc.write_all(&text).expect("writing to a Vec cannot fail");
    let mut out = enc.finish().expect("writing to a Vec cannot fail");
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
            v.push((
                Some(Prepared::new(&gather(&[&big]))),
                gather(&[&small]),
                all,
            ));
            // Nothing fresh.
            v.push((
                Some(Prepared::new(&gather(&[&big]))),
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
        assert!(Prepared::new(&gather(&[&big])).text().len() > 500_000);
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
