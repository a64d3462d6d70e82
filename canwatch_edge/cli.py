"""`authsvc edge-config`: the edge rendered from the environment, for an nginx that runs
elsewhere (the compose file runs it, then nginx on the result)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from authsvc.settings import PublicSettings, SettingsError

from . import render, tls
from .settings import EdgeSettings

SETTINGS = (EdgeSettings,)


def edge_config(args: argparse.Namespace) -> int:
    """Render the edge (and, without an origin URL, the demo origin) under ``args.out``."""
    try:
        settings, edge = PublicSettings.from_env(), EdgeSettings.from_env()
        prefix = Path(args.out).resolve()
        demo = prefix / "origin" if edge.origin_url is None else None
        if demo is not None:
            render.write_demo_origin(demo)
        own = None
        if edge.tls_port and not edge.tls_cert:
            local = tls.local_tls(prefix / "tls", render.tls_hosts(edge.host))
            own = (str(local.cert), str(local.key))
        main_file = render.render(render.EdgeConfig(settings, edge, prefix, demo, tls=own))
    except SettingsError as exc:
        print(f"authsvc: {exc}", file=sys.stderr)
        return 2
    print(f"nginx -p {prefix}/ -c {main_file} -e {prefix}/error.log")
    return 0


def add_commands(sub: Any) -> dict[str, Any]:
    """The edge's subcommands of `authsvc`."""
    command = sub.add_parser("edge-config", help="render the nginx edge (and demo origin) into a folder")
    command.add_argument("--out", type=Path, required=True, help="nginx prefix to write")
    return {"edge-config": edge_config}
