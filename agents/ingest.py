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
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic_core import PydanticSerializationError

from autopilot import replay, telemetry
from autopilot.app import app
from autopilot.errors import BadRecord
from autopilot.models import MetricPoint
from autopilot.topics import (
    deployments_keyed_topic,
    deployments_topic,
    logs_keyed_topic,
    logs_topic,
    metrics_keyed_topic,
    metrics_topic,
)

from .deadletter import dead_letter, where
from .decoding import decode_deployments_event, decode_logs_event, decode_metrics_event

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


async def forward(event: Any, decode: Any, target: Any) -> None:
    """Validate one input record and send its items, grouped by service, to ``target``.

    Args:
        event: the Faust event of an input record (raw bytes).
        decode: ``decode(event) -> list of records`` (:mod:`autopilot.agents.decoding`).
        target: the ``*.keyed`` topic; one record per service, key = service (UTF-8),
            value = JSON list of the service's records, header :data:`replay.SOURCE_HEADER`.

    Raises:
        BadRecord: the record cannot be used (the caller dead-letters it).
    """
    items = decode(event)
    msg = event.message
    headers = [(replay.SOURCE_HEADER, replay.format_source(msg.topic, msg.partition, msg.offset))]
    for service, group in group_by_service(items).items():
        await target.send(key=service.encode(), value=encode_items(group), headers=headers)


async def _rekey(stream: Any, decode: Any, target: Any, stage: str) -> None:
    records = telemetry.RECORDS.labels(stage=stage)
    async for event in stream.events():
        try:
            await forward(event, decode, target)
            records.inc()
        except BadRecord as exc:
            await dead_letter(event, exc.reason, stage)
        except Exception as exc:  # one error boundary per record
            logger.exception("%s: %s failed; dead-lettering", where(event), stage)
            await dead_letter(event, f"internal error: {type(exc).__name__}: {exc}", stage)


@app.agent(metrics_topic, name="metrics.ingest")
async def ingest_metrics(stream: Any) -> None:
    """autopilot.metrics → autopilot.metrics.keyed (validated, keyed by service)."""
    await _rekey(stream, decode_metrics_event, metrics_keyed_topic, "metrics.ingest")


@app.agent(logs_topic, name="logs.ingest")
async def ingest_logs(stream: Any) -> None:
    """autopilot.logs → autopilot.logs.keyed (validated, keyed by service)."""
    await _rekey(stream, decode_logs_event, logs_keyed_topic, "logs.ingest")


@app.agent(deployments_topic, name="deployments.ingest")
async def ingest_deployments(stream: Any) -> None:
    """autopilot.deployments → autopilot.deployments.keyed (validated, keyed by service)."""
    await _rekey(
        stream, decode_deployments_event, deployments_keyed_topic, "deployments.ingest"
    )
