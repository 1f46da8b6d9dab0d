#!/usr/bin/env python3
"""Writes plugins/jwt-auth/fixtures.ts: keys and tokens for the jwt-auth and admin-gate
suites, made with real libraries (PyJWT and cryptography), since a plugin's isolate can
verify signatures but not make them.

    pip install -r scripts/requirements-test.txt
    python3 plugins/jwt-auth/make_fixtures.py

Every run makes new keys, so every token changes with them; the suites only use what
this file exports. Tokens never expire in CI: they are issued at ISSUED_AT (2024-01-01)
and expire at FAR (2100-01-01), except those made for the time tests, which set the
suite's clock (`t.clock.set`) to fixed times around ISSUED_AT. Tokens that attack the
verifier (alg none, algorithm confusion, kid tricks, embedded keys) are built by hand
here, the way an attacker would, since PyJWT refuses to make most of them.

plugins/test_jwt_auth.py signs its tokens live instead, for a real proxy.
"""

import base64
import hashlib
import hmac
import json
import secrets
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

HERE = Path(__file__).resolve().parent
ISSUER = "https://idp.example.test/"
AUDIENCE = "orders-api"
ISSUED_AT = 1704067200  # 2024-01-01T00:00:00Z
FAR = 4102444800  # 2100-01-01T00:00:00Z


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def pem(public_key) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def rsa_key(bits: int = 2048):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


RSA_1 = rsa_key()
RSA_2 = rsa_key()
RSA_ATTACKER = rsa_key()
RSA_SHORT = rsa_key(1024)
EC_256 = ec.generate_private_key(ec.SECP256R1())
EC_384 = ec.generate_private_key(ec.SECP384R1())
EC_256_ATTACKER = ec.generate_private_key(ec.SECP256R1())
ED = ed25519.Ed25519PrivateKey.generate()
# RFC 7518 §3.2: at least as long as the hash.
SECRET_256 = secrets.token_hex(16)  # 32 characters
SECRET_384 = secrets.token_hex(24)
SECRET_512 = secrets.token_hex(32)
SECRET_BASE64_BYTES = secrets.token_bytes(32)


def jwk(public_key, kid=None, **extra) -> dict:
    if isinstance(public_key, rsa.RSAPublicKey):
        out = RSAAlgorithm.to_jwk(public_key, as_dict=True)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        out = ECAlgorithm.to_jwk(public_key, as_dict=True)
    else:
        out = OKPAlgorithm.to_jwk(public_key, as_dict=True)
    if kid is not None:
        out["kid"] = kid
    out.update(extra)
    return out


def claims(**override) -> dict:
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": ISSUED_AT,
        "exp": FAR,
        "roles": ["orders-reader"],
        "scope": "orders:read orders:write",
        "email": "alice@example.test",
    }
    base.update(override)
    return {k: v for k, v in base.items() if v is not None}


def sign(alg: str, key, kid=None, payload=None, **headers) -> str:
    if kid is not None:
        headers["kid"] = kid
    return jwt.encode(payload if payload is not None else claims(), key, algorithm=alg, headers=headers or None)


def by_hand(header: dict, payload: dict, signer) -> str:
    """A token signed by `signer(signing_input) -> bytes`, with exactly this header."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    return f"{signing_input}.{b64url(signer(signing_input.encode()))}"


def hs256(key: bytes):
    return lambda data: hmac.new(key, data, hashlib.sha256).digest()


def rs256(key):
    return lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def es256_der(key):
    return lambda data: key.sign(data, ec.ECDSA(hashes.SHA256()))


TOKENS = {
    # One valid token per algorithm.
    "HS256": sign("HS256", SECRET_256, "hs-256"),
    "HS384": sign("HS384", SECRET_384, "hs-384"),
    "HS512": sign("HS512", SECRET_512, "hs-512"),
    "RS256": sign("RS256", RSA_1, "rsa-1"),
    "RS384": sign("RS384", RSA_1, "rsa-1"),
    "RS512": sign("RS512", RSA_1, "rsa-1"),
    "PS256": sign("PS256", RSA_1, "rsa-1"),
    "PS384": sign("PS384", RSA_1, "rsa-1"),
    "PS512": sign("PS512", RSA_1, "rsa-1"),
    "ES256": sign("ES256", EC_256, "ec-256"),
    "ES384": sign("ES384", EC_384, "ec-384"),
    "EdDSA": sign("EdDSA", ED, "ed-1"),
}

SPECIAL = {
    # Keys and rotation.
    "rs256NoKid": sign("RS256", RSA_1),
    "rs256Rotated": sign("RS256", RSA_2, "rsa-2"),
    "hs256Base64Secret": sign("HS256", SECRET_BASE64_BYTES, "hs-b64"),
    "rs256ShortKey": by_hand({"alg": "RS256", "kid": "rsa-short"}, claims(), rs256(RSA_SHORT)),
    # Signed by keys nobody configured.
    "forgedRs256": sign("RS256", RSA_ATTACKER, "rsa-1"),
    "forgedEs256": sign("ES256", EC_256_ATTACKER, "ec-256"),
    "forgedHs256": sign("HS256", "an-attacker-secret-of-32-bytes!!", "hs-256"),
    "unknownKid": sign("RS256", RSA_ATTACKER, "rsa-9"),
    "unknownKid2": sign("RS256", RSA_ATTACKER, "rsa-10"),
    # alg none, in the spellings libraries have fallen for.
    "algNone": f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(claims())}.",
    "algNoneCapital": f"{segment({'alg': 'None'})}.{segment(claims())}.",
    "algNoneUpper": f"{segment({'alg': 'NONE'})}.{segment(claims())}.",
    "algNoneSigned": f"{segment({'alg': 'none'})}.{segment(claims())}.{b64url(b'not-a-signature')}",
    "algMissing": by_hand({"typ": "JWT"}, claims(), hs256(SECRET_256.encode())),
    "algUnknown": by_hand({"alg": "HS1"}, claims(), hs256(SECRET_256.encode())),
    # Algorithm confusion: the RSA public key (as PEM text, or as JWK JSON) used as an
    # HMAC secret, which a verifier that trusts `alg` would accept.
    "hs256WithPublicPem": by_hand({"alg": "HS256", "kid": "rsa-1"}, claims(), hs256(pem(RSA_1.public_key()).encode())),
    "hs256WithPublicJwk": by_hand(
        {"alg": "HS256", "kid": "rsa-1"}, claims(), hs256(json.dumps(jwk(RSA_1.public_key())).encode())
    ),
    # A JWKS `oct` key is not an HMAC secret either.
    "hs256WithJwksOct": by_hand({"alg": "HS256", "kid": "jwks-oct"}, claims(), hs256(b"an-oct-key-in-the-jwks-32-bytes!")),
    # Another RSA algorithm than the one the token says.
    "ps256SignedPkcs1": by_hand({"alg": "PS256", "kid": "rsa-1"}, claims(), rs256(RSA_1)),
    # ES256 with the DER signature of X.509 instead of JWS's r||s.
    "es256Der": by_hand({"alg": "ES256", "kid": "ec-256"}, claims(), es256_der(EC_256)),
    # kid tricks: a kid is a lookup key, never a path, a query or a URL.
    "kidPathDevNull": by_hand({"alg": "HS256", "kid": "../../../../../../dev/null"}, claims(), hs256(b"")),
    "kidSqlInjection": by_hand({"alg": "HS256", "kid": "x' UNION SELECT 'key' --"}, claims(), hs256(b"key")),
    "kidUrl": sign("RS256", RSA_ATTACKER, "https://attacker.example/jwks.json"),
    "kidNumber": by_hand({"alg": "RS256", "kid": 1}, claims(), rs256(RSA_1)),
    "kidObject": by_hand({"alg": "RS256", "kid": {"$ne": ""}}, claims(), rs256(RSA_1)),
    "kidTooLong": by_hand({"alg": "RS256", "kid": "k" * 300}, claims(), rs256(RSA_1)),
    # Keys the token carries or points at are never used.
    "embeddedJwk": sign("RS256", RSA_ATTACKER, "attacker", jwk=jwk(RSA_ATTACKER.public_key())),
    "jkuHeader": sign("RS256", RSA_ATTACKER, "rsa-1", jku="https://attacker.example/jwks.json"),
    "x5uHeader": sign("RS256", RSA_ATTACKER, "rsa-1", x5u="https://attacker.example/cert.pem"),
    "critHeader": sign("RS256", RSA_1, "rsa-1", crit=["exp"]),
    # Time claims (RS256, rsa-1), for a clock set around ISSUED_AT.
    "expiresInAnHour": sign("RS256", RSA_1, "rsa-1", claims(exp=ISSUED_AT + 3600)),
    "notBeforeTenMinutes": sign("RS256", RSA_1, "rsa-1", claims(nbf=ISSUED_AT + 600)),
    "issuedInTenMinutes": sign("RS256", RSA_1, "rsa-1", claims(iat=ISSUED_AT + 600)),
    "noExp": sign("RS256", RSA_1, "rsa-1", claims(exp=None)),
    "noIat": sign("RS256", RSA_1, "rsa-1", claims(iat=None)),
    "expString": by_hand({"alg": "RS256", "kid": "rsa-1"}, claims(exp=str(FAR)), rs256(RSA_1)),
    "expFraction": sign("RS256", RSA_1, "rsa-1", claims(exp=ISSUED_AT + 3600.5)),
    # Issuer and audience.
    "audList": sign("RS256", RSA_1, "rsa-1", claims(aud=["billing-api", AUDIENCE])),
    "audOther": sign("RS256", RSA_1, "rsa-1", claims(aud="billing-api")),
    "audOtherList": sign("RS256", RSA_1, "rsa-1", claims(aud=["billing-api", "crm-api"])),
    "noAud": sign("RS256", RSA_1, "rsa-1", claims(aud=None)),
    "issOther": sign("RS256", RSA_1, "rsa-1", claims(iss="https://attacker.example/")),
    "noIss": sign("RS256", RSA_1, "rsa-1", claims(iss=None)),
    # Claim shapes for the user and header mappings.
    "richClaims": sign(
        "RS256",
        RSA_1,
        "rsa-1",
        claims(
            sub="bob",
            roles=None,
            scope=None,
            scp=["orders:read", "invoices:read"],
            realm_access={"roles": ["billing", "support"]},
            **{"https://example.test/tenant": "acme"},
            groups="ops, oncall",
            name="Bob\r\nX-Injected: yes",
            age=42,
            verified=True,
            address={"city": "Lyon"},
        ),
    ),
    "numericSub": sign("RS256", RSA_1, "rsa-1", claims(sub=1234, roles="admin auditor")),
    "noSub": sign("RS256", RSA_1, "rsa-1", claims(sub=None)),
    # For admin-gate: administrators, of some tenants.
    "admin": sign("RS256", RSA_1, "rsa-1", claims(sub="root", roles=["admin"], tenants=["acme", "globex"])),
    "adminHs256": sign("HS256", SECRET_256, "hs-256", claims(sub="root", roles=["admin"], tenants=["acme"])),
    "superuser": sign("ES256", EC_256, "ec-256", claims(sub="sam", roles="superuser", tenants="initech")),
    "adminExpired": sign("RS256", RSA_1, "rsa-1", claims(sub="root", roles=["admin"], exp=ISSUED_AT + 3600)),
    "adminOtherAudience": sign("RS256", RSA_1, "rsa-1", claims(sub="root", roles=["admin"], aud="billing-api")),
    "adminForged": sign("RS256", RSA_ATTACKER, "rsa-1", claims(sub="mallory", roles=["admin"])),
}

KEYS = {
    "secret256": SECRET_256,
    "secret384": SECRET_384,
    "secret512": SECRET_512,
    "secretBase64": base64.b64encode(SECRET_BASE64_BYTES).decode(),
    "rsa1Pem": pem(RSA_1.public_key()),
    "rsa2Pem": pem(RSA_2.public_key()),
    "rsaShortPem": pem(RSA_SHORT.public_key()),
    "ec256Pem": pem(EC_256.public_key()),
    "ec384Pem": pem(EC_384.public_key()),
    "edPem": pem(ED.public_key()),
    "rsa1Jwk": jwk(RSA_1.public_key(), "rsa-1"),
    "rsa2Jwk": jwk(RSA_2.public_key(), "rsa-2"),
    "rsaShortJwk": jwk(RSA_SHORT.public_key(), "rsa-short"),
    "ec256Jwk": jwk(EC_256.public_key(), "ec-256"),
    "ec384Jwk": jwk(EC_384.public_key(), "ec-384"),
    "edJwk": jwk(ED.public_key(), "ed-1"),
}

JWKS = {
    # What an issuer publishes: its signing keys, and keys the verifier must skip.
    "initial": {
        "keys": [
            KEYS["rsa1Jwk"],
            KEYS["ec256Jwk"],
            KEYS["ec384Jwk"],
            KEYS["edJwk"],
            {"kty": "oct", "kid": "jwks-oct", "k": b64url(b"an-oct-key-in-the-jwks-32-bytes!")},
            jwk(RSA_2.public_key(), "rsa-enc", use="enc"),
            KEYS["rsaShortJwk"],
            {"kty": "EC", "crv": "secp256k1", "kid": "k1", "x": "AA", "y": "AA"},
        ]
    },
    # After rotation: rsa-2 published beside rsa-1.
    "rotated": {"keys": [KEYS["rsa1Jwk"], KEYS["rsa2Jwk"]]},
    # rsa-1 pinned to RS256 by its `alg`.
    "pinned": {"keys": [{**KEYS["rsa1Jwk"], "alg": "RS256", "use": "sig"}]},
    # Keys without kid.
    "noKids": {"keys": [{k: v for k, v in KEYS["rsa1Jwk"].items() if k != "kid"}]},
}

HEADER = """// Generated by plugins/jwt-auth/make_fixtures.py with PyJWT {pyjwt} and cryptography:
// keys and tokens for the jwt-auth and admin-gate suites. Do not edit; run the script.
import type {{ Json }} from "weir";
"""


def main():
    import cryptography

    out = [HEADER.format(pyjwt=jwt.__version__)]

    def member_type(value) -> str:
        if isinstance(value, str):
            return "string"
        if isinstance(value, dict):
            return "{ [member: string]: Json }"
        return "Json"

    def const(name, value, comment, kind=None):
        # The members are named in the type, so a suite naming a token or a key that does
        # not exist does not type-check.
        if kind is None:
            kind = "{\n" + "".join(f"  {json.dumps(k)}: {member_type(v)};\n" for k, v in value.items()) + "}"
        out.append(f"/** {comment} */")
        out.append(f"export const {name}: {kind} = {json.dumps(value, indent=2)};\n")

    const("ISSUER", ISSUER, "The `iss` of the tokens.", "string")
    const("AUDIENCE", AUDIENCE, "The `aud` of the tokens.", "string")
    const("ISSUED_AT", ISSUED_AT, "The `iat` of the tokens (2024-01-01T00:00:00Z), seconds.", "number")
    const("FAR", FAR, "The `exp` of the tokens (2100-01-01T00:00:00Z), seconds.", "number")
    const("KEYS", KEYS, "Verification keys: HMAC secrets, public keys as PEM and JWK.")
    const("JWKS", JWKS, "JWKS documents an issuer could serve.")
    const("TOKENS", TOKENS, "A valid token per algorithm (sub alice, roles [orders-reader], scope orders:read orders:write).")
    const("SPECIAL", SPECIAL, "Tokens for particular cases; see make_fixtures.py.")
    (HERE / "fixtures.ts").write_text("\n".join(out))
    print(f"wrote {HERE / 'fixtures.ts'} (PyJWT {jwt.__version__}, cryptography {cryptography.__version__})")


if __name__ == "__main__":
    main()
