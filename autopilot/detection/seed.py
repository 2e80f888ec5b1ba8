"""The seed detector: the seed architecture's rolling z-score, unchanged (mode ``seed``
of :mod:`autopilot.detection`).

For every series keep the last ``window_size`` samples (default 1000); once
``min_samples`` (10) are in, score each new sample *before* it joins the window with
``z = (value − mean) / std`` (population std, ddof = 0) and report an anomaly on every
sample with |z| > ``z_threshold`` (2.5). Mean and variance use Welford's update
extended to a sliding window (O(1) per sample), recomputed exactly whenever the ring
buffer wraps (bounds drift). State: 8 bytes × window_size plus scalars (≈ 11 KB of
JSON at the default). Firing and recovery as in the adaptive mode, in both
directions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from autopilot.detection.config import MAX_MEAN, DetectorConfig
from autopilot.detection.scoring import (
    deviation_percent,
    finite,
    seed_score,
    severity_for,
    z_score,
)
from autopilot.detection.state import NOT_FIRING, Baseline, Verdict, new_baseline, new_verdict

__all__ = ["run_seed"]


def run_seed(
    baseline: Baseline,
    samples: Sequence[tuple[float, float]],
    config: DetectorConfig,
    offsets: Mapping[str, int],
) -> tuple[Baseline, list[Verdict]]:
    """Seed mode over ``samples`` (non-empty): score each against the window, then add it.

    The window is one list for the whole record (O(1) per sample); the exact
    recompute when the ring buffer wraps is kept (amortised O(1)).
    """
    b = baseline
    if b.mode != "seed":
        b = Baseline(count=b.count, offsets=b.offsets, last_timestamp=b.last_timestamp)
    window = list(b.window)
    head, mean, m2, count, last_ts = b.head, b.mean, b.m2, b.count, b.last_timestamp
    firing_mean, firing_std, firing_rank, recover_run, last_sent = (
        b.firing_mean, b.firing_std, b.firing_rank, b.recover_run, b.last_sent)
    window_size, min_samples = config.window_size, config.min_samples
    recover_z, recover_samples, resend_s = (
        config.recover_z, config.recover_samples, config.signal_resend_s)
    verdicts: list[Verdict] = []
    append = verdicts.append
    for value, timestamp in samples:
        n = len(window)
        # Score against the window before the sample joins (Baseline.std).
        std = 0.0 if n < 2 or m2 <= 0.0 else finite(math.sqrt(m2 / n), MAX_MEAN)
        if n < min_samples:
            append(new_verdict(value, mean, std, 0.0, 0.0, False, None, True, {}, 0.0))
        else:
            z = z_score(value, mean, std)
            severity = severity_for(z, config)
            extras: dict[str, Any] = {}
            signal = None
            if firing_mean is None:
                if severity is not None:
                    # Firing starts: freeze the reference this alert was scored against.
                    firing_mean, firing_std, firing_rank = mean, std, severity.rank
                    recover_run, last_sent = 0, timestamp
            elif severity is not None:  # still alerting (the seed alerts on every one)
                firing_rank = severity.rank if severity.rank > firing_rank else firing_rank
                recover_run, last_sent = 0, timestamp
            else:
                # Both directions in seed mode.
                ref_z = z_score(value, firing_mean, firing_std)
                recover_run = recover_run + 1 if abs(ref_z) <= recover_z else 0
                if recover_run >= recover_samples or timestamp - last_sent >= resend_s:
                    extras = {"reference_mean": firing_mean, "reference_std": firing_std,
                              "reference_z": ref_z, "firing_rank": firing_rank}
                    if recover_run >= recover_samples:
                        signal = "resolved"
                        firing_mean, firing_std, firing_rank, recover_run, last_sent = (
                            NOT_FIRING)
                    else:
                        signal, last_sent = "firing", timestamp
            append(new_verdict(value, mean, std, z, deviation_percent(value, mean),
                            severity is not None, severity, False, extras, seed_score(z),
                            signal))
        # Add it: Welford's update extended to a sliding window.
        if n < window_size:
            window.append(value)
            delta = value - mean
            new_mean = mean + delta / (n + 1)
            m2 = m2 + delta * (value - new_mean)
            mean = new_mean
            head = 0
        else:
            # Window full: ``value`` replaces the oldest sample at ``head``.
            old = window[head]
            window[head] = value
            new_mean = mean + (value - old) / n
            m2 = m2 + (value - old) * (value - new_mean + old - mean)
            mean = new_mean
            head = (head + 1) % n
            if head == 0:
                # Wrapped: recompute exactly to bound floating-point drift (amortised O(1)).
                arr = np.asarray(window, dtype=np.float64)
                mean = float(arr.mean())
                m2 = float(((arr - mean) ** 2).sum())
        if not math.isfinite(mean) or not math.isfinite(m2):
            arr = np.asarray(window, dtype=np.float64)
            mean = finite(float(np.mean(arr)), MAX_MEAN)
            m2 = MAX_MEAN
        m2 = 0.0 if 0.0 > m2 else m2  # max(m2, 0.0)
        count += 1
        last_ts = last_ts if last_ts > timestamp else timestamp  # max(timestamp, last_ts)
    return new_baseline(
        tuple(window), head, mean, m2, count, offsets, last_ts, b.mode, b.learned, b.scale,
        b.run_count, b.run_sum, b.run_side, b.score_short, b.score_mean, b.score_var,
        b.score_n, b.last_alert, b.last_alert_rank, b.prev_value, b.prev_time,
        b.low, b.high, b.season, b.season_slot, b.density, b.seasonal,
        firing_mean, firing_std, firing_rank, recover_run, last_sent,
    ), verdicts
