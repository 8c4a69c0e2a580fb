//! Provisioning a box into a scratch root, against a folder store and a real S3 server.

use crate::common::*;
use crate::s3::{self, SeaweedFs};
use courtbox::integrity::{PublicKey, SignedDoc};
use std::path::Path;
use std::time::Duration;

fn provision(root: &Path, extra: &[&str]) -> std::process::Output {
    let profile = repo().join("tests/fixtures/light.toml");
    std::process::Command::new(BIN)
        .args(["provision", "--court", "test-court", "--room", "room-1", "--root"])
        .arg(root)
        .arg("--hw-profile")
        .arg(&profile)
        .args(extra)
        .output()
        .unwrap()
}

fn key_id(stdout: &str) -> String {
    stdout.lines().find_map(|l| l.strip_prefix("device")).unwrap().trim().to_string()
}

/// A folder store: key 0600, the public key and signed device info registered, and a second
/// provisioning refused without --force (the key untouched).
#[test]
fn provision_makes_a_key_registers_it_and_refuses_to_redo_it() {
    use std::os::unix::fs::PermissionsExt;
    let root = output_dir("provision_folder");
    let out = provision(&root, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let id = key_id(&stdout);
    assert!(stdout.contains("key fingerprint SHA256:"), "{stdout}");
    let data = root.join("var/lib/courtbox");
    let key = data.join("device.key");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let key_bytes = std::fs::read(&key).unwrap();
    assert!(!stdout.contains("PRIVATE"), "the private key is never printed");

    let central = data.join(format!("central/test-court/room-1/devices/{id}"));
    let public = PublicKey::from_pem(&std::fs::read_to_string(central.with_extension("pub")).unwrap()).unwrap();
    assert_eq!(public, PublicKey::read(&data.join("device.pub")).unwrap());
    let info = std::fs::read(central.with_extension("json")).unwrap();
    let doc = SignedDoc::parse(&info).unwrap();
    courtbox::integrity::check_signature(&public, courtbox::integrity::Context::DeviceInfo, &doc.body, &doc.signature)
        .expect("device info is signed by the device key, in its own context");
    let body: serde_json::Value = serde_json::from_slice(&doc.body).unwrap();
    assert_eq!((body["court"].as_str(), body["room"].as_str()), (Some("test-court"), Some("room-1")));

    let again = provision(&root, &[]);
    let err = String::from_utf8_lossy(&again.stderr).to_string();
    assert!(!again.status.success());
    assert!(err.contains("already has a device key") && err.contains(&id), "{err}");
    assert_eq!(std::fs::read(&key).unwrap(), key_bytes, "the key is untouched");

    // --force replaces the key; the old key signs the hand-over, registered write-once.
    let forced = provision(&root, &["--force"]);
    let forced_out = String::from_utf8_lossy(&forced.stdout).to_string();
    assert!(forced.status.success(), "{forced_out}{}", String::from_utf8_lossy(&forced.stderr));
    let new_id = key_id(&forced_out);
    assert_ne!(new_id, id);
    let statement = std::fs::read(central.with_extension("rotation.rec")).unwrap();
    let doc = SignedDoc::parse(&statement).unwrap();
    courtbox::integrity::check_signature(&public, courtbox::integrity::Context::KeyRotation, &doc.body, &doc.signature)
        .expect("the rotation is signed by the old key");
    let body: serde_json::Value = serde_json::from_slice(&doc.body).unwrap();
    assert_eq!((body["old"].as_str(), body["new"].as_str()), (Some(id.as_str()), Some(new_id.as_str())));
    assert!(body["wall"].as_str().is_some(), "{body}");

    // Bad input is refused before anything is written.
    let fresh = output_dir("provision_bad");
    let bad = std::process::Command::new(BIN)
        .args(["provision", "--court", "Bad Court", "--room", "r", "--root"])
        .arg(&fresh)
        .arg("--hw-profile")
        .arg(repo().join("tests/fixtures/light.toml"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("court: \"Bad Court\" is not a valid name"));
    assert!(!fresh.join("var/lib/courtbox/device.key").exists());
}

/// Against S3: the key is registered in the bucket and a session recorded by the box
/// verifies centrally with the key taken from the store.
#[test]
fn a_box_provisioned_against_s3_records_what_the_registered_key_verifies() {
    let tb = TestBox::with_extra("provision_s3", "tests/fixtures/light.toml", 2, "");
    s3::write_credentials(&tb.root, s3::BOX_SECRET);
    let weed = SeaweedFs::start(&tb.root.join("s3"));
    let sysroot = tb.root.join("sysroot");
    let creds = tb.root.join("s3-credentials.toml");
    let out = provision(
        &sysroot,
        &[
            "--store",
            &format!("s3://{}/{}", s3::BUCKET, s3::PREFIX),
            "--endpoint",
            &SeaweedFs::endpoint(),
            "--credentials-file",
            creds.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let id = key_id(&stdout);
    assert!(stdout.contains(&format!("s3://{}/{}/test-court/room-1/devices/{id}.pub", s3::BUCKET, s3::PREFIX)));

    // Run the provisioned box (with the test's port, sim audio and no captions).
    let provisioned = std::fs::read_to_string(sysroot.join("etc/courtbox/courtbox.toml")).unwrap();
    let test_settings = std::fs::read_to_string(&tb.config).unwrap();
    let keep: String = test_settings
        .split("\n[")
        .filter(|s| ["api]", "sim]", "stt]", "disk]", "recording]"].iter().any(|h| s.starts_with(h)))
        .map(|s| format!("\n[{s}"))
        .collect();
    std::fs::write(&tb.config, format!("{provisioned}{keep}\n")).unwrap();
    let daemon = tb.start();
    let session = tb.start_session();
    std::thread::sleep(Duration::from_secs(5));
    tb.stop_session();
    wait_for("the upload", Duration::from_secs(30), || tb.status()["storage"]["backlog"]["objects"] == 0);
    daemon.terminate();

    let admin = weed.admin_store();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let pem = rt.block_on(async {
        use object_store::ObjectStoreExt;
        admin.inner.get(&admin.key(&format!("devices/{id}.pub"))).await.unwrap().bytes().await.unwrap()
    });
    let key_file = tb.root.join("registered.pub");
    std::fs::write(&key_file, &pem).unwrap();
    let url = format!("s3://{}/{}/test-court/room-1/{session}", s3::BUCKET, s3::PREFIX);
    let (code, text) = verify_target(url.as_ref(), Some(&key_file), Some(&tb.config));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(&format!("key:      {id}")), "{text}");
}

/// Only `provision` makes a key: the daemon without one refuses to start, says what to run,
/// and creates nothing.
#[test]
fn run_without_a_device_key_refuses_and_names_provision() {
    let tb = TestBox::new("run_without_key", "tests/fixtures/light.toml", 2);
    std::fs::remove_file(tb.data().join("device.key")).unwrap();
    let out = tb.command().arg("run").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("this box is not provisioned") && err.contains("courtbox provision"), "{err}");
    assert!(!tb.data().join("device.key").exists(), "no key was created");
}

fn owner_of(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).uid()
}

/// Every file under `dir` (links not followed).
fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        out.push(path.clone());
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            files_under(&path, out);
        }
    }
}

/// Provisioning as root gives the data folder, the key, the configuration and the folder
/// store to the service user (`--owner`; here `nobody`, which every system has). `--force`
/// then destroys the replaced private key once the hand-over is signed: no file on the box
/// holds its bytes any more, and its public half stays for exports of older sessions.
#[test]
fn provision_gives_the_box_to_the_service_user_and_destroys_a_replaced_key() {
    use std::os::unix::fs::PermissionsExt;
    let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("the user nobody");
    let uid = nobody.uid.as_raw();
    let root = output_dir("provision_owner");
    let out = provision(&root, &["--owner", "nobody"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("owner nobody"), "{stdout}");
    let old_id = key_id(&stdout);
    let data = root.join("var/lib/courtbox");
    let config_dir = root.join("etc/courtbox");
    let mut owned = vec![data.clone(), config_dir.clone(), config_dir.join("courtbox.toml")];
    files_under(&data, &mut owned);
    assert!(owned.iter().any(|p| p.ends_with(format!("devices/{old_id}.pub"))), "the folder store: {owned:?}");
    for path in &owned {
        assert_eq!(owner_of(path), uid, "{} belongs to the service user", path.display());
    }
    let key = data.join("device.key");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let old_key = std::fs::read(&key).unwrap();

    let forced = provision(&root, &["--owner", "nobody", "--force"]);
    let forced_out = String::from_utf8_lossy(&forced.stdout).to_string();
    assert!(forced.status.success(), "{forced_out}{}", String::from_utf8_lossy(&forced.stderr));
    let mut files = Vec::new();
    files_under(&data, &mut files);
    let names: Vec<String> =
        files.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
    assert!(!names.iter().any(|n| n.starts_with("device.key.replaced-")), "the old private key is gone: {names:?}");
    for file in files.iter().filter(|p| p.is_file()) {
        let bytes = std::fs::read(file).unwrap();
        assert!(!bytes.windows(old_key.len()).any(|w| w == old_key.as_slice()), "{} holds the old key", file.display());
        assert_eq!(owner_of(file), uid, "{}", file.display());
    }
    let kept = files
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("device.pub.replaced-")))
        .expect("the replaced key's public half is kept");
    assert_eq!(PublicKey::read(kept).unwrap().key_id(), old_id);
    assert!(data.join(format!("key-rotation-{old_id}.rec")).exists());
    assert_ne!(key_id(&forced_out), old_id);
}

/// The daemon refuses a device key it does not own, naming the file, its owner and the fix
/// (here run as `nobody` against a key that root owns), and one the group may read.
#[test]
fn run_refuses_a_key_that_is_not_its_own() {
    use std::os::unix::fs::PermissionsExt;
    let tb = TestBox::new("run_foreign_key", "tests/fixtures/light.toml", 2);
    let key = tb.data().join("device.key");
    let home = tb.root.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(BIN)
        .arg("-c")
        .arg(&tb.config)
        .arg("run")
        .env("HOME", &home)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{err}");
    let expected = format!("{}: the private key belongs to root, but courtbox runs as nobody", key.display());
    assert!(err.contains(&expected) && err.contains(&format!("chown nobody: {}", key.display())), "{err}");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = tb.command().arg("run").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&format!("{}: mode 0640", key.display())) && err.contains("chmod 600"), "{err}");
}
