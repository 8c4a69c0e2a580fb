//! `courtbox run`: the daemon. Opens the ledger with the device key, starts the recorder,
//! central storage, the witness and captions, serves the control API until SIGTERM or
//! Ctrl-C, then finalizes everything in order.

use anyhow::{Context, Result, bail};
use courtbox::base::{Clocks, RealClocks};
use courtbox::config::LoadedConfig;
use courtbox::control::{self, ApiState};
use courtbox::integrity::DeviceKey;
use courtbox::ledger::Ledger;
use courtbox::session::Recorder;
use courtbox::stt::{Stt, SttSettings};
use courtbox::upload::Storage;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub fn run_daemon(cfg: LoadedConfig) -> Result<()> {
    gst::init().context("initializing GStreamer")?;
    let cfg = Arc::new(cfg);
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
    // Best effort: the folder above may be the system's, read-only to the service.
    if let Some(parent) = cfg.data_dir.parent() {
        let _ = courtbox::base::sync_dir(parent);
    }
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
    // Rewritten when missing or not this key's (a power cut can leave an empty file).
    let pem = public.to_pem();
    if std::fs::read_to_string(cfg.public_key_path()).ok().as_deref() != Some(pem.as_str()) {
        courtbox::base::write_durably(&cfg.public_key_path(), pem.as_bytes()).context("writing the public key")?;
    }
    let ledger = Arc::new(Ledger::open(&cfg.ledger_path(), Arc::new(key), clocks.clone())?);
    let stt = cfg.config.stt.enabled.then(|| {
        let mics = cfg.profile.voices().len();
        Arc::new(Stt::start(SttSettings::from_config(&cfg), ledger.clone(), cfg.data_dir.clone(), clocks.clone(), mics))
    });
    let recorder = Arc::new(Recorder::new(cfg.clone(), ledger.clone(), clocks.clone(), stt.clone()));
    // A segment refused for lack of space is news for the disk watch, which starts below
    // (after recovery, which may already record).
    let disk_watch: Arc<std::sync::OnceLock<Arc<Storage>>> = Arc::default();
    let told = disk_watch.clone();
    recorder.on_disk_full(Arc::new(move |why| match told.get() {
        Some(storage) => storage.disk_full(why),
        None => tracing::error!(%why, "a segment could not be written for lack of space"),
    }));
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

    let _ = disk_watch.set(storage.clone());
    let witness = courtbox::witness::Witness::start(witness_settings(&cfg), ledger.clone(), clocks.clone());

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let auth = Arc::new(courtbox::auth::Auth::new(
        ledger.clone(),
        courtbox::auth::AuthSettings::from_config(&cfg.config.api),
        clocks.clone(),
    )?);
    let witness = Arc::new(witness);
    let state = ApiState::new(cfg.clone(), recorder.clone(), ledger.clone(), stt.clone(), auth)
        .with_storage(storage.clone())
        .with_witness(witness.clone());
    let served = runtime.block_on(async {
        tracing::info!(key_id = %public.key_id(), data = %cfg.data_dir.display(), socket = %cfg.socket_path().display(), "courtbox starting");
        let ready = format!("ready; API and panel on {}", cfg.config.api.listen);
        let (watched, watched_ledger, watch_clocks) = (recorder.clone(), ledger.clone(), clocks.clone());
        let segment = std::time::Duration::from_nanos(cfg.segment_nanos());
        // READY before the first watchdog ping: systemd (and an operator reading the
        // journal) should see the daemon ready before it is reported alive.
        // The one shutdown signal: SIGTERM or Ctrl-C cancels it, the API stops taking
        // requests, and the services below are then shut down in order.
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        tokio::spawn(cancel_on_ledger_failure(ledger.failure().token(), shutdown.clone()));
        control::serve(&cfg, state, shutdown, move || {
            courtbox::sysd::ready(&ready);
            courtbox::sysd::start_watchdog(watched, watched_ledger, segment, watch_clocks);
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
    if let Some(reason) = ledger.failure().reason() {
        // Not a clean stop: systemd (`Restart=always`) starts the daemon again, and its
        // recovery reads what is really on the disk.
        bail!("stopped because the ledger's storage failed ({reason}); restart the daemon to recover");
    }
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

/// Stops the daemon when the ledger's storage fails: a record that cannot be committed
/// safely is not recorded on. What is in the spool is committed by the next start.
async fn cancel_on_ledger_failure(failed: CancellationToken, shutdown: CancellationToken) {
    failed.cancelled().await;
    courtbox::sysd::status("STOPPED: the ledger's storage failed; restarting through recovery (check the data disk)");
    tracing::error!("stopping: the ledger's storage failed; the daemon exits so that it restarts through recovery");
    shutdown.cancel();
}

/// Cancels `shutdown` at SIGTERM or Ctrl-C.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping");
    shutdown.cancel();
}
