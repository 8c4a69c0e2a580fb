//! `courtbox export`: a session as a self-contained folder that `verify` accepts, with
//! playable files beside the sealed segments.

use super::load;
use anyhow::Result;
use courtbox::integrity::PublicKey;
use courtbox::ledger::Reader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Session id (or a unique prefix of it).
    session: String,
    /// New or empty folder to write.
    dir: PathBuf,
}

pub fn run(args: ExportArgs, config: &Path) -> Result<ExitCode> {
    let ExportArgs { session, dir } = args;
    gst::init()?;
    let cfg = load(config)?;
    let reader = Reader::open(&cfg.ledger_path())?;
    let public = PublicKey::read(&cfg.public_key_path())?;
    let r = courtbox::export::export_session(&reader, &cfg.data_dir, &public, &session, &dir)?;
    println!(
        "exported {} records and {} segments ({} bytes) to {}{}",
        r.records,
        r.segments,
        r.bytes,
        dir.display(),
        if r.closed { "" } else { " (session not closed: no manifest yet)" }
    );
    for p in &r.playable {
        println!("playable: {}", p.display());
    }
    for e in &r.playable_errors {
        eprintln!("warning: no playable file for {e}");
    }
    if r.signer == public.key_id() {
        println!("verify with: courtbox verify {} --key {}", dir.display(), cfg.public_key_path().display());
    } else {
        if !r.shipped_key {
            eprintln!(
                "warning: the session was signed by key {}, which is not on this box any more: the export has no device.pub",
                r.signer
            );
        }
        println!(
            "verify with: courtbox verify {} --trusted-keys <the court's list> (signed by replaced key {})",
            dir.display(),
            r.signer
        );
    }
    Ok(ExitCode::SUCCESS)
}
