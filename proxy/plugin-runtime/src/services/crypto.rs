//! `ctx.crypto`: hashing, HMAC, constant-time comparison, signature verification and
//! random bytes, done in Rust with `ring`, since QuickJS has no crypto of its own.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use ring::{digest, hmac};
use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;
use spki::der::Decode;
use spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};
use subtle::ConstantTimeEq;

/// Most random bytes one call may ask for.
pub(crate) const MAX_RANDOM_BYTES: usize = 65_536;

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// A crypto call the plugin got wrong; becomes a JavaScript `TypeError`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum CryptoError {
    /// Not a supported algorithm name.
    #[error("unsupported algorithm {0:?} (expected {1})")]
    Algorithm(String, &'static str),
    /// Not a supported encoding name, or text not in that encoding.
    #[error("{0}")]
    Encoding(String),
    /// The key is neither a PEM public key nor a JWK this algorithm can use.
    #[error("invalid key: {0}")]
    Key(String),
    /// Too many random bytes asked for, or no randomness available.
    #[error("{0}")]
    Random(String),
}

/// A text form of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    Hex,
    Base64,
    Base64Url,
    Utf8,
}

impl Encoding {
    pub(crate) fn parse(name: &str) -> Result<Self, CryptoError> {
        match name {
            "hex" => Ok(Self::Hex),
            "base64" => Ok(Self::Base64),
            "base64url" => Ok(Self::Base64Url),
            "utf8" => Ok(Self::Utf8),
            other => Err(CryptoError::Encoding(format!(
                "unknown encoding {other:?} (expected hex, base64, base64url or utf8)"
            ))),
        }
    }
}

/// Bytes as text.
pub(crate) fn encode(bytes: &[u8], encoding: Encoding) -> String {
    match encoding {
        Encoding::Hex => hex::encode(bytes),
        Encoding::Base64 => STANDARD.encode(bytes),
        Encoding::Base64Url => URL_SAFE_NO_PAD.encode(bytes),
        Encoding::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Text back to bytes; base64url accepts padding or none, as JWTs and JWKs vary.
pub(crate) fn decode(text: &str, encoding: Encoding) -> Result<Vec<u8>, CryptoError> {
    let invalid =
        |e: &dyn std::fmt::Display| CryptoError::Encoding(format!("not {encoding:?}: {e}"));
    match encoding {
        Encoding::Hex => hex::decode(text).map_err(|e| invalid(&e)),
        Encoding::Base64 => STANDARD.decode(text).map_err(|e| invalid(&e)),
        Encoding::Base64Url => URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|e| invalid(&e)),
        Encoding::Utf8 => Ok(text.as_bytes().to_vec()),
    }
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, data).as_ref().to_vec()
}

/// HMAC of `data` with `key`; `algorithm` is `SHA-256` or `SHA-512`.
pub(crate) fn hmac(algorithm: &str, key: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let algorithm = match algorithm {
        "SHA-256" => hmac::HMAC_SHA256,
        "SHA-512" => hmac::HMAC_SHA512,
        other => return Err(CryptoError::Algorithm(other.into(), "SHA-256 or SHA-512")),
    };
    let key = hmac::Key::new(algorithm, key);
    Ok(hmac::sign(&key, data).as_ref().to_vec())
}

/// Whether `a` equals `b`, in time that depends only on their lengths.
pub(crate) fn timing_safe_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// `length` random bytes from the operating system.
pub(crate) fn random_bytes(length: usize) -> Result<Vec<u8>, CryptoError> {
    if length > MAX_RANDOM_BYTES {
        return Err(CryptoError::Random(format!(
            "at most {MAX_RANDOM_BYTES} random bytes per call, asked for {length}"
        )));
    }
    let mut bytes = vec![0; length];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CryptoError::Random("no randomness available".into()))?;
    Ok(bytes)
}

/// A random (version 4) UUID.
pub(crate) fn random_uuid() -> Result<String, CryptoError> {
    let mut bytes = random_bytes(16)?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

/// A signature algorithm as JWS names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SignatureAlgorithm {
    Rs256,
    Es256,
    EdDsa,
}

/// A public key as a JWK (RFC 7517), the form JWKS endpoints publish.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// Whether `signature` is a valid signature of `data` by `key`.
///
/// `algorithm` is `RS256` (RSASSA-PKCS1-v1_5 with SHA-256, keys of 2048 bits or more),
/// `ES256` (ECDSA P-256 with SHA-256, the 64-byte `r‖s` signature of JWS) or `EdDSA`
/// (Ed25519). `key` is a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) or a JWK as JSON.
pub(crate) fn verify(
    algorithm: &str,
    key: &str,
    data: &[u8],
    signature: &[u8],
) -> Result<bool, CryptoError> {
    let algorithm = match algorithm {
        "RS256" => SignatureAlgorithm::Rs256,
        "ES256" => SignatureAlgorithm::Es256,
        "EdDSA" => SignatureAlgorithm::EdDsa,
        other => {
            return Err(CryptoError::Algorithm(
                other.into(),
                "RS256, ES256 or EdDSA",
            ));
        }
    };
    let key = key.trim();
    if key.starts_with("-----BEGIN") {
        verify_spki(algorithm, key, data, signature)
    } else {
        verify_jwk(algorithm, key, data, signature)
    }
}

fn verify_spki(
    algorithm: SignatureAlgorithm,
    pem: &str,
    data: &[u8],
    signature: &[u8],
) -> Result<bool, CryptoError> {
    let der = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| CryptoError::Key(format!("not a PEM PUBLIC KEY: {e}")))?;
    let info = SubjectPublicKeyInfoRef::from_der(der.as_ref())
        .map_err(|e| CryptoError::Key(format!("not a SubjectPublicKeyInfo: {e}")))?;
    let expected = match algorithm {
        SignatureAlgorithm::Rs256 => RSA_ENCRYPTION,
        SignatureAlgorithm::Es256 => EC_PUBLIC_KEY,
        SignatureAlgorithm::EdDsa => ED25519,
    };
    if info.algorithm.oid != expected {
        return Err(CryptoError::Key(format!(
            "a {} key cannot verify {algorithm:?} signatures",
            info.algorithm.oid
        )));
    }
    let key = info.subject_public_key.raw_bytes();
    let verifier: &dyn signature::VerificationAlgorithm = match algorithm {
        SignatureAlgorithm::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        SignatureAlgorithm::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
        SignatureAlgorithm::EdDsa => &signature::ED25519,
    };
    Ok(UnparsedPublicKey::new(verifier, key)
        .verify(data, signature)
        .is_ok())
}

fn verify_jwk(
    algorithm: SignatureAlgorithm,
    json: &str,
    data: &[u8],
    signature: &[u8],
) -> Result<bool, CryptoError> {
    let jwk: Jwk = serde_json::from_str(json)
        .map_err(|e| CryptoError::Key(format!("neither PEM nor a JWK: {e}")))?;
    let part = |value: &Option<String>, name: &str| -> Result<Vec<u8>, CryptoError> {
        let text = value
            .as_deref()
            .ok_or_else(|| CryptoError::Key(format!("the JWK has no {name:?}")))?;
        decode(text, Encoding::Base64Url)
            .map_err(|e| CryptoError::Key(format!("JWK member {name:?}: {e}")))
    };
    let curve = jwk.crv.as_deref().unwrap_or("");
    match (algorithm, jwk.kty.as_str()) {
        (SignatureAlgorithm::Rs256, "RSA") => {
            let key = RsaPublicKeyComponents {
                n: part(&jwk.n, "n")?,
                e: part(&jwk.e, "e")?,
            };
            Ok(key
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, data, signature)
                .is_ok())
        }
        (SignatureAlgorithm::Es256, "EC") if curve == "P-256" => {
            let mut point = vec![0x04];
            point.extend(part(&jwk.x, "x")?);
            point.extend(part(&jwk.y, "y")?);
            Ok(
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(data, signature)
                    .is_ok(),
            )
        }
        (SignatureAlgorithm::EdDsa, "OKP") if curve == "Ed25519" => Ok(UnparsedPublicKey::new(
            &signature::ED25519,
            part(&jwk.x, "x")?,
        )
        .verify(data, signature)
        .is_ok()),
        (algorithm, kty) => Err(CryptoError::Key(format!(
            "a JWK of kty {kty:?} (crv {curve:?}) cannot verify {algorithm:?} signatures"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};

    // Made with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`; the
    // signature is `openssl dgst -sha256 -sign` of RSA_MESSAGE.
    const RSA_PUBLIC_PEM: &str = include_str!("testdata/rsa-public.pem");
    const RSA_SIGNATURE_B64: &str = include_str!("testdata/rsa-signature.b64");
    const RSA_JWK: &str = include_str!("testdata/rsa-public.jwk.json");
    const RSA_MESSAGE: &[u8] = b"weir signs this";

    #[test]
    fn sha256_and_hmac_match_known_vectors() {
        assert_eq!(
            hex::encode(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // RFC 4231, test case 2.
        let mac = hmac("SHA-256", b"Jefe", b"what do ya want for nothing?").unwrap();
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let mac = hmac("SHA-512", b"Jefe", b"what do ya want for nothing?").unwrap();
        assert!(hex::encode(mac).starts_with("164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd6"));
        assert!(matches!(
            hmac("MD5", b"k", b"d"),
            Err(CryptoError::Algorithm(..))
        ));
    }

    #[test]
    fn comparison_needs_equal_length_and_content() {
        assert!(timing_safe_equal(b"token", b"token"));
        assert!(!timing_safe_equal(b"token", b"tokeN"));
        assert!(!timing_safe_equal(b"token", b"token2"));
    }

    #[test]
    fn encodings_round_trip_and_refuse_garbage() {
        let bytes = [0u8, 255, 16, 32];
        for encoding in [Encoding::Hex, Encoding::Base64, Encoding::Base64Url] {
            assert_eq!(decode(&encode(&bytes, encoding), encoding).unwrap(), bytes);
        }
        assert_eq!(decode("AP8QIA==", Encoding::Base64Url).unwrap(), bytes);
        assert!(decode("zz", Encoding::Hex).is_err());
        assert!(Encoding::parse("rot13").is_err());
    }

    #[test]
    fn random_bytes_are_random_and_bounded() {
        assert_ne!(random_bytes(32).unwrap(), random_bytes(32).unwrap());
        assert!(random_bytes(MAX_RANDOM_BYTES + 1).is_err());
        let uuid = random_uuid().unwrap();
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
    }

    #[test]
    fn rs256_verifies_with_pem_and_jwk_keys() {
        let signature = decode(RSA_SIGNATURE_B64.trim(), Encoding::Base64).unwrap();
        assert!(verify("RS256", RSA_PUBLIC_PEM, RSA_MESSAGE, &signature).unwrap());
        assert!(verify("RS256", RSA_JWK, RSA_MESSAGE, &signature).unwrap());
        assert!(!verify("RS256", RSA_PUBLIC_PEM, b"tampered", &signature).unwrap());
        assert!(matches!(
            verify("ES256", RSA_PUBLIC_PEM, RSA_MESSAGE, &signature),
            Err(CryptoError::Key(_))
        ));
    }

    #[test]
    fn es256_verifies_jws_signatures() {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        let signature = pair.sign(&rng, b"payload").unwrap();
        let point = pair.public_key().as_ref();
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256",
            "x": encode(&point[1..33], Encoding::Base64Url),
            "y": encode(&point[33..], Encoding::Base64Url),
        })
        .to_string();
        assert!(verify("ES256", &jwk, b"payload", signature.as_ref()).unwrap());
        assert!(!verify("ES256", &jwk, b"other", signature.as_ref()).unwrap());
    }

    #[test]
    fn eddsa_verifies_with_a_jwk() {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let signature = pair.sign(b"payload");
        let jwk = serde_json::json!({
            "kty": "OKP", "crv": "Ed25519",
            "x": encode(pair.public_key().as_ref(), Encoding::Base64Url),
        })
        .to_string();
        assert!(verify("EdDSA", &jwk, b"payload", signature.as_ref()).unwrap());
        assert!(!verify("EdDSA", &jwk, b"payloaD", signature.as_ref()).unwrap());
        assert!(matches!(
            verify("HS256", &jwk, b"", b""),
            Err(CryptoError::Algorithm(..))
        ));
        assert!(matches!(
            verify("EdDSA", "{}", b"", b""),
            Err(CryptoError::Key(_))
        ));
    }
}
