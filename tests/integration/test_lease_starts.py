"""When a lease started: the activation that admits a stream the user did not hold records
its start (Redis's clock), every refresh keeps it, and the lease's end removes it. Each lease
the API lists carries it as ``startedAt``; a lease from before starts were kept has none.
Through a real authsvc on every Redis topology."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from harness import Authsvc, AuthsvcFactory, Client, Topology, past_the_refresh
from topologies import ClusterTopology
from until import until

pytestmark = pytest.mark.every_topology

TTL_MS = 120_000  # the default lease TTL
TOKEN = {"Authorization": "Bearer admin-token-for-tests"}


def activate(client: Client, user: str, stream: str, device: str | None = None) -> requests.Response:
    headers = {"x-userid": user, **({"x-device-id": device} if device else {})}
    r = client.http.patch(f"{client.base}/streams/{stream}/activate", headers=headers, timeout=5)
    assert r.status_code == 200, r.text
    return r


def began(activation: requests.Response, ttl_ms: int = TTL_MS) -> int:
    """The start an admitting activation recorded: Redis read one clock for it and for the
    answer's expiresAt."""
    expires = activation.json()["expiresAt"]
    assert isinstance(expires, int)
    return expires - ttl_ms


def listed(client: Client, user: str) -> dict[str, dict[str, Any]]:
    """stream id -> the user's lease as /streams/active lists it."""
    r = client.active(user)
    assert r.status_code == 200, r.text
    return {s["streamId"]: s for s in r.json()["streams"]}


def starts_key(service: Authsvc, user: str) -> str:
    return f"{service.env['AUTHSVC_KEY_PREFIX']}{{{user}}}:starts"


def has_start(topology: Topology, service: Authsvc, user: str, stream: str) -> bool:
    return topology.command("HEXISTS", starts_key(service, user), stream) == "1"


def test_the_start_survives_heartbeats_gate_fetches_and_reactivation(client: Client) -> None:
    user, stream = client.new_user(), client.new_stream()
    start = began(activate(client, user, stream))
    lease = listed(client, user)[stream]
    assert (lease["startedAt"], lease["refreshedAt"]) == (start, start)

    gate = {"X-Original-URI": f"/watch/{stream}/demo/seg1.ts", "x-userid": user}
    refreshes: dict[str, Callable[[], requests.Response]] = {
        "heartbeat": lambda: client.heartbeat(user, stream),
        "gate fetch": lambda: client.http.get(f"{client.base}/_authz", headers=gate, timeout=5),
        "activation again": lambda: activate(client, user, stream),
        "heartbeat with a device": lambda: client.http.patch(
            f"{client.base}/streams/{stream}/heartbeat",
            headers={"x-userid": user, "x-device-id": "tv"},
            timeout=5,
        ),
        "activation again on its device": lambda: activate(client, user, stream, "tv"),
    }
    refreshed = start
    for what, refresh in refreshes.items():
        past_the_refresh(client, user)  # the clock has moved since the last refresh
        r = refresh()
        assert r.status_code in (200, 204), (what, r.text)
        lease = listed(client, user)[stream]
        assert lease["refreshedAt"] > refreshed, what
        assert lease["startedAt"] == start, what
        refreshed = lease["refreshedAt"]
    assert activate(client, user, stream).json()["outcome"] == "refreshed"


def test_deactivate_then_activate_starts_a_new_lease(
    authsvc: Authsvc, client: Client, topology: Topology
) -> None:
    user, stream = client.new_user(), client.new_stream()
    first = began(activate(client, user, stream))
    past_the_refresh(client, user)
    assert client.deactivate(user, stream).json()["wasActive"] is True
    assert not has_start(topology, authsvc, user, stream)
    again = activate(client, user, stream)
    assert again.json()["outcome"] == "admitted"
    assert listed(client, user)[stream]["startedAt"] == began(again) > first


def test_a_device_replacement_gives_the_new_stream_its_own_start(
    authsvc: Authsvc, client: Client, topology: Topology
) -> None:
    user, old, new, other = client.new_user(), client.new_stream(), client.new_stream(), client.new_stream()
    first = began(activate(client, user, old, "tv"))
    kept = began(activate(client, user, other, "phone"))
    past_the_refresh(client, user)
    switched = activate(client, user, new, "tv")
    assert switched.json()["replaced"] == [old]
    leases = listed(client, user)
    assert {s: lease["startedAt"] for s, lease in leases.items()} == {new: began(switched), other: kept}
    assert began(switched) > first
    assert not has_start(topology, authsvc, user, old)  # ended with its lease


def test_the_refusal_lists_each_lease_with_its_start(client: Client) -> None:
    user = client.new_user()
    streams = [client.new_stream() for _ in range(4)]
    starts = {}
    for stream in streams[:3]:
        starts[stream] = began(activate(client, user, stream))
        past_the_refresh(client, user)
    r = client.activate(user, streams[3])
    assert r.status_code == 403, r.text
    shown = {s["streamId"]: (s["startedAt"], s["refreshedAt"]) for s in r.json()["activeStreams"]}
    assert shown == {s: (start, start) for s, start in starts.items()}


def test_the_admin_listing_shows_each_start(client: Client) -> None:
    user, stream = client.new_user(), client.new_stream()
    start = began(activate(client, user, stream, "tv"))
    r = client.http.get(f"{client.base}/admin/users/{user}/streams", headers=TOKEN, timeout=5)
    assert r.status_code == 200, r.text
    assert [(s["streamId"], s["startedAt"], s["deviceId"]) for s in r.json()["streams"]] == [
        (stream, start, "tv")
    ]


def test_eviction_and_ending_all_remove_the_starts(start_authsvc: AuthsvcFactory, topology: Topology) -> None:
    service = start_authsvc(limit_policy="evict_oldest", admin_token="admin-token-for-tests")
    client = Client(service.url)
    user = client.new_user()
    streams = [client.new_stream() for _ in range(4)]
    for stream in streams[:3]:
        activate(client, user, stream)
        past_the_refresh(client, user)
    fourth = activate(client, user, streams[3])
    assert fourth.json()["evicted"] == [streams[0]]
    assert not has_start(topology, service, user, streams[0])
    assert listed(client, user)[streams[3]]["startedAt"] == began(fourth)
    r = client.http.delete(f"{client.base}/admin/users/{user}/streams", headers=TOKEN, timeout=5)
    assert r.json()["ended"] == 3
    assert topology.command("EXISTS", starts_key(service, user)) == "0"
    client.close()


def test_an_expired_lease_leaves_no_start_and_a_new_one_starts_afresh(
    start_authsvc: AuthsvcFactory, topology: Topology
) -> None:
    service = start_authsvc(lease_ttl_s=1)
    client = Client(service.url)
    user, expiring, fresh = client.new_user(), client.new_stream(), client.new_stream()
    first = began(activate(client, user, expiring), 1000)
    # The starts live the TTL and a counting bucket (an eighth of it) from the activation.
    assert 0 < int(topology.command("PTTL", starts_key(service, user))) <= 1000 + 1000 // 8
    assert until(lambda: time.time() * 1000 > first + 1000 + 5, timeout=5, step=0.01)
    # The next activation drops the expired lease, and its start with it.
    later = activate(client, user, fresh)
    assert not has_start(topology, service, user, expiring)
    # The same stream again is a new lease, with a start of its own.
    again = activate(client, user, expiring)
    assert again.json()["outcome"] == "admitted"
    leases = listed(client, user)
    assert leases[expiring]["startedAt"] == began(again, 1000) > first
    assert leases[fresh]["startedAt"] == began(later, 1000)
    client.close()


def test_a_lease_kept_alive_by_refreshes_alone_keeps_its_start_past_its_ttl(
    start_authsvc: AuthsvcFactory, topology: Topology
) -> None:
    ttl_ms = 2000
    service = start_authsvc(lease_ttl_s=ttl_ms / 1000)
    client = Client(service.url)
    user, stream = client.new_user(), client.new_stream()
    start = began(activate(client, user, stream), ttl_ms)
    gate = {"X-Original-URI": f"/watch/{stream}/demo/seg1.ts", "x-userid": user}
    # Heartbeats and gated fetches only, for more than twice the lease's life: most stay
    # in their counting bucket and leave the starts' expiry alone.
    refreshes = 0
    while time.time() * 1000 < start + 2.5 * ttl_ms:
        if refreshes % 2:
            assert client.heartbeat(user, stream).status_code == 200
        else:
            assert client.http.get(f"{client.base}/_authz", headers=gate, timeout=5).status_code == 204
        refreshes += 1
        time.sleep(0.05)
    lease = listed(client, user)[stream]
    assert lease["startedAt"] == start and lease["refreshedAt"] > start + 2 * ttl_ms, lease
    assert int(topology.command("PTTL", starts_key(service, user))) > 0
    client.close()


def test_a_lease_from_before_starts_were_kept_gets_no_invented_start(
    authsvc: Authsvc, client: Client, topology: Topology
) -> None:
    user, old, new = client.new_user(), client.new_stream(), client.new_stream()
    activate(client, user, old)
    # What a lease admitted by the release before looks like: no start beside it.
    assert topology.command("DEL", starts_key(authsvc, user)) == "1"
    assert "startedAt" not in listed(client, user)[old]
    past_the_refresh(client, user)
    assert client.heartbeat(user, old).status_code == 200
    assert activate(client, user, old).json()["outcome"] == "refreshed"
    start = began(activate(client, user, new))
    leases = listed(client, user)
    assert "startedAt" not in leases[old]  # refreshes never invent one
    assert leases[new]["startedAt"] == start
    third = client.new_stream()
    third_start = began(activate(client, user, third))
    r = client.activate(user, client.new_stream())
    assert r.status_code == 403, r.text
    shown = {s["streamId"]: s.get("startedAt", "none") for s in r.json()["activeStreams"]}
    assert shown == {old: "none", new: start, third: third_start}


def test_the_starts_share_the_users_slot_and_live_as_long_as_the_leases(
    authsvc: Authsvc, client: Client, topology: Topology
) -> None:
    user, stream = client.new_user(), client.new_stream()
    start = began(activate(client, user, stream))
    key = starts_key(authsvc, user)
    assert topology.command("HGET", key, stream) == str(start)
    # The leases' life and one counting bucket (an eighth of the TTL) more.
    assert TTL_MS < int(topology.command("PTTL", key)) <= TTL_MS + TTL_MS // 8
    if isinstance(topology, ClusterTopology):
        streams = f"{authsvc.env['AUTHSVC_KEY_PREFIX']}{{{user}}}:streams"
        assert topology.command("CLUSTER", "KEYSLOT", key) == topology.command("CLUSTER", "KEYSLOT", streams)
