//! Central storage against a real S3 server (SeaweedFS on loopback): complete upload and
//! central verification, outages, crashes during upload, wrong credentials, conflicts, and
//! disk watermarks.

use crate::common::*;
use crate::s3::{self, SeaweedFs};
use courtbox::upload::{Store, digest_object};
use object_store::{ObjectStoreExt, PutMode, PutOptions};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

fn session_url(session: Uuid) -> String {
    format!("s3://{}/{}/test-court/room-1/{session}", s3::BUCKET, s3::PREFIX)
}

fn backlog(tb: &TestBox) -> u64 {
    tb.status()["storage"]["backlog"]["objects"].as_u64().expect("status has the upload backlog")
}

fn wait_drained(tb: &TestBox, within: Duration) {
    wait_for("the upload backlog to drain", within, || backlog(tb) == 0);
}

fn verify_central(tb: &TestBox, session: Uuid) -> (i32, String) {
    verify_target(session_url(session).as_ref(), Some(&tb.public_key()), Some(&tb.config))
}

/// Every upload job of the ledger: object key (relative to court/room) → (state, sha256).
fn jobs(tb: &TestBox) -> BTreeMap<String, (String, String)> {
    let conn = rusqlite::Connection::open(tb.data().join("ledger.db")).unwrap();
    let mut stmt = conn.prepare("SELECT object_key, state, hex(sha256) FROM upload_jobs").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get::<_, String>(2)?.to_lowercase()))))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Size and SHA-256 of a stored object, on a runtime of its own (use a fresh `Store` per
/// runtime: its connection pool belongs to the runtime that opened the connections).
fn digest(store: &Store, key: &str) -> Option<String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(digest_object(store, &store.key(key))).unwrap().map(|(_, sha)| hex::encode(sha))
}

/// A light test box uploading to a fresh SeaweedFS (in the box's folder, `s3/`). `extra`
/// continues the `[store]` section.
fn box_with_s3(name: &str, extra: &str) -> (TestBox, SeaweedFs) {
    let root = repo().join("target/test-output").join(name);
    let tb = TestBox::with_extra(name, "tests/fixtures/light.toml", 2, &format!("{}{extra}", s3::box_config(&root)));
    s3::write_credentials(&tb.root, s3::BOX_SECRET);
    let weed = SeaweedFs::start(&tb.root.join("s3"));
    (tb, weed)
}

fn run_for(secs: u64) {
    std::thread::sleep(Duration::from_secs(secs));
}

/// Every committed object arrives, the central copy verifies like an export, and an
/// administrator's deletion or alteration of one object is named by `verify`.
#[test]
fn a_session_is_uploaded_and_the_central_copy_verifies() {
    let (tb, weed) = box_with_s3("upload_complete", "");
    let daemon = tb.start();
    let session = tb.start_session();
    run_for(9);
    tb.cli_ok(&["session", "mark", "uploaded while recording"]);
    run_for(3);
    tb.stop_session();
    wait_drained(&tb, Duration::from_secs(60));

    let status = tb.cli_ok(&["status"]);
    assert!(status.contains("UPLOAD to s3://courtbox-records/kz/test-court/room-1: idle"), "{status}");
    let check = tb.cli(&["check"]);
    let check_text = String::from_utf8_lossy(&check.stdout).to_string();
    assert!(check.status.success(), "{check_text}");
    assert!(check_text.contains("Object Lock enabled, default retention COMPLIANCE for 1 days"), "{check_text}");
    daemon.terminate();

    // Every job is done and its object holds exactly the committed bytes.
    let admin = weed.admin_store();
    let jobs = jobs(&tb);
    assert!(jobs.len() > 20, "{} jobs", jobs.len());
    for (key, (state, sha)) in &jobs {
        assert_eq!(state, "done", "{key}");
        assert_eq!(digest(&admin, key).as_deref(), Some(sha.as_str()), "{key}");
    }
    let (code, text) = verify_central(&tb, session);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("VERIFIED"), "{text}");

    // An administrator replaces one segment (a new version: Object Lock keeps the old one,
    // but the record as read is altered) and deletes one chain record.
    let segment = jobs.keys().find(|k| k.contains("/bench/000002.mkv")).unwrap().clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(admin.inner.put_opts(
        &admin.key(&segment),
        b"not the recording".to_vec().into(),
        PutOptions { mode: PutMode::Overwrite, ..Default::default() },
    ))
    .unwrap();
    let (code, text) = verify_central(&tb, session);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("bench/000002.mkv"), "the altered object is named: {text}");

    let record = format!("{session}/chain/00000005.rec");
    rt.block_on(admin.inner.delete(&admin.key(&record))).unwrap();
    let (code, text) = verify_central(&tb, session);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("00000005"), "the deleted record is named: {text}");
}

/// Every version of every object the box wrote: exactly one per key, and the keys are
/// exactly the ledger's jobs.
fn assert_each_object_once(tb: &TestBox, weed: &SeaweedFs) {
    let prefix = format!("{}/test-court/room-1/", s3::PREFIX);
    let versions = courtbox::upload::s3admin::version_counts(&weed.admin(), s3::BUCKET, &prefix).unwrap();
    let jobs = jobs(tb);
    let stored: Vec<&String> = versions.keys().collect();
    let expected: Vec<String> = jobs.keys().map(|k| format!("{prefix}{k}")).collect();
    assert_eq!(stored, expected.iter().collect::<Vec<_>>(), "the store holds exactly the committed objects");
    for (key, n) in &versions {
        assert_eq!(*n, 1, "{key} was written {n} times");
    }
    let admin = weed.admin_store();
    for (key, (state, sha)) in &jobs {
        assert_eq!(state, "done", "{key}");
        assert_eq!(digest(&admin, key).as_deref(), Some(sha.as_str()), "{key} holds other bytes");
    }
}

/// The store goes away while a hearing is recorded: nothing is lost, the backlog grows and
/// says why, and once the store is back it drains by itself and the central copy verifies.
/// (COURTBOX_SOAK=1 makes the outage several minutes long.)
#[test]
fn a_store_outage_loses_nothing_and_drains_by_itself() {
    let outage = if std::env::var_os("COURTBOX_SOAK").is_some() { 240 } else { 40 };
    let (tb, mut weed) = box_with_s3("upload_outage", "");
    let daemon = tb.start();
    let session = tb.start_session();
    run_for(6);
    wait_drained(&tb, Duration::from_secs(30));
    weed.stop();
    let before = backlog(&tb);
    run_for(outage / 2);
    let status = tb.status();
    let storage = &status["storage"];
    let error = storage["uploader"]["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("cannot reach"), "status says why: {storage}");
    let during = backlog(&tb);
    assert!(during > before + 10, "backlog grows during the outage: {before} -> {during}");
    run_for(outage / 2);
    let later = backlog(&tb);
    assert!(later > during, "backlog keeps growing: {during} -> {later}");
    assert!(storage["oldest_age_s"].as_i64().unwrap() >= (outage / 2 - 6) as i64, "{storage}");
    // Nothing waiting was deleted locally.
    for (key, (state, _)) in jobs(&tb) {
        if state == "pending" && key.ends_with(".mkv") {
            let file = tb.data().join("spool").join(&key);
            assert!(file.exists(), "{} is waiting for upload and must stay", file.display());
        }
    }
    weed.resume();
    wait_drained(&tb, Duration::from_secs(60));
    let status = tb.status();
    assert!(status["storage"]["uploader"]["error"].is_null(), "the error clears: {}", status["storage"]);
    tb.stop_session();
    wait_drained(&tb, Duration::from_secs(30));
    daemon.terminate();
    let log = std::fs::read_to_string(tb.root.join("daemon-1.log")).unwrap();
    assert!(log.contains("upload failed; will retry"), "the log says why");
    assert_each_object_once(&tb, &weed);
    let (code, text) = verify_central(&tb, session);
    assert_eq!(code, 0, "{text}");
}

/// The daemon is killed (kill -9) again and again while it uploads: after it comes back,
/// every object is in the store exactly once with the committed bytes.
#[test]
fn kill_9_during_uploads_leaves_every_object_once() {
    let (tb, mut weed) = box_with_s3("upload_kill9", "concurrency = 8\n");
    // Record with the store down, so that a backlog is there to upload when it returns.
    weed.stop();
    let daemon = tb.start();
    let session = tb.start_session();
    run_for(14);
    tb.stop_session();
    daemon.terminate();
    let total = jobs(&tb).len();
    assert!(total > 40, "{total} objects to upload");
    weed.resume();
    let mut kills = 0;
    let mut progress = Vec::new();
    let done_now = || jobs(&tb).values().filter(|(s, _)| s == "done").count();
    for _ in 0..6 {
        // Kill once about another eighth of the backlog is acknowledged: mid-drain, at a
        // different point each time, however fast this machine drains it (a fixed delay
        // once found it either not started or already finished).
        let target = (progress.last().copied().unwrap_or(0) + total.div_ceil(8)).min(total);
        let daemon = tb.start();
        let deadline = Instant::now() + Duration::from_secs(10);
        while done_now() < target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        daemon.kill9();
        kills += 1;
        let done = done_now();
        progress.push(done);
        if done == total {
            break;
        }
    }
    let daemon = tb.start();
    wait_drained(&tb, Duration::from_secs(60));
    daemon.terminate();
    assert!(kills >= 2, "killed {kills} times");
    assert!(progress.iter().any(|d| *d > 0 && *d < total), "a kill landed mid-upload: {progress:?} of {total}");
    eprintln!("objects acknowledged after each kill: {progress:?} of {total}");
    assert_each_object_once(&tb, &weed);
    let (code, text) = verify_central(&tb, session);
    assert_eq!(code, 0, "{text}");
}

/// Wrong credentials: status and log say so plainly, attempts go on, nothing is lost or
/// deleted; with the right credentials everything arrives.
#[test]
fn wrong_credentials_are_reported_and_nothing_is_lost() {
    let (tb, weed) = box_with_s3("upload_bad_credentials", "");
    s3::write_credentials(&tb.root, "not-the-secret");
    let daemon = tb.start();
    let session = tb.start_session();
    run_for(8);
    let storage = tb.status()["storage"].clone();
    let error = storage["uploader"]["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("refused the credentials"), "{storage}");
    assert!(!error.contains("not-the-secret"), "the secret is never shown: {error}");
    let attempts = |tb: &TestBox| -> i64 {
        let conn = rusqlite::Connection::open(tb.data().join("ledger.db")).unwrap();
        conn.query_row("SELECT SUM(attempts) FROM upload_jobs", [], |r| r.get(0)).unwrap()
    };
    let first = attempts(&tb);
    run_for(5);
    assert!(attempts(&tb) > first, "attempts continue");
    tb.stop_session();
    daemon.terminate();
    let log = std::fs::read_to_string(tb.root.join("daemon-1.log")).unwrap();
    assert!(log.contains("refused the credentials"), "the log says why");
    assert!(!log.contains("not-the-secret"));
    assert!(jobs(&tb).values().all(|(s, _)| s == "pending"), "nothing was acknowledged");
    let (code, text) = verify(
        &{
            let dir = tb.root.join("export");
            tb.export(session, &dir);
            dir
        },
        Some(&tb.public_key()),
    );
    assert_eq!(code, 0, "nothing was lost locally: {text}");

    s3::write_credentials(&tb.root, s3::BOX_SECRET);
    let daemon = tb.start();
    wait_drained(&tb, Duration::from_secs(60));
    daemon.terminate();
    assert_each_object_once(&tb, &weed);
}

/// An object already in the store with other bytes is never overwritten: the job becomes a
/// conflict with an alarm, and everything else is uploaded.
#[test]
fn an_object_with_other_bytes_is_not_overwritten_and_raises_the_alarm() {
    let (tb, mut weed) = box_with_s3("upload_conflict", "");
    weed.stop();
    let daemon = tb.start();
    let session = tb.start_session();
    run_for(6);
    tb.stop_session();
    daemon.terminate();
    weed.resume();
    let admin = weed.admin_store();
    let taken = format!("{session}/chain/00000002.rec");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(admin.inner.put(&admin.key(&taken), b"someone else's bytes".to_vec().into())).unwrap();

    let daemon = tb.start();
    wait_drained(&tb, Duration::from_secs(60));
    let status = tb.status();
    let storage = &status["storage"];
    assert_eq!(storage["backlog"]["conflicts"], 1, "{storage}");
    let alarm = &storage["alarms"][0];
    assert_eq!(alarm["kind"], "store_conflict", "{storage}");
    assert_eq!(alarm["subject"], taken.as_str());
    assert!(alarm["message"].as_str().unwrap().contains("left as it is"), "{alarm}");
    let text = tb.cli_ok(&["status"]);
    assert!(text.contains("ALARM store_conflict"), "{text}");
    daemon.terminate();
    let stored = rt.block_on(async { admin.inner.get(&admin.key(&taken)).await.unwrap().bytes().await.unwrap() });
    assert_eq!(&stored[..], b"someone else's bytes", "not overwritten");
    let jobs = jobs(&tb);
    assert_eq!(jobs[&taken].0, "conflict");
    assert!(jobs.iter().filter(|(k, _)| **k != taken).all(|(_, (s, _))| s == "done"));
    let (code, text) = verify_central(&tb, session);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("00000002"), "{text}");
}

/// A size-limited data volume (tmpfs; mounting needs root, or sudo as `scripts/setup` uses).
struct SmallVolume(std::path::PathBuf);

/// `mount`/`umount`, through `sudo -n` when not root.
fn privileged(program: &str) -> std::process::Command {
    if unsafe { libc::geteuid() } == 0 {
        std::process::Command::new(program)
    } else {
        let mut c = std::process::Command::new("sudo");
        c.args(["-n", program]);
        c
    }
}

impl SmallVolume {
    fn mount(dir: &std::path::Path, mib: u64) -> SmallVolume {
        std::fs::create_dir_all(dir).unwrap();
        let out = privileged("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "courtbox-test"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test needs a small volume and mounts a tmpfs, which needs root or sudo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallVolume(dir.to_path_buf())
    }

    fn free(&self) -> u64 {
        courtbox::upload::free_space(&self.0).unwrap().0
    }

    /// Grows the ballast file until about `target` bytes are free.
    fn fill_to_free(&self, target: u64) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(self.0.join("ballast")).unwrap();
        let chunk = vec![0u8; 1 << 20];
        while self.free() > target + chunk.len() as u64 {
            f.write_all(&chunk).unwrap();
        }
        f.sync_all().unwrap();
    }

    fn drop_ballast(&self) {
        std::fs::remove_file(self.0.join("ballast")).unwrap();
    }
}

impl Drop for SmallVolume {
    fn drop(&mut self) {
        let _ = privileged("umount").arg("-l").arg(&self.0).status();
    }
}

fn local_state(tb: &TestBox) -> Vec<(String, String, String)> {
    let conn = rusqlite::Connection::open(tb.data().join("ledger.db")).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT s.session_id || '/' || s.file, s.local_state, j.state FROM segments s
             JOIN upload_jobs j ON j.object_key = s.session_id || '/' || s.file ORDER BY s.record_idx",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().collect::<Result<_, _>>().unwrap()
}

fn device_state(tb: &TestBox, name: &str) -> String {
    let s = tb.status();
    let devices = s["session"]["devices"].as_array().cloned().unwrap_or_default();
    devices.iter().find(|d| d["name"] == name).map(|d| d["state"].as_str().unwrap().to_string()).unwrap_or_default()
}

/// Disk watermarks on a small volume: uploaded segments are deleted first (never one still
/// waiting for upload), an alarm is raised, and below the critical mark the cameras pause
/// with gap records saying why while the microphones record on.
#[test]
fn disk_watermarks_evict_uploaded_first_and_pause_video_before_audio() {
    const MIB: u64 = 1 << 20;
    let disk = "[disk]\nwarn_free_mib = 40\ncritical_free_mib = 20\ncheck_interval_ms = 200\n";
    let (tb, mut weed) = box_with_s3("upload_disk", disk);
    let volume = SmallVolume::mount(&tb.data(), 96);
    tb.make_device_key();
    let daemon = tb.start();
    let session = tb.start_session();
    run_for(8);
    wait_drained(&tb, Duration::from_secs(30));
    let uploaded: Vec<String> = local_state(&tb).into_iter().map(|(file, _, _)| file).collect();
    assert!(uploaded.len() >= 12, "{uploaded:?}");

    // Below the warning mark: uploaded copies go, oldest first; the alarm is raised.
    volume.fill_to_free(30 * MIB);
    wait_for("uploaded segments to be deleted locally", Duration::from_secs(10), || {
        let states = local_state(&tb);
        uploaded.iter().all(|f| states.iter().any(|(g, local, _)| g == f && local == "evicted"))
    });
    for f in &uploaded {
        assert!(!tb.data().join("spool").join(f).exists(), "{f} was evicted but is still on disk");
    }
    wait_for("the low-disk alarm", Duration::from_secs(5), || {
        tb.status()["storage"]["alarms"].as_array().unwrap().iter().any(|a| a["kind"] == "disk_low")
    });

    // The store goes away, so new segments wait for upload; then the disk gets critical.
    weed.stop();
    run_for(4);
    volume.fill_to_free(12 * MIB);
    wait_for("the cameras to pause", Duration::from_secs(10), || {
        device_state(&tb, "bench") == "paused" && device_state(&tb, "hall") == "paused"
    });
    let count = |source: &str| local_state(&tb).iter().filter(|(f, _, _)| f.contains(&format!("/{source}/"))).count();
    let (video_at_pause, audio_at_pause) = (count("bench"), count("judge"));
    run_for(8);
    assert!(count("judge") >= audio_at_pause + 3, "audio records on: {audio_at_pause} -> {}", count("judge"));
    assert_eq!(count("bench"), video_at_pause, "no camera segments while paused");
    assert_eq!(device_state(&tb, "desk"), "running");
    let storage = tb.status()["storage"].clone();
    assert_eq!(storage["disk"]["level"], "critical", "{storage}");
    assert_eq!(storage["disk"]["video_paused"], true);
    for (file, local, upload) in local_state(&tb) {
        if upload == "pending" {
            assert_eq!(local, "spooled", "{file} waits for upload and must not be evicted");
            assert!(tb.data().join("spool").join(&file).exists(), "{file}");
        }
    }

    // Space comes back: the cameras record again.
    volume.drop_ballast();
    wait_for("the cameras to record again", Duration::from_secs(15), || count("bench") > video_at_pause + 1);
    tb.stop_session();
    weed.resume();
    wait_drained(&tb, Duration::from_secs(60));
    daemon.terminate();

    let gaps = gaps(&tb.records(session));
    for cam in ["bench", "hall"] {
        assert!(
            gaps.iter().any(|g| g.0 == cam && g.3.contains("disk space critical") && g.2 - g.1 > 5_000_000_000),
            "{cam} has a gap saying why: {gaps:?}"
        );
    }
    assert!(gaps.iter().all(|g| g.0 == "bench" || g.0 == "hall"), "microphones have no gap: {gaps:?}");
    let (code, text) = verify_central(&tb, session);
    assert_eq!(code, 0, "{text}");
    drop(volume);
}

/// Objects above the multipart threshold go in parts, are read back, and a second attempt
/// (a lost acknowledgement) finds the same bytes; a damaged local copy is refused.
#[test]
fn large_objects_go_in_parts_and_are_read_back() {
    use courtbox::ledger::{Payload, UploadJob};
    use courtbox::upload::{Delivered, Failure, deliver};
    let (tb, weed) = box_with_s3("upload_multipart", "");
    let store = weed.admin_store();
    let data: Vec<u8> = (0..12u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(tb.root.join("big.mkv"), &data).unwrap();
    let job = UploadJob {
        id: 1,
        session: None,
        object_key: "multipart-test/big.mkv".into(),
        kind: "segment".into(),
        payload: Payload::File("big.mkv".into()),
        sha256: courtbox::integrity::sha256(&data),
        bytes: data.len() as u64,
        attempts: 0,
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let threshold = 5 << 20;
    assert_eq!(rt.block_on(deliver(&store, &job, &tb.root, threshold)), Ok(Delivered::Stored));
    // (One runtime throughout: the store's connection pool belongs to it.)
    let stored = |key: &str| rt.block_on(digest_object(&store, &store.key(key))).unwrap().map(|(_, s)| hex::encode(s));
    assert_eq!(stored(&job.object_key), Some(hex::encode(job.sha256)));
    assert_eq!(rt.block_on(deliver(&store, &job, &tb.root, threshold)), Ok(Delivered::AlreadyThere));

    // A local copy that is not what was sealed is never sent.
    let mut damaged = data.clone();
    damaged[7 << 20] ^= 1;
    std::fs::write(tb.root.join("big.mkv"), &damaged).unwrap();
    let other = UploadJob { object_key: "multipart-test/other.mkv".into(), ..job };
    match rt.block_on(deliver(&store, &other, &tb.root, threshold)) {
        Err(Failure::Local(m)) => assert!(m.contains("were sealed"), "{m}"),
        r => panic!("a damaged local copy must be refused: {r:?}"),
    }
    assert_eq!(stored(&other.object_key), None, "nothing was stored");
}
