"""The public Service exposes traffic ports only; the admin Service lists every proxy for
the operator; the metrics Services serve Prometheus."""

import pytest

from conftest import NAMESPACE, VALUE_SETS, find, flag, one, render, workload

LOAD_BALANCER_ONLY = ("loadBalancerClass", "loadBalancerSourceRanges")


def public_service(objects):
    return one(objects, "Service", workload(objects, "proxy")["metadata"]["name"])


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_public_service_exposes_traffic_ports_only(name):
    objects = render(VALUE_SETS[name])
    service = public_service(objects)
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {"http": (80, "http"), "https": (443, "https")}
    assert service["spec"]["selector"] == workload(objects, "proxy")["spec"]["selector"]["matchLabels"]
    assert service["spec"]["type"] == VALUE_SETS[name].get("proxy", {}).get("service", {}).get("type", "LoadBalancer")


def test_load_balancer_by_default():
    spec = public_service(render())["spec"]
    assert spec["type"] == "LoadBalancer"
    assert not {"externalTrafficPolicy", *LOAD_BALANCER_ONLY} & spec.keys()
    assert all("nodePort" not in p for p in spec["ports"])


def test_load_balancer_settings():
    service = public_service(render(VALUE_SETS["tuned"]))
    spec = service["spec"]
    assert spec["loadBalancerClass"] == "service.k8s.aws/nlb"
    assert spec["loadBalancerSourceRanges"] == ["203.0.113.0/24"]
    assert spec["externalTrafficPolicy"] == "Local"
    assert {p["name"]: p.get("nodePort") for p in spec["ports"]} == {"http": None, "https": 31443}
    assert service["metadata"]["annotations"] == {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}
    assert service["metadata"]["labels"]["exposure"] == "public"


def test_node_port():
    spec = public_service(render(VALUE_SETS["nodeport"]))["spec"]
    assert spec["type"] == "NodePort"
    assert {p["name"]: p["nodePort"] for p in spec["ports"]} == {"http": 30080, "https": 30443}
    assert spec["externalTrafficPolicy"] == "Local"
    assert not set(LOAD_BALANCER_ONLY) & spec.keys()


def test_cluster_ip_drops_external_only_fields():
    spec = public_service(render(VALUE_SETS["clusterip"]))["spec"]
    assert spec["type"] == "ClusterIP"
    assert not {"externalTrafficPolicy", *LOAD_BALANCER_ONLY} & spec.keys()
    assert all("nodePort" not in p for p in spec["ports"])


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_admin_service_lists_every_proxy_for_the_operator(name):
    objects = render(VALUE_SETS[name])
    service = one(objects, "Service", flag(objects, "operator", "--proxy-service"))
    assert service["metadata"]["namespace"] == flag(objects, "operator", "--proxy-namespace")
    spec = service["spec"]
    assert spec["clusterIP"] == "None"
    assert spec["publishNotReadyAddresses"] is True
    assert spec["ports"] == [{"name": flag(objects, "operator", "--proxy-admin-port-name"), "port": 9901, "targetPort": "admin", "protocol": "TCP"}]
    assert spec["selector"] == workload(objects, "proxy")["spec"]["selector"]["matchLabels"]
    assert flag(objects, "proxy", "--admin-listen").endswith(":9901")


def test_metrics_services():
    objects = render()
    for component, port in (("proxy", 9902), ("operator", 9090)):
        service = one(objects, "Service", f"weir-{component}-metrics")
        assert service["spec"]["type"] == "ClusterIP"
        assert service["spec"]["ports"] == [{"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}]
        assert service["spec"]["selector"] == workload(objects, component)["spec"]["selector"]["matchLabels"]


def test_no_service_exposes_the_admin_port_but_the_headless_one():
    objects = render()
    exposing = [s["metadata"]["name"] for s in find(objects, "Service") if any(p["targetPort"] == "admin" for p in s["spec"]["ports"])]
    assert exposing == ["weir-proxy-admin"]
    assert all(s["metadata"]["namespace"] == NAMESPACE for s in find(objects, "Service"))
