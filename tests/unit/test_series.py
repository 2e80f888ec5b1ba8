"""Unit tests of autopilot.series: the per-service series cap and event-time expiry."""

from __future__ import annotations

import json

from autopilot.series import SeriesIndex, SeriesLimits

LIMITS = SeriesLimits(max_series=3, ttl_s=1000.0)


def test_new_series_are_admitted_up_to_the_cap_then_dropped() -> None:
    index, admitted, dropped = SeriesIndex().admit({"a": 1.0, "b": 1.0}, LIMITS)
    assert admitted == {"a", "b"} and not dropped
    index, admitted, dropped = index.admit({"a": 2.0, "c": 2.0, "d": 2.0}, LIMITS)
    assert len(index.last_seen) == 3
    assert "a" in admitted and len(admitted) == 2 and len(dropped) == 1
    _, admitted, dropped = index.admit({"e": 3.0, "a": 3.0}, LIMITS)
    assert admitted == {"a"} and dropped == {"e"}  # known series still pass at the cap


def test_last_seen_is_only_rewritten_when_it_moves_by_a_hundredth_of_the_ttl() -> None:
    index, _, _ = SeriesIndex().admit({"a": 100.0}, LIMITS)
    same, admitted, _ = index.admit({"a": 105.0}, LIMITS)
    assert same is index and admitted == {"a"}  # nothing to write
    moved, _, _ = index.admit({"a": 111.0}, LIMITS)
    assert moved is not index and moved.last_seen["a"] == 111.0


def test_series_not_seen_for_the_ttl_expire_and_the_check_is_amortised() -> None:
    index, _, _ = SeriesIndex().admit({"old": 0.0, "new": 900.0}, LIMITS)
    index, expired = index.expire(900.0, LIMITS)
    assert expired == []
    index, _, _ = index.admit({"new": 1500.0}, LIMITS)
    same, expired = index.expire(950.0, LIMITS)  # < ttl/10 since the last check
    assert expired == [] and same is index
    index, expired = index.expire(1500.0, LIMITS)
    assert expired == ["old"]
    assert set(index.last_seen) == {"new"}


def test_index_round_trips_through_json_and_reads_the_older_list_form() -> None:
    index, _, _ = SeriesIndex().admit({"a": 1.0, "b": 2.0}, LIMITS)
    data = json.loads(json.dumps(index.to_dict()))
    assert SeriesIndex.from_dict(data) == index
    old = SeriesIndex.from_dict({"series": ["x", "y"]})
    assert old.keys == ["x", "y"]


def test_an_index_loaded_from_a_stored_value_never_changes_that_value() -> None:
    stored = {"series": {"a": 1.0, "b": 2.0}, "checked": 0.0}
    index = SeriesIndex.from_dict(stored)
    index.admit({"a": 10_000.0, "c": 3.0}, LIMITS)
    index.expire(1e9, LIMITS)
    assert stored == {"series": {"a": 1.0, "b": 2.0}, "checked": 0.0}
    assert SeriesIndex.from_dict({"series": {"a": 1, "b": "2"}}).last_seen == {"a": 1.0, "b": 2.0}
