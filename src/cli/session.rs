//! `courtbox session …`: start, stop, mark, recess and the hearing's switches, asked of the
//! running daemon over its control socket.

use super::load;
use anyhow::Result;
use clap::{Subcommand, ValueEnum};
use courtbox::control::Client;
use courtbox::integrity::Hearing;
use courtbox::session::StartRequest;
use std::path::Path;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum SessionCommand {
    /// Start recording a hearing.
    Start {
        /// Case number, e.g. "2-1234/2026".
        #[arg(long)]
        case: String,
        #[arg(long)]
        title: String,
        /// kk, ru, en or auto.
        #[arg(long, default_value = "auto")]
        language: String,
        /// open or closed.
        #[arg(long, value_parser = clap::value_parser!(Hearing), default_value = "open")]
        hearing: Hearing,
    },
    /// Stop the recording hearing and seal its chain.
    Stop,
    /// Add a timestamped note to the record.
    Mark { text: String },
    /// Pause the hearing: every device finalizes its segment and nothing is recorded until `resume`.
    Recess,
    /// Resume the hearing after a recess.
    Resume,
    /// Blank the broadcast for privacy (`on`) or let it show the hearing again (`off`); the record is never muted.
    PrivacyMute { state: Switch },
    /// Declare the hearing open or closed to the public; closing it ends any broadcast at once.
    Hearing {
        #[arg(value_parser = clap::value_parser!(Hearing))]
        hearing: Hearing,
    },
    /// Start or stop the delayed live broadcast (open hearings only; see [broadcast] in the config).
    Broadcast { action: BroadcastAction },
}

/// `on` or `off`, as typed on the command line.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

impl std::fmt::Display for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Switch::On => "on",
            Switch::Off => "off",
        })
    }
}

/// What `session broadcast` does.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BroadcastAction {
    Start,
    Stop,
}

pub fn run(command: SessionCommand, config: &Path) -> Result<ExitCode> {
    let client = Client::from_config(&load(config)?)?;
    match command {
        SessionCommand::Start { case, title, language, hearing } => {
            let info = client.start(&StartRequest { case, title, language, hearing })?;
            println!("recording session {} (media time from {})", info.session, info.started_media);
            warn_not_recording(&info.not_recording);
        }
        SessionCommand::Stop => {
            let s = client.stop()?;
            println!(
                "stopped session {} at {}: {} records ({} segments, {} gaps), sealed with a signed manifest",
                s.session, s.stopped_media, s.records, s.segments, s.gaps
            );
        }
        SessionCommand::Mark { text } => {
            let m = client.mark(&text)?;
            println!("mark recorded at {} (record #{})", m.media, m.index);
        }
        SessionCommand::Recess => {
            let m = client.recess()?;
            println!("recess from {} (record #{}); nothing is recorded until `session resume`", m.media, m.index);
        }
        SessionCommand::Resume => {
            let info = client.resume()?;
            println!("recording again from {} (run {})", info.started_media, info.run);
            warn_not_recording(&info.not_recording);
        }
        SessionCommand::PrivacyMute { state } => {
            let m = client.privacy_mute(state == Switch::On)?;
            println!("privacy mute {state} at {} (record #{}); the record itself is never muted", m.media, m.index);
        }
        SessionCommand::Hearing { hearing } => {
            let m = client.hearing(hearing)?;
            println!("the hearing is {} from {} (record #{})", hearing.as_str(), m.media, m.index);
        }
        SessionCommand::Broadcast { action: BroadcastAction::Start } => {
            let m = client.start_broadcast()?;
            println!("broadcast started at {} (record #{}); it goes out after the configured delay", m.media, m.index);
        }
        SessionCommand::Broadcast { action: BroadcastAction::Stop } => {
            let m = client.stop_broadcast()?;
            println!("broadcast stopped at {} (record #{})", m.media, m.index);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Says, on standard error, which devices record nothing and why (the others record).
fn warn_not_recording(devices: &[courtbox::session::NotRecording]) {
    for d in devices {
        eprintln!("WARNING: device {} cannot start, {} not recorded: {}", d.device, d.sources.join(", "), d.reason);
    }
}
