"""Producing the audit trail: :func:`emit` one :class:`~autopilot.audit.AuditEvent`.

Every agent that decides something about an incident (correlation, analysis,
notifier, actions, silences, feedback, the approved-actions hooks) calls
``await emit(AuditEvent(...))``. The event goes to ``autopilot.audit`` (name in force:
:func:`autopilot.topics.topic_name`), key: the incident id (UTF-8), value:
:meth:`AuditEvent.to_json` (secrets redacted there). The worker creates the topic on
first use with ``retention.ms`` from ``AUTOPILOT_AUDIT_RETENTION_DAYS`` (an existing
topic keeps its own configuration). ``autopilot audit INCIDENT_ID`` reads it back.

:func:`emit` never raises into its caller: the decision was made and goes on; a send
that fails is logged (with the incident id and kind, never the payload) and counted
in ``autopilot_audit_events_total{outcome="failed"}``.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Counter

from autopilot import telemetry
from autopilot.audit import AuditEvent
from autopilot.streams import audit_topic, read_to_end

__all__ = ["AUDIT_EVENTS", "emit"]

logger = logging.getLogger(__name__)

AUDIT_EVENTS = Counter(
    "autopilot_audit_events",
    "Audit events produced to autopilot.audit, by kind and outcome (sent, failed)",
    ["kind", "outcome"],
    registry=telemetry.REGISTRY,
)

#: How long one send may wait for the broker's acknowledgement (s).
SEND_TIMEOUT_S = 10.0

_declared: list[bool] = [False]


async def _declare() -> None:
    """Create the audit topic (partitions, retention) once per process, if missing
    (the worker also creates it at start: :func:`autopilot.streams.declare_output_topics`)."""
    if not _declared[0]:
        await audit_topic.maybe_declare()
        _declared[0] = True


async def emit(event: AuditEvent) -> None:
    """Produce ``event`` to ``autopilot.audit`` keyed by its incident id.

    Waits for the broker's acknowledgement (at most :data:`SEND_TIMEOUT_S` seconds).
    Never raises (cancellation aside): a failure is logged and counted, the caller's
    decision goes on.
    """
    try:
        value = event.to_json()
        await _declare()
        fut = await audit_topic.send(key=event.incident_id.encode(), value=value)
        await asyncio.wait_for(asyncio.shield(fut), SEND_TIMEOUT_S)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - the audit never breaks a decision
        AUDIT_EVENTS.labels(kind=event.kind, outcome="failed").inc()
        logger.warning(
            "audit: %s of incident %s not recorded (%s); the decision goes on",
            event.kind, event.incident_id, type(exc).__name__,
        )
        return
    AUDIT_EVENTS.labels(kind=event.kind, outcome="sent").inc()


#: How long ``autopilot audit`` waits for the broker (s).
READ_TIMEOUT_S = 30.0


async def read_events(
    incident_id: str | None = None, timeout_s: float = READ_TIMEOUT_S
) -> tuple[list[AuditEvent], int]:
    """The events of ``autopilot.audit`` (name in force, so ``AUTOPILOT_TOPIC_PREFIX``
    applies), read from the start of every partition to its end offset at the time of
    the call, in topic order; only those of ``incident_id`` when given. Uses
    ``AUTOPILOT_BROKER`` and the ``AUTOPILOT_KAFKA_*`` security settings; no worker
    needs to run.

    Returns:
        ``(events, undecodable)``: the events, and how many records were skipped as
        not being audit events.

    Raises:
        TimeoutError: the broker did not answer within ``timeout_s``.
        aiokafka.errors.KafkaConnectionError: the broker cannot be reached.
    """
    wanted = None if incident_id is None else incident_id.encode()
    events: list[AuditEvent] = []
    bad = 0
    for key, value in await read_to_end(audit_topic.get_topic_name(), timeout_s):
        if wanted is not None and key != wanted:
            continue
        try:
            events.append(AuditEvent.from_json(value or b""))
        except ValueError:
            bad += 1
    return events, bad
