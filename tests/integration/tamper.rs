use crate::common::*;
use courtbox::integrity::{
    Context, DeviceKey, Entry, FORMAT_VERSION, ManifestBody, RecordBody, SignedDoc, ZERO_HASH, fingerprint, layout,
};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

struct Fixture {
    /// Export of session A and of a later session B of the same box.
    a: PathBuf,
    b: PathBuf,
    key: PathBuf,
    private_key: PathBuf,
    root: PathBuf,
}

/// Records two short sessions once; every test works on its own copy.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let tb = TestBox::new("tamper", "tests/fixtures/light.toml", 2);
        let daemon = tb.start();
        let mut exports = Vec::new();
        for name in ["a", "b"] {
            let id = tb.start_session();
            std::thread::sleep(Duration::from_secs(9));
            tb.stop_session();
            let dir = tb.root.join(format!("export-{name}"));
            tb.export(id, &dir);
            exports.push(dir);
        }
        daemon.terminate();
        let (code, text) = verify(&exports[0], Some(&tb.public_key()));
        assert_eq!(code, 0, "untouched export must verify: {text}");
        Fixture {
            a: exports[0].clone(),
            b: exports[1].clone(),
            key: tb.public_key(),
            private_key: tb.data().join("device.key"),
            root: tb.root.clone(),
        }
    })
}

fn copy_of_a(case: &str) -> PathBuf {
    let f = fixture();
    let dir = f.root.join(format!("case-{case}"));
    let _ = std::fs::remove_dir_all(&dir);
    copy_tree(&f.a, &dir);
    dir
}

/// Verify must fail, naming the fault kind and every given detail.
fn assert_detected(dir: &Path, kind: &str, details: &[&str]) -> String {
    let (code, text) = verify(dir, Some(&fixture().key));
    assert_eq!(code, 1, "tampering not detected:\n{text}");
    let line = text
        .lines()
        .find(|l| l.contains(&format!("[{kind}]")) && details.iter().all(|d| l.contains(d)))
        .unwrap_or_else(|| panic!("no [{kind}] fault naming {details:?}:\n{text}"));
    line.to_string()
}

pub fn read_chain(dir: &Path) -> Vec<(SignedDoc, RecordBody)> {
    let mut files: Vec<_> =
        std::fs::read_dir(dir.join(layout::CHAIN_DIR)).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let doc = SignedDoc::parse(&std::fs::read(p).unwrap()).unwrap();
            let body = serde_json::from_slice(&doc.body).unwrap();
            (doc, body)
        })
        .collect()
}

/// Rewrites the whole chain and manifest as a forger would: renumbered, re-linked and
/// re-signed with `key`, with `device.pub` replaced.
fn reseal(dir: &Path, bodies: Vec<RecordBody>, key: &DeviceKey) {
    reseal_as(dir, bodies, key, FORMAT_VERSION);
}

/// `reseal` in format `version` (1: as courtbox wrote records before format v2). The
/// folder's checkpoints are dropped, as a forger would drop them.
pub fn reseal_as(dir: &Path, bodies: Vec<RecordBody>, key: &DeviceKey, version: u32) {
    let _ = std::fs::remove_dir_all(dir.join("checkpoints"));
    std::fs::remove_dir_all(dir.join(layout::CHAIN_DIR)).unwrap();
    std::fs::create_dir_all(dir.join(layout::CHAIN_DIR)).unwrap();
    let mut prev = ZERO_HASH.to_string();
    let mut hashes = Vec::new();
    for (i, mut body) in bodies.into_iter().enumerate() {
        body.index = i as u64;
        body.prev = prev.clone();
        body.device = key.public().key_id();
        body.v = version;
        let doc = SignedDoc::sign_as(&body, key, Context::Record, version);
        prev = hex::encode(doc.hash());
        hashes.push(prev.clone());
        write_file(&dir.join(layout::record_file(i as u64)), &doc.to_bytes());
    }
    let old = SignedDoc::parse(&std::fs::read(dir.join(layout::MANIFEST)).unwrap()).unwrap();
    let old: ManifestBody = serde_json::from_slice(&old.body).unwrap();
    let manifest = ManifestBody {
        v: version,
        session: old.session,
        revision: old.revision,
        device: key.public().key_id(),
        closed: old.closed,
        records: hashes.len() as u64,
        head: prev,
        record_hashes: hashes,
    };
    write_file(&dir.join(layout::MANIFEST), &SignedDoc::sign_as(&manifest, key, Context::Manifest, version).to_bytes());
    write_file(&dir.join(layout::PUBLIC_KEY), key.public().to_pem().as_bytes());
}

#[test]
fn a_flipped_byte_is_named() {
    let dir = copy_of_a("flipped-byte");
    let file = dir.join("bench/000002.mkv");
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    write_file(&file, &bytes);
    assert_detected(&dir, "altered bytes", &["bench/000002.mkv", "seq 2"]);
}

#[test]
fn a_truncated_segment_is_named() {
    let dir = copy_of_a("truncated");
    let file = dir.join("hall/000001.mkv");
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(len * 6 / 10).unwrap();
    assert_detected(&dir, "truncated", &["hall/000001.mkv", &format!("of {len} bytes")]);
}

#[test]
fn a_deleted_middle_segment_is_named() {
    let dir = copy_of_a("deleted-segment");
    std::fs::remove_file(dir.join("judge/000002.mkv")).unwrap();
    assert_detected(&dir, "missing segment", &["judge/000002.mkv", "source judge"]);
}

#[test]
fn a_deleted_segment_with_its_record_breaks_the_chain() {
    let dir = copy_of_a("deleted-record");
    let chain = read_chain(&dir);
    let (i, _) = chain
        .iter()
        .enumerate()
        .find(|(_, (_, b))| matches!(&b.entry, Entry::Segment { file, .. } if file == "judge/000002.mkv"))
        .unwrap();
    std::fs::remove_file(dir.join("judge/000002.mkv")).unwrap();
    std::fs::remove_file(dir.join(layout::record_file(i as u64))).unwrap();
    assert_detected(&dir, "missing record", &[&format!("record #{i} is missing")]);
    assert_detected(&dir, "unexplained gap", &["source judge", "between judge/000001.mkv and judge/000003.mkv"]);
}

#[test]
fn two_swapped_records_are_named() {
    let dir = copy_of_a("swapped");
    let (r4, r5) = (dir.join(layout::record_file(4)), dir.join(layout::record_file(5)));
    let (b4, b5) = (std::fs::read(&r4).unwrap(), std::fs::read(&r5).unwrap());
    write_file(&r4, &b5);
    write_file(&r5, &b4);
    assert_detected(&dir, "reordered", &["chain/00000004.rec holds record #5"]);
    assert_detected(&dir, "reordered", &["chain/00000005.rec holds record #4"]);
}

#[test]
fn a_record_from_another_session_is_named() {
    let f = fixture();
    let dir = copy_of_a("foreign");
    let other = read_chain(&f.b);
    std::fs::copy(f.b.join(layout::record_file(3)), dir.join(layout::record_file(3))).unwrap();
    let detail = format!("belongs to session {}", other[0].1.session);
    assert_detected(&dir, "foreign record", &["record #3", &detail]);
}

#[test]
fn a_chain_re_signed_with_another_key_is_refused() {
    let dir = copy_of_a("re-signed");
    let bodies = read_chain(&dir).into_iter().map(|(_, b)| b).collect();
    let forger = DeviceKey::create(&dir.join("../forger.key").with_file_name("forger-re-signed.key")).unwrap();
    reseal(&dir, bodies, &forger);
    assert_detected(&dir, "key", &["re-keyed", &forger.public().key_id()]);
    assert_detected(&dir, "bad signature", &["chain/00000000.rec"]);
    // Without a trust anchor the forged copy is consistent with the key it ships, and verify
    // can only say that nothing vouches for that key.
    let (code, text) = verify(&dir, None);
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("UNTRUSTED KEY"), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("VERIFIED")), "{text}");
    // The real key's fingerprint, or the court's trust list, refuses it.
    let real = courtbox::integrity::PublicKey::read(&fixture().key).unwrap();
    let (code, text) = verify_with(None, &dir, &["--fingerprint", &fingerprint(&real)]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("no key with fingerprint"), "{text}");
    let list = dir.with_file_name("trusted-keys-re-signed.toml");
    write_file(&list, trust_list(&real, None).as_bytes());
    let (code, text) = verify_with(None, &dir, &["--trusted-keys", list.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("which is not in the trust list"), "{text}");
}

/// The court's trust list naming `key`, valid from 2020 (until `until`).
fn trust_list(key: &courtbox::integrity::PublicKey, until: Option<&str>) -> String {
    let until = until.map(|u| format!("valid_until = \"{u}\"\n")).unwrap_or_default();
    format!(
        "[[device]]\nkey = \"\"\"\n{}\"\"\"\ncourt = \"test-court\"\nroom = \"room-1\"\nvalid_from = \"2020-01-01T00:00:00Z\"\n{until}",
        key.to_pem()
    )
}

#[test]
fn an_untouched_export_needs_a_trust_anchor_and_each_kind_of_anchor_works() {
    let f = fixture();
    let dir = copy_of_a("anchors");
    let (code, text) = verify(&dir, None);
    assert_eq!(code, 3, "no anchor: UNTRUSTED KEY, never VERIFIED: {text}");
    assert!(
        text.contains("UNTRUSTED KEY") && text.contains("NOT TRUSTED: nothing outside the record vouches for it"),
        "{text}"
    );
    let real = courtbox::integrity::PublicKey::read(&f.key).unwrap();
    let (code, text) = verify_with(None, &dir, &["--fingerprint", &fingerprint(&real)]);
    assert_eq!(code, 0, "{text}");
    let list = dir.with_file_name("trusted-keys-anchors.toml");
    write_file(&list, trust_list(&real, None).as_bytes());
    let (code, text) = verify_with(None, &dir, &["--trusted-keys", list.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("trusted by the trust list (test-court/room-1)"), "{text}");
    // A key the list says was replaced before the session: signed outside its validity.
    write_file(&list, trust_list(&real, Some("2021-01-01T00:00:00Z")).as_bytes());
    let (code, text) = verify_with(None, &dir, &["--trusted-keys", list.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("signed outside the key's validity"), "{text}");
}

#[test]
fn an_end_cut_off_cleanly_is_incomplete_never_verified() {
    // The last records, the manifest, the checkpoints, the captions and the media the removed
    // records name: nothing left points at what is gone.
    let dir = copy_of_a("cut-end");
    let chain = read_chain(&dir);
    let keep = chain.len() - 4;
    for (i, (_, body)) in chain.iter().enumerate().skip(keep) {
        if let Entry::Segment { file, .. } = &body.entry {
            std::fs::remove_file(dir.join(file)).unwrap();
        }
        std::fs::remove_file(dir.join(layout::record_file(i as u64))).unwrap();
    }
    std::fs::remove_file(dir.join(layout::MANIFEST)).unwrap();
    let _ = std::fs::remove_dir_all(dir.join("checkpoints"));
    let _ = std::fs::remove_dir_all(dir.join("captions"));
    let _ = std::fs::remove_dir_all(dir.join("playable"));
    let (code, text) = verify(&dir, Some(&fixture().key));
    assert_eq!(code, 4, "{text}");
    assert!(text.contains("INCOMPLETE: no closing manifest"), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("VERIFIED")), "{text}");
    let (code, text) = verify_with(None, &dir, &["--key", fixture().key.to_str().unwrap(), "--allow-open"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("VERIFIED (OPEN SESSION)"), "{text}");
}

#[test]
fn a_v1_export_still_verifies_and_is_reported_as_v1() {
    // The same session as format v1 wrote it: bare bodies signed, no checkpoints.
    let f = fixture();
    let dir = copy_of_a("v1");
    let bodies = read_chain(&dir).into_iter().map(|(_, b)| b).collect();
    reseal_as(&dir, bodies, &DeviceKey::load(&f.private_key).unwrap(), 1);
    let (code, text) = verify(&dir, Some(&f.key));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("format:   v1 (no context strings"), "{text}");
    // A v1 record dropped into a v2 chain is named.
    let v2 = copy_of_a("v1-mixed");
    std::fs::copy(dir.join(layout::record_file(3)), v2.join(layout::record_file(3))).unwrap();
    let (code, text) = verify(&v2, Some(&f.key));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("is format v1 in a v2 chain"), "{text}");
}

#[test]
fn an_insider_removing_a_segment_leaves_an_unexplained_gap() {
    // Even with the box's own private key, a forger who removes a segment and re-seals the
    // chain cannot hide the hole in the source's timeline.
    let f = fixture();
    let dir = copy_of_a("insider");
    let bodies: Vec<RecordBody> = read_chain(&dir)
        .into_iter()
        .map(|(_, b)| b)
        .filter(|b| !matches!(&b.entry, Entry::Segment { file, .. } if file == "hall/000002.mkv"))
        .collect();
    std::fs::remove_file(dir.join("hall/000002.mkv")).unwrap();
    let key = DeviceKey::load(&f.private_key).unwrap();
    reseal(&dir, bodies, &key);
    let line =
        assert_detected(&dir, "unexplained gap", &["source hall", "between hall/000001.mkv and hall/000003.mkv"]);
    assert!(line.contains("0:00:04") || line.contains("0:00:05"), "{line}");
    assert_detected(&dir, "missing segment", &["hall"]);
}

/// A crafted export cannot make `verify` walk a hundred million record numbers or four
/// billion manifest revisions, nor read a 1 GB record: each is named once, and the work is
/// bounded (the time taken is printed; on this machine well under a second).
#[test]
fn a_crafted_folder_is_named_without_unbounded_work() {
    let dir = copy_of_a("crafted");
    std::fs::write(dir.join("chain/99999999.rec"), b"{}\n").unwrap();
    std::fs::write(dir.join("manifest-4294967295.rec"), b"{}\n").unwrap();
    // A record of 1 GB: sparse, so it costs no disk, only what verify would read of it.
    let huge = std::fs::OpenOptions::new().write(true).truncate(true).open(dir.join("chain/00000001.rec")).unwrap();
    huge.set_len(1 << 30).unwrap();
    drop(huge);
    let started = std::time::Instant::now();
    let (code, text) = verify(&dir, Some(&fixture().key));
    eprintln!("crafted folder verified in {:?}", started.elapsed());
    assert_eq!(code, 1, "{text}");
    for named in [
        "over 100000 records are missing before #",
        "the 1 file(s) from chain/99999999.rec on are not read",
        "manifest revisions 2 to 4294967294 are missing (4294967293 revisions)",
        "chain/00000001.rec: 1073741824 bytes, more than the 1048576 such a file can hold",
    ] {
        assert!(text.contains(named), "not named: {named}\n{text}");
    }
    assert!(text.lines().count() < 200, "each fault is named once, not once per number:\n{text}");
}

/// The session id record #0 of an export states.
fn session_of(dir: &Path) -> uuid::Uuid {
    read_chain(dir)[0].1.session
}

/// Derived files and stray media are listed as not part of the record, and capped; the
/// verdict is unchanged unless `--strict`, which makes any of them a fault.
#[test]
fn files_outside_the_record_are_listed_and_strict_refuses_them() {
    let key = fixture().key.to_str().unwrap();
    let untouched = copy_of_a("listed-untouched");
    let (code, text) = verify(&untouched, Some(&fixture().key));
    assert_eq!(code, 0, "a normal export still verifies: {text}");
    assert!(text.contains("not part of the record, not verified ("), "{text}");
    assert!(text.contains("  README.txt (derived)") && text.contains("  playable/bench.mkv (derived)"), "{text}");
    let (code, text) = verify_with(None, &untouched, &["--key", key, "--strict"]);
    assert_eq!(code, 1, "--strict: an export's derived files are not the record: {text}");
    assert!(text.contains("FAIL [not part of the record] --strict: "), "{text}");

    let dir = copy_of_a("listed");
    std::fs::write(dir.join("playable/extra.mkv"), b"not from the record").unwrap();
    std::fs::write(dir.join("bench/999999.mkv"), b"stray media").unwrap();
    let (code, text) = verify(&dir, Some(&fixture().key));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("  playable/extra.mkv (derived)"), "{text}");
    assert!(text.contains("  bench/999999.mkv (no record names it)"), "{text}");
    let (code, text) = verify_with(None, &dir, &["--key", key, "--strict"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("NOT VERIFIED"), "{text}");

    // A folder crafted with thousands of files is listed up to a bound, then counted.
    for i in 0..5000 {
        std::fs::write(dir.join(format!("playable/{i:05}.mkv")), b"").unwrap();
    }
    let (code, text) = verify(&dir, Some(&fixture().key));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("  ... and "), "{text}");
    assert!(text.lines().count() < 200, "listed one by one:\n{text}");
}

/// An export copied under another session's id is named, with both ids; under its own id
/// it verifies, and a folder not named by a session id is noted, not refused.
#[test]
fn an_export_under_another_sessions_id_is_named() {
    let f = fixture();
    let (a, b) = (session_of(&f.a), session_of(&f.b));
    let renamed = f.root.join(b.to_string());
    let _ = std::fs::remove_dir_all(&renamed);
    copy_tree(&f.a, &renamed);
    let line = assert_detected(&renamed, "misplaced", &[&a.to_string(), &b.to_string()]);
    assert!(line.contains("another session's id"), "{line}");

    let own = f.root.join(a.to_string());
    let _ = std::fs::remove_dir_all(&own);
    copy_tree(&f.a, &own);
    let (code, text) = verify(&own, Some(&f.key));
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("is not a session id"), "{text}");
    let (code, text) = verify(&f.a, Some(&f.key));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("\"export-a\" is not a session id"), "{text}");
}

/// A central copy is checked against its court, room and session by its URL: copied under
/// another room's prefix it is named; in its own place it verifies, even with `--strict`
/// (central storage holds exactly the record).
#[test]
fn a_central_copy_under_another_room_is_named() {
    let f = fixture();
    let a = session_of(&f.a);
    let key = f.key.to_str().unwrap();
    let store = f.root.join("misplaced-store");
    let _ = std::fs::remove_dir_all(&store);
    let central = |room: &str| -> String {
        let dir = store.join(format!("test-court/{room}/{a}"));
        copy_tree(&f.a, &dir);
        // As the uploader lays it out: no derived files and no device.pub.
        for derived in ["playable", "captions"] {
            let _ = std::fs::remove_dir_all(dir.join(derived));
        }
        for file in ["README.txt", "device.pub"] {
            let _ = std::fs::remove_file(dir.join(file));
        }
        format!("file://{}", dir.display())
    };
    let right = central("room-1");
    let (code, text) = verify_with(None, &right, &["--key", key, "--strict"]);
    assert_eq!(code, 0, "{text}");

    let wrong = central("room-2");
    let (code, text) = verify_with(None, &wrong, &["--key", key]);
    assert_eq!(code, 1, "{text}");
    let line = text.lines().find(|l| l.contains("[misplaced]")).unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains(&format!("test-court/room-2/{a}")) && line.contains("court test-court, room room-1"),
        "both places named: {line}"
    );
}
