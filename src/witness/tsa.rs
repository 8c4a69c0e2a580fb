//! RFC 3161 timestamps on checkpoints: asking an external Time-Stamp Authority for a token
//! over a byte string (`request_token`), and checking such a token offline against a
//! pinned TSA certificate and its CA chain (`TsaPin`, `verify_token`). The tokens and
//! the protocol are sigstore-tsa's; this module owns the pin, the HTTP client settings and
//! the mapping of sigstore's errors onto the few outcomes a caller acts on (`TsaError`).

use super::ring_provider;
use crate::base::WallTime;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sigstore_tsa::{TimestampClient, TsaAuthority};
use sigstore_types::{DerCertificate, SignatureBytes, TimestampToken};
use std::path::Path;
use std::time::Duration;

/// Why a token could not be had or does not hold. The variants are what a caller does
/// differently: retry later, report the TSA, or report the record.
#[derive(Debug, thiserror::Error)]
pub enum TsaError {
    /// No answer: connection refused, timeout, TLS failure, or an HTTP error status.
    /// Worth retrying.
    #[error("TSA unreachable: {0}")]
    Unreachable(String),
    /// The TSA answered but granted no token, or answered something that is not a token
    /// for this request.
    #[error("TSA refused the request: {0}")]
    Refused(String),
    /// The token is a timestamp over other bytes. Checked before the signature (sigstore's
    /// order), so this says nothing about who signed it.
    #[error("the timestamp is over other data")]
    WrongData,
    /// Not signed by the pinned TSA certificate, or that certificate does not chain to the
    /// pinned CA (or is not a timestamping certificate, or was not valid at the stamped time).
    #[error("the timestamp is not from the pinned TSA: {0}")]
    WrongAuthority(String),
    /// The pinned certificate or CA file cannot be read or used.
    #[error("TSA certificate: {0}")]
    Certificate(String),
    /// Anything else: a token that does not parse, a client that cannot be built.
    #[error("invalid timestamp: {0}")]
    Invalid(String),
}

/// The TSA a box trusts: its own certificate (only tokens signed by exactly this
/// certificate are accepted, not any certificate its CA issued) and the CA chain the
/// certificate must chain to.
#[derive(Clone, Debug)]
pub struct TsaPin {
    authority: TsaAuthority,
    name: String,
}

impl TsaPin {
    /// cert: the TSA's own certificate (PEM), pinned; ca: PEM file with its CA chain,
    /// intermediates first, root last (a single root is the common case).
    pub fn load(cert: &Path, ca: &Path) -> Result<TsaPin, TsaError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| TsaError::Certificate(format!("cannot read {}: {e}", path.display())))
        };
        Self::from_pem(&read(cert)?, &read(ca)?)
    }

    /// As `load`, from the two files' contents.
    pub fn from_pem(cert_pem: &[u8], ca_pem: &[u8]) -> Result<TsaPin, TsaError> {
        let mut leaf = pem_certificates(cert_pem, "TSA certificate")?;
        if leaf.len() != 1 {
            // A chain here would leave it unclear which certificate is pinned.
            return Err(TsaError::Certificate(format!(
                "the TSA certificate file holds {} certificates; it must hold only the TSA's own \
                 (its CA chain goes in the CA file)",
                leaf.len()
            )));
        }
        let leaf = leaf.remove(0);
        let mut chain = pem_certificates(ca_pem, "CA file")?;
        let root = chain.pop().expect("pem_certificates returns at least one");

        let info = sigstore_crypto::parse_certificate_info(&leaf)
            .map_err(|e| TsaError::Certificate(format!("TSA certificate: {e}")))?;
        // sigstore-tsa verifies only ECDSA signers; a TSA with an RSA or Ed25519 key would
        // fail every token, so it is refused here, where the configuration is read.
        if !matches!(
            info.key_algorithm,
            sigstore_crypto::KeyAlgorithm::EcdsaP256 | sigstore_crypto::KeyAlgorithm::EcdsaP384
        ) {
            return Err(TsaError::Certificate(format!(
                "the TSA certificate has a {:?} key; only ECDSA P-256 or P-384 TSAs can be verified",
                info.key_algorithm
            )));
        }
        for ca in chain.iter().chain([&root]) {
            sigstore_crypto::parse_certificate_info(ca).map_err(|e| TsaError::Certificate(format!("CA file: {e}")))?;
        }

        let subject = subject_name(leaf.as_bytes()).unwrap_or_else(|| "unnamed TSA".to_string());
        let fingerprint = ring::digest::digest(&ring::digest::SHA256, leaf.as_bytes());
        let name = format!("{subject} (SHA-256 {})", hex::encode(&fingerprint.as_ref()[..8]));
        // No validity window of our own: the certificate's validity at the stamped time is
        // checked by the chain verification.
        Ok(TsaPin { authority: TsaAuthority::new(leaf, chain, root, None), name })
    }

    /// The TSA's subject (e.g. its CN) for "attested by TSA X", plus a short SHA-256
    /// fingerprint of the cert.
    pub fn name(&self) -> String {
        self.name.clone()
    }
}

/// Every CERTIFICATE block in `pem` (other blocks, such as a key, are skipped); an error if
/// there is none.
fn pem_certificates(pem: &[u8], what: &str) -> Result<Vec<DerCertificate>, TsaError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(|c| DerCertificate::new(c.to_vec())))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TsaError::Certificate(format!("{what}: not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TsaError::Certificate(format!("{what}: no PEM certificate in it")));
    }
    Ok(certs)
}

/// Asks the TSA at `url` (http or https) for a token over SHA-256(data). Returns the DER
/// bytes the TSA answered (TimeStampResp). Uses sigstore_tsa::TimestampClient with a
/// reqwest client with `timeout`.
///
/// sigstore checks the answer against the request (status granted, same imprint, same
/// nonce) but not its signature; that is `verify_token`'s job, offline, with the pin.
pub async fn request_token(url: &str, data: &[u8], timeout: Duration) -> Result<Vec<u8>, TsaError> {
    ring_provider::install();
    // reqwest is built without a bundled TLS provider; https TSAs need ring's installed.
    crate::base::install_tls_provider();
    let http = sigstore_tsa::reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("courtbox/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| TsaError::Invalid(format!("cannot build the HTTP client: {e}")))?;
    let client = TimestampClient::builder(url)
        .with_http_client(http)
        .build()
        .map_err(|e| TsaError::Invalid(format!("cannot build the TSA client: {e}")))?;
    // `timestamp_signature` is sigstore's name for "timestamp SHA-256 of these bytes";
    // the bytes need not be a signature.
    let token = client.timestamp_signature(&SignatureBytes::new(data.to_vec())).await.map_err(|e| match e {
        sigstore_tsa::Error::Http(_) => TsaError::Unreachable(e.to_string()),
        _ => TsaError::Refused(e.to_string()),
    })?;
    Ok(token.into_bytes())
}

/// Offline: checks the token's CMS signature, that its signer is the pinned TSA cert
/// chaining to the pinned CA, and that it stamps exactly SHA-256(data). Returns the TSA's
/// genTime.
///
/// The token may be the whole TimeStampResp (as `request_token` returns it) or only its
/// TimeStampToken. A SHA-384 or SHA-512 imprint of the same bytes is accepted too (sigstore
/// hashes with whatever algorithm the token names, among those three): it binds the bytes
/// as firmly, and `request_token` always asks for SHA-256.
pub fn verify_token(token: &[u8], data: &[u8], pin: &TsaPin) -> Result<WallTime, TsaError> {
    ring_provider::install();
    // sigstore hashes its `signature` argument and compares that with the token's imprint,
    // so the stamped bytes themselves go there.
    let time = sigstore_tsa::verify_timestamp_for_authority(
        &TimestampToken::new(token.to_vec()),
        &SignatureBytes::new(data.to_vec()),
        &pin.authority,
    )
    .map_err(|e| verify_error(e, data))?;
    Ok(WallTime::from_unix_nanos(time.as_nanosecond()))
}

fn verify_error(e: sigstore_tsa::Error, data: &[u8]) -> TsaError {
    use sigstore_tsa::Error as E;
    match e {
        // sigstore reports two different mismatches with this variant: the token's imprint
        // against our data, and the CMS message-digest attribute against the TSTInfo (a
        // token altered after signing). Only in the first is `actual` a digest of `data`.
        E::HashMismatch { ref actual, .. } if is_digest_of(actual, data) => TsaError::WrongData,
        E::HashMismatch { .. } => TsaError::Invalid(e.to_string()),
        // A signer that is not the pinned certificate, a signature that does not verify
        // with its key, a chain that does not reach the pinned CA, a certificate without
        // the timestamping usage or outside its validity: all mean the pinned TSA did not
        // stamp this.
        E::SignatureVerificationError(_)
        | E::CertificateValidationError(_)
        | E::InvalidEKU
        | E::TimestampOutsideValidity { .. } => TsaError::WrongAuthority(e.to_string()),
        _ => TsaError::Invalid(e.to_string()),
    }
}

/// Whether `hex_digest` (as sigstore prints it) is the SHA-256, -384 or -512 of `data`.
fn is_digest_of(hex_digest: &str, data: &[u8]) -> bool {
    [&ring::digest::SHA256, &ring::digest::SHA384, &ring::digest::SHA512]
        .into_iter()
        .any(|alg| hex_digest.eq_ignore_ascii_case(&hex::encode(ring::digest::digest(alg, data))))
}

/// The subject's common name (else its organization) from a DER certificate, for display.
/// A minimal walk of the certificate's outer structure: nothing here is trusted, and
/// sigstore has already parsed the certificate properly.
fn subject_name(cert: &[u8]) -> Option<String> {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const O: &[u8] = &[0x55, 0x04, 0x0a];
    let (_, cert, _) = der_element(cert)?;
    let (_, tbs, _) = der_element(cert)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = der_element(rest)?.2; // [0] version
    }
    for _ in 0..4 {
        rest = der_element(rest)?.2; // serialNumber, signature, issuer, validity
    }
    let (_, mut rdns, _) = der_element(rest)?;
    let (mut cn, mut org) = (None, None);
    while !rdns.is_empty() {
        let (_, mut set, next) = der_element(rdns)?;
        rdns = next;
        while !set.is_empty() {
            let (_, atv, next) = der_element(set)?;
            set = next;
            let (_, oid, value) = der_element(atv)?;
            let (tag, value, _) = der_element(value)?;
            let slot = match oid {
                CN => &mut cn,
                O => &mut org,
                _ => continue,
            };
            slot.get_or_insert_with(|| directory_string(tag, value));
        }
    }
    cn.or(org).filter(|name| !name.is_empty())
}

/// A DirectoryString's text, with control characters dropped (it is shown to people).
fn directory_string(tag: u8, value: &[u8]) -> String {
    let text = if tag == 0x1e {
        // BMPString: UTF-16BE
        String::from_utf16_lossy(&value.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect::<Vec<_>>())
    } else {
        String::from_utf8_lossy(value).into_owned()
    };
    text.chars().filter(|c| !c.is_control()).collect()
}

/// One DER element of `input`: its tag, its contents, and the bytes after it.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |len, &b| len << 8 | b as usize), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    // A throwaway EC P-256 CA and a TSA certificate it issued (CN "unit test TSA",
    // extendedKeyUsage timeStamping), made with `tests/tsa/tsa-server --name "unit test TSA"`.
    const CA: &str = "\
-----BEGIN CERTIFICATE-----
MIIBqTCCAU+gAwIBAgIRALhfELYN1gAyA9L/OA3mCjIwCgYIKoZIzj0EAwIwNDEX
MBUGA1UECgwOY291cnRib3ggdGVzdHMxGTAXBgNVBAMMEHVuaXQgdGVzdCBUU0Eg
Q0EwHhcNMjYxMjAxMjEyNjAxWhcNMzYxMTI4MjEyNjAxWjA0MRcwFQYDVQQKDA5j
b3VydGJveCB0ZXN0czEZMBcGA1UEAwwQdW5pdCB0ZXN0IFRTQSBDQTBZMBMGByqG
SM49AgEGCCqGSM49AwEHA0IABMNF7Pc/+HG5i6a9rlMLNYfMvie0fNYg0/njEozN
AcF/X4RfN4fYciF6WHIlbI3LyDkm+MjBTehD/jbZJvmJoqSjQjBAMA8GA1UdEwEB
/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgEGMB0GA1UdDgQWBBSHrtGAH363PjSMvY66
QzwZvL45lDAKBggqhkjOPQQDAgNIADBFAiEA1yOuRxL1OcRMGnzHxu6btEFUeR4/
lzBvat3iYkaDkZUCICljZu0YscX9oNefLvQ8dQSmvEBFnF0bR3f1YYZbD0xD
-----END CERTIFICATE-----
";
    const TSA: &str = "\
-----BEGIN CERTIFICATE-----
MIIB3DCCAYKgAwIBAgIRAPqqN1emf6G3yN3WTwxClTkwCgYIKoZIzj0EAwIwNDEX
MBUGA1UECgwOY291cnRib3ggdGVzdHMxGTAXBgNVBAMMEHVuaXQgdGVzdCBUU0Eg
Q0EwHhcNMjYxMjAxMjEyNjAxWhcNMzExMTMwMjEyNjAxWjAxMRcwFQYDVQQKDA5j
b3VydGJveCB0ZXN0czEWMBQGA1UEAwwNdW5pdCB0ZXN0IFRTQTBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABJ+2obAWtsaeawx2FJLtWW8QuiQlKARiPbN04s80AgWV
gW67QBtgZfHNo7kdljE+sUJea4DR2rebWZaN1KlzfXejeDB2MAwGA1UdEwEB/wQC
MAAwDgYDVR0PAQH/BAQDAgeAMBYGA1UdJQEB/wQMMAoGCCsGAQUFBwMIMB0GA1Ud
DgQWBBTAUc08v85ZONjenfUnFTjTlMJioTAfBgNVHSMEGDAWgBSHrtGAH363PjSM
vY66QzwZvL45lDAKBggqhkjOPQQDAgNIADBFAiEA/WogrLgWSeeWoDS1QyX+jZef
/8xV8e4V/BlJrGIOSLcCICMv4kHP2nDAZeCQOS2r4aY63ZYsImChQWv2c72Q6ENq
-----END CERTIFICATE-----
";
    // A self-signed RSA 2048 certificate (CN "rsa TSA").
    const RSA: &str = "\
-----BEGIN CERTIFICATE-----
MIIDBTCCAe2gAwIBAgIUOvdZEnXof2oALBKPhlTTqy6eNBMwDQYJKoZIhvcNAQEL
BQAwEjEQMA4GA1UEAwwHcnNhIFRTQTAeFw0yNjEyMDEyMTI2MDhaFw0zNjExMjgy
MTI2MDhaMBIxEDAOBgNVBAMMB3JzYSBUU0EwggEiMA0GCSqGSIb3DQEBAQUAA4IB
DwAwggEKAoIBAQDA6SouHLRGKni+fywgzcPAEqzz7xcAXLFBKf8AN9diSShSC3LL
06Le01aqcraxbWixNOdEWP6XDUcTBLxzHj1letXbQe6P7p3XhlaXNliuk66MrL1x
/GkvLBJP1N3w0fYEcCvuHmBIgjAaIJcx+ll8HQVo1OpnUU2FywMA2s1/DmSK5QOF
LM7wMxZm9b+a5mU1lpEXP5Gq66GzPlfr5vlRFKuB9SFesMzbWa+uexhz/n4O9ZSj
viektN6EWjFXkeRiM3EQ03+IPm3t/vO4pw/PBlvZyZozTpexJ/kx6b7yiuQCbp4j
GIsxl2vqCsgYq8zNAhfMxSidfCT2VxTB6yTfAgMBAAGjUzBRMB0GA1UdDgQWBBTc
3FcM8u6fNo/+pRmL5/z7ok60TzAfBgNVHSMEGDAWgBTc3FcM8u6fNo/+pRmL5/z7
ok60TzAPBgNVHRMBAf8EBTADAQH/MA0GCSqGSIb3DQEBCwUAA4IBAQBWI1vUx9Lj
rSTyElawBhD4Vqgjdk7Jfbq7wN7aPU+iM3IOR+flsQroGKklarceCrZpRxnYiJbB
zvkRWOBgwe6GjlGzBl7od/RDfmVqYYFQeAXjrHgnKQC+XZexyE6yQ8A7Vf1HO4yh
XvL78kDcI/DJdZaQhu0tewQLi5tFkoCPBkNpynngPcAUBOSMRxKHAukf2t/dQi87
c628kB4GucQ8AtM7fx5+R9WAk318L+dP0/A8OpXhIdj4XkiS03UkzFLO5EcM3pOM
8SAhJpJL8pbtueVQ6fhRx0hdZN6dV3mX5zzVxzdLo7lf8nOKh5WDwbB3Kubp7wk2
Iu02qtKVuXHx
-----END CERTIFICATE-----
";

    fn certificate_error(r: Result<TsaPin, TsaError>) -> String {
        match r {
            Err(TsaError::Certificate(why)) => why,
            other => panic!("expected a Certificate error, got {other:?}"),
        }
    }

    #[test]
    fn pin_is_named_by_the_tsa_common_name_and_fingerprint() {
        let pin = TsaPin::from_pem(TSA.as_bytes(), CA.as_bytes()).unwrap();
        let name = pin.name();
        assert!(name.starts_with("unit test TSA (SHA-256 "), "{name}");
        assert_eq!(name.len(), "unit test TSA (SHA-256 )".len() + 16, "{name}");
    }

    #[test]
    fn unreadable_pem_is_a_certificate_error() {
        assert!(certificate_error(TsaPin::from_pem(b"", CA.as_bytes())).contains("no PEM certificate"));
        assert!(certificate_error(TsaPin::from_pem(TSA.as_bytes(), b"not a pem")).contains("no PEM certificate"));
        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        certificate_error(TsaPin::from_pem(broken.as_bytes(), CA.as_bytes()));
        let missing = TsaPin::load(Path::new("/nonexistent/tsa.pem"), Path::new("/nonexistent/ca.pem"));
        assert!(certificate_error(missing).contains("cannot read /nonexistent/tsa.pem"));
    }

    #[test]
    fn a_tsa_with_an_rsa_key_is_refused_when_pinned() {
        assert!(certificate_error(TsaPin::from_pem(RSA.as_bytes(), CA.as_bytes())).contains("only ECDSA"));
    }

    #[test]
    fn a_chain_in_the_tsa_certificate_file_is_refused() {
        let both = format!("{TSA}{CA}");
        assert!(certificate_error(TsaPin::from_pem(both.as_bytes(), CA.as_bytes())).contains("2 certificates"));
    }

    #[test]
    fn garbage_token_is_invalid_not_a_verdict_on_the_authority() {
        let pin = TsaPin::from_pem(TSA.as_bytes(), CA.as_bytes()).unwrap();
        assert!(matches!(verify_token(b"not a token", b"data", &pin), Err(TsaError::Invalid(_))));
    }

    #[test]
    fn subject_name_reads_the_common_name() {
        let der = CertificateDer::from_pem_slice(CA.as_bytes()).unwrap();
        assert_eq!(subject_name(&der).as_deref(), Some("unit test TSA CA"));
        assert_eq!(subject_name(&der[..40]), None);
    }
}
