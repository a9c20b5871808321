//! The log lines of each target's last poll, for `/probe?target=NAME&debug=true`.
//!
//! [`layer`], added to the process's `tracing` subscriber, copies every event emitted inside a
//! target's `poll` span into that target's [`Journal`], which its `TargetStatus` owns. The
//! exporter binds span and journal with [`attach`] when it creates the span, so an event finds
//! its journal through the span it was emitted in, not by target name: two exporters in one
//! process (the tests run many side by side, several with a target called `office`) never write
//! into each other's journals, and no process-wide table needs locking or cleaning up.
//!
//! A journal holds two polls: the one in progress and the one before it. A scrape during a poll
//! thus still sees a whole poll, from its login to its "poll done" or "poll failed", instead of
//! the few lines the running poll has logged so far; the running poll's lines follow it.
//!
//! The journal takes the exporter's own events down to debug whatever `--log.level` says, as
//! blackbox_exporter's debug output does (the poll's figures are a debug line), and other
//! crates' from warn. It adds no field of its own: what it shows is what the log would, and the
//! crate never logs a password, token or cookie.
//!
//! Memory: at most [`LINES_PER_POLL`] lines of at most [`MAX_LINE_BYTES`] per poll, two polls
//! per target, so about 200 KiB per target at worst and a few hundred bytes per poll in
//! practice. Writing a line costs one formatted string and an uncontended lock (only the
//! target's own poller writes); nothing is kept for events outside a `poll` span.

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Span, Subscriber};
use tracing_subscriber::filter::{Filtered, Targets};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Lines kept per poll; older lines of a longer poll are dropped and counted. A normal poll logs
/// a handful.
pub const LINES_PER_POLL: usize = 100;
/// A longer line (an error quoting a large answer) is cut here.
pub const MAX_LINE_BYTES: usize = 1024;

/// The name of the per-target span whose events are journaled (see `exporter`).
const POLL_SPAN: &str = "poll";

/// The lines of one poll.
#[derive(Debug, Default, Clone, PartialEq)]
struct PollLog {
    lines: VecDeque<String>,
    /// Lines pushed out by later ones.
    dropped: usize,
    /// The poll's outcome is recorded; lines after that (its "poll failed") still belong to it.
    ended: bool,
}

impl PollLog {
    fn push(&mut self, line: String) {
        if self.lines.len() == LINES_PER_POLL {
            self.lines.pop_front();
            self.dropped += 1;
        }
        self.lines.push_back(line);
    }

    fn render(&self, out: &mut String) {
        if self.dropped > 0 {
            let _ = writeln!(out, "({} earlier lines dropped)", self.dropped);
        }
        if self.lines.is_empty() {
            out.push_str("(no lines)\n");
        }
        for l in &self.lines {
            out.push_str(l);
            out.push('\n');
        }
    }
}

#[derive(Debug, Default)]
struct Polls {
    current: PollLog,
    previous: Option<PollLog>,
    started: u64,
}

/// The log lines of a target's last polls.
#[derive(Debug, Default)]
pub struct Journal {
    polls: Mutex<Polls>,
}

impl Journal {
    /// Starts a new poll's lines; the current poll's become the previous poll's.
    pub fn poll_started(&self) {
        let mut p = self.lock();
        let current = std::mem::take(&mut p.current);
        // Lines before the first poll are start-up, not a poll.
        if p.started > 0 {
            p.previous = Some(current);
        }
        p.started += 1;
    }

    /// The current poll's outcome is recorded: from now on it is the one to show.
    pub fn poll_ended(&self) {
        self.lock().current.ended = true;
    }

    pub fn push(&self, line: String) {
        self.lock().current.push(line);
    }

    /// The last finished poll's lines, then those of the poll in progress if there is one.
    pub fn render(&self, out: &mut String) {
        let p = self.lock();
        if p.started == 0 {
            out.push_str("No poll has started yet.\n");
        } else if p.current.ended {
            out.push_str("Log of the last poll:\n");
            p.current.render(out);
        } else {
            match &p.previous {
                Some(prev) => {
                    out.push_str("Log of the last finished poll:\n");
                    prev.render(out);
                    out.push_str("\nLog of the poll in progress, so far:\n");
                }
                None => out.push_str("The first poll is in progress; its log so far:\n"),
            }
            p.current.render(out);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Polls> {
        // A panic while holding the lock leaves whole lines behind.
        self.polls.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What [`attach`] leaves on a `poll` span. Weak: a span outliving its exporter keeps nothing.
struct Attached(Weak<Journal>);

/// Sends the events of `span`, a target's `poll` span, to that target's journal.
///
/// Found through the subscriber's span registry; without a `tracing_subscriber` registry as the
/// subscriber (none installed, as in a unit test), nothing is journaled.
pub fn attach(span: &Span, journal: &Arc<Journal>) {
    span.with_subscriber(|(id, dispatch)| {
        if let Some(span) = dispatch
            .downcast_ref::<tracing_subscriber::Registry>()
            .and_then(|r| r.span(id))
        {
            span.extensions_mut()
                .replace(Attached(Arc::downgrade(journal)));
        }
    });
}

/// The [`Layer`] that fills the journals; see the module documentation for what it takes.
pub fn layer<S>() -> Filtered<JournalLayer, Targets, S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    JournalLayer.with_filter(
        Targets::new()
            .with_target("ucm_exporter", Level::DEBUG)
            .with_default(Level::WARN),
    )
}

pub struct JournalLayer;

impl<S> Layer<S> for JournalLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        let journal = scope
            .filter(|s| s.name() == POLL_SPAN)
            .find_map(|s| s.extensions().get::<Attached>().map(|a| a.0.clone()));
        if let Some(journal) = journal.and_then(|j| j.upgrade()) {
            journal.push(format_line(event));
        }
    }
}

/// One event as one line: time (UTC, the host's clock, as in the log), level, target, message
/// and fields.
fn format_line(event: &Event<'_>) -> String {
    let meta = event.metadata();
    let mut line = String::with_capacity(160);
    let _ = write!(
        line,
        "{} {:>5} {}: ",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        meta.level(),
        meta.target()
    );
    let mut fields = String::new();
    event.record(&mut LineVisitor {
        message: &mut line,
        fields: &mut fields,
    });
    line.push_str(&fields);
    if line.contains(['\n', '\r']) {
        line = line.replace('\n', "\\n").replace('\r', "\\r");
    }
    if line.len() > MAX_LINE_BYTES {
        let mut cut = MAX_LINE_BYTES;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    line
}

struct LineVisitor<'a> {
    message: &'a mut String,
    fields: &'a mut String,
}

impl Visit for LineVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            // Where a `log` record came from, added by the log bridge.
            n if n.starts_with("log.") => {}
            n => {
                let _ = write!(self.fields, " {n}={value:?}");
            }
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    fn rendered(j: &Journal) -> String {
        let mut s = String::new();
        j.render(&mut s);
        s
    }

    #[test]
    fn a_poll_keeps_its_last_lines_and_counts_the_dropped() {
        let j = Journal::default();
        j.poll_started();
        for i in 0..LINES_PER_POLL + 5 {
            j.push(format!("line {i}"));
        }
        j.poll_ended();
        let p = j.lock();
        assert_eq!(p.current.lines.len(), LINES_PER_POLL);
        assert_eq!(p.current.dropped, 5);
        assert_eq!(p.current.lines[0], "line 5");
        drop(p);
        let text = rendered(&j);
        assert!(text.starts_with("Log of the last poll:\n(5 earlier lines dropped)\nline 5\n"));
        assert!(text.ends_with(&format!("line {}\n", LINES_PER_POLL + 4)));
        // A new poll starts afresh; the journal never holds more than two polls.
        j.poll_started();
        j.push("next".into());
        j.poll_started();
        let p = j.lock();
        assert_eq!(p.previous.as_ref().unwrap().lines, ["next"]);
        assert!(p.current.lines.is_empty());
    }

    #[test]
    fn a_scrape_during_a_poll_sees_the_whole_previous_poll() {
        let j = Journal::default();
        assert_eq!(rendered(&j), "No poll has started yet.\n");
        j.push("start-up, before any poll".into());
        j.poll_started();
        j.push("logged in".into());
        assert_eq!(
            rendered(&j),
            "The first poll is in progress; its log so far:\nlogged in\n"
        );
        j.poll_ended();
        // Logged after the outcome was recorded, still the same poll's.
        j.push("poll failed".into());
        assert_eq!(
            rendered(&j),
            "Log of the last poll:\nlogged in\npoll failed\n"
        );
        j.poll_started();
        j.push("fetching".into());
        assert_eq!(
            rendered(&j),
            "Log of the last finished poll:\nlogged in\npoll failed\n\n\
             Log of the poll in progress, so far:\nfetching\n"
        );
        j.poll_ended();
        assert_eq!(rendered(&j), "Log of the last poll:\nfetching\n");
        j.poll_started();
        assert_eq!(
            rendered(&j),
            "Log of the last finished poll:\nfetching\n\n\
             Log of the poll in progress, so far:\n(no lines)\n"
        );
    }

    #[test]
    fn events_reach_the_journal_of_their_own_poll_span_only() {
        let subscriber = tracing_subscriber::registry().with(layer());
        let (a, b, twin) = (
            Arc::new(Journal::default()),
            Arc::new(Journal::default()),
            Arc::new(Journal::default()),
        );
        tracing::subscriber::with_default(subscriber, || {
            let span_a = tracing::info_span!("poll", ucm = "office");
            let span_b = tracing::info_span!("poll", ucm = "branch");
            // Another exporter's target of the same name: a journal of its own.
            let span_twin = tracing::info_span!("poll", ucm = "office");
            attach(&span_a, &a);
            attach(&span_b, &b);
            attach(&span_twin, &twin);
            for j in [&a, &b, &twin] {
                j.poll_started();
            }
            tracing::info!("outside any poll");
            span_a.in_scope(|| {
                let _inner = tracing::info_span!("page").entered();
                tracing::debug!(pages = 3, kind = "sweep", "poll done\nfor real");
                tracing::trace!("too fine to keep");
                tracing::info!(target: "hyper::proto", "another crate's chatter");
                tracing::warn!(target: "rustls::conn", "another crate's warning");
            });
            span_b.in_scope(|| tracing::warn!(reason = %"http", "poll failed"));
            let huge = "x".repeat(3 * MAX_LINE_BYTES);
            span_twin.in_scope(|| tracing::error!("{huge}"));
            let unattached = tracing::info_span!("poll", ucm = "office");
            unattached.in_scope(|| tracing::warn!("nobody's"));
        });
        let lines = |j: &Journal| Vec::from(j.lock().current.lines.clone());
        let la = lines(&a);
        assert_eq!(la.len(), 2, "{la:?}");
        assert!(
            la[0].ends_with(
                " DEBUG ucm_exporter::journal::tests: poll done\\nfor real pages=3 kind=\"sweep\""
            ),
            "{}",
            la[0]
        );
        assert!(la[1].ends_with(" WARN rustls::conn: another crate's warning"));
        let lb = lines(&b);
        assert_eq!(lb.len(), 1);
        assert!(lb[0].ends_with("  WARN ucm_exporter::journal::tests: poll failed reason=http"));
        let lt = lines(&twin);
        assert_eq!(lt.len(), 1);
        assert!(lt[0].len() <= MAX_LINE_BYTES + '…'.len_utf8());
        assert!(lt[0].ends_with("xxx…"));
    }

    #[test]
    fn a_dropped_journal_is_not_kept_alive_by_its_span() {
        let subscriber = tracing_subscriber::registry().with(layer());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("poll", ucm = "office");
            let j = Arc::new(Journal::default());
            attach(&span, &j);
            let weak = Arc::downgrade(&j);
            drop(j);
            assert!(weak.upgrade().is_none());
            span.in_scope(|| tracing::warn!("after the exporter stopped"));
        });
    }
}
