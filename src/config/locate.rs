//! Where a hardware profile may come from. `hw_profile` names a file, and a technician can
//! set it over the API: left free, it would make the box open any file it can read
//! (`/etc/shadow`, a key) and answer with what the parser made of it. It may only resolve,
//! after `..` and symbolic links, to a `.toml` file inside a profile folder: `hw-profiles/`
//! beside the configuration, the system folders, or a folder `profile_dirs` adds. A path
//! outside them is refused before anything opens it.

use super::ConfigError;
use std::path::{Component, Path, PathBuf};

/// Profile folders every configuration may use: the packaged profiles and the box's own.
pub const SYSTEM_PROFILE_DIRS: [&str; 2] = ["/usr/share/courtbox/hw-profiles", "/etc/courtbox/hw-profiles"];

/// The folder beside the configuration file that holds its profiles.
pub const LOCAL_PROFILE_DIR: &str = "hw-profiles";

/// The profile folders of a configuration in `base` that lists `extra` (its `profile_dirs`,
/// relative to `base`), each made absolute and free of `.` and `..`, without duplicates.
pub fn profile_dirs(base: &Path, extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let local = std::iter::once(base.join(LOCAL_PROFILE_DIR));
    let system = SYSTEM_PROFILE_DIRS.iter().map(PathBuf::from);
    for dir in local.chain(system).chain(extra.iter().map(|d| crate::base::resolve(base, d))) {
        let dir = normalize(&absolute(&dir));
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs
}

/// The file `hw_profile` (relative to the folder of `config`, the file naming it) names, if
/// it lies inside one of `dirs` both as written and once symbolic links are followed.
/// Nothing is opened: a path outside is refused from its text, a link out from
/// `canonicalize`, which only reads directories.
pub fn locate_profile(config: &Path, hw_profile: &Path, dirs: &[PathBuf]) -> Result<PathBuf, ConfigError> {
    let outside = || ConfigError::ProfileOutside {
        config: config.to_path_buf(),
        given: hw_profile.to_path_buf(),
        allowed: dirs.to_vec(),
    };
    let base = config.parent().unwrap_or(Path::new("."));
    if hw_profile.extension().is_none_or(|e| e != "toml") {
        return Err(outside());
    }
    let path = normalize(&absolute(&crate::base::resolve(base, hw_profile)));
    if !dirs.iter().any(|d| path.starts_with(d) && path != *d) {
        return Err(outside());
    }
    let real = match std::fs::canonicalize(&path) {
        Ok(real) => real,
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    let inside = dirs.iter().filter_map(|d| std::fs::canonicalize(d).ok()).any(|d| real.starts_with(&d));
    if !inside {
        return Err(outside());
    }
    Ok(real)
}

/// `path` made absolute against the working directory (left as is if that is unknown: it
/// then matches no folder).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `path` without `.` and with each `..` taking away the name before it, from its text only.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_are_resolved_from_the_text() {
        assert_eq!(normalize(Path::new("/a/b/../c/./d.toml")), PathBuf::from("/a/c/d.toml"));
        assert_eq!(normalize(Path::new("/a/../../etc/shadow")), PathBuf::from("/etc/shadow"));
    }

    #[test]
    fn the_folders_are_beside_the_configuration_the_system_ones_and_those_listed() {
        let dirs = profile_dirs(Path::new("/etc/box"), &[PathBuf::from("../rooms"), PathBuf::from("/srv/p")]);
        let expected = ["/etc/box/hw-profiles", SYSTEM_PROFILE_DIRS[0], SYSTEM_PROFILE_DIRS[1], "/etc/rooms", "/srv/p"];
        assert_eq!(dirs, expected.map(PathBuf::from));
    }

    #[test]
    fn only_toml_files_inside_a_profile_folder_are_found() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("etc");
        let profiles = base.join("hw-profiles");
        std::fs::create_dir_all(&profiles).unwrap();
        std::fs::write(profiles.join("room.toml"), "name = \"room\"\n").unwrap();
        std::fs::write(base.join("secret.toml"), "x").unwrap();
        std::os::unix::fs::symlink(base.join("secret.toml"), profiles.join("link.toml")).unwrap();
        std::os::unix::fs::symlink(&base, profiles.join("up")).unwrap();
        let dirs = profile_dirs(&base, &[]);

        let config = base.join("courtbox.toml");
        let found = locate_profile(&config, Path::new("hw-profiles/room.toml"), &dirs).unwrap();
        assert_eq!(found, std::fs::canonicalize(profiles.join("room.toml")).unwrap());
        for refused in [
            "/etc/shadow",
            "secret.toml",
            "hw-profiles/../secret.toml",
            "../../../../../../etc/passwd.toml",
            "hw-profiles/link.toml",
            "hw-profiles/up/secret.toml",
            "hw-profiles/room",
            "hw-profiles",
        ] {
            let e = locate_profile(&config, Path::new(refused), &dirs).unwrap_err();
            assert!(matches!(e, ConfigError::ProfileOutside { .. }), "{refused}: {e}");
            let text = e.to_string();
            assert!(text.contains("courtbox.toml: hw_profile: "), "{text}");
            assert!(text.contains(&profiles.display().to_string()), "{text}");
        }
        let missing = locate_profile(&config, Path::new("hw-profiles/none.toml"), &dirs).unwrap_err();
        assert!(matches!(missing, ConfigError::Read { .. }), "{missing}");
    }
}
