"""TLS with HTTP/2 on the edge's TLS port, checked by real clients that verify the stack's
local CA; the client's address and the request id as nginx passes them on."""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from authsvc.settings import PublicSettings
from canwatch_edge import render, tls
from canwatch_edge.settings import EdgeSettings
from canwatch_stack.supervisor import Stack

from edge_harness import PLAYLIST, Deployment, Player, StackFactory, access_entry, ko
from harness import need_binary
from recording import RecordingOrigin, send_raw
from until import until

# The edge's own request id: the time, the connection's number and the request's on it.
EDGE_REQUEST_ID = re.compile(r"[0-9]{10}\.[0-9]{3}-[0-9]+-[0-9]+")

pytestmark = pytest.mark.e2e


def own_stack(edge: Deployment) -> Stack:
    if edge.stack is None:
        pytest.skip("HOST=: the CA and the log files are those of a stack of its own")
    return edge.stack


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    binary = need_binary("curl", "curl")
    return subprocess.run(
        [binary, "-sS", "--max-time", "10", *args], capture_output=True, text=True, timeout=30
    )


def test_https_over_http1_verifies_against_the_local_ca(player: Player, edge: Deployment) -> None:
    stack = own_stack(edge)
    assert stack.local_tls is not None
    ca = str(stack.local_tls.ca)
    user, stream = player.new_user(), player.new_stream()
    r = requests.patch(
        f"{stack.tls_url}/streams/{stream}/activate", headers={"x-userid": user}, verify=ca, timeout=5
    )
    assert r.status_code == 200, r.text
    r = requests.get(
        f"{stack.tls_url}/watch/{stream}/{PLAYLIST}", params={"userid": user}, verify=ca, timeout=5
    )
    assert r.status_code == 200 and r.text.startswith("#EXTM3U")
    assert r.raw.version == 11
    # Without the CA, the certificate is not trusted: it is the stack's own, not a public one.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{stack.tls_url}/healthz", timeout=5)


def test_http2_through_the_gate(player: Player, edge: Deployment) -> None:
    stack = own_stack(edge)
    assert stack.local_tls is not None
    user, stream = player.new_user(), player.new_stream()
    assert player.activate(user, stream).status_code == 200
    out = curl("--http2", "--cacert", str(stack.local_tls.ca), "-w", "\n%{http_version} %{http_code}",
               f"{stack.tls_url}/watch/{stream}/{PLAYLIST}?userid={user}")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("#EXTM3U") and out.stdout.endswith("\n2 200"), out.stdout[-200:]
    # A refusal over HTTP/2 is the same JSON.
    out = curl("--http2", "--cacert", str(stack.local_tls.ca), "-w", "\n%{http_version} %{http_code}",
               f"{stack.tls_url}/watch/{player.new_stream()}/{PLAYLIST}?userid={user}")  # fmt: skip
    assert out.stdout == '{"status":"ko","error":"Stream Not Active"}\n2 403', out.stdout


def test_only_tls_1_2_and_newer(edge: Deployment) -> None:
    stack = own_stack(edge)
    assert stack.local_tls is not None
    conf = (stack.prefix / "part-http-tls.conf").read_text()
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in conf
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        context = ssl.create_default_context(cafile=str(stack.local_tls.ca))
        context.minimum_version = context.maximum_version = version
        with (
            socket.create_connection(("127.0.0.1", stack.edge_settings.tls_port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            assert tls.version() == version.name.replace("v1_", "v1.")
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(str(stack.local_tls.ca))
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # which is the point
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    with (
        socket.create_connection(("127.0.0.1", stack.edge_settings.tls_port), timeout=5) as raw,
        pytest.raises(ssl.SSLError),
        old.wrap_socket(raw, server_hostname="localhost"),
    ):
        pass


def test_plain_http_on_the_tls_port_gets_json(edge: Deployment) -> None:
    stack = own_stack(edge)
    answer = send_raw(
        stack.edge_settings.tls_port, b"GET /users/newId HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert answer.status == 400 and answer.body == b'{"status":"ko","error":"Bad Request"}', answer


@pytest.fixture
def origin() -> Iterator[RecordingOrigin]:
    o = RecordingOrigin().start()
    yield o
    o.stop()


def authsvc_lines(stack: Stack) -> list[dict[str, object]]:
    lines = (stack.run_dir / "authsvc.log").read_text().splitlines()
    return [entry for entry in map(json.loads, lines) if entry.get("msg") == "request"]


def test_forwarding_headers_from_clients_are_not_believed(
    start_stack: StackFactory, origin: RecordingOrigin
) -> None:
    stack = start_stack(why="a recording origin", origin_url=origin.url, id_check="none", access_log=True)
    user, stream = "forwardUser0123456789", "forwardStream0123456789"
    assert Player(stack.url).activate(user, stream).status_code == 200
    spoof = {"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9", "Forwarded": "for=203.0.113.9",
             "X-Request-ID": "chosen-by-the-client", "x-userid": user}  # fmt: skip
    r = requests.get(f"{stack.url}/watch/{stream}/a.ts", headers=spoof, timeout=5)
    assert r.status_code == 200
    request_id = r.headers["X-Request-ID"]
    assert EDGE_REQUEST_ID.fullmatch(request_id), request_id
    (seen,) = origin.received
    assert seen.header("X-Forwarded-For") == "127.0.0.1" and seen.header("X-Real-IP") == "127.0.0.1"
    assert seen.header("Forwarded") is None
    assert seen.header("X-Request-ID") == request_id
    # Both access logs name the request by the id the client got back: the gate's
    # decision in authsvc's, the fetch in nginx's.
    logged = access_entry(stack, request_id)
    assert logged["remote"] == "127.0.0.1" and logged["decision"] == "allowed"
    assert until(lambda: any(e.get("request_id") == request_id for e in authsvc_lines(stack)), 5)
    (decided,) = [e for e in authsvc_lines(stack) if e.get("request_id") == request_id]
    assert decided["path"] == "/_authz"
    # An API request, and an error nginx answers itself, carry one too.
    api = requests.get(f"{stack.url}/streams/active", headers={"x-userid": user}, timeout=5)
    assert until(
        lambda: any(e.get("request_id") == api.headers["X-Request-ID"] for e in authsvc_lines(stack)), 5
    )
    ko(requests.get(f"{stack.url}/watch/{stream}/a.ts", timeout=5), 401)
    assert EDGE_REQUEST_ID.fullmatch(requests.get(f"{stack.url}/nowhere", timeout=5).headers["X-Request-ID"])


def test_every_request_gets_an_id_of_its_own(edge: Deployment) -> None:
    # Many requests on one keep-alive connection, and many connections: the time
    # alone repeats within a millisecond, the connection's number within a connection.
    ids: list[str] = []
    with requests.Session() as session:
        ids += [session.get(f"{edge.url}/healthz", timeout=5).headers["X-Request-ID"] for _ in range(50)]
    for _ in range(50):
        ids.append(requests.get(f"{edge.url}/nowhere", timeout=5).headers["X-Request-ID"])
    assert all(EDGE_REQUEST_ID.fullmatch(i) for i in ids), ids
    assert len(set(ids)) == len(ids)


def test_behind_a_trusted_proxy_the_real_client_counts(
    start_stack: StackFactory, origin: RecordingOrigin
) -> None:
    stack = start_stack(
        why="trusted proxies and a rate limit",
        origin_url=origin.url,
        id_check="none",
        trusted_proxies="127.0.0.0/8",
        api_rate=1,
    )
    user, stream = "proxiedUser0123456789", "proxiedStream0123456789"
    assert Player(stack.url).activate(user, stream).status_code == 200
    # The load balancer appended the client's address to whatever the client claimed.
    via = {"X-Forwarded-For": "198.51.100.1, 203.0.113.9", "X-Request-ID": "lb-abc.123", "x-userid": user}
    r = requests.get(f"{stack.url}/watch/{stream}/a.ts", headers=via, timeout=5)
    assert r.status_code == 200 and r.headers["X-Request-ID"] == "lb-abc.123"
    (seen,) = origin.received
    assert seen.header("X-Forwarded-For") == "203.0.113.9" and seen.header("X-Real-IP") == "203.0.113.9"
    assert seen.header("X-Request-ID") == "lb-abc.123"
    logged = access_entry(stack, "lb-abc.123")
    assert logged["remote"] == "203.0.113.9"
    # The rate limit counts per real client: one client exhausting it leaves another's alone.
    first = {"X-Forwarded-For": "203.0.113.10"}
    assert until(
        lambda: requests.get(f"{stack.url}/healthz", headers=first, timeout=5).status_code == 429, 10, 0
    )
    other = requests.get(f"{stack.url}/healthz", headers={"X-Forwarded-For": "203.0.113.11"}, timeout=5)
    assert other.status_code == 200
    # A request id that does not look like one is replaced, even from a trusted proxy.
    odd = requests.get(f"{stack.url}/nowhere", headers={"X-Request-ID": "a b"}, timeout=5)
    assert EDGE_REQUEST_ID.fullmatch(odd.headers["X-Request-ID"])


def test_authsvc_reached_by_name_resolution_serves_api_and_gate(start_stack: StackFactory) -> None:
    # CANWATCH_EDGE_RESOLVER (compose: Docker's DNS) makes nginx reach authsvc through a
    # variable, looked up again as it expires; an address needs no lookup, the path is
    # the same.
    stack = start_stack(why="CANWATCH_EDGE_RESOLVER", resolver="127.0.0.1")
    assert "proxy_pass http://$cw_authsvc_address;" in (stack.prefix / "server.conf").read_text()
    player = Player(stack.url)
    user, stream = player.new_user(), player.new_stream()
    assert player.activate(user, stream).status_code == 200
    assert player.watch(stream, user, via="query").status_code == 200
    ko(player.watch(player.new_stream(), user), 403, "Stream Not Active")
    stack.stop_authsvc()
    ko(player.watch(stream, user), 503, "Service Unavailable")
    player.close()


def test_tls_proxies_resolver_and_stdio_logs_render_a_config_nginx_accepts(tmp_path: Path) -> None:
    nginx = need_binary("nginx", "nginx")
    local = tls.local_tls(tmp_path / "tls")
    for n, identity in enumerate(("header", "jwt")):
        config = render.EdgeConfig(
            PublicSettings(identity=identity),  # type: ignore[arg-type]
            EdgeSettings(
                port=20_000,
                origin_url="https://127.0.0.2:8443/live",
                tls_port=20_443,
                tls_cert=str(local.cert),
                tls_key=str(local.key),
                trusted_proxies="10.0.0.0/8,2001:db8::/32",
                resolver="127.0.0.11",
                user="www-data",
                logs="stdio",
            ),
            tmp_path / f"edge{n}",
        )
        render.render(config)
        out = subprocess.run(render.command(nginx, config.prefix, "-t", "-q"), capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        conf = (config.prefix / "realip.conf").read_text()
        assert "set_real_ip_from 10.0.0.0/8;" in conf and "2001:db8::/32 1;" in conf
    # Made once: a second call keeps the CA (clients that trust it keep trusting it).
    assert tls.local_tls(tmp_path / "tls").ca.read_bytes() == local.ca.read_bytes()
