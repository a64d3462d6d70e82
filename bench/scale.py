"""`make bench-scale`: what a million users cost, and whether throughput depends on how
many users there are or on how many Redis nodes hold them. A benchmark, not a test.

1. Memory: BENCH_USERS (1,000,000) users with 1 lease each, then 2 more each (3 in all),
   loaded into a fresh redis-server through the real activate script (authsvc/lua/activate.lua by
   EVALSHA, issued 32-character ids, the default key prefix, a 1 h lease TTL so that no
   lease expires while loading), piped by `redis-cli --pipe`. Bytes per user and per
   lease from INFO used_memory before and after, and MEMORY USAGE of sampled keys.
2. Users: the activate/deactivate cycle (wrk -t2 -c50, one authsvc worker, single Redis)
   over BENCH_CYCLE_USERS (100,000) distinct users against the same over one user,
   rounds interleaved in one run.
3. Cluster: the cycle over those users on a local 3+3 Redis Cluster against a single
   Redis, one authsvc worker each, rounds interleaved; skipped (and said so) when this
   authsvc does not take ``redis+cluster://`` URLs.

4. WAIT: the cycle over those users on a primary with one replica, one authsvc worker
   with AUTHSVC_REDIS_WAIT_REPLICAS off and one with it at 1 (AUTHSVC_REDIS_WAIT_MS 50),
   rounds interleaved; the ratio of the two, and the short WAITs counted.

Every wrk run must answer 200 only: the other answers are counted by status, reported, and
fail the benchmark, since an error page is cheap and would flatter a ratio. BENCH_PARTS
(memory,users,cluster,wait) picks the parts to run.
Everything runs on 127.0.0.1 on free ports and is stopped by PID.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
import redis.asyncio
import requests

from authsvc.ids import IdCodec
from authsvc.leases import Leases
from authsvc.settings import Settings, SettingsError
from canwatch_stack.procs import LOOPBACK, free_port, start_authsvc, start_redis, stop_process

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-of-some-length"
PREFIX = Settings().key_prefix
USERS = int(os.environ.get("BENCH_USERS", "1000000"))
CYCLE_USERS = int(os.environ.get("BENCH_CYCLE_USERS", "100000"))
DURATION = os.environ.get("BENCH_SECONDS", "10")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
PARTS = set(os.environ.get("BENCH_PARTS", "memory,users,cluster,wait").split(","))
TTL_MS = 3_600_000  # no lease may expire while loading; the key carries an expiry as usual
BATCH = 20_000  # commands per write to redis-cli --pipe
SAMPLE = 2_000  # keys whose MEMORY USAGE and ZCARD are read
# Measured on the code before this benchmark existed: stay at or under.
BASELINE_USER_1 = 231.0
BASELINE_LEASE_3 = 108.0


def resp(*args: str) -> bytes:
    """One command in the Redis protocol, as redis-cli --pipe wants it."""
    out = [f"*{len(args)}\r\n"]
    for arg in args:
        out.append(f"${len(arg.encode())}\r\n{arg}\r\n")
    return "".join(out).encode()


@contextmanager
def redis_server(work: Path, name: str) -> Iterator[int]:
    """A fresh redis-server without persistence on a free port; its port."""
    port = free_port()
    data = work / name
    proc = start_redis(port, data, work / f"{name}.log", persist=False)
    try:
        yield port
    finally:
        stop_process(proc)


@dataclass(frozen=True)
class Memory:
    users: int
    leases: int  # per user
    used_delta: int
    key_usage: float  # median MEMORY USAGE of a user's key
    starts_usage: float  # the same of the hash of when the user's leases started
    load_s: float

    @property
    def per_user(self) -> float:
        return self.used_delta / self.users

    @property
    def per_lease(self) -> float:
        return self.per_user / self.leases


def load_memory(work: Path, users: int) -> tuple[Memory, Memory]:
    """Load ``users`` users with one lease each through activate.lua and measure; then
    give each two more leases (three in all) and measure again."""
    codec = IdCodec(SECRET)
    with redis_server(work, "redis-memory") as port:
        r = redis.Redis(host=LOOPBACK, port=port, decode_responses=True)
        # The service's own script, keys and arguments: what an activation sends.
        settings = Settings(redis_url=f"redis://{LOOPBACK}:{port}/0", lease_ttl_s=TTL_MS / 1000)
        limiter = Leases(redis.asyncio.Redis(), settings)
        sha = r.script_load(limiter.activate_script.source)
        before = int(r.info("memory")["used_memory"])
        user_ids = [codec.issue("user") for _ in range(users)]
        step = users // SAMPLE or 1
        sample = [f"{PREFIX}{{{u}}}:streams" for u in user_ids[::step]]
        starts = [f"{PREFIX}{{{u}}}:starts" for u in user_ids[::step]]
        results = []
        for leases, adding in ((1, 1), (3, 2)):
            started = time.monotonic()
            _pipe(port, sha, user_ids, adding, codec, limiter)
            load_s = time.monotonic() - started
            # Every lease is there: two keys per user (its leases, when they started), each
            # with an expiry, and the lease counters' one hash (authsvc/stats.py).
            if r.dbsize() != 2 * users + 1:
                raise SystemExit(f"{r.dbsize()} keys, expected {2 * users} and the counters")
            cards = {r.zcard(k) for k in sample} | {r.hlen(k) for k in starts}
            if cards != {leases} or min(r.pttl(k) for k in sample + starts) <= 0:
                raise SystemExit(f"sampled keys hold {cards} leases and starts, expected {leases}")
            used = int(r.info("memory")["used_memory"]) - before
            usage = statistics.median(int(r.memory_usage(k) or 0) for k in sample)
            starts_usage = statistics.median(int(r.memory_usage(k) or 0) for k in starts)
            results.append(Memory(users, leases, used, usage, starts_usage, load_s))
        r.close()
    return results[0], results[1]


def _pipe(port: int, sha: str, user_ids: list[str], adding: int, codec: IdCodec, limiter: Leases) -> None:
    """Activate ``adding`` new streams for every user, by EVALSHA through redis-cli --pipe;
    SystemExit unless every reply came back without error."""
    cli = [_binary("redis-cli"), "-h", LOOPBACK, "-p", str(port), "--pipe"]
    # Its report goes to a file: a pipe nobody reads while we write would fill up and
    # stall both sides (redis-cli prints a line per error reply).
    with tempfile.TemporaryFile() as report_file:
        pipe = subprocess.Popen(cli, stdin=subprocess.PIPE, stdout=report_file, stderr=subprocess.STDOUT)
        assert pipe.stdin is not None
        batch: list[bytes] = []
        for user in user_ids:
            for _ in range(adding):
                keys, args = limiter.activation(user, codec.issue("stream"))
                batch.append(resp("EVALSHA", sha, str(len(keys)), *keys, *(str(a) for a in args)))
            if len(batch) >= BATCH:
                pipe.stdin.write(b"".join(batch))
                batch.clear()
        pipe.stdin.write(b"".join(batch))
        pipe.stdin.close()
        pipe.wait(600)
        report_file.seek(0)
        report = report_file.read().decode(errors="replace")
    match = re.search(r"errors: (\d+), replies: (\d+)", report)
    if not match or int(match.group(1)) or int(match.group(2)) != len(user_ids) * adding:
        raise SystemExit(f"redis-cli --pipe did not load every lease:\n{report[-600:]}")


def _binary(name: str) -> str:
    for candidate in (f"/usr/bin/{name}", f"/usr/sbin/{name}"):
        if os.access(candidate, os.X_OK):
            return candidate
    raise SystemExit(f"{name} is missing: apt-get install -y redis-tools redis-server wrk")


@dataclass(frozen=True)
class Run:
    rps: float
    p50: float
    p99: float
    requests: int
    non2xx: int
    errors: int
    statuses: str = ""  # the non-200 answers by status, e.g. "503x8,"


def wrk(url: str, ids_file: Path) -> Run:
    """One wrk run of the cycle over the pairs in ``ids_file``."""
    env = {**os.environ, "IDS_FILE": str(ids_file)}
    script = ROOT / "bench" / "cycle_users.lua"
    out = subprocess.run(
        ["wrk", "-t2", "-c50", f"-d{DURATION}s", "-s", str(script), url],
        capture_output=True, text=True, env=env, check=True, timeout=int(DURATION) + 120,
    ).stdout  # fmt: skip
    pattern = r"RESULT rps=([\d.]+) p50_ms=([\d.]+) p99_ms=([\d.]+) requests=(\d+) non2xx=(\d+) errors=(\d+)"
    match = re.search(pattern, out)
    if not match:
        raise SystemExit(f"wrk printed no result:\n{out}")
    rps, p50, p99 = (float(x) for x in match.groups()[:3])
    requests, non2xx, errors = (int(x) for x in match.groups()[3:])
    statuses = re.search(r"STATUSES (\S*)", out)
    return Run(rps, p50, p99, requests, non2xx, errors, statuses.group(1) if statuses else "?")


def write_ids(work: Path, count: int) -> Path:
    """``count`` (user, stream) pairs of issued ids, one a line."""
    codec = IdCodec(SECRET)
    path = work / f"ids-{count}.txt"
    with path.open("w") as out:
        for _ in range(count):
            out.write(f"{codec.issue('user')} {codec.issue('stream')}\n")
    return path


@contextmanager
def authsvc(work: Path, redis_url: str, name: str, **settings: str) -> Iterator[str]:
    """One authsvc worker on ``redis_url``, defaults otherwise (or ``settings``, as
    AUTHSVC_<NAME>); its base URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSVC_")}
    env.update(AUTHSVC_REDIS_URL=redis_url, AUTHSVC_SECRET=SECRET)
    env.update({f"AUTHSVC_{key.upper()}": value for key, value in settings.items()})
    proc = start_authsvc(port, env, 1, work / f"authsvc-{name}.log")
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        stop_process(proc)


def interleaved(runs: dict[str, tuple[str, Path]]) -> dict[str, list[Run]]:
    """ROUNDS rounds of every (url, ids) in ``runs``, in turn; each printed as it ends."""
    results: dict[str, list[Run]] = {name: [] for name in runs}
    for round_ in range(1, ROUNDS + 1):
        for name, (url, ids) in runs.items():
            run = wrk(url, ids)
            results[name].append(run)
            bad = (
                f"  non-200: {run.statuses} socket errors: {run.errors}" if run.statuses or run.errors else ""
            )
            print(f"  round {round_} {name:24} {run.rps:8.0f} req/s  p50 {run.p50:6.2f} ms  "
                  f"p99 {run.p99:6.2f} ms  {run.requests} answers{bad}", flush=True)  # fmt: skip
    return results


def median(runs: list[Run]) -> Run:
    return Run(
        statistics.median(r.rps for r in runs),
        statistics.median(r.p50 for r in runs),
        statistics.median(r.p99 for r in runs),
        sum(r.requests for r in runs),
        sum(r.non2xx for r in runs),
        sum(r.errors for r in runs),
    )


def cluster_supported() -> str | None:
    """None when this authsvc takes a redis+cluster:// URL, else why not."""
    try:
        Settings(redis_url="redis+cluster://127.0.0.1:7000")
    except SettingsError as exc:
        return str(exc)
    return None


Rows = list[tuple[str, str, str]]


def memory_part(work: Path, rows: Rows, failed: list[str]) -> None:
    print(f"memory: {USERS:,} users through activate.lua (EVALSHA via redis-cli --pipe)", flush=True)
    one, three = load_memory(work, USERS)
    for m in (one, three):
        print(
            f"  {m.leases} lease(s) each: used_memory +{m.used_delta / 2**20:.1f} MiB in {m.load_s:.0f} s, "
            f"{m.per_user:.0f} B/user, {m.per_lease:.0f} B/lease, MEMORY USAGE of a key {m.key_usage:.0f} B"
            f" (of the starts: {m.starts_usage:.0f} B)"
        )
    extra = (three.used_delta - one.used_delta) / (2 * USERS)
    rows += [
        (f"memory, {USERS:,} users x 1 lease", f"{one.per_user:.0f} B/user (key: {one.key_usage:.0f} B)",
         f"<= {BASELINE_USER_1:.0f} B/user"),
        (f"memory, {USERS:,} users x 3 leases", f"{three.per_lease:.0f} B/lease, {three.per_user:.0f} B/user "
         f"(key: {three.key_usage:.0f} B)", f"<= {BASELINE_LEASE_3:.0f} B/lease"),
        ("memory, each lease past the first", f"{extra:.0f} B", ""),
    ]  # fmt: skip
    if one.per_user > BASELINE_USER_1 or three.per_lease > BASELINE_LEASE_3:
        failed.append("memory above the baseline")


def users_part(work: Path, many_ids: Path, rows: Rows, failed: list[str]) -> dict[str, list[Run]]:
    one_id = write_ids(work, 1)
    print(f"\ncycle: wrk -t2 -c50 -d{DURATION}s, {ROUNDS} rounds interleaved, one authsvc worker", flush=True)
    with (
        redis_server(work, "redis-cycle") as port,
        authsvc(work, f"redis://{LOOPBACK}:{port}/0", "single") as url,
    ):
        runs = interleaved({"1 user": (url, one_id), f"{CYCLE_USERS:,} users": (url, many_ids)})
    m1, mn = median(runs["1 user"]), median(runs[f"{CYCLE_USERS:,} users"])
    ratio = mn.rps / m1.rps
    rows += [
        ("cycle, 1 user, single Redis", _run_text(m1), ""),
        (f"cycle, {CYCLE_USERS:,} users, single Redis", _run_text(mn), ""),
        (f"{CYCLE_USERS:,} users / 1 user", f"{ratio:.2f}x", ">= 0.9x"),
    ]
    if ratio < 0.9:
        failed.append("throughput depends on the number of users")
    return runs


def cluster_part(work: Path, many_ids: Path, rows: Rows, failed: list[str]) -> dict[str, list[Run]]:
    why_not = cluster_supported()
    if why_not is not None:
        rows.append(("Cluster / single", f"not measured: {why_not}", ">= 0.8x"))
        failed.append("Cluster not measured")
        return {}
    from canwatch_stack.topology import LocalCluster

    print(f"\ncluster 3+3 against single Redis, {CYCLE_USERS:,} users, one authsvc worker each", flush=True)
    cluster = LocalCluster(work / "cluster", primaries=3, replicas=1)
    cluster.start()
    try:
        with (
            redis_server(work, "redis-single") as port,
            authsvc(work, f"redis://{LOOPBACK}:{port}/0", "single-2") as single_url,
            authsvc(work, cluster.url, "cluster") as cluster_url,
        ):
            runs = interleaved({"single": (single_url, many_ids), "cluster": (cluster_url, many_ids)})
    finally:
        cluster.stop()
    ms, mc = median(runs["single"]), median(runs["cluster"])
    rows += [
        (f"cycle, {CYCLE_USERS:,} users, single Redis (again)", _run_text(ms), ""),
        (f"cycle, {CYCLE_USERS:,} users, Cluster 3+3", _run_text(mc), ""),
        ("Cluster / single", f"{mc.rps / ms.rps:.2f}x", ">= 0.8x"),
    ]
    if mc.rps / ms.rps < 0.8:
        failed.append("the Cluster is below 0.8x a single Redis")
    return runs


def wait_part(work: Path, many_ids: Path, rows: Rows, failed: list[str]) -> dict[str, list[Run]]:
    # A primary with one replica is the WAIT tests' Redis: the benchmark borrows it.
    sys.path.insert(0, str(ROOT / "tests" / "support"))
    from replicated import PrimaryReplica  # type: ignore[import-not-found]

    print(f"\nWAIT: a primary with one replica, {CYCLE_USERS:,} users, one authsvc worker each", flush=True)
    pair = PrimaryReplica(work / "replicated")
    pair.start()
    try:
        with (
            authsvc(work, pair.url, "wait-off", key_prefix="off:") as off_url,
            authsvc(
                work, pair.url, "wait-on", key_prefix="on:", redis_wait_replicas="1", redis_wait_ms="50"
            ) as on_url,
        ):
            runs = interleaved({"WAIT off": (off_url, many_ids), "WAIT 1, 50 ms": (on_url, many_ids)})
            metrics = requests.get(f"{on_url}/metrics", timeout=5).text
    finally:
        pair.stop()
    short = re.search(r"^authsvc_redis_wait_short_total (\S+)", metrics, re.M)
    m_off, m_on = median(runs["WAIT off"]), median(runs["WAIT 1, 50 ms"])
    rows += [
        (f"cycle, {CYCLE_USERS:,} users, primary + replica, WAIT off", _run_text(m_off), ""),
        (f"cycle, {CYCLE_USERS:,} users, primary + replica, WAIT 1", _run_text(m_on), ""),
        ("WAIT 1 / off", f"{m_on.rps / m_off.rps:.2f}x req/s, p50 {m_on.p50 / m_off.p50:.2f}x, "
         f"p99 {m_on.p99 / m_off.p99:.2f}x; short WAITs: {short.group(1) if short else '?'}", ""),
    ]  # fmt: skip
    return runs


def main() -> int:
    for tool in ("wrk", "redis-server", "redis-cli"):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            print(f"{tool} is missing: apt-get install -y wrk redis-server redis-tools", file=sys.stderr)
            return 1
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    rows: Rows = []
    failed: list[str] = []
    runs: dict[str, list[Run]] = {}
    if "memory" in PARTS:
        memory_part(work, rows, failed)
    many_ids = write_ids(work, CYCLE_USERS)
    if "users" in PARTS:
        runs.update(users_part(work, many_ids, rows, failed))
    if "cluster" in PARTS:
        runs.update({f"{k} (cluster part)": v for k, v in cluster_part(work, many_ids, rows, failed).items()})
    if "wait" in PARTS:
        runs.update(wait_part(work, many_ids, rows, failed))

    bad = {name: ",".join(r.statuses for r in rs if r.statuses) for name, rs in runs.items()}
    bad = {name: statuses for name, statuses in bad.items() if statuses}
    errors = sum(r.errors for rs in runs.values() for r in rs)
    if bad or errors:
        failed.append(f"answers other than 200: {bad}, socket errors: {errors}")

    width = max(len(r[0]) for r in rows)
    print(f"\n{'what':{width}}  {'result (medians)':58}  target")
    for what, result, target in rows:
        print(f"{what:{width}}  {result:58}  {target}")
    if runs:
        total = sum(r.requests for rs in runs.values() for r in rs)
        print(f"{total:,} answers in all; " + ("every one a 200" if not (bad or errors) else "NOT all 200"))
    if failed:
        print("NOT MET: " + "; ".join(failed))
    return 1 if failed else 0


def _run_text(run: Run) -> str:
    return (
        f"{run.rps:7.0f} req/s, p50 {run.p50:.2f} ms, p99 {run.p99:.2f} ms, {run.non2xx} non-2xx (all rounds)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
