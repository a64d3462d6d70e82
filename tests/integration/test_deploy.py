"""The deployment files, checked without a container engine: promtool for Prometheus,
and the compose file against what the code actually reads."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from authsvc.settings import documented
from authsvc.stack.settings import StackSettings

from harness import ROOT, need_binary

DEPLOY = ROOT / "deploy"


def promtool(*args: str) -> str:
    tool = need_binary("promtool", "prometheus")
    out = subprocess.run([tool, *args], capture_output=True, text=True, cwd=DEPLOY, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_prometheus_config_and_rules_are_valid() -> None:
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")


def test_alerts_fire_when_they_should() -> None:
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")


def test_alerts_name_only_metrics_authsvc_exports() -> None:
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    exported = {
        "authsvc_redis_up", "authsvc_http_requests_total", "authsvc_decisions_total",
        "authsvc_http_request_duration_seconds_bucket", "up",
    }  # fmt: skip
    text = " ".join(rule["expr"] for group in rules["groups"] for rule in group["rules"])
    named = {word for word in _words(text) if word.startswith("authsvc_") or word == "up"}
    assert named <= exported, named - exported


def _words(text: str) -> list[str]:
    import re

    return re.findall(r"[a-zA-Z_][a-zA-Z0-9_]*", text)


def test_compose_passes_only_known_settings_and_files_that_exist() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    known = {name for name, _, _ in documented(StackSettings)}
    services = compose["services"]
    assert {"redis", "authsvc", "nginx", "prometheus"} <= set(services)
    for name, service in services.items():
        env = service.get("environment", {})
        for var in env:
            assert not var.startswith("AUTHSVC_") or var in known, f"{name}: unknown setting {var}"
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
        build = service.get("build")
        if build:
            context = build if isinstance(build, str) else build.get("context", ".")
            assert (ROOT / context / "Dockerfile").exists()
    assert services["authsvc"]["environment"]["AUTHSVC_REDIS_URL"].startswith("redis://redis:")
    assert Path(ROOT / "Dockerfile").read_text().count("requirements.lock") >= 1


def test_compose_edge_settings_render_a_config_nginx_accepts(tmp_path: Path) -> None:
    import os
    import sys

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSVC_")}
    for name, value in compose["services"]["edge-config"]["environment"].items():
        # ${VAR:-default} -> default; the compose network's host name is not resolvable here.
        text = str(value)
        if text.startswith("${"):
            text = text.split(":-", 1)[1].rstrip("}") if ":-" in text else ""
        env[name] = text
    env["AUTHSVC_API_HOST"] = "127.0.0.1"
    out = subprocess.run(
        [sys.executable, "-m", "authsvc", "edge-config", "--out", str(tmp_path / "edge")],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    nginx = need_binary("nginx", "nginx")
    prefix = tmp_path / "edge"
    check = subprocess.run(
        [nginx, "-t", "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert "listen 0.0.0.0:9004;" in (prefix / "nginx.conf").read_text()
