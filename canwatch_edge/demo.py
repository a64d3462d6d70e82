"""The demo origin's video: a test pattern with a seconds counter, H.264 in MPEG-TS HLS
segments of about 100 KB.

The files are committed as package data (``canwatch_stack/demo_hls/``), made by
``python -m canwatch_edge.demo`` with Debian's ffmpeg, so that ``make run`` needs no
ffmpeg and no encoding at start-up (x264 takes ~2 s of CPU for the 20 s, and the tests
start a stack a dozen times). The stack copies them into the origin's directory.

Why these choices, checked on Debian 12's ffmpeg 5.1 and chromium 156:
- H.264 Main in MPEG-TS: ffmpeg's HLS demuxer plays it, and Debian's chromium decodes it
  through Media Source Extensions (``MediaSource.isTypeSupported('video/mp2t;
  codecs="avc1.4D401E"')`` is true), which is how the player page feeds it to <video>.
- A keyframe every segment and no scene-cut keyframes: each segment starts a GOP of
  exactly ``FRAMES_PER_SEGMENT`` frames, so a player can start at any segment and the
  frames decoded equal segments x frames per segment.
- Constant bit rate with filler (x264 ``nal-hrd=cbr``): every segment is about 100 KB,
  the size the gate benchmark measures.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

PACKAGED = resources.files(__package__).joinpath("demo_hls")
PLAYLIST = "playlist.m3u8"
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


def generate(out: Path, ffmpeg: str = "ffmpeg") -> Path:
    """Encode the demo stream into ``out`` (created); returns the playlist.

    Raises RuntimeError with ffmpeg's words when it fails.
    """
    out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(ffmpeg_command(out, ffmpeg), capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg failed:\n{result.stderr.strip()}")
    made = sorted(p.name for p in out.glob("segment*.ts"))
    if made != sorted(segment_names()):
        raise RuntimeError(f"ffmpeg made {made}, expected {segment_names()}")
    return out / PLAYLIST


def install(root: Path) -> Path:
    """Copy the packaged demo stream to ``root/demo``; returns the playlist.

    Files already there with the same size are left alone (a restart rewrites nothing).
    """
    demo = root / "demo"
    demo.mkdir(parents=True, exist_ok=True)
    for name in [PLAYLIST, *segment_names()]:
        source = PACKAGED.joinpath(name)
        data = source.read_bytes()
        target = demo / name
        if not target.exists() or target.stat().st_size != len(data):
            target.write_bytes(data)
    return demo / PLAYLIST


def main(argv: list[str] | None = None) -> int:
    """``python -m canwatch_edge.demo [DIR]``: encode the demo (default: the package's copy)."""
    parser = argparse.ArgumentParser(prog="python -m canwatch_edge.demo", description="Encode the demo.")
    default = Path(str(PACKAGED))
    parser.add_argument("out", nargs="?", type=Path, default=default, help=f"directory (default {default})")
    args = parser.parse_args(argv)
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        print("ffmpeg is missing: apt-get install -y ffmpeg", file=sys.stderr)
        return 1
    playlist = generate(args.out, ffmpeg)
    sizes = ", ".join(f"{(args.out / n).stat().st_size:,}" for n in segment_names())
    print(f"{playlist}: {SEGMENT_COUNT} segments of {SEGMENT_SECONDS} s ({sizes} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
