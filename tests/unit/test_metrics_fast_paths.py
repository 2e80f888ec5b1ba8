"""The fast paths of the metrics pipeline give exactly what the general paths give.

``decode_metrics`` validates seed MetricPoints in one pass of pydantic-core's JSON
parser when it can; ``encode_items`` serialises MetricPoints with pydantic-core;
``parse_timestamp`` skips ``float()`` for RFC 3339 strings. Each is compared with the
general path on generated inputs, including the awkward ones (NaN literals, falsy or
missing service labels, Telegraf batches, numeric strings, non-ASCII text).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from autopilot.agents.ingest import encode_items
from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot.formats import loads_strict
from autopilot.formats.metrics_json import decode_metrics, map_metric_objects
from autopilot.models import MetricPoint, parse_timestamp
from tests.factories import metric

SCALARS = st.sampled_from([
    "", "checkout", "0", "é✓", "NaN", "2026-11-29T10:00:00Z", "1764410400", " 42 ", "x" * 300,
    0, 1, -3, 0.0, -0.0, 1.5, 1764410400, 1764410400123, 1e400, True, False, None,
    float("nan"), float("inf"), [], {}, [1], {"a": 1},
])
LABELS = st.one_of(
    st.dictionaries(st.sampled_from(["service", "app", "job", "env", "__name__"]), SCALARS,
                    max_size=4),
    SCALARS,
)
ITEM = st.dictionaries(
    st.sampled_from(["timestamp", "metric_name", "value", "labels", "metric_type", "name",
                     "fields", "tags", "metrics", "extra"]),
    st.one_of(SCALARS, LABELS, st.sampled_from(["counter", "gauge", "Counter"])),
).map(lambda d: d)
GOOD_TS = st.sampled_from([1764410400, 1764410400.25, 1764410400123, "2026-11-29T10:00:00Z",
                           "2026-11-29 10:00:00", "1764410400"])
SEEDISH = st.fixed_dictionaries(
    {"timestamp": st.one_of(GOOD_TS, GOOD_TS, SCALARS),
     "metric_name": st.one_of(st.just("api_latency_ms"), SCALARS),
     "value": st.one_of(st.floats(allow_nan=False), st.integers(), SCALARS),
     "labels": st.one_of(
         st.fixed_dictionaries({"service": st.one_of(st.just("checkout"), SCALARS)},
                               optional={"app": SCALARS, "env": SCALARS}),
         LABELS)},
    optional={"metric_type": st.sampled_from(["counter", "gauge", "Counter", None]),
              "metrics": st.lists(SCALARS, max_size=2), "name": SCALARS},
)
BODY = st.one_of(ITEM, SEEDISH, st.lists(st.one_of(SEEDISH, ITEM), max_size=4),
                 st.lists(SEEDISH, min_size=1, max_size=4))


def _general(raw: bytes) -> Any:
    try:
        decoded = map_metric_objects(loads_strict(raw))
    except ValueError as exc:
        return ("error", str(exc))
    return (decoded.records, decoded.errors, decoded.skipped)


def _decoded(raw: bytes) -> Any:
    try:
        decoded = decode_metrics(raw)
    except ValueError as exc:
        return ("error", str(exc))
    return (decoded.records, decoded.errors, decoded.skipped)


@settings(max_examples=600, deadline=None)
@given(BODY, st.booleans())
def test_decode_metrics_matches_the_general_path(body: Any, ascii_only: bool) -> None:
    raw = json.dumps(body, ensure_ascii=ascii_only).encode()
    assert _decoded(raw) == _general(raw)


def _point(**changes: Any) -> dict[str, Any]:
    """A seed-shaped sample whose keys ``changes`` replace or add (``labels`` whole)."""
    return {**metric(value=1.0, ts=1764410400, name="m"), **changes}


AWKWARD = [
    # NaN / Infinity literals: strict JSON refuses them wherever they are
    [_point(labels={"service": "checkout", "x": float("nan")})],
    [_point(labels={"service": "checkout", "x": float("inf")})],
    # a falsy service is filled from the labels (str() of each) by the general path
    [_point(labels={"service": 0, "flag": True})],
    [_point(labels={"service": None, "app": "web"})],
    [_point(labels={"service": False, "x": None})],
    [_point(labels={"service": {}, "x": {"a": 1}})],
    [_point(labels={"service": "", "job": "node"})],
    # an object with a "metrics" list is a Telegraf batch, even with metric_name
    {**_point(), "metrics": [{"name": "cpu", "fields": {"value": 1},
                              "tags": {"service": "s"}, "timestamp": 1764410400}]},
    [],
    [_point(), 3],
    _point(metric_type="Counter"),
]


@pytest.mark.parametrize("body", AWKWARD)
def test_awkward_bodies_get_the_general_paths_answer(body: Any) -> None:
    raw = json.dumps(body).encode()
    assert _decoded(raw) == _general(raw)
    escaped = raw.replace(b'"metrics"', b'"\\u006detrics"')
    assert _decoded(escaped) == _general(escaped)


def test_decode_metrics_takes_the_fast_path_for_a_valid_list() -> None:
    raw = json.dumps([{"timestamp": 1764410400 + i, "metric_name": "m", "value": i,
                       "labels": {"service": "checkout", "env": "prod"}} for i in range(3)])
    decoded = decode_metrics(raw.encode())
    assert decoded.errors == [] and len(decoded.records) == 3
    assert decoded.records == _general(raw.encode())[0]


@settings(max_examples=300, deadline=None)
@given(st.lists(SEEDISH, min_size=1, max_size=5))
def test_encode_items_gives_the_same_json_values_as_model_dump(body: list[Any]) -> None:
    points = [p for p in decode_metrics(json.dumps(body).encode()).records
              if isinstance(p, MetricPoint)] if _general(json.dumps(body).encode())[0] != "error" \
        else []
    if not points:
        return
    encoded = encode_items(points)
    assert json.loads(encoded) == [p.model_dump(mode="json") for p in points]
    assert [MetricPoint.model_validate(d) for d in json.loads(encoded)] == points


@settings(max_examples=500, deadline=None)
@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),  # noqa: DTZ001
       st.sampled_from([None, UTC, timezone(timedelta(hours=5, minutes=30))]),
       st.sampled_from(["T", " "]), st.sampled_from(["", "Z", "z"]))
def test_rfc3339_strings_parse_as_before(dt: datetime, tz: Any, sep: str, suffix: str) -> None:
    text = dt.replace(tzinfo=tz).isoformat(sep=sep) + ("" if tz is not None else suffix)
    expected = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if expected.tzinfo is None:
        expected = expected.replace(tzinfo=UTC)
    got = parse_timestamp(text)
    assert got == expected and got.tzinfo is UTC


def test_malformed_rfc3339_and_numeric_strings_keep_their_answers() -> None:
    assert parse_timestamp("1764410400") == datetime(2025, 11, 29, 10, 0, tzinfo=UTC)
    assert parse_timestamp(" 1764410400000 ") == datetime(2025, 11, 29, 10, 0, tzinfo=UTC)
    for bad in ("2025-13-29T10:00:00Z", "2025-11-29Tnoon", "2025-"):
        try:
            parse_timestamp(bad)
        except ValueError as exc:
            assert str(exc) == f"timestamp {bad!r} is neither RFC 3339 nor an epoch number"
        else:
            raise AssertionError(bad)
