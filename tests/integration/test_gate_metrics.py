"""The gate answers nginx 403 with the real status in X-Error-Status; the metrics count
the real one, so that an outage of the busiest route shows as 503s (the alert on
unavailable answers depends on it)."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import AuthsvcFactory
from harness import Client, RedisServer


def gate_answers(client: Client) -> dict[str, float]:
    text = requests.get(f"{client.base}/metrics", timeout=5).text
    return {
        s.labels["status"]: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "authsvc_http_requests_total" and s.labels["route"] == "/_authz"
    }


def test_gate_counts_the_real_status(start_authsvc: AuthsvcFactory, own_redis: RedisServer) -> None:
    client = Client(start_authsvc(redis=own_redis).url)
    user, stream, other = client.new_user(), client.new_stream(), client.new_stream()
    assert client.activate(user, stream).status_code == 200

    def gate(stream_id: str) -> requests.Response:
        headers = {"x-userid": user, "X-Original-URI": f"/watch/{stream_id}/seg1.ts"}
        return client.http.get(f"{client.base}/_authz", headers=headers, timeout=5)

    assert gate(stream).status_code == 204
    refused = gate(other)
    assert (refused.status_code, refused.headers["x-error-status"]) == (403, "403")
    own_redis.stop()
    for _ in range(3):
        down = gate(stream)
        assert (down.status_code, down.headers["x-error-status"]) == (403, "503")
    assert gate_answers(client) == {"204": 1, "403": 1, "503": 3}
