"""Three parts, imported one way: the stack uses the edge and the service, the edge uses
the service, and the service uses neither. Counted from the source, not described."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("authsvc", "canwatch_edge", "canwatch_stack")
# What each part may import of the others.
ALLOWED = {"authsvc": set(), "canwatch_edge": {"authsvc"}, "canwatch_stack": {"authsvc", "canwatch_edge"}}


def imports_of(part: str) -> list[tuple[str, str, str]]:
    """(file, imported part, imported name) of every import of another part in ``part``."""
    found = []
    for path in sorted((ROOT / part).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules: list[tuple[str, list[str]]] = []
            if isinstance(node, ast.Import):
                modules = [(alias.name, []) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [(node.module, [alias.name for alias in node.names])]
            for module, names in modules:
                top = module.split(".")[0]
                if top in PARTS and top != part:
                    for name in names or [module]:
                        found.append((str(path.relative_to(ROOT)), module, name))
    return found


def test_each_part_imports_only_the_parts_below_it() -> None:
    for part in PARTS:
        wrong = [entry for entry in imports_of(part) if entry[1].split(".")[0] not in ALLOWED[part]]
        assert wrong == [], f"{part} imports {wrong}"
    # Not vacuous: the edge and the stack do import what they may.
    assert imports_of("canwatch_edge") and imports_of("canwatch_stack")


def test_no_private_name_is_imported_across_parts() -> None:
    private = [entry for part in PARTS for entry in imports_of(part) if entry[2].startswith("_")]
    assert private == []


def test_the_service_never_loads_the_edge_or_the_stack() -> None:
    # `authsvc serve` as far as its argument check (workers 0 is refused before it serves).
    code = (
        "import sys, authsvc.app, authsvc.cli\n"
        "try:\n"
        "    authsvc.cli.main(['serve', '--workers', '0'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('canwatch_edge', 'canwatch_stack')))\n"
        "print(','.join(loaded))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "", f"the service imported {out.stdout.strip()}"
