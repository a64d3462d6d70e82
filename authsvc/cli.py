"""`authsvc serve` and friends."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

from . import __version__, admincli, logs
from .settings import Settings, SettingsError, documented, unknown_variables

log = logging.getLogger("authsvc")


def _tooling_settings() -> tuple[type, ...]:
    """The settings classes of the local stack: their variables are not typos either.
    Imported here, not at the top: the service itself never loads the stack."""
    from .stack.settings import StackSettings

    return (StackSettings,)


def serve(host: str, port: int, workers: int) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"authsvc: {exc}", file=sys.stderr)
        return 2
    logs.setup(settings.log_level)
    for name in unknown_variables(None, *_tooling_settings()):
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


def gate_key() -> int:
    """The lease-token key nginx needs (CANWATCH_GATE_KEY), derived from AUTHSVC_SECRET."""
    from .gatetoken import gate_key as derive

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
    for name in unknown_variables(None, *_tooling_settings()):
        print(f"authsvc: warning: {name} is not a setting (a typo?)", file=sys.stderr)
    print("settings ok")
    return 0


def edge_config(out: Path) -> int:
    """Render the nginx edge from the environment, for nginx running elsewhere (the
    compose file runs this, then nginx on the result)."""
    from .stack import nginxconf, tls
    from .stack.settings import StackSettings

    try:
        settings, stack = Settings.from_env(), StackSettings.from_env()
        prefix = out.resolve()
        demo = prefix / "origin" if stack.origin_url is None else None
        if demo is not None:
            nginxconf.write_demo_origin(demo)
        own = None
        if stack.tls_port and not stack.tls_cert:
            local = tls.local_tls(prefix / "tls", nginxconf.tls_hosts(stack.host))
            own = (str(local.cert), str(local.key))
        config = nginxconf.EdgeConfig.from_settings(settings, stack, prefix, demo, own)
        main_file = nginxconf.render(config)
    except SettingsError as exc:
        print(f"authsvc: {exc}", file=sys.stderr)
        return 2
    print(f"nginx -p {prefix}/ -c {main_file} -e {prefix}/error.log")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="authsvc", description="CanWatch stream-limit service")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve_cmd = sub.add_parser("serve", help="run the HTTP service")
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--port", type=int, default=9005)
    serve_cmd.add_argument("--workers", type=int, default=1)
    sub.add_parser("check", help="validate the AUTHSVC_* settings and exit")
    sub.add_parser("gate-key", help="print nginx's CANWATCH_GATE_KEY for AUTHSVC_SECRET (lease tokens)")
    sub.add_parser("settings", help="list every setting with its default")
    stack_cmd = sub.add_parser("stack", help="run redis, authsvc and nginx with a demo origin (make run)")
    stack_cmd.add_argument("--stop", action="store_true", help="stop the stack running under --run-dir")
    stack_cmd.add_argument("--run-dir", type=Path, default=Path(".run"), help="pids, logs, data (.run)")
    edge_cmd = sub.add_parser("edge-config", help="render the nginx edge (and demo origin) into a folder")
    edge_cmd.add_argument("--out", type=Path, required=True, help="nginx prefix to write")
    admincli.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "serve":
        if args.workers < 1:
            parser.error("--workers must be at least 1")
        return serve(args.host, args.port, args.workers)
    if args.command == "gate-key":
        return gate_key()
    if args.command == "check":
        return check()
    if args.command == "admin":
        return admincli.run(args, os.environ)
    if args.command == "edge-config":
        return edge_config(args.out)
    if args.command == "stack":
        # Imported here: `authsvc serve` needs none of it.
        from .stack import supervisor

        return supervisor.stop_running(args.run_dir) if args.stop else supervisor.run(args.run_dir)
    for name, default, doc in documented(*_tooling_settings()):
        print(f"{name:32} {default:28} {doc}")
    return 0
