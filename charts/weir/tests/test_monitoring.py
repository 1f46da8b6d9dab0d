"""ServiceMonitors, alerts and the Grafana dashboard: they select this release's metrics
Services and use metrics the binaries document."""

import json
import re

import pytest

from conftest import CHART, NAMESPACE, REPO, VALUE_SETS, find, one, render

# The metric names docs/proxy.md and docs/operator.md document (counters with `_total`).
DOCUMENTED = set(
    re.findall(r"`(weir_[a-z_]+)", (REPO / "docs" / "proxy.md").read_text() + (REPO / "docs" / "operator.md").read_text())
)
HISTOGRAM_SERIES = re.compile(r"_(bucket|sum|count)$")
DASHBOARD = json.loads((CHART / "dashboards" / "weir.json").read_text())


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(weir_[a-z_]+)", expr))


def documented(name: str) -> bool:
    return name in DOCUMENTED or HISTOGRAM_SERIES.sub("", name) in DOCUMENTED


def test_off_by_default():
    objects = render()
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert not find(objects, kind)
    assert not find(objects, "ConfigMap")


def test_service_monitors_scrape_the_metrics_services():
    objects = render(VALUE_SETS["monitoring"])
    monitors = find(objects, "ServiceMonitor")
    assert sorted(m["metadata"]["name"] for m in monitors) == ["weir-operator", "weir-proxy"]
    for monitor in monitors:
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
        spec = monitor["spec"]
        assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        selected = [
            s for s in find(objects, "Service") if spec["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
        ]
        component = monitor["metadata"]["name"].removeprefix("weir-")
        assert [s["metadata"]["name"] for s in selected] == [f"weir-{component}-metrics"]
        (endpoint,) = spec["endpoints"]
        assert endpoint == {"port": "metrics", "path": "/metrics", "scheme": "http", "interval": "30s", "scrapeTimeout": "10s"}
        assert endpoint["port"] in {p["name"] for p in selected[0]["spec"]["ports"]}


def rules(objects):
    (rule,) = find(objects, "PrometheusRule")
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def test_alerts():
    objects = render(VALUE_SETS["monitoring"])
    alerts = rules(objects)
    assert set(alerts) == {
        "WeirProxiesOutOfSync",
        "WeirNoOperatorLeader",
        "WeirPluginFailures",
        "WeirServerErrors",
        "WeirOperatorErrors",
    }
    out_of_sync = alerts["WeirProxiesOutOfSync"]
    assert out_of_sync["for"] == "5m"
    assert re.search(r"weir_operator_proxies_in_sync\{[^}]*\} < weir_operator_proxies\{", out_of_sync["expr"])
    assert 'kind!="rejected"' in alerts["WeirPluginFailures"]["expr"]
    assert 'status_class="5xx"' in alerts["WeirServerErrors"]["expr"]
    assert alerts["WeirServerErrors"]["expr"].rstrip().endswith("> 0.02")
    assert "weir_operator_errors_total" in alerts["WeirOperatorErrors"]["expr"]
    for alert in alerts.values():
        assert alert["labels"]["severity"] in ("warning", "critical")
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
        assert alert["expr"].count("(") == alert["expr"].count(")")
        assert all(documented(m) for m in metric_names(alert["expr"])), metric_names(alert["expr"])


def test_alerts_select_this_releases_jobs():
    objects = render(VALUE_SETS["monitoring"])
    services = {s["metadata"]["name"] for s in find(objects, "Service")}
    for alert in rules(objects).values():
        jobs = set(re.findall(r'job="([^"]+)"', alert["expr"]))
        assert jobs and jobs <= services, (alert["alert"], jobs)
        assert set(re.findall(r'namespace="([^"]+)"', alert["expr"])) == {NAMESPACE}


def test_alert_thresholds_follow_the_values():
    alerts = rules(
        render(
            {
                "metrics": {
                    "prometheusRule": {
                        "enabled": True,
                        "outOfSyncFor": "15m",
                        "pluginFailuresPerSecond": 5,
                        "operatorErrorsPerSecond": 0.5,
                    }
                }
            }
        )
    )
    assert alerts["WeirProxiesOutOfSync"]["for"] == "15m"
    assert alerts["WeirPluginFailures"]["expr"].rstrip().endswith("> 5")
    assert alerts["WeirOperatorErrors"]["expr"].rstrip().endswith("> 0.5")


def test_dashboard_config_map():
    objects = render(VALUE_SETS["monitoring"])
    config_map = one(objects, "ConfigMap", "weir-dashboard")
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Gateways"}
    assert json.loads(config_map["data"]["weir.json"]) == DASHBOARD
    # Helm merges maps: a default label goes with null.
    relabelled = render({"metrics": {"dashboard": {"enabled": True, "labels": {"grafana_dashboard": None, "dashboards": "weir"}}}})
    config_map = one(relabelled, "ConfigMap", "weir-dashboard")
    assert config_map["metadata"]["namespace"] == NAMESPACE
    assert config_map["metadata"]["labels"]["dashboards"] == "weir"
    assert "grafana_dashboard" not in config_map["metadata"]["labels"]


def panels():
    return {p["title"]: p for p in DASHBOARD["panels"] if p["type"] != "row"}


def test_dashboard_panels_use_documented_metrics():
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for title, panel in panels().items():
        assert panel["targets"], title
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names and all(documented(n) for n in names), (title, names)
            assert target["expr"].count("(") == target["expr"].count(")"), title
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


@pytest.mark.parametrize(
    "title, expected",
    [
        ("Requests by route", ["sum by (route) (rate(weir_requests_total"]),
        ("Errors by route", ['status_class=~"4xx|5xx"']),
        ("Latency", [f"histogram_quantile({q}, sum by (le) (rate(weir_request_duration_seconds_bucket" for q in ("0.5", "0.9", "0.99")]),
        ("Upstream errors", ["sum by (backend, kind) (rate(weir_upstream_errors_total"]),
        ("Plugin hook time p99", ["histogram_quantile(0.99, sum by (le, plugin, hook) (rate(weir_plugin_hook_duration_seconds_bucket"]),
        ("Plugin failures", ['weir_plugin_errors_total{namespace=~"$namespace", job=~"$proxy_job", kind!="rejected"}']),
        ("Snapshot version per proxy", ["max by (pod) (weir_snapshot_version"]),
        ("Proxy lag", ["weir_operator_snapshot_version", "weir_snapshot_version"]),
        ("Proxies in sync", ["weir_operator_proxies{", "weir_operator_proxies_in_sync{"]),
        ("Operator errors", ["sum by (kind) (rate(weir_operator_errors_total"]),
    ],
)
def test_dashboard_has_the_panels(title, expected):
    exprs = " ".join(t["expr"] for t in panels()[title]["targets"])
    for fragment in expected:
        assert fragment in exprs, (title, fragment)
