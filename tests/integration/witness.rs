//! The record witnessed beyond the box, against real components: SeaweedFS with Object Lock
//! as the central store and OpenSSL's TSA (tests/tsa/tsa-server) on loopback. Each way of
//! shortening or rewriting a copy is named by `verify --against`; deleted audit entries by
//! `audit --verify --against`; a TSA outage delays stamps without a gap in the recording;
//! and a crash between signing a checkpoint and uploading it loses and duplicates nothing.

use crate::common::*;
use crate::s3::{self, SeaweedFs};
use crate::tamper::{read_chain, reseal_as};
use crate::tsa::TestTsa;
use courtbox::integrity::{DeviceKey, Entry, FORMAT_VERSION, layout};
use std::path::Path;
use std::time::Duration;

const ROOM_URL: &str = "s3://courtbox-records/kz/test-court/room-1";

fn box_with_store(name: &str, witness: &str) -> (TestBox, SeaweedFs) {
    let root = repo().join("target/test-output").join(name);
    let extra = format!("{}[witness]\ncheckpoint_seconds = 2\n{witness}", s3::box_config(&root));
    let tb = TestBox::with_extra(name, "tests/fixtures/light.toml", 2, &extra);
    s3::write_credentials(&tb.root, s3::BOX_SECRET);
    let weed = SeaweedFs::start(&tb.root.join("s3"));
    (tb, weed)
}

fn scalar(tb: &TestBox, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(tb.data().join("ledger.db")).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn drained(tb: &TestBox) -> bool {
    tb.status()["storage"]["backlog"]["objects"].as_u64() == Some(0)
}

fn copy(from: &Path, case: &str) -> std::path::PathBuf {
    let to = from.with_file_name(format!("case-{case}"));
    let _ = std::fs::remove_dir_all(&to);
    copy_tree(from, &to);
    to
}

/// How long each record stayed outside every checkpoint the store had acknowledged: from
/// its commit to the upload of the first checkpoint covering it (what an insider holding the
/// device key could still have rewritten undetected).
fn insider_window(tb: &TestBox, session: uuid::Uuid) -> String {
    let conn = rusqlite::Connection::open(tb.data().join("ledger.db")).unwrap();
    let wall = |w: String| courtbox::base::WallTime::parse(&w).unwrap();
    let mut stmt = conn
        .prepare("SELECT object_key, created_wall FROM upload_jobs WHERE kind = 'record' AND session_id = ?1")
        .unwrap();
    let mut records: Vec<(u64, courtbox::base::WallTime)> = stmt
        .query_map([session.to_string()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .map(|(k, w)| (k.rsplit('/').next().unwrap().trim_end_matches(".rec").parse().unwrap(), wall(w)))
        .collect();
    records.sort();
    let mut stmt = conn
        .prepare(
            "SELECT c.size, j.done_wall FROM checkpoints c JOIN upload_jobs j
               ON j.object_key = c.log || '/checkpoints/' || printf('%08d', c.seq) || '.note'
             WHERE c.log = ?1 ORDER BY c.seq",
        )
        .unwrap();
    let covered: Vec<(u64, courtbox::base::WallTime)> = stmt
        .query_map([session.to_string()], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .map(|(size, w)| (size, wall(w)))
        .collect();
    let mut windows: Vec<f64> = records
        .iter()
        .filter_map(|(idx, committed)| {
            covered.iter().find(|(size, _)| size > idx).map(|(_, up)| up.since(*committed) as f64 / 1e9)
        })
        .collect();
    windows.sort_by(f64::total_cmp);
    let at = |p: f64| windows[((windows.len() - 1) as f64 * p).round() as usize];
    format!(
        "insider window (commit → first uploaded checkpoint covering it), checkpoint_seconds = 2, {} records: p50 {:.2} s, p99 {:.2} s, max {:.2} s",
        windows.len(),
        at(0.5),
        at(0.99),
        windows[windows.len() - 1]
    )
}

#[test]
fn checkpoints_in_the_store_and_a_tsa_name_every_cut_rewrite_and_deletion() {
    let mut tsa = TestTsa::start(&output_dir("witness_tsa"));
    let witness = format!(
        "tsa_url = \"{}\"\ntsa_cert = \"{}\"\ntsa_ca = \"{}\"\n",
        tsa.url(),
        tsa.cert().display(),
        tsa.ca().display()
    );
    let (tb, _weed) = box_with_store("witness_store", &witness);
    let daemon = tb.start();
    let session = tb.start_session();
    std::thread::sleep(Duration::from_secs(5));
    tb.cli_ok(&["session", "mark", "before the TSA outage"]);
    // The TSA is away for 30 s: recording goes on, checkpoints wait for their stamps.
    tsa.stop();
    std::thread::sleep(Duration::from_secs(30));
    let waiting = scalar(&tb, "SELECT COUNT(*) FROM checkpoints WHERE token IS NULL");
    assert!(waiting >= 10, "checkpoints made during the outage wait for a stamp ({waiting})");
    let status = tb.cli_ok(&["status"]);
    assert!(status.contains("TSA UNREACHABLE since"), "{status}");
    tsa.resume();
    std::thread::sleep(Duration::from_secs(5));
    tb.cli_ok(&["session", "mark", "after the TSA outage"]);
    tb.stop_session();
    wait_for("every checkpoint stamped", Duration::from_secs(60), || {
        scalar(&tb, "SELECT COUNT(*) FROM checkpoints WHERE token IS NULL") == 0
    });
    wait_for("the upload backlog to drain", Duration::from_secs(90), || drained(&tb));
    let status = tb.cli_ok(&["status"]);
    assert!(status.contains("WITNESS last checkpoint") && status.contains("TSA answering"), "{status}");
    daemon.terminate();
    println!("{}", insider_window(&tb, session));
    let check = tb.cli(&["check", "--seconds", "1"]);
    let check = String::from_utf8_lossy(&check.stdout).to_string();
    assert!(check.contains("timestamp authority") && check.contains("box clock agrees with it"), "{check}");

    let export = tb.root.join("export");
    tb.export(session, &export);
    let key = tb.public_key();
    let key = key.to_str().unwrap();
    let (cert, ca) = (tsa.cert(), tsa.ca());
    let pin = ["--tsa-cert", cert.to_str().unwrap(), "--tsa-ca", ca.to_str().unwrap()];
    let against = ["--key", key, "--against", ROOM_URL, pin[0], pin[1], pin[2], pin[3]];

    // The untouched export agrees with the store; the times are attested; the outage shows.
    let (code, text) = verify_with(Some(&tb.config), &export, &against);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("central checkpoint(s); the last"), "{text}");
    assert!(text.contains("attested by TSA"), "{text}");
    assert!(text.contains("were stamped late"), "the outage's delay is stated: {text}");
    assert!(!text.contains("[unexplained gap]"), "no gap in the recording: {text}");
    let chain = read_chain(&export);
    let records = chain.len();

    // 1. Cut at the end, cleanly: the store's last checkpoint covers more than the copy.
    let cut = copy(&export, "cut-end");
    for (i, (_, body)) in chain.iter().enumerate().skip(records - 5) {
        if let Entry::Segment { file, .. } = &body.entry {
            std::fs::remove_file(cut.join(file)).unwrap();
        }
        std::fs::remove_file(cut.join(layout::record_file(i as u64))).unwrap();
    }
    std::fs::remove_file(cut.join(layout::MANIFEST)).unwrap();
    for d in ["checkpoints", "captions", "playable"] {
        let _ = std::fs::remove_dir_all(cut.join(d));
    }
    let (code, text) = verify_with(Some(&tb.config), &cut, &["--key", key]);
    assert_eq!(code, 4, "alone, the cut copy is INCOMPLETE: {text}");
    let (code, text) = verify_with(Some(&tb.config), &cut, &against);
    assert_eq!(code, 1, "{text}");
    let expected = format!("covers {records} records; this copy ends at {}", records - 5);
    assert!(text.contains("TRUNCATED: central checkpoint #") && text.contains(&expected), "{text}");

    // 2. Cut in the middle and renumbered, re-sealed with the device's own key.
    let private = DeviceKey::load(&tb.data().join("device.key")).unwrap();
    let middle = copy(&export, "cut-middle");
    let mut bodies = Vec::new();
    for (i, (_, body)) in chain.iter().enumerate() {
        let drop = i > records / 3 && i < records / 2 && matches!(body.entry, Entry::Segment { .. });
        if drop {
            if let Entry::Segment { file, .. } = &body.entry {
                std::fs::remove_file(middle.join(file)).unwrap();
            }
        } else {
            bodies.push(body.clone());
        }
    }
    for i in 0..records {
        let _ = std::fs::remove_file(middle.join(layout::record_file(i as u64)));
    }
    reseal_as(&middle, bodies, &private, FORMAT_VERSION);
    let (code, text) = verify_with(Some(&tb.config), &middle, &against);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("REWRITTEN: central checkpoint #"), "{text}");

    // 3. The insider: the same chain, one mark reworded and everything re-signed with the
    // device key after the session. Alone it verifies (the key is the box's); only the
    // checkpoints the store received while the hearing went on can tell.
    let insider = copy(&export, "insider");
    let mut reworded = None;
    let bodies = chain
        .iter()
        .map(|(_, b)| {
            let mut b = b.clone();
            if let Entry::Mark { text, .. } = &mut b.entry
                && text == "before the TSA outage"
            {
                *text = "the witness withdrew".into();
                reworded = Some(b.index);
            }
            b
        })
        .collect();
    reseal_as(&insider, bodies, &private, FORMAT_VERSION);
    let (code, text) = verify_with(Some(&tb.config), &insider, &["--key", key]);
    assert_eq!(code, 0, "re-signed with the device key, the copy is self-consistent: {text}");
    let (code, text) = verify_with(Some(&tb.config), &insider, &against);
    assert_eq!(code, 1, "{text}");
    let line = text.lines().find(|l| l.contains("REWRITTEN")).unwrap_or_else(|| panic!("{text}"));
    let catching: u64 = line.split("checkpoint #").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    println!("insider rewrite of record #{} caught first by central checkpoint #{catching}: {line}", reworded.unwrap());

    // 4. A session the store never saw.
    let (code, text) = verify_with(
        Some(&tb.config),
        &export,
        &["--key", key, "--against", "s3://courtbox-records/kz/test-court/room-2"],
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("MISSING: the central store"), "{text}");

    // 5. A token moved onto another checkpoint is refused.
    let swapped = copy(&export, "token-swap");
    std::fs::copy(swapped.join("checkpoints/00000001.tsr"), swapped.join("checkpoints/00000002.tsr")).unwrap();
    let (code, text) = verify_with(Some(&tb.config), &swapped, &["--key", key, pin[0], pin[1], pin[2], pin[3]]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("checkpoints/00000002.tsr in the folder: timestamp token refused"), "{text}");

    // 6. The audit chain: its newest entries deleted from ledger.db.
    let audit = |args: &[&str]| {
        let out = tb.command().args(["audit", "--verify"]).args(args).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).to_string())
    };
    let (code, text) = audit(&["--against", ROOM_URL]);
    assert_eq!(code, 0, "{text}");
    let entries = scalar(&tb, "SELECT COUNT(*) FROM audit");
    assert!(entries >= 3, "session start, marks and stop are audited ({entries})");
    rusqlite::Connection::open(tb.data().join("ledger.db"))
        .unwrap()
        .execute("DELETE FROM audit WHERE idx >= ?1", [entries - 2])
        .unwrap();
    let (code, text) = audit(&[]);
    assert_eq!(code, 0, "alone, a chain cut at its end still links: {text}");
    let (code, text) = audit(&["--against", ROOM_URL]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(&format!("covers {entries} entries; the ledger has {}", entries - 2)), "{text}");
    assert!(text.contains("the store still holds the deleted entry"), "{text}");
}

/// A checkpoint is signed and committed with its upload job in one transaction: killed
/// before the upload, the daemon sends it after the restart, once, under its own name.
#[test]
fn a_checkpoint_signed_but_not_uploaded_before_kill_9_is_sent_once_after_restart() {
    let (tb, mut weed) = box_with_store("witness_kill9", "");
    let daemon = tb.start();
    let session = tb.start_session();
    weed.stop();
    std::thread::sleep(Duration::from_secs(5));
    tb.cli_ok(&["session", "mark", "while the store is down"]);
    std::thread::sleep(Duration::from_secs(1));
    let unsent = scalar(&tb, "SELECT COUNT(*) FROM upload_jobs WHERE kind = 'checkpoint' AND state = 'pending'");
    assert!(unsent >= 3, "checkpoints signed but not yet uploaded ({unsent})");
    daemon.kill9();
    weed.resume();
    let daemon = tb.start();
    tb.stop_session();
    wait_for("the upload backlog to drain", Duration::from_secs(90), || drained(&tb));
    daemon.terminate();

    let conn = rusqlite::Connection::open(tb.data().join("ledger.db")).unwrap();
    let mut stmt = conn.prepare("SELECT seq, note FROM checkpoints WHERE log = ?1 ORDER BY seq").unwrap();
    let ledger: Vec<(i64, Vec<u8>)> =
        stmt.query_map([session.to_string()], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    let seqs: Vec<i64> = ledger.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=ledger.len() as i64).collect::<Vec<_>>(), "numbered without holes or repeats");
    let store = weed.admin_store();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let listed: Vec<String> = rt.block_on(async {
        use futures::TryStreamExt;
        let prefix = store.key(&format!("{session}/checkpoints"));
        store.inner.list(Some(&prefix)).map_ok(|m| m.location.to_string()).try_collect().await.unwrap()
    });
    let notes: Vec<&String> = listed.iter().filter(|k| k.ends_with(".note")).collect();
    assert_eq!(notes.len(), ledger.len(), "every checkpoint in the store, once: {listed:?}");
    for (seq, note) in &ledger {
        let key = format!("{session}/checkpoints/{seq:08}.note");
        let stored = rt.block_on(async {
            use object_store::ObjectStoreExt;
            store.inner.get(&store.key(&key)).await.unwrap().bytes().await.unwrap()
        });
        assert_eq!(stored.as_ref(), note.as_slice(), "{key} holds the signed bytes");
    }
}
