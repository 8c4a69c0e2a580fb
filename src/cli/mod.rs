//! The command line of `courtbox`: one module per subcommand (or per small group of related
//! ones), each with its own clap arguments and a `run`. `dispatch` only routes. To add a
//! command: a module with its arguments and `run`, a variant in `args::Command`, an arm here.

pub mod args;
mod audit;
mod captions;
mod check;
mod devices;
mod export;
mod model;
mod people;
mod provision;
mod run;
mod session;
mod sessions;
mod status;
mod store_url;
mod verify;

use anyhow::Result;
use args::{Cli, Command};
use courtbox::config::{self, LoadedConfig};
use std::path::Path;
use std::process::ExitCode;

/// Runs the command the user asked for; its exit code, or an error (exit 2 in `main`).
pub fn dispatch(cli: Cli) -> Result<ExitCode> {
    let config = cli.config.as_path();
    match cli.command {
        Command::Run => run::run_daemon(load(config)?).map(|_| ExitCode::SUCCESS),
        Command::Session { command } => session::run(command, config),
        Command::People { command } => people::run(command, config),
        Command::Status(args) => status::run(args, config),
        Command::Sessions => sessions::run(config),
        Command::Verify(args) => verify::run(args, config),
        Command::Export(args) => export::run(args, config),
        Command::Audit(args) => audit::run(args, config),
        Command::Devices(args) => devices::run(args),
        Command::Provision(args) => provision::run(args),
        Command::Check(args) => check::run(args, config),
        Command::Captions { command } => captions::run(command, config),
        Command::Model { command } => model::run(command),
        Command::Bench { what } => {
            courtbox::bench::run(what, config)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The box configuration, for the commands that cannot work without one.
fn load(path: &Path) -> Result<LoadedConfig> {
    Ok(config::load(path)?)
}
