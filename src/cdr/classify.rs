//! The counting rules (docs/design.md §6): what one `cdr_root` entry counts as.
//!
//! Every rule reduces to a per-leg outcome (answered > voicemail > no_answer > busy > failed) whose best value
//! over the legs is both the call's disposition and, per extension, the callee's outcome; computing it once
//! per leg keeps the two consistent.

use chrono::NaiveDateTime;

use super::groups::{self, GroupVisit, IvrVisit};
use super::labels::{Direction, Disposition, ExtensionPattern, Role};
use super::parse::Entry;

/// One `cdr_root` entry as the metrics see it. Strings borrow from the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call<'a> {
    pub key: u64,
    /// The first leg's start, naive UCM local time.
    pub start: NaiveDateTime,
    pub direction: Direction,
    /// `""` for internal calls.
    pub trunk: &'a str,
    pub disposition: Disposition,
    pub talk_seconds: u64,
    pub wait_seconds: u64,
    /// The first leg's `channel_ext` when it is a local extension; it takes the call's disposition.
    pub caller: Option<&'a str>,
    /// Each local `dstchannel_ext` once, with its best outcome in this call, in first-seen order.
    pub callees: Vec<(&'a str, Disposition)>,
    /// Talk seconds per (extension, role), one element per pair.
    pub extension_talk: Vec<(&'a str, Role, u64)>,
    pub leg_keys: Vec<u64>,
    /// The latest leg end, in seconds after `start`.
    pub ends_after: i64,
    /// A grouped entry (`main_cdr` + `sub_cdr_N`), the kind a UCM may complete with legs it
    /// writes later.
    pub grouped: bool,
    /// The first leg's Asterisk uniqueid: the caller channel's, as the channel lists show it
    /// while the call is in progress.
    pub uniqueid: &'a str,
    /// The queues and ring groups the call passed (docs/design.md §6.1), once each.
    pub groups: Vec<GroupVisit<'a>>,
    /// The IVR menus the call passed, once each.
    pub ivrs: Vec<IvrVisit<'a>>,
}

/// Why an entry the UCM served was not counted: the `reason` of `ucm_cdr_skipped_total`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Skip {
    /// No leg left once ForkCDR duplicates and the `main_cdr` summary are set aside.
    NoLegs,
    /// A leg's start does not parse.
    BadStart,
    /// It started before every window the exporter still tracks: counting it could count it
    /// twice (a UCM that ignored the filter, or history already forgotten).
    TooOld,
}

impl Skip {
    pub const ALL: [Skip; 3] = [Skip::NoLegs, Skip::BadStart, Skip::TooOld];

    pub const fn as_str(self) -> &'static str {
        match self {
            Skip::NoLegs => "no_legs",
            Skip::BadStart => "bad_start",
            Skip::TooOld => "too_old",
        }
    }

    /// Why [`classify`] gave no call for `entry`.
    pub fn of_unclassified(entry: &Entry<'_>) -> Skip {
        if entry.legs().is_empty() {
            Skip::NoLegs
        } else {
            Skip::BadStart
        }
    }
}

/// Applies the counting rules to one entry. `None` when the entry is not a call (no leg left) or when a leg's start
/// does not parse: wait time and the watermark depend on it, and a guessed call would be counted for good.
pub fn classify<'a>(entry: &'a Entry<'a>, ext: &ExtensionPattern) -> Option<Call<'a>> {
    let legs = entry.legs();
    let first = legs.first()?;
    let start = first.start_time()?;

    let mut disposition = Disposition::Failed;
    let mut talk_seconds = 0u64;
    let mut answered_wait = None;
    let mut latest_end = 0i64;
    let mut callees: Vec<(&'a str, Disposition)> = Vec::new();
    let mut extension_talk: Vec<(&'a str, Role, u64)> = Vec::new();
    let mut leg_keys = Vec::with_capacity(legs.len());

    for leg in legs {
        let offset = (leg.start_time()? - start).num_seconds();
        let duration = i64::try_from(leg.duration).unwrap_or(i64::MAX);
        latest_end = latest_end.max(offset.saturating_add(duration));

        let outcome = leg.outcome();
        disposition = disposition.max(outcome);
        if outcome == Disposition::Answered {
            talk_seconds = talk_seconds.saturating_add(leg.billsec);
            answered_wait.get_or_insert_with(|| {
                u64::try_from(offset)
                    .unwrap_or(0)
                    .saturating_add(leg.duration.saturating_sub(leg.billsec))
            });
            for (side, role) in [
                (&leg.channel_ext, Role::Caller),
                (&leg.dstchannel_ext, Role::Callee),
            ] {
                if ext.is_local(side) {
                    add_talk(&mut extension_talk, side, role, leg.billsec);
                }
            }
        }
        if ext.is_local(&leg.dstchannel_ext) {
            let callee: &'a str = &leg.dstchannel_ext;
            match callees.iter_mut().find(|(e, _)| *e == callee) {
                Some((_, best)) => *best = (*best).max(outcome),
                None => callees.push((callee, outcome)),
            }
        }
        leg_keys.push(leg.key());
    }

    let first_src_trunk = first_non_empty(legs.iter().map(|l| &*l.src_trunk_name));
    let first_dst_trunk = first_non_empty(legs.iter().map(|l| &*l.dst_trunk_name));
    let direction = Direction::from_userfield(&first.userfield).unwrap_or(
        match (first_src_trunk, first_dst_trunk) {
            (Some(_), Some(_)) => Direction::External,
            (Some(_), None) => Direction::Inbound,
            (None, Some(_)) => Direction::Outbound,
            (None, None) => Direction::Internal,
        },
    );
    let trunk = match direction {
        Direction::Inbound | Direction::External => first_src_trunk.unwrap_or(""),
        Direction::Outbound => first_dst_trunk.unwrap_or(""),
        Direction::Internal => "",
    };
    let wait_seconds = match answered_wait {
        Some(wait) => wait,
        None => u64::try_from(latest_end).unwrap_or(0),
    };

    let (groups, ivrs) = if groups::names_a_group(legs) {
        groups::visits(legs, start, ext)
    } else {
        (Vec::new(), Vec::new())
    };

    Some(Call {
        key: entry.call_key(),
        start,
        direction,
        trunk,
        disposition,
        talk_seconds,
        wait_seconds,
        // Only a call placed inside the PBX has a caller extension: an inbound trunk whose
        // channel_ext happens to look like an extension number places no call from it.
        caller: (matches!(direction, Direction::Internal | Direction::Outbound)
            && ext.is_local(&first.channel_ext))
        .then_some(&*first.channel_ext),
        callees,
        extension_talk,
        leg_keys,
        ends_after: latest_end,
        grouped: entry.main_cdr().is_some(),
        uniqueid: &first.uniqueid,
        groups,
        ivrs,
    })
}

fn first_non_empty<'a>(mut names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    names.find_map(|n| Some(n.trim_ascii()).filter(|n| !n.is_empty()))
}

fn add_talk<'a>(talk: &mut Vec<(&'a str, Role, u64)>, ext: &'a str, role: Role, seconds: u64) {
    match talk.iter_mut().find(|(e, r, _)| *e == ext && *r == role) {
        Some((_, _, total)) => *total = total.saturating_add(seconds),
        None => talk.push((ext, role, seconds)),
    }
}
