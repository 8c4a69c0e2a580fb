//! `courtbox people …`: who may act on the box (secretaries with a PIN, technicians with a
//! token), asked of the running daemon. Secrets are never printed, except a new token once.

use super::load;
use anyhow::{Context, Result};
use clap::Subcommand;
use courtbox::auth::Role;
use courtbox::control::Client;
use std::path::Path;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum PeopleCommand {
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

pub fn run(command: PeopleCommand, config: &Path) -> Result<ExitCode> {
    let client = Client::from_config(&load(config)?)?;
    match command {
        PeopleCommand::List => {
            for p in client.people()? {
                println!("{:<11} {:<32} since {}", p.role.as_str(), p.name, p.created);
            }
        }
        PeopleCommand::Secretary { name, pin_stdin } => {
            let pin = read_pin(pin_stdin)?;
            client.put_person(&name, Role::Secretary, Some(&pin))?;
            println!("secretary {name:?} can sign in on the panel with that PIN");
        }
        PeopleCommand::Technician { name } => {
            let answer = client.put_person(&name, Role::Technician, None)?;
            println!("technician {name:?}; token (shown once, only its hash is kept):");
            println!("{}", answer.token.unwrap_or_default());
        }
        PeopleCommand::Remove { name } => {
            client.remove_person(&name)?;
            println!("removed {name:?}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A PIN from standard input (one line), or asked twice on the terminal without echo.
fn read_pin(from_stdin: bool) -> Result<String> {
    use std::io::BufRead;
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        return Ok(line.trim().to_string());
    }
    // rpassword turns echo off on the terminal itself (and back on, even on error).
    let ask = |prompt: &str| -> Result<String> {
        let pin =
            rpassword::prompt_password(prompt).context("asking for the PIN on the terminal (or use --pin-stdin)")?;
        Ok(pin.trim().to_string())
    };
    let pin = ask("PIN (6 to 12 digits): ")?;
    if ask("the same PIN again: ")? != pin {
        anyhow::bail!("the two PINs differ; nothing changed");
    }
    Ok(pin)
}
