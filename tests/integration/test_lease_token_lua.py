"""The lease-token check's memory (nginx/lease_token.lua), in a real nginx with Debian's
Lua module: a location hands the module claims as the gate builds them
("identity\\nstream\\ncookie") and answers, for each, the user it names (or "") and how
many claims each of the memory's two generations holds. The tokens are authsvc's own
(authsvc/leasetoken.py)."""

from __future__ import annotations

import json
import string
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from authsvc.leasetoken import lease_token_key, mac
from canwatch_edge import render
from canwatch_stack.procs import free_port, stop_process, wait_port

from harness import ROOT, SECRET, need_binary

KEY = lease_token_key(SECRET)
LIFETIME_S = 30
SIZE = 2  # claims a generation holds
BASE64URL = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"

CONF = """
load_module {ndk};
load_module {lua};
pid {root}/nginx.pid;
error_log {root}/error.log;
daemon off;
master_process off;
events {{}}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    lua_package_path "{templates}/?.lua;;";
    init_by_lua_block {{
        require("lease_token").init("{key}", {lifetime}, false, {size})
    }}
    server {{
        listen 127.0.0.1:{port};
        location = /claims {{
            content_by_lua_block {{
                local lease_token = require("lease_token")
                ngx.req.read_body()
                for claim in string.gmatch(ngx.req.get_body_data() or "", "[^\\r]+") do
                    local user = lease_token.user(claim)
                    local newer, older = lease_token.remembered()
                    ngx.say(string.format('["%s", %d, %d]', user, newer, older))
                end
            }}
        }}
    }}
}}
"""


@pytest.fixture
def lua_nginx(tmp_path: Path) -> Iterator[str]:
    """An nginx of the test's own: its memory starts empty."""
    nginx = need_binary("nginx", "nginx")
    for module in render.LUA_MODULES:
        assert Path(module).exists(), f"{module}: apt-get install libnginx-mod-http-ndk libnginx-mod-http-lua"
    root = tmp_path
    port = free_port()
    conf = root / "nginx.conf"
    conf.write_text(
        CONF.format(
            ndk=render.LUA_MODULES[0],
            lua=render.LUA_MODULES[1],
            root=root,
            templates=ROOT / "nginx",
            key=KEY,
            lifetime=LIFETIME_S,
            size=SIZE,
            port=port,
        )
    )
    proc = subprocess.Popen(
        [nginx, "-p", f"{root}/", "-c", str(conf), "-e", str(root / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc, root / "error.log", timeout=30)
        yield f"http://127.0.0.1:{port}/claims"
    finally:
        stop_process(proc)


def ask(url: str, *claims: str) -> list[tuple[str, int, int]]:
    """For each claim in turn: (the user it names or "", claims in the newer generation,
    in the older)."""
    r = requests.post(url, data="\r".join(claims).encode(), timeout=10)
    assert r.status_code == 200, r.text
    answers = []
    for line in r.text.splitlines():
        user, newer, older = json.loads(line)
        answers.append((str(user), int(newer), int(older)))
    return answers


def claim(user: str, stream: str, expiry: int | None = None, token: str | None = None) -> str:
    expiry = expiry if expiry is not None else int(time.time()) + LIFETIME_S
    return f"{user}\n{stream}\n{token or f'{expiry}.{mac(KEY, user, stream, expiry)}'}"


def fresh_ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{time.monotonic_ns()}-{n}" for n in range(count)]


def test_the_jit_warm_up_leaves_nothing_remembered(lua_nginx: str) -> None:
    """init() runs the path of a claim seen before with a claim of its own (for LuaJIT to
    compile that path first): afterwards that claim is not valid and the memory is empty."""
    (user,) = fresh_ids("u", 1)
    answers = ask(lua_nginx, "\0warm-up", claim(user, "s"))
    assert answers == [("", 0, 0), (user, 1, 0)], answers


def test_the_memory_keeps_at_most_two_generations_of_its_size(lua_nginx: str) -> None:
    users = fresh_ids("u", 7)
    answers = ask(lua_nginx, *(claim(user, "s") for user in users))
    assert [user for user, _, _ in answers] == users  # every token valid
    assert all(newer <= SIZE and older <= SIZE for _, newer, older in answers), answers
    # Each generation fills, then the older is dropped: the sizes turn over.
    assert (1, SIZE) in [(newer, older) for _, newer, older in answers], answers


def test_a_claim_in_the_older_generation_is_carried_over_unless_expired(lua_nginx: str) -> None:
    a, b, c, d = fresh_ids("carry", 4)
    # a and b fill a generation; c starts the next one, a and b are now the older.
    answers = ask(lua_nginx, claim(a, "s"), claim(b, "s"), claim(c, "s"))
    assert [user for user, _, _ in answers] == [a, b, c]
    assert answers[-1][1:] == (1, SIZE)
    # b, found in the older generation, is carried over into the newer.
    assert ask(lua_nginx, claim(b, "s")) == [(b, SIZE, SIZE)]
    # d starts a new generation: the older is now c and b, and a is gone.
    assert ask(lua_nginx, claim(d, "s"))[0][1:] == (1, SIZE)
    # A claim remembered in the older generation but expired is refused, not carried over:
    # e joins d in the newer generation, g starts the next, so e is in the older.
    e, g = fresh_ids("expired", 2)
    soon = int(time.time()) + 3  # valid for two whole seconds at least, then past
    assert ask(lua_nginx, claim(e, "s", soon), claim(g, "s")) == [(e, SIZE, SIZE), (g, 1, SIZE)]
    time.sleep(max(0.0, soon + 1.05 - time.time()))  # the condition is the clock: past e's expiry
    assert ask(lua_nginx, claim(e, "s", soon)) == [("", 1, SIZE)]


def test_a_remembered_token_binds_its_identity_and_stream(lua_nginx: str) -> None:
    user, other = fresh_ids("bind", 2)
    token = claim(user, "s").split("\n")[2]
    assert ask(lua_nginx, claim(user, "s", token=token))[0][0] == user  # remembered now
    assert [
        answer[0] for answer in ask(lua_nginx, claim(other, "s", token=token), claim(user, "t", token=token))
    ] == [
        "",
        "",
    ]
    assert ask(lua_nginx, claim(user, "s", token=token))[0][0] == user


def test_a_mac_is_taken_only_as_authsvc_spells_it(lua_nginx: str) -> None:
    """Its last character carries two spare bits that decoding ignores: the three other
    spellings of the same bytes are refused."""
    user = fresh_ids("spell", 1)[0]
    token = claim(user, "s").split("\n")[2]
    last = BASE64URL.index(token[-1])
    others = [token[:-1] + BASE64URL[last ^ bits] for bits in (1, 2, 3)]
    answers = ask(lua_nginx, *(claim(user, "s", token=spelling) for spelling in others))
    assert [answer[0] for answer in answers] == ["", "", ""]
    assert ask(lua_nginx, claim(user, "s", token=token))[0][0] == user
