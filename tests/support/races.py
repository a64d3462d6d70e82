"""Helpers of the race and failover tests: requests sent truly at once, users by Cluster
slot, the count of WAITs that timed out."""

from __future__ import annotations

import json
import socket
import threading

import requests
from prometheus_client.parser import text_string_to_metric_families
from redis.crc import key_slot

from authsvc.ids import IdCodec

from harness import HOST, SECRET, Authsvc, Client
from load import Load
from topologies import ClusterTopology
from until import until

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


def activation(user: str, stream: str, device: str | None = None) -> bytes:
    """A raw activation of ``stream`` for ``user``, from ``device`` when given."""
    device_header = f"x-device-id: {device}\r\n" if device else ""
    return (
        f"PATCH /streams/{stream}/activate HTTP/1.1\r\nHost: {HOST}\r\nx-userid: {user}\r\n"
        f"{device_header}Content-Length: 0\r\n\r\n"
    ).encode()


TIMEOUT_MS = 250
# What a bound on time is about: authsvc's own time to answer (its access log), within the
# Redis timeout plus a little. Seen from a client on a loaded 2-core machine, scheduling
# adds to it (a load thread in the tests' process once waited 0.4 s in CI); there the bound
# only tells a prompt answer from a hang (canWatch: ~4.5 s).
SERVED_S = (TIMEOUT_MS + 100) / 1000
SEEN_S = 2.0


codec = IdCodec(SECRET)


def slot_of(user: str) -> int:
    return key_slot(user.encode())


def users_by_primary(cluster: ClusterTopology, per_primary: int) -> dict[int, list[str]]:
    """Issued user ids, ``per_primary`` on each primary."""
    primaries = cluster.primaries()
    found: dict[int, list[str]] = {p.port: [] for p in primaries}
    while any(len(users) < per_primary for users in found.values()):
        user = codec.issue("user")
        port = next(p.port for p in primaries if p.owns(slot_of(user)))
        if len(found[port]) < per_primary:
            found[port].append(user)
    return found


def exact_race(service: Authsvc, user: str) -> int:
    """40 activations of one user at once; how many were admitted (and agree with /active)."""
    streams = [codec.issue("stream") for _ in range(AT_ONCE)]
    replies = fire_at_once(service.port, [activation(user, s) for s in streams])
    statuses = [status for status, _ in replies]
    assert set(statuses) <= {200, 403}, statuses
    client = Client(service.url)
    active = {a["streamId"] for a in client.active(user).json()["streams"]}
    client.close()
    assert active == {s for s, status in zip(streams, statuses, strict=True) if status == 200}
    return statuses.count(200)


def wait_for_requests(load: Load, count: int, timeout: float = 30.0) -> None:
    assert until(lambda: len(load.outcomes) >= count, timeout), (
        f"only {len(load.outcomes)} requests in {timeout} s"
    )


def wait_short(service: Authsvc) -> float:
    text = requests.get(f"{service.url}/metrics", timeout=5).text
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "authsvc_redis_wait_short_total"
    )
