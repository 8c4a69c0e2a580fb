//! A session folder in central storage, read for `verify` exactly like a local export. The
//! device public key is not in the session folder there but under `devices/` beside it.

use super::deliver::digest_object;
use super::store::Store;
use crate::integrity::{SessionFolder, layout};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;

pub struct StoreFolder {
    /// Rooted at the session: `{prefix}/{court}/{room}/{session}`.
    session: Store,
    /// Rooted at `{prefix}/{court}/{room}`, where `devices/` is.
    room: Store,
    runtime: tokio::runtime::Runtime,
    /// `devices/{id}.pub`, found once from the first chain record.
    device_key: std::sync::OnceLock<Option<String>>,
}

impl StoreFolder {
    /// `store` is rooted at a session folder.
    pub fn new(session: Store) -> std::io::Result<StoreFolder> {
        let parent = session.root.as_ref().rsplit_once('/').map(|(p, _)| p.to_string()).unwrap_or_default();
        let mut room = session.clone();
        room.root = object_store::path::Path::from(parent);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(StoreFolder { session, room, runtime, device_key: std::sync::OnceLock::new() })
    }

    fn device_key_object(&self) -> std::io::Result<Option<String>> {
        if let Some(found) = self.device_key.get() {
            return Ok(found.clone());
        }
        let Some(first) = self.read(&layout::record_file(0))? else { return Ok(None) };
        let body = first.split(|b| *b == b'\n').next().unwrap_or_default();
        let device = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("device").and_then(|d| d.as_str()).map(str::to_string));
        let found =
            device.filter(|d| crate::base::is_valid_name(&d.to_ascii_lowercase())).map(|d| format!("devices/{d}.pub"));
        Ok(self.device_key.get_or_init(|| found).clone())
    }

    fn get(&self, store: &Store, relative: &str) -> std::io::Result<Option<Vec<u8>>> {
        self.runtime.block_on(async {
            match store.inner.get(&store.key(relative)).await {
                Ok(r) => Ok(Some(r.bytes().await.map_err(io)?.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(io(e)),
            }
        })
    }
}

fn io(e: object_store::Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl SessionFolder for StoreFolder {
    fn describe(&self) -> String {
        self.session.url.clone()
    }

    fn list(&self) -> std::io::Result<Vec<String>> {
        let prefix = self.session.root.clone();
        let metas: Vec<_> =
            self.runtime.block_on(self.session.inner.list(Some(&prefix)).try_collect::<Vec<_>>()).map_err(io)?;
        let strip = format!("{}/", prefix.as_ref());
        let mut files: Vec<String> =
            metas.iter().filter_map(|m| m.location.as_ref().strip_prefix(&strip).map(str::to_string)).collect();
        // The key is part of what verify expects to see; it lives beside the session here.
        if self.device_key_object()?.is_some_and(|k| self.get(&self.room, &k).is_ok_and(|b| b.is_some())) {
            files.push(layout::PUBLIC_KEY.to_string());
        }
        files.sort();
        Ok(files)
    }

    fn read(&self, path: &str) -> std::io::Result<Option<Vec<u8>>> {
        if path == layout::PUBLIC_KEY {
            return match self.device_key_object()? {
                Some(k) => self.get(&self.room, &k),
                None => Ok(None),
            };
        }
        self.get(&self.session, path)
    }

    fn digest(&self, path: &str) -> std::io::Result<Option<(u64, [u8; 32])>> {
        self.runtime.block_on(digest_object(&self.session, &self.session.key(path))).map_err(io)
    }
}
