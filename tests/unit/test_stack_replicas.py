"""Several authsvc replicas: the stack's settings and the upstream block nginx gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from authsvc.settings import Settings, SettingsError
from authsvc.stack import nginxconf
from authsvc.stack.settings import StackSettings


def test_replicas_take_consecutive_ports_and_become_the_upstreams() -> None:
    stack = StackSettings.from_env({"AUTHSVC_API_PORT": "9105", "AUTHSVC_API_REPLICAS": "3"})
    assert stack.api_ports == (9105, 9106, 9107)
    assert stack.upstreams == ("127.0.0.1:9105", "127.0.0.1:9106", "127.0.0.1:9107")


def test_upstreams_given_win_over_the_stacks_own() -> None:
    stack = StackSettings.from_env({"AUTHSVC_API_UPSTREAMS": " 10.0.0.5:9005, authsvc-2:9005 ,"})
    assert stack.upstreams == ("10.0.0.5:9005", "authsvc-2:9005")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUTHSVC_API_UPSTREAMS", "10.0.0.5"),  # no port
        ("AUTHSVC_API_UPSTREAMS", "10.0.0.5:0"),
        ("AUTHSVC_API_UPSTREAMS", "10.0.0.5:9005; include /etc/passwd"),  # would be rendered into nginx
        ("AUTHSVC_API_UPSTREAMS", "http://10.0.0.5:9005"),
        ("AUTHSVC_API_REPLICAS", "0"),
        ("AUTHSVC_API_REPLICAS", "17"),
    ],
)
def test_a_bad_upstream_or_replica_count_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        StackSettings.from_env({name: value})


def test_replica_ports_past_65535_stop_start_up() -> None:
    with pytest.raises(SettingsError, match="AUTHSVC_API_REPLICAS"):
        StackSettings.from_env({"AUTHSVC_API_PORT": "65535", "AUTHSVC_API_REPLICAS": "2"})


def test_the_upstream_block_lists_every_replica(tmp_path: Path) -> None:
    stack = StackSettings.from_env(
        {"AUTHSVC_API_UPSTREAMS": "10.0.0.5:9005,10.0.0.6:9005", "AUTHSVC_TLS_PORT": "0"}
    )
    config = nginxconf.EdgeConfig.from_settings(Settings(), stack, tmp_path / "edge", None)
    text = nginxconf.render(config).read_text()
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
        assert StackSettings.from_env({"AUTHSVC_STACK_REDIS": shape}).api_replicas == 2
    told = {"AUTHSVC_STACK_REDIS": "cluster", "AUTHSVC_API_REPLICAS": "3"}
    assert StackSettings.from_env(told).api_replicas == 3
    with pytest.raises(SettingsError, match="AUTHSVC_STACK_REDIS"):
        StackSettings.from_env({"AUTHSVC_STACK_REDIS": "galaxy"})
