"""A real HLS and DASH client through the gate: Debian's ffmpeg plays the demo stream, as
HLS and as DASH, to the last frame, with the identity in a header, a cookie or the
playlist's or manifest's query (which the edge hands back as a stream-scoped cookie, since
segment URIs do not carry the query); it is refused with 403 over the limit and after a
deactivate. Header mode on the shared stack
(or HOST), jwt mode on a stack of its own whose origin records what reaches it."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import jwt
import pytest
import requests

from canwatch_edge import demo
from canwatch_stack.supervisor import Stack

from edge_harness import DASH_SEGMENT, HOST, MANIFEST, PLAYLIST, SEGMENT, Deployment, Player, ko, launch
from harness import need_binary
from media import DEMO_FRAMES, Playback, RecordingOrigin, play, recording_origin

pytestmark = pytest.mark.e2e

KEY = "e2e-video-jwt-key-of-at-least-32-bytes"
VIAS = ["header", "query", "cookie"]
# The demo's two forms: (manifest, a media segment).
FORMATS = {"hls": (PLAYLIST, SEGMENT), "dash": (MANIFEST, DASH_SEGMENT)}


@dataclass(frozen=True)
class Identity:
    """One user's identity given one way: to ffmpeg, and to the API (always a header)."""

    api_headers: dict[str, str]
    query: str = ""
    headers: dict[str, str] | None = None
    cookie: tuple[str, str] | None = None

    @classmethod
    def user(cls, user: str, via: str) -> Identity:
        api = {"x-userid": user}
        if via == "header":
            return cls(api, headers={"x-userid": user})
        if via == "query":
            return cls(api, query=f"?userid={quote(user)}")
        return cls(api, cookie=("cw_userid", user))

    @classmethod
    def token(cls, token: str, via: str) -> Identity:
        api = {"Authorization": f"Bearer {token}"}
        if via == "header":
            return cls(api, headers=api)
        if via == "query":
            return cls(api, query=f"?token={quote(token)}")
        return cls(api, cookie=("cw_token", token))

    def play(self, base: str, stream: str, manifest: str = PLAYLIST) -> Playback:
        return play(f"{base}/watch/{stream}/{manifest}{self.query}", headers=self.headers, cookie=self.cookie)

    def call(self, base: str, op: str, stream: str) -> requests.Response:
        return requests.patch(f"{base}/streams/{stream}/{op}", headers=self.api_headers, timeout=5)


def assert_refused_403(playback: Playback) -> None:
    assert playback.returncode != 0, playback
    assert "403" in playback.errors, playback
    assert playback.frames == 0, playback


def check_playback_and_limit(base: str, who: Identity, streams: list[str], manifest: str = PLAYLIST) -> None:
    """Three streams are admitted and one plays to its last frame; the fourth is refused
    (the API's JSON 403, ffmpeg's 403 at the gate); a deactivated stream is refused."""
    for stream in streams[:3]:
        assert who.call(base, "activate", stream).status_code == 200
    played = who.play(base, streams[0], manifest)
    assert played.returncode == 0, played
    assert played.errors == "", played.errors
    assert played.frames == DEMO_FRAMES == demo.SEGMENT_COUNT * demo.FRAMES_PER_SEGMENT, played
    body = ko(who.call(base, "activate", streams[3]), 403, "Stream Limit Reached")
    assert body["limit"] == 3
    assert_refused_403(who.play(base, streams[3], manifest))
    assert who.call(base, "deactivate", streams[0]).status_code == 200
    assert_refused_403(who.play(base, streams[0], manifest))


def test_the_demo_is_real_video() -> None:
    # The committed files are what demo.py describes: H.264 at the size the player page
    # asks for, a GOP per segment, about 100 KB each (the gate benchmark's segment).
    ffprobe = need_binary("ffprobe", "ffmpeg")
    root = Path(str(demo.PACKAGED))
    for name in demo.segment_names():
        size = (root / name).stat().st_size
        assert 90_000 <= size <= 120_000, (name, size)
    # Every segment decodes in the playback tests; here the first one's parameters.
    for name in demo.segment_names()[:1]:
        probe = subprocess.run(
            [ffprobe, "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
             "stream=codec_name,profile,width,height,nb_read_frames", "-of", "csv=p=0", str(root / name)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert probe.returncode == 0, probe.stderr
        expected = f"h264,Main,{demo.WIDTH},{demo.HEIGHT},{demo.FRAMES_PER_SEGMENT}"
        # The stream is listed once on its own and once inside its MPEG-TS program.
        assert set(probe.stdout.split()) == {expected}, (name, probe.stdout)


def test_the_dash_demo_is_real_video(tmp_path: Path) -> None:
    # Each DASH media segment, behind the initialization segment, is one GOP of H.264.
    ffprobe = need_binary("ffprobe", "ffmpeg")
    root = Path(str(demo.DASH_PACKAGED))
    init, *segments = demo.dash_segment_names()
    assert len(segments) == demo.SEGMENT_COUNT
    manifest = (root / demo.MANIFEST).read_text()
    assert 'codecs="avc1.4d401e"' in manifest.lower() and "<SegmentTimeline>" in manifest
    for name in segments:
        joined = tmp_path / f"{name}.mp4"
        joined.write_bytes((root / init).read_bytes() + (root / name).read_bytes())
        probe = subprocess.run(
            [ffprobe, "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
             "stream=codec_name,profile,width,height,nb_read_frames", "-of", "csv=p=0", str(joined)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert probe.returncode == 0, probe.stderr
        expected = f"h264,Main,{demo.WIDTH},{demo.HEIGHT},{demo.FRAMES_PER_SEGMENT}"
        assert probe.stdout.split() == [expected], (name, probe.stdout)


def test_dash_and_hls_are_the_same_video_through_the_gate(player: Player, edge: Deployment) -> None:
    user, stream = player.new_user(), player.new_stream()
    assert player.activate(user, stream).status_code == 200
    who = Identity.user(user, "header")
    hls, dash = who.play(edge.url, stream, PLAYLIST), who.play(edge.url, stream, MANIFEST)
    assert (hls.returncode, hls.errors, dash.returncode, dash.errors) == (0, "", 0, ""), (hls, dash)
    assert len(dash.checksums) == DEMO_FRAMES
    # Frame for frame the same pictures (DASH is the HLS segments remuxed).
    assert dash.checksums == hls.checksums


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("via", VIAS)
def test_ffmpeg_plays_and_is_refused_header_mode(
    player: Player, edge: Deployment, via: str, fmt: str
) -> None:
    user = player.new_user()
    streams = [player.new_stream() for _ in range(4)]
    check_playback_and_limit(edge.url, Identity.user(user, via), streams, FORMATS[fmt][0])


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_a_query_identity_comes_back_as_a_cookie_of_that_stream(player: Player, fmt: str) -> None:
    manifest, segment = FORMATS[fmt]
    user, stream = player.new_user(), player.new_stream()
    assert player.activate(user, stream).status_code == 200
    r = player.watch(stream, user, via="query", path=manifest)
    assert r.status_code == 200, r.text
    cookie = r.headers["Set-Cookie"]
    attributes = [part.strip() for part in cookie.split(";")]
    assert attributes[0] == f"cw_userid={user}"
    assert set(attributes[1:]) == {f"Path=/watch/{stream}/", "HttpOnly", "SameSite=Strict"}, cookie
    # The segments, fetched with that cookie alone, are allowed.
    assert player.watch(stream, user, via="cookie", path=segment).status_code == 200
    # Only for an identity that came in the query, and only once the gate allowed it.
    assert "Set-Cookie" not in player.watch(stream, user, via="header", path=manifest).headers
    assert "Set-Cookie" not in player.watch(stream, user, via="cookie", path=manifest).headers
    other = player.new_stream()
    refused = player.watch(other, user, via="query", path=manifest)
    assert refused.status_code == 403
    assert "Set-Cookie" not in refused.headers
    # The API never hands out the cookie (nor takes an identity from it alone).
    api = requests.get(f"{player.base}/streams/active?userid={user}", timeout=5)
    assert api.status_code == 200
    assert "Set-Cookie" not in api.headers


def test_the_query_wins_over_an_older_cookie(player: Player) -> None:
    # A player handed a new identity in the query must not be held to the cookie an
    # earlier one left for the same stream.
    old, new, stream = player.new_user(), player.new_user(), player.new_stream()
    assert player.activate(new, stream).status_code == 200
    r = requests.get(
        f"{player.base}/watch/{stream}/{PLAYLIST}",
        params={"userid": new},
        cookies={"cw_userid": old},
        timeout=5,
    )
    assert r.status_code == 200, r.text
    assert r.headers["Set-Cookie"].startswith(f"cw_userid={new};")
    ko(player.watch(stream, old, via="cookie", path=SEGMENT), 403, "Stream Not Active")


@pytest.fixture(scope="module")
def jwt_video(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, RecordingOrigin]]:
    if HOST:
        pytest.skip(f"HOST={HOST}: needs a stack of its own in jwt mode, with a recording origin")
    with recording_origin(tmp_path_factory.mktemp("origin")) as (url, origin):
        stack = launch(tmp_path_factory.mktemp("jwt-video"), identity="jwt", jwt_secret=KEY, origin_url=url)
        yield stack, origin
        stack.stop()


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("via", VIAS)
def test_ffmpeg_plays_and_is_refused_jwt_mode(
    jwt_video: tuple[Stack, RecordingOrigin], via: str, fmt: str
) -> None:
    stack, origin = jwt_video
    player = Player(stack.url)
    user = player.new_user()
    token = jwt.encode({"sub": user, "exp": int(time.time()) + 300}, KEY, algorithm="HS256")
    streams = [player.new_stream() for _ in range(4)]
    check_playback_and_limit(stack.url, Identity.token(token, via), streams, FORMATS[fmt][0])
    player.close()
    # The origin served the whole demo, and the token never reached it, in any form.
    last = demo.segment_names()[-1] if fmt == "hls" else demo.dash_segment_names()[-1]
    assert any(path.endswith(f"/{last}") for path, _ in origin.requests)
    seen = origin.seen()
    assert token not in seen
    assert "token=" not in seen.lower()
    assert "cookie:" not in seen.lower()
    assert "authorization:" not in seen.lower()
    # Nor any log file of the stack (nginx's access and error logs, authsvc's, Redis').
    logs = sorted(stack.run_dir.rglob("*.log"))
    assert logs
    for log in logs:
        assert token not in log.read_text(errors="replace"), log
        assert token.split(".")[2] not in log.read_text(errors="replace"), log
