"""The recent samples charts draw live in the series' ``baselines`` value
(:func:`autopilot.agents.charts.recent_after`): one table write per series and record.
A series an older worker wrote keeps them in the ``recent_samples`` table until its next
write moves them."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from autopilot.agents import charts

from autopilot.charts import SampleRing
from autopilot.models import MetricPoint
from tests.factories import metric

KEY = b"checkout|http_latency_p99_ms|"


def _points(*pairs: tuple[float, float]) -> list[MetricPoint]:
    return [MetricPoint.model_validate(metric("checkout", v, t)) for t, v in pairs]


@pytest.fixture
def legacy(monkeypatch: pytest.MonkeyPatch) -> dict[bytes, Any]:
    table: dict[bytes, Any] = {}
    monkeypatch.setattr(charts, "recent_samples", table)
    return table


def test_the_first_samples_of_a_series_start_its_ring(legacy: dict[bytes, Any]) -> None:
    recent = charts.recent_after(KEY, None, _points((100.0, 1.0), (115.0, 2.0)))
    assert recent is not None
    assert SampleRing.from_dict(recent).samples == [(100.0, 1.0), (115.0, 2.0)]
    assert legacy == {}  # nothing written to the older table


def test_samples_join_the_ring_in_the_baselines_value_and_replays_change_nothing(
        legacy: dict[bytes, Any]) -> None:
    first = charts.recent_after(KEY, None, _points((100.0, 1.0), (115.0, 2.0)))
    stored = {"mean": 1.5, charts.RECENT_KEY: first}
    # A replay of the same samples and a late one: ignored; a newer one joins.
    again = charts.recent_after(KEY, stored, _points((100.0, 1.0), (115.0, 2.0),
                                                     (110.0, 9.0), (130.0, 3.0)))
    assert SampleRing.from_dict(again).samples == [(100.0, 1.0), (115.0, 2.0),
                                                     (130.0, 3.0)]


def test_a_series_an_older_worker_wrote_moves_its_samples_over(
        legacy: dict[bytes, Any]) -> None:
    legacy[KEY] = SampleRing().append_many([(50.0, 7.0), (65.0, 8.0)]).to_dict()
    recent = charts.recent_after(KEY, {"mean": 7.5}, _points((80.0, 9.0)))
    assert SampleRing.from_dict(recent).samples == [(50.0, 7.0), (65.0, 8.0), (80.0, 9.0)]
    assert KEY not in legacy  # moved, not copied
    # Once the baselines value holds them, the older table is not read.
    legacy[KEY] = SampleRing().append_many([(1.0, 0.0)]).to_dict()
    later = charts.recent_after(KEY, {charts.RECENT_KEY: recent}, _points((95.0, 1.0)))
    assert SampleRing.from_dict(later).samples[0] == (50.0, 7.0)


def test_a_damaged_ring_starts_afresh_and_says_so(
        legacy: dict[bytes, Any], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        recent = charts.recent_after(KEY, {charts.RECENT_KEY: {"t": "%%%", "v": 3}},
                                     _points((100.0, 1.0)))
    assert SampleRing.from_dict(recent).samples == [(100.0, 1.0)]
    assert "starting the series' samples afresh" in caplog.text


def test_no_samples_and_none_kept_give_none(legacy: dict[bytes, Any]) -> None:
    assert charts.recent_after(KEY, None, []) is None
