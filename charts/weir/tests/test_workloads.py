"""The operator and proxy pods: security, image, flags, probes, mounts, scaling."""

import base64

import helm_python
import pytest

from conftest import (
    CHART,
    NAMESPACE,
    VALUE_SETS,
    container,
    find,
    flag,
    flags,
    one,
    pod_spec,
    render,
    workload,
)

COMPONENTS = ("operator", "proxy")
POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "fsGroup": 65532,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
BINARIES = {"operator": "/usr/local/bin/weir-operator", "proxy": "/usr/local/bin/weir-proxy"}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_pod_and_container_is_locked_down(name):
    objects = render(VALUE_SETS[name])
    for component in COMPONENTS:
        spec = pod_spec(objects, component)
        assert spec["securityContext"] == POD_SECURITY
        assert spec["enableServiceLinks"] is False
        for c in spec["containers"] + spec.get("initContainers", []):
            assert c["securityContext"] == CONTAINER_SECURITY, (component, c["name"])
            assert c["command"] == [BINARIES[component]]
            assert "--proxy-insecure-http" not in str(c["args"])
        for volume in spec["volumes"]:
            assert set(volume) == {"name", "secret"}, volume
            assert volume["secret"]["defaultMode"] == 0o440
        assert all(m["readOnly"] for m in spec["containers"][0]["volumeMounts"])


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_the_proxies_have_no_api_token(name):
    objects = render(VALUE_SETS[name])
    spec = pod_spec(objects, "proxy")
    assert spec["automountServiceAccountToken"] is False
    accounts = find(objects, "ServiceAccount", spec["serviceAccountName"])
    assert all(a["automountServiceAccountToken"] is False for a in accounts)
    assert pod_spec(objects, "operator").get("automountServiceAccountToken", True) is True


def test_service_accounts():
    objects = render()
    assert pod_spec(objects, "operator")["serviceAccountName"] == "weir-operator"
    assert pod_spec(objects, "proxy")["serviceAccountName"] == "weir-proxy"
    assert sorted(a["metadata"]["name"] for a in find(objects, "ServiceAccount")) == ["weir-operator", "weir-proxy"]
    tuned = render(VALUE_SETS["tuned"])
    assert pod_spec(tuned, "proxy")["serviceAccountName"] == "edge-proxies"
    assert one(tuned, "ServiceAccount", "edge-proxies")["metadata"]["annotations"] == {"example.com/role": "proxy"}
    borrowed = render({"proxy": {"serviceAccount": {"create": False}}, "operator": {"serviceAccount": {"create": False, "name": "ops"}}})
    assert not find(borrowed, "ServiceAccount")
    assert pod_spec(borrowed, "proxy")["serviceAccountName"] == "default"
    assert pod_spec(borrowed, "operator")["serviceAccountName"] == "ops"
    for binding in find(borrowed, "ClusterRoleBinding"):
        assert binding["subjects"][0]["name"] == "ops"


@pytest.mark.parametrize(
    "image, expected",
    [
        ({}, "ghcr.io/weir-dev/weir:0.1.0"),
        ({"tag": "1.2.3"}, "ghcr.io/weir-dev/weir:1.2.3"),
        ({"digest": "sha256:" + "0" * 64}, "ghcr.io/weir-dev/weir@sha256:" + "0" * 64),
        ({"tag": "1.2.3", "digest": "sha256:" + "1" * 64}, "ghcr.io/weir-dev/weir:1.2.3@sha256:" + "1" * 64),
        ({"repository": "registry.example.com/weir"}, "registry.example.com/weir:0.1.0"),
    ],
)
def test_image_reference(image, expected):
    objects = render({"image": image})
    assert {container(objects, c)["image"] for c in COMPONENTS} == {expected}


def test_the_image_tag_defaults_to_the_app_version():
    with helm_python.Chart.load(CHART) as chart:
        app_version = chart.metadata["appVersion"]
    assert container(render(), "proxy")["image"].endswith(":" + app_version)


def test_operator_flags_by_default():
    objects = render()
    assert flags(objects, "operator") == {
        "--proxy-service": ["weir-proxy-admin"],
        "--proxy-namespace": [NAMESPACE],
        "--proxy-admin-port-name": ["admin"],
        "--proxy-server-name": [f"weir-proxy-admin.{NAMESPACE}.svc"],
        "--admin-token-file": ["/etc/weir/admin-token/token"],
        "--ca-file": ["/etc/weir/admin-tls/ca.crt"],
        "--metrics-address": ["0.0.0.0:9090"],
        "--log-format": ["json"],
        "--lease-name": ["weir-operator"],
        "--lease-namespace": [NAMESPACE],
        "--class": ["weir"],
        "--default-class": ["true"],
        "--allow-url-backends": ["false"],
        "--publish-service": [f"{NAMESPACE}/weir-proxy"],
        "--gateway-http-port": ["80"],
        "--gateway-https-port": ["443"],
    }
    assert container(objects, "operator")["env"] == [
        {"name": "RUST_LOG", "value": "info"},
        {"name": "MALLOC_ARENA_MAX", "value": "2"},
    ]


def test_operator_flags_follow_the_values():
    objects = render(VALUE_SETS["tuned"] | {"className": "edge", "defaultClass": False, "watchNamespaces": ["shop"]})
    assert flag(objects, "operator", "--class") == "edge"
    assert flag(objects, "operator", "--default-class") == "false"
    assert flag(objects, "operator", "--allow-url-backends") == "true"
    assert flag(objects, "operator", "--trusted-namespaces") == "platform,edge"
    assert flag(objects, "operator", "--namespaces") == "shop"
    assert flag(objects, "operator", "--log-format") == "text"
    assert flag(objects, "operator", "--lease-name") == "edge-operator"
    assert flag(objects, "operator", "--proxy-service") == "edge-proxy-admin"
    assert flags(objects, "operator")["--debounce"] == ["500ms"]
    assert container(objects, "operator")["env"] == [
        {"name": "RUST_LOG", "value": "debug"},
        {"name": "MALLOC_ARENA_MAX", "value": "2"},
    ]
    assert workload(objects, "operator")["spec"]["replicas"] == 2


def test_proxy_flags_by_default():
    objects = render()
    assert flags(objects, "proxy") == {
        "--listen": ["0.0.0.0:8080"],
        "--tls-listen": ["0.0.0.0:8443"],
        "--admin-listen": ["0.0.0.0:9901"],
        "--admin-tls-cert": ["/etc/weir/admin-tls/tls.crt"],
        "--admin-tls-key": ["/etc/weir/admin-tls/tls.key"],
        "--admin-token-file": ["/etc/weir/admin-token/token"],
        "--metrics-listen": ["0.0.0.0:9902"],
        "--max-header-bytes": ["65536"],
        "--max-body-bytes": ["16777216"],
        "--header-read-timeout": ["20s"],
        "--idle-timeout": ["300s"],
        "--max-connections": ["100000"],
        "--max-connections-per-client": ["0"],
        "--http2-max-concurrent-streams": ["128"],
        "--drain-timeout": ["30s"],
        "--log-format": ["json"],
    }
    assert container(objects, "proxy")["env"] == [{"name": "RUST_LOG", "value": "info"}]
    assert pod_spec(objects, "proxy")["terminationGracePeriodSeconds"] == 45


def test_proxy_flags_follow_the_values():
    objects = render(VALUE_SETS["tuned"])
    proxy = flags(objects, "proxy")
    assert proxy["--workers"] == ["4"]
    assert proxy["--trusted-proxy"] == ["10.0.0.0/8", "192.168.0.0/16"]
    assert proxy["--max-header-bytes"] == ["32768"]
    assert proxy["--max-body-bytes"] == ["1073741824"]
    assert proxy["--header-read-timeout"] == ["10s"]
    assert proxy["--idle-timeout"] == ["120s"]
    assert proxy["--max-connections"] == ["20000"]
    assert proxy["--max-connections-per-client"] == ["64"]
    assert proxy["--http2-max-concurrent-streams"] == ["100"]
    assert proxy["--drain-timeout"] == ["60s"]
    assert proxy["--otlp-endpoint"] == ["http://otel-collector.observability:4318"]
    assert proxy["--no-access-log"] == [None]
    assert proxy["--plugin-fetch-allow"] == ["10.1.0.0/16"]
    assert pod_spec(objects, "proxy")["terminationGracePeriodSeconds"] == 90
    assert container(objects, "proxy")["lifecycle"] == VALUE_SETS["tuned"]["proxy"]["lifecycle"]
    assert container(objects, "proxy")["env"] == [
        {"name": "RUST_LOG", "value": "warn"},
        {"name": "MIMALLOC_PURGE_DELAY", "value": "0"},
    ]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_the_grace_period_outlasts_the_drain(name):
    objects = render(VALUE_SETS[name])
    drain = int(flag(objects, "proxy", "--drain-timeout").removesuffix("s"))
    assert pod_spec(objects, "proxy")["terminationGracePeriodSeconds"] > drain


@pytest.mark.parametrize(
    "values, message",
    [
        ({"proxy": {"drainTimeoutSeconds": 30, "terminationGracePeriodSeconds": 30}}, "must be more than proxy.drainTimeoutSeconds"),
        ({"proxy": {"kind": "DaemonSet", "autoscaling": {"enabled": True}}}, "works with proxy.kind Deployment only"),
        ({"proxy": {"podDisruptionBudget": {"enabled": True, "minAvailable": 1, "maxUnavailable": 1}}}, "not both"),
        ({"redis": {"url": "redis://r:6379", "existingSecret": "r"}}, "not both"),
        ({"proxy": {"autoscaling": {"enabled": True, "targetCPUUtilizationPercentage": None}}}, "needs targetCPU"),
    ],
)
def test_contradictory_values_fail_with_a_message(values, message):
    with pytest.raises(helm_python.HelmError, match=message):
        render(values)


def test_probes():
    objects = render()
    for component, port in (("operator", 9090), ("proxy", 9902)):
        c = container(objects, component)
        assert {"name": "metrics", "containerPort": port, "protocol": "TCP"} in c["ports"]
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    proxy_ports = {p["name"]: p["containerPort"] for p in container(objects, "proxy")["ports"]}
    assert proxy_ports == {"http": 8080, "https": 8443, "admin": 9901, "metrics": 9902}
    # The probes use the plain metrics listener, never the admin port.
    assert flag(objects, "proxy", "--metrics-listen").endswith(":9902")


def test_each_pod_mounts_only_the_admin_files_it_needs():
    objects = render()

    def mounted(component):
        return {
            v["secret"]["secretName"]: sorted(i["key"] for i in v["secret"]["items"])
            for v in pod_spec(objects, component)["volumes"]
        }

    assert mounted("operator") == {"weir-admin-token": ["token"], "weir-admin-tls": ["ca.crt"]}
    assert mounted("proxy") == {"weir-admin-token": ["token"], "weir-admin-tls": ["tls.crt", "tls.key"]}
    for component in COMPONENTS:
        mounts = {m["name"]: m["mountPath"] for m in container(objects, component)["volumeMounts"]}
        assert mounts == {"admin-token": "/etc/weir/admin-token", "admin-tls": "/etc/weir/admin-tls"}


def test_proxy_deployment_rolls_without_losing_capacity():
    deployment = workload(render(), "proxy")
    assert deployment["kind"] == "Deployment"
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


def test_proxy_daemonset():
    objects = render(VALUE_SETS["daemonset"])
    daemonset = workload(objects, "proxy")
    assert daemonset["kind"] == "DaemonSet"
    assert "replicas" not in daemonset["spec"]
    assert daemonset["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert not find(objects, "HorizontalPodAutoscaler") and not find(objects, "PodDisruptionBudget")


def test_autoscaling_and_disruption_budget():
    objects = render(VALUE_SETS["autoscaling"])
    assert "replicas" not in workload(objects, "proxy")["spec"]
    hpa = one(objects, "HorizontalPodAutoscaler", "weir-proxy")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "weir-proxy"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 12)
    targets = {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in hpa["metrics"]}
    assert targets == {"cpu": 80, "memory": 75}
    pdb = one(objects, "PodDisruptionBudget", "weir-proxy")["spec"]
    assert pdb["minAvailable"] == "50%" and "maxUnavailable" not in pdb
    assert pdb["selector"]["matchLabels"] == workload(objects, "proxy")["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize(
    "proxy, budget",
    [
        ({}, {"maxUnavailable": 1}),
        ({"replicas": 1}, None),
        ({"replicas": 1, "podDisruptionBudget": {"enabled": True}}, {"maxUnavailable": 1}),
        ({"podDisruptionBudget": {"enabled": False}}, None),
        ({"podDisruptionBudget": {"maxUnavailable": "25%"}}, {"maxUnavailable": "25%"}),
        ({"podDisruptionBudget": {"maxUnavailable": 0}}, {"maxUnavailable": 0}),
    ],
)
def test_disruption_budget_defaults(proxy, budget):
    found = find(render({"proxy": proxy}), "PodDisruptionBudget")
    if budget is None:
        assert not found
    else:
        (pdb,) = found
        assert {k: v for k, v in pdb["spec"].items() if k != "selector"} == budget


def test_redis_url_is_kept_in_a_secret():
    objects = render(VALUE_SETS["redis-url"])
    secret = one(objects, "Secret", "weir-redis")
    assert base64.b64decode(secret["data"]["url"]).decode() == "redis://:hunter2@redis.cache.svc:6379/0"
    env = container(objects, "proxy")["env"]
    assert {"name": "WEIR_PLUGIN_REDIS_URL", "valueFrom": {"secretKeyRef": {"name": "weir-redis", "key": "url"}}} in env
    assert {"name": "WEIR_PLUGIN_REDIS_KEY_PREFIX", "value": "weir:"} in env
    assert {"name": "WEIR_PLUGIN_REDIS_TIMEOUT", "value": "250ms"} in env
    assert "hunter2" not in str(workload(objects, "proxy"))
    staging = render({"redis": {"url": "redis://redis.cache.svc:6379/0", "keyPrefix": "staging:", "timeout": "80ms"}})
    assert {"name": "WEIR_PLUGIN_REDIS_KEY_PREFIX", "value": "staging:"} in container(staging, "proxy")["env"]
    assert {"name": "WEIR_PLUGIN_REDIS_TIMEOUT", "value": "80ms"} in container(staging, "proxy")["env"]


def test_redis_from_an_existing_secret():
    objects = render(VALUE_SETS["redis-existing"])
    assert not find(objects, "Secret", "weir-redis")
    env = container(objects, "proxy")["env"]
    assert {
        "name": "WEIR_PLUGIN_REDIS_URL",
        "valueFrom": {"secretKeyRef": {"name": "redis-credentials", "key": "connection"}},
    } in env
    assert "WEIR_PLUGIN_REDIS_URL" not in str(render())
    assert "WEIR_PLUGIN_REDIS_KEY_PREFIX" not in str(render())


def test_scheduling_and_metadata_pass_through():
    values = VALUE_SETS["tuned"]
    objects = render(values)
    for component in COMPONENTS:
        given = values[component]
        template = workload(objects, component)["spec"]["template"]
        spec = template["spec"]
        assert spec["imagePullSecrets"] == [{"name": "registry"}]
        assert spec["priorityClassName"] == "system-cluster-critical"
        assert template["metadata"]["annotations"] == given["podAnnotations"]
        assert template["metadata"]["labels"]["tier"] == given["podLabels"]["tier"]
        for key in ("nodeSelector", "tolerations", "affinity"):
            assert spec.get(key) == given.get(key), key
        assert container(objects, component)["imagePullPolicy"] == "Always"
        assert workload(objects, component)["metadata"]["labels"]["team"] == "platform"


def test_spread_constraints_get_the_pods_selector():
    objects = render(VALUE_SETS["tuned"])
    (constraint,) = pod_spec(objects, "proxy")["topologySpreadConstraints"]
    assert constraint["labelSelector"] == {"matchLabels": workload(objects, "proxy")["spec"]["selector"]["matchLabels"]}
    assert constraint["topologyKey"] == "topology.kubernetes.io/zone"
    own = {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"x": "y"}}}
    (kept,) = pod_spec(render({"proxy": {"topologySpreadConstraints": [own]}}), "proxy")["topologySpreadConstraints"]
    assert kept == own


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_selectors_select_their_own_pods_only(name):
    objects = render(VALUE_SETS[name])
    selectors = {}
    for component in COMPONENTS:
        w = workload(objects, component)
        selector = w["spec"]["selector"]["matchLabels"]
        assert selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        assert selector["app.kubernetes.io/component"] == component
        selectors[component] = selector
    assert selectors["operator"] != selectors["proxy"]
