"""With several worker processes, /metrics adds up every worker's counts."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families

from harness import AuthsvcFactory, Client


def activations(text: str) -> float:
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "authsvc_decisions_total" and s.labels == {"kind": "activate", "outcome": "allowed"}
    )


def test_metrics_add_up_across_workers(start_authsvc: AuthsvcFactory) -> None:
    service = start_authsvc(workers=2)
    client = Client(service.url)
    user = client.new_user()
    stream = client.new_stream()
    for _ in range(40):
        # A new connection each time, so that both workers take some of them.
        with requests.Session() as http:
            r = http.patch(f"{service.url}/streams/{stream}/activate", headers={"x-userid": user}, timeout=5)
            assert r.status_code == 200
    for _ in range(6):
        with requests.Session() as http:
            text = http.get(f"{service.url}/metrics", timeout=5).text
            assert activations(text) == 40
    assert "authsvc_build_info" in text
