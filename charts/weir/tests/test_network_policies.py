"""NetworkPolicies: the admin port is open to this release's operator pods only."""

import pytest

from conftest import METRICS_PEER, VALUE_SETS, find, one, render, workload

ANYONE = object()


def pod_labels(objects, component):
    return workload(objects, component)["spec"]["template"]["metadata"]["labels"]


def allowed(policy, port):
    """The peers allowed to `port` (ANYONE when a rule has no `from`)."""
    peers = []
    for rule in policy["spec"]["ingress"]:
        if any(p["port"] == port for p in rule["ports"]):
            if "from" not in rule:
                return ANYONE
            peers.extend(rule["from"])
    return peers


@pytest.mark.parametrize("name", sorted(set(VALUE_SETS) - {"no-network-policy"}))
def test_proxy_policy(name):
    objects = render(VALUE_SETS[name])
    policy = one(objects, "NetworkPolicy", workload(objects, "proxy")["metadata"]["name"])
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    # Selects exactly the proxy pods: their labels, nothing more (podLabels come on top).
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector == workload(objects, "proxy")["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels(objects, "proxy").items()
    assert not selector.items() <= pod_labels(objects, "operator").items()
    # Admin: the operator pods of this release, in this namespace (no namespaceSelector).
    assert allowed(policy, "admin") == [{"podSelector": {"matchLabels": workload(objects, "operator")["spec"]["selector"]["matchLabels"]}}]
    (peer,) = allowed(policy, "admin")
    assert peer["podSelector"]["matchLabels"].items() <= pod_labels(objects, "operator").items()
    assert not peer["podSelector"]["matchLabels"].items() <= pod_labels(objects, "proxy").items()
    assert allowed(policy, "http") is ANYONE and allowed(policy, "https") is ANYONE
    # Named ports must be the container's.
    names = {p["name"] for p in workload(objects, "proxy")["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]} == names


def test_metrics_open_by_default_and_narrowed_by_metrics_from():
    default = render()
    for component in ("proxy", "operator"):
        policy = one(default, "NetworkPolicy", f"weir-{component}")
        assert allowed(policy, "metrics") is ANYONE
    narrowed = render(VALUE_SETS["monitoring"])
    for component in ("proxy", "operator"):
        assert allowed(one(narrowed, "NetworkPolicy", f"weir-{component}"), "metrics") == [METRICS_PEER]


def test_operator_policy_admits_metrics_only():
    objects = render()
    policy = one(objects, "NetworkPolicy", "weir-operator")
    assert policy["spec"]["podSelector"]["matchLabels"] == workload(objects, "operator")["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == ["metrics"]


def test_policies_can_be_turned_off():
    assert not find(render(VALUE_SETS["no-network-policy"]), "NetworkPolicy")
