"""Unit tests of the adaptive (default) detector mode on small constructed series."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace

import pytest

from autopilot.detection import (
    Baseline,
    DetectorConfig,
    Verdict,
    resolve_direction,
    step,
)
from autopilot.models import Severity
from autopilot.settings import load_settings
from tests.factories import metric_point

ADAPTIVE = DetectorConfig()
T0 = 1_700_000_000.0
PATTERN = [100.0, 104.0, 96.0, 102.0, 98.0, 105.0, 95.0, 101.0, 99.0, 100.0]


def feed(
    values: list[float],
    config: DetectorConfig = ADAPTIVE,
    baseline: Baseline | None = None,
    start: float = T0,
    step_s: float = 60.0,
) -> tuple[Baseline, list[Verdict]]:
    b = baseline or Baseline()
    out = []
    for i, v in enumerate(values):
        b, verdict = step(b, v, start + i * step_s, config)
        out.append(verdict)
    return b, out


def noise(n: int, mean: float = 100.0, sd: float = 5.0, seed: int = 1) -> list[float]:
    """Bounded noise (uniform, |x − mean| ≤ 1.5 sd): no sample is anomalous by itself."""
    rng = random.Random(seed)
    return [mean + rng.uniform(-1.5, 1.5) * sd for _ in range(n)]


def alerts(verdicts: list[Verdict]) -> list[int]:
    return [i for i, v in enumerate(verdicts) if v.anomalous]


def assert_finite(v: Verdict) -> None:
    for x in (v.value, v.mean, v.std, v.z_score, v.deviation_percent, v.score):
        assert math.isfinite(x), v
    assert 0.0 <= v.score <= 1.0


def test_the_default_mode_is_adaptive_and_settings_build_it() -> None:
    config = DetectorConfig.from_settings(load_settings({}))
    assert config.mode == "adaptive" == ADAPTIVE.mode
    assert config == ADAPTIVE

    custom = DetectorConfig.from_settings(load_settings({
        "AUTOPILOT_DETECTOR_MODE": "seed",
        "AUTOPILOT_ALERT_SCORE": "0.5",
        "AUTOPILOT_EPISODE_S": "3600",
        "AUTOPILOT_DIRECTION_UP": "p99, queue",
        "AUTOPILOT_COUNTER_SUFFIXES": "_total",
    }))
    assert custom.mode == "seed"
    assert (custom.alert_score, custom.episode_s) == (0.5, 3600.0)
    assert custom.up_patterns == ("p99", "queue")
    assert custom.counter_suffixes == ("_total",)


def test_one_spike_does_not_move_the_baseline() -> None:
    b, _ = feed(noise(300))
    before_mean, before_std = b.mean, b.std

    after, (verdict,) = feed([10_000.0], baseline=b, start=T0 + 300 * 60)

    assert verdict.anomalous and verdict.severity is Severity.CRITICAL
    # Clipped update: the mean moves by at most alpha × clip scales.
    assert abs(after.mean - before_mean) <= ADAPTIVE.alpha * ADAPTIVE.clip * before_std * 1.01
    assert before_std <= after.std <= before_std * (1 + ADAPTIVE.alpha * ADAPTIVE.clip * 1.26)


def test_a_level_shift_is_relearned_and_alerts_once() -> None:
    b, _ = feed(noise(300, mean=100.0))
    shifted = noise(200, mean=200.0, seed=2)

    b, verdicts = feed(shifted, baseline=b, start=T0 + 300 * 60)

    assert alerts(verdicts) == [0]  # the change itself, once
    assert b.mean == pytest.approx(200.0, abs=3.0)
    # Re-learned after relearn_after samples: later samples are scored near zero.
    late = verdicts[ADAPTIVE.relearn_after + 20:]
    assert max(abs(v.z_score) for v in late) < 4.0
    assert sum(abs(v.z_score) for v in late) / len(late) < 1.5


def test_without_relearning_a_level_shift_keeps_scoring_high() -> None:
    # Contrast for the test above: the re-learning step is what moves the level.
    config = replace(ADAPTIVE, relearn_after=10**9)
    b, _ = feed(noise(300), config)
    b, verdicts = feed(noise(30, mean=200.0, seed=2), config, baseline=b, start=T0 + 300 * 60)
    assert min(abs(v.z_score) for v in verdicts[-10:]) > 2.5
    assert b.mean < 150.0


def test_flat_series_then_a_change_alerts_once_per_episode_not_per_sample() -> None:
    b, flat = feed([50.0] * 200)
    assert not alerts(flat)
    for v in flat:
        assert_finite(v)
    assert b.std == 0.0

    b, changed = feed([80.0] * 100, baseline=b, start=T0 + 200 * 60)

    assert alerts(changed) == [0]
    assert changed[0].severity is Severity.CRITICAL
    for v in changed:
        assert_finite(v)


def test_a_new_episode_after_episode_s_alerts_again() -> None:
    config = replace(ADAPTIVE, episode_s=3600.0)
    b, _ = feed(noise(300), config)
    spike_at = T0 + 300 * 60
    b, (first,) = feed([1000.0], config, baseline=b, start=spike_at)
    b, (inside,) = feed([1000.0], config, baseline=b, start=spike_at + 600)
    b, _ = feed(noise(100, seed=3), config, baseline=b, start=spike_at + 660)
    _, (later,) = feed([1000.0], config, baseline=b, start=spike_at + 7200)

    assert first.anomalous
    assert not inside.anomalous and inside.score < config.alert_score
    assert later.anomalous


def test_a_more_severe_anomaly_inside_an_episode_still_alerts_once() -> None:
    # 50 samples: still in the likelihood warm-up; with the warm-up bar at the seed's
    # 2.5 the seed rule decides alerts, so single samples set the severities.
    config = replace(ADAPTIVE, warmup_z=ADAPTIVE.z_threshold)
    b, _ = feed([PATTERN[i % 10] for i in range(50)], config, step_s=15.0)
    start = T0 + 50 * 15
    b, (high,) = feed([100.0 + 3.6 * 3.2], config, baseline=b, start=start)
    b, (same,) = feed([100.0 + 3.6 * 3.2], config, baseline=b, start=start + 600)
    b, (critical,) = feed([1500.0], config, baseline=b, start=start + 1200)
    _, (again,) = feed([1500.0], config, baseline=b, start=start + 1800)

    assert high.anomalous and high.severity is Severity.HIGH
    assert not same.anomalous and same.extras["in_episode"]
    assert critical.anomalous and critical.severity is Severity.CRITICAL  # escalation
    assert not again.anomalous  # nothing more severe than critical


def test_zero_variance_never_divides_by_zero() -> None:
    for level in (0.0, 1e-9, 7.0, -3.0, 1e12):
        b, verdicts = feed([level] * 50)
        assert not alerts(verdicts)
        for v in verdicts:
            assert_finite(v)
        assert b.std == 0.0
        _, (depart,) = feed([level + max(1.0, abs(level) * 0.01)], baseline=b, start=T0 + 50 * 60)
        assert depart.anomalous
        assert_finite(depart)


def test_counter_reset_is_not_an_anomaly_and_a_rate_jump_is() -> None:
    config = ADAPTIVE.for_metric("http_requests_total")
    assert config.counter
    rng = random.Random(4)
    values, total = [], 0.0
    for i in range(300):
        if i == 200:
            total = 0.0  # the process restarted: the counter starts again
        total += 60.0 * rng.uniform(9.0, 11.0)  # ~10 requests/s at one sample a minute
        values.append(total)

    b, verdicts = feed(values, config)

    assert verdicts[0].cold  # no rate from a single sample
    assert verdicts[200].cold  # the interval with the restart gives no rate
    assert not alerts(verdicts)
    assert 9.0 < verdicts[250].value < 11.0  # scored as a per-second rate
    # A restart just after a sample (the counter back at 0, or at a small count) is
    # not a drop in the rate either.
    for restart_at in (0.0, 5.0):
        again = values[:250] + [restart_at] + [restart_at + 600.0 * k for k in range(1, 20)]
        _, verdicts = feed(again, config)
        assert verdicts[250].cold and not alerts(verdicts)
    # A real jump in the rate (10/s → 100/s) is an anomaly.
    _, (jump,) = feed([values[-1] + 60.0 * 100.0], config, baseline=b, start=T0 + 300 * 60)
    assert jump.anomalous
    assert jump.value == pytest.approx(100.0)


def test_latency_drop_is_good_news_but_a_rise_alerts() -> None:
    config = ADAPTIVE.for_metric("api_latency_ms")
    assert config.direction == "up"
    b, _ = feed(noise(300), config)

    _, (drop,) = feed([10.0], config, baseline=b, start=T0 + 300 * 60)
    _, (rise,) = feed([190.0], config, baseline=b, start=T0 + 300 * 60)

    assert not drop.anomalous and drop.z_score < -4.0
    assert rise.anomalous and rise.severity is Severity.CRITICAL


def test_direction_defaults_by_metric_name() -> None:
    assert resolve_direction("api_latency_ms") == "up"
    assert resolve_direction("http_5xx_rate") == "up"
    assert resolve_direction("request_duration_seconds") == "up"
    assert resolve_direction("availability_ratio") == "down"
    assert resolve_direction("cpu_utilization") == "both"
    assert resolve_direction("queue_depth", up_patterns=("queue",)) == "up"
    assert DetectorConfig(mode="seed").for_metric("api_latency_ms").direction == "both"


def test_an_alert_in_the_warmup_opens_an_episode_too() -> None:
    # Documented behaviour: until likelihood_warmup samples are scored the seed rule
    # decides, and any alert opens an episode that mutes the series for episode_s.
    b, verdicts = feed([PATTERN[i % 10] for i in range(20)] + [130.0] + [100.0] * 20)
    assert alerts(verdicts) == [20]
    _, (later,) = feed([1000.0], baseline=b, start=T0 + 3600)
    assert not later.anomalous and later.extras["in_episode"]


def test_seed_size_scenarios_still_alert_as_the_pipeline_expects() -> None:
    # 40 normal samples then 4 spikes of 1500: one critical alert (one episode), even
    # in the warm-up (|z| ≈ 460 > warmup_z).
    _, verdicts = feed([PATTERN[i % 10] for i in range(40)] + [1500.0] * 4, step_s=15.0)
    assert alerts(verdicts) == [40]
    assert verdicts[40].severity is Severity.CRITICAL
    # A high (3 < z ≤ 4) shift on a young series (30 samples) stays quiet …
    shift = [100.0 + 3.7 * 3.2] * 3
    _, verdicts = feed([PATTERN[i % 10] for i in range(30)] + shift, step_s=15.0)
    assert alerts(verdicts) == []
    # … and alerts once, as high, when the series is past the warm-up (what the
    # pipeline's deployment-rule tests send: tests/integration/conftest.py high_shift).
    _, verdicts = feed([PATTERN[i % 10] for i in range(150)] + shift, step_s=15.0)
    assert alerts(verdicts) == [152]
    assert verdicts[152].severity is Severity.HIGH


def test_the_warm_up_is_calm_on_noise_and_still_catches_a_large_departure() -> None:
    # Pure Gaussian noise on 300 fresh series for their first 120 samples (through the
    # likelihood warm-up): the seed's bar (2.5) pages on most series, 6 on about 0.1 %
    # (a young scale estimate from 10 samples can still be far too small).
    rng = random.Random(11)
    series = [[100.0 + rng.gauss(0.0, 5.0) for _ in range(120)] for _ in range(300)]
    calm = sum(bool(alerts(feed(s, step_s=15.0)[1])) for s in series)
    seed_bar = replace(ADAPTIVE, warmup_z=ADAPTIVE.z_threshold)
    noisy = sum(bool(alerts(feed(s, seed_bar, step_s=15.0)[1])) for s in series)
    assert calm <= 3  # at most 1 % of the series
    assert noisy > 150  # the old behaviour, so this test can tell the two apart
    # A departure beyond warmup_z on a young series still alerts at once.
    _, verdicts = feed(series[0][:20] + [100.0 + 8 * 5.0], step_s=15.0)
    assert alerts(verdicts) == [20]


def test_every_anomaly_carries_the_seed_fields() -> None:
    b, _ = feed(noise(300))
    _, (v,) = feed([200.0], baseline=b, start=T0 + 300 * 60)
    assert v.anomalous and v.severity is not None
    assert v.mean == pytest.approx(100.0, abs=2.0)
    assert v.std == pytest.approx(5.0 * 0.75 * 1.2533, rel=0.2)  # uniform: mean |dev| 0.75 sd
    assert v.z_score == pytest.approx((200.0 - v.mean) / v.std)
    assert v.deviation_percent == pytest.approx(100.0 * (200.0 - v.mean) / v.mean)


def test_adaptive_state_is_small_and_round_trips_through_json() -> None:
    values = noise(5000)
    for i in range(300, 5000, 700):
        values[i] = 160.0  # departures worth remembering: the routine memory fills
    b, _ = feed(values)
    data = json.loads(json.dumps(b.to_dict(), allow_nan=False))

    # Scalars, the 48 density counts and the routine memory (3 days of 15-minute slots,
    # one byte each, base64), plus the seasonal model's fixed 2,313 bytes (base64,
    # ≈ 3.1 KB; tests/unit/test_detection_seasonal.py): far below the 16 KB.
    assert len(b.season) == 3 * 96 + 2 and len(b.density) == 48
    assert len(b.seasonal) == 2313
    assert len(json.dumps({k: v for k, v in data.items() if k != "seasonal"})) <= 2048
    assert len(json.dumps(data)) <= 2048 + 3100
    restored = Baseline.from_dict(data)
    assert restored == b
    assert step(restored, 130.0, T0 + 1e6, ADAPTIVE) == step(b, 130.0, T0 + 1e6, ADAPTIVE)
    # The largest routine memory the settings allow (14 days) stays small too.
    longest = replace(ADAPTIVE, season_days=14)
    values = noise(30000, seed=5)
    for i in range(300, 30000, 700):
        values[i] = 160.0
    b14, _ = feed(values, longest)
    assert len(b14.season) == 14 * 96 + 2
    assert len(json.dumps(b14.to_dict())) <= 4096 + 3100


def test_a_seed_state_is_replaced_when_the_mode_changes() -> None:
    seed_state, _ = feed(noise(50), DetectorConfig(mode="seed"))
    v1 = {k: v for k, v in seed_state.to_dict().items() if k not in ("v", "mode")}
    old = Baseline.from_dict({**v1, "v": 1})  # a version-1 record from the seed release
    assert old == seed_state

    new, verdict = step(old, 100.0, T0, ADAPTIVE)

    assert new.mode == "adaptive" and new.window == ()
    assert verdict.cold and not verdict.anomalous
    assert new.count == old.count + 1


def test_huge_values_stay_finite() -> None:
    b, verdicts = feed([1e300, -1e300] * 20 + [1e308, -1e308])
    for v in verdicts:
        assert_finite(v)
    assert math.isfinite(b.mean) and math.isfinite(b.std)


def test_counters_are_typed_or_named_like_counters_unless_typed_gauge() -> None:
    assert ADAPTIVE.for_metric("x", "counter").counter
    assert ADAPTIVE.for_metric("requests_total").counter
    assert not ADAPTIVE.for_metric("requests_total", "gauge").counter
    assert not ADAPTIVE.for_metric("latency_ms").counter
    assert not DetectorConfig(mode="seed").for_metric("x", "counter").counter


@pytest.mark.parametrize("mode", ["adaptive", "seed"])
def test_detect_series_on_a_replayed_record_changes_nothing_and_finds_nothing(mode: str) -> None:
    from autopilot.detection import detect_series

    config = replace(ADAPTIVE, mode=mode)
    points = [metric_point(v, at=T0 + i, name="latency_ms", service="s")
              for i, v in enumerate(PATTERN)]
    once, results = detect_series(Baseline(), points, 7, config, stream="autopilot.metrics/0")
    again, replayed = detect_series(once, points, 7, config, stream="autopilot.metrics/0")
    assert len(results) == len(points)
    assert replayed == [] and again == once


def test_a_metric_in_the_billions_is_scored_on_its_own_scale() -> None:
    # Bytes and bytes per second reach 1e9–1e12: the baseline's σ, a counter's rate
    # and a re-learned level must not be clamped at 1e9 (the bound of z-scores).
    rng = random.Random(8)
    big = [1e12 * (1.0 + rng.gauss(0.0, 0.05)) for _ in range(3000)]
    b, verdicts = feed(big)
    assert not alerts(verdicts)  # noise at 1e12 ± 5 % is calm …
    assert b.std == pytest.approx(5e10, rel=0.3)  # … because σ is its own (≈ 5e10)

    counter = ADAPTIVE.for_metric("node_network_receive_bytes_total")
    total, values = 0.0, []
    for i in range(400):
        rate = 8e9 if i == 350 else 2e9 * rng.uniform(0.95, 1.05)  # a 4× burst once
        total += 60.0 * rate
        values.append(total)
    _, verdicts = feed(values, counter)
    assert verdicts[300].value == pytest.approx(2e9, rel=0.06)  # the rate, not 1e9
    assert alerts(verdicts) == [350]

    shifted = [2e9 * (1.0 + rng.gauss(0.0, 0.01)) for _ in range(300)]
    shifted += [4e9 * (1.0 + rng.gauss(0.0, 0.01)) for _ in range(100)]
    b, _ = feed(shifted)
    assert b.mean == pytest.approx(4e9, rel=0.02)  # re-learned to the new level
