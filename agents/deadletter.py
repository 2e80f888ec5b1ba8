"""Dead-lettering: the original bytes plus a reason, never a crash."""

from __future__ import annotations

import logging
from typing import Any

from autopilot import telemetry
from autopilot.topics import deadletter_topic

logger = logging.getLogger(__name__)

#: Header names on dead-lettered records (Kafka Connect's DLQ convention).
REASON_HEADER = "x-autopilot-reason"


def where(event: Any) -> str:
    """``topic[partition]@offset`` of an event, for log lines."""
    msg = event.message
    return f"{msg.topic}[{msg.partition}]@{msg.offset}"


async def dead_letter(event: Any, reason: str, stage: str) -> None:
    """Send ``event``'s original key and value bytes to ``autopilot.deadletter``.

    Args:
        event: the Faust event being processed (raw-bytes topic).
        reason: why it was refused; goes to the ``x-autopilot-reason`` header.
        stage: the agent that refused it (``metrics.ingest`` …), also a counter label.

    Headers: ``x-autopilot-reason``, ``x-autopilot-topic``, ``x-autopilot-partition``,
    ``x-autopilot-offset``, ``x-autopilot-stage`` (UTF-8 text).
    """
    msg = event.message
    headers = [
        (REASON_HEADER, reason[:2000].encode()),
        ("x-autopilot-topic", str(msg.topic).encode()),
        ("x-autopilot-partition", str(msg.partition).encode()),
        ("x-autopilot-offset", str(msg.offset).encode()),
        ("x-autopilot-stage", stage.encode()),
    ]
    telemetry.DEAD_LETTERS.labels(stage=stage).inc()
    logger.warning("%s: dead-lettered by %s: %s", where(event), stage, reason[:500])
    await deadletter_topic.send(key=msg.key, value=msg.value or b"", headers=headers)
