"""`authsvc admin`: the operator's side of the /admin/ API, from a shell.

    authsvc admin limit USER 5          # PUT    /admin/users/USER/limit {"limit": 5}
    authsvc admin limit USER --clear    # DELETE /admin/users/USER/limit
    authsvc admin streams USER          # GET    /admin/users/USER/streams
    authsvc admin end USER [STREAM]     # DELETE /admin/users/USER/streams[/STREAM]

The answer is printed as JSON, or as a table when stdout is a terminal (``--json`` forces
JSON). Exit status: 0 done, 1 refused by authsvc (its JSON error on stderr), 2 authsvc
could not be reached or the command line is wrong. stdlib only: the image has no
requests.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import quote

TOKEN_VARIABLE = "AUTHSVC_ADMIN_TOKEN"
DEFAULT_URL = "http://127.0.0.1:9005"


def add_parser(sub: Any) -> None:
    """Declare `admin` and its subcommands on the CLI's subparsers."""
    admin = sub.add_parser(
        "admin",
        help="set limits, list and end a user's streams (the /admin/ API)",
        epilog='Issued ids may begin with "-": put ids after "--", e.g. `authsvc admin streams -- -Xy...`.',
    )
    admin.add_argument("--url", default=DEFAULT_URL, help=f"authsvc base URL ({DEFAULT_URL})")
    admin.add_argument("--token", help=f"admin bearer token (default: ${TOKEN_VARIABLE})")
    admin.add_argument("--json", action="store_true", help="JSON even on a terminal")
    admin.add_argument("--timeout", type=float, default=10.0, help="seconds per request (10)")
    ops = admin.add_subparsers(dest="admin_command", required=True)
    limit = ops.add_parser("limit", help="set a user's own limit, or --clear it")
    limit.add_argument("user")
    limit.add_argument("limit", nargs="?", type=int)
    limit.add_argument("--clear", action="store_true", help="back to the default limit")
    streams = ops.add_parser("streams", help="list a user's live streams and limit")
    streams.add_argument("user")
    end = ops.add_parser("end", help="end one of a user's streams, or all of them")
    end.add_argument("user")
    end.add_argument("stream", nargs="?", help="the stream to end; all when absent")


def run(args: argparse.Namespace, env: Mapping[str, str], out: TextIO = sys.stdout) -> int:
    """Send the request the arguments describe and print the answer."""
    token = args.token or env.get(TOKEN_VARIABLE, "")
    if not token:
        print(f"authsvc admin: no token: pass --token or set {TOKEN_VARIABLE}", file=sys.stderr)
        return 2
    user = quote(args.user, safe="")
    path = f"/admin/users/{user}"
    body: dict[str, Any] | None = None
    if args.admin_command == "limit":
        if args.clear == (args.limit is not None):
            print("authsvc admin limit: give a LIMIT or --clear, not both", file=sys.stderr)
            return 2
        method, path = ("DELETE", f"{path}/limit") if args.clear else ("PUT", f"{path}/limit")
        body = None if args.clear else {"limit": args.limit}
    elif args.admin_command == "streams":
        method, path = "GET", f"{path}/streams"
    else:
        method = "DELETE"
        path += f"/streams/{quote(args.stream, safe='')}" if args.stream else "/streams"
    try:
        status, answer = _request(args.url.rstrip("/") + path, method, token, body, args.timeout)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        print(f"authsvc admin: cannot reach {args.url}: {reason}", file=sys.stderr)
        return 2
    if status >= 400:
        print(json.dumps(answer), file=sys.stderr)
        return 1
    if args.json or not out.isatty():
        print(json.dumps(answer, indent=2), file=out)
    else:
        print(_table(answer), file=out)
    return 0


def _request(
    url: str, method: str, token: str, body: dict[str, Any] | None, timeout: float
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, json.loads(raw)
        except ValueError:
            return error.code, {"status": "ko", "error": raw.decode("utf-8", "replace")[:200]}


def _when(ms: int | None) -> str:
    if ms is None:
        return "never"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _table(answer: dict[str, Any]) -> str:
    """A person's view of an answer: key/value lines, then the streams as columns."""
    lines = [f"{key:10} {value}" for key, value in answer.items() if key not in ("status", "streams")]
    streams = answer.get("streams")
    if streams is not None:
        rows = [("STREAM", "REFRESHED", "EXPIRES")]
        rows += [(s["streamId"], _when(s["refreshedAt"]), _when(s["expiresAt"])) for s in streams]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines.append("")
        for row in rows:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if not streams:
            lines.append("(no live streams)")
    return "\n".join(lines)
