"""Unit tests of autopilot.errorrate: error levels, per-window counts, spike detection."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from autopilot.errorrate import ErrorRateConfig, ErrorRateState, is_error_level, step
from autopilot.models import LogEntry, Severity
from autopilot.settings import load_settings
from tests.factories import log_entry

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)  # a minute boundary
CONFIG = ErrorRateConfig()


def line(
    at: datetime, level: str = "INFO", message: str = "ok", service: str = "checkout"
) -> LogEntry:
    return log_entry(message, at=at, level=level, service=service)


def minute(m: float, s: float = 0.0) -> datetime:
    return T0 + timedelta(minutes=m, seconds=s)


class Feeder:
    """Applies one log line per source record with increasing offsets."""

    def __init__(self, config: ErrorRateConfig = CONFIG) -> None:
        self.state = ErrorRateState()
        self.offset = 0
        self.config = config
        self.anomalies: list = []

    def __call__(self, *entries: LogEntry) -> list:
        self.state, out = step(self.state, list(entries), self.offset, self.config)
        self.offset += 1
        self.anomalies.extend(out)
        return out


def quiet_history(feed: Feeder, minutes: int = 10) -> None:
    for m in range(minutes):
        feed(line(minute(m, 10)), line(minute(m, 40)))


# --------------------------------------------------------------------------- levels


@pytest.mark.parametrize(
    "level",
    [
        "error",
        "ERROR",
        "ERR",
        "err",
        "Critical",
        "crit",
        "fatal",
        "FATAL",
        "panic",
        "emerg",
        "emergency",
        "alert",
        "severe",
        " Error ",
        "0",
        "1",
        "2",
        "3",
    ],
)
def test_error_level_synonyms_count_as_errors(level: str) -> None:
    assert is_error_level(level)


@pytest.mark.parametrize(
    "level", ["4", "5", "6", "7", "warn", "WARNING", "info", "INFO", "debug", "trace", "notice", ""]
)
def test_other_levels_are_not_errors(level: str) -> None:
    assert not is_error_level(level)


# --------------------------------------------------------------------------- spikes


def test_spike_after_quiet_history_emits_exactly_one_anomaly_per_window() -> None:
    feed = Feeder()
    quiet_history(feed, 10)
    assert feed.anomalies == []

    for s in range(20):
        feed(line(minute(10, s), "ERROR", "db timeout"))

    assert len(feed.anomalies) == 1
    a = feed.anomalies[0]
    assert a.kind == "error_rate"
    assert a.metric_name == "error_rate"
    assert a.service == "checkout"
    # Detected as soon as the window held min_count errors (history all 0: z = 5).
    assert a.current_value == 5.0
    assert a.baseline_mean == 0.0
    assert a.baseline_std_dev == 0.0
    assert a.z_score == pytest.approx(5.0)
    assert a.severity is Severity.CRITICAL
    assert a.detected_at == minute(10, 4)
    assert feed.state.errors == 20
    assert feed.state.flagged


def test_a_spike_in_the_next_window_while_firing_is_not_a_second_alert() -> None:
    feed = Feeder()
    quiet_history(feed, 10)
    for s in range(10):
        feed(line(minute(10, s), "ERROR"))
    for s in range(30):
        feed(line(minute(11, s), "ERROR"))

    # Still firing, as severe, and AUTOPILOT_SIGNAL_RESEND_S (300 s) has not passed.
    assert len(feed.anomalies) == 1
    assert feed.state.firing_mean == 0.0 and feed.state.firing_rank == 3


def test_a_spike_in_the_next_window_is_re_sent_once_the_resend_interval_passed() -> None:
    feed = Feeder(ErrorRateConfig(resend_s=60.0))
    quiet_history(feed, 10)
    for s in range(10):
        feed(line(minute(10, s), "ERROR"))
    for s in range(30):
        feed(line(minute(11, s), "ERROR"))

    assert len(feed.anomalies) == 2
    first, second = feed.anomalies
    assert first.state == second.state == "firing"
    assert first.detected_at < minute(11)
    assert second.detected_at >= minute(11)
    # The second window's baseline includes the first spike (10 errors in 11 windows).
    assert second.baseline_mean == pytest.approx(10 / 11)
    assert second.current_value > second.baseline_mean


def test_cold_start_fewer_than_min_buckets_windows_gives_no_anomaly() -> None:
    feed = Feeder()
    quiet_history(feed, 4)  # only 4 past windows (min_buckets = 5)
    for s in range(50):
        feed(line(minute(4, s), "ERROR"))

    assert feed.anomalies == []
    assert len(feed.state.history) == 4


def test_min_count_is_respected() -> None:
    feed = Feeder()
    quiet_history(feed, 10)
    for s in range(4):  # z = 4 > 3, but only 4 errors < min_count 5
        feed(line(minute(10, s), "ERROR"))
    assert feed.anomalies == []

    low = Feeder(ErrorRateConfig(min_count=3))
    quiet_history(low, 10)
    for s in range(4):
        low(line(minute(10, s), "ERROR"))
    assert len(low.anomalies) == 1
    assert low.anomalies[0].current_value == 4.0  # z = 3 is not > 3; the 4th error spikes


def test_steady_error_rate_is_not_a_spike() -> None:
    feed = Feeder()
    for m in range(30):
        for s in range(8):
            feed(line(minute(m, s), "ERROR"))

    assert feed.anomalies == []


def test_gap_windows_count_as_zero() -> None:
    feed = Feeder()
    feed(line(minute(0), "ERROR"), line(minute(0, 1), "ERROR"))
    # Nothing for minutes 1..9; then a burst in minute 10.
    for s in range(6):
        feed(line(minute(10, s), "ERROR"))

    assert feed.state.history == (2, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    assert len(feed.anomalies) == 1
    assert feed.anomalies[0].baseline_mean == pytest.approx(0.2)


def test_history_is_capped_at_history_buckets_even_after_a_long_gap() -> None:
    feed = Feeder(ErrorRateConfig(history_buckets=8))
    feed(line(minute(0), "ERROR"))
    feed(line(minute(500)))

    assert feed.state.history == (0,) * 8


def test_late_lines_join_recent_errors_but_not_counts() -> None:
    feed = Feeder()
    feed(line(minute(10, 1), "ERROR", "current"))
    before = feed.state

    feed(line(minute(5), "ERROR", "late"))

    assert feed.state.errors == before.errors == 1
    assert feed.state.total == before.total == 1
    assert feed.state.bucket_start == before.bucket_start
    assert feed.state.history == before.history
    assert [e.message for e in feed.state.recent_error_entries()] == ["current", "late"]


def test_recent_errors_are_capped_at_recent_max_keeping_the_newest() -> None:
    feed = Feeder(ErrorRateConfig(recent_max=3))
    for i in range(7):
        feed(line(minute(0, i), "ERROR", f"e{i}"), line(minute(0, i), "INFO", "ok"))

    entries = feed.state.recent_error_entries()
    assert [e.message for e in entries] == ["e4", "e5", "e6"]
    assert all(isinstance(e, LogEntry) for e in entries)


def test_replay_of_the_same_offset_changes_nothing() -> None:
    state = ErrorRateState()
    for m in range(10):
        state, _ = step(state, [line(minute(m))], m, CONFIG)
    burst = [line(minute(10, s), "ERROR") for s in range(10)]

    once, anomalies = step(state, burst, 10, CONFIG)
    again, replayed = step(once, burst, 10, CONFIG)
    older, replayed_older = step(once, burst, 3, CONFIG)

    assert len(anomalies) == 1
    assert again == once and replayed == []
    assert older == once and replayed_older == []
    assert once.offsets == {"": 10}


def test_round_trip_to_dict_from_dict() -> None:
    feed = Feeder()
    quiet_history(feed, 6)
    for s in range(7):
        feed(line(minute(6, s), "ERROR", f"boom {s}"))

    data = json.loads(json.dumps(feed.state.to_dict(), allow_nan=False))
    restored = ErrorRateState.from_dict(data)

    assert restored == feed.state
    assert ErrorRateState.from_dict(None) == ErrorRateState()
    more = [line(minute(6, 30), "ERROR")]
    assert step(restored, more, 999, CONFIG) == step(feed.state, more, 999, CONFIG)


def test_config_from_default_settings() -> None:
    config = ErrorRateConfig.from_settings(load_settings({}))

    assert config == ErrorRateConfig()
