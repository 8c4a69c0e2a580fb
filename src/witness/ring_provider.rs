//! sigstore's crypto on `ring`: the `sigstore_crypto::CryptoProvider` that the RFC 3161
//! code (`tsa`) hashes and verifies signatures with. sigstore-crypto's built-in provider is
//! aws-lc-rs, whose C build the box avoids (TLS and S3 signing already run on ring), so its
//! default features are off and this provider is installed instead, once per process.
//! Verification only: the box never signs through sigstore.

use ring::digest;
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use sigstore_crypto::{CryptoProvider, Error, HashContext, Result, SigningScheme};
use sigstore_types::HashAlgorithm;

/// The provider; stateless, so one static serves the whole process.
#[derive(Debug)]
pub struct RingProvider;

static RING_PROVIDER: RingProvider = RingProvider;

/// Makes `RingProvider` sigstore-crypto's process-wide provider. Idempotent: call it before
/// any sigstore operation (the `tsa` functions do). If another provider was installed first
/// it stays; sigstore allows only one per process.
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = sigstore_crypto::install_default_provider(&RING_PROVIDER);
    });
}

struct RingHash(digest::Context);

impl HashContext for RingHash {
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn finalize(self: Box<Self>) -> Vec<u8> {
        self.0.finish().as_ref().to_vec()
    }
}

fn digest_algorithm(algorithm: HashAlgorithm) -> Result<&'static digest::Algorithm> {
    match algorithm {
        HashAlgorithm::Sha2256 => Ok(&digest::SHA256),
        HashAlgorithm::Sha2384 => Ok(&digest::SHA384),
        HashAlgorithm::Sha2512 => Ok(&digest::SHA512),
        // HashAlgorithm is non_exhaustive: a future variant is refused, not guessed.
        other => Err(Error::UnsupportedAlgorithm(format!("ring provider cannot compute {other:?} digests"))),
    }
}

/// ring's algorithm for a scheme. The key bytes sigstore passes are the raw
/// subjectPublicKey contents, which is what ring's `UnparsedPublicKey` takes for every one
/// of these (SEC1 point, 32-byte Ed25519 key, PKCS#1 RSAPublicKey).
fn verification_algorithm(scheme: SigningScheme) -> Result<&'static dyn VerificationAlgorithm> {
    Ok(match scheme {
        SigningScheme::EcdsaP256Sha256 => &signature::ECDSA_P256_SHA256_ASN1,
        SigningScheme::EcdsaP256Sha384 => &signature::ECDSA_P256_SHA384_ASN1,
        SigningScheme::EcdsaP384Sha256 => &signature::ECDSA_P384_SHA256_ASN1,
        SigningScheme::EcdsaP384Sha384 => &signature::ECDSA_P384_SHA384_ASN1,
        SigningScheme::Ed25519 => &signature::ED25519,
        SigningScheme::RsaPkcs1Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        SigningScheme::RsaPkcs1Sha384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        SigningScheme::RsaPkcs1Sha512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        SigningScheme::RsaPssSha256 => &signature::RSA_PSS_2048_8192_SHA256,
        SigningScheme::RsaPssSha384 => &signature::RSA_PSS_2048_8192_SHA384,
        SigningScheme::RsaPssSha512 => &signature::RSA_PSS_2048_8192_SHA512,
        // ML-DSA (and anything added later) is not in ring.
        other => return Err(Error::UnsupportedAlgorithm(format!("ring provider cannot verify {}", other.name()))),
    })
}

impl CryptoProvider for RingProvider {
    fn hash(&self, algorithm: HashAlgorithm) -> Result<Box<dyn HashContext>> {
        Ok(Box::new(RingHash(digest::Context::new(digest_algorithm(algorithm)?))))
    }

    // One-shot digests without the boxed context; ring's output lengths are fixed by the
    // algorithm, so the copies cannot panic.
    fn sha256(&self, data: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
        out
    }

    fn sha384(&self, data: &[u8]) -> [u8; 48] {
        let mut out = [0u8; 48];
        out.copy_from_slice(digest::digest(&digest::SHA384, data).as_ref());
        out
    }

    fn sha512(&self, data: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(digest::digest(&digest::SHA512, data).as_ref());
        out
    }

    fn verify_raw(&self, scheme: SigningScheme, spki_pubkey_bytes: &[u8], data: &[u8], signature: &[u8]) -> Result<()> {
        UnparsedPublicKey::new(verification_algorithm(scheme)?, spki_pubkey_bytes)
            .verify(data, signature)
            .map_err(|_| Error::Verification(format!("{} signature invalid", scheme.name())))
    }

    /// ring verifies only over the message itself, never over a digest handed in, and
    /// RFC 3161 verification does not need it (the CMS signature is over the signed
    /// attributes, which sigstore passes whole).
    fn verify_prehashed(&self, scheme: SigningScheme, _key: &[u8], _digest: &[u8], _signature: &[u8]) -> Result<()> {
        Err(Error::UnsupportedAlgorithm(format!("ring provider cannot verify prehashed {} signatures", scheme.name())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

    #[test]
    fn hashes_match_the_published_test_vectors() {
        let p = RingProvider;
        assert_eq!(hex::encode(p.sha256(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(hex::encode(p.sha384(b"abc")).starts_with("cb00753f45a35e8bb5a03d699ac65007"));
        assert!(hex::encode(p.sha512(b"abc")).starts_with("ddaf35a193617abacc417349ae204131"));
        let mut ctx = p.hash(HashAlgorithm::Sha2256).unwrap();
        ctx.update(b"a");
        ctx.update(b"bc");
        assert_eq!(ctx.finalize(), p.sha256(b"abc").to_vec());
    }

    #[test]
    fn ecdsa_signatures_verify_and_tampered_ones_do_not() {
        let rng = SystemRandom::new();
        for (signing, scheme) in [
            (&ECDSA_P256_SHA256_ASN1_SIGNING, SigningScheme::EcdsaP256Sha256),
            (&ECDSA_P384_SHA384_ASN1_SIGNING, SigningScheme::EcdsaP384Sha384),
        ] {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
            let key = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref(), &rng).unwrap();
            let sig = key.sign(&rng, b"checkpoint").unwrap();
            let public = key.public_key().as_ref();
            RingProvider.verify_raw(scheme, public, b"checkpoint", sig.as_ref()).unwrap();
            assert!(RingProvider.verify_raw(scheme, public, b"checkpoinT", sig.as_ref()).is_err());
        }
    }

    #[test]
    fn ml_dsa_and_prehashed_are_refused_as_unsupported() {
        let refused = RingProvider.verify_raw(SigningScheme::MlDsa65, &[0; 1952], b"x", &[0; 3309]);
        assert!(matches!(refused, Err(Error::UnsupportedAlgorithm(_))));
        let refused = RingProvider.verify_prehashed(SigningScheme::EcdsaP256Sha256, &[4; 65], &[0; 32], &[0; 64]);
        assert!(matches!(refused, Err(Error::UnsupportedAlgorithm(_))));
    }
}
