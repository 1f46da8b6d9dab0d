"""Shared helpers of the chart's tests: rendering with Helm's own engine (helm-python-sdk,
no helm binary), the value sets every test walks, and small accessors for rendered objects.

Rendering is offline: `lookup` finds nothing, so the admin token and certificate are
generated on every render (test_cluster.py checks the real install/upgrade path)."""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import helm_python
import kubernetes_validate.utils as kv
import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "weir"
RELEASE = "weir"
NAMESPACE = "weir-system"

# kubernetes-validate 1.37 bundles schemas from Kubernetes 1.25 on; the chart's floor is
# 1.24, whose schema is not available offline. 1.25 differs from 1.24 in nothing the
# chart renders (every API it uses is GA since 1.23 at the latest); the real 1.24 API
# server of test_cluster.py covers the rest when it is there.
OLDEST_SCHEMA = kv.all_versions()[0]
NEWEST_SCHEMA = kv.latest_version()
SCHEMA_VERSIONS = (OLDEST_SCHEMA, NEWEST_SCHEMA)
# Kubernetes versions `helm lint` checks the chart against: its floor and a recent one.
LINT_KUBE_VERSIONS = ("v1.24.0", "v" + NEWEST_SCHEMA)

METRICS_PEER = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}

# Every non-default value the chart offers, in sets that together touch each template path.
VALUE_SETS: dict[str, dict] = {
    "defaults": {},
    "daemonset": {"proxy": {"kind": "DaemonSet"}},
    "autoscaling": {
        "proxy": {
            "autoscaling": {
                "enabled": True,
                "minReplicas": 3,
                "maxReplicas": 12,
                "targetMemoryUtilizationPercentage": 75,
            },
            "podDisruptionBudget": {"minAvailable": "50%"},
        }
    },
    "watch-namespaces": {"watchNamespaces": ["a", "b"]},
    "existing-secrets": {
        "adminToken": {"existingSecret": "my-admin-token"},
        "adminTls": {"existingSecret": "my-admin-tls"},
    },
    "cert-manager": {"certManager": {"enabled": True}},
    "cert-manager-issuer": {
        "certManager": {
            "enabled": True,
            "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"},
            "duration": "2160h",
            "renewBefore": "360h",
        }
    },
    "nodeport": {
        "proxy": {
            "service": {
                "type": "NodePort",
                "nodePorts": {"http": 30080, "https": 30443},
                "externalTrafficPolicy": "Local",
            }
        }
    },
    "clusterip": {
        # LoadBalancer/NodePort-only fields set on purpose: they must not be rendered.
        "proxy": {
            "service": {
                "type": "ClusterIP",
                "externalTrafficPolicy": "Local",
                "nodePorts": {"http": 30080},
                "loadBalancerClass": "example.com/lb",
                "loadBalancerSourceRanges": ["203.0.113.0/24"],
            }
        }
    },
    "monitoring": {
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}, "scrapeTimeout": "10s"},
            "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}, "serverErrorRatio": 0.02},
            "dashboard": {"enabled": True, "namespace": "monitoring", "annotations": {"grafana_folder": "Gateways"}},
        },
        "networkPolicy": {"metricsFrom": [METRICS_PEER]},
    },
    "redis-url": {"redis": {"url": "redis://:hunter2@redis.cache.svc:6379/0"}},
    "redis-existing": {"redis": {"existingSecret": "redis-credentials", "existingSecretKey": "connection"}},
    "no-network-policy": {"networkPolicy": {"enabled": False}},
    "internal": {"className": "internal", "defaultClass": False},
    "no-gateway-api": {"gatewayApi": {"enabled": False}},
    "gateway-api-crds": {"gatewayApi": {"installCRDs": True}},
    "tuned": {
        "fullnameOverride": "edge",
        "commonLabels": {"team": "platform"},
        "allowUrlBackends": True,
        "trustedNamespaces": ["platform", "edge"],
        "image": {"tag": "1.2.3", "digest": "sha256:" + "ab" * 32, "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "registry"}],
        "rbac": {"create": True},
        "adminTls": {"validityDays": 365},
        "operator": {
            "replicas": 2,
            "logLevel": "debug",
            "logFormat": "text",
            "extraArgs": ["--debounce=500ms"],
            "serviceAccount": {"annotations": {"example.com/role": "operator"}},
            "podAnnotations": {"example.com/scrape": "false"},
            "podLabels": {"tier": "control"},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gateway", "effect": "NoSchedule"}],
            "priorityClassName": "system-cluster-critical",
        },
        "proxy": {
            "replicas": 3,
            "workers": 4,
            "trustedProxies": ["10.0.0.0/8", "192.168.0.0/16"],
            "maxHeaderBytes": 32768,
            "maxBodyBytes": 1073741824,
            "headerReadTimeoutSeconds": 10,
            "idleTimeoutSeconds": 120,
            "maxConnections": 20000,
            "maxConnectionsPerClient": 64,
            "http2MaxConcurrentStreams": 100,
            "drainTimeoutSeconds": 60,
            "terminationGracePeriodSeconds": 90,
            "otlpEndpoint": "http://otel-collector.observability:4318",
            "accessLog": False,
            "logLevel": "warn",
            "extraArgs": ["--plugin-fetch-allow=10.1.0.0/16"],
            "extraEnv": [{"name": "MIMALLOC_PURGE_DELAY", "value": "0"}],
            "lifecycle": {"preStop": {"exec": {"command": ["/usr/local/bin/weir-proxy", "--version"]}}},
            "podDisruptionBudget": {"maxUnavailable": 2},
            "service": {
                "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"},
                "labels": {"exposure": "public"},
                "loadBalancerClass": "service.k8s.aws/nlb",
                "loadBalancerSourceRanges": ["203.0.113.0/24"],
                "externalTrafficPolicy": "Local",
                "nodePorts": {"https": 31443},
            },
            "serviceAccount": {"name": "edge-proxies", "annotations": {"example.com/role": "proxy"}},
            "podAnnotations": {"example.com/team": "edge"},
            "podLabels": {"tier": "edge"},
            "affinity": {
                "podAntiAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 100,
                            "podAffinityTerm": {
                                "topologyKey": "kubernetes.io/hostname",
                                "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "proxy"}},
                            },
                        }
                    ]
                }
            },
            "topologySpreadConstraints": [
                {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}
            ],
            "priorityClassName": "system-cluster-critical",
        },
    },
}


@functools.lru_cache(maxsize=None)
def _render(values_json: str, name: str, namespace: str) -> tuple[tuple[str, str], ...]:
    with helm_python.Chart.load(CHART) as chart:
        rendered = chart.render(json.loads(values_json), name=name, namespace=namespace, is_install=True)
    return tuple(sorted(rendered.items()))


def render_files(values: dict | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path -> rendered text (NOTES.txt included)."""
    return dict(_render(json.dumps(values or {}, sort_keys=True), name, namespace))


def parse_objects(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render(values: dict | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE) -> list[dict]:
    """Every object the chart renders (a fresh copy: tests may change it)."""
    objects = []
    for path, text in render_files(values, name=name, namespace=namespace).items():
        if not path.endswith("NOTES.txt"):
            objects.extend(parse_objects(text))
    return copy.deepcopy(objects)


def notes(values: dict | None = None, **kwargs) -> str:
    return next(text for path, text in render_files(values, **kwargs).items() if path.endswith("NOTES.txt"))


def find(objects: list[dict], kind: str, name: str | None = None, namespace: str | None = None) -> list[dict]:
    return [
        o
        for o in objects
        if o["kind"] == kind
        and (name is None or o["metadata"]["name"] == name)
        and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]


def one(objects: list[dict], kind: str, name: str | None = None, namespace: str | None = None) -> dict:
    found = find(objects, kind, name, namespace)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def workload(objects: list[dict], component: str) -> dict:
    """The Deployment or DaemonSet of a component (operator, proxy)."""
    found = [
        o
        for o in objects
        if o["kind"] in ("Deployment", "DaemonSet")
        and o["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    assert len(found) == 1, found
    return found[0]


def pod_spec(objects: list[dict], component: str) -> dict:
    return workload(objects, component)["spec"]["template"]["spec"]


def container(objects: list[dict], component: str) -> dict:
    (only,) = pod_spec(objects, component)["containers"]
    return only


def flags(objects: list[dict], component: str) -> dict[str, list[str | None]]:
    """The container's `--flag=value` arguments: flag -> values (None for a bare flag)."""
    result: dict[str, list[str | None]] = {}
    for arg in container(objects, component)["args"]:
        assert arg.startswith("--"), arg
        flag, sep, value = arg.partition("=")
        result.setdefault(flag, []).append(value if sep else None)
    return result


def flag(objects: list[dict], component: str, name: str) -> str:
    (value,) = flags(objects, component)[name]
    return value


def openssl() -> str:
    path = shutil.which("openssl")
    if not path:
        pytest.skip("openssl is not installed")
    return path


def openssl_verify(ca_pem: str, cert_pem: str, hostname: str) -> subprocess.CompletedProcess:
    """`openssl verify` of a server certificate against a CA, for a host name."""
    with tempfile.TemporaryDirectory() as tmp:
        ca, cert = Path(tmp, "ca.crt"), Path(tmp, "tls.crt")
        ca.write_text(ca_pem)
        cert.write_text(cert_pem)
        return subprocess.run(
            [openssl(), "verify", "-CAfile", str(ca), "-purpose", "sslserver", "-verify_hostname", hostname, str(cert)],
            capture_output=True,
            text=True,
        )


def dns_names(cert_pem: str) -> list[str]:
    """The DNS subject alternative names of a PEM certificate."""
    out = subprocess.run(
        [openssl(), "x509", "-noout", "-ext", "subjectAltName"], input=cert_pem, capture_output=True, text=True, check=True
    ).stdout
    return [part.strip()[len("DNS:") :] for part in out.replace("\n", ",").split(",") if part.strip().startswith("DNS:")]



def binary(name: str) -> str:
    """A weir binary as scripts/test builds it (or $WEIR_BIN_DIR/<name>); skips without it."""
    path = Path(os.environ.get("WEIR_BIN_DIR") or REPO / "target" / "debug", name)
    if not os.access(path, os.X_OK):
        pytest.skip(f"{path} is not built (cargo build --workspace --bins)")
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def localize(args: list[str], root: Path) -> tuple[list[str], dict[int, int]]:
    """A container's arguments for a run on this machine: the mounted files under `root`,
    every 0.0.0.0 listener on a free loopback port. Returns them and {pod port: local port}."""
    ports: dict[int, int] = {}

    def listener(match: re.Match) -> str:
        ports[int(match.group(1))] = free_port()
        return f"127.0.0.1:{ports[int(match.group(1))]}"

    local = [re.sub(r"0\.0\.0\.0:(\d+)", listener, a.replace("/etc/weir/", f"{root}/")) for a in args]
    return local, ports


def admin_files(objects: list[dict]) -> dict[str, str]:
    """The files of the admin Secrets the chart generated: token, ca.crt, tls.crt, tls.key."""
    files: dict[str, str] = {}
    for secret in find(objects, "Secret"):
        if secret["metadata"]["labels"]["app.kubernetes.io/component"] == "admin":
            files |= {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    return files


def write_mounts(root: Path, files: dict[str, str]) -> None:
    """The admin Secrets' files where the pods mount them (token; ca.crt, tls.crt, tls.key)."""
    for name, content in files.items():
        directory = root / ("admin-token" if name == "token" else "admin-tls")
        directory.mkdir(exist_ok=True)
        (directory / name).write_text(content)


@contextlib.contextmanager
def running(command: list[str], env: dict[str, str] | None = None):
    """Runs a binary until the block ends; its output goes to a file, `process.output()`."""
    with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
        process.output = lambda: Path(log.name).read_text()
        try:
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
            process.wait(timeout=60)


def http_get(port: int, path: str, process: subprocess.Popen, *, tls: tuple[str, str] | None = None, token: str | None = None) -> int:
    """GET on a loopback port once it listens; with tls=(CA file, server name), over HTTPS
    checking the certificate for that name as the operator does. Returns the status."""
    deadline = time.monotonic() + 30
    while True:
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=5)
            break
        except OSError:
            assert process.poll() is None, process.output()
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            time.sleep(0.1)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.sock = raw
    if tls:
        ca_file, server_name = tls
        connection.sock = ssl.create_default_context(cafile=ca_file).wrap_socket(raw, server_hostname=server_name)
    connection.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
    return connection.getresponse().status


def proxy_admin_status(objects: list[dict], files: dict[str, str], token: str) -> int:
    """Runs weir-proxy with the chart's own proxy arguments and the admin Secrets' `files`,
    and asks its admin listener for the snapshot version as the operator does (HTTPS,
    checked against ca.crt for --proxy-server-name, bearer `token`)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_mounts(root, files)
        args, ports = localize(container(objects, "proxy")["args"], root)
        with running([binary("weir-proxy"), *args]) as proxy:
            tls = (str(root / "admin-tls" / "ca.crt"), flag(objects, "operator", "--proxy-server-name"))
            return http_get(ports[9901], "/v1/snapshot/version", proxy, tls=tls, token=token)
