"""AUTHSVC_REDIS_URL: one Redis, a Cluster's seed nodes, or sentinels and a service name."""

from __future__ import annotations

import pytest

from authsvc.redis_url import RedisURL, parse
from authsvc.settings import Settings, SettingsError


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", RedisURL("single", "redis://127.0.0.1:6379/0")),
        ("rediss://h:6380", RedisURL("single", "rediss://h:6380", tls=True)),
        ("unix:///run/redis.sock", RedisURL("single", "unix:///run/redis.sock")),
        (
            "redis+cluster://10.0.0.1:7000,10.0.0.2:7001",
            RedisURL("cluster", "", hosts=(("10.0.0.1", 7000), ("10.0.0.2", 7001))),
        ),
        (
            "rediss+cluster://app:p%40ss@redis-0.svc:6379/",
            RedisURL("cluster", "", True, (("redis-0.svc", 6379),), "", "app", "p@ss"),
        ),
        (
            "redis+sentinel://s1:26379,s2:26379,[::1]:26380/canwatch",
            RedisURL("sentinel", "", False, (("s1", 26379), ("s2", 26379), ("::1", 26380)), "canwatch"),
        ),
        (
            "rediss+sentinel://only-a-password@s1:26379/mymaster",
            RedisURL("sentinel", "", True, (("s1", 26379),), "mymaster", None, "only-a-password"),
        ),
    ],
)
def test_good_urls(url: str, expected: RedisURL) -> None:
    parsed = parse(url)
    assert parsed.url == url
    assert parsed == RedisURL(**{**expected.__dict__, "url": url})
    assert Settings(redis_url=url).redis_url == url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379",
        "127.0.0.1:6379",
        "redis+cluster://",
        "redis+cluster://host",
        "redis+cluster://host:0",
        "redis+cluster://host:70000",
        "redis+cluster://host:6379,",
        "redis+cluster://host:6379,other",
        "redis+cluster://host:6379/1",
        "redis+cluster://host:6379?ssl=true",
        "redis+sentinel://s1:26379",
        "redis+sentinel://s1:26379/",
        "redis+sentinel://s1:26379/a/b",
        "redis+sentinel://s1:port/canwatch",
        "redis+shard://s1:26379",
    ],
)
def test_bad_urls_stop_start_up_naming_the_variable(url: str) -> None:
    with pytest.raises(SettingsError, match=r"^AUTHSVC_REDIS_URL: "):
        Settings.from_env({"AUTHSVC_REDIS_URL": url})


def test_a_bad_url_does_not_echo_its_password() -> None:
    with pytest.raises(SettingsError) as err:
        Settings(redis_url="redis+cluster://app:hunter2@host")
    assert "hunter2" not in str(err.value)
    assert "hunter2" not in repr(parse("redis+cluster://app:hunter2@host:1"))


@pytest.mark.parametrize(
    ("url", "says"),
    [
        # redis-py hands an unknown name to the connection, which then fails every time.
        ("redis://127.0.0.1:6379/0?bogus=1", "the query holds an option authsvc does not take"),
        ("redis://127.0.0.1:6379/0?socket_timeout=5", "AUTHSVC_REDIS_TIMEOUT_MS"),
        ("redis://127.0.0.1:6379/0?retry_on_timeout=true", "no call is retried"),
        ("redis://127.0.0.1:6379/0?decode_responses=true", "as bytes"),
        ("redis://127.0.0.1:6379/0?protocol=3", "RESP2"),
        ("redis://127.0.0.1:6379/0?encoding=latin-1", "UTF-8"),
        ("redis://127.0.0.1:6379/0?ssl_cert_reqs=none", "rediss:// (TLS) only"),
        ("rediss://127.0.0.1:6379/0?ssl_cert_reqs=maybe", "none, optional or required"),
        ("redis://127.0.0.1:6379?db=1&db=2", "given twice"),
        ("redis://127.0.0.1:6379?db=one", "?db= must be a number"),
        ("redis://127.0.0.1:6379?db=\u00b2", "?db= must be a number"),
        ("redis://127.0.0.1:6379/3?db=1", "given twice (or with the database after the host)"),
        ("redis://127.0.0.1:6379/\u00b2", "must be a number"),
        # redis-py would quietly use database 0.
        ("redis://127.0.0.1:6379/leases", "must be a number"),
        ("redis://127.0.0.1:6379/0#x", "no fragment"),
    ],
)
def test_a_single_redis_url_takes_only_options_authsvc_honours(url: str, says: str) -> None:
    with pytest.raises(SettingsError, match=r"^AUTHSVC_REDIS_URL: ") as err:
        Settings.from_env({"AUTHSVC_REDIS_URL": url})
    assert says in str(err.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/3?client_name=canwatch&socket_keepalive=true",
        "redis://127.0.0.1:6379?db=2",
        "rediss://redis.internal:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/ssl/ca.pem&ssl_check_hostname=true",
        "rediss://redis.internal:6380/0?ssl_min_version=TLSv1_3&ssl_password=x&ssl_ciphers=HIGH",
        "unix:///run/redis/redis.sock?db=0&password=secret",
        "unix:///run/redis/redis.sock?db=1",
    ],
)
def test_the_options_authsvc_honours_are_taken(url: str) -> None:
    assert Settings(redis_url=url).redis_url == url


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0?hunter",
        # A password with an unencoded `?`: what follows it reads as the query.
        "redis://:s3cr?token=xyz@127.0.0.1:6379/0",
    ],
)
def test_an_unknown_option_is_not_echoed(url: str) -> None:
    with pytest.raises(SettingsError, match="an option authsvc does not take") as err:
        Settings(redis_url=url)
    assert "hunter" not in str(err.value) and "token" not in str(err.value) and "xyz" not in str(err.value)
