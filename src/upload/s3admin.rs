//! The few bucket-level S3 calls `object_store` does not make: reading (for `courtbox
//! check`) and setting up (for provisioning and tests) Object Lock. Signed with AWS SigV4.

use super::UploadError;
use super::store::{Credentials, S3Settings};
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings, UriPathNormalizationMode,
    sign,
};
use aws_sigv4::sign::v4;
use base64::Engine;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// What a bucket enforces against deletion and overwriting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectLock {
    /// Object Lock is off: an administrator can delete or replace the record.
    Disabled,
    /// Enabled, with this default retention for new objects (mode and days), if any.
    Enabled { mode: Option<String>, days: Option<u32> },
}

impl std::fmt::Display for ObjectLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ObjectLock::Disabled => write!(f, "Object Lock is NOT enabled: objects can be deleted or replaced"),
            ObjectLock::Enabled { mode: Some(m), days: Some(d) } => {
                write!(f, "Object Lock enabled, default retention {m} for {d} days")
            }
            ObjectLock::Enabled { .. } => {
                write!(f, "Object Lock enabled but no default retention: new objects are not protected")
            }
        }
    }
}

fn endpoint(s3: &S3Settings) -> String {
    s3.endpoint
        .clone()
        .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", s3.region))
        .trim_end_matches('/')
        .to_string()
}

/// Sends one signed request to `{endpoint}/{bucket}{query}`; returns status and body.
fn request(
    s3: &S3Settings,
    method: &str,
    bucket: &str,
    query: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Result<(u16, String), UploadError> {
    let creds: &Credentials =
        s3.credentials.as_ref().ok_or_else(|| UploadError::Request("no store credentials configured".into()))?;
    let url = format!("{}/{bucket}{query}", endpoint(s3));
    let identity =
        aws_credential_types::Credentials::new(&creds.access_key_id, &creds.secret_access_key, None, None, "courtbox")
            .into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&s3.region)
        .name("s3")
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .map_err(|e| UploadError::Request(format!("signing: {e}")))?
        .into();
    let signable =
        SignableRequest::new(method, &url, headers.iter().map(|(k, v)| (*k, v.as_str())), SignableBody::Bytes(body))
            .map_err(|e| UploadError::Request(format!("signing: {e}")))?;
    let (instructions, _) =
        sign(signable, &params).map_err(|e| UploadError::Request(format!("signing: {e}")))?.into_parts();
    crate::base::install_tls_provider();
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .map_err(|e| UploadError::Request(e.to_string()))?;
    let mut req = client.request(method.parse().map_err(|_| UploadError::Request(method.into()))?, &url);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    for (k, v) in instructions.headers() {
        req = req.header(k, v);
    }
    let resp = req.body(body.to_vec()).send().map_err(|e| UploadError::Request(format!("{url}: {e}")))?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().unwrap_or_default()))
}

/// `GetObjectLockConfiguration`'s answer; only what `object_lock` reports is read.
#[derive(Debug, Deserialize)]
struct ObjectLockConfiguration {
    #[serde(rename = "ObjectLockEnabled")]
    enabled: Option<String>,
    #[serde(rename = "Rule")]
    rule: Option<LockRule>,
}

#[derive(Debug, Deserialize)]
struct LockRule {
    #[serde(rename = "DefaultRetention")]
    default_retention: Option<DefaultRetention>,
}

#[derive(Debug, Deserialize)]
struct DefaultRetention {
    #[serde(rename = "Mode")]
    mode: Option<String>,
    /// Read as text: a store that writes it oddly (spaces, a non-number) still counts as
    /// having Object Lock on, only without a known retention.
    #[serde(rename = "Days")]
    days: Option<String>,
}

/// `ListObjectVersions`' answer. Versions and delete markers interleave in key order, so the
/// children are read as one list of entries, and only versions are counted.
#[derive(Debug, Deserialize)]
struct ListVersionsResult {
    #[serde(rename = "$value", default)]
    entries: Vec<ListEntry>,
}

#[derive(Debug, Deserialize)]
enum ListEntry {
    Version {
        #[serde(rename = "Key")]
        key: String,
    },
    IsTruncated(bool),
    NextKeyMarker(String),
    /// Delete markers, the request's echo and everything else this count does not need.
    #[serde(other)]
    Other,
}

/// An S3 error answer (`<Error><Code>…</Code>…</Error>`).
#[derive(Debug, Deserialize)]
struct S3ErrorBody {
    #[serde(rename = "Code")]
    code: String,
}

/// The S3 error code of an error answer, when the body is one.
fn error_code(body: &str) -> Option<String> {
    quick_xml::de::from_str::<S3ErrorBody>(body).ok().map(|e| e.code)
}

/// S3's codes for a bucket that has no Object Lock configuration (Object Lock is off): AWS,
/// MinIO and SeaweedFS say the first, some stores the second.
const NO_LOCK_CONFIGURATION: [&str; 2] = ["ObjectLockConfigurationNotFoundError", "ObjectLockConfigurationNotFound"];
/// S3's code for creating a bucket this account already owns (nothing to do).
const ALREADY_OWNED: &str = "BucketAlreadyOwnedByYou";

fn parse_lock(body: &str) -> Result<ObjectLock, quick_xml::de::DeError> {
    // An empty answer has no configuration in it: Object Lock is off.
    if body.trim().is_empty() {
        return Ok(ObjectLock::Disabled);
    }
    let config: ObjectLockConfiguration = quick_xml::de::from_str(body)?;
    if config.enabled.as_deref().map(str::trim) != Some("Enabled") {
        return Ok(ObjectLock::Disabled);
    }
    let retention = config.rule.and_then(|r| r.default_retention);
    Ok(ObjectLock::Enabled {
        mode: retention.as_ref().and_then(|r| r.mode.as_deref()).map(|m| m.trim().to_string()),
        days: retention.and_then(|r| r.days).and_then(|d| d.trim().parse().ok()),
    })
}

/// Reads the bucket's Object Lock configuration.
pub fn object_lock(s3: &S3Settings, bucket: &str) -> Result<ObjectLock, UploadError> {
    let (status, body) = request(s3, "GET", bucket, "?object-lock=", &[], &[])?;
    match status {
        200 => parse_lock(&body).map_err(|e| {
            UploadError::Request(format!("reading the Object Lock configuration of {bucket}: {e}: {}", body.trim()))
        }),
        404 if error_code(&body).is_some_and(|code| NO_LOCK_CONFIGURATION.contains(&code.as_str())) => {
            Ok(ObjectLock::Disabled)
        }
        _ => Err(UploadError::Request(format!(
            "reading the Object Lock configuration of {bucket}: HTTP {status}: {}",
            body.trim()
        ))),
    }
}

/// Creates a bucket with Object Lock and a default retention (`COMPLIANCE` or `GOVERNANCE`).
pub fn create_locked_bucket(s3: &S3Settings, bucket: &str, mode: &str, days: u32) -> Result<(), UploadError> {
    let (status, body) = request(s3, "PUT", bucket, "", &[("x-amz-bucket-object-lock-enabled", "true".into())], &[])?;
    if !(200..300).contains(&status) && error_code(&body).as_deref() != Some(ALREADY_OWNED) {
        return Err(UploadError::Request(format!("creating bucket {bucket}: HTTP {status}: {}", body.trim())));
    }
    let config = format!(
        "<ObjectLockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><ObjectLockEnabled>Enabled</ObjectLockEnabled>\
         <Rule><DefaultRetention><Mode>{mode}</Mode><Days>{days}</Days></DefaultRetention></Rule></ObjectLockConfiguration>"
    );
    let checksum = base64::engine::general_purpose::STANDARD.encode(crate::integrity::sha256(config.as_bytes()));
    let (status, body) =
        request(s3, "PUT", bucket, "?object-lock=", &[("x-amz-checksum-sha256", checksum)], config.as_bytes())?;
    if !(200..300).contains(&status) {
        return Err(UploadError::Request(format!("setting Object Lock on {bucket}: HTTP {status}: {}", body.trim())));
    }
    Ok(())
}

/// Every stored version of every object under `prefix` (not delete markers): key and count.
/// Write-once storage keeps one version per key; more means something was written twice.
pub fn version_counts(s3: &S3Settings, bucket: &str, prefix: &str) -> Result<BTreeMap<String, u32>, UploadError> {
    let mut counts = BTreeMap::new();
    let mut marker = String::new();
    loop {
        let query =
            format!("?key-marker={}&max-keys=1000&prefix={}&versions=", encode_query(&marker), encode_query(prefix));
        let (status, body) = request(s3, "GET", bucket, &query, &[], &[])?;
        if status != 200 {
            return Err(UploadError::Request(format!("listing versions in {bucket}: HTTP {status}: {}", body.trim())));
        }
        let listing: ListVersionsResult = quick_xml::de::from_str(&body)
            .map_err(|e| UploadError::Request(format!("listing versions in {bucket}: {e}: {}", body.trim())))?;
        let mut truncated = false;
        let mut next = None;
        for entry in listing.entries {
            match entry {
                ListEntry::Version { key } => *counts.entry(key.trim().to_string()).or_insert(0) += 1,
                ListEntry::IsTruncated(t) => truncated = t,
                ListEntry::NextKeyMarker(k) => next = Some(k.trim().to_string()),
                ListEntry::Other => {}
            }
        }
        if !truncated {
            return Ok(counts);
        }
        match next {
            Some(next) if !next.is_empty() && next != marker => marker = next,
            _ => return Ok(counts),
        }
    }
}

/// Percent-encodes a query value the way SigV4 canonicalizes it (RFC 3986 unreserved kept).
fn encode_query(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_lock_configuration() {
        let xml = "<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>\
                   <Mode>COMPLIANCE</Mode><Days>3650</Days></DefaultRetention></Rule></ObjectLockConfiguration>";
        assert_eq!(parse_lock(xml).unwrap(), ObjectLock::Enabled { mode: Some("COMPLIANCE".into()), days: Some(3650) });
        let no_rule =
            "<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled></ObjectLockConfiguration>";
        assert_eq!(parse_lock(no_rule).unwrap(), ObjectLock::Enabled { mode: None, days: None });
        assert_eq!(parse_lock("<ObjectLockConfiguration></ObjectLockConfiguration>").unwrap(), ObjectLock::Disabled);
    }

    #[test]
    fn version_listing_skips_delete_markers() {
        let xml = "<ListVersionsResult><Name>b</Name><IsTruncated>true</IsTruncated><NextKeyMarker>p/b</NextKeyMarker>\
                   <Version><Key>p/a</Key><VersionId>1</VersionId></Version>\
                   <DeleteMarker><Key>p/b</Key><VersionId>2</VersionId></DeleteMarker>\
                   <Version><Key>p/a</Key><VersionId>3</VersionId></Version></ListVersionsResult>";
        let listing: ListVersionsResult = quick_xml::de::from_str(xml).unwrap();
        let versions =
            listing.entries.iter().filter(|e| matches!(e, ListEntry::Version { key } if key == "p/a")).count();
        assert_eq!(versions, 2);
        assert!(listing.entries.iter().any(|e| matches!(e, ListEntry::IsTruncated(true))));
        assert!(listing.entries.iter().any(|e| matches!(e, ListEntry::NextKeyMarker(k) if k == "p/b")));
    }

    #[test]
    fn error_codes() {
        let body = "<?xml version=\"1.0\"?><Error><Code>ObjectLockConfigurationNotFoundError</Code>\
                    <Message>none</Message></Error>";
        assert_eq!(error_code(body).as_deref(), Some(NO_LOCK_CONFIGURATION[0]));
        assert_eq!(error_code("not xml"), None);
    }
}
