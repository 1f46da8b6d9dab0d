"""The plugin library (plugins/<name>/): every plugin's suites pass under
`weir-proxy plugin test`; its plugin.yaml holds exactly its TypeScript (so the example
never drifts from the tested code), is accepted by `weir-proxy check`, and has a strict,
described configSchema that refuses a config it does not describe, in the Plugin and in a
Route's override; docs/plugins.md has a section for it; its example config loads, and a
config it cannot use fails its onLoad with the reason. request-log's line is also checked
in the log of a real proxy (the suite reads it with t.logs()), and api-key's edits of the
upstream request in a real proxy, since suites do not see the Route's rewrite.

The binary is $WEIR_PROXY, or target/debug/weir-proxy (under $CARGO_TARGET_DIR when set)."""

import copy
import http.client
import http.server
import ipaddress
import json
import os
import random
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

import sync_manifests

PLUGINS = Path(__file__).resolve().parent
REPO = PLUGINS.parent
LIBRARY = [d.name for d in sync_manifests.plugin_dirs()]
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed$", re.MULTILINE)


def weir_proxy() -> Path:
    if os.environ.get("WEIR_PROXY"):
        binary = Path(os.environ["WEIR_PROXY"])
    else:
        binary = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target") / "debug" / "weir-proxy"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: `cargo build -p weir-proxy` builds it (or set WEIR_PROXY)")
    return binary


def manifest(name: str) -> dict:
    """plugin.yaml's objects by kind."""
    documents = list(yaml.safe_load_all((PLUGINS / name / "plugin.yaml").read_text()))
    return {d["kind"]: d for d in documents if d}


def check(directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [weir_proxy(), "check", directory], capture_output=True, text=True, timeout=120
    )


def test_the_library_is_there():
    assert {
        "api-key", "header-rewrite", "hmac-session", "ip-filter", "rate-limit", "redact", "request-log",
        "response-cache", "route-control",
    } <= set(LIBRARY)


@pytest.mark.parametrize("name", LIBRARY)
def test_the_suites_pass(name):
    result = subprocess.run(
        [weir_proxy(), "plugin", "test", PLUGINS / name],
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    summary = SUMMARY.findall(output)
    assert summary, output
    passed, failed = map(int, summary[-1])
    assert passed >= 1 and failed == 0, output


@pytest.mark.parametrize("name", LIBRARY)
def test_the_manifest_holds_the_sources(name):
    objects = manifest(name)
    config_map = objects["ConfigMap"]
    assert config_map["metadata"]["name"] == f"weir-plugin-{name}"
    assert config_map["data"] == sync_manifests.sources(PLUGINS / name), (
        f"plugins/{name}/plugin.yaml differs from the plugin's .ts files: "
        f"run `python3 plugins/sync_manifests.py {name}`"
    )
    plugin = objects["Plugin"]
    assert plugin["apiVersion"] == "weir.dev/v1alpha1"
    assert plugin["metadata"]["name"] == name
    assert plugin["spec"]["source"] == {
        "configMapRef": {"name": f"weir-plugin-{name}", "key": f"{name}.ts"}
    }



def test_shared_modules_are_linked_not_copied():
    """plugins/shared/ holds modules several plugins use, and is no plugin; a plugin uses
    one through a symlink (plugins/<name>/config.ts -> ../shared/config.ts), which its
    ConfigMap carries, never through a copy that could drift."""
    shared = PLUGINS / "shared"
    assert "shared" not in LIBRARY and not (shared / "plugin.yaml").exists()
    modules = {path.name for path in shared.glob("*.ts")}
    assert "config.ts" in modules
    for name in LIBRARY:
        for path in (PLUGINS / name).glob("*.ts"):
            if path.name in modules:
                assert path.is_symlink() and os.readlink(path) == f"../shared/{path.name}", (
                    f"plugins/{name}/{path.name} is not a symlink to ../shared/{path.name}"
                )

@pytest.mark.parametrize("name", LIBRARY)
def test_the_config_schema_is_strict_and_described(name):
    spec = manifest(name)["Plugin"]["spec"]
    assert "config" in spec, "the example has a config"
    schema = spec["configSchema"]
    assert schema["type"] == "object"

    def walk(node, where):
        if not isinstance(node, dict):
            return
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{where}: not strict"
            for key, child in node["properties"].items():
                assert child.get("description"), f"{where}.{key}: no description"
        for key, child in node.items():
            if isinstance(child, dict):
                walk(child, f"{where}.{key}")
            elif isinstance(child, list):
                for i, item in enumerate(child):
                    walk(item, f"{where}.{key}[{i}]")

    walk(schema, "configSchema")


@pytest.mark.parametrize("name", LIBRARY)
def test_the_guide_documents_every_config_field(name):
    guide = (REPO / "docs" / "plugins.md").read_text()
    library = guide.split("\n## Plugin library\n", 1)[1].split("\n## ", 1)[0]
    sections = re.split(r"^### ", library, flags=re.MULTILINE)
    section = next((t for t in sections if t.startswith(f"`{name}`\n")), None)
    assert section is not None, f"docs/plugins.md has no section ### `{name}` under ## Plugin library"
    schema = manifest(name)["Plugin"]["spec"]["configSchema"]
    for field in schema["properties"]:
        assert re.search(rf"`{re.escape(field)}[`.\[]", section), f"{name}: `{field}` is not documented"


@pytest.mark.parametrize("name", LIBRARY)
def test_the_manifest_is_accepted(name, tmp_path):
    shutil.copy(PLUGINS / name / "plugin.yaml", tmp_path / "plugin.yaml")
    result = check(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def route_using(name: str, override: dict) -> dict:
    return {
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "Route",
        "metadata": {"name": "uses-it"},
        "spec": {
            "hosts": ["plugins.example.test"],
            "plugins": [{"name": name, "config": override}],
            "rules": [{"directResponse": {"status": 204}}],
        },
    }


@pytest.mark.parametrize("name", LIBRARY)
def test_a_config_the_schema_does_not_describe_is_refused(name, tmp_path):
    objects = manifest(name)
    plugin = copy.deepcopy(objects["Plugin"])
    plugin["spec"]["config"]["notAnOption"] = True
    (tmp_path / "plugin.yaml").write_text(
        yaml.safe_dump_all([objects["ConfigMap"], plugin], sort_keys=False)
    )
    result = check(tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert re.search(rf"Plugin default/{name}: spec\.config: .*notAnOption", output), output


@pytest.mark.parametrize("name", LIBRARY)
def test_a_routes_override_the_schema_does_not_describe_is_refused(name, tmp_path):
    objects = manifest(name)
    (tmp_path / "plugin.yaml").write_text(
        yaml.safe_dump_all(
            [objects["ConfigMap"], objects["Plugin"], route_using(name, {"notAnOption": 1})],
            sort_keys=False,
        )
    )
    result = check(tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert re.search(r"Route default/uses-it: spec\.plugins\[0\]\.config: .*notAnOption", output), output
    assert f"Plugin default/{name}" not in output, "the Plugin itself is fine"


def suite_with_config(name: str, config: dict, directory: Path) -> subprocess.CompletedProcess:
    """`weir-proxy plugin test` on a copy of the plugin with one suite whose config (which
    the plugin's onLoad sees) is `config`, and one request that must not fail."""
    for path in (PLUGINS / name).glob("*.ts"):
        if not path.name.endswith(".test.ts"):
            shutil.copy(path, directory / path.name)
    (directory / "plugin.test.ts").write_text(
        "export default {\n"
        f"  config: {json.dumps(config)},\n"
        "  tests: {\n"
        '    async "a request"(t) {\n'
        '      const result = await t.beforeRequest({ clientIp: "10.0.0.1" });\n'
        '      t.notEqual(result.outcome, "failed", JSON.stringify(result.failure));\n'
        "    },\n"
        "  },\n"
        "};\n"
    )
    return subprocess.run(
        [weir_proxy(), "plugin", "test", directory], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("name", LIBRARY)
def test_the_example_config_loads(name, tmp_path):
    result = suite_with_config(name, manifest(name)["Plugin"]["spec"]["config"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# For each plugin, a config its onLoad refuses, and what the reason says. route-control's
# is one the schema lets through (it cannot judge regular expressions).
UNUSABLE = {
    "admin-gate": (
        {"algorithms": ["RS256"], "jwksUri": "https://idp.example.test/jwks.json", "paths": ["/admin/*"],
         "roles": ["admin"], "pathClaims": {"tenant": "tenants"}},
        r"config\.pathClaims\.tenant names no \{tenant\} of the paths",
    ),
    "api-key": ({"keys": [{"hash": "abc", "id": "short"}]}, r"config\.keys\[0\]\.hash must be the SHA-256"),
    "header-rewrite": ({"request": {"set": {"x-a": "${nope}"}}}, r'config\.request\.set\["x-a"\]: unknown variable \$\{nope\}'),
    "ip-filter": ({"allow": ["10.0.0.0/8", "10.0.0.0/33"]}, r'config\.allow\[1\] "10\.0\.0\.0/33" has a prefix length'),
    "jwt-auth": (
        {"algorithms": ["HS256"], "keys": [{"secret": "too-short"}]},
        r"config\.keys\[0\]\.secret is 9 bytes; HS256 needs at least 32",
    ),
    "redact": ({"fields": ["user..password"]}, r'config\.fields\[0\] "user\.\.password" has an empty segment'),
    "request-log": ({"sampleRate": 2}, r"config\.sampleRate must be a number from 0 to 1"),
    "rate-limit": ({"limit": 10, "window": 60, "algorithm": "leaky"}, r'config\.algorithm must be one of'),
    "hmac-session": ({"algorithm": "MD5"}, r'config\.algorithm must be SHA-256, SHA-384 or SHA-512, not "MD5"'),
    "response-cache": ({"statuses": "all"}, r"config\.statuses must be a list of statuses"),
    "route-control": (
        {"rules": [{"header": {"name": "x-beta", "regex": "("}, "backend": "service:shop/api-beta:8080"}]},
        r'config\.rules\[0\]\.header\.regex "\(" is not a regular expression',
    ),
}


@pytest.mark.parametrize("name", LIBRARY)
def test_a_config_the_plugin_cannot_use_fails_its_load(name, tmp_path):
    if name not in UNUSABLE:
        pytest.fail(f"add a config {name} cannot use to UNUSABLE")
    config, reason = UNUSABLE[name]
    result = suite_with_config(name, config, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert re.search(r"plugin\.ts does not load: onLoad threw: TypeError: " + re.escape(name) + ": " + reason, output), output

def test_the_ip_filter_pattern_accepts_exactly_the_cidrs_python_does():
    """The schema's pattern, against Python's ipaddress on random (and broken) networks;
    prefix lengths with leading zeros and zone ids, which Python takes, are refused."""
    schema = manifest("ip-filter")["Plugin"]["spec"]["configSchema"]
    pattern = re.compile(schema["$defs"]["network"]["pattern"])
    rng = random.Random(13)

    def candidate() -> str:
        if rng.random() < 0.3:
            text = ".".join(str(rng.randrange(300)) for _ in range(rng.choice([3, 4, 4, 5])))
            bits = 40
        else:
            groups = [format(rng.getrandbits(16) if rng.random() < 0.6 else 0, "x") for _ in range(8)]
            if rng.random() < 0.3:
                groups[6:] = [".".join(str(rng.randrange(256)) for _ in range(4))]
            if rng.random() < 0.7:
                i = rng.randrange(len(groups))
                j = rng.randrange(i, len(groups) + 1)
                text = ":".join(groups[:i]) + "::" + ":".join(groups[j:])
            else:
                text = ":".join(groups)
            bits = 140
        if rng.random() < 0.1:
            at = rng.randrange(len(text) + 1)
            text = text[:at] + rng.choice([":", "::", "g", "1", ".", "/"]) + text[at:]
        if rng.random() < 0.5:
            text += f"/{rng.randrange(bits)}"
        return text

    def valid(text: str) -> bool:
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            return False
        return not re.search(r"/0\d|%", text)

    for _ in range(20000):
        text = candidate()
        assert bool(pattern.match(text)) == valid(text), text
    for text in ["::", "::/0", "0.0.0.0/0", "1:2:3:4:5:6:7::", "::ffff:10.0.0.0/104", "64:ff9b::192.0.2.0/120"]:
        assert pattern.match(text), text
    for text in ["10.0.0.0/33", "010.0.0.1", "1:2:3:4:5:6::1.2.3.4", "fe80::1%eth0", "10.0.0.0/08", ""]:
        assert not pattern.match(text), text


# ---- in a real proxy ----


def free_ports(count: int) -> list:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Proxy:
    """weir-proxy in standalone mode on `directory`, its JSON log collected; `flags` are
    more of its flags (`--plugin-redis-url ...`)."""

    def __init__(self, directory: Path, flags: tuple = ()):
        self.port, self.admin = free_ports(2)
        self.lines = []
        self.process = subprocess.Popen(
            [
                weir_proxy(),
                "--config", str(directory),
                "--listen", f"127.0.0.1:{self.port}",
                "--admin-listen", f"127.0.0.1:{self.admin}",
                "--workers", "1",
                "--log-format", "json",
                "--drain-timeout", "1s",
                *flags,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_ready(self, seconds: float = 60.0):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=2)
                connection.request("GET", "/readyz")
                if connection.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        pytest.fail("weir-proxy did not become ready:\n" + "".join(self.lines[-40:]))

    def call(self, path: str, headers: dict, host: str = "log.example.test", method: str = "GET", body: bytes = None) -> tuple:
        """Status, headers (lower-case names) and body of a request (a GET by default)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers={"host": host, **headers})
            response = connection.getresponse()
            body = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, body
        finally:
            connection.close()

    def get(self, path: str, headers: dict) -> tuple:
        status, answer, _ = self.call(path, headers)
        return status, answer.get("x-request-id")

    def plugin_lines(self, request_id: str, plugin: str = "default/request-log") -> list:
        """The lines a plugin logged for a request, with their fields parsed."""
        out = []
        for text in list(self.lines):
            try:
                line = json.loads(text)
            except ValueError:
                continue
            if line.get("plugin") != plugin or line.get("request_id") != request_id:
                continue
            fields = line.get("fields")
            out.append({**line, "fields": json.loads(fields) if isinstance(fields, str) else fields})
        return out

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def test_request_log_writes_one_redacted_line_per_sampled_request(tmp_path):
    objects = manifest("request-log")
    plugin = copy.deepcopy(objects["Plugin"])
    plugin["spec"]["config"] = {
        "requestHeaders": ["authorization", "cookie", "x-tenant", "x-internal-token"],
        "responseHeaders": ["content-type"],
        "redactHeaders": ["X-Internal-Token"],
        "redactQuery": ["session"],
    }
    rules = [
        {"matches": [{"path": {"type": "Exact", "value": f"/{route}/ok"}}],
         "directResponse": {"status": 200, "headers": {"content-type": "text/plain"}, "body": "ok"}}
        for route in ("all", "errors")
    ] + [
        {"matches": [{"path": {"type": "Exact", "value": "/errors/fail"}}],
         "directResponse": {"status": 503, "body": "down"}},
    ]
    routes = [
        {"apiVersion": "weir.dev/v1alpha1", "kind": "Route", "metadata": {"name": "all"},
         "spec": {"hosts": ["log.example.test"], "rules": [rules[0]]}},
        {"apiVersion": "weir.dev/v1alpha1", "kind": "Route", "metadata": {"name": "errors"},
         "spec": {"hosts": ["log.example.test"], "rules": rules[1:],
                  "plugins": [{"name": "request-log", "config": {"sampleRate": 0}}]}},
    ]
    (tmp_path / "all.yaml").write_text(
        yaml.safe_dump_all([objects["ConfigMap"], plugin, *routes], sort_keys=False)
    )
    assert check(tmp_path).returncode == 0, check(tmp_path).stdout
    proxy = Proxy(tmp_path)
    try:
        proxy.wait_ready()
        secrets = {
            "authorization": "Bearer secret-token-1",
            "cookie": "sid=secret-cookie-2",
            "x-internal-token": "secret-header-3",
            "x-tenant": "acme",
        }
        status, logged = proxy.get("/all/ok?token=secret-q-4&session=secret-q-5&page=3", secrets)
        assert status == 200
        _, sampled_out = proxy.get("/errors/ok", {})
        status, failed = proxy.get("/errors/fail?Access_Token=secret-q-6", {})
        assert status == 503
        # The access log line of the last request comes after the plugin's.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(failed in line and "weir::access" in line for line in proxy.lines):
            time.sleep(0.05)
    finally:
        proxy.stop()
    output = "".join(proxy.lines)

    [line] = proxy.plugin_lines(logged)
    assert line["level"] == "INFO" and line["message"] == "request"
    fields = line["fields"]
    assert isinstance(fields.pop("durationMs"), int)
    assert fields == {
        "method": "GET",
        "path": "/all/ok",
        "route": "default/all",
        "status": 200,
        "user": None,
        "clientIp": "127.0.0.1",
        "query": "token=[REDACTED]&session=[REDACTED]&page=3",
        "requestHeaders": {
            "authorization": "[REDACTED]",
            "cookie": "[REDACTED]",
            "x-tenant": "acme",
            "x-internal-token": "[REDACTED]",
        },
        "responseHeaders": {"content-type": "text/plain"},
    }
    assert proxy.plugin_lines(sampled_out) == [], "sampleRate 0: a 200 is not logged"
    [error] = proxy.plugin_lines(failed)
    assert error["fields"]["status"] == 503, "errors are logged whatever the rate"
    assert error["fields"]["query"] == "Access_Token=[REDACTED]"
    plugin_output = "".join(l for l in proxy.lines if "default/request-log" in l)
    assert "secret-" not in plugin_output, plugin_output
    assert "plugin_failed" not in output


class Echo(http.server.BaseHTTPRequestHandler):
    """A backend answering with what it received: the path and the headers, as JSON."""

    def do_GET(self):
        body = json.dumps({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def api_key_proxy(tmp_path):
    """api-key (its example config, with queryParam) on a Route that strips /api."""
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    objects = manifest("api-key")
    plugin = copy.deepcopy(objects["Plugin"])
    plugin["spec"]["config"]["queryParam"] = "api_key"
    route = {
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "Route",
        "metadata": {"name": "orders"},
        "spec": {
            "hosts": ["keys.example.test"],
            "plugins": [{"name": "api-key"}],
            "rules": [{
                "matches": [{"path": {"type": "Prefix", "value": "/api"}}],
                "backends": [{"url": f"http://127.0.0.1:{backend.server_address[1]}"}],
                "rewrite": {"stripPrefix": True},
            }],
        },
    }
    (tmp_path / "all.yaml").write_text(
        yaml.safe_dump_all([objects["ConfigMap"], plugin, route], sort_keys=False)
    )
    proxy = Proxy(tmp_path)
    try:
        proxy.wait_ready()
        yield lambda path, headers={}: proxy.call(path, headers, host="keys.example.test")
    finally:
        proxy.stop()
        backend.shutdown()
        backend.server_close()


# The example's demo key (plugins/api-key/plugin.yaml).
DEMO_KEY = "demo-ci-key-change-me-0123456789abcdef"


def test_api_key_in_a_real_proxy(api_key_proxy):
    status, _, body = api_key_proxy("/api/orders?x=1", {"x-api-key": DEMO_KEY, "x-api-client": "forged"})
    assert status == 200, body
    seen = json.loads(body)
    assert seen["path"] == "/orders?x=1", "the Route's rewrite still applies"
    assert "x-api-key" not in seen["headers"]
    assert seen["headers"]["x-api-client"] == "ci-pipeline"

    status, headers, body = api_key_proxy("/api/orders", {"x-api-key": "not-a-key"})
    assert status == 401
    assert headers["www-authenticate"] == 'ApiKey realm="api"'
    assert json.loads(body) == {"error": "unauthorized", "message": "the API key is not valid"}

    status, _, body = api_key_proxy(f"/api/orders?api_key={DEMO_KEY}&x=1")
    assert status == 200, body
    assert DEMO_KEY not in body.decode(), "the key in the query never reaches the upstream"


def test_api_key_taking_the_key_out_of_the_query_keeps_the_routes_rewrite(api_key_proxy):
    status, _, body = api_key_proxy(f"/api/orders?api_key={DEMO_KEY}&x=1")
    assert status == 200, body
    assert json.loads(body)["path"] == "/orders?x=1"
