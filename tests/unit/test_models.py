"""Unit tests of autopilot.models: timestamps, strict decoding, series keys, severities."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from autopilot.errors import BadRecord
from autopilot.models import (
    Anomaly,
    LogEntry,
    MetricPoint,
    Severity,
    TraceContext,
    decode_records,
    parse_timestamp,
    series_key,
)

INSTANT = datetime(2014, 3, 7, 3, 41, tzinfo=UTC)
EPOCH_S = 1394163660


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    "value",
    [
        "2014-03-07T03:41:00Z",
        "2014-03-07T03:41:00z",
        "2014-03-07T03:41:00+00:00",
        "2014-03-07T04:41:00+01:00",
        "2014-03-06T22:41:00-05:00",
        "2014-03-07T03:41:00",  # naive: UTC
        "2014-03-07 03:41:00",  # NAB's format
        " 2014-03-07T03:41:00Z ",
        EPOCH_S,
        float(EPOCH_S),
        EPOCH_S * 1000,
        EPOCH_S * 1_000_000,
        EPOCH_S * 1_000_000_000,
        str(EPOCH_S),
        str(EPOCH_S * 1000),
        f"{EPOCH_S}.0",
        INSTANT,
        datetime(2014, 3, 7, 3, 41),  # noqa: DTZ001 - naive datetime means UTC
        datetime(2014, 3, 7, 5, 41, tzinfo=timezone(timedelta(hours=2))),
    ],
)
def test_parse_timestamp_gives_the_same_utc_instant(value: object) -> None:
    parsed = parse_timestamp(value)

    assert parsed == INSTANT
    assert parsed.utcoffset() == timedelta(0)


def test_parse_timestamp_keeps_sub_second_epoch_precision() -> None:
    assert parse_timestamp(EPOCH_S * 1000 + 250) == INSTANT + timedelta(milliseconds=250)
    assert parse_timestamp(EPOCH_S + 0.5) == INSTANT + timedelta(milliseconds=500)


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        float("inf"),
        float("-inf"),
        "nan",
        "NaN",
        "inf",
        "Infinity",
        True,
        False,
        "",
        "   ",
        "yesterday",
        None,
        [],
        {},
    ],
)
def test_parse_timestamp_rejects_non_times(value: object) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(value)


# --------------------------------------------------------------------------- decoding

METRIC = (
    b'{"timestamp": "2014-03-07T03:41:00Z", "metric_name": "api_latency_ms", "value": 45.5, '
    b'"labels": {"service": "checkout", "environment": "production"}}'
)


def test_decode_a_single_object() -> None:
    [point] = decode_records(METRIC, MetricPoint)

    assert point.timestamp == INSTANT
    assert point.metric_name == "api_latency_ms"
    assert point.value == 45.5
    assert point.service == "checkout"
    assert point.labels == {"service": "checkout", "environment": "production"}


def test_decode_a_list_keeps_order() -> None:
    raw = b"[" + METRIC + b"," + METRIC.replace(b"45.5", b"46.5") + b"]"

    points = decode_records(raw, MetricPoint)

    assert [p.value for p in points] == [45.5, 46.5]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (None, "empty"),
        (b"[]", "empty JSON list"),
        (b"{not json", "not valid JSON"),
        (METRIC.replace(b"45.5", b"NaN"), "NaN"),
        (METRIC.replace(b"45.5", b"Infinity"), "Infinity"),
        (METRIC.replace(b"45.5", b"-Infinity"), "Infinity"),
        (b"[1, 2]", "expected a JSON object"),
        (b'"text"', "expected a JSON object"),
    ],
)
def test_decode_refuses_bad_records(raw: bytes | None, reason: str) -> None:
    with pytest.raises(BadRecord, match=reason):
        decode_records(raw, MetricPoint)


def test_decode_names_labels_when_service_is_missing() -> None:
    raw = METRIC.replace(b'"service": "checkout", ', b"")

    with pytest.raises(BadRecord) as info:
        decode_records(raw, MetricPoint)

    assert "labels" in info.value.reason
    assert "service" in info.value.reason


def test_decode_names_the_item_of_a_list_that_fails() -> None:
    raw = b"[" + METRIC + b"," + METRIC.replace(b'"metric_name": "api_latency_ms", ', b"") + b"]"

    with pytest.raises(BadRecord, match=r"item 1: metric_name"):
        decode_records(raw, MetricPoint)


def test_decode_replaces_invalid_utf8_instead_of_failing() -> None:
    raw = (
        b'{"timestamp": 1394163660, "level": "ERROR", "message": "bad \xff\xfe byte", '
        b'"service": "checkout"}'
    )

    [entry] = decode_records(raw, LogEntry)

    assert entry.message == "bad \ufffd\ufffd byte"
    assert entry.timestamp == INSTANT


def test_series_key_sorts_labels_and_leaves_out_service() -> None:
    point = MetricPoint(
        timestamp=INSTANT,
        metric_name="cpu",
        value=1.0,
        labels={"zone": "b", "service": "api", "environment": "prod", "az": "1"},
    )

    assert point.series == "api|cpu|az=1,environment=prod,zone=b"
    assert series_key("api", "cpu", {"service": "api"}) == "api|cpu|"
    other = point.model_copy(update={"labels": {"service": "api", "zone": "c"}})
    assert other.series != point.series


def anomaly_kwargs(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "metric_name": "cpu",
        "service": "api",
        "current_value": 1.0,
        "baseline_mean": 1.0,
        "baseline_std_dev": 0.1,
        "z_score": 3.0,
        "deviation_percent": 0.0,
        "severity": "medium",
        "detected_at": INSTANT,
    }
    base.update(over)
    return base


@pytest.mark.parametrize(
    "field", ["current_value", "baseline_mean", "baseline_std_dev", "z_score", "deviation_percent"]
)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_anomaly_refuses_nan_and_infinity(field: str, bad: float) -> None:
    with pytest.raises(ValidationError):
        Anomaly(**anomaly_kwargs(**{field: bad}))


def test_anomaly_serialises_to_strict_json() -> None:
    a = Anomaly(**anomaly_kwargs())

    assert a.kind == "metric"
    assert a.severity is Severity.MEDIUM
    assert "NaN" not in a.model_dump_json()


def test_severity_rank_order() -> None:
    ordered = [Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL]

    assert [s.rank for s in ordered] == [0, 1, 2, 3]
    assert max(Severity, key=lambda s: s.rank) is Severity.CRITICAL
    assert sorted(reversed(ordered), key=lambda s: s.rank) == ordered
    assert Severity("critical") is Severity.CRITICAL


# --------------------------------------------------------------------------- TraceContext


def test_a_trace_context_keeps_its_spans_in_order() -> None:
    ctx = TraceContext.model_validate_json(json.dumps({
        "trace_id": "t1", "service": "cart",
        "spans": [{"span_id": "b", "parent_span_id": "a", "at": 2.0}, {"at": 1.0}]}))
    assert [(s.span_id, s.parent_span_id, s.at) for s in ctx.spans] == [
        ("b", "a", 2.0), (None, None, 1.0)]


def test_a_trace_record_of_the_one_line_shape_is_one_span() -> None:
    ctx = TraceContext.model_validate({"trace_id": "t1", "service": "db", "span_id": "b",
                                       "parent_span_id": "a", "at": 5})
    assert [(s.span_id, s.parent_span_id, s.at) for s in ctx.spans] == [("b", "a", 5.0)]


@pytest.mark.parametrize("bad", [
    {"trace_id": "t1", "service": "db", "spans": []},
    {"trace_id": "", "service": "db", "at": 1},
    {"trace_id": "t1", "at": 1},
    {"trace_id": "t1", "service": "db", "spans": [{"span_id": "a"}]},
    {"trace_id": "t1", "service": "db", "spans": [{"at": 0}] * 257},
])
def test_a_bad_trace_record_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TraceContext.model_validate(bad)
