"""Every answer of the edge is the JSON error shape with its real status, whoever produced
it (nginx parsing the request, uvicorn, authsvc): sent byte for byte on raw sockets."""

from __future__ import annotations

import json

import pytest
import requests

from edge_harness import Deployment, Player
from recording import RawAnswer, send_raw
from until import until

pytestmark = pytest.mark.e2e

# Bytes a header value may not hold (tab may; CR and LF end the line instead).
CONTROL = [b for b in range(0x20) if b not in (0x09, 0x0A, 0x0D)] + [0x7F]


def send(edge: Deployment, request_line: str, *headers: bytes) -> RawAnswer:
    port = int(edge.url.rsplit(":", 1)[1])
    head = [request_line.encode("latin-1"), f"Host: 127.0.0.1:{port}".encode(), *headers]
    return send_raw(port, b"\r\n".join([*head, b"Connection: close", b"Content-Length: 0", b"", b""]))


def assert_json(answer: RawAnswer, *statuses: int) -> None:
    assert answer.status in statuses, answer
    assert answer.headers.get("content-type") == "application/json", answer
    assert answer.body.startswith(b'{"status":'), answer


@pytest.mark.parametrize("header", ["X-Anything", "Authorization", "x-userid", "Content-Type"])
def test_a_control_byte_in_any_api_header_is_answered_in_json(
    player: Player, edge: Deployment, header: str
) -> None:
    user, stream = player.new_user(), player.new_stream()
    for byte in CONTROL:
        value = (
            b"Bearer a" + bytes([byte]) + b"b" if header == "Authorization" else b"a" + bytes([byte]) + b"b"
        )
        # x-userid given twice: nginx and authsvc would both read the first.
        identity = [] if header == "x-userid" else [b"x-userid: " + user.encode()]
        answer = send(edge, f"PATCH /streams/{stream}/activate HTTP/1.1", *identity,
                      header.encode() + b": " + value)  # fmt: skip
        # Refused as malformed (by nginx), or the header was not authsvc's business.
        assert_json(answer, 200, 400)
        if header != "X-Anything":
            assert answer.status == 400, (byte, answer)


def test_a_control_byte_in_a_gated_request_header_is_answered_in_json(
    player: Player, edge: Deployment
) -> None:
    user, stream = player.new_user(), player.new_stream()
    for byte in CONTROL:
        answer = send(edge, f"GET /watch/{stream}/demo/playlist.m3u8 HTTP/1.1",
                      b"x-userid: " + user.encode() + bytes([byte]))  # fmt: skip
        assert_json(answer, 400, 401)


# Requests the edge refuses itself: (request line, headers, status).
REFUSED = [
    ("GET /users/newId HTTP/2.0", [], 505),
    ("GET /users/newId HTTP/3.0", [], 505),
    ("GET /watch/s/demo/playlist.m3u8?userid=u HTTP/2.0", [], 505),
    ("POST /streams/s/activate HTTP/1.1", [b"Transfer-Encoding: chunked, identity"], 501),
    ("POST /streams/s/activate HTTP/1.1", [b"Transfer-Encoding: gzip"], 501),
    ("GET /users/newId HTTP/1.1", [b"X-Bad\x01Name: 1"], 400),
    ("GET /users/newId HTTP/1.1", [b"X: a\x00b"], 400),
    ("GET /users/newId HTTP/1.1", [b"Host: a", b"Host: b"], 400),
    ("GET /users/newId HTTP/1.1", [b"Content-Length: 1", b"Content-Length: 2"], 400),
    ("GET /a\x01b HTTP/1.1", [], 400),
    ("GET /streams/a\x80b/active HTTP/1.1", [], 400),  # uvicorn takes no byte over 0x7f
    ("GET /watch/s/a\x80b.ts?userid=u HTTP/1.1", [], 400),  # nor the gate: HTTP wants it encoded
    ("GET /watch/s\xc3\xa9/a.ts?userid=u HTTP/1.1", [], 400),
    ("GET /users/newId?a=\xff HTTP/1.1", [], 400),
    ("BREW /users/newId HTTP/1.1", [], 405),  # a method uvicorn does not know
    ("PROPFIND /users/newId HTTP/1.1", [], 405),
]


@pytest.mark.parametrize(("request_line", "headers", "status"), REFUSED)
def test_requests_nginx_refuses_are_answered_in_json(
    edge: Deployment, request_line: str, headers: list[bytes], status: int
) -> None:
    assert_json(send(edge, request_line, *headers), status)


def test_every_line_of_the_access_log_is_json(edge: Deployment) -> None:
    # After requests with bytes over 0x7f and control bytes in request lines and headers:
    # escape=json writes bytes over 0x7f verbatim, so the edge keeps them out.
    if edge.stack is None:
        pytest.skip("reads the edge's access log: only on a stack of our own, not HOST")
    for request_line, headers, status in REFUSED:
        assert send(edge, request_line, *headers).status == status, request_line
    log = edge.stack.prefix / "access.log"
    # Written at most a second late: wait for a request sent after all of those.
    last = requests.get(f"{edge.url}/nowhere", timeout=5).headers["X-Request-ID"]
    assert until(lambda: last.encode() in log.read_bytes(), 10), last
    lines = log.read_bytes().splitlines()
    assert len(lines) > 10
    for line in lines:
        json.loads(line.decode("utf-8"))
