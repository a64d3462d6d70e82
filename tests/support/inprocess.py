"""The in-process tests' app and its calls: ``create_app(Settings(...))`` driven through
Starlette's TestClient, its lifespan running, and the helpers that judge its answers.

Every case is built by ``serving`` (each test module's ``serve`` fixture) and judged by
``expect`` (oauth2-proxy's tests of its auth endpoint build each case from one helper).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.testclient import TestClient

from authsvc.app import create_app
from authsvc.ids import IdCodec, Kind
from authsvc.settings import Settings

SECRET = "in-process-tests-secret-32chars!"
OTHER_SECRET = "another-service-secret-32-chars!"  # ids of another deployment
ADMIN_TOKEN = "admin-token-of-the-in-process-tests"
LIMIT = 3
TTL_S = 120
TTL_MS = TTL_S * 1000
FORGED = "A" * 32  # the length and alphabet of an issued id, without its MAC


@dataclass(frozen=True, eq=False)
class Between:
    """Equal to any integer from ``low`` to ``high``: stands in a body for a time in ms
    that Redis read while a request ran (Redis's clock is this machine's)."""

    low: int
    high: int

    def __eq__(self, other: object) -> bool:
        return isinstance(other, int) and not isinstance(other, bool) and self.low <= other <= self.high

    def __add__(self, ms: int) -> Between:
        return Between(self.low + ms, self.high + ms)


@dataclass(frozen=True, eq=False)
class IssuedId:
    """Equal to an id of ``kind`` that carries the MAC of ``secret``."""

    kind: Kind
    secret: str

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and IdCodec(self.secret).issued(self.kind, other)


@dataclass(frozen=True)
class Answer:
    """One response: status, headers, the decoded JSON body (None when empty), and the
    wall clock in ms while it was made."""

    status: int
    headers: Mapping[str, str]
    body: Any
    during: Between


def expect(
    answer: Answer,
    status: int,
    body: Mapping[str, object] | None,
    headers: Mapping[str, str | None] | None = None,
) -> None:
    """Assert the whole answer: status, body (JSON, or none), and each named header (None:
    absent)."""
    assert (answer.status, answer.body) == (status, body), answer
    if body is not None:
        assert answer.headers["content-type"] == "application/json", answer.headers
    for name, value in (headers or {}).items():
        assert answer.headers.get(name) == value, (name, answer.headers)


def refused(
    answer: Answer,
    status: int,
    error: str,
    headers: Mapping[str, str | None] | None = None,
    **extra: object,
) -> None:
    """Assert the error shape ``{"status": "ko", "error": ...}``, with any extra fields."""
    expect(answer, status, {"status": "ko", "error": error, **extra}, headers)


def denied(answer: Answer, status: int, real: int, error: str) -> None:
    """Assert a refusal of the gate: 401 or 403 for nginx, the real status in X-Error-Status."""
    refused(answer, status, error, {"X-Error-Status": str(real), "X-Userid": None, "X-Stream-Id": None})


def lease(stream: str, activated: Answer, started: Answer | None = None) -> dict[str, object]:
    """A lease as listed, from the answer (already checked) that last refreshed it and the
    activation that started it (``started``; by default the same answer). Redis read the
    same clock for the start as for the ``expiresAt`` of that activation."""
    expires = activated.body["expiresAt"]
    began = (started or activated).body["expiresAt"]
    assert isinstance(expires, int) and isinstance(began, int)
    return {
        "streamId": stream,
        "startedAt": began - TTL_MS,
        "refreshedAt": expires - TTL_MS,
        "expiresAt": expires,
    }


def user_header(user: str | None) -> dict[str, str]:
    return {} if user is None else {"x-userid": user}


class Service:
    """The app of one test, its lifespan running, and the calls that a player, nginx and an
    operator make to it."""

    def __init__(self, client: TestClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    def send(
        self, method: str, path: str, headers: Mapping[str, str] | None = None, content: bytes | None = None
    ) -> Answer:
        before = time.time()
        r = self.client.request(method, path, headers=headers, content=content)
        after = time.time()
        body = r.json() if r.content else None
        return Answer(r.status_code, r.headers, body, Between(int(before * 1000), int(after * 1000)))

    def new_id(self, kind: Kind) -> str:
        """An id issued by the app (``GET /users/newId``, ``/streams/newId``)."""
        answer = self.send("GET", f"/{kind}s/newId")
        assert self.settings.secret is not None
        expect(answer, 200, {f"{kind}Id": IssuedId(kind, self.settings.secret)})
        return str(answer.body[f"{kind}Id"])

    def call(self, op: str, user: str | None, stream: str = "", method: str = "PATCH") -> Answer:
        """One of the player's calls: activate, deactivate, heartbeat, or active."""
        if op == "active":
            return self.send("GET", "/streams/active", user_header(user))
        return self.send(method, f"/streams/{stream}/{op}", user_header(user))

    def activate(self, user: str, stream: str) -> Answer:
        return self.call("activate", user, stream)

    def started(self, user: str, stream: str) -> Answer:
        """Activate a stream that must be admitted; the answer."""
        answer = self.activate(user, stream)
        assert answer.status == 200 and answer.body["outcome"] in ("admitted", "refreshed"), answer
        return answer

    def active(self, user: str) -> Answer:
        return self.call("active", user)

    def gate(self, uri: str | None, user: str | None = None, method: str = "GET") -> Answer:
        """nginx's auth subrequest for a fetch of ``uri`` (None: no X-Original-URI)."""
        headers = user_header(user) | ({} if uri is None else {"X-Original-URI": uri})
        return self.send(method, "/_authz", headers)

    def admin(
        self, method: str, path: str, content: bytes | None = None, auth: str | None = f"Bearer {ADMIN_TOKEN}"
    ) -> Answer:
        headers = {} if auth is None else {"Authorization": auth}
        return self.send(method, f"/admin/users/{path}", headers, content)


Serve = Callable[..., Service]


@contextlib.contextmanager
def serving(redis_url: str) -> Iterator[Serve]:
    """Start the app of ``Settings(...)`` with these overrides, on ``redis_url`` and a key
    prefix of its own; every app started is stopped (its lifespan ended) on leaving."""
    with contextlib.ExitStack() as running:

        def start(**overrides: Any) -> Service:
            settings = Settings(
                **{
                    "redis_url": redis_url,
                    "secret": SECRET,
                    "key_prefix": f"inproc{uuid.uuid4().hex}:",
                    "max_streams": LIMIT,
                    "lease_ttl_s": TTL_S,
                    **overrides,
                }
            )
            client = running.enter_context(TestClient(create_app(settings)))
            return Service(client, settings)

        yield start


def foreign_id(service: Service, kind: Kind, how: str) -> str:
    """An id of ``kind`` that this service did not issue."""
    if how == "forged":
        return FORGED
    if how == "other service":
        return IdCodec(OTHER_SECRET).issue(kind)
    assert how == "other kind"
    return service.new_id("stream" if kind == "user" else "user")
