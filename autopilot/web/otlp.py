"""OTLP/HTTP receivers: ``POST /v1/metrics`` and ``POST /v1/logs`` (OpenTelemetry).

Speaks OTLP/HTTP (opentelemetry.io/docs/specs/otlp/#otlphttp) with binary protobuf
(``Content-Type: application/x-protobuf``) or OTLP/JSON (``application/json``), either
optionally with ``Content-Encoding`` gzip, deflate, zstd or br (inflated by
:func:`autopilot.web.middleware.read_body`, capped at ``AUTOPILOT_MAX_BODY_BYTES``).
The body is an ``ExportMetricsServiceRequest`` / ``ExportLogsServiceRequest``,
decoded by :mod:`autopilot.formats.otlp`; the valid records are produced to
``autopilot.metrics`` / ``autopilot.logs`` through the shared ingest path
(:func:`autopilot.web.ingest.produce`, after the broker's acknowledgement) and the
answer is:

* 200 with an ``Export*ServiceResponse`` in the request's encoding; when points or
  records were refused (no service, no time, no value, bad buckets …, or beyond
  ``AUTOPILOT_MAX_FUTURE_S``/``AUTOPILOT_MAX_PAST_S``) it carries ``partial_success``
  with ``rejected_data_points`` / ``rejected_log_records`` and an ``error_message``
  naming the first problems (OTLP: the client must not retry these);
* 400 with a ``google.rpc.Status`` (in the request's encoding) when the body cannot be
  decoded at all (not protobuf / not OTLP/JSON / not its Content-Encoding, or cut
  short); 413 when it inflates to more than ``AUTOPILOT_MAX_BODY_BYTES``;
* 415 (``google.rpc.Status`` as JSON) on another content type or content encoding;
* 413, 401, 429 from the guard, 503 with ``Retry-After`` while the broker is away.

OTLP/gRPC is not served. The routes are in :data:`autopilot.web.routes.ROUTES`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

from faust.web import View

from autopilot import telemetry
from autopilot.agents.ingest import screen
from autopilot.app import settings
from autopilot.formats import Decoded
from autopilot.formats.content_encoding import BodyEncodingError
from autopilot.formats.otlp import (
    Encoding,
    OtlpError,
    decode_logs_request,
    decode_metrics_request,
    export_response,
    parse_logs,
    parse_metrics,
    status_body,
)
from autopilot.streams import logs_topic, metrics_topic

from . import schemas
from .ingest import produce
from .middleware import read_body
from .route import Body, Param, Reply, Route

__all__ = ["OtlpLogs", "OtlpMetrics", "otlp_route"]

logger = logging.getLogger(__name__)

_MEDIA: dict[str, Encoding] = {"application/x-protobuf": "proto", "application/json": "json"}
_CONTENT_TYPE: dict[Encoding, str] = {
    "proto": "application/x-protobuf", "json": "application/json"
}
#: google.rpc.Code INVALID_ARGUMENT (400) and UNIMPLEMENTED (415).
_UNIMPLEMENTED = 12


class _OtlpView(View):
    kind: Literal["metrics", "logs"]
    topic: Any

    def _status(self, message: str, encoding: Encoding, status: int, code: int = 3) -> Any:
        return self.bytes(
            status_body(message, encoding, code),
            content_type=_CONTENT_TYPE[encoding], status=status,
        )

    def decoder(self, request: Any) -> Callable[[bytes, Encoding], Decoded]:
        raise NotImplementedError

    async def post(self, request: Any) -> Any:
        """Decode the export request, produce its records, answer (module docstring)."""
        kind = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        encoding = _MEDIA.get(kind)
        if encoding is None:
            return self._status(
                f"unsupported content type {kind or 'none'!r}: OTLP/HTTP takes "
                "application/x-protobuf or application/json", "json", 415, _UNIMPLEMENTED,
            )
        s = settings()
        try:
            body = await read_body(request, s.max_body_bytes)
        except BodyEncodingError as exc:
            return self._status(exc.reason, encoding, exc.status,
                                _UNIMPLEMENTED if exc.status == 415 else 3)
        try:
            decoded = self.decoder(request)(body, encoding)
        except OtlpError as exc:
            return self._status(exc.reason, encoding, exc.status)
        screen(decoded, "otlp")
        if decoded.records:
            await produce(self.topic, decoded.records)
        telemetry.SAMPLES.labels(stage=f"otlp_{self.kind}").inc(len(decoded.records))
        rejected = len(decoded.rejected())
        if rejected:
            logger.info(
                "POST /v1/%s: %d record(s) accepted, %d refused: %s",
                self.kind, len(decoded.records), rejected, decoded.reason()[:300],
            )
        return self.bytes(
            export_response(self.kind, rejected, decoded.reason() if rejected else "",
                            encoding),
            content_type=_CONTENT_TYPE[encoding],
        )


class OtlpMetrics(_OtlpView):
    """``POST /v1/metrics``: OTLP ExportMetricsServiceRequest → ``autopilot.metrics``."""

    kind = "metrics"
    topic = metrics_topic

    def decoder(self, request: Any) -> Callable[[bytes, Encoding], Decoded]:
        """Parse and map an ExportMetricsServiceRequest."""
        s = settings()
        labels, q = s.service_label_list(), s.otlp_histogram_quantile
        resource = s.otlp_resource_label_list()
        return lambda body, enc: decode_metrics_request(
            parse_metrics(body, enc), labels, q, resource
        )


class OtlpLogs(_OtlpView):
    """``POST /v1/logs``: OTLP ExportLogsServiceRequest → ``autopilot.logs``
    (``?service=`` names the service of resources without ``service.name``)."""

    kind = "logs"
    topic = logs_topic

    def decoder(self, request: Any) -> Callable[[bytes, Encoding], Decoded]:
        """Parse and map an ExportLogsServiceRequest."""
        service = request.query.get("service") or None
        s = settings()
        labels, resource = s.service_label_list(), s.otlp_resource_label_list()
        return lambda body, enc: decode_logs_request(
            parse_logs(body, enc), service, labels, resource
        )


def otlp_route(path: str, handler: type[View], summary: str, rejected: str) -> Route:
    """The route-table entry of an OTLP/HTTP receiver (:data:`routes.ROUTES`)."""
    params: tuple[Param, ...] = (
        Param("Content-Encoding", "header",
              {"type": "string", "enum": ["gzip", "zstd", "deflate", "br"]}),
    )
    if handler is OtlpLogs:
        params += (Param("service", "query",
                         description="service of resources without service.name"),)
    return Route(
        "POST", path, handler, summary,
        params=params,
        body=Body({
            "application/x-protobuf": {"type": "string", "format": "binary"},
            "application/json": {"type": "object", "description": "OTLP/JSON"},
        }),
        responses={
            200: Reply(f"produced and acknowledged; partialSuccess.{rejected} counts the "
                       "refused ones (protobuf for a protobuf request)",
                       schemas.OtlpExportResponse),
            400: Reply("body cannot be decoded (google.rpc.Status)", schemas.RpcStatus),
            413: Reply("body larger than AUTOPILOT_MAX_BODY_BYTES once inflated",
                       schemas.RpcStatus),
            415: Reply("not application/x-protobuf or application/json, or a "
                       "Content-Encoding other than gzip, deflate, zstd or br",
                       schemas.RpcStatus),
            503: Reply("broker unavailable (nothing queued) or no acknowledgement in time",
                       schemas.Unavailable, headers={"Retry-After": "seconds to wait"}),
        },
        tags=("ingest",),
    )
