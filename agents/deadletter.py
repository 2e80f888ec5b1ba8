"""Dead-lettering: the original bytes plus a reason, never a crash.

Agents do not call :func:`dead_letter` themselves: their per-record error boundary,
:mod:`autopilot.agents.boundary`, does.
"""

from __future__ import annotations

import logging

from faust.types import EventT

from autopilot import telemetry
from autopilot.streams import deadletter_topic

logger = logging.getLogger(__name__)

#: Header names on dead-lettered records (Kafka Connect's DLQ convention).
REASON_HEADER = "x-autopilot-reason"


def where(event: EventT[bytes]) -> str:
    """``topic[partition]@offset`` of an event, for log lines."""
    msg = event.message
    return f"{msg.topic}[{msg.partition}]@{msg.offset}"


def dead_letter_headers(
    event: EventT[bytes], reason: str, stage: str, item: int | str | None = None
) -> list[tuple[str, bytes]]:
    """The headers of a dead letter of ``event`` (see :func:`dead_letter`); with
    ``item``, also ``x-autopilot-item`` (a refused item's index in the record)."""
    msg = event.message
    headers = [
        (REASON_HEADER, reason[:2000].encode()),
        ("x-autopilot-topic", str(msg.topic).encode()),
        ("x-autopilot-partition", str(msg.partition).encode()),
        ("x-autopilot-offset", str(msg.offset).encode()),
        ("x-autopilot-stage", stage.encode()),
    ]
    if item is not None:
        headers.append(("x-autopilot-item", str(item).encode()))
    return headers


async def dead_letter(event: EventT[bytes], reason: str, stage: str) -> None:
    """Send ``event``'s original key and value bytes to ``autopilot.deadletter``.

    Args:
        event: the Faust event being processed (raw-bytes topic).
        reason: why it was refused; goes to the ``x-autopilot-reason`` header.
        stage: the agent that refused it (``metrics.ingest`` …), also a counter label.

    Headers: ``x-autopilot-reason``, ``x-autopilot-topic``, ``x-autopilot-partition``,
    ``x-autopilot-offset``, ``x-autopilot-stage`` (UTF-8 text).
    """
    msg = event.message
    headers = dead_letter_headers(event, reason, stage)
    telemetry.DEAD_LETTERS.labels(stage=stage).inc()
    logger.warning("%s: dead-lettered by %s: %s", where(event), stage, reason[:500])
    await deadletter_topic.send(key=msg.key, value=msg.value or b"", headers=headers)
