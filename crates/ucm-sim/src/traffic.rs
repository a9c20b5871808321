//! Seeded call generator for a plausible small business.
//!
//! Calls are produced per hour slot from an RNG seeded by `(seed, slot)`, so the set of calls is a
//! pure function of the seed and the slot: however a test moves the clock, the same seed yields
//! the same entries. Each scenario states the outcome it means to produce ([`Intent`], in the
//! label values of docs/design.md §6 and of the group rules for queues, ring groups and IVRs),
//! which the unit tests hold against the independent classifier in `truth.rs`.

use chrono_tz::Tz;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::clock::{unix_of, LocalSecs};

/// 20 desk extensions; 2000 is the receptionist.
pub const EXTENSIONS: std::ops::RangeInclusive<u32> = 2000..=2019;
/// (index, name) of the VoIP trunks; channels are `PJSIP/trunk_<index>-…`.
pub const TRUNKS: [(u32, &str); 4] = [
    (1, "Telekom"),
    (2, "groff"),
    (3, "Daisy"),
    (4, "backup-sip"),
];
pub const RING_GROUP: (&str, [u32; 3]) = ("6400", [2001, 2002, 2003]);
/// A sequential hunt group long enough to give calls 10+ legs, so `sub_cdr_10` ordering matters.
pub const HUNT_GROUP: &str = "6401";
pub const HUNT_MEMBERS: std::ops::RangeInclusive<u32> = 2005..=2016;
pub const QUEUE: (&str, [u32; 3]) = ("6500", [2004, 2006, 2007]);
pub const IVR: &str = "7000";
/// The names the UCM's configuration gives the groups (`listQueue`, `listRingGroup`, `listIVR`).
pub const QUEUE_NAME: &str = "Support";
pub const RING_GROUP_NAME: &str = "Sales";
pub const HUNT_GROUP_NAME: &str = "Hunt";
pub const IVR_NAME: &str = "Main menu";
/// (kind, group, name) of every configured group, with the kinds of the group metrics.
pub const GROUP_NAMES: [(&str, &str, &str); 4] = [
    ("queue", QUEUE.0, QUEUE_NAME),
    ("ringgroup", RING_GROUP.0, RING_GROUP_NAME),
    ("ringgroup", HUNT_GROUP, HUNT_GROUP_NAME),
    ("ivr", IVR, IVR_NAME),
];
/// Seconds a caller waits in the queue before it gives up on the agents and fails over.
pub const QUEUE_TIMEOUT: i64 = 60;
/// Where unanswered queue and ring group calls fail over to, and whose mailbox takes the queue's
/// messages: the receptionist.
pub const FAILOVER: u32 = 2000;

/// The share of flat FAILED calls that fail before they are set up and are written without an
/// end: with the FAILED share of internal and outbound calls, about 4 % of all entries, as in a
/// real UCM's year of CDRs (docs/ucm-api.md §6.1).
const ENDLESS_SHARE_OF_FAILED: f64 = 0.65;

/// What the dialplan last ran in a call that failed before it was set up, in a real UCM's CDRs.
const ENDLESS_APPS: [(&str, &str); 7] = [
    ("Congestion", ""),
    ("Playback", "silence/1&wrong-number,noanswer"),
    ("Playback", "no-permission"),
    ("Set", "DIALSTATUS=CHANUNAVAIL"),
    ("Hangup", ""),
    ("ExecIf", "$[\"${DIALSTATUS}\" = \"CHANUNAVAIL\"]?Hangup()"),
    ("Wait", "1"),
];

/// Relative call volume per hour of day (quiet nights, busy mornings and afternoons).
const SHAPE: [f64; 24] = [
    0.05, 0.03, 0.02, 0.02, 0.03, 0.08, 0.3, 0.9, 1.8, 2.4, 2.5, 2.2, 1.4, 1.9, 2.4, 2.3, 2.0, 1.4,
    0.8, 0.5, 0.3, 0.2, 0.12, 0.08,
];

/// The outcome a scenario means to produce, in the label values of docs/design.md §6 and of the
/// group rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub direction: &'static str,
    pub trunk: String,
    pub disposition: &'static str,
    pub scenario: &'static str,
    /// (kind, group, outcome) of each queue and ring group visit, in the order first named.
    pub groups: Vec<(&'static str, String, &'static str)>,
    /// The IVR visit's outcome (the calls visit at most the one IVR, [`IVR`]).
    pub ivr: Option<&'static str>,
}

impl Intent {
    fn group(mut self, kind: &'static str, group: &str, outcome: &'static str) -> Intent {
        self.groups.push((kind, group.to_string(), outcome));
        self
    }

    fn ivr(mut self, outcome: &'static str) -> Intent {
        self.ivr = Some(outcome);
        self
    }
}

/// One CDR leg before rendering; times in local seconds.
#[derive(Debug, Clone, Default)]
pub struct Leg {
    pub src: String,
    pub dst: String,
    pub dcontext: String,
    pub clid: String,
    pub channel: String,
    pub dstchannel: String,
    pub lastapp: String,
    pub lastdata: String,
    pub start: LocalSecs,
    /// Seconds before answer (or the whole leg when unanswered): `duration - billsec`.
    pub ring: i64,
    pub billsec: i64,
    pub disposition: &'static str,
    pub userfield: &'static str,
    pub channel_ext: String,
    pub dstchannel_ext: String,
    pub caller_name: String,
    pub recordfiles: String,
    pub dstanswer: String,
    pub session: String,
    pub action_owner: String,
    pub action_type: String,
    pub src_trunk_name: String,
    pub dst_trunk_name: String,
    pub uniqueid: String,
    /// A call that failed before it was set up: written with an empty `end` and `answer`, as a
    /// real UCM writes such FAILED legs (docs/ucm-api.md §6.1).
    pub endless: bool,
    /// The IVR part of the call, which UCM62xx firmware writes as a leg of its own with `lastapp`
    /// `ForkCDR` (the render decides, by firmware): a segment with its own span, not a copy.
    pub ivr_part: bool,
}

impl Leg {
    pub fn end(&self) -> LocalSecs {
        self.start + self.ring + self.billsec
    }
    pub fn answered(&self) -> bool {
        self.disposition == "ANSWERED"
    }
}

#[derive(Debug, Clone)]
pub struct Call {
    pub legs: Vec<Leg>,
    /// A single-leg call the UCM would still group (ForkCDR duplicates are never flat).
    pub grouped: bool,
    pub intent: Intent,
}

impl Call {
    pub fn start(&self) -> LocalSecs {
        self.legs.iter().map(|l| l.start).min().unwrap_or_default()
    }
    pub fn end(&self) -> LocalSecs {
        self.legs.iter().map(Leg::end).max().unwrap_or_default()
    }

    /// Moves the call by `by` seconds, as a clock step does to a call placed after it. The
    /// `uniqueid` follows, because Asterisk takes it from the clock at the channel's creation;
    /// its sequence stays.
    pub fn shift(&mut self, by: i64, tz: Tz) {
        if by == 0 {
            return;
        }
        for l in &mut self.legs {
            l.start += by;
        }
        let start = self.start();
        for l in &mut self.legs {
            let seq = l.uniqueid.split_once('.').map_or("0", |(_, s)| s);
            l.uniqueid = format!("{}.{seq}", unix_of(start, tz));
        }
    }
}

/// The calls whose start falls in the hour slot beginning at `slot_start`, oldest first. With
/// `flat`, every hour gets the average rate: a load that does not depend on the hour of day.
/// `tz` is the UCM's zone, which the Unix time in a `uniqueid` needs.
pub fn calls_in_slot(
    seed: u64,
    slot_start: LocalSecs,
    (calls_per_hour, flat): (f64, bool),
    tz: Tz,
) -> Vec<Call> {
    let slot = slot_start.div_euclid(3600);
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ (slot as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mean: f64 = SHAPE.iter().sum::<f64>() / 24.0;
    let rate = if flat {
        calls_per_hour
    } else {
        calls_per_hour * SHAPE[slot.rem_euclid(24) as usize] / mean
    };
    let mut calls = Vec::new();
    if rate <= 0.0 {
        return calls;
    }
    let mut t = 0.0f64;
    loop {
        let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
        t += -u.ln() * 3600.0 / rate;
        if t >= 3600.0 {
            break;
        }
        let mut g = Gen {
            rng: &mut rng,
            t0: slot_start + t as i64,
            tz,
        };
        calls.push(g.call());
    }
    calls
}

/// What the calls of a [`burst`] do. Bursts are incidents a test switches on over the seeded
/// traffic: a trunk whose callers nobody answers, a queue whose callers give up, or the calls
/// answered again once it is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BurstOutcome {
    /// Inbound calls that ring at a desk until the caller hangs up.
    Missed,
    /// Inbound calls a person answers after a short ring and talks for a few minutes.
    Answered,
    /// Inbound calls to the queue whose callers hang up while waiting for an agent.
    Abandoned,
}

impl std::str::FromStr for BurstOutcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "missed" => Ok(BurstOutcome::Missed),
            "answered" => Ok(BurstOutcome::Answered),
            "abandoned" => Ok(BurstOutcome::Abandoned),
            _ => Err(format!("{s:?}: missed, answered or abandoned")),
        }
    }
}

/// `calls` inbound calls starting evenly over `over` seconds from `start`, each with `outcome`,
/// on the named inbound trunk or, without one, on the inbound trunks in turn. Seeded by `seed`
/// and `start`, so a burst placed at the same instant is the same calls.
pub fn burst(
    seed: u64,
    (outcome, trunk): (BurstOutcome, Option<&str>),
    start: LocalSecs,
    (calls, over): (u32, i64),
    tz: Tz,
) -> Result<Vec<Call>, String> {
    let trunks: Vec<(u32, &'static str)> = match trunk {
        None => TRUNKS[..3].to_vec(),
        Some(name) => vec![*TRUNKS.iter().find(|(_, n)| *n == name).ok_or_else(|| {
            let names: Vec<&str> = TRUNKS.iter().map(|(_, n)| *n).collect();
            format!("no trunk {name:?}; the trunks are {}", names.join(", "))
        })?],
    };
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ (start as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93));
    let step = over.max(0) / i64::from(calls.max(1));
    Ok((0..calls)
        .map(|k| {
            let mut g = Gen {
                rng: &mut rng,
                t0: start + i64::from(k) * step,
                tz,
            };
            g.burst_call(trunks[k as usize % trunks.len()], outcome)
        })
        .collect())
}

/// Who places a call.
enum From {
    Ext(u32),
    Trunk(u32, &'static str, String),
}

struct Gen<'a> {
    rng: &'a mut ChaCha8Rng,
    t0: LocalSecs,
    tz: Tz,
}

/// The part of a leg shared by all legs of one call.
struct Base {
    src: String,
    clid: String,
    caller_name: String,
    channel: String,
    channel_ext: String,
    dcontext: &'static str,
    userfield: &'static str,
    src_trunk_name: String,
    uniqueid: String,
    session: String,
}

/// Where a leg goes.
enum To<'a> {
    Ext(u32),
    Trunk(u32, &'a str),
    /// An application: (lastapp, lastdata, action_type).
    App(&'a str, String, String),
    VoiceMail(u32),
}

impl Gen<'_> {
    fn ext(&mut self) -> u32 {
        self.rng.random_range(EXTENSIONS)
    }

    fn other_ext(&mut self, not: u32) -> u32 {
        loop {
            let e = self.ext();
            if e != not {
                return e;
            }
        }
    }

    fn number(&mut self) -> String {
        let prefix = *["030", "040", "089", "0151", "0170", "0221"]
            .choose(self.rng)
            .unwrap_or(&"030");
        format!("{prefix}{}", self.rng.random_range(1_000_000..9_999_999u32))
    }

    fn inbound_trunk(&mut self) -> (u32, &'static str) {
        TRUNKS[self.rng.random_range(0..3)]
    }

    fn outbound_trunk(&mut self) -> (u32, &'static str) {
        if self.rng.random_bool(0.9) {
            TRUNKS[0]
        } else {
            *TRUNKS[1..].choose(self.rng).unwrap_or(&TRUNKS[3])
        }
    }

    fn chan(&mut self, name: &str) -> String {
        format!(
            "PJSIP/{name}-{:08x}",
            self.rng.random_range(0..0x0010_0000u32)
        )
    }

    /// Talk time: mostly minutes, a few calls of up to two hours so pollers must re-sweep.
    fn talk(&mut self) -> i64 {
        if self.rng.random_bool(0.02) {
            self.rng.random_range(1800..7200)
        } else {
            let u: f64 = self.rng.random_range(0.0..1.0);
            (10.0 + (u * 6.0).exp() * 1.5) as i64
        }
    }

    fn ring(&mut self) -> i64 {
        self.rng.random_range(2..25)
    }

    fn base(&mut self, from: &From, dcontext: &'static str, userfield: &'static str) -> Base {
        let micros = self.rng.random_range(0..1_000_000u32);
        let uid_seq = self.rng.random_range(0..5000u32);
        let (src, caller_name, channel, channel_ext, trunk) = match from {
            From::Ext(e) => (
                e.to_string(),
                format!("User {e}"),
                self.chan(&e.to_string()),
                e.to_string(),
                "",
            ),
            From::Trunk(i, name, num) => {
                let named = if self.rng.random_bool(0.3) {
                    "Oak Technology".to_string()
                } else {
                    num.clone()
                };
                (
                    num.clone(),
                    named,
                    self.chan(&format!("trunk_{i}")),
                    format!("trunk_{i}"),
                    *name,
                )
            }
        };
        Base {
            clid: format!("\"{caller_name}\" <{src}>"),
            session: format!("{}{micros:06}-{src}", self.t0),
            uniqueid: format!("{}.{uid_seq}", unix_of(self.t0, self.tz)),
            src,
            caller_name,
            channel,
            channel_ext,
            dcontext,
            userfield,
            src_trunk_name: trunk.to_string(),
        }
    }

    /// One leg of `b` starting at `start` towards `to`, ringing `ring` s then talking `talk` s
    /// when `disposition` is ANSWERED.
    fn leg(
        &mut self,
        b: &Base,
        start: LocalSecs,
        dst: &str,
        to: To,
        (ring, talk): (i64, i64),
        disposition: &'static str,
    ) -> Leg {
        let answered = disposition == "ANSWERED";
        let mut l = Leg {
            src: b.src.clone(),
            dst: dst.to_string(),
            dcontext: b.dcontext.to_string(),
            clid: b.clid.clone(),
            channel: b.channel.clone(),
            start,
            ring,
            billsec: if answered { talk } else { 0 },
            disposition,
            userfield: b.userfield,
            channel_ext: b.channel_ext.clone(),
            caller_name: b.caller_name.clone(),
            session: b.session.clone(),
            action_owner: b.src.clone(),
            action_type: "DIAL".into(),
            src_trunk_name: b.src_trunk_name.clone(),
            uniqueid: b.uniqueid.clone(),
            lastapp: "Dial".into(),
            ..Leg::default()
        };
        match to {
            To::Ext(e) => {
                // Unanswered Dial legs show an empty dstchannel on some captures, a set one on others.
                if answered || self.rng.random_bool(0.5) {
                    l.dstchannel = self.chan(&e.to_string());
                }
                l.dstchannel_ext = e.to_string();
                l.lastdata = format!("PJSIP/{e},60,zb(callee-handler^s^1)");
                if answered {
                    l.dstanswer = e.to_string();
                    if self.rng.random_bool(0.2) {
                        l.recordfiles = format!("auto-{start}-{}-{e}.wav@", b.src);
                    }
                }
            }
            To::Trunk(i, name) => {
                if answered {
                    l.dstchannel = self.chan(&format!("trunk_{i}"));
                }
                l.dstchannel_ext = format!("trunk_{i}");
                l.lastdata = format!("PJSIP/{dst}@trunk_{i},60");
                l.dst_trunk_name = name.to_string();
            }
            To::App(app, data, action) => {
                l.lastapp = app.into();
                l.lastdata = data;
                l.action_type = action;
            }
            To::VoiceMail(e) => {
                l.lastapp = "VoiceMail".into();
                l.lastdata = format!("{e}@default,u");
                l.action_type = "VM".into();
                l.dstchannel_ext = e.to_string();
                l.dstanswer = e.to_string();
            }
        }
        l
    }

    fn intent(
        direction: &'static str,
        trunk: &str,
        disposition: &'static str,
        scenario: &'static str,
    ) -> Intent {
        Intent {
            direction,
            trunk: trunk.to_string(),
            disposition,
            scenario,
            groups: Vec::new(),
            ivr: None,
        }
    }

    fn call(&mut self) -> Call {
        let pick = self.rng.random_range(0..100u32);
        let mut call = match pick {
            0..=15 => self.internal(),
            16..=18 => self.internal_voicemail(),
            19..=22 => self.inbound_direct(),
            23..=31 => self.inbound_ring_group(),
            32..=34 => self.inbound_hunt(),
            35..=42 => self.inbound_ivr(),
            43..=45 => self.ivr_queue(),
            46..=51 => self.inbound_queue(),
            52..=54 => self.queue_timeout_voicemail(),
            55..=56 => self.queue_failover(),
            57..=58 => self.queue_ring_group(),
            59..=60 => self.queue_transfer(),
            61..=63 => self.inbound_voicemail(),
            64..=66 => self.transfer(),
            67..=68 => self.park(),
            69..=92 => self.outbound(),
            _ => self.external(),
        };
        if call.legs.len() == 1
            && call.legs[0].disposition == "FAILED"
            && self.rng.random_bool(ENDLESS_SHARE_OF_FAILED)
        {
            self.fail_before_setup(&mut call.legs[0]);
            call.intent.scenario = "failed-endless";
        }
        if self.rng.random_bool(0.05) {
            // A ForkCDR duplicate of the first leg: answered with a dstchannel, so counting it
            // would change the outcome, and placed first, so "the first leg" must skip it.
            let mut fork = call.legs[0].clone();
            fork.lastapp = "ForkCDR".into();
            fork.lastdata = String::new();
            fork.disposition = "ANSWERED";
            fork.dstchannel = self.chan("fork");
            fork.userfield = "";
            fork.billsec = fork.billsec.max(1);
            fork.endless = false;
            fork.ivr_part = false;
            // Before an IVR segment written as ForkCDR, the copy would be the first of two
            // ForkCDR legs of one span, and the first of those is the one kept: no copy there
            // (drawn all the same, so the calls after it stay as they were).
            if !call.legs[0].ivr_part {
                call.legs.insert(0, fork);
                call.grouped = true;
            }
        }
        if self.rng.random_bool(0.05) {
            for l in &mut call.legs {
                l.userfield = "";
            }
            call.intent.scenario = "empty-userfield";
        }
        call
    }

    /// A call that failed within seconds, before any channel was bridged: no answer, no end,
    /// nothing billed.
    fn fail_before_setup(&mut self, leg: &mut Leg) {
        let (app, data) = *ENDLESS_APPS.choose(self.rng).unwrap_or(&ENDLESS_APPS[0]);
        leg.lastapp = app.into();
        leg.lastdata = data.into();
        leg.ring = self.rng.random_range(0..=8);
        leg.billsec = 0;
        leg.dstchannel.clear();
        leg.dstchannel_ext.clear();
        leg.dstanswer.clear();
        leg.recordfiles.clear();
        leg.endless = true;
    }

    fn burst_call(&mut self, trunk: (u32, &'static str), outcome: BurstOutcome) -> Call {
        if outcome == BurstOutcome::Abandoned {
            let base = self.inbound_base_on(trunk, "ext-queues");
            return self.queue_call(base, Some(true));
        }
        let (base, trunk) = self.inbound_base_on(trunk, "ext-did-0001");
        let e = self.ext();
        let (ring, talk, disp, disposition, scenario) = match outcome {
            BurstOutcome::Answered => (
                self.ring(),
                self.rng.random_range(30..300),
                "ANSWERED",
                "answered",
                "burst-answered",
            ),
            _ => (
                self.rng.random_range(20..45),
                0,
                "NO ANSWER",
                "no_answer",
                "burst-missed",
            ),
        };
        self.direct(
            (base, trunk),
            e,
            (ring, talk),
            (disp, disposition),
            scenario,
        )
    }

    /// An inbound call of `base` straight to extension `e`, one leg.
    fn direct(
        &mut self,
        (base, trunk): (Base, &'static str),
        e: u32,
        ring_talk: (i64, i64),
        (disp, outcome): (&'static str, &'static str),
        scenario: &'static str,
    ) -> Call {
        let leg = self.leg(&base, self.t0, &e.to_string(), To::Ext(e), ring_talk, disp);
        Self::flat(leg, Self::intent("inbound", trunk, outcome, scenario))
    }

    fn flat(leg: Leg, intent: Intent) -> Call {
        Call {
            legs: vec![leg],
            grouped: false,
            intent,
        }
    }

    fn internal(&mut self) -> Call {
        let (a,) = (self.ext(),);
        let b = self.other_ext(a);
        let base = self.base(&From::Ext(a), "from-internal", "Internal");
        let ring = self.ring();
        let talk = self.talk();
        let (disp, outcome) = *[
            ("ANSWERED", "answered"),
            ("ANSWERED", "answered"),
            ("ANSWERED", "answered"),
            ("NO ANSWER", "no_answer"),
            ("BUSY", "busy"),
            ("FAILED", "failed"),
        ]
        .choose(self.rng)
        .unwrap_or(&("ANSWERED", "answered"));
        let leg = self.leg(
            &base,
            self.t0,
            &b.to_string(),
            To::Ext(b),
            (ring, talk),
            disp,
        );
        Self::flat(leg, Self::intent("internal", "", outcome, "internal"))
    }

    fn internal_voicemail(&mut self) -> Call {
        let a = self.ext();
        let b = self.other_ext(a);
        let base = self.base(&From::Ext(a), "from-internal", "Internal");
        let ring = self.rng.random_range(20..31);
        let first = self.leg(
            &base,
            self.t0,
            &b.to_string(),
            To::Ext(b),
            (ring, 0),
            "NO ANSWER",
        );
        let msg = self.rng.random_range(3..40);
        let vm = self.leg(
            &base,
            self.t0 + ring,
            &b.to_string(),
            To::VoiceMail(b),
            (0, msg),
            "ANSWERED",
        );
        Call {
            legs: vec![first, vm],
            grouped: true,
            intent: Self::intent("internal", "", "voicemail", "internal-voicemail"),
        }
    }

    fn inbound_base(&mut self, dcontext: &'static str) -> (Base, &'static str) {
        let trunk = self.inbound_trunk();
        self.inbound_base_on(trunk, dcontext)
    }

    fn inbound_base_on(
        &mut self,
        (i, name): (u32, &'static str),
        dcontext: &'static str,
    ) -> (Base, &'static str) {
        let num = self.number();
        (
            self.base(&From::Trunk(i, name, num), dcontext, "Inbound"),
            name,
        )
    }

    fn inbound_direct(&mut self) -> Call {
        let (base, trunk) = self.inbound_base("ext-did-0001");
        let e = self.ext();
        let ring = self.ring();
        let talk = self.talk();
        let (disp, outcome) = *[
            ("ANSWERED", "answered"),
            ("ANSWERED", "answered"),
            ("BUSY", "busy"),
            ("CONGESTION", "failed"),
            ("FAILED", "failed"),
        ]
        .choose(self.rng)
        .unwrap_or(&("ANSWERED", "answered"));
        self.direct(
            (base, trunk),
            e,
            (ring, talk),
            (disp, outcome),
            "inbound-direct",
        )
    }

    /// Ring-all group: overlapping legs, at most one answered; unanswered calls may end in voicemail.
    fn inbound_ring_group(&mut self) -> Call {
        let (base, trunk) = self.inbound_base("ext-did-0002");
        let (group, members) = RING_GROUP;
        let winner = if self.rng.random_bool(0.6) {
            Some(self.rng.random_range(0..members.len()))
        } else {
            None
        };
        let ring = self.rng.random_range(3..30);
        let talk = self.talk();
        let mut legs = Vec::new();
        for (i, m) in members.iter().enumerate() {
            let disp = if Some(i) == winner {
                "ANSWERED"
            } else {
                "NO ANSWER"
            };
            let mut l = self.leg(&base, self.t0, group, To::Ext(*m), (ring, talk), disp);
            l.action_type = format!("RINGGROUP[{group}]");
            legs.push(l);
        }
        let unanswered = self.rng.random_range(0..100);
        let (outcome, group_outcome, scenario) = if winner.is_some() {
            ("answered", "answered", "ring-group")
        } else if unanswered < 45 {
            let msg = self.rng.random_range(4..60);
            legs.push(self.leg(
                &base,
                self.t0 + ring,
                group,
                To::VoiceMail(members[0]),
                (0, msg),
                "ANSWERED",
            ));
            ("voicemail", "voicemail", "ring-group")
        } else if unanswered < 75 {
            let outcome = self.failover(&base, self.t0 + ring, &mut legs);
            (outcome, "timeout", "ring-group-failover")
        } else {
            // Nobody answers and the group has no failover: the caller hangs up.
            ("no_answer", "abandoned", "ring-group")
        };
        Call {
            legs,
            grouped: true,
            intent: Self::intent("inbound", trunk, outcome, scenario).group(
                "ringgroup",
                group,
                group_outcome,
            ),
        }
    }

    /// The failover leg: a plain dial to the receptionist at `at`, when a group gave up; the
    /// call's disposition.
    fn failover(&mut self, base: &Base, at: LocalSecs, legs: &mut Vec<Leg>) -> &'static str {
        let answered = self.rng.random_bool(0.6);
        let ring = self.ring();
        let talk = self.talk();
        let disp = if answered { "ANSWERED" } else { "NO ANSWER" };
        legs.push(self.leg(
            base,
            at,
            &FAILOVER.to_string(),
            To::Ext(FAILOVER),
            (ring, talk),
            disp,
        ));
        if answered {
            "answered"
        } else {
            "no_answer"
        }
    }

    /// Sequential hunt over 12 members: up to 12 consecutive legs.
    fn inbound_hunt(&mut self) -> Call {
        let (base, trunk) = self.inbound_base("ext-did-0003");
        let members: Vec<u32> = HUNT_MEMBERS.collect();
        let answered_at = if self.rng.random_bool(0.65) {
            Some(self.rng.random_range(0..members.len()))
        } else {
            None
        };
        let mut t = self.t0;
        let mut legs = Vec::new();
        for (i, m) in members.iter().enumerate() {
            let ring = self.rng.random_range(3..9);
            if Some(i) == answered_at {
                let talk = self.talk();
                let mut l = self.leg(&base, t, HUNT_GROUP, To::Ext(*m), (ring, talk), "ANSWERED");
                l.action_type = format!("RINGGROUP[{HUNT_GROUP}]");
                legs.push(l);
                break;
            }
            let mut l = self.leg(&base, t, HUNT_GROUP, To::Ext(*m), (ring, 0), "NO ANSWER");
            l.action_type = format!("RINGGROUP[{HUNT_GROUP}]");
            legs.push(l);
            t += ring;
        }
        let (outcome, group_outcome, scenario) = if answered_at.is_some() {
            ("answered", "answered", "hunt-group")
        } else if self.rng.random_bool(0.6) {
            // The last member gave up at `t`: the group fails over to the receptionist.
            let outcome = self.failover(&base, t, &mut legs);
            (outcome, "timeout", "hunt-group-failover")
        } else {
            ("no_answer", "abandoned", "hunt-group")
        };
        let grouped = legs.len() > 1;
        Call {
            legs,
            grouped,
            intent: Self::intent("inbound", trunk, outcome, scenario).group(
                "ringgroup",
                HUNT_GROUP,
                group_outcome,
            ),
        }
    }

    /// The IVR's leg from the call start: the menu answers (an application, not a person) and
    /// runs `app` last for `in_menu` s.
    fn ivr_leg(&mut self, base: &Base, (app, data): (&str, &str), in_menu: i64) -> Leg {
        self.leg(
            base,
            self.t0,
            IVR,
            To::App(app, data.to_string(), format!("IVR[{IVR}]")),
            (0, in_menu),
            "ANSWERED",
        )
    }

    /// IVR: the menu answers (an application, not a person); the caller hangs up there, the menu
    /// ends the call once its prompts ran out, or the caller picks an extension.
    fn inbound_ivr(&mut self) -> Call {
        let (base, trunk) = self.inbound_base("ivr-1");
        let ending = self.rng.random_range(0..100);
        if ending < 25 {
            let in_menu = self.rng.random_range(4..40);
            let mut ivr = self.ivr_leg(&base, ("BackGround", "ivr-prompt"), in_menu);
            // Taken from a draw already made, so the traffic of a seed stays as it was.
            ivr.ivr_part = in_menu % 2 == 0;
            return Self::flat(
                ivr,
                Self::intent("inbound", trunk, "no_answer", "ivr-hangup").ivr("hangup"),
            );
        }
        if ending < 55 {
            let in_menu = self.rng.random_range(15..60);
            let last = *[("Hangup", ""), ("Playback", "goodbye")]
                .choose(self.rng)
                .unwrap_or(&("Hangup", ""));
            let ivr = self.ivr_leg(&base, last, in_menu);
            return Self::flat(
                ivr,
                Self::intent("inbound", trunk, "no_answer", "ivr-timeout").ivr("timeout"),
            );
        }
        let in_menu = self.rng.random_range(4..40);
        let mut ivr = self.ivr_leg(&base, ("BackGround", "ivr-prompt"), in_menu);
        ivr.ivr_part = in_menu % 2 == 0;
        let e = self.ext();
        let ring = self.ring();
        let talk = self.talk();
        let (disp, outcome) = *[
            ("ANSWERED", "answered"),
            ("NO ANSWER", "no_answer"),
            ("BUSY", "no_answer"),
        ]
        .choose(self.rng)
        .unwrap_or(&("ANSWERED", "answered"));
        let second = self.leg(
            &base,
            self.t0 + in_menu,
            &e.to_string(),
            To::Ext(e),
            (ring, talk),
            disp,
        );
        Call {
            legs: vec![ivr, second],
            grouped: true,
            intent: Self::intent("inbound", trunk, outcome, "ivr-to-extension").ivr("routed"),
        }
    }

    /// The IVR sends the caller to the queue; the first agent rung does not answer, the second
    /// does.
    fn ivr_queue(&mut self) -> Call {
        let (base, trunk) = self.inbound_base("ivr-1");
        let (queue, agents) = QUEUE;
        let in_menu = self.rng.random_range(4..20);
        let ivr = self.ivr_leg(&base, ("BackGround", "ivr-prompt"), in_menu);
        let action = self.agent_action();
        let first = self.rng.random_range(0..agents.len());
        let second = (first + 1) % agents.len();
        let entered = self.t0 + in_menu;
        let (ring1, ring2) = (self.rng.random_range(10..25), self.rng.random_range(2..20));
        let talk = self.talk();
        let hold = self.queue_hold(&base, entered, 1 + ring1 + ring2);
        let missed = self.agent_leg(
            &base,
            entered + 1,
            agents[first],
            (ring1, 0),
            "NO ANSWER",
            &action,
        );
        let took = self.agent_leg(
            &base,
            entered + 1 + ring1,
            agents[second],
            (ring2, talk),
            "ANSWERED",
            &action,
        );
        Call {
            legs: vec![ivr, hold, missed, took],
            grouped: true,
            intent: Self::intent("inbound", trunk, "answered", "ivr-queue-second-agent")
                .ivr("routed")
                .group("queue", queue, "answered"),
        }
    }

    /// The caller on hold in the queue from `start` for `hold` s: a leg the Queue application
    /// answers, `dst` the queue.
    fn queue_hold(&mut self, base: &Base, start: LocalSecs, hold: i64) -> Leg {
        let queue = QUEUE.0;
        self.leg(
            base,
            start,
            queue,
            To::App("Queue", format!("{queue},t"), format!("QUEUE[{queue}]")),
            (0, hold),
            "ANSWERED",
        )
    }

    /// The `action_type` of one call's agent legs: mostly `QUEUE[6500]`; in ~30% of the calls
    /// `DIAL`, as firmware that writes agent legs as plain dials does (their `dst` is the queue
    /// either way, so the group rules still see them as the queue's legs).
    fn agent_action(&mut self) -> String {
        if self.rng.random_bool(0.3) {
            "DIAL".into()
        } else {
            format!("QUEUE[{}]", QUEUE.0)
        }
    }

    /// The queue ringing `agent` from `start`.
    fn agent_leg(
        &mut self,
        base: &Base,
        start: LocalSecs,
        agent: u32,
        ring_talk: (i64, i64),
        disposition: &'static str,
        action: &str,
    ) -> Leg {
        let mut l = self.leg(base, start, QUEUE.0, To::Ext(agent), ring_talk, disposition);
        l.action_type = action.to_string();
        l
    }

    /// Queue: the hold leg is ANSWERED by the Queue application; agents ring in parallel. One
    /// answers, or the caller hangs up while waiting (no leg after the queue's).
    fn inbound_queue(&mut self) -> Call {
        let base = self.inbound_base("ext-queues");
        self.queue_call(base, None)
    }

    /// A queue call of `base`; `abandoned` decides the caller's patience, else chance does.
    fn queue_call(&mut self, (base, trunk): (Base, &'static str), abandoned: Option<bool>) -> Call {
        let (queue, agents) = QUEUE;
        let action = self.agent_action();
        let hold = self.rng.random_range(5..180);
        let mut legs = vec![self.queue_hold(&base, self.t0, hold)];
        let abandoned = abandoned.unwrap_or_else(|| self.rng.random_bool(0.35));
        let winner = self.rng.random_range(0..agents.len());
        let talk = self.talk();
        for (i, a) in agents.iter().enumerate() {
            let start = self.t0 + 1;
            let l = if !abandoned && i == winner {
                self.agent_leg(&base, start, *a, (hold - 1, talk), "ANSWERED", &action)
            } else {
                let rang = self.rng.random_range(1..hold.max(2));
                self.agent_leg(&base, start, *a, (rang, 0), "NO ANSWER", &action)
            };
            legs.push(l);
        }
        let (outcome, queue_outcome, scenario) = if abandoned {
            ("no_answer", "abandoned", "queue-abandon")
        } else {
            ("answered", "answered", "queue-answered")
        };
        Call {
            legs,
            grouped: true,
            intent: Self::intent("inbound", trunk, outcome, scenario).group(
                "queue",
                queue,
                queue_outcome,
            ),
        }
    }

    /// The hold leg and the agents' legs of a queue call that nobody answers: the queue gives up
    /// after [`QUEUE_TIMEOUT`], when its last leg ends.
    fn unanswered_queue(&mut self, base: &Base) -> Vec<Leg> {
        let action = self.agent_action();
        let mut legs = vec![self.queue_hold(base, self.t0, QUEUE_TIMEOUT)];
        for a in QUEUE.1 {
            let rang = self.rng.random_range(10..QUEUE_TIMEOUT);
            legs.push(self.agent_leg(base, self.t0 + 1, a, (rang, 0), "NO ANSWER", &action));
        }
        legs
    }

    /// Queue timeout to voicemail: at the timeout the caller is sent to the receptionist's
    /// mailbox, and leaves a message (or hangs up before the tone: then the queue merely timed
    /// out).
    fn queue_timeout_voicemail(&mut self) -> Call {
        let (base, trunk) = self.inbound_base("ext-queues");
        let mut legs = self.unanswered_queue(&base);
        let left_message = self.rng.random_bool(0.75);
        let msg = self.rng.random_range(4..60);
        let (disp, ring) = if left_message {
            ("ANSWERED", 0)
        } else {
            ("NO ANSWER", 3)
        };
        legs.push(self.leg(
            &base,
            self.t0 + QUEUE_TIMEOUT,
            &FAILOVER.to_string(),
            To::VoiceMail(FAILOVER),
            (ring, msg),
            disp,
        ));
        let (outcome, queue_outcome, scenario) = if left_message {
            ("voicemail", "voicemail", "queue-timeout-voicemail")
        } else {
            ("no_answer", "timeout", "queue-timeout-no-message")
        };
        Call {
            legs,
            grouped: true,
            intent: Self::intent("inbound", trunk, outcome, scenario).group(
                "queue",
                QUEUE.0,
                queue_outcome,
            ),
        }
    }

    /// Queue timeout to a failover extension: at the timeout a plain dial to the receptionist,
    /// answered or not.
    fn queue_failover(&mut self) -> Call {
        let (base, trunk) = self.inbound_base("ext-queues");
        let mut legs = self.unanswered_queue(&base);
        let outcome = self.failover(&base, self.t0 + QUEUE_TIMEOUT, &mut legs);
        Call {
            legs,
            grouped: true,
            intent: Self::intent("inbound", trunk, outcome, "queue-timeout-failover")
                .group("queue", QUEUE.0, "timeout"),
        }
    }

    /// Ring group 6400 as a member of queue 6500: the queue rings the group, whose legs
    /// (`RINGGROUP[6400]`, `dst` the queue as for every leg the queue places) start inside the
    /// queue's span. One member answers, or none and the caller hangs up.
    fn queue_ring_group(&mut self) -> Call {
        let (base, trunk) = self.inbound_base("ext-queues");
        let (group, members) = RING_GROUP;
        let ring = self.rng.random_range(3..30);
        let talk = self.talk();
        let winner = if self.rng.random_bool(0.65) {
            Some(self.rng.random_range(0..members.len()))
        } else {
            None
        };
        let hold = match winner {
            Some(_) => 1 + ring,
            None => 1 + ring + self.rng.random_range(1..60),
        };
        let mut legs = vec![self.queue_hold(&base, self.t0, hold)];
        for (i, m) in members.iter().enumerate() {
            let disp = if Some(i) == winner {
                "ANSWERED"
            } else {
                "NO ANSWER"
            };
            let mut l = self.leg(&base, self.t0 + 1, QUEUE.0, To::Ext(*m), (ring, talk), disp);
            l.action_type = format!("RINGGROUP[{group}]");
            legs.push(l);
        }
        let (outcome, group_outcome) = match winner {
            Some(_) => ("answered", "answered"),
            None => ("no_answer", "abandoned"),
        };
        Call {
            legs,
            grouped: true,
            intent: Self::intent("inbound", trunk, outcome, "queue-ring-group")
                .group("queue", QUEUE.0, group_outcome)
                .group("ringgroup", group, group_outcome),
        }
    }

    /// An agent answers a queue call, then transfers it to a colleague.
    fn queue_transfer(&mut self) -> Call {
        let (base, trunk) = self.inbound_base("ext-queues");
        let (queue, agents) = QUEUE;
        let action = self.agent_action();
        let winner = self.rng.random_range(0..agents.len());
        let ring = self.rng.random_range(3..40);
        let talk = self.rng.random_range(10..180);
        let mut legs = vec![self.queue_hold(&base, self.t0, 1 + ring)];
        for (i, a) in agents.iter().enumerate() {
            let l = if i == winner {
                self.agent_leg(&base, self.t0 + 1, *a, (ring, talk), "ANSWERED", &action)
            } else {
                let rang = self.rng.random_range(1..=ring);
                self.agent_leg(&base, self.t0 + 1, *a, (rang, 0), "NO ANSWER", &action)
            };
            legs.push(l);
        }
        let at = self.t0 + 1 + ring + talk;
        let to = self.other_ext(agents[winner]);
        let (xring, xtalk) = (self.ring(), self.talk());
        let disp = if self.rng.random_bool(0.8) {
            "ANSWERED"
        } else {
            "NO ANSWER"
        };
        let mut xfer = self.leg(
            &base,
            at,
            &to.to_string(),
            To::Ext(to),
            (xring, xtalk),
            disp,
        );
        xfer.action_type = "TRANSFER".into();
        xfer.dcontext = "from-internal-xfer".into();
        xfer.session = format!("{at}{:06}-{to}", 1);
        legs.push(xfer);
        Call {
            legs,
            grouped: true,
            intent: Self::intent("inbound", trunk, "answered", "queue-transfer")
                .group("queue", queue, "answered"),
        }
    }

    /// The §5.2 shape: Dial NO ANSWER, then VoiceMail ANSWERED (or the caller hangs up before the tone).
    fn inbound_voicemail(&mut self) -> Call {
        let (base, trunk) = self.inbound_base("did-local");
        let e = self.ext();
        let ring = self.rng.random_range(0..30);
        let first = self.leg(
            &base,
            self.t0,
            &e.to_string(),
            To::Ext(e),
            (ring, 0),
            "NO ANSWER",
        );
        let left_message = self.rng.random_bool(0.8);
        let msg = self.rng.random_range(2..60);
        let disp = if left_message {
            "ANSWERED"
        } else {
            "NO ANSWER"
        };
        let vm = self.leg(
            &base,
            self.t0 + ring,
            &e.to_string(),
            To::VoiceMail(e),
            (if left_message { 0 } else { 2 }, msg),
            disp,
        );
        let outcome = if left_message {
            "voicemail"
        } else {
            "no_answer"
        };
        Call {
            legs: vec![first, vm],
            grouped: true,
            intent: Self::intent("inbound", trunk, outcome, "inbound-voicemail"),
        }
    }

    /// Answered, then transferred (blind) to a colleague, sometimes several times in a row.
    fn transfer(&mut self) -> Call {
        let (base, trunk) = self.inbound_base("ext-did-0001");
        let mut e = 2000;
        let mut t = self.t0;
        let mut legs = Vec::new();
        let hops = if self.rng.random_bool(0.1) {
            10
        } else {
            self.rng.random_range(1..4)
        };
        for hop in 0..=hops {
            let ring = self.ring();
            let talk = self.rng.random_range(5..120);
            let last_unanswered = hop == hops && self.rng.random_bool(0.2);
            let disp = if last_unanswered {
                "NO ANSWER"
            } else {
                "ANSWERED"
            };
            let mut l = self.leg(&base, t, &e.to_string(), To::Ext(e), (ring, talk), disp);
            if hop > 0 {
                l.action_type = "TRANSFER".into();
                l.dcontext = "from-internal-xfer".into();
                l.session = format!("{t}{:06}-{e}", hop);
            }
            t = l.end();
            legs.push(l);
            e = self.other_ext(e);
        }
        Call {
            legs,
            grouped: true,
            intent: Self::intent("inbound", trunk, "answered", "transfer"),
        }
    }

    /// Parked call as in the UCM6302 capture: a Park leg (application), then a pickup by an
    /// extension; sometimes the caller hangs up while parked.
    fn park(&mut self) -> Call {
        let (base, trunk) = self.inbound_base("from-internal-xfer");
        let slot = self.rng.random_range(70..80u32).to_string();
        let parked = self.rng.random_range(5..90);
        let mut park = self.leg(
            &base,
            self.t0,
            &slot,
            To::App("Park", format!("default:{slot}"), "PARKEDCALL".into()),
            (0, parked),
            "ANSWERED",
        );
        park.dcontext = "from-internal-xfer".into();
        if self.rng.random_bool(0.25) {
            return Call {
                legs: vec![park],
                grouped: true,
                intent: Self::intent("inbound", trunk, "no_answer", "park-abandon"),
            };
        }
        let e = self.ext();
        let talk = self.talk();
        let mut pickup = self.leg(
            &base,
            self.t0 + parked,
            &e.to_string(),
            To::Ext(e),
            (0, talk),
            "ANSWERED",
        );
        pickup.lastapp = "ParkedCall".into();
        pickup.session = format!("{}{:06}-{e}", self.t0 + parked, 1);
        Call {
            legs: vec![park, pickup],
            grouped: true,
            intent: Self::intent("inbound", trunk, "answered", "park"),
        }
    }

    fn outbound(&mut self) -> Call {
        let a = self.ext();
        let base = self.base(&From::Ext(a), "from-internal", "Outbound");
        let (i, name) = self.outbound_trunk();
        let num = self.number();
        let ring = self.ring();
        let talk = self.talk();
        let (disp, outcome) = *[
            ("ANSWERED", "answered"),
            ("ANSWERED", "answered"),
            ("ANSWERED", "answered"),
            ("NO ANSWER", "no_answer"),
            ("BUSY", "busy"),
            ("CONGESTION", "failed"),
            ("FAILED", "failed"),
        ]
        .choose(self.rng)
        .unwrap_or(&("ANSWERED", "answered"));
        let mut leg = self.leg(&base, self.t0, &num, To::Trunk(i, name), (ring, talk), disp);
        leg.dcontext = "outbound-route-1".into();
        Self::flat(leg, Self::intent("outbound", name, outcome, "outbound"))
    }

    /// Trunk to trunk: a DID forwarded to a mobile through the outbound trunk.
    fn external(&mut self) -> Call {
        let (i, name) = self.inbound_trunk();
        let num = self.number();
        let base = self.base(&From::Trunk(i, name, num), "ext-did-0004", "External");
        let target = self.number();
        let (oi, oname) = TRUNKS[3];
        let ring = self.ring();
        let talk = self.talk();
        let (disp, outcome) = *[
            ("ANSWERED", "answered"),
            ("NO ANSWER", "no_answer"),
            ("BUSY", "busy"),
        ]
        .choose(self.rng)
        .unwrap_or(&("ANSWERED", "answered"));
        let leg = self.leg(
            &base,
            self.t0,
            &target,
            To::Trunk(oi, oname),
            (ring, talk),
            disp,
        );
        Self::flat(leg, Self::intent("external", name, outcome, "external"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_calls_other_seed_other_calls() {
        let a = calls_in_slot(7, 36 * 3600, (120.0, false), chrono_tz::UTC);
        let b = calls_in_slot(7, 36 * 3600, (120.0, false), chrono_tz::UTC);
        let c = calls_in_slot(8, 36 * 3600, (120.0, false), chrono_tz::UTC);
        let key = |v: &[Call]| {
            v.iter()
                .map(|c| (c.start(), c.legs.len(), c.legs[0].dst.clone()))
                .collect::<Vec<_>>()
        };
        assert!(!a.is_empty());
        assert_eq!(key(&a), key(&b));
        assert_ne!(key(&a), key(&c));
        assert!(a.windows(2).all(|w| w[0].start() <= w[1].start()));
        assert!(a
            .iter()
            .all(|c| (36 * 3600..37 * 3600).contains(&c.start())));
    }

    #[test]
    fn uniqueid_counts_unix_seconds_of_the_call_start() {
        use crate::clock::{from_secs, to_secs};
        use chrono::TimeZone;
        let berlin = chrono_tz::Europe::Berlin;
        // 2024-05-01 10:00 local.
        let slot = to_secs(
            chrono::NaiveDate::from_ymd_opt(2024, 5, 1)
                .unwrap()
                .and_hms_opt(10, 0, 0)
                .unwrap(),
        );
        let mut calls = calls_in_slot(3, slot, (120.0, false), berlin);
        assert!(!calls.is_empty());
        let epoch = |c: &Call| -> (i64, String) {
            let (e, seq) = c.legs[0].uniqueid.split_once('.').unwrap();
            assert!(c.legs.iter().all(|l| l.uniqueid == c.legs[0].uniqueid));
            (e.parse().unwrap(), seq.to_string())
        };
        for c in &calls {
            let utc = berlin
                .from_local_datetime(&from_secs(c.start()))
                .unwrap()
                .timestamp();
            assert_eq!(epoch(c).0, utc);
            assert_eq!(utc, c.start() - 7200, "CEST");
        }
        // A call placed after a clock step carries the stepped clock in its uniqueid too.
        let before = epoch(&calls[0]);
        calls[0].shift(-600, berlin);
        assert_eq!(epoch(&calls[0]), (before.0 - 600, before.1));
    }

    #[test]
    fn bursts_place_their_calls_evenly_with_the_outcome_asked() {
        use crate::render::{render, Layout};
        use crate::truth::classify;
        for ((outcome, trunk, disposition), start) in [
            (BurstOutcome::Missed, Some("groff"), "no_answer"),
            (BurstOutcome::Answered, Some("Telekom"), "answered"),
            (BurstOutcome::Abandoned, None, "no_answer"),
        ]
        .into_iter()
        .flat_map(|o| (0..40).map(move |k| (o, 1000 + k * 7919)))
        {
            let calls = burst(5, (outcome, trunk), start, (12, 600), chrono_tz::UTC).unwrap();
            assert_eq!(calls.len(), 12);
            let starts: Vec<i64> = calls.iter().map(Call::start).collect();
            assert_eq!(starts, (0..12).map(|k| start + k * 50).collect::<Vec<_>>());
            // Every call has ended within the burst's span plus the longest wait or talk.
            let longest = calls.iter().map(|c| c.end() - c.start()).max().unwrap();
            assert!(longest <= 330, "{outcome:?}: a call of {longest} s");
            let mut on = std::collections::BTreeMap::new();
            for c in &calls {
                let v: serde_json::Value =
                    serde_json::from_str(&render(c, 1, Layout::Ucm63xx)).unwrap();
                let got = classify(&v).unwrap();
                assert_eq!((got.direction, got.disposition), ("inbound", disposition));
                assert_eq!(got.trunk, c.intent.trunk);
                let visits: Vec<_> = got.groups.iter().map(|g| g.outcome).collect();
                let want: &[&str] = match outcome {
                    BurstOutcome::Abandoned => &["abandoned"],
                    _ => &[],
                };
                assert_eq!(visits, want, "{:?}", c.intent.scenario);
                *on.entry(got.trunk).or_insert(0) += 1;
            }
            match trunk {
                Some(t) => assert_eq!(on.into_iter().collect::<Vec<_>>(), [(t.to_string(), 12)]),
                None => assert!(on.values().all(|n| *n == 4), "{on:?}"),
            }
        }
        assert!(burst(
            5,
            (BurstOutcome::Missed, Some("nope")),
            0,
            (1, 60),
            chrono_tz::UTC
        )
        .unwrap_err()
        .contains("Telekom"));
    }

    #[test]
    fn nights_are_quiet() {
        let day: usize = (0..30)
            .map(|d| calls_in_slot(1, (d * 24 + 10) * 3600, (60.0, false), chrono_tz::UTC).len())
            .sum();
        let night: usize = (0..30)
            .map(|d| calls_in_slot(1, (d * 24 + 3) * 3600, (60.0, false), chrono_tz::UTC).len())
            .sum();
        assert!(day > 20 * night.max(1), "day {day} night {night}");
    }
}
