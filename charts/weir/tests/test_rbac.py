"""The operator's permissions are exactly what it does (operator/src/watch.rs, status.rs,
leader.rs and kube-runtime's event Recorder), scoped to the namespaces it watches; the
proxies have none."""

import pytest

from conftest import NAMESPACE, RELEASE, VALUE_SETS, find, flag, flags, one, pod_spec, render

# Everywhere the operator watches: a ClusterRole, or a Role per watched namespace.
WATCH_RULES = [
    {"apiGroups": ["weir.dev"], "resources": ["routes", "plugins"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["weir.dev"], "resources": ["routes/status", "plugins/status"], "verbs": ["patch"]},
    {"apiGroups": [""], "resources": ["configmaps", "services"], "verbs": ["list", "watch"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["list", "watch"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses/status"], "verbs": ["patch"]},
    {
        "apiGroups": ["gateway.networking.k8s.io"],
        "resources": ["gateways", "httproutes", "referencegrants"],
        "verbs": ["list", "watch"],
    },
    {
        "apiGroups": ["gateway.networking.k8s.io"],
        "resources": ["gateways/status", "httproutes/status"],
        "verbs": ["get", "patch", "update"],
    },
]
INGRESS_RULES = WATCH_RULES[6:8]
GATEWAY_API_RULES = WATCH_RULES[8:]

# Cluster-scoped, so cluster-wide whatever the watched namespaces: reading IngressClasses.
INGRESS_CLASS_RULES = [
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingressclasses"], "verbs": ["list", "watch"]},
]

# Cluster-scoped too: GatewayClasses (weir's, and their status) and the Namespaces whose
# labels Gateway listeners select routes' namespaces by.
GATEWAY_CLASS_RULES = [
    {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["gatewayclasses"], "verbs": ["get", "list", "watch"]},
    {
        "apiGroups": ["gateway.networking.k8s.io"],
        "resources": ["gatewayclasses/status"],
        "verbs": ["get", "patch", "update"],
    },
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
]


def release_rules(lease: str, publish: bool = True) -> list[dict]:
    """In the release namespace: the Lease, the proxies' admin EndpointSlices, the
    Event announcing each snapshot applied on every proxy (on the admin Service), and the
    proxy Service whose addresses served Ingresses and Gateways publish (by name)."""
    published = [
        {"apiGroups": [""], "resources": ["services"], "resourceNames": ["weir-proxy"], "verbs": ["list", "watch"]}
    ]
    return [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [lease],
            "verbs": ["get", "update"],
        },
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ] + (published if publish else [])


OPERATOR_SA = {"kind": "ServiceAccount", "name": "weir-operator", "namespace": NAMESPACE}
RBAC_KINDS = ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def test_cluster_wide_by_default():
    objects = render()
    name = f"{NAMESPACE}-{RELEASE}-operator"
    assert one(objects, "ClusterRole", name)["rules"] == WATCH_RULES
    assert one(objects, "ClusterRole", f"{name}-ingressclasses")["rules"] == INGRESS_CLASS_RULES
    assert one(objects, "ClusterRole", f"{name}-gateway-api")["rules"] == GATEWAY_CLASS_RULES
    for role in (name, f"{name}-ingressclasses", f"{name}-gateway-api"):
        binding = one(objects, "ClusterRoleBinding", role)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}
        assert binding["subjects"] == [OPERATOR_SA]
    assert "--namespaces" not in flags(objects, "operator")
    (role,) = find(objects, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == release_rules("weir-operator")


def test_watched_namespaces_get_roles_and_only_cluster_scoped_kinds_are_cluster_wide():
    objects = render({"watchNamespaces": ["a", "b"]})
    cluster_roles = {r["metadata"]["name"]: r["rules"] for r in find(objects, "ClusterRole")}
    assert sorted(cluster_roles.values(), key=str) == sorted([INGRESS_CLASS_RULES, GATEWAY_CLASS_RULES], key=str)
    bound = {b["roleRef"]["name"] for b in find(objects, "ClusterRoleBinding")}
    assert bound == set(cluster_roles)
    assert flag(objects, "operator", "--namespaces") == "a,b"
    name = f"{NAMESPACE}-{RELEASE}-operator"
    for namespace in ("a", "b"):
        assert one(objects, "Role", name, namespace)["rules"] == WATCH_RULES
        binding = one(objects, "RoleBinding", name, namespace)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}
        assert binding["subjects"] == [OPERATOR_SA]
    assert one(objects, "Role", "weir-operator", NAMESPACE)["rules"] == release_rules("weir-operator")
    assert {r["metadata"]["namespace"] for r in find(objects, "Role")} == {"a", "b", NAMESPACE}


def test_the_release_namespace_can_be_watched_too():
    objects = render({"watchNamespaces": [NAMESPACE]})
    roles = find(objects, "Role", namespace=NAMESPACE)
    assert sorted(r["metadata"]["name"] for r in roles) == sorted([f"{NAMESPACE}-{RELEASE}-operator", "weir-operator"])


def test_the_lease_and_admin_endpoints_match_the_operator_flags():
    objects = render()
    role = one(objects, "Role", "weir-operator")
    assert role["metadata"]["namespace"] == flag(objects, "operator", "--lease-namespace")
    assert role["rules"][1]["resourceNames"] == [flag(objects, "operator", "--lease-name")]
    assert role["metadata"]["namespace"] == flag(objects, "operator", "--proxy-namespace")
    one(objects, "Service", flag(objects, "operator", "--proxy-service"))


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_no_wildcards_no_secret_reads_no_proxy_rights(name):
    objects = render(VALUE_SETS[name])
    proxy_sa = pod_spec(objects, "proxy")["serviceAccountName"]
    for role in find(objects, "ClusterRole") + find(objects, "Role"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], (role["metadata"]["name"], rule)
            if "secrets" in rule["resources"]:
                assert rule["verbs"] == ["list", "watch"], rule
    for binding in find(objects, "ClusterRoleBinding") + find(objects, "RoleBinding"):
        assert all(s["name"] != proxy_sa for s in binding["subjects"]), binding


def test_rbac_can_be_left_to_the_user():
    objects = render({"rbac": {"create": False}})
    assert not [o for o in objects if o["kind"] in RBAC_KINDS]


def test_without_ingresses_the_operator_gets_no_ingress_rights():
    objects = render({"ingress": {"enabled": False}, "gatewayApi": {"enabled": False}})
    name = f"{NAMESPACE}-{RELEASE}-operator"
    assert one(objects, "ClusterRole", name)["rules"] == WATCH_RULES[:6]
    assert not find(objects, "ClusterRole", f"{name}-ingressclasses")
    assert one(objects, "Role", "weir-operator")["rules"] == release_rules("weir-operator", publish=False)
    assert flag(objects, "operator", "--watch-ingresses") == "false"
    assert not {"--publish-service", "--publish-address"} & set(flags(objects, "operator"))
    assert not find(objects, "IngressClass")


def test_served_gateways_publish_the_proxy_service_without_ingresses_too():
    """Gateways' status.addresses come from the same Service (or fixed addresses) as
    Ingresses' status.loadBalancer."""
    objects = render({"ingress": {"enabled": False}})
    name = f"{NAMESPACE}-{RELEASE}-operator"
    assert one(objects, "ClusterRole", name)["rules"] == [r for r in WATCH_RULES if r not in INGRESS_RULES]
    assert not find(objects, "ClusterRole", f"{name}-ingressclasses")
    assert flag(objects, "operator", "--watch-ingresses") == "false"
    assert flag(objects, "operator", "--publish-service") == f"{NAMESPACE}/weir-proxy"
    assert one(objects, "Role", "weir-operator")["rules"] == release_rules("weir-operator")
    fixed = render({"ingress": {"enabled": False, "publishAddress": ["203.0.113.7"]}})
    assert flag(fixed, "operator", "--publish-address") == "203.0.113.7"
    assert one(fixed, "Role", "weir-operator")["rules"] == release_rules("weir-operator", publish=False)


def test_fixed_addresses_need_no_service_watch():
    objects = render({"ingress": {"publishAddress": ["203.0.113.7", "lb.example.com"]}})
    assert flag(objects, "operator", "--publish-address") == "203.0.113.7,lb.example.com"
    assert "--publish-service" not in flags(objects, "operator")
    assert one(objects, "Role", "weir-operator")["rules"] == release_rules("weir-operator", publish=False)


def test_without_the_gateway_api_the_operator_gets_no_gateway_api_rights():
    objects = render({"gatewayApi": {"enabled": False}})
    name = f"{NAMESPACE}-{RELEASE}-operator"
    assert one(objects, "ClusterRole", name)["rules"] == [r for r in WATCH_RULES if r not in GATEWAY_API_RULES]
    assert not find(objects, "ClusterRole", f"{name}-gateway-api")
    assert not find(objects, "ClusterRoleBinding", f"{name}-gateway-api")
    # Nothing anywhere names the group or Namespaces any more.
    for role in find(objects, "ClusterRole") + find(objects, "Role"):
        for rule in role["rules"]:
            assert "gateway.networking.k8s.io" not in rule["apiGroups"], rule
            assert "namespaces" not in rule["resources"], rule
    assert flag(objects, "operator", "--watch-gateway-api") == "false"
    assert not {"--gateway-http-port", "--gateway-https-port"} & set(flags(objects, "operator"))


def test_watched_namespaces_get_the_gateway_api_rules_in_their_roles():
    objects = render({"watchNamespaces": ["a", "b"], "gatewayApi": {"enabled": True}})
    name = f"{NAMESPACE}-{RELEASE}-operator"
    for namespace in ("a", "b"):
        rules = one(objects, "Role", name, namespace)["rules"]
        assert all(rule in rules for rule in GATEWAY_API_RULES)
    # GatewayClasses are cluster-scoped: no Role mentions them.
    for role in find(objects, "Role"):
        assert not [r for r in role["rules"] if "gatewayclasses" in r["resources"]]
