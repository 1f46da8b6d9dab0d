"""Against a real API server (KUBECONFIG; skipped without one): `helm install` and
`helm upgrade` of the chart into a fresh namespace keep the generated admin token and
certificate (the chart's `lookup`), two releases install side by side, every rendered
object and deploy/weir.yaml pass the server's own validation (dry run), and the real
operator, running as the chart's ServiceAccount with the chart's flags, files and RBAC
and nothing more, serves a Route. No pod needs to run: the binary runs here, as in e2e/.

Everything created is deleted: the releases, the namespace, and the CRDs if this test
installed them and nothing uses them."""

from __future__ import annotations

import base64
import json
import os
import signal
import ssl
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import helm_python
import pytest
import yaml

from conftest import (
    CHART,
    REPO,
    VALUE_SETS,
    binary,
    container,
    flag,
    http_get,
    localize,
    parse_objects,
    render,
    running,
    write_mounts,
)

pytestmark = pytest.mark.skipif(
    not os.environ.get("KUBECONFIG"), reason="KUBECONFIG is not set: these tests need a Kubernetes API server"
)

CRDS = ("routes.weir.dev", "plugins.weir.dev")
# Upstream's Gateway API CRDs, which the chart installs with gatewayApi.installCRDs.
GATEWAY_API_CRDS = tuple(
    f"{plural}.gateway.networking.k8s.io"
    for plural in ("gatewayclasses", "gateways", "grpcroutes", "httproutes", "referencegrants")
)
GATEWAY_CLASS_API = "apis/gateway.networking.k8s.io/v1/gatewayclasses"
# API paths of the kinds the chart renders that every API server has.
RESOURCES = {
    "Namespace": ("api/v1", "namespaces", False),
    "Secret": ("api/v1", "secrets", True),
    "ConfigMap": ("api/v1", "configmaps", True),
    "Service": ("api/v1", "services", True),
    "ServiceAccount": ("api/v1", "serviceaccounts", True),
    "Deployment": ("apis/apps/v1", "deployments", True),
    "DaemonSet": ("apis/apps/v1", "daemonsets", True),
    "ClusterRole": ("apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Role": ("apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "NetworkPolicy": ("apis/networking.k8s.io/v1", "networkpolicies", True),
    "IngressClass": ("apis/networking.k8s.io/v1", "ingressclasses", False),
    "PodDisruptionBudget": ("apis/policy/v1", "poddisruptionbudgets", True),
    "HorizontalPodAutoscaler": ("apis/autoscaling/v2", "horizontalpodautoscalers", True),
    "CustomResourceDefinition": ("apis/apiextensions.k8s.io/v1", "customresourcedefinitions", False),
}


# What a test may leave in its namespace that no uninstall removes.
LEFTOVERS = (
    ("apis/coordination.k8s.io/v1", "leases"),
    ("apis/events.k8s.io/v1", "events"),
    ("apis/discovery.k8s.io/v1", "endpointslices"),
    ("apis/weir.dev/v1alpha1", "routes"),
    ("apis/weir.dev/v1alpha1", "plugins"),
)


class Kube:
    """The few API calls the tests need, from the current context of KUBECONFIG (client
    certificates or a bearer token)."""

    def __init__(self, path: str):
        config = yaml.safe_load(Path(path).read_text())
        context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        self.server = cluster["server"].rstrip("/")
        self.cluster = cluster
        self.headers = {"Content-Type": "application/json"}
        self.ssl = ssl.create_default_context()
        self._files = tempfile.TemporaryDirectory()
        if cluster.get("insecure-skip-tls-verify"):
            self.ssl.check_hostname, self.ssl.verify_mode = False, ssl.CERT_NONE
        elif "certificate-authority-data" in cluster:
            self.ssl.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        elif "certificate-authority" in cluster:
            self.ssl.load_verify_locations(cafile=cluster["certificate-authority"])
        if "token" in user:
            self.headers["Authorization"] = f"Bearer {user['token']}"
        elif "client-certificate-data" in user:
            cert, key = Path(self._files.name, "c"), Path(self._files.name, "k")
            cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
            key.write_bytes(base64.b64decode(user["client-key-data"]))
            self.ssl.load_cert_chain(cert, key)
        elif "client-certificate" in user:
            self.ssl.load_cert_chain(user["client-certificate"], user["client-key"])
        else:
            pytest.skip("the kubeconfig's user has no token or client certificate these tests can use")

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(
            f"{self.server}/{path}",
            method=method,
            headers=self.headers,
            data=None if body is None else json.dumps(body).encode(),
        )
        try:
            with urllib.request.urlopen(request, context=self.ssl, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def get(self, path: str) -> dict | None:
        status, body = self.call("GET", path)
        assert status in (200, 404), (path, status, body)
        return body if status == 200 else None

    def secret(self, namespace: str, name: str) -> dict | None:
        found = self.get(f"api/v1/namespaces/{namespace}/secrets/{name}")
        return found and found["data"]

    def delete_namespace(self, name: str) -> None:
        # Without a controller manager nothing empties or finalizes a namespace: delete
        # what the tests may leave in it (the releases are uninstalled; the operator's
        # Lease and Events, a Route), then finalize it.
        for prefix, plural in LEFTOVERS:
            self.call("DELETE", f"{prefix}/namespaces/{name}/{plural}")
            left = self.get(f"{prefix}/namespaces/{name}/{plural}")
            assert not (left and left["items"]), f"{plural} left in {name}"
        self.call("DELETE", f"api/v1/namespaces/{name}")
        for _ in range(20):
            namespace = self.get(f"api/v1/namespaces/{name}")
            if namespace is None:
                return
            if namespace["spec"].get("finalizers"):
                namespace["spec"]["finalizers"] = []
                self.call("PUT", f"api/v1/namespaces/{name}/finalize", namespace)
            time.sleep(0.5)
        raise AssertionError(f"namespace {name} was not deleted")

    def dry_run_create(self, obj: dict, namespace: str) -> tuple[int, dict]:
        prefix, plural, namespaced = RESOURCES[obj["kind"]]
        path = f"{prefix}/namespaces/{namespace}/{plural}" if namespaced else f"{prefix}/{plural}"
        if namespaced:
            obj = obj | {"metadata": obj["metadata"] | {"namespace": namespace}}
        return self.call("POST", f"{path}?dryRun=All&fieldValidation=Strict", obj)


@pytest.fixture(scope="module")
def kube():
    return Kube(os.environ["KUBECONFIG"])


@pytest.fixture
def namespace(kube):
    """A fresh namespace, deleted afterwards; the CRDs too when the test installed them."""
    name = f"weir-chart-{uuid.uuid4().hex[:8]}"
    crds_before = {crd for crd in CRDS if kube.get(f"apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}")}
    status, body = kube.call("POST", "api/v1/namespaces", {"metadata": {"name": name}})
    assert status == 201, body
    try:
        yield name
    finally:
        kube.delete_namespace(name)
        for crd in set(CRDS) - crds_before:
            plural, group = crd.split(".", 1)
            in_use = kube.get(f"apis/{group}/v1alpha1/{plural}")
            if in_use is not None and not in_use.get("items"):
                kube.call("DELETE", f"apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}")


def test_install_and_upgrade_keep_the_admin_secrets(kube, namespace):
    with helm_python.Config(namespace=namespace) as helm:
        helm.install(str(CHART), "weir", {}, namespace=namespace, timeout=120)
        token = kube.secret(namespace, "weir-admin-token")
        tls = kube.secret(namespace, "weir-admin-tls")
        assert token and tls and sorted(tls) == ["ca.crt", "tls.crt", "tls.key"]

        helm.upgrade(str(CHART), "weir", {"proxy": {"replicas": 3}}, namespace=namespace, timeout=120)
        deployment = kube.get(f"apis/apps/v1/namespaces/{namespace}/deployments/weir-proxy")
        assert deployment["spec"]["replicas"] == 3, "the upgrade was applied"
        assert kube.secret(namespace, "weir-admin-token") == token
        assert kube.secret(namespace, "weir-admin-tls") == tls

        # A second upgrade, and the cluster-aware render `helm template` cannot do, agree.
        helm.upgrade(str(CHART), "weir", {}, namespace=namespace, timeout=120)
        assert kube.secret(namespace, "weir-admin-token") == token
        with helm_python.Chart.load(CHART) as chart:
            rendered = helm.render(chart, {}, name="weir", namespace=namespace, is_upgrade=True)
        secrets = {o["metadata"]["name"]: o["data"] for o in parse_objects(rendered["weir/templates/admin-secrets.yaml"])}
        assert secrets == {"weir-admin-token": token, "weir-admin-tls": tls}

        # The operator's flag names what the kept certificate carries.
        assert flag(render(namespace=namespace), "operator", "--proxy-server-name") == f"weir-proxy-admin.{namespace}.svc"

        helm.uninstall("weir", timeout=120)
        assert kube.secret(namespace, "weir-admin-token") is None


def test_two_releases_side_by_side(kube, namespace):
    with helm_python.Config(namespace=namespace) as helm:
        helm.install(str(CHART), "weir", {}, namespace=namespace, timeout=120)
        helm.install(str(CHART), "internal", VALUE_SETS["internal"], namespace=namespace, timeout=120)
        for name in ("weir-operator", "internal-weir-operator"):
            assert kube.get(f"apis/apps/v1/namespaces/{namespace}/deployments/{name}")
        assert kube.secret(namespace, "weir-admin-token") != kube.secret(namespace, "internal-weir-admin-token")
        helm.uninstall("internal", timeout=120)
        helm.uninstall("weir", timeout=120)


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_the_api_server_accepts_every_object(kube, namespace, name):
    """Server-side validation, on the API server's own version (1.24 where the schemas of
    test_kubernetes_schemas.py stop at 1.25). Custom resources (ServiceMonitor, ...) are
    left out: their CRDs are not installed. So are upstream's Gateway API CRDs, which older
    API servers may refuse: test_the_api_server_on_the_gateway_api_crds has them."""
    for obj in render(VALUE_SETS[name], namespace=namespace):
        if obj["kind"] in RESOURCES and obj["metadata"]["name"] not in GATEWAY_API_CRDS:
            status, body = kube.dry_run_create(obj, namespace)
            assert status == 201, (obj["kind"], obj["metadata"]["name"], body.get("message"))


def test_the_api_server_accepts_the_manifest(kube, namespace):
    for obj in parse_objects((REPO / "deploy" / "weir.yaml").read_text()):
        status, body = kube.dry_run_create(obj, namespace)
        # The Namespace and the CRDs may exist already (a dry run still validates them first).
        assert status == 201 or (status == 409 and body.get("reason") == "AlreadyExists"), (
            obj["kind"],
            obj["metadata"]["name"],
            body.get("message"),
        )


def test_the_dry_run_refuses_a_broken_object(kube, namespace):
    """The dry runs above do reach validation: a bad object is refused."""
    deployment = next(o for o in render(namespace=namespace) if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = 70000
    status, body = kube.dry_run_create(deployment, namespace)
    assert status == 422, body


def wait_for(what: str, check, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
    return result


@pytest.mark.parametrize("scope", ["cluster", "namespace", "none"])
def test_the_operator_works_with_exactly_the_charts_rights(kube, namespace, scope, tmp_path):
    """The operator's RBAC is enough (and it is all it has): it lists and watches
    everything, takes its Lease, and writes a Route's status and a Warning Event.

    No proxy takes part: the API server refuses loopback addresses in EndpointSlices, and
    these tests send nothing to any other address. test_binaries.py checks the proxy side
    of the push (the chart's certificate, name and token) on loopback."""
    values = {"cluster": {}, "namespace": {"watchNamespaces": [namespace]}, "none": {"rbac": {"create": False}}}[scope]
    objects = render(values, namespace=namespace)
    with helm_python.Config(namespace=namespace) as helm:
        helm.install(str(CHART), "weir", values, namespace=namespace, timeout=120)
        try:
            # The pods' files, from the Secrets the chart made.
            files = {k: base64.b64decode(v).decode() for k, v in kube.secret(namespace, "weir-admin-tls").items()}
            files["token"] = base64.b64decode(kube.secret(namespace, "weir-admin-token")["token"]).decode()
            write_mounts(tmp_path, files)
            # The operator's identity: its ServiceAccount's token, nothing else.
            status, body = kube.call(
                "POST",
                f"api/v1/namespaces/{namespace}/serviceaccounts/weir-operator/token",
                {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}},
            )
            assert status == 201, body
            kubeconfig = tmp_path / "kubeconfig"
            cluster = {k: v for k, v in kube.cluster.items() if k != "certificate-authority"}
            if "certificate-authority" in kube.cluster:
                cluster["certificate-authority-data"] = base64.b64encode(
                    Path(kube.cluster["certificate-authority"]).read_bytes()
                ).decode()
            kubeconfig.write_text(
                yaml.safe_dump(
                    {
                        "apiVersion": "v1",
                        "kind": "Config",
                        "clusters": [{"name": "c", "cluster": cluster}],
                        "users": [{"name": "operator", "user": {"token": body["status"]["token"]}}],
                        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "operator", "namespace": namespace}}],
                        "current-context": "c",
                    }
                )
            )
            operator_args, operator_ports = localize(container(objects, "operator")["args"], tmp_path)
            route = {
                "apiVersion": "weir.dev/v1alpha1",
                "kind": "Route",
                "metadata": {"name": "hello"},
                "spec": {"hosts": ["hello.example.com"], "rules": [{"backends": [{"name": "hello", "port": 80}]}]},
            }
            status, body = kube.call("POST", f"apis/weir.dev/v1alpha1/namespaces/{namespace}/routes", route)
            assert status == 201, body
            env = {"KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "RUST_LOG": "info"}
            with running([binary("weir-operator"), *operator_args], env=env) as operator:
                if scope == "none":
                    # Without the chart's RBAC the token alone gets the operator nowhere:
                    # what follows relies on the chart's rules.
                    wait_for("a refused watch", lambda: "forbidden" in operator.output().lower())
                    assert http_get(operator_ports[9090], "/readyz", operator) == 503
                    return
                wait_for("the operator to be ready", lambda: http_get(operator_ports[9090], "/readyz", operator) == 200)
                lease = kube.get(f"apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/weir-operator")
                assert lease and lease["spec"]["holderIdentity"]

                def conditions():
                    found = kube.get(f"apis/weir.dev/v1alpha1/namespaces/{namespace}/routes/hello")
                    return {c["type"]: c for c in (found.get("status") or {}).get("conditions", [])}

                resolved = wait_for("the Route's status", lambda: conditions().get("ResolvedRefs"))
                assert (resolved["status"], resolved["reason"]) == ("False", "BackendNotFound")
                events = wait_for(
                    "a Warning Event",
                    lambda: [
                        e
                        for e in kube.get(f"apis/events.k8s.io/v1/namespaces/{namespace}/events")["items"]
                        if e["regarding"]["name"] == "hello" and e["type"] == "Warning"
                    ],
                )
                assert events[0]["reason"] == "BackendNotFound"
                operator.send_signal(signal.SIGTERM)
                assert operator.wait(timeout=30) == 0, operator.output()
                assert "forbidden" not in operator.output().lower(), operator.output()
        finally:
            helm.uninstall("weir", timeout=120)


def serves_gateway_classes(kube) -> bool:
    """Whether discovery lists gateway.networking.k8s.io/v1 GatewayClasses (what Helm's
    .Capabilities.APIVersions.Has checks)."""
    groups = {g["name"]: [v["version"] for v in g["versions"]] for g in kube.get("apis")["groups"]}
    if "v1" not in groups.get("gateway.networking.k8s.io", []):
        return False
    resources = kube.get("apis/gateway.networking.k8s.io/v1")["resources"]
    return any(r["kind"] == "GatewayClass" for r in resources)


def gateway_api_refusals(kube) -> dict[str, str]:
    """The Gateway API CRDs the chart renders that this API server refuses (a dry run),
    with its message. One that exists already counts as accepted."""
    refused = {}
    for crd in render({"gatewayApi": {"installCRDs": True}}):
        if crd["kind"] == "CustomResourceDefinition":
            status, body = kube.dry_run_create(crd, "default")
            if status != 201 and body.get("reason") != "AlreadyExists":
                refused[crd["metadata"]["name"]] = body.get("message", "")
    return refused


def test_the_api_server_on_the_gateway_api_crds(kube):
    """Upstream's v1.3.0 CRDs as the chart renders them: every one is accepted, except
    that an API server whose CEL has no transition rules (no `oldSelf`, such as this
    chart's v1.24 test server with CustomResourceValidationExpressions on) refuses the
    GatewayClass one, for its `controllerName` rule `self == oldSelf`, and only that."""
    refused = gateway_api_refusals(kube)
    if refused:
        assert list(refused) == ["gatewayclasses.gateway.networking.k8s.io"], refused
        message = refused["gatewayclasses.gateway.networking.k8s.io"]
        assert "properties[controllerName].x-kubernetes-validations[0].rule" in message, message
        assert "undeclared reference to 'oldSelf'" in message, message


def test_without_the_crds_no_gateway_class(kube, namespace):
    """Where the GatewayClass API is not served, an install renders no GatewayClass (it
    would fail the whole install) and its notes say why."""
    if serves_gateway_classes(kube):
        pytest.skip("this API server serves GatewayClasses")
    with helm_python.Config(namespace=namespace) as helm:
        release = helm.install(str(CHART), "weir", {}, namespace=namespace, dry_run="server", timeout=120)
    kinds = {o["kind"] for o in parse_objects(release["manifest"])}
    assert "ClusterRole" in kinds and "GatewayClass" not in kinds
    assert "The cluster has no Gateway API CRDs" in release["notes"]


def test_install_with_the_gateway_api_crds(kube, namespace):
    """gatewayApi.installCRDs on a real API server: the install creates upstream's CRDs
    (but no GatewayClass yet: Helm maps every object to its API before creating any), the
    next upgrade the GatewayClass; uninstalling deletes the class and keeps the CRDs."""
    present = [c for c in GATEWAY_API_CRDS if kube.get(f"apis/apiextensions.k8s.io/v1/customresourcedefinitions/{c}")]
    if present:
        pytest.skip(f"the Gateway API CRDs are installed already ({', '.join(present)}): not this test's to take over")
    refused = gateway_api_refusals(kube)
    if refused:
        pytest.skip(f"this API server refuses upstream's {', '.join(refused)}: {next(iter(refused.values()))}")
    values = {"gatewayApi": {"installCRDs": True}}
    try:
        with helm_python.Config(namespace=namespace) as helm:
            release = helm.install(str(CHART), "weir", values, namespace=namespace, timeout=120)
        assert "run `helm upgrade` once more" in release["notes"]
        for name in GATEWAY_API_CRDS:
            crd = kube.get(f"apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
            assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == "weir"
        assert kube.get(f"{GATEWAY_CLASS_API}/weir") is None

        # A new Helm client, as a second `helm upgrade` command is: a client keeps the
        # API versions it discovered first.
        with helm_python.Config(namespace=namespace) as helm:
            release = helm.upgrade(str(CHART), "weir", values, namespace=namespace, timeout=120)
            assert "once more" not in release["notes"] and "no Gateway API CRDs" not in release["notes"]
            gateway_class = kube.get(f"{GATEWAY_CLASS_API}/weir")
            assert gateway_class["spec"]["controllerName"] == "weir.dev/gateway-controller"

            helm.uninstall("weir", timeout=120)
            assert kube.get(f"{GATEWAY_CLASS_API}/weir") is None
            for name in GATEWAY_API_CRDS:
                assert kube.get(f"apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"), name
    finally:
        with helm_python.Config(namespace=namespace) as helm:
            helm.uninstall("weir", timeout=120, ignore_not_found=True)
        if serves_gateway_classes(kube):
            kube.call("DELETE", f"{GATEWAY_CLASS_API}/weir")
        crds = [f"apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}" for name in GATEWAY_API_CRDS]
        for crd in crds:
            kube.call("DELETE", crd)
        wait_for("the Gateway API CRDs to be deleted", lambda: not any(kube.get(crd) for crd in crds))
