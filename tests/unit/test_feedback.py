"""Feedback that teaches the detector ("Not an incident"): autopilot.feedback and
``autopilot backtest --feedback``."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from autopilot.backtest import BacktestError, InputRow, load_feedback, run_backtest
from autopilot.detection import DetectorConfig
from autopilot.errors import BadRecord
from autopilot.feedback import (
    SIZE_FACTOR,
    TIME_WINDOW_S,
    Feedback,
    FeedbackState,
    decode_feedback,
    matches,
    routine_applies,
    screen,
)
from autopilot.models import Anomaly, Severity

DAY = 86_400.0
START = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
SERIES = "billing|batch_queue_depth|"


def anomaly(z: float, at: float, dev: float | None = None, series: str = SERIES) -> Anomaly:
    return Anomaly(metric_name="batch_queue_depth", service="billing", series=series,
                   current_value=130.0, baseline_mean=100.0, baseline_std_dev=2.0,
                   z_score=z, deviation_percent=dev if dev is not None else 2.0 * z,
                   severity=Severity.CRITICAL, detected_at=at)


def recorded(z: float = 10.0, tod: float | None = 7200.0, until: float | None = None,
             dev: float | None = 20.0) -> Feedback:
    return Feedback(series=SERIES, service="billing", direction="up", z_score=z,
                    deviation_percent=dev, time_of_day_s=tod, user="U1",
                    recorded_at=START, until=until)


# ------------------------------------------------------------------------ matches


def test_the_same_departure_matches_and_a_smaller_one_too() -> None:
    fb = recorded()
    assert matches(fb, anomaly(10.0, START + 3 * DAY + 7200))
    assert matches(fb, anomaly(4.0, START + 3 * DAY + 7200))


def test_a_departure_more_than_the_factor_larger_does_not_match() -> None:
    fb = recorded()
    at = START + 7200
    assert matches(fb, anomaly(10.0 * SIZE_FACTOR, at))
    assert not matches(fb, anomaly(10.0 * SIZE_FACTOR + 0.01, at))
    # the z-score alike, but the relative deviation clearly larger: still pages
    assert not matches(fb, anomaly(10.0, at, dev=20.0 * SIZE_FACTOR + 0.1))


def test_the_other_direction_does_not_match() -> None:
    assert not matches(recorded(), anomaly(-10.0, START + 7200))


def test_time_of_day_window_when_routine_memory_applies() -> None:
    fb = recorded(tod=7200.0)
    assert matches(fb, anomaly(10.0, START + 5 * DAY + 7200 + TIME_WINDOW_S))
    assert not matches(fb, anomaly(10.0, START + 5 * DAY + 7200 + TIME_WINDOW_S + 1))
    assert not matches(fb, anomaly(10.0, START + 5 * DAY + 14 * 3600))
    # circular over midnight: recorded at 23:50, seen at 00:10
    late = recorded(tod=DAY - 600)
    assert matches(late, anomaly(10.0, START + 2 * DAY + 600))
    # without a time of day (routine memory off) any time matches
    assert matches(recorded(tod=None), anomaly(10.0, START + 5 * DAY + 14 * 3600))
    assert routine_applies("adaptive", 3)
    assert not routine_applies("adaptive", 0) and not routine_applies("seed", 3)


def test_the_period_applies_by_wall_clock_and_another_series_never_matches() -> None:
    fb = recorded(until=START + DAY)
    a = anomaly(10.0, START + 7200)
    assert matches(fb, a, at=START + DAY - 1)
    assert not matches(fb, a, at=START + DAY)
    assert matches(fb, a, at=None)  # the backtest ignores the period
    assert not matches(recorded(), anomaly(10.0, START + 7200, series="billing|other|"))


def test_from_anomaly_records_the_departure() -> None:
    fb = Feedback.from_anomaly(anomaly(-7.5, START + 3600 + 5, dev=-12.0), user="U2",
                               recorded_at=START + 99, until=None, with_time_of_day=True)
    assert (fb.direction, fb.z_score, fb.deviation_percent, fb.time_of_day_s) == (
        "down", 7.5, 12.0, 3605.0)
    assert Feedback.from_dict(json.loads(json.dumps(fb.to_dict()))) == fb


@pytest.mark.parametrize("bad", [
    {"series": SERIES, "direction": "sideways", "z_score": 3},
    {"series": SERIES, "direction": "up", "z_score": 0},
    {"series": SERIES, "direction": "up", "z_score": "3"},
    {"series": SERIES, "service": "other", "direction": "up", "z_score": 3},
    {"series": SERIES, "direction": "up", "z_score": 3, "time_of_day_s": DAY},
])
def test_bad_records_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(BadRecord):
        decode_feedback(json.dumps(bad).encode())


def test_state_applies_once_per_offset_and_replaces_the_same_kind() -> None:
    state = FeedbackState()
    one = state.apply([recorded(z=10.0)], 5, stream="t/0")
    assert one.apply([recorded(z=99.0)], 5, stream="t/0") is one  # a replay
    two = one.apply([recorded(z=12.0)], 6, stream="t/0")
    assert [r.z_score for r in two.records] == [12.0]
    three = two.apply([recorded(z=3.0, tod=50_000.0)], 7, stream="t/0")
    assert len(three.records) == 2
    assert FeedbackState.from_dict(three.to_dict()) == three
    # expired records are dropped when the next one arrives
    four = three.apply([recorded(z=1.0, tod=1.0, until=START)], 8, stream="t/0",
                       now=START + 1)
    assert len(four.records) == 2


# ---------------------------------------------- replay: a repeating benign pattern


def batch_job_series(bigger_on_day: int | None = None) -> list[InputRow]:
    """Five-minute samples over 20 days, noise around 100, and a batch job that lifts
    the value to ~130 from 02:00 to 02:15 every fourth day (further apart than the
    routine memory's 3 days, so without feedback every run pages)."""
    rng = random.Random(7)
    rows = []
    for i in range(int(20 * DAY / 300)):
        t = START + i * 300
        day, tod = int((t - START) // DAY), (t - START) % DAY
        v = rng.gauss(100.0, 2.0)
        if day % 4 == 1 and 7200 <= tod < 7200 + 900:
            v = 130.0 + rng.gauss(0.0, 1.0)
        if day == bigger_on_day and 7200 <= tod < 7200 + 900:
            v = 175.0
        rows.append(InputRow(str(t), t, v))
    return rows


def alert_days(rows: list[InputRow], feedback: list[Feedback] | None) -> list[int]:
    result = run_backtest(rows, DetectorConfig(), service="billing",
                          metric="batch_queue_depth", feedback=feedback)
    return [int((a.point.timestamp.timestamp() - START) // DAY) for a in result.alerts]


def test_a_repeating_benign_spike_pages_before_feedback_and_not_after() -> None:
    rows = batch_job_series(bigger_on_day=18)
    before = alert_days(rows, None)
    assert before == [1, 5, 9, 13, 17, 18]  # every batch run pages, and the bigger one

    # "Not an incident" on the first page, given live on day 1 (the detector's
    # own verdict is what the button records)
    first = run_backtest(rows, DetectorConfig(), service="billing",
                         metric="batch_queue_depth").alerts[0].anomaly
    assert first is not None
    fb = Feedback.from_anomaly(first, user="U1", recorded_at=START + DAY + 7300,
                               with_time_of_day=True)
    after = alert_days(rows, [fb])
    # the batch runs no longer page; the clearly larger departure still does
    assert after == [18]


def test_the_same_spike_at_another_time_of_day_still_pages() -> None:
    rows = batch_job_series()
    first = run_backtest(rows, DetectorConfig(), service="billing",
                         metric="batch_queue_depth").alerts[0].anomaly
    assert first is not None
    fb = Feedback.from_anomaly(first, user="U1", recorded_at=0.0)
    moved = [InputRow(r.text, r.epoch_s, r.value) for r in rows]
    # the day-9 run starts at 14:00 instead of 02:00
    for i, r in enumerate(moved):
        day, tod = int((r.epoch_s - START) // DAY), (r.epoch_s - START) % DAY
        if day == 9 and 7200 <= tod < 8100:
            moved[i] = InputRow(r.text, r.epoch_s, 100.0)
        if day == 9 and 50_400 <= tod < 51_300:
            moved[i] = InputRow(r.text, r.epoch_s, 130.0)
    assert alert_days(moved, [fb]) == [9]


def test_screen_mutes_the_signals_of_a_suppressed_alert() -> None:
    rows = batch_job_series()
    result = run_backtest(rows, DetectorConfig(), service="billing",
                          metric="batch_queue_depth")
    records = result.records
    assert records[0].verdict.anomalous and any(
        r.anomaly is not None and r.anomaly.state == "resolved" for r in records)
    assert records[0].anomaly is not None
    fb = Feedback.from_anomaly(records[0].anomaly, user="U1", recorded_at=0.0)
    sent, suppressed, muted = screen(records, [fb], False, None)
    assert sent == [] and suppressed == len(result.alerts) and not muted
    # without feedback the same records all go out, nothing is muted
    sent, suppressed, muted = screen(records, [], False, None)
    assert sent == records and suppressed == 0 and not muted


# --------------------------------------------------------------- backtest --feedback


def test_backtest_cli_applies_exported_feedback(tmp_path: Path) -> None:
    rows = batch_job_series(bigger_on_day=18)
    src = tmp_path / "queue.csv"
    src.write_text("timestamp,value\n" + "".join(f"{r.epoch_s},{r.value}\n" for r in rows))
    first = run_backtest(rows, DetectorConfig(), service="billing",
                         metric="batch_queue_depth").alerts[0].anomaly
    assert first is not None
    fb = Feedback.from_anomaly(first, user="U1", recorded_at=START + DAY)
    other = Feedback(series="other|x|", service="other", direction="up", z_score=1.0)
    export = tmp_path / "feedback.jsonl"
    export.write_text(json.dumps(fb.to_dict()) + "\n\n" + json.dumps(other.to_dict()) + "\n")
    assert load_feedback(export) == [fb, other]

    exe = Path(sys.executable).with_name("autopilot")
    base = [str(exe), "backtest", str(src), "--service", "billing", "--metric",
            "batch_queue_depth", "--output", str(tmp_path / "out.csv")]
    plain = subprocess.run(base, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    taught = subprocess.run([*base, "--feedback", str(export)], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert plain.returncode == 0 and taught.returncode == 0, (plain.stderr, taught.stderr)
    assert "alerts   6" in plain.stderr and "feedback" not in plain.stderr
    assert "alerts   1" in taught.stderr
    assert "feedback 5 alert(s) suppressed" in taught.stderr
    out = (tmp_path / "out.csv").read_text().splitlines()
    assert sum(line.split(",")[3] == "1" for line in out[1:]) == 1

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"series": "x|y|", "direction": "up", "z_score": 2}\nnot json\n')
    with pytest.raises(BacktestError, match=":2: not JSON"):
        load_feedback(bad)
    proc = subprocess.run([*base, "--feedback", str(bad)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and "bad.jsonl:2" in proc.stderr
