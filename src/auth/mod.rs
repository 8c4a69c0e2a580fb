//! Who may act on the box, and as what. Secretaries sign in on the front panel with a name
//! and PIN and get a cookie session; technicians present a token; commands run on the box
//! itself come over a Unix socket and are known by the kernel's peer credentials. PINs and
//! tokens are kept only as Argon2id hashes (ledger table `credentials`). Checking a secret
//! costs ~40 ms of CPU, so callers run these methods off the async runtime.

mod limiter;
mod secret;
mod sessions;

pub use limiter::{LockoutPolicy, Refusal, Scope, canonical as canonical_client};
pub use sessions::PanelSession;

use crate::ledger::{Ledger, LedgerError};
use limiter::{ALARM_AFTER_LOCKS, Limiter, NewLock};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sessions::Sessions;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Secretary,
    Technician,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Secretary => "secretary",
            Role::Technician => "technician",
        }
    }
}

/// How a person reached the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// Signed in on the front panel (cookie session).
    Panel,
    /// A technician token (`Authorization: Bearer`).
    Token,
    /// A command on the box, over the control socket, as this Unix user id.
    LocalSocket { uid: u32 },
}

/// What an accepted request presented, kept by long-lived streams (captions, status) so that
/// they can ask again whether it still holds: a removed person stops receiving at once.
#[derive(Debug, Clone)]
pub enum Credential {
    /// The control socket's peer credentials: the box's own root or service user.
    LocalSocket,
    /// A technician token, by its SHA-256 (the token itself is not kept).
    Token([u8; 32]),
    /// A panel session, by its cookie id.
    Panel(String),
}

/// Someone whose request was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub via: Via,
}

impl Principal {
    /// How the audit chain and the session chain name this person.
    pub fn describe(&self) -> String {
        match &self.via {
            Via::Panel => format!("{} (panel)", self.name),
            Via::Token => format!("{} (token)", self.name),
            Via::LocalSocket { uid } => format!("{} (local command, uid {uid})", self.name),
        }
    }
}

#[derive(Debug, Error)]
pub enum AuthError {
    #[error("wrong name or PIN ({0} tries left before the account is locked)")]
    WrongPin(u32),
    #[error("wrong name or PIN; the account is now locked for {} minutes", .0.as_secs().div_ceil(60))]
    NowLocked(Duration),
    #[error("this account is locked after too many wrong tries; try again in {} s", .0.as_secs().max(1))]
    Locked(Duration),
    #[error("too many sign-in attempts from this device; try again in {} s", .0.as_secs().max(1))]
    TooFast(Duration),
    #[error("wrong or revoked technician token")]
    WrongToken,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl AuthError {
    /// Seconds to wait before trying again, for `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AuthError::Locked(d) | AuthError::TooFast(d) | AuthError::NowLocked(d) => Some(*d),
            _ => None,
        }
    }
}

/// A person as listed to technicians (never the hash).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Person {
    pub name: String,
    pub role: Role,
    pub created: String,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub lockout: LockoutPolicy,
    pub session_idle: Duration,
    pub session_max: Duration,
}

impl AuthSettings {
    pub fn from_config(api: &crate::config::ApiConfig) -> AuthSettings {
        AuthSettings {
            lockout: LockoutPolicy {
                failures: api.lockout_failures,
                lock_for: Duration::from_secs(u64::from(api.lockout_minutes) * 60),
                max_lock: MAX_LOCK,
                per_client_per_minute: api.sign_in_per_minute as usize,
            },
            session_idle: Duration::from_secs(u64::from(api.session_idle_minutes) * 60),
            session_max: Duration::from_secs(u64::from(api.session_max_hours) * 3600),
        }
    }
}

pub struct Auth {
    ledger: Arc<Ledger>,
    /// Lockouts and session limits run on monotonic time.
    clocks: Arc<dyn crate::base::Clocks>,
    limiter: Mutex<Limiter>,
    sessions: Mutex<Sessions>,
    /// SHA-256 of tokens already checked against their Argon2id hash → who; in memory only,
    /// so that a technician's script does not pay 40 ms per request.
    verified_tokens: Mutex<HashMap<[u8; 32], (String, String)>>,
    /// Bumped whenever a person, a token or a panel session is removed, so that open streams
    /// check their credential again at once rather than at their next tick.
    revocations: tokio::sync::watch::Sender<u64>,
}

const TOKEN_PREFIX: &str = "cbt_";

/// The longest a lock-out lasts, however many came before it: long enough to make guessing
/// hopeless (a 6-digit PIN at a handful of tries a day), short enough that a secretary locked
/// out remotely by someone else gets back in the next day; the box's own screen is never
/// locked by remote tries.
const MAX_LOCK: Duration = Duration::from_secs(24 * 3600);

/// Shortest PIN: 6 digits (a million PINs; with lock-outs that double, years of guessing).
pub const PIN_DIGITS_MIN: usize = 6;

fn check_name(name: &str) -> Result<String, AuthError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 64 || n.chars().any(char::is_control) {
        return Err(AuthError::Invalid("a name is 1 to 64 printable characters".into()));
    }
    Ok(n.to_string())
}

fn check_pin(pin: &str) -> Result<(), AuthError> {
    if !(PIN_DIGITS_MIN..=12).contains(&pin.len()) || !pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthError::Invalid(format!("a PIN is {PIN_DIGITS_MIN} to 12 digits")));
    }
    Ok(())
}

impl Auth {
    /// Restores the lock-outs stored before a restart.
    pub fn new(
        ledger: Arc<Ledger>,
        settings: AuthSettings,
        clocks: Arc<dyn crate::base::Clocks>,
    ) -> Result<Auth, AuthError> {
        let mut limiter = Limiter::new(settings.lockout);
        let now = Duration::from_nanos(u64::try_from(clocks.wall().unix_nanos()).unwrap_or(0));
        // Lock-outs that ended a day ago are forgotten (`Limiter::failed` would forget them).
        let forget_before = i64::try_from(now.saturating_sub(limiter::FORGET_LOCKS_AFTER).as_secs()).unwrap_or(0);
        ledger.call_audit(move |w| w.forget_sign_in_locks(forget_before))?;
        for lock in ledger.reader()?.sign_in_locks()? {
            let at = |unix: i64| Duration::from_secs(u64::try_from(unix).unwrap_or(0));
            let scope = if lock.local { Scope::Local } else { Scope::Remote };
            // A clock set back (no RTC before NTP) must not make a stored lock-out last longer.
            let until = at(lock.locked_until_unix).min(now + settings.lockout.max_lock);
            limiter.restore(&lock.account, scope, lock.locks, until);
        }
        Ok(Auth {
            ledger,
            clocks,
            limiter: Mutex::new(limiter),
            sessions: Mutex::new(Sessions::new(settings.session_idle, settings.session_max)),
            verified_tokens: Mutex::default(),
            revocations: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Wall time since 1970, for lock-outs that must outlast a restart.
    fn wall(&self) -> Duration {
        Duration::from_nanos(u64::try_from(self.clocks.wall().unix_nanos()).unwrap_or(0))
    }

    /// A wrong secret for `account`: the error to answer with. A lock-out that begins is
    /// stored (and, after several in a row, raises the technicians' alarm).
    fn count_failure(&self, account: &str, client: Option<IpAddr>, wrong: AuthError) -> AuthError {
        let scope = Scope::of(client);
        let outcome = self.limiter.lock().failed(account, scope, self.wall());
        match outcome {
            Ok(left) => match wrong {
                AuthError::WrongPin(_) => AuthError::WrongPin(left),
                other => other,
            },
            Err(lock) => {
                self.store_lock(account, scope, lock);
                AuthError::NowLocked(lock.lasts)
            }
        }
    }

    fn store_lock(&self, account: &str, scope: Scope, lock: NewLock) {
        let local = scope == Scope::Local;
        let stored = crate::ledger::SignInLock {
            account: account.to_string(),
            local,
            locks: lock.in_a_row,
            locked_until_unix: i64::try_from(lock.until.as_secs()).unwrap_or(i64::MAX),
            last_lock_unix: i64::try_from(self.wall().as_secs()).unwrap_or(i64::MAX),
        };
        let alarm = (lock.in_a_row >= ALARM_AFTER_LOCKS).then(|| {
            format!(
                "{} sign-in of {} locked out {} times in a row (now for {} min): someone may be guessing \
                 its secret, or keeping its owner out",
                if local { "on-box" } else { "network" },
                crate::base::printable(account),
                lock.in_a_row,
                lock.lasts.as_secs().div_ceil(60)
            )
        });
        tracing::warn!(scope = ?scope, in_a_row = lock.in_a_row, minutes = lock.lasts.as_secs().div_ceil(60), "sign-in locked out");
        if let Err(e) = self.ledger.call_audit(move |w| w.save_sign_in_lock(&stored, alarm.as_deref())) {
            tracing::error!(error = %e, "could not store a sign-in lock-out; it holds until the next restart only");
        }
    }

    fn count_success(&self, account: &str, client: Option<IpAddr>) {
        let scope = Scope::of(client);
        if self.limiter.lock().succeeded(account, scope) {
            let account = account.to_string();
            let local = scope == Scope::Local;
            if let Err(e) = self.ledger.call_audit(move |w| w.clear_sign_in_lock(&account, local)) {
                tracing::error!(error = %e, "could not forget a stored sign-in lock-out");
            }
        }
    }

    /// Adds a secretary with a PIN, or gives an existing one a new PIN (their panel sessions end).
    pub fn set_secretary(&self, name: &str, pin: &str) -> Result<(), AuthError> {
        let name = check_name(name)?;
        check_pin(pin)?;
        let hash = secret::hash(pin);
        let id = secret::random_hex(6);
        let stored = name.clone();
        self.ledger.call(move |w| w.put_credential(&id, "secretary", &stored, &hash)).map_err(invalid_or_ledger)?;
        self.forget(&name);
        Ok(())
    }

    /// Adds a technician, or replaces their token; returns the new token, shown only now.
    pub fn issue_token(&self, name: &str) -> Result<String, AuthError> {
        let name = check_name(name)?;
        let id = secret::random_hex(6);
        let token = format!("{TOKEN_PREFIX}{id}_{}", secret::random_hex(32));
        let hash = secret::hash(&token);
        let stored = name.clone();
        self.ledger.call(move |w| w.put_credential(&id, "technician", &stored, &hash)).map_err(invalid_or_ledger)?;
        self.forget(&name);
        Ok(token)
    }

    /// Removes a person: their PIN or token stops working at once.
    pub fn remove(&self, name: &str) -> Result<bool, AuthError> {
        let stored = name.to_string();
        let existed = self.ledger.call(move |w| w.remove_credential(&stored))?;
        self.forget(name);
        Ok(existed)
    }

    fn forget(&self, name: &str) {
        self.sessions.lock().remove_person(name);
        self.verified_tokens.lock().retain(|_, (_, n)| n != name);
        self.revocations.send_modify(|generation| *generation += 1);
    }

    /// Whether what a request presented still admits it: the panel session is alive, the
    /// token was not renewed or its holder removed. The control socket always holds.
    pub fn is_current(&self, credential: &Credential) -> bool {
        match credential {
            Credential::LocalSocket => true,
            Credential::Token(digest) => self.verified_tokens.lock().contains_key(digest),
            Credential::Panel(id) => self.panel_session(id, false).is_some(),
        }
    }

    /// Changes whenever a credential may have been revoked (see `is_current`).
    pub fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    pub fn people(&self) -> Result<Vec<Person>, AuthError> {
        Ok(self
            .ledger
            .reader()?
            .credentials()?
            .into_iter()
            .map(|c| Person {
                role: if c.role == "technician" { Role::Technician } else { Role::Secretary },
                name: c.name,
                created: c.created_wall,
            })
            .collect())
    }

    /// Names the panel offers on its sign-in screen.
    pub fn secretary_names(&self) -> Result<Vec<String>, AuthError> {
        Ok(self.people()?.into_iter().filter(|p| p.role == Role::Secretary).map(|p| p.name).collect())
    }

    /// Checks a secretary's PIN; on success opens a panel session: (cookie id, CSRF token).
    pub fn sign_in(
        &self,
        name: &str,
        pin: &str,
        client: Option<IpAddr>,
    ) -> Result<(Principal, String, String), AuthError> {
        // A name no person can have is refused before it is counted or stored (its 400 is
        // audited within the bounds of `control::access::RefusalCounter`).
        let name = &check_name(name)?;
        let now = self.clocks.monotonic();
        self.limiter.lock().admit(name, client, now, self.wall()).map_err(refusal)?;
        let stored = self.ledger.reader()?.credential_by_name(name)?.filter(|c| c.role == "secretary");
        let ok = match &stored {
            Some(c) => secret::verify(pin, &c.secret_hash),
            None => {
                secret::verify_nothing(pin);
                false
            }
        };
        if !ok {
            // Only an account that exists is counted and locked: names nobody has would
            // otherwise make the limiter (and the ledger's lock-outs) grow without bound.
            // Names are public (the sign-in screen lists them), so this tells nothing.
            return Err(match stored {
                Some(_) => self.count_failure(name, client, AuthError::WrongPin(0)),
                None => AuthError::WrongPin(self.limiter.lock().failures_allowed().saturating_sub(1)),
            });
        }
        self.count_success(name, client);
        let principal = Principal { name: name.to_string(), role: Role::Secretary, via: Via::Panel };
        let (id, csrf) = self.sessions.lock().create(principal.clone(), now);
        Ok((principal, id, csrf))
    }

    /// The panel session behind a cookie; `action` restarts its idle time.
    pub fn panel_session(&self, id: &str, action: bool) -> Option<PanelSession> {
        self.sessions.lock().get(id, action, self.clocks.monotonic())
    }

    pub fn sign_out(&self, id: &str) {
        self.sessions.lock().remove(id);
        self.revocations.send_modify(|generation| *generation += 1);
    }

    pub fn session_idle(&self) -> Duration {
        self.sessions.lock().idle()
    }

    /// Checks a technician token. Wrong tokens count against the account they name and the
    /// client, like wrong PINs.
    pub fn technician(&self, token: &str, client: Option<IpAddr>) -> Result<Principal, AuthError> {
        let digest = crate::integrity::sha256(token.as_bytes());
        if let Some((_, name)) = self.verified_tokens.lock().get(&digest) {
            return Ok(Principal { name: name.clone(), role: Role::Technician, via: Via::Token });
        }
        let id = token.strip_prefix(TOKEN_PREFIX).and_then(|t| t.split_once('_')).map(|(id, _)| id).unwrap_or("");
        // An id this box could have issued (`secret::random_hex(6)`), or nothing to look up.
        let issued_form = id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit());
        let account = if issued_form { format!("token {id}") } else { "token (not one this box issues)".into() };
        self.limiter.lock().admit(&account, client, self.clocks.monotonic(), self.wall()).map_err(refusal)?;
        let stored = match issued_form {
            true => self.ledger.reader()?.credential_by_id(id)?.filter(|c| c.role == "technician"),
            false => None,
        };
        match stored {
            Some(c) if secret::verify(token, &c.secret_hash) => {
                self.count_success(&account, client);
                self.verified_tokens.lock().insert(digest, (c.id, c.name.clone()));
                Ok(Principal { name: c.name, role: Role::Technician, via: Via::Token })
            }
            Some(_) => Err(self.count_failure(&account, client, AuthError::WrongToken)),
            // A token of nobody locks nobody (see `sign_in`).
            None => {
                secret::verify_nothing(token);
                Err(AuthError::WrongToken)
            }
        }
    }
}

fn refusal(r: Refusal) -> AuthError {
    match r {
        Refusal::Locked(d) => AuthError::Locked(d),
        Refusal::TooFast(d) => AuthError::TooFast(d),
    }
}

fn invalid_or_ledger(e: LedgerError) -> AuthError {
    match e {
        LedgerError::Invalid(m) => AuthError::Invalid(m),
        e => AuthError::Ledger(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::{SimulatedClocks, WallTime};
    use crate::integrity::DeviceKey;

    fn settings() -> AuthSettings {
        AuthSettings {
            lockout: LockoutPolicy {
                failures: 2,
                lock_for: Duration::from_secs(60),
                max_lock: MAX_LOCK,
                per_client_per_minute: 1000,
            },
            session_idle: Duration::from_secs(600),
            session_max: Duration::from_secs(3600),
        }
    }

    /// Lock-outs are stored: a restarted box keeps them, they escalate, the third in a row
    /// raises the technicians' alarm, the box's own screen is never locked by the network,
    /// and signing in clears it all.
    #[test]
    fn lock_outs_outlast_a_restart_escalate_and_raise_an_alarm() {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(DeviceKey::create(&dir.path().join("device.key")).unwrap());
        let clocks = Arc::new(SimulatedClocks::new(WallTime::from_unix_nanos(1_800_000_000_000_000_000)));
        let ledger = Arc::new(Ledger::open(&dir.path().join("ledger.db"), key.clone(), clocks.clone()).unwrap());
        let auth = Auth::new(ledger.clone(), settings(), clocks.clone()).unwrap();
        auth.set_secretary("Aigerim", "482193").unwrap();
        assert!(matches!(auth.set_secretary("Dana", "4821"), Err(AuthError::Invalid(_))), "4 digits are too few");
        let remote: Option<IpAddr> = Some("198.51.100.4".parse().unwrap());
        let screen: Option<IpAddr> = Some("127.0.0.1".parse().unwrap());

        let mut lasted = Vec::new();
        for _ in 0..3 {
            assert!(matches!(auth.sign_in("Aigerim", "000000", remote), Err(AuthError::WrongPin(1))));
            match auth.sign_in("Aigerim", "111111", remote) {
                Err(AuthError::NowLocked(d)) => lasted.push(d.as_secs()),
                other => panic!("{:?}", other.map(|_| ())),
            }
            assert!(matches!(auth.sign_in("Aigerim", "482193", remote), Err(AuthError::Locked(_))));
            assert!(auth.sign_in("Aigerim", "482193", screen).is_ok(), "the box's own screen still signs in");
            clocks.advance(Duration::from_secs(lasted.last().copied().unwrap() + 1));
        }
        assert_eq!(lasted, [60, 120, 240]);
        let alarms = ledger.reader().unwrap().open_alarms().unwrap();
        assert_eq!(alarms.len(), 1, "{alarms:?}");
        assert_eq!((alarms[0].kind, alarms[0].subject.as_str()), (crate::ledger::AlarmKind::SignInLockouts, "Aigerim"));

        // A fourth lock-out, then a restart: still locked, and the next one is longer still.
        auth.sign_in("Aigerim", "000000", remote).unwrap_err();
        assert!(
            matches!(auth.sign_in("Aigerim", "111111", remote), Err(AuthError::NowLocked(d)) if d.as_secs() == 480)
        );
        drop(auth);
        let auth = Auth::new(ledger.clone(), settings(), clocks.clone()).unwrap();
        assert!(matches!(auth.sign_in("Aigerim", "482193", remote), Err(AuthError::Locked(d)) if d.as_secs() == 480));
        clocks.advance(Duration::from_secs(481));
        auth.sign_in("Aigerim", "000000", remote).unwrap_err();
        assert!(
            matches!(auth.sign_in("Aigerim", "111111", remote), Err(AuthError::NowLocked(d)) if d.as_secs() == 960)
        );
        clocks.advance(Duration::from_secs(961));
        assert!(auth.sign_in("Aigerim", "482193", remote).is_ok());
        assert!(ledger.reader().unwrap().sign_in_locks().unwrap().is_empty());
        assert!(ledger.reader().unwrap().open_alarms().unwrap().is_empty(), "signing in clears the alarm");
    }
}
