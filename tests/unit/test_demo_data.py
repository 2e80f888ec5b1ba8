"""Unit tests of the demo's pure parts: NAB data, generated traffic, summary scoring."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from autopilot.demo import (
    DEPLOY_AT,
    DEPLOY_VERSION,
    ERROR_LATENCY_MS,
    METRIC,
    SERVICE,
    generate_traffic,
    load_series,
    load_windows,
    summarise,
)
from autopilot.models import (
    DeploymentEvent,
    Incident,
    LogEntry,
    MetricPoint,
    decode_records,
)
from tests.factories import incident


@pytest.fixture(scope="module")
def series():
    return load_series()


@pytest.fixture(scope="module")
def traffic(series):
    return list(generate_traffic(series))


def test_load_series_gives_4032_samples_from_2014_03_07_0341_utc(series) -> None:
    assert len(series) == 4032
    assert series[0].at == datetime(2014, 3, 7, 3, 41, tzinfo=UTC)
    assert series[0].text == "2014-03-07 03:41:00"
    assert series[-1].at == datetime(2014, 3, 21, 3, 41, tzinfo=UTC)
    # Non-decreasing, not strictly: the NAB file repeats 2014-03-09 03:00:00 twelve
    # times (the US daylight-saving change), and the demo replays it as it is.
    assert all(b.at >= a.at for a, b in zip(series, series[1:], strict=False))
    assert sum(s.text == "2014-03-09 03:00:00" for s in series) == 12
    assert all(s.value >= 0 for s in series)


def test_load_windows_gives_three_ordered_utc_windows() -> None:
    windows = load_windows()

    assert len(windows) == 3
    for start, end in windows:
        assert start.tzinfo is not None and start.utcoffset() == timedelta(0)
        assert start < end
    assert windows == sorted(windows)


def test_generate_traffic_is_deterministic(series, traffic) -> None:
    assert list(generate_traffic(series)) == traffic
    assert list(generate_traffic(series, seed=8)) != traffic


def event_times(topic: str, value: bytes) -> list[datetime]:
    models: dict[str, type[MetricPoint | LogEntry | DeploymentEvent]] = {
        "autopilot.metrics": MetricPoint,
        "autopilot.logs": LogEntry,
        "autopilot.deployments": DeploymentEvent,
    }
    model = models[topic]
    return [r.timestamp for r in decode_records(value, model)]


def test_generate_traffic_is_valid_keyed_and_ordered_by_event_time(series, traffic) -> None:
    # Each sample yields its metric record, then its log batch (lines inside the
    # sample's 5-minute interval, sorted); samples come in time order.
    assert len(traffic) == 2 * len(series) + 1
    metric_times: list[datetime] = []
    current: datetime | None = None
    for topic, key, value in traffic:
        assert key == SERVICE.encode()
        times = event_times(topic, value)
        assert times == sorted(times)
        if topic == "autopilot.metrics":
            [current] = times
            metric_times.append(current)
        elif topic == "autopilot.logs":
            assert current is not None
            assert all(current <= t < current + timedelta(minutes=5) for t in times)
    assert metric_times == [s.at for s in series]
    assert metric_times == sorted(metric_times)


def test_one_deployment_just_before_the_first_sample_after_deploy_at(series, traffic) -> None:
    deployments = [i for i, (topic, _, _) in enumerate(traffic) if topic == "autopilot.deployments"]
    assert len(deployments) == 1
    index = deployments[0]
    [event] = decode_records(traffic[index][2], DeploymentEvent)
    assert event.timestamp == DEPLOY_AT == datetime(2014, 3, 18, 22, 10, tzinfo=UTC)
    assert event.version == DEPLOY_VERSION
    assert event.service == SERVICE

    first_after = next(s for s in series if s.at >= DEPLOY_AT)
    topic, _, value = traffic[index + 1]
    assert topic == "autopilot.metrics"
    [point] = decode_records(value, MetricPoint)
    assert point.timestamp == first_after.at
    # The record before it belongs to the last sample before DEPLOY_AT.
    previous_topic, _, previous_value = traffic[index - 1]
    assert all(t < DEPLOY_AT for t in event_times(previous_topic, previous_value))


def test_error_lines_appear_only_when_latency_is_above_the_threshold(traffic) -> None:
    pairs = [
        (traffic[i], traffic[i + 1])
        for i in range(len(traffic) - 1)
        if traffic[i][0] == "autopilot.metrics"
    ]
    assert len(pairs) == 4032
    with_errors = 0
    for (_, _, metric), (log_topic, _, logs) in pairs:
        assert log_topic == "autopilot.logs"
        [point] = decode_records(metric, MetricPoint)
        assert point.metric_name == METRIC and point.service == SERVICE
        entries = decode_records(logs, LogEntry)
        errors = [e for e in entries if e.level == "ERROR"]
        if point.value > ERROR_LATENCY_MS:
            assert len(errors) >= 6
            with_errors += 1
        else:
            assert errors == []
    assert 0 < with_errors < 4032


def record(
    inc_id: str, opened: datetime, status: str = "opened", updated: datetime | None = None
) -> Incident:
    """One incident record as the demo reads it back: the first revision notifies."""
    return incident(
        id=inc_id,
        service=SERVICE,
        status=status,
        revision=1 if status == "opened" else 2,
        notify=status == "opened",
        trigger_reason="test",
        opened_at=opened,
        updated_at=updated or opened,
        closed_at=(updated or opened) if status == "closed" else None,
        anomalies=[],
    )


def test_summarise_marks_a_window_hit_only_when_an_incident_opened_inside_it() -> None:
    w1 = (datetime(2014, 3, 14, 3, 31, tzinfo=UTC), datetime(2014, 3, 14, 14, 41, tzinfo=UTC))
    w2 = (datetime(2014, 3, 18, 17, 6, tzinfo=UTC), datetime(2014, 3, 19, 4, 16, tzinfo=UTC))
    w3 = (datetime(2014, 3, 20, 21, 26, tzinfo=UTC), datetime(2014, 3, 21, 3, 41, tzinfo=UTC))
    before_w2 = w2[0] - timedelta(hours=1)
    incidents = [
        record("inc-a", w1[0]),  # opened exactly at the start: inside
        record("inc-b", before_w2),  # opened before w2, then active inside it
        record("inc-b", before_w2, "updated", updated=w2[0] + timedelta(hours=1)),
        record("inc-b", before_w2, "closed", updated=w2[1]),
        record("inc-c", datetime(2014, 3, 10, tzinfo=UTC)),  # outside every window
        record("inc-d", w3[1]),  # exactly at the end: inside
    ]

    summary = summarise(incidents, [w1, w2, w3], anomalies=17, alerts=4, samples=4032)

    assert [w["hit"] for w in summary["windows"]] == [True, False, True]
    assert [w["incidents"] for w in summary["windows"]] == [["inc-a"], [], ["inc-d"]]
    assert summary["windows_hit"] == 2
    assert [r["id"] for r in summary["incidents"]] == ["inc-c", "inc-a", "inc-b", "inc-d"]
    inside = {r["id"]: r["in_labelled_window"] for r in summary["incidents"]}
    assert inside == {"inc-a": True, "inc-b": False, "inc-c": False, "inc-d": True}
    assert summary["incidents_in_windows"] == 2
    assert summary["incidents_outside_windows"] == 2
    assert (summary["anomalies"], summary["alerts"], summary["samples"]) == (17, 4, 4032)
    json.dumps(summary, allow_nan=False)


def test_summarise_with_no_incidents_hits_nothing() -> None:
    summary = summarise([], load_windows(), anomalies=0, alerts=0, samples=0)

    assert summary["windows_hit"] == 0
    assert all(not w["hit"] for w in summary["windows"])
    assert summary["incidents"] == []
