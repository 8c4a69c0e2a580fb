//! `courtbox`: the daemon (`run`) and the command-line tools for secretaries, technicians
//! and auditors. The commands themselves live in `cli`, one module each.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::args::Cli::parse();
    courtbox::base::install_tls_provider();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    // Before any thread or library starts: what it maps from here on is held to the rule.
    match courtbox::base::mdwe::deny_write_execute_if_asked() {
        Ok(true) => tracing::info!("memory-deny-write-execute on: a writable and executable mapping was refused"),
        Ok(false) => {}
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    match cli::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
