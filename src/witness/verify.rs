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

/// `record #3` or `records #3–#7`.
fn span(what: &str, from: u64, to: u64) -> String {
    if from == to { format!("{what} #{from}") } else { format!("{what}s #{from}–#{to}") }
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
        let note = match folder.read_doc(file, crate::integrity::MAX_RECORD_BYTES) {
            Ok(Some(b)) => b,
            Ok(None) => continue,
            Err(e) => {
                fault(report, format!("{file} {where_}: {e}"));
                continue;
            }
        };
        let cp = match Checkpoint::open(&note, key) {
            Ok(cp) => cp,
            Err(e) => {
                fault(report, format!("{file} {where_}: {e}"));
                continue;
            }
        };
        if cp.log != Log::Session(session) {
            fault(report, format!("{file} {where_} is a checkpoint of {}, not of this session", cp.log.origin()));
            continue;
        }
        if *file != checkpoint::checkpoint_file(cp.seq, checkpoint::NOTE) {
            fault(report, format!("{file} {where_} holds checkpoint #{}: checkpoints were renamed", cp.seq));
            continue;
        }
        let token_file = checkpoint::checkpoint_file(cp.seq, checkpoint::TOKEN);
        let mut attested = None;
        if let Ok(Some(token)) = folder.read_doc(&token_file, crate::integrity::MAX_RECORD_BYTES) {
            match options.tsa {
                None => unchecked_tokens += 1,
                Some(pin) => match super::tsa::verify_token(&token, &note, pin) {
                    Ok(time) => attested = Some(time),
                    Err(e) => fault(report, format!("{token_file} {where_}: timestamp token refused: {e}")),
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
/// naming the checkpoint that catches it. Returns whether they all agree.
fn compare(witnessed: &[Witnessed], chain: &[Option<[u8; 32]>], where_: &str, report: &mut Report) -> bool {
    let largest = witnessed.iter().map(|w| &w.checkpoint).max_by_key(|c| (c.size, c.seq));
    let rewritten: Vec<&Checkpoint> = witnessed
        .iter()
        .map(|w| &w.checkpoint)
        .filter(|c| c.size > 0 && (c.size as usize) <= chain.len())
        .filter(|c| chain[c.size as usize - 1].is_some_and(|h| h != c.head))
        .collect();
    let mut agree = true;
    if let Some(last) = largest.filter(|c| c.size as usize > chain.len()) {
        agree = false;
        let n = last.size - chain.len() as u64;
        let missing = format!(
            "{} {} missing",
            span("record", chain.len() as u64, last.size - 1),
            if n == 1 { "is" } else { "are" }
        );
        fault(
            report,
            format!(
                "TRUNCATED: {where_} checkpoint #{} at {} covers {} records; this copy ends at {} ({missing})",
                last.seq,
                last.wall,
                last.size,
                chain.len()
            ),
        );
    }
    if let Some(first) = rewritten.first() {
        agree = false;
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
    agree
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
    let local = read_checkpoints(folder, files, options, key, session, "in the folder", report);
    let local_agree = compare(&local, chain, "the folder's", report);
    let mut all = local;
    if let Some(central) = options.against {
        match central.list() {
            Err(e) => fault(report, format!("cannot list the central copy {}: {e}", central.describe())),
            Ok(central_files) => {
                let witnessed =
                    read_checkpoints(central, &central_files, options, key, session, "in the store", report);
                compare_central(&witnessed, chain, central, session, report);
                all.extend(witnessed);
            }
        }
    } else if !all.is_empty() && local_agree {
        let largest = all.iter().map(|w| w.checkpoint.size).max().unwrap_or(0);
        report.witness.push(format!(
            "{} checkpoint(s) in the folder agree with the chain up to record #{}; compare with the store's \
             (--against) to rule out a copy cut or rewritten with the device key",
            all.len(),
            largest.saturating_sub(1)
        ));
    }
    attested_times(&all, options, key, report);
}

/// The store's checkpoints against the chain: a session it never heard of, a copy cut or
/// rewritten, and records no central checkpoint covers yet (the chain is then not known to be
/// complete: they were not uploaded yet, or were made after the store was cut off).
fn compare_central(
    witnessed: &[Witnessed],
    chain: &[Option<[u8; 32]>],
    central: &dyn SessionFolder,
    session: Uuid,
    report: &mut Report,
) {
    if witnessed.is_empty() {
        fault(
            report,
            format!(
                "MISSING: the central store ({}) holds no checkpoint of session {session}: it was never told of this \
                 session, or this is not the session the box recorded",
                central.describe()
            ),
        );
        return;
    }
    compare(witnessed, chain, "central", report);
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
        report.open.push(crate::integrity::Open::Unwitnessed(format!(
            "{} in no central checkpoint (not uploaded yet, or made after the store was cut off: only the device \
             key vouches for it)",
            span("record", largest, chain.len() as u64 - 1)
        )));
    }
}

fn attested_times(all: &[Witnessed], options: &VerifyOptions, key: &PublicKey, report: &mut Report) {
    let stamped: Vec<(&Checkpoint, WallTime)> =
        all.iter().filter_map(|w| w.attested.map(|t| (&w.checkpoint, t))).collect();
    // The trust list's interval, judged by the TSA's clock rather than the key's own.
    if let crate::integrity::TrustAnchor::List(list) = &options.anchor
        && let Some(entry) = list.by_key_id(&key.key_id())
    {
        let tolerance = options.clock_tolerance_s as i128 * 1_000_000_000;
        let outside = stamped.iter().find(|(_, t)| {
            entry.valid_until.is_some_and(|u| t.since(u) > tolerance)
                || entry.valid_from.is_some_and(|f| f.since(*t) > tolerance)
        });
        if let Some((c, t)) = outside {
            report.faults.push(Fault {
                kind: FaultKind::Key,
                message: format!(
                    "checkpoint #{} was stamped at {t} (TSA), outside key {}'s validity ({}): signed when the court no longer trusted that key",
                    c.seq,
                    key.key_id(),
                    entry.describe_interval()
                ),
            });
        } else if stamped.is_empty() && entry.valid_until.is_some() {
            report.notes.push(format!(
                "key {} was replaced at {}: without timestamp tokens its validity is judged by the box's own clock",
                key.key_id(),
                entry.valid_until.map(|u| u.to_string()).unwrap_or_default()
            ));
        }
    }
    let (Some(first), Some(last), Some(pin)) =
        (stamped.iter().min_by_key(|s| s.1), stamped.iter().max_by_key(|s| (s.0.size, s.1)), options.tsa)
    else {
        return;
    };
    report.witness.push(format!(
        "attested by TSA {}: record #{} existed by {} and record #{} by {} (a token bounds when a record was \
         made from above only; the box clock says when it began)",
        pin.name(),
        first.0.size.saturating_sub(1),
        first.1,
        last.0.size.saturating_sub(1),
        last.1
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

/// What the store's audit checkpoints say of the ledger's audit chain.
#[derive(Debug, Default)]
pub struct AuditComparison {
    pub faults: Vec<String>,
    pub notes: Vec<String>,
}

/// Compares the ledger's audit chain with the audit checkpoints (and entries) the box sent to
/// central storage: the store still knows of entries deleted from the ledger since.
pub fn audit_against(
    entries: &[crate::integrity::SignedEntry],
    key: &PublicKey,
    central: &dyn SessionFolder,
) -> AuditComparison {
    let mut faults = Vec::new();
    let files = match central.list() {
        Ok(f) => f,
        Err(e) => {
            return AuditComparison { faults: vec![format!("cannot list {}: {e}", central.describe())], notes: vec![] };
        }
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
        return AuditComparison { faults, notes: vec![] };
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
            let entry = format!("entries/{i:08}.rec");
            let Ok(Some(bytes)) = central.read_doc(&entry, crate::integrity::MAX_RECORD_BYTES) else { continue };
            // Only what the device key signed is quoted.
            let Ok(doc) = crate::integrity::SignedDoc::parse(&bytes) else { continue };
            if let Ok(b) = doc.open::<crate::integrity::AuditBody>(key, crate::integrity::Context::AuditEntry) {
                faults.push(format!(
                    "the store still holds the deleted entry #{i}, signed by the device: {} {} ({}) {} → {} ({})",
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
    let mut notes = Vec::new();
    if have > last.size {
        notes.push(format!(
            "{} in no central checkpoint yet (not uploaded yet, or written while the store was cut off)",
            span("entry", last.size, have - 1).replace("entrys", "entries")
        ));
    }
    AuditComparison { faults, notes }
}
