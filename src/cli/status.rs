//! `courtbox status`: what the daemon is doing, as the daemon's JSON document (`--json`) or
//! one line per part: session, broadcast, upload and disk, witness.

use super::load;
use anyhow::Result;
use courtbox::broadcast::BroadcastStatus;
use courtbox::capture::DeviceState;
use courtbox::control::{CaptionsReport, Client, StatusReport};
use courtbox::upload::StorageStatus;
use courtbox::witness::WitnessStatus;
use courtbox::witness::service::TsaState;
use std::path::Path;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: StatusArgs, config: &Path) -> Result<ExitCode> {
    let client = Client::from_config(&load(config)?)?;
    if args.json {
        // The daemon's own document, passed through: every field, as the API names it.
        println!("{}", serde_json::to_string_pretty(&client.status_document()?)?);
    } else {
        print_status(&client.status()?);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(status: &StatusReport) {
    print_session_status(status);
    print_broadcast_status(&status.broadcast);
    if let Some(storage) = &status.storage {
        print_storage_status(storage);
    }
    if let Some(witness) = &status.witness {
        print_witness_status(witness);
    }
}

fn print_witness_status(w: &WitnessStatus) {
    let last = w.last_checkpoint_wall.as_deref().unwrap_or("none yet");
    let tsa = match &w.tsa {
        TsaState::Answering => format!(
            "TSA answering ({} stamped{})",
            w.stamped,
            w.last_stamp_delay_s.map(|d| format!(", last {d:.1} s after signing")).unwrap_or_default()
        ),
        TsaState::Unreachable { since, error } => {
            format!("TSA UNREACHABLE since {since} ({} checkpoints wait to be stamped): {error}", w.unstamped)
        }
        TsaState::Refusing { since, error } => format!(
            "TSA TOKENS REFUSED since {since} ({} checkpoints wait): {error}; check [witness] tsa_cert and tsa_ca",
            w.unstamped
        ),
        TsaState::NotYetAsked => "TSA configured, not asked yet".to_string(),
        TsaState::Misconfigured { error } => {
            format!("TSA NOT USED: its pinned certificate cannot be read ({error}); fix [witness] and restart")
        }
        TsaState::NotConfigured => "no TSA configured".to_string(),
    };
    println!("WITNESS last checkpoint {last}; {tsa}");
}

fn print_broadcast_status(b: &BroadcastStatus) {
    if !b.configured {
        return;
    }
    if !b.live {
        println!("BROADCAST off");
        return;
    }
    println!(
        "BROADCAST on, {} s behind{}, camera {}",
        b.delay_seconds,
        if b.muted { ", PRIVACY MUTED (slate)" } else { "" },
        b.camera.as_deref().unwrap_or("-")
    );
    for o in &b.outputs {
        println!(
            "  {:<12} {:<5} {:<10} since {}  {} attempt(s), {:.1} MiB sent{}",
            o.name,
            wire_name(&o.kind),
            wire_name(&o.state),
            o.since,
            o.attempts,
            mib(o.sent_bytes),
            o.last_error.as_deref().map(|e| format!("; last error: {e}")).unwrap_or_default()
        );
    }
}

fn print_storage_status(st: &StorageStatus) {
    let (b, u) = (&st.backlog, &st.uploader);
    let age = st.oldest_age_s.map(|a| format!(", oldest waiting {a} s")).unwrap_or_default();
    println!(
        "UPLOAD to {}: {} ({} objects, {:.1} MiB waiting{age}; {} uploaded, {} conflicts)",
        st.store,
        wire_name(&u.state),
        b.objects,
        mib(b.bytes),
        b.uploaded_objects,
        b.conflicts
    );
    if let Some(e) = &u.error {
        println!("  failing since {}: {e}", u.error_since.as_deref().unwrap_or("?"));
    }
    if let Some(d) = &st.disk {
        println!(
            "DISK {}: {:.0} MiB free of {:.0} MiB; {} uploaded segments removed locally{}",
            wire_name(&d.level),
            mib(d.free_bytes),
            mib(d.total_bytes),
            d.evicted_files,
            if d.video_paused { "; CAMERAS PAUSED" } else { "" }
        );
    }
    for a in &st.alarms {
        println!("ALARM {} since {}: {}", a.kind, a.raised_wall, a.message);
    }
}

fn print_session_status(status: &StatusReport) {
    let Some(s) = &status.session else {
        println!("STOPPED: no session is recording");
        return;
    };
    println!(
        "RECORDING {}  session {}  case {}  \"{}\"  ({}, {} hearing)",
        s.media_now, s.id, s.case, s.title, s.language, s.hearing
    );
    println!(
        "  {} segments committed, {} bytes, {} gaps{}",
        s.stats.segments,
        s.stats.bytes,
        s.stats.gaps,
        s.stats.last_error.as_deref().map(|e| format!("; last error: {e}")).unwrap_or_default()
    );
    let (state, reason, finals, backlog) = match &status.captions {
        CaptionsReport::Running(c) => (c.state.as_str(), c.reason.as_deref(), c.finals, c.backlog),
        CaptionsReport::Disabled(off) => (off.state.as_str(), Some(off.reason.as_str()), 0, 0),
    };
    let reason = reason.map(|r| format!(": {r}")).unwrap_or_default();
    println!("  captions {state}{reason}; {finals} finals, {backlog} interval(s) waiting to be transcribed");
    for h in &s.health {
        if let Some(alarm) = &h.alarm {
            println!("  ALARM {}: {alarm}", h.source);
        }
    }
    for d in &s.devices {
        let (name, error) = (&d.name, d.last_error.as_deref().unwrap_or(""));
        match d.state {
            // Not a restart loop: a fault that only an install or a configuration change cures.
            DeviceState::CannotStart => println!("  device {name:<10} cannot start: {error}"),
            state => println!("  device {name:<10} {:<10} restarts {}  {error}", wire_name(&state), d.restarts),
        }
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// An enum's name as the API spells it (its serde name), so the text says what `--json` says.
fn wire_name(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| "?".into())
}
