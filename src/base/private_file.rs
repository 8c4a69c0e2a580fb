//! Who may hold a private key file (the device key, the API's TLS key): the group and others
//! have no access to it, and it belongs to the user that uses it. Root may use any owner's
//! key (provisioning and an administrator's `courtbox export` read the service's key); a key
//! owned by someone else is refused even when the mode lets this process read it, because
//! that owner can replace it or open its mode at will.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A user id, shown with its name where the system knows one (for the `chown` hint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account(pub u32);

impl Account {
    /// The effective user of this process.
    pub fn effective() -> Account {
        Account(nix::unistd::geteuid().as_raw())
    }
}

impl std::fmt::Display for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(self.0)) {
            Ok(Some(user)) => write!(f, "{}", user.name),
            _ => write!(f, "{}", self.0),
        }
    }
}

/// Why a private key file is not used. The message names the file, what is wrong and the
/// command that fixes it; it never quotes the file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrivateFileError {
    #[error(
        "{}: mode {mode:04o} gives the group or others access to a private key; it must be 0600 (chmod 600 {})",
        path.display(),
        path.display()
    )]
    Open { path: PathBuf, mode: u32 },
    #[error(
        "{}: the private key belongs to {owner}, but courtbox runs as {user}; it must belong to the user that \
         uses it (chown {user}: {})",
        path.display(),
        path.display()
    )]
    Owner { path: PathBuf, owner: Account, user: Account },
}

/// The rule itself, on the file's mode bits and owner and the process's effective user.
pub fn judge_private_file(path: &Path, mode: u32, owner: Account, user: Account) -> Result<(), PrivateFileError> {
    let mode = mode & 0o7777;
    if mode & 0o077 != 0 {
        return Err(PrivateFileError::Open { path: path.to_path_buf(), mode });
    }
    if owner != user && user.0 != 0 {
        return Err(PrivateFileError::Owner { path: path.to_path_buf(), owner, user });
    }
    Ok(())
}

/// Checks a file's metadata (read by the caller, which decides what a missing file means)
/// against [`judge_private_file`] for this process.
pub fn check_private_file(path: &Path, meta: &std::fs::Metadata) -> Result<(), PrivateFileError> {
    judge_private_file(path, meta.mode(), Account(meta.uid()), Account::effective())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const ALICE: Account = Account(4_000_001);
    const BOB: Account = Account(4_000_002);
    const ROOT: Account = Account(0);

    #[test]
    fn group_or_other_access_is_refused_for_everyone() {
        let p = Path::new("/k");
        for mode in [0o640, 0o604, 0o660, 0o644, 0o620, 0o601, 0o100640] {
            for user in [ALICE, ROOT] {
                let err = judge_private_file(p, mode, ALICE, user).unwrap_err();
                assert_eq!(err, PrivateFileError::Open { path: p.into(), mode: mode & 0o7777 });
                let text = err.to_string();
                assert!(text.starts_with("/k: mode 0") && text.contains("chmod 600 /k"), "{text}");
            }
        }
        for mode in [0o600, 0o400, 0o100600, 0o700] {
            assert_eq!(judge_private_file(p, mode, ALICE, ALICE), Ok(()), "{mode:o}");
        }
    }

    #[test]
    fn another_owner_is_refused_except_for_root() {
        let p = Path::new("/var/lib/courtbox/device.key");
        let err = judge_private_file(p, 0o600, BOB, ALICE).unwrap_err();
        assert_eq!(err, PrivateFileError::Owner { path: p.into(), owner: BOB, user: ALICE });
        assert!(err.to_string().contains("chown 4000001: /var/lib/courtbox/device.key"), "{err}");
        assert_eq!(judge_private_file(p, 0o600, BOB, ROOT), Ok(()), "root may read the service's key");
        assert!(judge_private_file(p, 0o600, ROOT, ALICE).is_err(), "a root-owned key is not the service's");
    }

    #[test]
    fn real_files_are_judged_by_their_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        std::fs::write(&key, b"secret").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(check_private_file(&key, &std::fs::metadata(&key).unwrap()), Ok(()));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = check_private_file(&key, &std::fs::metadata(&key).unwrap()).unwrap_err();
        assert_eq!(err, PrivateFileError::Open { path: key.clone(), mode: 0o640 });
        // Owned by someone else (only root can hand a file over; the suite runs as root).
        if Account::effective() == ROOT {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
            std::os::unix::fs::chown(&key, Some(65534), None).unwrap();
            let meta = std::fs::metadata(&key).unwrap();
            assert_eq!(check_private_file(&key, &meta), Ok(()), "root reads any owner's key");
            let err = judge_private_file(&key, meta.mode(), Account(meta.uid()), ALICE).unwrap_err();
            assert!(matches!(err, PrivateFileError::Owner { owner: Account(65534), .. }), "{err}");
        }
    }
}
