"""`helm lint --strict` (Helm 4's linter) finds nothing to warn about, with the default
values and with every non-default value set, on the chart's oldest Kubernetes and a recent one."""

import helm_python
import pytest

from conftest import CHART, LINT_KUBE_VERSIONS, NAMESPACE, VALUE_SETS

WARNING = 2


@pytest.mark.parametrize("kube_version", LINT_KUBE_VERSIONS)
@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_lint_strict_is_clean(name, kube_version):
    report = helm_python.lint(
        CHART, VALUE_SETS[name], strict=True, namespace=NAMESPACE, kube_version=kube_version
    )
    problems = [m for m in report["messages"] if m["severity"] >= WARNING]
    assert report["total_charts_linted"] == 1
    assert not problems and not report["errors"], (problems, report["errors"])


def test_lint_reports_a_broken_value():
    """The linter does see the values (so the clean runs above mean something)."""
    report = helm_python.lint(CHART, {"proxy": {"kind": "StatefulSet"}}, strict=True, namespace=NAMESPACE)
    assert report["errors"] or any(m["severity"] >= WARNING for m in report["messages"]), report


def test_the_packaged_chart_leaves_the_tests_out(tmp_path):
    """.helmignore keeps tests/ (and Python caches) out of `helm package`."""
    with helm_python.Chart.load(CHART) as chart:
        names = [f["name"] for f in chart.files] + [t["name"] for t in chart.templates]
    assert names and not [n for n in names if n.startswith("tests/") or "__pycache__" in n]
    archive = helm_python.package(CHART, destination=tmp_path)
    with helm_python.Chart.load(archive) as packaged:
        assert "dashboards/weir.json" in [f["name"] for f in packaged.files]
        assert not [f["name"] for f in packaged.files if f["name"].startswith("tests/")]
        assert packaged.render({}, name="weir", namespace=NAMESPACE, is_install=True)
