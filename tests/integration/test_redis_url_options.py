"""A one-Redis AUTHSVC_REDIS_URL's query options: the ones authsvc takes reach Redis, and
any other stops start-up naming it. (redis-py hands an unknown name to every connection
it opens, and each then failed: every request a 503, with nothing said at start-up.)"""

from __future__ import annotations

import os
import subprocess
import sys

from harness import ROOT, AuthsvcFactory, Client, RedisServer, free_port


def test_an_option_authsvc_takes_reaches_redis(
    start_authsvc: AuthsvcFactory, redis_server: RedisServer
) -> None:
    service = start_authsvc(redis_url=f"{redis_server.url}?client_name=canwatch-probe")
    client = Client(service.url)
    try:
        user, stream = client.new_user(), client.new_stream()
        assert client.activate(user, stream).status_code == 200
    finally:
        client.close()
    assert "name=canwatch-probe" in redis_server.command("CLIENT", "LIST")


def test_an_option_misspelt_stops_start_up(redis_server: RedisServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSVC_")}
    env["AUTHSVC_REDIS_URL"] = f"{redis_server.url}?socket_timout=1"
    started = subprocess.run(
        [sys.executable, "-m", "authsvc", "serve", "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert started.returncode == 2, started.stderr
    assert "AUTHSVC_REDIS_URL: the query holds an option authsvc does not take" in started.stderr
