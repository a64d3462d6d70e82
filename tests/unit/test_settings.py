from __future__ import annotations

import pytest

from authsvc.settings import RENAMED, Settings, SettingsError, documented
from canwatch_edge.settings import EdgeSettings
from canwatch_stack.settings import StackSettings


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
            "AUTHSVC_JWT_SECRET": "k" * 32,
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
        {"AUTHSVC_JWT_SECRET": "k" * 32, "AUTHSVC_JWT_PUBLIC_KEY": "pem"},
        {"AUTHSVC_JWT_SECRET": "k" * 32, "AUTHSVC_JWT_ALGORITHMS": "RS256"},
        {"AUTHSVC_JWT_PUBLIC_KEY": "pem", "AUTHSVC_JWT_ALGORITHMS": "HS256,RS256"},
        {"AUTHSVC_JWT_SECRET": "k" * 32, "AUTHSVC_JWT_JWKS_URL": "https://idp.example/jwks.json"},
        {"AUTHSVC_JWT_JWKS_URL": "https://idp.example/jwks.json", "AUTHSVC_JWT_DISCOVERY": "true"},
        {"AUTHSVC_JWT_JWKS_URL": "https://idp.example/jwks.json", "AUTHSVC_JWT_ALGORITHMS": "HS256"},
        {"AUTHSVC_JWT_JWKS_URL": "file:///etc/passwd"},
        {"AUTHSVC_JWT_JWKS_URL": "https://"},
        {"AUTHSVC_IDENTITY": "jwt", "AUTHSVC_JWT_DISCOVERY": "true"},
        {"AUTHSVC_JWT_JWKS_URL": "https://idp.example/jwks.json", "AUTHSVC_JWT_JWKS_REFETCH_MIN_S": "0"},
    ],
)
def test_inconsistent_jwt_settings_stop_start_up(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match=r"AUTHSVC_JWT|AUTHSVC_IDENTITY"):
        Settings.from_env(env)


def test_keys_come_from_a_provider_only_when_told() -> None:
    issuer = "https://tenant.eu.auth0.com/"
    static = Settings.from_env(
        {"AUTHSVC_IDENTITY": "jwt", "AUTHSVC_JWT_SECRET": "k" * 32, "AUTHSVC_JWT_ISSUER": issuer}
    )
    assert not static.jwt_keys_from_provider  # an issuer alone changes nothing
    found = Settings.from_env(
        {"AUTHSVC_IDENTITY": "jwt", "AUTHSVC_JWT_DISCOVERY": "true", "AUTHSVC_JWT_ISSUER": issuer}
    )
    assert found.jwt_keys_from_provider and found.effective_jwt_algorithms == ("RS256", "ES256")
    url = Settings.from_env(
        {"AUTHSVC_IDENTITY": "jwt", "AUTHSVC_JWT_JWKS_URL": issuer + ".well-known/jwks.json"}
    )
    assert url.jwt_keys_from_provider and url.jwt_jwks_url == issuer + ".well-known/jwks.json"


def test_each_part_reads_its_own_prefix_and_the_documentation_names_it() -> None:
    assert EdgeSettings.from_env({"CANWATCH_EDGE_PORT": "9100"}).port == 9100
    with pytest.raises(SettingsError, match="CANWATCH_EDGE_PORT"):
        EdgeSettings.from_env({"CANWATCH_EDGE_PORT": "70000"})
    assert StackSettings.from_env({"CANWATCH_STACK_REDIS_PORT": "6400"}).redis_port == 6400
    rows = documented(Settings, EdgeSettings, StackSettings)
    names = [name for name, _, _, _ in rows]
    assert len(names) == len(set(names))
    prefixes = {
        "authsvc": ("AUTHSVC_", "PROMETHEUS_"),
        "edge": ("CANWATCH_EDGE_",),
        "stack": ("CANWATCH_STACK_",),
    }
    for name, _, reader, _ in rows:
        assert name.startswith(prefixes[reader]), (name, reader)
    assert {reader for _, _, reader, _ in rows} == set(prefixes)


@pytest.mark.parametrize(("old", "new"), sorted(RENAMED.items()))
def test_an_old_name_still_set_stops_start_up_naming_its_successor(old: str, new: str) -> None:
    for read in (Settings.from_env, EdgeSettings.from_env, StackSettings.from_env):
        with pytest.raises(SettingsError, match=f"{old} was renamed {new}"):
            read({old: "1"})


@pytest.mark.parametrize(
    ("name", "value"),
    [("AUTHSVC_SECRET", "short"), ("AUTHSVC_ADMIN_TOKEN", "admin"), ("AUTHSVC_LEASE_TTL_S", "0.0004")],
)
def test_weak_or_meaningless_values_stop_start_up(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_a_public_key_that_cannot_verify_stops_start_up() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    base = {"AUTHSVC_IDENTITY": "jwt"}
    with pytest.raises(SettingsError, match="AUTHSVC_JWT_PUBLIC_KEY"):
        Settings.from_env({**base, "AUTHSVC_JWT_PUBLIC_KEY": "not a pem"})
    with pytest.raises(SettingsError, match="AUTHSVC_JWT_PUBLIC_KEY"):
        Settings.from_env({**base, "AUTHSVC_JWT_PUBLIC_KEY": pem, "AUTHSVC_JWT_ALGORITHMS": "RS256"})
    one_line = pem.replace("\n", "\\n")  # as environment files often carry it
    assert Settings.from_env({**base, "AUTHSVC_JWT_PUBLIC_KEY": one_line}).jwt_public_key == pem.strip()


def test_unknown_variables_are_found() -> None:
    from authsvc.settings import unknown_variables

    env = {"AUTHSVC_MAX_STREAM": "4", "AUTHSVC_MAX_STREAMS": "4", "CANWATCH_EDGE_PORTS": "1", "PATH": "/bin"}
    assert unknown_variables(Settings, env) == ["AUTHSVC_MAX_STREAM"]
    assert unknown_variables(EdgeSettings, env) == ["CANWATCH_EDGE_PORTS"]
    assert unknown_variables(StackSettings, env) == []


def test_a_lease_token_may_live_at_most_half_the_lease() -> None:
    base = {"AUTHSVC_SECRET": "s" * 32, "AUTHSVC_LEASE_TTL_S": "60"}
    assert Settings.from_env({**base, "AUTHSVC_LEASE_TOKEN_S": "30"}).lease_token_s == 30
    with pytest.raises(SettingsError, match=r"AUTHSVC_LEASE_TOKEN_S.*AUTHSVC_LEASE_TTL_S"):
        Settings.from_env({**base, "AUTHSVC_LEASE_TOKEN_S": "31"})
    # Leases that never expire need no refresh: any token lifetime goes.
    assert Settings.from_env({**base, "AUTHSVC_LEASE_TTL_S": "0", "AUTHSVC_LEASE_TOKEN_S": "600"})
    with pytest.raises(SettingsError, match="AUTHSVC_SECRET"):
        Settings.from_env({"AUTHSVC_LEASE_TOKEN_S": "10"})


@pytest.mark.parametrize("name", ["CANWATCH_EDGE_GATE_CACHE_S", "AUTHSVC_GATE_CACHE_S"])
def test_the_retired_micro_cache_is_refused_pointing_to_lease_tokens(name: str) -> None:
    for read in (Settings.from_env, EdgeSettings.from_env, StackSettings.from_env):
        with pytest.raises(SettingsError, match=r"micro-cache .* retired.*AUTHSVC_LEASE_TOKEN_S"):
            read({name: "1"})


def test_wait_for_replicas_must_end_before_the_redis_timeout() -> None:
    assert Settings.from_env({}).redis_wait_replicas == 0  # off by default
    on = Settings.from_env({"AUTHSVC_REDIS_WAIT_REPLICAS": "1", "AUTHSVC_REDIS_WAIT_MS": "100"})
    assert (on.redis_wait_replicas, on.redis_wait_ms, on.redis_timeout_ms) == (1, 100, 250)
    # Redis answers a timed-out WAIT up to 100 ms late (its hz): that much room is needed.
    assert Settings.from_env({"AUTHSVC_REDIS_WAIT_REPLICAS": "1", "AUTHSVC_REDIS_WAIT_MS": "150"})
    with pytest.raises(
        SettingsError, match=r"AUTHSVC_REDIS_WAIT_MS \(151\).*AUTHSVC_REDIS_TIMEOUT_MS \(250\)"
    ):
        Settings.from_env({"AUTHSVC_REDIS_WAIT_REPLICAS": "1", "AUTHSVC_REDIS_WAIT_MS": "151"})
    with pytest.raises(SettingsError, match=r"AUTHSVC_REDIS_WAIT_MS.*AUTHSVC_REDIS_TIMEOUT_MS"):
        Settings.from_env({"AUTHSVC_REDIS_WAIT_REPLICAS": "2", "AUTHSVC_REDIS_TIMEOUT_MS": "40"})
    # Off, the wait is not checked: a short Redis timeout alone stays valid.
    assert Settings.from_env({"AUTHSVC_REDIS_TIMEOUT_MS": "40"}).redis_timeout_ms == 40
    # WAIT with a timeout of 0 would block for ever.
    for name, value in (("AUTHSVC_REDIS_WAIT_MS", "0"), ("AUTHSVC_REDIS_WAIT_REPLICAS", "-1")):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: value})
