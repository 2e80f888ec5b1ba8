"""Feedback agent: applies "Not an incident" records to the ``feedback`` table.

Consumes ``autopilot.feedback`` (key: service; value: one
:class:`autopilot.feedback.Feedback` as JSON, or a JSON list of them of one service)
and adds them to the service's :class:`autopilot.feedback.FeedbackState` in the
``feedback`` table, idempotently per offset (a replayed record changes nothing).
The metrics agent reads that table on the same worker (co-partitioned) and suppresses
the alerts the feedback matches (:func:`autopilot.feedback.screen`). Whoever records
feedback (the Slack button, a script) only produces a record to the topic:
:func:`feedback_record` builds it. Feedback given on an incident is recorded on the
audit trail when applied (:func:`autopilot.audit.feedback_event`, docs/audit.md).
"""

from __future__ import annotations

import json
import logging
import time

from autopilot.tables import feedback
from faust.types import EventT, StreamT

from autopilot.app import app
from autopilot.audit import feedback_event
from autopilot.errors import BadRecord
from autopilot.feedback import Feedback, FeedbackState, decode_feedback
from autopilot.streams import feedback_topic, read_to_end

from .audit import emit
from .boundary import each_record
from .deadletter import where
from .ingest import source_of

logger = logging.getLogger(__name__)
STAGE = "feedback"


def feedback_record(records: list[Feedback]) -> tuple[bytes, bytes]:
    """``(key, value)`` of the ``autopilot.feedback`` record that carries ``records``
    (all of one service).

    Raises:
        BadRecord: empty, or several services.
    """
    if not records or len({r.service for r in records}) != 1:
        raise BadRecord("feedback: one record holds the feedback of one service")
    return records[0].service.encode(), json.dumps([r.to_dict() for r in records]).encode()


async def record_feedback(records: list[Feedback]) -> None:
    """Produce ``records`` (one service) to ``autopilot.feedback`` and wait for the
    broker's acknowledgement; the service's owner applies them."""
    key, value = feedback_record(records)
    await (await feedback_topic.send(key=key, value=value))


async def process(event: EventT[bytes]) -> None:
    """Apply one feedback record (see module docstring)."""
    records = decode_feedback(event.value)
    key = records[0].service.encode()
    if event.key is not None and event.key != key:
        raise BadRecord(f"feedback: record keyed {event.key!r} holds feedback of "
                        f"{records[0].service!r}")
    state = FeedbackState.from_dict(feedback.get(key))
    source, offset = source_of(event)
    new = state.apply(records, offset, stream=source, now=time.time())
    if new is not state:
        feedback[key] = new.to_dict()
        for fb in records:
            logger.info("%s: feedback on %s (%s, |z| %.1f) by %s recorded, until %s",
                        where(event), fb.series, fb.direction, fb.z_score, fb.user or "?",
                        "for good" if fb.until is None else f"{fb.until:.0f}")
            if fb.incident:
                await emit(feedback_event(fb, at=time.time()))


@app.agent(feedback_topic, name="feedback")
async def apply_feedback(stream: StreamT[bytes]) -> None:
    """Record "Not an incident" feedback per service."""
    await each_record(stream, STAGE, process)


def feedback_for(service: str) -> list[dict[str, object]]:
    """View helper: the feedback records of ``service`` (local partition)."""
    return [r.to_dict() for r in FeedbackState.from_dict(feedback.get(service.encode())).records]


#: How long ``autopilot feedback export`` waits for the broker (s).
EXPORT_TIMEOUT_S = 30.0


async def export_changelog(timeout_s: float = EXPORT_TIMEOUT_S) -> list[Feedback]:
    """Every feedback record of every service, read from the ``feedback`` table's
    changelog topic from its start to its end (what the workers' tables hold after a
    recovery; no worker needs to run). Uses ``AUTOPILOT_BROKER`` and the
    ``AUTOPILOT_KAFKA_*`` security settings; sorted by service, series and
    ``recorded_at``.

    Raises:
        TimeoutError: the broker did not answer within ``timeout_s``.
    """
    latest: dict[bytes, bytes | None] = {}
    for key, value in await read_to_end(feedback.changelog_topic.get_topic_name(), timeout_s):
        if key is not None:
            latest[key] = value
    out: list[Feedback] = []
    for value in latest.values():
        if value:
            out.extend(FeedbackState.from_dict(json.loads(value)).records)
    out.sort(key=lambda r: (r.service, r.series, r.recorded_at))
    return out
