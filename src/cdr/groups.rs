//! Queue, ring group and IVR outcomes of a call (docs/design.md §6.1).
//!
//! A leg's `action_type` names the feature that produced it (`QUEUE[6500]`, `RINGGROUP[6400]`,
//! `IVR[7000]`). The CDR has no "entered the queue" or "left the queue" record, so a visit is
//! reconstructed from the time span of the legs that name the group, and what happened next
//! from the legs that start after it. The rules only look at the legs; they never change how the
//! call itself is counted.

use chrono::NaiveDateTime;

use super::labels::{Disposition, ExtensionPattern};
use super::parse::Leg;

/// Longest group number taken as a label value: numbers are short, and a garbled
/// `action_type` must not become a long label.
const MAX_GROUP_LEN: usize = 32;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum GroupKind {
    Queue,
    RingGroup,
    Ivr,
}

impl GroupKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            GroupKind::Queue => "queue",
            GroupKind::RingGroup => "ringgroup",
            GroupKind::Ivr => "ivr",
        }
    }

    /// The kind a label value names.
    pub fn parse(label: &str) -> Option<GroupKind> {
        [GroupKind::Queue, GroupKind::RingGroup, GroupKind::Ivr]
            .into_iter()
            .find(|k| k.as_str() == label)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum GroupOutcome {
    Answered,
    Voicemail,
    Timeout,
    Abandoned,
}

impl GroupOutcome {
    pub const ALL: [GroupOutcome; 4] = [
        GroupOutcome::Answered,
        GroupOutcome::Voicemail,
        GroupOutcome::Timeout,
        GroupOutcome::Abandoned,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            GroupOutcome::Answered => "answered",
            GroupOutcome::Voicemail => "voicemail",
            GroupOutcome::Timeout => "timeout",
            GroupOutcome::Abandoned => "abandoned",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum MemberOutcome {
    Missed,
    Answered,
}

impl MemberOutcome {
    pub const ALL: [MemberOutcome; 2] = [MemberOutcome::Answered, MemberOutcome::Missed];

    pub const fn as_str(self) -> &'static str {
        match self {
            MemberOutcome::Answered => "answered",
            MemberOutcome::Missed => "missed",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum IvrOutcome {
    Routed,
    Hangup,
    Timeout,
}

impl IvrOutcome {
    pub const ALL: [IvrOutcome; 3] = [IvrOutcome::Routed, IvrOutcome::Hangup, IvrOutcome::Timeout];

    pub const fn as_str(self) -> &'static str {
        match self {
            IvrOutcome::Routed => "routed",
            IvrOutcome::Hangup => "hangup",
            IvrOutcome::Timeout => "timeout",
        }
    }
}

/// A call's passage through one queue or ring group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupVisit<'a> {
    /// [`GroupKind::Queue`] or [`GroupKind::RingGroup`].
    pub kind: GroupKind,
    pub group: &'a str,
    pub outcome: GroupOutcome,
    pub wait_seconds: u64,
    /// Each local extension the group rang, once, in first-seen order.
    pub members: Vec<(&'a str, MemberOutcome)>,
}

/// A call's passage through one IVR menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IvrVisit<'a> {
    pub ivr: &'a str,
    pub outcome: IvrOutcome,
}

/// The group an `action_type` names: `QUEUE[n]`, `RINGGROUP[n]` or `IVR[n]`, any case, blanks
/// around the parts allowed.
pub fn named_group(action_type: &str) -> Option<(GroupKind, &str)> {
    let (word, rest) = action_type.trim_ascii().split_once('[')?;
    let number = rest.strip_suffix(']')?.trim_ascii();
    if number.is_empty() || number.len() > MAX_GROUP_LEN || number.contains(['[', ']']) {
        return None;
    }
    let word = word.trim_ascii();
    let kind = if word.eq_ignore_ascii_case("QUEUE") {
        GroupKind::Queue
    } else if word.eq_ignore_ascii_case("RINGGROUP") {
        GroupKind::RingGroup
    } else if word.eq_ignore_ascii_case("IVR") {
        GroupKind::Ivr
    } else {
        return None;
    };
    Some((kind, number))
}

/// Cheap pre-check, run for every call: most calls pass no group, and only then is it worth
/// parsing the legs' times a second time.
pub fn names_a_group(legs: &[Leg<'_>]) -> bool {
    legs.iter()
        .any(|l| l.action_type.trim_ascii_end().ends_with(']'))
}

/// A leg some firmware writes for a group member without naming the group: a plain dial.
fn is_plain_dial(leg: &Leg<'_>) -> bool {
    let a = leg.action_type.trim_ascii();
    a.is_empty() || a.eq_ignore_ascii_case("DIAL")
}

/// The queue, ring group and IVR visits of a call whose legs all have a parsable start (the
/// caller, `classify`, has checked). `start` is the first leg's.
pub fn visits<'a>(
    legs: &'a [Leg<'a>],
    start: NaiveDateTime,
    ext: &ExtensionPattern,
) -> (Vec<GroupVisit<'a>>, Vec<IvrVisit<'a>>) {
    let named: Vec<Option<(GroupKind, &'a str)>> =
        legs.iter().map(|l| named_group(&l.action_type)).collect();
    let mut groups: Vec<(GroupKind, &'a str)> = Vec::new();
    for g in named.iter().flatten() {
        if !groups.contains(g) {
            groups.push(*g);
        }
    }
    if groups.is_empty() {
        return (Vec::new(), Vec::new());
    }
    // (start, end) of each leg in seconds after the call's start.
    let spans: Vec<(i64, i64)> = legs
        .iter()
        .map(|l| {
            let s = l.start_time().map_or(0, |t| (t - start).num_seconds());
            (
                s,
                s.saturating_add(i64::try_from(l.duration).unwrap_or(i64::MAX)),
            )
        })
        .collect();

    let (mut visits, mut ivrs) = (Vec::new(), Vec::new());
    for (kind, group) in groups {
        let in_visit: Vec<bool> = legs
            .iter()
            .zip(&named)
            .map(|(l, n)| {
                *n == Some((kind, group))
                    || (kind != GroupKind::Ivr
                        && n.is_none()
                        && is_plain_dial(l)
                        && l.dst.trim_ascii() == group)
            })
            .collect();
        let of_visit = || spans.iter().zip(&in_visit).filter(|(_, v)| **v);
        let entry = of_visit().map(|(s, _)| s.0).min().unwrap_or(0);
        let leave = of_visit().map(|(s, _)| s.1).max().unwrap_or(entry);
        let others: Vec<(&Leg<'a>, (i64, i64))> = legs
            .iter()
            .zip(&spans)
            .zip(&in_visit)
            .filter(|(_, v)| !**v)
            .map(|((l, s), _)| (l, *s))
            .collect();

        if kind == GroupKind::Ivr {
            let outcome = if others.iter().any(|(_, s)| s.0 >= entry) {
                IvrOutcome::Routed
            } else if ended_by_menu(legs, &spans, &in_visit) {
                IvrOutcome::Timeout
            } else {
                IvrOutcome::Hangup
            };
            ivrs.push(IvrVisit {
                ivr: group,
                outcome,
            });
            continue;
        }

        let answering = legs.iter().zip(&spans).zip(&in_visit).find(|((l, s), v)| {
            l.outcome() == Disposition::Answered && (**v || (s.0 >= entry && s.0 < leave))
        });
        let (outcome, wait) = if let Some(((l, s), _)) = answering {
            let ring = l.duration.saturating_sub(l.billsec);
            let before = u64::try_from(s.0 - entry).unwrap_or(0);
            (GroupOutcome::Answered, before.saturating_add(ring))
        } else {
            let waited = u64::try_from(leave - entry).unwrap_or(0);
            let outcome = if others
                .iter()
                .any(|(l, s)| l.outcome() == Disposition::Voicemail && s.0 >= entry)
            {
                GroupOutcome::Voicemail
            } else if others.iter().any(|(_, s)| s.0 >= leave) {
                GroupOutcome::Timeout
            } else {
                GroupOutcome::Abandoned
            };
            (outcome, waited)
        };

        let mut members: Vec<(&'a str, MemberOutcome)> = Vec::new();
        for (l, _) in legs.iter().zip(&in_visit).filter(|(_, v)| **v) {
            let member: &'a str = &l.dstchannel_ext;
            if l.is_voicemail() || !ext.is_local(member) {
                continue;
            }
            let o = if l.outcome() == Disposition::Answered {
                MemberOutcome::Answered
            } else {
                MemberOutcome::Missed
            };
            match members.iter_mut().find(|(m, _)| *m == member) {
                Some((_, best)) => *best = (*best).max(o),
                None => members.push((member, o)),
            }
        }
        visits.push(GroupVisit {
            kind,
            group,
            outcome,
            wait_seconds: wait,
            members,
        });
    }
    (visits, ivrs)
}

/// Whether the menu itself ended the call: its last leg's application is the hang-up, goodbye
/// prompt or congestion tone an IVR plays once its prompts have timed out, where a caller who
/// hangs up leaves it waiting for digits (BackGround, WaitExten, Read).
fn ended_by_menu(legs: &[Leg<'_>], spans: &[(i64, i64)], in_visit: &[bool]) -> bool {
    let mut last: Option<(&Leg<'_>, i64)> = None;
    for ((l, s), v) in legs.iter().zip(spans).zip(in_visit) {
        if *v && last.is_none_or(|(_, end)| s.1 > end) {
            last = Some((l, s.1));
        }
    }
    last.is_some_and(|(l, _)| {
        let app = l.lastapp.trim_ascii();
        ["Hangup", "Playback", "Congestion"]
            .iter()
            .any(|a| app.eq_ignore_ascii_case(a))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_types_name_groups_leniently() {
        assert_eq!(named_group("QUEUE[6500]"), Some((GroupKind::Queue, "6500")));
        assert_eq!(
            named_group(" ringgroup [ 6400 ] "),
            Some((GroupKind::RingGroup, "6400"))
        );
        assert_eq!(named_group("IVR[7000]"), Some((GroupKind::Ivr, "7000")));
        for not in [
            "DIAL",
            "VM",
            "",
            "QUEUE[]",
            "QUEUE[6500",
            "QUEUE[6500]x",
            "FOLLOWME[2000]",
            "QUEUE[[1]]",
        ] {
            assert_eq!(named_group(not), None, "{not:?}");
        }
        let long = format!("QUEUE[{}]", "9".repeat(MAX_GROUP_LEN + 1));
        assert_eq!(named_group(&long), None);
    }
}
