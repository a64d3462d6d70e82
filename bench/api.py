"""`make bench-api`: the activate/deactivate cycle of one user and stream against authsvc
(one worker), and the same requests against a bare Starlette endpoint on the same uvicorn
settings, interleaved in one run. Prints req/s, p50, p99 of each run, medians and ratio.

Everything runs on 127.0.0.1 on free ports and is stopped by PID at the end.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from canwatch_stack.procs import free_port

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
DURATION = os.environ.get("BENCH_SECONDS", "10")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
UVICORN = ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]


def wait_port(port: int) -> None:
    for _ in range(500):
        try:
            socket.create_connection((HOST, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"nothing listens on {port}")


def get_json(url: str) -> dict[str, str]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return dict(json.load(r))


def wrk(url: str, user: str, stream: str) -> dict[str, float]:
    env = {**os.environ, "USER_ID": user, "STREAM_ID": stream}
    out = subprocess.run(
        ["wrk", "-t2", "-c50", f"-d{DURATION}s", "-s", str(ROOT / "bench" / "cycle.lua"), url],
        capture_output=True, text=True, env=env, check=True,
    ).stdout  # fmt: skip
    match = re.search(r"RESULT rps=([\d.]+) p50_ms=([\d.]+) p99_ms=([\d.]+) non2xx=(\d+) errors=(\d+)", out)
    if not match:
        raise SystemExit(f"wrk printed no result:\n{out}")
    rps, p50, p99, non2xx, errors = (float(x) for x in match.groups())
    if non2xx or errors:
        raise SystemExit(f"{url}: {non2xx:.0f} non-2xx answers and {errors:.0f} socket errors")
    return {"rps": rps, "p50": p50, "p99": p99}


def main() -> int:
    for tool in ("wrk", "redis-server"):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            print(f"{tool} is missing: apt-get install -y {tool}", file=sys.stderr)
            return 1
    work = Path(tempfile.mkdtemp(prefix="bench-api-"))
    redis_port, api_port, bare_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSVC_")}
    env.update(
        AUTHSVC_REDIS_URL=f"redis://{HOST}:{redis_port}/0", AUTHSVC_SECRET="bench-secret-of-some-length"
    )
    procs = []
    try:
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", HOST, "--save", "", "--appendonly", "no",
             "--dir", str(work)], stdout=subprocess.DEVNULL,
        ))  # fmt: skip
        wait_port(redis_port)
        authsvc = [sys.executable, "-m", "authsvc", "serve", "--host", HOST, "--port", str(api_port)]
        log = (work / "authsvc.log").open("w")
        procs.append(subprocess.Popen([*authsvc, "--workers", "1"], env=env, cwd=ROOT, stderr=log))
        bare = [sys.executable, "-m", "uvicorn", "bare:app", "--host", HOST, "--port", str(bare_port)]
        procs.append(subprocess.Popen([*bare, *UVICORN], cwd=ROOT / "bench", env=env))
        wait_port(api_port)
        wait_port(bare_port)
        base = f"http://{HOST}:{api_port}"
        user = get_json(f"{base}/users/newId")["userId"]
        stream = get_json(f"{base}/streams/newId")["streamId"]
        runs: dict[str, list[dict[str, float]]] = {"cycle": [], "bare": []}
        print(f"wrk -t2 -c50 -d{DURATION}s, {ROUNDS} rounds interleaved; authsvc: defaults, 1 worker")
        for round_ in range(1, ROUNDS + 1):
            for name, url in (("cycle", base), ("bare", f"http://{HOST}:{bare_port}")):
                result = wrk(url, user, stream)
                runs[name].append(result)
                print(f"  round {round_} {name:5}  {result['rps']:9.0f} req/s  p50 {result['p50']:6.2f} ms"
                      f"  p99 {result['p99']:6.2f} ms")  # fmt: skip
        med = {
            n: {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50", "p99")}
            for n, rs in runs.items()
        }
        print("medians:")
        for name, m in med.items():
            print(f"  {name:5}  {m['rps']:9.0f} req/s  p50 {m['p50']:6.2f} ms  p99 {m['p99']:6.2f} ms")
        print(f"cycle/bare req/s ratio: {med['cycle']['rps'] / med['bare']['rps']:.2f}")
        print("targets: cycle >= 12000 req/s, p99 < 12 ms")
        return 0
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    raise SystemExit(main())
