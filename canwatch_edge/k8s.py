"""The nginx edge for Kubernetes: ``authsvc edge-config``'s rendering, with the settings the
edge Deployment of ``deploy/k8s/base/`` runs it with, as ConfigMaps.

    python -m canwatch_edge.k8s [--out FILE] [NAME=value ...]   (make k8s-config)

In the Pod, nginx's prefix ``/edge`` is an emptyDir (pid file, temp files); the
configuration files are the ConfigMap ``edge-config`` mounted read-only at ``/edge/conf``
(nginx resolves the relative ``include``s against the main file's folder), the player page
is ``edge-player`` at ``/edge/player``, with the vendored web players of
``edge-player-<package>`` projected under its ``vendor/``; the lease tokens' Lua check is read from the
configuration's folder. The settings it was rendered with are kept in
an annotation, so that a test can render it again and find it unchanged.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from authsvc.settings import PublicSettings, Settings, SettingsError, env_name, unknown_variables

from . import render
from .settings import EdgeSettings

PREFIX = "/edge"
CONF_DIR = f"{PREFIX}/conf"
OUT = Path("deploy/k8s/base/edge-config.yaml")
SETTINGS_ANNOTATION = "canwatch/edge-settings"

# The edge as the base Deployment runs it. Each can be overridden on the command line.
DEFAULTS: dict[str, str] = {
    "CANWATCH_EDGE_HOST": "0.0.0.0",
    "CANWATCH_EDGE_PORT": "9004",
    # TLS is the load balancer's in the base (an Ingress or a cloud LB); an nginx that
    # terminates it needs a certificate Secret mounted and CANWATCH_EDGE_TLS_CERT/KEY set.
    "CANWATCH_EDGE_TLS_PORT": "0",
    # The authsvc Service's name, found through the Pod's resolv.conf in its namespace.
    # Its ClusterIP stays the same while Pods come and go, so nginx resolving it once at
    # start is enough (CANWATCH_EDGE_RESOLVER would also cost the upstream keepalive pool).
    "CANWATCH_EDGE_AUTHSVC": "authsvc:9005",
    # The streams to gate. A placeholder: the demo origin is a local video for `make run`,
    # not something to ship in a ConfigMap (a 1 MiB limit) to production.
    "CANWATCH_EDGE_ORIGIN_URL": "https://origin.example.com",
    "CANWATCH_EDGE_LOGS": "stdio",
    # Written out so the render does not depend on who runs it; the Pod runs nginx as an
    # unprivileged uid from the start, so nginx ignores the directive.
    "CANWATCH_EDGE_USER": "nobody nogroup",
    # "auto" would count the node's cores, not the container's CPU limit.
    "CANWATCH_EDGE_WORKERS": "2",
    # The OpenResty image: its Lua module, which checks lease tokens, is built in.
    "CANWATCH_EDGE_NGINX": "openresty",
}


def settings_env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The defaults with ``overrides`` on top; raises SettingsError on an unknown name."""
    env = {**DEFAULTS, **(overrides or {})}
    unknown = unknown_variables(EdgeSettings, env) + unknown_variables(Settings, env)
    if unknown:
        raise SettingsError(f"{', '.join(unknown)}: not a setting")
    return env


def render_files(env: Mapping[str, str], prefix: str = PREFIX) -> dict[str, str]:
    """Every file ``authsvc edge-config`` writes for ``env``, by path under the prefix, as
    rendered for a prefix of ``prefix`` (rendered into a temporary folder, whose path is
    then replaced)."""
    settings, edge = PublicSettings.from_env(env), EdgeSettings.from_env(env)
    if edge.origin_url is None:
        raise SettingsError("CANWATCH_EDGE_ORIGIN_URL: set the origin to gate (no demo origin here)")
    with tempfile.TemporaryDirectory(prefix="canwatch-k8s-") as tmp:
        out = Path(tmp) / "edge"
        render.render(render.EdgeConfig(settings, edge, out, conf_dir=out / "conf"))
        return {
            str(path.relative_to(out)): path.read_text(encoding="utf-8").replace(str(out), prefix)
            for path in sorted(out.rglob("*"))
            if path.is_file()
        }


def config_maps(env: Mapping[str, str]) -> list[dict[str, Any]]:
    """The ConfigMaps ``edge-config`` (nginx's files), ``edge-player`` (the page) and
    ``edge-player-<package>`` (each web player the page vendors)."""
    files = render_files(env)
    # A secret given on the command line is never written into a ConfigMap.
    secret = {env_name(Settings, f) for f in fields(Settings) if f.metadata["secret"]}
    shown = "".join(
        f"{name}={'<hidden>' if name in secret else value}\n" for name, value in sorted(env.items())
    )

    def config_map(name: str, data: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "labels": {"app.kubernetes.io/name": "edge", "app.kubernetes.io/part-of": "canwatch"},
                "annotations": {SETTINGS_ANNOTATION: shown},
            },
            "data": data,
        }

    player = {path.split("/", 1)[1]: text for path, text in files.items() if path.startswith("player/")}
    conf = {path: text for path, text in files.items() if "/" not in path}
    # The page's own files in edge-player (vendor/vendor.json as "vendor.json"), and each
    # vendored player in a ConfigMap of its own: together they pass the 1 MiB one holds.
    # The Deployment projects them into one folder (deploy/k8s/base/edge.yaml).
    page: dict[str, str] = {}
    vendored: dict[str, dict[str, str]] = {}
    for path, text in player.items():
        parts = path.split("/")
        if len(parts) == 1 or (parts[0] == "vendor" and len(parts) == 2):
            page[parts[-1]] = text
        elif parts[0] == "vendor" and len(parts) == 3:
            vendored.setdefault(parts[1], {})[parts[2]] = text
        else:
            raise RuntimeError(f"unexpected folder in the player page: {path}")
    if len(player) + len(conf) != len(files):
        raise RuntimeError(f"unexpected folders in the edge: {sorted(files)}")
    maps = [config_map("edge-config", conf), config_map("edge-player", page)]
    return maps + [config_map(f"edge-player-{package}", data) for package, data in sorted(vendored.items())]


class _Literal(yaml.SafeDumper):
    """Multi-line strings as ``|`` blocks, so the ConfigMap reads like the files."""


def _block(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text and not any(line != line.rstrip() for line in text.split("\n")) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Literal.add_representer(str, _block)


def dump(env: Mapping[str, str]) -> str:
    """The YAML of ``edge-config.yaml``."""
    header = (
        "# Generated by `make k8s-config` (python -m canwatch_edge.k8s): do not edit, render again.\n"
        f"# The nginx edge of CanWatch as `authsvc edge-config` renders it for the prefix {PREFIX}.\n"
    )
    docs = [yaml.dump(doc, Dumper=_Literal, sort_keys=False, width=1000) for doc in config_maps(env)]
    return header + "---\n".join(docs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m canwatch_edge.k8s", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"file to write ({OUT}); - for stdout")
    parser.add_argument("settings", nargs="*", metavar="NAME=value", help="override a setting")
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.settings if "=" in item)
    if len(overrides) != len(args.settings):
        parser.error("settings are NAME=value")
    try:
        text = dump(settings_env(overrides))
    except SettingsError as exc:
        print(f"authsvc: {exc}", file=sys.stderr)
        return 2
    if str(args.out) == "-":
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
