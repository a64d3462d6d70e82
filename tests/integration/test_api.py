"""Every route and outcome of the REST API against a real authsvc and redis-server."""

from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from harness import Authsvc, Client, past_the_refresh

pytestmark = pytest.mark.every_topology


def ko(r: requests.Response, status: int, error: str) -> dict[str, object]:
    """Assert the seed's error shape and return the body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["status"] == "ko"
    assert body["error"] == error
    return dict(body)


def test_new_ids_are_distinct_and_well_formed(client: Client) -> None:
    users = {client.new_user() for _ in range(5)}
    streams = {client.new_stream() for _ in range(5)}
    assert len(users) == 5 and len(streams) == 5
    assert all(len(u) == 32 for u in users | streams)


def test_activate_admits_and_reports_the_lease(client: Client) -> None:
    user, stream = client.new_user(), client.new_stream()
    r = client.activate(user, stream)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert (body["userId"], body["streamId"]) == (user, stream)
    assert body["outcome"] == "admitted"
    assert body["active"] == 1 and body["limit"] == 3
    assert isinstance(body["expiresAt"], int)


def test_post_works_like_patch(client: Client) -> None:
    user, stream = client.new_user(), client.new_stream()
    assert client.call("activate", user, stream, method="POST").json()["outcome"] == "admitted"
    assert client.call("deactivate", user, stream, method="POST").json()["wasActive"] is True


def test_activating_an_active_stream_refreshes_and_uses_no_slot(client: Client) -> None:
    user, stream = client.new_user(), client.new_stream()
    first = client.activate(user, stream).json()
    again = client.activate(user, stream)
    assert again.status_code == 200
    assert again.json()["outcome"] == "refreshed"
    assert again.json()["active"] == 1
    assert again.json()["expiresAt"] >= first["expiresAt"]


def test_fourth_stream_is_refused_with_the_active_ones(client: Client) -> None:
    user = client.new_user()
    streams = [client.new_stream() for _ in range(4)]
    for s in streams[:3]:
        assert client.activate(user, s).status_code == 200
    body = ko(client.activate(user, streams[3]), 403, "Stream Limit Reached")
    assert body["limit"] == 3
    active = body["activeStreams"]
    assert isinstance(active, list)
    assert [a["streamId"] for a in active] == streams[:3]


def test_deactivate_frees_a_slot(client: Client) -> None:
    user = client.new_user()
    streams = [client.new_stream() for _ in range(4)]
    for s in streams[:3]:
        client.activate(user, s)
    r = client.deactivate(user, streams[0])
    assert r.status_code == 200 and r.json() == {"status": "ok", "streamId": streams[0], "wasActive": True}
    assert client.activate(user, streams[3]).status_code == 200


def test_deactivating_an_inactive_stream_succeeds(client: Client) -> None:
    r = client.deactivate(client.new_user(), client.new_stream())
    assert r.status_code == 200 and r.json()["wasActive"] is False


def test_heartbeat_refreshes_a_live_lease(client: Client) -> None:
    user, stream = client.new_user(), client.new_stream()
    before = client.activate(user, stream).json()["expiresAt"]
    past_the_refresh(client, user)
    r = client.heartbeat(user, stream)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert r.json()["expiresAt"] > before
    assert client.active(user).json()["streams"][0]["expiresAt"] == r.json()["expiresAt"]


def test_heartbeat_without_a_lease_is_404(client: Client) -> None:
    ko(client.heartbeat(client.new_user(), client.new_stream()), 404, "Lease Not Found")


def test_active_lists_streams_and_limit(client: Client) -> None:
    user = client.new_user()
    streams = [client.new_stream() for _ in range(2)]
    for s in streams:
        client.activate(user, s)
    body = client.active(user).json()
    assert body["status"] == "ok" and body["userId"] == user and body["limit"] == 3
    assert [s["streamId"] for s in body["streams"]] == streams
    assert all(s["expiresAt"] > s["refreshedAt"] for s in body["streams"])


def test_ids_not_issued_here_are_invalid_data(client: Client) -> None:
    user, stream = client.new_user(), client.new_stream()
    forged = "A" * 32
    for op in ("activate", "deactivate", "heartbeat"):
        ko(client.call(op, forged, stream), 404, "Invalid Data.")
        ko(client.call(op, user, forged), 404, "Invalid Data.")
    ko(client.active(forged), 404, "Invalid Data.")


def test_a_user_id_is_not_a_stream_id(client: Client) -> None:
    user = client.new_user()
    ko(client.activate(user, user), 404, "Invalid Data.")


def test_missing_identity_is_400(client: Client) -> None:
    for op in ("activate", "deactivate", "heartbeat"):
        ko(client.call(op, None, client.new_stream()), 400, "Missing x-userid header.")
    r = client.http.get(f"{client.base}/streams/active", timeout=5)
    ko(r, 400, "Missing x-userid header.")


def test_unknown_route_and_wrong_method_are_json(client: Client) -> None:
    ko(client.http.get(f"{client.base}/nope", timeout=5), 404, "Not Found")
    ko(client.http.get(f"{client.base}/streams/abc/activate", timeout=5), 405, "Method Not Allowed")
    r = client.http.delete(f"{client.base}/users/newId", timeout=5)
    ko(r, 405, "Method Not Allowed")
    assert "GET" in r.headers["allow"]
    ko(client.http.get(f"{client.base}/streams/abc/activate/", timeout=5), 404, "Not Found")


def test_health_ready_root(client: Client) -> None:
    assert client.http.get(f"{client.base}/healthz", timeout=5).json() == {"status": "ok"}
    assert client.http.get(f"{client.base}/readyz", timeout=5).json() == {"status": "ok", "redis": "up"}
    root = client.http.get(f"{client.base}/", timeout=5).json()
    assert root["name"] == "canwatch-authsvc" and root["version"]


def test_openapi_describes_every_route(client: Client) -> None:
    spec = client.http.get(f"{client.base}/openapi.json", timeout=5).json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    expected = {
        "/": {"get"}, "/healthz": {"get"}, "/readyz": {"get"}, "/metrics": {"get"},
        "/openapi.json": {"get"}, "/users/newId": {"get"}, "/streams/newId": {"get"},
        "/streams/active": {"get"}, "/_authz": {"get", "head"},
        "/streams/{streamId}/activate": {"patch", "post"},
        "/streams/{streamId}/deactivate": {"patch", "post"},
        "/streams/{streamId}/heartbeat": {"patch", "post"},
        "/admin/users/{userId}/limit": {"put", "delete"},
        "/admin/users/{userId}/streams": {"get", "delete"},
        "/admin/users/{userId}/streams/{streamId}": {"delete"},
    }  # fmt: skip
    assert {p: set(ops) for p, ops in paths.items()} == expected
    activate = paths["/streams/{streamId}/activate"]["patch"]["responses"]
    assert set(activate) == {"200", "400", "401", "403", "404", "503"}
    assert "activeStreams" in activate["403"]["content"]["application/json"]["schema"]["properties"]


def test_metrics_parse_and_count_decisions(authsvc: Authsvc, client: Client) -> None:
    user = client.new_user()
    streams = [client.new_stream() for _ in range(4)]
    for s in streams:
        client.activate(user, s)
    text = client.http.get(f"{client.base}/metrics", timeout=5).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "authsvc_http_requests", "authsvc_http_request_duration_seconds", "authsvc_decisions",
        "authsvc_evictions", "authsvc_redis_errors", "authsvc_redis_up", "authsvc_build_info",
    ):  # fmt: skip
        assert name in families, name

    def value(family: str, **labels: str) -> float:
        return sum(
            s.value
            for s in families[family].samples
            if s.name.endswith("_total") and all(s.labels.get(k) == v for k, v in labels.items())
        )

    assert value("authsvc_decisions", kind="activate", outcome="limit") >= 1
    assert value("authsvc_decisions", kind="activate", outcome="allowed") >= 3
    route = "/streams/{stream_id}/activate"
    assert value("authsvc_http_requests", route=route, status="403") >= 1
    up = [s.value for s in families["authsvc_redis_up"].samples]
    assert up == [1.0]
