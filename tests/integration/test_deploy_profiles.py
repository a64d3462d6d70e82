"""docker-compose.yml's profiles `cluster` and `sentinel`, checked without a container
engine: the same shapes as `make run` (3 primaries + 3 replicas; primary, replica and 3
sentinels; two authsvc replicas each), every name a command, URL or upstream refers to is
a service of the same profile, and the Redis and nginx configuration they carry is accepted
by the real redis-server and nginx."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from authsvc import redis_url
from authsvc.settings import Settings, documented
from canwatch_edge.render import LEASE_TOKEN_KEY_ENV
from canwatch_edge.settings import EdgeSettings
from canwatch_stack.procs import free_port, spawn, stop_process, wait_port
from canwatch_stack.settings import StackSettings

from harness import ROOT, need_binary

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DEFAULTS = {"AUTHSVC_SECRET": "compose-test-secret-long-enough"}


def profile(name: str) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in SERVICES.items() if name in s.get("profiles", [])}


def interpolate(value: object) -> str:
    """${VAR:-default} -> default, ${VAR:?message} -> a test value, as compose would with
    only the required variables set."""
    text = str(value)
    text = re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", text)
    return re.sub(r"\$\{(\w+):\?[^}]*\}", lambda m: DEFAULTS[m.group(1)], text)


def env_of(service: dict[str, Any]) -> dict[str, str]:
    """The environment as compose sets it with an empty shell: a key without a value
    passes the shell's variable on, so it is absent here."""
    return {k: interpolate(v) for k, v in service.get("environment", {}).items() if v is not None}


def depends(service: dict[str, Any]) -> list[str]:
    deps = service.get("depends_on", [])
    return list(deps) if isinstance(deps, (list, dict)) else []


def authsvcs(services: dict[str, dict[str, Any]]) -> list[str]:
    return sorted(n for n, s in services.items() if "AUTHSVC_REDIS_URL" in s.get("environment", {}))


def test_the_default_stack_is_unchanged_and_the_profiles_are_complete() -> None:
    unprofiled = {n for n, s in SERVICES.items() if not s.get("profiles")}
    assert unprofiled == {"redis", "authsvc", "edge-config", "nginx", "prometheus", "alertmanager"}
    known = {row[0] for row in documented(Settings, EdgeSettings, StackSettings)} | {LEASE_TOKEN_KEY_ENV}
    declared_volumes = set(COMPOSE.get("volumes", {}))
    host_ports: list[str] = []
    for name, service in SERVICES.items():
        own = set(service.get("profiles", []))
        for dep in depends(service):
            assert dep in SERVICES, f"{name} depends on {dep}, which does not exist"
            theirs = set(SERVICES[dep].get("profiles", []))
            # An enabled service whose dependency is not enabled does not start.
            assert not theirs or theirs & own, f"{name} ({own}) depends on {dep} ({theirs})"
        for var in service.get("environment", {}):
            assert not var.startswith(("AUTHSVC_", "CANWATCH_")) or var in known, (
                f"{name}: unknown setting {var}"
            )
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            assert source.startswith("./") or source in declared_volumes, f"{name}: volume {source}"
        host_ports += [str(p).split(":")[0] for p in service.get("ports", [])]
    assert len(host_ports) == len(set(host_ports)), host_ports


@pytest.mark.parametrize("shape", ["cluster", "sentinel"])
def test_each_profile_has_the_shape_of_make_run(shape: str) -> None:
    services = profile(shape)
    replicas = authsvcs(services)
    assert len(replicas) == 2, replicas
    for name in replicas:
        settings = Settings.from_env(env_of(services[name]))  # a bad URL raises here
        url = redis_url.parse(settings.redis_url)
        assert url.mode == shape
        for host, _ in url.hosts:
            assert host in services, f"{name}: {host} is not a service of profile {shape}"
        if shape == "cluster":
            nodes = sorted(h for h, _ in url.hosts)
            assert len(nodes) == 6 and all(p == 6379 for _, p in url.hosts)
            assert all("--cluster-enabled" in services[n]["command"] for n in nodes)
            # Each node announces its own service name, which clients then connect to.
            for n in nodes:
                args = services[n]["command"]
                assert args[args.index("--cluster-announce-hostname") + 1] == n
                assert args[args.index("--cluster-require-full-coverage") + 1] == "no"
            create = " ".join(services["redis-cluster-create"]["command"])
            assert "--cluster-replicas 1" in create and "for n in 1 2 3 4 5 6" in create
        else:
            sentinels = sorted(h for h, _ in url.hosts)
            assert len(sentinels) == 3 and all(p == 26379 for _, p in url.hosts)
            for s in sentinels:
                conf = sentinel_conf(services[s])
                assert f"sentinel monitor {url.service} redis-primary 6379 2" in conf
            args = services["redis-replica"]["command"]
            assert args[args.index("--replicaof") + 1 : args.index("--replicaof") + 3] == [
                "redis-primary",
                "6379",
            ]
    # The edge of the profile spreads over exactly its replicas, and its nginx serves the
    # configuration that edge-config wrote, on the port it renders.
    edge = env_of(services[f"edge-config-{shape}"])
    assert edge["CANWATCH_EDGE_AUTHSVC"].split(",") == [f"{n}:9005" for n in replicas]
    nginx = services[f"nginx-{shape}"]
    assert [str(v) for v in nginx["volumes"]] == [str(v) for v in services[f"edge-config-{shape}"]["volumes"]]
    assert nginx["ports"] == [f"{edge['CANWATCH_EDGE_PORT']}:{edge['CANWATCH_EDGE_PORT']}"]
    assert set(replicas) <= set(depends(nginx))


def sentinel_conf(service: dict[str, Any]) -> str:
    """The config file a sentinel service writes at start (its printf, run here)."""
    script = service["command"][2]
    printf = script.split("> /data/sentinel.conf")[0]
    out = subprocess.run(["sh", "-c", printf], capture_output=True, text=True, timeout=10, check=True)
    return out.stdout


def test_shell_scripts_parse() -> None:
    for name, service in SERVICES.items():
        command = service.get("command") or []
        if command[:2] == ["sh", "-c"]:
            script = command[2].replace("$$", "$")  # compose's escape of a literal $
            check = subprocess.run(["sh", "-n", "-c", script], capture_output=True, text=True, timeout=10)
            assert check.returncode == 0, (name, check.stderr)


def test_the_redis_configuration_runs_on_the_real_redis_server(tmp_path: Path) -> None:
    """A Cluster node with the profile's arguments, and a sentinel with the profile's
    config file watching a real primary, start and answer (the announced names replaced
    by the loopback address, which is all that differs outside compose)."""
    binary = need_binary("redis-server", "redis-server")
    procs = []
    try:
        node_port, primary_port, sentinel_port = free_port(), free_port(), free_port()
        args = SERVICES["redis-cluster-1"]["command"][1:]
        node = [binary, *args, "--port", str(node_port), "--bind", "127.0.0.1", "--dir", str(tmp_path)]
        node += ["--cluster-port", str(free_port())]  # the default, port + 10000, may not exist
        log = tmp_path / "node.log"
        procs.append(spawn(node, log))
        wait_port(node_port, procs[-1], log)
        primary = [binary, "--port", str(primary_port), "--bind", "127.0.0.1", "--save", ""]
        procs.append(spawn(primary, log))
        wait_port(primary_port, procs[-1], log)
        conf = sentinel_conf(SERVICES["sentinel-1"]).replace("port 26379", f"port {sentinel_port}")
        conf = conf.replace("redis-primary 6379", f"127.0.0.1 {primary_port}")
        (tmp_path / "sentinel.conf").write_text(conf + "bind 127.0.0.1\n")
        slog = tmp_path / "sentinel.log"
        sentinel = [binary, str(tmp_path / "sentinel.conf"), "--sentinel"]
        procs.append(spawn(sentinel, slog))
        wait_port(sentinel_port, procs[-1], slog)
        cli = need_binary("redis-cli", "redis-tools")

        def ask(port: int, *command: str) -> str:
            out = subprocess.run([cli, "-p", str(port), *command], capture_output=True, text=True, timeout=5)
            return out.stdout

        assert "cluster_enabled:1" in ask(node_port, "INFO", "cluster")
        assert ask(node_port, "CONFIG", "GET", "cluster-node-timeout").split() == [
            "cluster-node-timeout",
            "5000",
        ]
        master = ask(sentinel_port, "SENTINEL", "master", "canwatch").split()
        assert master[master.index("port") + 1] == str(primary_port), master
        assert master[master.index("down-after-milliseconds") + 1] == "5000"
    finally:
        for proc in procs:
            stop_process(proc)


@pytest.mark.parametrize("service", ["edge-config", "edge-config-cluster", "edge-config-sentinel"])
def test_every_edge_renders_a_config_nginx_accepts(tmp_path: Path, service: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHSVC_", "CANWATCH_"))}
    env.update(env_of(SERVICES[service]))
    # The compose network's names do not resolve here, and nginx -t resolves upstreams;
    # nor does the image's nginx user exist on this machine.
    env.pop("CANWATCH_EDGE_USER", None)
    env.pop("CANWATCH_EDGE_RESOLVER", None)
    if "CANWATCH_EDGE_AUTHSVC" in env:
        env["CANWATCH_EDGE_AUTHSVC"] = re.sub(r"[A-Za-z0-9.-]+:", "127.0.0.1:", env["CANWATCH_EDGE_AUTHSVC"])
    prefix = tmp_path / "edge"
    out = subprocess.run(
        [sys.executable, "-m", "authsvc", "edge-config", "--out", str(prefix)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    nginx = need_binary("nginx", "nginx")
    check = subprocess.run(
        [nginx, "-t", "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    text = (prefix / "nginx.conf").read_text()
    assert f"listen 0.0.0.0:{env['CANWATCH_EDGE_PORT']};" in text
    block = text.split("upstream canwatch_authsvc {", 1)[1].split("}", 1)[0]
    servers = [line for line in block.splitlines() if line.strip().startswith("server ")]
    assert len(servers) == len(env.get("CANWATCH_EDGE_AUTHSVC", "x").split(","))
