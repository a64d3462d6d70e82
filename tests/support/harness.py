"""Real parts for the tests: redis-server, authsvc and nginx processes on free loopback
ports, started and stopped by PID. A missing binary fails with the command that installs it."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import pytest
import requests

from canwatch_stack.procs import StackError, find_binary, start_authsvc, start_redis, stop_process
from canwatch_stack.procs import free_port as free_port  # for the tests that import it from here

from until import until

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
SECRET = "test-secret-not-for-production"


def need_binary(name: str, package: str | None = None) -> str:
    """The binary's path, or a test failure naming the install command (never a skip)."""
    try:
        return find_binary(name, package)
    except StackError as exc:
        pytest.fail(str(exc))


def shared_by_workers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The temporary folder every test worker of this run shares (pytest-xdist's workers
    each have a folder of their own inside it); without xdist, the run's own."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


@contextlib.contextmanager
def held(lock: Path) -> Iterator[None]:
    """An exclusive lock on a file, across the test workers, for as long as the block runs."""
    with lock.open("w") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        yield


class RedisServer:
    """A redis-server of our own on a free port (started by the stack's own code), with no
    persistence: restarting it loses every key, as a Redis restarted without its data would."""

    def __init__(self, workdir: Path) -> None:
        need_binary("redis-server")
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        self.proc = start_redis(self.port, self.workdir, self.workdir / "redis.log", persist=False)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGKILL)
            self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def command(self, *args: str) -> str:
        cli = need_binary("redis-cli")
        out = subprocess.run(
            [cli, "-h", HOST, "-p", str(self.port), *args], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip()


# Where Authsvc keeps its processes' logs: pytest's temporary folder of the run, which
# keeps the last three runs (tests/conftest.py sets it); else the system's.
LOGS: Path | None = None


class Authsvc:
    """`python -m authsvc serve` in a process of its own, with the given settings; on
    loopback, or on ``host`` through ``prefix`` (a test host's `ip netns exec NS`)."""

    def __init__(
        self,
        env: Mapping[str, str],
        workers: int = 1,
        port: int | None = None,
        host: str = HOST,
        prefix: Sequence[str] = (),
    ) -> None:
        self.env = dict(env)
        self.workers = workers
        self.port = port or free_port()
        self.host = host
        self.prefix = tuple(prefix)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(tempfile.mkdtemp(prefix="authsvc-", dir=LOGS)) / "authsvc.log"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSVC_")}
        env.update(self.env)
        self.proc = start_authsvc(self.port, env, self.workers, self.log_path, self.host, self.prefix)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def logs(self) -> str:
        return self.log_path.read_text()

    def access_entries(self, count: int, route: str | None, timeout: float = 30.0) -> list[dict[str, object]]:
        """The access-log entries of ``route`` (None: of every route), once there are at
        least ``count`` of them (the log is written in batches); fails after ``timeout``
        seconds."""
        deadline = time.monotonic() + timeout
        while True:
            entries = []
            for line in self.logs().splitlines():
                entry = json.loads(line) if line.startswith("{") else {}
                if entry.get("logger") == "authsvc.access" and route in (None, entry.get("route")):
                    entries.append(entry)
            if len(entries) >= count or time.monotonic() > deadline:
                assert len(entries) >= count, f"{len(entries)} of {count} {route} entries in {self.log_path}"
                return entries
            time.sleep(0.05)

    def slowest_answer(self, count: int) -> float:
        """The longest authsvc took to answer (seconds, from its access log: started with
        access_log on) among at least ``count`` requests."""
        return max(float(str(e["ms"])) for e in self.access_entries(count, None)) / 1000


# start_authsvc(**overrides) -> a started Authsvc: the fixture's type.
AuthsvcFactory = Callable[..., Authsvc]


class Topology(Protocol):
    """A Redis to run authsvc on: one redis-server, a Cluster or a Sentinel set."""

    @property
    def url(self) -> str: ...

    def command(self, *args: str) -> str: ...


def settings_env(redis: Topology, **overrides: str | int | float | bool) -> dict[str, str]:
    env = {
        "AUTHSVC_REDIS_URL": redis.url,
        "AUTHSVC_SECRET": SECRET,
        "AUTHSVC_KEY_PREFIX": f"t{free_port()}:",  # every service its own key space
        "AUTHSVC_ACCESS_LOG": "true",
    }
    for key, value in overrides.items():
        env["AUTHSVC_" + key.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


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


def raw_request(
    port: int, method: str, target: str, headers: dict[str, bytes] | None = None, host: str = HOST
) -> tuple[int, bytes]:
    """One request exactly as written, on a connection of its own; (status, body).
    requests would refuse or normalise some of what the tests send."""
    lines = [f"{method} {target} HTTP/1.1".encode(), f"Host: {host}:{port}".encode()]
    lines += [name.encode() + b": " + value for name, value in (headers or {}).items()]
    lines += [b"Connection: close", b"Content-Length: 0", b"", b""]
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"\r\n".join(lines))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def past_the_refresh(client: Client, user: str) -> None:
    """Wait until the clock (Redis's is this machine's) is a few milliseconds past the last
    refresh of the user's leases, so that a refresh now must move their expiry."""
    refreshed = max(s["refreshedAt"] for s in client.active(user).json()["streams"])
    until(lambda: time.time() * 1000 >= refreshed + 3, timeout=5, step=0.001)
