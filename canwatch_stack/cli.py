"""`authsvc stack`: the local stack (what `make run` calls), and `authsvc stack --stop`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .settings import StackSettings

SETTINGS = (StackSettings,)


def stack(args: argparse.Namespace) -> int:
    """Run the stack until Ctrl-C, or stop the one running under ``--run-dir``."""
    from . import supervisor

    return supervisor.stop_running(args.run_dir) if args.stop else supervisor.run(args.run_dir)


def add_commands(sub: Any) -> dict[str, Any]:
    """The stack's subcommands of `authsvc`."""
    command = sub.add_parser("stack", help="run redis, authsvc and nginx with a demo origin (make run)")
    command.add_argument("--stop", action="store_true", help="stop the stack running under --run-dir")
    command.add_argument("--run-dir", type=Path, default=Path(".run"), help="pids, logs, data (.run)")
    return {"stack": stack}
