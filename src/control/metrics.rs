//! Prometheus `/metrics`: a snapshot of the ledger's totals and the live state of capture,
//! captions, upload and disk, encoded in the OpenMetrics text format at each scrape.

use crate::capture::{DeviceState, DeviceStatus, SourceHealth};
use crate::stt::SttStatus;
use crate::upload::{DiskLevel, StorageStatus};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// What one scrape reports.
pub struct Snapshot {
    /// (segments, bytes, gap records) in the ledger, all sessions.
    pub totals: (u64, u64, u64),
    pub recording: bool,
    pub devices: Vec<DeviceStatus>,
    /// Per-source health while recording (only network sources' stream figures are used).
    pub health: Vec<SourceHealth>,
    pub captions: Option<SttStatus>,
    pub storage: Option<StorageStatus>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    device: String,
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeviceLabels {
    device: String,
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g = Gauge::<i64>::default();
    g.set(value);
    registry.register(name, help, g);
}

fn gauge_f64(registry: &mut Registry, name: &str, help: &str, value: f64) {
    let g = Gauge::<f64, AtomicU64>::default();
    g.set(value);
    registry.register(name, help, g);
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

/// What a network source's stream looks like as it arrives (RTSP, SRT, RTMP), one family
/// per figure, labelled by source; a figure the protocol does not give is left out.
fn network_streams(r: &mut Registry, health: &[SourceHealth]) {
    type Figure = fn(&crate::capture::StreamHealth) -> Option<f64>;
    let figures: [(&str, &str, Figure); 5] = [
        ("network_bitrate_kbps", "Received bitrate of a network source, kbit/s over about 2 s", |h| h.bitrate_kbps),
        // Only where frames are measured: a re-encoded picture's entry holds its link's
        // counters alone, and an age of 0 there would read as "fresh".
        ("network_last_frame_age_seconds", "Since a network source's last frame arrived", |h| {
            (!h.format.is_empty()).then(|| h.last_frame_age_ms as f64 / 1e3)
        }),
        ("network_packets_lost", "RTP packets of a network source that never arrived, this connection", |h| {
            h.packets_lost.map(|n| n as f64)
        }),
        ("network_loss_percent", "Share of a network source's packets lost over about 2 s", |h| h.loss_percent),
        ("network_jitter_seconds", "Mean interarrival jitter of a network source", |h| h.jitter_ms.map(|j| j / 1e3)),
    ];
    for (name, help, figure) in figures {
        let family = Family::<StreamLabels, Gauge<f64, AtomicU64>>::default();
        for h in health {
            if let Some(value) = h.stream.as_ref().and_then(figure) {
                family.get_or_create(&StreamLabels { source: h.source.clone() }).set(value);
            }
        }
        r.register(name, help, family);
    }
}

/// The OpenMetrics text of a snapshot.
pub fn encode(s: &Snapshot) -> String {
    let mut r = Registry::with_prefix("courtbox");
    let (segments, bytes, gaps) = s.totals;
    counter(&mut r, "segments_committed", "Segments sealed into the record (all sessions)", segments);
    counter(&mut r, "recorded_bytes", "Bytes of sealed media (all sessions)", bytes);
    counter(&mut r, "gaps", "Gap records: intervals a source did not record, each with its cause", gaps);
    gauge(&mut r, "recording", "1 while a session is recording", i64::from(s.recording));
    r.register(
        "segment_seal_seconds",
        "Time to commit each segment to the ledger, queue wait included",
        crate::session::SEAL_SECONDS.clone(),
    );

    let up = Family::<SourceLabels, Gauge>::default();
    for d in &s.devices {
        for source in &d.sources {
            let labels = SourceLabels { device: d.name.clone(), source: source.clone() };
            up.get_or_create(&labels).set(i64::from(d.state == DeviceState::Running));
        }
    }
    r.register("source_up", "1 while the source's device is recording", up);
    let restarts = Family::<DeviceLabels, Gauge>::default();
    for d in &s.devices {
        restarts.get_or_create(&DeviceLabels { device: d.name.clone() }).set(i64::from(d.restarts));
    }
    r.register("device_restarts", "Restarts of each device in the current run", restarts);
    network_streams(&mut r, &s.health);

    if let Some(c) = &s.captions {
        gauge(
            &mut r,
            "captions_ready",
            "1 when the speech model is loaded",
            i64::from(c.state == crate::stt::SttState::Ready),
        );
        gauge(
            &mut r,
            "captions_backlog_intervals",
            "Intervals left to transcribe from the recording",
            c.backlog as i64,
        );
        let waiting = Family::<SourceLabels, Gauge<f64, AtomicU64>>::default();
        for (source, t) in &c.tracks {
            let labels = SourceLabels { device: String::new(), source: source.clone() };
            waiting.get_or_create(&labels).set(t.waiting_seconds);
        }
        r.register("caption_lag_seconds", "Speech waiting to be transcribed, per microphone", waiting);
    }
    if let Some(st) = &s.storage {
        gauge(&mut r, "upload_backlog_objects", "Objects waiting for central storage", st.backlog.objects as i64);
        gauge(&mut r, "upload_backlog_bytes", "Bytes waiting for central storage", st.backlog.bytes as i64);
        gauge(
            &mut r,
            "upload_oldest_age_seconds",
            "Age of the oldest object waiting for upload (0 when none)",
            st.oldest_age_s.unwrap_or(0),
        );
        gauge(&mut r, "upload_conflicts", "Objects the store holds with other bytes", st.backlog.conflicts as i64);
        gauge(&mut r, "upload_failing", "1 while the store is failing", i64::from(st.uploader.error.is_some()));
        gauge(&mut r, "alarms_open", "Alarms raised and not cleared", st.alarms.len() as i64);
        if let Some(d) = &st.disk {
            gauge_f64(&mut r, "disk_free_bytes", "Free space of the data directory's file system", d.free_bytes as f64);
            let level = match d.level {
                DiskLevel::Ok => 0,
                DiskLevel::Low => 1,
                DiskLevel::Critical => 2,
            };
            gauge(&mut r, "disk_level", "0 ok, 1 below the warning mark, 2 critical (cameras paused)", level);
        }
    }
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &r).expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_is_encoded_as_openmetrics() {
        let text = encode(&Snapshot {
            totals: (42, 123_456, 3),
            recording: true,
            devices: vec![DeviceStatus {
                name: "desk".into(),
                sources: vec!["judge".into(), "witness".into()],
                state: DeviceState::Running,
                restarts: 2,
                last_error: None,
            }],
            health: vec![SourceHealth {
                source: "court".into(),
                stream: Some(crate::capture::StreamHealth {
                    format: "H.264 High 1920x1080 25 fps".into(),
                    bitrate_kbps: Some(4000.0),
                    keyframe_interval_ms: Some(1000),
                    last_frame_age_ms: 40,
                    packets_lost: Some(12),
                    loss_percent: Some(5.5),
                    jitter_ms: Some(2.0),
                }),
                ..SourceHealth::default()
            }],
            captions: None,
            storage: None,
        });
        assert!(text.contains("# TYPE courtbox_segments_committed counter"), "{text}");
        assert!(text.contains("courtbox_segments_committed_total 42"), "{text}");
        assert!(text.contains("courtbox_recorded_bytes_total 123456"));
        assert!(text.contains("courtbox_gaps_total 3"));
        assert!(text.contains("courtbox_source_up{device=\"desk\",source=\"judge\"} 1"), "{text}");
        assert!(text.contains("courtbox_device_restarts{device=\"desk\"} 2"));
        assert!(text.contains("courtbox_network_loss_percent{source=\"court\"} 5.5"), "{text}");
        assert!(text.contains("courtbox_network_packets_lost{source=\"court\"} 12.0"), "{text}");
        assert!(text.contains("courtbox_network_jitter_seconds{source=\"court\"} 0.002"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
