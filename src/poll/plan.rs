//! What one poll reads: a pure function of the poll state, the UCM's local time now, the time
//! since the last sweep and the target's reach, so every rule of the window is tested without a
//! network or a clock.
//!
//! The UCM filters `cdrapi` on call *start*, while a record appears only when its call *ends*.
//! In start windows (the mode every UCM supports) a poll therefore reads from the newest start
//! seen (the watermark) minus a short overlap, and every `sweep_interval` a sweep reads back the
//! whole `max_call_duration`, catching long calls without making every poll cost in proportion
//! to hours of history.
//!
//! Two faster modes read each call about once, when the running UCM has shown it can
//! (docs/design.md §2.4): end windows filter on call end, and channel-bounded windows read the
//! recent starts plus a narrow window around the start of each call the channel lists saw end.
//! Both keep a full sweep as a safety net, every `safety_sweep_interval`.

use std::time::Duration;

use crate::clock::LocalSecs;
use crate::config::Target;
use crate::state::PollState;

/// The first start's baseline reaches this much further back than `max_call_duration`, so a
/// wrong time zone setting (off by up to a day) cannot make history look new.
pub const BASELINE_SLACK: i64 = 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollKind {
    /// First start (no state): everything visible is marked seen and nothing is counted.
    Baseline,
    /// Reads back the whole `max_call_duration` for calls longer than the overlap.
    Sweep,
    /// Reads from the watermark minus the overlap.
    Incremental,
}

impl PollKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            PollKind::Baseline => "baseline",
            PollKind::Sweep => "sweep",
            PollKind::Incremental => "incremental",
        }
    }

    /// Whether this poll reads back the whole `max_call_duration`.
    pub const fn reads_back_fully(self) -> bool {
        !matches!(self, PollKind::Incremental)
    }
}

/// A watermark never moves further ahead of the exporter's own clock (in the UCM's zone) than
/// this: one CDR stamped in the future (a clock corrected by NTP, a bogus row) must not push
/// every later window past the calls it should read.
pub const WATERMARK_SLACK: i64 = 5 * 60;

/// How far back a target's polls reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reach {
    pub max_call_duration: Duration,
    pub sweep_interval: Duration,
    pub overlap: Duration,
    pub poll_interval: Duration,
    /// How long after its end a grouped entry is held back (see [`Plan::settled_before`]).
    pub settle: Duration,
    /// The sweep interval of the fast modes; `None` when the target uses start windows only.
    pub safety_sweep_interval: Option<Duration>,
    /// How late a CDR may appear after its call ended.
    pub end_margin: Duration,
}

impl Reach {
    pub fn of(t: &Target) -> Reach {
        Reach {
            max_call_duration: t.max_call_duration,
            sweep_interval: t.sweep_interval,
            overlap: t.overlap,
            poll_interval: t.poll_interval,
            settle: t.settle,
            safety_sweep_interval: (t.window_mode != crate::config::WindowPreference::Start)
                .then_some(t.safety_sweep_interval),
            end_margin: t.end_margin,
        }
    }

    /// The longest time between two sweeps in any mode this target may use.
    fn longest_sweep_interval(&self) -> Duration {
        self.safety_sweep_interval
            .map_or(self.sweep_interval, |s| s.max(self.sweep_interval))
    }

    /// How far a sweep, and the key memory, reach back from the watermark: a call of
    /// `max_call_duration` that ends just after a sweep is read by the next one, which comes up
    /// to a sweep interval and one poll later, when the watermark has moved on by as much.
    pub fn sweep_back(&self) -> i64 {
        secs(self.max_call_duration)
            .saturating_add(secs(self.longest_sweep_interval()))
            .saturating_add(secs(self.poll_interval))
    }

    pub fn end_margin_secs(&self) -> i64 {
        secs(self.end_margin)
    }
}

/// Which windows a target's polls use (docs/design.md §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowMode {
    /// `startTime` on call start, the fixed overlap and sweeps every `sweep_interval`.
    Start,
    /// `startTime` on call end (`timeFilterType: End`), from the newest end read minus
    /// `end_margin`.
    End,
    /// Start windows bounded by the live channel lists.
    Channels,
}

impl WindowMode {
    pub const ALL: [WindowMode; 3] = [WindowMode::End, WindowMode::Channels, WindowMode::Start];

    pub const fn as_str(self) -> &'static str {
        match self {
            WindowMode::Start => "start",
            WindowMode::End => "end",
            WindowMode::Channels => "channels",
        }
    }
}

/// What the `startTime`/`endTime` of a read filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Start,
    End,
}

/// The reads of one poll, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollPlan {
    pub kind: PollKind,
    pub mode: WindowMode,
    pub reads: Vec<Plan>,
}

/// One read of a poll, in the UCM's naive local seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub kind: PollKind,
    pub filter: Filter,
    /// Ask for records that started (or, with [`Filter::End`], ended) at or after this.
    pub from: LocalSecs,
    /// ... and at or before this.
    pub to: Option<LocalSecs>,
    /// Records that started before this are dropped: outside every window the state tracks, so
    /// counting one could count it twice.
    pub horizon: LocalSecs,
    /// The watermark may not pass this (see [`WATERMARK_SLACK`]).
    pub ceiling: LocalSecs,
    /// Grouped entries that ended after this are held back for a later read: `now - settle`, or
    /// never with no settle time.
    pub settled_before: LocalSecs,
    /// Set on a safety sweep: new legs of calls that ended before this are late, missed by the
    /// fast mode.
    pub late_before: Option<LocalSecs>,
}

impl Plan {
    /// A read that keeps and counts every entry it is given: no horizon, no ceiling, nothing
    /// held back. For feeding pages to `ingest` outside a poll (benchmarks, fuzzing, property
    /// tests), where no window applies.
    pub const WHOLE: Plan = Plan {
        kind: PollKind::Sweep,
        filter: Filter::Start,
        from: i64::MIN,
        to: None,
        horizon: i64::MIN,
        ceiling: i64::MAX,
        settled_before: i64::MAX,
        late_before: None,
    };

    /// Whether a call that ended at `end`, found by this read, should have been read by the
    /// fast mode already (set on a safety sweep only).
    pub fn is_late(&self, end: LocalSecs) -> bool {
        self.late_before.is_some_and(|c| end < c)
    }
}

/// The watermark's ceiling when this host's clock, in the UCM's zone, reads `now`.
pub fn ceiling(now: LocalSecs) -> LocalSecs {
    now.saturating_add(WATERMARK_SLACK)
}

/// Whole seconds of a setting, saturated.
pub fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Plans one poll. `since_sweep` is `None` before the first sweep of this process, which makes
/// the first poll after a start a sweep: the calls of the downtime are read whatever their
/// length.
pub fn plan(
    state: Option<&PollState>,
    now: LocalSecs,
    since_sweep: Option<Duration>,
    reach: &Reach,
) -> Plan {
    let ceiling = ceiling(now);
    // With no settle time nothing is held, not even a call that ends after this host's "now"
    // (the UCM's clock ahead of it, or stepped back since).
    let settled_before = if reach.settle.is_zero() {
        LocalSecs::MAX
    } else {
        now.saturating_sub(secs(reach.settle))
    };
    let Some(s) = state else {
        let from = now
            .saturating_sub(secs(reach.max_call_duration))
            .saturating_sub(BASELINE_SLACK);
        return Plan {
            kind: PollKind::Baseline,
            filter: Filter::Start,
            from,
            to: None,
            horizon: from,
            ceiling,
            settled_before,
            late_before: None,
        };
    };
    let kind = match since_sweep {
        Some(d) if d < reach.sweep_interval => PollKind::Incremental,
        _ => PollKind::Sweep,
    };
    let back = match kind {
        PollKind::Incremental => secs(reach.overlap),
        _ => reach.sweep_back(),
    };
    // A watermark ahead of the UCM's "now" (its clock stepped back, DST fall-back among them,
    // once the zone in use has followed) would leave the calls started since the step below
    // the window until a sweep: the window reaches back from whichever is earlier.
    let newest = s.watermark.unwrap_or(s.baseline_start).min(now);
    let horizon = s.horizon(reach.sweep_back());
    Plan {
        kind,
        filter: Filter::Start,
        from: newest.saturating_sub(back).max(horizon),
        to: None,
        horizon,
        ceiling,
        settled_before,
        late_before: None,
    }
}

/// Settings and states the planning tests of this module and of `windows` share.
#[cfg(test)]
pub(super) mod fixtures {
    use super::*;

    pub const H: i64 = 3600;
    pub const M: i64 = 60;

    /// 4 h of max_call_duration, a 10 min sweep interval and overlap, a 1 min poll, start
    /// windows only.
    pub fn reach() -> Reach {
        Reach {
            max_call_duration: Duration::from_secs(4 * 3600),
            sweep_interval: Duration::from_secs(600),
            overlap: Duration::from_secs(600),
            poll_interval: Duration::from_secs(60),
            settle: Duration::ZERO,
            safety_sweep_interval: None,
            end_margin: Duration::from_secs(30),
        }
    }

    pub fn state(baseline_start: LocalSecs, watermark: Option<LocalSecs>) -> PollState {
        let mut s = PollState::new("https://ucm", baseline_start);
        s.watermark = watermark;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    /// 4 h of max_call_duration, a 10 min sweep interval and a 1 min poll.
    const BACK: i64 = 4 * H + 11 * M;

    #[test]
    fn the_window_of_each_kind_of_poll() {
        let now = 100 * H;
        let min = |m: i64| Some(Duration::from_secs((m * M) as u64));
        let pruned = |b, w, p| PollState {
            pruned_below: Some(p),
            ..state(b, Some(w))
        };
        // (state, since last sweep, expected kind, from, horizon)
        type Case = (
            Option<PollState>,
            Option<Duration>,
            PollKind,
            LocalSecs,
            LocalSecs,
        );
        #[rustfmt::skip]
        let cases: [Case; 8] = [
            // First start: 4 h + a day back from now; nothing older is ever looked at.
            (None, None, PollKind::Baseline, now - 28 * H, now - 28 * H),
            // First poll after a restart is a sweep, reaching max_call_duration back, plus a
            // sweep interval and a poll for a call of max_call_duration that ended meanwhile.
            (Some(state(90 * H, Some(99 * H))), None, PollKind::Sweep, 99 * H - BACK, 99 * H - BACK),
            // Between sweeps: the overlap only.
            (Some(state(90 * H, Some(99 * H))), min(5), PollKind::Incremental, 99 * H - 10 * M, 99 * H - BACK),
            // A sweep is due once sweep_interval has passed.
            (Some(state(90 * H, Some(99 * H))), min(10), PollKind::Sweep, 99 * H - BACK, 99 * H - BACK),
            // Never before the baseline: history stays uncounted.
            (Some(state(98 * H, Some(99 * H))), min(10), PollKind::Sweep, 98 * H, 98 * H),
            (Some(state(99 * H - 5 * M, Some(99 * H))), min(1), PollKind::Incremental, 99 * H - 5 * M, 99 * H - 5 * M),
            // No call seen yet: the baseline's start stands in for the watermark.
            (Some(state(90 * H, None)), min(1), PollKind::Incremental, 90 * H, 90 * H),
            // Never below what was forgotten, whatever max_call_duration is now.
            (Some(pruned(80 * H, 99 * H, 97 * H)), None, PollKind::Sweep, 97 * H, 97 * H),
        ];
        for (i, (s, since, kind, from, horizon)) in cases.into_iter().enumerate() {
            let p = plan(s.as_ref(), now, since, &reach());
            assert_eq!(
                (p.kind, p.from, p.horizon, p.ceiling),
                (kind, from, horizon, now + WATERMARK_SLACK),
                "case {i}"
            );
        }
    }

    #[test]
    fn a_zero_sweep_interval_makes_every_poll_a_sweep() {
        let r = Reach {
            sweep_interval: Duration::ZERO,
            ..reach()
        };
        let s = state(0, Some(10 * H));
        let p = plan(Some(&s), 11 * H, Some(Duration::ZERO), &r);
        assert_eq!(p.kind, PollKind::Sweep);
        assert_eq!(p.from, 10 * H - 4 * H - M);
    }

    #[test]
    fn grouped_calls_are_held_back_only_with_a_settle_time() {
        let s = state(0, Some(10 * H));
        assert_eq!(
            plan(Some(&s), 11 * H, None, &reach()).settled_before,
            LocalSecs::MAX
        );
        let r = Reach {
            settle: Duration::from_secs(180),
            ..reach()
        };
        assert_eq!(
            plan(Some(&s), 11 * H, None, &r).settled_before,
            11 * H - 3 * M
        );
    }

    #[test]
    fn extreme_settings_do_not_overflow() {
        let r = Reach {
            max_call_duration: Duration::MAX,
            sweep_interval: Duration::MAX,
            overlap: Duration::MAX,
            poll_interval: Duration::MAX,
            settle: Duration::MAX,
            safety_sweep_interval: Some(Duration::MAX),
            end_margin: Duration::MAX,
        };
        let p = plan(None, i64::MIN + 5, None, &r);
        assert_eq!(p.from, i64::MIN);
        let s = state(i64::MIN, Some(0));
        assert_eq!(plan(Some(&s), 0, Some(Duration::ZERO), &r).from, -i64::MAX);
        assert_eq!(plan(None, i64::MAX, None, &r).ceiling, i64::MAX);
    }
}
