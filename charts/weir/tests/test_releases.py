"""Two releases side by side in one namespace, a public gateway and an internal one, do
not collide and do not select each other's pods."""

from conftest import NAMESPACE, VALUE_SETS, find, flag, render, workload

PUBLIC = render(name="weir")
INTERNAL = render(VALUE_SETS["internal"], name="internal")


def identities(objects):
    return {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects}


def names(objects, kind):
    return {o["metadata"]["name"] for o in find(objects, kind)}


def test_no_object_name_collides():
    assert not identities(PUBLIC) & identities(INTERNAL)
    assert names(PUBLIC, "ClusterRole") == {
        f"{NAMESPACE}-weir-operator",
        f"{NAMESPACE}-weir-operator-ingressclasses",
        f"{NAMESPACE}-weir-operator-gateway-api",
    }
    assert names(INTERNAL, "ClusterRole") == {
        f"{NAMESPACE}-internal-weir-operator",
        f"{NAMESPACE}-internal-weir-operator-ingressclasses",
        f"{NAMESPACE}-internal-weir-operator-gateway-api",
    }
    # Each gateway has its own IngressClass, named by its class.
    assert names(PUBLIC, "IngressClass") == {"weir"}
    assert names(INTERNAL, "IngressClass") == {"internal"}
    assert not names(PUBLIC, "ClusterRoleBinding") & names(INTERNAL, "ClusterRoleBinding")


def test_same_release_name_in_two_namespaces_keeps_cluster_names_apart():
    # A second release of the same class creates no IngressClass: the class is the one
    # cluster-wide name two gateways of one class share by design.
    other = render({"ingress": {"createClass": False}}, namespace="weir-canary")
    cluster_scoped = {i for i in identities(PUBLIC) if i[1] is None}
    assert cluster_scoped and not cluster_scoped & identities(other)


def test_classes_leases_and_admin_services_differ():
    assert (flag(PUBLIC, "operator", "--class"), flag(PUBLIC, "operator", "--default-class")) == ("weir", "true")
    assert (flag(INTERNAL, "operator", "--class"), flag(INTERNAL, "operator", "--default-class")) == ("internal", "false")
    for name in ("--lease-name", "--proxy-service", "--proxy-server-name"):
        assert flag(PUBLIC, "operator", name) != flag(INTERNAL, "operator", name), name


def test_selectors_do_not_cross_releases():
    pods = {
        (release, component): workload(objects, component)["spec"]["template"]["metadata"]["labels"]
        for release, objects in (("weir", PUBLIC), ("internal", INTERNAL))
        for component in ("operator", "proxy")
    }
    for release, objects in (("weir", PUBLIC), ("internal", INTERNAL)):
        selectors = [s["spec"]["selector"] for s in find(objects, "Service")]
        selectors += [p["spec"]["podSelector"]["matchLabels"] for p in find(objects, "NetworkPolicy")]
        selectors += [
            peer["podSelector"]["matchLabels"]
            for p in find(objects, "NetworkPolicy")
            for rule in p["spec"]["ingress"]
            for peer in rule.get("from", [])
        ]
        for selector in selectors:
            matched = {key[0] for key, labels in pods.items() if selector.items() <= labels.items()}
            assert matched == {release}, (release, selector)
