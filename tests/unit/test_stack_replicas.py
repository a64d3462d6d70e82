"""Several authsvc replicas: the stack's settings and the upstream block nginx gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from authsvc.settings import PublicSettings, SettingsError
from canwatch_edge import render
from canwatch_edge.settings import EdgeSettings
from canwatch_stack.settings import StackSettings


def test_replicas_take_the_next_ports_the_stack_leaves_free() -> None:
    stack = StackSettings.from_env({"CANWATCH_STACK_API_PORT": "9105", "CANWATCH_STACK_API_REPLICAS": "3"})
    assert stack.api_ports() == (9105, 9106, 9107)
    # On the defaults the demo origin has 9006: a second replica must not take it.
    assert StackSettings.from_env({"CANWATCH_STACK_REDIS": "cluster"}).api_ports() == (9005, 9007)
    edge = EdgeSettings()
    taken = (edge.port, edge.tls_port, 9106)
    assert stack.api_ports(taken) == (9105, 9107, 9108)


def test_the_edge_spreads_over_the_authsvc_it_is_given() -> None:
    edge = EdgeSettings.from_env({"CANWATCH_EDGE_AUTHSVC": " 10.0.0.5:9005, authsvc-2:9005 ,"})
    assert edge.authsvc == ("10.0.0.5:9005", "authsvc-2:9005")
    assert EdgeSettings().authsvc == ("127.0.0.1:9005",)
    beside = EdgeSettings.from_env({"CANWATCH_EDGE_AUTHSVC": "unix:/run/canwatch/authsvc.sock"})
    assert beside.authsvc == ("unix:/run/canwatch/authsvc.sock",)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CANWATCH_EDGE_AUTHSVC", "10.0.0.5"),  # no port
        ("CANWATCH_EDGE_AUTHSVC", "10.0.0.5:0"),
        ("CANWATCH_EDGE_AUTHSVC", "10.0.0.5:9005; include /etc/passwd"),  # would be rendered into nginx
        ("CANWATCH_EDGE_AUTHSVC", "http://10.0.0.5:9005"),
        ("CANWATCH_EDGE_AUTHSVC", "unix:run/authsvc.sock"),  # not absolute
        ("CANWATCH_EDGE_AUTHSVC", "unix:/run/a.sock; include /etc/passwd"),
        ("CANWATCH_STACK_API_REPLICAS", "0"),
        ("CANWATCH_STACK_API_REPLICAS", "17"),
    ],
)
def test_a_bad_upstream_or_replica_count_names_its_variable(name: str, value: str) -> None:
    read = EdgeSettings.from_env if name.startswith("CANWATCH_EDGE_") else StackSettings.from_env
    with pytest.raises(SettingsError, match=name):
        read({name: value})


def test_a_unix_socket_cannot_be_looked_up_again() -> None:
    with pytest.raises(SettingsError, match="CANWATCH_EDGE_RESOLVER"):
        EdgeSettings.from_env(
            {"CANWATCH_EDGE_AUTHSVC": "unix:/run/a.sock", "CANWATCH_EDGE_RESOLVER": "127.0.0.11"}
        )


def test_replica_ports_past_65535_stop_start_up() -> None:
    with pytest.raises(SettingsError, match="CANWATCH_STACK_API_REPLICAS"):
        StackSettings.from_env({"CANWATCH_STACK_API_PORT": "65535", "CANWATCH_STACK_API_REPLICAS": "2"})


def test_the_upstream_block_lists_every_replica(tmp_path: Path) -> None:
    edge = EdgeSettings.from_env(
        {"CANWATCH_EDGE_AUTHSVC": "10.0.0.5:9005,10.0.0.6:9005", "CANWATCH_EDGE_TLS_PORT": "0"}
    )
    config = render.EdgeConfig(PublicSettings(), edge, tmp_path / "edge")
    text = render.render(config).read_text()
    block = text.split("upstream canwatch_authsvc {", 1)[1].split("}", 1)[0]
    servers = [line.split()[1] for line in block.splitlines() if line.strip().startswith("server ")]
    assert servers == ["10.0.0.5:9005", "10.0.0.6:9005"]
    # Every location that proxies to authsvc moves on to the next replica on a connect
    # error or timeout, and never resends a POST/PATCH (no non_idempotent).
    proxy = (tmp_path / "edge" / "authsvc-proxy.conf").read_text()
    assert "proxy_next_upstream error timeout;" in proxy
    assert "non_idempotent" not in proxy


def test_a_cluster_or_sentinel_stack_starts_two_replicas_unless_told() -> None:
    assert StackSettings.from_env({}).api_replicas == 1
    for shape in ("cluster", "sentinel"):
        assert StackSettings.from_env({"CANWATCH_STACK_REDIS": shape}).api_replicas == 2
    told = {"CANWATCH_STACK_REDIS": "cluster", "CANWATCH_STACK_API_REPLICAS": "3"}
    assert StackSettings.from_env(told).api_replicas == 3
    with pytest.raises(SettingsError, match="CANWATCH_STACK_REDIS"):
        StackSettings.from_env({"CANWATCH_STACK_REDIS": "galaxy"})
