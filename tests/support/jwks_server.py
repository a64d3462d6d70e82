"""A real identity provider's key endpoints for the tests, over HTTP on a free loopback
port: its JWKS at ``/jwks.json`` and its OpenID Connect discovery document at
``<issuer>/.well-known/openid-configuration``, for the issuer at the root and any below it
(Keycloak's ``/realms/<name>``). A test changes the key set (or serves any body),
stops and starts the provider (on the same port), and counts the requests it got.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from canwatch_stack.procs import free_port

HOST = "127.0.0.1"
JWKS_PATH = "/jwks.json"
DISCOVERY_PATH = "/.well-known/openid-configuration"


class SigningKey:
    """A key pair of the provider's, with its kid: its public JWK, and tokens it signs."""

    def __init__(self, alg: str = "RS256", kid: str | None = None) -> None:
        self.alg = alg
        self.kid = kid or f"key-{uuid.uuid4().hex[:12]}"
        if alg.startswith("RS"):
            self.private: Any = rsa.generate_private_key(65537, 2048)
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())

    def jwk(self, **fields: Any) -> dict[str, Any]:
        """The public key as the provider publishes it (alg, use, kid), ``fields`` on top."""
        algorithm = RSAAlgorithm if self.alg.startswith("RS") else ECAlgorithm
        public: dict[str, Any] = algorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**public, "kid": self.kid, "alg": self.alg, "use": "sig", **fields}

    def token(self, sub: str, kid: str | None = None, **claims: Any) -> str:
        payload = {"sub": sub, "exp": int(time.time()) + 300, **claims}
        headers = {"kid": self.kid if kid is None else kid}
        return jwt.encode(payload, self.private, algorithm=self.alg, headers=headers)


class JwksServer:
    """The provider: serves what it was last told, counts requests by path."""

    def __init__(self) -> None:
        self.port = free_port()
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._jwks = b'{"keys": []}'
        self.claimed_issuer: str | None = None  # the discovery document's issuer, if not the asked one
        self._holding = False
        self._released = threading.Event()
        self._held = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def issuer(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def jwks_url(self) -> str:
        return self.issuer + JWKS_PATH

    def publish(self, *keys: SigningKey | dict[str, Any]) -> None:
        """Serve a JWKS of these keys (SigningKeys, or JWK dicts as they are)."""
        entries = [k.jwk() if isinstance(k, SigningKey) else k for k in keys]
        self.serve_body(json.dumps({"keys": entries}).encode())

    def serve_body(self, body: bytes) -> None:
        """Serve ``body`` as the JWKS, whatever it is."""
        with self._lock:
            self._jwks = body

    def hold(self) -> None:
        """A hung provider: requests are taken and left unanswered until ``release``."""
        with self._lock:
            self._holding = True
            self._released.clear()

    def release(self) -> None:
        with self._lock:
            self._holding = False
            self._released.set()

    def held(self) -> int:
        """Requests taken and not yet answered."""
        with self._lock:
            return self._held

    def fetches(self) -> int:
        """Requests for the JWKS so far."""
        with self._lock:
            return self.hits[JWKS_PATH]

    def start(self) -> None:
        server = ThreadingHTTPServer((HOST, self.port), self._handler())
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.start()

    def __enter__(self) -> JwksServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        """The provider down: nothing listens on its port any more."""
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(10)
            self._server = self._thread = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                with provider._lock:
                    provider.hits[path] += 1
                    holding = provider._holding
                    provider._held += holding
                if holding:
                    provider._released.wait(60)  # bounded: a test that forgets still ends
                    with provider._lock:
                        provider._held -= 1
                with provider._lock:
                    jwks = provider._jwks
                if path == JWKS_PATH:
                    self._answer(200, jwks)
                elif path.endswith(DISCOVERY_PATH):
                    issuer = provider.claimed_issuer or provider.issuer + path.removesuffix(DISCOVERY_PATH)
                    document = {"issuer": issuer, "jwks_uri": provider.jwks_url}
                    self._answer(200, json.dumps(document).encode())
                else:
                    self._answer(404, b'{"error": "not found"}')

            def _answer(self, status: int, body: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on a held answer (its timeout)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the tests read the counts, not a log on stderr

        return Handler
