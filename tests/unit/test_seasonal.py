"""The seasonal expectation and behaviour-change signals (autopilot/seasonal.py).

Small constructed series, one per capability, each with a control that shows the
assertion can fail. Timestamps are UTC epoch seconds; T0 is a Monday 00:00 UTC.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable

import pytest

from autopilot.seasonal import (
    STATE_BYTES,
    SeasonalModel,
    SeasonalScore,
    dispersion_change,
    spike_rate,
    variance_collapse,
)

DAY = 86400
STEP = 300  # 5-minute samples, as NAB
T0 = 1_577_664_000  # 2019-12-30 00:00 UTC, a Monday
assert (T0 // DAY + 3) % 7 == 0

Shape = Callable[[float], float]


def daily_shape(ts: float) -> float:
    """Night 20 (0-6 h), ramp, a 60 plateau at midday (10-16 h), ramp, night from 20 h."""
    hour = (ts % DAY) / 3600.0
    if hour < 6 or hour >= 20:
        return 20.0
    if hour < 10:
        return 20.0 + 10.0 * (hour - 6)
    if hour < 16:
        return 60.0
    return 60.0 - 10.0 * (hour - 16)


def run(model: SeasonalModel, start: float, days: float, shape: Shape, noise: float = 1.0,
        seed: int = 0) -> list[tuple[float, SeasonalScore]]:
    rng = random.Random(seed)
    out = []
    for i in range(int(days * DAY / STEP)):
        ts = start + i * STEP
        out.append((ts, model.update(ts, shape(ts) + rng.gauss(0.0, noise))))
    return out


def hours(scores: Iterable[tuple[float, SeasonalScore]], lo: float, hi: float) -> list[float]:
    """|z| of the samples whose hour of day lies in [lo, hi)."""
    return [abs(s.z) for ts, s in scores if lo <= (ts % DAY) / 3600.0 < hi]


def test_night_level_jump_is_flagged_at_night_but_the_same_value_at_noon_is_not() -> None:
    model = SeasonalModel()
    history = run(model, T0, 7, daily_shape)
    assert history[-1][1].period == "daily"
    # day 8: the night level jumps to 60, the midday plateau's normal value
    jumped = run(model, T0 + 7 * DAY, 1, lambda ts: 60.0 if daily_shape(ts) == 20.0 else
                 daily_shape(ts), seed=1)
    night = hours(jumped, 1, 5)
    noon = hours(jumped, 11, 15)
    assert min(night) > 5.0, night  # every night sample departs from the expectation
    assert max(noon) < 4.5, noon   # the same value at noon is normal
    # control: the model does not flag a normal night (so the night test can fail)
    control = SeasonalModel()
    run(control, T0, 7, daily_shape)
    assert max(hours(run(control, T0 + 7 * DAY, 1, daily_shape, seed=1), 1, 5)) < 4.5


def test_needs_two_days_before_the_daily_period_is_used() -> None:
    model = SeasonalModel()
    scores = run(model, T0, 3, daily_shape)
    first_day = [s for ts, s in scores if ts < T0 + DAY]
    assert {s.period for s in first_day} == {"none"}
    assert all(s.z == 0.0 and s.expected is None for s in first_day)
    assert scores[-1][1].period == "daily"
    confirmed = next(ts for ts, s in scores if s.period == "daily")
    assert T0 + 1.5 * DAY < confirmed <= T0 + 2 * DAY


def test_daily_pattern_gone_flat_departs_and_the_profile_changes() -> None:
    model = SeasonalModel()
    run(model, T0, 7, daily_shape)
    flat = run(model, T0 + 7 * DAY, 1, lambda ts: 40.0, seed=1)
    control_model = SeasonalModel()
    run(control_model, T0, 7, daily_shape)
    normal = run(control_model, T0 + 7 * DAY, 1, daily_shape, seed=1)
    # midday 40 instead of 60 and night 40 instead of 20
    assert min(hours(flat, 1, 5)) > 5.0 and min(hours(flat, 11, 15)) > 5.0
    assert max(hours(normal, 0, 24)) < 4.5
    # the profile's amplitude is gone by the evening (1 = flat), as usual in the control
    assert flat[-1][1].profile_change > 0.6, flat[-1][1]
    assert abs(normal[-1][1].profile_change) < 0.3, normal[-1][1]


def weekly_shape(ts: float) -> float:
    """Weekdays: the daily shape; Saturday and Sunday: flat 20 all day."""
    weekday = (int(ts // DAY) + 3) % 7  # Monday 0
    return 20.0 if weekday >= 5 else daily_shape(ts)


def test_weekly_pattern_with_a_holiday() -> None:
    model = SeasonalModel()
    history = run(model, T0, 21, weekly_shape)
    periods = {ts: s.period for ts, s in history}
    assert periods[T0 + 13 * DAY] != "weekly"  # one week of comparisons is not enough
    assert history[-1][1].period == "weekly"
    # week 4: Wednesday is a holiday and behaves like a Sunday
    week4 = T0 + 21 * DAY

    def holiday(ts: float) -> float:
        return 20.0 if (ts - week4) // DAY == 2 else weekly_shape(ts)

    scores = run(model, week4, 7, holiday, seed=2)
    wednesday = [(ts, s) for ts, s in scores if (ts - week4) // DAY == 2]
    sunday = [(ts, s) for ts, s in scores if (ts - week4) // DAY == 6]
    tuesday = [(ts, s) for ts, s in scores if (ts - week4) // DAY == 1]
    assert min(s.z for _, s in wednesday if 11 <= (_ % DAY) / 3600 < 15) < -5.0
    # control: the same flat values on the real Sunday, and a normal Tuesday, are expected
    assert max(hours(sunday, 0, 24)) < 4.5
    assert max(hours(tuesday, 0, 24)) < 4.5


def test_noise_collapse() -> None:
    rng = random.Random(3)
    model, control = SeasonalModel(), SeasonalModel()
    for i in range(2000):
        x = 50.0 + rng.gauss(0.0, 1.0)
        model.update(T0 + i * STEP, x)
        control.update(T0 + i * STEP, x)
    collapsed = [model.update(T0 + i * STEP, 50.0 + rng.gauss(0.0, 0.01))
                 for i in range(2000, 2060)]
    normal = [control.update(T0 + i * STEP, 50.0 + rng.gauss(0.0, 1.0))
              for i in range(2000, 2060)]
    assert collapsed[-1].variance_collapse > 4.0, collapsed[-1]
    assert collapsed[-1].dispersion_change < -1.0
    assert max(s.variance_collapse for s in normal) < 1.5
    assert abs(normal[-1].dispersion_change) < 0.7


def test_rising_spike_rate() -> None:
    def series(rate_after: float, seed: int) -> list[SeasonalScore]:
        rng = random.Random(seed)
        model = SeasonalModel()
        out = []
        for i in range(4000):
            rate = 0.002 if i < 3000 else rate_after
            x = 10.0 + rng.gauss(0.0, 1.0)
            if rng.random() < rate:
                x += rng.choice((-8.0, 8.0))
            out.append(model.update(T0 + i * STEP, x))
        return out

    rising = series(0.10, seed=4)  # spikes of 8 σ: 0.2 % of samples, then 10 %
    steady = series(0.002, seed=4)
    # a z-score at the change, fading as the long-run rate learns the new one (the
    # likelihood stage reads the change, as it reads a level shift)
    after = [s.spike_rate for s in rising[3000:3300]]
    assert max(after) > 8.0 and sum(after) / len(after) > 5.0
    # control: the steady rate's own fluctuations (Poisson counts) stay lower
    assert max(s.spike_rate for s in steady[1000:]) < 5.0


def test_no_period_stays_neutral_as_today() -> None:
    rng = random.Random(5)
    model = SeasonalModel()
    walk = 100.0
    scores = []
    for i in range(14 * DAY // STEP):
        walk += rng.gauss(0.0, 0.5)
        scores.append(model.update(T0 + i * STEP, walk + rng.gauss(0.0, 1.0)))
    assert {s.period for s in scores} == {"none"}
    assert all(s.z == 0.0 and s.expected is None and s.profile_change == 0.0 for s in scores)
    # control: the same noise with a daily rhythm is detected
    noise = SeasonalModel()
    assert run(noise, T0, 14, lambda ts: 50.0)[-1][1].period == "none"
    rhythm = SeasonalModel()
    assert run(rhythm, T0, 14, lambda ts: 50.0 + 5.0 * math.sin(2 * math.pi * ts / DAY)
               )[-1][1].period == "daily"


def test_restart_from_encoded_state_scores_identically() -> None:
    model = SeasonalModel()
    run(model, T0, 16, weekly_shape)
    blob = model.encode()
    assert len(blob) == STATE_BYTES <= 4096
    restored = SeasonalModel.decode(blob)
    assert restored.encode() == blob
    after = run(model, T0 + 16 * DAY, 2, weekly_shape, seed=7)
    again = run(restored, T0 + 16 * DAY, 2, weekly_shape, seed=7)
    assert after == again
    # control: a model restored from an older state scores differently
    older = SeasonalModel()
    run(older, T0, 15, weekly_shape)
    assert run(older, T0 + 16 * DAY, 2, weekly_shape, seed=7) != after


def test_three_day_gap_raises_no_false_departures() -> None:
    model = SeasonalModel()
    run(model, T0, 7, daily_shape)
    after_gap = run(model, T0 + 10 * DAY, 2, daily_shape, seed=8)
    assert all(s.period == "daily" for _, s in after_gap)
    assert max(abs(s.z) for _, s in after_gap) < 4.5
    assert max(s.variance_collapse for _, s in after_gap) < 2.0
    # control: after the same gap, a pattern shifted by 12 hours is flagged
    shifted = SeasonalModel()
    run(shifted, T0, 7, daily_shape)
    moved = run(shifted, T0 + 10 * DAY, 1, lambda ts: daily_shape(ts + DAY / 2), seed=8)
    assert max(abs(s.z) for _, s in moved) > 8.0


def test_decode_rejects_bad_state() -> None:
    blob = SeasonalModel().encode()
    with pytest.raises(ValueError, match="version 9"):
        SeasonalModel.decode(b"\x09" + blob[1:])
    with pytest.raises(ValueError, match="bytes, expected"):
        SeasonalModel.decode(blob[:-1])
    assert SeasonalModel.decode(None).encode() == blob
    with pytest.raises(ValueError, match="finite"):
        SeasonalModel().update(T0, math.nan)


def test_signal_functions_units() -> None:
    assert variance_collapse(1.0, 8.0, 1e-9) == pytest.approx(3.0)
    assert variance_collapse(8.0, 1.0, 1e-9) == 0.0
    assert variance_collapse(0.0, 0.0, 1e-9) == 0.0  # always flat: no collapse
    assert dispersion_change(2.0, 1.0, 1e-9) == pytest.approx(1.0)
    assert spike_rate(0.01, 0.01) == 0.0
    assert spike_rate(0.05, 0.002) > 5.0


def test_without_signals_the_score_and_the_state_are_the_same() -> None:
    full, lean = SeasonalModel(), SeasonalModel()
    rng = random.Random(3)
    for i in range(int(4 * DAY / STEP)):
        ts = T0 + i * STEP
        x = daily_shape(ts) + rng.gauss(0.0, 1.0) + (25.0 if i % 37 == 0 else 0.0)
        a, b = full.update(ts, x), lean.update(ts, x, signals=False)
        assert (a.period, a.expected, a.spread, a.z) == (b.period, b.expected, b.spread, b.z)
        assert (b.variance_collapse, b.dispersion_change, b.spike_rate,
                b.profile_change) == (0.0, 0.0, 0.0, 0.0)
    assert lean.encode() == full.encode() and lean.period == "daily"
    # control: the full model does report a signal on this series
    assert a.dispersion_change != 0.0 or a.spike_rate != 0.0
