"""The container image (the top-level Dockerfile) against the workspace and the chart, as
far as it can be checked with no container engine: the binaries it builds and copies are
the workspace's, at the paths the chart runs; its user is the chart's; it needs no shell
and writes nothing; its targets start the right binary; its toolchain is the workspace's."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib

import pytest
import yaml

from conftest import REPO, container, pod_spec, render

DOCKERFILE = REPO / "Dockerfile"
BINARIES = {"operator": "weir-operator", "proxy": "weir-proxy"}
BIN_DIR = "/usr/local/bin"


def instructions() -> list[tuple[str, str, str]]:
    """(stage, INSTRUCTION, arguments) of every instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stage = ""
    result = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest.strip(), re.IGNORECASE)
            assert match, line
            stage = match.group(2) or ""
        result.append((stage, keyword, " ".join(rest.split())))
    return result


def stages() -> dict[str, str]:
    """Stage name -> the image or stage it starts from."""
    found = {}
    for stage, keyword, rest in instructions():
        if keyword == "FROM":
            found[stage] = rest.split()[0]
    return found


def in_stage(name: str, keyword: str) -> list[str]:
    return [rest for stage, kw, rest in instructions() if stage == name and kw == keyword]


def ancestry(stage: str) -> list[str]:
    """A stage and the stages it builds on, newest first."""
    known = stages()
    chain = [stage]
    while known[chain[-1]] in known:
        chain.append(known[chain[-1]])
    return chain


def inherited(stage: str, keyword: str) -> list[str]:
    """Instructions of a kind in a stage and the stages it builds on, oldest first."""
    return [rest for name in reversed(ancestry(stage)) for rest in in_stage(name, keyword)]


@pytest.fixture(scope="module")
def workspace_binaries() -> dict[str, set[str]]:
    """Package -> its binary targets, from cargo's own view of the workspace."""
    metadata = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline"],
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    return {
        package["name"]: {t["name"] for t in package["targets"] if "bin" in t["kind"]}
        for package in metadata["packages"]
    }


def test_the_image_builds_and_copies_exactly_the_workspaces_two_binaries(workspace_binaries):
    for binary in BINARIES.values():
        assert binary in workspace_binaries[binary], f"{binary} is a binary of package {binary}"
    (build,) = [r for r in in_stage("builder", "RUN") if r.startswith("cargo build")]
    packages = re.findall(r"--package (\S+)", build)
    assert sorted(packages) == sorted(BINARIES.values())
    assert "--release" in build and "--locked" in build
    copied = re.findall(r"target/release/(\S+)", build)
    assert sorted(copied) == sorted(BINARIES.values())
    (copy,) = in_stage("runtime", "COPY")
    sources = copy.split()[1:-1]
    assert copy.startswith("--from=builder ")
    assert sorted(s.rsplit("/", 1)[1] for s in sources) == sorted(BINARIES.values())
    assert copy.split()[-1].rstrip("/") == BIN_DIR


def test_dependencies_are_a_layer_of_their_own():
    # The recipe (manifests only) is cooked before the sources are copied in.
    builder = [(kw, rest) for stage, kw, rest in instructions() if stage == "builder"]
    cook = next(i for i, (kw, rest) in enumerate(builder) if "cargo chef cook" in rest)
    copy_sources = next(i for i, (kw, rest) in enumerate(builder) if kw == "COPY" and rest == ". .")
    build = next(i for i, (kw, rest) in enumerate(builder) if rest.startswith("cargo build"))
    assert cook < copy_sources < build
    assert "--locked" in builder[cook][1] and "--release" in builder[cook][1]


def test_the_toolchain_is_the_workspaces():
    manifest = tomllib.loads((REPO / "Cargo.toml").read_text())
    rust_version = manifest["workspace"]["package"]["rust-version"]
    args = [rest for stage, kw, rest in instructions() if kw == "ARG" and rest.startswith("RUST_VERSION=")]
    assert args == [f"RUST_VERSION={rust_version}"]
    assert stages()["chef"] == "rust:${RUST_VERSION}-bookworm"


@pytest.mark.parametrize("component", sorted(BINARIES))
def test_each_target_starts_its_binary_which_the_chart_runs_by_path(component):
    binary = f"{BIN_DIR}/{BINARIES[component]}"
    (entrypoint,) = in_stage(component, "ENTRYPOINT")
    assert json.loads(entrypoint) == [binary], "exec form: no shell needed"
    assert container(render(), component)["command"] == [binary]


def test_the_default_target_is_the_charts_image_with_both_binaries():
    chain = ancestry(instructions()[-1][0])
    assert "runtime" in chain
    assert stages()[chain[-1]].startswith("gcr.io/distroless/"), "no shell, no package manager"


@pytest.mark.parametrize("component", sorted(BINARIES))
def test_the_user_is_the_charts_non_root_user(component):
    (user,) = inherited(component, "USER")
    uid, gid = (int(part) for part in user.split(":"))
    assert uid != 0 and gid != 0, "numeric and non-root"
    objects = render()
    pod = pod_spec(objects, component)
    security = container(objects, component)["securityContext"]
    for context in (pod["securityContext"], security):
        assert context["runAsNonRoot"] is True
        assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid)
    assert security["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize("component", sorted(BINARIES))
def test_the_chart_needs_no_shell_and_no_writable_path_in_the_image(component):
    objects = render()
    spec = container(objects, component)
    for probe in ("livenessProbe", "readinessProbe"):
        assert "exec" not in spec[probe], "distroless has no shell to exec"
        assert "httpGet" in spec[probe]
    assert not any(arg.startswith(("sh ", "/bin/")) for arg in spec["command"])
    for mount in spec.get("volumeMounts", []):
        assert mount["readOnly"] is True, mount
        assert mount["mountPath"].startswith("/etc/weir/"), "mounts stay out of the image's paths"


@pytest.mark.parametrize("component", sorted(BINARIES))
def test_the_image_exposes_the_ports_the_chart_uses(component):
    exposed = {int(port) for rest in inherited(component, "EXPOSE") for port in rest.split()}
    used = {port["containerPort"] for port in container(render(), component)["ports"]}
    assert used <= exposed, f"{used - exposed} used by the chart but not exposed"


def test_the_image_carries_oci_labels():
    labels = dict(
        re.findall(r'(org\.opencontainers\.image\.[a-z]+)="([^"]*)"', " ".join(in_stage("runtime", "LABEL")))
    )
    manifest = tomllib.loads((REPO / "Cargo.toml").read_text())["workspace"]["package"]
    assert labels["org.opencontainers.image.licenses"] == manifest["license"]
    assert labels["org.opencontainers.image.source"] == manifest["repository"]
    for key in ("title", "description", "version"):
        assert labels[f"org.opencontainers.image.{key}"], key
    (version_arg,) = [r for r in in_stage("runtime", "ARG") if r.startswith("VERSION=")]
    assert version_arg == f"VERSION={manifest['version']}"
    chart = yaml.safe_load((REPO / "charts" / "weir" / "Chart.yaml").read_text())
    assert chart["appVersion"] == manifest["version"], "the image tag the chart defaults to"


def test_the_build_context_leaves_out_build_output_and_git():
    ignored = {
        line.strip().rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {"target", ".git"} <= ignored


def test_every_copy_from_names_an_earlier_stage():
    seen = set()
    for stage, keyword, rest in instructions():
        if keyword == "COPY" and rest.startswith("--from="):
            assert rest.split()[0].removeprefix("--from=") in seen, rest
        if keyword == "FROM":
            seen.add(stage)
