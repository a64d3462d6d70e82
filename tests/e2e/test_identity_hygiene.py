"""The identity never reaches the origin and never lands in a log: requests sent byte for
byte to a stack whose origin records everything it receives."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

import jwt
import pytest
import requests

from canwatch_stack.supervisor import Stack

from edge_harness import HOST, StackFactory, launch
from recording import RecordingOrigin, log_files, send_raw
from until import until

pytestmark = pytest.mark.e2e

KEY = "hygiene-jwt-key-of-at-least-thirty-two-bytes"
# Well-formed ids, accepted without a MAC (AUTHSVC_ID_CHECK=none): no API call to mint them.
USER = "hygieneUser0123456789abcdef"
STREAM = "hygieneStream0123456789abcdef"
FORBIDDEN_HEADERS = ("cookie", "authorization", "proxy-authorization", "x-userid", "referer")


def token(sub: str = USER, pad: int = 0) -> str:
    claims: dict[str, object] = {"sub": sub, "exp": int(time.time()) + 600}
    if pad:
        claims["pad"] = "p" * pad
    return jwt.encode(claims, KEY, algorithm="HS256")


@dataclass(frozen=True)
class Case:
    target: str
    headers: dict[str, str]
    status: int


def request(port: int, case: Case) -> int:
    lines = [f"GET {case.target} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{k}: {v}" for k, v in case.headers.items()] + ["Connection: close", "", ""]
    answer = send_raw(port, "\r\n".join(lines).encode())
    assert answer.headers["content-type"] in ("application/json", "video/mp2t"), answer
    return answer.status


def jwt_cases(t: str) -> list[Case]:
    bearer = {"Authorization": f"Bearer {t}"}
    s = f"/watch/{STREAM}"
    return [
        # Not a real query parameter: no identity at all.
        Case(f"{s}/b.ts?x=?token={t}", {}, 401),
        Case(f"{s}/c.ts&token={t}", {}, 401),
        Case(f"{s}/c.ts?TOKEN={t}", {}, 401),
        # An identity elsewhere, and the token still in what the origin would get.
        Case(f"{s}/b.ts?x=?token={t}", bearer, 400),
        Case(f"{s}/c.ts&token={t}", bearer, 400),
        Case(f"{s}/c.ts%26token={t}", bearer, 400),
        Case(f"{s}/c.ts?x=a?token={t}&token={t}", {}, 400),
        Case(f"{s}/c.ts?token={t}&x=%74ok%65n%3D{t}", {}, 400),
        Case(f"{s}/c.ts?x={t}", bearer, 400),  # shaped like a JWT, under any name
        Case(f"{s}/c.ts?x=%65yJ{t[3:]}", bearer, 400),
        Case(f"{s}/c.ts?TOKEN={t}", bearer, 400),
        # A decoded control byte in the path: refused, never proxied with its query.
        Case(f"{s}/a%0ab.ts?token={t}", {}, 400),
        Case(f"{s}/a%0Db.ts?token={t}", {}, 400),
        Case(f"{s}/a%09b.ts", bearer, 400),
        # Allowed: the origin gets the path and the rest of the query, nothing else.
        Case(f"{s}/a.ts?token={t}", {}, 200),
        Case(f"{s}/a.ts?a=1&token={t}&b=2", {}, 200),
        Case(f"{s}/a.ts", bearer, 200),
        Case(f"{s}/a.ts", {"Cookie": f"cw_token={t}; other=1"}, 200),
        Case(f"{s}/a.ts", {**bearer, "Referer": f"https://player.example/p?token={t}"}, 200),
        Case(f"{s}/a.ts", {**bearer, "Proxy-Authorization": f"Bearer {t}", "x-userid": USER}, 200),
    ]


def header_cases(u: str) -> list[Case]:
    s = f"/watch/{STREAM}"
    return [
        Case(f"{s}/b.ts?x=?userid={u}", {}, 401),
        Case(f"{s}/c.ts&userid={u}", {}, 401),
        Case(f"{s}/b.ts?x=?userid={u}", {"x-userid": u}, 400),
        Case(f"{s}/c.ts&userid={u}", {"x-userid": u}, 400),
        Case(f"{s}/c.ts?x=a?userid={u}&userid={u}", {}, 400),
        Case(f"{s}/c.ts?userid={u}&b=%75serid%3d{u}", {}, 400),
        Case(f"{s}/a%0ab.ts?userid={u}", {}, 400),
        Case(f"{s}/a%0ab.ts", {"x-userid": u}, 400),
        Case(f"{s}/%0a/a.ts?userid={u}", {}, 400),
        Case(f"{s}/a.ts?userid={u}", {}, 200),
        Case(f"{s}/a.ts?a=1&userid={u}&b=2", {}, 200),
        Case(f"{s}/a.ts", {"x-userid": u}, 200),
        Case(f"{s}/a.ts", {"Cookie": f"cw_userid={u}"}, 200),
        Case(f"{s}/a.ts", {"x-userid": u, "Referer": f"https://player.example/p?userid={u}"}, 200),
    ]


@pytest.fixture
def origin() -> Iterator[RecordingOrigin]:
    o = RecordingOrigin().start()
    yield o
    o.stop()


@pytest.mark.parametrize("identity", ["jwt", "header"])
def test_no_identity_reaches_the_origin(
    start_stack: StackFactory, origin: RecordingOrigin, identity: str
) -> None:
    stack = start_stack(
        why="an origin that records what it receives",
        identity=identity,
        jwt_secret=KEY,
        id_check="none",
        origin_url=origin.url,
    )
    t = token()
    secret = t if identity == "jwt" else USER
    auth = {"Authorization": f"Bearer {t}"} if identity == "jwt" else {"x-userid": USER}
    r = requests.patch(f"{stack.url}/streams/{STREAM}/activate", headers=auth, timeout=5)
    assert r.status_code == 200, r.text
    cases = jwt_cases(t) if identity == "jwt" else header_cases(USER)
    got = [(case.target[-40:], request(stack.edge_settings.port, case)) for case in cases]
    assert got == [(case.target[-40:], case.status) for case in cases]
    # Every allowed fetch reached the origin, and only those.
    assert len(origin.received) == sum(case.status == 200 for case in cases)
    for seen in origin.received:
        assert secret not in seen.text(), seen
        assert seen.target.startswith("/a.ts"), seen
        names = {k.lower() for k, _ in seen.headers}
        assert not names & set(FORBIDDEN_HEADERS), seen
    queries = sorted(seen.target.partition("?")[2] for seen in origin.received)
    assert "a=1&b=2" in queries


def test_no_token_in_any_log_on_every_error_path(
    origin: RecordingOrigin, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if HOST:
        pytest.skip(f"HOST={HOST}: reads the log files of a stack of its own")
    run_dir = tmp_path_factory.mktemp("hygiene")
    stack = launch(
        run_dir,
        identity="jwt",
        jwt_secret=KEY,
        id_check="none",
        origin_url=origin.url,
        lease_token_s=2,
        access_log=True,
        log_level="debug",
        api_rate=1,
    )
    try:
        tokens = _drive_every_error_path(stack, origin)
    finally:
        stack.stop()  # nginx writes out its buffered access log
    files = log_files(run_dir)
    assert any(f.name == "error.log" for f in files) and any(f.name == "access.log" for f in files)
    assert any(f.name == "authsvc.log" for f in files)
    for path in files:
        data = path.read_bytes()
        for t in tokens:
            # The whole token, or its claims part alone (a log line cut short).
            for secret in (t, t.split(".")[1][:100]):
                assert secret.encode() not in data, f"{path} holds a token"


def _drive_every_error_path(stack: Stack, origin: RecordingOrigin) -> list[str]:
    """Every error the edge can meet with a token in the query; the tokens used. Each
    step that must reach authsvc uses a token of its own: a lease token serves the
    others without asking it."""
    port = stack.edge_settings.port
    t, big, hung, down = token(), token(pad=5200), token(pad=1), token(pad=2)
    assert 6900 < len(big) < 7500, len(big)  # the 7 KB token of the review
    watch = f"/watch/{STREAM}/a.ts"

    def get(target: str, *headers: str, version: str = "HTTP/1.1") -> int:
        lines = [f"GET {target} {version}", f"Host: 127.0.0.1:{port}", *headers, "Connection: close", "", ""]
        answer = send_raw(port, "\r\n".join(lines).encode("latin-1"))
        assert answer.body.startswith(b'{"status":"ko"') or answer.status == 200, answer
        return answer.status

    assert get(f"/streams/{STREAM}/activate", f"Authorization: Bearer {t}") == 405  # a GET: refused
    r = requests.patch(
        f"{stack.url}/streams/{STREAM}/activate", headers={"Authorization": f"Bearer {t}"}, timeout=5
    )
    assert r.status_code == 200, r.text
    assert get(f"{watch}?token={t}") == 200
    # A token in the path itself, plain and percent-encoded: refused, and the access log
    # withholds the whole path (it keeps the path up to the query otherwise).
    assert get(f"/watch/{STREAM}/{t}/a.ts", f"Authorization: Bearer {t}") == 400
    assert get(f"/watch/{STREAM}/%65{t[1:]}/a.ts", f"Authorization: Bearer {t}") == 400
    # An oversized token: refused in JSON, at the gate (lease tokens on) and at the API.
    assert get(f"{watch}?token={big}") == 431
    assert get(watch, f"Authorization: Bearer {big}") == 431
    assert get("/streams/active", f"Authorization: Bearer {big}") == 431
    # nginx's own refusals of the request itself.
    assert get(f"{watch}?token={t}", version="HTTP/2.0") == 505
    assert get(f"{watch}?token={t}", "Transfer-Encoding: chunked, identity") == 501
    assert get(f"{watch}?token={t}", "X-A: \x01") in (200, 400)
    assert get(f"{watch}?token={t}", "X-Big: " + "b" * 9000) == 400
    assert get(f"{watch}?token={t}&pad={'p' * 9000}") == 414
    # The origin down: the gate allows, the fetch fails.
    origin.stop()
    assert get(f"{watch}?token={t}") == 502
    # authsvc hung (the gate's read timeout), then stopped.
    authsvc = stack.procs["authsvc"]
    os.kill(authsvc.pid, signal.SIGSTOP)
    try:
        assert get(f"{watch}?token={hung}") == 503
    finally:
        os.kill(authsvc.pid, signal.SIGCONT)
    stack.stop_authsvc()
    assert get(f"{watch}?token={down}") == 503
    assert get(f"/streams/active?token={t}", f"Authorization: Bearer {t}") == 503
    # The API's rate limit (1 a second, burst 1), hit with the token in the query.
    assert until(lambda: get(f"/users/newId?token={t}") == 429, timeout=10, step=0)
    return [t, big, hung, down]
