"""A bounded load of activations, heartbeats and gate decisions for many users, recording
every request's outcome and duration, for the failover and resharding tests.

Each user holds one lease it knows to be alive; threads (each with its own users and
HTTP session) cycle heartbeat -> gate -> deactivate + activate another stream. A lease
the service admitted (200) and never ended, that a heartbeat or the gate later calls
gone, was lost.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import requests

from harness import Client

MAX_SECONDS = 60.0  # every load stops by then, whatever the test does


@dataclass
class Outcome:
    user: str
    op: str
    status: int  # the real status: X-Error-Status for the gate; 0 = no answer
    started: float
    seconds: float


@dataclass
class Load:
    base: str
    users: list[str]
    streams: dict[str, list[str]]  # per user: issued stream ids to cycle through
    threads: int = 4
    outcomes: list[Outcome] = field(default_factory=list)
    lost: list[tuple[str, str]] = field(default_factory=list)
    current: dict[str, str] = field(default_factory=dict)
    # Users whose current lease was ended and whose next is not admitted yet (the load
    # stopped in between): they hold no lease, none can be missing.
    between: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    def admit_all(self) -> None:
        """Every user activates its first stream (before the load starts)."""
        client = Client(self.base)
        for user in self.users:
            r = client.activate(user, self.streams[user][0])
            assert r.status_code == 200, r.text
            self.current[user] = self.streams[user][0]
        client.close()

    def start(self) -> None:
        for i in range(self.threads):
            worker = threading.Thread(target=self._run, args=(self.users[i :: self.threads],), daemon=True)
            worker.start()
            self._workers.append(worker)

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(30)
        assert not any(w.is_alive() for w in self._workers)

    def _request(self, http: requests.Session, user: str, op: str, stream: str) -> int:
        started = time.monotonic()
        status = 0
        try:
            if op == "gate":
                headers = {"x-userid": user, "X-Original-URI": f"/watch/{stream}/seg1.ts"}
                r = http.get(f"{self.base}/_authz", headers=headers, timeout=5)
                status = 200 if r.status_code == 204 else int(r.headers.get("x-error-status", r.status_code))
            else:
                r = http.patch(f"{self.base}/streams/{stream}/{op}", headers={"x-userid": user}, timeout=5)
                status = r.status_code
        except requests.RequestException:
            status = 0
        seconds = time.monotonic() - started
        with self._lock:
            self.outcomes.append(Outcome(user, op, status, started, seconds))
        return status

    def _run(self, users: list[str]) -> None:
        http = requests.Session()
        deadline = time.monotonic() + MAX_SECONDS
        step = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            for user in users:
                if self._stop.is_set():
                    break
                stream = self.current[user]
                op = ("heartbeat", "gate", "deactivate")[step % 3]
                status = self._request(http, user, op, stream)
                if op in ("heartbeat", "gate") and status in (403, 404):
                    # Admitted, never ended, now gone: lost (in a failover). Take a new one.
                    with self._lock:
                        self.lost.append((user, stream))
                    self._next(http, user)
                elif op == "deactivate" and status == 200:
                    self._next(http, user)
            step += 1
        http.close()

    def _next(self, http: requests.Session, user: str) -> None:
        """Activate the user's next stream until one is admitted (or the load stops)."""
        streams = self.streams[user]
        following = streams[(streams.index(self.current[user]) + 1) % len(streams)]
        with self._lock:
            self.between.add(user)
        while not self._stop.is_set():
            if self._request(http, user, "activate", following) == 200:
                with self._lock:
                    self.current[user] = following
                    self.between.discard(user)
                return
            time.sleep(0.01)

    def errors(self, users: set[str] | None = None) -> list[Outcome]:
        """Outcomes that are neither success nor a lost lease's 403/404."""
        return [
            o for o in self.outcomes if o.status not in (200, 403, 404) and (users is None or o.user in users)
        ]
