"""`make bench-links`: throughput with a slow link between authsvc and Redis.

Four stacks of their own (Redis, authsvc with one worker, nginx), each with its own
redis-server: one talking to Redis directly, three through tests/support/delayproxy.py
with a one-way delay of 0 ms (the proxy's own cost), 2 ms and 20 ms on every chunk in
each direction (so 4 ms and 40 ms more per round trip). Measured with wrk, interleaved
over the rounds:

- cycle: the API cycle (activate, heartbeat, deactivate over many users; bench/links.lua)
  straight to authsvc, as `make bench-api` measures it;
- gate: the exact gate through the edge, many players each fetching the ~100 KB segment
  in turn, as `make bench-gate`'s many-players part measures it;

each at two client concurrencies: 50 connections as the other benchmarks, and more (200
for the cycle, 100 for the gate), enough to keep 40 ms round trips busy: a closed-loop
client with C connections cannot pass C / latency requests a second, whatever the server
does. Every answer is checked (bench/links.lua) and counted by status: a 200 whose body
says "ok" for the cycle, a 200 of the segment's exact size for the gate (and a sample of
players gets the segment's very bytes before each run). Prints req/s, p50, p99 per run, and
per workload the medians against the direct link, with authsvc's and the proxy's CPU per
request and the Redis connections authsvc opened. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from players import SEGMENT, cpu_s, http

from canwatch_edge.settings import EdgeSettings
from canwatch_stack.procs import StackError, find_binary, free_port, start_redis, stop_process
from canwatch_stack.settings import StackSettings
from canwatch_stack.supervisor import Stack

HERE = Path(__file__).resolve().parent
PROXY = HERE.parent / "tests" / "support" / "delayproxy.py"
SECRET = "bench-links-secret-not-for-production"
RESULT = re.compile(r"RESULT rps=(\S+) p50_ms=(\S+) p99_ms=(\S+) non2xx=(\d+) errors=(\d+) requests=(\d+)")
LINKS: dict[str, float | None] = {"direct": None, "proxy 0 ms": 0.0, "2 ms": 2.0, "20 ms": 20.0}
Run = dict[str, float]


@dataclass
class Link:
    """One stack whose authsvc reaches its own Redis through a link of ``delay_ms`` one
    way (None: directly), and the delay proxy that makes it."""

    name: str
    delay_ms: float | None
    stack: Stack
    redis_port: int
    proxy: subprocess.Popen[str] | None


def tree(pid: int) -> list[int]:
    """A process and all its descendants."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [pid]
    return [pid, *(p for child in children for p in tree(int(child)))]


def cpu_of(pid: int) -> float:
    return sum(cpu_s(p) for p in tree(pid))


def start_proxy(target: int, delay_ms: float, log: Path) -> tuple[subprocess.Popen[str], int]:
    command = [sys.executable, str(PROXY), "--target", f"127.0.0.1:{target}", "--delay-ms", str(delay_ms)]
    with log.open("w") as errors:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening "):
        stop_process(proc)  # type: ignore[arg-type]
        raise RuntimeError(f"the delay proxy did not start: {line!r}, see {log}")
    return proc, int(line.split()[1])


@contextmanager
def links(run_dir: Path) -> Iterator[list[Link]]:
    """Every link's stack, started; all stopped by PID after."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHSVC_", "CANWATCH_"))}
    env |= {"AUTHSVC_SECRET": SECRET, "AUTHSVC_LOG_LEVEL": "warning", "AUTHSVC_LEASE_TTL_S": "0"}
    with ExitStack() as cleanup:
        made: list[Link] = []
        for name, delay in LINKS.items():
            work = run_dir / name.replace(" ", "-")
            work.mkdir(parents=True)
            redis_port = free_port()
            redis = start_redis(redis_port, work / "redis", work / "redis.log", persist=False)
            cleanup.callback(stop_process, redis)
            proxy, port = None, redis_port
            if delay is not None:
                proxy, port = start_proxy(redis_port, delay, work / "proxy.log")
                cleanup.callback(stop_process, proxy)
            ports = StackSettings(api_port=free_port(), redis_port=free_port(), origin_port=free_port())
            edge = EdgeSettings(port=free_port(), tls_port=0, api_rate=1_000_000)
            stack_env = env | {"AUTHSVC_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
            stack = Stack(work / "stack", stack_env, ports, edge, persist=False)
            cleanup.callback(stack.stop)
            stack.start()
            made.append(Link(name, delay, stack, redis_port, proxy))
        yield made


def issue(base: str, count: int) -> list[tuple[str, str]]:
    """``count`` (stream, user) pairs of issued ids (valid on every stack: one secret)."""

    def one(_: int) -> tuple[str, str]:
        user = json.loads(http(f"{base}/users/newId")[0])["userId"]
        stream = json.loads(http(f"{base}/streams/newId")[0])["streamId"]
        return stream, user

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def activate(base: str, pairs: list[tuple[str, str]]) -> int:
    """Activate every pair; the 503s met on the way (each retried, up to 10 times, 0.2 s
    apart: on this shared machine a part is sometimes held off the CPU past the Redis
    timeout)."""

    def one(pair: tuple[str, str]) -> int:
        stream, user = pair
        for attempt in range(10):
            try:
                http(f"{base}/streams/{stream}/activate", "PATCH", {"x-userid": user})
                return attempt
            except urllib.error.HTTPError as exc:
                if exc.code != 503:
                    raise RuntimeError(f"activation answered {exc.code}: {exc.read()!r}") from None
            time.sleep(0.2)
        raise RuntimeError(f"activation answered 503 ten times on {base}")

    with ThreadPoolExecutor(16) as pool:
        return sum(pool.map(one, pairs))


def redis_clients(port: int) -> int:
    out = subprocess.run(
        [find_binary("redis-cli"), "-p", str(port), "INFO", "clients"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout
    match = re.search(r"connected_clients:(\d+)", out)
    return int(match.group(1)) - 1 if match else -1  # less redis-cli's own


def wrk(url: str, env: dict[str, str], connections: int, args: argparse.Namespace) -> Run:
    command = ["wrk", f"-t{args.threads}", f"-c{connections}", f"-d{args.seconds}s", "--timeout", "10s"]
    command += ["-s", str(HERE / "links.lua")]
    out = subprocess.run(
        [*command, url], capture_output=True, text=True, env=os.environ | env, timeout=args.seconds + 60
    )
    match = RESULT.search(out.stdout)
    if match is None:
        raise RuntimeError(f"wrk printed no RESULT line:\n{out.stdout}\n{out.stderr}")
    rps, p50, p99, non2xx, errors, requests = (float(v) for v in match.groups())
    run = {"rps": rps, "p50": p50, "p99": p99, "non2xx": non2xx, "errors": errors, "requests": requests}
    tail = out.stdout.split("RESULT", 1)[1]
    run["wrong"] = float(re.search(r" bad=(\d+)", tail).group(1))  # type: ignore[union-attr]  # a 200 with a wrong body
    statuses = re.search(r" statuses=(\S*)", tail).group(1)  # type: ignore[union-attr]
    for status, count in (item.split(":") for item in statuses.split(",") if item):
        run[f"status_{status}"] = float(count)
    run["bad"] = non2xx + errors + run["wrong"]
    return run


def statuses(run: Run) -> str:
    """The answers by status, socket errors and 200s with a wrong body."""
    counts = [
        f"{k.removeprefix('status_')}: {v:.0f}" for k, v in sorted(run.items()) if k.startswith("status_")
    ]
    return f"{', '.join(counts)}; socket errors {run['errors']:.0f}, wrong body {run['wrong']:.0f}"


def measure(made: list[Link], run_dir: Path, args: argparse.Namespace) -> int:
    first = made[0].stack
    pairs = issue(first.url, args.cycle_users * 2 + args.players)
    cycle, held, players = (
        pairs[: args.cycle_users],
        pairs[args.cycle_users : args.cycle_users * 2],
        pairs[args.cycle_users * 2 :],
    )
    cycle_file, gate_file = run_dir / "cycle.txt", run_dir / "players.txt"
    cycle_file.write_text(
        "".join(f"a {s} {u}\n" for s, u in cycle) + "".join(f"h {s} {u}\n" for s, u in held)
    )
    gate_file.write_text("".join(f"g {s} {u}\n" for s, u in players))
    for link in made:
        retried = activate(link.stack.url, held + players)
        if retried:
            print(f"  {link.name}: {retried} of the set-up's activations answered 503 first (retried)")
    segment = http(f"http://127.0.0.1:{first.ports.origin_port}/{SEGMENT}")[0]
    print(
        f"  {len(pairs)} users issued; {len(held)} held and {len(players)} players active on every link",
        flush=True,
    )
    workloads = [("cycle", c) for c in args.cycle_connections] + [("gate", c) for c in args.gate_connections]
    runs: dict[tuple[str, int, str], list[Run]] = {}
    # Each link's pools grown first (new connections to Redis cost round trips of their
    # own): the gate at the highest concurrency, not counted.
    for link in made:
        env = {"MODE": "gate", "PAIRS": str(gate_file), "SEGMENT": SEGMENT, "SEGMENT_SIZE": str(len(segment))}
        short = argparse.Namespace(**{**vars(args), "seconds": 2})
        warm = wrk(link.stack.url, env, max(args.gate_connections), short)
        print(f"  warm-up {link.name:10} {warm['rps']:6.0f} req/s  {statuses(warm)}", flush=True)
    for n in range(args.rounds):
        for kind, connections in workloads:
            for link in made:
                stack = link.stack
                if kind == "cycle":
                    url, env = stack.api_url, {"MODE": "cycle", "PAIRS": str(cycle_file)}
                else:
                    for stream, user in players[:: max(1, len(players) // 5)]:
                        body = http(f"{stack.url}/watch/{stream}/{SEGMENT}", headers={"x-userid": user})[0]
                        if body != segment:
                            raise RuntimeError(
                                f"{link.name}: the gate answered {len(body)} bytes, not the segment"
                            )
                    url = stack.url
                    env = {"MODE": "gate", "PAIRS": str(gate_file), "SEGMENT": SEGMENT}
                    env["SEGMENT_SIZE"] = str(len(segment))
                authsvc, proxy = stack.procs["authsvc"].pid, link.proxy.pid if link.proxy else 0
                cpu_before = (cpu_of(authsvc), cpu_of(proxy) if proxy else 0.0)
                result = wrk(url, env, connections, args)
                cpu_after = (cpu_of(authsvc), cpu_of(proxy) if proxy else 0.0)
                done = max(1.0, result["requests"])
                result["authsvc_us"] = (cpu_after[0] - cpu_before[0]) * 1e6 / done
                result["proxy_us"] = (cpu_after[1] - cpu_before[1]) * 1e6 / done
                result["redis_conns"] = redis_clients(link.redis_port)
                runs.setdefault((kind, connections, link.name), []).append(result)
                print(
                    f"round {n + 1}  {kind} -c{connections:<4} {link.name:10} {result['rps']:8.0f} req/s"
                    f"  p50 {result['p50']:7.2f} ms  p99 {result['p99']:7.2f} ms"
                    f"  authsvc {result['authsvc_us']:5.0f} us/req  proxy {result['proxy_us']:4.0f} us/req"
                    f"  redis conns {result['redis_conns']:.0f}  {statuses(result)}",
                    flush=True,
                )
    return report(runs, workloads, args)


def report(
    runs: dict[tuple[str, int, str], list[Run]], workloads: list[tuple[str, int]], args: argparse.Namespace
) -> int:
    keys = ("rps", "p50", "p99", "authsvc_us", "proxy_us", "redis_conns")
    print("\nmedians; one-way delay on authsvc <-> Redis (a round trip pays it twice)")
    print(
        "  workload    link          req/s  vs direct    p50 ms    p99 ms  authsvc us/req"
        "  proxy us/req  redis conns  not 2xx or wrong"
    )
    for kind, connections in workloads:
        base = statistics.median(r["rps"] for r in runs[(kind, connections, "direct")])
        for name in LINKS:
            results = runs[(kind, connections, name)]
            m = {k: statistics.median(r[k] for r in results) for k in keys}
            bad = sum(r["bad"] for r in results)
            print(
                f"  {kind} -c{connections:<4} {name:10} {m['rps']:9.0f}  {m['rps'] / base:8.2f}x"
                f"  {m['p50']:8.2f}  {m['p99']:8.2f}  {m['authsvc_us']:14.0f}  {m['proxy_us']:12.0f}"
                f"  {m['redis_conns']:11.0f}  {bad:.0f} of {sum(r['requests'] for r in results):.0f}"
            )
    bad = sum(r["bad"] for rs in runs.values() for r in rs)
    total = sum(r["requests"] for rs in runs.values() for r in rs)
    print(f"\n{total:.0f} answers checked, {bad:.0f} not 2xx, failed or with a wrong body")
    if bad:
        print("  these figures include failures: see each run's answers by status above")
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=5)
    # 50 as the other benchmarks; then enough for 40 ms round trips not to cap the rate
    # (C / 40 ms above what the machine serves), short of overloading the edge: past its
    # wait for authsvc (the Redis timeout + 500 ms) the gate answers 503.
    levels = lambda v: [int(c) for c in v.split(",")]  # noqa: E731
    parser.add_argument("--cycle-connections", type=levels, default=[50, 200])
    parser.add_argument("--gate-connections", type=levels, default=[50, 100])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cycle-users", type=int, default=500)
    parser.add_argument("--players", type=int, default=1000)
    # SIGTERM unwinds like Ctrl-C, so that everything started is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench-links: wrk is not installed: run `apt-get install -y wrk`", file=sys.stderr)
        return 1
    concurrency = f"{'/'.join(map(str, args.cycle_connections))} (cycle), "
    concurrency += f"{'/'.join(map(str, args.gate_connections))} (gate)"
    print(
        f"slow links: {', '.join(LINKS)} one way; wrk -t{args.threads} -c{concurrency}"
        f" -d{args.seconds}s, {args.rounds} rounds; {os.cpu_count()} cores, load average"
        f" {os.getloadavg()[0]:.2f} at the start",
        flush=True,
    )
    run_dir = Path(tempfile.mkdtemp(prefix="bench-links-"))
    try:
        with links(run_dir) as made:
            return measure(made, run_dir, args)
    except (StackError, RuntimeError, OSError) as exc:
        print(f"bench-links: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
