"""End-to-end tests through a real nginx (a package: its module names stay apart from tests/integration)."""
