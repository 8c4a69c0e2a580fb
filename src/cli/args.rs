//! The top of the command line: the global options and the list of subcommands. Each
//! subcommand's own arguments live in its module beside its `run`.

use super::{audit, captions, check, devices, export, model, people, provision, session, status, verify};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "courtbox",
    version,
    about = "Courtroom recording box: synchronized capture, sealed segments, signed hash chain"
)]
pub struct Cli {
    /// The box configuration file.
    #[arg(long, short, global = true, env = "COURTBOX_CONFIG", default_value = "/etc/courtbox/courtbox.toml")]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the daemon: record sessions and serve the control API (resumes an interrupted session).
    Run,
    /// Start, stop or mark a session on the running daemon.
    Session {
        #[command(subcommand)]
        command: session::SessionCommand,
    },
    /// Show what the daemon is doing.
    Status(status::StatusArgs),
    /// List the sessions in this box's ledger.
    Sessions,
    /// Manage the secretaries (PIN) and technicians (token) who may use the panel and the API.
    People {
        #[command(subcommand)]
        command: people::PeopleCommand,
    },
    /// Verify a session: an exported folder, or its copy in central storage
    /// (s3://bucket/prefix/court/room/SESSION or file:///folder/court/room/SESSION).
    Verify(verify::VerifyArgs),
    /// Export a session as a self-contained folder that `verify` accepts.
    Export(export::ExportArgs),
    /// List cameras and audio inputs, and print a hardware profile for them.
    Devices(devices::DevicesArgs),
    /// Set up this box: data folder, device key (0600), configuration, and its registration
    /// (public key and signed device info) in central storage.
    Provision(provision::ProvisionArgs),
    /// The preflight before a hearing: configuration, signal of every source, disk, clock,
    /// central store, speech model. Exit 1 if anything fails.
    Check(check::CheckArgs),
    /// Print the audit chain of user actions (--verify: check it; exit 1 naming each fault).
    Audit(audit::AuditArgs),
    /// Search, follow or (re)transcribe captions.
    Captions {
        #[command(subcommand)]
        command: captions::CaptionsCommand,
    },
    /// Prepare and check speech models.
    Model {
        #[command(subcommand)]
        command: model::ModelCommand,
    },
    /// Measure performance and print the numbers.
    Bench {
        #[command(subcommand)]
        what: courtbox::bench::BenchCommand,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// The spellings scripts and the integration tests type stay accepted.
    #[test]
    fn switches_keep_their_spellings() {
        for args in [
            ["session", "privacy-mute", "on"],
            ["session", "privacy-mute", "off"],
            ["session", "broadcast", "start"],
            ["session", "broadcast", "stop"],
            ["session", "hearing", "closed"],
        ] {
            assert!(Cli::try_parse_from(std::iter::once("courtbox").chain(args)).is_ok(), "{args:?}");
        }
        assert!(Cli::try_parse_from(["courtbox", "session", "privacy-mute", "maybe"]).is_err());
    }
}
