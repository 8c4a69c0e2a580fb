//! RFC 3161 timestamps against a real TSA: OpenSSL's `openssl ts -reply` behind
//! tests/tsa/tsa-server on loopback, asked over real HTTP, its tokens checked offline with
//! a pin on its certificate.

use crate::common::{free_port, output_dir, repo, wait_for};
use courtbox::base::WallTime;
use courtbox::witness::tsa::{TsaError, TsaPin, request_token, verify_token};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A test TSA: its authority (CA, certificate, key) lives in `dir` and survives restarts.
pub struct TestTsa {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    // Kept as fields so `cert()` and `ca()` can lend them.
    cert: PathBuf,
    ca: PathBuf,
}

impl TestTsa {
    /// Starts a TSA in `dir`, creating its authority there on first use.
    pub fn start(dir: &Path) -> TestTsa {
        let mut tsa = TestTsa {
            dir: dir.to_path_buf(),
            port: free_port(),
            child: None,
            cert: dir.join("tsa.pem"),
            ca: dir.join("ca.pem"),
        };
        tsa.resume();
        tsa
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The TSA's own certificate (PEM), the one to pin.
    pub fn cert(&self) -> &Path {
        &self.cert
    }

    /// The CA that issued it (PEM).
    pub fn ca(&self) -> &Path {
        &self.ca
    }

    pub fn pin(&self) -> TsaPin {
        TsaPin::load(self.cert(), self.ca()).unwrap()
    }

    /// Stops the TSA as an outage would (killed), and waits until its port is closed.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let port = self.port;
        wait_for("the TSA port to close", TIMEOUT, || std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }

    /// Starts the TSA again, same authority and port; returns once it listens.
    pub fn resume(&mut self) {
        // The server's stderr, one line per request, appended across restarts.
        std::fs::create_dir_all(&self.dir).unwrap();
        let log_path = self.dir.join("tsa-server.log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
        let mut child = Command::new("python3")
            .arg(repo().join("tests/tsa/tsa-server"))
            .arg("--dir")
            .arg(&self.dir)
            .args(["--port", &self.port.to_string()])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("python3 runs tests/tsa/tsa-server");
        // "ready" once listening; EOF instead means it died (its log says why).
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "tsa-server did not start; see {}", log_path.display());
        self.child = Some(child);
    }
}

impl Drop for TestTsa {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn request(url: &str, data: &[u8]) -> Result<Vec<u8>, TsaError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(request_token(url, data, TIMEOUT))
}

#[test]
fn token_from_the_tsa_verifies_offline_with_its_pin_and_carries_the_current_time() {
    let tsa = TestTsa::start(&output_dir("tsa-verifies").join("tsa"));
    let data = b"checkpoint: session 1, record 42, hash 6f1ed002ab5595859014ebf0951522d9";
    let before = WallTime::now();
    let token = request(&tsa.url(), data).unwrap();
    let after = WallTime::now();

    let pin = tsa.pin();
    assert!(pin.name().starts_with("courtbox test TSA (SHA-256 "), "{}", pin.name());
    let time = verify_token(&token, data, &pin).unwrap();
    // genTime has whole seconds (and the TSA claims 1 s accuracy).
    assert!(time.since(before) > -2_000_000_000, "genTime {time} is before the request at {before}");
    assert!(after.since(time) > -2_000_000_000, "genTime {time} is after the answer at {after}");
}

#[test]
fn token_checked_against_other_bytes_is_wrong_data() {
    let tsa = TestTsa::start(&output_dir("tsa-wrong-data").join("tsa"));
    let token = request(&tsa.url(), b"checkpoint A").unwrap();
    let result = verify_token(&token, b"checkpoint B", &tsa.pin());
    assert!(matches!(result, Err(TsaError::WrongData)), "{result:?}");
}

#[test]
fn token_from_another_tsa_is_wrong_authority_for_the_pinned_one() {
    let root = output_dir("tsa-wrong-authority");
    // Same default name, issuer name and key type for both: only their keys tell them apart.
    let pinned = TestTsa::start(&root.join("pinned"));
    let other = TestTsa::start(&root.join("other"));
    let data = b"checkpoint";
    let token = request(&other.url(), data).unwrap();
    // The other TSA's token is itself sound: only the authority is wrong.
    verify_token(&token, data, &other.pin()).unwrap();
    let result = verify_token(&token, data, &pinned.pin());
    assert!(matches!(result, Err(TsaError::WrongAuthority(_))), "{result:?}");
}

#[test]
fn stopped_tsa_is_unreachable_and_answers_again_when_resumed() {
    let mut tsa = TestTsa::start(&output_dir("tsa-unreachable").join("tsa"));
    tsa.stop();
    let result = request(&tsa.url(), b"checkpoint");
    assert!(matches!(result, Err(TsaError::Unreachable(_))), "{result:?}");
    tsa.resume();
    let token = request(&tsa.url(), b"checkpoint").unwrap();
    verify_token(&token, b"checkpoint", &tsa.pin()).unwrap();
}
