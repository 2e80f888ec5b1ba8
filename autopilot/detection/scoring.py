"""The seed's per-sample fields, shared by both modes: z-score, severity, deviation %
(part of :mod:`autopilot.detection`).

``z = (value − mean) / std`` in scales of the baseline (a zero std uses
:data:`~autopilot.detection.config.ZERO_VARIANCE_SCALE` × max(|mean|, 1)); severity
medium / high / critical when |z| > ``z_threshold`` / ``z_high`` / ``z_critical``
(2.5 / 3 / 4); deviation in percent of |mean|. Every output is finite: clamped to
±:data:`~autopilot.detection.config.MAX_SCORE`.
"""

from __future__ import annotations

from autopilot.detection.config import MAX_SCORE, ZERO_VARIANCE_SCALE, DetectorConfig
from autopilot.models import Severity

__all__ = ["deviation_percent", "directional", "finite", "seed_score", "severity_for", "z_score"]


def finite(x: float, bound: float) -> float:
    """``x`` clamped to ±``bound``; NaN becomes 0.0 (``max(-bound, min(bound, x))``
    written as comparisons, which cost less than the builtins)."""
    if x != x:
        return 0.0
    return -bound if x < -bound else bound if x > bound else x


def z_score(value: float, mean: float, std: float) -> float:
    """Return (value − mean) / std, finite; with ``std == 0`` see module docstring.

    Args:
        value, mean, std: in the metric's own unit; ``std`` ≥ 0.

    Returns:
        The z-score clamped to ±MAX_SCORE; 0.0 when value equals a flat mean.
    """
    if std > 0.0:
        return finite((value - mean) / std, MAX_SCORE)
    if value == mean:
        return 0.0
    scale = ZERO_VARIANCE_SCALE * max(abs(mean), 1.0)
    return finite((value - mean) / scale, MAX_SCORE)


def severity_for(z: float, config: DetectorConfig) -> Severity | None:
    """Severity of |z| under ``config`` (critical > z_critical, high > z_high,
    medium > z_threshold), or ``None`` when |z| ≤ z_threshold (seed rule)."""
    magnitude = abs(z)
    if magnitude > config.z_critical:
        return Severity.CRITICAL
    if magnitude > config.z_high:
        return Severity.HIGH
    if magnitude > config.z_threshold:
        return Severity.MEDIUM
    return None


def deviation_percent(value: float, mean: float) -> float:
    """100 × (value − mean) / |mean|, 0.0 when the mean is 0; clamped finite."""
    if mean == 0.0:
        return 0.0
    return finite(100.0 * (value - mean) / abs(mean), MAX_SCORE)


def seed_score(z: float) -> float:
    """Seed mode's anomaly score |z| / (1 + |z|): monotone in |z|, in [0, 1)."""
    magnitude = abs(z)
    return magnitude / (1.0 + magnitude)


# ------------------------------------------------------------------ the per-sample loops
#
# ``step_record`` runs one record's samples of one series through a loop on plain local
# variables and builds one :class:`Baseline` at the end (``step`` is the same loop over
# one sample). The state carried from sample to sample is exactly the Baseline's


def directional(z: float, up: bool, down: bool) -> float:
    """The departure that counts for the metric's direction: max(z, 0) for ``up``,
    max(−z, 0) for ``down``, |z| for both (scales)."""
    if up:
        return 0.0 if 0.0 > z else z
    if down:
        d_z = -z
        return 0.0 if 0.0 > d_z else d_z
    return abs(z)
