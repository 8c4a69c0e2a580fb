//! Power cuts and disk faults, simulated for real. The data folder is mounted through the
//! fault-injecting file system (`faultfs`), so a cut keeps only what the daemon synced (model
//! A) or an adversarial part of the rest (model B). fsync can fail, a write can find the disk
//! full, a read can fail, and every fsync can be slow. `kill -9` alone cannot test this: the
//! kernel's page cache survives it.

use crate::common::*;
use crate::faultfs::FaultVolume;
use crate::faultfs::model::{FsyncFault, LossModel, Rng};
use courtbox::integrity::{Entry, RunCause};
use std::path::Path;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A test box whose data folder is on the fault layer. The control socket and the central
/// store are outside it: a socket is not data on a disk, and the store is another machine.
fn faulty_box(name: &str, make: impl FnOnce(&str) -> TestBox) -> (TestBox, FaultVolume) {
    let root = repo().join("target/test-output").join(name);
    // A mount left by a killed run of this test would stop the folder from being cleared.
    let _ = std::process::Command::new("umount").arg("-l").arg(root.join("data")).output();
    let extra = format!(
        "\n[api]\nsocket = \"{}\"\n[store]\nurl = \"{}\"\n",
        root.join("courtbox.sock").display(),
        root.join("central").display()
    );
    let tb = make(&extra);
    let volume = FaultVolume::mount(&tb.data());
    tb.make_device_key();
    // The provisioned key, durable as `provision` leaves it (a cut must not take it).
    std::fs::File::open(tb.public_key()).unwrap().sync_all().unwrap();
    courtbox::base::sync_dir(&tb.data()).unwrap();
    (tb, volume)
}

/// Cuts the power: the disk stops and the daemon dies at the same instant; then the disk
/// comes back with what survived.
fn cut_power(daemon: Daemon, volume: &mut FaultVolume, model: LossModel, rng: &mut Rng) {
    volume.freeze();
    daemon.kill9();
    let report = volume.restore_after_cut(model, rng);
    eprintln!(
        "  cut ({model:?}): {} of {} unsynced bytes and {} of {} unsynced directory changes survived",
        report.surviving_bytes, report.unsynced_bytes, report.surviving_entries, report.unsynced_entries
    );
}

/// SQLite finds the ledger sound, and every committed segment of the session has exactly
/// the bytes that were sealed. Returns how many segments were checked.
fn check_committed(tb: &TestBox, session: Uuid) -> usize {
    let conn =
        rusqlite::Connection::open_with_flags(tb.data().join("ledger.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok", "PRAGMA integrity_check");
    drop(conn);
    let mut checked = 0;
    for r in tb.records(session) {
        if let Entry::Segment { file, bytes, sha256, .. } = &r.entry {
            let path = tb.data().join("spool").join(session.to_string()).join(file);
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("committed segment {file} cannot be read: {e}"));
            assert_eq!(data.len() as u64, *bytes, "committed segment {file} is not the size sealed");
            assert_eq!(&hex::encode(courtbox::integrity::sha256(&data)), sha256, "committed segment {file} changed");
            checked += 1;
        }
    }
    checked
}

/// Waits until run `run` of `session` records from all `sources`.
fn wait_resumed(tb: &TestBox, session: Uuid, run: u64, sources: usize) {
    wait_for("every source to record again", Duration::from_secs(60), || {
        let s = tb.status();
        let flowing = s["session"]["health"]
            .as_array()
            .is_some_and(|h| h.len() == sources && h.iter().all(|h| h["buffers"].as_u64().unwrap_or(0) > 0));
        s["session"]["id"] == session.to_string() && s["session"]["run"] == run && flowing
    });
}

fn quantiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v.get(v.len() / 2).copied().unwrap_or_default(), v.last().copied().unwrap_or_default())
}

/// 30 power cuts at random moments of a session with live captions (300 with
/// COURTBOX_SOAK=1), half under model A (every unsynced write lost), half under model B (a
/// torn, reordered part of them kept). After each: the daemon restarts on what survived,
/// the ledger is sound, every committed segment has its bytes, the session resumes, and
/// each source lost at most the outage plus one sync interval and one segment, stated in
/// gap records. At the end the export verifies.
#[test]
fn power_cuts_lose_at_most_a_sync_interval_and_a_segment_and_say_so() {
    let cuts: usize = if std::env::var_os("COURTBOX_SOAK").is_some() { 300 } else { 30 };
    let seed = std::env::var("COURTBOX_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    eprintln!("power-cut test: {cuts} cuts, COURTBOX_TEST_SEED={seed}");
    let mut rng = Rng(seed);
    let (tb, mut volume) =
        faulty_box("power_cuts", |extra| TestBox::with_captions("power_cuts", "tests/fixtures/speech-en.toml", extra));
    let (segment, sync) = (Duration::from_secs(4), Duration::from_secs(1));
    let sources = ["bench", "judge"];

    let mut daemon = tb.start();
    let session = tb.start_session();
    wait_resumed(&tb, session, 1, sources.len());
    // Per cut: the model, when it happened, when data flowed again, how long the restart took.
    let mut cuts_done: Vec<(LossModel, Instant, Instant, Duration)> = Vec::new();
    for i in 0..cuts {
        std::thread::sleep(Duration::from_millis(1500 + rng.below(4500)));
        let model = if i % 2 == 0 { LossModel::AllUnsynced } else { LossModel::Adversarial };
        let committed = tb.records(session);
        let cut = Instant::now();
        cut_power(daemon, &mut volume, model, &mut rng);
        let restart = Instant::now();
        daemon = tb.start();
        let recovered = restart.elapsed();
        wait_resumed(&tb, session, i as u64 + 2, sources.len());
        let resumed = Instant::now();
        let after = tb.records(session);
        for (k, r) in committed.iter().enumerate() {
            assert_eq!(
                after.get(k),
                Some(r),
                "cut {i}: record {k}, committed before the cut, did not survive unchanged"
            );
        }
        let checked = check_committed(&tb, session);
        eprintln!("cut {i}: restarted in {recovered:?}; {checked} committed segments have their bytes");
        cuts_done.push((model, cut, resumed, recovered));
    }
    std::thread::sleep(Duration::from_secs(3));
    tb.stop_session();
    daemon.terminate();
    check_committed(&tb, session);

    let records = tb.records(session);
    let runs: Vec<(RunCause, u64)> = records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::RunStart { cause, media, .. } => Some((*cause, media.0)),
            _ => None,
        })
        .collect();
    assert_eq!(runs.len(), cuts + 1, "one run per start");
    let gaps = gaps(&records);
    // Loss beyond the outage itself (the box was off), per model.
    let mut beyond: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for (k, (model, cut, resumed, _)) in cuts_done.iter().enumerate() {
        let run_media = runs[k + 1].1;
        let outage = resumed.duration_since(*cut);
        for source in sources {
            let loss = Duration::from_nanos(
                gaps.iter()
                    // The gap across this run's start: it ends where the source's first
                    // segment of the run begins, which may be well after the run started.
                    .filter(|(s, start, end, _)| {
                        s == source && *start <= run_media + 200_000_000 && *end + 200_000_000 >= run_media
                    })
                    .map(|(_, start, end, reason)| {
                        assert!(
                            reason.contains("crashed or was killed") || reason.contains("power"),
                            "gap reason: {reason}"
                        );
                        end - start
                    })
                    .sum(),
            );
            assert!(
                loss > Duration::ZERO,
                "cut {k}: {source} has no gap stating the cut at {run_media}: {:?}",
                gaps.iter().filter(|g| g.0 == source).collect::<Vec<_>>()
            );
            let allowed = outage + sync + segment + Duration::from_millis(500);
            assert!(
                loss <= allowed,
                "cut {k} ({model:?}): {source} lost {loss:?}, more than the outage {outage:?} plus a sync interval and a segment"
            );
            beyond[usize::from(*model == LossModel::Adversarial)].push(loss.saturating_sub(outage));
        }
    }
    for (name, losses) in [("A (all unsynced lost)", &beyond[0]), ("B (adversarial)", &beyond[1])] {
        let (median, worst) = quantiles(losses.clone());
        eprintln!("loss beyond the outage per source and cut, model {name}: median {median:?}, worst {worst:?}");
    }
    let (median, worst) = quantiles(cuts_done.iter().map(|c| c.3).collect());
    eprintln!("time from power back to the daemon answering: median {median:?}, worst {worst:?}");
    assert!(segments(&records).iter().any(|s| s.4), "no segment was recovered from the spool after {cuts} cuts");

    let export = tb.root.join("export");
    tb.export(session, &export);
    let (code, text) = verify(&export, Some(&tb.public_key()));
    assert_eq!(code, 0, "{text}");
    drop(volume);
}

/// One failed fsync of a camera's segment: that segment is kept only up to its last durable
/// point and a gap says why; later segments are not affected. A power cut afterwards shows
/// that nothing was sealed that the disk did not have.
#[test]
fn a_failed_fsync_of_a_segment_is_stated_lost_and_nothing_later_is_affected() {
    let (tb, mut volume) = faulty_box("fsync_segment", |extra| {
        TestBox::with_extra("fsync_segment", "tests/fixtures/light.toml", 2, extra)
    });
    let mut rng = Rng(1);
    let daemon = tb.start();
    let session = tb.start_session();
    std::thread::sleep(Duration::from_secs(3));
    // The periodic flush of the open segment fails: what it held after its last durable
    // point is lost (and a later fsync of the file would succeed).
    volume.faults(|f| {
        f.fsync_eio = Some(FsyncFault { path_contains: "/bench/".into(), once: true, datasync_only: true })
    });
    wait_for("the fsync to fail", Duration::from_secs(10), || volume.stats().fsync_failures == 1);
    let failed_at = segments(&tb.records(session)).iter().filter(|s| s.0 == "bench").count();
    std::thread::sleep(Duration::from_secs(6));
    cut_power(daemon, &mut volume, LossModel::AllUnsynced, &mut rng);
    let daemon = tb.start();
    wait_resumed(&tb, session, 2, 6);
    check_committed(&tb, session);
    std::thread::sleep(Duration::from_secs(3));
    tb.stop_session();
    daemon.terminate();

    let records = tb.records(session);
    let gaps = gaps(&records);
    let stated: Vec<_> = gaps.iter().filter(|g| g.3.contains("a sync of")).collect();
    assert_eq!(stated.len(), 1, "one gap states the failed sync: {gaps:?}");
    assert_eq!(stated[0].0, "bench");
    assert!(stated[0].3.contains("last durable point"), "{}", stated[0].3);
    assert!(
        gaps.iter().all(|g| g.3.contains("a sync of") || g.3.contains("crashed or was killed")),
        "no other source or segment is affected: {gaps:?}"
    );
    let bench_after = segments(&records).iter().filter(|s| s.0 == "bench").count();
    assert!(bench_after >= failed_at + 3, "bench records on after the failure: {failed_at} -> {bench_after}");
    let export = tb.root.join("export");
    tb.export(session, &export);
    let (code, text) = verify(&export, Some(&tb.public_key()));
    assert_eq!(code, 0, "{text}");
    drop(volume);
}

/// One failed fsync of the ledger: the daemon stops recording and exits (systemd restarts
/// it), saying why. Recovery on what is on the disk loses nothing that was committed, the
/// session resumes, the alarm tells the technician, and the chain verifies.
#[test]
fn a_failed_fsync_of_the_ledger_stops_the_daemon_and_recovery_loses_nothing_committed() {
    let (tb, mut volume) =
        faulty_box("fsync_ledger", |extra| TestBox::with_extra("fsync_ledger", "tests/fixtures/light.toml", 2, extra));
    let mut rng = Rng(2);
    let mut daemon = tb.start();
    let session = tb.start_session();
    std::thread::sleep(Duration::from_secs(4));
    let committed_before = tb.records(session);
    volume.faults(|f| {
        f.fsync_eio = Some(FsyncFault { path_contains: "ledger.db".into(), once: true, datasync_only: false })
    });
    let status = daemon.wait_exit(Duration::from_secs(30)).expect("the daemon stops after the ledger's fsync fails");
    assert!(!status.success(), "a failed ledger is not a clean stop: {status}");
    let log = std::fs::read_to_string(tb.root.join("daemon-1.log")).unwrap();
    assert!(log.contains("the ledger's storage failed"), "the log says why:\n{log}");

    // systemd starts it again at once: the failed transaction may still be in the page
    // cache, not on the disk. What is acknowledged from now on must survive a power cut.
    let daemon = tb.start();
    wait_resumed(&tb, session, 2, 6);
    std::thread::sleep(Duration::from_secs(3));
    let acknowledged = tb.records(session);
    for (i, r) in committed_before.iter().enumerate() {
        assert_eq!(acknowledged.get(i), Some(r), "committed record {i} survived unchanged");
    }
    cut_power(daemon, &mut volume, LossModel::AllUnsynced, &mut rng);
    let daemon = tb.start();
    wait_resumed(&tb, session, 3, 6);
    let after = tb.records(session);
    for (i, r) in acknowledged.iter().enumerate() {
        assert_eq!(after.get(i), Some(r), "record {i}, acknowledged after the restart, did not survive the cut");
    }
    let alarms = tb.status()["storage"]["alarms"].clone();
    assert!(
        alarms
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "disk_failure" && a["message"].as_str().unwrap_or("").contains("ledger")),
        "{alarms}"
    );
    check_committed(&tb, session);
    std::thread::sleep(Duration::from_secs(3));
    tb.stop_session();
    daemon.terminate();
    let export = tb.root.join("export");
    tb.export(session, &export);
    let (code, text) = verify(&export, Some(&tb.public_key()));
    assert_eq!(code, 0, "{text}");
    drop(volume);
}

fn device_state(tb: &TestBox, name: &str) -> String {
    let s = tb.status();
    let devices = s["session"]["devices"].as_array().cloned().unwrap_or_default();
    devices
        .iter()
        .find(|d| d["name"] == name)
        .map(|d| d["state"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// The disk fills in the middle of a segment (a disk that reported room: ENOSPC comes
/// without warning). As at the critical watermark: the open segments are closed and kept,
/// the cameras pause with an alarm and a gap saying why, audio records while there is
/// room, and the cameras record again once the disk has room for a while.
#[test]
fn a_full_disk_in_mid_segment_pauses_the_cameras_and_audio_records_on() {
    let (tb, volume) = faulty_box("enospc", |extra| {
        TestBox::with_extra(
            "enospc",
            "tests/fixtures/light.toml",
            2,
            &format!("{extra}[disk]\nwarn_free_mib = 64\ncritical_free_mib = 16\ncheck_interval_ms = 1000\n"),
        )
    });
    let daemon = tb.start();
    let session = tb.start_session();
    std::thread::sleep(Duration::from_secs(4));
    volume.faults(|f| f.write_budget = Some(200_000));
    wait_for("the cameras to pause for the full disk", Duration::from_secs(20), || {
        device_state(&tb, "bench") == "paused" && device_state(&tb, "hall") == "paused"
    });
    // A little room: enough for audio (and for the ledger to take the alarm).
    let count = |source: &str| segments(&tb.records(session)).iter().filter(|s| s.0 == source).count();
    let judge = count("judge");
    volume.faults(|f| f.write_budget = Some(4 << 20));
    wait_for("the disk-full alarm", Duration::from_secs(10), || {
        tb.status()["storage"]["alarms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "disk_critical" && a["message"].as_str().unwrap_or("").contains("disk full"))
    });
    wait_for("audio to record again", Duration::from_secs(30), || count("judge") >= judge + 2);
    // Room again: the cameras come back once the disk has had room for a while.
    let bench = count("bench");
    volume.faults(|f| f.write_budget = None);
    wait_for("the cameras to record again", Duration::from_secs(60), || count("bench") >= bench + 2);
    tb.stop_session();
    daemon.terminate();
    assert!(volume.stats().enospc > 0);

    let gaps = gaps(&tb.records(session));
    for cam in ["bench", "hall"] {
        assert!(gaps.iter().any(|g| g.0 == cam && g.3.contains("disk full")), "{cam} has a gap saying why: {gaps:?}");
    }
    assert!(gaps.iter().all(|g| g.3.contains("disk full")), "every gap is the full disk's: {gaps:?}");
    check_committed(&tb, session);
    let export = tb.root.join("export");
    tb.export(session, &export);
    let (code, text) = verify(&export, Some(&tb.public_key()));
    assert_eq!(code, 0, "{text}");
    drop(volume);
}

/// `(object key, state, attempts, last error)` of every upload job.
fn upload_jobs(data: &Path) -> Vec<(String, String, i64, Option<String>)> {
    let conn =
        rusqlite::Connection::open_with_flags(data.join("ledger.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn.prepare("SELECT object_key, state, attempts, last_error FROM upload_jobs ORDER BY id").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().collect::<Result<_, _>>().unwrap()
}

/// A segment that cannot be read (EIO) while it uploads: a named error for that file, the
/// uploader carries on with the others, and the file is neither acknowledged nor deleted.
/// An export meets the same file and names it.
#[test]
fn a_read_error_while_uploading_is_named_and_the_uploader_carries_on() {
    let (tb, volume) =
        faulty_box("eio_upload", |extra| TestBox::with_extra("eio_upload", "tests/fixtures/light.toml", 2, extra));
    volume.faults(|f| f.read_eio = Some("bench/000002.mkv".into()));
    let daemon = tb.start();
    let session = tb.start_session();
    let bad = format!("{session}/bench/000002.mkv");
    wait_for("later bench segments to be uploaded", Duration::from_secs(40), || {
        upload_jobs(&tb.data()).iter().any(|j| j.0 == format!("{session}/bench/000004.mkv") && j.1 == "done")
    });
    let jobs = upload_jobs(&tb.data());
    let job = jobs.iter().find(|j| j.0 == bad).expect("the unreadable segment was committed");
    assert_eq!(job.1, "pending", "never acknowledged: {job:?}");
    let error = job.3.clone().unwrap_or_default();
    assert!(error.contains("000002.mkv") && error.contains("os error 5"), "the error names the file: {error}");
    assert!(tb.data().join("spool").join(&bad).exists(), "never deleted");
    let alarms = tb.status()["storage"]["alarms"].clone();
    assert!(alarms.as_array().unwrap().iter().any(|a| a["subject"] == bad.as_str()), "{alarms}");

    tb.stop_session();
    let export = tb.root.join("export");
    let out = tb.cli(&["export", &session.to_string(), export.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("000002.mkv"), "export names the file it cannot read: {said}");
    daemon.terminate();
    volume.faults(|f| f.read_eio = None);
    assert!(volume.stats().read_failures > 0);
    drop(volume);
}

/// Every fsync takes 500 ms: capture never waits for the disk (no frame dropped, every
/// segment cut on time), seals queue behind the slow syncs, and the lag is reported. When
/// the disk is fast again the queue drains and the chain verifies.
#[test]
fn a_slow_disk_delays_seals_but_never_capture() {
    let (tb, volume) =
        faulty_box("slow_disk", |extra| TestBox::with_extra("slow_disk", "tests/fixtures/light.toml", 2, extra));
    let daemon = tb.start();
    let session = tb.start_session();
    std::thread::sleep(Duration::from_secs(3));
    volume.faults(|f| f.slow_fsync = Some(Duration::from_millis(500)));
    let slow_from = courtbox::base::WallTime::now();
    std::thread::sleep(Duration::from_secs(20));
    let health = tb.status()["session"]["health"].clone();
    volume.faults(|f| f.slow_fsync = None);
    for h in health.as_array().unwrap() {
        assert_eq!(h["dropped_frames"].as_u64().unwrap_or(0), 0, "capture dropped frames: {h}");
    }
    std::thread::sleep(Duration::from_secs(3));
    tb.stop_session();
    daemon.terminate();

    let records = tb.records(session);
    // Lag: from a segment's end (wall) to its commit (the record's wall time).
    let mut lags = Vec::new();
    for r in &records {
        if let Entry::Segment { wall_start, media_start, media_end, .. } = &r.entry
            && *wall_start >= slow_from
        {
            let ended = wall_start.unix_nanos() + i128::from(media_end.0 - media_start.0);
            lags.push(Duration::from_nanos((r.wall.unix_nanos() - ended).max(0) as u64));
        }
    }
    let (median, worst) = quantiles(lags.clone());
    eprintln!(
        "slow disk (500 ms per fsync): {} segments sealed with a lag of median {median:?}, worst {worst:?}",
        lags.len()
    );
    let bench = records.iter().filter(|r| matches!(&r.entry, Entry::Segment { source, wall_start, .. } if source == "bench" && *wall_start >= slow_from)).count();
    assert!(bench >= 9, "segments went on being cut every 2 s while the disk was slow: {bench} of bench");
    let gaps = gaps(&records);
    assert!(gaps.is_empty(), "a slow disk loses nothing: {gaps:?}");
    let export = tb.root.join("export");
    tb.export(session, &export);
    let (code, text) = verify(&export, Some(&tb.public_key()));
    assert_eq!(code, 0, "{text}");
    drop(volume);
}
