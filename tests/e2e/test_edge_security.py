"""Ways around the gate that a client could try, sent byte for byte (requests would
normalise some of them away)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from edge_harness import SEGMENT, Deployment, Player, StackFactory
from harness import raw_request

pytestmark = pytest.mark.e2e


def raw(base: str, method: str, target: str, headers: dict[str, bytes] | None = None) -> tuple[int, bytes]:
    url = urlsplit(base)
    return raw_request(url.port or 80, method, target, headers, host=url.hostname or "127.0.0.1")


def active(player: Player) -> tuple[str, str]:
    user, stream = player.new_user(), player.new_stream()
    assert player.activate(user, stream).status_code == 200
    return user, stream


def test_an_identity_nginx_does_not_see_is_no_identity(start_stack: StackFactory) -> None:
    # Encoded or repeated, the parameter is invisible to nginx's parsing: the request must
    # be refused, and must leave nothing behind for anonymous requests (lease tokens on).
    stack = start_stack(why="lease tokens on", lease_token_s=5)
    player = Player(stack.url)
    user, stream = active(player)
    for query in (f"%75serid={user}", f"userid=&userid={user}"):
        status, body = raw(stack.url, "GET", f"/watch/{stream}/{SEGMENT}?{query}")
        assert status in (400, 401), (query, status, body)
        assert body.startswith(b'{"status":"ko"')
    status, _ = raw(stack.url, "GET", f"/watch/{stream}/{SEGMENT}")
    assert status == 401
    assert raw(stack.url, "GET", f"/watch/{stream}/{SEGMENT}?userid={user}")[0] == 200
    assert raw(stack.url, "GET", f"/watch/{stream}/{SEGMENT}")[0] == 401  # still, after a cached 200
    player.close()


def test_a_header_authsvc_refuses_never_fails_open(start_stack: StackFactory) -> None:
    stack = start_stack(why="fail-open on", fail_open=True)
    player = Player(stack.url)
    stream = player.new_stream()  # never activated
    user = player.new_user()
    status, body = raw(
        stack.url, "GET", f"/watch/{stream}/{SEGMENT}", {"x-userid": user.encode(), "X-A": b"\x7f"}
    )
    assert status == 403, body
    status, body = raw(stack.url, "GET", f"/watch/{stream}/{SEGMENT}", {"x-userid": b"x\x7fy"})
    assert status in (400, 401), body
    assert body.startswith(b'{"status":"ko"')
    player.close()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_only_reads_pass_the_gate(player: Player, edge: Deployment, method: str) -> None:
    user, stream = active(player)
    status, body = raw(edge.url, method, f"/watch/{stream}/{SEGMENT}", {"x-userid": user.encode()})
    assert (status, body) == (405, b'{"status":"ko","error":"Method Not Allowed"}')


def test_the_identity_twice_in_the_query_is_refused(player: Player, edge: Deployment) -> None:
    user, stream = active(player)
    status, body = raw(edge.url, "GET", f"/watch/{stream}/{SEGMENT}?userid={user}&a=1&userid={user}")
    assert status == 400 and body.startswith(b'{"status":"ko"')


@pytest.mark.parametrize(
    ("request_line_target", "headers", "status"),
    [
        ("/streams/x/activate", {"x-userid": b"a" * 20_000}, 400),  # header too large
        ("/" + "a" * 20_000, {}, 414),
    ],
)
def test_nginx_own_errors_are_json(
    edge: Deployment, request_line_target: str, headers: dict[str, bytes], status: int
) -> None:
    got, body = raw(edge.url, "GET", request_line_target, headers)
    assert got == status
    assert body.startswith(b'{"status":"ko"'), body[:200]
