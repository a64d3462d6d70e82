"""Starting and stopping the stack's processes: redis-server, authsvc and nginx, each on a
loopback port, each stopped by its PID. A missing binary names the command that installs it."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from canwatch_edge import render

LOOPBACK = "127.0.0.1"
# The Debian package of each binary whose name differs from it.
PACKAGES = {"redis-cli": "redis-tools", "redis-sentinel": "redis-sentinel", "promtool": "prometheus"}


class StackError(RuntimeError):
    """A part is missing or did not start; the message says what to do."""


def find_binary(name: str, package: str | None = None) -> str:
    """The path of a binary, or StackError naming the command that installs it."""
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    package = package or PACKAGES.get(name, name)
    raise StackError(f"{name} is not installed: run `apt-get install -y {package}` (`make test` does)")


def _name(proc: subprocess.Popen[bytes]) -> str:
    args = proc.args if isinstance(proc.args, list) else [str(proc.args)]
    return " ".join(str(a) for a in args[:4])


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# Ports this process has handed out: the kernel may offer a port again as soon as the probe
# socket closes, before the part it was meant for has bound it, and two parts of one stack
# would then race for it.
_handed_out: set[int] = set()
# Ports are picked below the kernel's ephemeral range, which it draws the local port of
# every outgoing connection from: a port taken from that range could be given to one of
# them (a Redis Cluster's bus links, nginx's and authsvc's upstream connections) between
# the probe and the moment its part binds it. That happened under load: "address already
# in use" for the second authsvc replica while a Cluster was being created.
_FIRST_PORT = 10000
_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
_pick = random.Random()


def _ephemeral_start() -> int:
    try:
        return int(_EPHEMERAL.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _share(first: int, end: int) -> tuple[int, int]:
    """The part of [first, end) this process picks from. Test processes that pytest-xdist
    runs side by side (and what they start) each take their own share, by the worker's
    number: what one has handed out but not yet bound is never offered to another."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "").removeprefix("gw")
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if not (worker.isdecimal() and workers.isdecimal() and int(worker) < int(workers)):
        return first, end
    size = (end - first) // int(workers)
    return first + int(worker) * size, first + (int(worker) + 1) * size


def free_port(count: int = 1) -> int:
    """A loopback port nothing listens on now, not handed out before by this process and
    below the ephemeral range (for tests and benchmarks); with ``count``, the first of that
    many consecutive ones."""
    start, end = _share(_FIRST_PORT, _ephemeral_start())
    end -= count
    for _ in range(1000):
        if end > start:
            first = _pick.randrange(start, end)
        else:  # no room below it: the kernel's choice, with the race described above
            with socket.socket() as probe:
                probe.bind((LOOPBACK, 0))
                first = int(probe.getsockname()[1])
        wanted = range(first, first + count)
        if not _handed_out.isdisjoint(wanted):
            continue
        with contextlib.ExitStack() as held:
            try:
                for port in wanted:
                    held.enter_context(socket.socket()).bind((LOOPBACK, port))
            except OSError:
                continue
        _handed_out.update(wanted)
        return first
    raise StackError(f"found no {count} free loopback ports below the ephemeral range")


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive loopback ports nothing listens on now (the
    stack's authsvc replicas take CANWATCH_STACK_API_PORT and the ports after it)."""
    return free_port(count)


def wait_port(
    port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 10.0, host: str = LOOPBACK
) -> None:
    """Return once something listens on the port; StackError (naming the process and its
    log) if the process exits first or the timeout passes."""
    if host == "0.0.0.0":
        host = LOOPBACK
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"{_name(proc)} exited with {proc.returncode} (log {log}):\n{_tail(log)}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise StackError(f"{_name(proc)}: nothing listens on {host}:{port} after {timeout:g} s (log {log})")


def _ready(proc: subprocess.Popen[bytes], wait: Callable[[], None]) -> subprocess.Popen[bytes]:
    """``proc`` once ``wait`` returns; stopped again if it fails or is interrupted (Ctrl-C
    while starting), so that no part outlives a start that did not finish."""
    try:
        wait()
    except BaseException:
        stop_process(proc)
        raise
    return proc


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20.0) -> None:
    """Return once GET ``url`` answers 200; StackError if the process exits first or the
    timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"{_name(proc)} exited with {proc.returncode} (log {log}):\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.05)
    raise StackError(f"{_name(proc)}: {url} did not answer 200 within {timeout:g} s (log {log})")


def ensure_free(port: int, setting: str) -> None:
    """StackError when something already listens on the loopback port: the part would
    fail to bind, and a check for it answering would find the other process instead."""
    with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=0.5):
        raise StackError(f"port {port} is in use: stop what listens there, or set {setting}")


def alive(pid: int) -> bool:
    """True while a process with this PID exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmdline(pid: int) -> str:
    """The process's command line, or "" when it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _kill(pid: int) -> None:
    """SIGKILL a process and, when it leads a process group of its own (every part does:
    see spawn), its workers with it; never the group of whoever called."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)


def stop_pid(pid: int, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Signal one process by PID and wait until it is gone; SIGKILL if it takes too long.

    Not our child (``authsvc stack --stop``): poll until the PID disappears.
    """
    try:
        os.kill(pid, signal.SIGCONT)  # a paused process cannot act on SIGTERM
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.05)
    _kill(pid)


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Stop a child we started, by its PID, and reap it; SIGKILL if it takes too long."""
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGCONT)
        os.kill(proc.pid, sig)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _kill(proc.pid)
        proc.wait(timeout)
    except ProcessLookupError:
        pass


def spawn(args: list[str], log: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a part with its output appended to ``log``."""
    with log.open("ab") as out:
        # A session of its own: Ctrl-C reaches only the stack, which stops each part in
        # order (nginx first, Redis last) instead of all of them dying at once.
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def start_redis(port: int, data_dir: Path, log: Path, persist: bool = True) -> subprocess.Popen[bytes]:
    """redis-server on the loopback port, its data in ``data_dir`` (an RDB snapshot on
    shutdown when ``persist``); returns once it accepts connections."""
    binary = find_binary("redis-server")
    ensure_free(port, "CANWATCH_STACK_REDIS_PORT")
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [binary, "--port", str(port), "--bind", LOOPBACK, "--dir", str(data_dir)]
    args += ["--daemonize", "no", "--appendonly", "no", "--loglevel", "warning"]
    if not persist:
        args += ["--save", ""]
    proc = spawn(args, log)
    return _ready(proc, lambda: wait_port(port, proc, log))


def start_authsvc(
    port: int,
    env: Mapping[str, str],
    workers: int,
    log: Path,
    host: str = LOOPBACK,
    prefix: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """``python -m authsvc serve`` on the port of ``host`` (loopback) with this
    environment, run through ``prefix`` (the network tests' `ip netns exec NS`); returns
    once /healthz answers."""
    ensure_free(port, "CANWATCH_STACK_API_PORT")
    args = [*prefix, sys.executable, "-m", "authsvc", "serve", "--host", host, "--port", str(port)]
    proc = spawn([*args, "--workers", str(workers)], log, env)
    return _ready(proc, lambda: wait_http(f"http://{host}:{port}/healthz", proc, log, timeout=30))


def start_nginx(
    prefix: Path,
    port: int,
    origin_port: int | None = None,
    host: str = LOOPBACK,
    tls_port: int = 0,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """nginx on a rendered prefix (see render.render), checked with ``nginx -t``
    first; returns once the public ports (and the demo origin's, if given) accept
    connections."""
    binary = find_binary("nginx")
    ensure_free(port, "CANWATCH_EDGE_PORT")
    if tls_port:
        ensure_free(tls_port, "CANWATCH_EDGE_TLS_PORT")
    if origin_port is not None:
        ensure_free(origin_port, "CANWATCH_STACK_ORIGIN_PORT")
    render.check(binary, prefix)
    log = prefix / "stderr.log"
    proc = spawn(render.command(binary, prefix), log, env)

    def listening() -> None:
        wait_port(port, proc, prefix / "error.log", host=host)
        if tls_port:
            wait_port(tls_port, proc, prefix / "error.log", host=host)
        if origin_port is not None:
            wait_port(origin_port, proc, prefix / "error.log")

    return _ready(proc, listening)
