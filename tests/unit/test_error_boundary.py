"""The agents' one per-record error boundary (:mod:`autopilot.agents.boundary`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from autopilot.agents import boundary, deadletter

from autopilot import telemetry
from autopilot.errors import BadRecord


class DeadLetters:
    """Stands in for the ``autopilot.deadletter`` topic: keeps what was sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, **kwargs: Any) -> None:
        self.sent.append(kwargs)


@pytest.fixture
def dlq(monkeypatch: pytest.MonkeyPatch) -> DeadLetters:
    topic = DeadLetters()
    monkeypatch.setattr(deadletter, "deadletter_topic", topic)
    return topic


def _event(value: bytes = b'{"x": 1}', offset: int = 42) -> Any:
    message = SimpleNamespace(topic="autopilot.metrics", partition=3, offset=offset,
                              key=b"checkout", value=value, headers=None)
    return SimpleNamespace(value=value, message=message)


def _count(metric: Any, stage: str) -> float:
    return float(metric.labels(stage=stage)._value.get())


def test_a_handled_record_is_counted_and_nothing_is_dead_lettered(
    dlq: DeadLetters, caplog: pytest.LogCaptureFixture
) -> None:
    stage = "test.boundary.ok"
    seen: list[Any] = []

    async def handle(event: Any) -> None:
        seen.append(event)

    event = _event()
    with caplog.at_level(logging.DEBUG):
        ok = asyncio.run(boundary.guarded(event, handle, stage))
    assert ok is True
    assert seen == [event]
    assert _count(telemetry.RECORDS, stage) == 1.0
    assert _count(telemetry.DEAD_LETTERS, stage) == 0.0
    assert dlq.sent == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_bad_record_is_dead_lettered_with_its_reason_and_logged_once(
    dlq: DeadLetters, caplog: pytest.LogCaptureFixture
) -> None:
    stage = "test.boundary.bad"

    async def handle(event: Any) -> None:
        raise BadRecord("metric_name: field required")

    with caplog.at_level(logging.DEBUG):
        ok = asyncio.run(boundary.guarded(_event(b"not json"), handle, stage))
    assert ok is False
    assert _count(telemetry.RECORDS, stage) == 0.0
    assert _count(telemetry.DEAD_LETTERS, stage) == 1.0
    assert dlq.sent == [{
        "key": b"checkout",
        "value": b"not json",  # the original bytes
        "headers": [
            ("x-autopilot-reason", b"metric_name: field required"),
            ("x-autopilot-topic", b"autopilot.metrics"),
            ("x-autopilot-partition", b"3"),
            ("x-autopilot-offset", b"42"),
            ("x-autopilot-stage", stage.encode()),
        ],
    }]
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in logged] == [
        f"autopilot.metrics[3]@42: dead-lettered by {stage}: metric_name: field required"
    ]
    assert logged[0].exc_info is None  # a refused record is no crash: no traceback


def test_an_internal_error_is_dead_lettered_as_such_with_one_traceback(
    dlq: DeadLetters, caplog: pytest.LogCaptureFixture
) -> None:
    stage = "test.boundary.internal"

    async def handle(event: Any) -> None:
        raise KeyError("baseline")

    with caplog.at_level(logging.DEBUG):
        ok = asyncio.run(boundary.guarded(_event(), handle, stage))
    assert ok is False
    assert _count(telemetry.RECORDS, stage) == 0.0
    assert _count(telemetry.DEAD_LETTERS, stage) == 1.0
    (sent,) = dlq.sent
    headers = dict(sent["headers"])
    assert headers["x-autopilot-reason"] == b"internal error: KeyError: 'baseline'"
    assert sent["value"] == b'{"x": 1}'
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert [r.getMessage() for r in tracebacks] == [
        f"autopilot.metrics[3]@42: {stage} agent failed; dead-lettering"
    ]
    assert tracebacks[0].levelno == logging.ERROR


def test_each_record_goes_on_after_a_failure_and_binds_the_counter_per_stage(
    dlq: DeadLetters,
) -> None:
    stage = "test.boundary.loop"
    events = [_event(offset=1), _event(b"", offset=2), _event(offset=3)]
    handled: list[int] = []

    class Stream:
        async def events(self) -> AsyncIterator[Any]:
            for e in events:
                yield e

    async def handle(event: Any) -> None:
        if not event.value:
            raise BadRecord("empty record value")
        handled.append(event.message.offset)

    stream: Any = Stream()  # what each_record reads of a Faust stream: events()
    asyncio.run(boundary.each_record(stream, stage, handle))
    assert handled == [1, 3]
    assert _count(telemetry.RECORDS, stage) == 2.0
    assert [dict(s["headers"])["x-autopilot-offset"] for s in dlq.sent] == [b"2"]


def test_cancellation_is_not_swallowed(dlq: DeadLetters) -> None:
    async def handle(event: Any) -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(boundary.guarded(_event(), handle, "test.boundary.cancel"))
    assert dlq.sent == []


def test_item_dead_letters_carry_the_same_headers_plus_the_item_index() -> None:
    headers = deadletter.dead_letter_headers(_event(), "x" * 3000, "metrics.ingest", 7)
    assert [name for name, _ in headers] == [
        "x-autopilot-reason", "x-autopilot-topic", "x-autopilot-partition",
        "x-autopilot-offset", "x-autopilot-stage", "x-autopilot-item",
    ]
    assert len(dict(headers)["x-autopilot-reason"]) == 2000
    assert dict(headers)["x-autopilot-item"] == b"7"


def test_a_handled_record_is_left_to_the_caller_to_count_when_asked(
    dlq: DeadLetters,
) -> None:
    stage = "test.boundary.uncounted"

    async def handle(event: Any) -> None:
        return None

    assert asyncio.run(boundary.guarded(_event(), handle, stage, count=False)) is True
    assert _count(telemetry.RECORDS, stage) == 0.0
    assert dlq.sent == []
