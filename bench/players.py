"""`make bench-gate`, many-players model: every gate mode on a request stream of many
players, against a plain nginx reverse proxy to the same origin.

PLAYERS distinct (user, stream) pairs, each active, each holding its own lease cookie as
a player would, are fetched in turn by wrk (bench/players.lua): each pair comes back
every PLAYERS / rate seconds (about once a second at the default 8,000 and this machine's
rates). Modes, interleaved over the rounds in one run:
- plain:   a plain nginx reverse proxy to the origin (no gate, the standard combined
           access log; the stack's proxy buffers and upstream keepalive, so that the
           reference is as fast as proxying gets here)
- ungated: the stack's own nginx, /open/ (the same proxying, no gate)
- exact:   the gate, every fetch decided by authsvc (one of its own over loopback TCP,
           without lease tokens, as an exact-mode deployment runs it)
- token:   the gate with lease tokens checked in nginx (Lua); the cookies were handed out
           by authsvc before the run, so this is the steady state between refreshes
- exact_uds: the same as exact, with nginx asking an authsvc on a unix socket beside it
           (`authsvc serve --uds`)
- token_free: the same with the check made free (nginx checks the cookie's shape, the Lua check
           is not called): what the token path costs besides the check itself
Every run must answer 2xx only, with at least the segment's size per response, and a
sample of pairs is checked for the segment's very bytes before each run. Prints req/s,
p50, p99, the ratio to the plain proxy (of the medians, and the median of each round's)
and the Redis commands per fetch (INFO commandstats, which counts the commands inside the
Lua scripts too). A measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from gate import reload, workers

from canwatch_edge.settings import EdgeSettings
from canwatch_stack.procs import StackError, find_binary, free_port, spawn, stop_process, wait_port
from canwatch_stack.settings import StackSettings
from canwatch_stack.supervisor import Stack

HERE = Path(__file__).resolve().parent
SEGMENT = "demo/segment0.ts"
RESULT = re.compile(
    r"RESULT rps=(\S+) p50_ms=(\S+) p99_ms=(\S+) non2xx=(\d+) errors=(\d+) requests=(\d+) bytes=(\d+)"
)
TOKEN_S = 900  # longer than the whole run: tokens fetched once stay valid
SECRET = "bench-gate-secret-not-for-production"
# req/s as a share of the plain proxy's (the lower of the two readings)
TARGETS = {"token": 0.95, "ungated": 0.98, "exact": 0.5}
TOKEN_P99 = 1.2  # token mode's p99 at most this times the plain proxy's
Run = dict[str, float]

PLAIN_CONF = """
worker_processes auto;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
daemon off;
{user}
events {{ worker_connections 4096; }}
http {{
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    access_log {prefix}/access.log combined;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 100000;
    upstream origin {{ server 127.0.0.1:{origin_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffer_size 64k;
            proxy_buffers 8 64k;
            proxy_busy_buffers_size 128k;
            proxy_max_temp_file_size 0;
        }}
    }}
}}
"""


def http(
    url: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[bytes, dict[str, str]]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return bytes(answer.read()), dict(answer.headers.items())


def plain_proxy(run_dir: Path, origin_port: int) -> tuple[subprocess.Popen[bytes], str]:
    prefix = run_dir / "plain"
    prefix.mkdir(parents=True)
    port = free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(PLAIN_CONF.format(prefix=prefix, port=port, origin_port=origin_port, user=user))
    nginx = find_binary("nginx")
    proc = spawn(
        [nginx, "-p", f"{prefix}/", "-c", str(conf), "-e", str(prefix / "error.log")], prefix / "out.log"
    )
    wait_port(port, proc, prefix / "error.log")
    return proc, f"http://127.0.0.1:{port}"


@contextmanager
def players_stack(prefix: str) -> Iterator[tuple[Stack, str, Path, int]]:
    """A stack of its own with lease tokens (TOKEN_S) and leases that never expire (every
    mode must find them alive, including those that refresh none), and a plain nginx proxy
    to its origin: (the stack, the plain proxy's URL, the run's directory, the plain
    proxy's master PID); all stopped and removed after."""
    run_dir = Path(tempfile.mkdtemp(prefix=prefix))
    ports = StackSettings(api_port=free_port(), redis_port=free_port(), origin_port=free_port())
    edge = EdgeSettings(port=free_port(), tls_port=0, api_rate=1_000_000)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHSVC_", "CANWATCH_"))}
    env |= {"AUTHSVC_SECRET": SECRET, "AUTHSVC_LOG_LEVEL": "warning"}
    env |= {"AUTHSVC_LEASE_TTL_S": "0", "AUTHSVC_LEASE_TOKEN_S": str(TOKEN_S)}
    stack = Stack(run_dir, env, ports, edge, ungated=True, persist=False)
    plain: subprocess.Popen[bytes] | None = None
    try:
        stack.start()
        plain, plain_url = plain_proxy(run_dir, ports.origin_port)
        yield stack, plain_url, run_dir, plain.pid
    finally:
        if plain is not None:
            stop_process(plain)
        stack.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


def redis_commands(stack: Stack) -> int:
    cli = find_binary("redis-cli")
    out = subprocess.run(
        [cli, "-p", str(stack.ports.redis_port), "INFO", "commandstats"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout
    return sum(int(m.group(1)) for m in re.finditer(r"calls=(\d+)", out))


TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User and system CPU seconds of a process (/proc/PID/stat), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * TICK_S


def cpu_of_parts(stack: Stack, plain: int, authsvc: int | None = None) -> dict[str, float]:
    """CPU seconds so far of authsvc (the stack's, or the process ``authsvc``), Redis and
    nginx's workers: the stack's, which are the edge and the demo origin, and those of the
    plain proxy (master ``plain``), so that every mode counts its proxy and the origin."""
    return {
        "authsvc": cpu_s(authsvc or stack.procs["authsvc"].pid),
        "redis": cpu_s(stack.procs["redis"].pid),
        "nginx": sum(cpu_s(pid) for pid in workers(stack.procs["nginx"].pid) | workers(plain)),
    }


def make_players(stack: Stack, count: int) -> list[tuple[str, str, str]]:
    """(stream, user, lease token) for ``count`` active pairs; the token from the first
    gated fetch, as a player gets it."""
    base = stack.url

    def one(_: int) -> tuple[str, str, str]:
        user = json.loads(http(f"{base}/users/newId")[0])["userId"]
        stream = json.loads(http(f"{base}/streams/newId")[0])["streamId"]
        http(f"{base}/streams/{stream}/activate", "PATCH", {"x-userid": user})
        headers = http(f"{base}/watch/{stream}/{SEGMENT}", headers={"x-userid": user})[1]
        cookie = headers.get("Set-Cookie", "")
        token = cookie.split(";")[0].removeprefix("cw_lease=")
        if not token:
            raise RuntimeError(f"no lease token for a player: {headers}")
        return stream, user, token

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def wrk(url: str, pairs: Path, prefix: str, suffix: str, args: argparse.Namespace) -> Run:
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s"]
    command += ["-s", str(HERE / "players.lua"), url]
    env = {**os.environ, "PAIRS": str(pairs), "URL_PREFIX": prefix, "URL_SUFFIX": suffix}
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.seconds + 60)
    match = RESULT.search(out.stdout)
    if match is None:
        raise RuntimeError(f"wrk printed no RESULT line:\n{out.stdout}\n{out.stderr}")
    rps, p50, p99, non2xx, errors, requests, size = (float(v) for v in match.groups())
    return {"rps": rps, "p50": p50, "p99": p99, "bad": non2xx + errors, "requests": requests, "bytes": size}


def check_bytes(
    url_of: dict[str, str], mode: str, players: list[tuple[str, str, str]], segment: bytes
) -> None:
    """A sample of players gets the segment's very bytes in this mode, before it is measured."""
    for stream, user, token in players[:: max(1, len(players) // 5)]:
        url = url_of[mode].format(stream=stream)
        body, _ = http(url, headers={"x-userid": user, "Cookie": f"cw_lease={token}"})
        if body != segment:
            raise RuntimeError(f"{mode}: {url} did not answer the segment ({len(body)} bytes)")


@contextmanager
def exact_authsvc(stack: Stack, listen: Path | int) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A second authsvc on the stack's Redis and settings, but without lease tokens, as an
    exact-mode deployment runs it (the stack's issues a token on every decision), on the
    unix socket (`authsvc serve --uds`) or loopback port ``listen``: (its address for
    CANWATCH_EDGE_AUTHSVC, the process); stopped after."""
    env = {**stack.env, "AUTHSVC_LEASE_TOKEN_S": "0"}
    if isinstance(listen, Path):
        log, address, where = listen.with_suffix(".log"), f"unix:{listen}", ["--uds", str(listen)]
    else:
        log, address = stack.run_dir / f"authsvc-{listen}.log", f"127.0.0.1:{listen}"
        where = ["--host", "127.0.0.1", "--port", str(listen)]
    proc = spawn([sys.executable, "-m", "authsvc", "serve", *where], log, env)
    try:
        if isinstance(listen, int):
            wait_port(listen, proc, log, timeout=30)
        deadline = time.monotonic() + 30
        while isinstance(listen, Path) and not listen.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"authsvc at {address} did not start: see {log}")
            time.sleep(0.1)
        yield address, proc
    finally:
        stop_process(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--players", type=int, default=8000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--modes", default="plain,ungated,exact,exact_uds,token,token_free", help="comma-separated subset"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench-gate: wrk is not installed: run `apt-get install -y wrk`", file=sys.stderr)
        return 1
    print(
        f"many players: {args.players} (user, stream) pairs, wrk -t{args.threads} -c{args.connections} "
        f"-d{args.seconds}s per run, {args.rounds} rounds; {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f} at the start",
        flush=True,
    )
    try:
        with (
            players_stack("bench-players-") as (stack, plain_url, run_dir, plain),
            exact_authsvc(stack, free_port()) as exact,
            exact_authsvc(stack, run_dir / "authsvc.sock") as exact_uds,
        ):
            beside = {"exact": (exact[0], exact[1].pid), "exact_uds": (exact_uds[0], exact_uds[1].pid)}
            return measure(stack, (plain_url, plain), run_dir, args, beside)
    except (StackError, RuntimeError, OSError) as exc:
        print(f"bench-gate: {exc}", file=sys.stderr)
        return 1


def measure(
    stack: Stack,
    plain_proxy: tuple[str, int],
    run_dir: Path,
    args: argparse.Namespace,
    beside: dict[str, tuple[str, int]],
) -> int:
    """Every mode, interleaved, ``args.rounds`` times; the report's exit status.
    ``plain_proxy``: its URL and master PID; ``beside``: the modes that ask an authsvc of
    their own (exact_authsvc), its address and PID."""
    plain_url, plain = plain_proxy
    started = time.monotonic()
    players = make_players(stack, args.players)
    print(f"  {len(players)} players activated and holding a token in {time.monotonic() - started:.0f} s")
    pairs = run_dir / "pairs.txt"
    pairs.write_text("".join(f"{s} {u} {t}\n" for s, u, t in players))
    segment, _ = http(f"{plain_url}/{SEGMENT}")
    base = stack.url
    # mode -> (token s, base URL, path prefix, path suffix)
    plan = {
        "plain": (0.0, plain_url, "", f"/{SEGMENT}"),
        "ungated": (0.0, base, "", f"/open/{SEGMENT}"),
        "exact": (0.0, base, "/watch/", f"/{SEGMENT}"),
        "exact_uds": (0.0, base, "/watch/", f"/{SEGMENT}"),
        "token": (TOKEN_S, base, "/watch/", f"/{SEGMENT}"),
        "token_free": (TOKEN_S, base, "/watch/", f"/{SEGMENT}"),
    }
    wanted = set(args.modes.split(","))
    plan = {mode: how for mode, how in plan.items() if mode in wanted or mode == "plain"}
    url_of = {m: (u + (p + "{stream}" if p else "") + x) for m, (_, u, p, x) in plan.items()}
    runs: dict[str, list[Run]] = {mode: [] for mode in plan}
    for n in range(args.rounds):
        for mode, (token_s, url, prefix, suffix) in plan.items():
            address, authsvc = beside.get(mode, (None, None))
            reload(stack, token_s, mode == "token_free", address)
            check_bytes(url_of, mode, players, segment)
            before, cpu_before = redis_commands(stack), cpu_of_parts(stack, plain, authsvc)
            result = wrk(url, pairs, prefix, suffix, args)
            after, cpu_after = redis_commands(stack), cpu_of_parts(stack, plain, authsvc)
            result["redis_per_fetch"] = (after - before) / max(1.0, result["requests"])
            for part in cpu_after:
                spent = cpu_after[part] - cpu_before[part]
                result[f"{part}_us"] = spent * 1e6 / max(1.0, result["requests"])
            if result["bytes"] / max(1.0, result["requests"]) < len(segment):
                result["bad"] += result["requests"]  # something smaller than the segment came back
            runs[mode].append(result)
            print(
                f"round {n + 1}  {mode:10} {result['rps']:8.0f} req/s  p50 {result['p50']:6.2f} ms  "
                f"p99 {result['p99']:6.2f} ms  redis/fetch {result['redis_per_fetch']:.3f}  "
                f"CPU us/fetch: nginx {result['nginx_us']:5.1f} authsvc {result['authsvc_us']:5.1f} "
                f"redis {result['redis_us']:4.1f}  bad {result['bad']:.0f}",
                flush=True,
            )
    return report(runs, args.players)


def report(runs: dict[str, list[Run]], players: int) -> int:
    keys = ("rps", "p50", "p99", "redis_per_fetch", "nginx_us", "authsvc_us", "redis_us")
    medians = {mode: {k: statistics.median(r[k] for r in rs) for k in keys} for mode, rs in runs.items()}
    plain = medians["plain"]
    ungated = medians.get("ungated")
    print(f"\nmedian per mode ({players} players; ratios to the plain proxy, and to ungated)")
    print(
        "  mode          req/s   ratio  ungated   p50 ms   p99 ms  p99 ratio  redis cmds/fetch"
        "  a pair comes back every"
    )
    for mode, m in medians.items():
        to_ungated = f"{m['rps'] / ungated['rps']:6.2f}x" if ungated else "      -"
        print(
            f"  {mode:10} {m['rps']:8.0f}  {m['rps'] / plain['rps']:5.2f}x  {to_ungated}  {m['p50']:7.2f}"
            f"  {m['p99']:7.2f}  {m['p99'] / plain['p99']:8.2f}x  {m['redis_per_fetch']:16.3f}"
            f"  {players / m['rps']:6.2f} s"
        )
    print("\nCPU per fetch (us, from /proc; median of the rounds; nginx: the proxy or edge, and the origin)")
    for mode, m in medians.items():
        print(
            f"  {mode:10} nginx {m['nginx_us']:6.1f}  authsvc {m['authsvc_us']:6.1f}"
            f"  redis {m['redis_us']:5.1f}"
        )
    # The machine's speed drifts within a run (other tenants): each round's ratio compares
    # runs seconds apart, the medians above runs minutes apart. Both are printed.
    print("\nreq/s as a share of the plain proxy's in the same round")
    per_round: dict[str, float] = {}
    for mode, rs in runs.items():
        shares = [r["rps"] / p["rps"] for r, p in zip(rs, runs["plain"], strict=True)]
        per_round[mode] = statistics.median(shares)
        print(f"  {mode:10} {' '.join(f'{s:5.2f}' for s in shares)}   median {per_round[mode]:.2f}x")
    # A throughput target is met only when both ways of reading the run agree.
    checks = [
        (f"{mode} >= {share:.2f}x plain", min(medians[mode]["rps"] / plain["rps"], per_round[mode]) >= share)
        for mode, share in TARGETS.items()
        if mode in medians
    ]
    if "token" in medians:
        checks.append(
            (f"token p99 <= {TOKEN_P99:g}x plain's", medians["token"]["p99"] <= TOKEN_P99 * plain["p99"])
        )
    if "token" in medians and "exact" in medians:
        checks.append(
            (
                "token Redis cmds/fetch <= 1/5 of exact's",
                medians["token"]["redis_per_fetch"] <= medians["exact"]["redis_per_fetch"] / 5,
            )
        )
    for name, met in checks:
        print(f"  target {name}: {'met' if met else 'MISSED'}")
    bad = sum(r["bad"] for rs in runs.values() for r in rs)
    if bad:
        print(f"  {bad:.0f} responses were not 2xx, failed or were short: these figures are not valid")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
