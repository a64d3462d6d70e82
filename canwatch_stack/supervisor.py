"""The whole stack on one command: redis-server, authsvc and nginx with the demo origin.

Redis is one redis-server, or with ``CANWATCH_STACK_REDIS`` a local Cluster (3 primaries,
3 replicas) or Sentinel set (primary, replica, 3 sentinels) from ``topology``; authsvc is
one process or ``CANWATCH_STACK_API_REPLICAS`` of them behind nginx's upstream. The edge is
rendered from the ``CANWATCH_EDGE_*`` settings, pointed at the stack's own replicas.

``authsvc stack`` (what ``make run`` calls) starts each part, waits until it answers,
prints a quick start and stops everything by PID on Ctrl-C or SIGTERM. The PIDs go to
``.run/pids/`` so that ``authsvc stack --stop`` (``make stop``) can stop a stack run
elsewhere. The end-to-end tests and the gate benchmark start the same ``Stack`` on free
ports in a temp dir.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType

from authsvc.leasetoken import lease_token_key
from authsvc.settings import PublicSettings, Settings, SettingsError
from canwatch_edge import render, tls
from canwatch_edge.settings import EdgeSettings

from .procs import (
    LOOPBACK,
    StackError,
    alive,
    cmdline,
    find_binary,
    start_authsvc,
    start_nginx,
    start_redis,
    stop_pid,
    stop_process,
)
from .settings import StackSettings
from .topology import LocalCluster, LocalSentinel

# What each part's command line contains: a PID from a pid file is only signalled when
# it still belongs to that part (PIDs are reused).
MARKERS = {"redis": "redis-server", "authsvc": "authsvc", "nginx": "nginx", "stack": "authsvc"}


def replica_name(n: int) -> str:
    """The name of the n-th authsvc replica (from 1): ``authsvc``, then ``authsvc-2``..."""
    return "authsvc" if n == 1 else f"authsvc-{n}"


def secret_for(run_dir: Path) -> str:
    """The id secret kept in ``run_dir/secret``, made once: ids stay valid across restarts."""
    path = run_dir / "secret"
    if path.exists():
        return path.read_text().strip()
    run_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return value


@dataclass
class Stack:
    """Redis, authsvc and nginx (with the demo origin) under one run directory.

    ``env`` is authsvc's whole environment; ``AUTHSVC_REDIS_URL`` in it means an external
    Redis (none is started). ``edge`` is the edge's settings (its authsvc upstreams are
    replaced by the stack's replicas). ``ungated`` adds the benchmark's /open/ baseline
    location.
    """

    run_dir: Path
    env: dict[str, str]
    ports: StackSettings
    edge_settings: EdgeSettings = field(default_factory=EdgeSettings)
    ungated: bool = False
    persist: bool = True
    # Where authsvc runs: loopback here, or a test host of the network tests (its
    # address, and the `ip netns exec NS` that starts it there).
    api_host: str = LOOPBACK
    api_prefix: tuple[str, ...] = ()
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.run_dir = self.run_dir.resolve()
        self.env = dict(self.env)  # what is added below is the stack's, not the caller's
        self.own_redis = "AUTHSVC_REDIS_URL" not in self.env
        self.topology: LocalCluster | LocalSentinel | None = None
        self.api_ports = self.ports.api_ports((self.edge_settings.port, self.edge_settings.tls_port))
        self.edge_settings = replace(
            self.edge_settings, authsvc=tuple(f"{self.api_host}:{port}" for port in self.api_ports)
        )
        if self.own_redis:
            # A Cluster's or Sentinel set's URL replaces this once their ports are known.
            self.env["AUTHSVC_REDIS_URL"] = f"redis://{LOOPBACK}:{self.ports.redis_port}/0"
        if not self.env.get("AUTHSVC_SECRET") and self.env.get("AUTHSVC_ID_CHECK", "mac") == "mac":
            self.env["AUTHSVC_SECRET"] = secret_for(self.run_dir)
        self.settings = Settings.from_env(self.env)  # SettingsError names a bad variable
        self.prefix = self.run_dir / "nginx"
        demo_root = self.run_dir / "origin"
        # TLS without a certificate of the operator's: one from a local CA kept in the run
        # dir (clients trust tls/ca.pem).
        self.local_tls: tls.LocalTLS | None = None
        edge_settings = self.edge_settings
        if edge_settings.tls_port and not edge_settings.tls_cert:
            self.local_tls = tls.local_tls(self.run_dir / "tls", render.tls_hosts(edge_settings.host))
        own = (str(self.local_tls.cert), str(self.local_tls.key)) if self.local_tls else None
        self.edge = render.EdgeConfig(
            PublicSettings.of(self.settings),
            edge_settings,
            self.prefix,
            demo_root,
            self.ports.origin_port,
            own,
            self.ungated,
        )

    @property
    def url(self) -> str:
        """The public base URL (nginx)."""
        host = LOOPBACK if self.edge_settings.host in ("0.0.0.0", "") else self.edge_settings.host
        return f"http://{host}:{self.edge_settings.port}"

    @property
    def tls_url(self) -> str:
        """The public HTTPS base URL (nginx's TLS port), by the name its certificate has."""
        host = (
            "localhost" if self.edge_settings.host in ("0.0.0.0", "", LOOPBACK) else self.edge_settings.host
        )
        return f"https://{host}:{self.edge_settings.tls_port}"

    @property
    def api_url(self) -> str:
        """authsvc itself (the first replica), behind nginx."""
        return f"http://{self.api_host}:{self.api_ports[0]}"

    @property
    def api_urls(self) -> list[str]:
        """Every authsvc replica, behind nginx."""
        return [f"http://{self.api_host}:{port}" for port in self.api_ports]

    def start(self) -> None:
        """Start every part in order, each answering before the next starts."""
        binaries = ["nginx"]
        if self.own_redis:
            binaries.append("redis-server")
            if self.ports.redis == "cluster":
                binaries.append("redis-cli")  # `redis-cli --cluster create` joins the nodes
        for binary in binaries:
            find_binary(binary)
        (self.run_dir / "pids").mkdir(parents=True, exist_ok=True)
        try:
            if self.own_redis:
                self.start_redis()
            self.start_authsvc()
            self.start_nginx()
        except BaseException:
            self.stop()  # the parts already up must not outlive a failed start
            raise

    def _started(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        self.procs[name] = proc
        (self.run_dir / "pids" / f"{name}.pid").write_text(f"{proc.pid}\n")

    def _stopped(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            stop_process(proc)
        (self.run_dir / "pids" / f"{name}.pid").unlink(missing_ok=True)

    def start_redis(self) -> None:
        """Start (or start again, on the same port and data) the local redis-server; or,
        with ``stack_redis`` cluster or sentinel, a new Cluster or Sentinel set (no
        persistence) on free ports, and point authsvc at it."""
        if self.ports.redis == "single":
            log = self.run_dir / "redis.log"
            self._started(
                "redis", start_redis(self.ports.redis_port, self.run_dir / "redis", log, self.persist)
            )
            return
        workdir = self.run_dir / f"redis-{self.ports.redis}"
        # A Cluster node's nodes.conf names the ports of the last run: start afresh.
        shutil.rmtree(workdir, ignore_errors=True)
        topology = LocalCluster(workdir) if self.ports.redis == "cluster" else LocalSentinel(workdir)
        self.topology = topology
        topology.start()
        for port, proc in topology.nodes.procs.items():
            (self.run_dir / "pids" / f"redis-{port}.pid").write_text(f"{proc.pid}\n")
        self.env["AUTHSVC_REDIS_URL"] = topology.url
        self.settings = Settings.from_env(self.env)

    def stop_redis(self) -> None:
        """Stop redis-server (it saves its data first when ``persist``), or every node of
        the Cluster or Sentinel set."""
        self._stopped("redis")
        if self.topology is not None:
            self.topology.stop()
            self.topology = None
            for path in (self.run_dir / "pids").glob("redis-*.pid"):
                path.unlink()

    @property
    def replicas(self) -> list[str]:
        """The names of the authsvc replicas (``authsvc``, ``authsvc-2``, ...), one per
        port of ``api_ports``; also their pid and log file names."""
        return [replica_name(n) for n in range(1, len(self.api_ports) + 1)]

    def start_authsvc(self) -> None:
        """Start every authsvc replica with ``env``, each on its API port."""
        for name, port in zip(self.replicas, self.api_ports, strict=True):
            log = self.run_dir / f"{name}.log"
            proc = start_authsvc(port, self.env, self.ports.workers, log, self.api_host, self.api_prefix)
            self._started(name, proc)

    def stop_authsvc(self) -> None:
        """Stop every authsvc replica; nginx stays up and answers for them."""
        for name in self.replicas:
            self._stopped(name)

    def kill_replica(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (SIGKILL: no goodbye) to one replica and its workers, and reap it."""
        proc = self.procs.pop(name)
        # Its workers too: every part leads a process group of its own (procs.spawn).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(10)
        (self.run_dir / "pids" / f"{name}.pid").unlink(missing_ok=True)

    def start_nginx(self) -> None:
        """Render the edge (and the demo origin's files), check and start nginx."""
        if self.edge.serves_demo and self.edge.demo_root is not None:
            render.write_demo_origin(self.edge.demo_root)
        render.render(self.edge)
        demo_port = self.ports.origin_port if self.edge.serves_demo else None
        env = None
        if self.settings.lease_token_s:
            debian = self.edge_settings.nginx == "debian"
            if debian and not all(Path(module).exists() for module in render.LUA_MODULES):
                raise StackError(
                    "AUTHSVC_LEASE_TOKEN_S needs nginx's Lua module: run `apt-get install -y "
                    "libnginx-mod-http-ndk libnginx-mod-http-lua lua-resty-core lua-resty-lrucache`"
                )
            assert self.settings.secret is not None  # Settings refuses tokens without one
            env = {**os.environ, render.LEASE_TOKEN_KEY_ENV: lease_token_key(self.settings.secret)}
        edge = self.edge_settings
        started = start_nginx(self.prefix, edge.port, demo_port, edge.host, edge.tls_port, env=env)
        self._started("nginx", started)

    def stop(self) -> None:
        """Stop what was started, by PID, front to back."""
        for name in ("nginx", *self.replicas):
            self._stopped(name)
        self.stop_redis()

    def dead(self) -> list[str]:
        """Parts that exited on their own."""
        dead = [name for name, proc in self.procs.items() if proc.poll() is not None]
        if self.topology is not None:
            dead += [f"redis-{port}" for port, p in self.topology.nodes.procs.items() if p.poll() is not None]
        return dead


def stop_running(run_dir: Path) -> int:
    """``authsvc stack --stop``: stop the stack recorded under ``run_dir`` by its PIDs."""
    pids = run_dir / "pids"
    stopped = 0
    # The supervising `authsvc stack` first: it stops its parts in order itself; then
    # whatever it left, front to back (every replica, every Redis process).
    names = ["stack", "nginx"]
    for kind in ("authsvc", "redis"):
        names += sorted(p.stem for p in pids.glob(f"{kind}*.pid"))
    for name in names:
        path = pids / f"{name}.pid"
        if not path.exists():
            continue
        try:
            pid = int(path.read_text().strip())
        except ValueError:
            pid = 0
        if pid > 0 and alive(pid) and MARKERS[name.split("-")[0]] in cmdline(pid):
            stop_pid(pid, timeout=20 if name == "stack" else 10)
            stopped += 1
        path.unlink(missing_ok=True)
    print("stack stopped" if stopped else f"no stack running under {run_dir}")
    return 0


class _Stop(Exception):
    """Ctrl-C or SIGTERM, turned into an exception so the stack unwinds and stops its parts."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    # Once: a second Ctrl-C must not interrupt the stopping that this one starts.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise _Stop


def quick_start(stack: Stack) -> str:
    """What to try first, with this stack's ports."""
    s = stack.settings
    base = stack.url
    tokens = f"{s.lease_token_s:g} s" if s.lease_token_s else "off"
    ttl = f"{s.lease_ttl_s:g} s" if s.lease_ttl_s else "never expires"
    head = [
        f"CanWatch is up on {base}  (identity {s.identity}, limit {s.max_streams}, lease {ttl}, "
        f"lease tokens {tokens}, fail-open {'on' if s.fail_open else 'off'})",
        f"  authsvc {' '.join(stack.api_urls)}  redis {s.redis_url}  origin {stack.edge.origin_url}",
        f"  logs: {stack.run_dir}/authsvc*.log, {stack.prefix}/access.log, {stack.prefix}/error.log",
        f"  the player page: {base}/player/",
    ]
    if stack.edge_settings.tls_port:
        ca = f" (trust {stack.local_tls.ca})" if stack.local_tls else ""
        head.append(f"  TLS and HTTP/2: {stack.tls_url}{ca}")
    head.append("")
    # The demo origin's playlist, or a path the platform's own origin serves.
    path = "P=demo/playlist.m3u8" if stack.edge.serves_demo else "P=<a path on your origin>"
    if s.identity == "jwt" and s.jwt_secret:
        claims = '{"sub": sys.argv[1], "exp": int(time.time()) + 3600' + (
            f', "aud": "{s.jwt_audience}"}}' if s.jwt_audience else "}"
        )
        mint = [
            f"  T=$({sys.executable} -c 'import jwt, os, sys, time; "
            f'print(jwt.encode({claims}, os.environ["AUTHSVC_JWT_SECRET"]))\' $U)'
        ]
    else:
        mint = ["  T=<a token for sub $U, signed by the key that matches AUTHSVC_JWT_PUBLIC_KEY>"]
    if s.identity == "jwt":
        body = [
            "jwt mode: a JWT whose sub is a user id, as `Authorization: Bearer`, cookie cw_token or ?token=",
            f"  B={base}; {path}",
            "  U=$(curl -s $B/users/newId | cut -d'\"' -f4); S=$(curl -s $B/streams/newId | cut -d'\"' -f4)",
            *mint,
            '  curl -s -X PATCH -H "Authorization: Bearer $T" $B/streams/$S/activate',
            '  curl -s "$B/watch/$S/$P?token=$T"               # 200: through the gate',
            '  curl -s -H "x-userid: $U" "$B/watch/$S/$P"      # 401: x-userid is not trusted',
        ]
    else:
        body = [
            "Try it (one user, four streams):",
            f"  B={base}; {path}",
            "  U=$(curl -s $B/users/newId | cut -d'\"' -f4)",
            "  for i in 1 2 3 4; do eval S$i=$(curl -s $B/streams/newId | cut -d'\"' -f4); done",
            '  curl -s -X PATCH -H "x-userid: $U" $B/streams/$S1/activate',
            '  curl -s "$B/watch/$S1/$P?userid=$U"                         # 200: through the gate',
            '  ffplay "$B/watch/$S1/$P?userid=$U"                          # watch it (Debian: ffmpeg)',
            '  curl -s -X PATCH -H "x-userid: $U" $B/streams/$S2/activate',
            '  curl -s -X PATCH -H "x-userid: $U" $B/streams/$S3/activate',
            '  curl -s -X PATCH -H "x-userid: $U" $B/streams/$S4/activate   # 403 Stream Limit Reached',
            '  curl -s "$B/watch/$S4/$P?userid=$U"                         # 403 Stream Not Active',
            '  curl -s -X PATCH -H "x-userid: $U" $B/streams/$S1/deactivate',
        ]
    return "\n".join([*head, *body, "", "Ctrl-C (or `authsvc stack --stop`) stops everything."])


def run(run_dir: Path) -> int:
    """``authsvc stack``: start the stack from the environment and keep it
    running until Ctrl-C or SIGTERM; exit 1 if a part fails."""
    run_dir = run_dir.resolve()
    pid_file = run_dir / "pids" / "stack.pid"
    if pid_file.exists():
        old = int(pid_file.read_text().strip() or 0)
        if old > 0 and alive(old) and MARKERS["stack"] in cmdline(old):
            print(f"authsvc: a stack is running (pid {old}); `authsvc stack --stop` first", file=sys.stderr)
            return 1
    try:
        stack = Stack(run_dir, dict(os.environ), StackSettings.from_env(), EdgeSettings.from_env())
    except SettingsError as exc:
        print(f"authsvc: {exc}", file=sys.stderr)
        return 2
    # SIGINT too, explicitly: a shell starts background jobs with it ignored.
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{os.getpid()}\n")
    try:
        stack.start()
        print(quick_start(stack), flush=True)
        while not (dead := stack.dead()):
            time.sleep(0.5)
        print(f"authsvc: {', '.join(dead)} exited; stopping the stack (logs in {run_dir})", file=sys.stderr)
        return 1
    except (StackError, SettingsError, RuntimeError) as exc:
        print(f"authsvc: {exc}", file=sys.stderr)
        return 1
    except _Stop:
        print("\nstopping...", file=sys.stderr)
        return 0
    finally:
        # A second Ctrl-C or SIGTERM must not interrupt the stopping itself.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stack.stop()
        pid_file.unlink(missing_ok=True)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
