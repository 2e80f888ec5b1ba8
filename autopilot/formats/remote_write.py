"""Prometheus remote write 1.0 (``POST /api/v1/write``) → MetricPoints.

Wire format (prometheus.io/docs/specs/prw/remote_write_spec/): the body is a
protobuf ``prometheus.WriteRequest`` compressed with snappy's *block* format
(``Content-Encoding: snappy``, ``Content-Type: application/x-protobuf``). Snappy is
decoded with ``cramjam``; the protobuf messages are built at import time from a
``FileDescriptorProto`` written out below, which mirrors ``remote_write.proto`` next
to this file (a reference copy of prompb, reduced to the fields used; no generated
``_pb2`` module and no ``protoc`` step).

Each sample of each series becomes a MetricPoint: ``__name__`` is the metric name,
the other labels are kept, the time is the sample's (milliseconds since the epoch).
Left out and counted (``Decoded.skipped``):

* ``stale`` — Prometheus' staleness marker (the NaN with bits 0x7ff0000000000002),
* ``non_finite`` — any other NaN or ±Inf,
* ``no_service`` — a series with none of the service labels
  (``AUTOPILOT_SERVICE_LABELS``; default ``service, app, app_kubernetes_io_name,
  job``), so one unlabelled series does not make Prometheus drop the whole batch,
* ``no_name`` — a series without ``__name__``.

A sample that cannot be stored (a time out of range, a name over 256 characters) is a
rejected item (the item is the series' index in the request); the rest of the
request is kept, so Prometheus does not drop the good series with it.

Native histograms (``TimeSeries.histograms``) become two samples each,
``<name>_count`` and ``<name>_sum`` (counters; gauges for a gauge histogram), so
they are watched like classic histograms' count and sum; the buckets are not kept.

A non-empty body with neither series nor metadata is refused (400; 415 when it is a
Remote-Write 2.0 request sent as 1.0), never taken as "0 samples"; a framed-snappy
body gets a message saying so; a body over the limit once inflated is 413.

Counters: a family typed COUNTER in the request's ``metadata`` (and the
``_bucket``/``_count``/``_sum`` series of HISTOGRAM and SUMMARY families) is typed
``counter``; GAUGE families ``gauge``; untyped names ending ``_total`` are counters
by convention (the counter → rate step is in :mod:`autopilot.detection`).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import cramjam
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from autopilot.formats import DEFAULT_SERVICE_LABELS, Decoded, service_from_labels
from autopilot.models import MetricPoint

__all__ = [
    "STALE_NAN_BITS",
    "RemoteWriteError",
    "WriteRequest",
    "decode_remote_write",
    "encode_write_request",
    "is_stale_marker",
]

#: Bits of Prometheus' staleness marker (prometheus/model/value/value.go StaleNaN).
STALE_NAN_BITS = 0x7FF0000000000002
#: Largest accepted uncompressed WriteRequest (a snappy bomb is refused before inflating).
DEFAULT_MAX_DECODED_BYTES = 64 * 1024 * 1024


class RemoteWriteError(ValueError):
    """The body is not a snappy-compressed WriteRequest; ``reason`` says why.

    Attributes:
        reason: what is wrong and what the sender should do.
        status: the HTTP status to answer: 400 (not snappy, framed snappy, not a
            WriteRequest, no series), 413 (larger than the limit once inflated) or 415
            (a Remote-Write 2.0 body sent as 1.0).
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def _build_messages() -> dict[str, Any]:
    f = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(
        name="autopilot/formats/remote_write.proto", package="prometheus", syntax="proto3"
    )

    def message(name: str, fields: list[tuple[str, int, int, int, str | None]]) -> Any:
        msg = fdp.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            field = msg.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                field.type_name = type_name
        return msg

    opt, rep = f.LABEL_OPTIONAL, f.LABEL_REPEATED
    wr = message(
        "WriteRequest",
        [
            ("timeseries", 1, f.TYPE_MESSAGE, rep, ".prometheus.TimeSeries"),
            ("metadata", 3, f.TYPE_MESSAGE, rep, ".prometheus.MetricMetadata"),
        ],
    )
    wr.reserved_range.add(start=2, end=3)
    message(
        "TimeSeries",
        [
            ("labels", 1, f.TYPE_MESSAGE, rep, ".prometheus.Label"),
            ("samples", 2, f.TYPE_MESSAGE, rep, ".prometheus.Sample"),
            ("histograms", 4, f.TYPE_MESSAGE, rep, ".prometheus.Histogram"),
        ],
    )
    # Native histograms (prompb types.proto): only what the conversion reads.
    histogram = message(
        "Histogram",
        [
            ("count_int", 1, f.TYPE_UINT64, opt, None),
            ("count_float", 2, f.TYPE_DOUBLE, opt, None),
            ("sum", 3, f.TYPE_DOUBLE, opt, None),
            ("reset_hint", 14, f.TYPE_INT32, opt, None),
            ("timestamp", 15, f.TYPE_INT64, opt, None),
        ],
    )
    histogram.oneof_decl.add(name="count")
    histogram.field[0].oneof_index = 0
    histogram.field[1].oneof_index = 0
    message(
        "Label", [("name", 1, f.TYPE_STRING, opt, None), ("value", 2, f.TYPE_STRING, opt, None)]
    )
    message(
        "Sample",
        [("value", 1, f.TYPE_DOUBLE, opt, None), ("timestamp", 2, f.TYPE_INT64, opt, None)],
    )
    meta = message(
        "MetricMetadata",
        [
            ("type", 1, f.TYPE_ENUM, opt, ".prometheus.MetricMetadata.MetricType"),
            ("metric_family_name", 2, f.TYPE_STRING, opt, None),
            ("help", 4, f.TYPE_STRING, opt, None),
            ("unit", 5, f.TYPE_STRING, opt, None),
        ],
    )
    enum = meta.enum_type.add(name="MetricType")
    for number, name in enumerate(
        [
            "UNKNOWN",
            "COUNTER",
            "GAUGE",
            "HISTOGRAM",
            "GAUGEHISTOGRAM",
            "SUMMARY",
            "INFO",
            "STATESET",
        ]
    ):
        enum.value.add(name=name, number=number)
    pool = descriptor_pool.DescriptorPool()  # private pool: no clash with other prompb copies
    pool.Add(fdp)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"prometheus.{name}"))
        for name in (
            "WriteRequest", "TimeSeries", "Label", "Sample", "Histogram", "MetricMetadata"
        )
    }


_MESSAGES = _build_messages()
#: The ``prometheus.WriteRequest`` message class.
WriteRequest = _MESSAGES["WriteRequest"]
_COUNTER, _GAUGE, _HISTOGRAM, _SUMMARY = 1, 2, 3, 5
#: ``Histogram.ResetHint.GAUGE``: a gauge histogram (its count and sum can go down).
_RESET_HINT_GAUGE = 3


def is_stale_marker(value: float) -> bool:
    """True for Prometheus' staleness-marker NaN (exact bit pattern)."""
    bits: int = struct.unpack("<Q", struct.pack("<d", value))[0]
    return bits == STALE_NAN_BITS


def encode_write_request(series: list[tuple[dict[str, str], list[tuple[float, int]]]]) -> bytes:
    """Snappy-compressed WriteRequest of ``[(labels, [(value, ms), …]), …]`` (tests, tools)."""
    req = WriteRequest()
    for labels, samples in series:
        ts = req.timeseries.add()
        for name, text in sorted(labels.items()):
            ts.labels.add(name=name, value=text)
        for value, ms in samples:
            ts.samples.add(value=value, timestamp=ms)
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


#: Start of snappy's *framed* (stream) format: the stream-identifier chunk.
SNAPPY_FRAMED_MAGIC = b"\xff\x06\x00\x00sNaPpY"


def _inflate(body: bytes, max_decoded_bytes: int) -> bytes:
    if not body:
        raise RemoteWriteError("empty body: expected a snappy-compressed WriteRequest")
    if body.startswith(SNAPPY_FRAMED_MAGIC):
        raise RemoteWriteError(
            "body uses snappy's framed (stream) format; remote write needs snappy's block "
            "format (Go: snappy.Encode, Python: cramjam.snappy.compress_raw), as "
            "Prometheus sends it"
        )
    try:
        size = cramjam.snappy.decompress_raw_len(body)
    except Exception as exc:  # cramjam.DecompressionError and friends
        raise RemoteWriteError(f"body is not snappy block-compressed: {exc}") from None
    if size > max_decoded_bytes:
        raise RemoteWriteError(
            f"uncompressed WriteRequest of {size} bytes exceeds the limit of "
            f"{max_decoded_bytes} bytes; send smaller batches (Prometheus: lower "
            "queue_config.max_samples_per_send)",
            status=413,
        )
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except Exception as exc:
        raise RemoteWriteError(f"body is not snappy block-compressed: {exc}") from None


def _family_types(req: Any) -> dict[str, str]:
    """Series name → ``counter``/``gauge`` from the request's metadata."""
    types: dict[str, str] = {}
    for meta in req.metadata:
        family = meta.metric_family_name
        if meta.type == _COUNTER:
            types[family] = "counter"
            types[f"{family}_total"] = "counter"
        elif meta.type == _GAUGE:
            types[family] = "gauge"
        elif meta.type in (_HISTOGRAM, _SUMMARY):
            for suffix in ("_bucket", "_count", "_sum"):
                types[family + suffix] = "counter"
    return types


def _samples_of(
    ts: Any, name: str, metric_type: str | None, stats: dict[str, int]
) -> Iterator[tuple[str, str | None, float, int]]:
    """``(metric name, type, value, ms)`` of a series' float samples, then of its native
    histograms as ``<name>_count`` and ``<name>_sum`` (counters, or gauges for a gauge
    histogram); a stale histogram gives two stale NaNs."""
    for sample in ts.samples:
        yield name, metric_type, sample.value, sample.timestamp
    for h in ts.histograms:
        kind = "gauge" if h.reset_hint == _RESET_HINT_GAUGE else "counter"
        count = float(h.count_int) if h.WhichOneof("count") != "count_float" else h.count_float
        if is_stale_marker(h.sum):
            count = h.sum  # both samples are skipped as stale
        else:
            stats["native_histograms"] = stats.get("native_histograms", 0) + 1
        yield f"{name}_count", kind, count, h.timestamp
        yield f"{name}_sum", kind, h.sum, h.timestamp


def _looks_like_v2(raw: bytes) -> bool:
    """A Remote-Write 2.0 ``Request`` starts with field 4 (symbols) or 5 (timeseries),
    which a 1.0 WriteRequest does not have."""
    return raw[:1] in (b"\x22", b"\x2a")


def decode_remote_write(
    body: bytes,
    service_labels: Sequence[str] = DEFAULT_SERVICE_LABELS,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
    stats: dict[str, int] | None = None,
) -> Decoded:
    """Decode a remote-write body into MetricPoints (see module docstring).

    Args:
        body: the snappy (block format) compressed WriteRequest.
        service_labels: labels tried in order for a series' service.
        max_decoded_bytes: largest WriteRequest once inflated (bytes).
        stats: if given, gets ``{"native_histograms": n}``, the native-histogram
            samples converted (each to a ``_count`` and a ``_sum`` sample).

    Raises:
        RemoteWriteError: bad snappy (400), framed snappy (400), too large once
            inflated (413), not a WriteRequest (400), a Remote-Write 2.0 body (415),
            or a non-empty body without any series or metadata (400).
    """
    stats = {} if stats is None else stats
    raw = _inflate(body, max_decoded_bytes)
    req = WriteRequest()
    try:
        req.ParseFromString(raw)
    except DecodeError as exc:
        raise RemoteWriteError(f"body is not a protobuf WriteRequest: {exc}") from None
    if raw and not req.timeseries and not req.metadata:
        if _looks_like_v2(raw):
            raise RemoteWriteError(
                "body is a Remote-Write 2.0 request (io.prometheus.write.v2.Request) sent "
                "as 1.0; this receiver speaks remote write 1.0 only: set "
                "protobuf_message: prometheus.WriteRequest in Prometheus' remote_write",
                status=415,
            )
        raise RemoteWriteError(
            f"body of {len(raw)} bytes holds no time series and no metadata: not a "
            "remote write 1.0 WriteRequest"
        )
    types = _family_types(req)
    out = Decoded()
    for index, ts in enumerate(req.timeseries):
        labels = {lab.name: lab.value for lab in ts.labels}
        name = labels.pop("__name__", "")
        if not name:
            out.skip("no_name", len(ts.samples) + 2 * len(ts.histograms))
            continue
        service = service_from_labels(labels, service_labels)
        if service is None:
            out.skip("no_service", len(ts.samples) + 2 * len(ts.histograms))
            continue
        labels["service"] = service
        for metric, metric_type, value, ms in _samples_of(ts, name, types.get(name), stats):
            if not math.isfinite(value):
                out.skip("stale" if is_stale_marker(value) else "non_finite")
                continue
            try:
                at = datetime.fromtimestamp(ms / 1000.0, tz=UTC)
            except (ValueError, OverflowError, OSError):
                out.error(
                    index, "timestamp",
                    f"{metric}: sample time {ms} ms is out of range",
                    code="bad_timestamp",
                )
                continue
            try:
                point = MetricPoint(
                    timestamp=at,
                    metric_name=metric,
                    value=value,
                    labels=labels,
                    metric_type=metric_type,
                )
            except ValueError as exc:  # pydantic's ValidationError (a name too long …)
                out.error(index, "timeseries", f"{metric}: {str(exc).splitlines()[0][:200]}")
                continue
            out.add(point, index)
    return out
