//! `courtbox devices`: the cameras and audio inputs found, and a hardware profile for them.

use anyhow::Result;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct DevicesArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: DevicesArgs) -> Result<ExitCode> {
    let DevicesArgs { json } = args;
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
