"""rate-limit, hmac-session and response-cache in real proxies sharing a real Redis: two
`weir-proxy --config DIR` processes (two replicas) with one `--plugin-redis-url` count
the same requests (a limit of N is reached after N requests spread over both, not 2N),
refuse on one a nonce the other accepted, and answer from a response the other stored.
With Redis unreachable, or stopped under a running proxy, rate-limit follows
`onStoreError` (allow: passes with a warning; deny: 503), hmac-session fails closed and
response-cache goes upstream.

Requests are signed here in Python (hmac, hashlib), as docs/plugins.md tells clients to.
redis-server must be installed (scripts/test installs it); the proxy binary is found as
plugins/test_plugins.py finds it."""

import copy
import hashlib
import hmac
import http.server
import json
import re
import socket
import subprocess
import threading
import time
import uuid
from urllib.parse import parse_qsl, quote

import pytest
import yaml

from test_plugins import DEMO_KEY, REPO, Echo, Proxy, check, free_ports, manifest

HOST = "shared.example.test"
PREFIX = "shared-test:"
LIMIT = 6
WINDOW = 3600


# ---- Redis ----


class Redis:
    """A redis-server on a loopback port (a free one unless given), stopped by stop()."""

    def __init__(self, port: int = None):
        self.port = port or free_ports(1)[0]
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                if self.command("PING") == "PONG":
                    return
            except OSError:
                pass
            assert time.monotonic() < deadline and self.process.poll() is None, "redis-server did not start"
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def command(self, *args):
        """One command's answer (RESP2): text, an integer, None or a list."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as connection:
            request = f"*{len(args)}\r\n" + "".join(f"${len(str(a).encode())}\r\n{a}\r\n" for a in args)
            connection.sendall(request.encode())
            return self._read(connection.makefile("rb"))

    def _read(self, stream):
        line = stream.readline().rstrip(b"\r\n")
        kind, rest = line[:1], line[1:].decode()
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RuntimeError(rest)
        if kind == b":":
            return int(rest)
        if kind == b"$":
            if int(rest) < 0:
                return None
            data = stream.read(int(rest) + 2)[:-2]
            return data.decode()
        if kind == b"*":
            return [self._read(stream) for _ in range(int(rest))]
        raise RuntimeError(f"unexpected answer {line!r}")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


# ---- the gateway ----


def route(name: str, rules: list, plugins: list) -> dict:
    return {
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "Route",
        "metadata": {"name": name},
        "spec": {"hosts": [HOST], "rules": rules, "plugins": plugins},
    }


def prefix(path: str, action: dict, methods: list = None, type_: str = "Prefix") -> dict:
    match = {"path": {"type": type_, "value": path}}
    if methods:
        match["methods"] = methods
    return {"matches": [match], **action}


OK = {"directResponse": {"status": 200, "headers": {"content-type": "text/plain"}, "body": "ok"}}


def gateway(directory, backend_port: int):
    """The manifests: the four plugins and Routes using them, in `directory`."""
    plugins = []
    configs = {
        "rate-limit": {"limit": LIMIT, "windowSeconds": WINDOW},
        "hmac-session": {"createPath": "/session", "revokePath": "/session"},
        "response-cache": {"ttlSeconds": 60},
        "api-key": None,
    }
    for name, config in configs.items():
        objects = manifest(name)
        plugin = copy.deepcopy(objects["Plugin"])
        if config is not None:
            plugin["spec"]["config"] = config
        plugins += [objects["ConfigMap"], plugin]
    echo = {"backends": [{"url": f"http://127.0.0.1:{backend_port}"}]}

    def limited(name, **override):
        return route(name, [prefix(f"/{name}", OK)], [{"name": "rate-limit", "config": {"name": name, **override}}])

    routes = [
        limited("fixed", algorithm="fixed-window"),
        limited("sliding", algorithm="sliding-window"),
        limited("bucket", algorithm="token-bucket"),
        limited("allow", algorithm="fixed-window", onStoreError="allow"),
        limited("deny", algorithm="fixed-window", onStoreError="deny"),
        # POST /session: api-key identifies the client, hmac-session creates its session.
        route("session-create", [prefix("/session", {"directResponse": {"status": 404}}, ["POST"], "Exact")],
              [{"name": "api-key"}, {"name": "hmac-session"}]),
        # The signed API, and DELETE /session (revocation).
        route("signed", [prefix("/api/direct", OK), prefix("/api", echo),
                         prefix("/session", {"directResponse": {"status": 404}}, None, "Exact")],
              [{"name": "hmac-session"}]),
        route("cached", [prefix("/cached", echo)], [{"name": "response-cache"}]),
    ]
    (directory / "all.yaml").write_text(yaml.safe_dump_all(plugins + routes, sort_keys=False))
    result = check(directory)
    assert result.returncode == 0, result.stdout + result.stderr


def start(directory, redis_url: str) -> Proxy:
    proxy = Proxy(directory, ("--plugin-redis-url", redis_url, "--plugin-redis-key-prefix", PREFIX))
    proxy.wait_ready()
    return proxy


class Replica:
    """Requests to one proxy, on the test host."""

    def __init__(self, proxy: Proxy):
        self.proxy = proxy

    def __call__(self, path: str, headers: dict = None, method: str = "GET", body: bytes = None) -> tuple:
        return self.proxy.call(path, headers or {}, host=HOST, method=method, body=body)

    def warnings(self, request_id: str, plugin: str) -> list:
        deadline = time.monotonic() + 5
        while True:
            lines = [l for l in self.proxy.plugin_lines(request_id, plugin) if l["level"] == "WARN"]
            if lines or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)


class Binary(Echo):
    """Echo, but /cached/bytes answers every byte value, which no text holds."""

    def do_GET(self):
        if not self.path.startswith("/cached/bytes"):
            return super().do_GET()
        body = bytes(range(256)) * 4
        self.send_response(200)
        self.send_header("content-type", "application/octet-stream")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def backend():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Binary)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def directory(tmp_path_factory, backend):
    path = tmp_path_factory.mktemp("shared")
    gateway(path, backend)
    return path


@pytest.fixture(scope="module")
def shared(directory):
    """Redis and two replicas using it."""
    redis = Redis()
    proxies = []
    try:
        proxies = [start(directory, redis.url), start(directory, redis.url)]
        yield redis, Replica(proxies[0]), Replica(proxies[1])
    finally:
        for proxy in proxies:
            proxy.stop()
        redis.stop()


# ---- signing, as docs/plugins.md ("hmac-session") describes it ----


def canonical_query(query: str) -> str:
    pairs = sorted((quote(n, safe="-_.~"), quote(v, safe="-_.~")) for n, v in parse_qsl(query, keep_blank_values=True))
    return "&".join(f"{n}={v}" for n, v in pairs)


def signed(session: dict, method: str, target: str, body: bytes = b"", nonce: str = None, timestamp: int = None) -> dict:
    """The headers of a request to `target` (path and query) signed with `session`."""
    path, _, query = target.partition("?")
    timestamp = str(timestamp if timestamp is not None else int(time.time()))
    nonce = nonce or str(uuid.uuid4())
    canonical = "\n".join([method, path, canonical_query(query), timestamp, nonce, hashlib.sha256(body).hexdigest()])
    signature = hmac.new(session["secret"].encode(), canonical.encode(), hashlib.sha256).hexdigest()
    return {
        "authorization": f"Session {session['sessionId']}",
        "x-timestamp": timestamp,
        "x-nonce": nonce,
        "x-signature": signature,
    }


def reason(body: bytes) -> str:
    return json.loads(body)["reason"]


# ---- shared by two replicas ----


def counter_key(name: str, algorithm: str) -> str:
    short = {"fixed-window": "fw", "sliding-window": "sw", "token-bucket": "tb"}[algorithm]
    key = f"{PREFIX}default/rate-limit:{name}:{short}:{WINDOW}:ip=127.0.0.1"
    if algorithm == "token-bucket":
        return key
    return f"{key}:{int(time.time() * 1000) // (WINDOW * 1000)}"


@pytest.mark.parametrize("name, algorithm", [
    ("fixed", "fixed-window"),
    ("sliding", "sliding-window"),
    ("bucket", "token-bucket"),
])
def test_rate_limit_counters_are_shared_by_replicas(shared, name, algorithm):
    redis, a, b = shared
    if algorithm == "fixed-window" and WINDOW - time.time() % WINDOW < 15:
        time.sleep(WINDOW - time.time() % WINDOW + 0.5)  # not across a window's end
    redis.command("DEL", counter_key(name, algorithm))
    for i in range(LIMIT):
        status, headers, body = (a, b)[i % 2](f"/{name}/x")
        assert status == 200, body
        assert headers["ratelimit-policy"] == f'"{name}";q={LIMIT};w={WINDOW}'
        assert re.fullmatch(rf'"{name}";r={LIMIT - 1 - i};t=\d+', headers["ratelimit"]), headers["ratelimit"]
    for replica in (a, b, a):
        status, headers, body = replica(f"/{name}/x")
        assert status == 429, f"the limit is {LIMIT} over both replicas, not {2 * LIMIT}"
        assert json.loads(body)["error"] == "rate_limited"
        assert int(headers["retry-after"]) >= 1
        assert re.fullmatch(rf'"{name}";r=0;t=\d+', headers["ratelimit"])
    stored = redis.command("GET", counter_key(name, algorithm))
    if algorithm == "token-bucket":
        # The time the bucket is full again: LIMIT tokens of one per WINDOW / LIMIT s.
        assert abs(int(stored) / 1e6 - (time.time() + WINDOW)) < 30, stored
        assert 0 < redis.command("PTTL", counter_key(name, algorithm)) <= (WINDOW + 1) * 1000
    else:
        assert stored == str(LIMIT), "refused requests are not counted"


def test_a_burst_over_both_replicas_at_once_is_held_to_the_limit(shared):
    """Concurrent requests on both replicas (the windows' incr, the token bucket's
    compareAndSet retried when another request changed the bucket first): exactly LIMIT
    of 4 × LIMIT pass."""
    redis, a, b = shared
    for name, algorithm in (("fixed", "fixed-window"), ("bucket", "token-bucket")):
        redis.command("DEL", counter_key(name, algorithm))
        results = []
        lock = threading.Lock()

        def send(replica):
            status, _, _ = replica(f"/{name}/burst")
            with lock:
                results.append(status)

        threads = [threading.Thread(target=send, args=((a, b)[i % 2],)) for i in range(4 * LIMIT)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == [200] * LIMIT + [429] * (3 * LIMIT), (name, results)


def test_an_hmac_session_nonce_accepted_by_one_replica_is_refused_by_the_other(shared):
    redis, a, b = shared
    # Created on one replica, for the client api-key identified.
    status, headers, body = a("/session", {"x-api-key": DEMO_KEY}, method="POST")
    assert status == 201, body
    assert headers["cache-control"] == "no-store"
    session = json.loads(body)
    assert session["algorithm"] == "SHA-256"

    target = "/api/orders?b=x+y&a=1"
    request = signed(session, "GET", target)
    status, _, body = b(target, request)
    assert status == 200, body
    seen = json.loads(body)
    assert seen["path"] == target
    for name in ("authorization", "x-signature", "x-timestamp", "x-nonce", "x-api-key"):
        assert name not in seen["headers"], f"{name} reached the upstream"

    # The same request again, on either replica: a replay.
    for replica in (a, b):
        status, headers, body = replica(target, request)
        assert status == 401, body
        assert reason(body) == "nonce_reused"
        assert headers["www-authenticate"] == 'Session realm="api"'
    nonce = f"{PREFIX}default/hmac-session:nonce:{session['sessionId']}:{request['x-nonce']}"
    assert redis.command("GET", nonce) == "1"
    assert 0 < redis.command("PTTL", nonce) <= 601_000, "kept until the timestamp leaves the window"

    # A body is signed by its bytes, as they reach the proxy.
    payload = json.dumps({"item": "book", "qty": 2}).encode()
    status, _, body = a("/api/direct", signed(session, "POST", "/api/direct", payload), method="POST", body=payload)
    assert status == 200, body
    status, _, body = b("/api/direct", signed(session, "POST", "/api/direct", payload), method="POST", body=payload + b" ")
    assert (status, reason(body)) == (401, "signature_mismatch")
    stale = signed(session, "GET", "/api/orders", timestamp=int(time.time()) - 301)
    status, _, body = a("/api/orders", stale)
    assert (status, reason(body)) == (401, "stale_timestamp")

    # Revoked on one replica, unknown to the other.
    status, _, body = b("/session", signed(session, "DELETE", "/session"), method="DELETE")
    assert status == 204, body
    status, _, body = a("/api/orders", signed(session, "GET", "/api/orders"))
    assert (status, reason(body)) == (401, "unknown_session")
    assert redis.command("EXISTS", f"{PREFIX}default/hmac-session:session:{session['sessionId']}") == 0


def test_the_guides_python_client_signs_its_example_and_real_requests(shared, monkeypatch):
    """The `sign` function docs/plugins.md gives client developers: it reproduces the
    guide's example, and a proxy accepts what it signs."""
    guide = (REPO / "docs" / "plugins.md").read_text()
    section = guide.split("\n### `hmac-session`\n", 1)[1].split("\n### ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    client = {}
    exec(code, client)
    secret = "6Xq0o7kq1cXoJm3q8pJb1uQ2mWZ9f3QeC4yTgq8P0dA"
    with monkeypatch.context() as patch:
        patch.setattr(client["time"], "time", lambda: 1893456000.25)
        patch.setattr(client["uuid"], "uuid4", lambda: "3f1c2b5e-9d4a-4c47-8f0e-2a6b1d9c7e55")
        headers = client["sign"](secret, "POST", "/orders/42/items", "b=x+y&a=1&b=%7E", b'{"item":"book","qty":2}')
    example = re.search(r"^X-Signature: ([0-9a-f]{64})$", section, re.MULTILINE).group(1)
    assert headers["X-Signature"] == example

    redis, a, _ = shared
    redis.command("SET", f"{PREFIX}default/hmac-session:session:guide-example-session", json.dumps({"secret": secret, "user": "guide"}))
    redis.command("SET", f"{PREFIX}default/hmac-session:active:guide-example-session", "0", "EX", "60")
    body = b'{"item":"book"}'
    headers = client["sign"](secret, "post", "/api/direct", "z=1&a=%C3%A9&a=b+c", body)
    status, _, answer = a("/api/direct?z=1&a=%C3%A9&a=b+c", {"authorization": "Session guide-example-session", **headers}, "POST", body)
    assert status == 200, answer


def test_a_session_another_system_wrote_to_redis_is_honoured(shared):
    redis, a, b = shared
    session = {"sessionId": "issued-by-login-service-01", "secret": "a-secret-the-login-service-chose"}
    key = f"{PREFIX}default/hmac-session:"
    entry = {"secret": session["secret"], "user": {"id": "carol", "roles": ["support"]}}
    redis.command("SET", f"{key}session:{session['sessionId']}", json.dumps(entry), "EX", "600")
    redis.command("SET", f"{key}active:{session['sessionId']}", str(int(time.time() * 1000)), "EX", "600")
    status, _, body = b("/api/tickets", signed(session, "GET", "/api/tickets"))
    assert status == 200, body
    status, _, body = a("/session", {"x-api-key": "not-a-key"}, method="POST")
    assert status == 401, "creating a session needs api-key's identity first"


def test_response_cache_entries_are_shared_by_replicas(shared):
    _, a, b = shared
    status, headers, first = a("/cached/products?page=2&sort=price")
    assert status == 200 and headers["x-cache"] == "MISS", headers
    time.sleep(1.1)
    status, headers, again = b("/cached/products?sort=price&page=2")
    assert status == 200
    assert headers["x-cache"] == "HIT"
    assert again == first, "the stored body (with the first request's id, as the backend echoed it)"
    assert headers["content-type"] == "application/json"
    assert int(headers["age"]) >= 1
    status, headers, fresh = b("/cached/products?page=2&sort=price", {"cache-control": "no-cache"})
    assert headers["x-cache"] == "MISS" and fresh != first
    status, headers, body = a("/cached/products?page=2&sort=price")
    assert headers["x-cache"] == "HIT" and body == fresh, "no-cache refreshed the entry for both"
    status, headers, _ = a("/cached/products?page=2&sort=price", {"authorization": "Bearer x"})
    assert headers["x-cache"] == "BYPASS"

    # Bytes that are no UTF-8 come back as they were.
    status, headers, first = a("/cached/bytes")
    assert (status, headers["x-cache"]) == (200, "MISS")
    status, headers, body = b("/cached/bytes")
    assert (status, headers["x-cache"]) == (200, "HIT")
    assert body == bytes(range(256)) * 4
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-length"] == "1024"


# ---- without Redis ----


@pytest.fixture
def without_redis(directory):
    """One proxy whose Redis URL points at a closed port."""
    proxy = start(directory, f"redis://127.0.0.1:{free_ports(1)[0]}")
    try:
        yield Replica(proxy)
    finally:
        proxy.stop()


def test_on_store_error_allow_and_deny_with_redis_unreachable(without_redis):
    replica = without_redis
    # A cache call waits at most the proxy's Redis timeout (250 ms), and after a failure
    # not at all for a second: the Plugin's timeoutMs (500 in its plugin.yaml) is longer,
    # so onStoreError decides (its warning below), not failurePolicy.
    for _ in range(2):
        status, headers, body = replica("/allow/x")
        assert status == 200, body
        assert "ratelimit" not in headers
    [warning] = replica.warnings(headers["x-request-id"], "default/rate-limit")
    assert warning["message"] == "rate-limit: the cache failed; the request passes unlimited"
    assert warning["fields"]["onStoreError"] == "allow"
    assert warning["fields"]["error"].startswith("redis:"), warning

    status, headers, body = replica("/deny/x")
    assert status == 503
    assert json.loads(body) == {"error": "rate_limit_unavailable", "message": "the rate limit cannot be checked now"}
    [warning] = replica.warnings(headers["x-request-id"], "default/rate-limit")
    assert warning["message"] == "rate-limit: the cache failed; the request is refused"

    # An authentication that cannot be checked fails closed (failurePolicy Closed).
    session = {"sessionId": "some-session-id-000001", "secret": "s"}
    status, _, body = replica("/api/orders", signed(session, "GET", "/api/orders"))
    assert status == 503 and json.loads(body)["error"] == "plugin_failed", body
    # A cache that cannot answer sends requests upstream (response-cache's hook outlasts
    # its 100 ms and is skipped, failurePolicy Open).
    status, headers, body = replica("/cached/x")
    assert status == 200 and json.loads(body)["path"] == "/cached/x", body


def test_on_store_error_when_redis_stops_under_running_replicas(directory):
    redis = Redis()
    proxy = start(directory, redis.url)
    replica = Replica(proxy)
    try:
        assert replica("/deny/y")[0] == 200
        assert replica("/allow/y")[0] == 200
        redis.stop()
        status, _, body = replica("/deny/y")
        assert status == 503 and json.loads(body)["error"] == "rate_limit_unavailable", body
        status, headers, body = replica("/allow/y")
        assert status == 200 and "ratelimit" not in headers, body
        assert replica.warnings(headers["x-request-id"], "default/rate-limit")
        # Back on the same port: counting resumes (a fresh Redis: from 1).
        redis = Redis(redis.port)
        deadline = time.monotonic() + 30
        while True:
            status, headers, _ = replica("/deny/y")
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert status == 200, "the proxy reconnects to Redis"
        assert re.fullmatch(r'"deny";r=\d;t=\d+', headers["ratelimit"])
    finally:
        proxy.stop()
        redis.stop()
