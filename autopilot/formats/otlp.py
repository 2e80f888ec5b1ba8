"""OpenTelemetry OTLP metrics and logs (protobuf or JSON) → MetricPoints and LogEntries.

Wire formats (opentelemetry.io/docs/specs/otlp/): an ``ExportMetricsServiceRequest``
or ``ExportLogsServiceRequest`` encoded as binary protobuf (``application/x-protobuf``,
the Collector's Kafka exporter ``otlp_proto``) or as OTLP/JSON (``application/json``,
``otlp_json``: proto3 JSON with lowerCamelCase keys, trace and span ids as hex, unknown
fields ignored). The messages are the ``opentelemetry-proto`` package's generated ones;
JSON is read with protobuf's ``json_format``.

Service: the resource attribute ``service.name``; without it the first of
``AUTOPILOT_SERVICE_LABELS`` among the resource attributes (logs: then the Kafka key or
``?service=``). The resource attributes named in ``AUTOPILOT_OTLP_RESOURCE_LABELS``
(:data:`DEFAULT_RESOURCE_LABELS`) and the point's (record's) attributes are labels (the
point's win on a clash); the other resource attributes are dropped, as Prometheus'
OTLP receiver keeps them out of the series' labels: ``service.instance.id`` or
``telemetry.sdk.version`` change on every restart or upgrade and would start a new
series, and a new baseline, each time; values that are not strings are written as
text (``true``, ``42``, ``1.5``, JSON for arrays and maps, hex for bytes).

Metrics (one *item* = one data point, numbered across the request from 0):

=========================================  ===============================================
OTLP                                        MetricPoint(s)
=========================================  ===============================================
gauge                                       ``<name>`` (gauge)
sum, cumulative, monotonic                  ``<name>`` (counter: scored as a per-second rate)
sum, cumulative, not monotonic              ``<name>`` (gauge: an up-down counter's level)
sum, delta                                  ``<name>`` = value / (time − start time), per s
histogram (explicit buckets)                ``<name>_count``, ``<name>_sum`` (counters when
                                            cumulative, per-second rates when delta) and
                                            ``<name>_p<q>`` (gauge): the quantile
                                            ``AUTOPILOT_OTLP_HISTOGRAM_QUANTILE`` estimated
                                            from the buckets (:func:`bucket_quantile`)
exponential histogram                       ``<name>_count``, ``<name>_sum`` as above and
                                            ``<name>_p<q>`` from its exponential buckets
                                            (:func:`exponential_buckets`)
summary                                     ``<name>_count``, ``<name>_sum`` (counters) and
                                            ``<name>`` with label ``quantile`` per quantile
=========================================  ===============================================

Left out and counted (``Decoded.skipped``): ``no_recorded_value`` (the point's
``FLAG_NO_RECORDED_VALUE``), ``non_finite`` (NaN, ±Inf), ``empty_histogram`` (no
quantile from a histogram point without observations), ``unbounded_bucket`` (no
quantile: the bucket holding it has no finite end, or an exponential bound is beyond
float range), ``no_sum`` (a histogram point without a sum: no ``_sum`` sample). Refused points
(errors, the rest is kept; OTLP's ``partial_success.rejected_data_points``): no time,
no value, no service, a delta sum or histogram without a start time before its time,
an unspecified temporality, bucket counts that do not fit the bounds.

Logs (one item = one log record): ``severity_number`` 1–24 gives the level (1–4
trace, 5–8 debug, 9–12 info, 13–16 warning, 17–20 error, 21–24 critical; the OTLP
logs data model's ranges); without it ``severity_text`` as
:mod:`autopilot.formats.levels` reads it; neither: ``UNKNOWN`` (counted as
``missing_level`` / ``unknown_level``). The body is the message (text, or JSON for
structured bodies; over 65,536 characters truncated), the time ``time_unix_nano`` or,
when that is 0, ``observed_time_unix_nano``; ``trace_id`` and ``span_id`` are kept as
lower-case hex labels. A record without any time is refused.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from google.protobuf import json_format, unknown_fields
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    DataPointFlags,
    Metric,
)

from autopilot.formats import DEFAULT_SERVICE_LABELS, Decoded, loads_strict, service_from_labels
from autopilot.formats.content_encoding import BodyEncodingError, decode_content
from autopilot.formats.levels import UNKNOWN_LEVEL, normalize_level
from autopilot.models import LogEntry, MetricPoint

__all__ = [
    "DEFAULT_QUANTILE",
    "DEFAULT_RESOURCE_LABELS",
    "Encoding",
    "OtlpError",
    "bucket_quantile",
    "decode_logs_request",
    "decode_metrics_request",
    "export_response",
    "inflate_gzip",
    "parse_logs",
    "parse_metrics",
    "exponential_buckets",
    "quantile_suffix",
    "range_quantile",
    "severity_level",
    "sniff_logs",
    "sniff_metrics",
    "status_body",
]

#: ``proto``: binary protobuf (``application/x-protobuf``); ``json``: OTLP/JSON.
Encoding = Literal["proto", "json"]
#: Default of ``AUTOPILOT_OTLP_HISTOGRAM_QUANTILE``.
DEFAULT_QUANTILE = 0.99
#: Resource attributes kept as labels by default (``AUTOPILOT_OTLP_RESOURCE_LABELS``):
#: the ones that name where a service runs and stay put across restarts.
DEFAULT_RESOURCE_LABELS: tuple[str, ...] = (
    "service.namespace", "deployment.environment", "deployment.environment.name",
)
#: Longest log message kept (LogEntry's limit).
MAX_MESSAGE = 65536

_CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
_DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
_NO_VALUE = DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
#: OTLP logs data model: severity number ranges of 4 → canonical level.
_SEVERITY = ("trace", "debug", "info", "warning", "error", "critical")
_ID_KEYS = frozenset({"traceId", "spanId", "trace_id", "span_id"})

M = TypeVar("M", bound=Message)


class OtlpError(ValueError):
    """The body is not an OTLP export request; ``reason`` says why.

    Attributes:
        reason: what is wrong, for the sender.
        status: the HTTP status to answer: 400 (not decodable), 413 (larger than the
            limit once inflated).
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


# --- bytes → request -------------------------------------------------------------


def inflate_gzip(body: bytes, max_bytes: int) -> bytes:
    """Inflate a gzip body (a Collector's Kafka record), refusing more than ``max_bytes``.

    Raises:
        OtlpError: not gzip or cut short (400), over ``max_bytes`` once inflated (413).
    """
    try:
        return decode_content(body, "gzip", max_bytes)
    except BodyEncodingError as exc:
        raise OtlpError(exc.reason, exc.status) from None


def _hex_ids(data: Any, path: str = "") -> None:
    """Turn OTLP/JSON's hex ``traceId``/``spanId`` into the base64 proto3 JSON reads."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key in _ID_KEYS and isinstance(value, str):
                try:
                    data[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise OtlpError(
                        f"{path}{key}: {value[:40]!r} is not a hex id (OTLP/JSON writes "
                        "trace and span ids as hex)"
                    ) from None
            else:
                _hex_ids(value, f"{path}{key}.")
    elif isinstance(data, list):
        for index, value in enumerate(data):
            _hex_ids(value, f"{path}{index}.")


def _parse(body: bytes, message: type[M], encoding: Encoding) -> M:
    request = message()
    name = message.DESCRIPTOR.name
    if encoding == "proto":
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise OtlpError(f"body is not a protobuf {name}: {exc}") from None
        return request
    try:
        data = loads_strict(body)
    except ValueError as exc:
        raise OtlpError(f"body is not OTLP/JSON: {exc}") from None
    if not isinstance(data, dict):
        raise OtlpError(f"body is not OTLP/JSON: expected a JSON object ({name})")
    return _from_json(data, message)


def _from_json(data: dict[str, Any], message: type[M]) -> M:
    """``message`` from parsed OTLP/JSON (hex ids, unknown fields ignored)."""
    request = message()
    _hex_ids(data)
    try:
        json_format.ParseDict(data, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise OtlpError(
            f"body is not an OTLP/JSON {message.DESCRIPTOR.name}: {str(exc)[:300]}"
        ) from None
    return request


def parse_metrics(body: bytes, encoding: Encoding) -> ExportMetricsServiceRequest:
    """The ``ExportMetricsServiceRequest`` of an (inflated) body.

    Raises:
        OtlpError: not that message in ``encoding`` (400).
    """
    return _parse(body, ExportMetricsServiceRequest, encoding)


def parse_logs(body: bytes, encoding: Encoding) -> ExportLogsServiceRequest:
    """The ``ExportLogsServiceRequest`` of an (inflated) body.

    Raises:
        OtlpError: not that message in ``encoding`` (400).
    """
    return _parse(body, ExportLogsServiceRequest, encoding)


def _sniff(raw: bytes, message: type[M], json_key: str) -> M | None:
    """An OTLP request of ``message`` if ``raw`` is one, else ``None`` (another format).

    OTLP/JSON: a JSON object with the top-level key ``json_key`` (or its snake_case
    form). Protobuf: the first byte is field 1's tag (``0x0a``), the bytes parse as
    ``message``, and neither the request nor any of its resource entries holds an
    unknown field there (a text line that starts with a newline does not pass: its
    bytes are unknown fields at those levels).

    Raises:
        OtlpError: a JSON object with ``json_key`` that is not a valid request.
    """
    head = raw.lstrip()[:1]
    if head == b"{":
        if json_key.encode() not in raw and _snake(json_key).encode() not in raw:
            return None
        try:
            data = loads_strict(raw)
        except ValueError:
            return None
        if not isinstance(data, dict) or not (json_key in data or _snake(json_key) in data):
            return None
        return _from_json(data, message)
    if raw[:1] != b"\x0a":
        return None
    request = message()
    try:
        request.ParseFromString(raw)
    except DecodeError:
        return None
    if len(unknown_fields.UnknownFieldSet(request)):
        return None
    entries: Iterable[Message] = getattr(request, _snake(json_key))
    for entry in entries:
        if len(unknown_fields.UnknownFieldSet(entry)):
            return None
    return request


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def sniff_metrics(raw: bytes) -> ExportMetricsServiceRequest | None:
    """``raw`` as an OTLP metrics request when it is one (protobuf or JSON; see
    :func:`_sniff`), else ``None``.

    Raises:
        OtlpError: a JSON object with ``resourceMetrics`` that is not a valid request.
    """
    return _sniff(raw, ExportMetricsServiceRequest, "resourceMetrics")


def sniff_logs(raw: bytes) -> ExportLogsServiceRequest | None:
    """``raw`` as an OTLP logs request when it is one (protobuf or JSON), else ``None``.

    Raises:
        OtlpError: a JSON object with ``resourceLogs`` that is not a valid request.
    """
    return _sniff(raw, ExportLogsServiceRequest, "resourceLogs")


# --- request → response ----------------------------------------------------------


def _encode(message: Message, encoding: Encoding) -> bytes:
    if encoding == "proto":
        return message.SerializeToString()
    return json_format.MessageToJson(message, indent=None).encode()


def export_response(
    kind: Literal["metrics", "logs"], rejected: int, error_message: str, encoding: Encoding
) -> bytes:
    """``Export{Metrics,Logs}ServiceResponse`` in ``encoding``, with ``partial_success``
    (``rejected_data_points`` / ``rejected_log_records`` and ``error_message``) when
    ``rejected`` > 0 or ``error_message`` is set."""
    response: ExportMetricsServiceResponse | ExportLogsServiceResponse
    if kind == "metrics":
        response = ExportMetricsServiceResponse()
        if rejected or error_message:
            response.partial_success.rejected_data_points = rejected
            response.partial_success.error_message = error_message
    else:
        response = ExportLogsServiceResponse()
        if rejected or error_message:
            response.partial_success.rejected_log_records = rejected
            response.partial_success.error_message = error_message
    return _encode(response, encoding)


#: google.rpc.Code values used in error bodies.
INVALID_ARGUMENT = 3


def status_body(message: str, encoding: Encoding, code: int = INVALID_ARGUMENT) -> bytes:
    """A ``google.rpc.Status`` (OTLP/HTTP's error body) in ``encoding``."""
    return _encode(status_pb2.Status(code=code, message=message), encoding)


# --- attributes ---------------------------------------------------------------------


def _any_json(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_any_json(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any_json(kv.value) for kv in value.kvlist_value.values}
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value if math.isfinite(value.double_value) else str(
            value.double_value
        )
    if kind == "bool_value":
        return value.bool_value
    if kind == "bytes_value":
        return value.bytes_value.hex()
    if kind == "string_value":
        return value.string_value
    return None


def any_text(value: AnyValue) -> str:
    """An attribute value or log body as text (see module docstring)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return ""
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return repr(value.double_value)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return json.dumps(_any_json(value), separators=(",", ":"), ensure_ascii=False)


def _attributes(attributes: Iterable[KeyValue]) -> dict[str, str]:
    return {kv.key: any_text(kv.value) for kv in attributes if kv.key}


def _resource(
    attributes: Iterable[KeyValue], service_labels: Sequence[str],
    resource_labels: Sequence[str], default: str | None = None,
) -> tuple[dict[str, str], str | None]:
    """``(labels, service)`` of a resource: the service from ``service.name`` (else
    ``default``, else the first of ``service_labels``); only the attributes named in
    ``resource_labels`` become labels."""
    attrs = _attributes(attributes)
    service = attrs.pop("service.name", "") or default or service_from_labels(
        attrs, service_labels
    )
    return {k: v for k, v in attrs.items() if k in resource_labels}, service


def _time(ns: int) -> datetime | None:
    if ns <= 0:
        return None
    try:
        return datetime.fromtimestamp(ns / 1e9, UTC)
    except (OverflowError, OSError, ValueError):
        return None


# --- metrics ------------------------------------------------------------------------


def quantile_suffix(q: float) -> str:
    """``_p99`` for 0.99, ``_p99_9`` for 0.999, ``_p50`` for 0.5."""
    text = f"{q * 100:.6f}".rstrip("0").rstrip(".")
    return "_p" + text.replace(".", "_")


def bucket_quantile(
    q: float,
    bounds: Sequence[float],
    counts: Sequence[int],
    low: float | None = None,
    high: float | None = None,
) -> float | None:
    """The ``q`` quantile of an explicit-bucket histogram, interpolated linearly within
    its bucket as Prometheus' ``histogram_quantile`` does (promql/quantile.go).

    Args:
        q: the quantile, 0 < q < 1.
        bounds: the explicit upper bounds, increasing; bucket ``i`` holds values in
            ``(bounds[i-1], bounds[i]]``, the last one ``(bounds[-1], +Inf)``.
        counts: ``len(bounds) + 1`` counts.
        low, high: the point's ``min`` and ``max`` when sent; they bound the first and
            the last (overflow) bucket.

    Returns:
        The estimate in the histogram's unit, or ``None`` when it has no observation
        or nothing bounds the bucket the quantile falls in. Without ``low`` the first
        bucket starts at 0 when its upper bound is positive (else its upper bound is
        the answer); without ``high`` a quantile in the overflow bucket is the highest
        finite bound (Prometheus' rule).
    """
    return range_quantile(q, _explicit(bounds, counts, low, high), low, high)


#: One bucket of a histogram: ``(lower, upper, count)``; ``None``: unbounded.
Bucket = tuple[float | None, float | None, int]


def range_quantile(
    q: float, buckets: Sequence[Bucket], low: float | None = None, high: float | None = None
) -> float | None:
    """The ``q`` quantile of ``buckets`` (ascending, ``(lower, upper, count)``),
    interpolated linearly inside the bucket holding the rank ``q × total``.

    A bucket without an upper end gives its lower end (Prometheus' answer for the
    ``+Inf`` bucket), one without a lower end its upper end; ``low``/``high`` (the
    point's min and max) clamp the bucket. ``None``: no observation, or the bucket is
    unbounded on both ends.
    """
    total = sum(count for _, _, count in buckets)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    chosen = next(b for b in reversed(buckets) if b[2] > 0)  # a float rounding fallback
    before = total - chosen[2]
    for bucket in buckets:
        if bucket[2] > 0 and seen + bucket[2] >= rank:
            chosen, before = bucket, seen
            break
        seen += bucket[2]
    lower, upper, count = chosen
    if low is not None and lower is not None:
        lower = max(lower, low)
    if high is not None and upper is not None:
        upper = min(upper, high)
    if upper is None:
        return lower
    if lower is None:
        return upper
    upper = max(upper, lower)
    return lower + (upper - lower) * (rank - before) / count


def exponential_buckets(dp: Any) -> list[Bucket] | None:
    """The buckets of an OTLP exponential-histogram point, ascending: negative buckets,
    the zero bucket, positive buckets. Bucket index ``k`` covers ``(base**k,
    base**(k+1)]`` with ``base = 2**(2**-scale)`` (OTLP metrics data model);
    ``None`` when a bound is beyond float range."""
    try:
        def edge(k: int) -> float:
            return float(2.0 ** (k * 2.0 ** -int(dp.scale)))

        out: list[Bucket] = []
        neg = dp.negative
        for i in reversed(range(len(neg.bucket_counts))):
            k = int(neg.offset) + i
            out.append((-edge(k + 1), -edge(k), int(neg.bucket_counts[i])))
        zt = float(dp.zero_threshold)
        out.append((-zt, zt, int(dp.zero_count)))
        pos = dp.positive
        for i, count in enumerate(pos.bucket_counts):
            k = int(pos.offset) + i
            out.append((edge(k), edge(k + 1), int(count)))
    except OverflowError:
        return None
    return out


class _Points:
    """Builds the MetricPoints of one data point; errors refuse the whole point."""

    def __init__(self, out: Decoded, item: int, labels: dict[str, str], at: datetime) -> None:
        self.out, self.item, self.labels, self.at = out, item, labels, at
        self.points: list[MetricPoint] = []
        self.failed = False

    def add(
        self,
        name: str,
        value: float,
        metric_type: Literal["counter", "gauge"],
        extra: Mapping[str, str] | None = None,
    ) -> None:
        if not math.isfinite(value):
            self.out.skip("non_finite")
            return
        labels = {**self.labels, **extra} if extra else self.labels
        try:
            point = MetricPoint(
                timestamp=self.at, metric_name=name, value=value, labels=labels,
                metric_type=metric_type,
            )
        except ValueError as exc:  # pydantic's ValidationError (a name too long …)
            self.fail("name", f"{name[:80]}: {str(exc).splitlines()[-1].strip()[:200]}")
            return
        self.points.append(point)

    def fail(self, loc: str, msg: str, code: str = "invalid") -> None:
        self.out.error(self.item, loc, msg, code=code)
        self.failed = True


def _interval_s(dp: Any) -> float | None:
    start, end = int(dp.start_time_unix_nano), int(dp.time_unix_nano)
    if start <= 0 or end <= start:
        return None
    return (end - start) / 1e9


def _count_and_sum(
    p: _Points, name: str, dp: Any, temporality: int, kind: str
) -> bool:
    """``_count`` and ``_sum`` of a (exponential) histogram or summary point."""
    has_sum = kind == "summary" or dp.HasField("sum")
    if kind == "summary" or temporality == _CUMULATIVE:
        p.add(f"{name}_count", float(dp.count), "counter")
        if has_sum:
            p.add(f"{name}_sum", dp.sum, "counter")
    elif temporality == _DELTA:
        interval = _interval_s(dp)
        if interval is None:
            p.fail(
                "start_time_unix_nano",
                f"{name}: a delta histogram needs start_time_unix_nano before "
                "time_unix_nano to give per-second rates",
            )
            return False
        p.add(f"{name}_count", dp.count / interval, "gauge")
        if has_sum:
            p.add(f"{name}_sum", dp.sum / interval, "gauge")
    else:
        p.fail("aggregation_temporality", f"{name}: aggregation temporality is unspecified")
        return False
    if not has_sum:
        p.out.skip("no_sum")
    return True


def _number(p: _Points, metric: Metric, kind: str, dp: Any) -> None:
    name = metric.name
    which = dp.WhichOneof("value")
    if which is None:
        p.fail("value", f"{name}: the data point has neither as_double nor as_int")
        return
    value = float(getattr(dp, which))
    if kind == "gauge":
        p.add(name, value, "gauge")
        return
    temporality = metric.sum.aggregation_temporality
    if temporality == _CUMULATIVE:
        p.add(name, value, "counter" if metric.sum.is_monotonic else "gauge")
    elif temporality == _DELTA:
        interval = _interval_s(dp)
        if interval is None:
            p.fail(
                "start_time_unix_nano",
                f"{name}: a delta sum needs start_time_unix_nano before time_unix_nano "
                "to be a per-second rate",
            )
            return
        p.add(name, value / interval, "gauge")
    else:
        p.fail("aggregation_temporality", f"{name}: aggregation temporality is unspecified")


def _histogram(p: _Points, metric: Metric, dp: Any, q: float) -> None:
    name = metric.name
    bounds, counts = list(dp.explicit_bounds), list(dp.bucket_counts)
    if counts and len(counts) != len(bounds) + 1:
        p.fail(
            "bucket_counts",
            f"{name}: {len(counts)} bucket counts for {len(bounds)} explicit bounds "
            "(needs one more count than bounds)",
        )
        return
    if any(not math.isfinite(b) for b in bounds) or any(
        b >= c for b, c in zip(bounds, bounds[1:], strict=False)
    ):
        p.fail("explicit_bounds", f"{name}: explicit bounds must be finite and increasing")
        return
    if not _count_and_sum(p, name, dp, metric.histogram.aggregation_temporality, "histogram"):
        return
    low = dp.min if dp.HasField("min") else None
    high = dp.max if dp.HasField("max") else None
    _quantile(p, name, _explicit(bounds, counts, low, high), dp, q)


def _explicit(
    bounds: Sequence[float], counts: Sequence[int], low: float | None, high: float | None
) -> list[Bucket]:
    """Explicit buckets as ranges: the first from ``low`` (else 0 when its bound is
    positive, else unbounded), the overflow one up to ``high`` (else unbounded)."""
    out: list[Bucket] = []
    for i, count in enumerate(counts):
        upper = bounds[i] if i < len(bounds) else high
        if i > 0:
            lower: float | None = bounds[i - 1]
        elif low is not None:
            lower = low
        else:
            lower = 0.0 if bounds and bounds[0] > 0 else None
        out.append((lower, upper, count))
    return out


def _quantile(p: _Points, name: str, buckets: list[Bucket] | None, dp: Any, q: float) -> None:
    """Add ``<name>_p<q>`` from ``buckets``, or count why not."""
    if buckets is None:
        p.out.skip("unbounded_bucket")
        return
    if sum(count for _, _, count in buckets) == 0:
        p.out.skip("empty_histogram")
        return
    low = dp.min if dp.HasField("min") else None
    high = dp.max if dp.HasField("max") else None
    estimate = range_quantile(q, buckets, low, high)
    if estimate is None:
        p.out.skip("unbounded_bucket")
        return
    p.add(f"{name}{quantile_suffix(q)}", estimate, "gauge")


def _map_point(p: _Points, metric: Metric, kind: str, dp: Any, q: float) -> None:
    if kind in ("gauge", "sum"):
        _number(p, metric, kind, dp)
    elif kind == "histogram":
        _histogram(p, metric, dp, q)
    elif kind == "exponential_histogram":
        if _count_and_sum(
            p, metric.name, dp, metric.exponential_histogram.aggregation_temporality, kind
        ):
            _quantile(p, metric.name, exponential_buckets(dp), dp, q)
    else:  # summary
        if _count_and_sum(p, metric.name, dp, _CUMULATIVE, "summary"):
            for qv in dp.quantile_values:
                p.add(metric.name, qv.value, "gauge", {"quantile": f"{qv.quantile:g}"})


def _point_json(metric: Metric, dp: Message) -> dict[str, Any]:
    return {"metric": metric.name, "dataPoint": json_format.MessageToDict(dp)}


def decode_metrics_request(
    request: ExportMetricsServiceRequest,
    service_labels: Sequence[str] = DEFAULT_SERVICE_LABELS,
    quantile: float = DEFAULT_QUANTILE,
    resource_labels: Sequence[str] = DEFAULT_RESOURCE_LABELS,
) -> Decoded:
    """MetricPoints of an OTLP metrics request (mapping: module docstring).

    Args:
        request: the parsed request (:func:`parse_metrics`, :func:`sniff_metrics`).
        service_labels: resource attributes tried for the service when
            ``service.name`` is missing (``AUTOPILOT_SERVICE_LABELS``).
        quantile: the histogram quantile (``AUTOPILOT_OTLP_HISTOGRAM_QUANTILE``).
        resource_labels: resource attributes kept as labels
            (``AUTOPILOT_OTLP_RESOURCE_LABELS``).

    Returns:
        A :class:`Decoded` whose items are the request's data points, numbered from 0
        across all resources, scopes and metrics; a refused point is one error (its
        ``raw`` is ``{"metric": name, "dataPoint": OTLP/JSON of the point}``).
    """
    out = Decoded()
    item = -1
    for rm in request.resource_metrics:
        resource, service = _resource(rm.resource.attributes, service_labels, resource_labels)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind is None:
                    continue
                for dp in getattr(metric, kind).data_points:
                    item += 1
                    _decode_point(out, item, metric, kind, dp, resource, service, quantile)
    return out


def _decode_point(
    out: Decoded, item: int, metric: Metric, kind: str, dp: Any,
    resource: dict[str, str], service: str | None, quantile: float,
) -> None:
    if dp.flags & _NO_VALUE:
        out.skip("no_recorded_value")
        return
    if service is None:
        out.error(
            item, "resource.attributes",
            "no service.name resource attribute (nor any of AUTOPILOT_SERVICE_LABELS)",
            code="no_service", raw=_point_json(metric, dp),
        )
        return
    if not metric.name:
        out.error(item, "name", "metric has no name", raw=_point_json(metric, dp))
        return
    at = _time(int(dp.time_unix_nano))
    if at is None:
        out.error(
            item, "timestamp",
            f"{metric.name}: time_unix_nano {dp.time_unix_nano} is not set or out of range",
            code="bad_timestamp", raw=_point_json(metric, dp),
        )
        return
    labels = {**resource, **_attributes(dp.attributes), "service": service}
    p = _Points(out, item, labels, at)
    _map_point(p, metric, kind, dp, quantile)
    if p.failed:
        if item not in out.raw:
            out.raw[item] = _point_json(metric, dp)
        return
    for point in p.points:
        out.add(point, item)


# --- logs ---------------------------------------------------------------------------


def severity_level(number: int, text: str) -> str | None:
    """The level of a log record: from ``severity_number`` 1–24 (OTLP logs data model:
    1–4 trace, 5–8 debug, 9–12 info, 13–16 warning, 17–20 error, 21–24 critical),
    else from ``severity_text`` (:func:`autopilot.formats.levels.normalize_level`);
    ``None`` when neither gives one."""
    if 1 <= number <= 24:
        return _SEVERITY[(number - 1) // 4]
    if text.strip():
        try:
            return normalize_level(text)
        except ValueError:
            return None
    return None


def _record_json(record: LogRecord) -> dict[str, Any]:
    return json_format.MessageToDict(record)


def decode_logs_request(
    request: ExportLogsServiceRequest,
    default_service: str | None = None,
    service_labels: Sequence[str] = DEFAULT_SERVICE_LABELS,
    resource_labels: Sequence[str] = DEFAULT_RESOURCE_LABELS,
) -> Decoded:
    """LogEntries of an OTLP logs request (mapping: module docstring).

    Args:
        request: the parsed request (:func:`parse_logs`, :func:`sniff_logs`).
        default_service: the service of resources with neither ``service.name`` nor
            one of ``service_labels`` among their attributes (the Kafka key,
            ``?service=``).
        service_labels: resource attributes tried when ``service.name`` is missing.
        resource_labels: resource attributes kept as labels
            (``AUTOPILOT_OTLP_RESOURCE_LABELS``).

    Returns:
        A :class:`Decoded` whose items are the log records, numbered from 0 across the
        request; ``defaulted`` counts ``missing_level``, ``unknown_level``,
        ``message_truncated``.
    """
    out = Decoded()
    item = -1
    for rl in request.resource_logs:
        resource, service = _resource(rl.resource.attributes, service_labels, resource_labels)
        service = service or default_service
        for sl in rl.scope_logs:
            for record in sl.log_records:
                item += 1
                _decode_record(out, item, record, resource, service)
    return out


def _decode_record(
    out: Decoded, item: int, record: LogRecord, resource: dict[str, str], service: str | None
) -> None:
    if not service:
        out.error(
            item, "resource.attributes",
            "no service.name resource attribute (nor a Kafka key or ?service=)",
            code="no_service", raw=_record_json(record),
        )
        return
    at = _time(int(record.time_unix_nano)) or _time(int(record.observed_time_unix_nano))
    if at is None:
        out.error(
            item, "timestamp", "neither time_unix_nano nor observed_time_unix_nano is set",
            code="bad_timestamp", raw=_record_json(record),
        )
        return
    level = severity_level(int(record.severity_number), record.severity_text)
    if level is None:
        out.default(
            "unknown_level" if record.severity_number or record.severity_text.strip()
            else "missing_level"
        )
        level = UNKNOWN_LEVEL
    message = any_text(record.body)
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE]
        out.default("message_truncated")
    labels = {**resource, **_attributes(record.attributes)}
    if record.trace_id:
        labels["trace_id"] = record.trace_id.hex()
    if record.span_id:
        labels["span_id"] = record.span_id.hex()
    try:
        entry = LogEntry(
            timestamp=at, level=level, message=message, service=service, labels=labels
        )
    except ValueError as exc:
        out.error(
            item, "", str(exc).splitlines()[-1].strip()[:200], raw=_record_json(record)
        )
        return
    out.add(entry, item)
