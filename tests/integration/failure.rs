use crate::common::*;
use courtbox::integrity::Entry;
use std::time::Duration;

/// One device's pipeline errors: the other devices record on without a gap, the failed
/// one is restarted and its gap recorded with the cause.
#[test]
fn a_failing_source_does_not_disturb_the_others() {
    let tb = TestBox::with_extra("a_failing_source", "tests/fixtures/light.toml", 2, "[debug]\nfault_injection = true");
    let daemon = tb.start();
    let session = tb.start_session();
    std::thread::sleep(Duration::from_secs(5));
    let (code, body) = tb.post("/api/v1/debug/fail-device", serde_json::json!({ "device": "desk" }));
    assert_eq!(code, 200, "{body}");
    wait_for("desk to be restarted", Duration::from_secs(15), || {
        let s = tb.status();
        s["session"]["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "desk" && d["restarts"] == 1 && d["state"] == "running")
    });
    std::thread::sleep(Duration::from_secs(5));
    let status = tb.status();
    for d in status["session"]["devices"].as_array().unwrap() {
        if d["name"] != "desk" {
            assert_eq!(d["restarts"], 0, "{d}");
        }
    }
    tb.stop_session();
    daemon.terminate();

    let records = tb.records(session);
    let gaps = gaps(&records);
    let judge: Vec<_> = gaps.iter().filter(|g| g.0 == "judge").collect();
    assert_eq!(judge.len(), 1, "{gaps:?}");
    assert!(judge[0].3.contains("device desk failed") && judge[0].3.contains("fault injected"), "{}", judge[0].3);
    assert!(judge[0].2 - judge[0].1 < 3_000_000_000, "gap of {} ns for a 1 s restart backoff", judge[0].2 - judge[0].1);
    assert!(gaps.iter().all(|g| g.0 == "judge"), "only the failed device has gaps: {gaps:?}");

    // The others: contiguous segments from start to stop.
    let segs = segments(&records);
    for source in ["bench", "hall", "prosecutor", "defence", "witness"] {
        let mine: Vec<_> = segs.iter().filter(|s| s.0 == source).collect();
        assert!(mine.len() >= 6, "{source}: {} segments", mine.len());
        for w in mine.windows(2) {
            assert!(w[0].3.abs_diff(w[1].2) < 1_000_000, "{source}: hole between seq {} and {}", w[0].1, w[1].1);
        }
    }
    // The judge's cut-short segment is in the record too.
    assert!(records.iter().any(|r| matches!(&r.entry, Entry::Segment { source, .. } if source == "judge")));

    let export = tb.root.join("export");
    tb.export(session, &export);
    let (code, text) = verify(&export, Some(&tb.public_key()));
    assert_eq!(code, 0, "{text}");
}

/// A device whose pipeline names an element that is not installed is a configuration or
/// installation fault, not a restart loop: `check` names the element, session start says so
/// at once while the other devices record, status says "cannot start" with no restarts,
/// and the gap says why and that the source never started. VERIFIED then comes with
/// SOURCES MISSING: an intact record is not a complete one.
#[test]
fn a_source_that_cannot_start_is_a_fault_not_a_restart_loop() {
    let tb = box_with_template(
        "a_source_that_cannot_start",
        "camera-sim",
        "# a camera source this machine does not have\nnosuchcamerasrc ! video/x-raw,format=I420,width={width},height={height},framerate={fps}/1\n",
    );

    let check = tb.cli(&["check", "--seconds", "2"]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{text}");
    assert!(text.contains("no element nosuchcamerasrc"), "{text}");

    let daemon = tb.start();
    let started = tb.cli(&["session", "start", "--case", "T-1/2026", "--title", "Test", "--language", "en"]);
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    let session: uuid::Uuid =
        String::from_utf8_lossy(&started.stdout).split_whitespace().nth(2).unwrap().parse().unwrap();
    let warning = String::from_utf8_lossy(&started.stderr);
    for camera in ["bench", "hall"] {
        assert!(
            warning.contains(&format!("device {camera} cannot start"))
                && warning.contains("no element nosuchcamerasrc"),
            "session start must say at once which devices cannot start: {warning}"
        );
    }
    std::thread::sleep(Duration::from_secs(7));
    assert_cannot_start(&tb, &["bench", "hall"], "no element nosuchcamerasrc");
    let human = tb.cli_ok(&["status"]);
    assert!(human.contains("cannot start: no element nosuchcamerasrc"), "{human}");
    assert!(!human.contains("restarting") && !human.contains("restarted automatically"), "{human}");
    tb.stop_session();
    daemon.terminate();

    let records = tb.records(session);
    let gaps = gaps(&records);
    for camera in ["bench", "hall"] {
        let mine: Vec<_> = gaps.iter().filter(|g| g.0 == camera).collect();
        assert_eq!(mine.len(), 1, "{gaps:?}");
        assert!(
            mine[0].3.contains(&format!("device {camera} cannot start: no element nosuchcamerasrc"))
                && mine[0].3.ends_with("never started in this session"),
            "{}",
            mine[0].3
        );
    }
    assert!(gaps.iter().all(|g| g.0 == "bench" || g.0 == "hall"), "the microphones record on: {gaps:?}");
    assert!(segments(&records).iter().filter(|s| s.0 == "judge").count() >= 3);

    let export = tb.root.join("export");
    tb.export(session, &export);
    let (code, text) = verify(&export, Some(&tb.public_key()));
    assert_eq!(code, 0, "the record is intact: {text}");
    assert!(text.contains("VERIFIED"), "{text}");
    assert!(text.contains("SOURCES MISSING: bench, hall recorded nothing (device bench cannot start"), "{text}");
}

/// Status shows `failing` devices as unable to start (never restarted, the error named)
/// and every other device running.
fn assert_cannot_start(tb: &TestBox, failing: &[&str], error: &str) {
    let status = tb.status();
    for d in status["session"]["devices"].as_array().unwrap() {
        if failing.iter().any(|f| d["name"] == *f) {
            assert_eq!(d["state"], "cannot_start", "{d}");
            assert_eq!(d["restarts"], 0, "{d}");
            assert!(d["last_error"].as_str().unwrap().contains(error), "{d}");
        } else {
            assert_eq!(d["state"], "running", "{d}");
        }
    }
}

/// The `light` box with one pipeline template overridden by `text` (in a `pipelines_dir`).
fn box_with_template(name: &str, template: &str, text: &str) -> TestBox {
    let tb = TestBox::new(name, "tests/fixtures/light.toml", 2);
    let templates = tb.root.join("pipelines");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(templates.join(format!("{template}.gst")), text).unwrap();
    let config = std::fs::read_to_string(&tb.config).unwrap();
    std::fs::write(&tb.config, format!("pipelines_dir = \"{}\"\n{config}", templates.display())).unwrap();
    tb
}

/// A template whose elements all exist but which does not parse is the same kind of fault:
/// the devices that use it cannot start and are not retried; the others record.
#[test]
fn a_template_that_does_not_parse_is_a_fault_not_a_restart_loop() {
    let tb = box_with_template(
        "a_template_that_does_not_parse",
        "encode-opus",
        "# a link with no element in it\naudioconvert ! ! opusenc bitrate={bitrate_bps}\n",
    );
    let daemon = tb.start();
    let session = tb.start_session();
    std::thread::sleep(Duration::from_secs(5));
    assert_cannot_start(&tb, &["desk", "floor"], "does not parse");
    tb.stop_session();
    daemon.terminate();
    let records = tb.records(session);
    let gaps = gaps(&records);
    let judge: Vec<_> = gaps.iter().filter(|g| g.0 == "judge").collect();
    assert_eq!(judge.len(), 1, "{gaps:?}");
    assert!(judge[0].3.contains("device desk cannot start: the pipeline description does not parse"), "{}", judge[0].3);
    assert!(segments(&records).iter().filter(|s| s.0 == "bench").count() >= 2, "the cameras record on");
}
