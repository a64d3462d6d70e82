"""Metrics across worker processes, in prometheus-client's multiprocess mode."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

WORKER = """
import os, sys
print(os.getpid())
from authsvc.metrics import Metrics
m = Metrics(sys.argv[1])
m.redis_up.set(float(sys.argv[2]))
m.decisions.labels("gate", "allowed").inc()
if sys.argv[3] == "render":
    sys.stdout.write(m.render().decode())
"""


def run_worker(path: Path, up: int, then: str) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(path)}
    out = subprocess.run(
        [sys.executable, "-c", WORKER, str(path), str(up), then],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def live_gauge_pids(path: Path) -> set[str]:
    return {p.stem.rsplit("_", 1)[1] for p in path.glob("gauge_live*_*.db")}


def test_counts_add_up_and_a_dead_workers_gauge_is_forgotten(tmp_path: Path) -> None:
    dead = run_worker(tmp_path, 0, "exit").split()[0]  # a worker that saw Redis down, then died
    assert live_gauge_pids(tmp_path) == {dead}
    out = run_worker(tmp_path, 1, "render")
    renderer, text = out.split("\n", 1)
    assert 'authsvc_decisions_total{kind="gate",outcome="allowed"} 2.0' in text
    assert "authsvc_redis_up 1.0" in text
    assert live_gauge_pids(tmp_path) == {renderer}
