"""The Grafana dashboard: every panel's query names only series a real authsvc exposes,
and promtool parses every expression (as recording rules, checked offline)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from harness import ROOT, Authsvc, Client, need_binary

DASHBOARD = ROOT / "deploy" / "grafana" / "canwatch.json"
# PromQL words that are not series: functions, aggregations, keywords, label names.
NOT_SERIES = {
    "sum", "min", "max", "count", "avg", "by", "without", "rate", "histogram_quantile", "le",
    "route", "status", "kind", "outcome", "instance", "job", "method", "__rate_interval",
}  # fmt: skip


def expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert panels
    return [target["expr"] for panel in panels for target in panel["targets"]]


def exposed_series(authsvc: Authsvc) -> set[str]:
    client = Client(authsvc.url)
    user, stream = client.new_user(), client.new_stream()
    assert client.activate(user, stream).status_code == 200  # histograms and counters appear
    text = requests.get(f"{authsvc.url}/metrics", timeout=5).text
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def test_every_panel_names_only_series_authsvc_exposes(authsvc: Authsvc) -> None:
    exposed = exposed_series(authsvc)
    for expr in expressions():
        # Drop label matchers and strings, then keep the identifiers that are not PromQL.
        bare = re.sub(r'\{[^}]*\}|"[^"]*"|\[[^\]]*\]', "", expr)
        words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", bare)) - NOT_SERIES
        assert words, expr
        assert words <= exposed, (expr, words - exposed)


def test_promtool_parses_every_panel_expression(tmp_path: Path) -> None:
    promtool = need_binary("promtool", "prometheus")
    rules = [
        # $__rate_interval is Grafana's; any duration stands in for it.
        {"record": f"canwatch:panel_{i}", "expr": expr.replace("$__rate_interval", "5m")}
        for i, expr in enumerate(expressions())
    ]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    out = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules)} rules found" in out.stdout
