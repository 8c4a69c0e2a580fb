//! Delivering one object: written once (`PutMode::Create`), its SHA-256 checked end to end,
//! and a name already taken resolved by comparing bytes, never by overwriting.

use super::store::Store;
use crate::ledger::{Payload, UploadJob};
use bytes::Bytes;
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutMode, PutOptions, WriteMultipart};
use std::path::Path;
use tokio::io::AsyncReadExt;

#[derive(Debug, PartialEq, Eq)]
pub enum Delivered {
    /// Written now; the store checked the SHA-256 sent with it (S3) or it was read back.
    Stored,
    /// A previous attempt had written it (the acknowledgement was lost): same bytes.
    AlreadyThere,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The store is unreachable, refused the request or failed: try again later.
    Retry(String),
    /// The local copy cannot be sent as it is: missing, or not the bytes that were sealed.
    Local(String),
    /// The store holds different bytes under this name. Never overwritten.
    Conflict(String),
}

/// Size of the parts of a multipart upload (S3's minimum part is 5 MiB).
const PART_SIZE: usize = 8 << 20;

pub async fn deliver(
    store: &Store,
    job: &UploadJob,
    data_dir: &Path,
    multipart_threshold: u64,
) -> Result<Delivered, Failure> {
    let key = store.key(&job.object_key);
    if job.bytes >= multipart_threshold
        && let Payload::File(file) = &job.payload
    {
        return deliver_in_parts(store, job, &key, &data_dir.join(file)).await;
    }
    let payload = match &job.payload {
        Payload::Content(c) => Bytes::from(c.clone()),
        Payload::File(file) => read_local(&data_dir.join(file)).await?,
    };
    check_local(job, payload.len() as u64, &crate::integrity::sha256(&payload))?;
    let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
    match store.inner.put_opts(&key, payload.into(), opts).await {
        Ok(_) => Ok(Delivered::Stored),
        Err(object_store::Error::AlreadyExists { .. }) => compare_remote(store, job, &key).await,
        Err(e) => Err(Failure::Retry(describe(store, &e))),
    }
}

/// Large files: S3 has no write-once multipart upload, so the name is checked first (only
/// this box writes under its prefix) and the result is read back.
async fn deliver_in_parts(
    store: &Store,
    job: &UploadJob,
    key: &object_store::path::Path,
    path: &Path,
) -> Result<Delivered, Failure> {
    match store.inner.head(key).await {
        Ok(_) => return compare_remote(store, job, key).await,
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(Failure::Retry(describe(store, &e))),
    }
    // Read asynchronously: a large file must not hold up the uploader's other transfers.
    let mut file = tokio::fs::File::open(path).await.map_err(|e| local_error(path, e))?;
    let upload = store.inner.put_multipart(key).await.map_err(|e| Failure::Retry(describe(store, &e)))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut total = 0u64;
    let mut buf = vec![0u8; PART_SIZE];
    loop {
        let n = match file.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(local_error(path, e));
            }
        };
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        total += n as u64;
        if let Err(e) = writer.wait_for_capacity(2).await {
            return Err(Failure::Retry(describe(store, &e)));
        }
        writer.write(&buf[..n]);
    }
    let sha: [u8; 32] = ctx.finish().as_ref().try_into().expect("32 bytes");
    if let Err(f) = check_local(job, total, &sha) {
        let _ = writer.abort().await;
        return Err(f);
    }
    writer.finish().await.map_err(|e| Failure::Retry(describe(store, &e)))?;
    match compare_remote(store, job, key).await? {
        Delivered::AlreadyThere => Ok(Delivered::Stored),
        Delivered::Stored => unreachable!("compare_remote only confirms"),
    }
}

async fn read_local(path: &Path) -> Result<Bytes, Failure> {
    let p = path.to_path_buf();
    let read = tokio::task::spawn_blocking(move || std::fs::read(&p))
        .await
        .map_err(|e| Failure::Retry(format!("internal error reading {}: {e}", path.display())))?;
    read.map(Bytes::from).map_err(|e| local_error(path, e))
}

fn local_error(path: &Path, e: std::io::Error) -> Failure {
    Failure::Local(format!("cannot read {}: {e}", path.display()))
}

fn check_local(job: &UploadJob, bytes: u64, sha: &[u8; 32]) -> Result<(), Failure> {
    if bytes != job.bytes || *sha != job.sha256 {
        return Err(Failure::Local(format!(
            "{}: the local copy has {bytes} bytes with SHA-256 {}, but {} bytes with SHA-256 {} were sealed; \
             it was not uploaded",
            job.object_key,
            hex::encode(sha),
            job.bytes,
            hex::encode(job.sha256)
        )));
    }
    Ok(())
}

/// The name is taken: the same bytes mean an earlier attempt succeeded.
async fn compare_remote(store: &Store, job: &UploadJob, key: &object_store::path::Path) -> Result<Delivered, Failure> {
    let (bytes, sha) = match digest_object(store, key).await {
        Ok(Some(d)) => d,
        Ok(None) => return Err(Failure::Retry(format!("{}: vanished while being compared", job.object_key))),
        Err(e) => return Err(Failure::Retry(describe(store, &e))),
    };
    if bytes == job.bytes && sha == job.sha256 {
        Ok(Delivered::AlreadyThere)
    } else {
        Err(Failure::Conflict(format!(
            "{}/{} already holds {bytes} bytes with SHA-256 {} but the record has {} bytes with SHA-256 {}; \
             the stored object was left as it is",
            store.url,
            job.object_key,
            hex::encode(sha),
            job.bytes,
            hex::encode(job.sha256)
        )))
    }
}

/// Size and SHA-256 of a stored object, streamed; `None` when it does not exist.
pub async fn digest_object(
    store: &Store,
    key: &object_store::path::Path,
) -> Result<Option<(u64, [u8; 32])>, object_store::Error> {
    let result = match store.inner.get(key).await {
        Ok(r) => r,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut stream = result.into_stream();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        ctx.update(&chunk);
        total += chunk.len() as u64;
    }
    Ok(Some((total, ctx.finish().as_ref().try_into().expect("32 bytes"))))
}

/// What went wrong, in words a technician can act on. Never includes credentials.
pub fn describe(store: &Store, e: &object_store::Error) -> String {
    let text = e.to_string();
    match StoreFault::of(e) {
        StoreFault::Credentials => {
            format!("{} refused the credentials (check store.credentials_file): {text}", store.url)
        }
        StoreFault::Unreachable => format!("cannot reach {}: {text}", store.url),
        StoreFault::Other => format!("{}: {text}", store.url),
    }
}

/// The kind of a store failure, as far as a technician acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreFault {
    /// The store answered 401 or 403: the key is unknown or the secret is wrong (S3 answers
    /// `InvalidAccessKeyId` and `SignatureDoesNotMatch` with 403).
    Credentials,
    /// The request never got an answer: connection refused, DNS, TLS or the send failed.
    Unreachable,
    Other,
}

impl StoreFault {
    fn of(e: &object_store::Error) -> StoreFault {
        if matches!(e, object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }) {
            return StoreFault::Credentials;
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = source {
            if err.downcast_ref::<reqwest::Error>().is_some_and(|r| r.is_connect() || r.is_request())
                || err.downcast_ref::<object_store::client::HttpError>().is_some_and(|h| {
                    matches!(
                        h.kind(),
                        object_store::client::HttpErrorKind::Connect | object_store::client::HttpErrorKind::Request
                    )
                })
                || err
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
            {
                return StoreFault::Unreachable;
            }
            source = err.source();
        }
        StoreFault::Other
    }
}

#[cfg(test)]
mod tests {
    use super::StoreFault;

    #[test]
    fn faults_are_told_apart_by_kind_not_text() {
        let denied = object_store::Error::PermissionDenied { path: "x".into(), source: "InvalidAccessKeyId".into() };
        assert_eq!(StoreFault::of(&denied), StoreFault::Credentials);
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let unreachable = object_store::Error::Generic { store: "S3", source: Box::new(refused) };
        assert_eq!(StoreFault::of(&unreachable), StoreFault::Unreachable);
        // Words alone decide nothing.
        let other =
            object_store::Error::Generic { store: "S3", source: "Connection refused InvalidAccessKeyId".into() };
        assert_eq!(StoreFault::of(&other), StoreFault::Other);
    }
}
