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
