"""The one per-record error boundary of every agent.

:func:`each_record` runs an agent's handler on every event of its stream;
:func:`guarded` is the boundary around one record:

- the handler returns: ``autopilot_records_processed_total{stage}`` moves;
- it raises :class:`~autopilot.errors.BadRecord`: the record is dead-lettered with
  the exception's reason (:func:`autopilot.agents.deadletter.dead_letter` logs one
  warning and moves ``autopilot_dead_letters_total{stage}``);
- it raises anything else: one ``logger.exception`` line
  (``topic[partition]@offset: <stage> agent failed; dead-lettering``) and the record is
  dead-lettered with the reason ``internal error: <type>: <message>``.

Either way the loop goes on with the next record (the record's offset is committed:
what was dead-lettered is not retried). ``asyncio.CancelledError`` (a
``BaseException``) is not caught, so a stopping worker stops the agent.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from faust.types import EventT, StreamT
from prometheus_client import Counter

from autopilot import telemetry
from autopilot.errors import BadRecord

from .deadletter import dead_letter, where

__all__ = ["Handler", "each_record", "guarded", "internal_reason"]

logger = logging.getLogger(__name__)

#: An agent's per-record handler: processes one event, raises to refuse it.
Handler = Callable[[EventT[bytes]], Awaitable[None]]


def internal_reason(exc: BaseException) -> str:
    """The dead-letter reason of an unexpected exception."""
    return f"internal error: {type(exc).__name__}: {exc}"


async def guarded(
    event: EventT[bytes], handle: Handler, stage: str, processed: Counter | None = None,
    *, count: bool = True,
) -> bool:
    """Run ``handle(event)`` inside the error boundary (see module docstring).

    Args:
        event: the Faust event (a raw-bytes topic's, so it can be dead-lettered).
        handle: the agent's handler.
        stage: the agent's name (``metrics``, ``metrics.ingest`` …): counter label,
            ``x-autopilot-stage`` header and log text.
        processed: ``RECORDS.labels(stage=stage)`` bound once by the caller (a
            locked dict lookup saved per record); ``None`` binds it here.
        count: False leaves the counter to the caller (a stage whose records are
            done only after a later step, such as the batched ingest's send).

    Returns:
        True when the handler succeeded, False when the record was dead-lettered.
    """
    try:
        await handle(event)
    except BadRecord as exc:
        await dead_letter(event, exc.reason, stage)
        return False
    except Exception as exc:  # the boundary: one record never stops the agent
        logger.exception("%s: %s agent failed; dead-lettering", where(event), stage)
        await dead_letter(event, internal_reason(exc), stage)
        return False
    if count:
        (processed or telemetry.RECORDS.labels(stage=stage)).inc()
    return True


async def each_record(stream: StreamT[bytes], stage: str, handle: Handler) -> None:
    """Run ``handle`` on every event of ``stream``, each inside :func:`guarded`.

    The body of an agent: ``await each_record(stream, STAGE, process)``.
    """
    processed = telemetry.RECORDS.labels(stage=stage)
    async for event in stream.events():
        await guarded(event, handle, stage, processed)
