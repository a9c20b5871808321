//! The channels of a call while it is under way, for `listBridgedChannels` and
//! `listUnBridgedChannels` (docs/ucm-api.md §7.6), and its time in a queue, for the queue
//! actions (§7.7).
//!
//! They are worked out once, when a call is stored, as time spans with their rows' fields, so
//! that answering a list is a range lookup. The CDR legs are the only source: a channel the CDR
//! does not name (an unanswered Dial leg without `dstchannel`) has no row.

use chrono_tz::Tz;
use serde_json::{json, Value};

use super::clock::{fmt_secs, unix_of, LocalSecs};
use super::traffic::{Leg, EXTENSIONS};

/// What is at the far end of a channel, read from its name (`PJSIP/<endpoint>-<sequence>`), as
/// the PBX derives a phone's or trunk's state from the channels open on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// An extension of the simulated office.
    Phone(u32),
    /// `trunk_<index>`.
    Trunk(u32),
    Other,
}

pub fn endpoint(channel: &str) -> Endpoint {
    let name = channel.split_once('/').map_or(channel, |(_, n)| n);
    let name = name.rsplit_once('-').map_or(name, |(n, _)| n);
    if let Some(i) = name.strip_prefix("trunk_").and_then(|i| i.parse().ok()) {
        return Endpoint::Trunk(i);
    }
    match name.parse::<u32>() {
        Ok(e) if EXTENSIONS.contains(&e) => Endpoint::Phone(e),
        _ => Endpoint::Other,
    }
}

/// A two-party connection, live in `[from, to)`.
#[derive(Debug, Clone)]
pub struct Bridge {
    pub from: LocalSecs,
    pub to: LocalSecs,
    pub channel1: String,
    pub channel2: String,
    pub callerid1: String,
    pub callerid2: String,
    pub name1: String,
    pub name2: String,
    pub uniqueid1: String,
    pub uniqueid2: String,
    /// Of `channel1` and `channel2`.
    pub ends: [Endpoint; 2],
}

/// A channel in no bridge, listed in `[from, to)`.
#[derive(Debug, Clone)]
pub struct Channel {
    pub from: LocalSecs,
    pub to: LocalSecs,
    pub channel: String,
    pub uniqueid: String,
    pub state: &'static str,
    pub service: &'static str,
    pub callernum: String,
    pub callername: String,
    pub connectednum: String,
    pub connectedname: String,
    /// When the channel was created.
    pub alloc_time: LocalSecs,
    /// Of `channel`.
    pub end: Endpoint,
}

/// A caller's stay in a queue: waiting from `entered` until a member answers or the caller gives
/// up, then talking to the members that answered.
#[derive(Debug, Clone)]
pub struct QueueCall {
    pub queue: String,
    pub callerid: String,
    pub callerchannel: String,
    /// The Queue leg's start.
    pub entered: LocalSecs,
    pub waited_until: LocalSecs,
    pub talks: Vec<QueueTalk>,
    /// Members rung, answered or not, each once, in leg order.
    pub rung: Vec<u32>,
}

/// A member talking to a queue caller, live in `[from, to)`.
#[derive(Debug, Clone)]
pub struct QueueTalk {
    pub from: LocalSecs,
    pub to: LocalSecs,
    pub member: Option<u32>,
    pub callerchannel: String,
    pub calleechannel: String,
}

impl QueueCall {
    pub fn waiting(&self, now: LocalSecs) -> bool {
        self.entered <= now && now < self.waited_until
    }

    pub fn answered_by(&self) -> Option<u32> {
        self.talks.first().and_then(|t| t.member)
    }

    pub fn talk_secs(&self) -> i64 {
        self.talks.iter().map(|t| t.to - t.from).sum()
    }
}

impl Bridge {
    pub fn row(&self, uniqueids: bool) -> Value {
        let mut row = json!({"channel1": self.channel1, "channel2": self.channel2,
            "callerid1": self.callerid1, "callerid2": self.callerid2, "name1": self.name1,
            "name2": self.name2, "bridge_time": fmt_secs(self.from)});
        if uniqueids {
            row["uniqueid1"] = json!(self.uniqueid1);
            row["uniqueid2"] = json!(self.uniqueid2);
        }
        row
    }
}

impl Channel {
    pub fn row(&self, uniqueids: bool) -> Value {
        let mut row = json!({"channel": self.channel, "state": self.state,
            "service": self.service, "callernum": self.callernum, "callername": self.callername,
            "connectednum": self.connectednum, "connectedname": self.connectedname,
            "alloc_time": fmt_secs(self.alloc_time)});
        if uniqueids {
            row["uniqueid"] = json!(self.uniqueid);
        }
        row
    }
}

/// The name a phone of the simulated office shows; none for numbers outside it.
fn name_of(ext: &str) -> String {
    match ext.parse::<u32>() {
        Ok(e) if EXTENSIONS.contains(&e) => format!("User {e}"),
        _ => String::new(),
    }
}

/// Bridges and unbridged channels of the call made of `legs` (times as stamped, in `tz`).
///
/// The caller's channel carries the CDR `uniqueid`; each leg's `dstchannel` was created when its
/// leg started, so it gets that time's Unix seconds and a sequence after the caller's (the
/// caller's plus leg index plus one), as Asterisk counts channels up. The caller is unbridged whenever no bridge holds it,
/// `Ring` until something (a person or an application such as IVR, queue or voicemail) answered
/// it and `Up` from then on; a `dstchannel` is `Ringing` from its leg's start until answer or
/// give-up. ForkCDR copies are no channels of their own.
pub fn of_call(legs: &[Leg], tz: Tz) -> (Vec<Bridge>, Vec<Channel>) {
    let real: Vec<(usize, &Leg)> = legs
        .iter()
        .enumerate()
        .filter(|(_, l)| l.lastapp != "ForkCDR")
        .collect();
    let Some(&(_, first)) = real.first() else {
        return (Vec::new(), Vec::new());
    };
    let start = legs.iter().map(|l| l.start).min().unwrap_or_default();
    let end = legs.iter().map(Leg::end).max().unwrap_or_default();
    let caller_uid = legs
        .iter()
        .map(|l| l.uniqueid.as_str())
        .find(|u| !u.is_empty())
        .unwrap_or("");
    let seq: u64 = caller_uid
        .split_once('.')
        .and_then(|(_, s)| s.parse().ok())
        .unwrap_or(0);
    let dst_uid = |i: usize, l: &Leg| format!("{}.{}", unix_of(l.start, tz), seq + 1 + i as u64);
    let service = if legs.iter().any(|l| l.lastapp == "Queue") {
        "queue"
    } else {
        "normal"
    };
    let callee = |l: &Leg| {
        if l.dstchannel_ext.is_empty() {
            l.dst.clone()
        } else {
            l.dstchannel_ext.clone()
        }
    };

    let mut bridges: Vec<Bridge> = real
        .iter()
        .filter(|(_, l)| l.answered() && !l.dstchannel.is_empty())
        .map(|&(i, l)| Bridge {
            from: l.start + l.ring,
            to: l.end(),
            channel1: l.channel.clone(),
            channel2: l.dstchannel.clone(),
            callerid1: l.src.clone(),
            callerid2: l.dst.clone(),
            name1: l.caller_name.clone(),
            name2: name_of(&callee(l)),
            uniqueid1: caller_uid.to_string(),
            uniqueid2: dst_uid(i, l),
            ends: [endpoint(&l.channel), endpoint(&l.dstchannel)],
        })
        .collect();
    bridges.sort_by_key(|b| b.from);

    let answered_at = real
        .iter()
        .filter(|(_, l)| l.answered())
        .map(|(_, l)| l.start + l.ring)
        .min()
        .unwrap_or(LocalSecs::MAX);
    // The complement of the bridges in [start, end), cut where the caller is answered.
    let mut free = Vec::new();
    let mut t = start;
    for b in bridges.iter().filter(|b| b.from < b.to) {
        if b.from > t {
            free.push((t, b.from));
        }
        t = t.max(b.to);
    }
    if t < end {
        free.push((t, end));
    }
    let caller_row = |from: LocalSecs, to: LocalSecs, state: &'static str| Channel {
        from,
        to,
        channel: first.channel.clone(),
        uniqueid: caller_uid.to_string(),
        state,
        service,
        callernum: first.src.clone(),
        callername: first.caller_name.clone(),
        connectednum: first.dst.clone(),
        connectedname: name_of(&first.dst),
        alloc_time: start,
        end: endpoint(&first.channel),
    };
    let mut channels = Vec::new();
    for (a, b) in free {
        if a < answered_at.min(b) {
            channels.push(caller_row(a, answered_at.min(b), "Ring"));
        }
        if answered_at.max(a) < b {
            channels.push(caller_row(answered_at.max(a), b, "Up"));
        }
    }
    channels.extend(
        real.iter()
            .filter(|(_, l)| !l.dstchannel.is_empty() && l.ring > 0)
            .map(|&(i, l)| Channel {
                from: l.start,
                to: l.start + l.ring,
                channel: l.dstchannel.clone(),
                uniqueid: dst_uid(i, l),
                state: "Ringing",
                service,
                callernum: l.src.clone(),
                callername: l.caller_name.clone(),
                connectednum: callee(l),
                connectedname: name_of(&callee(l)),
                alloc_time: l.start,
                end: endpoint(&l.dstchannel),
            }),
    );
    (bridges, channels)
}

/// The phone a leg rings: its `dstchannel`'s, else the extension the CDR names (an unanswered
/// leg may have no `dstchannel`).
fn phone_of(l: &Leg) -> Option<u32> {
    match endpoint(&l.dstchannel) {
        Endpoint::Phone(e) => Some(e),
        _ => l
            .dstchannel_ext
            .parse()
            .ok()
            .filter(|e| EXTENSIONS.contains(e)),
    }
}

/// The queue part of the call made of `legs`, if it went through a queue: its first leg run by
/// the Queue application (the caller on hold, `dst` the queue) and the legs that ring members
/// (same `dst`). The wait ends at the first member's answer, or with the Queue leg when nobody
/// answered.
pub fn queue_of_call(legs: &[Leg]) -> Option<QueueCall> {
    let hold = legs
        .iter()
        .find(|l| l.lastapp.eq_ignore_ascii_case("Queue"))?;
    let members: Vec<&Leg> = legs
        .iter()
        .filter(|l| {
            l.dst == hold.dst && !l.lastapp.eq_ignore_ascii_case("Queue") && l.lastapp != "ForkCDR"
        })
        .collect();
    let talks: Vec<QueueTalk> = members
        .iter()
        .filter(|l| l.answered() && !l.dstchannel.is_empty())
        .map(|l| QueueTalk {
            from: l.start + l.ring,
            to: l.end(),
            member: phone_of(l),
            callerchannel: l.channel.clone(),
            calleechannel: l.dstchannel.clone(),
        })
        .collect();
    let mut rung = Vec::new();
    for e in members.iter().filter_map(|l| phone_of(l)) {
        if !rung.contains(&e) {
            rung.push(e);
        }
    }
    let answered = talks.iter().map(|t| t.from).min();
    Some(QueueCall {
        queue: hold.dst.clone(),
        callerid: hold.src.clone(),
        callerchannel: hold.channel.clone(),
        entered: hold.start,
        waited_until: answered
            .map_or(hold.end(), |a| a.min(hold.end()))
            .max(hold.start),
        talks,
        rung,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg(start: LocalSecs, ring: i64, billsec: i64, dstchannel: &str) -> Leg {
        Leg {
            src: "030555".into(),
            dst: "6400".into(),
            channel: "PJSIP/trunk_1-00000001".into(),
            dstchannel: dstchannel.into(),
            dstchannel_ext: "2001".into(),
            lastapp: "Dial".into(),
            start,
            ring,
            billsec,
            disposition: if billsec > 0 { "ANSWERED" } else { "NO ANSWER" },
            uniqueid: "1000.7".into(),
            ..Leg::default()
        }
    }

    #[test]
    fn caller_rings_is_bridged_then_rings_again() {
        // Rings 2001 for 10 s (answered, talks 20 s), then a transfer leg rings 2002 for 5 s
        // unanswered.
        let legs = [
            leg(1000, 10, 20, "PJSIP/2001-1"),
            leg(1030, 5, 0, "PJSIP/2002-2"),
        ];
        let (bridges, channels) = of_call(&legs, chrono_tz::UTC);
        assert_eq!(bridges.len(), 1);
        let b = &bridges[0];
        assert_eq!((b.from, b.to), (1010, 1030));
        assert_eq!(
            (b.uniqueid1.as_str(), b.uniqueid2.as_str()),
            ("1000.7", "1000.8")
        );
        assert_eq!(b.name2, "User 2001");
        let spans: Vec<(LocalSecs, LocalSecs, &str, &str)> = channels
            .iter()
            .map(|c| (c.from, c.to, c.state, c.uniqueid.as_str()))
            .collect();
        assert_eq!(
            spans,
            [
                (1000, 1010, "Ring", "1000.7"),
                (1030, 1035, "Up", "1000.7"),
                (1000, 1010, "Ringing", "1000.8"),
                (1030, 1035, "Ringing", "1030.9"),
            ]
        );
        assert!(channels.iter().all(|c| c.service == "normal"));
        assert_eq!(channels[3].alloc_time, 1030);
        assert_eq!(channels[0].alloc_time, 1000);
    }

    #[test]
    fn endpoints_from_channel_names() {
        assert_eq!(endpoint("PJSIP/2001-00000003"), Endpoint::Phone(2001));
        assert_eq!(endpoint("PJSIP/trunk_2-0000002b"), Endpoint::Trunk(2));
        assert_eq!(endpoint("PJSIP/1015-00000001"), Endpoint::Other);
        assert_eq!(endpoint("Local/6500@queue-00000001;1"), Endpoint::Other);
        assert_eq!(endpoint(""), Endpoint::Other);
    }

    #[test]
    fn a_queue_call_waits_until_the_first_answer() {
        let hold = Leg {
            lastapp: "Queue".into(),
            dst: "6500".into(),
            start: 1000,
            ring: 0,
            billsec: 30,
            disposition: "ANSWERED",
            ..leg(1000, 0, 30, "")
        };
        let agent = |ext: &str, ring, billsec, chan: &str| Leg {
            dst: "6500".into(),
            dstchannel_ext: ext.into(),
            ..leg(1001, ring, billsec, chan)
        };
        let legs = [
            hold.clone(),
            agent("2004", 29, 60, "PJSIP/2004-1"),
            agent("2006", 10, 0, ""),
        ];
        let q = queue_of_call(&legs).unwrap();
        assert_eq!(
            (q.queue.as_str(), q.entered, q.waited_until),
            ("6500", 1000, 1030)
        );
        assert!(q.waiting(1029) && !q.waiting(1030));
        assert_eq!(q.rung, [2004, 2006]);
        assert_eq!((q.answered_by(), q.talk_secs()), (Some(2004), 60));
        assert_eq!(q.talks[0].calleechannel, "PJSIP/2004-1");

        let abandoned = queue_of_call(&[hold, agent("2004", 30, 0, "PJSIP/2004-1")]).unwrap();
        assert_eq!(
            (abandoned.waited_until, abandoned.answered_by()),
            (1030, None)
        );
        assert!(queue_of_call(&legs[1..]).is_none());
    }
}
