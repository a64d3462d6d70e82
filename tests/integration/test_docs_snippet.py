"""The docs' copy-paste nginx snippet (docs/edge.md, "Copying it into your own nginx") is a
configuration nginx accepts: pasted as it stands into the main, http and server contexts
its comments name, with only its placeholders (the authsvc address, the origin, the
folder of the Lua check) pointed at real things, `nginx -t` passes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from canwatch_edge import render
from canwatch_stack.procs import free_port

from harness import ROOT, need_binary

SECTION = "## Copying it into your own nginx"


def snippet() -> dict[str, str]:
    """The snippet's three parts, by the comment that opens each: main, http, server."""
    page = (ROOT / "docs" / "edge.md").read_text()
    block = re.search(r"```nginx\n(.*?)```", page[page.index(SECTION) :], re.S)
    assert block is not None, "no nginx block under " + SECTION
    text = block.group(1)
    heads = {"main": "# main (top level)", "http": "# http {}", "server": "# server {}"}
    at = {part: text.index(head) for part, head in heads.items()}
    assert at["main"] < at["http"] < at["server"]
    return {
        "main": text[at["main"] : at["http"]],
        "http": text[at["http"] : at["server"]],
        "server": text[at["server"] :],
    }


def test_the_docs_snippet_is_a_configuration_nginx_accepts(tmp_path: Path) -> None:
    nginx = need_binary("nginx", "nginx")
    parts = snippet()
    # The Lua check as `authsvc edge-config` writes it, where the snippet looks for it.
    lua_dir = tmp_path / "canwatch"
    lua_dir.mkdir()
    for name in ("lease_token.lua", "lease_token_valid.lua"):
        (lua_dir / name).write_text(render.TEMPLATES.joinpath(name).read_text())
    assert '"/etc/nginx/canwatch/?.lua;;"' in parts["http"]
    assert "/etc/nginx/canwatch/lease_token_valid.lua" in parts["server"]
    http = parts["http"].replace("/etc/nginx/canwatch/", f"{lua_dir}/")
    parts["server"] = parts["server"].replace("/etc/nginx/canwatch/", f"{lua_dir}/")
    assert "server 10.0.0.5:9005;" in http  # a placeholder nginx resolves as it is
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"""{parts["main"]}
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
events {{}}
http {{
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    access_log off;
    upstream your_origin {{ server 127.0.0.1:9; }}
{http}
    server {{
        listen 127.0.0.1:{free_port()};
{parts["server"]}
    }}
}}
"""
    )
    check = subprocess.run(
        [nginx, "-t", "-p", f"{tmp_path}/", "-c", str(conf), "-e", str(tmp_path / "error.log")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
