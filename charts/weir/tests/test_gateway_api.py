"""The Gateway API values: the operator's flags and rights (test_rbac.py has the rules
themselves), upstream's CRDs rendered as vendored, the GatewayClass only where its API is
served, and the schema. test_cluster.py installs them on a real API server."""

import hashlib
import re
import shutil

import helm_python
import jsonschema
import pytest

from conftest import CHART, NAMESPACE, find, flag, flags, notes, one, parse_objects, render, render_files

CRDS_DIR = CHART / "gateway-api-crds"
TEMPLATE = "weir/templates/gateway-api-crds.yaml"
# Upstream's config/crd/standard/ at v1.3.0: the standard channel, nothing experimental.
STANDARD_CRDS = [
    "gatewayclasses.gateway.networking.k8s.io",
    "gateways.gateway.networking.k8s.io",
    "grpcroutes.gateway.networking.k8s.io",
    "httproutes.gateway.networking.k8s.io",
    "referencegrants.gateway.networking.k8s.io",
]
KEEP = "    helm.sh/resource-policy: keep\n"


def git_blob(data: bytes) -> str:
    """The Git object hash of a file's content (what `git ls-tree` shows)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def vendored() -> dict[str, str]:
    """File name -> text of the vendored CRDs."""
    return {p.name: p.read_text() for p in sorted(CRDS_DIR.glob("*.yaml"))}


def test_the_vendored_files_are_upstreams():
    """Each file has the Git blob hash of upstream's at v1.3.0, as the directory's README
    lists them (taken from upstream's tree): unmodified, and nothing more or less."""
    readme = (CRDS_DIR / "README.md").read_text()
    listed = dict(re.findall(r"^\| `([^`]+)` \| `([0-9a-f]{40})` \|$", readme, re.MULTILINE))
    files = sorted(p.name for p in CRDS_DIR.iterdir())
    assert files == sorted([*listed, "README.md"])
    assert {name: git_blob((CRDS_DIR / name).read_bytes()) for name in listed} == listed
    assert "v1.3.0" in readme and "Apache License 2.0" in readme
    assert "Apache License" in (CRDS_DIR / "LICENSE").read_text()
    for text in vendored().values():
        (crd,) = parse_objects(text)
        annotations = crd["metadata"]["annotations"]
        assert annotations["gateway.networking.k8s.io/bundle-version"] == "v1.3.0"
        assert annotations["gateway.networking.k8s.io/channel"] == "standard"
    names = sorted(parse_objects(text)[0]["metadata"]["name"] for text in vendored().values())
    assert names == STANDARD_CRDS


def test_no_crds_unless_asked():
    for values in ({}, {"gatewayApi": {"enabled": False}}, {"gatewayApi": {"installCRDs": False}}):
        assert not parse_objects(render_files(values)[TEMPLATE])
        assert not find(render(values), "CustomResourceDefinition")


def test_install_crds_renders_upstreams_unchanged_but_kept():
    """The rendered documents are the vendored files, byte for byte, with one line added:
    the keep policy, first of metadata.annotations."""
    text = render_files({"gatewayApi": {"installCRDs": True}})[TEMPLATE]
    documents = [d.strip("\n") + "\n" for d in re.split(r"^---$", text, flags=re.MULTILINE) if d.strip()]
    expected = [
        crd.replace("metadata:\n  annotations:\n", "metadata:\n  annotations:\n" + KEEP, 1) for crd in vendored().values()
    ]
    assert documents == expected
    for document, upstream in zip(documents, vendored().values()):
        assert document.replace(KEEP, "", 1) == upstream
        (rendered,) = parse_objects(document)
        (original,) = parse_objects(upstream)
        assert rendered["metadata"]["annotations"].pop("helm.sh/resource-policy") == "keep"
        assert rendered == original
    crds = find(render({"gatewayApi": {"installCRDs": True}}), "CustomResourceDefinition")
    assert sorted(c["metadata"]["name"] for c in crds) == STANDARD_CRDS


def test_the_proxy_service_ports_are_the_listener_ports():
    objects = render()
    ports = {p["name"]: p["port"] for p in one(objects, "Service", "weir-proxy")["spec"]["ports"]}
    assert flag(objects, "operator", "--gateway-http-port") == str(ports["http"]) == "80"
    assert flag(objects, "operator", "--gateway-https-port") == str(ports["https"]) == "443"
    assert "--watch-gateway-api" not in flags(objects, "operator")


def test_disabled_the_operator_does_not_watch_it():
    objects = render({"gatewayApi": {"enabled": False, "installCRDs": False}})
    assert flag(objects, "operator", "--watch-gateway-api") == "false"
    assert not {"--gateway-http-port", "--gateway-https-port"} & set(flags(objects, "operator"))
    assert "Gateway API" not in notes({"gatewayApi": {"enabled": False}})


@pytest.mark.parametrize("install_crds", [False, True])
def test_no_gateway_class_where_its_api_is_not_served(install_crds):
    """Rendering without a cluster, the GatewayClass API is not served: no GatewayClass,
    even with the CRDs in the same release (Helm could not create it before them), and
    the notes say what to do. test_cluster.py checks the class where the API is served."""
    values = {"gatewayApi": {"installCRDs": install_crds, "createClass": True}}
    assert not find(render(values), "GatewayClass")
    text = notes(values)
    assert 'Gateways of the GatewayClass "weir"' in text
    if install_crds:
        assert "run `helm upgrade` once more" in text
    else:
        assert "The cluster has no Gateway API CRDs" in text


GUARD = '(.Capabilities.APIVersions.Has "gateway.networking.k8s.io/v1/GatewayClass")'


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Renders as on a cluster that serves the GatewayClass API: a copy of the chart whose
    GatewayClass template has its capability check (and nothing else) replaced by true,
    rendered by Helm's engine like the chart itself."""
    copy = tmp_path_factory.mktemp("served") / "weir"
    shutil.copytree(CHART, copy, ignore=shutil.ignore_patterns("tests"))
    template = copy / "templates" / "gateway-class.yaml"
    text = template.read_text()
    assert text.count(GUARD) == 1
    template.write_text(text.replace(GUARD, "true"))

    def render_served(values: dict) -> list[dict]:
        with helm_python.Chart.load(copy) as chart:
            rendered = chart.render(values, name="weir", namespace=NAMESPACE, is_install=True)
        return [o for path, text in rendered.items() if not path.endswith("NOTES.txt") for o in parse_objects(text)]

    return render_served


def gateway_class_schema() -> dict:
    (crd,) = parse_objects(vendored()["gateway.networking.k8s.io_gatewayclasses.yaml"])
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return v1["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("class_name", ["weir", "internal"])
def test_create_class_makes_weirs_gateway_class_where_the_api_is_served(served, class_name):
    objects = served({"className": class_name})
    gateway_class = one(objects, "GatewayClass")
    assert gateway_class["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert gateway_class["metadata"]["name"] == class_name == flag(objects, "operator", "--class")
    assert gateway_class["spec"] == {"controllerName": "weir.dev/gateway-controller"}
    assert gateway_class["metadata"]["labels"]["app.kubernetes.io/instance"] == "weir"
    # Valid by upstream's own schema (its CEL rules aside).
    jsonschema.Draft7Validator(gateway_class_schema()).validate(gateway_class)


@pytest.mark.parametrize(
    "gateway_api", [{"createClass": False}, {"enabled": False}, {"enabled": False, "createClass": True}]
)
def test_no_gateway_class_when_not_asked(served, gateway_api):
    assert not find(served({"gatewayApi": gateway_api}), "GatewayClass")


@pytest.mark.parametrize(
    "values, complaint",
    [
        ({"gatewayApi": {"enabled": "yes"}}, "/gatewayApi/enabled"),
        ({"gatewayApi": {"installCRDs": "true"}}, "/gatewayApi/installCRDs"),
        ({"gatewayApi": {"createClass": 1}}, "/gatewayApi/createClass"),
        ({"gatewayApi": {"installCrds": True}}, "installCrds"),
        ({"gatewayApi": True}, "/gatewayApi"),
    ],
)
def test_schema_refuses_wrong_types(values, complaint):
    with helm_python.Chart.load(CHART) as chart:
        with pytest.raises(helm_python.HelmValuesError, match=re.escape(complaint)):
            chart.validate_schema(values)
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(complaint)):
        render(values)


def test_the_packaged_chart_carries_the_crds(tmp_path):
    """`helm package` keeps gateway-api-crds/ (files the template reads), README and
    LICENSE included."""
    archive = helm_python.package(CHART, destination=tmp_path)
    with helm_python.Chart.load(archive) as packaged:
        files = sorted(f["name"] for f in packaged.files if f["name"].startswith("gateway-api-crds/"))
        rendered = packaged.render({"gatewayApi": {"installCRDs": True}}, name="weir", namespace=NAMESPACE, is_install=True)
    assert files == sorted(f"gateway-api-crds/{p.name}" for p in CRDS_DIR.iterdir())
    assert rendered[TEMPLATE] == render_files({"gatewayApi": {"installCRDs": True}})[TEMPLATE]
