//! Sign-in throttling: an account locks after a run of wrong PINs or tokens, each lock-out in
//! a row twice as long as the one before (kept in the ledger, so a restart does not reset
//! it); one client, or one IPv6 /64, may only try so often. Clients on the box itself (its
//! touchscreen, on loopback) are counted apart from clients over the network, so a guesser on
//! the network can lock a secretary out of remote sign-in but never out of the box's own
//! screen. Pure logic over given times, so it is tested without waiting.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct LockoutPolicy {
    /// Consecutive failures of one account that lock it.
    pub failures: u32,
    /// How long the first lock-out lasts; each one in a row lasts twice as long.
    pub lock_for: Duration,
    /// The longest a lock-out lasts, however many came before.
    pub max_lock: Duration,
    /// Attempts one client may make per minute, right or wrong.
    pub per_client_per_minute: usize,
}

/// Lock-outs in a row from which technicians get an alarm.
pub const ALARM_AFTER_LOCKS: u32 = 3;

/// A day without a lock-out (counted from when the last one ended) forgets the earlier ones.
pub const FORGET_LOCKS_AFTER: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The account is locked for this much longer.
    Locked(Duration),
    /// This client tried too often; it may try again after this.
    TooFast(Duration),
}

/// Where an attempt comes from: the box itself (loopback, or the control socket) or the
/// network. Each account has a count and a lock for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Local,
    Remote,
}

impl Scope {
    pub fn of(client: Option<IpAddr>) -> Scope {
        let on_the_box = match client {
            None => true,
            Some(IpAddr::V4(v4)) => v4.is_loopback(),
            Some(IpAddr::V6(v6)) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        };
        if on_the_box { Scope::Local } else { Scope::Remote }
    }
}

/// A lock-out that just began: how long it lasts and how many ran in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewLock {
    pub lasts: Duration,
    pub in_a_row: u32,
    /// Wall time (since 1970) it ends.
    pub until: Duration,
}

#[derive(Debug, Default, Clone)]
struct Account {
    /// Failures since the last lock-out began (none can be counted while it lasts: `admit`
    /// refuses first).
    failures: u32,
    /// Lock-outs in a row.
    locks: u32,
    /// When the latest lock-out ends (or ended): wall time since 1970.
    locked_until: Option<Duration>,
}

#[derive(Debug)]
pub struct Limiter {
    policy: LockoutPolicy,
    accounts: HashMap<(String, Scope), Account>,
    clients: HashMap<IpAddr, VecDeque<Duration>>,
}

const MINUTE: Duration = Duration::from_secs(60);

/// The address a client is limited by: IPv4 as it is (IPv4-mapped IPv6 too), IPv6 by its /64,
/// since one subscriber usually holds a whole /64 and could change address at will.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(std::net::Ipv6Addr::from(prefix))
            }
        },
    }
}

impl Limiter {
    pub fn new(policy: LockoutPolicy) -> Limiter {
        Limiter { policy, accounts: HashMap::new(), clients: HashMap::new() }
    }

    /// A lock-out stored before a restart (wall time since 1970).
    pub fn restore(&mut self, account: &str, scope: Scope, locks: u32, locked_until: Duration) {
        self.accounts
            .insert((account.to_string(), scope), Account { failures: 0, locks, locked_until: Some(locked_until) });
    }

    /// Wrong secrets in a row that lock an account.
    pub fn failures_allowed(&self) -> u32 {
        self.policy.failures
    }

    /// Called before a secret is checked; counts the attempt against the client. `now` is
    /// monotonic (the per-minute window), `wall` the wall time since 1970 (lock-outs).
    pub fn admit(
        &mut self,
        account: &str,
        client: Option<IpAddr>,
        now: Duration,
        wall: Duration,
    ) -> Result<(), Refusal> {
        let scope = Scope::of(client);
        if let Some(a) = self.accounts.get_mut(&(account.to_string(), scope))
            && let Some(until) = a.locked_until
            && until > wall
        {
            // The wall clock set back must not lengthen a lock-out beyond the longest.
            let left = (until - wall).min(self.policy.max_lock);
            a.locked_until = Some(wall + left);
            return Err(Refusal::Locked(left));
        }
        if let Some(ip) = client.map(canonical) {
            let recent = self.clients.entry(ip).or_default();
            while recent.front().is_some_and(|t| now.saturating_sub(*t) >= MINUTE) {
                recent.pop_front();
            }
            if recent.is_empty() {
                // Clients whose minute has passed are dropped now and then, not kept for ever.
                let minute_ago = now.saturating_sub(MINUTE);
                if self.clients.len() > 1024 {
                    self.clients.retain(|_, r| r.back().is_some_and(|t| *t > minute_ago));
                }
            }
            let recent = self.clients.entry(ip).or_default();
            if recent.len() >= self.policy.per_client_per_minute {
                let oldest = *recent.front().expect("non-empty at the limit");
                return Err(Refusal::TooFast(MINUTE - now.saturating_sub(oldest)));
            }
            recent.push_back(now);
        }
        Ok(())
    }

    /// A wrong secret: how many tries are left before the lock, or the lock that began.
    pub fn failed(&mut self, account: &str, scope: Scope, wall: Duration) -> Result<u32, NewLock> {
        let a = self.accounts.entry((account.to_string(), scope)).or_default();
        if a.locks > 0 && a.locked_until.is_some_and(|u| wall.saturating_sub(u) >= FORGET_LOCKS_AFTER) {
            a.locks = 0;
        }
        a.failures += 1;
        if a.failures < self.policy.failures {
            return Ok(self.policy.failures - a.failures);
        }
        a.failures = 0;
        a.locks += 1;
        let doubled = self.policy.lock_for.saturating_mul(1u32 << (a.locks - 1).min(20));
        let lasts = doubled.min(self.policy.max_lock);
        a.locked_until = Some(wall + lasts);
        Err(NewLock { lasts, in_a_row: a.locks, until: wall + lasts })
    }

    /// The right secret: forgets the account's failures and lock-outs in this scope. Returns
    /// whether there were lock-outs to forget (then the stored ones go too).
    pub fn succeeded(&mut self, account: &str, scope: Scope) -> bool {
        self.accounts.remove(&(account.to_string(), scope)).is_some_and(|a| a.locks > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LockoutPolicy {
        LockoutPolicy {
            failures: 3,
            lock_for: Duration::from_secs(300),
            max_lock: Duration::from_secs(3600),
            per_client_per_minute: 5,
        }
    }

    const REMOTE: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7)));

    #[test]
    fn an_account_locks_after_consecutive_failures_and_unlocks_later() {
        let mut l = Limiter::new(policy());
        let t = Duration::from_secs(1_000);
        let s = Scope::Remote;
        assert_eq!(l.failed("aigerim", s, t), Ok(2));
        assert_eq!(l.failed("aigerim", s, t), Ok(1));
        assert_eq!(
            l.failed("aigerim", s, t),
            Err(NewLock { lasts: Duration::from_secs(300), in_a_row: 1, until: t + Duration::from_secs(300) })
        );
        let at = t + Duration::from_secs(100);
        assert_eq!(l.admit("aigerim", REMOTE, at, at), Err(Refusal::Locked(Duration::from_secs(200))));
        assert_eq!(l.admit("dana", REMOTE, at, at), Ok(()), "other accounts are unaffected");
        let later = t + Duration::from_secs(301);
        assert_eq!(l.admit("aigerim", REMOTE, later, later), Ok(()));
        assert_eq!(l.failed("aigerim", s, later), Ok(2), "the count starts again after a lock");
    }

    #[test]
    fn lock_outs_in_a_row_double_up_to_the_longest_and_a_day_forgets_them() {
        let mut l = Limiter::new(policy());
        let mut t = Duration::from_secs(1_000);
        let mut lasted = Vec::new();
        for _ in 0..5 {
            l.failed("a", Scope::Remote, t).unwrap();
            l.failed("a", Scope::Remote, t).unwrap();
            let lock = l.failed("a", Scope::Remote, t).unwrap_err();
            lasted.push((lock.lasts.as_secs(), lock.in_a_row));
            t = lock.until + Duration::from_secs(1);
        }
        assert_eq!(lasted, [(300, 1), (600, 2), (1200, 3), (2400, 4), (3600, 5)]);
        // Just under a day after the last one ended: still in a row.
        t += Duration::from_secs(24 * 3600 - 10);
        l.failed("a", Scope::Remote, t).unwrap();
        l.failed("a", Scope::Remote, t).unwrap();
        let lock = l.failed("a", Scope::Remote, t).unwrap_err();
        assert_eq!(lock.in_a_row, 6);
        t = lock.until + Duration::from_secs(24 * 3600);
        l.failed("a", Scope::Remote, t).unwrap();
        l.failed("a", Scope::Remote, t).unwrap();
        assert_eq!(l.failed("a", Scope::Remote, t).unwrap_err().in_a_row, 1);
    }

    #[test]
    fn a_remote_guesser_cannot_lock_the_box_own_screen_out() {
        let mut l = Limiter::new(policy());
        let t = Duration::from_secs(1_000);
        for _ in 0..3 {
            let _ = l.failed("aigerim", Scope::of(REMOTE), t);
        }
        assert!(matches!(l.admit("aigerim", REMOTE, t, t), Err(Refusal::Locked(_))));
        let loopback = Some("127.0.0.1".parse().unwrap());
        assert_eq!(Scope::of(loopback), Scope::Local);
        assert_eq!(Scope::of(Some("::1".parse().unwrap())), Scope::Local);
        assert_eq!(Scope::of(Some("::ffff:127.0.0.1".parse().unwrap())), Scope::Local);
        assert_eq!(l.admit("aigerim", loopback, t, t), Ok(()));
        assert!(!l.succeeded("aigerim", Scope::Local), "the local scope had no lock-outs");
        assert!(matches!(l.admit("aigerim", REMOTE, t, t), Err(Refusal::Locked(_))), "still locked remotely");
    }

    #[test]
    fn a_stored_lock_out_holds_after_a_restart() {
        let mut l = Limiter::new(policy());
        let t = Duration::from_secs(10_000);
        l.restore("a", Scope::Remote, 2, t + Duration::from_secs(60));
        assert_eq!(l.admit("a", REMOTE, Duration::ZERO, t), Err(Refusal::Locked(Duration::from_secs(60))));
        let later = t + Duration::from_secs(61);
        for _ in 0..2 {
            l.failed("a", Scope::Remote, later).unwrap();
        }
        assert_eq!(l.failed("a", Scope::Remote, later).unwrap_err().in_a_row, 3, "and keeps escalating");
        assert!(l.succeeded("a", Scope::Remote));
    }

    #[test]
    fn success_resets_the_count() {
        let mut l = Limiter::new(policy());
        let t = Duration::from_secs(1_000);
        l.failed("a", Scope::Remote, t).unwrap();
        l.failed("a", Scope::Remote, t).unwrap();
        l.succeeded("a", Scope::Remote);
        assert_eq!(l.failed("a", Scope::Remote, t), Ok(2));
    }

    #[test]
    fn a_client_is_slowed_down_whatever_accounts_it_tries_and_ipv6_by_its_64() {
        let mut l = Limiter::new(policy());
        let t = Duration::from_secs(1_000);
        for i in 0..5 {
            let at = t + Duration::from_secs(i);
            assert_eq!(l.admit(&format!("user{i}"), REMOTE, at, at), Ok(()));
        }
        let at = t + Duration::from_secs(10);
        assert_eq!(l.admit("user9", REMOTE, at, at), Err(Refusal::TooFast(Duration::from_secs(50))));
        assert_eq!(l.admit("user9", Some("192.0.2.8".parse().unwrap()), t, t), Ok(()));
        let at = t + Duration::from_secs(61);
        assert_eq!(l.admit("user9", REMOTE, at, at), Ok(()));

        // Every address of one /64 is one client; another /64 is another.
        for i in 0..5 {
            let ip = format!("2001:db8:1:2::{:x}", i + 1).parse().unwrap();
            assert_eq!(l.admit("x", Some(ip), t, t), Ok(()));
        }
        let same_64 = Some("2001:db8:1:2:ffff::9".parse().unwrap());
        assert!(matches!(l.admit("x", same_64, t, t), Err(Refusal::TooFast(_))));
        assert_eq!(l.admit("x", Some("2001:db8:1:3::1".parse().unwrap()), t, t), Ok(()));
        assert_eq!(canonical("::ffff:192.0.2.7".parse().unwrap()), REMOTE.unwrap());
    }
}
