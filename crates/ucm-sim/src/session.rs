//! Challenge/login, cookies and the UCM's login security.
//!
//! All times are steady sim seconds, so tests expire cookies and lockouts with `advance()`, and a
//! step of the UCM's clock leaves sessions alone.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use md5::{Digest, Md5};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::clock::SteadySecs;
use super::CookieMode;

/// Outstanding challenges kept per user; older ones are forgotten like an expired challenge.
const MAX_CHALLENGES: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    Ok(String),
    /// -37, with the attempts left before the lockout.
    Denied {
        remain_num: u32,
    },
    /// -68, with the seconds left of the lockout.
    Locked {
        remain_time: u64,
    },
}

/// What a cookie names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieState {
    Live,
    /// Never issued, logged out, expired or invalidated.
    Dead,
    /// Killed by `SilentlyExpireAfterPages`: cdrapi answers it an empty list.
    Silenced,
}

#[derive(Debug, Clone, Copy)]
struct Session {
    created: SteadySecs,
    last_used: SteadySecs,
}

#[derive(Debug, Default, Clone, Copy)]
struct Failures {
    count: u32,
    locked_until: Option<SteadySecs>,
}

pub struct Sessions {
    username: String,
    users: u32,
    password: String,
    ttl: i64,
    mode: CookieMode,
    lockout_attempts: u32,
    lockout_secs: i64,
    rng: ChaCha8Rng,
    challenges: HashMap<String, VecDeque<String>>,
    cookies: HashMap<String, Session>,
    /// Cookies silenced by a fault; forgotten with `invalidate_all`.
    silenced: HashSet<String>,
    failures: HashMap<IpAddr, Failures>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password or live cookies.
        f.debug_struct("Sessions")
            .field("sessions", &self.cookies.len())
            .finish_non_exhaustive()
    }
}

pub fn token(challenge: &str, password: &str) -> String {
    let digest = Md5::digest(format!("{challenge}{password}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    pub fn new(cfg: &super::SimConfig) -> Self {
        Sessions {
            username: cfg.username.clone(),
            users: cfg.users.max(1),
            password: cfg.password.clone(),
            ttl: secs(cfg.cookie_ttl),
            mode: cfg.cookie_mode,
            lockout_attempts: cfg.lockout_attempts.max(1),
            lockout_secs: secs(cfg.lockout_duration),
            rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5E55_1015),
            challenges: HashMap::new(),
            cookies: HashMap::new(),
            silenced: HashSet::new(),
            failures: HashMap::new(),
        }
    }

    /// A 16-digit zero-padded decimal, as captured from a device.
    pub fn challenge(&mut self, user: &str) -> String {
        let c = format!(
            "{:016}",
            self.rng.random_range(0..10_000_000_000_000_000u64)
        );
        let list = self.challenges.entry(user.to_string()).or_default();
        list.push_back(c.clone());
        if list.len() > MAX_CHALLENGES {
            list.pop_front();
        }
        c
    }

    /// The configured user name, or one of its numbered siblings (`SimConfig::users`).
    fn is_user(&self, user: &str) -> bool {
        user == self.username
            || user
                .strip_prefix(self.username.as_str())
                .and_then(|r| r.strip_prefix('-'))
                .filter(|n| !n.starts_with('0'))
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n < self.users)
    }

    /// Checks `token == md5(challenge + password)` against the user's outstanding challenges;
    /// the matching challenge is consumed, so replaying a login fails.
    pub fn login(
        &mut self,
        ip: IpAddr,
        user: &str,
        token_given: &str,
        now: SteadySecs,
        force_fail: bool,
    ) -> LoginOutcome {
        let f = self.failures.entry(ip).or_default();
        if let Some(until) = f.locked_until {
            if now < until {
                return LoginOutcome::Locked {
                    remain_time: (until - now) as u64,
                };
            }
            *f = Failures::default();
        }
        let matched = self
            .is_user(user)
            .then(|| self.challenges.get_mut(user))
            .flatten()
            .and_then(|list| {
                let i = list
                    .iter()
                    .position(|c| token(c, &self.password) == token_given.to_ascii_lowercase())?;
                list.remove(i)
            });
        let f = self.failures.entry(ip).or_default();
        if matched.is_none() || force_fail {
            f.count += 1;
            let remain_num = self.lockout_attempts.saturating_sub(f.count);
            if remain_num == 0 {
                f.locked_until = Some(now + self.lockout_secs);
                f.count = 0;
                tracing::warn!(target: "ucm_sim", %ip, "login security: client locked out");
            }
            return LoginOutcome::Denied { remain_num };
        }
        *f = Failures::default();
        let cookie = format!(
            "sid{}-{}",
            self.rng.random_range(100_000_000..1_000_000_000u64),
            now
        );
        self.cookies.insert(
            cookie.clone(),
            Session {
                created: now,
                last_used: now,
            },
        );
        LoginOutcome::Ok(cookie)
    }

    /// What `cookie` names now; in sliding mode a live session is extended.
    pub fn state(&mut self, cookie: &str, now: SteadySecs) -> CookieState {
        if self.silenced.contains(cookie) {
            return CookieState::Silenced;
        }
        let Some(s) = self.cookies.get_mut(cookie) else {
            return CookieState::Dead;
        };
        let since = match self.mode {
            CookieMode::Absolute => s.created,
            CookieMode::Sliding => s.last_used,
        };
        if now - since >= self.ttl {
            self.cookies.remove(cookie);
            return CookieState::Dead;
        }
        s.last_used = now;
        CookieState::Live
    }

    pub fn logout(&mut self, cookie: &str) -> bool {
        self.cookies.remove(cookie).is_some()
    }

    pub fn invalidate_all(&mut self) {
        self.cookies.clear();
        self.silenced.clear();
    }

    /// Every open session dies without telling its client (`SilentlyExpireAfterPages`).
    pub fn silence_all(&mut self) {
        self.silenced.extend(self.cookies.drain().map(|(c, _)| c));
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimConfig;

    fn ip() -> IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    #[test]
    fn token_is_md5_of_challenge_and_password() {
        assert_eq!(
            token("0000001496038514", "secret"),
            format!("{:x}", Md5::digest(b"0000001496038514secret"))
        );
        assert_eq!(token("a", "b").len(), 32);
    }

    #[test]
    fn challenge_is_single_use() {
        let cfg = SimConfig::default();
        let mut s = Sessions::new(&cfg);
        let c = s.challenge("cdrapi");
        assert_eq!(c.len(), 16);
        let t = token(&c, &cfg.password);
        assert!(matches!(
            s.login(ip(), "cdrapi", &t, 0, false),
            LoginOutcome::Ok(_)
        ));
        assert_eq!(
            s.login(ip(), "cdrapi", &t, 0, false),
            LoginOutcome::Denied { remain_num: 4 }
        );
    }

    #[test]
    fn numbered_users_keep_their_own_challenges() {
        let cfg = SimConfig {
            users: 3,
            ..SimConfig::default()
        };
        let mut s = Sessions::new(&cfg);
        let mine = s.challenge("cdrapi-2");
        // Another user's challenges, past the number kept per user, do not push mine out.
        for _ in 0..MAX_CHALLENGES + 1 {
            s.challenge("cdrapi-1");
        }
        let ok = |s: &mut Sessions, user: &str, c: &str| {
            matches!(
                s.login(ip(), user, &token(c, &cfg.password), 0, false),
                LoginOutcome::Ok(_)
            )
        };
        assert!(ok(&mut s, "cdrapi-2", &mine));
        // Past the number of users, or spelled otherwise, a name is no user.
        for other in ["cdrapi-3", "cdrapi-02", "cdrapi2", "cdrapi-"] {
            let c = s.challenge(other);
            assert!(!ok(&mut s, other, &c), "{other}");
        }
    }

    #[test]
    fn absolute_cookie_expires_despite_use() {
        let cfg = SimConfig {
            cookie_mode: CookieMode::Absolute,
            ..SimConfig::default()
        };
        let mut s = Sessions::new(&cfg);
        let c = s.challenge("cdrapi");
        let LoginOutcome::Ok(cookie) = s.login(ip(), "cdrapi", &token(&c, &cfg.password), 0, false)
        else {
            panic!()
        };
        assert_eq!(s.state(&cookie, 599), CookieState::Live);
        assert_eq!(s.state(&cookie, 600), CookieState::Dead);
    }

    #[test]
    fn silenced_sessions_stay_silenced_until_invalidated() {
        let cfg = SimConfig::default();
        let mut s = Sessions::new(&cfg);
        let c = s.challenge("cdrapi");
        let LoginOutcome::Ok(cookie) = s.login(ip(), "cdrapi", &token(&c, &cfg.password), 0, false)
        else {
            panic!()
        };
        s.silence_all();
        assert_eq!(s.state(&cookie, 1), CookieState::Silenced);
        assert!(!s.logout(&cookie));
        s.invalidate_all();
        assert_eq!(s.state(&cookie, 1), CookieState::Dead);
    }
}
