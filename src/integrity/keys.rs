//! The device's Ed25519 key: the private key file (PKCS#8, mode 0600, created once and never
//! overwritten, refused if the group or others have access or another user owns it), signing, and the public key in the PEM
//! form OpenSSL reads, named in every record by its short key id.

use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use thiserror::Error;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not an Ed25519 PKCS#8 private key")]
    BadPrivateKey { path: PathBuf },
    /// Its mode or owner lets someone other than the user of the key at it.
    #[error(transparent)]
    NotPrivate(#[from] crate::base::PrivateFileError),
    #[error("{path}: a device key already exists; refusing to overwrite it")]
    Exists { path: PathBuf },
    #[error("not an Ed25519 public key in PEM form: {0}")]
    BadPublicKey(String),
}

/// The box's signing key. The private half never leaves this struct: it is not printed,
/// logged or serialized.
pub struct DeviceKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceKey({})", self.public().key_id())
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io { path: path.to_path_buf(), source }
}

impl DeviceKey {
    /// Creates a new key file (mode 0600, `O_EXCL`: an existing key is never overwritten).
    pub fn create(path: &Path) -> Result<DeviceKey, KeyError> {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("system RNG works");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let mut file =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    KeyError::Exists { path: path.to_path_buf() }
                } else {
                    KeyError::Io { path: path.to_path_buf(), source: e }
                }
            })?;
        file.write_all(pkcs8.as_ref()).map_err(io_err(path))?;
        file.sync_all().map_err(io_err(path))?;
        if let Some(dir) = path.parent() {
            crate::base::sync_dir(dir).map_err(io_err(dir))?;
        }
        Self::from_pkcs8(pkcs8.as_ref(), path)
    }

    pub fn load(path: &Path) -> Result<DeviceKey, KeyError> {
        let meta = std::fs::metadata(path).map_err(io_err(path))?;
        crate::base::check_private_file(path, &meta)?;
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        Self::from_pkcs8(&bytes, path)
    }

    /// Loads the key, creating it first if there is none. Only `provision` may create a
    /// device key; this is for tests and scratch boxes (benchmarks).
    pub fn load_or_create(path: &Path) -> Result<(DeviceKey, bool), KeyError> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => Ok((Self::load(path)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((Self::create(path)?, true)),
            Err(e) => Err(KeyError::Io { path: path.to_path_buf(), source: e }),
        }
    }

    fn from_pkcs8(bytes: &[u8], path: &Path) -> Result<DeviceKey, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes)
            .map_err(|_| KeyError::BadPrivateKey { path: path.to_path_buf() })?;
        Ok(DeviceKey { pair })
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let sig = self.pair.sign(message);
        sig.as_ref().try_into().expect("Ed25519 signatures are 64 bytes")
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.pair.public_key().as_ref().try_into().expect("Ed25519 public keys are 32 bytes"))
    }
}

/// An Ed25519 public key. Its text form is PEM SubjectPublicKeyInfo, which OpenSSL reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PublicKey(pub [u8; 32]);

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410) before the 32 key bytes.
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

impl PublicKey {
    /// Short, stable identifier written into every record: the first 16 hex digits of the
    /// SHA-256 of the raw key.
    pub fn key_id(&self) -> String {
        super::sha256_hex(&self.0)[..16].to_string()
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0).verify(message, signature).is_ok()
    }

    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.0);
        format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", B64.encode(der))
    }

    pub fn from_pem(text: &str) -> Result<PublicKey, KeyError> {
        let body: String = text.lines().map(str::trim).filter(|l| !l.starts_with("-----") && !l.is_empty()).collect();
        let der = B64.decode(body.as_bytes()).map_err(|e| KeyError::BadPublicKey(e.to_string()))?;
        if der.len() != 44 || der[..12] != SPKI_PREFIX {
            return Err(KeyError::BadPublicKey("not an Ed25519 SubjectPublicKeyInfo".into()));
        }
        Ok(PublicKey(der[12..].try_into().expect("length checked")))
    }

    pub fn read(path: &Path) -> Result<PublicKey, KeyError> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        Self::from_pem(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn key_file_is_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/device.key");
        let (key, created) = DeviceKey::load_or_create(&path).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(DeviceKey::create(&path), Err(KeyError::Exists { .. })));
        let (again, created) = DeviceKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(key.public(), again.public());

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = DeviceKey::load(&path).unwrap_err();
        assert!(matches!(err, KeyError::NotPrivate(crate::base::PrivateFileError::Open { mode: 0o644, .. })), "{err}");
        assert!(err.to_string().contains(&format!("chmod 600 {}", path.display())), "{err}");
    }

    #[test]
    fn signatures_and_pem_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let key = DeviceKey::create(&dir.path().join("k")).unwrap();
        let public = PublicKey::from_pem(&key.public().to_pem()).unwrap();
        let sig = key.sign(b"record");
        assert!(public.verify(b"record", &sig));
        assert!(!public.verify(b"recorD", &sig));
        assert_eq!(public.key_id().len(), 16);
        assert!(format!("{key:?}").starts_with("DeviceKey("));
    }
}
