"""jwt-auth and admin-gate in a real proxy, with tokens signed live by PyJWT and keys
served as a real JWKS by a local HTTP server.

`weir-proxy --config DIR` runs the plugins from their plugin.yaml (the ConfigMap, so the
modules the compiler links, jwt.ts included; the Plugin with a config pointing at the
local JWKS, its HMAC secrets from a Secret through secretRefs) in front of a backend that
answers with what it received. What the suites under `weir-proxy plugin test` cannot see
is checked here: the compiled ConfigMaps, the real fetch of the JWKS through
ctx.services.http (allowed to reach 127.0.0.1 by --plugin-fetch-allow), the proxy
applying the header edits, and key rotation as an issuer does it. Also: the suites'
fixture tokens verify with PyJWT, and admin-gate's schema repeats jwt-auth's verification
fields exactly.

The proxy is $WEIR_PROXY, or target/debug/weir-proxy (see test_plugins.py, whose
helpers this uses)."""

import copy
import hashlib
import hmac
import http.server
import importlib.util
import json
import re
import secrets
import threading
import time

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from test_plugins import PLUGINS, Echo, Proxy, check, manifest

ISSUER = "https://idp.example.test/"
AUDIENCE = "orders-api"
HOST = "jwt.example.test"
ALGORITHMS = ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]
HMAC_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}


def load_fixture_maker():
    """plugins/jwt-auth/make_fixtures.py as a module (its directory is no package name):
    its `jwk` turns public keys into JWKs here as for the suites' fixtures."""
    path = PLUGINS / "jwt-auth" / "make_fixtures.py"
    spec = importlib.util.spec_from_file_location("jwt_auth_make_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fixture_maker = load_fixture_maker()


def public_jwk(private_key, kid: str) -> dict:
    return fixture_maker.jwk(private_key.public_key(), kid, use="sig")


class Issuer:
    """An identity provider: signing keys, and its JWKS served over HTTP on 127.0.0.1."""

    def __init__(self):
        self.secrets = {alg: secrets.token_bytes(n) for alg, n in HMAC_BYTES.items()}
        self.private = {
            "rsa-1": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "p256-1": ec.generate_private_key(ec.SECP256R1()),
            "p384-1": ec.generate_private_key(ec.SECP384R1()),
            "ed-1": ed25519.Ed25519PrivateKey.generate(),
        }
        self.published = list(self.private)
        self.fetches = []
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                issuer.fetches.append({"path": self.path, "accept": self.headers.get("accept")})
                body = json.dumps({"keys": [public_jwk(issuer.private[k], k) for k in issuer.published]}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("cache-control", "public, max-age=300")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.jwks_uri = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"

    def key_for(self, alg: str) -> str:
        if alg.startswith("HS"):
            return alg.lower()
        return {"ES256": "p256-1", "ES384": "p384-1", "EdDSA": "ed-1"}.get(alg, "rsa-1")

    def sign(self, alg: str, kid: str = None, **claims) -> str:
        kid = kid or self.key_for(alg)
        now = int(time.time())
        payload = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": f"user-{alg.lower()}",
            "email": f"{alg.lower()}@example.test",
            "roles": ["orders-reader", "auditor"],
            "iat": now,
            "exp": now + 300,
            **claims,
        }
        key = self.secrets[alg] if alg.startswith("HS") else self.private[kid]
        return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})

    def rotate(self, kid: str):
        """Publishes a new RSA key beside the others."""
        self.private[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.published.append(kid)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def plugin_with(name: str, config: dict, secret_refs: list) -> list:
    """The plugin's ConfigMap and its Plugin with `config` and `secret_refs`."""
    objects = manifest(name)
    plugin = copy.deepcopy(objects["Plugin"])
    plugin["spec"]["config"] = config
    plugin["spec"]["secretRefs"] = secret_refs
    return [objects["ConfigMap"], plugin]


def verification(issuer: Issuer) -> tuple:
    """The verification config of both plugins, and the secretRefs filling in its HMAC
    secrets from the Secret `jwt-keys` (secret_manifest)."""
    hmac_algorithms = list(issuer.secrets)
    config = {
        "algorithms": ALGORITHMS,
        "keys": [{"kid": alg.lower(), "secretEncoding": "base64url", "algorithms": [alg]} for alg in hmac_algorithms],
        "jwksUri": issuer.jwks_uri,
        "jwks": {"allowHttp": True, "minRefreshIntervalSeconds": 1},
        "issuers": [ISSUER],
        "audiences": [AUDIENCE],
    }
    refs = [{"path": f"/keys/{i}/secret", "secretName": "jwt-keys", "key": alg.lower()} for i, alg in enumerate(hmac_algorithms)]
    return config, refs


def secret_manifest(issuer: Issuer) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "jwt-keys"},
        "stringData": {alg.lower(): jwt.utils.base64url_encode(secret).decode() for alg, secret in issuer.secrets.items()},
    }


@pytest.fixture(scope="module")
def issuer():
    started = Issuer()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def gateway(issuer, tmp_path_factory):
    """jwt-auth on /orders, admin-gate (Global) guarding /admin/*, before an echo backend."""
    directory = tmp_path_factory.mktemp("jwt-gateway")
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    upstream = [{"url": f"http://127.0.0.1:{backend.server_address[1]}"}]
    config, refs = verification(issuer)
    jwt_auth = {
        **config,
        "forwardClaims": {"x-user-id": "sub", "x-user-email": "email", "x-user-roles": "roles"},
        "publicPaths": ["/orders/public/*"],
    }
    admin_gate = {**config, "realm": "admin", "paths": ["/admin/*"], "roles": ["admin"]}
    routes = [
        {
            "apiVersion": "weir.dev/v1alpha1",
            "kind": "Route",
            "metadata": {"name": name},
            "spec": {
                "hosts": [HOST],
                **({"plugins": plugins} if plugins else {}),
                "rules": [{"matches": [{"path": {"type": "Prefix", "value": prefix}}], "backends": upstream}],
            },
        }
        for name, prefix, plugins in [("orders", "/orders", [{"name": "jwt-auth"}]), ("other", "/", [])]
    ]
    objects = [secret_manifest(issuer), *plugin_with("jwt-auth", jwt_auth, refs), *plugin_with("admin-gate", admin_gate, refs), *routes]
    (directory / "all.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
    checked = check(directory)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    proxy = Proxy(directory, flags=("--plugin-fetch-allow", "127.0.0.1/32"))
    try:
        proxy.wait_ready()
        yield proxy
    finally:
        proxy.stop()
        backend.shutdown()
        backend.server_close()


def get(proxy: Proxy, path: str, token: str = None, headers: dict = None) -> tuple:
    """Status, headers and body (JSON when it is) of a GET through the proxy."""
    sent = dict(headers or {})
    if token is not None:
        sent["authorization"] = f"Bearer {token}"
    status, answer, body = proxy.call(path, sent, host=HOST)
    try:
        body = json.loads(body)
    except ValueError:
        body = body.decode(errors="replace")
    return status, answer, body


def test_the_other_route_has_no_jwt_auth(gateway):
    """Only the Route of /orders lists jwt-auth: the setup the other tests rely on."""
    status, _, seen = get(gateway, "/elsewhere")
    assert status == 200, seen
    assert seen["path"] == "/elsewhere"


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_a_valid_token_of_each_algorithm_reaches_the_backend_with_its_claims(gateway, issuer, alg):
    token = issuer.sign(alg)
    forged = {"x-user-id": "root", "x-user-roles": "admin"}
    status, _, seen = get(gateway, "/orders?page=2", token, forged)
    assert status == 200, seen
    assert seen["path"] == "/orders?page=2"
    received = seen["headers"]
    assert "authorization" not in received, "the token never reaches the upstream"
    assert received["x-user-id"] == f"user-{alg.lower()}"
    assert received["x-user-email"] == f"{alg.lower()}@example.test"
    assert received["x-user-roles"] == "orders-reader,auditor"


def test_the_jwks_is_fetched_once_and_kept(gateway, issuer):
    for alg in ["RS256", "ES256", "EdDSA", "PS512"]:
        assert get(gateway, "/orders", issuer.sign(alg))[0] == 200
    assert 1 <= len(issuer.fetches) <= 2, issuer.fetches
    assert issuer.fetches[0] == {"path": "/.well-known/jwks.json", "accept": "application/json"}


def test_no_token_is_401_with_a_bearer_challenge(gateway):
    status, headers, body = get(gateway, "/orders")
    assert status == 401
    assert headers["www-authenticate"] == 'Bearer realm="api"'
    assert body == {"error": "unauthorized", "message": "a bearer token is required in the Authorization header"}


def test_public_paths_need_no_token_and_never_pass_forged_claims(gateway):
    status, _, seen = get(gateway, "/orders/public/catalog", headers={"x-user-id": "root"})
    assert status == 200, seen
    assert "x-user-id" not in seen["headers"]


def test_a_token_signed_by_an_unknown_key_is_refused(gateway, issuer):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": int(time.time()) + 300}
    for kid, message in [("rsa-1", "the token's signature is not valid"), ("stranger", "no key matches the token's kid and alg")]:
        token = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": kid})
        status, headers, body = get(gateway, "/orders", token)
        assert status == 401, body
        assert headers["www-authenticate"] == (
            f'Bearer realm="api", error="invalid_token", error_description="{message}"'
        )
        assert body == {"error": "unauthorized", "message": message}
    # HS256 signed with the issuer's RSA public key as the secret (the algorithm
    # confusion attack; PyJWT refuses to make it, so it is made by hand).
    public_pem = issuer.private["rsa-1"].public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "kid": "rsa-1"}).encode()).decode()
    payload = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    token = f"{header}.{payload}.{jwt.utils.base64url_encode(signature).decode()}"
    status, _, body = get(gateway, "/orders", token)
    assert status == 401 and body["message"] == "no key matches the token's kid and alg", body


def test_expired_and_not_yet_valid_tokens_are_refused(gateway, issuer):
    now = int(time.time())
    # 60 s of leeway by default.
    status, headers, body = get(gateway, "/orders", issuer.sign("ES384", exp=now - 61))
    assert status == 401
    assert body == {"error": "unauthorized", "message": "the token has expired"}
    assert 'error="invalid_token"' in headers["www-authenticate"]
    assert get(gateway, "/orders", issuer.sign("ES384", exp=now - 30))[0] == 200, "within the leeway"
    status, _, body = get(gateway, "/orders", issuer.sign("RS256", nbf=now + 600))
    assert status == 401 and body["message"] == "the token is not valid yet (nbf)"
    status, _, body = get(gateway, "/orders", issuer.sign("RS256", aud="billing-api"))
    assert status == 401 and body["message"] == "the token's audience is not accepted"


def test_key_rotation_a_newly_published_kid_is_picked_up(gateway, issuer):
    assert get(gateway, "/orders", issuer.sign("RS256"))[0] == 200
    before = len(issuer.fetches)
    issuer.rotate("rsa-2")
    # The set in the proxy (fresh for 300 s) lacks rsa-2: the unknown kid refreshes it,
    # at most once per second (jwks.minRefreshIntervalSeconds: 1).
    time.sleep(1.1)
    status, _, seen = get(gateway, "/orders", issuer.sign("RS256", kid="rsa-2", sub="rotated"))
    assert status == 200, seen
    assert seen["headers"]["x-user-id"] == "rotated"
    assert len(issuer.fetches) == before + 1
    # Both keys verify now, without fetching again.
    assert get(gateway, "/orders", issuer.sign("PS256", kid="rsa-2"))[0] == 200
    assert get(gateway, "/orders", issuer.sign("RS256", kid="rsa-1"))[0] == 200
    assert len(issuer.fetches) == before + 1
    # A stream of made-up kids costs the issuer at most one fetch per interval.
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for i in range(10):
        token = jwt.encode({"exp": int(time.time()) + 60}, stranger, algorithm="RS256", headers={"kid": f"made-up-{i}"})
        assert get(gateway, "/orders", token)[0] == 401
    assert len(issuer.fetches) <= before + 2, issuer.fetches


def test_admin_gate_sets_trusted_headers_only_for_a_verified_admin(gateway, issuer):
    forged = {"x-gateway-admin-user": "mallory", "x-gateway-admin-roles": "admin", "x-gateway-admin-x": "1"}
    # Anywhere, the forged headers are removed (admin-gate is Global).
    status, _, seen = get(gateway, "/elsewhere", headers=forged)
    assert status == 200, seen
    assert not [h for h in seen["headers"] if h.startswith("x-gateway-admin-")], seen["headers"]
    # A guarded path: no token, 401; a token without the role, 403.
    status, headers, body = get(gateway, "/admin/users", headers=forged)
    assert status == 401 and headers["www-authenticate"] == 'Bearer realm="admin"', body
    status, _, body = get(gateway, "/ADMIN/users", issuer.sign("ES256"), forged)
    assert status == 403 and body == {"error": "forbidden", "message": "the admin role is required"}, body
    # An administrator: the headers, from the verified token only.
    token = issuer.sign("EdDSA", sub="root", roles=["admin", "auditor"])
    status, _, seen = get(gateway, "/admin/users", token, forged)
    assert status == 200, seen
    received = seen["headers"]
    assert received["x-gateway-admin-user"] == "root"
    assert received["x-gateway-admin-roles"] == "admin,auditor"
    assert "x-gateway-admin-x" not in received and "authorization" not in received
    # A forged administrator's token.
    stranger = ed25519.Ed25519PrivateKey.generate()
    forged_token = jwt.encode({"sub": "root", "roles": ["admin"], "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60},
                              stranger, algorithm="EdDSA", headers={"kid": "ed-1"})
    status, _, body = get(gateway, "/admin/users", forged_token, forged)
    assert status == 401 and body["message"] == "the token's signature is not valid", body


def test_the_suites_fixture_tokens_verify_with_pyjwt():
    """fixtures.ts (made by make_fixtures.py) holds real tokens: PyJWT accepts each
    algorithm's with the key the suites configure, as jwt-auth does."""
    text = (PLUGINS / "jwt-auth" / "fixtures.ts").read_text()

    def const(name):
        match = re.search(rf"^export const {name}: [^=]*= (.*?);\n", text, re.MULTILINE | re.DOTALL)
        assert match, name
        return json.loads(match.group(1))

    keys, tokens = const("KEYS"), const("TOKENS")
    key_of = {
        "HS256": keys["secret256"], "HS384": keys["secret384"], "HS512": keys["secret512"],
        "ES256": keys["ec256Pem"], "ES384": keys["ec384Pem"], "EdDSA": keys["edPem"],
    }
    assert sorted(tokens) == sorted(ALGORITHMS)
    for alg, token in tokens.items():
        claims = jwt.decode(token, key_of.get(alg, keys["rsa1Pem"]), algorithms=[alg], audience=const("AUDIENCE"), issuer=const("ISSUER"))
        assert claims["sub"] == "alice", alg


# The verification fields jwt-auth and admin-gate share (./jwt.ts parses them for both).
SHARED = ["algorithms", "keys", "jwksUri", "jwks", "issuers", "audiences", "clockSkewSeconds", "requireExp",
          "maxAgeSeconds", "requiredClaims", "header", "cookie", "maxTokenLength", "realm"]


def test_admin_gate_takes_the_verification_fields_of_jwt_auth():
    jwt_auth = manifest("jwt-auth")["Plugin"]["spec"]["configSchema"]
    admin_gate = manifest("admin-gate")["Plugin"]["spec"]["configSchema"]
    for field in SHARED:
        ours, theirs = dict(admin_gate["properties"][field]), dict(jwt_auth["properties"][field])
        if field == "realm":
            assert ours.pop("description").endswith("(default admin).")
            theirs.pop("description")
        assert ours == theirs, f"admin-gate's configSchema.{field} differs from jwt-auth's"
    assert admin_gate["$defs"] == jwt_auth["$defs"]
    # And both plugins carry the same verifier.
    assert manifest("admin-gate")["ConfigMap"]["data"]["jwt.ts"] == manifest("jwt-auth")["ConfigMap"]["data"]["jwt.ts"]
    assert (PLUGINS / "admin-gate" / "jwt.ts").resolve() == (PLUGINS / "jwt-auth" / "jwt.ts").resolve()
