//! Provisioning a box: the data layout, the device key, the configuration, and the device's
//! registration (public key and signed device info) in central storage; the preflight
//! `check` (with the unit's network rules against the configuration); the inventory of
//! capture devices.

mod check;
mod devices;
mod network;

pub use check::{Probed, gstreamer_elements, preflight, probe_network};
pub use devices::{AudioInputInfo, CameraInfo, Inventory, discover, profile_snippet};
pub use network::check_network;

use crate::base::{Clocks, WallTime};
use crate::config::{self, Config};
use crate::integrity::{DeviceKey, KeyError, PublicKey, SignedDoc};
use crate::upload::{self, UploadError};
use serde::Serialize;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ProvisionError {
    #[error(
        "this box already has a device key {key_id} at {path}; provisioning again would change the identity \
         that signs its record. Use --force only to replace it (the old key signs the hand-over, then is destroyed)"
    )]
    KeyExists { path: PathBuf, key_id: String },
    #[error("{path} exists; use --force to replace it")]
    ConfigExists { path: PathBuf },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("--owner {name}: no such user on this system")]
    NoSuchUser { name: String },
    #[error("--owner {name}: only root can give the box's files to another user")]
    OwnerNeedsRoot { name: String },
    #[error("{}: cannot give it to {owner} ({source}); only root can hand files to the service user", path.display())]
    Chown { path: PathBuf, owner: String, source: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ProvisionError + '_ {
    move |source| ProvisionError::Io { path: path.to_path_buf(), source }
}

#[derive(Debug, Clone)]
pub struct ProvisionRequest {
    /// `/` on a box; a scratch folder for a dry run or a test.
    pub root: PathBuf,
    pub court: String,
    pub room: String,
    pub hw_profile: PathBuf,
    pub store_url: Option<String>,
    pub endpoint: Option<String>,
    pub credentials_file: Option<PathBuf>,
    pub force: bool,
    /// Who the data folder, the key and the configuration are given to; `None` leaves them
    /// with the user who provisions (a scratch root for a trial or a test).
    pub owner: Option<Owner>,
}

/// The user the service runs as, who must own its key, its data and its configuration (the
/// daemon reads its key and rewrites its configuration on `PUT /api/v1/config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// The service user the Debian package creates.
pub const SERVICE_USER: &str = "courtbox";

impl Owner {
    /// `--owner NAME`, with that user's own group.
    pub fn named(name: &str) -> Result<Owner, ProvisionError> {
        match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => Ok(Owner { name: u.name, uid: u.uid.as_raw(), gid: u.gid.as_raw() }),
            _ => Err(ProvisionError::NoSuchUser { name: name.to_string() }),
        }
    }

    /// Whom provisioning gives the files to: the `--owner` named; else, when root provisions
    /// the real box (`--root /`) and the service user exists, that user. A scratch root keeps
    /// the provisioning user's ownership: its uids need not be this system's.
    pub fn for_request(requested: Option<&str>, root: &Path, euid: u32) -> Result<Option<Owner>, ProvisionError> {
        match requested {
            Some(name) => {
                let owner = Owner::named(name)?;
                if euid != 0 && owner.uid != euid {
                    return Err(ProvisionError::OwnerNeedsRoot { name: owner.name });
                }
                Ok(Some(owner))
            }
            None if euid == 0 && root == Path::new("/") => Ok(Owner::named(SERVICE_USER).ok()),
            None => Ok(None),
        }
    }

    fn give(&self, path: &Path) -> Result<(), ProvisionError> {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid)).map_err(|source| ProvisionError::Chown {
            path: path.to_path_buf(),
            owner: self.name.clone(),
            source,
        })
    }

    /// Gives `dir` and everything under it (not following links) to this user.
    fn give_tree(&self, dir: &Path) -> Result<(), ProvisionError> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(dir).map_err(io(dir))?;
        if meta.uid() != self.uid || meta.gid() != self.gid {
            self.give(dir)?;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(dir).map_err(io(dir))? {
                self.give_tree(&entry.map_err(io(dir))?.path())?;
            }
        }
        Ok(())
    }
}

/// Prefix of the public half of a key that `provision --force` replaced, kept in the data
/// folder (`device.pub.replaced-<unix seconds>`) so that exports of older sessions ship it.
pub const REPLACED_PUBLIC_PREFIX: &str = "device.pub.replaced-";
/// Prefix of a replaced private key as versions before the key was destroyed left it.
pub const LEGACY_REPLACED_KEY_PREFIX: &str = "device.key.replaced-";

/// Overwrites a private key file with zeros, syncs, and removes it. (On flash storage the old
/// blocks may survive in the device; the key can no longer be read through the file system.)
fn destroy_key_file(path: &Path) -> Result<(), ProvisionError> {
    use std::io::Write;
    let len = std::fs::metadata(path).map_err(io(path))?.len();
    let mut f = std::fs::OpenOptions::new().write(true).open(path).map_err(io(path))?;
    f.write_all(&vec![0u8; len as usize]).map_err(io(path))?;
    f.sync_all().map_err(io(path))?;
    drop(f);
    std::fs::remove_file(path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        crate::base::sync_dir(dir).map_err(io(dir))?;
    }
    Ok(())
}

#[derive(Debug)]
pub struct Provisioned {
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub key_id: String,
    /// SHA-256 of the raw public key: what the central registry compares.
    pub fingerprint: String,
    /// Objects written (or found identical) in central storage, or why registration failed.
    pub registered: Result<Vec<String>, UploadError>,
}

/// The old key's signed hand-over to the new one (`provision --force`): which key replaces it
/// and from when, registered write-once beside the old key as `devices/{old}.rotation.rec`.
#[derive(Debug, Serialize)]
struct KeyRotation<'a> {
    v: u32,
    old: String,
    new: String,
    new_key: String,
    court: &'a str,
    room: &'a str,
    wall: WallTime,
}

/// Who this box is, signed by its key, next to its public key in central storage.
#[derive(Debug, Serialize)]
struct DeviceInfo<'a> {
    v: u32,
    device: String,
    court: &'a str,
    room: &'a str,
    profile: String,
    hostname: String,
    courtbox: &'static str,
    provisioned: WallTime,
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The folder to list in `profile_dirs` so that the configuration in `config_dir` may use
/// the profile `hw_profile`: none when it already lies in a profile folder.
fn extra_profile_dir(config_dir: &Path, hw_profile: &Path) -> Option<PathBuf> {
    let real = std::fs::canonicalize(hw_profile).unwrap_or_else(|_| hw_profile.to_path_buf());
    let known = config::profile_dirs(config_dir, &[]);
    let inside = known.iter().filter_map(|d| std::fs::canonicalize(d).ok()).any(|d| real.starts_with(d));
    if inside { None } else { real.parent().map(Path::to_path_buf) }
}

fn config_text(req: &ProvisionRequest, data_dir: &Path, profile_dir: Option<&Path>) -> String {
    let mut text = format!(
        "# courtbox configuration, written by `courtbox provision`. See README.md for every key.\n\
         court = {}\nroom = {}\ndata_dir = {}\nhw_profile = {}\n",
        toml_string(&req.court),
        toml_string(&req.room),
        toml_string(&data_dir.display().to_string()),
        toml_string(&req.hw_profile.display().to_string())
    );
    if let Some(dir) = profile_dir {
        // The profile given is outside the usual folders: its folder becomes one, chosen here
        // on the box (the API cannot add one).
        text.push_str(&format!("profile_dirs = [{}]\n", toml_string(&dir.display().to_string())));
    }
    if req.store_url.is_some() || req.endpoint.is_some() || req.credentials_file.is_some() {
        text.push_str("\n[store]\n");
        if let Some(u) = &req.store_url {
            text.push_str(&format!("url = {}\n", toml_string(u)));
        }
        if let Some(e) = &req.endpoint {
            text.push_str(&format!("endpoint = {}\n", toml_string(e)));
        }
        if let Some(c) = &req.credentials_file {
            text.push_str(&format!("credentials_file = {}\n", toml_string(&c.display().to_string())));
        }
    }
    text
}

pub fn provision(req: &ProvisionRequest) -> Result<Provisioned, ProvisionError> {
    let config_path = req.root.join("etc/courtbox/courtbox.toml");
    let data_dir = req.root.join("var/lib/courtbox");
    let config_dir = config_path.parent().expect("the configuration is in a folder");
    let text = config_text(req, &data_dir, extra_profile_dir(config_dir, &req.hw_profile).as_deref());
    // Everything is checked before anything is written.
    let parsed: Config = toml::from_str(&text).map_err(|e| ProvisionError::Invalid(e.to_string()))?;
    let problems = config::validate_config(&parsed);
    if !problems.is_empty() {
        let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        return Err(ProvisionError::Invalid(lines.join("\n")));
    }
    let profile = config::load_profile(&req.hw_profile).map_err(|e| ProvisionError::Invalid(e.to_string()))?;
    let key_path = data_dir.join("device.key");
    let mut replaced = None;
    let mut aside = None;
    if key_path.exists() {
        if !req.force {
            let key_id =
                DeviceKey::load(&key_path).map(|k| k.public().key_id()).unwrap_or_else(|_| "(unreadable)".into());
            return Err(ProvisionError::KeyExists { path: key_path, key_id });
        }
        // The old key signs the hand-over (below); an unreadable old key cannot, and says so.
        // It is moved aside only until then, and destroyed once the statement is written.
        replaced = Some(DeviceKey::load(&key_path));
        let moved = data_dir.join(format!(
            "{LEGACY_REPLACED_KEY_PREFIX}{}",
            crate::base::RealClocks::new().wall().unix_nanos() / 1_000_000_000
        ));
        std::fs::rename(&key_path, &moved).map_err(io(&key_path))?;
        aside = Some(moved);
    }
    if config_path.exists() && !req.force {
        return Err(ProvisionError::ConfigExists { path: config_path });
    }

    std::fs::create_dir_all(&data_dir).map_err(io(&data_dir))?;
    set_mode(&data_dir, 0o750)?;
    let key = DeviceKey::create(&key_path)?;
    let public = key.public();
    let public_path = data_dir.join("device.pub");
    std::fs::write(&public_path, public.to_pem()).map_err(io(&public_path))?;
    let dir = config_path.parent().expect("config path has a folder");
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = config_path.with_extension("toml.tmp");
    std::fs::write(&tmp, &text).map_err(io(&tmp))?;
    set_mode(&tmp, 0o640)?;
    std::fs::rename(&tmp, &config_path).map_err(io(&config_path))?;

    let info = DeviceInfo {
        v: crate::integrity::FORMAT_VERSION,
        device: public.key_id(),
        court: &req.court,
        room: &req.room,
        profile: profile.name.clone(),
        hostname: std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default(),
        courtbox: env!("CARGO_PKG_VERSION"),
        provisioned: crate::base::RealClocks::new().wall(),
    };
    let info = SignedDoc::sign(&info, &key, crate::integrity::Context::DeviceInfo).to_bytes();
    let mut extra = Vec::new();
    match replaced {
        Some(Ok(old)) => {
            let rotation = KeyRotation {
                v: crate::integrity::FORMAT_VERSION,
                old: old.public().key_id(),
                new: public.key_id(),
                new_key: public.to_pem(),
                court: &req.court,
                room: &req.room,
                wall: crate::base::RealClocks::new().wall(),
            };
            let bytes = SignedDoc::sign(&rotation, &old, crate::integrity::Context::KeyRotation).to_bytes();
            let local = data_dir.join(format!("key-rotation-{}.rec", rotation.old));
            write_synced(&local, &bytes)?;
            // Exports of sessions the old key signed ship its public half.
            let kept = data_dir.join(format!(
                "{REPLACED_PUBLIC_PREFIX}{}",
                crate::base::RealClocks::new().wall().unix_nanos() / 1_000_000_000
            ));
            write_synced(&kept, old.public().to_pem().as_bytes())?;
            extra.push(Registered {
                key: format!("devices/{}.rotation.rec", rotation.old),
                bytes,
                object: RegisteredObject::KeyRotation,
            });
        }
        Some(Err(e)) => {
            tracing::warn!(error = %e, "the old device key cannot be read: no signed statement hands over to the new key")
        }
        None => {}
    }
    // The hand-over is on disk (or could not be signed): the old private key has no further
    // use, and anyone who could read it later could sign as this box.
    if let Some(old) = &aside {
        destroy_key_file(old)?;
        tracing::warn!(old = %old.display(), "device key replaced; the old private key was destroyed");
    }
    if let Some(owner) = &req.owner {
        owner.give_tree(&data_dir)?;
        owner.give(dir)?;
        owner.give(&config_path)?;
    }
    let registered = register(&config_path, &public, &info, extra);
    // Registration into a folder store writes under the data folder too.
    if let Some(owner) = &req.owner {
        owner.give_tree(&data_dir)?;
    }
    Ok(Provisioned {
        config: config_path,
        data_dir,
        key_id: public.key_id(),
        fingerprint: fingerprint(&public),
        registered,
    })
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), ProvisionError> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ProvisionError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(path))
}

pub use crate::integrity::fingerprint;

/// What provisioning registers centrally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RegisteredObject {
    PublicKey,
    /// The signed device info: it holds the time of provisioning, so provisioning again
    /// with the same key writes different bytes, and the earlier one is kept.
    DeviceInfo,
    KeyRotation,
}

impl RegisteredObject {
    fn upload_kind(self) -> crate::ledger::UploadKind {
        match self {
            RegisteredObject::PublicKey | RegisteredObject::DeviceInfo => crate::ledger::UploadKind::DeviceKey,
            RegisteredObject::KeyRotation => crate::ledger::UploadKind::KeyRotation,
        }
    }
}

/// One object to register: its key under `{court}/{room}/`, its bytes and what it is.
struct Registered {
    key: String,
    bytes: Vec<u8>,
    object: RegisteredObject,
}

/// Writes `devices/{id}.pub` and `devices/{id}.json` once; identical objects already there
/// are fine (provisioning again with the same key), different ones are an error.
fn register(
    config_path: &Path,
    public: &PublicKey,
    info: &[u8],
    extra: Vec<Registered>,
) -> Result<Vec<String>, UploadError> {
    let cfg = config::load(config_path).map_err(|e| UploadError::Request(e.to_string()))?;
    let store = upload::open_store(&cfg)?;
    let id = public.key_id();
    let mut objects = vec![
        Registered {
            key: format!("devices/{id}.pub"),
            bytes: public.to_pem().into_bytes(),
            object: RegisteredObject::PublicKey,
        },
        Registered { key: format!("devices/{id}.json"), bytes: info.to_vec(), object: RegisteredObject::DeviceInfo },
    ];
    objects.extend(extra);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| UploadError::Request(e.to_string()))?;
    let mut written = Vec::new();
    for Registered { key, bytes, object } in objects {
        let job = crate::ledger::UploadJob {
            id: 0,
            session: None,
            object_key: key.clone(),
            kind: object.upload_kind().as_str().into(),
            sha256: crate::integrity::sha256(&bytes),
            bytes: bytes.len() as u64,
            payload: crate::ledger::Payload::Content(bytes),
            attempts: 0,
        };
        match runtime.block_on(upload::deliver(&store, &job, &cfg.data_dir, u64::MAX)) {
            Ok(_) => written.push(format!("{}/{key}", store.url)),
            // The info of an earlier provisioning with the same key differs only in its time.
            Err(upload::Failure::Conflict(_)) if object == RegisteredObject::DeviceInfo => {
                written.push(format!("{}/{key} (kept from an earlier provisioning)", store.url))
            }
            Err(upload::Failure::Retry(e) | upload::Failure::Local(e) | upload::Failure::Conflict(e)) => {
                return Err(UploadError::Request(e));
            }
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_user_gets_the_real_box_only() {
        let real = Path::new("/");
        let scratch = Path::new("/tmp/box");
        let service = Owner::named(SERVICE_USER).ok();
        assert_eq!(Owner::for_request(None, real, 0).unwrap(), service, "root provisioning the box");
        assert_eq!(Owner::for_request(None, scratch, 0).unwrap(), None, "a scratch root keeps its owner");
        assert_eq!(Owner::for_request(None, real, 4_000_001).unwrap(), None, "not root: nothing to give");
        let nobody = Owner::for_request(Some("nobody"), scratch, 0).unwrap().unwrap();
        assert_eq!((nobody.name.as_str(), nobody.uid), ("nobody", 65534));
        assert!(matches!(
            Owner::for_request(Some("nobody"), scratch, 4_000_001),
            Err(ProvisionError::OwnerNeedsRoot { .. })
        ));
        assert_eq!(Owner::for_request(Some("nobody"), scratch, 65534).unwrap(), Some(nobody), "oneself is fine");
        let err = Owner::for_request(Some("no-such-courtbox-user"), real, 0).unwrap_err();
        assert_eq!(err.to_string(), "--owner no-such-courtbox-user: no such user on this system");
    }

    #[test]
    fn a_destroyed_key_file_is_gone_and_was_zeroed_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key.replaced-1");
        std::fs::write(&path, b"secret key bytes").unwrap();
        // A second name for the same inode sees what the overwrite left.
        let witness = dir.path().join("hard-link");
        std::fs::hard_link(&path, &witness).unwrap();
        destroy_key_file(&path).unwrap();
        assert!(!path.exists());
        assert_eq!(std::fs::read(&witness).unwrap(), vec![0u8; 16]);
    }
}
