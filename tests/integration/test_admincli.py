"""`authsvc admin` against a real authsvc: limits, listing and ending streams, the
token from the environment or a flag, JSON or a table on a terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from typing import Any

from harness import ROOT, Authsvc, Client, free_port

TOKEN = "admin-token-for-tests"


def admin(
    service: Authsvc, *args: str, token: str | None = TOKEN, flag: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSVC_")}
    command = [sys.executable, "-m", "authsvc", "admin", "--url", service.url]
    if token is not None and flag:
        command += ["--token", token]
    elif token is not None:
        env["AUTHSVC_ADMIN_TOKEN"] = token
    # Issued ids may begin with "-": positional arguments go after "--", as the help says.
    op, *rest = args
    options = [a for a in rest if a.startswith("--")]
    positional = [a for a in rest if not a.startswith("--")]
    command += [op, *options, "--", *positional]
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)


def answer(out: subprocess.CompletedProcess[str]) -> Any:
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_set_and_clear_a_limit(authsvc: Authsvc, client: Client) -> None:
    user = client.new_user()
    assert answer(admin(authsvc, "limit", user, "1")) == {"status": "ok", "userId": user, "limit": 1}
    assert client.activate(user, client.new_stream()).status_code == 200
    assert client.activate(user, client.new_stream()).status_code == 403
    assert answer(admin(authsvc, "limit", user, "--clear", flag=True))["limit"] is None
    assert client.active(user).json()["limit"] == 3


def test_list_end_one_and_end_all(authsvc: Authsvc, client: Client) -> None:
    user = client.new_user()
    streams = [client.new_stream() for _ in range(3)]
    for stream in streams:
        assert client.activate(user, stream).status_code == 200
    listed = answer(admin(authsvc, "streams", user))
    assert [s["streamId"] for s in listed["streams"]] == streams
    assert listed["limit"] == 3 and listed["userLimit"] is None
    assert answer(admin(authsvc, "end", user, streams[0]))["wasActive"] is True
    assert [s["streamId"] for s in client.active(user).json()["streams"]] == streams[1:]
    assert answer(admin(authsvc, "end", user))["ended"] == 2
    assert client.active(user).json()["streams"] == []


def test_refusals_exit_1_with_the_json_error(authsvc: Authsvc, client: Client) -> None:
    wrong = admin(authsvc, "streams", client.new_user(), token="not-the-admin-token")
    assert wrong.returncode == 1 and json.loads(wrong.stderr)["error"] == "Unauthorized"
    bad = admin(authsvc, "limit", client.new_user(), "-1")
    assert bad.returncode == 1, bad.stderr
    assert json.loads(bad.stderr)["status"] == "ko"
    malformed = admin(authsvc, "end", "../x")
    assert malformed.returncode == 1 and json.loads(malformed.stderr)["status"] == "ko"


def test_no_token_or_no_authsvc_exit_2(authsvc: Authsvc) -> None:
    missing = admin(authsvc, "streams", "someone", token=None)
    assert missing.returncode == 2 and "AUTHSVC_ADMIN_TOKEN" in missing.stderr
    nobody = Authsvc({}, port=free_port())  # never started: nothing listens there
    down = admin(nobody, "streams", "someone")
    assert down.returncode == 2 and "cannot reach" in down.stderr


def test_a_table_on_a_terminal(authsvc: Authsvc, client: Client) -> None:
    user, stream = client.new_user(), client.new_stream()
    assert client.activate(user, stream).status_code == 200
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSVC_")}
    env["AUTHSVC_ADMIN_TOKEN"] = TOKEN
    primary, secondary = pty.openpty()
    try:
        command = [sys.executable, "-m", "authsvc", "admin", "--url", authsvc.url, "streams", "--", user]
        proc = subprocess.run(
            command, env=env, cwd=ROOT, stdout=secondary, stderr=subprocess.PIPE, timeout=30
        )
        os.close(secondary)
        secondary = -1
        assert proc.returncode == 0, proc.stderr
        shown = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)
    text = shown.decode()
    assert not text.lstrip().startswith("{"), text
    lines = text.splitlines()
    assert any(line.split()[:3] == ["STREAM", "REFRESHED", "EXPIRES"] for line in lines), text
    assert any(line.startswith(stream) and "UTC" in line for line in lines), text
    assert any(line.split() == ["userId", user] for line in lines), text
