"""The adaptive detector's per-sample loop: each sample of one record runs through the
stages in the order of :mod:`autopilot.detection`'s rules (part of that package).

Per sample: a counter becomes a rate (:mod:`.baseline`); the value is scored against
the baseline it does not yet belong to (cold until ``min_samples`` are learned):
z-score and direction (:mod:`.scoring`), with the seasonal stage on also against the
seasonal expectation once a period is confirmed (:mod:`.seasonal`; the larger
departure counts and is reported), anomaly likelihood (:mod:`.likelihood`),
routine memory (:mod:`.routine`), novelty (:mod:`.novelty`), episode and firing
(:mod:`.episodes`); then it is learned: the raw-score law, the range and value
density, the robust location and scale. O(1) per sample (plus, when the range grows,
re-binning 48 counts; per record, one copy of the routine memory and the counts, and
one encode of the seasonal model).

The loop keeps the state in local variables and builds one
:class:`~autopilot.detection.state.Baseline` at the end of the record; the state
carried from sample to sample is exactly the Baseline's fields, and every
floating-point expression keeps its operation order, so a record of N samples gives
bit for bit what N records of one sample give (tests/unit/test_batching.py). A stage
whose inputs cannot change anything is not called (the routine memory of a calm
series, novelty below ``novelty_z``, the firing signal of a series that never fired).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from autopilot.detection import episodes, novelty, routine
from autopilot.detection.baseline import counter_rate, learn, sigma
from autopilot.detection.config import DetectorConfig
from autopilot.detection.episodes import one_alert_per_episode, track_firing
from autopilot.detection.likelihood import RAW_SCORE_CAP, anomaly_score, learn_raw_score
from autopilot.detection.novelty import is_novel, learn_range, load_density
from autopilot.detection.routine import load_ring, remember_and_damp, ring_length
from autopilot.detection.scoring import deviation_percent, directional, z_score
from autopilot.detection.seasonal import (
    behaviour_raw,
    load_model,
    save_model,
    seasonal_departure,
)
from autopilot.detection.state import Baseline, Verdict, new_baseline, new_verdict
from autopilot.models import Severity
from autopilot.seasonal import SeasonalScore

__all__ = ["run_adaptive"]


def run_adaptive(
    baseline: Baseline,
    samples: Sequence[tuple[float, float]],
    config: DetectorConfig,
    offsets: Mapping[str, int],
) -> tuple[Baseline, list[Verdict]]:
    """Adaptive mode over ``samples`` (``(value, epoch s)`` pairs, non-empty).

    Args:
        baseline: the series' state (one of the seed mode is replaced: re-learning).
        samples: the record's samples, in order.
        config: resolved for the series (:meth:`DetectorConfig.for_metric`).
        offsets: the state's source offsets after this record (:mod:`autopilot.replay`).

    Returns:
        ``(new_baseline, verdicts)``, one verdict per sample.
    """
    b = baseline
    if b.mode != "adaptive":
        b = Baseline(mode="adaptive", count=b.count, offsets=b.offsets,
                     last_timestamp=b.last_timestamp)
    count, last_ts = b.count, b.last_timestamp
    mean, scale, learned = b.mean, b.scale, b.learned
    run_count, run_sum, run_side = b.run_count, b.run_sum, b.run_side
    score_short, score_mean, score_var, score_n = (
        b.score_short, b.score_mean, b.score_var, b.score_n)
    last_alert, last_alert_rank = b.last_alert, b.last_alert_rank
    firing = (b.firing_mean, b.firing_std, b.firing_rank, b.recover_run, b.last_sent)
    recover_z, recover_samples, resend_s = (
        config.recover_z, config.recover_samples, config.signal_resend_s)
    ends_episode = episodes.RECOVERY_ENDS_EPISODE
    prev_value, prev_time = b.prev_value, b.prev_time
    range_low, range_high = b.low, b.high
    tolerance, novelty_z = config.spatial_tolerance, config.novelty_z
    days = config.season_days
    ring_len = ring_length(days)
    store_above = config.z_threshold - routine.Q_TO_RAW
    ring, newest = load_ring(b.season, b.season_slot, ring_len)
    nbins = novelty.DENSITY_BINS
    counts, total = load_density(b.density, nbins)
    model = load_model(b.seasonal) if config.seasonal != "off" else None
    behaviour = config.seasonal == "behaviour"
    sc: SeasonalScore | None = None

    counter, direction = config.counter, config.direction
    up, down = direction == "up", direction == "down"
    min_samples, alpha, clip = config.min_samples, config.alpha, config.clip
    relearn_z, relearn_after = config.relearn_z, config.relearn_after
    short_w, long_w = config.likelihood_short, config.likelihood_long
    warmup, alert_score, episode_s = config.likelihood_warmup, config.alert_score, config.episode_s
    z_threshold, z_high, z_critical = config.z_threshold, config.z_high, config.z_critical
    warmup_z = config.warmup_z
    damp = 0.5 * alert_score
    critical, high, medium = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM
    verdicts: list[Verdict] = []
    append = verdicts.append

    for value, timestamp in samples:
        count += 1
        last_ts = last_ts if last_ts > timestamp else timestamp  # max(timestamp, last_ts)
        x: float | None = value
        if counter:
            x = counter_rate(value, timestamp, prev_value, prev_time)
            prev_value, prev_time = value, timestamp
        std = sigma(mean, scale)
        if x is None:
            append(new_verdict(value, mean, std, 0.0, 0.0, False, None, True, {}, 0.0))
            continue
        dx = x - mean
        if model is not None:  # the seasonal score, against the model before x
            finite = x - x == 0.0 and timestamp - timestamp == 0.0
            sc = model.update(timestamp, x, behaviour) if finite else None

        if learned < min_samples:
            append(new_verdict(x, mean, std, 0.0, 0.0, False, None, True, {}, 0.0))
        else:
            # Score: z-score, direction, severity (the seed's rule), likelihood.
            z = z_score(x, mean, std)
            d_z = directional(z, up, down)
            ref_mean, ref_std, ref_z = mean, std, z
            period = None
            if sc is not None and sc.expected is not None and sc.spread is not None:
                # Seasonal stage: the larger departure counts, and is reported.
                s_z, s_dz = seasonal_departure(sc, up, down)
                if s_dz > d_z:
                    d_z, ref_mean, ref_std, ref_z = s_dz, sc.expected, sc.spread, s_z
                    period = sc.period
            raw = RAW_SCORE_CAP if RAW_SCORE_CAP < d_z else d_z
            if behaviour and sc is not None:
                b_raw = behaviour_raw(sc)
                raw = b_raw if b_raw > raw else raw
            short = score_short + short_w * (raw - score_short)
            magnitude = abs(d_z)
            severity = (critical if magnitude > z_critical else high if magnitude > z_high
                        else medium if magnitude > z_threshold else None)
            score, hot = anomaly_score(short, magnitude, severity, score_mean, score_var,
                                       score_n, warmup, warmup_z, alert_score)
            if ring_len and (ring or raw > store_above):
                ring, newest, score, hot = remember_and_damp(
                    ring, newest, ring_len, days, timestamp, raw, score, hot, damp,
                    z_threshold, store_above)
            novel = magnitude > novelty_z and is_novel(
                x, dx, up, down, tolerance, score_n, warmup, range_low, range_high,
                counts, total)
            if novel:
                score = 1.0
                hot = severity is not None
            score_mean, score_var, score_n = learn_raw_score(
                raw, score_mean, score_var, score_n, long_w)
            score_short = short

            in_episode, alert, score = one_alert_per_episode(
                timestamp, hot, severity, novel, score, last_alert, last_alert_rank,
                episode_s, damp)
            extras: dict[str, Any] = {"in_episode": in_episode, "direction": direction}
            if period is not None:
                extras["seasonal_period"] = period
            signal = None
            ended = False
            if alert or firing[2] != 0 or firing[0] is not None:
                signal, ended, firing = track_firing(
                    x, timestamp, alert, hot, severity, in_episode, d_z, ref_mean, ref_std,
                    last_alert, extras, firing, up, down, z_threshold, recover_z,
                    recover_samples, resend_s, episode_s, ends_episode)
            append(new_verdict(x, ref_mean, ref_std, ref_z, deviation_percent(x, ref_mean), alert,
                               severity if alert else None, False, extras, score, signal))
            if alert:
                last_alert = timestamp
                last_alert_rank = severity.rank  # type: ignore[union-attr]
            elif not in_episode:
                last_alert_rank = 0
            if ended:
                last_alert, last_alert_rank = None, 0

        # Learn x: value density and range (6), robust location and scale (1 and 4).
        range_low, range_high, counts, total = learn_range(
            x, range_low, range_high, counts, total, nbins, score_n, warmup)
        mean, scale, learned, run_count, run_sum, run_side = learn(
            x, dx, std, mean, scale, learned, run_count, run_sum, run_side,
            alpha, clip, min_samples, relearn_z, relearn_after)

    return new_baseline(
        b.window, b.head, mean, b.m2, count, offsets, last_ts, b.mode, learned, scale,
        run_count, run_sum, run_side, score_short, score_mean, score_var, score_n,
        last_alert, last_alert_rank, prev_value, prev_time, range_low, range_high,
        bytes(ring), newest, tuple(counts),
        b.seasonal if model is None else save_model(model), *firing,
    ), verdicts
