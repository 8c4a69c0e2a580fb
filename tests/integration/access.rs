//! The control API's access control with the real daemon: sign-in, roles, CSRF, lock-out,
//! the audit of every change and refusal, recess and privacy mute in the session chain,
//! export, configuration, TLS and bad input.

use crate::common::*;
use courtbox::integrity::Entry;
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

pub const PIN: &str = "482193";

/// Adds a secretary with a PIN through the CLI (the PIN on standard input).
pub fn add_secretary(tb: &TestBox, name: &str, pin: &str) {
    use std::io::Write;
    let mut c = tb.command();
    c.args(["people", "secretary", name, "--pin-stdin"]).stdin(std::process::Stdio::piped());
    let mut child = c.stdout(std::process::Stdio::null()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(format!("{pin}\n").as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
}

/// Adds secretary "Aigerim" (PIN 482193) and technician "ops"; returns the technician token.
pub fn add_people(tb: &TestBox) -> String {
    add_secretary(tb, "Aigerim", PIN);
    let out = tb.cli_ok(&["people", "technician", "ops"]);
    let token = out.lines().last().unwrap().trim().to_string();
    assert!(token.starts_with("cbt_"), "{out}");
    token
}

/// A signed-in panel: its cookie and CSRF token.
pub struct Panel {
    cookie: String,
    pub csrf: String,
}

pub fn sign_in(http: &Client, base: &str, name: &str, pin: &str) -> Result<Panel, (u16, Value)> {
    let r = http.post(format!("{base}/api/v1/auth/sign-in")).json(&json!({ "name": name, "pin": pin })).send().unwrap();
    let status = r.status().as_u16();
    let cookie = r.headers().get(SET_COOKIE).map(|v| v.to_str().unwrap().to_string());
    let body: Value = r.json().unwrap();
    match (status, cookie) {
        (200, Some(c)) => {
            Ok(Panel { cookie: c.split(';').next().unwrap().to_string(), csrf: body["csrf"].as_str().unwrap().into() })
        }
        _ => Err((status, body)),
    }
}

impl Panel {
    /// The `name=value` of its session cookie.
    pub fn cookie(&self) -> &str {
        &self.cookie
    }

    fn with(&self, rb: RequestBuilder, csrf: bool) -> RequestBuilder {
        let rb = rb.header(COOKIE, &self.cookie);
        if csrf { rb.header("X-CSRF-Token", &self.csrf) } else { rb }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Need {
    AnyoneSignedIn,
    Technician,
}

/// Every endpoint behind sign-in: method, path, body, who may call it.
fn endpoints() -> Vec<(&'static str, &'static str, Option<Value>, Need)> {
    use Need::*;
    let start = json!({ "case": "X-1", "title": "t", "language": "en", "hearing": "open" });
    vec![
        ("GET", "/api/v1/auth/me", None, AnyoneSignedIn),
        ("POST", "/api/v1/auth/sign-out", None, AnyoneSignedIn),
        ("GET", "/api/v1/status", None, AnyoneSignedIn),
        ("GET", "/api/v1/status/ws", None, AnyoneSignedIn),
        ("GET", "/api/v1/thumbnails/bench", None, AnyoneSignedIn),
        ("POST", "/api/v1/sessions", Some(start), AnyoneSignedIn),
        ("GET", "/api/v1/sessions", None, AnyoneSignedIn),
        ("POST", "/api/v1/sessions/current/stop", None, AnyoneSignedIn),
        ("POST", "/api/v1/sessions/current/marks", Some(json!({ "text": "x" })), AnyoneSignedIn),
        ("POST", "/api/v1/sessions/current/recess", None, AnyoneSignedIn),
        ("POST", "/api/v1/sessions/current/resume", None, AnyoneSignedIn),
        ("PUT", "/api/v1/sessions/current/privacy-mute", Some(json!({ "muted": true })), AnyoneSignedIn),
        ("GET", "/api/v1/sessions/0", None, AnyoneSignedIn),
        ("GET", "/api/v1/sessions/0/export", None, AnyoneSignedIn),
        ("POST", "/api/v1/sessions/0/transcribe", None, AnyoneSignedIn),
        ("GET", "/api/v1/captions/live", None, AnyoneSignedIn),
        ("GET", "/api/v1/captions/search?q=x", None, AnyoneSignedIn),
        ("GET", "/api/v1/config", None, Technician),
        ("PUT", "/api/v1/config", None, Technician),
        ("GET", "/api/v1/people", None, Technician),
        ("PUT", "/api/v1/people/someone", Some(json!({ "role": "technician" })), Technician),
        ("DELETE", "/api/v1/people/someone", None, Technician),
        ("GET", "/api/v1/audit", None, Technician),
        ("POST", "/api/v1/debug/fail-device", Some(json!({ "device": "desk" })), Technician),
        ("POST", "/api/v1/debug/stall-ledger", None, Technician),
    ]
}

fn request(http: &Client, base: &str, method: &str, path: &str, body: &Option<Value>) -> RequestBuilder {
    let rb = http.request(method.parse().unwrap(), format!("{base}{path}"));
    match body {
        Some(b) => rb.json(b),
        None => rb,
    }
}

fn audit_lines(tb: &TestBox) -> Vec<String> {
    tb.cli_ok(&["audit"]).lines().filter(|l| l.starts_with('#')).map(str::to_string).collect()
}

/// Every endpoint refuses the anonymous, wrong tokens, panel changes without the CSRF token,
/// and secretaries on technicians' endpoints; nothing refused had an effect. Every refusal
/// of someone named (on the box's own address) is an audit entry; those of nobody are
/// counted in one summary entry, written at shutdown at the latest.
#[test]
fn every_endpoint_refuses_the_unauthorised_and_audits_it() {
    let tb =
        TestBox::with_extra("access_refusals", "tests/fixtures/light.toml", 2, "[debug]\nfault_injection = true\n");
    let daemon = tb.start();
    let token = add_people(&tb);
    let http = Client::new();
    let base = format!("http://127.0.0.1:{}", tb.port);
    let panel = sign_in(&http, &base, "Aigerim", PIN).unwrap();
    // The technician's token is in use before the wrong ones come (a token already checked
    // is not held up by the client's sign-in limit, which the wrong tokens below exhaust).
    assert_eq!(http.get(format!("{base}/api/v1/people")).bearer_auth(&token).send().unwrap().status(), 200);
    let before = audit_lines(&tb).len();

    let (mut refused, mut refused_nobody) = (0, 0);
    let mut accepted_unauthorised = Vec::new();
    for (method, path, body, need) in endpoints() {
        let mut attempts: Vec<(&str, RequestBuilder)> = vec![
            ("anonymous", request(&http, &base, method, path, &body)),
            ("wrong token", request(&http, &base, method, path, &body).bearer_auth("cbt_000000_deadbeef")),
            ("forged cookie", request(&http, &base, method, path, &body).header(COOKIE, "courtbox_session=forged")),
        ];
        if method != "GET" {
            attempts.push(("panel without CSRF", panel.with(request(&http, &base, method, path, &body), false)));
        }
        if need == Need::Technician {
            attempts.push(("secretary", panel.with(request(&http, &base, method, path, &body), true)));
        }
        for (who, rb) in attempts {
            let status = rb.send().unwrap().status().as_u16();
            if matches!(status, 401 | 403 | 429) {
                if matches!(who, "anonymous" | "wrong token" | "forged cookie") {
                    refused_nobody += 1;
                } else {
                    refused += 1;
                }
            } else {
                accepted_unauthorised.push(format!("{who}: {method} {path} -> {status}"));
            }
        }
    }
    assert!(accepted_unauthorised.is_empty(), "accepted unauthorised: {accepted_unauthorised:#?}");
    assert!(tb.status()["session"].is_null(), "nothing refused started a session");
    assert_eq!(tb.cli_ok(&["people", "list"]).lines().count(), 2, "nobody was added or removed");

    // Every refusal of someone named is an audit entry naming the refusal.
    let lines = audit_lines(&tb);
    let new: Vec<&String> = lines[before..].iter().collect();
    assert_eq!(new.iter().filter(|l| l.contains("refused (")).count(), refused, "{new:#?}");
    assert!(
        new.iter()
            .any(|l| l.contains("Aigerim (panel)") && l.contains("refused (403)") && l.contains("PUT /api/v1/config"))
    );

    // The same endpoints work for those allowed: a technician's token reads the people.
    let people: Value = http.get(format!("{base}/api/v1/people")).bearer_auth(&token).send().unwrap().json().unwrap();
    assert_eq!(people.as_array().unwrap().len(), 2, "{people}");
    assert!(!people.to_string().contains("argon2"), "no hash leaves the box");
    daemon.terminate();
    let summary = format!("refused requests not written one by one: {refused_nobody} (");
    assert!(audit_lines(&tb).iter().any(|l| l.contains(&summary)), "no summary of {refused_nobody} refusals");
}

/// A secretary's whole hearing through the API, found again in the session chain (with
/// who did what), the audit chain and an export that `verify` accepts.
#[test]
fn a_secretary_runs_a_hearing_with_recess_mute_and_marks() {
    let tb = TestBox::new("access_hearing", "tests/fixtures/light.toml", 2);
    let daemon = tb.start();
    add_people(&tb);
    let http = Client::new();
    let base = format!("http://127.0.0.1:{}", tb.port);
    let p = sign_in(&http, &base, "Aigerim", PIN).unwrap();
    let call = |method: &str, path: &str, body: Option<Value>| -> (u16, Value) {
        let r = p.with(request(&http, &base, method, path, &body), true).send().unwrap();
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    };
    let (s, started) = call(
        "POST",
        "/api/v1/sessions",
        Some(json!({ "case": "2-77/2026", "title": "Recess drill", "language": "ru", "hearing": "open" })),
    );
    assert_eq!(s, 201, "{started}");
    let session = started["session"].as_str().unwrap().to_string();
    wait_for("a thumbnail", Duration::from_secs(15), || {
        let r = p.with(http.get(format!("{base}/api/v1/thumbnails/bench")), false).send().unwrap();
        r.status() == 200 && r.bytes().unwrap().starts_with(&[0xff, 0xd8])
    });
    assert_eq!(call("POST", "/api/v1/sessions/current/marks", Some(json!({ "text": "witness sworn in" }))).0, 201);
    assert_eq!(call("PUT", "/api/v1/sessions/current/privacy-mute", Some(json!({ "muted": true }))).0, 200);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(call("POST", "/api/v1/sessions/current/recess", None).0, 200);
    let status = call("GET", "/api/v1/status", None).1;
    assert_eq!(
        (status["session"]["state"].as_str(), status["session"]["privacy_muted"].as_bool()),
        (Some("recess"), Some(true))
    );
    assert_eq!(call("POST", "/api/v1/sessions/current/recess", None).0, 409, "already in recess");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(call("POST", "/api/v1/sessions/current/resume", None).0, 200);
    assert_eq!(call("PUT", "/api/v1/sessions/current/privacy-mute", Some(json!({ "muted": false }))).0, 200);
    std::thread::sleep(Duration::from_secs(3));
    let (s, stopped) = call("POST", "/api/v1/sessions/current/stop", None);
    assert_eq!(s, 200, "{stopped}");

    // The session chain says who did what, and the recess is a stated gap of every source.
    let records = tb.records(session.parse().unwrap());
    let by_aigerim = |e: &Entry| match e {
        Entry::Mark { by, text, .. } => text == "witness sworn in" && by.as_deref() == Some("Aigerim (panel)"),
        Entry::Recess { by, .. } | Entry::RecessEnd { by, .. } | Entry::PrivacyMute { by, .. } => {
            by == "Aigerim (panel)"
        }
        _ => false,
    };
    let kinds: Vec<&str> = records.iter().filter(|r| by_aigerim(&r.entry)).map(|r| r.entry.kind()).collect();
    assert_eq!(kinds, ["mark", "privacy_mute", "recess", "recess_end", "privacy_mute"]);
    let recess_gaps = records
        .iter()
        .filter(|r| {
            matches!(&r.entry, Entry::Gap { reason, media_start, media_end, .. }
            if reason == courtbox::integrity::RECESS_REASON && media_end.0 - media_start.0 > 2_000_000_000)
        })
        .count();
    assert_eq!(recess_gaps, 6, "each of the 6 sources has the recess as a stated gap");
    assert!(records.iter().any(|r| matches!(
        r.entry,
        Entry::RunStart { run: 2, cause: courtbox::integrity::RunCause::ResumeAfterRecess, .. }
    )));

    // The session list, its events and the export zip, which verifies.
    let list = call("GET", "/api/v1/sessions", None).1;
    assert_eq!(list[0]["id"].as_str(), Some(session.as_str()));
    let detail = call("GET", &format!("/api/v1/sessions/{}", &session[..8]), None).1;
    assert!(detail["events"].as_array().unwrap().iter().any(|e| e["entry"]["kind"] == "recess"), "{detail}");
    let zip = p.with(http.get(format!("{base}/api/v1/sessions/{session}/export")), false).send().unwrap();
    assert_eq!(zip.status(), 200);
    let bytes = zip.bytes().unwrap();
    let out = tb.root.join("export-from-api");
    zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap().extract(&out).unwrap();
    let (code, report) = verify(&out, Some(&tb.public_key()));
    assert_eq!(code, 0, "{report}");
    assert!(!tb.data().join("exports").exists(), "an export is streamed, never copied to disk");

    // The audit chain has every change with who did it, and verifies.
    let audit = audit_lines(&tb);
    for action in ["POST /api/v1/sessions ", "/marks", "/privacy-mute", "/recess", "/resume", "/stop"] {
        assert!(
            audit.iter().any(|l| l.contains("Aigerim (panel)")
                && l.contains("secretary")
                && l.contains(action)
                && l.contains("ok (")),
            "{action} not audited: {audit:#?}"
        );
    }
    assert!(tb.cli_ok(&["audit", "--verify"]).contains("every signature and link checks out"));
    drop(daemon);
}

/// Wrong PINs are refused; after `lockout_failures` the account is locked even for the
/// right PIN, other accounts are not; a signed-out cookie no longer works.
#[test]
fn wrong_pins_lock_the_account_and_sessions_end() {
    let tb = TestBox::with_extra(
        "access_lockout",
        "tests/fixtures/light.toml",
        2,
        "[api]\nlockout_failures = 3\nlockout_minutes = 1\n",
    );
    let daemon = tb.start();
    add_people(&tb);
    let http = Client::new();
    let base = format!("http://127.0.0.1:{}", tb.port);
    let (s, e) = sign_in(&http, &base, "Aigerim", "0000").err().unwrap();
    assert_eq!(s, 401);
    assert!(e["error"].as_str().unwrap().contains("2 tries left"), "{e}");
    assert_eq!(sign_in(&http, &base, "Aigerim", "1111").err().unwrap().0, 401);
    let (s, e) = sign_in(&http, &base, "Aigerim", "2222").err().unwrap();
    assert_eq!(s, 429, "{e}");
    assert!(e["error"].as_str().unwrap().contains("locked"), "{e}");
    let (s, e) = sign_in(&http, &base, "Aigerim", PIN).err().unwrap();
    assert_eq!(s, 429, "the right PIN is refused while locked: {e}");
    assert_eq!(sign_in(&http, &base, "Nobody", "1234").err().unwrap().0, 401, "unknown names answer like wrong PINs");

    // A second secretary is not affected; signing out ends the cookie's session.
    add_secretary(&tb, "Dana", "975310");
    let dana = sign_in(&http, &base, "Dana", "975310").unwrap();
    assert_eq!(dana.with(http.get(format!("{base}/api/v1/status")), false).send().unwrap().status(), 200);
    assert_eq!(dana.with(http.post(format!("{base}/api/v1/auth/sign-out")), true).send().unwrap().status(), 200);
    assert_eq!(dana.with(http.get(format!("{base}/api/v1/status")), false).send().unwrap().status(), 401);

    let audit = audit_lines(&tb);
    let sign_ins: Vec<&String> = audit.iter().filter(|l| l.contains("/api/v1/auth/sign-in")).collect();
    assert_eq!(sign_ins.iter().filter(|l| l.contains("Aigerim (panel sign-in)") && l.contains("refused (")).count(), 4);
    assert!(sign_ins.iter().any(|l| l.contains("Dana (panel)") && l.contains("ok (200)")), "{sign_ins:#?}");
    drop(daemon);
}

/// Bad input gets a clear 4xx JSON message, and the recording goes on untouched.
#[test]
fn bad_input_is_refused_clearly_and_the_recording_goes_on() {
    let tb = TestBox::new("access_bad_input", "tests/fixtures/light.toml", 2);
    let daemon = tb.start();
    let token = add_people(&tb);
    let session = tb.start_session();
    let http = Client::new();
    let base = format!("http://127.0.0.1:{}", tb.port);
    let send = |rb: RequestBuilder| -> (u16, String) {
        let r = rb.bearer_auth(&token).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let cases = vec![
        (
            "malformed JSON",
            send(
                http.post(format!("{base}/api/v1/sessions/current/marks"))
                    .header("content-type", "application/json")
                    .body("{\"text\": "),
            ),
        ),
        (
            "unknown field",
            send(http.post(format!("{base}/api/v1/sessions/current/marks")).json(&json!({ "text": "a", "evil": 1 }))),
        ),
        (
            "empty mark",
            send(http.post(format!("{base}/api/v1/sessions/current/marks")).json(&json!({ "text": "   " }))),
        ),
        (
            "bad language",
            send(
                http.post(format!("{base}/api/v1/sessions"))
                    .json(&json!({ "case": "1", "title": "t", "language": "xx", "hearing": "open" })),
            ),
        ),
        (
            "already recording",
            send(
                http.post(format!("{base}/api/v1/sessions"))
                    .json(&json!({ "case": "1", "title": "t", "language": "en", "hearing": "open" })),
            ),
        ),
        ("no such session", send(http.get(format!("{base}/api/v1/sessions/ffffffff")))),
        ("no such endpoint", send(http.get(format!("{base}/api/v1/nothing")))),
        (
            "huge body",
            send(
                http.post(format!("{base}/api/v1/sessions/current/marks"))
                    .json(&json!({ "text": "x".repeat(3_000_000) })),
            ),
        ),
        ("invalid config", send(http.put(format!("{base}/api/v1/config")).body("court = 5\n"))),
        (
            "short PIN",
            send(http.put(format!("{base}/api/v1/people/Bolat")).json(&json!({ "role": "secretary", "pin": "12" }))),
        ),
        ("resume while recording", send(http.post(format!("{base}/api/v1/sessions/current/resume")))),
    ];
    for (what, (status, body)) in &cases {
        assert!((400..500).contains(status), "{what}: {status} {body}");
        let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{what}: not JSON: {body}"));
        assert!(v["error"].as_str().is_some_and(|e| e.len() > 5), "{what}: {body}");
    }
    let config_error = &cases.iter().find(|c| c.0 == "invalid config").unwrap().1;
    assert_eq!(config_error.0, 422);
    assert!(config_error.1.contains("court"), "{}", config_error.1);
    assert!(std::fs::read_to_string(&tb.config).unwrap().contains("court = \"test-court\""), "config untouched");
    std::thread::sleep(Duration::from_secs(2));
    let status = tb.status();
    assert_eq!(status["session"]["id"].as_str(), Some(session.to_string().as_str()));
    assert_eq!(status["session"]["stats"]["gaps"].as_u64(), Some(0));
    tb.stop_session();
    let records = tb.records(session);
    assert!(!records.iter().any(|r| matches!(r.entry, Entry::Gap { .. })), "no gap in the recording");
    drop(daemon);
}

/// With a certificate configured the API speaks only HTTPS and the cookie is `Secure`.
#[test]
fn tls_when_configured() {
    let root = output_dir("access_tls_keys");
    let (cert, key) = (root.join("cert.pem"), root.join("key.pem"));
    // A test CA and a server certificate it signs (webpki refuses a CA as the server's own).
    let ca = (root.join("ca.pem"), root.join("ca.key"));
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl").current_dir(&root).args(args).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-days", "2", "-subj", "/CN=courtbox test CA", "-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
    );
    openssl(&[&["req"][..], &ec, &["-subj", "/CN=localhost", "-keyout", "key.pem", "-out", "req.csr"]].concat());
    std::fs::write(root.join("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
        .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "req.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "cert.pem",
    ]);
    // The daemon refuses a TLS key that the group or others may read (openssl writes 0600;
    // the test says so rather than rely on it).
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let tb = TestBox::with_extra(
        "access_tls",
        "tests/fixtures/light.toml",
        2,
        &format!("[api]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n", cert.display(), key.display()),
    );
    let daemon = tb.start();
    add_people(&tb);
    let anchor = reqwest::Certificate::from_pem(&std::fs::read(&ca.0).unwrap()).unwrap();
    let https = Client::builder().tls_certs_only([anchor]).build().unwrap();
    let base = format!("https://127.0.0.1:{}", tb.port);
    assert_eq!(https.get(format!("{base}/api/v1/health")).send().unwrap().status(), 200);
    let r = https
        .post(format!("{base}/api/v1/auth/sign-in"))
        .json(&json!({ "name": "Aigerim", "pin": PIN }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers().get(SET_COOKIE).unwrap().to_str().unwrap().to_string();
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let plain = Client::new().get(format!("http://127.0.0.1:{}/api/v1/health", tb.port)).send();
    assert!(plain.is_err() || !plain.unwrap().status().is_success(), "plain HTTP is not served");
    drop(daemon);

    // A TLS key the group may read is refused before anything listens, naming file and fix.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = tb.command().arg("run").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&format!("{}: mode 0640", key.display())) && err.contains("chmod 600"), "{err}");
}
