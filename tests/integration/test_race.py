"""The limit is exact under concurrency: requests sent at the same instant.

Each request is written on its own pre-opened connection except its last byte; threads
behind a barrier then send the last bytes together, so the server sees all of them at
once (the "last-byte sync" technique). A sequential client could never show a race.
"""

from __future__ import annotations

import pytest

from harness import Authsvc, AuthsvcFactory, Client
from races import AT_ONCE, activation, fire_at_once

pytestmark = pytest.mark.every_topology

TRIALS = 20


def race(service: Authsvc, trials: int) -> list[int]:
    client = Client(service.url)
    admitted = []
    for _ in range(trials):
        user = client.new_user()
        streams = [client.new_stream() for _ in range(AT_ONCE)]
        replies = fire_at_once(service.port, [activation(user, s) for s in streams])
        statuses = sorted(status for status, _ in replies)
        assert set(statuses) <= {200, 403}, statuses
        admitted.append(statuses.count(200))
        # What the service says it holds agrees with what it answered.
        active = client.active(user).json()["streams"]
        winners = {s for s, (status, _) in zip(streams, replies, strict=True) if status == 200}
        assert {a["streamId"] for a in active} == winners
    client.close()
    return admitted


def test_forty_at_once_admit_exactly_the_limit(authsvc: Authsvc) -> None:
    assert race(authsvc, TRIALS) == [3] * TRIALS


@pytest.mark.parametrize("workers", [2])
def test_exact_across_worker_processes(start_authsvc: AuthsvcFactory, workers: int) -> None:
    assert race(start_authsvc(workers=workers), 5) == [3] * 5


def test_the_same_stream_forty_times_uses_one_slot(authsvc: Authsvc) -> None:
    client = Client(authsvc.url)
    user, stream = client.new_user(), client.new_stream()
    replies = fire_at_once(authsvc.port, [activation(user, stream)] * AT_ONCE)
    assert [status for status, _ in replies] == [200] * AT_ONCE
    outcomes = sorted(str(body["outcome"]) for _, body in replies)
    assert outcomes == ["admitted"] + ["refreshed"] * (AT_ONCE - 1)
    assert len(client.active(user).json()["streams"]) == 1
    client.close()
