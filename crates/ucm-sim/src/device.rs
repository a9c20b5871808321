//! The PBX's own state beside its calls: trunk registration, phone registration, disks and the
//! last boot. Tests set it (through the handle or the admin endpoint) to drive a client's
//! status collectors; nothing in the traffic model changes it, and it does not change the
//! traffic either: calls keep using a trunk that is down.

use std::collections::BTreeMap;

use super::clock::SteadySecs;
use super::traffic::{EXTENSIONS, TRUNKS};

/// The trunk of `TRUNKS` that is a peer (no registration), as `listVoIPTrunk` has always said.
const PEER_TRUNK: u32 = 4;

#[derive(Debug, Clone, Default)]
pub struct TrunkState {
    /// As set by a test, in the wire's casing; None = up (`Registered`, or `OK` for a peer).
    pub status: Option<String>,
    pub out_of_service: bool,
}

#[derive(Debug, Clone)]
pub struct ExtState {
    pub registered: bool,
    pub out_of_service: bool,
}

#[derive(Debug, Clone)]
pub struct Partition {
    pub name: &'static str,
    pub total_kib: u64,
    pub used_kib: u64,
}

impl Partition {
    pub fn avail_kib(&self) -> u64 {
        self.total_kib.saturating_sub(self.used_kib)
    }

    /// Rounded up, as `df` does, so that a disk with anything on it never shows 0 % and a full
    /// one shows 100 % only when full.
    pub fn usage_percent(&self) -> u64 {
        if self.total_kib == 0 {
            return 0;
        }
        (u128::from(self.used_kib) * 100).div_ceil(u128::from(self.total_kib)) as u64
    }
}

/// How `listAllTrunk` counts a trunk in its `*_trunk_number` totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkClass {
    Available,
    Busy,
    Unavailable,
    Unmonitored,
}

#[derive(Debug, Clone)]
pub struct Device {
    /// In the order of `TRUNKS`.
    pub trunks: Vec<TrunkState>,
    pub extensions: BTreeMap<u32, ExtState>,
    pub storage: Vec<Partition>,
    /// Steady time of the last boot: what `up-time` counts from.
    pub booted_at: SteadySecs,
}

/// A stable few phones of each seed are unplugged, like in any office.
fn unplugged(ext: u32, seed: u64) -> bool {
    (u64::from(ext) ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60 < 2
}

pub fn trunk_type(index: u32) -> &'static str {
    if index == PEER_TRUNK {
        "peer"
    } else {
        "register"
    }
}

impl Device {
    pub fn new(seed: u64, booted_at: SteadySecs) -> Self {
        Device {
            trunks: vec![TrunkState::default(); TRUNKS.len()],
            extensions: EXTENSIONS
                .map(|e| {
                    (
                        e,
                        ExtState {
                            registered: !unplugged(e, seed),
                            out_of_service: false,
                        },
                    )
                })
                .collect(),
            // A UCM6302's small configuration partition and its data partition for recordings,
            // voicemail and CDRs.
            storage: vec![
                Partition {
                    name: "cfg",
                    total_kib: 524_288,
                    used_kib: 120_000,
                },
                Partition {
                    name: "data",
                    total_kib: 30_408_704,
                    used_kib: 3_145_728,
                },
            ],
            booted_at,
        }
    }

    pub fn trunk_mut(&mut self, name: &str) -> Result<&mut TrunkState, String> {
        match TRUNKS.iter().position(|(_, n)| *n == name) {
            Some(i) => Ok(&mut self.trunks[i]),
            None => Err(format!(
                "no trunk {name:?}; the trunks are {:?}",
                TRUNKS.map(|(_, n)| n)
            )),
        }
    }

    pub fn extension_mut(&mut self, ext: &str) -> Result<&mut ExtState, String> {
        ext.parse::<u32>()
            .ok()
            .and_then(|e| self.extensions.get_mut(&e))
            .ok_or_else(|| {
                format!(
                    "no extension {ext:?}; the extensions are {}-{}",
                    EXTENSIONS.start(),
                    EXTENSIONS.end()
                )
            })
    }

    pub fn partition_mut(&mut self, name: &str) -> Result<&mut Partition, String> {
        let names: Vec<&str> = self.storage.iter().map(|p| p.name).collect();
        self.storage
            .iter_mut()
            .find(|p| p.name == name)
            .ok_or_else(|| format!("no partition {name:?}; the partitions are {names:?}"))
    }

    /// The status string of the trunk at `TRUNKS[i]`, in the wire's casing.
    pub fn trunk_status(&self, i: usize) -> &str {
        match &self.trunks[i].status {
            Some(s) => s,
            None if trunk_type(TRUNKS[i].0) == "peer" => "OK",
            None => "Registered",
        }
    }

    /// Out-of-service trunks count as unavailable whatever their status; an up trunk is busy
    /// while a call under way has a channel on it.
    pub fn trunk_class(&self, i: usize, carrying_call: bool) -> TrunkClass {
        if self.trunks[i].out_of_service {
            return TrunkClass::Unavailable;
        }
        match self.trunk_status(i).to_ascii_lowercase().as_str() {
            "unmonitored" => TrunkClass::Unmonitored,
            "registered" | "ok" | "reachable" | "lagged" if carrying_call => TrunkClass::Busy,
            "registered" | "ok" | "reachable" | "lagged" => TrunkClass::Available,
            _ => TrunkClass::Unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trunks_are_up_until_set_otherwise() {
        let mut d = Device::new(1, 0);
        assert_eq!(d.trunk_status(0), "Registered");
        assert_eq!(d.trunk_status(3), "OK");
        assert_eq!(d.trunk_class(0, false), TrunkClass::Available);
        assert_eq!(d.trunk_class(0, true), TrunkClass::Busy);
        d.trunk_mut("Telekom").unwrap().status = Some("Rejected".into());
        assert_eq!(d.trunk_class(0, true), TrunkClass::Unavailable);
        d.trunk_mut("backup-sip").unwrap().status = Some("Unmonitored".into());
        assert_eq!(d.trunk_class(3, false), TrunkClass::Unmonitored);
        d.trunk_mut("groff").unwrap().out_of_service = true;
        assert_eq!(d.trunk_class(1, false), TrunkClass::Unavailable);
        assert!(d.trunk_mut("nope").is_err());
    }

    #[test]
    fn usage_rounds_up() {
        let p = |used_kib| Partition {
            name: "x",
            total_kib: 1000,
            used_kib,
        };
        assert_eq!(p(0).usage_percent(), 0);
        assert_eq!(p(1).usage_percent(), 1);
        assert_eq!(p(230).usage_percent(), 23);
        assert_eq!(p(999).usage_percent(), 100);
        assert_eq!(p(2000).avail_kib(), 0);
        let d = Device::new(1, 0);
        assert_eq!(d.storage[0].usage_percent(), 23);
    }

    #[test]
    fn some_phones_are_unplugged_and_most_are_not() {
        let d = Device::new(1, 0);
        let off = d.extensions.values().filter(|e| !e.registered).count();
        assert!((1..5).contains(&off), "{off}");
    }
}
