//! `courtbox bench`: performance figures printed as numbers, not asserted in tests.
use clap::Subcommand;
use std::path::Path;

#[derive(Subcommand)]
pub enum BenchCommand {}

pub fn run(what: BenchCommand, _config: &Path) -> anyhow::Result<()> {
    match what {}
}
