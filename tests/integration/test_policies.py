"""Lease lifetime and what happens at the limit, through the API of a real authsvc."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from conftest import AuthsvcFactory
from harness import Client, RedisServer


def metric(client: Client, name: str, **labels: str) -> float:
    text = client.http.get(f"{client.base}/metrics", timeout=5).text
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_expired_leases_free_their_slot(start_authsvc: AuthsvcFactory) -> None:
    client = Client(start_authsvc(lease_ttl_s=0.5).url)
    user = client.new_user()
    streams = [client.new_stream() for _ in range(4)]
    for s in streams[:3]:
        assert client.activate(user, s).status_code == 200
    assert client.activate(user, streams[3]).status_code == 403
    time.sleep(0.7)
    assert client.active(user).json()["streams"] == []
    assert client.activate(user, streams[3]).status_code == 200
    r = client.heartbeat(user, streams[0])
    assert (r.status_code, r.json()["error"]) == (404, "Lease Not Found")


def test_heartbeat_keeps_a_lease_past_its_ttl(start_authsvc: AuthsvcFactory) -> None:
    client = Client(start_authsvc(lease_ttl_s=0.6).url)
    user, stream = client.new_user(), client.new_stream()
    client.activate(user, stream)
    for _ in range(5):  # 1.5 s: 2.5 TTLs
        time.sleep(0.3)
        assert client.heartbeat(user, stream).status_code == 200
    assert [s["streamId"] for s in client.active(user).json()["streams"]] == [stream]


def test_ttl_zero_never_expires(start_authsvc: AuthsvcFactory, redis_server: RedisServer) -> None:
    service = start_authsvc(lease_ttl_s=0)
    client = Client(service.url)
    user, stream = client.new_user(), client.new_stream()
    body = client.activate(user, stream).json()
    assert body["expiresAt"] is None
    key = service.env["AUTHSVC_KEY_PREFIX"] + "{" + user + "}:streams"
    assert redis_server.command("PTTL", key) == "-1"
    assert client.active(user).json()["streams"][0]["expiresAt"] is None


def test_the_lease_key_expires_with_its_newest_lease(
    start_authsvc: AuthsvcFactory, redis_server: RedisServer
) -> None:
    service = start_authsvc(lease_ttl_s=30)
    client = Client(service.url)
    user, stream = client.new_user(), client.new_stream()
    client.activate(user, stream)
    key = service.env["AUTHSVC_KEY_PREFIX"] + "{" + user + "}:streams"
    assert 29_000 < int(redis_server.command("PTTL", key)) <= 30_000


def test_evict_oldest_ends_the_lease_idle_longest(start_authsvc: AuthsvcFactory) -> None:
    client = Client(start_authsvc(limit_policy="evict_oldest").url)
    user = client.new_user()
    s = [client.new_stream() for _ in range(4)]
    for stream in s[:3]:
        client.activate(user, stream)
    client.heartbeat(user, s[0])  # s[1] is now the one idle longest
    r = client.activate(user, s[3])
    assert r.status_code == 200
    assert r.json()["outcome"] == "evicted" and r.json()["evicted"] == [s[1]]
    assert [x["streamId"] for x in client.active(user).json()["streams"]] == [s[2], s[0], s[3]]
    assert metric(client, "authsvc_evictions_total") == 1


def test_shadow_mode_decides_counts_and_never_denies(start_authsvc: AuthsvcFactory) -> None:
    client = Client(start_authsvc(enforce=False).url)
    user = client.new_user()
    s = [client.new_stream() for _ in range(5)]
    outcomes = [client.activate(user, stream).json()["outcome"] for stream in s]
    assert outcomes == ["admitted"] * 3 + ["shadow"] * 2
    assert metric(client, "authsvc_decisions_total", kind="activate", outcome="shadow_denied") == 2
    assert len(client.active(user).json()["streams"]) == 5


def test_the_default_limit_is_a_setting(start_authsvc: AuthsvcFactory) -> None:
    client = Client(start_authsvc(max_streams=1).url)
    user = client.new_user()
    assert client.activate(user, client.new_stream()).status_code == 200
    r = client.activate(user, client.new_stream())
    assert r.status_code == 403 and r.json()["limit"] == 1


def test_a_limit_of_zero_refuses_even_with_evict_oldest(start_authsvc: AuthsvcFactory) -> None:
    client = Client(start_authsvc(max_streams=0, limit_policy="evict_oldest").url)
    r = client.activate(client.new_user(), client.new_stream())
    assert r.status_code == 403 and r.json()["activeStreams"] == []
