"""`authsvc serve` and friends."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from . import __version__, admincli, logs
from .settings import Settings, SettingsError, documented, unknown_variables

log = logging.getLogger("authsvc")

Command = Callable[[argparse.Namespace], int]


def parts() -> list[ModuleType]:
    """The parts installed beside the service, by their entry points (``authsvc.parts``):
    the edge and the local stack. Each has ``SETTINGS``, its settings classes, and
    ``add_commands(sub)``, which adds its subcommands and returns their handlers by name.
    The service itself imports neither."""
    return [entry.load() for entry in entry_points(group="authsvc.parts")]


def _settings_classes() -> tuple[type, ...]:
    return (Settings, *(cls for part in parts() for cls in part.SETTINGS))


def serve(host: str, port: int, workers: int) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"authsvc: {exc}", file=sys.stderr)
        return 2
    logs.setup(settings.log_level)
    for name in unknown_variables(Settings):
        log.warning("unknown setting ignored", extra={"variable": name})
    # Workers read the environment again; what the parent decides goes through it.
    if settings.secret is None and settings.id_check == "mac":
        os.environ["AUTHSVC_SECRET"] = secrets.token_urlsafe(32)
        log.warning(
            "AUTHSVC_SECRET is not set: ids issued now are valid only until this process "
            "stops, and only here. Set the same AUTHSVC_SECRET on every replica."
        )
    metrics_dir = None
    if workers > 1 and settings.multiproc_dir is None:
        metrics_dir = tempfile.mkdtemp(prefix="authsvc-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    elif settings.multiproc_dir:
        # Values left by an earlier run would be added to this one's.
        for stale in Path(settings.multiproc_dir).glob("*.db"):
            stale.unlink()

    import uvicorn

    try:
        uvicorn.run(
            "authsvc.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            log_config=logs.config(settings.log_level),
            access_log=False,
            lifespan="on",
            proxy_headers=False,
            server_header=False,
        )
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def lease_token_key() -> int:
    """The lease-token key nginx needs (CANWATCH_EDGE_LEASE_TOKEN_KEY), derived from AUTHSVC_SECRET."""
    from .leasetoken import lease_token_key as derive

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"authsvc: {exc}", file=sys.stderr)
        return 2
    if not settings.secret:
        print("authsvc: AUTHSVC_SECRET is not set", file=sys.stderr)
        return 2
    print(derive(settings.secret))
    return 0


def check() -> int:
    try:
        Settings.from_env()
    except SettingsError as exc:
        print(f"authsvc: {exc}", file=sys.stderr)
        return 2
    for cls in _settings_classes():
        for name in unknown_variables(cls):
            print(f"authsvc: warning: {name} is not a setting (a typo?)", file=sys.stderr)
    print("settings ok")
    return 0


def list_settings(markdown: bool) -> int:
    """Every setting with its default, the part that reads it and its meaning."""
    rows = documented(*_settings_classes())
    if not markdown:
        for name, default, reader, doc in rows:
            print(f"{name:34} {default:24} {reader:8} {doc}")
        return 0
    print("| variable | default | read by | meaning |\n|---|---|---|---|")
    for name, default, reader, doc in rows:
        meaning = doc.replace("|", "\\|")
        print(f"| `{name}` | `{default}` | {reader} | {meaning} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="authsvc", description="CanWatch stream-limit service")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve_cmd = sub.add_parser("serve", help="run the HTTP service")
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--port", type=int, default=9005)
    serve_cmd.add_argument("--workers", type=int, default=1)
    sub.add_parser("check", help="validate every part's settings and exit")
    sub.add_parser(
        "lease-token-key", help="print the edge's CANWATCH_EDGE_LEASE_TOKEN_KEY for AUTHSVC_SECRET"
    )
    settings_cmd = sub.add_parser(
        "settings", help="list every setting, its default and the part that reads it"
    )
    settings_cmd.add_argument(
        "--markdown", action="store_true", help="as a Markdown table (docs/settings.md)"
    )
    admincli.add_parser(sub)
    commands: dict[str, Command] = {}
    for part in parts():
        commands.update(part.add_commands(sub))
    args = parser.parse_args(argv)
    if args.command == "serve":
        if args.workers < 1:
            parser.error("--workers must be at least 1")
        return serve(args.host, args.port, args.workers)
    if args.command == "lease-token-key":
        return lease_token_key()
    if args.command == "check":
        return check()
    if args.command == "admin":
        return admincli.run(args, os.environ)
    if args.command == "settings":
        return list_settings(args.markdown)
    return commands[args.command](args)
