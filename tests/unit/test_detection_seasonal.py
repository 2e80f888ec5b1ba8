"""Unit tests of the adaptive detector's seasonal stage (autopilot.detection.seasonal),
through the detector, each with a control that shows the test can fail.

The stage scores the departure from the seasonal expectation (time of day, once a
daily period is confirmed after two days) as well as from the level baseline; a
series without a period is scored exactly as with the stage off.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace

import pytest

from autopilot.detection import Baseline, DetectorConfig, Verdict, step_record
from autopilot.detection.seasonal import clear_memo
from autopilot.seasonal import STATE_BYTES

STEP = 300.0  # 5-minute samples, as in NAB
PER_DAY = 288
T0 = 1_700_006_400.0  # 2023-11-15 00:00 UTC
ON = DetectorConfig()
OFF = replace(ON, seasonal="off")
# Day 7, 16:00-20:00 UTC: around the daily trough (18:00), the "night" of the pattern.
NIGHT = range(7 * PER_DAY + 16 * 12, 7 * PER_DAY + 20 * 12)


def daily(days: int, seed: int = 1) -> list[float]:
    """A daily sine (100 ± 40, trough at 18:00 UTC) with uniform noise ±3."""
    rng = random.Random(seed)
    return [100.0 + 40.0 * math.sin(2.0 * math.pi * (i % PER_DAY) / PER_DAY)
            + rng.uniform(-3.0, 3.0) for i in range(days * PER_DAY)]


def night_jump(values: list[float], by: float = 30.0) -> list[float]:
    """The pattern whose night level jumps by ``by`` on day 7 (inside the daily range)."""
    out = list(values)
    for i in NIGHT:
        out[i] += by
    return out


def gaussian(n: int, seed: int = 3) -> list[float]:
    rng = random.Random(seed)
    return [100.0 + 5.0 * rng.gauss(0.0, 1.0) for _ in range(n)]


def run(values: list[float], config: DetectorConfig = ON, chunk: int = 0,
        stamps: list[float] | None = None) -> tuple[Baseline, list[Verdict]]:
    """Detect over ``values`` in one record, or in records of ``chunk`` samples with a
    JSON round trip of the state (a restart) and a cold model memo between them."""
    ts = stamps or [T0 + i * STEP for i in range(len(values))]
    samples = list(zip(values, ts, strict=True))
    if not chunk:
        return step_record(Baseline(), samples, 1, config)
    b, out = Baseline(), []
    for k in range(0, len(samples), chunk):
        b, vs = step_record(b, samples[k:k + chunk], k + 1, config)
        out += vs
        b = Baseline.from_dict(json.loads(json.dumps(b.to_dict())))
        clear_memo()
    return b, out


def alerts(verdicts: list[Verdict]) -> list[int]:
    return [i for i, v in enumerate(verdicts) if v.anomalous]


def test_a_daily_pattern_whose_night_level_jumps_alerts_against_its_seasonal_expectation() -> None:
    values = night_jump(daily(8))
    _, verdicts = run(values)
    found = alerts(verdicts)
    assert found and found[0] in NIGHT and all(i in NIGHT for i in found)
    # The record reports the baseline it was compared with: the seasonal expectation.
    v = verdicts[found[0]]
    assert v.extras["seasonal_period"] == "daily"
    assert v.std > 0.0 and v.z_score > ON.z_critical
    assert v.z_score == pytest.approx((v.value - v.mean) / v.std, rel=1e-9)
    assert abs(v.mean - (values[found[0]] - 30.0)) < 10.0  # the usual night value

    # Controls: the stage off misses it (the jump stays inside the daily range) and
    # the same pattern without the jump does not alert.
    assert alerts(run(values, OFF)[1]) == []
    assert alerts(run(daily(8))[1]) == []


def test_the_direction_rules_apply_to_the_seasonal_z() -> None:
    values = night_jump(daily(8))
    assert alerts(run(values, replace(ON, direction="down"))[1]) == []
    assert alerts(run(values, replace(ON, direction="up"))[1])  # control
    dropped = night_jump(daily(8), by=-30.0)  # below the usual night value
    assert alerts(run(dropped, replace(ON, direction="down"))[1])
    assert not any(i in NIGHT for i in alerts(run(dropped, replace(ON, direction="up"))[1]))


def test_a_series_without_a_period_is_scored_as_with_the_stage_off() -> None:
    values = gaussian(3000)  # 10.4 days at 5 min: long enough to confirm a rhythm
    b_on, on = run(values)
    b_off, off = run(values, OFF)
    assert on == off
    assert replace(b_on, seasonal=b"") == b_off and len(b_on.seasonal) == STATE_BYTES
    assert "seasonal" not in b_off.to_dict()
    # Control: with a daily rhythm the two differ (the comparison can fail).
    assert run(daily(8))[1] != run(daily(8), OFF)[1]


def test_gaps_and_restarts_give_the_outputs_of_one_uninterrupted_run() -> None:
    values = night_jump(daily(8))
    stamps = [T0 + i * STEP for i in range(len(values))]
    gap = range(5 * PER_DAY + 3 * 12, 5 * PER_DAY + 12 * 12)  # 9 hours missing on day 5
    keep = [i for i in range(len(values)) if i not in gap]
    values, stamps = [values[i] for i in keep], [stamps[i] for i in keep]
    b_one, one = run(values, stamps=stamps)
    b_many, many = run(values, chunk=97, stamps=stamps)
    assert many == one and b_many.seasonal == b_one.seasonal
    night = [keep.index(i) for i in NIGHT]
    assert any(i in night for i in alerts(one))  # the night jump is still found

    # Control: a restart from a state that lost the seasonal model (an old state) on
    # day 6 has not seen two days again by the jump, and misses it.
    cut = keep.index(6 * PER_DAY)
    b, first = run(values[:cut], stamps=stamps[:cut])
    old = {k: v for k, v in b.to_dict().items() if k != "seasonal"}
    _, rest = step_record(Baseline.from_dict(old),
                          list(zip(values[cut:], stamps[cut:], strict=True)), 2, ON)
    assert first + rest != one and alerts(rest) == []


def test_an_old_state_without_the_seasonal_field_loads_and_starts_a_fresh_model() -> None:
    b, _ = run(daily(3)[:600])
    data = b.to_dict()
    assert len(b.seasonal) == STATE_BYTES and "seasonal" in data
    restored = Baseline.from_dict(json.loads(json.dumps(data)))
    assert restored == b  # the field round-trips
    del data["seasonal"]
    old = Baseline.from_dict(json.loads(json.dumps(data)))
    assert old.seasonal == b"" and replace(old, seasonal=b.seasonal) == b
    b2, verdicts = step_record(old, [(100.0, T0 + 600 * STEP)], 2, ON)
    assert len(verdicts) == 1 and len(b2.seasonal) == STATE_BYTES
    # Control: the fresh model is not the one that was lost.
    b3, _ = step_record(b, [(100.0, T0 + 600 * STEP)], 2, ON)
    assert b3.seasonal != b2.seasonal


def test_a_rising_spike_rate_raises_the_score_only_in_behaviour_mode() -> None:
    rng = random.Random(5)
    values = gaussian(4000)
    for i in range(3000, 4000):  # spikes of 5 σ, one in 12 samples from sample 3000
        if rng.random() < 1 / 12:
            values[i] += 25.0
    behaviour = replace(ON, seasonal="behaviour")
    _, on = run(values)
    _, beh = run(values, behaviour)
    late = slice(3300, 4000)
    assert sum(v.score for v in beh[late]) > 1.2 * sum(v.score for v in on[late])
    # Control: before the spikes become denser, the behaviour mode scores about the same.
    early = slice(1000, 3000)
    assert sum(v.score for v in beh[early]) == pytest.approx(
        sum(v.score for v in on[early]), rel=0.2)


def test_the_setting_is_checked() -> None:
    with pytest.raises(ValueError, match="seasonal must be one of"):
        DetectorConfig(seasonal="weekly")


def test_the_backtest_and_the_live_agent_send_the_same_seasonal_anomalies(monkeypatch) -> None:
    """As tests/unit/test_backtest.py's check, on a series with a confirmed daily period:
    the agent gets records of 7 points through its table codec, the backtest one by one."""
    import asyncio

    from autopilot.agents import metrics as agent

    from autopilot.backtest import InputRow, run_backtest
    from autopilot.series import SeriesLimits
    from tests import factories
    from tests.events import keyed_metrics_event, metrics_agent_in_memory

    values = night_jump(daily(8))
    rows = [InputRow(text=str(T0 + i * STEP), epoch_s=T0 + i * STEP, value=v)
            for i, v in enumerate(values)]
    service, metric = "checkout", "requests_per_s"
    backtest = run_backtest(rows, ON, service=service, metric=metric)
    topic = metrics_agent_in_memory(monkeypatch)

    async def run() -> None:
        for offset, start in enumerate(range(0, len(rows), 7)):
            value = json.dumps([factories.metric(service, r.value, r.epoch_s, name=metric)
                                for r in rows[start:start + 7]]).encode()
            await agent.process(keyed_metrics_event(value, offset), ON, SeriesLimits())

    asyncio.run(run())
    live = [json.loads(v) for v in topic.sent]
    offline = [json.loads(r.anomaly.model_dump_json()) for r in backtest.records
               if r.anomaly is not None]
    assert live == offline
    at_night = [a for a in live if a["current_value"] in {values[i] for i in NIGHT}]
    assert at_night  # the night jump, reported against the seasonal expectation:
    a = at_night[0]
    assert abs(a["baseline_mean"] - (a["current_value"] - 30.0)) < 10.0
    assert a["z_score"] == pytest.approx(
        (a["current_value"] - a["baseline_mean"]) / a["baseline_std_dev"], rel=1e-9)


def test_a_seasonal_state_the_model_refuses_starts_a_fresh_model() -> None:
    b, _ = run(daily(3)[:600])
    bad = replace(b, seasonal=b"\x09" + b.seasonal[1:])  # another version, say a downgrade
    b2, verdicts = step_record(bad, [(100.0, T0 + 600 * STEP)], 2, ON)
    assert len(verdicts) == 1 and b2.seasonal[0] == 1
    fresh, _ = step_record(replace(b, seasonal=b""), [(100.0, T0 + 600 * STEP)], 2, ON)
    assert b2.seasonal == fresh.seasonal
    # control: the good state continues its model instead
    assert step_record(b, [(100.0, T0 + 600 * STEP)], 2, ON)[0].seasonal != fresh.seasonal
