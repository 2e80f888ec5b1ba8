"""Charts of anomalous series: the bounded sample ring, choosing what to draw, the PNG."""

from __future__ import annotations

import io
import json
import math
import struct
from typing import Any

import numpy as np
import pytest
from PIL import Image

from autopilot.charts import (
    DEFAULT_CAPACITY,
    SampleRing,
    chart_spec,
    fit_ylim,
    pyplot,
    rates,
    render_chart,
    select_series,
)

T0 = 1_700_000_000.0
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def has_colour(data: bytes, rgb: tuple[int, int, int], tolerance: int = 40) -> bool:
    """Some pixel of the PNG is within ``tolerance`` of ``rgb`` in every channel."""
    with Image.open(io.BytesIO(data)) as img:
        px = np.asarray(img.convert("RGB"), dtype=np.int16)
    return bool((np.abs(px - np.array(rgb, dtype=np.int16)) <= tolerance).all(axis=-1).any())


RED = (255, 0, 0)
GREEN = (44, 160, 44)  # tab:green
PURPLE = (148, 103, 189)  # tab:purple


def normal_then_spike(n: int = 60, spikes: int = 4) -> list[tuple[float, float]]:
    pattern = [100.0, 104.0, 96.0, 102.0, 98.0]
    out = [(T0 + i * 15, pattern[i % 5]) for i in range(n)]
    out += [(T0 + (n + j) * 15, 1500.0) for j in range(spikes)]
    return out


def chart(samples: list[tuple[float, float]], **kw: Any) -> bytes:
    args: dict[str, Any] = {
        "title": "checkout / latency_ms", "baseline_mean": 100.0, "baseline_std": 3.0,
        "band_z": 2.0, "anomalies": [], "deployments": [],
    }
    args.update(kw)
    return render_chart(samples, **args)


# --------------------------------------------------------------------------- SampleRing


def test_ring_keeps_only_the_newest_capacity_samples_oldest_first() -> None:
    ring = SampleRing(capacity=5).append_many([(T0 + i, float(i)) for i in range(12)])

    assert ring.samples == [(T0 + i, float(i)) for i in range(7, 12)]
    assert len(ring) == 5
    assert ring.last_time == T0 + 11


def test_ring_default_capacity_is_240() -> None:
    ring = SampleRing().append_many([(T0 + i, 1.0) for i in range(300)])

    assert DEFAULT_CAPACITY == 240
    assert len(ring) == 240
    assert ring.times[0] == T0 + 60


def test_ring_bounds_hold_across_many_small_appends() -> None:
    ring = SampleRing(capacity=3)
    for i in range(10):
        ring = ring.append_many([(T0 + i, float(i))])

    assert ring.samples == [(T0 + 7, 7.0), (T0 + 8, 8.0), (T0 + 9, 9.0)]


def test_ring_ignores_samples_not_newer_than_the_newest_kept() -> None:
    ring = SampleRing().append_many([(T0 + 10, 1.0), (T0 + 20, 2.0)])

    again = ring.append_many([(T0 + 20, 9.0), (T0 + 5, 9.0), (T0 + 15, 9.0)])  # replay, late

    assert again is ring  # nothing added: the very same ring (no table write needed)
    assert ring.samples == [(T0 + 10, 1.0), (T0 + 20, 2.0)]


def test_ring_ignores_an_out_of_order_sample_within_one_batch() -> None:
    ring = SampleRing().append_many([(T0 + 1, 1.0), (T0 + 3, 3.0), (T0 + 2, 2.0), (T0 + 4, 4.0)])

    assert ring.times == (T0 + 1, T0 + 3, T0 + 4)


def test_ring_ignores_non_finite_samples() -> None:
    ring = SampleRing().append_many(
        [(T0, math.nan), (T0 + 1, math.inf), (math.inf, 1.0), (T0 + 2, 2.0)])

    assert ring.samples == [(T0 + 2, 2.0)]


def test_ring_append_leaves_the_original_unchanged() -> None:
    ring = SampleRing().append_many([(T0, 1.0)])

    newer = ring.append_many([(T0 + 1, 2.0)])

    assert ring.samples == [(T0, 1.0)]
    assert newer.samples == [(T0, 1.0), (T0 + 1, 2.0)]


def test_ring_round_trips_through_json_compactly() -> None:
    ring = SampleRing(capacity=240, counter=True).append_many(
        [(T0 + i * 15.0, 1e6 + i * 0.1) for i in range(240)])

    stored = json.loads(json.dumps(ring.to_dict()))
    back = SampleRing.from_dict(stored)

    assert back == ring
    assert back.counter is True
    assert set(stored) == {"capacity", "counter", "t", "v"}
    assert len(json.dumps(stored)) < 6_500  # two base64 float64 arrays, ~5 KB


def test_ring_round_trip_is_exact_for_awkward_floats() -> None:
    values = [0.1, -0.0, 5e-324, 1.7976931348623157e308, -1e-300]
    ring = SampleRing().append_many([(T0 + i, v) for i, v in enumerate(values)])

    back = SampleRing.from_dict(ring.to_dict())

    assert [struct.pack("<d", v) for v in back.values] == [struct.pack("<d", v) for v in values]


def test_ring_from_nothing_is_empty() -> None:
    assert SampleRing.from_dict(None).samples == []
    assert SampleRing.from_dict({}).samples == []
    assert SampleRing.from_dict(None).counter is False


@pytest.mark.parametrize("bad", [
    {"t": "not base64!", "v": ""},
    {"t": "AAAA", "v": ""},  # 3 bytes: not a float64 array
    {"t": SampleRing().append_many([(T0, 1.0)]).to_dict()["t"], "v": ""},  # lengths differ
    {"capacity": 0, "t": "", "v": ""},
    {"capacity": "many", "t": "", "v": ""},
    {"t": 5, "v": ""},
])
def test_ring_from_a_malformed_value_raises_value_error(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SampleRing.from_dict(bad)


def test_ring_from_a_value_with_decreasing_times_raises_value_error() -> None:
    data = SampleRing(times=(T0 + 1, T0), values=(0.0, 0.0)).to_dict()

    with pytest.raises(ValueError, match="increasing"):
        SampleRing.from_dict(data)


def test_ring_refuses_a_capacity_below_one() -> None:
    with pytest.raises(ValueError):
        SampleRing(capacity=0)


def test_counter_rates_are_per_second_and_skip_resets() -> None:
    samples = [(T0, 100.0), (T0 + 10, 150.0), (T0 + 20, 150.0), (T0 + 30, 3.0),
               (T0 + 30, 5.0), (T0 + 40, 23.0)]

    assert rates(samples) == [(T0 + 10, 5.0), (T0 + 20, 0.0), (T0 + 40, 1.8)]


def test_ring_scored_gives_rates_for_a_counter_and_raw_values_otherwise() -> None:
    points = [(T0, 0.0), (T0 + 15, 30.0), (T0 + 30, 90.0)]

    assert SampleRing(counter=True).append_many(points).scored() == [(T0 + 15, 2.0),
                                                                     (T0 + 30, 4.0)]
    assert SampleRing().append_many(points).scored() == points


# --------------------------------------------------------------------------- render


def test_render_returns_a_small_png() -> None:
    png = chart(normal_then_spike())

    assert png_size(png) == (800, 300)
    assert 5_000 < len(png) < 200_000


def test_render_marks_anomalies_in_red_and_only_then() -> None:
    samples = normal_then_spike()
    without = chart(samples, anomalies=[])
    with_marker = chart(samples, anomalies=[(T0 + 60 * 15, 1500.0)])

    assert has_colour(with_marker, RED, tolerance=30)
    assert not has_colour(without, RED, tolerance=30)


def test_render_draws_the_resolution_as_a_green_line() -> None:
    samples = normal_then_spike()

    assert has_colour(chart(samples, resolved_at=T0 + 66 * 15), GREEN, tolerance=20)
    assert not has_colour(chart(samples), GREEN, tolerance=20)


def test_render_draws_deployments_near_and_far() -> None:
    samples = normal_then_spike()
    near = chart(samples, deployments=[(T0 + 55 * 15, "v2.3.1")])
    far = chart(samples, deployments=[(T0 - 7 * 86_400, "v2.0.0")])  # a week before

    assert has_colour(near, PURPLE, tolerance=20)
    assert has_colour(far, PURPLE, tolerance=20)  # named at the chart's edge
    assert png_size(far) == (800, 300)


def test_render_without_a_band_differs_from_with_one() -> None:
    samples = normal_then_spike()

    banded = chart(samples)
    bare = chart(samples, baseline_mean=None, baseline_std=None)
    non_finite = chart(samples, baseline_mean=math.nan, baseline_std=1.0)

    assert png_size(bare) == (800, 300)
    assert banded != bare
    assert non_finite == bare  # a non-finite baseline draws no band


def test_render_draws_counter_rates() -> None:
    counts = [(T0 + i * 15, i * 30.0 + (600.0 if i > 50 else 0.0)) for i in range(60)]
    ring = SampleRing(counter=True).append_many(counts)

    png = chart(ring.scored(), baseline_mean=2.0, baseline_std=0.1, value_label="per-second rate",
                anomalies=[(T0 + 51 * 15, 42.0)])

    assert png_size(png) == (800, 300)


@pytest.mark.parametrize("scale", [1e18, 1e300, 1.7e308])
def test_render_copes_with_huge_values(scale: float) -> None:
    samples = [(T0 + i, scale * (1 if i % 2 else -1)) for i in range(20)]

    png = chart(samples, baseline_mean=0.0, baseline_std=scale, band_z=2.5,
                anomalies=[(T0 + 3, scale)])

    assert png_size(png) == (800, 300)


def test_render_copes_with_a_flat_series_of_huge_magnitude() -> None:
    png = chart([(T0 + i, 1e300) for i in range(5)], baseline_mean=1e300, baseline_std=0.0)

    assert png_size(png) == (800, 300)


def test_render_draws_a_single_sample() -> None:
    png = chart([(T0, 5.0)], baseline_mean=None, baseline_std=None)

    assert png_size(png) == (800, 300)
    assert has_colour(png, (0, 0, 0), tolerance=10)


def test_render_with_zero_std_and_a_long_title() -> None:
    png = chart(normal_then_spike(), baseline_std=0.0, title="x" * 500)

    assert png_size(png) == (800, 300)


@pytest.mark.parametrize("samples", [[], [(T0, math.nan)], [(math.inf, 1.0)]])
def test_render_without_a_finite_sample_raises_value_error(
    samples: list[tuple[float, float]],
) -> None:
    with pytest.raises(ValueError, match="no finite sample"):
        chart(samples)


def test_fit_ylim_pads_by_a_tenth_of_the_range_or_one_when_flat() -> None:
    plt = pyplot()
    fig, ax = plt.subplots()
    try:
        fit_ylim(ax, [0.0, 10.0, math.nan])
        assert ax.get_ylim() == pytest.approx((-1.0, 11.0))
        fit_ylim(ax, [5.0, 5.0])
        assert ax.get_ylim() == pytest.approx((4.0, 6.0))
        fit_ylim(ax, [1e300, 1e300])  # a pad of 1 would vanish in rounding
        low, high = ax.get_ylim()
        assert low < 1e300 < high
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------- choosing


def anomaly(series: str, at: float, severity: str = "high", state: str = "firing",
            kind: str = "metric", value: float = 1500.0, mean: float = 100.0,
            std: float = 3.0) -> dict[str, Any]:
    service, metric, _ = series.split("|")
    return {"kind": kind, "state": state, "metric_name": metric, "service": service,
            "series": series, "current_value": value, "baseline_mean": mean,
            "baseline_std_dev": std, "z_score": 5.0, "deviation_percent": 100.0,
            "severity": severity, "detected_at": T0 + at, "labels": {"service": service}}


LAT = "checkout|latency_ms|"
CPU = "checkout|cpu|host=a"
ERR = "checkout|error_rate|"


def test_select_prefers_the_most_severe_firing_series() -> None:
    anomalies = [anomaly(LAT, 10, "medium"), anomaly(CPU, 5, "critical"),
                 anomaly(ERR, 20, "critical", kind="error_rate")]

    assert select_series(anomalies) == CPU


def test_select_skips_a_series_whose_newest_anomaly_resolved() -> None:
    anomalies = [anomaly(CPU, 5, "critical"), anomaly(CPU, 50, "medium", state="resolved"),
                 anomaly(LAT, 10, "medium")]

    assert select_series(anomalies) == LAT


def test_select_takes_the_latest_evidence_when_nothing_fires() -> None:
    anomalies = [anomaly(CPU, 5, "critical"), anomaly(CPU, 50, state="resolved"),
                 anomaly(LAT, 10, "medium"), anomaly(LAT, 90, state="resolved")]

    assert select_series(anomalies) == LAT


def test_select_lets_signals_decide_when_the_incident_carries_them() -> None:
    anomalies = [anomaly(CPU, 5, "critical"), anomaly(LAT, 10, "medium")]
    signals = [
        {"series": CPU, "kind": "metric", "metric_name": "cpu", "state": "resolved",
         "severity": "critical", "first_at": T0 + 5, "last_at": T0 + 60},
        {"series": LAT, "kind": "metric", "metric_name": "latency_ms", "state": "firing",
         "severity": "medium", "first_at": T0 + 10, "last_at": T0 + 10},
        {"series": ERR, "kind": "error_rate", "metric_name": "error_rate", "state": "firing",
         "severity": "critical", "first_at": T0, "last_at": T0},
    ]

    assert select_series(anomalies, signals) == LAT


def test_select_finds_nothing_without_a_metric_series() -> None:
    assert select_series([anomaly(ERR, 1, kind="error_rate")]) is None
    assert select_series([]) is None


def test_spec_band_is_the_baseline_frozen_at_the_first_firing_anomaly() -> None:
    anomalies = [anomaly(LAT, 30, "critical", value=2000.0, mean=140.0, std=9.0),
                 anomaly(LAT, 10, "medium", value=1500.0, mean=100.0, std=3.0),
                 anomaly(CPU, 12, "critical")]

    spec = chart_spec(LAT, anomalies, incident_id="inc-1", recover_z=2.0, z_threshold=2.5)

    assert (spec.baseline_mean, spec.baseline_std, spec.band_z) == (100.0, 3.0, 2.0)
    assert spec.anomalies == ((T0 + 10, 1500.0), (T0 + 30, 2000.0))
    assert spec.resolved_at is None
    assert spec.title == "latency_ms · checkout — inc-1 (firing)"


def test_spec_of_a_series_without_anomalies_uses_its_current_baseline_and_threshold() -> None:
    spec = chart_spec(CPU, [anomaly(LAT, 10)], recover_z=2.0, z_threshold=2.5,
                      current_baseline=(40.0, 4.0))

    assert (spec.baseline_mean, spec.baseline_std, spec.band_z) == (40.0, 4.0, 2.5)
    assert spec.anomalies == ()
    assert spec.title == "cpu{host=a} · checkout"


def test_spec_resolution_comes_from_the_signal_then_the_incident() -> None:
    firing = [anomaly(LAT, 10)]
    signal = {"series": LAT, "kind": "metric", "state": "resolved", "severity": "high",
              "first_at": T0 + 10, "last_at": T0 + 10, "resolved_at": T0 + 200,
              "metric_name": "latency_ms"}

    by_signal = chart_spec(LAT, firing, signals=[signal], incident_resolved_at=T0 + 900)
    by_incident = chart_spec(LAT, firing, incident_resolved_at=T0 + 900)
    by_anomaly = chart_spec(LAT, firing + [anomaly(LAT, 120, state="resolved")])

    assert by_signal.resolved_at == T0 + 200
    assert by_incident.resolved_at == T0 + 900
    assert by_anomaly.resolved_at == T0 + 120
    assert by_signal.title.endswith("(resolved)")


def test_spec_reads_records_as_well_as_json_dicts() -> None:
    from autopilot.models import Anomaly

    record = Anomaly.model_validate(anomaly(LAT, 10))

    spec = chart_spec(LAT, [record])

    assert spec.baseline_mean == 100.0
    assert spec.anomalies == ((T0 + 10, 1500.0),)


def test_render_names_only_the_deployment_in_effect_and_the_next_far_ones() -> None:
    samples = normal_then_spike()
    many_old = [(T0 - d * 86_400, f"v1.{d}") for d in range(1, 30)]

    png = chart(samples, deployments=many_old + [(T0 + 30 * 86_400, "v9")])

    assert png_size(png) == (800, 300)


def test_render_refuses_a_time_outside_the_calendar() -> None:
    with pytest.raises(ValueError, match="outside the calendar"):
        chart([(1e15, 1.0)])
