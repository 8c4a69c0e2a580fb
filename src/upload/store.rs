//! Opening central storage: a local folder or an S3-compatible bucket, with the object
//! prefix `{prefix}/{court}/{room}` this box writes under.

use super::UploadError;
use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, Checksum};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// S3 connection settings (from `[store]` or, for an auditor's `verify`, the environment).
#[derive(Clone, Default)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: String,
    pub path_style: bool,
    pub credentials: Option<Credentials>,
}

impl S3Settings {
    /// Settings from the standard AWS environment (an auditor's or a benchmark's machine):
    /// `AWS_ENDPOINT_URL` unless `endpoint` is given, `AWS_REGION`, and the credentials.
    pub fn from_env(endpoint: Option<String>) -> S3Settings {
        S3Settings {
            endpoint: endpoint.or_else(|| std::env::var("AWS_ENDPOINT_URL").ok()),
            region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
            path_style: true,
            credentials: Credentials::from_env(),
        }
    }
}

/// Never printed: `Debug` shows only the key id.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, secret hidden)", self.access_key_id)
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    access_key_id: String,
    secret_access_key: String,
}

impl Credentials {
    /// Reads a credentials file, refusing one that others on the box could read.
    pub fn read(path: &Path) -> Result<Credentials, UploadError> {
        let bad = |message: String| UploadError::Credentials { path: path.to_path_buf(), message };
        let text = crate::base::read_secret_file(path).map_err(|e| bad(e.to_string()))?;
        // The parser's message could quote a line of the file, even its own words quote a
        // value or key: say only where it failed.
        let file: CredentialsFile = toml::from_str(&text).map_err(|e| {
            let at = e.span().map(|s| crate::base::line_column(&text, s.start));
            bad(match at {
                Some((line, column)) => format!(
                    "not a TOML file with access_key_id and secret_access_key (error at line {line}, column {column})"
                ),
                None => "not a TOML file with access_key_id and secret_access_key".to_string(),
            })
        })?;
        Ok(Credentials { access_key_id: file.access_key_id, secret_access_key: file.secret_access_key })
    }

    pub fn from_env() -> Option<Credentials> {
        Some(Credentials {
            access_key_id: std::env::var("AWS_ACCESS_KEY_ID").ok()?,
            secret_access_key: std::env::var("AWS_SECRET_ACCESS_KEY").ok()?,
        })
    }
}

/// Where objects go: a store and the prefix every key of this box starts with.
#[derive(Clone)]
pub struct Store {
    pub inner: Arc<dyn ObjectStore>,
    /// `{prefix}/{court}/{room}` (or whatever root the caller asked for).
    pub root: ObjectPath,
    /// For people: `s3://bucket/prefix/court/room` or a folder path.
    pub url: String,
}

/// Splits `s3://bucket/some/prefix` into the bucket and the prefix.
pub fn parse_s3_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then(|| (bucket.to_string(), prefix.trim_matches('/').to_string()))
}

impl Store {
    /// Opens `url` (a folder or `s3://bucket/prefix`) with `root` appended to its prefix.
    pub fn open(url: &str, s3: &S3Settings, root: &str) -> Result<Store, UploadError> {
        if let Some((bucket, prefix)) = parse_s3_url(url) {
            crate::base::install_tls_provider();
            let mut builder = AmazonS3Builder::new()
                .with_bucket_name(&bucket)
                .with_region(&s3.region)
                .with_virtual_hosted_style_request(!s3.path_style)
                .with_checksum_algorithm(Checksum::SHA256)
                // Retrying is the uploader's job (forever, with back-off); a request that
                // fails comes back quickly so that status shows why.
                .with_retry(object_store::RetryConfig {
                    max_retries: 1,
                    retry_timeout: Duration::from_secs(20),
                    ..Default::default()
                })
                .with_client_options(
                    object_store::ClientOptions::new()
                        .with_connect_timeout(Duration::from_secs(5))
                        .with_timeout(Duration::from_secs(120)),
                );
            if let Some(endpoint) = &s3.endpoint {
                builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
            }
            if let Some(c) = &s3.credentials {
                builder = builder.with_access_key_id(&c.access_key_id).with_secret_access_key(&c.secret_access_key);
            } else {
                builder = builder.with_skip_signature(true);
            }
            let inner =
                builder.build().map_err(|e| UploadError::Open { url: url.to_string(), message: e.to_string() })?;
            let root = join(&prefix, root);
            Ok(Store { inner: Arc::new(inner), url: format!("s3://{bucket}/{root}"), root: ObjectPath::from(root) })
        } else {
            let dir = PathBuf::from(url.strip_prefix("file://").unwrap_or(url));
            std::fs::create_dir_all(&dir)
                .map_err(|e| UploadError::Open { url: dir.display().to_string(), message: e.to_string() })?;
            // An acknowledged object may be evicted from the spool: it must be on disk, not
            // in the page cache, when the store says it has it (as S3's does).
            let inner = LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| UploadError::Open { url: dir.display().to_string(), message: e.to_string() })?
                .with_fsync(true);
            Ok(Store {
                inner: Arc::new(inner),
                url: dir.join(root).display().to_string(),
                root: ObjectPath::from(root),
            })
        }
    }

    /// The full key of an object named relative to the root.
    pub fn key(&self, relative: &str) -> ObjectPath {
        ObjectPath::from(join(self.root.as_ref(), relative))
    }

    /// The same store rooted at a folder below this one (which need not exist yet).
    pub fn child(&self, name: &str) -> Store {
        Store {
            inner: self.inner.clone(),
            root: self.key(name),
            url: format!("{}/{}", self.url.trim_end_matches('/'), name),
        }
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.trim_matches('/'), b.trim_matches('/')) {
        ("", b) => b.to_string(),
        (a, "") => a.to_string(),
        (a, b) => format!("{a}/{b}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls() {
        assert_eq!(parse_s3_url("s3://records"), Some(("records".into(), "".into())));
        assert_eq!(parse_s3_url("s3://records/kz/almaty/"), Some(("records".into(), "kz/almaty".into())));
        assert_eq!(parse_s3_url("s3:///x"), None);
        assert_eq!(parse_s3_url("/var/lib/courtbox/central"), None);
        assert_eq!(join("", "a/b"), "a/b");
        assert_eq!(join("p/", "/a"), "p/a");
    }

    #[test]
    fn credentials_readable_by_others_are_refused_and_secrets_never_shown() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s3.toml");
        std::fs::write(&path, "access_key_id = \"AKID\"\nsecret_access_key = \"s3cr3t-value\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Credentials::read(&path).unwrap_err().to_string();
        assert!(err.contains("must be 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = Credentials::read(&path).unwrap();
        assert_eq!(c.access_key_id, "AKID");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        std::fs::write(&path, "access_key_id = \"AKID\"\nsecret_access_key = s3cr3t-value\n").unwrap();
        let err = Credentials::read(&path).unwrap_err().to_string();
        assert!(!err.contains("s3cr3t"), "a parse error must not quote the secret: {err}");
    }
}
