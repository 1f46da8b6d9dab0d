"""deploy/weir.yaml, the `kubectl apply` manifest: what scripts/render-manifest renders
now, in apply order, valid, and free of secrets; deploy/create-secrets makes the Secrets it
expects."""

import importlib.machinery
import importlib.util
import os
import re
import stat
import subprocess
import sys
import textwrap

import kubernetes_validate.utils as kv
import pytest
import yaml

from conftest import CHART, NAMESPACE, REPO, SCHEMA_VERSIONS, dns_names, openssl, openssl_verify, parse_objects, proxy_admin_status

MANIFEST = REPO / "deploy" / "weir.yaml"
CREATE_SECRETS = REPO / "deploy" / "create-secrets"
SERVER_NAME = f"weir-proxy-admin.{NAMESPACE}.svc"


def load_script():
    loader = importlib.machinery.SourceFileLoader("render_manifest", str(REPO / "scripts" / "render-manifest"))
    spec = importlib.util.spec_from_loader("render_manifest", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


RENDER_MANIFEST = load_script()
TEXT = MANIFEST.read_text()
OBJECTS = parse_objects(TEXT)


def test_manifest_is_up_to_date():
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "render-manifest"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert TEXT == RENDER_MANIFEST.render(), "deploy/weir.yaml is stale: run scripts/render-manifest"


def test_the_check_notices_a_change(tmp_path, monkeypatch):
    stale = tmp_path / "weir.yaml"
    stale.write_text(TEXT.replace("replicas: 2", "replicas: 3"))
    monkeypatch.setattr(RENDER_MANIFEST, "OUTPUT", stale)
    monkeypatch.setattr(RENDER_MANIFEST, "REPO", tmp_path)
    assert RENDER_MANIFEST.main(["--check"]) == 1


def test_no_secret_in_the_manifest():
    assert not [o for o in OBJECTS if o["kind"] == "Secret"]
    assert "PRIVATE KEY" not in TEXT and "BEGIN CERTIFICATE" not in TEXT
    assert not re.search(r"\b[A-Za-z0-9]{48}\b", TEXT), "something looks like a generated token"
    mounted = {
        volume["secret"]["secretName"]
        for o in OBJECTS
        if o["kind"] == "Deployment"
        for volume in o["spec"]["template"]["spec"]["volumes"]
    }
    # The Secrets the pods mount are the ones deploy/create-secrets makes.
    assert mounted == {"weir-admin-token", "weir-admin-tls"}
    assert all(name in TEXT.split("---", 1)[0] for name in mounted), "the header names the Secrets"


def test_apply_order():
    kinds = [o["kind"] for o in OBJECTS]
    assert kinds[0] == "Namespace" and OBJECTS[0]["metadata"]["name"] == NAMESPACE
    crds = sorted(i for i, k in enumerate(kinds) if k == "CustomResourceDefinition")
    assert crds == [1, 2]
    order = RENDER_MANIFEST.KIND_ORDER
    ranks = [order.index(k) for k in kinds[3:]]
    assert ranks == sorted(ranks)
    assert {"Deployment", "Service", "ClusterRole", "NetworkPolicy", "ServiceAccount"} <= set(kinds)


def test_the_header_makes_the_gateway_class_the_operator_serves():
    """The manifest holds no Gateway API object (the CRDs are not weir's, the GatewayClass
    needs them first); its header says how to make the class, as the chart makes it, after
    upstream's CRDs of the version the chart vendors."""
    assert not [o for o in OBJECTS if o["apiVersion"].startswith("gateway.networking.k8s.io/")]
    assert not [o for o in OBJECTS if o["metadata"]["name"].endswith(".gateway.networking.k8s.io")]
    header = TEXT.split("\n---\n", 1)[0]
    snippet = header.split("kubectl apply -f - <<'EOF'\n", 1)[1].split("\n#   EOF", 1)[0]
    gateway_class = yaml.safe_load(re.sub(r"^#   ", "", snippet, flags=re.MULTILINE))
    operator = next(o for o in OBJECTS if o["kind"] == "Deployment" and o["metadata"]["name"] == "weir-operator")
    args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert gateway_class == {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": next(a.split("=", 1)[1] for a in args if a.startswith("--class="))},
        "spec": {"controllerName": "weir.dev/gateway-controller"},
    }
    (version,) = set(re.findall(r"gateway-api/releases/download/(v[0-9.]+)/standard-install.yaml", header))
    for crd in (CHART / "gateway-api-crds").glob("*.yaml"):
        assert parse_objects(crd.read_text())[0]["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"] == version


def test_kubectl_labels_and_namespace():
    assert "helm.sh/chart" not in TEXT and "managed-by: Helm" not in TEXT
    for obj in OBJECTS[3:]:
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kubectl"
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding", "IngressClass"):
            assert obj["metadata"]["namespace"] == NAMESPACE
    assert OBJECTS[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_every_object_is_valid(version):
    for obj in OBJECTS:
        kv.validate(obj, version, strict=True)


KUBECTL_STUB = textwrap.dedent(
    """\
    #!/usr/bin/env bash
    # Stands in for kubectl: records calls; `create secret` copies the files into $OUT/<name>/.
    set -eu
    echo "$*" >>"$OUT/calls"
    ns=$2; shift 2
    case "$1 $2" in
        "get secret") [ -d "$OUT/$3" ] ;;
        "delete secret") rm -rf "$OUT/$3" ;;
        "create secret")
            name=$4; mkdir "$OUT/$name"; shift 4
            for arg in "$@"; do
                case "$arg" in
                    --type=*) echo "${arg#--type=}" >"$OUT/$name/.type" ;;
                    --from-file=*) spec=${arg#--from-file=}; cp "${spec#*=}" "$OUT/$name/${spec%%=*}" ;;
                    --from-literal=*) spec=${arg#--from-literal=}; printf %s "${spec#*=}" >"$OUT/$name/${spec%%=*}" ;;
                esac
            done ;;
    esac
    """
)


@pytest.fixture
def kubectl(tmp_path):
    stub = tmp_path / "kubectl"
    stub.write_text(KUBECTL_STUB)
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    out = tmp_path / "cluster"
    out.mkdir()

    def run(*args, script=str(CREATE_SECRETS)):
        openssl()
        return subprocess.run(
            ["bash", script, *args],
            env=os.environ | {"KUBECTL": str(stub), "OUT": str(out), "PATH": f"{tmp_path}:{os.environ['PATH']}"},
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp_path,
        )

    return run, out


def check_made_secrets(cluster):
    """The two Secrets in the stub cluster are what the manifest's pods need."""
    token = (cluster / "weir-admin-token" / "token").read_text()
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    tls = cluster / "weir-admin-tls"
    assert (tls / ".type").read_text().strip() == "kubernetes.io/tls"
    assert sorted(p.name for p in tls.iterdir() if p.name != ".type") == ["ca.crt", "tls.crt", "tls.key"]
    ca, cert = (tls / "ca.crt").read_text(), (tls / "tls.crt").read_text()
    assert "PRIVATE KEY" not in ca
    assert sorted(dns_names(cert)) == [SERVER_NAME, SERVER_NAME + ".cluster.local"]
    verified = openssl_verify(ca, cert, SERVER_NAME)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # The operator's flags name exactly this server name and these files.
    operator = next(o for o in OBJECTS if o["kind"] == "Deployment" and o["metadata"]["name"] == "weir-operator")
    args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--proxy-server-name={SERVER_NAME}" in args


def test_create_secrets_makes_what_the_manifest_mounts(kubectl):
    run, cluster = kubectl
    run()
    check_made_secrets(cluster)


def test_the_recipe_in_the_header_makes_the_same(kubectl, tmp_path):
    run, cluster = kubectl
    header = TEXT.split("\n---\n", 1)[0]
    recipe = header.split("by hand in bash", 1)[1].split("\n#\n", 1)[0].split("\n", 1)[1]
    script = tmp_path / "recipe.sh"
    script.write_text("set -euo pipefail\n" + re.sub(r"^#   ", "", recipe, flags=re.MULTILINE))
    run(script=str(script))
    check_made_secrets(cluster)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".key", ".crt", ".csr", ".srl")) == ["ca.crt", "tls.crt"]


def test_create_secrets_keeps_existing_ones_unless_told(kubectl):
    run, cluster = kubectl
    run()
    token = (cluster / "weir-admin-token" / "token").read_text()
    cert = (cluster / "weir-admin-tls" / "tls.crt").read_text()
    kept = run()
    assert "kept" in kept.stdout
    assert (cluster / "weir-admin-token" / "token").read_text() == token
    run("--replace")
    assert (cluster / "weir-admin-token" / "token").read_text() != token
    assert (cluster / "weir-admin-tls" / "tls.crt").read_text() != cert
    calls = (cluster / "calls").read_text()
    assert "-n weir-system delete secret weir-admin-token" in calls


def test_create_secrets_in_another_namespace(kubectl):
    run, cluster = kubectl
    run("edge")
    cert = (cluster / "weir-admin-tls" / "tls.crt").read_text()
    assert "weir-proxy-admin.edge.svc" in dns_names(cert)
    assert all(line.startswith("-n edge ") for line in (cluster / "calls").read_text().splitlines())



def test_a_real_proxy_serves_what_create_secrets_made(kubectl):
    run, cluster = kubectl
    run()
    files = {p.name: p.read_text() for d in ("weir-admin-tls", "weir-admin-token") for p in (cluster / d).iterdir() if p.name != ".type"}
    assert proxy_admin_status(OBJECTS, files, files["token"]) == 200
