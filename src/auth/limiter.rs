//! Sign-in throttling: a person's account locks after a run of wrong PINs or tokens, and one
//! client may only try so often. Pure logic over monotonic time (`Clocks::monotonic`), so it is
//! tested without waiting.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct LockoutPolicy {
    /// Consecutive failures of one account that lock it.
    pub failures: u32,
    /// How long a locked account refuses even the right PIN.
    pub lock_for: Duration,
    /// Attempts one client may make per minute, right or wrong.
    pub per_client_per_minute: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The account is locked for this much longer.
    Locked(Duration),
    /// This client tried too often; it may try again after this.
    TooFast(Duration),
}

#[derive(Debug, Default)]
struct Account {
    failures: u32,
    locked_until: Option<Duration>,
}

#[derive(Debug)]
pub struct Limiter {
    policy: LockoutPolicy,
    accounts: HashMap<String, Account>,
    clients: HashMap<IpAddr, VecDeque<Duration>>,
}

const MINUTE: Duration = Duration::from_secs(60);

impl Limiter {
    pub fn new(policy: LockoutPolicy) -> Limiter {
        Limiter { policy, accounts: HashMap::new(), clients: HashMap::new() }
    }

    /// Called before a secret is checked; counts the attempt against the client.
    pub fn admit(&mut self, account: &str, client: Option<IpAddr>, now: Duration) -> Result<(), Refusal> {
        if let Some(until) = self.accounts.get(account).and_then(|a| a.locked_until)
            && until > now
        {
            return Err(Refusal::Locked(until - now));
        }
        if let Some(ip) = client {
            let recent = self.clients.entry(ip).or_default();
            while recent.front().is_some_and(|t| now.saturating_sub(*t) >= MINUTE) {
                recent.pop_front();
            }
            if recent.len() >= self.policy.per_client_per_minute {
                let oldest = *recent.front().expect("non-empty at the limit");
                return Err(Refusal::TooFast(MINUTE - now.saturating_sub(oldest)));
            }
            recent.push_back(now);
        }
        Ok(())
    }

    /// A wrong secret: returns how many tries are left before the lock, or the lock's length.
    pub fn failed(&mut self, account: &str, now: Duration) -> Result<u32, Duration> {
        let a = self.accounts.entry(account.to_string()).or_default();
        if a.locked_until.is_some_and(|u| u <= now) {
            *a = Account::default();
        }
        a.failures += 1;
        if a.failures >= self.policy.failures {
            a.locked_until = Some(now + self.policy.lock_for);
            Err(self.policy.lock_for)
        } else {
            Ok(self.policy.failures - a.failures)
        }
    }

    pub fn succeeded(&mut self, account: &str) {
        self.accounts.remove(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LockoutPolicy {
        LockoutPolicy { failures: 3, lock_for: Duration::from_secs(300), per_client_per_minute: 5 }
    }

    #[test]
    fn an_account_locks_after_consecutive_failures_and_unlocks_later() {
        let mut l = Limiter::new(policy());
        let t = Duration::from_secs(1_000);
        assert_eq!(l.failed("aigerim", t), Ok(2));
        assert_eq!(l.failed("aigerim", t), Ok(1));
        assert_eq!(l.failed("aigerim", t), Err(Duration::from_secs(300)));
        assert_eq!(
            l.admit("aigerim", None, t + Duration::from_secs(100)),
            Err(Refusal::Locked(Duration::from_secs(200)))
        );
        assert_eq!(l.admit("dana", None, t), Ok(()), "other accounts are unaffected");
        let later = t + Duration::from_secs(301);
        assert_eq!(l.admit("aigerim", None, later), Ok(()));
        assert_eq!(l.failed("aigerim", later), Ok(2), "the count starts again after a lock");
    }

    #[test]
    fn success_resets_the_count() {
        let mut l = Limiter::new(policy());
        let t = Duration::from_secs(1_000);
        l.failed("a", t).unwrap();
        l.failed("a", t).unwrap();
        l.succeeded("a");
        assert_eq!(l.failed("a", t), Ok(2));
    }

    #[test]
    fn a_client_is_slowed_down_whatever_accounts_it_tries() {
        let mut l = Limiter::new(policy());
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let t = Duration::from_secs(1_000);
        for i in 0..5 {
            assert_eq!(l.admit(&format!("user{i}"), Some(ip), t + Duration::from_secs(i)), Ok(()));
        }
        assert_eq!(
            l.admit("user9", Some(ip), t + Duration::from_secs(10)),
            Err(Refusal::TooFast(Duration::from_secs(50)))
        );
        assert_eq!(l.admit("user9", Some("192.0.2.8".parse().unwrap()), t), Ok(()));
        assert_eq!(l.admit("user9", Some(ip), t + Duration::from_secs(61)), Ok(()));
    }
}
