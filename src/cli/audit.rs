//! `courtbox audit`: prints the audit chain of user actions, or checks it (`--verify`),
//! optionally against the entries and checkpoints the box sent to central storage.

use super::load;
use super::store_url::open_store_url;
use anyhow::Result;
use courtbox::base::printable;
use courtbox::integrity::PublicKey;
use courtbox::ledger::Reader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct AuditArgs {
    #[arg(long)]
    verify: bool,
    /// The device public key (default: the box's own).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Compare the ledger's audit chain with the entries and checkpoints in central
    /// storage (s3://bucket/prefix/court/room or file:///folder/court/room): names entries
    /// deleted from the ledger.
    #[arg(long, requires = "verify")]
    against: Option<String>,
}

pub fn run(args: AuditArgs, config: &Path) -> Result<ExitCode> {
    let AuditArgs { verify, key, against } = args;
    let cfg = load(config)?;
    let entries = Reader::open(&cfg.ledger_path())?.audit_entries()?;
    let public = PublicKey::read(key.as_deref().unwrap_or(&cfg.public_key_path()))?;
    if !verify {
        for (body, _) in &entries {
            match serde_json::from_slice::<courtbox::integrity::AuditBody>(body) {
                // Entries carry what clients sent (names, paths): shown, never obeyed.
                Ok(b) => println!(
                    "#{:<5} {}  {:<24} {:<11} {:<45} {} ({})",
                    b.index,
                    b.wall,
                    printable(&b.actor),
                    printable(&b.role),
                    printable(&b.action),
                    b.outcome,
                    b.status
                ),
                Err(_) => println!("(undecodable entry) {}", printable(&String::from_utf8_lossy(body))),
            }
        }
    }
    let mut faults = courtbox::integrity::verify_audit(&entries, &public);
    if let Some(url) = &against {
        let compared = courtbox::witness::verify::audit_against(
            &entries,
            &public,
            &courtbox::upload::StoreFolder::new(
                open_store_url(url.trim_end_matches('/'), config)?
                    .child(&courtbox::witness::checkpoint::audit_folder(&public.key_id())),
            )?,
        );
        for n in &compared.notes {
            println!("note: {n}");
        }
        faults.extend(compared.faults);
    }
    for f in &faults {
        println!("FAIL {f}");
    }
    if faults.is_empty() {
        println!("audit chain: {} entries, every signature and link checks out", entries.len());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("audit chain NOT VERIFIED: {} fault(s)", faults.len());
        Ok(ExitCode::from(1))
    }
}
