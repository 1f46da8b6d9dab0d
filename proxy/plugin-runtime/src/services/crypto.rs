//! `ctx.crypto`: hashing, HMAC, constant-time comparison, signature verification and
//! random bytes, done in Rust with `ring`, since QuickJS has no crypto of its own.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
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
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

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

/// base64 that decodes with or without padding.
const BASE64_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Text back to bytes; base64 and base64url accept padding or none, as JWTs, JWKs and
/// other producers vary.
pub(crate) fn decode(text: &str, encoding: Encoding) -> Result<Vec<u8>, CryptoError> {
    let invalid =
        |e: &dyn std::fmt::Display| CryptoError::Encoding(format!("not {encoding:?}: {e}"));
    match encoding {
        Encoding::Hex => hex::decode(text).map_err(|e| invalid(&e)),
        Encoding::Base64 => BASE64_ANY_PADDING.decode(text).map_err(|e| invalid(&e)),
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

/// HMAC of `data` with `key`; `algorithm` is `SHA-256`, `SHA-384` or `SHA-512`.
pub(crate) fn hmac(algorithm: &str, key: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let algorithm = match algorithm {
        "SHA-256" => hmac::HMAC_SHA256,
        "SHA-384" => hmac::HMAC_SHA384,
        "SHA-512" => hmac::HMAC_SHA512,
        other => {
            return Err(CryptoError::Algorithm(
                other.into(),
                "SHA-256, SHA-384 or SHA-512",
            ));
        }
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

/// A signature algorithm as JWS names it (RFC 7518, RFC 8037).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SignatureAlgorithm {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    EdDsa,
}

/// The kind of public key an algorithm verifies with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    /// An EC key on the curve of this OID and JWK `crv`.
    Ec(ObjectIdentifier, &'static str),
    Ed25519,
}

impl SignatureAlgorithm {
    const NAMES: &'static str = "RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA";

    /// The JWS name.
    fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::EdDsa => "EdDSA",
        }
    }

    fn parse(name: &str) -> Result<Self, CryptoError> {
        Ok(match name {
            "RS256" => Self::Rs256,
            "RS384" => Self::Rs384,
            "RS512" => Self::Rs512,
            "PS256" => Self::Ps256,
            "PS384" => Self::Ps384,
            "PS512" => Self::Ps512,
            "ES256" => Self::Es256,
            "ES384" => Self::Es384,
            "EdDSA" => Self::EdDsa,
            other => return Err(CryptoError::Algorithm(other.into(), Self::NAMES)),
        })
    }

    /// The RSA parameters of RSA algorithms (keys of 2048 to 8192 bits).
    fn rsa(self) -> Option<&'static signature::RsaParameters> {
        Some(match self {
            Self::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Self::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Self::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Self::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
            Self::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
            Self::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
            Self::Es256 | Self::Es384 | Self::EdDsa => return None,
        })
    }

    fn key_kind(self) -> KeyKind {
        match self {
            Self::Es256 => KeyKind::Ec(P256, "P-256"),
            Self::Es384 => KeyKind::Ec(P384, "P-384"),
            Self::EdDsa => KeyKind::Ed25519,
            _ => KeyKind::Rsa,
        }
    }

    /// The algorithm for a key's raw bytes (SubjectPublicKeyInfo's, or a JWK's point).
    fn verifier(self) -> &'static dyn signature::VerificationAlgorithm {
        match self {
            Self::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
            Self::Es384 => &signature::ECDSA_P384_SHA384_FIXED,
            Self::EdDsa => &signature::ED25519,
            rsa => rsa.rsa().unwrap_or(&signature::RSA_PKCS1_2048_8192_SHA256),
        }
    }
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
/// `algorithm` is a JWS name: `RS256`/`RS384`/`RS512` (RSASSA-PKCS1-v1_5), `PS256`/`PS384`/
/// `PS512` (RSASSA-PSS), both with keys of 2048 bits or more; `ES256`/`ES384` (ECDSA on
/// P-256/P-384, the fixed-size `r‖s` signature of JWS); `EdDSA` (Ed25519). `key` is a PEM
/// `PUBLIC KEY` (SubjectPublicKeyInfo) or a JWK as JSON, and must be of the algorithm's
/// kind: an RSA key given for ES256, or a P-256 key for ES384, is an error, never a
/// signature checked some other way.
pub(crate) fn verify(
    algorithm: &str,
    key: &str,
    data: &[u8],
    signature: &[u8],
) -> Result<bool, CryptoError> {
    let algorithm = SignatureAlgorithm::parse(algorithm)?;
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
    let fits = match algorithm.key_kind() {
        KeyKind::Rsa => info.algorithm.oid == RSA_ENCRYPTION,
        KeyKind::Ed25519 => info.algorithm.oid == ED25519,
        KeyKind::Ec(curve, _) => {
            info.algorithm.oid == EC_PUBLIC_KEY
                && info.algorithm.parameters_oid().ok() == Some(curve)
        }
    };
    if !fits {
        return Err(CryptoError::Key(format!(
            "a {} key{} cannot verify {} signatures",
            info.algorithm.oid,
            info.algorithm
                .parameters_oid()
                .map(|curve| format!(" on curve {curve}"))
                .unwrap_or_default(),
            algorithm.name()
        )));
    }
    let key = info.subject_public_key.raw_bytes();
    if algorithm.key_kind() == KeyKind::Rsa {
        check_rsa_size(rsa_modulus_len(key)?)?;
    }
    Ok(UnparsedPublicKey::new(algorithm.verifier(), key)
        .verify(data, signature)
        .is_ok())
}

/// RSA moduli ring verifies with, in bits.
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// Refuses an RSA key whose modulus (`bytes` long) ring would not verify with: an error
/// naming the size, rather than every signature seeming bad.
fn check_rsa_size(bytes: usize) -> Result<(), CryptoError> {
    let bits = bytes * 8;
    if RSA_BITS.contains(&bits) {
        Ok(())
    } else {
        Err(CryptoError::Key(format!(
            "an RSA key of {bits} bits (RSA keys need {} to {} bits)",
            RSA_BITS.start(),
            RSA_BITS.end()
        )))
    }
}

/// The length in bytes of the modulus of a DER `RSAPublicKey` (RFC 8017).
fn rsa_modulus_len(der: &[u8]) -> Result<usize, CryptoError> {
    use spki::der::Reader as _;
    let invalid = |e: spki::der::Error| CryptoError::Key(format!("not an RSA public key: {e}"));
    let mut reader = spki::der::SliceReader::new(der).map_err(invalid)?;
    reader
        .sequence(|fields| {
            let modulus = spki::der::asn1::UintRef::decode(fields)?;
            spki::der::asn1::UintRef::decode(fields)?;
            Ok(modulus.as_bytes().len())
        })
        .map_err(invalid)
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
    let verified = match (algorithm.key_kind(), jwk.kty.as_str()) {
        (KeyKind::Rsa, "RSA") => {
            let key = RsaPublicKeyComponents {
                n: part(&jwk.n, "n")?,
                e: part(&jwk.e, "e")?,
            };
            check_rsa_size(key.n.iter().skip_while(|byte| **byte == 0).count())?;
            algorithm
                .rsa()
                .is_some_and(|parameters| key.verify(parameters, data, signature).is_ok())
        }
        (KeyKind::Ec(_, crv), "EC") if curve == crv => {
            let mut point = vec![0x04];
            point.extend(part(&jwk.x, "x")?);
            point.extend(part(&jwk.y, "y")?);
            UnparsedPublicKey::new(algorithm.verifier(), point)
                .verify(data, signature)
                .is_ok()
        }
        (KeyKind::Ed25519, "OKP") if curve == "Ed25519" => {
            UnparsedPublicKey::new(algorithm.verifier(), part(&jwk.x, "x")?)
                .verify(data, signature)
                .is_ok()
        }
        (_, kty) => {
            return Err(CryptoError::Key(format!(
                "a JWK of kty {kty:?} (crv {curve:?}) cannot verify {} signatures",
                algorithm.name()
            )));
        }
    };
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};

    // Made with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`; the
    // signature is `openssl dgst -sha256 -sign` of RSA_MESSAGE.
    const RSA_PUBLIC_PEM: &str = include_str!("testdata/rsa-public.pem");
    const RSA_SIGNATURE_B64: &str = include_str!("testdata/rsa-signature.b64");
    const RSA_JWK: &str = include_str!("testdata/rsa-public.jwk.json");
    const RSA_MESSAGE: &[u8] = b"weir signs this";
    // Test keys made with `openssl genpkey` (RSA 2048, EC P-384 and P-256): private keys
    // as PKCS#8 DER, public keys as PEM.
    const RSA_TEST_PRIVATE: &[u8] = include_bytes!("testdata/rsa-test-private.pk8.der");
    const RSA_TEST_PUBLIC_PEM: &str = include_str!("testdata/rsa-test-public.pem");
    const P384_TEST_PRIVATE: &[u8] = include_bytes!("testdata/p384-test-private.pk8.der");
    const P384_TEST_PUBLIC_PEM: &str = include_str!("testdata/p384-test-public.pem");
    const P256_TEST_PUBLIC_PEM: &str = include_str!("testdata/p256-test-public.pem");
    const RSA1024_TEST_PUBLIC_PEM: &str = include_str!("testdata/rsa1024-test-public.pem");

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
        let mac = hmac("SHA-384", b"Jefe", b"what do ya want for nothing?").unwrap();
        assert_eq!(
            hex::encode(mac),
            "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e\
             8e2240ca5e69e2c78b3239ecfab21649"
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
        assert_eq!(
            decode("AP8QIA", Encoding::Base64).unwrap(),
            bytes,
            "unpadded base64"
        );
        assert_eq!(decode("AP8QIA==", Encoding::Base64).unwrap(), bytes);
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

    #[test]
    fn every_rsa_algorithm_verifies_its_own_signatures_only() {
        let rng = SystemRandom::new();
        let pair = RsaKeyPair::from_pkcs8(RSA_TEST_PRIVATE).unwrap();
        let public: RsaPublicKeyComponents<Vec<u8>> = pair.public().into();
        let jwk = serde_json::json!({
            "kty": "RSA",
            "n": encode(&public.n, Encoding::Base64Url),
            "e": encode(&public.e, Encoding::Base64Url),
        })
        .to_string();
        let algorithms: [(&str, &'static dyn signature::RsaEncoding); 6] = [
            ("RS256", &signature::RSA_PKCS1_SHA256),
            ("RS384", &signature::RSA_PKCS1_SHA384),
            ("RS512", &signature::RSA_PKCS1_SHA512),
            ("PS256", &signature::RSA_PSS_SHA256),
            ("PS384", &signature::RSA_PSS_SHA384),
            ("PS512", &signature::RSA_PSS_SHA512),
        ];
        for (name, padding) in algorithms {
            let mut signature = vec![0; pair.public().modulus_len()];
            pair.sign(padding, &rng, b"payload", &mut signature)
                .unwrap();
            for key in [RSA_TEST_PUBLIC_PEM, jwk.as_str()] {
                assert!(verify(name, key, b"payload", &signature).unwrap(), "{name}");
                assert!(
                    !verify(name, key, b"payloaD", &signature).unwrap(),
                    "{name}"
                );
                for (other, _) in algorithms.iter().filter(|(other, _)| *other != name) {
                    assert!(
                        !verify(other, key, b"payload", &signature).unwrap(),
                        "a {name} signature is not a {other} one"
                    );
                }
            }
        }
        assert!(matches!(
            verify("RS384", P384_TEST_PUBLIC_PEM, b"", b""),
            Err(CryptoError::Key(_))
        ));
    }

    #[test]
    fn es384_verifies_and_curves_must_match_the_algorithm() {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P384_SHA384_FIXED_SIGNING;
        let pair = EcdsaKeyPair::from_pkcs8(alg, P384_TEST_PRIVATE, &rng).unwrap();
        let signature = pair.sign(&rng, b"payload").unwrap();
        let point = pair.public_key().as_ref();
        let jwk = |crv: &str| {
            serde_json::json!({
                "kty": "EC", "crv": crv,
                "x": encode(&point[1..49], Encoding::Base64Url),
                "y": encode(&point[49..], Encoding::Base64Url),
            })
            .to_string()
        };
        for key in [P384_TEST_PUBLIC_PEM.to_owned(), jwk("P-384")] {
            assert!(verify("ES384", &key, b"payload", signature.as_ref()).unwrap());
            assert!(!verify("ES384", &key, b"other", signature.as_ref()).unwrap());
            assert!(
                matches!(
                    verify("ES256", &key, b"payload", signature.as_ref()),
                    Err(CryptoError::Key(_))
                ),
                "a P-384 key is not an ES256 key"
            );
        }
        for key in [P256_TEST_PUBLIC_PEM.to_owned(), jwk("P-256")] {
            assert!(
                matches!(
                    verify("ES384", &key, b"payload", signature.as_ref()),
                    Err(CryptoError::Key(_))
                ),
                "a P-256 key is not an ES384 key"
            );
        }
    }

    #[test]
    fn rsa_keys_out_of_the_verifiable_sizes_are_errors_not_bad_signatures() {
        let short_jwk = serde_json::json!({
            "kty": "RSA", "n": encode(&[0xc1; 128], Encoding::Base64Url), "e": "AQAB",
        })
        .to_string();
        for key in [RSA1024_TEST_PUBLIC_PEM, short_jwk.as_str()] {
            let error = verify("RS256", key, b"payload", &[0; 128]).unwrap_err();
            assert_eq!(
                error,
                CryptoError::Key(
                    "an RSA key of 1024 bits (RSA keys need 2048 to 8192 bits)".into()
                )
            );
        }
        let error = verify("ES256", RSA_TEST_PUBLIC_PEM, b"", b"").unwrap_err();
        assert!(
            error.to_string().contains("cannot verify ES256 signatures"),
            "{error}"
        );
    }
}
