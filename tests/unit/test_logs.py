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


def test_on_sigterm_what_is_queued_is_written_and_every_line_after_it_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """uvicorn ends a worker by raising SIGTERM again after its shutdown: no exit handler
    runs, so a batch still queued then would be lost."""
    stream = io.StringIO()
    handler = logs.BufferedHandler(stream, interval=3600)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("authsvc")
    monkeypatch.setattr(logger, "handlers", [handler])
    monkeypatch.setattr(logger, "propagate", False)
    monkeypatch.setattr(logger, "level", logging.INFO)
    stops: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda sig, frame: stops.append(sig))

    async def serve() -> None:
        assert Drain(0).install()
        logger.info("before")
        handler.emit_line('{"msg": "access"}')
        assert stream.getvalue() == ""
        signal.raise_signal(signal.SIGTERM)
        written = [json.loads(x)["msg"] for x in stream.getvalue().splitlines()]
        assert written == ["before", "access", "SIGTERM: draining"]
        logger.info("shutting down")
        assert json.loads(stream.getvalue().splitlines()[-1])["msg"] == "shutting down"
        await asyncio.sleep(0.05)  # the server's own handler, called after the drain (0 s)
        assert stops == [signal.SIGTERM]

    try:
        asyncio.run(serve())
    finally:
        signal.signal(signal.SIGTERM, previous)
        handler.close()
