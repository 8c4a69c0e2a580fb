//! `courtbox provision`: sets up this box (data folder, device key, configuration) and
//! registers it in central storage.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ProvisionArgs {
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
    /// Replace an existing key and configuration (the old key signs the hand-over to the new
    /// one, then is destroyed; its public half is kept).
    #[arg(long)]
    force: bool,
    /// The user the data folder, the key and the configuration are given to (needs root).
    /// Default: `courtbox` when root provisions `--root /` and that user exists; otherwise
    /// the files stay with the user who provisions.
    #[arg(long, value_name = "USER")]
    owner: Option<String>,
}

pub fn run(args: ProvisionArgs) -> Result<ExitCode> {
    let ProvisionArgs { court, room, hw_profile, store, endpoint, credentials_file, root, force, owner } = args;
    let owner = courtbox::provision::Owner::for_request(owner.as_deref(), &root, nix::unistd::geteuid().as_raw())?;
    let hw_profile =
        std::fs::canonicalize(&hw_profile).with_context(|| format!("hardware profile {}", hw_profile.display()))?;
    let p = courtbox::provision::provision(&courtbox::provision::ProvisionRequest {
        root,
        court,
        room,
        hw_profile,
        store_url: store,
        endpoint,
        credentials_file,
        force,
        owner: owner.clone(),
    })?;
    println!("device          {}", p.key_id);
    println!("key fingerprint {}", p.fingerprint);
    let owned_by = owner.map_or_else(String::new, |o| format!(", owner {}", o.name));
    println!("private key     {} (mode 0600{owned_by}, never shown)", p.data_dir.join("device.key").display());
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
