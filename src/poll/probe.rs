//! The end-window probe: whether this UCM filters `cdrapi` on call end when asked.
//!
//! Nothing documents it reliably (docs/ucm-api.md §5.1): a UCM may honour `timeFilterType`,
//! only the vendor guide's spelling `tineFilterType`, neither (and filter on start as usual), or
//! answer an empty list for a parameter it does not know. So the exporter asks for a window
//! whose answer it already knows from calls it has read, and uses end windows only when the
//! answer is exactly right.

use foldhash::HashSet;

use super::ingest::Span;
use crate::cdr::{self, ExtensionPattern};
use crate::clock::Zone;
use crate::clock::{as_utc, LocalSecs};
use crate::ucm::cdrapi::{decode_page, window_params};
use crate::ucm::{is_refusal, Refusal, Session};

/// The spellings of the filter-type parameter, in the order they are tried.
pub const PARAMS: [&str; 2] = ["timeFilterType", "tineFilterType"];

/// A call must be at least this long to tell an end filter from a start filter.
pub const MIN_SPAN: i64 = 10;
/// The question's window reaches this far on either side of the pivot call's end.
pub const HALF_WINDOW: i64 = 3;
/// Seconds a call's end may differ from the one the UCM filters by and still be judged inside.
const SLOP: i64 = 2;
/// Seconds outside the window a call must end to be judged outside.
const EDGE: i64 = 5;

/// What the end probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndProbe {
    /// The UCM filters on call end when given this parameter.
    Honoured(&'static str),
    /// It does not: wrong answers, or the parameter refused. Why.
    NotHonoured(String),
    /// No answer to judge (the UCM down, slow, rate limiting): a passing fault must not cost
    /// the end windows for hours, so the probe is asked again at the next poll. Why.
    Unanswered(String),
}

/// A window of call ends and what must and must not come back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub from: LocalSecs,
    pub to: LocalSecs,
    /// Calls that started before `from` and ended inside: an end filter returns them, a start
    /// filter does not.
    pub must: Vec<u64>,
    /// Calls that ended before `from`, or started inside and ended after `to`: an end filter
    /// leaves them out.
    pub must_not: Vec<u64>,
}

/// Picks the question from calls read, all of them ended before `settled` (so no CDR of the
/// window can still be missing): around the end of the latest such call of at least
/// [`MIN_SPAN`] seconds. `None` when no read call qualifies yet.
pub fn question(spans: &[Span], settled: LocalSecs) -> Option<Question> {
    let pivot = spans
        .iter()
        .filter(|s| s.end < settled && s.end - s.start >= MIN_SPAN)
        .max_by_key(|s| (s.end, s.key))?;
    let (from, to) = (pivot.end - HALF_WINDOW, pivot.end + HALF_WINDOW);
    let mut must = Vec::new();
    let mut must_not = Vec::new();
    // Only calls clear of the window's edges are judged: which end a UCM filters a grouped
    // entry by (its last leg's, a ForkCDR copy's a second later) is not known to the second.
    for s in spans {
        // A failed call may be written without an end, which an end filter on the written
        // column never returns: asked about apart ([`failed_question`]).
        if s.start < from - SLOP && (from + SLOP..=to - SLOP).contains(&s.end) && !s.failed {
            must.push(s.key);
        } else if s.end < from - EDGE || ((from..=to).contains(&s.start) && s.end > to + EDGE) {
            must_not.push(s.key);
        }
    }
    must.sort_unstable();
    must.dedup();
    must_not.sort_unstable();
    must_not.dedup();
    Some(Question {
        from,
        to,
        must,
        must_not,
    })
}

/// The question of whether an end window returns the calls that failed (which a UCM may write
/// without an `end`): around the computed end (start + duration) of the latest such call read
/// that ended before `settled`, the failed calls that ended clear of the window's edges must
/// come back. Others are not judged: the main question did. `None` while no failed call was
/// read.
pub fn failed_question(spans: &[Span], settled: LocalSecs) -> Option<Question> {
    let pivot = spans
        .iter()
        .filter(|s| s.failed && s.end < settled)
        .max_by_key(|s| (s.end, s.key))?;
    let (from, to) = (pivot.end - HALF_WINDOW, pivot.end + HALF_WINDOW);
    let mut must: Vec<u64> = spans
        .iter()
        .filter(|s| s.failed && (from + SLOP..=to - SLOP).contains(&s.end))
        .map(|s| s.key)
        .collect();
    must.sort_unstable();
    must.dedup();
    Some(Question {
        from,
        to,
        must,
        must_not: Vec::new(),
    })
}

/// Judges an answer (the keys of the entries it listed): `Err` says what was wrong.
pub fn judge(q: &Question, answer: &HashSet<u64>) -> Result<(), String> {
    let missing = q.must.iter().filter(|k| !answer.contains(k)).count();
    let extra = q.must_not.iter().filter(|k| answer.contains(k)).count();
    if missing == 0 && extra == 0 {
        return Ok(());
    }
    if answer.is_empty() {
        return Err("the answer was an empty list".to_string());
    }
    let mut why = Vec::new();
    if missing > 0 {
        why.push(format!(
            "{missing} of {} calls that ended inside the window were missing",
            q.must.len()
        ));
    }
    if extra > 0 {
        why.push(format!(
            "{extra} calls that did not end inside the window came back"
        ));
    }
    Err(why.join(", "))
}

/// Asks the question with each spelling of the parameter until one is answered right.
/// `None` when there is no question yet; `Err` with what was wrong with each answer. `utc`:
/// the UCM reads window times as UTC in this zone.
pub async fn probe_end(
    session: &Session,
    q: Option<Question>,
    utc: Option<Zone>,
    ext: &ExtensionPattern,
) -> Option<EndProbe> {
    let q = q?;
    let sent = |t| utc.map_or(t, |tz| as_utc(tz, t));
    let mut why = Vec::new();
    let mut unanswered = false;
    for param in PARAMS {
        let params = window_params(sent(q.from), Some(sent(q.to)), Some(param), 0, 1000);
        let answer = session
            .call("cdrapi", params, |body| keys_of(body, ext))
            .await;
        match answer {
            Ok(keys) => match judge(&q, &keys) {
                Ok(()) => return Some(EndProbe::Honoured(param)),
                Err(w) => why.push(format!("{param}: {w}")),
            },
            Err(e) => {
                unanswered |= !is_refusal(&e);
                why.push(format!("{param}: {e}"));
            }
        }
    }
    let why = why.join("; ");
    Some(if unanswered {
        EndProbe::Unanswered(why)
    } else {
        EndProbe::NotHonoured(why)
    })
}

/// Whether an end window, with the spelling the UCM honours, returns the failed calls of `q`
/// ([`failed_question`]); `None` when the UCM gave no answer to judge.
pub async fn probe_failed(
    session: &Session,
    q: &Question,
    param: &'static str,
    utc: Option<Zone>,
    ext: &ExtensionPattern,
) -> Option<bool> {
    let sent = |t| utc.map_or(t, |tz| as_utc(tz, t));
    let params = window_params(sent(q.from), Some(sent(q.to)), Some(param), 0, 1000);
    match session
        .call("cdrapi", params, |body| keys_of(body, ext))
        .await
    {
        Ok(keys) => Some(judge(q, &keys).is_ok()),
        Err(e) => {
            tracing::debug!("the end probe's question about failed calls got no answer: {e}");
            None
        }
    }
}

/// The call keys of a cdrapi answer.
fn keys_of(body: &bytes::Bytes, ext: &ExtensionPattern) -> Result<HashSet<u64>, Refusal> {
    let entries = decode_page(body)?;
    Ok(entries
        .iter()
        .filter_map(|e| cdr::classify(e, ext).map(|c| c.key))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(key: u64, start: LocalSecs, end: LocalSecs) -> Span {
        Span {
            key,
            start,
            end,
            failed: false,
        }
    }

    #[test]
    fn the_question_discriminates_end_from_start() {
        let spans = [
            span(1, 0, 100),     // ended long before
            span(2, 500, 990),   // the pivot: latest end before settled, long enough
            span(3, 989, 2000),  // started inside, ends after: a start filter returns it
            span(4, 995, 996),   // too short to be the pivot, but ends inside and started before
            span(5, 1500, 1990), // ends after settled: not the pivot
        ];
        let q = question(&spans, 1000).unwrap();
        assert_eq!((q.from, q.to), (987, 993));
        assert_eq!(q.must, vec![2]);
        assert_eq!(q.must_not, vec![1, 3]);
        // Within a couple of seconds of an edge a call is not judged either way.
        let edge = [span(2, 500, 990), span(6, 100, 987), span(7, 100, 984)];
        let q2 = question(&edge, 1000).unwrap();
        assert_eq!((q2.must, q2.must_not), (vec![2], vec![]));
        let set = |k: &[u64]| k.iter().copied().collect::<HashSet<u64>>();
        assert_eq!(
            judge(&q, &set(&[2, 4, 99])),
            Ok(()),
            "unknown calls are not judged"
        );
        assert!(judge(&q, &set(&[])).unwrap_err().contains("empty"));
        assert!(judge(&q, &set(&[3])).unwrap_err().contains("missing"));
        assert!(judge(&q, &set(&[1, 2])).unwrap_err().contains("came back"));
    }

    #[test]
    fn no_question_without_a_settled_call_long_enough() {
        assert_eq!(question(&[], 100), None);
        assert_eq!(question(&[span(1, 0, 5)], 100), None);
        assert_eq!(question(&[span(1, 0, 500)], 100), None);
    }
}
