//! What `verify` checks of the witness: every checkpoint in the folder and, with
//! `--against`, in the central store, compared with the chain (a checkpoint that covers more
//! records than the folder has names a cut; one whose head differs names a rewrite), and
//! the RFC 3161 tokens over them (the times a TSA attests, and the box clock against it).

use super::checkpoint::{self, CHECKPOINTS_DIR, Checkpoint, Log};
use crate::base::WallTime;
use crate::integrity::{Fault, FaultKind, PublicKey, Report, SessionFolder, VerifyOptions};
use uuid::Uuid;

/// A checkpoint read from a folder, with the time its token attests (once checked).
struct Witnessed {
    checkpoint: Checkpoint,
    attested: Option<WallTime>,
}

fn fault(report: &mut Report, message: String) {
    report.faults.push(Fault { kind: FaultKind::Witness, message });
}

/// Reads and checks every `checkpoints/*.note` (and its `.tsr`) of a folder.
fn read_checkpoints(
    folder: &dyn SessionFolder,
    files: &[String],
    options: &VerifyOptions,
    key: &PublicKey,
    session: Uuid,
    where_: &str,
    report: &mut Report,
) -> Vec<Witnessed> {
    let mut out = Vec::new();
    let mut unchecked_tokens = 0;
    let notes = files.iter().filter(|f| {
        f.strip_prefix(&format!("{CHECKPOINTS_DIR}/")).is_some_and(|n| n.ends_with(&format!(".{}", checkpoint::NOTE)))
    });
    for file in notes {
        let note = match folder.read(file) {
            Ok(Some(b)) => b,
            Ok(None) => continue,
            Err(e) => {
                fault(report, format!("{where_} {file}: {e}"));
                continue;
            }
        };
        let cp = match Checkpoint::open(&note, key) {
            Ok(cp) => cp,
            Err(e) => {
                fault(report, format!("{where_} {file}: {e}"));
                continue;
            }
        };
        if cp.log != Log::Session(session) || *file != checkpoint::checkpoint_file(cp.seq, checkpoint::NOTE) {
            fault(report, format!("{where_} {file} is checkpoint #{} of {:?}, not of this session", cp.seq, cp.log));
            continue;
        }
        let token_file = checkpoint::checkpoint_file(cp.seq, checkpoint::TOKEN);
        let mut attested = None;
        if let Ok(Some(token)) = folder.read(&token_file) {
            match options.tsa {
                None => unchecked_tokens += 1,
                Some(pin) => match super::tsa::verify_token(&token, &note, pin) {
                    Ok(time) => attested = Some(time),
                    Err(e) => fault(report, format!("{where_} {token_file}: timestamp token refused: {e}")),
                },
            }
        }
        out.push(Witnessed { checkpoint: cp, attested });
    }
    if unchecked_tokens > 0 {
        report.notes.push(format!(
            "{unchecked_tokens} timestamp token(s) {where_} were not checked: give --tsa-cert and --tsa-ca (the TSA's pinned certificates)"
        ));
    }
    out.sort_by_key(|w| w.checkpoint.seq);
    out
}

/// Compares checkpoints with the chain; one fault for the first disagreement of each kind,
/// naming the checkpoint that catches it.
fn compare(witnessed: &[Witnessed], chain: &[Option<[u8; 32]>], where_: &str, report: &mut Report) {
    let mut cut = None;
    let mut rewritten = Vec::new();
    for w in witnessed {
        let cp = &w.checkpoint;
        if cp.size as usize > chain.len() {
            cut.get_or_insert(cp);
        } else if cp.size > 0 && chain[cp.size as usize - 1].is_some_and(|h| h != cp.head) {
            rewritten.push(cp);
        }
    }
    if let Some(cp) = cut.or_else(|| {
        witnessed.iter().map(|w| &w.checkpoint).max_by_key(|c| c.size).filter(|c| c.size as usize > chain.len())
    }) {
        let last = witnessed.iter().map(|w| &w.checkpoint).max_by_key(|c| c.size).unwrap_or(cp);
        fault(
            report,
            format!(
                "TRUNCATED: {where_} checkpoint #{} at {} covers {} records; this copy ends at {} (records #{}–#{} are missing)",
                last.seq,
                last.wall,
                last.size,
                chain.len(),
                chain.len(),
                last.size - 1
            ),
        );
    }
    if let Some(first) = rewritten.first() {
        let i = first.size - 1;
        fault(
            report,
            format!(
                "REWRITTEN: {where_} checkpoint #{} at {} says record #{i} hashes to {}, but here it hashes to {}: \
                 the chain was rewritten after that checkpoint ({} of {} checkpoints disagree, #{}–#{})",
                first.seq,
                first.wall,
                hex::encode(first.head),
                chain[i as usize].map(hex::encode).unwrap_or_default(),
                rewritten.len(),
                witnessed.len(),
                first.seq,
                rewritten.last().map_or(first.seq, |c| c.seq)
            ),
        );
    }
}

/// Checkpoints in the folder, then (with `--against`) in the central store; then the times
/// their tokens attest.
pub fn check_checkpoints(
    folder: &dyn SessionFolder,
    files: &[String],
    options: &VerifyOptions,
    key: &PublicKey,
    session: Uuid,
    chain: &[Option<[u8; 32]>],
    report: &mut Report,
) {
    let local = read_checkpoints(folder, files, options, key, session, "in the folder:", report);
    compare(&local, chain, "the folder's", report);
    let mut all = local;
    if let Some(central) = options.against {
        let central_files = match central.list() {
            Ok(f) => f,
            Err(e) => {
                fault(report, format!("cannot list the central copy {}: {e}", central.describe()));
                Vec::new()
            }
        };
        let witnessed = read_checkpoints(central, &central_files, options, key, session, "in the store:", report);
        if witnessed.is_empty() {
            fault(
                report,
                format!(
                    "MISSING: the central store ({}) holds no checkpoint of session {session}: it was never told of this \
                     session, or this is not the session the box recorded",
                    central.describe()
                ),
            );
        } else {
            compare(&witnessed, chain, "central", report);
            let last = &witnessed[witnessed.len() - 1].checkpoint;
            let largest = witnessed.iter().map(|w| w.checkpoint.size).max().unwrap_or(0);
            report.witness.push(format!(
                "{} central checkpoint(s); the last, #{} at {}, covers {} records",
                witnessed.len(),
                last.seq,
                last.wall,
                largest
            ));
            if (largest as usize) < chain.len() {
                report.witness.push(format!(
                    "records #{}–#{} are in no central checkpoint yet: they are as trustworthy as the device key alone",
                    largest,
                    chain.len() - 1
                ));
            }
        }
        all.extend(witnessed);
    } else if !all.is_empty() {
        let largest = all.iter().map(|w| w.checkpoint.size).max().unwrap_or(0);
        report.witness.push(format!(
            "{} checkpoint(s) in the folder agree with the chain up to record #{}; compare with the store's \
             (--against) to rule out a copy cut or rewritten with the device key",
            all.len(),
            largest.saturating_sub(1)
        ));
    }
    attested_times(&all, options, report);
}

fn attested_times(all: &[Witnessed], options: &VerifyOptions, report: &mut Report) {
    let stamped: Vec<(&Checkpoint, WallTime)> =
        all.iter().filter_map(|w| w.attested.map(|t| (&w.checkpoint, t))).collect();
    let (Some(first), Some(last), Some(pin)) =
        (stamped.iter().min_by_key(|s| s.1), stamped.iter().max_by_key(|s| (s.0.size, s.1)), options.tsa)
    else {
        return;
    };
    report.witness.push(format!(
        "recorded between {} and {}, attested by TSA {}: record #{} existed by the first time, record #{} by the second",
        first.1,
        last.1,
        pin.name(),
        first.0.size.saturating_sub(1),
        last.0.size.saturating_sub(1)
    ));
    let tolerance = options.clock_tolerance_s as i128 * 1_000_000_000;
    let late: Vec<(&Checkpoint, i128)> =
        stamped.iter().map(|(c, t)| (*c, t.since(c.wall))).filter(|(_, d)| *d > tolerance).collect();
    if let Some((c, d)) = late.iter().max_by_key(|(_, d)| *d) {
        report.witness.push(format!(
            "{} checkpoint(s) were stamped late (the TSA was unreachable, or the box clock is behind): the most, #{} signed at {}, {:.0} s later",
            late.len(),
            c.seq,
            c.wall,
            *d as f64 / 1e9
        ));
    }
    // A checkpoint cannot be stamped before it was signed: a box time after the TSA's is the
    // box clock running ahead.
    if let Some((c, t)) =
        stamped.iter().filter(|(c, t)| c.wall.since(*t) > tolerance).max_by_key(|(c, t)| c.wall.since(*t))
    {
        report.witness.push(format!(
            "CLOCK: the box clock was {:.0} s ahead of the TSA at checkpoint #{} (box {}, TSA {}); tolerance {} s",
            c.wall.since(*t) as f64 / 1e9,
            c.seq,
            c.wall,
            t,
            options.clock_tolerance_s
        ));
    }
    if stamped.iter().all(|(c, t)| t.since(c.wall) > tolerance) {
        let least = stamped.iter().map(|(c, t)| t.since(c.wall)).min().unwrap_or(0);
        report.witness.push(format!(
            "CLOCK: every stamp came at least {:.0} s after its checkpoint: the box clock is behind the TSA (or every stamp was delayed); tolerance {} s",
            least as f64 / 1e9,
            options.clock_tolerance_s
        ));
    }
}

/// Compares the ledger's audit chain with the audit checkpoints (and entries) the box sent to
/// central storage: the store still knows of entries deleted from the ledger since.
pub fn audit_against(
    entries: &[crate::integrity::SignedEntry],
    key: &PublicKey,
    central: &dyn SessionFolder,
) -> Vec<String> {
    let mut faults = Vec::new();
    let files = match central.list() {
        Ok(f) => f,
        Err(e) => return vec![format!("cannot list {}: {e}", central.describe())],
    };
    let mut checkpoints = Vec::new();
    for f in files.iter().filter(|f| f.starts_with(&format!("{CHECKPOINTS_DIR}/")) && f.ends_with(".note")) {
        match central.read(f).map(|b| b.map(|b| Checkpoint::open(&b, key))) {
            Ok(Some(Ok(cp))) if cp.log == Log::Audit => checkpoints.push(cp),
            Ok(Some(Ok(_))) => faults.push(format!("{f} in the store is not an audit checkpoint")),
            Ok(Some(Err(e))) => faults.push(format!("{f} in the store: {e}")),
            Ok(None) => {}
            Err(e) => faults.push(format!("{f} in the store: {e}")),
        }
    }
    let Some(last) = checkpoints.iter().max_by_key(|c| (c.size, c.seq)) else {
        faults.push(format!(
            "MISSING: the store ({}) holds no audit checkpoint of this box: its audit chain was never sent",
            central.describe()
        ));
        return faults;
    };
    let have = entries.len() as u64;
    if last.size > have {
        faults.push(format!(
            "TRUNCATED: central audit checkpoint #{} at {} covers {} entries; the ledger has {}: entries #{}–#{} were deleted from it",
            last.seq,
            last.wall,
            last.size,
            have,
            have,
            last.size - 1
        ));
        for i in have..last.size {
            let Ok(Some(bytes)) = central.read(&format!("entries/{i:08}.rec")) else { continue };
            let body = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
            if let Ok(b) = serde_json::from_slice::<crate::integrity::AuditBody>(body) {
                faults.push(format!(
                    "the store still holds the deleted entry #{i}: {} {} ({}) {} → {} ({})",
                    b.wall, b.actor, b.role, b.action, b.outcome, b.status
                ));
            }
        }
    }
    for cp in checkpoints.iter().filter(|c| c.size > 0 && c.size <= have) {
        let (body, _) = &entries[cp.size as usize - 1];
        if crate::integrity::sha256(body) != cp.head {
            faults.push(format!(
                "REWRITTEN: central audit checkpoint #{} at {} says entry #{} hashes to {}; the ledger's differs",
                cp.seq,
                cp.wall,
                cp.size - 1,
                hex::encode(cp.head)
            ));
            break;
        }
    }
    faults
}
