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
