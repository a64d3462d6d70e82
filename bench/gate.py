"""`make bench-gate`: what the gate costs, measured with wrk on a stack of its own.

wrk -t2 -c50 fetches one ~100 KB segment for 10 s per run: ungated (the /open/ location:
the same proxying to the origin through the same nginx, without auth_request), and gated
(every fetch decided by authsvc). Lease tokens are bench/players.py's.
The modes alternate over the rounds so that drift of the machine hits each alike. Prints
req/s, p50 and p99 per run, the median per mode and the gated/ungated ratios against
the targets. A measurement, not a test.
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
import urllib.request
from dataclasses import replace
from pathlib import Path

from canwatch_edge import render
from canwatch_edge.settings import EdgeSettings
from canwatch_stack.procs import StackError, find_binary, free_port
from canwatch_stack.settings import StackSettings
from canwatch_stack.supervisor import Stack

HERE = Path(__file__).resolve().parent
SEGMENT = "demo/segment0.ts"
RESULT = re.compile(r"RESULT rps=(\S+) p50_ms=(\S+) p99_ms=(\S+) non2xx=(\d+) errors=(\d+)")
TARGETS = {"gated": 0.30}  # req/s as a share of ungated
P99_TARGET_MS = 10.0  # every gated run
Run = dict[str, float]


def fetch(url: str, user: str, method: str = "GET") -> bytes:
    request = urllib.request.Request(url, method=method, headers={"x-userid": user})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return bytes(answer.read())


def workers(master: int) -> set[int]:
    path = Path(f"/proc/{master}/task/{master}/children")
    return {int(pid) for pid in path.read_text().split()}


def free_token_check(prefix: Path) -> None:
    """In an edge rendered with lease tokens: the check made free, for measuring where the
    token mode's cost lies. nginx still builds the claim it hands the check, but the Lua
    check is never called: every gated fetch is taken as a valid token's, logged under its
    identity. Benchmarks only."""
    conf = prefix / "gate.conf"
    lines = conf.read_text().splitlines(keepends=True)
    calls = [line for line in lines if line.startswith("set_by_lua_file $cw_log_user ")]
    if len(calls) != 1:
        raise RuntimeError(f"{conf}: no token check to replace")
    claim = calls[0].split(" ", 3)[3]
    free = f"set $cw_lease_claim {claim}set $cw_log_user $cw_gate_identity;\n"
    conf.write_text("".join(free if line in calls else line for line in lines))


def reload(stack: Stack, token_s: float = 0.0, free_check: bool = False, authsvc: str | None = None) -> None:
    """Render the edge with this lease-token lifetime (its check free with ``free_check``,
    authsvc at ``authsvc`` if given) and reload nginx; return once only workers with the new
    configuration are left."""
    edge = replace(stack.edge, settings=replace(stack.edge.settings, lease_token_s=token_s))
    if authsvc is not None:
        edge = replace(edge, edge=replace(edge.edge, authsvc=(authsvc,)))
    render.render(edge)
    if free_check:
        free_token_check(edge.prefix)
    render.check(find_binary("nginx"), edge.prefix)
    master = stack.procs["nginx"].pid
    old = workers(master)
    os.kill(master, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = workers(master)
        if now and not now & old:
            return
        time.sleep(0.05)
    raise RuntimeError("nginx did not reload within 10 s")


def wrk(url: str, user: str, args: argparse.Namespace) -> Run:
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s"]
    command += ["-s", str(HERE / "gate.lua"), url]
    out = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, "USER_ID": user},
        timeout=args.seconds + 30,
    )
    match = RESULT.search(out.stdout)
    if match is None:
        raise RuntimeError(f"wrk printed no RESULT line:\n{out.stdout}\n{out.stderr}")
    rps, p50, p99, non2xx, errors = (float(v) for v in match.groups())
    return {"rps": rps, "p50": p50, "p99": p99, "bad": non2xx + errors}


def measure(stack: Stack, args: argparse.Namespace) -> dict[str, list[Run]]:
    """Every mode, interleaved, ``args.rounds`` times."""
    user = json.loads(fetch(f"{stack.url}/users/newId", ""))["userId"]
    stream = json.loads(fetch(f"{stack.url}/streams/newId", ""))["streamId"]
    fetch(f"{stack.url}/streams/{stream}/activate", user, "PATCH")
    gated = f"{stack.url}/watch/{stream}/{SEGMENT}"
    # (mode, URL), in the order of a round.
    plan = [("ungated", f"{stack.url}/open/{SEGMENT}"), ("gated", gated)]
    if args.static:
        plan.insert(0, ("static_origin", f"http://127.0.0.1:{stack.ports.origin_port}/{SEGMENT}"))
    runs: dict[str, list[Run]] = {mode: [] for mode, _ in plan}
    for n in range(args.rounds):
        for mode, url in plan:
            assert len(fetch(url, user)) > 90_000  # answers 200 before it is measured
            result = wrk(url, user, args)
            runs[mode].append(result)
            figures = f"{result['rps']:8.0f} req/s  p50 {result['p50']:6.2f} ms  p99 {result['p99']:6.2f} ms"
            print(f"round {n + 1}  {mode:16} {figures}", flush=True)
    return runs


def report(runs: dict[str, list[Run]]) -> int:
    """Medians per mode, ratios to ungated, each target met or missed."""
    medians = {
        mode: {k: statistics.median(r[k] for r in results) for k in ("rps", "p50", "p99")}
        for mode, results in runs.items()
    }
    base = medians["ungated"]["rps"]
    print("\nmedian per mode")
    for mode, m in medians.items():
        ratio = m["rps"] / base
        target = TARGETS.get(mode)
        verdict = ""
        if target is not None:
            verdict = f"  (target >= {target:.2f}x: {'met' if ratio >= target else 'MISSED'})"
        line = f"  {mode:16} {m['rps']:8.0f} req/s  p50 {m['p50']:6.2f} ms  p99 {m['p99']:6.2f} ms"
        print(f"{line}  {ratio:4.2f}x ungated{verdict}")
    for mode in TARGETS:
        worst = max(r["p99"] for r in runs[mode])
        verdict = "met" if worst < P99_TARGET_MS else "MISSED"
        print(f"  {mode}: worst p99 {worst:.2f} ms (target < {P99_TARGET_MS:g} ms in every run: {verdict})")
    bad = sum(r["bad"] for results in runs.values() for r in results)
    if bad:
        print(f"  {bad:.0f} responses were not 2xx or failed: these figures are not valid")
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--nginx-workers", type=int, default=0, help="0 = one per core, as `make run`")
    parser.add_argument("--authsvc-workers", type=int, default=1)
    parser.add_argument("--static", action="store_true", help="also fetch from the origin port directly")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench-gate: wrk is not installed: run `apt-get install -y wrk`", file=sys.stderr)
        return 1
    run_dir = Path(tempfile.mkdtemp(prefix="bench-gate-"))
    ports = StackSettings(
        api_port=free_port(), redis_port=free_port(), origin_port=free_port(), workers=args.authsvc_workers
    )
    edge = EdgeSettings(
        port=free_port(), tls_port=free_port(), workers=args.nginx_workers, api_rate=1_000_000
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHSVC_", "CANWATCH_"))}
    env |= {"AUTHSVC_SECRET": "bench-gate-secret-not-for-production", "AUTHSVC_LOG_LEVEL": "warning"}
    # Ungated runs refresh no lease: with a TTL it could expire between rounds.
    env |= {"AUTHSVC_LEASE_TTL_S": "0"}
    stack = Stack(run_dir, env, ports, edge, ungated=True, persist=False)
    load = os.getloadavg()[0]
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s, ~100 KB segment, {args.rounds} rounds"
    )
    print(
        f"nginx workers {args.nginx_workers or 'auto'}, authsvc workers {args.authsvc_workers}; "
        f"{os.cpu_count()} cores, load average {load:.2f} at the start"
    )
    try:
        stack.start()
        return report(measure(stack, args))
    except (StackError, RuntimeError, OSError) as exc:
        print(f"bench-gate: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
