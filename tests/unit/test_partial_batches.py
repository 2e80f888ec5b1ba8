"""One bad item never sinks a batch; time and order (issue 12, H2).

Decoders keep the valid items of a body and say, per refused item, why; the
metrics agent drops samples from the future and samples it applied already, so
neither moves a baseline nor drives series expiry. Each test names the defect it
guards against; each failed on the code before (69cbc47).
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from autopilot.formats import Decoded
from autopilot.formats.deployments import decode_deployments
from autopilot.formats.exposition import decode_exposition, sample_time
from autopilot.formats.levels import is_error_level
from autopilot.formats.logs import MAX_MESSAGE_CHARS, decode_logs
from autopilot.formats.metrics_json import decode_metrics
from autopilot.formats.remote_write import decode_remote_write, encode_write_request
from autopilot.models import LogEntry
from autopilot.series import SeriesLimits, newer_only, split_future
from autopilot.settings import load_settings
from tests.factories import metric, metric_point

T0 = 1_764_410_400  # 2025-11-29T10:00:00Z
NOW = datetime(2025, 11, 29, 10, 0, tzinfo=UTC)
YEAR_2100_S = 4_102_444_800


# --- one bad item never sinks a batch ------------------------------------------------

def test_an_exposition_body_with_one_broken_line_keeps_the_other_samples() -> None:
    body = (
        "# TYPE jobs_total counter\n"
        'jobs_total{job="api"} 5\n'
        'queue_depth{job="api",msg="he said "hi""} 4\n'  # unescaped quotes
        'temperature{job="api"} 21.5\n'
    )

    decoded = decode_exposition(body, NOW)

    assert sorted(p.metric_name for p in decoded.records) == ["jobs_total", "temperature"]
    assert next(p for p in decoded.records if p.metric_name == "jobs_total").metric_type \
        == "counter"
    (rejected,) = decoded.rejected()
    assert rejected["item"] == 2 and rejected["code"] == "bad_line"
    assert "line 3" in rejected["reason"]
    assert decoded.raw[2].startswith("queue_depth")


def test_a_json_metrics_batch_with_one_1e309_keeps_the_others() -> None:
    body = (b'[{"timestamp": 1764410400, "metric_name": "a", "value": 1, '
            b'"labels": {"service": "s"}},'
            b' {"timestamp": 1764410400, "metric_name": "b", "value": 1e309, '
            b'"labels": {"service": "s"}},'
            b' {"timestamp": 1764410400, "metric_name": "c", "value": 3, '
            b'"labels": {"service": "s"}}]')

    decoded = decode_metrics(body)

    assert [p.metric_name for p in decoded.records] == ["a", "c"]
    assert decoded.record_items == [0, 2]
    assert [(r["item"], r["code"]) for r in decoded.rejected()] == [(1, "non_finite")]
    assert decoded.raw[1]["metric_name"] == "b"  # the item as sent, for the dead letter


def test_a_remote_write_series_at_an_absurd_time_does_not_sink_the_request() -> None:
    body = encode_write_request([
        ({"__name__": "up", "job": "a"}, [(1.0, T0 * 1000)]),
        ({"__name__": "up", "job": "b"}, [(1.0, 2**62)]),  # far beyond year 9999
        ({"__name__": "up", "job": "c"}, [(1.0, T0 * 1000)]),
    ])

    decoded = decode_remote_write(body)

    assert sorted(p.service for p in decoded.records) == ["a", "c"]
    assert [(r["item"], r["code"]) for r in decoded.rejected()] == [(1, "bad_timestamp")]


def test_numeric_missing_and_unknown_log_levels_are_kept_and_counted() -> None:
    lines = [
        {"time": T0 * 1000 + i, "level": level, "msg": f"line {i}", "service": "pino"}
        for i, level in enumerate([30, 50, 60, 40, 20, 10, "LOUD", None, "info", 50])
    ]
    lines[7].pop("level")
    body = "\n".join(json.dumps(line) for line in lines).encode()

    decoded = decode_logs(body)

    assert decoded.errors == []
    assert len(decoded.records) == 10
    errors = [e.message for e in decoded.records if is_error_level(e.level)]
    assert errors == ["line 1", "line 2", "line 9"]  # pino 50, 60, 50
    assert decoded.records[6].level == decoded.records[7].level == "UNKNOWN"
    assert decoded.records[6].labels == {"level_sent": "LOUD"}
    assert decoded.defaulted == {"unknown_level": 1, "missing_level": 1}


def test_a_stack_trace_between_json_lines_joins_the_error_line_it_belongs_to() -> None:
    body = "\n".join([
        json.dumps({"ts": T0, "level": "info", "msg": "request", "service": "api"}),
        json.dumps({"ts": T0 + 1, "level": "error", "msg": "charge failed", "service": "api"}),
        "Traceback (most recent call last):",
        '  File "pay.py", line 3, in charge',
        "ValueError: card declined",
        "",
        json.dumps({"ts": T0 + 2, "level": "info", "msg": "next", "service": "api"}),
        "2025-11-29T10:00:03Z WARN a text line between them",
        "    at com.shop.Cart.add(Cart.java:42)",
    ]).encode()

    decoded = decode_logs(body, "api")

    assert decoded.errors == []
    first, error, after, text = decoded.records
    assert error.message == (
        'charge failed\nTraceback (most recent call last):\n  File "pay.py", line 3, in '
        "charge\nValueError: card declined"
    )
    assert (first.message, after.message) == ("request", "next")
    assert text.message == "a text line between them\n    at com.shop.Cart.add(Cart.java:42)"
    assert text.service == "api"  # a text line takes the key's / ?service= service
    assert decoded.record_items == [0, 1, 6, 7]


def test_lines_before_the_first_entry_are_one_refused_item_and_the_rest_is_kept() -> None:
    decoded = decode_logs(b"garbage\nmore garbage\n2025-11-29T10:00:05Z ERROR kept\n", "svc")

    assert [e.message for e in decoded.records] == ["kept"]
    (rejected,) = decoded.rejected()
    assert rejected["item"] == 0 and rejected["code"] == "bad_line"
    assert decoded.raw[0] == "garbage\nmore garbage"


def test_an_overlong_message_is_cut_not_refused() -> None:
    decoded = decode_logs(json.dumps(
        {"ts": T0, "level": "error", "msg": "x" * (MAX_MESSAGE_CHARS + 10), "service": "a"}
    ).encode())

    (entry,) = decoded.records
    assert len(entry.message) == MAX_MESSAGE_CHARS
    assert decoded.defaulted == {"message_truncated": 1}


def test_a_deployment_without_a_version_is_kept_as_unknown() -> None:
    body = json.dumps([
        {"timestamp": T0, "service": "api"},
        {"timestamp": T0, "service": "api", "version": None},
        {"timestamp": T0, "service": "api", "version": "v2"},
    ]).encode()

    decoded = decode_deployments(body)

    assert [d.version for d in decoded.records] == ["unknown", "unknown", "v2"]
    assert decoded.defaulted == {"missing_version": 2}
    assert decoded.errors == []


def test_rejected_lists_each_item_once_in_input_order() -> None:
    decoded = Decoded()
    decoded.error(3, "timestamp", "missing")
    decoded.error(1, "labels", "no service label")
    decoded.error(3, "message", "missing")

    assert decoded.rejected() == [
        {"item": 1, "reason": "labels: no service label", "code": "no_service"},
        {"item": 3, "reason": "timestamp: missing; message: missing", "code": "bad_timestamp"},
    ]
    assert decoded.rejected_counts() == {"no_service": 1, "bad_timestamp": 1}


# --- time -------------------------------------------------------------------------

@pytest.mark.parametrize("token", ["1714557600.123", "1714557600123"])
def test_openmetrics_seconds_and_exposition_milliseconds_give_the_same_time(token: str) -> None:
    (point,) = decode_exposition(f'up{{job="a"}} 4 {token}\n', NOW).records

    assert point.timestamp == datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=UTC)


def test_sample_time_reads_the_token_back_by_magnitude() -> None:
    assert sample_time(1714557600.123) == pytest.approx(1714557600.123)  # ms token
    assert sample_time(1714557.600123) == pytest.approx(1714557600.123)  # s token


def _points(*stamps: float, service: str = "s") -> Decoded:
    decoded = Decoded()
    for i, ts in enumerate(stamps):
        decoded.add(metric_point(1.0, at=ts, name=f"m{i}", service=service), i)
    return decoded


def test_a_sample_beyond_max_future_is_refused_and_one_within_is_kept() -> None:
    now = float(T0)
    decoded = _points(now, now + 3000, now + 3700, YEAR_2100_S)

    decoded.enforce_time_limits(now, 3600, None)

    assert [p.metric_name for p in decoded.records] == ["m0", "m1"]
    assert [(r["item"], r["code"]) for r in decoded.rejected()] == [
        (2, "future_timestamp"), (3, "future_timestamp")]
    assert "AUTOPILOT_MAX_FUTURE_S" in decoded.rejected()[0]["reason"]
    assert decoded.raw[3]["metric_name"] == "m3"


def test_the_past_limit_is_off_unless_set() -> None:
    now = float(T0)
    old = 1_394_334_000.0  # 2014: the demo's and NAB's data

    unlimited = _points(old)
    unlimited.enforce_time_limits(now, 3600, None)
    assert len(unlimited.records) == 1

    limited = _points(old, now - 10)
    limited.enforce_time_limits(now, 3600, 86_400)
    assert [p.metric_name for p in limited.records] == ["m1"]
    assert limited.rejected()[0]["code"] == "past_timestamp"


def test_time_limit_settings_default_to_one_hour_ahead_and_no_past_limit() -> None:
    s = load_settings({})
    assert (s.max_future_s, s.max_past_s) == (3600.0, None)
    assert SeriesLimits.from_settings(s).max_future_s == 3600.0
    assert SeriesLimits.from_settings(load_settings({"AUTOPILOT_MAX_FUTURE_S": "0"})) \
        .max_future_s is None
    assert SeriesLimits().max_future_s is None  # backtest, benchmarks: no limit


def test_split_future_drops_only_the_future_samples() -> None:
    by_series = {"a": ["a1", "a2"], "b": ["b1"]}
    stamps = {"a": [10.0, 99.0], "b": [99.0]}

    assert split_future(by_series, stamps, 50.0) == 2
    assert by_series == {"a": ["a1"]} and stamps == {"a": [10.0]}


# --- order ------------------------------------------------------------------------

def _p(value: float) -> SimpleNamespace:
    return SimpleNamespace(value=value)


def test_newer_only_drops_older_samples_and_repeats_but_keeps_a_new_value_at_one_time() -> None:
    pts = [_p(1.0), _p(2.0), _p(3.0), _p(9.0), _p(4.0)]
    stamps = [5.0, 10.0, 10.0, 8.0, 11.0]

    kept = newer_only(pts, stamps, last=5.0, last_value=1.0)

    # 5.0/1.0 repeats the last applied; 10.0/3.0 is a new value at the same time
    # (kept: NAB's daylight-saving rows); 8.0 is older than 10.0.
    assert [p.value for p in kept] == [2.0, 3.0, 4.0]
    in_order = [_p(1.0), _p(2.0)]
    assert newer_only(in_order, [1.0, 2.0], float("-inf")) is in_order


def _run_agent(records: list[list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch,
               limits: SeriesLimits, first_offset: int = 0,
               tables: dict[bytes, Any] | None = None,
               index: dict[bytes, Any] | None = None) -> tuple[dict, dict]:
    """Run the metrics agent's ``process`` over ``records`` (in-memory tables)."""
    from autopilot.agents import metrics as agent

    from autopilot.detection import DetectorConfig
    from tests.events import keyed_metrics_event, metrics_agent_in_memory

    tables = {} if tables is None else tables
    index = {} if index is None else index
    metrics_agent_in_memory(monkeypatch, tables, index)
    config = DetectorConfig.from_settings(load_settings({}))

    async def run() -> None:
        for n, items in enumerate(records):
            offset = first_offset + n
            event = keyed_metrics_event(json.dumps(items).encode(), offset)
            await agent.process(event, config, limits)

    asyncio.run(run())
    return tables, index


def test_one_sample_from_2100_does_not_expire_the_services_other_series(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = time.time()
    history = [[metric("svc", 100.0 + i % 3, now - 600 + 15 * i, name="a") for i in range(20)]]
    future = [[metric("svc", 1.0, YEAR_2100_S, name="b")]]
    limits = SeriesLimits(max_future_s=3600.0)

    tables, index = _run_agent(history + future, monkeypatch, limits)

    assert b"svc|a|" in tables  # not expired
    assert b"svc|b|" not in tables  # never applied
    assert set(json.loads(json.dumps(index[b"svc"]))["series"]) == {"svc|a|"}


def test_replayed_and_out_of_order_samples_do_not_move_the_baseline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    samples = [metric("svc", 100.0 + (i % 5), T0 + 15 * i, name="lat") for i in range(30)]
    tables, index = _run_agent([samples], monkeypatch, SeriesLimits())
    once = dict(tables[b"svc|lat|"])

    # A WAL replay or the HA pair's second copy: the same samples again, and some
    # older ones with other values, under new input offsets.
    late = [metric("svc", 5000.0, T0 + 15 * i + 7, name="lat") for i in range(10)]
    _run_agent([samples, late], monkeypatch, SeriesLimits(), first_offset=1,
               tables=tables, index=index)

    again = tables[b"svc|lat|"]
    assert {k: v for k, v in again.items() if k != "offsets"} == \
        {k: v for k, v in once.items() if k != "offsets"}
    assert again["count"] == 30 and again["last_value"] == samples[-1]["value"]


def test_log_entry_accepts_unknown_and_pino_levels() -> None:
    entry = LogEntry.model_validate({"timestamp": T0, "level": 50, "message": "x",
                                     "service": "a"})
    assert entry.level == "50" and is_error_level(entry.level)
    assert not is_error_level(LogEntry.model_validate(
        {"timestamp": T0, "level": "UNKNOWN", "message": "x", "service": "a"}).level)
