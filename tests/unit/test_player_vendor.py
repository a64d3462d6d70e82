"""The web players the page ships are the npm files recorded in vendor/vendor.json, byte
for byte: each file's sha256, its licence beside it, the version inside the code, and
the page, the wheel's package data and the edge's render all carrying them."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from canwatch_edge import render

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PLAYER = ROOT / "canwatch_edge" / "player"
VENDOR = PLAYER / "vendor"
RECORD = json.loads((VENDOR / "vendor.json").read_text())
# How each player states its own version in its code.
VERSION_IN_CODE = {"hls.js": '"{}"', "shaka-player": 'version="v{}"'}


def test_the_players_are_pinned_to_exact_versions() -> None:
    assert set(RECORD) == {"hls.js", "shaka-player"}
    for package, entry in RECORD.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", entry["version"]), (package, entry["version"])
        assert entry["integrity"].startswith("sha512-"), package


@pytest.mark.parametrize("package", sorted(RECORD))
def test_every_vendored_file_has_its_recorded_hash(package: str) -> None:
    hashes = RECORD[package]["sha256"]
    on_disk = sorted(p.name for p in (VENDOR / package).iterdir())
    assert on_disk == sorted(hashes), "a file is vendored that is not recorded, or the reverse"
    for name, expected in hashes.items():
        assert hashlib.sha256((VENDOR / package / name).read_bytes()).hexdigest() == expected, name
    assert "LICENSE" in hashes
    assert "Apache License" in (VENDOR / package / "LICENSE").read_text()


@pytest.mark.parametrize("package", sorted(RECORD))
def test_the_code_is_the_version_recorded(package: str) -> None:
    entry = RECORD[package]
    scripts = [name for name in entry["sha256"] if name.endswith(".js") and "worker" not in name]
    (script,) = scripts
    stated = VERSION_IN_CODE[package].format(entry["version"])
    assert stated in (VENDOR / package / script).read_text(), (script, stated)


def test_the_page_loads_the_vendored_players() -> None:
    page = (PLAYER / "index.html").read_text()
    for package, entry in RECORD.items():
        (script,) = [n for n in entry["sha256"] if n.endswith(".js") and "worker" not in n]
        assert f'src="vendor/{package}/{script}"' in page
    # hls.js's worker from its file (the CSP allows no blob: script).
    assert 'workerPath: "vendor/hls.js/hls.worker.js"' in (PLAYER / "player.js").read_text()


def test_the_wheel_and_the_render_carry_them(tmp_path: Path) -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"vendor/*.json", "vendor/*/*"' in pyproject
    copied = tmp_path / "player"
    render._copy_page(render.PLAYER, copied)
    for package, entry in RECORD.items():
        for name, expected in entry["sha256"].items():
            assert hashlib.sha256((copied / "vendor" / package / name).read_bytes()).hexdigest() == expected
    assert (copied / "vendor" / "vendor.json").exists()
    assert sorted(p.name for p in copied.iterdir()) == ["index.html", "player.css", "player.js", "vendor"]
