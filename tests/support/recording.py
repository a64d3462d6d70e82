"""A stream origin that records every request it receives (a real HTTP server on a free
loopback port), and raw HTTP on a socket for what client libraries would not send."""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from canwatch_stack.procs import free_port

from harness import HOST

SEGMENT_BODY = b"G" + bytes(187)  # one MPEG-TS packet's worth


@dataclass(frozen=True)
class Received:
    """One request as the origin saw it: the request target and the headers, in order."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        found = [v for k, v in self.headers if k.lower() == name.lower()]
        return found[0] if found else None

    def text(self) -> str:
        """Everything the origin was told, for searching."""
        return "\n".join([f"{self.method} {self.target}", *(f"{k}: {v}" for k, v in self.headers)])


class RecordingOrigin:
    """Answers 200 with a small segment to every GET and HEAD, and keeps what it got."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[Received] = []
        self.connections: set[socket.socket] = set()
        lock = threading.Lock()
        received, connections = self.received, self.connections

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as nginx's upstream pool expects

            def setup(self) -> None:
                super().setup()
                with lock:
                    connections.add(self.connection)

            def do_GET(self) -> None:
                with lock:
                    received.append(Received(self.command, self.path, tuple(self.headers.items())))
                self.send_response(200)
                self.send_header("Content-Type", "video/mp2t")
                self.send_header("Content-Length", str(len(SEGMENT_BODY)))
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(SEGMENT_BODY)

            do_HEAD = do_GET

            def log_message(self, format: str, *args: object) -> None:
                pass  # the test reads self.received

        self.server = ThreadingHTTPServer((HOST, self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> RecordingOrigin:
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop answering: the listening socket closed (nginx then gets connection refused)
        and the connections nginx keeps open shut."""
        self.server.shutdown()
        self.server.server_close()
        for connection in list(self.connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


@dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


def send_raw(port: int, data: bytes, host: str = HOST) -> RawAnswer:
    """Send ``data`` exactly as given on a connection of its own (send ``Connection:
    close``); the answer read until its body is complete, or to EOF where nothing says
    where it ends. (A refusal before a declared body is read ends in nginx's lingering
    close: the connection stays open for seconds after the answer.)"""
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(data)
        received = b""
        while not _complete(received, head_request=data.startswith(b"HEAD ")):
            chunk = s.recv(65536)
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status, headers = _head(head)
    return RawAnswer(status, headers, body)


def _head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ", 2)[1]), headers


def _complete(received: bytes, head_request: bool) -> bool:
    head, found, body = received.partition(b"\r\n\r\n")
    if not found:
        return False
    status, headers = _head(head)
    if status < 200:  # an interim answer (100 Continue): the final one follows
        return _complete(body, head_request)
    if head_request or status in (204, 304):
        return True
    if "chunked" in headers.get("transfer-encoding", ""):
        return _chunks_end(body)
    length = headers.get("content-length", "")
    return length.isdecimal() and len(body) >= int(length)


def _chunks_end(body: bytes) -> bool:
    """Whether a chunked body is whole: chunk by chunk, up to the last (size 0) and the
    empty line after it (no trailers)."""
    at = 0
    while True:
        line_end = body.find(b"\r\n", at)
        if line_end < 0:
            return False
        size = int(body[at:line_end].split(b";")[0], 16)
        if size == 0:
            return body.startswith(b"\r\n", line_end + 2)
        at = line_end + 2 + size + 2
        if at > len(body):
            return False


def log_files(run_dir: Path) -> list[Path]:
    """Every file the stack writes as it runs, except Redis' data (not logs: it holds keys by
    design), the origin's files and the local CA."""
    skip = ("redis", "origin", "tls")
    return [
        p
        for p in run_dir.rglob("*")
        if p.is_file() and not any(part in skip for part in p.relative_to(run_dir).parts[:-1])
    ]
