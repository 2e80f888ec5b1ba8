"""Glue between the pure decoders of :mod:`autopilot.formats` and the agents/views.

The Kafka side (:func:`decode_metrics_event` …) raises :class:`BadRecord` so the
ingest agents dead-letter the record; skipped samples move
``autopilot_samples_skipped_total``.
"""

from __future__ import annotations

from typing import Any

from faust.types import EventT

from autopilot import telemetry
from autopilot.app import settings
from autopilot.errors import BadRecord
from autopilot.formats import Decoded
from autopilot.formats.deployments import decode_deployments
from autopilot.formats.logs import decode_logs
from autopilot.formats.metrics_json import decode_metrics
from autopilot.models import DeploymentEvent, LogEntry, MetricPoint

__all__ = [
    "count_skipped",
    "decode_deployments_event",
    "decode_logs_event",
    "decode_metrics_event",
]


def count_skipped(decoded: Decoded, source: str) -> None:
    """Move ``autopilot_samples_skipped_total`` for what ``decoded`` left out."""
    for reason, n in decoded.skipped.items():
        telemetry.SAMPLES_SKIPPED.labels(source=source, reason=reason).inc(n)


def _finish(decoded: Decoded, source: str) -> list[Any]:
    count_skipped(decoded, source)
    if decoded.errors:
        raise BadRecord(decoded.reason())
    return decoded.records


def _key_text(event: EventT[bytes]) -> str | None:
    key: object = event.message.key  # bytes on raw topics; anything else via str()
    if not key:
        return None
    text = key.decode("utf-8", errors="replace").strip() if isinstance(key, bytes) else str(key)
    return text or None


def decode_metrics_event(event: EventT[bytes]) -> list[MetricPoint]:
    """MetricPoints of an ``autopilot.metrics`` record (seed, adapter, Telegraf JSON)."""
    if not event.value:
        raise BadRecord("empty record value")
    try:
        decoded = decode_metrics(event.value, settings().service_label_list())
    except ValueError as exc:
        raise BadRecord(str(exc)) from None
    return _finish(decoded, "kafka")


def decode_logs_event(event: EventT[bytes]) -> list[LogEntry]:
    """LogEntries of an ``autopilot.logs`` record (JSON, JSON lines or text lines).

    The record key is the service of lines that do not name one.
    """
    if not event.value:
        raise BadRecord("empty record value")
    try:
        decoded = decode_logs(event.value, _key_text(event))
    except ValueError as exc:
        raise BadRecord(str(exc)) from None
    return _finish(decoded, "kafka")


def decode_deployments_event(event: EventT[bytes]) -> list[DeploymentEvent]:
    """DeploymentEvents of an ``autopilot.deployments`` record (seed, GitHub, Argo CD)."""
    if not event.value:
        raise BadRecord("empty record value")
    try:
        decoded = decode_deployments(event.value)
    except ValueError as exc:
        raise BadRecord(str(exc)) from None
    return _finish(decoded, "kafka")
