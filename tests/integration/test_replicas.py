"""Replicas that share the secret and Redis agree on ids and leases."""

from __future__ import annotations

from harness import Authsvc, Client, RedisServer, settings_env


def test_two_replicas_share_ids_and_leases(redis_server: RedisServer) -> None:
    env = settings_env(redis_server)
    a, b = Authsvc(env), Authsvc(env)
    try:
        a.start()
        b.start()
        ca, cb = Client(a.url), Client(b.url)
        user = ca.new_user()
        streams = [cb.new_stream() for _ in range(4)]
        assert ca.activate(user, streams[0]).status_code == 200
        assert cb.activate(user, streams[1]).status_code == 200
        assert ca.activate(user, streams[2]).status_code == 200
        refused = cb.activate(user, streams[3])
        assert refused.status_code == 403
        assert [s["streamId"] for s in refused.json()["activeStreams"]] == streams[:3]
    finally:
        a.stop()
        b.stop()


def test_a_replica_with_another_secret_refuses_the_ids(redis_server: RedisServer) -> None:
    a = Authsvc(settings_env(redis_server))
    b = Authsvc({**settings_env(redis_server), "AUTHSVC_SECRET": "another-secret-of-16+"})
    try:
        a.start()
        b.start()
        ca, cb = Client(a.url), Client(b.url)
        r = cb.activate(ca.new_user(), ca.new_stream())
        assert (r.status_code, r.json()["error"]) == (404, "Invalid Data.")
    finally:
        a.stop()
        b.stop()


def test_without_a_secret_serve_makes_one_and_warns(redis_server: RedisServer) -> None:
    env = settings_env(redis_server)
    del env["AUTHSVC_SECRET"]
    service = Authsvc(env, workers=2)
    try:
        service.start()
        client = Client(service.url)
        user, stream = client.new_user(), client.new_stream()
        for _ in range(6):  # several connections: both workers must accept the ids
            assert Client(service.url).activate(user, stream).status_code == 200
        assert "AUTHSVC_SECRET is not set" in service.logs()
    finally:
        service.stop()
