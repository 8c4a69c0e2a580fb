//! `courtbox sessions`: the sessions in this box's ledger, one a line.

use super::load;
use anyhow::Result;
use courtbox::ledger::Reader;
use std::path::Path;
use std::process::ExitCode;

pub fn run(config: &Path) -> Result<ExitCode> {
    let cfg = load(config)?;
    let reader = Reader::open(&cfg.ledger_path())?;
    println!("{:<36}  {:<9}  {:<24}  {:<16}  TITLE", "SESSION", "STATE", "STARTED", "CASE");
    for s in reader.sessions()? {
        println!("{:<36}  {:<9}  {:<24}  {:<16}  {}", s.id, s.state, s.started_wall, s.case_number, s.title);
    }
    Ok(ExitCode::SUCCESS)
}
