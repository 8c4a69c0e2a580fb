//! Cookie sessions of the front panel: a random id in an HttpOnly cookie, a CSRF token the
//! page sends back on every change, an idle limit renewed by actions (not by the panel's
//! own status polling, so an abandoned panel signs itself out) and an absolute limit.

use super::Principal;
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct PanelSession {
    pub principal: Principal,
    pub csrf: String,
    /// Monotonic times (`Clocks::monotonic`).
    created: Duration,
    last_action: Duration,
}

#[derive(Debug)]
pub struct Sessions {
    idle: Duration,
    max: Duration,
    by_id: HashMap<String, PanelSession>,
}

impl Sessions {
    pub fn new(idle: Duration, max: Duration) -> Sessions {
        Sessions { idle, max, by_id: HashMap::new() }
    }

    /// Returns the new session's id (for the cookie) and its CSRF token.
    pub fn create(&mut self, principal: Principal, now: Duration) -> (String, String) {
        self.by_id.retain(|_, s| !expired(s, self.idle, self.max, now));
        let id = super::secret::random_hex(32);
        let csrf = super::secret::random_hex(32);
        self.by_id.insert(id.clone(), PanelSession { principal, csrf: csrf.clone(), created: now, last_action: now });
        (id, csrf)
    }

    /// The live session with this id; an action (`renew`) restarts its idle time.
    pub fn get(&mut self, id: &str, renew: bool, now: Duration) -> Option<PanelSession> {
        let s = self.by_id.get_mut(id)?;
        if expired(s, self.idle, self.max, now) {
            self.by_id.remove(id);
            return None;
        }
        if renew {
            s.last_action = now;
        }
        Some(s.clone())
    }

    pub fn remove(&mut self, id: &str) {
        self.by_id.remove(id);
    }

    /// Ends every session of a person (removed, or given a new PIN).
    pub fn remove_person(&mut self, name: &str) {
        self.by_id.retain(|_, s| s.principal.name != name);
    }

    pub fn idle(&self) -> Duration {
        self.idle
    }
}

fn expired(s: &PanelSession, idle: Duration, max: Duration, now: Duration) -> bool {
    now.saturating_sub(s.last_action) >= idle || now.saturating_sub(s.created) >= max
}

#[cfg(test)]
mod tests {
    use super::super::{Role, Via};
    use super::*;

    fn who() -> Principal {
        Principal { name: "Aigerim".into(), role: Role::Secretary, via: Via::Panel }
    }

    #[test]
    fn sessions_expire_when_idle_or_too_old_and_actions_renew_them() {
        let mut s = Sessions::new(Duration::from_secs(600), Duration::from_secs(3600));
        let t = Duration::from_secs(1_000);
        let (id, csrf) = s.create(who(), t);
        assert_eq!(id.len(), 64);
        assert_eq!(s.get(&id, false, t + Duration::from_secs(500)).unwrap().csrf, csrf);
        // Reads do not renew: 500 + 200 s after the last action it is gone.
        let (id2, _) = s.create(who(), t);
        assert!(s.get(&id2, true, t + Duration::from_secs(500)).is_some());
        assert!(s.get(&id, false, t + Duration::from_secs(700)).is_none(), "idle");
        assert!(s.get(&id2, true, t + Duration::from_secs(1000)).is_some(), "renewed at 500 s");
        let mut at = t + Duration::from_secs(1000);
        while at < t + Duration::from_secs(3500) {
            at += Duration::from_secs(500);
            assert!(s.get(&id2, true, at).is_some());
        }
        assert!(s.get(&id2, true, t + Duration::from_secs(3600)).is_none(), "absolute limit");
        assert!(s.get("nonsense", false, t).is_none());
    }

    #[test]
    fn removing_a_person_ends_their_sessions() {
        let mut s = Sessions::new(Duration::from_secs(600), Duration::from_secs(3600));
        let t = Duration::from_secs(1_000);
        let (id, _) = s.create(who(), t);
        s.remove_person("Aigerim");
        assert!(s.get(&id, false, t).is_none());
    }
}
