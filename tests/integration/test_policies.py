"""Lease lifetime and what happens at the limit, through the API of a real authsvc."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import AuthsvcFactory, Client, Topology
from until import until

pytestmark = pytest.mark.every_topology


def metric(client: Client, name: str, **labels: str) -> float:
    text = client.http.get(f"{client.base}/metrics", timeout=5).text
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_expired_leases_free_their_slot(start_authsvc: AuthsvcFactory) -> None:
    # A TTL long enough for four activations on a loaded machine, short enough to wait for.
    client = Client(start_authsvc(lease_ttl_s=3).url)
    user = client.new_user()
    streams = [client.new_stream() for _ in range(4)]
    for s in streams[:3]:
        assert client.activate(user, s).status_code == 200
    assert client.activate(user, streams[3]).status_code == 403
    assert until(lambda: client.active(user).json()["streams"] == [])
    assert client.activate(user, streams[3]).status_code == 200
    r = client.heartbeat(user, streams[0])
    assert (r.status_code, r.json()["error"]) == (404, "Lease Not Found")


def test_heartbeat_keeps_a_lease_past_its_ttl(start_authsvc: AuthsvcFactory) -> None:
    ttl = 1.5
    client = Client(start_authsvc(lease_ttl_s=ttl).url)
    user, stream = client.new_user(), client.new_stream()
    client.activate(user, stream)
    started = time.monotonic()
    while time.monotonic() - started < 2.5 * ttl:  # a heartbeat every TTL/5
        time.sleep(ttl / 5)
        assert client.heartbeat(user, stream).status_code == 200
    assert [s["streamId"] for s in client.active(user).json()["streams"]] == [stream]


def test_ttl_zero_never_expires(start_authsvc: AuthsvcFactory, topology: Topology) -> None:
    service = start_authsvc(lease_ttl_s=0)
    client = Client(service.url)
    user, stream = client.new_user(), client.new_stream()
    body = client.activate(user, stream).json()
    assert body["expiresAt"] is None
    key = service.env["AUTHSVC_KEY_PREFIX"] + "{" + user + "}:streams"
    assert topology.command("PTTL", key) == "-1"
    assert client.active(user).json()["streams"][0]["expiresAt"] is None


def test_the_lease_key_expires_with_its_newest_lease(
    start_authsvc: AuthsvcFactory, topology: Topology
) -> None:
    service = start_authsvc(lease_ttl_s=30)
    client = Client(service.url)
    user, stream = client.new_user(), client.new_stream()
    client.activate(user, stream)
    key = service.env["AUTHSVC_KEY_PREFIX"] + "{" + user + "}:streams"
    assert 29_000 < int(topology.command("PTTL", key)) <= 30_000


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


def test_moving_to_leases_that_never_expire_keeps_them(
    start_authsvc: AuthsvcFactory, topology: Topology
) -> None:
    env = {"key_prefix": "ttlswitch:"}
    # Both deploys run before the lease is made: how long the second takes to start must
    # not decide whether the short lease is still alive when it is refreshed.
    short = Client(start_authsvc(lease_ttl_s=2, **env).url)
    forever = Client(start_authsvc(lease_ttl_s=0, **env).url)  # the next deploy
    user, stream = short.new_user(), short.new_stream()
    assert short.activate(user, stream).json()["outcome"] == "admitted"
    refreshed = forever.activate(user, stream)
    assert refreshed.json()["outcome"] == "refreshed", refreshed.text
    # Past the short deploy's TTL: the key (and the lease) must have outlived it.
    time.sleep(2.5)
    assert topology.command("PTTL", "ttlswitch:{" + user + "}:streams") == "-1"
    assert [s["streamId"] for s in forever.active(user).json()["streams"]] == [stream]


def test_evicting_thousands_after_a_lowered_limit(start_authsvc: AuthsvcFactory, topology: Topology) -> None:
    service = start_authsvc(limit_policy="evict_oldest", admin_token="admin-token-for-tests")
    client = Client(service.url)
    user, stream = client.new_user(), client.new_stream()
    key = service.env["AUTHSVC_KEY_PREFIX"] + "{" + user + "}:streams"
    now_ms = int(time.time() * 1000)
    members = [arg for i in range(9000) for arg in (str(now_ms - 9000 + i), f"old{i}")]
    topology.command("ZADD", key, *members)  # more than Lua can unpack at once
    r = client.activate(user, stream)
    assert r.status_code == 200 and r.json()["outcome"] == "evicted"
    assert len(r.json()["evicted"]) == 9000 - 3 + 1
    assert len(client.active(user).json()["streams"]) == 3


def test_a_refusal_lists_at_most_100_streams(start_authsvc: AuthsvcFactory, topology: Topology) -> None:
    service = start_authsvc(max_streams=150)
    client = Client(service.url)
    user = client.new_user()
    key = service.env["AUTHSVC_KEY_PREFIX"] + "{" + user + "}:streams"
    now_ms = int(time.time() * 1000)
    topology.command("ZADD", key, *[a for i in range(150) for a in (str(now_ms), f"s{i}")])
    body = client.activate(user, client.new_stream()).json()
    assert body["error"] == "Stream Limit Reached" and len(body["activeStreams"]) == 100


def test_a_limit_that_is_not_a_number_counts_as_absent(
    start_authsvc: AuthsvcFactory, topology: Topology
) -> None:
    service = start_authsvc(max_streams=1)
    client = Client(service.url)
    user = client.new_user()
    topology.command("SET", service.env["AUTHSVC_KEY_PREFIX"] + "{" + user + "}:limit", "lots")
    assert client.activate(user, client.new_stream()).status_code == 200
    assert client.activate(user, client.new_stream()).json()["limit"] == 1
    assert client.active(user).json()["limit"] == 1


def test_a_broken_key_is_a_500_for_that_user_not_redis_down(
    start_authsvc: AuthsvcFactory, topology: Topology
) -> None:
    service = start_authsvc()
    client = Client(service.url)
    user, other = client.new_user(), client.new_user()
    topology.command("SET", service.env["AUTHSVC_KEY_PREFIX"] + "{" + user + "}:streams", "not a zset")
    r = client.activate(user, client.new_stream())
    assert r.status_code == 500 and r.json() == {"status": "ko", "error": "Internal Server Error"}
    assert client.activate(other, client.new_stream()).status_code == 200
    assert metric(client, "authsvc_redis_up") == 1
    assert metric(client, "authsvc_http_requests_total", status="500") == 1
