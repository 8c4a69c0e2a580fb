//! `courtbox check`: the preflight before a hearing (or only the configuration, or only the
//! GStreamer elements), one verdict a line, then READY or NOT READY.

use super::load;
use anyhow::Result;
use std::path::Path;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct CheckArgs {
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
}

pub fn run(args: CheckArgs, config: &Path) -> Result<ExitCode> {
    let CheckArgs { config_only, elements, json, seconds } = args;
    if elements {
        let findings = courtbox::provision::gstreamer_elements(None);
        return print_findings(&findings, json, "GStreamer element(s) missing");
    }
    let cfg = load(config)?;
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
    print_findings(&findings, json, "check(s) failed")
}
/// One verdict a line (or JSON), then READY or NOT READY; exit 1 if anything failed.
fn print_findings(findings: &[courtbox::upload::Finding], json: bool, failed_what: &str) -> Result<ExitCode> {
    let failed = findings.iter().filter(|f| f.level == courtbox::upload::Level::Fail).count();
    if json {
        println!("{}", serde_json::to_string_pretty(findings)?);
    } else {
        for f in findings {
            println!("{:<4}  {:<20} {}", f.level.as_str().to_uppercase(), f.item, f.message);
        }
        if failed == 0 {
            println!("READY: every check passed");
        } else {
            println!("NOT READY: {failed} {failed_what}");
        }
    }
    Ok(if failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
