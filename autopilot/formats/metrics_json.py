"""JSON metrics on ``autopilot.metrics`` (and ``POST /ingest/metrics``), auto-detected.

One Kafka record (or HTTP body) holds one object, a JSON list of objects, or a
Telegraf batch ``{"metrics": [...]}``. Each object is recognised by its keys:

**Seed MetricPoint** — has ``metric_name``::

    {"timestamp": "2026-11-29T10:00:00Z", "metric_name": "api_latency_ms",
     "value": 101.0, "labels": {"service": "checkout"}}

**prometheus-kafka-adapter** (github.com/Telefonica/prometheus-kafka-adapter, JSON
serialization) — has ``name``, ``value`` (a string) and ``labels``::

    {"timestamp": "2026-11-29T10:00:00Z", "value": "42", "name": "http_requests_total",
     "labels": {"__name__": "http_requests_total", "job": "checkout", "code": "200"}}

**Telegraf JSON serializer** (``data_format = "json"``) — has ``name``, ``fields`` and
``tags``; one sample per numeric field::

    {"name": "cpu", "fields": {"usage_user": 12.5, "usage_system": 3.1},
     "tags": {"service": "checkout", "host": "web-1"}, "timestamp": 1764410400}

A Telegraf field named ``value``, ``gauge``, ``counter`` or ``untyped`` (what the
Prometheus input plugin writes) is the measurement itself (``counter`` typed as a
counter); any other field becomes ``<name>_<field>``. Booleans become 0/1, strings
are skipped (``non_numeric``).

The service is ``labels.service`` / ``tags.service`` or else the first present label
of ``AUTOPILOT_SERVICE_LABELS`` (default ``service, app, app_kubernetes_io_name,
job``), written to ``labels["service"]``; none present is an error (``labels:
no service label``). NaN and ±Inf values (the adapter writes them as strings, as
Prometheus' staleness markers are NaN) are skipped and counted (``non_finite``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError

from autopilot.formats import DEFAULT_SERVICE_LABELS, Decoded, loads_strict, service_from_labels
from autopilot.models import MetricPoint

__all__ = ["decode_metrics", "detect_format", "map_metric_objects"]

_TELEGRAF_SELF_FIELDS = {"value": None, "gauge": "gauge", "counter": "counter", "untyped": None}


def detect_format(obj: dict[str, Any]) -> str:
    """``seed``, ``prometheus_kafka_adapter``, ``telegraf`` or ``unknown``."""
    if "metric_name" in obj:
        return "seed"
    if "fields" in obj and "name" in obj:
        return "telegraf"
    if "name" in obj and "value" in obj and "labels" in obj:
        return "prometheus_kafka_adapter"
    return "unknown"


def decode_metrics(raw: bytes, service_labels: Sequence[str] = DEFAULT_SERVICE_LABELS) -> Decoded:
    """Decode one record value or body (see module docstring).

    Raises:
        ValueError: the bytes are not JSON (HTTP answers 400, Kafka dead-letters).
    """
    if not raw or not raw.strip():
        raise ValueError("empty body")
    fast = _seed_points(raw)
    if fast is not None:
        out = Decoded()
        out.records.extend(fast)
        out.record_items.extend(range(len(fast)) if raw.lstrip()[:1] == b"[" else [None])
        return out
    return map_metric_objects(loads_strict(raw), service_labels)


_POINT_LIST = TypeAdapter(list[MetricPoint])
#: What a falsy ``labels.service`` (0, 0.0, false, null, [], {}) reads as once
#: validated: the general path fills such a service from the other labels instead.
_FALSY_SERVICE_TEXTS = frozenset({"0", "0.0", "-0.0", "false", "null", "[]", "{}"})


def _seed_points(raw: bytes) -> list[MetricPoint] | None:
    """The MetricPoints of ``raw`` when it is one seed MetricPoint or a non-empty list
    of them with their service label set, in one pass of pydantic-core's JSON parser
    (about 1.5 times faster than ``json.loads`` plus per-item validation); ``None``
    when anything may need the general path, which then decodes or words the error.

    The result is what the general path gives for the same bytes: pydantic-core's
    parser takes ``NaN``/``Infinity`` literals, which strict JSON refuses, so bytes
    containing them are left to the general path, as are objects that mention
    ``metrics`` or use ``\\u`` escapes (a Telegraf batch is ``{"metrics": [...]}``),
    invalid UTF-8 (the general path replaces it), and samples whose service label
    may have been falsy.
    """
    if b"NaN" in raw or b"Infinity" in raw:
        return None
    head = raw.lstrip()[:1]
    try:
        if head == b"[":
            points = _POINT_LIST.validate_json(raw)
        elif head == b"{" and b"metrics" not in raw and b"\\u" not in raw:
            points = [MetricPoint.model_validate_json(raw)]
        else:
            return None
    except ValueError:  # pydantic's ValidationError is a ValueError
        return None
    if not points or any(p.labels["service"] in _FALSY_SERVICE_TEXTS for p in points):
        return None
    return points


def map_metric_objects(
    data: Any, service_labels: Sequence[str] = DEFAULT_SERVICE_LABELS
) -> Decoded:
    """Map parsed JSON (object, list, or ``{"metrics": [...]}``) to MetricPoints."""
    out = Decoded()
    if isinstance(data, dict) and isinstance(data.get("metrics"), list) and "name" not in data:
        data = data["metrics"]  # Telegraf batch format
    for at, item in out.objects(data):
        before = len(out.errors)
        _map_one(item, at, service_labels, out)
        if len(out.errors) > before:
            out.raw.setdefault(at, item)
    return out


def _map_one(
    item: dict[str, Any], at: int | None, service_labels: Sequence[str], out: Decoded
) -> None:
    """Map one metric object (any known shape) onto ``out``."""
    kind = detect_format(item)
    if kind == "seed":
        _seed(item, at, service_labels, out)
    elif kind == "prometheus_kafka_adapter":
        _adapter(item, at, service_labels, out)
    elif kind == "telegraf":
        _telegraf(item, at, service_labels, out)
    else:
        out.error(
            at,
            "",
            "unknown metric shape: expected a MetricPoint (metric_name), a "
            "prometheus-kafka-adapter sample (name, value, labels) or a Telegraf "
            "metric (name, fields, tags)",
        )


def _validate(data: dict[str, Any], at: int | None, out: Decoded) -> None:
    try:
        out.add(MetricPoint.model_validate(data), at)
    except ValidationError as exc:
        for err in exc.errors():
            out.error(at, ".".join(str(p) for p in err["loc"]), err["msg"])


def _with_service(labels: dict[str, Any], service_labels: Sequence[str]) -> dict[str, str] | None:
    text = {str(k): str(v) for k, v in labels.items()}
    service = service_from_labels(text, service_labels)
    if service is None:
        return None
    text["service"] = service
    return text


def _no_service(at: int | None, service_labels: Sequence[str], out: Decoded) -> None:
    out.error(at, "labels", f"no service label (looked for {', '.join(service_labels)})")


def _seed(
    item: dict[str, Any], at: int | None, service_labels: Sequence[str], out: Decoded
) -> None:
    labels = item.get("labels")
    if isinstance(labels, dict) and not labels.get("service"):
        filled = _with_service(labels, service_labels)
        if filled is not None:
            item = {**item, "labels": filled}
    _validate(item, at, out)


def _number(value: Any) -> float | None:
    """Float of a JSON number or numeric string; None when not numeric."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _adapter(
    item: dict[str, Any], at: int | None, service_labels: Sequence[str], out: Decoded
) -> None:
    labels = item.get("labels")
    if not isinstance(labels, dict):
        out.error(at, "labels", "expected an object")
        return
    value = _number(item.get("value"))
    if value is None:
        out.error(at, "value", "not a number")
        return
    if not math.isfinite(value):
        out.skip("non_finite")
        return
    name = str(item.get("name") or labels.get("__name__") or "")
    rest = {k: v for k, v in labels.items() if k != "__name__"}
    filled = _with_service(rest, service_labels)
    if filled is None:
        _no_service(at, service_labels, out)
        return
    _validate(
        {"timestamp": item.get("timestamp"), "metric_name": name, "value": value, "labels": filled},
        at,
        out,
    )


def _telegraf(
    item: dict[str, Any], at: int | None, service_labels: Sequence[str], out: Decoded
) -> None:
    fields, tags = item.get("fields"), item.get("tags") or {}
    if not isinstance(fields, dict) or not isinstance(tags, dict):
        out.error(at, "fields" if not isinstance(fields, dict) else "tags", "expected an object")
        return
    filled = _with_service(tags, service_labels)
    if filled is None:
        _no_service(at, service_labels, out)
        return
    name = str(item.get("name") or "")
    for field, raw_value in fields.items():
        if isinstance(raw_value, str) or raw_value is None:
            out.skip("non_numeric")
            continue
        value = _number(raw_value)
        if value is None:
            out.skip("non_numeric")
            continue
        if not math.isfinite(value):
            out.skip("non_finite")
            continue
        if field in _TELEGRAF_SELF_FIELDS:
            metric, typ = name, _TELEGRAF_SELF_FIELDS[field]
        else:
            metric, typ = f"{name}_{field}", None
        point: dict[str, Any] = {
            "timestamp": item.get("timestamp"),
            "metric_name": metric,
            "value": value,
            "labels": filled,
        }
        if typ is not None:
            point["metric_type"] = typ
        _validate(point, at, out)
