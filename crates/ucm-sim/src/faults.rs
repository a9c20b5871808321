//! Fault injection: misbehaviours a real UCM (or what sits in front of it) shows, switchable at
//! runtime so exporter tests can drive their error paths.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// HTTP 500 with an empty body.
    Http500,
    /// 200 with non-JSON text.
    Garbage,
    /// 200 with the normal JSON answer cut in half.
    Truncated,
    /// The connection is closed after the request was read, without an answer: a UCM (or a
    /// proxy before it) that drops the connection mid-request, after the TLS handshake.
    Dropped,
    /// The UCM's HTML "403 Forbidden" page (client IP not permitted), status 403.
    Html403,
    /// Answer normally after this delay.
    Delay(#[serde(with = "humantime_serde")] Duration),
    /// Envelope `{"response":{},"status":N}`, e.g. -45/-46/-57 (too frequent) or -9.
    Status(i64),
    /// Every login answers -37 (and counts towards the lockout, as a wrong password would).
    LoginFails,
    /// After N more cdrapi pages, all sessions become unknown (expiry in the middle of paging).
    InvalidateAfterPages(u32),
    /// After N more cdrapi pages, the sessions open then die silently: cdrapi answers them a bare
    /// empty `{"cdr_root":[]}` (a quiet PBX, not -6), other actions -6. A new login works.
    /// Pages are counted over all sessions, as for `InvalidateAfterPages`.
    SilentlyExpireAfterPages(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRule {
    pub fault: Fault,
    /// None = every action.
    #[serde(default)]
    pub action: Option<String>,
    /// None = until cleared.
    #[serde(default)]
    pub times: Option<u32>,
}

/// What the server does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Http500,
    Garbage,
    Truncated,
    Dropped,
    Html403,
    Delay(Duration),
    Status(i64),
    LoginFails,
}

/// What serving one cdrapi page set off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AfterPage {
    /// Drop every session (`InvalidateAfterPages`).
    pub invalidate: bool,
    /// Silence every open session (`SilentlyExpireAfterPages`).
    pub silence: bool,
}

#[derive(Debug, Default)]
pub struct Faults {
    rules: Vec<FaultRule>,
}

impl Faults {
    pub fn add(&mut self, rule: FaultRule) {
        self.rules.push(rule);
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// The effects that apply to a request for `action`, consuming one use of each rule taken.
    /// A delay combines with one other effect; otherwise the oldest matching rule wins.
    pub fn take(&mut self, action: &str) -> Vec<Effect> {
        let mut effects = Vec::new();
        let mut delayed = false;
        let mut decided = false;
        for rule in &mut self.rules {
            if rule.action.as_deref().is_some_and(|a| a != action) || rule.times == Some(0) {
                continue;
            }
            let effect = match &rule.fault {
                Fault::InvalidateAfterPages(_) | Fault::SilentlyExpireAfterPages(_) => continue,
                Fault::LoginFails if action != "login" => continue,
                Fault::Delay(d) if !delayed => {
                    delayed = true;
                    Effect::Delay(*d)
                }
                Fault::Delay(_) => continue,
                _ if decided => continue,
                Fault::Http500 => Effect::Http500,
                Fault::Garbage => Effect::Garbage,
                Fault::Truncated => Effect::Truncated,
                Fault::Dropped => Effect::Dropped,
                Fault::Html403 => Effect::Html403,
                Fault::Status(n) => Effect::Status(*n),
                Fault::LoginFails => Effect::LoginFails,
            };
            decided |= !matches!(effect, Effect::Delay(_));
            if let Some(t) = &mut rule.times {
                *t -= 1;
            }
            effects.push(effect);
        }
        self.rules.retain(|r| r.times != Some(0));
        effects
    }

    /// Counts one served cdrapi page against every page-counting rule; each fires once, when its
    /// count runs out.
    pub fn page_served(&mut self) -> AfterPage {
        let mut after = AfterPage::default();
        self.rules.retain_mut(|r| {
            let (n, fire) = match &mut r.fault {
                Fault::InvalidateAfterPages(n) => (n, &mut after.invalidate),
                Fault::SilentlyExpireAfterPages(n) => (n, &mut after.silence),
                _ => return true,
            };
            *n = n.saturating_sub(1);
            *fire |= *n == 0;
            *n > 0
        });
        after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_action_and_run_out() {
        let mut f = Faults::default();
        f.add(FaultRule {
            fault: Fault::Status(-45),
            action: Some("cdrapi".into()),
            times: Some(2),
        });
        f.add(FaultRule {
            fault: Fault::Http500,
            action: None,
            times: None,
        });
        assert_eq!(f.take("cdrapi"), [Effect::Status(-45)]);
        assert_eq!(f.take("login"), [Effect::Http500]);
        assert_eq!(f.take("cdrapi"), [Effect::Status(-45)]);
        assert_eq!(f.take("cdrapi"), [Effect::Http500]);
        f.clear();
        assert!(f.take("cdrapi").is_empty());
    }

    #[test]
    fn invalidate_after_pages_fires_once() {
        let mut f = Faults::default();
        f.add(FaultRule {
            fault: Fault::InvalidateAfterPages(2),
            action: None,
            times: None,
        });
        assert!(f.take("cdrapi").is_empty());
        assert!(!f.page_served().invalidate);
        assert!(f.page_served().invalidate);
        assert!(!f.page_served().invalidate);
    }

    #[test]
    fn silent_expiry_counts_its_own_pages() {
        let mut f = Faults::default();
        for fault in [
            Fault::SilentlyExpireAfterPages(1),
            Fault::InvalidateAfterPages(2),
        ] {
            f.add(FaultRule {
                fault,
                action: None,
                times: None,
            });
        }
        assert!(f.take("cdrapi").is_empty());
        let silence = AfterPage {
            invalidate: false,
            silence: true,
        };
        assert_eq!(f.page_served(), silence);
        let invalidate = AfterPage {
            invalidate: true,
            silence: false,
        };
        assert_eq!(f.page_served(), invalidate);
        assert_eq!(f.page_served(), AfterPage::default());
        let r: FaultRule =
            serde_json::from_str(r#"{"fault":{"SilentlyExpireAfterPages":3}}"#).unwrap();
        assert_eq!(r.fault, Fault::SilentlyExpireAfterPages(3));
    }

    #[test]
    fn rule_json_is_readable() {
        let r: FaultRule =
            serde_json::from_str(r#"{"fault":{"Delay":"2s"},"action":"cdrapi"}"#).unwrap();
        assert_eq!(r.fault, Fault::Delay(Duration::from_secs(2)));
        let r: FaultRule = serde_json::from_str(r#"{"fault":"Html403","times":1}"#).unwrap();
        assert_eq!(
            (r.fault, r.action, r.times),
            (Fault::Html403, None, Some(1))
        );
    }
}
