//! The front panel in a real browser (Debian's Chromium, headless, driven by playwright-core
//! from tests/panel/drive.mjs), and the API fuzzed by schemathesis from its OpenAPI document.
//! Screenshots of the main states land in target/test-output/panel_browser/screenshots.

use crate::access::{PIN, add_people, add_secretary, sign_in};
use crate::common::*;
use courtbox::integrity::Entry;
use serde_json::Value;
use std::process::Command;

#[test]
fn a_secretary_records_a_hearing_on_the_touchscreen() {
    // The sim courtroom and an IP camera over RTSP, whose link the panel shows.
    let camera = crate::network::RtspCamera::start(&output_dir("panel_browser-camera"), &[]);
    let profile = output_dir("panel_browser-profile").join("sim-and-ipcam.toml");
    std::fs::write(
        &profile,
        format!(
            "{}\n[[network_source]]\nname = \"ipcam\"\nprotocol = \"rtsp\"\nurl = \"{}\"\n\
             [network_source.video]\nname = \"gallery\"\n",
            std::fs::read_to_string(repo().join("hw-profiles/sim.toml")).unwrap(),
            camera.url()
        ),
    )
    .unwrap();
    let tb = TestBox::with_extra("panel_browser", profile.to_str().unwrap(), 4, "[api]\nlockout_failures = 3\n");
    let daemon = tb.start();
    add_people(&tb);
    add_secretary(&tb, "Dana", "975310");
    let shots = tb.root.join("screenshots");
    let out = Command::new("node")
        .arg(repo().join("tests/panel/drive.mjs"))
        .arg(format!("http://127.0.0.1:{}/", tb.port))
        .arg(&shots)
        .output()
        .expect("node (scripts/setup --tests installs it with playwright-core and chromium)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let found: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|_| {
        panic!("drive.mjs printed no findings:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr))
    });
    assert!(found.get("error").is_none(), "{}", found["error"]);
    println!("{}", serde_json::to_string_pretty(&found).unwrap());

    // Wrong PIN refused, lock-out shown and kept even for the right PIN.
    assert!(found["wrong_pin_message"].as_str().unwrap().contains("Tries left before lock-out: 2"), "{found}");
    assert!(found["locked_message"].as_str().unwrap().starts_with("Too many wrong PINs. Locked"), "{found}");
    assert_eq!(found["console_hidden_while_locked"], true);
    assert_eq!(found["signed_in_as"], "Aigerim");
    assert_eq!(
        (found["kk_state"].as_str(), found["ru_state"].as_str()),
        (Some("ЖАЗБА ТОҚТАТЫЛДЫ"), Some("ЗАПИСЬ ОСТАНОВЛЕНА"))
    );
    assert_eq!(found["kk_start"], "Жазуды бастау");

    // Recording in red with a running timer, moving levels with role labels, thumbnails.
    assert_eq!(found["recording_text"], "● RECORDING");
    assert_eq!(found["start_form_hidden_while_recording"], true);
    assert_eq!(found["banner_colour"], "rgb(198, 40, 40)");
    let timer: Vec<&str> = found["timer"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert!(timer[0] < timer[1] && timer[1] >= "00:00:02", "timer runs: {timer:?}");
    let levels = found["levels"].as_array().unwrap();
    let labels: Vec<&str> = levels[0].as_array().unwrap().iter().map(|l| l[0].as_str().unwrap()).collect();
    assert_eq!(labels, ["Judge", "Prosecutor", "Defence", "Witness"]);
    let speaking = |i: usize| levels[i].as_array().unwrap().iter().filter(|l| l[1].as_f64().unwrap() > -60.0).count();
    assert!(speaking(0) >= 1 && speaking(1) >= 1, "microphones show sound: {levels:?}");
    assert_ne!(levels[0], levels[1], "levels move");
    let thumbs = found["thumbnails"].as_array().unwrap();
    assert_eq!(thumbs.len(), 3, "two cameras and the IP camera: {thumbs:?}");
    assert!(thumbs.iter().all(|t| t[0] == 192 && t[1] == 108), "{thumbs:?}");
    let links = found["thumbnail_links"].as_array().unwrap();
    let link = |source: &str| links.iter().find(|l| l[0] == source).map(|l| l[1].clone()).unwrap_or_default();
    assert_eq!(links.len(), 3, "{links:?}");
    assert!(link("bench").is_null() && link("hall").is_null(), "the box's own cameras have no link: {links:?}");
    let gallery = link("gallery");
    let gallery = gallery.as_str().unwrap_or_default();
    assert!(gallery.contains("Mbit/s"), "the IP camera's link: {links:?}");
    eprintln!("the IP camera's link on the panel: {gallery}");
    assert_eq!(found["muted_badge"], "BROADCAST MUTED");
    assert_eq!(found["broadcast_button_hidden"], true, "no broadcast output on this box");
    assert_eq!(found["close_hearing_text"], "Close hearing (no broadcast)");
    assert!(found["hearing_line"].as_str().unwrap().ends_with("(closed hearing)"), "{found}");
    assert_eq!(found["open_hearing_text"], "Open hearing to the public");
    assert!(found["confirm_text"].as_str().unwrap().starts_with("Stop recording this hearing?"));
    assert_eq!(found["still_recording_after_cancel"], true, "cancel keeps recording");
    assert_eq!(found["stopped_text"], "STOPPED");
    for n in [
        "01-sign-in",
        "02-locked-out",
        "03-stopped",
        "04-kazakh",
        "05-recording",
        "06-privacy-muted",
        "07-confirm-stop",
        "08-stopped-and-sealed",
    ] {
        let png = std::fs::read(shots.join(format!("{n}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{n}.png");
    }

    // All of it is in the session chain, by Aigerim, and in the audit chain.
    let sessions = tb.cli_ok(&["sessions"]);
    let id: uuid::Uuid = sessions.lines().nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    let records = tb.records(id);
    let kinds: Vec<&str> = records
        .iter()
        .filter(|r| match &r.entry {
            Entry::Mark { by, text, .. } => text == "Witness sworn in" && by.as_deref() == Some("Aigerim (panel)"),
            Entry::PrivacyMute { by, .. } | Entry::HearingAccess { by, .. } => by == "Aigerim (panel)",
            Entry::SessionStart { case, .. } => case == "2-345/2026",
            Entry::SessionStop { .. } => true,
            _ => false,
        })
        .map(|r| r.entry.kind())
        .collect();
    assert_eq!(kinds, ["session_start", "mark", "privacy_mute", "privacy_mute", "hearing_access", "session_stop"]);
    let audit = tb.cli_ok(&["audit"]);
    let mine = |action: &str| {
        audit.lines().filter(|l| l.contains("Aigerim (panel)") && l.contains(action) && l.contains("ok (")).count()
    };
    assert_eq!(
        (mine("POST /api/v1/sessions "), mine("/marks"), mine("/privacy-mute"), mine("/hearing"), mine("/stop")),
        (1, 1, 2, 1, 1),
        "{audit}"
    );
    let dana_refused = audit.lines().filter(|l| l.contains("Dana (panel sign-in)") && l.contains("refused (")).count();
    assert_eq!(dana_refused, 4, "3 wrong PINs and the right one while locked: {audit}");
    assert!(tb.cli_ok(&["audit", "--verify"]).contains("every signature and link checks out"));
    drop(daemon);
}

/// schemathesis generates requests from the OpenAPI document (a bounded number per
/// operation) while a session records, signed in as a technician (token) and as a secretary
/// (panel cookie and CSRF token), and checks every answer against the document: no 5xx, and
/// status code, content type, headers and body schema as documented. The daemon stays up
/// and the recording has no gap. Operations that end or pause the recording on purpose
/// (stop, recess), fault injection, and those that would change who may sign in or the
/// configuration are left out, and so are the two streams (WebSocket, SSE).
#[test]
fn fuzzing_the_api_signed_in_finds_no_server_error_and_no_answer_the_document_does_not_describe() {
    let schemathesis = repo().join("var/tools/schemathesis/bin/schemathesis");
    assert!(schemathesis.exists(), "run scripts/setup --tests (installs schemathesis 4.32.5)");
    let tb = TestBox::new("panel_fuzz", "tests/fixtures/light.toml", 2);
    let daemon = tb.start();
    let token = add_people(&tb);
    let session = tb.start_session();
    let base = format!("http://127.0.0.1:{}", tb.port);
    let http = reqwest::blocking::Client::new();
    let secretary = sign_in(&http, &base, "Aigerim", PIN).unwrap();
    let technician = vec![format!("Authorization: Bearer {token}")];
    let panel = vec![format!("Cookie: {}", secretary.cookie()), format!("X-CSRF-Token: {}", secretary.csrf)];
    for (who, headers) in [("technician", technician), ("secretary", panel)] {
        let report = tb.root.join(format!("schemathesis-{who}"));
        let mut command = Command::new(&schemathesis);
        command
            .current_dir(&tb.root)
            .args(["run", &format!("{base}/api/v1/openapi.json"), "--url", &base])
            .args(["--checks", CHECKS, "--max-examples", "25", "--seed", "1", "--workers", "1"])
            .args([
                "--exclude-path-regex",
                "/current/(stop|recess)|/debug/|/people/|/config|/status/ws|/captions/live|/auth/sign-out",
            ])
            .args(["--request-timeout", "20", "--report", "junit", "--report-dir"])
            .arg(&report)
            .env("SCHEMATHESIS_HOOKS", "");
        for h in &headers {
            command.args(["--header", h]);
        }
        let out = command.output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        std::fs::write(tb.root.join(format!("schemathesis-{who}.log")), &text).unwrap();
        assert!(out.status.success(), "schemathesis found failures as a {who}:\n{text}");
        // "863 generated, 863 passed": every generated request was answered as documented.
        let counts = text.lines().find(|l| l.contains(" generated, ")).unwrap_or_else(|| panic!("no summary:\n{text}"));
        println!("schemathesis as a {who}: {}", counts.trim());
        let numbers: Vec<u64> = counts.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect();
        assert!(numbers.len() == 2 && numbers[0] == numbers[1] && numbers[0] >= 200, "{counts}");
    }

    let status = tb.status();
    assert_eq!(
        status["session"]["id"].as_str(),
        Some(session.to_string().as_str()),
        "still recording the same session"
    );
    assert_eq!(status["session"]["state"].as_str(), Some("recording"));
    tb.stop_session();
    let records = tb.records(session);
    assert!(!records.iter().any(|r| matches!(r.entry, Entry::Gap { .. })), "no gap in the recording");
    let (code, report) = verify_session(&tb, session);
    assert_eq!(code, 0, "{report}");
    drop(daemon);
}

/// What schemathesis checks of every answer: beyond "no 5xx", that the document describes it.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance";

fn verify_session(tb: &TestBox, session: uuid::Uuid) -> (i32, String) {
    let dir = tb.root.join("export");
    tb.export(session, &dir);
    verify(&dir, Some(&tb.public_key()))
}
