use crate::common::*;
use std::time::Duration;

fn write_config(tb: &TestBox, name: &str, text: &str) -> std::path::PathBuf {
    let path = tb.root.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn check(config: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(BIN).arg("-c").arg(config).args(["check", "--config-only"]).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
}

fn fingerprint(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path().display().to_string(), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Bad configuration: a clear error naming the file and the key, a non-zero exit, and
/// nothing already recorded is touched.
#[test]
fn bad_configs_are_refused_clearly_and_touch_nothing() {
    let tb = TestBox::new("bad_configs", "tests/fixtures/light.toml", 2);
    let daemon = tb.start();
    tb.start_session();
    std::thread::sleep(Duration::from_secs(3));
    tb.stop_session();
    daemon.terminate();
    let before = fingerprint(&tb.data());

    let good = std::fs::read_to_string(&tb.config).unwrap();
    let profile = std::fs::read_to_string(repo().join("tests/fixtures/light.toml")).unwrap();

    let unknown = write_config(&tb, "unknown-key.toml", &good.replace("[recording]", "[recording]\nsegment_secs = 5"));
    let (ok, err) = check(&unknown);
    assert!(!ok && err.contains("unknown-key.toml") && err.contains("unknown field `segment_secs`"), "{err}");

    let missing = write_config(&tb, "missing-field.toml", &good.replace("court = \"test-court\"\n", ""));
    let (ok, err) = check(&missing);
    assert!(!ok && err.contains("missing-field.toml") && err.contains("missing field `court`"), "{err}");

    // Profiles come only from profile folders: `hw-profiles/` beside the configuration is one.
    std::fs::create_dir_all(tb.root.join("hw-profiles")).unwrap();
    let dup_profile =
        write_config(&tb, "hw-profiles/dup-profile.toml", &profile.replacen("name = \"hall\"", "name = \"bench\"", 1));
    let dup = write_config(
        &tb,
        "dup.toml",
        &good.replace(
            &repo().join("tests/fixtures/light.toml").display().to_string(),
            &dup_profile.display().to_string(),
        ),
    );
    let (ok, err) = check(&dup);
    assert!(
        !ok && err.contains("dup-profile.toml")
            && err.contains("camera[1].name")
            && err.contains("duplicate name \"bench\""),
        "{err}"
    );

    let bad_value = write_config(&tb, "bad-value.toml", &good.replace("segment_seconds = 2", "segment_seconds = 0"));
    let (ok, err) = check(&bad_value);
    assert!(!ok && err.contains("recording.segment_seconds: must be between 2 and 600 (got 0)"), "{err}");

    let (ok, err) = check(&tb.root.join("no-such-file.toml"));
    assert!(!ok && err.contains("no-such-file.toml: cannot read"), "{err}");
    let (ok, err) = check(&tb.root);
    assert!(!ok && err.contains("cannot read"), "a directory is not a config: {err}");

    // The daemon refuses to run on a bad config, and the record is untouched.
    let out = std::process::Command::new(BIN).arg("-c").arg(&unknown).arg("run").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field"));
    assert_eq!(fingerprint(&tb.data()), before, "a refused config changed the data directory");
}

/// `PUT /api/v1/config` cannot make the box read a file outside the profile folders, and
/// never answers with what a file it did read holds: a path outside (absolute, `..`, a link
/// out) is a 400 naming `hw_profile` and the folders; a broken profile inside is named by
/// file, line and column; the API cannot add a folder. The marker in the files never shows.
#[test]
fn put_config_never_reads_or_quotes_files_outside_the_profile_folders() {
    const MARKER: &str = "SECRET-MARKER-4711";
    let tb = TestBox::new("config_profile_folders", "tests/fixtures/light.toml", 2);
    let daemon = tb.start();
    let token = crate::access::add_people(&tb);
    let good = std::fs::read_to_string(&tb.config).unwrap();
    let fixture = repo().join("tests/fixtures/light.toml").display().to_string();
    let crafted = format!("name = \"x\"\n[[camera]]\nname = \"{MARKER}\"\nfps = \"{MARKER}\"\n");
    let outside = tb.root.join("crafted.toml");
    std::fs::write(&outside, &crafted).unwrap();
    let folder = tb.root.join("hw-profiles");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("broken.toml"), &crafted).unwrap();
    std::os::unix::fs::symlink(&outside, folder.join("link.toml")).unwrap();

    let http = reqwest::blocking::Client::new();
    let put = |text: String| -> (u16, String) {
        let r = http
            .put(format!("http://127.0.0.1:{}/api/v1/config", tb.port))
            .bearer_auth(&token)
            .body(text)
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let naming = |profile: &str| good.replace(&fixture, profile);
    for path in [
        "/etc/shadow".to_string(),
        "/etc/passwd".to_string(),
        outside.display().to_string(),
        "crafted.toml".to_string(),
        "hw-profiles/../crafted.toml".to_string(),
        format!("{}/../../../../../..{}", folder.display(), outside.display()),
        "hw-profiles/link.toml".to_string(),
    ] {
        let (status, body) = put(naming(&path));
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains("hw_profile") && body.contains("profile folder"), "{path}: {body}");
        assert!(body.contains(&folder.display().to_string()), "the folders allowed are named: {body}");
        assert!(!body.contains(MARKER) && !body.contains("root:"), "{path}: {body}");
    }

    let (status, body) = put(naming("hw-profiles/broken.toml"));
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("broken.toml: line 4, column 7: invalid type"), "file, line and column: {body}");
    assert!(!body.contains(MARKER), "{body}");

    let widened = naming(&outside.display().to_string()).replacen(
        "profile_dirs = [",
        &format!("profile_dirs = [\"{}\", ", tb.root.display()),
        1,
    );
    let (status, body) = put(widened);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("profile_dirs") && !body.contains(MARKER), "{body}");

    assert_eq!(std::fs::read_to_string(&tb.config).unwrap(), good, "the configuration is untouched");
    let (status, body) = put(good.clone());
    assert_eq!(status, 200, "the running configuration itself is accepted: {body}");
    drop(daemon);
}
