"""The limit is exact under concurrency: requests sent at the same instant.

Each request is written on its own pre-opened connection except its last byte; threads
behind a barrier then send the last bytes together, so the server sees all of them at
once (the "last-byte sync" technique). A sequential client could never show a race.
"""

from __future__ import annotations

import json
import socket
import threading

import pytest

from harness import HOST, Authsvc, AuthsvcFactory, Client

TRIALS = 20
AT_ONCE = 40


def fire_at_once(port: int, requests_: list[bytes]) -> list[tuple[int, dict[str, object]]]:
    """Send every request at the same instant on its own connection; (status, body) each."""
    socks = [socket.create_connection((HOST, port), timeout=10) for _ in requests_]
    try:
        for s, raw in zip(socks, requests_, strict=True):
            s.sendall(raw[:-1])
        barrier = threading.Barrier(len(socks))
        replies: list[tuple[int, dict[str, object]]] = [(0, {})] * len(socks)

        def last_byte(i: int) -> None:
            barrier.wait()
            socks[i].sendall(requests_[i][-1:])
            data = b""
            while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < content_length(data):
                chunk = socks[i].recv(65536)
                if not chunk:
                    break
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            replies[i] = (int(head.split(b" ", 2)[1]), json.loads(body))

        threads = [threading.Thread(target=last_byte, args=(i,)) for i in range(len(socks))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        return replies
    finally:
        for s in socks:
            s.close()


def content_length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def activation(user: str, stream: str) -> bytes:
    return (
        f"PATCH /streams/{stream}/activate HTTP/1.1\r\nHost: {HOST}\r\nx-userid: {user}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


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
