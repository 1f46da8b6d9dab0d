"""The admin token and certificate: generated, named, verifiable; or taken from existing
Secrets or cert-manager. (Kept across upgrades: test_cluster.py, which needs a cluster.)"""

import base64
import re

import pytest

from conftest import NAMESPACE, VALUE_SETS, admin_files, dns_names, find, flag, one, openssl_verify, pod_spec, proxy_admin_status, render


def decoded(secret):
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def volume_secret(objects, component, volume):
    (found,) = [v["secret"]["secretName"] for v in pod_spec(objects, component)["volumes"] if v["name"] == volume]
    return found


def test_generated_token():
    objects = render()
    secret = one(objects, "Secret", "weir-admin-token")
    assert secret["type"] == "Opaque"
    token = decoded(secret)["token"]
    assert re.fullmatch(r"[A-Za-z0-9]{48}", token)
    for component in ("operator", "proxy"):
        assert volume_secret(objects, component, "admin-token") == "weir-admin-token"


def test_generated_certificate_names_what_the_operator_checks():
    objects = render()
    secret = one(objects, "Secret", "weir-admin-tls")
    assert secret["type"] == "kubernetes.io/tls"
    files = decoded(secret)
    assert sorted(files) == ["ca.crt", "tls.crt", "tls.key"]
    assert "PRIVATE KEY" in files["tls.key"] and "PRIVATE KEY" not in files["ca.crt"]
    server_name = flag(objects, "operator", "--proxy-server-name")
    assert server_name == f"weir-proxy-admin.{NAMESPACE}.svc"
    assert server_name in dns_names(files["tls.crt"])
    assert f"{server_name}.cluster.local" in dns_names(files["tls.crt"])
    # What the operator does: check the proxy's certificate against --ca-file for the name.
    verified = openssl_verify(files["ca.crt"], files["tls.crt"], server_name)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # And the check can fail: another name, or another release's CA.
    assert openssl_verify(files["ca.crt"], files["tls.crt"], "weir-proxy.example.com").returncode != 0
    other = decoded(one(render({"adminTls": {"validityDays": 30}}), "Secret", "weir-admin-tls"))
    assert openssl_verify(other["ca.crt"], files["tls.crt"], server_name).returncode != 0
    # The operator gets the CA, the proxies the certificate and key, from that Secret.
    assert volume_secret(objects, "operator", "admin-tls") == "weir-admin-tls"
    assert volume_secret(objects, "proxy", "admin-tls") == "weir-admin-tls"
    assert flag(objects, "operator", "--ca-file").endswith("/ca.crt")


def test_the_server_name_follows_release_and_namespace():
    objects = render({"className": "internal", "defaultClass": False}, name="internal", namespace="edge")
    server_name = flag(objects, "operator", "--proxy-server-name")
    assert server_name == "internal-weir-proxy-admin.edge.svc"
    files = decoded(one(objects, "Secret", "internal-weir-admin-tls"))
    assert openssl_verify(files["ca.crt"], files["tls.crt"], server_name).returncode == 0


def test_existing_secrets_are_used_and_not_rendered():
    objects = render(VALUE_SETS["existing-secrets"])
    assert not find(objects, "Secret")
    for component in ("operator", "proxy"):
        assert volume_secret(objects, component, "admin-token") == "my-admin-token"
        assert volume_secret(objects, component, "admin-tls") == "my-admin-tls"
    assert flag(objects, "operator", "--proxy-server-name") == f"weir-proxy-admin.{NAMESPACE}.svc"


def test_cert_manager_with_the_charts_own_ca():
    objects = render(VALUE_SETS["cert-manager"])
    assert not find(objects, "Secret", "weir-admin-tls")
    one(objects, "Secret", "weir-admin-token")
    self_signed = one(objects, "Issuer", "weir-selfsigned")
    assert self_signed["spec"] == {"selfSigned": {}}
    ca = one(objects, "Certificate", "weir-admin-ca")["spec"]
    assert ca["isCA"] is True
    assert ca["issuerRef"] == {"name": "weir-selfsigned", "kind": "Issuer", "group": "cert-manager.io"}
    ca_issuer = one(objects, "Issuer", "weir-admin-ca")
    assert ca_issuer["spec"] == {"ca": {"secretName": ca["secretName"]}}
    serving = one(objects, "Certificate", "weir-proxy-admin")["spec"]
    assert serving["issuerRef"] == {"name": "weir-admin-ca", "kind": "Issuer", "group": "cert-manager.io"}
    assert flag(objects, "operator", "--proxy-server-name") in serving["dnsNames"]
    assert "server auth" in serving["usages"]
    for component in ("operator", "proxy"):
        assert volume_secret(objects, component, "admin-tls") == serving["secretName"]
    assert serving["secretName"] != ca["secretName"]


def test_cert_manager_with_your_issuer():
    objects = render(VALUE_SETS["cert-manager-issuer"])
    assert not find(objects, "Issuer")
    (certificate,) = find(objects, "Certificate")
    spec = certificate["spec"]
    assert spec["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    assert (spec["duration"], spec["renewBefore"]) == ("2160h", "360h")
    assert flag(objects, "operator", "--proxy-server-name") in spec["dnsNames"]


def test_an_existing_tls_secret_wins_over_cert_manager():
    objects = render({"certManager": {"enabled": True}, "adminTls": {"existingSecret": "mine"}})
    assert not find(objects, "Certificate") and not find(objects, "Issuer")
    assert volume_secret(objects, "proxy", "admin-tls") == "mine"


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_pushes_are_https(name):
    objects = render(VALUE_SETS[name])
    text = str(objects)
    assert "--proxy-insecure-http" not in text and "WEIR_PROXY_INSECURE_HTTP" not in text
    proxy = flag(objects, "proxy", "--admin-tls-cert"), flag(objects, "proxy", "--admin-tls-key")
    assert all(proxy)
    assert flag(objects, "operator", "--ca-file") and flag(objects, "operator", "--proxy-server-name")



def test_a_real_proxy_serves_the_generated_certificate():
    """weir-proxy loads the chart's certificate and key, and a client that checks them as
    the operator does (CA file, the Service's name, the token) gets through."""
    objects = render()
    files = admin_files(objects)
    assert proxy_admin_status(objects, files, files["token"]) == 200
    assert proxy_admin_status(objects, files, "not-the-token") == 401
