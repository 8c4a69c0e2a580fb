//! Helpers: a test box (config + data directory), the real `courtbox` daemon as a child
//! process, and the CLI.

use courtbox::integrity::{Entry, RecordBody};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use uuid::Uuid;

pub const BIN: &str = env!("CARGO_BIN_EXE_courtbox");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh folder under target/test-output, kept after the run so a person can look.
pub fn output_dir(name: &str) -> PathBuf {
    let d = repo().join("target/test-output").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Extra addresses on the loopback interface (TEST-NET-1, 192.0.2.0/24), so that a test can
/// be clients the daemon sees as coming from the network; removed again on drop.
pub struct NetworkClients {
    addresses: Vec<std::net::IpAddr>,
}

impl NetworkClients {
    pub fn add(addresses: &[&str]) -> NetworkClients {
        let addresses: Vec<std::net::IpAddr> = addresses.iter().map(|a| a.parse().unwrap()).collect();
        for a in &addresses {
            // "File exists" is left from a test that was killed: the address is there.
            let out = Command::new("ip").args(["addr", "add", &format!("{a}/32"), "dev", "lo"]).output().unwrap();
            let said = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() || said.contains("File exists"), "ip addr add {a}: {said}");
        }
        NetworkClients { addresses }
    }

    pub fn addresses(&self) -> &[std::net::IpAddr] {
        &self.addresses
    }
}

impl Drop for NetworkClients {
    fn drop(&mut self) {
        for a in &self.addresses {
            let _ = Command::new("ip").args(["addr", "del", &format!("{a}/32"), "dev", "lo"]).output();
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct TestBox {
    pub root: PathBuf,
    pub config: PathBuf,
    pub port: u16,
    starts: std::cell::Cell<u32>,
}

pub struct Daemon {
    child: Option<Child>,
}

impl Daemon {
    /// Power-cut style death: no chance to finalize anything.
    pub fn kill9(mut self) {
        let mut c = self.child.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }
    /// Waits up to `timeout` for the daemon to exit by itself; its status if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// A service stop (SIGTERM), waiting for the daemon to exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        c.wait().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

impl TestBox {
    /// `profile` is a path relative to the repository (e.g. "hw-profiles/sim.toml").
    pub fn new(name: &str, profile: &str, segment_seconds: u32) -> TestBox {
        Self::with_extra(name, profile, segment_seconds, "")
    }

    /// `extra` is appended to the configuration. Captions are off unless `extra` has an
    /// `[stt]` section.
    pub fn with_extra(name: &str, profile: &str, segment_seconds: u32, extra: &str) -> TestBox {
        let audio = if profile.contains("speech-") { "var/test-speech" } else { "var/sim-audio" };
        let stt = if extra.contains("[stt]") { "" } else { "[stt]\nenabled = false\n" };
        // A shared test machine may be short of disk: cameras must not pause in other tests.
        let disk = if extra.contains("[disk]") { "" } else { "[disk]\nwarn_free_mib = 64\ncritical_free_mib = 16\n" };
        // Keys of an `[api]` table in `extra` join the one written here.
        let (api_extra, extra) = match extra.split_once("[api]\n") {
            Some((before, after)) => {
                let end = after.find("\n[").map_or(after.len(), |i| i + 1);
                (after[..end].to_string(), format!("{before}{}", &after[end..]))
            }
            None => (String::new(), extra.to_string()),
        };
        let root = output_dir(name);
        let port = free_port();
        let config = root.join("courtbox.toml");
        std::fs::write(
            &config,
            format!(
                "court = \"test-court\"\nroom = \"room-1\"\ndata_dir = \"data\"\nhw_profile = \"{}\"\n\
                 profile_dirs = [\"{}\"]\n\
                 [recording]\nsegment_seconds = {segment_seconds}\n[api]\nlisten = \"127.0.0.1:{port}\"\n{api_extra}\
                 [sim]\naudio_dir = \"{}\"\n{stt}{disk}{extra}\n",
                repo().join(profile).display(),
                repo().join(profile).parent().unwrap().display(),
                repo().join(audio).display()
            ),
        )
        .unwrap();
        let tb = TestBox { root, config, port, starts: std::cell::Cell::new(0) };
        tb.make_device_key();
        tb
    }

    /// A provisioned box has a key: `run` never makes one (provision.rs tests `provision`
    /// itself). Called again by a test that mounts a fresh volume on the data folder.
    pub fn make_device_key(&self) {
        let key = courtbox::integrity::DeviceKey::create(&self.data().join("device.key")).unwrap();
        std::fs::write(self.data().join("device.pub"), key.public().to_pem()).unwrap();
    }

    /// A box with live captions on, using the default model.
    pub fn with_captions(name: &str, profile: &str, stt: &str) -> TestBox {
        let model = repo().join("models/ggml-base-q8_0.bin");
        Self::with_extra(name, profile, 4, &format!("[stt]\nmodel = \"{}\"\n{stt}", model.display()))
    }

    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn public_key(&self) -> PathBuf {
        self.data().join("device.pub")
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("-c").arg(&self.config).env("RUST_LOG", "info");
        c
    }

    /// Starts `courtbox run` and waits until its API answers.
    pub fn start(&self) -> Daemon {
        self.start_with_env(&[])
    }

    /// Starts the daemon with extra environment variables.
    pub fn start_with_env(&self, env: &[(&str, &str)]) -> Daemon {
        courtbox::base::install_tls_provider();
        let n = self.starts.get() + 1;
        self.starts.set(n);
        let log = self.root.join(format!("daemon-{n}.log"));
        let child = self
            .command()
            .envs(env.iter().copied())
            .arg("run")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut daemon = Daemon { child: Some(child) };
        // The control socket answers whether the network side speaks HTTP or HTTPS.
        let local = self.local_client();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if local.get("http://courtbox/api/v1/health").send().map(|r| r.status().is_success()).unwrap_or(false) {
                return daemon;
            }
            if let Some(status) = daemon.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("daemon exited ({status}) during start:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            assert!(Instant::now() < deadline, "daemon did not answer within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(out.status.success(), "courtbox {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn start_session(&self) -> Uuid {
        self.start_session_in("en")
    }

    pub fn start_session_in(&self, language: &str) -> Uuid {
        let out =
            self.cli_ok(&["session", "start", "--case", "T-1/2026", "--title", "Test hearing", "--language", language]);
        let id = out.split_whitespace().nth(2).unwrap();
        Uuid::parse_str(id).unwrap()
    }

    pub fn stop_session(&self) -> String {
        self.cli_ok(&["session", "stop"])
    }

    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.cli_ok(&["status", "--json"])).unwrap()
    }

    pub fn export(&self, session: Uuid, dir: &Path) {
        self.cli_ok(&["export", &session.to_string(), dir.to_str().unwrap()]);
    }

    pub fn records(&self, session: Uuid) -> Vec<RecordBody> {
        let reader = courtbox::ledger::Reader::open(&self.data().join("ledger.db")).unwrap();
        reader.records(session).unwrap().iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect()
    }

    /// An HTTP client of the daemon's control socket (this process runs as the same user,
    /// so the daemon treats it as a technician on the box).
    pub fn local_client(&self) -> reqwest::blocking::Client {
        courtbox::base::install_tls_provider();
        // From the configuration as it is now: a test may point the box at another data dir.
        let socket = courtbox::config::load(&self.config).map(|c| c.socket_path()).unwrap_or_else(|e| panic!("{e}"));
        reqwest::blocking::Client::builder().unix_socket(socket).build().unwrap()
    }

    /// A POST over the control socket.
    pub fn post(&self, path: &str, body: serde_json::Value) -> (u16, String) {
        let resp = self.local_client().post(format!("http://courtbox{path}")).json(&body).send().unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    }
}

/// Runs `courtbox verify`; returns its exit code and everything it printed.
pub fn verify(dir: &Path, key: Option<&Path>) -> (i32, String) {
    verify_target(dir.as_os_str(), key, None)
}

/// `verify` of a folder or store URL, optionally with a box's configuration.
pub fn verify_target(target: &std::ffi::OsStr, key: Option<&Path>, config: Option<&Path>) -> (i32, String) {
    let key_args: Vec<&str> = key.map(|k| vec!["--key", k.to_str().unwrap()]).unwrap_or_default();
    verify_with(config, target, &key_args)
}

/// `verify TARGET ARGS…` (with `-c CONFIG` if given): its exit code and everything it printed.
pub fn verify_with(config: Option<&Path>, target: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> (i32, String) {
    let mut c = Command::new(BIN);
    if let Some(cfg) = config {
        c.arg("-c").arg(cfg);
    }
    let out = c.arg("verify").arg(target).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// Segment entries of the chain: (source, seq, start ns, end ns, recovered).
pub fn segments(records: &[RecordBody]) -> Vec<(String, u64, u64, u64, bool)> {
    records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::Segment { source, seq, media_start, media_end, recovered, .. } => {
                Some((source.clone(), *seq, media_start.0, media_end.0, *recovered))
            }
            _ => None,
        })
        .collect()
}

/// Gap entries: (source, start ns, end ns, reason).
pub fn gaps(records: &[RecordBody]) -> Vec<(String, u64, u64, String)> {
    records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::Gap { source, media_start, media_end, reason } => {
                Some((source.clone(), media_start.0, media_end.0, reason.clone()))
            }
            _ => None,
        })
        .collect()
}

/// ffprobe's view of a media file: (duration in seconds, decoding errors printed by ffmpeg).
pub fn probe(file: &Path) -> (Option<f64>, String) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe (scripts/setup --tests installs it)");
    let duration = String::from_utf8_lossy(&out.stdout).trim().parse().ok();
    let decode =
        Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(file).args(["-f", "null", "-"]).output().unwrap();
    (duration, String::from_utf8_lossy(&decode.stderr).to_string())
}

/// First timestamp and end (last timestamp + duration) of the packets in a media file, in
/// seconds, read by ffprobe. Segment files are streamable Matroska without a duration in
/// their header, so this is how their length is measured.
pub fn packet_span(file: &Path) -> Option<(f64, f64)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "packet=pts_time,duration_time", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .unwrap();
    let mut span: Option<(f64, f64)> = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut f = line.split(',').map(|v| v.trim().parse::<f64>().ok());
        let (Some(Some(pts)), dur) = (f.next(), f.next().flatten()) else { continue };
        let end = pts + dur.unwrap_or(0.0);
        span = Some(span.map_or((pts, end), |(a, b)| (a.min(pts), b.max(end))));
    }
    span
}

/// A file holding a secret as the box wants it: mode 0600. Returns its path.
pub fn secret_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

pub fn write_file(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(bytes).unwrap();
}

/// Copies a folder tree (so each tamper case works on its own copy of an export).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// The head of an nginx configuration with the RTMP module, run in the foreground by the
/// test with everything (pid, logs) in `dir`; the test appends its `rtmp {}` (and `http {}`)
/// blocks.
pub fn nginx_rtmp_head(dir: &Path) -> String {
    for sub in ["hls", "logs", "tmp"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let d = dir.display();
    format!(
        "load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;\ndaemon off;\nmaster_process off;\n\
         pid {d}/nginx.pid;\nerror_log {d}/logs/error.log info;\nevents {{ worker_connections 64; }}\n"
    )
}

/// Starts nginx on `dir/nginx.conf` and waits until it accepts RTMP on `rtmp_port`.
pub fn start_nginx(dir: &Path, rtmp_port: u16) -> Child {
    let child = Command::new("nginx")
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx with libnginx-mod-rtmp is installed by scripts/setup --tests");
    wait_for("nginx listening", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", rtmp_port)).is_ok()
    });
    child
}
