"""The anomaly likelihood: the raw score's short-term average against its own long-term
law (rule 5 of :mod:`autopilot.detection`; Ahmad et al., Neurocomputing 2017, NAB's
HTM detector), and the young baseline's warm-up rule (rule 8).

The raw score r = min(directional |z|, :data:`RAW_SCORE_CAP`) in scales; the short-term
average r̄ has weight ``likelihood_short`` (0.3), the long-term mean μ and variance s²
of r weight max(``likelihood_long``, 1/(n+1)). tail = Q((r̄ − μ) / s) (Gaussian upper
tail, s ≥ 1e-3) and the anomaly score is min(1, −log10(max(tail, 1e-12)) / 10) in
[0, 1]: 0.2 means tail ≤ 1e-2. Before ``likelihood_warmup`` scored samples the score
is the seed's |z| / (1 + |z|) and only |z| > ``warmup_z`` may alert.
"""

from __future__ import annotations

import math

from autopilot.models import Severity

__all__ = ["RAW_SCORE_CAP", "anomaly_score", "learn_raw_score"]

#: Raw scores above this many scales count as this many for the likelihood stage.
RAW_SCORE_CAP = 10.0

_SQRT2 = math.sqrt(2.0)


def anomaly_score(
    short: float, magnitude: float, severity: Severity | None,
    score_mean: float, score_var: float, score_n: int,
    warmup: int, warmup_z: float, alert_score: float,
) -> tuple[float, bool]:
    """The anomaly score of a sample and whether it may alert (before the routine,
    novelty and episode rules).

    Args:
        short: r̄, the short-term average raw score including this sample.
        magnitude: the sample's directional |z|; ``severity`` its seed severity.
        score_mean, score_var, score_n: μ, s² and the scored samples before it.
        warmup, warmup_z, alert_score: :class:`DetectorConfig`'s.

    Returns:
        ``(score in [0, 1], hot)``: hot when the sample has a severity and either
        (warm-up) |z| > ``warmup_z`` or the score ≥ ``alert_score``.
    """
    if score_n < warmup:
        # Young baseline, uncertain scale: only a large departure alerts.
        return magnitude / (1.0 + magnitude), severity is not None and magnitude > warmup_z
    if score_n > 0:
        spread = math.sqrt(max(score_var, 1e-6))
        tail = 0.5 * math.erfc(((short - score_mean) / spread) / _SQRT2)
        score = min(1.0, -math.log10(max(tail, 1e-12)) / 10.0)
    else:
        score = 0.0
    return score, severity is not None and score >= alert_score


def learn_raw_score(
    raw: float, score_mean: float, score_var: float, score_n: int, long_w: float
) -> tuple[float, float, int]:
    """Add ``raw`` to the long-term law of the raw score: ``(μ, s², n)`` after it."""
    w = max(long_w, 1.0 / (score_n + 1))
    d = raw - score_mean
    return score_mean + w * d, (1.0 - w) * (score_var + w * d * d), score_n + 1
