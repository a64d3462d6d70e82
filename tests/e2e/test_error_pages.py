"""Every location answers nginx's own errors in JSON: one that has error_page lines of its
own inherits none of the server's, so each includes them again (error-pages.conf). Shown
with a body larger than the edge takes (413) sent to each kind of location, in both
identity modes, over HTTP/1.1 and HTTP/2 (with a body, and declared only), and on a fetch a
lease token serves."""

from __future__ import annotations

import subprocess

import jwt
import pytest

from canwatch_stack.supervisor import Stack

from edge_harness import PLAYLIST, Player, StackFactory
from harness import need_binary
from recording import send_raw

pytestmark = pytest.mark.e2e

KEY = "error-pages-jwt-key-of-at-least-thirty-two-bytes"
TOO_LARGE = 2_000_000  # over client_max_body_size (nginx's default 1 MB)


def targets(stack: Stack, identity: str) -> dict[str, tuple[str, dict[str, str]]]:
    """A request of each kind of location: (path, headers)."""
    player = Player(stack.url)
    user, stream = player.new_user(), player.new_stream()
    if identity == "jwt":
        token = jwt.encode({"sub": user, "exp": 4_000_000_000}, KEY, algorithm="HS256")
        auth = {"Authorization": f"Bearer {token}"}
    else:
        auth = {"x-userid": user}
    assert (
        player.http.patch(f"{stack.url}/streams/{stream}/activate", headers=auth, timeout=5).status_code
        == 200
    )
    first = player.http.get(f"{stack.url}/watch/{stream}/{PLAYLIST}", headers=auth, timeout=5)
    assert first.status_code == 200, first.text
    lease = first.cookies.get("cw_lease")
    player.close()
    found = {
        "api": ("/users/newId", {}),
        "api with identity": (f"/streams/{stream}/activate", auth),
        "gate": (f"/watch/{stream}/{PLAYLIST}", auth),
        "player page": ("/player/", {}),
        "unknown path": ("/nothing-here", {}),
    }
    if lease:
        found["lease token"] = (f"/watch/{stream}/{PLAYLIST}", {**auth, "Cookie": f"cw_lease={lease}"})
    return found


def too_large_http1(stack: Stack, path: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {TOO_LARGE}"]
    lines += [f"{k}: {v}" for k, v in headers.items()] + ["Connection: close", "", ""]
    answer = send_raw(stack.edge_settings.port, "\r\n".join(lines).encode() + b"x" * 1024)
    return answer.status, answer.headers.get("content-type", ""), answer.body


def too_large_http2(
    stack: Stack, path: str, headers: dict[str, str], body: bool = True
) -> tuple[int, str, bytes]:
    assert stack.local_tls is not None
    args = [
        need_binary("curl", "curl"),
        "-sS",
        "--max-time",
        "10",
        "--http2",
        "--cacert",
        str(stack.local_tls.ca),
    ]
    args += ["-o", "-", "-w", "\n%{http_code} %{content_type}", "-H", f"Content-Length: {TOO_LARGE}"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    if body:
        args += ["--data-binary", "x" * 1024]
    out = subprocess.run([*args, "-X", "GET", f"{stack.tls_url}{path}"], capture_output=True, timeout=30)
    answer, _, tail = out.stdout.rpartition(b"\n")
    status, _, content_type = tail.decode().partition(" ")
    return int(status), content_type, answer


def too_large_http2_declared(stack: Stack, path: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
    """The length declared on a stream that then ends with its headers: HTTP/2's own layer
    refuses it before any location is chosen (the server-level check in the edge)."""
    return too_large_http2(stack, path, headers, body=False)


@pytest.mark.parametrize(
    ("identity", "lease_token_s"), [("header", 0), ("jwt", 0), ("header", 5), ("jwt", 5)]
)
def test_a_body_too_large_is_a_json_413_everywhere(
    start_stack: StackFactory, identity: str, lease_token_s: int
) -> None:
    stack = start_stack(
        why=f"{identity} mode, lease tokens {lease_token_s} s",
        identity=identity, jwt_secret=KEY, lease_token_s=lease_token_s, lease_ttl_s=60,
    )  # fmt: skip
    kinds = targets(stack, identity)
    assert ("lease token" in kinds) == bool(lease_token_s)
    for kind, (path, headers) in kinds.items():
        for send in (too_large_http1, too_large_http2, too_large_http2_declared):
            status, content_type, body = send(stack, path, headers)
            assert (status, content_type) == (413, "application/json"), (kind, send.__name__, body[:200])
            assert body == b'{"status":"ko","error":"Request Entity Too Large"}', (kind, body[:200])


def too_large_chunked(stack: Stack, path: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
    """A body over 1 MiB with no length declared: nginx finds it too large in the location
    itself, while reading it, where only the location's own error_page lines apply."""
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Transfer-Encoding: chunked"]
    lines += [f"{k}: {v}" for k, v in headers.items()] + ["Connection: close", "", ""]
    chunk = b"x" * 65536
    body = (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 20 + b"0\r\n\r\n"  # 1.25 MiB
    answer = send_raw(stack.edge_settings.port, "\r\n".join(lines).encode() + body)
    return answer.status, answer.headers.get("content-type", ""), answer.body


@pytest.mark.parametrize("lease_token_s", [0, 5])
def test_a_chunked_body_too_large_is_a_json_413_where_bodies_are_read(
    start_stack: StackFactory, lease_token_s: int
) -> None:
    stack = start_stack(why=f"lease tokens {lease_token_s} s", lease_token_s=lease_token_s, lease_ttl_s=60)
    kinds = targets(stack, "header")
    checked = [kind for kind in ("api with identity", "gate", "lease token") if kind in kinds]
    assert len(checked) == (3 if lease_token_s else 2)
    for kind in checked:
        status, content_type, body = too_large_chunked(stack, *kinds[kind])
        assert (status, content_type) == (413, "application/json"), (kind, body[:200])
        assert body == b'{"status":"ko","error":"Request Entity Too Large"}', (kind, body[:200])
