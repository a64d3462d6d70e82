"""Devices: x-device-id groups a user's own leases. One stream per device (a device that
activates a stream ends its other lease in the same script), and AUTHSVC_LIMIT_BY=device
(the limit counts devices). Through the API and the gate of a real authsvc, on every
Redis topology; the races send their requests truly at once."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests

from harness import Authsvc, AuthsvcFactory, Client, Topology, raw_request
from races import AT_ONCE, activation, fire_at_once
from topologies import ClusterTopology

pytestmark = pytest.mark.every_topology

TOKEN = {"Authorization": "Bearer admin-token-for-tests"}


def activate(client: Client, user: str, stream: str, device: str | None = None) -> requests.Response:
    headers = {"x-userid": user, **({"x-device-id": device} if device else {})}
    return client.http.patch(f"{client.base}/streams/{stream}/activate", headers=headers, timeout=5)


def gate(client: Client, user: str, stream: str, device: str | None = None) -> requests.Response:
    headers = {"X-Original-URI": f"/watch/{stream}/demo/seg1.ts", "x-userid": user}
    if device:
        headers["x-device-id"] = device
    return client.http.get(f"{client.base}/_authz", headers=headers, timeout=5)


def leases(client: Client, user: str) -> dict[str, Any]:
    """stream id -> device id of the user's live leases."""
    return {s["streamId"]: s.get("deviceId") for s in client.active(user).json()["streams"]}


def replacements(client: Client) -> float:
    text = client.http.get(f"{client.base}/metrics", timeout=5).text
    lines = [line for line in text.splitlines() if line.startswith("authsvc_device_replacements_total ")]
    return float(lines[0].split()[1])


def test_a_device_that_starts_a_stream_replaces_its_other_one(client: Client) -> None:
    user, first, second, other = (
        client.new_user(),
        client.new_stream(),
        client.new_stream(),
        client.new_stream(),
    )
    before = replacements(client)
    r = activate(client, user, first, "tv-1")
    assert r.status_code == 200, r.text
    assert (r.json()["deviceId"], r.json()["replaced"]) == ("tv-1", [])
    assert activate(client, user, other, "phone-2").status_code == 200
    r = activate(client, user, second, "tv-1")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["outcome"], body["deviceId"], body["replaced"], body["active"]) == (
        "admitted",
        "tv-1",
        [first],
        2,
    )
    assert leases(client, user) == {second: "tv-1", other: "phone-2"}
    assert replacements(client) == before + 1
    # The replaced stream is refused at once, at the gate and on heartbeat.
    assert gate(client, user, first).headers["x-error-status"] == "403"
    assert client.heartbeat(user, first).status_code == 404


def test_the_replaced_lease_frees_its_slot_at_the_limit(client: Client) -> None:
    user = client.new_user()
    streams = [client.new_stream() for _ in range(4)]
    for stream, device in zip(streams[:3], ("a", "b", "c"), strict=True):
        assert activate(client, user, stream, device).status_code == 200
    # At the limit of 3, the channel switch of device a is admitted, not refused.
    r = activate(client, user, streams[3], "a")
    assert r.status_code == 200 and r.json()["replaced"] == [streams[0]], r.text
    refused = activate(client, user, client.new_stream(), "d")
    assert refused.status_code == 403
    assert {s["streamId"]: s.get("deviceId") for s in refused.json()["activeStreams"]} == {
        streams[1]: "b",
        streams[2]: "c",
        streams[3]: "a",
    }


def test_without_a_device_id_nothing_is_replaced(client: Client) -> None:
    user, first, second = client.new_user(), client.new_stream(), client.new_stream()
    for stream in (first, second):
        body = activate(client, user, stream).json()
        # The bodies of clients that name no device are the ones they always got.
        assert "deviceId" not in body and "replaced" not in body and "activeDevices" not in body
    assert leases(client, user) == {first: None, second: None}
    assert all("deviceId" not in s for s in client.active(user).json()["streams"])


def test_re_activating_the_same_stream_on_its_device_replaces_nothing(client: Client) -> None:
    user, stream = client.new_user(), client.new_stream()
    assert activate(client, user, stream, "tv").status_code == 200
    body = activate(client, user, stream, "tv").json()
    assert (body["outcome"], body["replaced"]) == ("refreshed", [])
    assert leases(client, user) == {stream: "tv"}


def test_replacement_can_be_turned_off(start_authsvc: AuthsvcFactory) -> None:
    client = Client(start_authsvc(device_replaces=False).url)
    user, first, second = client.new_user(), client.new_stream(), client.new_stream()
    assert activate(client, user, first, "tv").status_code == 200
    body = activate(client, user, second, "tv").json()
    assert body["replaced"] == []
    assert leases(client, user) == {first: "tv", second: "tv"}


def test_the_gate_gives_a_lease_without_a_device_to_the_device_that_plays_it(client: Client) -> None:
    user, first, second = client.new_user(), client.new_stream(), client.new_stream()
    assert activate(client, user, first).status_code == 200
    assert gate(client, user, first, "browser-1").status_code == 204
    assert leases(client, user) == {first: "browser-1"}
    # Its device does not change at the gate, and the gate replaces nothing.
    assert activate(client, user, second, "tv").status_code == 200
    assert gate(client, user, first, "tv").status_code == 204
    assert leases(client, user) == {first: "browser-1", second: "tv"}
    # The next activation on that browser replaces the lease it plays.
    body = activate(client, user, client.new_stream(), "browser-1").json()
    assert body["replaced"] == [first]


def test_the_devices_of_a_user_share_the_users_slot_and_expire_with_the_leases(
    authsvc: Authsvc, client: Client, topology: Topology
) -> None:
    user, stream = client.new_user(), client.new_stream()
    assert activate(client, user, stream, "tv").status_code == 200
    prefix = authsvc.env["AUTHSVC_KEY_PREFIX"]
    devices = f"{prefix}{{{user}}}:devices"
    assert topology.command("HGET", devices, stream) == "tv"
    assert 0 < int(topology.command("PTTL", devices)) <= 120_000
    if isinstance(topology, ClusterTopology):
        streams = f"{prefix}{{{user}}}:streams"
        assert topology.command("CLUSTER", "KEYSLOT", devices) == topology.command(
            "CLUSTER", "KEYSLOT", streams
        )


def test_the_admin_api_shows_each_leases_device(client: Client) -> None:
    user, first, second = client.new_user(), client.new_stream(), client.new_stream()
    activate(client, user, first, "tv")
    activate(client, user, second)
    r = client.http.get(f"{client.base}/admin/users/{user}/streams", headers=TOKEN, timeout=5)
    assert r.status_code == 200
    assert {s["streamId"]: s.get("deviceId") for s in r.json()["streams"]} == {first: "tv", second: None}
    assert "limitBy" not in r.json()  # only when the limit counts devices


@pytest.mark.parametrize(
    "device",
    [b"x" * 65, b"a b", b"dev/1", b"d\xc3\xa9v", b"{tag}"],
    ids=["too-long", "space", "slash", "non-ascii", "braces"],
)
def test_a_malformed_device_id_is_400_json(authsvc: Authsvc, client: Client, device: bytes) -> None:
    user, stream = client.new_user(), client.new_stream()
    error = b'"error":"Malformed x-device-id header: 1 to 64 of A-Z a-z 0-9 _ . : -"'
    for op in ("activate", "heartbeat"):
        status, body = raw_request(
            authsvc.port,
            "PATCH",
            f"/streams/{stream}/{op}",
            {"x-userid": user.encode(), "x-device-id": device},
        )
        assert (status, error in body) == (400, True), body
    headers = {
        "x-userid": user.encode(),
        "x-device-id": device,
        "X-Original-URI": f"/watch/{stream}/a".encode(),
    }
    status, body = raw_request(authsvc.port, "GET", "/_authz", headers)
    assert (status, error in body) == (403, True), body
    assert leases(client, user) == {}


def test_an_empty_device_id_is_none(client: Client) -> None:
    user, stream = client.new_user(), client.new_stream()
    r = client.http.patch(
        f"{client.base}/streams/{stream}/activate", headers={"x-userid": user, "x-device-id": ""}, timeout=5
    )
    assert r.status_code == 200 and "deviceId" not in r.json()


# The races: requests written on their own connections, their last bytes sent together.


def test_one_device_racing_itself_on_two_streams_ends_with_one_lease(authsvc: Authsvc) -> None:
    client = Client(authsvc.url)
    for _ in range(5):
        user, first, second = client.new_user(), client.new_stream(), client.new_stream()
        sends = [activation(user, (first, second)[i % 2], "tv") for i in range(AT_ONCE)]
        replies = fire_at_once(authsvc.port, sends)
        assert [status for status, _ in replies] == [200] * AT_ONCE
        held = leases(client, user)
        assert len(held) == 1 and set(held.values()) == {"tv"}, held
        # Every replacement is named once, by the activation that made it.
        replaced = [s for _, body in replies for s in body["replaced"]]  # type: ignore[attr-defined]
        assert set(replaced) | set(held) <= {first, second}
        assert len(replaced) == sum(1 for _, body in replies if body["outcome"] == "admitted") - 1
    client.close()


def test_two_devices_racing_for_the_last_slot_get_it_for_one_device_only(authsvc: Authsvc) -> None:
    client = Client(authsvc.url)
    for _ in range(5):
        user = client.new_user()
        holding = [client.new_stream() for _ in range(2)]
        for stream, device in zip(holding, ("x", "y"), strict=True):
            assert activate(client, user, stream, device).status_code == 200
        streams = [client.new_stream() for _ in range(AT_ONCE)]
        devices = ["a" if i % 2 else "b" for i in range(AT_ONCE)]
        replies = fire_at_once(
            authsvc.port, [activation(user, s, d) for s, d in zip(streams, devices, strict=True)]
        )
        statuses = [status for status, _ in replies]
        assert set(statuses) <= {200, 403}, statuses
        winners = {d for d, status in zip(devices, statuses, strict=True) if status == 200}
        assert len(winners) == 1, winners  # the last slot went to one device
        held = leases(client, user)
        assert len(held) == 3 and held[holding[0]] == "x" and held[holding[1]] == "y", held
        (won,) = set(held) - set(holding)
        assert held[won] in winners
    client.close()


def test_without_replacement_two_devices_get_exactly_the_last_slot(start_authsvc: AuthsvcFactory) -> None:
    service = start_authsvc(device_replaces=False)
    client = Client(service.url)
    for _ in range(5):
        user = client.new_user()
        assert activate(client, user, client.new_stream(), "x").status_code == 200
        streams = [client.new_stream() for _ in range(AT_ONCE)]
        sends = [activation(user, s, "a" if i % 2 else "b") for i, s in enumerate(streams)]
        statuses = [status for status, _ in fire_at_once(service.port, sends)]
        assert sorted(statuses) == [200] * 2 + [403] * (AT_ONCE - 2)
        assert len(leases(client, user)) == 3
    client.close()


# AUTHSVC_LIMIT_BY=device: the limit counts the user's devices.


def test_limit_by_device_counts_devices_and_a_lease_without_one_as_its_own(
    start_authsvc: AuthsvcFactory,
) -> None:
    client = Client(start_authsvc(limit_by="device", max_streams=2, device_replaces=False).url)
    user = client.new_user()
    streams = [client.new_stream() for _ in range(5)]
    # Device a watches two streams (one device), b one: two devices, at the limit of 2.
    for stream, device in zip(streams[:3], ("a", "a", "b"), strict=True):
        r = activate(client, user, stream, device)
        assert r.status_code == 200, r.text
    assert (r.json()["active"], r.json()["activeDevices"]) == (3, 2)
    # A third device, or a lease without a device (a device of its own), is refused.
    assert activate(client, user, streams[3], "c").status_code == 403
    refused = activate(client, user, streams[3])
    assert refused.status_code == 403 and refused.json()["limitBy"] == "device"
    # A device already counted may add a stream.
    assert activate(client, user, streams[4], "b").json()["activeDevices"] == 2
    assert client.active(user).json()["limitBy"] == "device"


def test_limit_by_device_moves_no_stream_to_a_device_over_the_limit(start_authsvc: AuthsvcFactory) -> None:
    client = Client(start_authsvc(limit_by="device", max_streams=2, device_replaces=False).url)
    user, first, second, third = (
        client.new_user(),
        client.new_stream(),
        client.new_stream(),
        client.new_stream(),
    )
    activate(client, user, first, "a")
    activate(client, user, second, "a")
    activate(client, user, third, "b")
    # Re-activating a's stream on a third device would make three devices: it is refreshed
    # where it was.
    body = activate(client, user, second, "c").json()
    assert (body["outcome"], body["activeDevices"]) == ("refreshed", 2)
    assert leases(client, user) == {first: "a", second: "a", third: "b"}


def test_limit_by_device_evicts_the_device_idle_longest(start_authsvc: AuthsvcFactory) -> None:
    client = Client(
        start_authsvc(
            limit_by="device", max_streams=2, device_replaces=False, limit_policy="evict_oldest"
        ).url
    )
    user = client.new_user()
    streams = [client.new_stream() for _ in range(4)]
    for stream, device in zip(streams[:3], ("a", "a", "b"), strict=True):
        activate(client, user, stream, device)
    body = activate(client, user, streams[3], "c").json()
    assert (body["outcome"], sorted(body["evicted"]), body["activeDevices"]) == (
        "evicted",
        sorted(streams[:2]),
        2,
    )
    assert leases(client, user) == {streams[2]: "b", streams[3]: "c"}


def test_limit_by_device_is_exact_under_a_race(start_authsvc: AuthsvcFactory) -> None:
    service = start_authsvc(limit_by="device", max_streams=3)
    client = Client(service.url)
    for _ in range(5):
        user = client.new_user()
        streams = [client.new_stream() for _ in range(AT_ONCE)]
        sends = [activation(user, s, f"device-{uuid.uuid4().hex[:8]}") for s in streams]
        statuses = [status for status, _ in fire_at_once(service.port, sends)]
        assert sorted(statuses) == [200] * 3 + [403] * (AT_ONCE - 3)
        assert len(set(leases(client, user).values())) == 3
    client.close()
