"""HTTP ingestion of real-world formats, and the OpenAPI document.

=============================  ==========================================================
``POST /api/v1/write``         Prometheus remote write 1.0 → ``autopilot.metrics``; 204,
                               400 (bad snappy/protobuf), 415 (not ``application/
                               x-protobuf`` + ``Content-Encoding: snappy``)
``POST /ingest/prometheus``    text exposition format (``?service=`` for samples without
                               a service label) → ``autopilot.metrics``; 202/400/415/422
``GET /openapi.json``          OpenAPI 3.1 description of every endpoint (public)
=============================  ==========================================================

The JSON endpoints of :mod:`autopilot.agents.views` (``/ingest/metrics``, ``/logs``,
``/deployment``) answer through :func:`ingest_decoded` too. Everything produced is
seed-shaped JSON keyed by service, sent after the broker acknowledged it (the ingest
agents validate it again and re-key it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from faust.web import View

from autopilot import telemetry
from autopilot.app import app, settings
from autopilot.formats import Decoded
from autopilot.formats.exposition import decode_exposition
from autopilot.formats.remote_write import RemoteWriteError, decode_remote_write
from autopilot.openapi import openapi_spec
from autopilot.topics import metrics_topic

from .decoding import count_skipped
from .ingest import encode_items, group_by_service
from .security import install_log_redaction

__all__ = ["ingest_decoded", "produce"]

logger = logging.getLogger(__name__)

#: Records per Kafka message (keeps messages well under the broker's 1 MB default).
CHUNK = 500


async def produce(topic: Any, records: list[Any]) -> None:
    """Send ``records`` grouped by service (key = service) and wait for every ack."""
    futures = []
    for service, group in group_by_service(records).items():
        for start in range(0, len(group), CHUNK):
            chunk = group[start : start + CHUNK]
            futures.append(await topic.send(key=service.encode(), value=encode_items(chunk)))
    for fut in futures:
        await fut  # broker acknowledgement


async def ingest_decoded(
    web: Any, request: Any, decode: Callable[[bytes], Decoded], topic: Any, source: str
) -> Any:
    """Read the body, decode it, answer 400/422 or produce and answer 202."""
    raw = await request.read()
    try:
        decoded = decode(raw)
    except ValueError as exc:
        return web.json({"error": f"bad body: {exc}"}, status=400)
    count_skipped(decoded, source)
    if decoded.errors:
        return web.json({"error": "validation failed", "errors": decoded.errors[:50]}, status=422)
    if decoded.records:
        await produce(topic, decoded.records)
    body: dict[str, Any] = {"accepted": len(decoded.records)}
    if decoded.skipped:
        body["skipped"] = decoded.skipped
    return web.json(body, status=202)


def _media_type(request: Any) -> tuple[str, dict[str, str]]:
    """(lower-case media type, parameters) of the Content-Type header."""
    header = request.headers.get("Content-Type", "")
    kind, *params = [p.strip() for p in header.split(";")]
    parsed = {}
    for p in params:
        name, _, value = p.partition("=")
        parsed[name.strip().lower()] = value.strip().strip('"')
    return kind.lower(), parsed


@app.page("/api/v1/write")
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
        try:
            decoded = decode_remote_write(
                body, s.service_label_list(), max_decoded_bytes=8 * s.max_body_bytes
            )
        except RemoteWriteError as exc:
            return self.json({"error": exc.reason}, status=400)
        count_skipped(decoded, "remote_write")
        if decoded.errors:
            return self.json({"error": decoded.reason()}, status=400)
        if decoded.records:
            await produce(metrics_topic, decoded.records)
        telemetry.SAMPLES.labels(stage="remote_write").inc(len(decoded.records))
        return self.bytes(b"", status=204)


@app.page("/ingest/prometheus")
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
                raise ValueError(f"not the Prometheus text exposition format: {exc}") from None
            except Exception as exc:  # the parser raises other types on some bad input
                raise ValueError(
                    f"not the Prometheus text exposition format: {type(exc).__name__}: {exc}"
                ) from None

        return await ingest_decoded(self.web, request, decode, metrics_topic, "exposition")


@app.page("/openapi.json")
async def openapi(web: Any, request: Any) -> Any:
    """The OpenAPI 3.1 document of this worker's endpoints."""
    return web.json(openapi_spec())


@app.task
async def redact_secrets_in_logs() -> None:
    """On worker start: replace every configured secret in log lines with ``***``."""
    install_log_redaction(settings())
