"""What devices cost inside Redis: microseconds per call of the activate and touch scripts,
with and without a device id (Redis' own INFO commandstats, so neither Python nor the
network is counted), and the Redis commands each call runs inside its script (the same
stats: a count that does not depend on how busy the machine is).

    .venv/bin/python bench/devices.py [calls]

Starts a redis-server of its own on a free port and stops it at the end; each row is the
best of five runs, of ``calls`` calls each (20,000 by default).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time

from redis.asyncio import Redis

from authsvc.ids import IdCodec
from authsvc.leases import Leases
from authsvc.settings import Settings
from canwatch_stack.procs import free_port

BATCH = 100


async def per_call(redis: Redis, calls: list[object]) -> tuple[float, float]:
    """Run the coroutines in batches (as concurrent requests share round trips); the
    microseconds per EVALSHA that Redis reports for them, and the commands each ran."""
    await redis.config_resetstat()
    for i in range(0, len(calls), BATCH):
        await asyncio.gather(*calls[i : i + BATCH])  # type: ignore[arg-type]
    stats = await redis.info("commandstats")
    scripts = stats["cmdstat_evalsha"]["calls"]
    inner = sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_evalsha", "cmdstat_info"))
    return float(stats["cmdstat_evalsha"]["usec_per_call"]), inner / scripts


async def measure(url: str, count: int) -> dict[str, tuple[float, float]]:
    redis = Redis.from_url(url)
    settings = Settings(redis_url=url, secret="bench-devices-secret-0123", redis_timeout_ms=5000)
    leases = Leases(redis, settings)
    codec = IdCodec(settings.secret)
    users = [codec.issue("user") for _ in range(count)]
    first = [codec.issue("stream") for _ in range(count)]
    second = [codec.issue("stream") for _ in range(count)]
    tv = [codec.issue("stream") for _ in range(count)]
    figures = {
        "activate, no device": await per_call(
            redis, [leases.activate(u, s) for u, s in zip(users, first, strict=True)]
        ),
        "touch (gate), no device": await per_call(
            redis, [leases.touch(u, s) for u, s in zip(users, first, strict=True)]
        ),
        "activate, a device's first stream": await per_call(
            redis, [leases.activate(u, s, device_id="tv") for u, s in zip(users, second, strict=True)]
        ),
        "touch (gate), with a device": await per_call(
            redis, [leases.touch(u, s, "tv") for u, s in zip(users, second, strict=True)]
        ),
        "activate, a device switching stream (replaces)": await per_call(
            redis, [leases.activate(u, s, device_id="tv") for u, s in zip(users, tv, strict=True)]
        ),
    }
    await leases.close()
    await redis.aclose()
    return figures


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir],
            stdout=subprocess.DEVNULL,
        )
        try:
            url = f"redis://127.0.0.1:{port}/0"
            deadline = time.monotonic() + 10
            while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).returncode:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
            # Each row's best of five runs: on a shared machine a run's figure is mostly
            # how often Redis was preempted during it.
            runs = [asyncio.run(measure(url, count)) for _ in range(5)]
            for name in runs[0]:
                best = min(run[name][0] for run in runs)
                commands = runs[0][name][1]
                print(f"{name:50} {best:6.2f} us per call (best of 5), {commands:4.1f} commands")
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
