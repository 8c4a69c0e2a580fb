use crate::common::*;
use courtbox::integrity::{Entry, RunCause};
use std::time::{Duration, Instant};

/// Tiny xorshift so that kill points are random but reproducible from the printed seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn between_ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo))
    }
}

/// `kill -9` at random points of a session, 10 times (100 with COURTBOX_SOAK=1). After each
/// restart the session resumes by itself; each kill costs at most one segment per source
/// plus the restart time (from the kill until every source delivers data again); every
/// loss is a gap record naming the crash; the chain verifies.
#[test]
fn kill_9_during_a_session_loses_at_most_a_segment_and_says_so() {
    let kills: usize = if std::env::var_os("COURTBOX_SOAK").is_some() { 100 } else { 10 };
    let seed = std::env::var("COURTBOX_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    eprintln!("kill test: {kills} kills, COURTBOX_TEST_SEED={seed}");
    let mut rng = Rng(seed);
    let segment = Duration::from_secs(2);
    let tb = TestBox::new("kill_9_during_a_session", "tests/fixtures/light.toml", 2);

    let mut daemon = tb.start();
    let session = tb.start_session();
    // (kill instant, restart instant) of each kill.
    let mut outages: Vec<(Instant, Instant)> = Vec::new();
    for i in 0..kills {
        std::thread::sleep(rng.between_ms(1500, 6000));
        let killed = Instant::now();
        daemon.kill9();
        daemon = tb.start();
        // Resumed means data flows again from every source in the new run: that, not the
        // run's first record, is where its gap ends. Under load (CI's two cores) encoders
        // can take a second or more to start after the run is in the chain.
        wait_for("every source to record again", Duration::from_secs(30), || {
            let s = tb.status();
            let flowing = s["session"]["health"]
                .as_array()
                .is_some_and(|h| h.len() == 6 && h.iter().all(|h| h["buffers"].as_u64().unwrap_or(0) > 0));
            s["session"]["id"] == session.to_string() && s["session"]["run"] == (i + 2) as u64 && flowing
        });
        outages.push((killed, Instant::now()));
    }
    std::thread::sleep(Duration::from_secs(3));
    tb.stop_session();
    daemon.terminate();

    let records = tb.records(session);
    let runs: Vec<(RunCause, u64)> = records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::RunStart { cause, media, .. } => Some((*cause, media.0)),
            _ => None,
        })
        .collect();
    assert_eq!(runs.len(), kills + 1, "one run per start");
    assert!(runs[1..].iter().all(|(c, _)| *c == RunCause::ResumeAfterCrash), "{runs:?}");

    let gaps = gaps(&records);
    let sources = ["bench", "hall", "judge", "prosecutor", "defence", "witness"];
    for (k, (killed, resumed)) in outages.iter().enumerate() {
        let run_media = runs[k + 1].1;
        let restart = resumed.duration_since(*killed);
        for source in sources {
            // The gap of this source that ends at this run's start.
            let loss: u64 = gaps
                .iter()
                .filter(|(s, _, end, _)| s == source && end.abs_diff(run_media) < 2_000_000_000)
                .map(|(_, start, end, reason)| {
                    assert!(reason.contains("crashed or was killed"), "gap reason: {reason}");
                    end - start
                })
                .sum();
            let allowed = segment + restart + Duration::from_millis(500);
            eprintln!(
                "kill {k}: {source} lost {:?}; data flowed again {restart:?} after the kill",
                Duration::from_nanos(loss)
            );
            assert!(
                Duration::from_nanos(loss) <= allowed,
                "kill {k}: {source} lost {:?}, more than a segment plus the restart ({allowed:?})",
                Duration::from_nanos(loss)
            );
        }
    }
    // Every segment that was open at a kill is in the record, marked recovered.
    assert!(segments(&records).iter().any(|s| s.4), "no recovered segment after {kills} kills");

    let export = tb.root.join("export");
    tb.export(session, &export);
    let (code, text) = verify(&export, Some(&tb.public_key()));
    assert_eq!(code, 0, "{text}");
}

/// A daemon killed during a recess comes back in recess (nothing recorded, no crash gap
/// invented); resuming records again, and the chain verifies with the recess stated.
#[test]
fn kill_9_during_a_recess_comes_back_in_recess() {
    let tb = TestBox::new("crash_recess", "tests/fixtures/light.toml", 2);
    let daemon = tb.start();
    let session = tb.start_session();
    std::thread::sleep(Duration::from_secs(3));
    tb.cli_ok(&["session", "recess"]);
    daemon.kill9();
    let daemon = tb.start();
    let status = tb.status();
    assert_eq!(status["session"]["id"].as_str(), Some(session.to_string().as_str()));
    assert_eq!(status["session"]["state"].as_str(), Some("recess"), "{status}");
    assert!(status["session"]["devices"].as_array().unwrap().is_empty(), "nothing records during a recess");
    std::thread::sleep(Duration::from_secs(2));
    tb.cli_ok(&["session", "resume"]);
    std::thread::sleep(Duration::from_secs(3));
    tb.stop_session();
    drop(daemon);

    let records = tb.records(session);
    let runs: Vec<RunCause> = records
        .iter()
        .filter_map(|r| if let Entry::RunStart { cause, .. } = r.entry { Some(cause) } else { None })
        .collect();
    assert_eq!(runs, [RunCause::SessionStart, RunCause::ResumeAfterRecess], "no crash run during the recess");
    let gaps: Vec<&str> = records
        .iter()
        .filter_map(|r| if let Entry::Gap { reason, .. } = &r.entry { Some(reason.as_str()) } else { None })
        .collect();
    assert_eq!(gaps.len(), 6, "one recess gap per source: {gaps:?}");
    assert!(gaps.iter().all(|g| *g == courtbox::integrity::RECESS_REASON), "{gaps:?}");
    let dir = tb.root.join("export");
    tb.export(session, &dir);
    let (code, report) = verify(&dir, Some(&tb.public_key()));
    assert_eq!(code, 0, "{report}");
}
