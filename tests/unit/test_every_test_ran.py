"""The guard against a run that leaves collected tests out (tests/support/every_test_ran.py),
in a real pytest run of a small suite, one process and on xdist's workers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SUPPORT = Path(__file__).resolve().parents[1] / "support"

SUITE = """
import pytest

def test_one():
    assert True

def test_two():
    assert True

@pytest.mark.skip(reason="skipped is reported")
def test_skipped():
    pass
"""

# What --dist loadfile did: a collected test that is never run, with nothing reported.
DROP_ONE = """
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    return item.name == "test_two" or None
"""

# Two cases of one test under one node id, as schemathesis collects them.
TWICE = """
def pytest_collection_modifyitems(items):
    items.append(items[0])
"""


def run(tmp_path: Path, conftest: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_small.py").write_text(SUITE)
    (tmp_path / "conftest.py").write_text(f"pytest_plugins = ['every_test_ran']\n{conftest}")
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-c", "/dev/null", *args]
    return subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(SUPPORT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def test_a_run_that_reports_on_every_test_passes(tmp_path: Path) -> None:
    result = run(tmp_path, "")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "never run" not in result.stdout


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_a_run_that_leaves_a_collected_test_out_fails(tmp_path: Path, workers: list[str]) -> None:
    result = run(tmp_path, DROP_ONE, *workers)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 of 3 collected tests were never run or reported" in result.stdout, result.stdout


def test_cases_that_share_a_node_id_each_count_on_xdist_workers(tmp_path: Path) -> None:
    result = run(tmp_path, TWICE, "-n", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed, 1 skipped" in result.stdout, result.stdout


def test_a_deselected_test_is_not_missing(tmp_path: Path) -> None:
    result = run(tmp_path, "", "-k", "not test_two")
    assert result.returncode == 0, result.stdout + result.stderr
