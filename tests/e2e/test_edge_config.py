"""The nginx templates render to a configuration nginx accepts with every switch, and the
switches that change what outsiders can reach do what they say."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import requests

from authsvc.settings import IdentityMode, PublicSettings
from canwatch_edge import render
from canwatch_edge.settings import EdgeSettings

from edge_harness import HOST, Player, StackFactory, ko
from harness import need_binary

pytestmark = pytest.mark.e2e


@pytest.mark.skipif(bool(HOST), reason=f"HOST={HOST}: checks this checkout's templates, not the deployment")
def test_every_combination_of_switches_passes_nginx_t(tmp_path: Path) -> None:
    nginx = need_binary("nginx", "nginx")
    identities: tuple[IdentityMode, ...] = ("header", "jwt")
    switches = itertools.product(
        identities,
        (False, True),  # fail_open
        (False, True),  # expose_internal
        (None, "https://127.0.0.2:8443/live/"),  # origin: the demo, or a real one with a path
        ("*", "https://player.example,http://localhost:8080"),  # cors_origins
    )
    checked = 0
    for n, (identity, fail_open, expose, origin, cors) in enumerate(switches):
        config = render.EdgeConfig(
            PublicSettings(identity=identity, fail_open=fail_open),
            EdgeSettings(
                port=20_000 + n, tls_port=0, origin_url=origin, expose_internal=expose, cors_origins=cors
            ),
            tmp_path / f"edge{n}",
            demo_root=tmp_path / "origin",
            demo_port=19998,
            ungated=n % 2 == 1,
        )
        conf = render.render(config)
        assert render.PLACEHOLDER.search(conf.read_text()) is None
        render.check(nginx, config.prefix)  # raises with nginx's own words
        checked += 1
    assert checked == 32


def test_internal_routes_and_cors_list_when_exposed(start_stack: StackFactory) -> None:
    stack = start_stack(
        why="CANWATCH_EDGE_EXPOSE_INTERNAL=true and a CORS origin list",
        expose_internal=True,
        cors_origins="https://player.example",
        admin_token="e2e-admin-token-for-tests",
    )
    player = Player(stack.url)
    metrics = requests.get(f"{stack.url}/metrics", timeout=5)
    assert metrics.status_code == 200
    assert "authsvc_decisions_total" in metrics.text
    # /admin/ reaches authsvc, which still wants its bearer token.
    ko(requests.get(f"{stack.url}/admin/users/{player.new_user()}/streams", timeout=5), 401)
    # The decision endpoint stays internal whatever the switch says.
    ko(requests.get(f"{stack.url}/_authz", timeout=5), 404, "Not Found")
    page = {"Origin": "https://player.example"}
    allowed = requests.get(f"{stack.url}/users/newId", headers=page, timeout=5)
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://player.example"
    assert allowed.headers["Access-Control-Allow-Credentials"] == "true"
    # Another page, and one whose name differs from the listed one only where the listed
    # one has a dot (a regex's any character).
    for stranger in ("https://evil.example", "https://playerxexample", "https://player.example.evil"):
        other = requests.get(f"{stack.url}/users/newId", headers={"Origin": stranger}, timeout=5)
        assert other.status_code == 200
        assert "Access-Control-Allow-Origin" not in other.headers, stranger
        assert "Access-Control-Allow-Credentials" not in other.headers, stranger
    player.close()


def test_lease_tokens_render_for_debians_nginx_and_for_openresty(tmp_path: Path) -> None:
    """Debian's nginx loads the Lua module (nginx -t accepts the result here); OpenResty has it
    built in, and its render differs by exactly the part that loads it."""
    nginx = need_binary("nginx", "nginx")
    settings = PublicSettings(lease_token_s=10)
    rendered = {}
    for flavour in ("debian", "openresty"):
        edge = EdgeSettings(nginx=flavour, tls_port=0, origin_url="http://127.0.0.1:19998")
        config = render.EdgeConfig(settings, edge, tmp_path / flavour)
        render.render(config)
        rendered[flavour] = {
            p.name: p.read_text().replace(str(config.prefix), "PREFIX") for p in config.prefix.glob("*.*")
        }
    render.check(nginx, tmp_path / "debian")
    debian, openresty = rendered["debian"], rendered["openresty"]
    assert "set_by_lua_file" in debian["gate.conf"] and "auth_request" in debian["gate-authsvc.conf"]
    assert set(debian) - set(openresty) == {"part-main-lua.conf"} and set(openresty) < set(debian)
    assert {name: openresty[name] for name in openresty} == {name: debian[name] for name in openresty}
    loads = [line for line in debian["part-main-lua.conf"].splitlines() if not line.startswith("#")]
    assert loads == [f"load_module {module};" for module in render.LUA_MODULES]
