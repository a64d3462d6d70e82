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
    """Send ``data`` exactly as given on a connection of its own; the answer read to EOF
    (send ``Connection: close``)."""
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(data)
        received = b""
        while chunk := s.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawAnswer(int(lines[0].split(" ", 2)[1]), headers, body)


def log_files(run_dir: Path) -> list[Path]:
    """Every file the stack writes as it runs, except Redis' data (not logs: it holds keys by
    design), the origin's files and the local CA."""
    skip = ("redis", "origin", "tls")
    return [
        p
        for p in run_dir.rglob("*")
        if p.is_file() and not any(part in skip for part in p.relative_to(run_dir).parts[:-1])
    ]
