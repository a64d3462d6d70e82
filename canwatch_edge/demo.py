"""The demo origin's video: a test pattern with a seconds counter, H.264 in MPEG-TS HLS
segments of about 100 KB, and the same video as DASH (fMP4 segments).

The files are committed as package data (``canwatch_edge/demo_hls/`` and
``canwatch_edge/demo_dash/``), made by ``python -m canwatch_edge.demo`` with Debian's
ffmpeg, so that ``make run`` needs no ffmpeg and no encoding at start-up (x264 takes ~2 s
of CPU for the 20 s, and the tests start a stack a dozen times). The stack copies both
into the origin's ``demo/`` directory: ``demo/playlist.m3u8`` and ``demo/manifest.mpd``.

Why these choices, checked on Debian 12's ffmpeg 5.1 and chromium 156:
- H.264 Main in MPEG-TS: ffmpeg's HLS demuxer plays it, and Debian's chromium decodes it
  through Media Source Extensions (``MediaSource.isTypeSupported('video/mp2t;
  codecs="avc1.4D401E"')`` is true), which is how the player page feeds it to <video>.
- A keyframe every segment and no scene-cut keyframes: each segment starts a GOP of
  exactly ``FRAMES_PER_SEGMENT`` frames, so a player can start at any segment and the
  frames decoded equal segments x frames per segment.
- Constant bit rate with filler (x264 ``nal-hrd=cbr``): every segment is about 100 KB,
  the size the gate benchmark measures.
- DASH is the HLS segments remuxed (``-c copy``), not encoded again: the same H.264
  frames, so a player decodes the same pictures from either. A SegmentTimeline rather
  than a segment duration: with a duration only, ffmpeg 5.1's DASH demuxer asks for a
  sixth segment past the end and reports the 404 as an error.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

PACKAGED = resources.files(__package__).joinpath("demo_hls")
DASH_PACKAGED = resources.files(__package__).joinpath("demo_dash")
PLAYLIST = "playlist.m3u8"
MANIFEST = "manifest.mpd"
DASH_INIT = "init.mp4"
SEGMENT_COUNT = 5
SEGMENT_SECONDS = 4
FPS = 25
FRAMES_PER_SEGMENT = SEGMENT_SECONDS * FPS
WIDTH, HEIGHT = 640, 360
VIDEO_BITRATE = "176k"  # ~102 KB a 4 s segment once the MPEG-TS overhead (~14%) is added
CODECS = "avc1.4D401E"  # H.264 Main, level 3.0: what the player page asks MSE for


def segment_names() -> list[str]:
    """The segments' file names, in playlist order."""
    return [f"segment{i}.ts" for i in range(SEGMENT_COUNT)]


def dash_segment_names() -> list[str]:
    """The DASH files other than the manifest: the initialization segment, then the media
    segments in order (numbered from 1, the DASH default)."""
    return [DASH_INIT, *(f"segment{i + 1}.m4s" for i in range(SEGMENT_COUNT))]


def ffmpeg_command(out: Path, ffmpeg: str = "ffmpeg") -> list[str]:
    """The ffmpeg command that encodes the demo into ``out``."""
    duration = SEGMENT_COUNT * SEGMENT_SECONDS
    gop = str(FRAMES_PER_SEGMENT)
    rate = VIDEO_BITRATE
    return [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        # testsrc: colour bars with a big seconds counter, drawn without any font.
        "-f", "lavfi", "-i", f"testsrc=size={WIDTH}x{HEIGHT}:rate={FPS}:duration={duration}",
        "-c:v", "libx264", "-preset", "medium", "-profile:v", "main", "-level", "3.0",
        "-pix_fmt", "yuv420p",
        "-b:v", rate, "-minrate", rate, "-maxrate", rate, "-bufsize", rate,
        "-x264-params", "nal-hrd=cbr",
        "-g", gop, "-keyint_min", gop, "-sc_threshold", "0", "-flags", "+cgop",
        "-f", "hls", "-hls_time", str(SEGMENT_SECONDS), "-hls_playlist_type", "vod",
        "-hls_segment_filename", str(out / "segment%d.ts"),
        str(out / PLAYLIST),
    ]  # fmt: skip


def dash_command(playlist: Path, out: Path, ffmpeg: str = "ffmpeg") -> list[str]:
    """The ffmpeg command that remuxes the HLS demo at ``playlist`` into DASH in ``out``."""
    return [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-i", str(playlist), "-map", "0:v:0",
        # The same frames; avc1: the MP4 sample entry (MPEG-TS carries no codec tag).
        "-c", "copy", "-tag:v", "avc1",
        "-f", "dash", "-seg_duration", str(SEGMENT_SECONDS),
        "-use_template", "1", "-use_timeline", "1",
        "-init_seg_name", DASH_INIT, "-media_seg_name", "segment$Number$.m4s",
        str(out / MANIFEST),
    ]  # fmt: skip


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg failed:\n{result.stderr.strip()}")


def generate_dash(playlist: Path, out: Path, ffmpeg: str = "ffmpeg") -> Path:
    """Remux the HLS demo at ``playlist`` into DASH in ``out`` (created); returns the manifest.

    Raises RuntimeError with ffmpeg's words when it fails.
    """
    out.mkdir(parents=True, exist_ok=True)
    _run(dash_command(playlist, out, ffmpeg))
    made = sorted(p.name for p in out.glob("*.m4s")) + sorted(p.name for p in out.glob("*.mp4"))
    if sorted(made) != sorted(dash_segment_names()):
        raise RuntimeError(f"ffmpeg made {made}, expected {dash_segment_names()}")
    return out / MANIFEST


def generate(out: Path, ffmpeg: str = "ffmpeg") -> Path:
    """Encode the demo stream into ``out`` (created); returns the playlist.

    Raises RuntimeError with ffmpeg's words when it fails.
    """
    out.mkdir(parents=True, exist_ok=True)
    _run(ffmpeg_command(out, ffmpeg))
    made = sorted(p.name for p in out.glob("segment*.ts"))
    if made != sorted(segment_names()):
        raise RuntimeError(f"ffmpeg made {made}, expected {segment_names()}")
    return out / PLAYLIST


def install(root: Path) -> Path:
    """Copy the packaged demo stream, HLS and DASH, to ``root/demo``; returns the playlist.

    Files already there with the same size are left alone (a restart rewrites nothing).
    """
    demo = root / "demo"
    demo.mkdir(parents=True, exist_ok=True)
    files = [(PACKAGED, name) for name in [PLAYLIST, *segment_names()]]
    files += [(DASH_PACKAGED, name) for name in [MANIFEST, *dash_segment_names()]]
    for package, name in files:
        data = package.joinpath(name).read_bytes()
        target = demo / name
        if not target.exists() or target.stat().st_size != len(data):
            target.write_bytes(data)
    return demo / PLAYLIST


def main(argv: list[str] | None = None) -> int:
    """``python -m canwatch_edge.demo [--dash-only] [DIR]``: encode the demo as HLS and remux
    it as DASH, both into DIR (default: the package's copies, demo_hls/ and demo_dash/)."""
    parser = argparse.ArgumentParser(prog="python -m canwatch_edge.demo", description="Encode the demo.")
    parser.add_argument("out", nargs="?", type=Path, help="directory for both (default: the package's)")
    parser.add_argument("--dash-only", action="store_true", help="only remux the HLS already there")
    args = parser.parse_args(argv)
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        print("ffmpeg is missing: apt-get install -y ffmpeg", file=sys.stderr)
        return 1
    hls_dir = args.out or Path(str(PACKAGED))
    dash_dir = args.out or Path(str(DASH_PACKAGED))
    playlist = hls_dir / PLAYLIST if args.dash_only else generate(hls_dir, ffmpeg)
    manifest = generate_dash(playlist, dash_dir, ffmpeg)
    for where, names in ((playlist, segment_names()), (manifest, dash_segment_names())):
        sizes = ", ".join(f"{(where.parent / n).stat().st_size:,}" for n in names)
        print(f"{where}: {sizes} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
