"""The deployment files, checked without a container engine: promtool for Prometheus,
and the compose file against what the code actually reads."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from authsvc.settings import Settings, documented
from canwatch_edge.render import LEASE_TOKEN_KEY_ENV
from canwatch_edge.settings import EdgeSettings
from canwatch_stack.settings import StackSettings

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


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_does_not() -> None:
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule}
    cases = [case for test in yaml.safe_load((DEPLOY / "alerts_test.yml").read_text())["tests"]
             for case in test.get("alert_rule_test", [])]  # fmt: skip
    fires = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert alerts and alerts <= fires, alerts - fires
    assert alerts <= quiet, alerts - quiet


def test_prometheus_finds_every_replica_and_sends_alerts() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    assert config["alerting"]["alertmanagers"], "no Alertmanager"
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "authsvc"]
    assert "static_configs" not in job, "one static target is one replica"
    assert job["dns_sd_configs"][0]["names"] == ["authsvc"]


def test_alerts_name_only_metrics_authsvc_exports() -> None:
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    exported = {
        "authsvc_redis_up", "authsvc_http_requests_total", "authsvc_decisions_total",
        "authsvc_http_request_duration_seconds_bucket", "authsvc_jwks_last_success_timestamp_seconds", "up",
    }  # fmt: skip
    text = " ".join(rule["expr"] for group in rules["groups"] for rule in group["rules"])
    named = {word for word in _words(text) if word.startswith("authsvc_") or word == "up"}
    assert named <= exported, named - exported


def _words(text: str) -> list[str]:
    import re

    return re.findall(r"[a-zA-Z_][a-zA-Z0-9_]*", text)


def test_compose_passes_only_known_settings_and_files_that_exist() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    known = {row[0] for row in documented(Settings, EdgeSettings, StackSettings)} | {LEASE_TOKEN_KEY_ENV}
    services = compose["services"]
    assert {"redis", "authsvc", "nginx", "prometheus", "alertmanager"} <= set(services)
    for name, service in services.items():
        env = service.get("environment", {})
        for var in env:
            assert not var.startswith(("AUTHSVC_", "CANWATCH_")) or var in known, (
                f"{name}: unknown setting {var}"
            )
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
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHSVC_", "CANWATCH_"))}
    for name, value in compose["services"]["edge-config"]["environment"].items():
        if value is None:
            continue  # passed through from the shell: unset here
        # ${VAR:-default} -> default; the compose network's host name is not resolvable here.
        text = str(value)
        if text.startswith("${"):
            text = text.split(":-", 1)[1].rstrip("}") if ":-" in text else ""
        env[name] = text
    env["CANWATCH_EDGE_AUTHSVC"] = "127.0.0.1:9005"
    env["CANWATCH_EDGE_USER"] = "www-data"  # Debian's; the image's `nginx` user is not here
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
    conf = (prefix / "nginx.conf").read_text()
    assert "listen 0.0.0.0:9004;" in conf
    assert "listen 0.0.0.0:9443 ssl http2;" in (prefix / "part-http-tls.conf").read_text()
    # Logs on stdio, and authsvc's name looked up again through Docker's DNS.
    assert "error_log stderr warn;" in conf and "access_log /dev/stdout canwatch" in conf
    resolver = (prefix / "part-http-resolver.conf").read_text()
    server = (prefix / "server.conf").read_text()
    assert "resolver 127.0.0.11 valid=10s" in resolver and "proxy_pass http://$cw_authsvc_address;" in server
    assert "canwatch_authsvc;" not in server


def test_compose_runs_each_part_as_an_operator_would() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ("redis", "authsvc", "nginx", "prometheus"):
        assert services[name].get("restart") in ("unless-stopped", "always"), name
    # Redis keeps its data: append-only file on a named volume.
    redis = services["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    (volume,) = redis["volumes"]
    source, target = volume.split(":")[:2]
    assert target == "/data" and source in compose["volumes"]
    # nginx: workers not root, logs on stdio, authsvc's name re-resolved.
    edge_env = services["edge-config"]["environment"]
    assert edge_env["CANWATCH_EDGE_USER"] not in (None, "root", "0")
    assert edge_env["CANWATCH_EDGE_LOGS"] == "stdio"
    assert edge_env["CANWATCH_EDGE_RESOLVER"] == "127.0.0.11"
    nginx_cmd = services["nginx"]["command"]
    assert nginx_cmd[nginx_cmd.index("-e") + 1] == "stderr"
    assert "user" not in services["nginx"]  # the master binds as root, workers drop it
    # Every edge can be given the lease tokens' key (AUTHSVC_LEASE_TOKEN_S reaches the renderer).
    edges = [
        name for name, service in services.items() if str(service.get("image", "")).startswith("openresty/")
    ]
    assert len(edges) == 3, edges
    for name in edges:
        assert services[name]["environment"][LEASE_TOKEN_KEY_ENV] == "${CANWATCH_EDGE_LEASE_TOKEN_KEY:-}", (
            name
        )
    # Every setting can be passed: authsvc's to authsvc, and the edge's to the renderer.
    service_settings = {row[0] for row in documented(Settings) if row[0].startswith("AUTHSVC_")}
    assert service_settings <= set(services["authsvc"]["environment"]), service_settings - set(
        services["authsvc"]["environment"]
    )
    edge_settings = {row[0] for row in documented(EdgeSettings)}
    assert edge_settings <= set(edge_env), edge_settings - set(edge_env)
    # The local stack's settings are make run's alone.
    assert not any(
        var.startswith("CANWATCH_STACK_") for s in services.values() for var in s.get("environment", {})
    )
