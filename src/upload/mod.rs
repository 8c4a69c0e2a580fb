//! Central storage, store and forward: every committed object (segments, records,
//! manifests, the device key) is queued in the ledger at its commit point and uploaded
//! from there, written once under `{court}/{room}/…`, its SHA-256 checked end to end,
//! retried forever. Local spool files are deleted only after the store acknowledged their
//! exact bytes (see `retention`).

mod deliver;
mod folder;
mod retention;
pub mod s3admin;
mod service;
mod store;

pub use deliver::{Delivered, Failure, deliver, digest_object};
pub use folder::StoreFolder;
pub use retention::{
    DiskLevel, DiskSettings, DiskState, DiskWatch, PauseVideo, choose_evictions, free_space, level_for,
};
pub use service::{Uploader, UploaderSettings, UploaderState};
pub use store::{Credentials, S3Settings, Store, parse_s3_url};

use crate::base::Clocks;
use crate::config::LoadedConfig;
use crate::ledger::{Alarm, Ledger, UploadBacklog};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum UploadError {
    #[error("store credentials {path}: {message}")]
    Credentials { path: PathBuf, message: String },
    #[error("cannot open the store {url}: {message}")]
    Open { url: String, message: String },
    #[error("{0}")]
    Request(String),
}

/// The store settings of a configuration: the URL and how to reach it.
pub fn store_settings(cfg: &LoadedConfig) -> Result<(String, S3Settings), UploadError> {
    let store = &cfg.config.store;
    let url = match &store.url {
        Some(u) if u.starts_with("s3://") => u.clone(),
        Some(dir) => crate::base::resolve(&cfg.base_dir, std::path::Path::new(dir)).display().to_string(),
        None => cfg.data_dir.join("central").display().to_string(),
    };
    let credentials = match &store.credentials_file {
        Some(f) => Some(Credentials::read(&crate::base::resolve(&cfg.base_dir, f))?),
        None => Credentials::from_env(),
    };
    Ok((
        url,
        S3Settings {
            endpoint: store.endpoint.clone(),
            region: store.region.clone(),
            path_style: store.path_style,
            credentials,
        },
    ))
}

/// Opens this box's store, rooted at `{prefix}/{court}/{room}`.
pub fn open_store(cfg: &LoadedConfig) -> Result<Store, UploadError> {
    let (url, s3) = store_settings(cfg)?;
    Store::open(&url, &s3, &format!("{}/{}", cfg.config.court, cfg.config.room))
}

/// Everything status shows about central storage and the local disk.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct StorageStatus {
    pub store: String,
    pub uploader: UploaderState,
    pub backlog: UploadBacklog,
    /// Seconds since the oldest object still waiting was committed.
    pub oldest_age_s: Option<i64>,
    pub disk: Option<DiskState>,
    pub alarms: Vec<Alarm>,
}

/// The uploader and the disk watch of a running daemon.
pub struct Storage {
    store_url: String,
    uploader: Option<Uploader>,
    disk: DiskWatch,
    ledger: Arc<Ledger>,
    clocks: Arc<dyn Clocks>,
}

impl Storage {
    pub fn start(
        cfg: &LoadedConfig,
        ledger: Arc<Ledger>,
        clocks: Arc<dyn Clocks>,
        pause_video: PauseVideo,
    ) -> Result<Storage, UploadError> {
        let c = &cfg.config;
        let mut store_url = "disabled".to_string();
        let uploader = if c.store.enabled {
            let store = open_store(cfg)?;
            store_url = store.url.clone();
            Some(Uploader::start(
                store,
                ledger.clone(),
                clocks.clone(),
                UploaderSettings {
                    data_dir: cfg.data_dir.clone(),
                    concurrency: c.store.concurrency as usize,
                    multipart_threshold: u64::from(c.store.multipart_threshold_mib) << 20,
                    retry_initial: Duration::from_millis(c.store.retry_initial_ms.into()),
                    retry_max: Duration::from_millis(c.store.retry_max_ms.into()),
                },
            ))
        } else {
            tracing::warn!("central storage is disabled (store.enabled = false): nothing leaves this box");
            None
        };
        let disk = DiskWatch::start(
            DiskSettings {
                data_dir: cfg.data_dir.clone(),
                keep_uploaded: Duration::from_secs(u64::from(c.disk.keep_uploaded_hours) * 3600),
                warn_free: c.disk.warn_free_mib << 20,
                critical_free: c.disk.critical_free_mib << 20,
                interval: Duration::from_millis(c.disk.check_interval_ms.into()),
            },
            ledger.clone(),
            clocks.clone(),
            pause_video,
        );
        Ok(Storage { store_url, uploader, disk, ledger, clocks })
    }

    /// A segment could not be written for lack of space (see [`DiskWatch::disk_full`]).
    pub fn disk_full(&self, why: String) {
        self.disk.disk_full(why);
    }

    pub fn status(&self) -> Result<StorageStatus, crate::ledger::LedgerError> {
        let reader = self.ledger.reader()?;
        let backlog = reader.upload_backlog()?;
        let now = self.clocks.wall();
        let oldest_age_s = backlog
            .oldest_wall
            .as_deref()
            .and_then(|w| crate::base::WallTime::parse(w).ok())
            .map(|w| (now.since(w) / 1_000_000_000) as i64);
        Ok(StorageStatus {
            store: self.store_url.clone(),
            uploader: self.uploader.as_ref().map(Uploader::state).unwrap_or_default(),
            backlog,
            oldest_age_s,
            disk: Some(self.disk.state()),
            alarms: reader.open_alarms()?,
        })
    }

    pub fn shutdown(&self) {
        if let Some(u) = &self.uploader {
            u.shutdown();
        }
        self.disk.shutdown();
    }
}

/// The verdict of one preflight line; serialized as `ok`, `warn` or `fail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    /// Works, but something a technician should know (the record is not at risk).
    Warn,
    /// The box is not ready: `check` exits 1.
    Fail,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One line of a preflight check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub item: String,
    pub level: Level,
    pub message: String,
}

impl Finding {
    pub fn new(item: &str, level: Level, message: String) -> Finding {
        Finding { item: item.to_string(), level, message }
    }
}

/// Preflight of central storage: reachable and writable with these credentials, and
/// whether the bucket enforces Object Lock (without it an administrator could delete the
/// record).
pub fn check_store(cfg: &LoadedConfig) -> Vec<Finding> {
    const STORE: &str = "central store";
    const LOCK: &str = "object lock";
    if !cfg.config.store.enabled {
        return vec![Finding::new(
            STORE,
            Level::Warn,
            "disabled (store.enabled = false): nothing leaves this box".into(),
        )];
    }
    let (url, s3) = match store_settings(cfg) {
        Ok(s) => s,
        Err(e) => return vec![Finding::new(STORE, Level::Fail, e.to_string())],
    };
    let store = match open_store(cfg) {
        Ok(s) => s,
        Err(e) => return vec![Finding::new(STORE, Level::Fail, e.to_string())],
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return vec![Finding::new(STORE, Level::Fail, format!("cannot start a runtime: {e}"))],
    };
    // A small object under this box's prefix proves reach, credentials and write access.
    let probe = store.key("preflight/last-check.txt");
    let body = format!("courtbox check at {}\n", crate::base::RealClocks::new().wall());
    let written = runtime.block_on(async {
        use object_store::ObjectStoreExt;
        store.inner.put(&probe, body.into_bytes().into()).await
    });
    let mut findings = vec![match written {
        Ok(_) => Finding::new(STORE, Level::Ok, format!("{} reachable and writable", store.url)),
        Err(e) => Finding::new(STORE, Level::Fail, deliver::describe(&store, &e)),
    }];
    findings.push(match parse_s3_url(&url) {
        Some((bucket, _)) => match s3admin::object_lock(&s3, &bucket) {
            Ok(lock @ s3admin::ObjectLock::Enabled { mode: Some(_), days: Some(_) }) => {
                Finding::new(LOCK, Level::Ok, format!("bucket {bucket}: {lock}"))
            }
            Ok(lock) => Finding::new(LOCK, Level::Warn, format!("bucket {bucket}: {lock}")),
            Err(e) => {
                Finding::new(LOCK, Level::Warn, format!("bucket {bucket}: cannot tell whether Object Lock is on: {e}"))
            }
        },
        None => Finding::new(
            LOCK,
            Level::Warn,
            format!(
                "{url} is a local folder: no Object Lock; use an S3 bucket with Object Lock for the judicial record"
            ),
        ),
    });
    findings
}
