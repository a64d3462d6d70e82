"""The decision endpoint that nginx's auth_request calls, one test per outcome."""

from __future__ import annotations

import pytest
import requests

from harness import AuthsvcFactory, Client, past_the_refresh

pytestmark = pytest.mark.every_topology


def gate(client: Client, uri: str, **headers: str) -> requests.Response:
    headers = {k.replace("_", "-"): v for k, v in headers.items()}
    return client.http.get(f"{client.base}/_authz", headers={"X-Original-URI": uri, **headers}, timeout=5)


def denied(r: requests.Response, status: int, real: str, error: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["x-error-status"] == real
    assert r.json() == {"status": "ko", "error": error}


def test_allowed_for_an_active_stream_and_refreshes_it(client: Client) -> None:
    user, stream = client.new_user(), client.new_stream()
    before = client.activate(user, stream).json()["expiresAt"]
    past_the_refresh(client, user)
    r = gate(client, f"/watch/{stream}/demo/seg1.ts", x_userid=user)
    assert r.status_code == 204
    assert (r.headers["x-userid"], r.headers["x-stream-id"]) == (user, stream)
    assert client.active(user).json()["streams"][0]["expiresAt"] > before


def test_head_is_gated_like_get(client: Client) -> None:
    user, stream = client.new_user(), client.new_stream()
    client.activate(user, stream)
    r = client.http.head(
        f"{client.base}/_authz", headers={"X-Original-URI": f"/watch/{stream}/a", "x-userid": user}, timeout=5
    )
    assert r.status_code == 204


def test_cookie_or_query_alone_is_no_identity_here(client: Client) -> None:
    # nginx turns a player's cookie or ?userid= into x-userid; authsvc decides only on what
    # nginx sends, so both agree on whom a cached decision belongs to.
    user, stream = client.new_user(), client.new_stream()
    client.activate(user, stream)
    denied(
        gate(client, f"/watch/{stream}/a.ts", cookie=f"cw_userid={user}"),
        401,
        "401",
        "Missing x-userid header.",
    )
    denied(gate(client, f"/watch/{stream}/a.ts?userid={user}"), 401, "401", "Missing x-userid header.")


def test_not_active_is_403(client: Client) -> None:
    denied(gate(client, f"/watch/{client.new_stream()}/a.ts", x_userid=client.new_user()), 403, "403",
           "Stream Not Active")  # fmt: skip


def test_another_users_stream_is_403(client: Client) -> None:
    owner, other, stream = client.new_user(), client.new_user(), client.new_stream()
    client.activate(owner, stream)
    denied(gate(client, f"/watch/{stream}/a.ts", x_userid=other), 403, "403", "Stream Not Active")


def test_deactivated_is_403(client: Client) -> None:
    user, stream = client.new_user(), client.new_stream()
    client.activate(user, stream)
    client.deactivate(user, stream)
    denied(gate(client, f"/watch/{stream}/a.ts", x_userid=user), 403, "403", "Stream Not Active")


def test_no_identity_is_401(client: Client) -> None:
    denied(gate(client, f"/watch/{client.new_stream()}/a.ts"), 401, "401", "Missing x-userid header.")


def test_bad_identity_is_401(client: Client) -> None:
    r = gate(client, f"/watch/{client.new_stream()}/a.ts", x_userid="A" * 32)
    denied(r, 401, "401", "Invalid Data.")


def test_not_a_stream_url_is_400(client: Client) -> None:
    for uri in ("", "/other/x", "/watch/", "/watch/abc"):
        denied(gate(client, uri, x_userid=client.new_user()), 403, "400", "Not a stream URL.")


def test_malformed_stream_is_400_and_unissued_404(client: Client) -> None:
    user = client.new_user()
    denied(gate(client, "/watch/a%20b/x.ts", x_userid=user), 403, "400", "Malformed stream id.")
    denied(gate(client, "/watch/not-issued/x.ts", x_userid=user), 403, "404", "Invalid Data.")


def test_shadow_mode_lets_through_and_says_so(start_authsvc: AuthsvcFactory) -> None:
    client = Client(start_authsvc(enforce=False).url)
    r = gate(client, f"/watch/{client.new_stream()}/a.ts", x_userid=client.new_user())
    assert r.status_code == 204 and r.headers["x-gate-decision"] == "shadow_not_active"


def test_other_methods_are_405(client: Client) -> None:
    r = client.http.post(f"{client.base}/_authz", timeout=5)
    assert r.status_code == 405 and r.json()["error"] == "Method Not Allowed"
    assert r.headers["allow"] == "GET, HEAD"
