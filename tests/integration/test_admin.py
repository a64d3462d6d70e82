"""The operator API: per-user limits, listing and ending a user's streams."""

from __future__ import annotations

import pytest
import requests

from harness import AuthsvcFactory, Client

TOKEN = {"Authorization": "Bearer admin-token-for-tests"}


def admin(client: Client, method: str, path: str, **kwargs: object) -> requests.Response:
    kwargs.setdefault("headers", TOKEN)
    return client.http.request(method, f"{client.base}/admin/users/{path}", timeout=5, **kwargs)  # type: ignore[arg-type]


def test_a_users_own_limit_wins_and_clears(client: Client) -> None:
    user = client.new_user()
    r = admin(client, "PUT", f"{user}/limit", json={"limit": 1})
    assert r.status_code == 200 and r.json() == {"status": "ok", "userId": user, "limit": 1}
    assert client.activate(user, client.new_stream()).status_code == 200
    refused = client.activate(user, client.new_stream())
    assert refused.status_code == 403 and refused.json()["limit"] == 1
    assert client.active(user).json()["limit"] == 1
    assert admin(client, "DELETE", f"{user}/limit").json()["limit"] is None
    assert client.activate(user, client.new_stream()).status_code == 200
    assert admin(client, "PUT", f"{user}/limit", json={"limit": 5}).status_code == 200
    assert admin(client, "PUT", f"{user}/limit", json={"limit": None}).json()["limit"] is None
    assert client.active(user).json()["limit"] == 3


def test_a_whole_number_written_as_a_float_is_a_limit(client: Client) -> None:
    # 2.0 is an integer to JSON Schema, which the OpenAPI document's "integer" follows.
    user = client.new_user()
    r = admin(client, "PUT", f"{user}/limit", data=b'{"limit": 2.0}')
    assert r.status_code == 200 and r.json()["limit"] == 2
    assert client.active(user).json()["limit"] == 2


def test_list_and_end_a_users_streams(client: Client) -> None:
    user = client.new_user()
    streams = [client.new_stream() for _ in range(3)]
    for s in streams:
        client.activate(user, s)
    listed = admin(client, "GET", f"{user}/streams").json()
    assert [s["streamId"] for s in listed["streams"]] == streams
    assert listed["limit"] == 3 and listed["userLimit"] is None
    kicked = admin(client, "DELETE", f"{user}/streams/{streams[0]}")
    assert kicked.status_code == 200 and kicked.json()["wasActive"] is True
    assert client.heartbeat(user, streams[0]).status_code == 404
    ended = admin(client, "DELETE", f"{user}/streams")
    assert ended.json() == {"status": "ok", "userId": user, "ended": 2}
    assert client.active(user).json()["streams"] == []


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[]", b'{"limit": -1}', b'{"limit": 10001}', b'{"limit": "3"}',
     b'{"limit": true}', b'{"limit": 1.5}', b'{"limit": 1e400}', b'{"limit": NaN}', b'{"other": 1}',
     b'{"limit": 1, "reason": "x"}', b"\xff\xfe"],
)  # fmt: skip
def test_bad_limit_bodies_are_400(client: Client, body: bytes) -> None:
    r = admin(client, "PUT", f"{client.new_user()}/limit", data=body)
    assert r.status_code == 400 and r.json()["status"] == "ko"


def test_bad_user_id_is_400(client: Client) -> None:
    r = admin(client, "GET", "a%20b/streams")
    assert r.status_code == 400 and r.json()["error"] == "Malformed user id."


@pytest.mark.parametrize(
    "auth", [None, "Bearer wrong", "Basic YWRtaW46YWRtaW4=", "Bearer ", "admin-token-for-tests"]
)
def test_without_the_token_it_is_401(client: Client, auth: str | None) -> None:
    headers = {} if auth is None else {"Authorization": auth}
    r = admin(client, "GET", f"{client.new_user()}/streams", headers=headers)
    assert r.status_code == 401 and r.json()["error"] == "Unauthorized"
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_admin_is_404_when_no_token_is_set(start_authsvc: AuthsvcFactory) -> None:
    client = Client(start_authsvc().url)
    user = client.new_user()
    for method, path in (("GET", f"{user}/streams"), ("PUT", f"{user}/limit"), ("DELETE", f"{user}/streams")):
        r = admin(client, method, path, json={"limit": 1})
        assert r.status_code == 404 and r.json()["error"] == "Not Found"


@pytest.mark.parametrize(
    ("path", "allowed"), [("limit", {"PUT", "DELETE"}), ("streams", {"GET", "HEAD", "DELETE"})]
)
def test_a_405_lists_every_method_of_the_path(client: Client, path: str, allowed: set[str]) -> None:
    r = admin(client, "POST", f"{client.new_user()}/{path}")
    assert r.status_code == 405 and r.json()["error"] == "Method Not Allowed"
    assert set(r.headers["Allow"].split(", ")) == allowed
