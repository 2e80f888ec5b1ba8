"""Unit tests of autopilot.detection in seed mode: rolling baseline, z-score, severity.

The seed rules are pinned with ``mode="seed"``; the adaptive mode (the default) is
tested in ``test_detection_adaptive.py``.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from autopilot.detection import (
    MAX_SCORE,
    Baseline,
    DetectorConfig,
    Verdict,
    deviation_percent,
    make_anomaly,
    severity_for,
    step,
    step_record,
    z_score,
)
from autopilot.models import MetricPoint, Severity
from autopilot.settings import load_settings
from tests.factories import metric_point

SEED = DetectorConfig(mode="seed")
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def feed(values: list[float], config: DetectorConfig = SEED, baseline: Baseline | None = None):
    """Step every value in order; return the final baseline and the verdicts."""
    b = baseline or Baseline()
    verdicts: list[Verdict] = []
    for i, v in enumerate(values):
        b, verdict = step(b, v, 1_700_000_000.0 + i, config)
        verdicts.append(verdict)
    return b, verdicts


def seed_window(n: int = 10) -> list[float]:
    """Values alternating 108 ± 5.74: population mean 108, population std 5.74."""
    return [108.0 + 5.74 if i % 2 == 0 else 108.0 - 5.74 for i in range(n)]


def assert_finite_verdict(v: Verdict) -> None:
    for x in (v.value, v.mean, v.std, v.z_score, v.deviation_percent):
        assert math.isfinite(x), v


# --------------------------------------------------------------------------- seed example


def test_seed_example_with_the_pure_functions() -> None:
    z = z_score(1500.0, 108.0, 5.74)

    assert z == pytest.approx(242.5, rel=1e-3)
    assert severity_for(z, SEED) is Severity.CRITICAL
    assert deviation_percent(1500.0, 108.0) == pytest.approx(1288.9, rel=1e-4)


def test_seed_example_through_a_real_baseline() -> None:
    b, verdicts = feed(seed_window(10))
    assert b.mean == pytest.approx(108.0, rel=1e-12)
    assert b.std == pytest.approx(5.74, rel=1e-12)
    assert not any(v.anomalous for v in verdicts)

    _, verdict = step(b, 1500.0, 1_800_000_000.0, SEED)

    assert verdict.anomalous
    assert not verdict.cold
    assert verdict.mean == pytest.approx(108.0)
    assert verdict.std == pytest.approx(5.74)
    assert verdict.z_score == pytest.approx(242.5, rel=1e-3)
    assert verdict.severity is Severity.CRITICAL
    assert verdict.deviation_percent == pytest.approx(1288.9, rel=1e-4)


# --------------------------------------------------------------------------- cold start


def test_no_verdict_before_min_samples_even_for_wild_values() -> None:
    wild = [1.0, 1e9, -1e9, 0.0, 5e8, 3.0, -7e7, 1e12, 2.0, 4e6]
    assert len(wild) == SEED.min_samples

    b, verdicts = feed(wild)

    assert all(v.cold and not v.anomalous and v.severity is None for v in verdicts)
    assert b.n == 10


def test_eleventh_sample_is_scored() -> None:
    b, verdicts = feed(seed_window(10))
    assert all(v.cold for v in verdicts)

    _, eleventh = step(b, 1500.0, 0.0, SEED)

    assert not eleventh.cold
    assert eleventh.anomalous


def test_cold_start_follows_configured_min_samples() -> None:
    config = DetectorConfig(min_samples=3, mode="seed")
    _, verdicts = feed([1.0, 2.0, 3.0, 1000.0], config)

    assert [v.cold for v in verdicts] == [True, True, True, False]
    assert verdicts[3].anomalous


def test_sample_is_scored_before_it_joins_the_window() -> None:
    b, _ = feed(seed_window(10))

    new, verdict = step(b, 1500.0, 0.0, SEED)

    # The verdict used the old window; the new baseline includes the sample.
    assert verdict.mean == pytest.approx(108.0)
    assert verdict.std == pytest.approx(5.74)
    expected = seed_window(10) + [1500.0]
    assert new.n == 11
    assert new.mean == pytest.approx(np.mean(expected), rel=1e-12)
    assert new.std == pytest.approx(np.std(expected), rel=1e-12)
    assert new.count == b.count + 1


# --------------------------------------------------------------------------- zero variance


def test_flat_series_never_divides_by_zero_and_scores_zero_at_the_mean() -> None:
    b, verdicts = feed([100.0] * 50)

    assert b.std == 0.0
    for v in verdicts:
        assert_finite_verdict(v)
        assert not v.anomalous
    assert all(v.z_score == 0.0 for v in verdicts if not v.cold)
    assert z_score(100.0, 100.0, 0.0) == 0.0
    assert z_score(0.0, 0.0, 0.0) == 0.0


def test_first_departure_from_a_flat_line_is_anomalous_once() -> None:
    b, _ = feed([100.0] * 20)

    b, departure = step(b, 101.0, 0.0, SEED)
    assert departure.anomalous
    assert departure.severity is Severity.CRITICAL
    assert_finite_verdict(departure)

    # The departing sample joined the window: variance is positive now, and the
    # return to the old level is not an anomaly.
    assert b.std > 0.0
    _, after = feed([100.0] * 30, baseline=b)
    assert not any(v.anomalous for v in after)
    for v in after:
        assert_finite_verdict(v)


def test_constant_new_level_stops_alerting_after_the_window_adapts() -> None:
    config = DetectorConfig(window_size=20, mode="seed")
    b, _ = feed([100.0] * 25, config)

    b, verdicts = feed([101.0] * 200, config, baseline=b)

    flagged = [i for i, v in enumerate(verdicts) if v.anomalous]
    assert flagged and flagged[0] == 0  # the departure itself
    assert max(flagged) < 5  # alerts stop once the new level is a fair share of the window
    assert not any(v.anomalous for v in verdicts[20:])
    assert all(v.z_score == 0.0 for v in verdicts[40:])
    for v in verdicts:
        assert_finite_verdict(v)
    assert b.mean == pytest.approx(101.0)
    assert b.std == pytest.approx(0.0, abs=1e-6)


def test_departure_from_a_flat_zero_is_finite() -> None:
    b, _ = feed([0.0] * 20)

    _, v = step(b, 0.5, 0.0, SEED)

    assert v.anomalous
    assert_finite_verdict(v)
    assert v.deviation_percent == 0.0  # mean 0: deviation defined as 0


# --------------------------------------------------------------------------- severity


@pytest.mark.parametrize(
    ("z", "expected"),
    [
        (0.0, None),
        (2.5, None),
        (math.nextafter(2.5, 3.0), Severity.MEDIUM),
        (3.0, Severity.MEDIUM),
        (math.nextafter(3.0, 4.0), Severity.HIGH),
        (4.0, Severity.HIGH),
        (math.nextafter(4.0, 5.0), Severity.CRITICAL),
        (242.5, Severity.CRITICAL),
        (-2.5, None),
        (-2.6, Severity.MEDIUM),
        (-3.0, Severity.MEDIUM),
        (-3.5, Severity.HIGH),
        (-4.0, Severity.HIGH),
        (-4.01, Severity.CRITICAL),
    ],
)
def test_severity_boundaries_are_strictly_greater_than(z: float, expected: Severity | None) -> None:
    assert severity_for(z, SEED) is expected


def test_negative_departure_is_scored_by_magnitude() -> None:
    b, _ = feed(seed_window(10))

    _, v = step(b, 108.0 - 5.74 * 10, 0.0, SEED)

    assert v.z_score == pytest.approx(-10.0)
    assert v.anomalous
    assert v.severity is Severity.CRITICAL
    assert v.deviation_percent < 0


def test_severity_follows_configured_thresholds() -> None:
    config = DetectorConfig(z_threshold=1.0, z_high=2.0, z_critical=10.0, mode="seed")

    assert severity_for(1.5, config) is Severity.MEDIUM
    assert severity_for(5.0, config) is Severity.HIGH
    assert severity_for(10.5, config) is Severity.CRITICAL
    assert severity_for(1.0, config) is None


# --------------------------------------------------------------------------- rolling window


@pytest.mark.parametrize("window_size", [10, 37, 1000])
def test_rolling_mean_and_std_match_numpy_over_the_last_window(window_size: int) -> None:
    rng = random.Random(window_size)
    config = DetectorConfig(window_size=window_size, mode="seed")
    values = [rng.gauss(250.0, 40.0) for _ in range(window_size * 4 + 7)]
    b = Baseline()
    for i, v in enumerate(values, start=1):
        b, _ = step(b, v, float(i), config)
        if i > window_size and i % max(1, window_size // 5) == 0:
            last = np.asarray(values[i - window_size : i])
            assert b.n == window_size
            assert b.mean == pytest.approx(float(last.mean()), rel=1e-9)
            assert b.std == pytest.approx(float(last.std()), rel=1e-9)
    last = np.asarray(values[-window_size:])
    assert b.count == len(values)
    assert b.n == window_size
    assert sorted(b.window) == sorted(last.tolist())
    assert b.mean == pytest.approx(float(last.mean()), rel=1e-9)
    assert b.std == pytest.approx(float(last.std()), rel=1e-9)


def test_rolling_window_after_many_wraps_with_a_level_shift() -> None:
    config = DetectorConfig(window_size=50, mode="seed")
    rng = random.Random(3)
    values = [rng.gauss(1e6, 1.0) for _ in range(523)] + [rng.gauss(5.0, 0.1) for _ in range(77)]
    b, _ = feed(values, config)

    last = np.asarray(values[-50:])
    assert b.mean == pytest.approx(float(last.mean()), rel=1e-9)
    assert b.std == pytest.approx(float(last.std()), rel=1e-9)


# --------------------------------------------------------------------------- replay, state


def test_step_record_replay_of_the_same_offset_changes_nothing() -> None:
    b, _ = feed(seed_window(10))
    samples = [(1500.0, 1_800_000_000.0), (109.0, 1_800_000_060.0)]

    once, verdicts = step_record(b, samples, offset=42, config=SEED)
    again, replayed = step_record(once, samples, offset=42, config=SEED)
    older, replayed_older = step_record(once, samples, offset=41, config=SEED)

    assert len(verdicts) == 2 and verdicts[0].anomalous
    assert once.offsets == {"": 42}
    assert once.count == b.count + 2
    assert again == once and replayed == []
    assert older == once and replayed_older == []


def test_step_record_applies_a_newer_offset() -> None:
    once, _ = step_record(Baseline(), [(1.0, 1.0)], offset=0, config=SEED)

    twice, verdicts = step_record(once, [(2.0, 2.0)], offset=1, config=SEED)

    assert len(verdicts) == 1
    assert twice.count == 2 and twice.offsets == {"": 1}
    assert twice.last_timestamp == 2.0


def test_to_dict_from_dict_round_trip_is_equal_and_json_serialisable() -> None:
    rng = random.Random(11)
    config = DetectorConfig(window_size=30, mode="seed")
    b, _ = feed([rng.uniform(-50, 50) for _ in range(77)], config)
    b = replace(b, offsets={"autopilot.metrics/3": 1234})

    data = json.loads(json.dumps(b.to_dict(), allow_nan=False))
    restored = Baseline.from_dict(data)

    assert restored == b
    assert Baseline.from_dict(None) == Baseline()
    assert Baseline.from_dict(Baseline().to_dict()) == Baseline()
    # The restored baseline continues exactly like the original.
    assert step(restored, 7.0, 1.0, config) == step(b, 7.0, 1.0, config)


def test_state_of_a_full_default_window_fits_in_16_kb() -> None:
    rng = random.Random(5)
    b, _ = feed([rng.gauss(100.0, 15.0) for _ in range(1500)])

    assert b.n == 1000
    assert len(json.dumps(b.to_dict())) <= 16 * 1024


def test_huge_values_give_finite_scores() -> None:
    b, verdicts = feed([1e300, -1e300] * 6 + [1e300])

    _, v = step(b, -1e300, 0.0, SEED)

    for verdict in [*verdicts, v]:
        assert_finite_verdict(verdict)
    assert math.isfinite(b.mean) and math.isfinite(b.std)
    assert abs(v.z_score) <= MAX_SCORE
    assert math.isfinite(z_score(1e300, -1e300, 1e-300))
    assert math.isfinite(deviation_percent(1e300, 1e-300))


def test_huge_departure_from_a_flat_baseline_is_finite() -> None:
    b, _ = feed([1.0] * 20)

    _, v = step(b, 1e308, 0.0, SEED)

    assert_finite_verdict(v)
    assert v.z_score == MAX_SCORE
    assert v.severity is Severity.CRITICAL


# --------------------------------------------------------------------------- anomaly record


def point(value: float = 1500.0) -> MetricPoint:
    return metric_point(value, environment="production", region="eu")


def test_make_anomaly_carries_every_seed_field() -> None:
    b, _ = feed(seed_window(10))
    p = point()
    _, verdict = step(b, p.value, p.timestamp.timestamp(), SEED)

    a = make_anomaly(p, verdict)

    assert a.kind == "metric"
    assert a.metric_name == "api_latency_ms"
    assert a.service == "checkout"
    assert a.series == "checkout|api_latency_ms|environment=production,region=eu"
    assert a.current_value == 1500.0
    assert a.baseline_mean == pytest.approx(108.0)
    assert a.baseline_std_dev == pytest.approx(5.74)
    assert a.z_score == pytest.approx(242.5, rel=1e-3)
    assert a.deviation_percent == pytest.approx(1288.9, rel=1e-4)
    assert a.severity is Severity.CRITICAL
    assert a.detected_at == T0
    assert a.labels == p.labels
    json.loads(a.model_dump_json())  # strict JSON


def test_make_anomaly_refuses_a_normal_or_cold_verdict() -> None:
    b, _ = feed(seed_window(10))
    _, normal = step(b, 108.0, 0.0, SEED)
    _, cold = step(Baseline(), 1e9, 0.0, SEED)

    with pytest.raises(ValueError, match="anomalous"):
        make_anomaly(point(108.0), normal)
    with pytest.raises(ValueError, match="anomalous"):
        make_anomaly(point(1e9), cold)


# --------------------------------------------------------------------------- settings


def test_config_from_default_settings_equals_seed_defaults() -> None:
    config = DetectorConfig.from_settings(load_settings({}))

    assert config == DetectorConfig()
    assert (config.window_size, config.min_samples) == (1000, 10)
    assert (config.z_threshold, config.z_high, config.z_critical) == (2.5, 3.0, 4.0)


def test_config_from_settings_follows_the_environment() -> None:
    s = load_settings(
        {
            "AUTOPILOT_WINDOW_SIZE": "200",
            "AUTOPILOT_MIN_SAMPLES": "20",
            "AUTOPILOT_Z_THRESHOLD": "2",
            "AUTOPILOT_Z_HIGH": "3.5",
            "AUTOPILOT_Z_CRITICAL": "6",
        }
    )

    assert DetectorConfig.from_settings(s) == DetectorConfig(200, 20, 2.0, 3.5, 6.0)
