"""`make bench-gate`, third part: nginx's own instructions per fetch, counted by callgrind.

req/s on this shared 2-core machine moves by ±15% between runs; instructions counted by
valgrind do not (the same binary, configuration and requests give the same count,
whatever else the machine does). So this part says where the edge's time goes, mode by
mode, and what a change to the configuration or to the Lua check costs or saves.

One nginx worker (master_process off) runs under callgrind, rendered from the stack's own
templates into a directory of its own and proxying to the stack's origin (and asking the
stack's authsvc in the exact mode). It is sent WARM fetches of the ~100 KB segment, then
WARM + COUNTED in a second run; the difference divided by COUNTED is the user-space
instructions per fetch (the kernel's work, the same in every mode, is not counted). Each
mode is counted on --copies fresh nginx processes (3), and the median is its figure: the
Lua modes' counts differ between processes (LuaJIT's traces) by more than its runs do. Each
fetch is one of many players, with its own identity and lease cookie, on one keep-alive
connection; every answer must be a 200 with the segment's bytes, and the worker's access
log must show the mode's decision on every gated fetch.

Then authsvc's side of the exact mode: one authsvc process (one worker, on the stack's
Redis) under callgrind is asked WARM gate decisions, its counters are dumped, then COUNTED
more, dumped again: the second dump divided by COUNTED is its instructions per decision.
Beside it, the same for a bare ASGI app on the same uvicorn settings that answers 204 and
decides nothing (bench/bare.py): the floor any Python decision endpoint pays. Every
decision must be a 204 saying allowed. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from api import UVICORN
from gate import free_token_check
from players import SECRET, SEGMENT, TOKEN_S, exact_authsvc, make_players, players_stack
from players import http as get

from authsvc.leasetoken import lease_token_key
from canwatch_edge import render
from canwatch_stack.procs import StackError, find_binary, free_port, stop_process, wait_port
from canwatch_stack.supervisor import Stack

TOTALS = re.compile(r"([\d,]+) \([^)]*\)\s+PROGRAM TOTALS")
Player = tuple[str, str, str]


def single_worker(conf: Path, port: int, old_port: int | None = None) -> None:
    """One worker, no master, and no demo origin server of its own (the stack's serves)."""
    text = conf.read_text()
    text = re.sub(r"(?m)^worker_processes .*;$", "master_process off;\nworker_processes 1;", text, count=1)
    text = re.sub(r"(?m)^\s*include origin\.conf;$", "", text)
    if old_port is not None:
        text = text.replace(f"127.0.0.1:{old_port};", f"127.0.0.1:{port};")
    conf.write_text(text)


def edge_copy(
    stack: Stack, root: Path, token_s: float, authsvc: str | None = None, token_cache: int | None = None
) -> tuple[Path, int]:
    """The stack's edge rendered into ``root`` on a port of its own, origin external (and
    authsvc at ``authsvc``, the lease tokens' memory at ``token_cache``, if given)."""
    port = free_port()
    edge_settings = replace(
        stack.edge.edge, port=port, origin_url=f"http://127.0.0.1:{stack.ports.origin_port}", workers=1
    )
    if token_cache is not None:
        edge_settings = replace(edge_settings, lease_token_cache=token_cache)
    if authsvc is not None:
        edge_settings = replace(edge_settings, authsvc=(authsvc,))
    edge = replace(
        stack.edge,
        prefix=root,
        settings=replace(stack.edge.settings, lease_token_s=token_s),
        edge=edge_settings,
    )
    render.render(edge)
    single_worker(root / "nginx.conf", port)
    return root, port


def plain_copy(source: Path, root: Path) -> tuple[Path, int]:
    root.mkdir(parents=True)
    port = free_port()
    text = source.read_text().replace(str(source.parent), str(root))
    old = re.search(r"listen 127\.0\.0\.1:(\d+);", text)
    assert old is not None
    (root / "nginx.conf").write_text(text)
    single_worker(root / "nginx.conf", port, int(old.group(1)))
    for sub in ("body", "proxy"):
        (root / sub).mkdir(exist_ok=True)
    return root, port


def lua_yes(copy: tuple[Path, int]) -> tuple[Path, int]:
    """The copy with a Lua check that says yes at once: what calling Lua costs."""
    (copy[0] / "lease_token_valid.lua").write_text('return "1"\n')
    return copy


def no_lua(copy: tuple[Path, int]) -> tuple[Path, int]:
    """The copy with no Lua call at all: a valid token's path, the check free."""
    free_token_check(copy[0])
    return copy


def fetches(port: int, path_of: str, players: list[Player], count: int, cookies: bool, size: int) -> None:
    """``count`` fetches on one keep-alive connection, each the next player's."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        for n in range(count):
            stream, user, token = players[n % len(players)]
            headers = {"x-userid": user}
            if cookies:
                headers["Cookie"] = f"cw_lease={token}"
            connection.request("GET", path_of.format(stream=stream), headers=headers)
            answer = connection.getresponse()
            body = answer.read()
            if answer.status != 200 or len(body) != size:
                raise RuntimeError(f"{path_of}: {answer.status}, {len(body)} bytes")
    finally:
        connection.close()


def instructions(
    root: Path, port: int, count: int, send: tuple[str, list[Player], bool, int], env: dict[str, str]
) -> int:
    """Instructions of a whole worker's life that served ``count`` fetches."""
    out = root / f"callgrind.{count}"
    nginx = find_binary("nginx")
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    command += [nginx, "-p", f"{root}/", "-c", str(root / "nginx.conf"), "-e", str(root / "error.log")]
    with (root / "valgrind.log").open("ab") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        # (Its probe is closed at once: a connection left open would hold nginx's exit.)
        wait_port(port, proc, root / "error.log", timeout=60)
        path_of, players, cookies, size = send
        fetches(port, path_of, players, count, cookies, size)
        time.sleep(1.5)  # the access log's buffer is written within a second
    finally:
        # SIGTERM: nginx exits at once, and valgrind writes the profile as it does. (SIGQUIT,
        # the graceful exit, sometimes waited past a minute here under valgrind.)
        stop_process(proc, timeout=60)
    return total(out)


def total(profile: Path) -> int:
    """The instructions a callgrind profile counted."""
    annotated = subprocess.run(["callgrind_annotate", str(profile)], capture_output=True, text=True).stdout
    match = TOTALS.search(annotated)
    if match is None:
        raise RuntimeError(f"callgrind_annotate printed no total for {profile}")
    return int(match.group(1).replace(",", ""))


def python_instructions(
    app: list[str], env: dict[str, str], out: Path, players: list[Player], warm: int, counted: int
) -> float:
    """Instructions per gate decision of one Python process serving ``app`` (its command
    line after ``python -m``, with ``{port}`` for its port) under callgrind."""
    port = free_port()
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    command += [sys.executable, "-m", *(part.format(port=port) for part in app)]
    log_path = out.parent / f"{out.name}.log"
    with log_path.open("ab") as log:
        # PYTHONHASHSEED: the same dict and set layouts, so the same count, run after run.
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**env, "PYTHONHASHSEED": "0"},
            cwd=Path(__file__).parent, start_new_session=True,
        )  # fmt: skip
    try:
        wait_port(port, proc, log_path, timeout=180)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            for part, count in enumerate((warm, counted), 1):
                for n in range(count):
                    stream, user, _ = players[n % len(players)]
                    uri = f"/watch/{stream}/{SEGMENT}"
                    connection.request("GET", "/_authz", headers={"x-userid": user, "X-Original-URI": uri})
                    answer = connection.getresponse()
                    answer.read()
                    if answer.status != 204 or answer.getheader("X-Gate-Decision") != "allowed":
                        raise RuntimeError(f"{app[0]}: {answer.status} {answer.getheader('X-Gate-Decision')}")
                subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True, check=True)
                # Written by the process itself, after callgrind_control returns.
                dump, deadline = Path(f"{out}.{part}"), time.monotonic() + 60
                while not dump.exists():
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{app[0]}: no callgrind dump {dump} after 60 s")
                    time.sleep(0.1)
        finally:
            connection.close()
    finally:
        stop_process(proc, timeout=60)
    return total(Path(f"{out}.2")) / counted


def decisions(root: Path) -> collections.Counter[str]:
    log = root / "access.log"
    return collections.Counter(json.loads(line)["decision"] for line in log.read_text().splitlines())


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--players", type=int, default=500)
    # More than the players: every token has been seen once before the counting starts.
    parser.add_argument("--warm", type=int, default=600)
    parser.add_argument("--counted", type=int, default=1000)
    parser.add_argument(
        "--modes",
        default="plain,ungated,exact,exact_uds,token,token_check,lua_yes,no_lua",
        help="comma-separated subset (plain is always counted: the others are its multiples)",
    )
    parser.add_argument("--copies", type=int, default=3, help="fresh nginx processes per mode; the median")
    parser.add_argument("--no-authsvc", action="store_true", help="skip authsvc's side of the exact mode")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_annotate"):
        if shutil.which(tool) is None:
            print(f"bench-gate: {tool} is not installed: run `apt-get install -y valgrind`", file=sys.stderr)
            return 1
    nginx_env = {**os.environ, render.LEASE_TOKEN_KEY_ENV: lease_token_key(SECRET)}
    print(f"callgrind, one nginx worker, {args.players} players, {args.counted} fetches counted", flush=True)
    try:
        with (
            players_stack("bench-instructions-") as (stack, plain_url, run_dir, _),
            exact_authsvc(stack, free_port()) as (exact, _),
            exact_authsvc(stack, run_dir / "authsvc.sock") as (exact_uds, _),
        ):
            return measure(stack, plain_url, run_dir, args, nginx_env, (exact, exact_uds))
    except (StackError, RuntimeError, OSError) as exc:
        print(f"bench-gate: {exc}", file=sys.stderr)
        return 1


def measure(
    stack: Stack,
    plain_url: str,
    run_dir: Path,
    args: argparse.Namespace,
    nginx_env: dict[str, str],
    exact: tuple[str, str],
) -> int:
    """Every mode's instructions per fetch, printed. ``exact``: the addresses of the
    authsvc without lease tokens that the exact modes ask, over TCP and a unix socket."""
    players = make_players(stack, args.players)
    size = len(get(f"{plain_url}/{SEGMENT}")[0])
    gated = "/watch/{stream}/" + SEGMENT
    plain_conf = run_dir / "plain" / "nginx.conf"
    # mode -> (make its nginx in a directory, path, cookies sent, the decision its access
    # log must show)
    Make = Callable[[Path], tuple[Path, int]]
    modes: dict[str, tuple[Make, str, bool, str | None]] = {
        "plain": (lambda d: plain_copy(plain_conf, d), "/" + SEGMENT, True, None),
        "ungated": (lambda d: edge_copy(stack, d, 0), "/open/" + SEGMENT, True, ""),
        "exact": (lambda d: edge_copy(stack, d, 0, exact[0]), gated, False, "allowed"),
        # The same, with authsvc on a unix socket beside nginx (`authsvc serve --uds`).
        "exact_uds": (lambda d: edge_copy(stack, d, 0, exact[1]), gated, False, "allowed"),
        # Every player's token seen in the warm-up: each fetch's claim is one its nginx
        # worker remembers as checked, as for a player's every fetch after its first
        # with that token.
        "token": (lambda d: edge_copy(stack, d, TOKEN_S), gated, True, "token"),
        # Nothing remembered (CANWATCH_EDGE_LEASE_TOKEN_CACHE=0): every fetch's token
        # checked in full, MAC and all, as a player's first fetch with a token is.
        "token_check": (lambda d: edge_copy(stack, d, TOKEN_S, token_cache=0), gated, True, "token"),
        # Where the token mode's cost lies: the same, with the Lua check replaced by one
        # that says yes at once (what calling Lua costs), and with no Lua at all (a valid
        # token's path through the gate location, the check free).
        "lua_yes": (lambda d: lua_yes(edge_copy(stack, d, TOKEN_S)), gated, True, "token"),
        "no_lua": (lambda d: no_lua(edge_copy(stack, d, TOKEN_S)), gated, True, "token"),
    }  # fmt: skip
    wanted = {"plain", *args.modes.split(",")}
    if wanted - set(modes):
        print(f"bench-gate: no such mode: {', '.join(sorted(wanted - set(modes)))}", file=sys.stderr)
        return 2
    counts: dict[str, float] = {}
    for mode, (make, path_of, cookies, decision) in modes.items():
        if mode not in wanted:
            continue
        send = (path_of, players, cookies, size)
        # Each copy a fresh nginx: LuaJIT's traces, and so the Lua modes' counts, differ
        # between processes by more than one process's runs do.
        per_copy = []
        for copy in range(args.copies):
            root, port = make(run_dir / f"cg-{mode}-{copy}")
            warm = instructions(root, port, args.warm, send, nginx_env)
            total = instructions(root, port, args.warm + args.counted, send, nginx_env)
            per_copy.append((total - warm) / args.counted)
            if decision is not None:
                seen = decisions(root)
                if set(seen) != {decision}:
                    raise RuntimeError(f"{mode}: the access log has decisions {dict(seen)}, not {decision!r}")
        counts[mode] = statistics.median(per_copy)
        spread = f"  (copies {min(per_copy):,.0f} to {max(per_copy):,.0f})" if len(per_copy) > 1 else ""
        print(f"  {mode:11} {counts[mode]:9,.0f} instructions per fetch{spread}", flush=True)
    print(f"\nper fetch, as a multiple of the plain proxy's ({counts['plain']:,.0f})")
    for mode, count in counts.items():
        over = f"{count - counts['ungated']:+9,.0f} over ungated" if "ungated" in counts else ""
        print(f"  {mode:11} {count / counts['plain']:5.2f}x  {over}")
    if args.no_authsvc:
        return 0
    # authsvc as the exact mode asks it, without lease tokens to issue.
    env = {**stack.env, "AUTHSVC_LEASE_TOKEN_S": "0"}
    serve = ["authsvc", "serve", "--host", "127.0.0.1", "--port", "{port}", "--workers", "1"]
    bare = ["uvicorn", "bare:gate", "--host", "127.0.0.1", "--port", "{port}", *UVICORN]
    print(f"\nauthsvc per gate decision (one worker, one keep-alive connection, {args.counted} counted)")
    python = {
        "bare": python_instructions(bare, env, run_dir / "cg-bare", players, args.warm, args.counted),
        "authsvc": python_instructions(serve, env, run_dir / "cg-authsvc", players, args.warm, args.counted),
    }
    print(f"  bare ASGI app  {python['bare']:9,.0f} instructions per decision")
    print(f"  authsvc        {python['authsvc']:9,.0f} instructions per decision, "
          f"{python['authsvc'] - python['bare']:+,.0f} over the bare app")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
