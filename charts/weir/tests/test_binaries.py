"""The chart's flags against the real binaries (target/debug, built by scripts/test;
skipped when they are not built): every flag the chart passes exists and is accepted, the
proxy serves its probes on the metrics listener, and the operator starts with the chart's
configuration."""

import signal

import pytest

from conftest import (
    NAMESPACE,
    VALUE_SETS,
    admin_files,
    binary,
    container,
    free_port,
    http_get,
    localize,
    render,
    running,
    write_mounts,
)

# Value sets whose flags differ from one another (workers, trusted proxies, limits,
# tracing, access log, classes, namespaces, extra flags, the Gateway API off).
FLAG_SETS = ("defaults", "tuned", "watch-namespaces", "internal", "no-gateway-api")

# A client configuration pointing at nothing: the operator builds its client and checks
# its configuration, then keeps retrying its watches.
NO_CLUSTER = """\
apiVersion: v1
kind: Config
clusters:
  - name: none
    cluster:
      server: https://127.0.0.1:{port}
users:
  - name: none
    user: {{}}
contexts:
  - name: none
    context:
      cluster: none
      user: none
      namespace: {namespace}
current-context: none
"""


@pytest.mark.parametrize("name", FLAG_SETS)
def test_the_proxy_runs_with_the_charts_flags(name, tmp_path):
    objects = render(VALUE_SETS[name])
    write_mounts(tmp_path, admin_files(objects))
    args, ports = localize(container(objects, "proxy")["args"], tmp_path)
    assert set(ports) == {8080, 8443, 9901, 9902}
    with running([binary("weir-proxy"), *args]) as proxy:
        # Probes on the plain metrics listener: alive, not ready before the first snapshot.
        assert http_get(ports[9902], "/healthz", proxy) == 200
        assert http_get(ports[9902], "/readyz", proxy) == 503
        assert http_get(ports[9902], "/metrics", proxy) == 200
        # No request reaches a route before the first snapshot either.
        assert http_get(ports[8080], "/", proxy) == 503
        proxy.send_signal(signal.SIGTERM)
        assert proxy.wait(timeout=30) == 0


@pytest.mark.parametrize("name", FLAG_SETS)
def test_the_operator_starts_with_the_charts_flags(name, tmp_path):
    objects = render(VALUE_SETS[name])
    write_mounts(tmp_path, admin_files(objects))
    args, ports = localize(container(objects, "operator")["args"], tmp_path)
    assert set(ports) == {9090}
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(NO_CLUSTER.format(port=free_port(), namespace=NAMESPACE))
    env = {"KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "RUST_LOG": "info"}
    with running([binary("weir-operator"), *args], env=env) as operator:
        # It got past flags and files (a bad one exits 64 at once) and serves its probes;
        # never ready, since no watch can list anything.
        assert http_get(ports[9090], "/healthz", operator) == 200
        assert http_get(ports[9090], "/readyz", operator) == 503
        operator.send_signal(signal.SIGTERM)
        assert operator.wait(timeout=30) == 0


def test_a_bad_flag_is_noticed():
    """The runs above can fail: the operator refuses a flag it does not know."""
    with running([binary("weir-operator"), "--no-such-flag"]) as operator:
        assert operator.wait(timeout=30) == 64
