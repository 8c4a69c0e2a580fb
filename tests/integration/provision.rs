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
