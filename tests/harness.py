"""Real parts for the tests: redis-server, authsvc and nginx processes on free loopback
ports, started and stopped by PID. A missing binary fails with the command that installs it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
SECRET = "test-secret-not-for-production"


def need_binary(name: str, package: str) -> str:
    """The binary's path, or a test failure naming the install command (never a skip)."""
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(f"{name} is not installed: run `apt-get install -y {package}` (or `make test`, which does)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {HOST}:{port} after {timeout}s")


def stop_pid(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 5.0) -> None:
    """Stop a process we started, by its PID; SIGKILL if it does not go in time."""
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGCONT)  # a paused process cannot handle SIGTERM
        os.kill(proc.pid, sig)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout)
    except ProcessLookupError:
        pass


class RedisServer:
    """A redis-server of our own on a free port, with no persistence: restarting it
    loses every key, as a Redis restarted without its data would."""

    def __init__(self, workdir: Path) -> None:
        self.binary = need_binary("redis-server", "redis-server")
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        args = [
            self.binary, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no",
            "--dir", str(self.workdir), "--daemonize", "no", "--loglevel", "warning",
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc, signal.SIGKILL)
            self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def command(self, *args: str) -> str:
        cli = need_binary("redis-cli", "redis-tools")
        out = subprocess.run(
            [cli, "-h", HOST, "-p", str(self.port), *args], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip()


class Authsvc:
    """`python -m authsvc serve` in a process of its own, with the given settings."""

    def __init__(self, env: Mapping[str, str], workers: int = 1, port: int | None = None) -> None:
        self.env = dict(env)
        self.workers = workers
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(tempfile.mkdtemp(prefix="authsvc-")) / "authsvc.log"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSVC_")}
        env.update(self.env)
        args = [sys.executable, "-m", "authsvc", "serve", "--host", HOST, "--port", str(self.port)]
        args += ["--workers", str(self.workers)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=log, stderr=log)
        try:
            wait_port(self.port, timeout=20, proc=self.proc)
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"{exc}; authsvc said:\n{self.logs()[-2000:]}") from None

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc)
            self.proc = None

    def logs(self) -> str:
        return self.log_path.read_text()


def settings_env(redis: RedisServer, **overrides: str | int | float | bool) -> dict[str, str]:
    env = {
        "AUTHSVC_REDIS_URL": redis.url,
        "AUTHSVC_SECRET": SECRET,
        "AUTHSVC_KEY_PREFIX": f"t{free_port()}:",  # every service its own key space
        "AUTHSVC_ACCESS_LOG": "true",
    }
    for key, value in overrides.items():
        env["AUTHSVC_" + key.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


@contextmanager
def running(proc: Authsvc) -> Iterator[Authsvc]:
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


class Client:
    """The public API as a player would call it, with a session of its own."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()

    def close(self) -> None:
        self.http.close()

    def new_user(self) -> str:
        r = self.http.get(f"{self.base}/users/newId", timeout=5)
        assert r.status_code == 200, r.text
        return str(r.json()["userId"])

    def new_stream(self) -> str:
        r = self.http.get(f"{self.base}/streams/newId", timeout=5)
        assert r.status_code == 200, r.text
        return str(r.json()["streamId"])

    def call(self, op: str, user: str | None, stream: str, method: str = "PATCH") -> requests.Response:
        headers = {} if user is None else {"x-userid": user}
        return self.http.request(method, f"{self.base}/streams/{stream}/{op}", headers=headers, timeout=5)

    def activate(self, user: str, stream: str) -> requests.Response:
        return self.call("activate", user, stream)

    def deactivate(self, user: str, stream: str) -> requests.Response:
        return self.call("deactivate", user, stream)

    def heartbeat(self, user: str, stream: str) -> requests.Response:
        return self.call("heartbeat", user, stream)

    def active(self, user: str) -> requests.Response:
        return self.http.get(f"{self.base}/streams/active", headers={"x-userid": user}, timeout=5)
