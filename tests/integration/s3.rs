//! A real S3 server for the upload tests: SeaweedFS (`weed mini`, installed into var/tools
//! by `scripts/setup --tests`) on loopback, with credentials and an Object Lock bucket.

use crate::common::{repo, secret_file, wait_for};
use courtbox::upload::{Credentials, S3Settings, Store};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BUCKET: &str = "courtbox-records";
pub const PREFIX: &str = "kz";
pub const ADMIN_KEY: &str = "courtbox-admin";
pub const ADMIN_SECRET: &str = "admin-secret-for-tests-only";
pub const BOX_KEY: &str = "courtbox-box";
pub const BOX_SECRET: &str = "box-secret-for-tests-only";
/// Fixed because `weed mini` also opens fixed ports of its own; tests run one at a time.
const S3_PORT: u16 = 18333;

/// The `[store]` section of a box (its folder `root`) using this server; the credentials
/// file is written by `write_credentials`.
pub fn box_config(root: &Path) -> String {
    format!(
        "[store]\nurl = \"s3://{BUCKET}/{PREFIX}\"\nendpoint = \"{}\"\ncredentials_file = \"{}\"\n\
         retry_initial_ms = 200\nretry_max_ms = 2000\n",
        SeaweedFs::endpoint(),
        root.join("s3-credentials.toml").display()
    )
}

/// Writes the box's credentials file (0600) with this secret.
pub fn write_credentials(root: &Path, secret: &str) {
    let text = format!("access_key_id = \"{BOX_KEY}\"\nsecret_access_key = \"{secret}\"\n");
    secret_file(root, "s3-credentials.toml", &text);
}

pub struct SeaweedFs {
    dir: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl SeaweedFs {
    /// Starts a fresh server in `dir` and creates the bucket with Object Lock (COMPLIANCE).
    pub fn start(dir: &Path) -> SeaweedFs {
        let weed = repo().join("var/tools/weed");
        assert!(weed.exists(), "{} is missing: run ./scripts/setup --tests", weed.display());
        std::fs::create_dir_all(dir.join("data")).unwrap();
        // The administrator may do anything. The box reads and writes; SeaweedFS answers
        // GetObjectLockConfiguration only to bucket admins (AWS has a read-only permission for
        // it), so the box is admin of its bucket here; Object Lock still protects what it wrote.
        let identities = serde_json::json!({ "identities": [
            { "name": "admin", "credentials": [{ "accessKey": ADMIN_KEY, "secretKey": ADMIN_SECRET }],
              "actions": ["Admin", "Read", "Write", "List", "Tagging"] },
            { "name": "box", "credentials": [{ "accessKey": BOX_KEY, "secretKey": BOX_SECRET }],
              "actions": ["Read", "Write", "List", format!("Admin:{BUCKET}")] },
        ]});
        std::fs::write(dir.join("s3.json"), identities.to_string()).unwrap();
        let mut s = SeaweedFs { dir: dir.to_path_buf(), child: None, starts: 0 };
        s.resume();
        courtbox::upload::s3admin::create_locked_bucket(&s.admin(), BUCKET, "COMPLIANCE", 1).unwrap();
        s
    }

    pub fn endpoint() -> String {
        format!("http://127.0.0.1:{S3_PORT}")
    }

    fn settings(key: &str, secret: &str) -> S3Settings {
        S3Settings {
            endpoint: Some(Self::endpoint()),
            region: "us-east-1".into(),
            path_style: true,
            credentials: Some(Credentials { access_key_id: key.into(), secret_access_key: secret.into() }),
        }
    }

    pub fn admin(&self) -> S3Settings {
        Self::settings(ADMIN_KEY, ADMIN_SECRET)
    }

    /// The store as an administrator sees it, rooted at `{prefix}/{court}/{room}`.
    pub fn admin_store(&self) -> Store {
        Store::open(&format!("s3://{BUCKET}/{PREFIX}"), &self.admin(), "test-court/room-1").unwrap()
    }

    /// Stops the server as an outage would (the process is killed).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        wait_for("the S3 port to close", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", S3_PORT)).is_err()
        });
    }

    /// Starts the server again on the same data.
    pub fn resume(&mut self) {
        courtbox::base::install_tls_provider();
        for port in [S3_PORT, 19333] {
            assert!(
                std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
                "port {port} is taken: another SeaweedFS is running (pkill weed)"
            );
        }
        self.starts += 1;
        let log = std::fs::File::create(self.dir.join(format!("weed-{}.log", self.starts))).unwrap();
        let child = Command::new(repo().join("var/tools/weed"))
            .arg("mini")
            .arg(format!("-dir={}", self.dir.join("data").display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-admin.ui=false",
                "-webdav=false",
                "-master.telemetry=false",
            ])
            .args(["-master.port=19333", "-volume.port=18080", "-filer.port=18888"])
            .arg(format!("-s3.port={S3_PORT}"))
            .arg(format!("-s3.config={}", self.dir.join("s3.json").display()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        // Ready when an S3 request is answered (403 for an anonymous one).
        wait_for("SeaweedFS to answer S3 requests", Duration::from_secs(60), || {
            reqwest::blocking::get(format!("{}/", Self::endpoint())).is_ok_and(|r| r.status().as_u16() == 403)
        });
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        self.stop();
    }
}
