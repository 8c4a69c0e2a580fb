//! `courtbox verify`: checks a session (an exported folder or its central copy) against the
//! anchor that vouches for its device key, optionally against the checkpoints the box sent
//! to central storage and the pinned TSA; the verdict is the exit code. Where the folder or
//! URL sits is checked against the chain's court, room and session.

use super::store_url::open_store_url;
use anyhow::{Context, Result, bail};
use courtbox::config::{self, LoadedConfig};
use courtbox::integrity::PublicKey;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct VerifyArgs {
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
    /// Refuse a folder holding anything that is not part of the record (derived files such
    /// as playable/ and the caption files, README.txt, media no record names): NOT VERIFIED
    /// instead of a list. For a copy that should be exactly the record, as central storage.
    #[arg(long)]
    strict: bool,
    /// Compare with the checkpoints the box sent to central storage while it recorded:
    /// s3://bucket/prefix/court/room or file:///folder/court/room. Names a copy cut short,
    /// rewritten, or unknown to the store.
    #[arg(long)]
    against: Option<String>,
    #[command(flatten)]
    tsa: TsaArgs,
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

pub fn run(args: VerifyArgs, config: &Path) -> Result<ExitCode> {
    let VerifyArgs { path, trust, allow_open, strict, against, tsa } = args;
    use courtbox::integrity::Placement;
    let (folder, placement): (Box<dyn courtbox::integrity::SessionFolder>, Placement) = if path.contains("://") {
        // A file:// URL is checked as the folder it really is (`..` and links resolved).
        let placement = match path.strip_prefix("file://").and_then(|p| std::fs::canonicalize(p).ok()) {
            Some(real) => Placement::of_url(&format!("file://{}", real.display())),
            None => Placement::of_url(&path),
        };
        (Box::new(courtbox::upload::StoreFolder::new(open_store_url(&path, config)?)?), placement)
    } else {
        let path = PathBuf::from(path);
        if !path.is_dir() {
            bail!("{} is not a folder", path.display());
        }
        let placement = Placement::of_folder(&path);
        (Box::new(courtbox::integrity::LocalFolder(path)), placement)
    };
    let central = match &against {
        Some(url) => Some(central_session(url, folder.as_ref(), config)?),
        None => None,
    };
    let cfg = config::load(config).ok();
    let pin = tsa_pin(&tsa, cfg.as_ref())?;
    let options = courtbox::integrity::VerifyOptions {
        anchor: trust.anchor()?,
        allow_open,
        against: central.as_ref().map(|c| c as &dyn courtbox::integrity::SessionFolder),
        tsa: pin.as_ref(),
        clock_tolerance_s: tsa
            .clock_tolerance
            .unwrap_or_else(|| cfg.as_ref().map_or(5, |c| u64::from(c.config.witness.clock_tolerance_seconds))),
        placement,
        strict,
    };
    let report = courtbox::integrity::verify(folder.as_ref(), &options);
    print!("{report}");
    Ok(ExitCode::from(report.verdict().exit_code()))
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
            let first = folder
                .read_doc(&courtbox::integrity::layout::record_file(0), courtbox::integrity::MAX_RECORD_BYTES)?
                .unwrap_or_default();
            let body = first.split(|b| *b == b'\n').next().unwrap_or_default();
            let session = serde_json::from_slice::<NamesSession>(body)
                .map(|record| record.session)
                .ok()
                .context("--against: the folder has no readable record #0 naming its session")?;
            (url, session.to_string())
        }
    };
    // The room's folder must exist; the session's need not (that is the "missing" case).
    Ok(courtbox::upload::StoreFolder::new(open_store_url(url, config)?.child(&session))?)
}

/// What `central_session` reads of record #0: the session it belongs to.
#[derive(serde::Deserialize)]
struct NamesSession {
    session: uuid::Uuid,
}
