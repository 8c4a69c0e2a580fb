//! `courtbox captions …`: search the ledger's captions, follow the live ones, or ask the
//! daemon to transcribe what a session is missing.

use super::load;
use anyhow::Result;
use clap::Subcommand;
use courtbox::control::Client;
use courtbox::ledger::Reader;
use courtbox::stt::CaptionKind;
use std::path::Path;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum CaptionsCommand {
    /// Find captions containing all these words (any session).
    Search {
        words: String,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print live captions as they are produced (Ctrl-C to stop).
    Follow,
    /// Transcribe what a session is missing (recorded without a model, or left behind),
    /// from its recording. The daemon does the work.
    Transcribe { session: String },
}

pub fn run(command: CaptionsCommand, config: &Path) -> Result<ExitCode> {
    let cfg = load(config)?;
    match command {
        CaptionsCommand::Search { words, limit, json } => {
            let hits = Reader::open(&cfg.ledger_path())?.search_captions(&words, limit)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&hits)?);
            } else {
                for h in &hits {
                    let who = h.role.as_deref().unwrap_or(&h.source);
                    println!("{}  {:<11} {}  {}", h.session, who, courtbox::base::MediaTime(h.media_start_ns), h.text);
                }
                if hits.is_empty() {
                    eprintln!("no caption contains all of: {words}");
                }
            }
        }
        CaptionsCommand::Follow => {
            Client::from_config(&cfg)?.follow_captions(|c| {
                let who = c.role.map_or(c.source.as_str(), |r| r.as_str());
                let mark = match c.kind {
                    CaptionKind::Partial => "…",
                    CaptionKind::Final if c.delayed => "(delayed)",
                    CaptionKind::Final => "",
                };
                println!("[{} {who}] {} {mark}", c.media_start, c.text);
            })?;
        }
        CaptionsCommand::Transcribe { session } => {
            let r = Client::from_config(&cfg)?.transcribe(&session)?;
            println!(
                "{} interval(s) queued for transcription from the recording; captions are added to the record as they are done",
                r.queued
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
