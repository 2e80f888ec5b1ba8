"""Ingestion views and their producing side.

=============================  ==========================================================
``POST /ingest/metrics``       MetricPoints (seed, prometheus-kafka-adapter, Telegraf
                               JSON; :mod:`autopilot.formats.metrics_json`)
``POST /ingest/logs``          log lines (:mod:`autopilot.formats.logs`) → logs topic
``POST /ingest/deployment``    deployments (seed, GitHub, Argo CD;
                               :mod:`autopilot.formats.deployments`); GitHub's ``ping``
                               → 200 ``{"pong": true}``
``POST /api/v1/write``         Prometheus remote write 1.0 → ``autopilot.metrics``; 204
                               (also when some series were refused: counted), 400 (bad
                               snappy/protobuf, framed snappy, no series, or no valid
                               sample), 413 (over 8 × ``AUTOPILOT_MAX_BODY_BYTES``
                               inflated), 415 (not ``application/x-protobuf`` +
                               ``Content-Encoding: snappy``, or a 2.0 body)
``POST /ingest/prometheus``    text exposition format (``?service=`` for samples without
                               a service label) → ``autopilot.metrics``; 202/400/415/422
=============================  ==========================================================

The JSON endpoints and the exposition format answer through :func:`ingest_decoded`.
One bad item never sinks a body: the valid items are produced and the answer is 202
``{"accepted": N, "rejected": [{"item": i, "reason": "…"}]}`` (``rejected`` only when
some item was refused); 422 with the validation errors (``errors``: ``[{"item": i,
"loc": "labels", "msg": "…", "code": "no_service"}]``) only when nothing in the body
was valid, 400 when nothing could be read. Refused items move
``autopilot_items_rejected_total{source, reason}``. Items timed beyond
``AUTOPILOT_MAX_FUTURE_S`` / ``AUTOPILOT_MAX_PAST_S`` are refused the same way.
Everything produced is seed-shaped JSON keyed by service, sent after the broker
acknowledged it (the ingest agents validate it again and re-key it), in records of at
most ``AUTOPILOT_MAX_RECORD_BYTES``. While the broker is unavailable every ingest
endpoint answers 503 with ``Retry-After`` (:func:`broker_gate`, :func:`produce`).
The routes are registered by :mod:`autopilot.web.routes`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka.errors import KafkaError, KafkaTimeoutError
from faust.exceptions import ProducerSendError
from faust.web import View
from faust.web.exceptions import ServiceUnavailable

from autopilot import telemetry
from autopilot.agents.health import BROKER
from autopilot.agents.ingest import encode_items, group_by_service, screen
from autopilot.app import settings
from autopilot.formats import Decoded
from autopilot.formats.deployments import decode_deployments
from autopilot.formats.exposition import decode_exposition
from autopilot.formats.logs import decode_logs
from autopilot.formats.metrics_json import decode_metrics
from autopilot.formats.remote_write import RemoteWriteError, decode_remote_write
from autopilot.streams import deployments_topic, logs_topic, metrics_topic
from autopilot.web.middleware import read_body

__all__ = [
    "IngestDeployment",
    "IngestExposition",
    "IngestLogs",
    "IngestMetrics",
    "RemoteWrite",
    "broker_gate",
    "ingest_decoded",
    "pack",
    "produce",
    "rejected_body",
    "unavailable",
]

logger = logging.getLogger(__name__)


def unavailable(reason: str, detail: str, *, queued: bool) -> ServiceUnavailable:
    """The 503 for an ingest request (``Retry-After``, reason counted)."""
    telemetry.INGEST_UNAVAILABLE.labels(reason=reason).inc()
    retry = settings().retry_after_s
    return ServiceUnavailable(
        detail,
        headers={"Retry-After": str(retry)},
        cause=reason,
        queued=queued,
        retry_after_s=retry,
    )


def broker_gate() -> None:
    """Refuse an ingest request before queueing anything while the broker is unreachable.

    Raises:
        ServiceUnavailable: 503 with ``Retry-After`` (Faust's views answer it as JSON
            ``{"error": …, "cause": "broker_unreachable", "queued": false, …}``).
    """
    if BROKER.reachable is False:
        raise unavailable(
            "broker_unreachable",
            f"broker unreachable ({BROKER.error}); nothing was queued, retry later",
            queued=False,
        )


#: Records per Kafka message at most; a message is also split by bytes (``pack``).
CHUNK = 500


def pack(items: list[Any], max_bytes: int) -> tuple[list[bytes], int]:
    """Encode ``items`` as JSON-list records of at most ``max_bytes`` bytes each.

    Chunks of :data:`CHUNK` items are encoded at once; a chunk over ``max_bytes`` is
    halved until it fits (counted in ``autopilot_ingest_records_split_total``). An
    item that alone exceeds ``max_bytes`` is left out: returns ``(values, dropped)``.
    """
    values: list[bytes] = []
    dropped = 0
    pending = [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]
    pending.reverse()
    while pending:
        chunk = pending.pop()
        value = encode_items(chunk)
        if len(value) <= max_bytes:
            values.append(value)
        elif len(chunk) == 1:
            dropped += 1
        else:
            telemetry.INGEST_RECORDS_SPLIT.inc()
            half = len(chunk) // 2
            pending += [chunk[half:], chunk[:half]]
    return values, dropped


async def _enqueue(
    topic: Any, records: list[Any], max_bytes: int, one_per_record: bool = False
) -> list[Any]:
    """Hand every record to the producer; returns the acknowledgement futures."""
    futures = []
    for service, group in group_by_service(records).items():
        if one_per_record:  # one JSON object per Kafka record (autopilot.anomalies)
            values = [r.model_dump_json().encode() for r in group]
            dropped = len(values)
            values = [v for v in values if len(v) <= max_bytes]
            dropped -= len(values)
        else:
            values, dropped = pack(group, max_bytes)
        if dropped:
            telemetry.SAMPLES_SKIPPED.labels(source="ingest", reason="too_large").inc(dropped)
            logger.warning(
                "%s: %d item(s) of service %s left out: each alone is over "
                "AUTOPILOT_MAX_RECORD_BYTES=%d", topic.get_topic_name(), dropped, service,
                max_bytes,
            )
        for value in values:
            futures.append(await topic.send(key=service.encode(), value=value))
    return futures


async def produce(topic: Any, records: list[Any], *, one_per_record: bool = False) -> None:
    """Send ``records`` grouped by service (key = service) and wait for every ack.

    Records are JSON lists of at most ``AUTOPILOT_MAX_RECORD_BYTES`` bytes (see
    :func:`pack`), so a large remote-write request never meets the broker's size limit;
    with ``one_per_record`` each record is one JSON object (what ``autopilot.anomalies``
    carries), and one over the limit is left out (counted, logged).

    Raises:
        faust.web.exceptions.ServiceUnavailable: 503 with ``Retry-After``
            (``AUTOPILOT_RETRY_AFTER_S``), answered by the view as JSON: at once,
            with nothing queued, while the broker probe fails
            (``"cause": "broker_unreachable", "queued": false``); or when the broker
            has not acknowledged within ``AUTOPILOT_INGEST_TIMEOUT_S``
            (``"cause": "ack_timeout", "queued": true``: the records may still land,
            see docs/operations-health.md).
    """
    broker_gate()
    s = settings()
    deadline = time.monotonic() + s.ingest_timeout_s
    try:
        futures = await asyncio.wait_for(
            _enqueue(topic, records, s.max_record_bytes, one_per_record), s.ingest_timeout_s
        )
        if futures:
            # asyncio.wait, not wait_for: a late acknowledgement is not cancelled
            # (Faust's callbacks on the futures expect a result).
            done, pending = await asyncio.wait(
                futures, timeout=max(0.0, deadline - time.monotonic())
            )
            if pending:
                raise TimeoutError
            for fut in done:
                fut.result()  # raises the send's error, if any
    except (TimeoutError, KafkaError, ProducerSendError) as exc:
        cause = exc.__cause__ if isinstance(exc, ProducerSendError) else exc
        if not isinstance(cause, TimeoutError | KafkaTimeoutError) and not getattr(
            cause, "retriable", False
        ):
            raise  # not an outage (a record too large for the broker …): 500
        why = "no acknowledgement" if isinstance(exc, TimeoutError) else type(cause).__name__
        logger.warning(
            "%s: broker did not acknowledge %d record(s) within %.0f s (%s); answered 503",
            topic.get_topic_name(), len(records), s.ingest_timeout_s, why,
        )
        raise unavailable(
            "ack_timeout",
            f"the broker did not acknowledge within {s.ingest_timeout_s:.0f} s ({why}); "
            "the records may still land: retry later (metric samples already applied are "
            "dropped, see docs/operations-health.md)",
            queued=True,
        ) from None


#: Most rejected items listed in an answer (the rest are counted in ``rejected_omitted``).
MAX_REJECTED_LISTED = 100


def rejected_body(decoded: Decoded) -> dict[str, Any]:
    """``{"rejected": [{"item": i, "reason": "…"}, …]}`` (at most
    :data:`MAX_REJECTED_LISTED`, then ``rejected_omitted``: how many more); ``{}``
    when nothing was refused."""
    rejected = decoded.rejected()
    if not rejected:
        return {}
    body: dict[str, Any] = {
        "rejected": [
            {"item": r["item"], "reason": r["reason"]} for r in rejected[:MAX_REJECTED_LISTED]
        ]
    }
    if len(rejected) > MAX_REJECTED_LISTED:
        body["rejected_omitted"] = len(rejected) - MAX_REJECTED_LISTED
    return body


async def ingest_decoded(
    web: Any, request: Any, decode: Callable[[bytes], Decoded], topic: Any, source: str,
    *, one_per_record: bool = False, accepted_status: int = 202,
) -> Any:
    """Read the body, decode it, produce the valid items and answer.

    Answers: 202 ``{"accepted": N}`` plus ``rejected`` (the refused items, when any),
    ``skipped`` (samples left out on purpose, by reason) and ``defaulted`` (items kept
    with a default, by reason) when not empty; 422 ``{"error", "accepted": 0,
    "rejected", "errors": [{"item", "loc", "msg", "code"}]}`` when no item was valid;
    400 ``{"error"}`` when the body cannot be read at all.
    """
    raw = await read_body(request, settings().max_body_bytes)
    try:
        decoded = decode(raw)
    except ValueError as exc:
        return web.json({"error": f"bad body: {exc}"}, status=400)
    screen(decoded, source)
    if decoded.errors and not decoded.records:
        return web.json(
            {
                "error": f"no valid item: {decoded.reason()}",
                "accepted": 0,
                **rejected_body(decoded),
                "errors": decoded.errors[:50],
            },
            status=422,
        )
    if decoded.records:
        await produce(topic, decoded.records, one_per_record=one_per_record)
    body: dict[str, Any] = {"accepted": len(decoded.records), **rejected_body(decoded)}
    if decoded.skipped:
        body["skipped"] = decoded.skipped
    if decoded.defaulted:
        body["defaulted"] = decoded.defaulted
    return web.json(body, status=accepted_status)


def _media_type(request: Any) -> tuple[str, dict[str, str]]:
    """(lower-case media type, parameters) of the Content-Type header."""
    header = request.headers.get("Content-Type", "")
    kind, *params = [p.strip() for p in header.split(";")]
    parsed = {}
    for p in params:
        name, _, value = p.partition("=")
        parsed[name.strip().lower()] = value.strip().strip('"')
    return kind.lower(), parsed


class RemoteWrite(View):
    """Prometheus remote write 1.0 receiver (see module docstring)."""

    async def post(self, request: Any) -> Any:
        """Decode a snappy WriteRequest, produce its samples, answer 204."""
        kind, params = _media_type(request)
        proto = params.get("proto", "prometheus.WriteRequest")
        if kind != "application/x-protobuf" or proto != "prometheus.WriteRequest":
            return self.json(
                {
                    "error": f"unsupported content type {kind or 'none'!r}"
                    f"{'; proto=' + proto if 'proto' in params else ''}: remote write 1.0 "
                    "needs application/x-protobuf (prometheus.WriteRequest)"
                },
                status=415,
            )
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        if encoding != "snappy":
            return self.json(
                {"error": f"unsupported Content-Encoding {encoding or 'none'!r}: need snappy"},
                status=415,
            )
        body = await request.read()
        s = settings()
        stats: dict[str, int] = {}
        try:
            decoded = decode_remote_write(
                body, s.service_label_list(), max_decoded_bytes=8 * s.max_body_bytes,
                stats=stats,
            )
        except RemoteWriteError as exc:
            return self.json({"error": exc.reason}, status=exc.status)
        if stats.get("native_histograms"):
            telemetry.NATIVE_HISTOGRAMS.labels(outcome="converted").inc(
                stats["native_histograms"]
            )
        screen(decoded, "remote_write")
        if decoded.errors and not decoded.records:
            # Nothing valid: 400 (Prometheus does not retry it). With some valid
            # samples the refused ones are only counted, and the answer is 204.
            return self.json({"error": f"no valid sample: {decoded.reason()}"}, status=400)
        if decoded.records:
            await produce(metrics_topic, decoded.records)
        telemetry.SAMPLES.labels(stage="remote_write").inc(len(decoded.records))
        return self.bytes(b"", status=204)


class IngestExposition(View):
    """Prometheus text exposition format (see module docstring)."""

    async def post(self, request: Any) -> Any:
        """Parse with prometheus_client's parser, produce, answer 202."""
        kind, _ = _media_type(request)
        if kind not in ("", "text/plain"):
            return self.json(
                {
                    "error": f"unsupported content type {kind!r}: send text/plain "
                    "(Prometheus text exposition format 0.0.4)"
                },
                status=415,
            )
        default_service = request.query.get("service") or None
        labels = settings().service_label_list()

        def decode(raw: bytes) -> Decoded:
            text = raw.decode("utf-8", errors="replace")
            try:
                return decode_exposition(text, datetime.now(UTC), default_service, labels)
            except ValueError as exc:
                if "exposition format" in str(exc):
                    raise
                raise ValueError(f"not the Prometheus text exposition format: {exc}") from None
            except Exception as exc:  # the parser raises other types on some bad input
                raise ValueError(
                    f"not the Prometheus text exposition format: {type(exc).__name__}: {exc}"
                ) from None

        return await ingest_decoded(self.web, request, decode, metrics_topic, "exposition")


def _decode_metrics(request: Any) -> Any:
    labels = settings().service_label_list()
    return lambda raw: decode_metrics(raw, labels)


def _decode_logs(request: Any) -> Any:
    service = request.query.get("service") or None
    return lambda raw: decode_logs(raw, service)


def _decode_deployments(request: Any) -> Any:
    event = request.headers.get("X-GitHub-Event")
    return lambda raw: decode_deployments(raw, event)


class _IngestView:
    decoder: Any
    topic: Any
    source = "http"

    async def post(self, request: Any) -> Any:
        decode = type(self).decoder(request)
        return await ingest_decoded(self.web, request, decode, self.topic, self.source)  # type: ignore[attr-defined]


class IngestMetrics(_IngestView, View):
    """POST MetricPoints: seed JSON, prometheus-kafka-adapter or Telegraf JSON."""

    decoder = _decode_metrics
    topic = metrics_topic


class IngestLogs(_IngestView, View):
    """POST log lines: JSON object or list, JSON lines, plain text (``?service=``)."""

    decoder = _decode_logs
    topic = logs_topic


class IngestDeployment(_IngestView, View):
    """POST a DeploymentEvent, a GitHub deployment_status webhook or an Argo CD payload."""

    decoder = _decode_deployments
    topic = deployments_topic

    async def post(self, request: Any) -> Any:
        """Answer GitHub's ``ping`` event with 200; ingest everything else."""
        if request.headers.get("X-GitHub-Event") == "ping":
            return self.json({"pong": True})
        return await super().post(request)
