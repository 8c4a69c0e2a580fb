//! Argon2id hashing of PINs and tokens, and the random secrets the box makes.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use ring::rand::{SecureRandom, SystemRandom};

/// OWASP's Argon2id baseline (19 MiB, 2 passes, 1 lane): about 40 ms on the box's CPU,
/// which makes guessing a 6-digit PIN offline cost hours even with the hash in hand.
fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(19 * 1024, 2, 1, None).expect("valid parameters"))
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    SystemRandom::new().fill(&mut buf).expect("the system RNG works");
    hex::encode(buf)
}

/// The PHC string of `secret` with a fresh salt.
pub fn hash(secret: &str) -> String {
    let mut salt = [0u8; 16];
    SystemRandom::new().fill(&mut salt).expect("the system RNG works");
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
    hasher().hash_password(secret.as_bytes(), &salt).expect("Argon2id hashes any input").to_string()
}

/// Whether `secret` matches the stored PHC string. A malformed string never matches.
pub fn verify(secret: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| hasher().verify_password(secret.as_bytes(), &h).is_ok())
}

/// Spends the time of one verification, so that an unknown name answers as slowly as a
/// wrong PIN (nobody learns names by timing).
pub fn verify_nothing(secret: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let phc = DUMMY.get_or_init(|| hash("not a real secret"));
    let _ = verify(secret, phc);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify_only_the_secret() {
        let a = hash("4821");
        let b = hash("4821");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify("4821", &a) && verify("4821", &b));
        assert!(!verify("4822", &a));
        assert!(!verify("4821", "not a phc string"));
        assert!(!a.contains("4821"));
    }
}
