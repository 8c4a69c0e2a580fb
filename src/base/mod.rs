//! Shared foundations: the two clocks (media and wall), the `Clocks` trait that lets
//! tests simulate time, and small value types every module uses.

mod backoff;
mod clocks;
pub mod mdwe;
mod private_file;
mod service_thread;
pub mod supervise;
mod time;
mod toml_error;

pub use backoff::Backoff;
pub use clocks::{Clocks, RealClocks, SimulatedClocks};
pub use private_file::{Account, PrivateFileError, check_private_file, judge_private_file};
pub use service_thread::ServiceThread;
pub use supervise::{ExponentialRetry, Phase, RetryPolicy, Supervision};
pub use time::{MediaTime, WallTime};
pub use toml_error::{Withheld, line_column};

use std::path::{Path, PathBuf};

/// The names of an enum's variants in text (SQLite columns, JSON, records), from one table:
/// `ALL`, `as_str`, `Display` and a `FromStr` whose error is the tuple struct `$err(String)`
/// holding the text it did not know. Where the enum also derives serde, its serde names
/// must be the same words, and a test says so (`Language`, `AlarmKind`).
macro_rules! text_names {
    ($name:ident, $err:path, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            pub const ALL: [$name; [$($text),+].len()] = [$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $err;
            fn from_str(s: &str) -> Result<$name, $err> {
                $name::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| $err(s.to_string()))
            }
        }
    };
}
pub(crate) use text_names;

/// Names of sources, devices and roles are used in file names, pipeline descriptions and
/// object keys, so they are restricted to a portable, quote-free alphabet.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// `fsync` a directory so that a file created or renamed in it survives power loss.
/// Text as a terminal may show it: control characters (escape sequences, carriage
/// returns, line breaks) written as `\u{1b}` and the like, so that a name someone typed
/// cannot rewrite what an auditor reads.
pub fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { c.escape_unicode().to_string() } else { c.to_string() }).collect()
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Writes a small file through a temporary name and renames it into place, syncing the file
/// and then its directory: after a power cut it is there whole, or as it was before.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// Resolves `path` against `base` unless it is absolute.
pub fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() { path.to_path_buf() } else { base.join(path) }
}

/// Why a file that holds a secret was not read. The message never quotes the file.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("mode is {mode:o}; it holds a secret, so it must be 600 (chmod 600 {})", path.display())]
    Readable { mode: u32, path: PathBuf },
}

/// Reads a file that holds a secret, refusing one that others on the box could read.
pub fn read_secret_file(path: &Path) -> Result<String, SecretFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretFileError::Readable { mode, path: path.to_path_buf() });
    }
    Ok(std::fs::read_to_string(path)?)
}

/// Makes ring the TLS crypto provider of every HTTP client (reqwest is built without a
/// bundled one, to keep aws-lc's C build out). Idempotent; call before building a client.
pub fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Compares secrets without leaking, by timing, where they first differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The kernel's id for the current boot: a changed id after a restart means the box lost
/// power or rebooted, the same id means only the daemon died. The unit passes it as
/// `COURTBOX_BOOT_ID=%b` because `ProcSubset=pid` hides `/proc/sys`; either way it is written
/// in the kernel's dashed form, so that ids stored before and after compare.
pub fn boot_id() -> String {
    if let Some(id) = std::env::var("COURTBOX_BOOT_ID").ok().and_then(|v| dashed_uuid(&v)) {
        return id;
    }
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// `0123…ef` (32 hex digits, as systemd's `%b`) or the dashed form, as the dashed form.
fn dashed_uuid(text: &str) -> Option<String> {
    let hex: String = text.trim().chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let hex = hex.to_ascii_lowercase();
    Some(format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]))
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(super::printable("Айгүл"), "Айгүл");
        assert_eq!(super::printable("a\u{1b}[2Jb\r\nc"), "a\\u{1b}[2Jb\\u{d}\\u{a}c");
    }

    use super::*;

    #[test]
    fn boot_ids_from_the_unit_take_the_kernels_form() {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        let kernel = kernel.trim();
        assert_eq!(dashed_uuid(&kernel.replace('-', "")).as_deref(), Some(kernel));
        assert_eq!(dashed_uuid(kernel).as_deref(), Some(kernel));
        assert_eq!(dashed_uuid("%b"), None);
        assert_eq!(dashed_uuid(""), None);
    }

    #[test]
    fn names() {
        assert!(is_valid_name("cam1"));
        assert!(is_valid_name("judge_mic-2"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("Cam1"));
        assert!(!is_valid_name("-cam"));
        assert!(!is_valid_name("cam 1"));
        assert!(!is_valid_name("cam\"1"));
        assert!(!is_valid_name(&"a".repeat(33)));
    }
}
