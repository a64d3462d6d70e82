from __future__ import annotations

import pytest

from authsvc.settings import Settings, SettingsError, StackSettings, documented


def test_defaults() -> None:
    s = Settings.from_env({})
    assert (s.max_streams, s.lease_ttl_ms, s.limit_policy, s.enforce) == (3, 120_000, "reject", True)
    assert (s.redis_timeout_ms, s.id_check, s.identity, s.key_prefix) == (250, "mac", "header", "canwatch:")


def test_values_are_parsed() -> None:
    s = Settings.from_env(
        {
            "AUTHSVC_MAX_STREAMS": "5",
            "AUTHSVC_LEASE_TTL_S": "0.5",
            "AUTHSVC_LIMIT_POLICY": "EVICT_OLDEST",
            "AUTHSVC_ENFORCE": "off",
            "AUTHSVC_IDENTITY": "jwt",
            "AUTHSVC_JWT_SECRET": "k",
            "AUTHSVC_JWT_ALGORITHMS": "hs256,HS512",
            "PROMETHEUS_MULTIPROC_DIR": "/tmp/m",
            "OTHER": "ignored",
        }
    )
    assert (s.max_streams, s.lease_ttl_ms, s.limit_policy, s.enforce) == (5, 500, "evict_oldest", False)
    assert s.effective_jwt_algorithms == ("HS256", "HS512")
    assert s.multiproc_dir == "/tmp/m"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUTHSVC_MAX_STREAMS", "three"),
        ("AUTHSVC_MAX_STREAMS", "-1"),
        ("AUTHSVC_LEASE_TTL_S", "soon"),
        ("AUTHSVC_REDIS_TIMEOUT_MS", "0"),
        ("AUTHSVC_LIMIT_POLICY", "kick"),
        ("AUTHSVC_ENFORCE", "maybe"),
        ("AUTHSVC_ID_CHECK", "sometimes"),
        ("AUTHSVC_KEY_PREFIX", "a{b}"),
        ("AUTHSVC_JWT_ALGORITHMS", "none"),
        ("AUTHSVC_LOG_LEVEL", "loud"),
    ],
)
def test_a_bad_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_secrets_are_not_echoed() -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"AUTHSVC_REDIS_URL": "http://user:hunter2@x"})
    assert "AUTHSVC_REDIS_URL" in str(err.value)
    assert "hunter2" not in str(err.value)


@pytest.mark.parametrize(
    "env",
    [
        {"AUTHSVC_IDENTITY": "jwt"},
        {"AUTHSVC_JWT_SECRET": "k", "AUTHSVC_JWT_PUBLIC_KEY": "pem"},
        {"AUTHSVC_JWT_SECRET": "k", "AUTHSVC_JWT_ALGORITHMS": "RS256"},
        {"AUTHSVC_JWT_PUBLIC_KEY": "pem", "AUTHSVC_JWT_ALGORITHMS": "HS256,RS256"},
    ],
)
def test_inconsistent_jwt_settings_stop_start_up(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match=r"AUTHSVC_JWT|AUTHSVC_IDENTITY"):
        Settings.from_env(env)


def test_stack_settings_and_documentation() -> None:
    assert StackSettings.from_env({"AUTHSVC_PORT": "9100"}).port == 9100
    with pytest.raises(SettingsError, match="AUTHSVC_PORT"):
        StackSettings.from_env({"AUTHSVC_PORT": "70000"})
    names = [name for name, _, _ in documented()]
    assert "AUTHSVC_MAX_STREAMS" in names and "AUTHSVC_PORT" in names
    assert len(names) == len(set(names))
