"""The three-services example as README.md walks through it: `run` starts the backends and
weir-proxy; the gateway answers the public paths, refuses the others without a token (401,
JSON), passes a user's requests on with the prefix stripped and `x-user-id` set, keeps
/admin to admins (403 for others); the plugin suites pass; Ctrl-C stops everything."""

import http.client
import importlib.machinery
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
RUN = HERE / "run"
HOST = "api.example.test"
# Generous: the machine may be busy building.
START_SECONDS = 180


def load_run():
    """The `run` script as a module (it has no .py suffix): its users, secret and helpers."""
    loader = importlib.machinery.SourceFileLoader("three_services_run", str(RUN))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


run = load_run()


def weir_proxy() -> Path:
    binary = run.weir_proxy_binary(build=False)
    if not binary.exists():
        pytest.fail(f"{binary} is missing: `cargo build -p weir-proxy` builds it")
    return binary


def free_ports(count: int) -> list:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except OSError:
        return True


class Gateway:
    """`run` as a user starts it, on free ports, with its output collected."""

    def __init__(self):
        listen, admin, *backends = free_ports(5)
        self.port, self.backend_ports = listen, backends
        env = dict(
            os.environ,
            WEIR_PROXY=str(weir_proxy()),
            THREE_SERVICES_LISTEN=f"127.0.0.1:{listen}",
            THREE_SERVICES_ADMIN_LISTEN=f"127.0.0.1:{admin}",
            THREE_SERVICES_BACKEND_PORTS=",".join(map(str, backends)),
        )
        self.lines = []
        self.process = subprocess.Popen(
            [sys.executable, str(RUN)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines[-60:])

    def wait_ready(self):
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline and self.process.poll() is None:
            if any(line.startswith("run: ready") for line in self.lines):
                return
            time.sleep(0.2)
        pytest.fail(f"run did not say it was ready:\n{self.output()}")

    def call(self, method, path, token=None, body=None, headers=()):
        request_headers = {"host": HOST, **dict(headers)}
        if token:
            request_headers["authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body)
            request_headers["content-type"] = "application/json"
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=data, headers=request_headers)
            response = connection.getresponse()
            raw = response.read()
            answer_headers = {k.lower(): v for k, v in response.getheaders()}
        finally:
            connection.close()
        return response.status, answer_headers, json.loads(raw) if raw else None

    def login(self, username):
        password = run.USERS[username]["password"]
        status, _, body = self.call(
            "POST", "/users/login", body={"username": username, "password": password}
        )
        assert status == 200, body
        return body["token"]

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()


@pytest.fixture(scope="module")
def gateway():
    gateway = Gateway()
    try:
        gateway.wait_ready()
        yield gateway
    finally:
        gateway.stop()


def test_public_paths_are_open(gateway):
    assert gateway.call("GET", "/healthz")[::2] == (200, {"status": "ok"})
    for prefix, service in zip(("/users", "/chat", "/admin"), run.SERVICES):
        status, _, body = gateway.call("GET", f"{prefix}/healthz")
        assert status == 200, body
        assert body == {"service": service, "method": "GET", "path": "/healthz", "userId": None}


def test_login_issues_a_token_for_the_right_password(gateway):
    assert gateway.login("alice").count(".") == 2
    status, _, body = gateway.call(
        "POST", "/users/login", body={"username": "alice", "password": "wrong"}
    )
    assert (status, body["error"]) == (401, "invalid_credentials")


@pytest.mark.parametrize("path", ["/users/me", "/chat/rooms", "/admin/stats", "/users/login"])
def test_protected_paths_need_a_token(gateway, path):
    # GET /users/login is not the public POST: it falls to the protected /users prefix.
    status, headers, body = gateway.call("GET", path)
    assert status == 401, body
    assert headers["content-type"].startswith("application/json")
    assert body["error"] == "unauthorized"
    assert headers["www-authenticate"] == 'Bearer realm="api"'


def test_a_token_opens_them_with_the_prefix_stripped_and_the_user_forwarded(gateway):
    token = gateway.login("alice")
    for path, service, upstream_path in (
        ("/users/me", "user-service", "/me"),
        ("/chat/rooms/42?before=7", "chat-service", "/rooms/42?before=7"),
    ):
        status, _, body = gateway.call("GET", path, token)
        assert status == 200, body
        assert body == {"service": service, "method": "GET", "path": upstream_path, "userId": "alice"}
    status, _, body = gateway.call("POST", "/chat/rooms/42/messages", token, {"text": "hi"})
    assert (status, body["path"], body["method"]) == (200, "/rooms/42/messages", "POST")


def test_admin_is_for_admins(gateway):
    status, headers, body = gateway.call("GET", "/admin/stats", gateway.login("alice"))
    assert (status, body["error"]) == (403, "forbidden"), body
    assert headers["content-type"].startswith("application/json")
    status, _, body = gateway.call("GET", "/admin/stats", gateway.login("root"))
    assert status == 200, body
    assert body == {"service": "admin-service", "method": "GET", "path": "/stats", "userId": "root"}


def test_a_client_cannot_name_its_own_user(gateway):
    spoof = {"x-user-id": "root"}
    assert gateway.call("GET", "/users/healthz", headers=spoof)[2]["userId"] is None
    token = gateway.login("alice")
    assert gateway.call("GET", "/users/me", token, headers=spoof)[2]["userId"] == "alice"


def test_expired_and_forged_tokens_are_refused(gateway):
    claims = {"iss": run.ISSUER, "sub": "root", "roles": ["admin"], "exp": int(time.time()) + 600}
    expired = run.make_jwt({**claims, "exp": int(time.time()) - 600})
    forged = run.make_jwt(claims, secret="not-the-gateway-secret")
    for token in (expired, forged):
        status, _, body = gateway.call("GET", "/admin/stats", token)
        assert (status, body["error"]) == (401, "unauthorized"), body
    assert gateway.call("GET", "/admin/stats", run.make_jwt(claims))[0] == 200


def test_plugin_suites_pass():
    result = subprocess.run(
        [weir_proxy(), "plugin", "test", HERE / "plugins"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^([1-9]\d*) passed, 0 failed$", result.stdout, re.M), result.stdout


def test_config_compiles_cleanly():
    result = subprocess.run(
        [weir_proxy(), "check", HERE / "config"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_committed_plugin_sources_are_the_ts_files():
    committed = (HERE / "config" / run.SOURCES_FILE).read_text()
    assert committed == run.render_plugin_sources(), (
        "config/plugin-sources.yaml is out of date: `examples/three-services/run` writes it"
    )


def test_ctrl_c_stops_everything(gateway):
    # Last in this file: it stops the module's gateway.
    gateway.process.send_signal(signal.SIGINT)
    assert gateway.process.wait(timeout=60) == 0, gateway.output()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.killpg(gateway.process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        pytest.fail("weir-proxy outlived run")
    for port in (gateway.port, *gateway.backend_ports):
        assert refused(port), f"port {port} still answers"
