//! Who may act on the box, and as what. Secretaries sign in on the front panel with a name
//! and PIN and get a cookie session; technicians present a token; commands run on the box
//! itself come over a Unix socket and are known by the kernel's peer credentials. PINs and
//! tokens are kept only as Argon2id hashes (ledger table `credentials`). Checking a secret
//! costs ~40 ms of CPU, so callers run these methods off the async runtime.

mod limiter;
mod secret;
mod sessions;

pub use limiter::{LockoutPolicy, Refusal};
pub use sessions::PanelSession;

use crate::ledger::{Ledger, LedgerError};
use limiter::Limiter;
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
}

const TOKEN_PREFIX: &str = "cbt_";

fn check_name(name: &str) -> Result<String, AuthError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 64 || n.chars().any(char::is_control) {
        return Err(AuthError::Invalid("a name is 1 to 64 printable characters".into()));
    }
    Ok(n.to_string())
}

fn check_pin(pin: &str) -> Result<(), AuthError> {
    if !(4..=12).contains(&pin.len()) || !pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthError::Invalid("a PIN is 4 to 12 digits".into()));
    }
    Ok(())
}

impl Auth {
    pub fn new(ledger: Arc<Ledger>, settings: AuthSettings, clocks: Arc<dyn crate::base::Clocks>) -> Auth {
        Auth {
            ledger,
            clocks,
            limiter: Mutex::new(Limiter::new(settings.lockout)),
            sessions: Mutex::new(Sessions::new(settings.session_idle, settings.session_max)),
            verified_tokens: Mutex::default(),
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
        self.sessions.lock().remove_person(&name);
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
        // A name no person can have is refused before it is counted, stored or audited.
        let name = &check_name(name)?;
        let now = self.clocks.monotonic();
        self.limiter.lock().admit(name, client, now).map_err(refusal)?;
        let stored = self.ledger.reader()?.credential_by_name(name)?.filter(|c| c.role == "secretary");
        let ok = match &stored {
            Some(c) => secret::verify(pin, &c.secret_hash),
            None => {
                secret::verify_nothing(pin);
                false
            }
        };
        let mut limiter = self.limiter.lock();
        if !ok {
            return Err(match limiter.failed(name, self.clocks.monotonic()) {
                Ok(left) => AuthError::WrongPin(left),
                Err(lock) => AuthError::NowLocked(lock),
            });
        }
        limiter.succeeded(name);
        drop(limiter);
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
        let account = format!("token {id}");
        self.limiter.lock().admit(&account, client, self.clocks.monotonic()).map_err(refusal)?;
        let stored = self.ledger.reader()?.credential_by_id(id)?.filter(|c| c.role == "technician");
        match stored {
            Some(c) if secret::verify(token, &c.secret_hash) => {
                self.limiter.lock().succeeded(&account);
                self.verified_tokens.lock().insert(digest, (c.id, c.name.clone()));
                Ok(Principal { name: c.name, role: Role::Technician, via: Via::Token })
            }
            found => {
                if found.is_none() {
                    secret::verify_nothing(token);
                }
                match self.limiter.lock().failed(&account, self.clocks.monotonic()) {
                    Ok(_) => Err(AuthError::WrongToken),
                    Err(lock) => Err(AuthError::NowLocked(lock)),
                }
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
