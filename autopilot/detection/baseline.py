"""The adaptive detector's robust location and scale, counters as rates, and the
re-learning of level shifts (rules 1, 3 and 4 of :mod:`autopilot.detection`).

Per sample, in the metric's own unit (a counter's: per second): the location is an
exponentially weighted mean (weight max(``alpha``, 1/n)), the scale an exponentially
weighted mean absolute deviation, both updated with the departure clipped to
``clip`` σ (a Huber-type M-estimate); σ = √(π/2) × scale. ``relearn_after`` samples
in a row beyond ``relearn_z`` σ on one side move the mean to their average. Means,
scales and rates are clamped to ±:data:`~autopilot.detection.config.MAX_MEAN`
(1e18); NaN becomes 0.

``min``/``max`` of two values are written as conditional expressions with the
builtins' exact semantics (``min(a, b)`` is ``b if b < a else a``) because a builtin
call costs more than the comparison; every floating-point expression keeps the
operation order the states on disk were made with (bit-for-bit results).
"""

from __future__ import annotations

import math

from autopilot.detection.config import MAX_MEAN, ZERO_VARIANCE_SCALE
from autopilot.detection.scoring import finite

__all__ = ["MAD_TO_STD", "counter_rate", "learn", "sigma"]

#: σ of a normal distribution per unit of mean absolute deviation (√(π/2)).
MAD_TO_STD = math.sqrt(math.pi / 2.0)


def counter_rate(
    value: float, timestamp: float, prev_value: float | None, prev_time: float | None
) -> float | None:
    """A counter's per-second increase since the previous sample (rule 3).

    Args:
        value, timestamp: the counter's raw value and its event time (epoch s).
        prev_value, prev_time: the previous sample's (None: none yet).

    Returns:
        The rate (units per second, finite), or None: no previous sample, the same
        or an older instant, or a counter reset (a value below the previous one: the
        process restarted somewhere inside the interval, so the count since then is
        no rate over it; Prometheus' ``rate()`` would make a reset to 0 a rate of 0,
        a false drop).
    """
    if prev_value is None or prev_time is None:
        return None
    dt = timestamp - prev_time
    if dt <= 0.0:  # same or older instant: nothing to learn from
        return None
    increase = value - prev_value
    if increase < 0.0:
        return None
    return finite(increase / dt, MAX_MEAN)


def sigma(mean: float, scale: float) -> float:
    """σ the sample is scored against: √(π/2) × ``scale``, at least 1e-3 × |mean|
    when positive (:data:`~autopilot.detection.config.ZERO_VARIANCE_SCALE`), finite
    (NaN → 0, at most 1e18)."""
    std = MAD_TO_STD * scale
    if std > 0.0:
        floor = ZERO_VARIANCE_SCALE * abs(mean)
        std = floor if floor > std else std
    if std != std:
        return 0.0
    return std if std < MAX_MEAN else MAX_MEAN


def learn(
    x: float, dx: float, std: float, mean: float, scale: float, learned: int,
    run_count: int, run_sum: float, run_side: int,
    alpha: float, clip: float, min_samples: int, relearn_z: float, relearn_after: int,
) -> tuple[float, float, int, int, float, int]:
    """Learn ``x`` into the robust location and scale (rules 1 and 4).

    Args:
        x: the scored value; ``dx`` = x − mean; ``std``: σ it was scored against.
        mean, scale, learned: the location, mean absolute deviation and values
            learned so far.
        run_count, run_sum, run_side: the current out-of-band run (side ±1, 0: none).
        alpha, clip, min_samples, relearn_z, relearn_after: :class:`DetectorConfig`'s.

    Returns:
        ``(mean, scale, learned, run_count, run_sum, run_side)`` after ``x``.
    """
    n = learned + 1
    if n == 1:
        return finite(x, MAX_MEAN), 0.0, n, run_count, run_sum, run_side
    inverse = 1.0 / n
    weight = inverse if inverse > alpha else alpha  # max(alpha, 1 / n)
    if n <= min_samples or std <= 0.0:
        mean_new = mean + weight * dx
        scale = scale + weight * (abs(dx) - scale)
        run_count, run_sum, run_side = 0, 0.0, 0
    else:
        z = dx / std
        rc, rs, side = 0, 0.0, 0
        if abs(z) > relearn_z:
            side = 1 if z > 0 else -1
            if side == run_side:
                rc, rs = run_count + 1, run_sum + x
            else:
                rc, rs = 1, x
            if rc >= relearn_after:
                # A sustained level shift: the new level is the baseline from now on.
                return finite(rs / rc, MAX_MEAN), scale, n, 0, 0.0, 0
        limit = clip * std
        clipped = dx if dx < limit else limit  # min(limit, dx)
        clipped = clipped if clipped > -limit else -limit  # max(-limit, ...)
        mean_new = mean + weight * clipped
        deviation = abs(dx)
        scale = scale + weight * ((limit if limit < deviation else deviation) - scale)
        run_count, run_sum, run_side = rc, finite(rs, MAX_MEAN), side
    if mean_new != mean_new:
        mean = 0.0
    else:
        mean = mean_new if mean_new < MAX_MEAN else MAX_MEAN
        mean = mean if mean > -MAX_MEAN else -MAX_MEAN
    if scale != scale:
        scale = 0.0
    else:
        scale = scale if scale < MAX_MEAN else MAX_MEAN
        scale = 0.0 if 0.0 > scale else scale  # max(..., 0.0)
    return mean, scale, n, run_count, run_sum, run_side
