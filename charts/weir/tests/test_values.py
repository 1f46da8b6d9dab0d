"""values.yaml, values.schema.json and the README agree, every key is documented, and
the schema turns typos and bad choices into install errors."""

import json
import re

import helm_python
import pytest
import yaml

from conftest import CHART, render

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES_TEXT = (CHART / "values.yaml").read_text()
VALUES = yaml.safe_load(VALUES_TEXT)


def controlled(schema: dict) -> bool:
    """Whether the chart defines the keys of this object (not a Kubernetes passthrough)."""
    return schema.get("type") == "object" and "properties" in schema


def keys(values: dict, schema: dict, prefix: str = ""):
    """(dotted key, its schema) of every key the chart defines, depth first."""
    for key, value in values.items():
        sub = schema["properties"].get(key)
        yield prefix + key, sub
        if sub is not None and controlled(sub) and isinstance(value, dict):
            yield from keys(value, sub, prefix + key + ".")


@pytest.mark.parametrize(
    "values, complaint",
    [
        ({"proxy": {"replica": 3}}, "replica"),
        ({"operatr": {}}, "operatr"),
        ({"proxy": {"service": {"nodePort": {"http": 30080}}}}, "nodePort"),
        ({"metrics": {"serviceMonitor": {"enable": True}}}, "enable"),
        ({"proxy": {"kind": "StatefulSet"}}, "kind"),
        ({"proxy": {"service": {"type": "ExternalName"}}}, "type"),
        ({"operator": {"logFormat": "yaml"}}, "logFormat"),
        ({"proxy": {"logFormat": "pretty"}}, "logFormat"),
        ({"proxy": {"replicas": "two"}}, "replicas"),
        ({"proxy": {"service": {"externalTrafficPolicy": "local"}}}, "externalTrafficPolicy"),
        ({"className": "Not A Class"}, "className"),
    ],
)
def test_schema_refuses_typos_and_bad_choices(values, complaint):
    with helm_python.Chart.load(CHART) as chart:
        with pytest.raises(helm_python.HelmValuesError, match=complaint):
            chart.validate_schema(values)
    with pytest.raises(helm_python.HelmValuesError, match=complaint):
        render(values)


def test_schema_is_draft_07_and_closed_where_the_chart_decides():
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"

    def walk(schema, path):
        if controlled(schema):
            assert schema.get("additionalProperties") is False, path
            for key, sub in schema["properties"].items():
                assert sub.get("description"), f"{path}.{key} has no description"
                walk(sub, f"{path}.{key}")

    walk(SCHEMA, "values")


def test_defaults_pass_the_schema():
    with helm_python.Chart.load(CHART) as chart:
        chart.validate_schema({})
        chart.validate_schema(VALUES)


def test_values_and_schema_name_the_same_keys():
    in_values = dict(keys(VALUES, SCHEMA))
    assert not [k for k, s in in_values.items() if s is None], "keys of values.yaml missing from the schema"

    def schema_keys(schema, values, prefix=""):
        for key, sub in schema["properties"].items():
            yield prefix + key
            # An optional object left empty in values.yaml (certManager.issuerRef) has no
            # keys there to compare.
            if controlled(sub) and values.get(key):
                yield from schema_keys(sub, values[key], prefix + key + ".")

    assert sorted(set(schema_keys(SCHEMA, VALUES)) - {"global"}) == sorted(in_values)


def test_every_key_has_a_comment():
    """Each key the chart defines has a comment on the line(s) just above it."""
    lines = VALUES_TEXT.splitlines()
    path: list[tuple[int, str]] = []
    undocumented = []
    for number, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z][\w.-]*):", line)
        if not match:
            continue
        indent, key = len(match.group(1)), match.group(2)
        path = [(i, k) for i, k in path if i < indent] + [(indent, key)]
        dotted = ".".join(k for _, k in path)
        if dotted not in dict(keys(VALUES, SCHEMA)):
            continue  # inside a passthrough (resources, security contexts, ...)
        if not lines[number - 1].strip().startswith("#"):
            undocumented.append(dotted)
    assert not undocumented


def test_readme_lists_every_value():
    readme = (CHART / "README.md").read_text()
    listed = set(re.findall(r"^\| `([^`]+)` \|", readme, re.MULTILINE))
    every = [k for k, _ in keys(VALUES, SCHEMA)]
    leaves = {k for k in every if not any(other.startswith(k + ".") for other in every)}
    assert sorted(leaves - listed) == [], "values missing from the README's table"
    assert sorted(listed - leaves) == [], "README names values that do not exist"
