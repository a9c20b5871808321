//! The values the counting rules produce and share: the label values of the call series, which
//! numbers are the PBX's own extensions, and the outcome of one leg. Both rule sets, calls
//! (`classify`) and queue, ring group and IVR visits (`groups`), build on these, so neither
//! needs the other's internals.

use std::sync::Arc;

use regex::Regex;

use super::parse::Leg;

/// Which dialled/dialling numbers are the PBX's own extensions, i.e. may become `extension` label values.
#[derive(Debug, Clone)]
pub struct ExtensionPattern {
    /// `None` for [`Self::DEFAULT`], checked by hand: it runs several times per leg, the regex
    /// engine's per-search setup costs more than the check itself, and a compiled regex and its
    /// caches are kilobytes that a fleet of a thousand targets would hold a thousand times.
    re: Option<Arc<Regex>>,
}

impl ExtensionPattern {
    /// The documented default of `extensions.pattern`.
    pub const DEFAULT: &'static str = "^[0-9]{2,7}$";

    pub fn new(pattern: &str) -> Result<Self, regex::Error> {
        if pattern == Self::DEFAULT {
            return Ok(Self { re: None });
        }
        Regex::new(pattern).map(|re| Self {
            re: Some(Arc::new(re)),
        })
    }

    /// The pattern as written, so that two settings can be compared.
    pub fn as_str(&self) -> &str {
        self.re.as_ref().map_or(Self::DEFAULT, |re| re.as_str())
    }

    /// Trunk channels (`trunk_N`) are excluded whatever the pattern, so that a permissive pattern cannot turn
    /// trunks into extensions.
    pub fn is_local(&self, ext: &str) -> bool {
        let Some(re) = &self.re else {
            // `^[0-9]{2,7}$`: Rust's `$` matches only at the very end, so no trailing newline.
            return (2..=7).contains(&ext.len()) && ext.bytes().all(|c| c.is_ascii_digit());
        };
        let trunk = ext
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case("trunk_"));
        !ext.is_empty() && !trunk && re.is_match(ext)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Direction {
    Inbound,
    Outbound,
    Internal,
    /// Trunk to trunk.
    External,
}

impl Direction {
    pub const ALL: [Direction; 4] = [
        Direction::Inbound,
        Direction::Outbound,
        Direction::Internal,
        Direction::External,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Internal => "internal",
            Direction::External => "external",
        }
    }

    /// The UCM's `userfield` class; `None` for empty or unknown values (2013-era firmware wrote `EXT`).
    pub(super) fn from_userfield(s: &str) -> Option<Self> {
        let s = s.trim_ascii();
        Self::ALL
            .into_iter()
            .find(|d| s.eq_ignore_ascii_case(d.as_str()))
    }
}

/// Declared worst first so that the derived `Ord` is the "best outcome" order of docs/design.md §6 and `max` picks it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Disposition {
    Failed,
    Busy,
    NoAnswer,
    Voicemail,
    Answered,
}

impl Disposition {
    /// Best first, the order in which docs/design.md §6 lists them.
    pub const ALL: [Disposition; 5] = [
        Disposition::Answered,
        Disposition::Voicemail,
        Disposition::NoAnswer,
        Disposition::Busy,
        Disposition::Failed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Disposition::Answered => "answered",
            Disposition::Voicemail => "voicemail",
            Disposition::NoAnswer => "no_answer",
            Disposition::Busy => "busy",
            Disposition::Failed => "failed",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Role {
    Caller,
    Callee,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Caller, Role::Callee];

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Caller => "caller",
            Role::Callee => "callee",
        }
    }
}

impl Leg<'_> {
    /// Voicemail legs are ANSWERED by the UCM itself, so they must not count as a person answering.
    pub fn is_voicemail(&self) -> bool {
        self.lastapp.trim_ascii().eq_ignore_ascii_case("VoiceMail")
            || self.action_type.trim_ascii().eq_ignore_ascii_case("VM")
    }

    /// This leg's outcome under the counting rules; `Answered` means answered by a person: an IVR, queue
    /// music or park slot also reports ANSWERED, but without a `dstchannel`.
    pub fn outcome(&self) -> Disposition {
        let disposition = self.disposition.trim_ascii();
        if disposition.eq_ignore_ascii_case("ANSWERED") {
            if self.is_voicemail() {
                Disposition::Voicemail
            } else if !self.dstchannel.trim_ascii().is_empty() {
                Disposition::Answered
            } else {
                Disposition::NoAnswer
            }
        } else if disposition.eq_ignore_ascii_case("NO ANSWER") {
            Disposition::NoAnswer
        } else if disposition.eq_ignore_ascii_case("BUSY") {
            Disposition::Busy
        } else {
            Disposition::Failed
        }
    }
}
