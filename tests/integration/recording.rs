use crate::common::*;
use courtbox::integrity::Entry;
use std::collections::BTreeMap;
use std::time::Duration;

/// A 60 s session of the `sim` profile: every source has the expected number of segments,
/// segment N starts at the same media time on every source, every exported file plays for
/// the right length, and the export verifies.
#[test]
fn sim_session_of_60_seconds() {
    let tb = TestBox::new("sim_session_of_60_seconds", "hw-profiles/sim.toml", 10);
    let daemon = tb.start();
    let session = tb.start_session();
    std::thread::sleep(Duration::from_secs(30));
    tb.cli_ok(&["session", "mark", "Half way"]);
    std::thread::sleep(Duration::from_secs(30));
    let stopped = tb.stop_session();
    assert!(stopped.contains("0 gaps"), "{stopped}");
    // The default central store is a folder in the data directory.
    wait_for("the upload to the folder store", Duration::from_secs(30), || {
        tb.status()["storage"]["backlog"]["objects"] == 0
    });
    daemon.terminate();
    let central = tb.data().join(format!("central/test-court/room-1/{session}"));
    let (code, text) = verify_target(format!("file://{}", central.display()).as_ref(), Some(&tb.public_key()), None);
    assert_eq!(code, 0, "the central copy verifies: {text}");

    let records = tb.records(session);
    let t0 = records.iter().find_map(|r| match &r.entry {
        Entry::RunStart { media, .. } => Some(media.0),
        _ => None,
    });
    let stop = records.iter().find_map(|r| match &r.entry {
        Entry::SessionStop { media } => Some(media.0),
        _ => None,
    });
    let (t0, stop) = (t0.unwrap(), stop.unwrap());
    assert!(stop - t0 > 59_000_000_000, "recorded {} ns", stop - t0);
    assert!(records.iter().any(|r| matches!(&r.entry, Entry::Mark { text, .. } if text == "Half way")));

    let segs = segments(&records);
    let mut by_source: BTreeMap<String, Vec<(u64, u64, u64)>> = BTreeMap::new();
    for (source, seq, start, end, recovered) in segs {
        assert!(!recovered);
        by_source.entry(source).or_default().push((seq, start, end));
    }
    assert_eq!(
        by_source.keys().cloned().collect::<Vec<_>>(),
        ["bench", "defence", "hall", "judge", "prosecutor", "witness"]
    );

    // Expected count: one segment per 10 s slot touched between t0 and the stop.
    let slot = 10_000_000_000u64;
    let expected = (stop / slot - t0 / slot + 1) as usize;
    let expected_range = if stop % slot < 200_000_000 { expected - 1..=expected } else { expected..=expected };
    let frame = 1_000_000_000 / 30 + 1;
    let count = by_source["bench"].len();
    for (source, segs) in &by_source {
        assert!(expected_range.contains(&segs.len()), "{source}: {} segments, expected {expected_range:?}", segs.len());
        assert_eq!(segs.len(), count, "{source} has a different number of segments");
        let seqs: Vec<u64> = segs.iter().map(|s| s.0).collect();
        assert_eq!(seqs, (0..segs.len() as u64).collect::<Vec<_>>());
        for w in segs.windows(2) {
            assert!(
                w[0].2.abs_diff(w[1].1) < 1_000_000,
                "{source}: segment {} does not end where {} starts",
                w[0].0,
                w[1].0
            );
        }
    }
    for n in 0..count {
        let starts: Vec<u64> = by_source.values().map(|s| s[n].1).collect();
        let spread = starts.iter().max().unwrap() - starts.iter().min().unwrap();
        assert!(spread <= frame, "segment {n} starts spread over {spread} ns across sources (more than one frame)");
        if n > 0 {
            let boundary = (t0 / slot + n as u64) * slot;
            assert!(
                starts.iter().all(|s| s.abs_diff(boundary) <= frame),
                "segment {n} does not start at its boundary {boundary}: {starts:?}"
            );
        }
    }

    let export = tb.root.join("export");
    tb.export(session, &export);
    let (code, text) = verify(&export, Some(&tb.public_key()));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("VERIFIED"));

    // Every segment file opens and holds exactly the interval its record states; every
    // playable file decodes without error and spans the session.
    for (source, segs) in &by_source {
        for (seq, start, end) in segs {
            let file = export.join(format!("{source}/{seq:06}.mkv"));
            let (first, last) = packet_span(&file).unwrap_or_else(|| panic!("{} has no packets", file.display()));
            let (start, end) = (*start as f64 / 1e9, *end as f64 / 1e9);
            assert!(
                (first - start).abs() < 0.05 && (last - end).abs() < 0.05,
                "{}: packets {first}..{last} s, record {start}..{end} s",
                file.display()
            );
        }
        let playable = export.join(format!("playable/{source}.mkv"));
        let (duration, errors) = probe(&playable);
        assert!(errors.trim().is_empty(), "{}: {errors}", playable.display());
        let span = (stop - t0) as f64 / 1e9;
        let duration = duration.unwrap();
        assert!((duration - span).abs() < 10.0, "{}: plays {duration} s, session {span} s", playable.display());
    }
    let discoverer =
        std::process::Command::new("gst-discoverer-1.0").arg(export.join("playable/bench.mkv")).output().unwrap();
    let text = String::from_utf8_lossy(&discoverer.stdout);
    assert!(text.contains("H.264"), "{text}");
    let duration = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Duration: "))
        .and_then(|d| {
            let p: Vec<f64> = d.split(':').map(|x| x.parse().unwrap_or(f64::NAN)).collect();
            (p.len() == 3).then(|| p[0] * 3600.0 + p[1] * 60.0 + p[2])
        })
        .unwrap_or_else(|| panic!("no duration from gst-discoverer: {text}"));
    assert!((duration - (stop - t0) as f64 / 1e9).abs() < 10.0, "gst-discoverer: {duration} s");
}

/// The whole recording path under memory-deny-write-execute, as the unit runs it
/// (`MemoryDenyWriteExecute=yes`; here `COURTBOX_MDWE=1`, the kernel's `PR_SET_MDWE`, which
/// the daemon proves by being refused a writable and executable mapping). With
/// `ORC_CODE=backup`, as the unit sets, GStreamer's ORC compiles nothing at run time, and every
/// source is recorded, sealed, uploaded and verified. Without it, ORC still compiles, and
/// recording works too: it writes its code into a temporary file that it maps twice, once
/// writable and once executable, which neither `PR_SET_MDWE` nor systemd's seccomp filter
/// forbids. So MDWE alone does not keep generated code out; `ORC_CODE=backup` does.
#[test]
fn recording_under_memory_deny_write_execute() {
    for (orc, compiles) in [(Some("backup"), false), (None, true)] {
        let name = format!("recording_mdwe_orc_{}", orc.unwrap_or("jit"));
        let tb = TestBox::new(&name, "tests/fixtures/light.toml", 2);
        let mut env = vec![("COURTBOX_MDWE", "1"), ("ORC_DEBUG", "3")];
        env.extend(orc.map(|o| ("ORC_CODE", o)));
        let daemon = tb.start_with_env(&env);
        let session = tb.start_session();
        std::thread::sleep(Duration::from_secs(6));
        let stopped = tb.stop_session();
        assert!(stopped.contains("0 gaps") && stopped.contains("sealed"), "{name}: {stopped}");
        wait_for("the upload to the folder store", Duration::from_secs(30), || {
            tb.status()["storage"]["backlog"]["objects"] == 0
        });
        assert!(daemon.terminate().success(), "{name}");
        let log = std::fs::read_to_string(tb.root.join("daemon-1.log")).unwrap();
        assert!(log.contains("memory-deny-write-execute on"), "{name}: {log}");
        let compiled = log.matches("finished compiling (success)").count();
        if compiles {
            assert!(compiled > 0, "{name}: ORC compiled nothing; the statement above is out of date");
        } else {
            assert_eq!(compiled, 0, "{name}: ORC compiled code in backup mode");
            assert!(log.contains("finished compiling (fail)"), "{name}: ORC was not used at all");
        }

        let mut by_source: BTreeMap<String, usize> = BTreeMap::new();
        for (source, ..) in segments(&tb.records(session)) {
            *by_source.entry(source).or_default() += 1;
        }
        assert_eq!(
            by_source.keys().cloned().collect::<Vec<_>>(),
            ["bench", "defence", "hall", "judge", "prosecutor", "witness"],
            "{name}"
        );
        assert!(by_source.values().all(|n| *n >= 2), "{name}: {by_source:?}");
        let central = tb.data().join(format!("central/test-court/room-1/{session}"));
        let (code, text) =
            verify_target(format!("file://{}", central.display()).as_ref(), Some(&tb.public_key()), None);
        assert_eq!(code, 0, "{name}: the central copy verifies: {text}");
        let export = tb.root.join("export");
        tb.export(session, &export);
        let (code, text) = verify(&export, Some(&tb.public_key()));
        assert_eq!(code, 0, "{name}: the export verifies: {text}");
    }
}
