"""Fetch the web players the player page ships from npm, pinned, into
canwatch_edge/player/vendor/, and record what was taken (vendor.json).

    python scripts/vendor_players.py        (make vendor-players; needs npm)

Vendored rather than installed by `make run`: `make run` and the wheel need only Debian
and PyPI, and the edge serves the page from the package's own files. Each file is the
npm tarball's, byte for byte; vendor.json keeps the version, the tarball's integrity as
the registry states it and each file's sha256, which tests/unit/test_player_vendor.py
checks. To move to another version, change PACKAGES and run this again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VENDOR = Path(__file__).resolve().parents[1] / "canwatch_edge" / "player" / "vendor"

# package: (exact version, the files taken from its tarball, relative to package/)
PACKAGES: dict[str, tuple[str, list[str]]] = {
    # The full build, as platforms ship it; its worker is loaded from a file (workerPath),
    # which the page's Content-Security-Policy allows, not from a blob: URL.
    "hls.js": ("1.7.4", ["dist/hls.min.js", "dist/hls.worker.js", "LICENSE"]),
    # The DASH-only build: the page plays HLS with hls.js.
    "shaka-player": ("5.2.12", ["dist/shaka-player.dash.js", "LICENSE"]),
}


def npm(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["npm", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=300
    ).stdout


def main() -> int:
    record: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for package, (version, files) in PACKAGES.items():
            spec = f"{package}@{version}"
            integrity = npm("view", spec, "dist.integrity", cwd=work).strip()
            tarball = work / npm("pack", spec, cwd=work).strip().splitlines()[-1]
            digest = base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
            if integrity != f"sha512-{digest}":
                print(f"{spec}: the tarball does not match the registry's {integrity}", file=sys.stderr)
                return 1
            out = VENDOR / package
            out.mkdir(parents=True, exist_ok=True)
            hashes = {}
            with tarfile.open(tarball) as archive:
                for name in files:
                    member = archive.extractfile(f"package/{name}")
                    assert member is not None, name
                    data = member.read()
                    (out / Path(name).name).write_bytes(data)
                    hashes[Path(name).name] = hashlib.sha256(data).hexdigest()
            record[package] = {"version": version, "integrity": integrity, "sha256": hashes}
            print(f"{spec}: {', '.join(hashes)}")
    (VENDOR / "vendor.json").write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
