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

The metrics stage batches (``AUTOPILOT_INGEST_BATCH_RECORDS``, default 500, within
``AUTOPILOT_INGEST_BATCH_WITHIN_MS``, default 100 ms: Faust's ``take_events``): the
valid items of up to that many consecutive input records go on as one keyed record
per service, so a one-sample-per-record producer (prometheus-kafka-adapter,
Telegraf) pays the second stage's per-record cost once per service and batch. Such a
record names each item's input position in the header ``x-autopilot-sources``
(:func:`autopilot.replay.format_sources`; one input record still gets
``x-autopilot-source``), and the metrics agent deduplicates item by item. The input
offsets of a batch are committed after the whole batch was forwarded (at least once,
as before). ``AUTOPILOT_INGEST_BATCH_RECORDS=1`` forwards record by record.

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial

from faust.types import EventT, StreamT, TopicT
from prometheus_client import Counter
from pydantic import BaseModel, TypeAdapter
from pydantic_core import PydanticSerializationError

from autopilot import replay, telemetry
from autopilot.app import app, settings
from autopilot.errors import BadRecord
from autopilot.formats import Decoded
from autopilot.formats.deployments import decode_deployments
from autopilot.formats.logs import decode_logs
from autopilot.formats.metrics_json import decode_metrics
from autopilot.formats.otlp import (
    decode_logs_request,
    decode_metrics_request,
    sniff_logs,
    sniff_metrics,
)
from autopilot.models import DeploymentEvent, LogEntry, MetricPoint
from autopilot.streams import (
    deadletter_topic,
    deployments_keyed_topic,
    deployments_topic,
    logs_keyed_topic,
    logs_topic,
    metrics_keyed_topic,
    metrics_topic,
)

from .boundary import each_record, guarded, internal_reason
from .deadletter import dead_letter, dead_letter_headers, where

logger = logging.getLogger(__name__)


#: A validated input item (what the decoders of :mod:`autopilot.formats` produce).
Item = MetricPoint | LogEntry | DeploymentEvent
#: ``decode(event)`` of :func:`forward`: the record's :class:`Decoded` items, or a
#: plain list of records.
Decode = Callable[[EventT[bytes]], "Decoded | list[Item]"]


def group_by_service(items: Iterable[Item]) -> dict[str, list[Item]]:
    """Group validated items by service, keeping their order within a service."""
    groups: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        groups[item.service].append(item)
    return groups


_METRIC_POINTS = TypeAdapter(list[MetricPoint])


def encode_items(items: Sequence[BaseModel]) -> bytes:
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


def source_of(event: EventT[bytes]) -> tuple[str, int]:
    """``(source stream, offset)`` of a keyed record: the input position named by its
    ``x-autopilot-source`` header, or (older records without it) its own position."""
    msg = event.message
    headers = msg.headers or ()
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        if name == replay.SOURCE_HEADER:
            parsed = replay.parse_source(value)
            if parsed is not None:
                return parsed
    return replay.stream_id(msg.topic, msg.partition), msg.offset


def positions_of(event: EventT[bytes], items: int) -> list[replay.Position] | None:
    """The input position of each of a keyed record's ``items`` items, when the record
    carries :data:`autopilot.replay.SOURCES_HEADER` (a batch of input records); ``None``
    when all its items come from one position (:func:`source_of`).

    Raises:
        BadRecord: the header is malformed or names another number of items.
    """
    headers = event.message.headers or ()
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in pairs:
        if name == replay.SOURCES_HEADER:
            try:
                return replay.parse_sources(value, items)
            except ValueError as exc:
                raise BadRecord(str(exc)) from None
    return None


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


def _key_text(event: EventT[bytes]) -> str | None:
    key: object = event.message.key  # bytes on raw topics; anything else via str()
    if not key:
        return None
    text = key.decode("utf-8", errors="replace").strip() if isinstance(key, bytes) else str(key)
    return text or None


def _decode_event(event: EventT[bytes], decode: Callable[[bytes], Decoded]) -> Decoded:
    if not event.value:
        raise BadRecord("empty record value")
    try:
        decoded = decode(event.value)
    except ValueError as exc:  # nothing in the record can be read
        raise BadRecord(str(exc)) from None
    return screen(decoded, "kafka")


def decode_metrics_items(event: EventT[bytes]) -> Decoded:
    """The items of an ``autopilot.metrics`` record (seed, adapter, Telegraf JSON, or
    an OTLP ``ExportMetricsServiceRequest`` as protobuf or OTLP/JSON, as the
    OpenTelemetry Collector's Kafka exporter writes it: :func:`sniff_metrics`).

    Raises:
        BadRecord: an empty value or one that is not JSON.
    """
    s = settings()
    labels, q = s.service_label_list(), s.otlp_histogram_quantile
    resource_labels = s.otlp_resource_label_list()

    def decode(raw: bytes) -> Decoded:
        request = sniff_metrics(raw)  # OTLP first: told apart from the bytes
        if request is not None:
            return decode_metrics_request(request, labels, q, resource_labels)
        return decode_metrics(raw, labels)

    return _decode_event(event, decode)


def decode_logs_items(event: EventT[bytes]) -> Decoded:
    """The items of an ``autopilot.logs`` record (JSON, JSON lines, text lines, or an
    OTLP ``ExportLogsServiceRequest`` as protobuf or OTLP/JSON: :func:`sniff_logs`;
    the record key is the service of lines or resources that do not name one).

    Raises:
        BadRecord: an empty value, or a JSON list that does not parse.
    """
    service = _key_text(event)
    s = settings()
    labels, resource_labels = s.service_label_list(), s.otlp_resource_label_list()

    def decode(raw: bytes) -> Decoded:
        request = sniff_logs(raw)  # OTLP first: told apart from the bytes
        if request is not None:
            return decode_logs_request(request, service, labels, resource_labels)
        return decode_logs(raw, service)

    return _decode_event(event, decode)


def decode_deployments_items(event: EventT[bytes]) -> Decoded:
    """The items of an ``autopilot.deployments`` record (seed, GitHub, Argo CD).

    Raises:
        BadRecord: an empty value or one that is not JSON.
    """
    return _decode_event(event, decode_deployments)


def _item_bytes(raw: object) -> bytes:
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


async def dead_letter_items(event: EventT[bytes], decoded: Decoded, stage: str) -> None:
    """Dead-letter each refused item of ``decoded`` on its own (see module docstring).

    Headers: those of :func:`autopilot.agents.deadletter.dead_letter` plus
    ``x-autopilot-item`` (the item's index in the record).
    """
    msg = event.message
    for entry in decoded.rejected():
        item = entry["item"]
        raw = decoded.raw.get(item, decoded.raw.get(None) if item == 0 else None)
        headers = dead_letter_headers(event, str(entry["reason"]), stage, item)
        telemetry.DEAD_LETTERS.labels(stage=stage).inc()
        logger.warning(
            "%s: item %s dead-lettered by %s (the record's other items go on): %s",
            where(event), item, stage, str(entry["reason"])[:500],
        )
        value = _item_bytes(raw) if raw is not None else b""
        await deadletter_topic.send(key=msg.key, value=value, headers=headers)


async def forward(
    event: EventT[bytes], decode: Decode, target: TopicT, stage: str = "ingest"
) -> None:
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
    items, decoded = _valid_items(event, decode)
    msg = event.message
    headers = [(replay.SOURCE_HEADER, replay.format_source(msg.topic, msg.partition, msg.offset))]
    for service, group in group_by_service(items).items():
        await target.send(key=service.encode(), value=encode_items(group), headers=headers)
    if decoded is not None and decoded.errors:
        await dead_letter_items(event, decoded, stage)


def _valid_items(event: EventT[bytes], decode: Decode) -> tuple[list[Item], Decoded | None]:
    """The valid items of one input record, and its :class:`Decoded` (refused items).

    Raises:
        BadRecord: no item of the record can be used.
    """
    result = decode(event)
    if isinstance(result, Decoded):
        if result.errors and not result.records:
            raise BadRecord(result.reason())
        return result.records, result
    return result, None


async def forward_batch(
    events: Sequence[EventT[bytes]], decode: Decode, target: TopicT, stage: str,
    processed: Counter | None = None,
) -> int:
    """Validate consecutive input records and send their items to ``target``: one
    record per service for the whole batch (the batched form of :func:`forward`).

    Every record is validated inside :func:`autopilot.agents.boundary.guarded`: a
    record with no valid item is dead-lettered whole with its reason, an unexpected
    error dead-letters it as ``internal error: …``, and refused items of a record with
    valid ones are dead-lettered one by one; it is counted once it was sent. If
    sending a keyed record to ``target`` fails (a value the producer refuses), the
    input records with items in it are dead-lettered as an internal error (as
    :func:`forward` under ``guarded`` does for one record); the batch's other keyed
    records go on. An input record with items of
    several services may then be both partly forwarded and dead-lettered.

    Args:
        events: input records in the order they were read (any partitions).
        decode: as for :func:`forward`.
        target: the ``*.keyed`` topic; key = service (UTF-8), value = JSON list of the
            service's items in input order, header :func:`autopilot.replay.position_header`
            (one input position per item).
        stage: the agent's name (counter label, dead-letter header, log text).
        processed: ``autopilot_records_processed_total{stage}``, bound once by the caller.

    Returns:
        How many input records were forwarded (the others were dead-lettered).
    """
    groups: dict[str, tuple[list[Item], list[replay.Position]]] = {}
    forwarded: dict[replay.Position, EventT[bytes]] = {}

    async def collect(event: EventT[bytes]) -> None:
        items, decoded = _valid_items(event, decode)
        msg = event.message
        position = (replay.stream_id(msg.topic, msg.partition), msg.offset)
        for item in items:
            group = groups.get(item.service)
            if group is None:
                group = groups[item.service] = ([], [])
            group[0].append(item)
            group[1].append(position)
        if decoded is not None and decoded.errors:
            await dead_letter_items(event, decoded, stage)
        forwarded[position] = event

    for event in events:
        await guarded(event, collect, stage, count=False)
    limit = keyed_record_limit()
    failed: dict[replay.Position, str] = {}
    for service, (items, positions) in groups.items():
        for value, chunk_positions in split_for_size(items, positions, limit):
            try:
                await target.send(key=service.encode(), value=value,
                                  headers=[replay.position_header(chunk_positions)])
            except Exception as exc:  # only the input records in this keyed record
                logger.exception("%s: %s agent failed to forward %d items of %s; "
                                 "dead-lettering their input records", where(events[0]),
                                 stage, len(chunk_positions), service)
                for position in chunk_positions:
                    failed.setdefault(position, internal_reason(exc))
    for position, reason in failed.items():
        await dead_letter(forwarded[position], reason, stage)
    done = len(forwarded) - len(failed)
    (processed or telemetry.RECORDS.labels(stage=stage)).inc(done)
    return done


def keyed_record_limit() -> int:
    """Bytes a keyed record's value may take: 90 % of the producer's
    ``max_request_size`` (Faust's ``producer_max_request_size``, 1,000,000 by default;
    the rest is room for the key, the headers and the record framing)."""
    return int(app.conf.producer_max_request_size * 0.9)


def split_for_size(
    items: Sequence[Item], positions: Sequence[replay.Position], limit: int
) -> list[tuple[bytes, list[replay.Position]]]:
    """The encoded values (:func:`encode_items`) of ``items``, cut into keyed records
    of at most ``limit`` bytes, each with its items' positions.

    A batch of large input records of one service can hold more than one record may
    (a broker refuses records over its ``max.message.bytes``). Cuts fall between input
    records, nearest the middle; the items of one input record are cut only between
    series (the metrics agent deduplicates per series on the input position, so two
    keyed records may not both hold samples of one series from one input record). A
    part that cannot be cut (one series of one input record) is returned as it is,
    however large. Order within a series is kept.

    Args:
        items: one service's items, in input order.
        positions: ``(stream id, offset)`` per item.
        limit: most bytes per encoded value.
    """
    value = encode_items(items)
    if len(value) <= limit or len(items) < 2:
        return [(value, list(positions))]
    middle = len(items) // 2
    cuts = [i for i in range(1, len(items)) if positions[i] != positions[i - 1]]
    if cuts:
        cut = min(cuts, key=lambda i: abs(i - middle))
        return (split_for_size(items[:cut], positions[:cut], limit)
                + split_for_size(items[cut:], positions[cut:], limit))
    # One input record: cut between series (the order of each series is kept).
    by_series: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        by_series[getattr(item, "series", "")].append(i)
    if len(by_series) < 2:
        return [(value, list(positions))]
    names = list(by_series)
    first = sorted(i for name in names[: len(names) // 2] for i in by_series[name])
    second = sorted(i for name in names[len(names) // 2:] for i in by_series[name])
    return (split_for_size([items[i] for i in first], [positions[i] for i in first], limit)
            + split_for_size([items[i] for i in second], [positions[i] for i in second],
                             limit))


async def _rekey(stream: StreamT[bytes], decode: Decode, target: TopicT, stage: str) -> None:
    await each_record(stream, stage, partial(forward, decode=decode, target=target, stage=stage))


async def _rekey_batches(stream: StreamT[bytes], decode: Decode, target: TopicT, stage: str,
                         max_records: int, within_s: float) -> None:
    """Forward batches of up to ``max_records`` input records, gathered for at most
    ``within_s`` seconds (Faust's ``take_events``: the batch's offsets are acknowledged
    after it was forwarded)."""
    processed = telemetry.RECORDS.labels(stage=stage)
    sizes = telemetry.INGEST_BATCH
    # take_events is Stream's (faust-streaming ≥ 0.9), not declared on StreamT.
    async for events in stream.take_events(  # type: ignore[attr-defined]
            max_records, within=within_s):
        sizes.observe(len(events))
        await forward_batch(events, decode, target, stage, processed)


@app.agent(metrics_topic, name="metrics.ingest")
async def ingest_metrics(stream: StreamT[bytes]) -> None:
    """autopilot.metrics → autopilot.metrics.keyed (validated, keyed by service;
    batched by ``AUTOPILOT_INGEST_BATCH_RECORDS``)."""
    s = settings()
    if s.ingest_batch_records > 1:
        await _rekey_batches(stream, decode_metrics_items, metrics_keyed_topic,
                             "metrics.ingest", s.ingest_batch_records,
                             s.ingest_batch_within_ms / 1000.0)
    else:
        await _rekey(stream, decode_metrics_items, metrics_keyed_topic, "metrics.ingest")


@app.agent(logs_topic, name="logs.ingest")
async def ingest_logs(stream: StreamT[bytes]) -> None:
    """autopilot.logs → autopilot.logs.keyed (validated, keyed by service)."""
    await _rekey(stream, decode_logs_items, logs_keyed_topic, "logs.ingest")


@app.agent(deployments_topic, name="deployments.ingest")
async def ingest_deployments(stream: StreamT[bytes]) -> None:
    """autopilot.deployments → autopilot.deployments.keyed (validated, keyed by service)."""
    await _rekey(
        stream, decode_deployments_items, deployments_keyed_topic, "deployments.ingest"
    )
