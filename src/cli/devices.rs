//! `courtbox devices`: the cameras and audio inputs found, and a hardware profile for them.

use anyhow::Result;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct DevicesArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Connect to a network source (rtsp://, srt://, rtmp://) and say what it sends: codec,
    /// size, frame rate, keyframe interval, bitrate. Exit 1 if nothing usable arrives.
    #[arg(long, value_name = "URL")]
    probe: Option<String>,
    /// With --probe: a file (mode 0600) holding `user:password`, or the SRT passphrase.
    #[arg(long, value_name = "FILE", requires = "probe")]
    secret_file: Option<std::path::PathBuf>,
    /// With --probe: how long to receive.
    #[arg(long, default_value_t = 5, requires = "probe")]
    seconds: u64,
    /// With --probe: the picture's codec, as the profile's `video.codec` would say.
    #[arg(long, value_enum, default_value = "h264", requires = "probe")]
    codec: courtbox::config::NetworkVideoCodec,
}

pub fn run(args: DevicesArgs) -> Result<ExitCode> {
    let DevicesArgs { json, probe, secret_file, seconds, codec } = args;
    if let Some(url) = probe {
        let probed = courtbox::provision::probe_network(
            &url,
            secret_file.as_deref(),
            std::time::Duration::from_secs(seconds.clamp(1, 60)),
            codec,
        )
        .map_err(anyhow::Error::msg)?;
        return Ok(match probed {
            courtbox::provision::Probed::Received(what) => {
                println!("{url}: {what}");
                ExitCode::SUCCESS
            }
            courtbox::provision::Probed::Failed(why) => {
                println!("{url}: {why}");
                ExitCode::FAILURE
            }
        });
    }
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
