"""`make soak`: a stack under a steady mixed load for an hour (``SOAK_S``), its memory and
its answers written down every ``SOAK_INTERVAL_S`` seconds, then plotted and judged.

The stack runs on free loopback ports: Redis, authsvc (2 workers) and two edges on the
same authsvc, one with lease tokens (``AUTHSVC_LEASE_TOKEN_S``, nginx checks the token) and
one in the exact mode (every fetch asks authsvc). ``SOAK_PLAYERS`` players (threads) come
and go through them: each joins as a new user, takes 1 to 3 streams (now and then tries
a fourth, which must be refused), fetches the playlist and segments of one of them
every second through its edge, heartbeats and lists its streams every 10 s, and after 20
to 90 s leaves: most deactivate (and on the exact edge are refused a fetch after that),
some just vanish, leaving their leases to expire (``AUTHSVC_LEASE_TTL_S`` 30). A scraper
reads every worker's /metrics every 15 s. That is about 60 requests a second: a load
that leaves the machine's two cores mostly idle, so what grows is the stack's, not a
backlog's.

Every answer is checked against what that request must answer (status, and the body:
the segment's very bytes, "ok", the refusal's error) and counted by status. A row of the
CSV (``SOAK_CSV``, default docs/soak.csv) per interval: the RSS of nginx (both edges, all
their processes), authsvc (all workers) and Redis, Redis's used_memory and key count, and
the answers by status since the row before. The plot goes to ``SOAK_PLOT`` (default
docs/soak.png).

Exit status 0 only when no answer was unexpected, no part died and memory stayed flat:
after the warm-up (the first fifth of the run, at most 5 minutes), the median of the last
third of the rows is at most 5% + 1 MiB above the median of the first third, for each
part's RSS and for Redis's used_memory, and the key count at most 25% + 20 above (it
follows the players, who come and go at random). Everything started is stopped by PID.
"""

from __future__ import annotations

import collections
import csv
import json
import os
import random
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import requests
from links import tree

from canwatch_edge import render
from canwatch_edge.settings import EdgeSettings
from canwatch_stack.procs import StackError, find_binary, free_port, start_nginx, stop_process
from canwatch_stack.settings import StackSettings
from canwatch_stack.supervisor import Stack

ROOT = Path(__file__).resolve().parent.parent
STATUSES = (200, 403, 404, 429, 500, 502, 503, 504)  # a column each; the rest in "other"
LIMIT = 3
TTL_S = 30
TOKEN_S = 10  # at most half the TTL (authsvc's own rule)
SERIES = {  # column -> (what it is, allowed growth: share, absolute)
    "nginx_rss_kib": ("nginx RSS", 0.05, 1024),
    "authsvc_rss_kib": ("authsvc RSS", 0.05, 1024),
    "redis_rss_kib": ("Redis RSS", 0.05, 1024),
    "redis_used_memory_kib": ("Redis used_memory", 0.05, 1024),
    "redis_keys": ("Redis keys", 0.25, 20),
}


def env_number(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    try:
        number = float(value) if value else default
    except ValueError:
        raise SystemExit(f"{name}={value!r}: not a number") from None
    if number <= 0:
        raise SystemExit(f"{name}={value!r}: must be above 0")
    return number


@dataclass
class Tally:
    """Answers by status since the last row, and every unexpected one (the first 20 kept)."""

    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    total: collections.Counter[str] = field(default_factory=collections.Counter)
    unexpected: int = 0
    samples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: int, problem: str | None) -> None:
        key = str(status) if status in STATUSES else ("no_answer" if status == 0 else "other")
        with self.lock:
            self.counts[key] += 1
            self.total[key] += 1
            if problem is not None:
                self.unexpected += 1
                if len(self.samples) < 20:
                    self.samples.append(problem)

    def take(self) -> tuple[collections.Counter[str], int]:
        with self.lock:
            counts, self.counts = self.counts, collections.Counter()
            return counts, self.unexpected


class Player:
    """One player after another on one thread: join, watch, leave (see the module's doc)."""

    def __init__(self, edges: dict[str, str], files: dict[str, bytes], tally: Tally, stop: threading.Event):
        self.edges = edges
        self.files = files
        self.tally = tally
        self.stop = stop
        self.rng = random.Random()

    def call(
        self,
        http: requests.Session,
        method: str,
        url: str,
        expect: int,
        check: Callable[[requests.Response], str | None] | None = None,
        user: str | None = None,
    ) -> requests.Response | None:
        """One request; its answer counted, and judged against ``expect`` and ``check``."""
        headers = {"x-userid": user} if user else {}
        try:
            answer = http.request(method, url, headers=headers, timeout=10)
        except requests.RequestException as exc:
            self.tally.add(0, f"{method} {url}: no answer ({type(exc).__name__})")
            return None
        problem = None
        if answer.status_code != expect:
            problem = f"{method} {url}: {answer.status_code} {answer.text[:120]!r}, expected {expect}"
        elif check is not None and (why := check(answer)) is not None:
            problem = f"{method} {url}: {answer.status_code} but {why}"
        self.tally.add(answer.status_code, problem)
        return answer

    def pause(self, seconds: float) -> bool:
        """Sleep, unless the soak ends first (False then)."""
        return not self.stop.wait(seconds)

    def run(self) -> None:
        self.pause(self.rng.uniform(0, 5))  # players join over the first seconds, not at once
        while not self.stop.is_set():
            self.session()

    def session(self) -> None:
        mode = self.rng.choice(("token", "exact"))
        base = self.edges[mode]
        http = requests.Session()  # the player's cookies (its lease tokens) and connections
        try:
            answer = self.call(http, "GET", f"{base}/users/newId", 200, has("userId"))
            if answer is None or answer.status_code != 200:
                return
            user = answer.json()["userId"]
            streams = []
            for _ in range(self.rng.choice((1, 2, 3, 3))):
                got = self.call(http, "GET", f"{base}/streams/newId", 200, has("streamId"))
                if got is None or got.status_code != 200:
                    return
                stream = got.json()["streamId"]
                self.call(http, "PATCH", f"{base}/streams/{stream}/activate", 200, says_ok, user)
                streams.append(stream)
            if len(streams) == LIMIT and self.rng.random() < 0.3:
                extra = self.call(http, "GET", f"{base}/streams/newId", 200, has("streamId"))
                if extra is not None and extra.status_code == 200:
                    url = f"{base}/streams/{extra.json()['streamId']}/activate"
                    self.call(http, "PATCH", url, 403, refused("Stream Limit Reached"), user)
            self.watch(http, base, user, streams, self.rng.uniform(20, 90))
            if self.rng.random() < 0.2:
                return  # vanishes: its leases expire on their own
            for stream in streams:
                self.call(http, "PATCH", f"{base}/streams/{stream}/deactivate", 200, says_ok, user)
            if mode == "exact":  # a token stays good for its life; the exact gate refuses at once
                url = f"{base}/watch/{streams[0]}/demo/segment0.ts"
                self.call(http, "GET", url, 403, refused(None), user)
        finally:
            http.close()

    def watch(self, http: requests.Session, base: str, user: str, streams: list[str], seconds: float) -> None:
        """Fetch one stream's next file every second, round the streams; heartbeat and list
        them every 10 s."""
        names = ["playlist.m3u8", *(f"segment{n}.ts" for n in range(5))]
        ends = time.monotonic() + seconds
        beat = time.monotonic() + 10
        tick = 0
        while time.monotonic() < ends:
            stream = streams[tick % len(streams)]
            name = names[(tick // len(streams)) % len(names)]
            self.call(
                http, "GET", f"{base}/watch/{stream}/demo/{name}", 200, same_bytes(self.files[name]), user
            )
            if time.monotonic() >= beat:
                beat += 10
                for stream in streams:
                    self.call(http, "PATCH", f"{base}/streams/{stream}/heartbeat", 200, says_ok, user)
                self.call(http, "GET", f"{base}/streams/active", 200, lists(streams), user)
            tick += 1
            if not self.pause(1.0):
                return


def has(name: str) -> Callable[[requests.Response], str | None]:
    return lambda r: None if isinstance(r.json().get(name), str) else f"no {name} in {r.text[:80]!r}"


def says_ok(answer: requests.Response) -> str | None:
    return None if answer.json().get("status") == "ok" else f"not ok: {answer.text[:80]!r}"


def refused(error: str | None) -> Callable[[requests.Response], str | None]:
    def check(answer: requests.Response) -> str | None:
        body = answer.json()
        if body.get("status") != "ko" or (error is not None and body.get("error") != error):
            return f"not the refusal {error!r}: {answer.text[:120]!r}"
        return None

    return check


def same_bytes(expected: bytes) -> Callable[[requests.Response], str | None]:
    return lambda r: (
        None if r.content == expected else f"{len(r.content)} bytes, not the file's {len(expected)}"
    )


def lists(streams: list[str]) -> Callable[[requests.Response], str | None]:
    def check(answer: requests.Response) -> str | None:
        listed = {lease["streamId"] for lease in answer.json().get("streams", [])}
        missing = set(streams) - listed
        return f"{len(missing)} of its streams not listed" if missing else None

    return check


def scrape(urls: list[str], tally: Tally, stop: threading.Event) -> None:
    """Prometheus' part: every authsvc /metrics every 15 s."""
    http = requests.Session()
    while not stop.wait(15):
        for url in urls:
            try:
                answer = http.get(f"{url}/metrics", timeout=10)
            except requests.RequestException as exc:
                tally.add(0, f"GET {url}/metrics: no answer ({type(exc).__name__})")
                continue
            ok = answer.status_code == 200 and "authsvc_decisions_total" in answer.text
            tally.add(answer.status_code, None if ok else f"GET {url}/metrics: {answer.status_code}")
    http.close()


def rss_kib(pids: list[int]) -> int:
    """The RSS of every process of these trees, added up (shared pages counted in each)."""
    total = 0
    for pid in (p for root in pids for p in tree(root)):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        total += int(match.group(1)) if match else 0
    return total


def redis_figures(port: int) -> tuple[int, int]:
    """(used_memory in KiB, number of keys) of the stack's Redis."""
    cli = find_binary("redis-cli")
    memory = subprocess.run(
        [cli, "-p", str(port), "INFO", "memory"], capture_output=True, text=True, timeout=10
    )
    keys = subprocess.run([cli, "-p", str(port), "DBSIZE"], capture_output=True, text=True, timeout=10)
    used = re.search(r"^used_memory:(\d+)", memory.stdout, re.MULTILINE)
    if used is None or not keys.stdout.strip().isdigit():
        raise RuntimeError(f"Redis did not answer INFO/DBSIZE: {memory.stdout[:80]!r} {keys.stdout!r}")
    return int(used.group(1)) // 1024, int(keys.stdout)


def exact_edge(stack: Stack, run_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A second nginx on the stack's authsvc and origin, rendered in the exact mode."""
    port = free_port()
    edge = replace(
        stack.edge,
        prefix=run_dir / "nginx-exact",
        settings=replace(stack.edge.settings, lease_token_s=0),
        edge=replace(stack.edge.edge, port=port, origin_url=f"http://127.0.0.1:{stack.ports.origin_port}"),
    )
    render.render(edge)
    return start_nginx(edge.prefix, port), f"http://127.0.0.1:{port}"


def flat(rows: list[dict[str, float]], warmup_s: float) -> list[str]:
    """The memory series that grew past their bound after the warm-up (see the doc)."""
    after = [row for row in rows if row["t_s"] > warmup_s]
    if len(after) < 3:
        return [f"only {len(after)} rows after the {warmup_s:g} s warm-up: too short to judge (need 3)"]
    third = max(1, len(after) // 3)
    hours = [row["t_s"] / 3600 for row in after]
    grown = []
    for column, (name, share, absolute) in SERIES.items():
        first = statistics.median(row[column] for row in after[:third])
        last = statistics.median(row[column] for row in after[-third:])
        bound = first * (1 + share) + absolute
        verdict = "flat" if last <= bound else "GREW"
        # The trend, for the record (the verdict is the medians'): least squares, per hour.
        slope = statistics.linear_regression(hours, [row[column] for row in after]).slope
        print(
            f"  {name:18} first third {first:10.0f}  last third {last:10.0f}  bound {bound:10.0f}"
            f"  {verdict}  (trend {slope:+.0f} an hour)"
        )
        if last > bound:
            grown.append(f"{name}: {first:.0f} -> {last:.0f} (bound {bound:.0f})")
    return grown


def plot(rows: list[dict[str, float]], path: Path, title: str, warmup_s: float) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    minutes = [row["t_s"] / 60 for row in rows]
    fig, (memory, redis, answers) = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    for column, label in (
        ("nginx_rss_kib", "nginx"),
        ("authsvc_rss_kib", "authsvc"),
        ("redis_rss_kib", "Redis"),
    ):
        memory.plot(minutes, [row[column] / 1024 for row in rows], marker=".", label=label)
    memory.set_ylabel("RSS, MiB")
    memory.set_ylim(bottom=0)
    memory.legend(loc="center right")
    memory.set_title(title, fontsize=10)
    redis.plot(minutes, [row["redis_used_memory_kib"] / 1024 for row in rows], marker=".", color="tab:green")
    redis.set_ylabel("Redis used_memory, MiB", color="tab:green")
    redis.set_ylim(bottom=0)
    keys = redis.twinx()
    keys.plot(minutes, [row["redis_keys"] for row in rows], marker=".", color="tab:purple")
    keys.set_ylabel("Redis keys", color="tab:purple")
    keys.set_ylim(bottom=0)
    for column in ("status_200", "status_403", "unexpected"):
        answers.plot(minutes, [row[column] for row in rows], marker=".", label=column.replace("_", " "))
    other = [
        sum(row[f"status_{s}"] for s in STATUSES if s not in (200, 403)) + row["status_other"] for row in rows
    ]
    answers.plot(minutes, other, marker=".", label="any other status")
    for panel in (memory, redis, answers):
        panel.axvline(warmup_s / 60, linestyle=":", color="grey")  # the warm-up's end
    answers.set_ylabel("answers per interval")
    answers.set_xlabel("minutes")
    answers.legend(loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> int:
    # SIGTERM unwinds like Ctrl-C, so that everything started is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    duration = env_number("SOAK_S", 3600)
    interval = env_number("SOAK_INTERVAL_S", 60)
    players = int(env_number("SOAK_PLAYERS", 40))
    csv_path = Path(os.environ.get("SOAK_CSV", ROOT / "docs" / "soak.csv"))
    plot_path = Path(os.environ.get("SOAK_PLOT", ROOT / "docs" / "soak.png"))
    warmup = min(300.0, duration / 5)
    try:
        import matplotlib  # noqa: F401  (before an hour is spent)
    except ImportError:
        print("soak: matplotlib is missing: run `make` (requirements-dev.lock)", file=sys.stderr)
        return 1
    run_dir = Path(tempfile.mkdtemp(prefix="soak-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHSVC_", "CANWATCH_"))}
    env |= {"AUTHSVC_SECRET": secrets.token_urlsafe(32), "AUTHSVC_LOG_LEVEL": "warning"}
    env |= {"AUTHSVC_LEASE_TTL_S": str(TTL_S), "AUTHSVC_LEASE_TOKEN_S": str(TOKEN_S)}
    env |= {"AUTHSVC_MAX_STREAMS": str(LIMIT)}
    ports = StackSettings(api_port=free_port(), redis_port=free_port(), origin_port=free_port(), workers=2)
    stack = Stack(run_dir, env, ports, EdgeSettings(port=free_port(), tls_port=0), persist=False)
    exact: subprocess.Popen[bytes] | None = None
    stop = threading.Event()
    threads: list[threading.Thread] = []
    tally = Tally()
    rows: list[dict[str, float]] = []
    died: list[str] = []
    print(
        f"soak: {duration:g} s, a row every {interval:g} s, {players} players; "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start; CSV {csv_path}",
        flush=True,
    )
    try:
        stack.start()
        exact, exact_url = exact_edge(stack, run_dir)
        origin = f"http://127.0.0.1:{ports.origin_port}/demo"
        files = {name: requests.get(f"{origin}/{name}", timeout=10).content for name in demo_files()}
        edges = {"token": stack.url, "exact": exact_url}
        for _ in range(players):
            player = Player(edges, files, tally, stop)
            threads.append(threading.Thread(target=player.run, daemon=True))
        threads.append(threading.Thread(target=scrape, args=(stack.api_urls, tally, stop), daemon=True))
        for thread in threads:
            thread.start()
        nginx_pids = [stack.procs["nginx"].pid, exact.pid]
        authsvc_pids = [stack.procs[name].pid for name in stack.replicas]
        redis_pid = stack.procs["redis"].pid
        started = time.monotonic()
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        with csv_path.open("w", newline="") as out:
            columns = ["t_s", *SERIES, *(f"status_{s}" for s in STATUSES), "status_other", "no_answer"]
            writer = csv.DictWriter(out, [*columns, "unexpected"])
            writer.writeheader()
            n = 0
            while (n := n + 1) * interval <= duration:
                time.sleep(max(0.0, started + n * interval - time.monotonic()))
                died = stack.dead() + (["nginx (exact)"] if exact.poll() is not None else [])
                used, keys = redis_figures(ports.redis_port)
                counts, unexpected = tally.take()
                row: dict[str, float] = {
                    "t_s": round(time.monotonic() - started),
                    "nginx_rss_kib": rss_kib(nginx_pids),
                    "authsvc_rss_kib": rss_kib(authsvc_pids),
                    "redis_rss_kib": rss_kib([redis_pid]),
                    "redis_used_memory_kib": used,
                    "redis_keys": keys,
                    **{f"status_{s}": counts[str(s)] for s in STATUSES},
                    "status_other": counts["other"],
                    "no_answer": counts["no_answer"],
                    "unexpected": unexpected - sum(r["unexpected"] for r in rows),
                }
                rows.append(row)
                writer.writerow(row)
                out.flush()
                print(json.dumps(row), flush=True)
                if died:
                    break
    except (StackError, RuntimeError, OSError) as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 1
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        if exact is not None:
            stop_process(exact)
        stack.stop()
    verdict = judge(rows, tally, died, warmup, duration, interval, players, plot_path)
    if verdict:  # the parts' logs, to find out why
        print(f"the run's logs are kept in {run_dir}")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    return verdict


def demo_files() -> list[str]:
    return ["playlist.m3u8", *(f"segment{n}.ts" for n in range(5))]


def judge(
    rows: list[dict[str, float]],
    tally: Tally,
    died: list[str],
    warmup: float,
    duration: float,
    interval: float,
    players: int,
    plot_path: Path,
) -> int:
    """Plot, then the verdict: 0 when nothing died, nothing was unexpected, memory flat."""
    total = sum(tally.total.values())
    print(f"\n{total} answers: {dict(sorted(tally.total.items()))}; unexpected {tally.unexpected}")
    for sample in tally.samples:
        print(f"  unexpected: {sample}")
    print(f"memory after the {warmup:g} s warm-up (KiB, keys):")
    grown = flat(rows, warmup)
    if rows:
        title = f"make soak: {duration:g} s, {players} players, a row every {interval:g} s"
        plot(rows, plot_path, title + f"; warm-up to the dotted line ({warmup:g} s)", warmup)
        print(f"plot: {plot_path}")
    failures = [f"died: {', '.join(died)}"] if died else []
    failures += [f"{tally.unexpected} unexpected answers"] if tally.unexpected else []
    failures += grown
    for failure in failures:
        print(f"soak FAILED: {failure}")
    if not failures:
        print("soak passed: no part died, no answer unexpected, memory flat")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
