"""Unit tests of the adaptive detector's novelty rules and routine memory.

Novelty: a value outside the series' all-time range, or in a part of the range never
seen, scores 1.0 (when its |z| also exceeds ``novelty_z``). Routine: a departure like
one in the same 15-minute slot on one of the previous ``season_days`` days is damped
and does not alert.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace

from autopilot.detection import (
    SLOTS_PER_DAY,
    Baseline,
    DetectorConfig,
    step,
    step_record,
)
from tests.unit.test_detection_adaptive import ADAPTIVE, alerts, feed, noise

DAY = 86_400.0
STEP = 300.0  # 5-minute samples, as in NAB
PER_DAY = int(DAY // STEP)
MIDNIGHT = 1_700_006_400.0  # 2023-11-15 00:00 UTC
AT_3 = int(3 * 3600 // STEP)  # the sample at 03:00


def at(day: int, sample: int) -> int:
    return day * PER_DAY + sample


def daily_spikes(days: int, height: float = 160.0) -> list[float]:
    """Bounded noise around 100 (σ ≈ 4.3) with a spike to ``height`` at 03:00 every day."""
    values = noise(days * PER_DAY)
    for d in range(days):
        values[at(d, AT_3)] = height
    return values


# --- novelty: outside the all-time range --------------------------------------------


def test_a_value_beyond_the_all_time_range_scores_one_and_alerts_at_once() -> None:
    _, verdicts = feed(noise(1000) + [130.0])
    last = verdicts[-1]
    assert last.z_score > ADAPTIVE.novelty_z
    assert last.score == 1.0 and last.anomalous

    # The likelihood alone ranks it far lower (this test can tell the rule is on).
    _, verdicts = feed(noise(1000) + [130.0], replace(ADAPTIVE, spatial_tolerance=-1.0))
    assert verdicts[-1].score < 0.5


def test_novelty_needs_a_large_z_so_noise_stays_calm() -> None:
    # 100 fresh Gaussian-noise series of 3,000 samples each (12.5 h at 15 s): a new
    # all-time high is common in noise, so novelty alone must not page; with
    # |z| > novelty_z (5) as well, about as few series alert as without the rules.
    rng = random.Random(11)

    def paged(config: DetectorConfig) -> int:
        count = 0
        for _ in range(100):
            samples = [(100.0 + rng.gauss(0.0, 5.0), 1.7e9 + i * 15.0) for i in range(3000)]
            _, verdicts = step_record(Baseline(), samples, 0, config)
            count += any(v.anomalous for v in verdicts)
        return count

    assert paged(ADAPTIVE) <= 3
    # Without the |z| bar, nearly every noise series pages (the rule HTM uses as is).
    assert paged(replace(ADAPTIVE, novelty_z=0.0)) >= 50


def test_novelty_respects_the_metric_direction() -> None:
    # A latency metric alerts upwards only: a new all-time low is good news.
    latency = ADAPTIVE.for_metric("http_request_latency_seconds")
    _, verdicts = feed(noise(1000) + [70.0], latency)
    assert verdicts[-1].score < 0.2 and not verdicts[-1].anomalous
    _, verdicts = feed(noise(1000) + [70.0], ADAPTIVE.for_metric("cpu_utilization"))
    assert verdicts[-1].score == 1.0 and verdicts[-1].anomalous


def test_novelty_waits_for_the_likelihood_warm_up() -> None:
    # At sample 50 the range rests on 40 learned values: no novelty yet.
    _, verdicts = feed(noise(50) + [130.0])
    assert verdicts[-1].score < 1.0


# --- novelty: a part of the range never seen -----------------------------------------


def bimodal(n: int) -> list[float]:
    """A floor at 0.1 (tiny noise) with a spike to 1.5 every 100 samples."""
    rng = random.Random(3)
    return [1.5 if i % 100 == 50 else 0.1 + rng.uniform(-0.005, 0.005) for i in range(n)]


def test_a_value_in_a_never_seen_part_of_the_range_scores_one() -> None:
    config = replace(ADAPTIVE, season_days=0, episode_s=600.0)
    # 0.8 lies inside the range 0.1–1.5 but where no sample ever fell.
    _, verdicts = feed(bimodal(900) + [0.8], config)
    assert verdicts[-1].score == 1.0 and verdicts[-1].anomalous
    # The routine spikes to 1.5 are not novel: their bin is full.
    _, verdicts = feed(bimodal(951), config)
    assert verdicts[-1].value == 1.5 and verdicts[-1].score < 1.0
    # Before 500 scored samples the density memory does not decide.
    _, verdicts = feed(bimodal(300) + [0.8], config)
    assert verdicts[-1].score < 1.0


def test_a_tunable_set_on_the_package_reaches_the_stage_that_reads_it() -> None:
    # bench/detection.py --ablation sets module constants on autopilot.detection; the
    # density memory lives in autopilot.detection.novelty.
    from autopilot import detection

    config = replace(ADAPTIVE, season_days=0, episode_s=600.0)
    _, verdicts = feed(bimodal(900) + [0.8], config)
    assert verdicts[-1].score == 1.0  # control: the density memory finds it novel
    saved = detection.DENSITY_BINS
    try:
        detection.DENSITY_BINS = 0  # the memory off
        b, verdicts = feed(bimodal(900) + [0.8], config)
    finally:
        detection.DENSITY_BINS = saved
    assert verdicts[-1].score < 1.0 and b.density == ()


def test_a_value_in_a_well_visited_part_of_the_range_is_not_novel() -> None:
    # Uniform values over 0–100 fill every bin; 50 is ordinary.
    rng = random.Random(4)
    values = [rng.uniform(0.0, 100.0) for _ in range(900)]
    _, verdicts = feed(values + [50.0], replace(ADAPTIVE, season_days=0))
    assert verdicts[-1].score < 1.0 and not verdicts[-1].anomalous


# --- routine memory ------------------------------------------------------------------


def test_a_spike_at_the_same_time_every_day_alerts_on_the_first_day_only() -> None:
    config = replace(ADAPTIVE, episode_s=3600.0)  # short episodes: each day stands alone
    _, verdicts = feed(daily_spikes(5), config, start=MIDNIGHT, step_s=STEP)
    assert alerts(verdicts) == [at(0, AT_3)]
    assert all(verdicts[at(d, AT_3)].score < 0.1 for d in range(1, 5))

    # Without the memory every day's spike pages (this test can fail).
    _, verdicts = feed(daily_spikes(5), replace(config, season_days=0),
                       start=MIDNIGHT, step_s=STEP)
    assert alerts(verdicts) == [at(d, AT_3) for d in range(5)]


def test_a_spike_at_another_time_or_beyond_the_range_still_alerts() -> None:
    config = replace(ADAPTIVE, episode_s=3600.0)
    values = daily_spikes(5)
    values[at(3, 15 * 12)] = 160.0  # day 3 at 15:00: not routine
    values[at(4, AT_3)] = 220.0  # day 4 at 03:00, far above every earlier value: novel
    _, verdicts = feed(values, config, start=MIDNIGHT, step_s=STEP)
    assert alerts(verdicts) == [at(0, AT_3), at(3, 15 * 12), at(4, AT_3)]
    assert verdicts[at(4, AT_3)].score == 1.0


def test_a_calm_series_keeps_no_routine_memory() -> None:
    b, _ = feed(noise(2000), start=MIDNIGHT, step_s=STEP)  # bounded noise: |z| < 2.5
    assert (b.season, b.season_slot) == (b"", -1)


def test_the_routine_memory_forgets_after_season_days() -> None:
    # Spikes on days 0 and 1, then nothing until day 5: the memory (3 days) is empty
    # again, so day 5's spike at 03:00 alerts.
    config = replace(ADAPTIVE, episode_s=3600.0)
    values = noise(6 * PER_DAY)
    for d in (0, 1, 5):
        values[at(d, AT_3)] = 160.0
    _, verdicts = feed(values, config, start=MIDNIGHT, step_s=STEP)
    assert alerts(verdicts) == [at(0, AT_3), at(5, AT_3)]


def test_a_gap_longer_than_the_memory_starts_it_afresh() -> None:
    config = replace(ADAPTIVE, episode_s=3600.0)
    b, _ = feed(daily_spikes(2), config, start=MIDNIGHT, step_s=STEP)
    assert any(b.season)
    later = MIDNIGHT + 10 * DAY
    b2, verdict = step(b, 100.0, later, config)
    assert (b2.season, b2.season_slot) == (b"", -1)  # all expired, nothing new to keep
    assert not verdict.anomalous
    b3, _ = step(b2, 160.0, later + STEP, config)  # a departure starts it again
    assert sum(map(bool, b3.season)) == 1 and b3.season_slot == int((later + STEP) // 900)


def test_season_days_zero_keeps_no_memory_and_a_changed_setting_starts_afresh() -> None:
    off = replace(ADAPTIVE, season_days=0)
    b, _ = feed(daily_spikes(2), off, start=MIDNIGHT, step_s=STEP)
    assert b.season == b"" and b.season_slot == -1
    b3, _ = feed(daily_spikes(2), ADAPTIVE, start=MIDNIGHT, step_s=STEP)
    assert len(b3.season) == 3 * SLOTS_PER_DAY + 2
    five = replace(ADAPTIVE, season_days=5)
    b5, _ = step(b3, 100.0, MIDNIGHT + 2 * DAY, five)
    assert b5.season == b""  # the 3-day memory does not fit: dropped
    b5, _ = step(b5, 160.0, MIDNIGHT + 2 * DAY + STEP, five)
    assert len(b5.season) == 5 * SLOTS_PER_DAY + 2


# --- state -----------------------------------------------------------------------------


def test_one_record_or_sample_by_sample_give_the_same_verdicts_and_state() -> None:
    values = daily_spikes(4)
    values[at(2, 200)] = 0.0  # a new low, inside no routine
    stamps = [MIDNIGHT + i * STEP for i in range(len(values))]
    by_sample, verdicts = feed(values, start=MIDNIGHT, step_s=STEP)
    b = Baseline()
    batched = []
    for k in range(0, len(values), 97):  # records of 97 samples
        b, vs = step_record(b, list(zip(values[k:k + 97], stamps[k:k + 97], strict=True)),
                            k, ADAPTIVE)
        batched += vs
    assert batched == verdicts
    assert b.season == by_sample.season and b.density == by_sample.density
    assert (b.low, b.high) == (by_sample.low, by_sample.high) == (0.0, 160.0)


def test_a_state_written_before_these_rules_loads_and_learns_them() -> None:
    b, _ = feed(noise(800))
    old = {k: v for k, v in b.to_dict().items()
           if k not in ("low", "high", "season", "season_slot", "density")}
    restored = Baseline.from_dict(json.loads(json.dumps(old)))
    assert restored.low is None and restored.season == b"" and restored.density == ()
    b2, _ = feed(noise(10, seed=2), baseline=restored, start=1_800_000_000.0)
    assert b2.low is not None and b2.high is not None and b2.density
