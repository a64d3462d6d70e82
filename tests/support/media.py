"""Real clients for the end-to-end tests: ffmpeg as an HLS and DASH player, an origin that records
what reaches it, and headless Chromium driven through chromedriver (selenium)."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from canwatch_edge import demo

from harness import need_binary

# Every frame of the demo: a GOP per segment, so a player that fetched every segment
# decodes exactly this many.
DEMO_FRAMES = demo.SEGMENT_COUNT * demo.FRAMES_PER_SEGMENT


@dataclass(frozen=True)
class Playback:
    """What ffmpeg made of a stream: its exit status, the frames it decoded (and each
    one's checksum of its pixels), its errors."""

    returncode: int
    frames: int
    errors: str
    checksums: tuple[str, ...] = ()


def play(url: str, headers: dict[str, str] | None = None, cookie: tuple[str, str] | None = None) -> Playback:
    """Play ``url`` with Debian's ffmpeg as the HLS or DASH client (by the playlist's or
    manifest's type), decoding every frame.

    ``headers`` go on every request (playlist and segments); ``cookie`` is given to ffmpeg's
    cookie store for the whole site. Segment URIs are resolved by ffmpeg's HLS demuxer
    relative to the playlist (its DASH demuxer: to the manifest), as any player does, so a
    query string does not follow.
    """
    ffmpeg = need_binary("ffmpeg", "ffmpeg")
    command = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error"]
    if headers:
        command += ["-headers", "".join(f"{name}: {value}\r\n" for name, value in headers.items())]
    if cookie:
        command += ["-cookies", f"{cookie[0]}={cookie[1]}; path=/"]
    # framecrc: one line per decoded frame (a checksum of its pixels) on stdout.
    command += ["-i", url, "-map", "0:v:0", "-f", "framecrc", "-"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    frames = [line for line in result.stdout.splitlines() if line and not line.startswith("#")]
    checksums = tuple(line.rsplit(",", 1)[-1].strip() for line in frames)
    return Playback(result.returncode, len(frames), result.stderr.strip(), checksums)


@dataclass
class RecordingOrigin:
    """A stream origin serving the demo that records every request reaching it."""

    root: Path
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def seen(self) -> str:
        """Every request line and header the origin received, as one text."""
        return "\n".join(
            f"{path}\n" + "\n".join(f"{k}: {v}" for k, v in headers.items())
            for path, headers in self.requests
        )


@contextmanager
def recording_origin(root: Path) -> Iterator[tuple[str, RecordingOrigin]]:
    """Serve the demo stream from ``root`` on a free loopback port: (url, recorder)."""
    demo.install(root)
    origin = RecordingOrigin(root)

    class Handler(SimpleHTTPRequestHandler):
        extensions_map = {  # noqa: RUF012
            ".ts": "video/mp2t",
            ".m3u8": "application/vnd.apple.mpegurl",
            ".mpd": "application/dash+xml",
            ".mp4": "video/mp4",
            ".m4s": "video/mp4",
        }

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:
            origin.requests.append((self.path, dict(self.headers.items())))
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test reads origin.requests

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", origin
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def chromium(download_dir: Path, trust_cert: Path | None = None) -> Any:
    """Headless Debian chromium through chromedriver; the caller quits it. With
    ``trust_cert``, HTTPS servers are accepted only when they present that certificate's
    public key (pinned by its SPKI hash: a check, not an "ignore errors").

    Returns a selenium WebDriver (typed Any: selenium is a test-only dependency).
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser = need_binary("chromium", "chromium")
    driver = need_binary("chromedriver", "chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",  # running as root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        # Nothing but the page's own requests: no QUIC probes, first-run, sync or updates.
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1280,820",
        f"--user-data-dir={download_dir / 'profile'}",
        *([f"--ignore-certificate-errors-spki-list={spki_hash(trust_cert)}"] if trust_cert else []),
    ):
        options.add_argument(argument)
    # The driver's path is given: selenium does not look for (or download) one.
    return webdriver.Chrome(options=options, service=Service(driver))


def spki_hash(cert: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of a PEM certificate, as Chromium pins keys."""
    import base64
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")
