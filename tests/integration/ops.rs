//! Operations: Prometheus metrics of a running box.

use crate::common::*;
use std::time::Duration;

fn scrape(tb: &TestBox) -> prometheus_parse::Scrape {
    courtbox::base::install_tls_provider();
    let resp = reqwest::blocking::get(format!("http://127.0.0.1:{}/metrics", tb.port)).unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().unwrap();
    assert!(text.trim_end().ends_with("# EOF"), "OpenMetrics text ends with # EOF:\n{text}");
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses as Prometheus text")
}

fn value(scrape: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .unwrap_or_else(|| panic!("no sample {name} {label:?}"));
    match sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("{name}: unexpected {other:?}"),
    }
}

/// `/metrics` parses, shows every source up while recording, and after a short session its
/// totals are exactly the ledger's.
#[test]
fn metrics_parse_and_match_the_ledger() {
    let tb = TestBox::new("ops_metrics", "tests/fixtures/light.toml", 2);
    let daemon = tb.start();
    let session = tb.start_session();
    std::thread::sleep(Duration::from_secs(5));
    let live = scrape(&tb);
    assert_eq!(value(&live, "courtbox_recording", None), 1.0);
    for source in ["bench", "hall", "judge", "prosecutor", "defence", "witness"] {
        assert_eq!(value(&live, "courtbox_source_up", Some(("source", source))), 1.0, "{source}");
    }
    std::thread::sleep(Duration::from_secs(3));
    tb.stop_session();
    wait_for("the upload to drain", Duration::from_secs(30), || tb.status()["storage"]["backlog"]["objects"] == 0);
    let after = scrape(&tb);
    daemon.terminate();

    let records = tb.records(session);
    let segs = segments(&records);
    let reader = courtbox::ledger::Reader::open(&tb.data().join("ledger.db")).unwrap();
    let bytes: u64 = reader.segments(session).unwrap().iter().map(|s| s.bytes).sum();
    assert!(segs.len() >= 18, "{} segments", segs.len());
    assert_eq!(value(&after, "courtbox_segments_committed_total", None), segs.len() as f64);
    assert_eq!(value(&after, "courtbox_recorded_bytes_total", None), bytes as f64);
    assert_eq!(value(&after, "courtbox_gaps_total", None), gaps(&records).len() as f64);
    assert_eq!(value(&after, "courtbox_recording", None), 0.0);
    assert_eq!(value(&after, "courtbox_upload_backlog_objects", None), 0.0);
    assert_eq!(value(&after, "courtbox_disk_level", None), 0.0);
    assert!(value(&after, "courtbox_disk_free_bytes", None) > 0.0);
}

/// Messages received on a notify socket within `window`.
fn notifications(sock: &std::os::unix::net::UnixDatagram, window: Duration) -> Vec<String> {
    let deadline = std::time::Instant::now() + window;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
    }
    out
}

/// The notify protocol with a test socket as NOTIFY_SOCKET: READY after start, WATCHDOG
/// while healthy (also while recording), none once the recording path stalls.
#[test]
fn systemd_gets_ready_and_a_watchdog_that_stops_when_recording_stalls() {
    let tb = TestBox::with_extra("ops_notify", "tests/fixtures/light.toml", 2, "[debug]\nfault_injection = true\n");
    let path = tb.root.join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let daemon = tb.start_with_env(&[("NOTIFY_SOCKET", path.to_str().unwrap()), ("WATCHDOG_USEC", "1500000")]);
    let idle = notifications(&sock, Duration::from_secs(3));
    assert!(idle.first().is_some_and(|m| m.contains("READY=1")), "READY first: {idle:?}");
    assert!(idle.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 3, "{idle:?}");
    assert!(idle.iter().any(|m| m.contains("STATUS=idle")), "{idle:?}");

    tb.start_session();
    let recording = notifications(&sock, Duration::from_secs(4));
    assert!(recording.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 4, "{recording:?}");
    assert!(recording.iter().any(|m| m.contains("STATUS=recording session")), "{recording:?}");

    let (code, body) = tb.post("/api/v1/debug/stall-ledger", serde_json::json!({}));
    assert_eq!(code, 200, "{body}");
    notifications(&sock, Duration::from_secs(1));
    let stalled = notifications(&sock, Duration::from_secs(5));
    assert!(stalled.iter().all(|m| !m.contains("WATCHDOG=1")), "no watchdog once stalled: {stalled:?}");
    daemon.kill9();
}

/// The unit file passes `systemd-analyze verify` (pointed at the built binary).
#[test]
fn the_systemd_unit_verifies() {
    let dir = output_dir("ops_unit");
    let unit = std::fs::read_to_string(repo().join("systemd/courtbox.service")).unwrap();
    assert!(unit.contains("Type=notify") && unit.contains("WatchdogSec=") && unit.contains("ProtectSystem=strict"));
    let path = dir.join("courtbox.service");
    std::fs::write(&path, unit.replace("/usr/bin/courtbox", BIN)).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (package systemd, installed by scripts/setup --tests)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("courtbox.service:"), "no warning about the unit: {text}");
}

/// `systemd-analyze security --offline=yes` on a unit text: the overall exposure (0–10, lower
/// is better) and the settings it counts against the unit.
fn exposure(dir: &std::path::Path, unit: &str) -> (f64, Vec<String>) {
    let path = dir.join("courtbox.service");
    std::fs::write(&path, unit.replace("/usr/bin/courtbox", BIN)).unwrap();
    let run = |json: bool| {
        let mut c = std::process::Command::new("systemd-analyze");
        c.args(["security", "--offline=yes", "--no-pager"]);
        if json {
            c.arg("--json=short");
        }
        let out = c.arg(&path).output().expect("systemd-analyze (package systemd)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = run(false);
    let overall = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for courtbox.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{text}"));
    let items: Vec<serde_json::Value> = serde_json::from_str(&run(true)).unwrap();
    let against = items
        .iter()
        .filter(|i| i["set"] == false && !i["exposure"].is_null())
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    (overall, against)
}

/// The unit's hardening (issue 20, item 14). `systemd-analyze security` scored the unit 1.9
/// before it and scores it 1.5 now; the bound fails if the new settings are taken out.
/// Every setting still counted against the unit is justified in a comment of the unit.
#[test]
fn the_systemd_unit_is_hardened() {
    const BOUND: f64 = 1.5;
    let dir = output_dir("ops_unit_security");
    let unit = std::fs::read_to_string(repo().join("systemd/courtbox.service")).unwrap();
    for line in [
        "MemoryDenyWriteExecute=yes",
        "Environment=ORC_CODE=backup",
        "Environment=COURTBOX_BOOT_ID=%b",
        "ProcSubset=pid",
        "PrivateIPC=yes",
        "RemoveIPC=yes",
        "LimitCORE=0",
        "LimitNOFILE=4096",
        "IPAddressDeny=any",
        "SocketBindDeny=any",
        "RestrictRealtime=yes",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }
    // The API's default address is among the ports the unit lets it bind.
    let port = courtbox::config::ApiConfig::default().listen.rsplit(':').next().unwrap().to_string();
    assert!(unit.lines().any(|l| l == format!("SocketBindAllow=tcp:{port}")), "api.listen's default port {port}");
    assert!(!unit.contains("usb_device"), "no profile captures from raw USB devices");

    let (score, against) = exposure(&dir, &unit);
    assert!(score <= BOUND, "exposure {score} > {BOUND}: {against:?}");
    let comments: String = unit.lines().filter(|l| l.starts_with('#')).collect::<Vec<_>>().join("\n");
    for name in &against {
        // `RestrictAddressFamilies=~AF_(INET|INET6)` → `AF_INET`; `PrivateUsers=` as it is.
        let key = match name.split_once('~') {
            Some((_, what)) => what.split('(').next().unwrap().trim_end_matches('_').to_string(),
            None => name.split_inclusive('=').next().unwrap().to_string(),
        };
        let key = if key == "AF" { "AF_INET".to_string() } else { key };
        assert!(comments.contains(&key), "{name} counts against the unit, and no comment justifies it ({key})");
    }

    // The bound is not loose: without the settings this issue added, the unit scores above it.
    let added =
        ["MemoryDenyWriteExecute=", "ProcSubset=", "PrivateIPC=", "RemoveIPC=", "IPAddressDeny=", "PrivateMounts="];
    let weaker: String =
        unit.lines().filter(|l| !added.iter().any(|a| l.starts_with(a))).map(|l| format!("{l}\n")).collect();
    let (weaker_score, _) = exposure(&dir, &weaker);
    assert!(weaker_score > BOUND, "without the hardening the unit scores {weaker_score}");
}

/// Runs `courtbox check --json`: exit code and item → (level, message).
fn check(tb: &TestBox) -> (i32, std::collections::BTreeMap<String, (String, String)>) {
    let out = tb.cli(&["check", "--json"]);
    let findings: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let lines = findings
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap().to_string();
            (s("item"), (s("level"), s("message")))
        })
        .collect();
    (out.status.code().unwrap(), lines)
}

/// The preflight passes on healthy sources, and fails on exactly the lines that are wrong:
/// a black camera, an unplugged microphone, a missing model, an unreachable store.
#[test]
fn check_passes_healthy_sources_and_names_each_fault() {
    let tb = TestBox::new("ops_check_healthy", "tests/fixtures/light.toml", 2);
    let (code, lines) = check(&tb);
    assert_eq!(code, 0, "{lines:#?}");
    for source in ["bench", "hall", "judge", "prosecutor", "defence", "witness"] {
        assert_eq!(lines[&format!("signal {source}")].0, "ok", "{lines:#?}");
    }
    for item in ["configuration", "disk", "central store", "network", "speech model"] {
        assert_eq!(lines[item].0, "ok", "{item}: {lines:#?}");
    }
    assert!(lines["disk"].1.contains("hours of recording"), "{lines:#?}");

    let missing = repo().join("target/test-output/no-such-model/ggml-base-q8_0.bin");
    let tb = TestBox::with_extra(
        "ops_check_faulty",
        "tests/fixtures/faulty.toml",
        2,
        &format!(
            "[stt]\nmodel = \"{}\"\n[store]\nurl = \"s3://records/kz\"\nendpoint = \"http://127.0.0.1:9\"\n",
            missing.display()
        ),
    );
    let (code, lines) = check(&tb);
    assert_eq!(code, 1, "{lines:#?}");
    let failed: Vec<&str> = lines.iter().filter(|(_, (l, _))| l == "fail").map(|(k, _)| k.as_str()).collect();
    assert_eq!(failed, ["central store", "signal bench", "signal witness", "speech model"], "{lines:#?}");
    assert!(lines["signal bench"].1.contains("black"), "{lines:#?}");
    assert!(lines["signal witness"].1.contains("no signal"), "{lines:#?}");
    assert!(lines["speech model"].1.contains("models/fetch base-q8"), "{lines:#?}");
    // The default model cannot do Kazakh: a warning (not a failure) per language.
    assert_eq!(lines["captions kk"].0, "warn", "{lines:#?}");
    assert!(lines["captions kk"].1.starts_with("Kazakh: no live captions with the installed speech model base-q8"));
    assert_eq!((lines["captions ru"].0.as_str(), lines["captions en"].0.as_str()), ("ok", "ok"), "{lines:#?}");
    assert!(lines["central store"].1.contains("cannot reach"), "{lines:#?}");
    assert!(!tb.data().join("spool").exists(), "a check records nothing");
}

/// `devices` sees a PulseAudio virtual microphone made here (a null sink's monitor) and
/// prints a profile for it that validates; with no camera it says so plainly.
#[test]
fn devices_lists_a_virtual_microphone_and_prints_a_valid_profile() {
    let dir = output_dir("ops_devices");
    let runtime = dir.join("xdg");
    std::fs::create_dir_all(&runtime).unwrap();
    let env = [("XDG_RUNTIME_DIR", runtime.to_str().unwrap())];
    let started = std::process::Command::new("pulseaudio")
        .envs(env)
        .args(["-D", "-n", "--exit-idle-time=-1", "--load=module-native-protocol-unix"])
        .arg("--load=module-null-sink sink_name=test_bench_mic sink_properties=device.description=Test-bench-mic")
        .status()
        .expect("pulseaudio (scripts/setup --tests installs it)");
    assert!(started.success());
    struct Stop<'a>(&'a std::path::Path);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("pulseaudio").env("XDG_RUNTIME_DIR", self.0).arg("-k").status();
        }
    }
    let _stop = Stop(&runtime);

    let out = std::process::Command::new(BIN).envs(env).arg("devices").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("device=test_bench_mic.monitor"), "{text}");
    let has_cameras =
        std::fs::read_dir("/dev").unwrap().flatten().any(|e| e.file_name().to_string_lossy().starts_with("video"));
    if !has_cameras {
        assert!(text.contains("CAMERAS: none found"), "{text}");
    }
    let (_, profile) = text.split_once("# ---- hardware profile").unwrap();
    let path = dir.join("found.toml");
    std::fs::write(&path, profile.split_once('\n').unwrap().1).unwrap();
    let p = courtbox::config::load_profile(&path).unwrap_or_else(|e| panic!("{e}\n{profile}"));
    let pulse = p.audio_devices.iter().find(|d| d.device.as_deref() == Some("test_bench_mic.monitor")).unwrap();
    assert_eq!(pulse.source, courtbox::config::AudioSourceKind::Pulse);
    assert_eq!(pulse.mics.len() as u32, pulse.channels);
}

/// The Debian package builds (cargo-deb, a release build of its own in `target/package`,
/// without the suite's fault-injection feature) and holds the binary, the unit, the default
/// configuration, the profiles, and a postinst that makes the service user; its binary has
/// no fault injection and refuses a configuration that asks for it.
#[test]
fn the_debian_package_builds_with_the_expected_files() {
    let out_dir = output_dir("ops_deb");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let package_target = repo().join("target/package");
    let built = std::process::Command::new(cargo)
        .current_dir(repo())
        .env("CARGO_TARGET_DIR", &package_target)
        .args(["deb", "--no-strip", "--quiet", "-o"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "cargo deb (scripts/setup --tests installs it): {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = std::fs::read_dir(&out_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .unwrap();
    let contents = std::process::Command::new("dpkg-deb").arg("--contents").arg(&deb).output().unwrap();
    let listing = String::from_utf8_lossy(&contents.stdout).to_string();
    for file in [
        "./usr/bin/courtbox",
        "./usr/lib/systemd/system/courtbox.service",
        "./etc/courtbox/courtbox.toml",
        "./usr/share/courtbox/hw-profiles/sim.toml",
        "./usr/share/courtbox/hw-profiles/usb-room.toml",
        "./usr/share/doc/courtbox/README.md",
    ] {
        assert!(listing.lines().any(|l| l.ends_with(file)), "{file} missing from:\n{listing}");
    }
    let postinst = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("dpkg-deb --ctrl-tarfile '{}' | tar -xO ./postinst", deb.display()))
        .output()
        .unwrap();
    let postinst = String::from_utf8_lossy(&postinst.stdout).to_string();
    assert!(postinst.contains("adduser --system") && postinst.contains("audio,video"), "{postinst}");
    assert!(postinst.contains("deb-systemd-helper enable courtbox.service"), "{postinst}");
    // The packaged default configuration is valid as shipped (paths as on a box).
    let cfg: courtbox::config::Config =
        toml::from_str(&std::fs::read_to_string(repo().join("systemd/courtbox.toml")).unwrap()).unwrap();
    assert!(courtbox::config::validate_config(&cfg).is_empty());
    // The packaged binary was built without fault injection: a configuration that asks for
    // it is refused, naming the key (the suite's own build accepts it).
    let config = out_dir.join("fault-injection.toml");
    let asks =
        std::fs::read_to_string(repo().join("systemd/courtbox.toml")).unwrap() + "\n[debug]\nfault_injection = true\n";
    std::fs::write(&config, asks).unwrap();
    let checked = std::process::Command::new(package_target.join("release/courtbox"))
        .args(["check", "--config-only", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&checked.stdout).to_string() + &String::from_utf8_lossy(&checked.stderr);
    assert!(!checked.status.success() && said.contains("debug.fault_injection"), "{said}");
}

/// During a session, a black camera and an unplugged microphone become alarms (status, CLI,
/// log) with the time they began; healthy sources raise none.
#[test]
fn signal_problems_during_a_session_become_alarms() {
    let tb = TestBox::with_extra(
        "ops_health",
        "tests/fixtures/faulty.toml",
        2,
        "[health]\nsilent_alarm_seconds = 2\npicture_alarm_seconds = 2\n",
    );
    let daemon = tb.start();
    tb.start_session();
    wait_for("both alarms", Duration::from_secs(20), || {
        let s = tb.status();
        s["session"]["health"].as_array().unwrap().iter().filter(|h| h["alarm"].is_string()).count() == 2
    });
    let status = tb.status();
    let health = status["session"]["health"].as_array().unwrap();
    let alarm = |source: &str| health.iter().find(|h| h["source"] == source).unwrap()["alarm"].clone();
    assert!(alarm("bench").as_str().unwrap().starts_with("picture is black since 20"), "{health:?}");
    assert!(alarm("witness").as_str().unwrap().starts_with("no signal from the microphone since"), "{health:?}");
    for ok in ["hall", "judge", "prosecutor", "defence"] {
        assert!(alarm(ok).is_null(), "{ok}: {health:?}");
    }
    let text = tb.cli_ok(&["status"]);
    assert!(text.contains("ALARM bench: picture is black"), "{text}");
    tb.stop_session();
    daemon.terminate();
    let log = std::fs::read_to_string(tb.root.join("daemon-1.log")).unwrap();
    assert!(log.contains("ALARM: picture is black") && log.contains("ALARM: no signal"), "the log says it");
}

/// Every mutating request lands in the signed audit chain, refusals of nobody in particular
/// in one summary entry (written at shutdown at the latest); a refused request changes
/// nothing; `courtbox audit --verify` names an altered entry.
#[test]
fn actions_and_refusals_are_audited_and_tampering_is_named() {
    let tb = TestBox::new("ops_audit", "tests/fixtures/light.toml", 2);
    let daemon = tb.start();
    courtbox::base::install_tls_provider();
    let url = format!("http://127.0.0.1:{}/api/v1/sessions", tb.port);
    let body = serde_json::json!({ "case": "X-1", "title": "not allowed", "language": "en", "hearing": "open" });
    let http = reqwest::blocking::Client::new();
    let anonymous = http.post(&url).json(&body).send().unwrap().status().as_u16();
    let wrong = http.post(&url).bearer_auth("not-the-token").json(&body).send().unwrap().status().as_u16();
    assert_eq!((anonymous, wrong), (401, 401));
    assert!(tb.status()["session"].is_null(), "a refused request started nothing");
    tb.start_session();
    tb.cli_ok(&["session", "mark", "audited mark"]);
    tb.stop_session();
    // A name that would clear an auditor's terminal and forge a line: refused, and shown
    // escaped.
    let sign_in = format!("http://127.0.0.1:{}/api/v1/auth/sign-in", tb.port);
    let evil = serde_json::json!({ "name": "Evil\u{1b}[2J\n#9     root ok", "pin": "123456" });
    assert_eq!(http.post(&sign_in).json(&evil).send().unwrap().status().as_u16(), 400);
    daemon.terminate();

    let out = tb.cli_ok(&["audit", "--verify"]);
    assert!(out.contains("every signature and link checks out"), "{out}");
    let log = tb.cli_ok(&["audit"]);
    assert!(!log.contains('\u{1b}'), "a control character reached the terminal: {log:?}");
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(lines.len(), 5, "{log}");
    assert!(
        lines[0].contains("technician") && lines[0].contains("POST /api/v1/sessions") && lines[0].contains("ok (201)")
    );
    assert!(lines[1].contains("/marks") && lines[2].contains("/stop"), "{log}");
    assert!(lines[3].contains("Evil\\u{1b}[2J\\u{a}#9") && lines[3].contains("(400)"), "{log}");
    assert!(
        lines[4]
            .contains("refused requests not written one by one: 2 (401: 2) from 1 client(s), most from 127.0.0.1 (2)")
            && lines[4].contains("refused (401)"),
        "{log}"
    );
    let accepted_unauthorised = lines.iter().filter(|l| l.contains("anonymous") && l.contains("ok (")).count();
    assert_eq!(accepted_unauthorised, 0);

    let conn = rusqlite::Connection::open(tb.data().join("ledger.db")).unwrap();
    let body: Vec<u8> = conn.query_row("SELECT body FROM audit WHERE idx = 1", [], |r| r.get(0)).unwrap();
    let altered = String::from_utf8(body).unwrap().replace("marks", "marxs");
    conn.execute("UPDATE audit SET body = ?1 WHERE idx = 1", [altered.into_bytes()]).unwrap();
    drop(conn);
    let out = tb.cli(&["audit", "--verify"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("audit entry #1: bad signature"), "{text}");
}
