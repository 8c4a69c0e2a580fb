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
    /// Transcribe from the recording what a session has no captions for (recorded without
    /// a model, left behind, refused as not speech, or in a language the model recording
    /// it was not good enough for), with the model installed now. The daemon does the
    /// work; the captions are sealed as a new manifest revision naming the model.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["session", "all_missing"])))]
    Transcribe {
        /// Session id or a unique prefix.
        session: Option<String>,
        /// Every session with stretches still without captions.
        #[arg(long)]
        all_missing: bool,
        /// Only microphones in this language.
        #[arg(long, value_parser = ["kk", "ru", "en"])]
        language: Option<String>,
    },
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
        CaptionsCommand::Transcribe { session, all_missing: _, language } => {
            let r = Client::from_config(&cfg)?.transcribe(session.as_deref(), language.as_deref())?;
            println!(
                "{} interval(s) of {} session(s) queued for transcription from the recording; captions are added to the record as they are done",
                r.queued, r.sessions
            );
            if !r.left.is_empty() {
                println!("{} interval(s) left without captions:", r.left.len());
                for why in &r.left {
                    println!("  {why}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
