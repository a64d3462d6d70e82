"""The docs site: its settings page is what `authsvc settings` says, and it builds strictly
(a broken link, a missing anchor or a page left out of the navigation fails the build)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from authsvc import cli

from harness import ROOT


def test_the_settings_page_lists_every_setting_as_authsvc_settings_does() -> None:
    page = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert page == cli.settings_page(page), "docs/settings.md is stale: run `make docs`"
    for name in ("AUTHSVC_LEASE_TOKEN_S", "CANWATCH_EDGE_PORT", "CANWATCH_STACK_REDIS"):
        assert f"| `{name}` |" in page


def test_a_changed_setting_makes_the_page_stale() -> None:
    page = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    edited = page.replace("| `CANWATCH_EDGE_PORT` | `9004` |", "| `CANWATCH_EDGE_PORT` | `9100` |")
    assert edited != page and cli.settings_page(edited) == page


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "site" / "settings" / "index.html").exists()


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    subprocess.run(["cp", "-r", str(ROOT / "docs"), str(docs)], check=True)
    (docs / "api.md").write_text((docs / "api.md").read_text() + "\n[gone](no-such-page.md)\n")
    config = (ROOT / "mkdocs.yml").read_text().replace("docs_dir: docs", f"docs_dir: {docs}")
    (tmp_path / "mkdocs.yml").write_text(config)
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode != 0 and "no-such-page.md" in out.stderr, out.stderr


def test_the_readme_is_short_and_points_into_the_docs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    assert readme.index("make run") < readme.index("make test") < 600
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    missing = [page for page in pages if f"docs/{page}" not in readme]
    assert not missing, f"the README's table of contents misses {missing}"
