"""Every rendered object is valid against the Kubernetes OpenAPI schema, strictly (an
unknown field fails), on the oldest and the newest Kubernetes kubernetes-validate bundles.

ServiceMonitor, PrometheusRule and cert-manager's Issuer and Certificate are custom
resources: kubernetes-validate has no schema for them, so their structure is checked
against the subsets of their CRDs' schemas below instead (the fields the chart writes,
unknown fields refused)."""

import jsonschema
import kubernetes_validate.utils as kv
import pytest

from conftest import SCHEMA_VERSIONS, VALUE_SETS, parse_objects, render, CHART

STRING = {"type": "string", "minLength": 1}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {"name": STRING, "namespace": STRING, "labels": STRING_MAP, "annotations": STRING_MAP},
    "additionalProperties": False,
}


def custom(spec: dict) -> dict:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {"apiVersion": STRING, "kind": STRING, "metadata": METADATA, "spec": spec},
        "additionalProperties": False,
    }


def strict(properties: dict, required: list[str]) -> dict:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


LABEL_SELECTOR = strict({"matchLabels": STRING_MAP}, ["matchLabels"])
ISSUER_REF = strict({"name": STRING, "kind": {"enum": ["Issuer", "ClusterIssuer"]}, "group": STRING}, ["name"])
DURATION = {"type": "string", "pattern": "^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$"}

# Subsets of monitoring.coreos.com/v1 and cert-manager.io/v1, from their CRDs.
CUSTOM_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): custom(
        strict(
            {
                "selector": LABEL_SELECTOR,
                "namespaceSelector": strict({"matchNames": {"type": "array", "items": STRING, "minItems": 1}}, ["matchNames"]),
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": strict(
                        {
                            "port": STRING,
                            "path": STRING,
                            "scheme": {"enum": ["http", "https"]},
                            "interval": STRING,
                            "scrapeTimeout": STRING,
                        },
                        ["port", "path"],
                    ),
                },
            },
            ["selector", "endpoints"],
        )
    ),
    ("monitoring.coreos.com/v1", "PrometheusRule"): custom(
        strict(
            {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": strict(
                        {
                            "name": STRING,
                            "rules": {
                                "type": "array",
                                "minItems": 1,
                                "items": strict(
                                    {
                                        "alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                                        "expr": STRING,
                                        "for": {"type": "string", "pattern": "^([0-9]+(ms|s|m|h|d|w|y))+$"},
                                        "labels": STRING_MAP,
                                        "annotations": STRING_MAP,
                                    },
                                    ["alert", "expr", "for", "labels", "annotations"],
                                ),
                            },
                        },
                        ["name", "rules"],
                    ),
                }
            },
            ["groups"],
        )
    ),
    ("cert-manager.io/v1", "Issuer"): custom(
        {
            "type": "object",
            "properties": {
                "selfSigned": {"type": "object", "maxProperties": 0},
                "ca": strict({"secretName": STRING}, ["secretName"]),
            },
            "additionalProperties": False,
            "minProperties": 1,
            "maxProperties": 1,
        }
    ),
    ("cert-manager.io/v1", "Certificate"): custom(
        strict(
            {
                "secretName": STRING,
                "isCA": {"type": "boolean"},
                "commonName": STRING,
                "dnsNames": {"type": "array", "items": STRING, "minItems": 1},
                "duration": DURATION,
                "renewBefore": DURATION,
                "usages": {
                    "type": "array",
                    "items": {"enum": ["server auth", "client auth", "digital signature", "key encipherment"]},
                },
                "privateKey": strict(
                    {
                        "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                        "size": {"type": "integer"},
                        "rotationPolicy": {"enum": ["Never", "Always"]},
                    },
                    ["algorithm"],
                ),
                "issuerRef": ISSUER_REF,
            },
            ["secretName", "issuerRef"],
        )
    ),
}


def validate(obj: dict, version: str) -> None:
    """Raises when `obj` is not valid for Kubernetes `version`."""
    key = (obj["apiVersion"], obj["kind"])
    if key in CUSTOM_SCHEMAS:
        jsonschema.Draft7Validator(CUSTOM_SCHEMAS[key]).validate(obj)
    else:
        kv.validate(obj, version, strict=True)


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_rendered_objects_are_valid(name, version):
    objects = render(VALUE_SETS[name])
    assert objects
    for obj in objects:
        try:
            validate(obj, version)
        except (jsonschema.ValidationError, kv.SchemaNotFoundError) as e:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} ({name}, Kubernetes {version}): {getattr(e, 'message', e)}")


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_the_crds_are_valid(version):
    for path in sorted((CHART / "crds").glob("*.yaml")):
        for obj in parse_objects(path.read_text()):
            kv.validate(obj, version, strict=True)


def test_validation_refuses_an_unknown_field():
    """The strict validation used above does fail on a typo."""
    deployment = next(o for o in render() if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(jsonschema.ValidationError):
        validate(deployment, SCHEMA_VERSIONS[0])
    monitor = next(o for o in render(VALUE_SETS["monitoring"]) if o["kind"] == "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor, SCHEMA_VERSIONS[0])
