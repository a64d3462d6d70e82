"""End-to-end through a real nginx: the stack the tests start on free loopback ports, or
the deployment at HOST=http://... (using only its public API).

Tests that stop Redis or authsvc, or need other settings (lease TTL, lease tokens,
fail-open, jwt mode), start a stack of their own through ``start_stack``; against HOST
they are skipped, saying why. Nothing else is ever skipped: a missing nginx or
redis-server fails with the command that installs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from authsvc.settings import Settings
from canwatch_stack.supervisor import Stack

from edge_harness import HOST, Deployment, Player, StackFactory, launch


@pytest.fixture(scope="session")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The default deployment: header identity, limit 3, lease tokens off; or HOST."""
    if HOST:
        # A deployment's lease-token life cannot be asked; give it as at deployment.
        yield Deployment(HOST, None, Settings.from_env().lease_token_s)
        return
    stack = launch(tmp_path_factory.mktemp("stack"))
    yield Deployment(stack.url, stack, 0.0)
    stack.stop()


@pytest.fixture
def start_stack(tmp_path: Path) -> Iterator[StackFactory]:
    """Start a stack of this test's own: start(why="...", **settings). Against HOST the
    test is skipped with ``why`` (what it needs that someone else's deployment cannot
    give) or the settings it would have started with."""
    started: list[Stack] = []

    def start(why: str = "", ungated: bool = False, **settings: object) -> Stack:
        if HOST:
            wanted = why or "settings " + ", ".join(f"{k}={v}" for k, v in settings.items())
            pytest.skip(f"HOST={HOST}: needs a stack of its own ({wanted})")
        stack = launch(tmp_path / f"stack{len(started)}", ungated=ungated, **settings)
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.stop()


@pytest.fixture
def player(edge: Deployment) -> Iterator[Player]:
    p = Player(edge.url)
    yield p
    p.close()
