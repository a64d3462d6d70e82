"""The wheel is the product: built from the files a clone holds and installed in a fresh
venv, away from this source tree, it runs `authsvc serve`, `authsvc edge-config` and
`authsvc stack` (templates and scripts are package data)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from canwatch_stack.procs import free_port, stop_process, wait_http

from harness import ROOT, SECRET, RedisServer, held, need_binary, shared_by_workers
from until import until


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ folder of a fresh venv with the wheel and the pinned runtime installed:
    built once a run, by whichever test worker comes first, and shared by the others."""
    tmp = shared_by_workers(tmp_path_factory) / "wheel"
    bin_dir = tmp / "venv" / "bin"
    with held(tmp.with_suffix(".lock")):
        if not (tmp / "ready").exists():
            shutil.rmtree(tmp, ignore_errors=True)  # what a worker that failed here left
            build(tmp)
            (tmp / "ready").touch()
    return bin_dir


def build(tmp: Path) -> None:
    """The wheel from the files git tracks, installed with the pinned runtime in tmp/venv."""
    source = tmp / "src"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    for name in tracked.stdout.decode().split("\0"):
        path = ROOT / name
        if name and path.is_file() and not path.is_symlink():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    dist = tmp / "dist"
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(dist), str(source)], check=True, timeout=300)
    (wheel,) = dist.glob("canwatch_authsvc-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True, timeout=120)
    python = str(tmp / "venv" / "bin" / "python")
    install = [python, "-m", "pip", "--disable-pip-version-check", "-q", "install"]
    subprocess.run([*install, "-r", str(ROOT / "requirements.lock"), str(wheel)], check=True, timeout=600)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHSVC_", "CANWATCH_", "PYTHON"))}
    return {**env, **extra}


def test_the_installed_package_is_the_wheel_not_this_tree(installed: Path, tmp_path: Path) -> None:
    code = "import authsvc, authsvc.app, sys; print(authsvc.__file__, authsvc.__version__)"
    out = subprocess.run(
        [str(installed / "python"), "-c", code], cwd=tmp_path, env=clean_env(), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    where, version = out.stdout.split()
    assert where.startswith(str(installed.parent)), where
    assert version != "0+unknown"


def test_every_module_it_ships_imports(installed: Path, tmp_path: Path) -> None:
    code = (
        "import importlib, pkgutil\n"
        "names = []\n"
        "for top in ('authsvc', 'canwatch_edge', 'canwatch_stack'):\n"
        "    package = importlib.import_module(top)\n"
        "    names.append(top)\n"
        "    for info in pkgutil.walk_packages(package.__path__, top + '.'):\n"
        "        if info.name != 'authsvc.__main__':\n"
        "            importlib.import_module(info.name)\n"
        "            names.append(info.name)\n"
        "from canwatch_edge import render\n"
        "print(render.TEMPLATES.joinpath('canwatch.conf'))\n"
        "print(' '.join(names))"
    )
    out = subprocess.run(
        [str(installed / "python"), "-c", code], cwd=tmp_path, env=clean_env(), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    templates, listed = out.stdout.splitlines()
    names = listed.split()
    for module in ("authsvc.app", "canwatch_edge.render", "canwatch_edge.k8s", "canwatch_stack.supervisor"):
        assert module in names, names
    # The templates are package data inside the venv; test-only code is not in the wheel.
    assert templates.startswith(str(installed.parent)) and templates.endswith(
        "canwatch_edge/nginx/canwatch.conf"
    )
    assert not any("replicated" in n or "failover" in n for n in names)


def test_the_kubernetes_config_maps_render_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [str(installed / "python"), "-m", "canwatch_edge.k8s", "--out", "-"],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "kind: ConfigMap" in out.stdout and "name: edge-config" in out.stdout


def test_edge_config_renders_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [str(installed / "authsvc"), "edge-config", "--out", str(tmp_path / "edge")],
        cwd=tmp_path,
        env=clean_env(AUTHSVC_SECRET=SECRET),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    nginx = need_binary("nginx")
    prefix = tmp_path / "edge"
    check = [
        nginx,
        "-t",
        "-p",
        f"{prefix}/",
        "-c",
        str(prefix / "nginx.conf"),
        "-e",
        str(prefix / "error.log"),
    ]
    result = subprocess.run(check, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_serve_from_the_wheel(installed: Path, tmp_path: Path, redis_server: RedisServer) -> None:
    port = free_port()
    env = clean_env(AUTHSVC_SECRET=SECRET, AUTHSVC_REDIS_URL=redis_server.url)
    log = tmp_path / "authsvc.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(installed / "authsvc"), "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc, log, timeout=60)
        user = requests.get(f"http://127.0.0.1:{port}/users/newId", timeout=5).json()["userId"]
        stream = requests.get(f"http://127.0.0.1:{port}/streams/newId", timeout=5).json()["streamId"]
        r = requests.post(
            f"http://127.0.0.1:{port}/streams/{stream}/activate", headers={"x-userid": user}, timeout=5
        )
        assert r.status_code == 200, r.text
    finally:
        stop_process(proc)


def test_stack_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    need_binary("nginx")
    need_binary("redis-server")
    names = ("EDGE_PORT", "EDGE_TLS_PORT", "STACK_API_PORT", "STACK_REDIS_PORT", "STACK_ORIGIN_PORT")
    ports = {name: str(free_port()) for name in names}
    env = clean_env(**{f"CANWATCH_{name}": value for name, value in ports.items()})
    log = tmp_path / "stack.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(installed / "authsvc"), "stack", "--run-dir", str(tmp_path / "run")],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        wait_http(f"http://127.0.0.1:{ports['EDGE_PORT']}/healthz", proc, log, timeout=60)
        base = f"http://127.0.0.1:{ports['EDGE_PORT']}"
        r = requests.get(f"{base}/users/newId", timeout=5)
        assert r.status_code == 200, r.text
        # The page's vendored players and the DASH demo are package data too.
        user, stream = r.json()["userId"], requests.get(f"{base}/streams/newId", timeout=5).json()["streamId"]
        for path in ("vendor/hls.js/hls.min.js", "vendor/shaka-player/shaka-player.dash.js"):
            assert requests.get(f"{base}/player/{path}", timeout=5).status_code == 200, path
        assert requests.patch(f"{base}/streams/{stream}/activate", headers={"x-userid": user}, timeout=5).ok
        for path in ("manifest.mpd", "init.mp4", "segment1.m4s"):
            got = requests.get(f"{base}/watch/{stream}/demo/{path}", headers={"x-userid": user}, timeout=5)
            assert got.status_code == 200, (path, got.text)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(timeout=60) == 0, log.read_text()
        finally:
            stop_process(proc)
    pids = tmp_path / "run" / "pids"
    assert until(lambda: not any(pids.glob("*.pid")), 30), "the stack left parts running"
