"""Graceful stop: SIGTERM turns /readyz to 503 at once, authsvc keeps serving for
AUTHSVC_DRAIN_S, finishes what is in flight, then exits; no request is lost."""

from __future__ import annotations

import signal
import socket
import threading

import requests

from harness import HOST, Authsvc, Client, RedisServer, settings_env
from until import until


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1).close()
    except OSError:
        return True
    return False


def test_sigterm_drains_then_finishes_in_flight_requests(own_redis: RedisServer) -> None:
    # A long Redis timeout: a request held by a paused Redis stays in flight, not 503.
    service = Authsvc(settings_env(own_redis, drain_s=3, redis_timeout_ms=30_000), workers=1)
    service.start()
    try:
        assert service.proc is not None
        client = Client(service.url)
        user = client.new_user()
        streams = [client.new_stream() for _ in range(3)]
        for stream in streams:
            assert client.activate(user, stream).status_code == 200
        answers: list[int | str] = []
        stop_load = threading.Event()
        ready = threading.Barrier(len(streams) + 1)

        def load(stream: str) -> None:
            with requests.Session() as http:  # keep-alive, as nginx's upstream connections
                ready.wait(10)
                while not stop_load.is_set():
                    try:
                        url = f"{service.url}/streams/{stream}/heartbeat"
                        r = http.patch(url, headers={"x-userid": user}, timeout=30)
                        answers.append(r.status_code)
                    except requests.RequestException as exc:
                        answers.append(type(exc).__name__)

        threads = [threading.Thread(target=load, args=(s,)) for s in streams]
        for t in threads:
            t.start()
        ready.wait(10)
        assert until(lambda: len(answers) >= 20, 20)
        service.proc.send_signal(signal.SIGTERM)

        def readyz() -> requests.Response:
            return requests.get(f"{service.url}/readyz", timeout=5)

        assert until(lambda: readyz().status_code == 503, 2), "readyz still 200 after SIGTERM"
        draining = readyz()
        assert draining.json() == {"status": "ko", "error": "Draining"}
        # Every answer now closes its connection (a hot route's and Starlette's alike).
        assert draining.headers["connection"] == "close"
        assert client.heartbeat(user, streams[0]).headers["connection"] == "close"
        served_before = len(answers)
        # Still serving, on open connections and on new ones.
        assert until(lambda: len(answers) >= served_before + 20, 10)
        assert client.active(user).status_code == 200
        stop_load.set()
        for t in threads:
            t.join(35)
        assert answers and set(answers) == {200}, [a for a in answers if a != 200][:5]

        # A request in flight when the drain ends: Redis paused holds it.
        own_redis.pause()
        held: list[int] = []
        request = threading.Thread(target=lambda: held.append(client.heartbeat(user, streams[0]).status_code))
        request.start()
        try:
            assert until(lambda: refuses_connections(service.port), 20), "still listening after the drain"
            assert service.proc.poll() is None, "exited with a request in flight"
        finally:
            own_redis.resume()
        request.join(30)
        assert held == [200]
        service.proc.wait(20)
    finally:
        service.stop()


def test_every_worker_drains(own_redis: RedisServer) -> None:
    service = Authsvc(settings_env(own_redis, drain_s=2), workers=2)
    service.start()
    try:
        assert service.proc is not None
        client = Client(service.url)
        user, stream = client.new_user(), client.new_stream()
        assert client.activate(user, stream).status_code == 200
        service.proc.send_signal(signal.SIGTERM)

        def all_draining() -> bool:
            # Fresh connections land on either worker; both must say so.
            codes = {requests.get(f"{service.url}/readyz", timeout=5).status_code for _ in range(8)}
            return codes == {503}

        assert until(all_draining, 5)
        for _ in range(8):
            with requests.Session() as http:
                url = f"{service.url}/streams/{stream}/heartbeat"
                r = http.patch(url, headers={"x-userid": user}, timeout=5)
                assert r.status_code == 200
        service.proc.wait(30)
    finally:
        service.stop()
