"""A real Prometheus (Debian's) scrapes the running stack, authsvc with two workers, loads
a copy of deploy/alerts.yml with short `for`s, and raises CanWatchRedisDown when Redis
stops."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from canwatch_stack.procs import stop_process, wait_port

from edge_harness import Player, StackFactory
from harness import HOST, ROOT, free_port, need_binary
from until import until

pytestmark = pytest.mark.e2e


def start_prometheus(workdir: Path, target: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = need_binary("prometheus", "prometheus")
    rules = yaml.safe_load((ROOT / "deploy" / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = "2s"  # the real ones wait minutes
    (workdir / "alerts.yml").write_text(yaml.safe_dump(rules))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["alerts.yml"],
        "scrape_configs": [{"job_name": "authsvc", "static_configs": [{"targets": [target]}]}],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    args = [
        binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address={HOST}:{port}", "--log.level=warn",
    ]  # fmt: skip
    log = workdir / "prometheus.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=out)
    wait_port(port, proc, log, timeout=60)
    base = f"http://{HOST}:{port}"
    # Listening comes before ready (the TSDB is opened, the rules loaded): 503 until then.
    if not until(lambda: requests.get(f"{base}/-/ready", timeout=5).status_code == 200, 60):
        stop_process(proc)
        pytest.fail("prometheus not ready within 60 s: " + log.read_text()[-2000:])
    return proc, base


def api(base: str, path: str, **params: str) -> Any:
    r = requests.get(f"{base}/api/v1/{path}", params=params, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]


def test_prometheus_scrapes_every_worker_and_raises_redis_down(
    start_stack: StackFactory, tmp_path: Path
) -> None:
    stack = start_stack(why="it runs Prometheus and stops Redis", workers=2)
    player = Player(stack.url)
    user = player.new_user()
    for _ in range(3):
        assert player.activate(user, player.new_stream()).status_code == 200
    target = stack.api_url.removeprefix("http://")
    proc, prom = start_prometheus(tmp_path, target)
    try:

        def series(query: str) -> list[dict[str, Any]]:
            return list(api(prom, "query", query=query)["result"])

        assert until(lambda: bool(series('up{job="authsvc"} == 1')), 60), series("up")
        # Every worker's counts in the one target: the 3 activations, whichever worker took them.
        activations = 'sum(authsvc_decisions_total{kind="activate",outcome="allowed"})'
        assert until(lambda: [float(s["value"][1]) for s in series(activations)] == [3.0], 60)
        assert until(
            lambda: [float(s["value"][1]) for s in series("max(authsvc_active_leases)")] == [3.0], 60
        )
        names = set(api(prom, "label/__name__/values"))
        wanted = {
            "authsvc_http_requests_total", "authsvc_http_request_duration_seconds_bucket",
            "authsvc_decisions_total", "authsvc_redis_up", "authsvc_active_leases", "authsvc_active_users",
            "authsvc_build_info", "authsvc_evictions_total", "authsvc_redis_errors_total",
        }  # fmt: skip
        assert wanted <= names, wanted - names
        loaded = {rule["name"] for group in api(prom, "rules")["groups"] for rule in group["rules"]}
        assert "CanWatchRedisDown" in loaded and "CanWatchUnavailableAnswers" in loaded

        stack.stop_redis()

        def redis_down_alert() -> bool:
            # Requests keep meeting the dead Redis, as players' would.
            player.activate(user, player.new_stream())
            alerts = api(prom, "alerts")["alerts"]
            return any(
                a["labels"]["alertname"] == "CanWatchRedisDown" and a["state"] in ("pending", "firing")
                for a in alerts
            )

        assert until(redis_down_alert, 60, step=0.5), api(prom, "alerts")
    finally:
        stop_process(proc)
        player.close()
