from __future__ import annotations

import asyncio
import io
import json
import logging
import signal

import pytest

from authsvc import logs
from authsvc.drain import Drain


def test_records_are_json_lines_with_extras() -> None:
    record = logging.makeLogRecord({"name": "authsvc", "levelno": 30, "levelname": "WARNING",
                                    "msg": "redis unavailable", "reason": "ConnectionError"})  # fmt: skip
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["level"] == "warning" and line["msg"] == "redis unavailable"
    assert line["reason"] == "ConnectionError" and line["ts"].endswith("Z")


def test_buffered_handler_writes_on_flush_and_at_once_for_warnings() -> None:
    stream = io.StringIO()
    handler = logs.BufferedHandler(stream, interval=60)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("authsvc.test-buffer")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logger.info("one")
        assert stream.getvalue() == ""
        logger.warning("two")
        assert [json.loads(x)["msg"] for x in stream.getvalue().splitlines()] == ["one", "two"]
        handler.emit_line('{"msg": "three"}')
        handler.flush()
        assert stream.getvalue().splitlines()[-1] == '{"msg": "three"}'
    finally:
        logger.removeHandler(handler)
        handler.close()


def test_access_lines_share_the_format() -> None:
    logs.setup("info")
    handler = next(h for h in logging.getLogger("authsvc").handlers if isinstance(h, logs.BufferedHandler))
    stream = io.StringIO()
    handler.stream = stream
    logs.access_writer()({"method": "GET", "path": "/x", "status": 200})
    handler.flush()
    line = json.loads(stream.getvalue())
    assert set(line) == {"ts", "level", "logger", "msg", "method", "path", "status"}
    assert (line["logger"], line["msg"], line["status"]) == ("authsvc.access", "request", 200)


def test_on_sigterm_the_queue_is_written_and_once_the_drain_ends_every_line_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """uvicorn ends a worker by raising SIGTERM again after its shutdown: no exit handler
    runs, so a batch still queued then would be lost. During the drain lines stay batched
    (the worker still serves); nothing is written inside the signal handler itself."""
    stream = io.StringIO()
    handler = logs.BufferedHandler(stream, interval=3600)
    handler.setFormatter(logs.JsonFormatter())
    for name in ("authsvc", "uvicorn"):
        monkeypatch.setattr(logging.getLogger(name), "handlers", [handler])
        monkeypatch.setattr(logging.getLogger(name), "propagate", False)
    logger = logging.getLogger("authsvc")
    level = logger.level
    logger.setLevel(logging.INFO)
    stops: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda sig, frame: stops.append(sig))

    def written() -> list[str]:
        return [json.loads(x)["msg"] for x in stream.getvalue().splitlines()]

    async def serve() -> None:
        assert Drain(0.3).install()
        logger.info("before")
        handler.emit_line('{"msg": "access"}')
        signal.raise_signal(signal.SIGTERM)
        assert written() == []  # not from the handler: from the loop, next
        await asyncio.sleep(0.05)
        assert written() == ["before", "access"] and stops == []
        logger.info("draining, still serving")
        await asyncio.sleep(0.05)
        assert written() == ["before", "access"]  # batched while the drain lasts
        await asyncio.sleep(0.4)
        assert stops == [signal.SIGTERM]
        assert written() == ["before", "access", "SIGTERM: draining", "draining, still serving"]
        logger.info("shutting down")
        assert written()[-1] == "shutting down"

    try:
        asyncio.run(serve())
    finally:
        signal.signal(signal.SIGTERM, previous)
        logger.setLevel(level)
        handler.close()
