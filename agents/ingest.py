"""First stage: decode external input and re-key it by service.

External producers partition with their own hash (kcat: CRC32, Java and aiokafka:
murmur2, sarama: FNV-1a), so the records of one service can sit on any partition of
``autopilot.metrics``/``logs``/``deployments``. These agents validate each record
(one object or a JSON list), dead-letter what cannot be used, and forward the valid
items grouped by service to the ``*.keyed`` topics with the service as key through
Faust's own producer — the same hop ``Stream.group_by`` makes — so every later
topic and table is co-partitioned by service.

Each forwarded record carries the header ``x-autopilot-source`` =
``"<input topic>/<partition>/<offset>"``: the table agents deduplicate on that input
position, so replaying this stage after a crash (which re-sends records under new
keyed offsets) changes no table (:mod:`autopilot.replay`).

One bad item never sinks a record: the valid items of a record are forwarded, and
each refused item is dead-lettered on its own (value: the item as sent, its JSON or
its lines; headers: the reason, the input position and ``x-autopilot-item``, the
item's index). A record with no valid item is dead-lettered whole, with its original
bytes. Items timed beyond ``AUTOPILOT_MAX_FUTURE_S``/``AUTOPILOT_MAX_PAST_S`` are
refused here too (:func:`screen`).
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic_core import PydanticSerializationError

from autopilot import replay, telemetry
from autopilot.app import app, settings
from autopilot.errors import BadRecord
from autopilot.formats import Decoded
from autopilot.formats.deployments import decode_deployments
from autopilot.formats.logs import decode_logs
from autopilot.formats.metrics_json import decode_metrics
from autopilot.models import MetricPoint
from autopilot.topics import (
    deadletter_topic,
    deployments_keyed_topic,
    deployments_topic,
    logs_keyed_topic,
    logs_topic,
    metrics_keyed_topic,
    metrics_topic,
)

from .deadletter import REASON_HEADER, dead_letter, where

logger = logging.getLogger(__name__)


def _service(item: BaseModel) -> str:
    if isinstance(item, MetricPoint):
        return item.service
    return str(item.service)


def group_by_service(items: list[Any]) -> dict[str, list[Any]]:
    """Group validated items by service, keeping their order within a service."""
    groups: dict[str, list[Any]] = defaultdict(list)
    for item in items:
        groups[_service(item)].append(item)
    return groups


_METRIC_POINTS = TypeAdapter(list[MetricPoint])


def encode_items(items: list[BaseModel]) -> bytes:
    """JSON list of records (strict JSON, UTF-8).

    A list of MetricPoints is written by pydantic-core's serializer (about 5 times
    faster than ``model_dump`` + ``json.dumps``; the same JSON values — a MetricPoint
    holds only finite floats — but non-ASCII text as UTF-8 rather than ``\\u``
    escapes); other records, or text it cannot encode, go through ``json.dumps``.
    """
    if all(type(i) is MetricPoint for i in items):
        try:
            return _METRIC_POINTS.dump_json(items)  # type: ignore[arg-type]
        except PydanticSerializationError:
            pass
    return json.dumps(
        [i.model_dump(mode="json") for i in items], allow_nan=False, separators=(",", ":")
    ).encode()


def source_of(event: Any) -> tuple[str, int]:
    """``(source stream, offset)`` of a keyed record: the input position named by its
    ``x-autopilot-source`` header, or (older records without it) its own position."""
    msg = event.message
    headers = msg.headers or ()
    items = headers.items() if isinstance(headers, dict) else headers
    for name, value in items:
        if name == replay.SOURCE_HEADER:
            parsed = replay.parse_source(value)
            if parsed is not None:
                return parsed
    return replay.stream_id(msg.topic, msg.partition), msg.offset


def screen(decoded: Decoded, source: str, now_s: float | None = None) -> Decoded:
    """Apply the time limits to ``decoded`` and move its counters; returns it.

    Items timed more than ``AUTOPILOT_MAX_FUTURE_S`` ahead of ``now_s`` (default: the
    wall clock, epoch s) or more than ``AUTOPILOT_MAX_PAST_S`` behind it become
    refused items (:meth:`Decoded.enforce_time_limits`). Counters:
    ``autopilot_samples_skipped_total``, ``autopilot_items_rejected_total`` and
    ``autopilot_items_defaulted_total``, labelled with ``source``.
    """
    s = settings()
    decoded.enforce_time_limits(
        time.time() if now_s is None else now_s, s.max_future_s, s.max_past_s
    )
    for reason, n in decoded.skipped.items():
        telemetry.SAMPLES_SKIPPED.labels(source=source, reason=reason).inc(n)
    for reason, n in decoded.rejected_counts().items():
        telemetry.ITEMS_REJECTED.labels(source=source, reason=reason).inc(n)
    for reason, n in decoded.defaulted.items():
        telemetry.ITEMS_DEFAULTED.labels(source=source, reason=reason).inc(n)
    return decoded


def _key_text(event: Any) -> str | None:
    key = event.message.key
    if not key:
        return None
    text = key.decode("utf-8", errors="replace").strip() if isinstance(key, bytes) else str(key)
    return text or None


def _decode_event(event: Any, decode: Any) -> Decoded:
    if not event.value:
        raise BadRecord("empty record value")
    try:
        decoded = decode(event.value)
    except ValueError as exc:  # nothing in the record can be read
        raise BadRecord(str(exc)) from None
    return screen(decoded, "kafka")


def decode_metrics_items(event: Any) -> Decoded:
    """The items of an ``autopilot.metrics`` record (seed, adapter, Telegraf JSON).

    Raises:
        BadRecord: an empty value or one that is not JSON.
    """
    labels = settings().service_label_list()
    return _decode_event(event, lambda raw: decode_metrics(raw, labels))


def decode_logs_items(event: Any) -> Decoded:
    """The items of an ``autopilot.logs`` record (JSON, JSON lines, text lines; the
    record key is the service of lines that do not name one).

    Raises:
        BadRecord: an empty value, or a JSON list that does not parse.
    """
    service = _key_text(event)
    return _decode_event(event, lambda raw: decode_logs(raw, service))


def decode_deployments_items(event: Any) -> Decoded:
    """The items of an ``autopilot.deployments`` record (seed, GitHub, Argo CD).

    Raises:
        BadRecord: an empty value or one that is not JSON.
    """
    return _decode_event(event, decode_deployments)


def _item_bytes(raw: Any) -> bytes:
    """A refused item as dead-letter value bytes: text as UTF-8, else JSON (strict
    unless the item itself holds a number beyond float range, ``1e309``, which is
    then written ``Infinity``, as Python's and JavaScript's JSON readers take it)."""
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, str):
        return raw.encode()
    try:
        return json.dumps(raw, ensure_ascii=False).encode()
    except (TypeError, ValueError):
        return repr(raw).encode()


async def dead_letter_items(event: Any, decoded: Decoded, stage: str) -> None:
    """Dead-letter each refused item of ``decoded`` on its own (see module docstring).

    Headers: those of :func:`autopilot.agents.deadletter.dead_letter` plus
    ``x-autopilot-item`` (the item's index in the record).
    """
    msg = event.message
    for entry in decoded.rejected():
        item = entry["item"]
        raw = decoded.raw.get(item, decoded.raw.get(None) if item == 0 else None)
        headers = [
            (REASON_HEADER, str(entry["reason"])[:2000].encode()),
            ("x-autopilot-topic", str(msg.topic).encode()),
            ("x-autopilot-partition", str(msg.partition).encode()),
            ("x-autopilot-offset", str(msg.offset).encode()),
            ("x-autopilot-stage", stage.encode()),
            ("x-autopilot-item", str(item).encode()),
        ]
        telemetry.DEAD_LETTERS.labels(stage=stage).inc()
        logger.warning(
            "%s: item %s dead-lettered by %s (the record's other items go on): %s",
            where(event), item, stage, str(entry["reason"])[:500],
        )
        value = _item_bytes(raw) if raw is not None else b""
        await deadletter_topic.send(key=msg.key, value=value, headers=headers)


async def forward(event: Any, decode: Any, target: Any, stage: str = "ingest") -> None:
    """Validate one input record and send its items, grouped by service, to ``target``.

    Args:
        event: the Faust event of an input record (raw bytes).
        decode: ``decode(event)`` → a :class:`Decoded` (:func:`decode_metrics_items` …)
            or a plain list of records.
        target: the ``*.keyed`` topic; one record per service, key = service (UTF-8),
            value = JSON list of the service's records, header :data:`replay.SOURCE_HEADER`.
        stage: the agent's name, for dead letters of single items.

    Raises:
        BadRecord: no item of the record can be used (the caller dead-letters it
            whole); refused items of a record with valid ones are dead-lettered here.
    """
    decoded = decode(event)
    if isinstance(decoded, Decoded):
        if decoded.errors and not decoded.records:
            raise BadRecord(decoded.reason())
        items = decoded.records
    else:
        decoded, items = None, decoded
    msg = event.message
    headers = [(replay.SOURCE_HEADER, replay.format_source(msg.topic, msg.partition, msg.offset))]
    for service, group in group_by_service(items).items():
        await target.send(key=service.encode(), value=encode_items(group), headers=headers)
    if decoded is not None and decoded.errors:
        await dead_letter_items(event, decoded, stage)


async def _rekey(stream: Any, decode: Any, target: Any, stage: str) -> None:
    records = telemetry.RECORDS.labels(stage=stage)
    async for event in stream.events():
        try:
            await forward(event, decode, target, stage)
            records.inc()
        except BadRecord as exc:
            await dead_letter(event, exc.reason, stage)
        except Exception as exc:  # one error boundary per record
            logger.exception("%s: %s failed; dead-lettering", where(event), stage)
            await dead_letter(event, f"internal error: {type(exc).__name__}: {exc}", stage)


@app.agent(metrics_topic, name="metrics.ingest")
async def ingest_metrics(stream: Any) -> None:
    """autopilot.metrics → autopilot.metrics.keyed (validated, keyed by service)."""
    await _rekey(stream, decode_metrics_items, metrics_keyed_topic, "metrics.ingest")


@app.agent(logs_topic, name="logs.ingest")
async def ingest_logs(stream: Any) -> None:
    """autopilot.logs → autopilot.logs.keyed (validated, keyed by service)."""
    await _rekey(stream, decode_logs_items, logs_keyed_topic, "logs.ingest")


@app.agent(deployments_topic, name="deployments.ingest")
async def ingest_deployments(stream: Any) -> None:
    """autopilot.deployments → autopilot.deployments.keyed (validated, keyed by service)."""
    await _rekey(
        stream, decode_deployments_items, deployments_keyed_topic, "deployments.ingest"
    )
