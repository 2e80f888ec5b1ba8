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

Counters: a family typed COUNTER in the request's ``metadata`` (and the
``_bucket``/``_count``/``_sum`` series of HISTOGRAM and SUMMARY families) is typed
``counter``; GAUGE families ``gauge``; untyped names ending ``_total`` are counters
by convention (see :mod:`autopilot.formats.counters`).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
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
    """The body is not a snappy-compressed WriteRequest; ``reason`` says why (HTTP 400)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
        ],
    )
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
        for name in ("WriteRequest", "TimeSeries", "Label", "Sample", "MetricMetadata")
    }


_MESSAGES = _build_messages()
#: The ``prometheus.WriteRequest`` message class.
WriteRequest = _MESSAGES["WriteRequest"]
_COUNTER, _GAUGE, _HISTOGRAM, _SUMMARY = 1, 2, 3, 5


def is_stale_marker(value: float) -> bool:
    """True for Prometheus' staleness-marker NaN (exact bit pattern)."""
    return struct.unpack("<Q", struct.pack("<d", value))[0] == STALE_NAN_BITS


def encode_write_request(series: list[tuple[dict[str, str], list[tuple[float, int]]]]) -> bytes:
    """Snappy-compressed WriteRequest of ``[(labels, [(value, ms), …]), …]`` (tests, tools)."""
    req = WriteRequest()
    for labels, samples in series:
        ts = req.timeseries.add()
        for name, value in sorted(labels.items()):
            ts.labels.add(name=name, value=value)
        for value, ms in samples:
            ts.samples.add(value=value, timestamp=ms)
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


def _inflate(body: bytes, max_decoded_bytes: int) -> bytes:
    if not body:
        raise RemoteWriteError("empty body: expected a snappy-compressed WriteRequest")
    try:
        size = cramjam.snappy.decompress_raw_len(body)
    except Exception as exc:  # cramjam.DecompressionError and friends
        raise RemoteWriteError(f"body is not snappy block-compressed: {exc}") from None
    if size > max_decoded_bytes:
        raise RemoteWriteError(
            f"uncompressed WriteRequest of {size} bytes exceeds the limit of {max_decoded_bytes}"
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


def decode_remote_write(
    body: bytes,
    service_labels: Sequence[str] = DEFAULT_SERVICE_LABELS,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> Decoded:
    """Decode a remote-write body into MetricPoints (see module docstring).

    Raises:
        RemoteWriteError: bad snappy, too large once inflated, or not a WriteRequest.
    """
    raw = _inflate(body, max_decoded_bytes)
    req = WriteRequest()
    try:
        req.ParseFromString(raw)
    except DecodeError as exc:
        raise RemoteWriteError(f"body is not a protobuf WriteRequest: {exc}") from None
    types = _family_types(req)
    out = Decoded()
    for index, ts in enumerate(req.timeseries):
        labels = {lab.name: lab.value for lab in ts.labels}
        name = labels.pop("__name__", "")
        if not name:
            out.skip("no_name", len(ts.samples))
            continue
        service = service_from_labels(labels, service_labels)
        if service is None:
            out.skip("no_service", len(ts.samples))
            continue
        labels["service"] = service
        metric_type = types.get(name)
        for sample in ts.samples:
            value = sample.value
            if not math.isfinite(value):
                out.skip("stale" if is_stale_marker(value) else "non_finite")
                continue
            try:
                out.records.append(
                    MetricPoint(
                        timestamp=datetime.fromtimestamp(sample.timestamp / 1000.0, tz=UTC),
                        metric_name=name,
                        value=value,
                        labels=labels,
                        metric_type=metric_type,  # type: ignore[arg-type]
                    )
                )
            except (ValueError, OverflowError, OSError) as exc:
                out.error(index, "timeseries", f"{name}: {str(exc).splitlines()[0][:200]}")
    return out
