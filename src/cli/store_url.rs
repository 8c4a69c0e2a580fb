//! Store URLs given on the command line (s3://… or file://…), for `verify` and `audit`.

use anyhow::{Context, Result, bail};
use courtbox::config;
use std::path::Path;

/// Opens a store URL given on the command line, with S3 settings from the configuration
/// when it can be read (a box) or from the environment (an auditor's machine).
pub fn open_store_url(url: &str, config: &Path) -> Result<courtbox::upload::Store> {
    use courtbox::upload::{S3Settings, Store};
    if let Some(folder) = url.strip_prefix("file://") {
        // Rooted at `/`, so that the session's parent (where `devices/` is) is reachable.
        let abs = std::fs::canonicalize(folder).with_context(|| format!("{folder}: no such session folder"))?;
        let relative = abs.strip_prefix("/").unwrap_or(&abs).to_string_lossy().to_string();
        return Ok(Store::open("/", &S3Settings::default(), &relative)?);
    }
    if courtbox::upload::parse_s3_url(url).is_none() {
        bail!("{url}: give s3://bucket/prefix/court/room/SESSION, file:///folder/court/room/SESSION or a folder");
    }
    let s3 = match config::load(config) {
        Ok(cfg) => courtbox::upload::store_settings(&cfg)?.1,
        Err(_) => S3Settings::from_env(None),
    };
    Ok(Store::open(url, &s3, "")?)
}
