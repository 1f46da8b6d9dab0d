"""The GitOps example: each overlay renders with kubectl's kustomize and compiles cleanly
with `weir-proxy check`; the Plugins name exactly the ConfigMaps kustomize generated, with
their content hash, and a changed plugin gets a new name; the plugin suites pass; the Argo
CD health script reads every status shape of a Route or Plugin as docs/install.md says."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
HEALTH_LUA = HERE / "argocd" / "health.lua"
INSTALL_DOC = REPO / "docs" / "install.md"

# What each overlay makes of the base: namespace, host, rate limit, CORS origins, HSTS.
OVERLAYS = {
    "staging": {
        "namespace": "shop-staging",
        "host": "shop.staging.example.test",
        "requestsPerMinute": 1200,
        "origins": ["https://app.staging.example.test", "http://localhost:3000"],
        "hsts": None,
    },
    "production": {
        "namespace": "shop",
        "host": "shop.example.com",
        "requestsPerMinute": 120,
        "origins": ["https://shop.example.com", "https://app.example.com"],
        "hsts": 31536000,
    },
}
# The ConfigMaps base/kustomization.yaml generates, and the file each holds.
GENERATED = {"rate-limit-source": "rate-limit.ts", "security-headers-source": "security-headers.ts"}
# A line of `weir-proxy check` output that reports a problem.
DIAGNOSTIC = re.compile(
    r"\b(Route|Plugin|ConfigMap|Secret|Service|EndpointSlice) [^\s/]+/[^\s:]+: |document \d+"
)


def weir_proxy() -> Path:
    binary = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target") / "debug" / "weir-proxy"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: build it with `cargo build -p weir-proxy`")
    return binary


def kustomize(directory: Path) -> str:
    kubectl = shutil.which("kubectl") or "/usr/bin/kubectl"
    if not Path(kubectl).exists():
        pytest.fail("this test needs kubectl, for its built-in kustomize (`kubectl kustomize`)")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def check(rendered: str, directory: Path) -> subprocess.CompletedProcess:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "rendered.yaml").write_text(rendered)
    return subprocess.run(
        [weir_proxy(), "check", directory], capture_output=True, text=True, timeout=120
    )


def objects(rendered: str, kind: str) -> dict:
    return {
        o["metadata"]["name"]: o
        for o in yaml.safe_load_all(rendered)
        if o and o["kind"] == kind
    }


def copy_of_example(tmp_path: Path) -> Path:
    copy = tmp_path / "gitops"
    shutil.copytree(HERE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return copy


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_compiles_cleanly(overlay, tmp_path):
    result = check(kustomize(HERE / "overlays" / overlay), tmp_path)
    problems = [line for line in result.stdout.splitlines() if DIAGNOSTIC.search(line)]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_plugins_name_the_generated_config_maps(overlay):
    rendered = kustomize(HERE / "overlays" / overlay)
    config_maps = objects(rendered, "ConfigMap")
    by_base = {}
    for name, config_map in config_maps.items():
        base, _, suffix = name.rpartition("-")
        assert base in GENERATED and re.fullmatch(r"[a-z0-9]{10}", suffix), name
        key = GENERATED[base]
        assert config_map["data"] == {key: (HERE / "base" / "plugins" / key).read_text()}
        by_base[base] = name
    assert set(by_base) == set(GENERATED)
    references = {
        (p["spec"]["source"]["configMapRef"]["name"], p["spec"]["source"]["configMapRef"]["key"])
        for p in objects(rendered, "Plugin").values()
    }
    assert references == {(by_base[base], key) for base, key in GENERATED.items()}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_sets_its_environment(overlay):
    want = OVERLAYS[overlay]
    rendered = kustomize(HERE / "overlays" / overlay)
    assert {o["metadata"]["namespace"] for o in yaml.safe_load_all(rendered)} == {want["namespace"]}
    routes = objects(rendered, "Route")
    assert {tuple(r["spec"]["hosts"]) for r in routes.values()} == {(want["host"],)}
    assert routes["orders-api"]["spec"]["cors"]["allowOrigins"] == want["origins"]
    plugins = objects(rendered, "Plugin")
    assert plugins["rate-limit"]["spec"]["config"]["requestsPerMinute"] == want["requestsPerMinute"]
    assert plugins["security-headers"]["spec"]["config"].get("hstsMaxAgeSeconds") == want["hsts"]


def test_a_changed_plugin_rolls_out_under_a_new_name(tmp_path):
    before = objects(kustomize(HERE / "overlays" / "production"), "Plugin")
    copy = copy_of_example(tmp_path)
    source = copy / "base" / "plugins" / "rate-limit.ts"
    source.write_text(source.read_text() + "// a new version\n")
    after = objects(kustomize(copy / "overlays" / "production"), "Plugin")

    def ref(plugins, name):
        return plugins[name]["spec"]["source"]["configMapRef"]["name"]

    assert ref(after, "rate-limit") != ref(before, "rate-limit")
    assert ref(after, "security-headers") == ref(before, "security-headers")


def test_references_follow_a_name_prefix(tmp_path):
    # kustomizeconfig/weir.yaml also names the Route fields that refer to Plugins and
    # Services, so an overlay's namePrefix keeps every Route resolvable.
    copy = copy_of_example(tmp_path)
    blue = copy / "overlays" / "blue"
    blue.mkdir()
    (blue / "kustomization.yaml").write_text("resources: [../production]\nnamePrefix: blue-\n")
    rendered = kustomize(blue)
    assert set(objects(rendered, "Plugin")) == {"blue-rate-limit", "blue-security-headers"}
    result = check(rendered, tmp_path / "check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_catches_a_plugin_naming_the_unhashed_config_map(tmp_path):
    # What the rendered overlay would hold without kustomizeconfig/weir.yaml.
    documents = list(yaml.safe_load_all(kustomize(HERE / "overlays" / "production")))
    for document in documents:
        if (document["kind"], document["metadata"]["name"]) == ("Plugin", "rate-limit"):
            document["spec"]["source"]["configMapRef"]["name"] = "rate-limit-source"
    result = check(yaml.safe_dump_all(documents), tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    reported = re.search(r"Plugin shop/rate-limit: spec\.source\.configMapRef", result.stdout)
    assert reported, result.stdout


def test_plugin_suites_pass():
    result = subprocess.run(
        [weir_proxy(), "plugin", "test", HERE / "base" / "plugins"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^([1-9]\d*) passed, 0 failed$", result.stdout, re.M), result.stdout


# ---- The Argo CD health script ----


def lua_literal(value) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, list):
        return "{" + ", ".join(map(lua_literal, value)) + "}"
    return "{" + ", ".join(f"[{lua_literal(k)}] = {lua_literal(v)}" for k, v in value.items()) + "}"


def argocd_health(obj: dict) -> tuple:
    """(status, message) of health.lua for `obj`, run as Argo CD runs it (Lua 5.1)."""
    lua = shutil.which("lua5.1")
    if lua is None:
        pytest.fail("this test needs lua5.1 (Debian package lua5.1), the Lua of Argo CD's scripts")
    script = (
        f"obj = {lua_literal(obj)}\n"
        f"local hs = dofile({lua_literal(str(HEALTH_LUA))})\n"
        'io.write(hs.status, "\\n", hs.message)\n'
    )
    result = subprocess.run([lua, "-"], input=script, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    status, _, message = result.stdout.partition("\n")
    return status, message


def condition(kind, status, reason, message="", generation=2):
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": "2026-12-01T10:00:00Z",
    }


def weir_object(*conditions, kind="Route", generation=2):
    obj = {
        "apiVersion": "weir.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "orders-api", "namespace": "shop", "generation": generation},
        "spec": {},
    }
    if conditions:
        obj["status"] = {"conditions": list(conditions)}
    return obj


ACCEPTED = condition("Accepted", "True", "Accepted")
RESOLVED = condition("ResolvedRefs", "True", "ResolvedRefs")
COMPILED = condition("Compiled", "True", "Compiled")
PROGRAMMED = condition("Programmed", "True", "Programmed", "applied on 3/3 proxies (snapshot 42)")


def programmed(status, reason, message=""):
    """A Route accepted with its references resolved, and this Programmed condition."""
    return weir_object(ACCEPTED, RESOLVED, condition("Programmed", status, reason, message))


HEALTH_CASES = {
    "no status yet": (weir_object(), "Progressing", "waiting for the weir operator"),
    "accepted, not programmed yet": (weir_object(ACCEPTED, RESOLVED), "Progressing", "operator"),
    "programmed": (programmed("True", "Programmed", "applied on 3/3 proxies"), "Healthy", "3/3"),
    "programmed for the previous generation": (
        weir_object(ACCEPTED, RESOLVED, condition("Programmed", "True", "Programmed", generation=1)),
        "Progressing",
        "generation 2",
    ),
    "proxies catching up": (
        programmed("False", "Pending", "1/3 proxies"),
        "Progressing",
        "Pending: 1/3 proxies",
    ),
    "programmed unknown": (programmed("Unknown", "Pending"), "Progressing", "Programmed Pending"),
    "a proxy failed to load it": (
        programmed("False", "LoadFailed", "OOM"),
        "Degraded",
        "Programmed LoadFailed: OOM",
    ),
    "left out of the snapshot": (programmed("False", "NotProgrammed"), "Degraded", "NotProgrammed"),
    "invalid": (
        weir_object(
            condition("Accepted", "False", "Invalid", "spec.rules[0]: bad"),
            RESOLVED,
            condition("Programmed", "False", "NotProgrammed"),
        ),
        "Degraded",
        "Accepted Invalid: spec.rules[0]: bad",
    ),
    "a backend is missing": (
        weir_object(
            ACCEPTED, condition("ResolvedRefs", "False", "BackendNotFound", "no svc"), PROGRAMMED
        ),
        "Degraded",
        "ResolvedRefs BackendNotFound: no svc",
    ),
    "a failure the operator has not looked at again since the fix": (
        weir_object(
            condition("Accepted", "False", "Invalid", generation=1),
            condition("Programmed", "False", "NotProgrammed", generation=1),
        ),
        "Progressing",
        "generation 2",
    ),
    "a plugin whose new source does not compile": (
        weir_object(
            ACCEPTED,
            RESOLVED,
            condition("Compiled", "False", "SyntaxError", "3:7: unexpected token"),
            condition("Programmed", "True", "Programmed", "the last good version applied on 2/2"),
            kind="Plugin",
        ),
        "Degraded",
        "Compiled SyntaxError: 3:7",
    ),
    "a programmed plugin": (
        weir_object(ACCEPTED, RESOLVED, COMPILED, PROGRAMMED, kind="Plugin"),
        "Healthy",
        "applied on 3/3",
    ),
}


@pytest.mark.parametrize("case", HEALTH_CASES)
def test_argocd_health(case):
    obj, want_status, want_message = HEALTH_CASES[case]
    status, message = argocd_health(obj)
    assert status == want_status, message
    assert want_message in message


def doc_block(containing: str) -> dict:
    """The one YAML block of docs/install.md that contains `containing`, parsed."""
    blocks = re.findall(r"```yaml\n(.*?)```", INSTALL_DOC.read_text(), re.S)
    found = [yaml.safe_load(b) for b in blocks if containing in b]
    assert len(found) == 1, f"docs/install.md should show one YAML block with {containing}"
    return found[0]


def test_install_doc_shows_the_health_script_and_expressions_of_the_example():
    data = doc_block("resource.customizations.health.weir.dev_Route")["data"]
    for kind in ("Route", "Plugin"):
        assert data[f"resource.customizations.health.weir.dev_{kind}"] == HEALTH_LUA.read_text()
    flux = (HERE / "flux" / "shop-production.yaml").read_text()
    kustomization = list(yaml.safe_load_all(flux))[1]
    assert doc_block("shop-gateway-production") == kustomization
