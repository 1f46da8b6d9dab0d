"""NOTES.txt: how to reach the proxies for each Service type, and a first Route that is a
valid Route."""

import re

import jsonschema
import pytest
import yaml

from conftest import CHART, VALUE_SETS, notes, parse_objects

ROUTE_CRD = parse_objects((CHART / "crds" / "routes.weir.dev.yaml").read_text())[0]
ROUTE_SCHEMA = ROUTE_CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def example_route(text: str) -> dict:
    (manifest,) = re.findall(r"<<'EOF'\n(.*?)\n\s*EOF", text, re.DOTALL)
    return yaml.safe_load(manifest)


@pytest.mark.parametrize(
    "service_type, expected",
    [
        ("LoadBalancer", "jsonpath='{.status.loadBalancer.ingress[0].ip}"),
        ("NodePort", "jsonpath='{.spec.ports[?(@.name==\"http\")].nodePort}'"),
        ("ClusterIP", "port-forward service/weir-proxy 8080:80"),
    ],
)
def test_how_to_reach_the_proxies(service_type, expected):
    text = notes({"proxy": {"service": {"type": service_type}}})
    assert f"{service_type} Service weir-proxy" in text
    assert expected in text


@pytest.mark.parametrize("name", ["defaults", "internal"])
def test_the_first_route_is_a_valid_route(name):
    route = example_route(notes(VALUE_SETS[name], name=name))
    assert (route["apiVersion"], route["kind"]) == ("weir.dev/v1alpha1", "Route")
    jsonschema.Draft7Validator(ROUTE_SCHEMA).validate(route)
    backends = [b for rule in route["spec"]["rules"] for b in rule["backends"]]
    assert backends == [{"name": "hello", "port": 80}]
    # A release that is not the default class must be named by the Route.
    assert route["spec"].get("className") == (None if name == "defaults" else "internal")
