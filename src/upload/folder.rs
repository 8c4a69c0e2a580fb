//! A session folder in central storage, read for `verify` exactly like a local export. Device
//! keys are registered under `devices/` beside the session folders; `verify` looks one up only
//! by the id a trust anchor (or, untrusted, record #0's signature line) names.

use super::deliver::digest_object;
use super::store::Store;
use crate::integrity::SessionFolder;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;

pub struct StoreFolder {
    /// Rooted at the session: `{prefix}/{court}/{room}/{session}`.
    session: Store,
    /// Rooted at `{prefix}/{court}/{room}`, where `devices/` is.
    room: Store,
    runtime: tokio::runtime::Runtime,
}

impl StoreFolder {
    /// `store` is rooted at a session folder.
    pub fn new(session: Store) -> std::io::Result<StoreFolder> {
        let parent = session.root.as_ref().rsplit_once('/').map(|(p, _)| p.to_string()).unwrap_or_default();
        let mut room = session.clone();
        room.root = object_store::path::Path::from(parent);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(StoreFolder { session, room, runtime })
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
        files.sort();
        Ok(files)
    }

    fn read(&self, path: &str) -> std::io::Result<Option<Vec<u8>>> {
        self.get(&self.session, path)
    }

    fn registered_key(&self, key_id: &str) -> std::io::Result<Option<Vec<u8>>> {
        if key_id.len() != 16 || !key_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        self.get(&self.room, &format!("devices/{key_id}.pub"))
    }

    fn digest(&self, path: &str) -> std::io::Result<Option<(u64, [u8; 32])>> {
        self.runtime.block_on(digest_object(&self.session, &self.session.key(path))).map_err(io)
    }
}
