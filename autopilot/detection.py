"""Rolling baseline and z-score detection per series (pure: no Faust, no network).

The rule is the seed architecture's: for every series (service + metric + other
labels) keep the last ``window_size`` samples (default 1000); once ``min_samples``
(default 10) are in, score each new sample *before* it joins the window with

    z = (value − mean) / std        (population std of the window, ddof = 0)

and report an anomaly when |z| > ``z_threshold`` (2.5). Severity: medium when
|z| > 2.5, high when |z| > 3, critical when |z| > 4 (seed defaults, all settings).
Seed example: mean 108, std 5.74, value 1500 → z ≈ 242.5, critical, deviation
≈ 1288.9 %.

Mean and variance are kept with Welford's online update, extended to a sliding
window (add the new sample, remove the one it replaces), so a step is O(1); they
are recomputed exactly from the window whenever the ring buffer wraps, which bounds
floating-point drift. The window is a ring of float64 values, so the state of one
series is at most 8 bytes × window_size plus a few scalars (8 KB at the default).

A zero-variance baseline (a flat series) is tested with ``std > 0.0``: a sample
equal to the mean scores 0; a sample that differs is scored against a tiny scale
(:data:`ZERO_VARIANCE_SCALE` × max(|mean|, 1)), which marks the first departure from
a flat line as critical once. The departing sample then joins the window, the
variance becomes positive, and later samples are scored normally, so a noise-free
metric never alerts forever and nothing divides by zero.

No output is ever NaN or infinite: z-scores and deviations are clamped to
±:data:`MAX_SCORE`.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np

from autopilot import replay
from autopilot.models import Anomaly, MetricPoint, Severity

__all__ = [
    "MAX_SCORE",
    "ZERO_VARIANCE_SCALE",
    "Baseline",
    "DetectorConfig",
    "Verdict",
    "make_anomaly",
    "severity_for",
    "step",
    "z_score",
]

#: Relative scale used instead of a zero standard deviation (see module docstring).
ZERO_VARIANCE_SCALE = 1e-3
#: Bound on |z| and |deviation %| so records never carry infinity.
MAX_SCORE = 1e9


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Detection parameters (seed defaults).

    Attributes:
        window_size: samples in the rolling baseline (``AUTOPILOT_WINDOW_SIZE``, 1000).
        min_samples: samples needed before any verdict (``AUTOPILOT_MIN_SAMPLES``, 10).
        z_threshold: anomaly when |z| > this (``AUTOPILOT_Z_THRESHOLD``, 2.5).
        z_high: severity high when |z| > this (``AUTOPILOT_Z_HIGH``, 3.0).
        z_critical: severity critical when |z| > this (``AUTOPILOT_Z_CRITICAL``, 4.0).
    """

    window_size: int = 1000
    min_samples: int = 10
    z_threshold: float = 2.5
    z_high: float = 3.0
    z_critical: float = 4.0

    @classmethod
    def from_settings(cls, settings: Any) -> DetectorConfig:
        """Build from :class:`autopilot.settings.Settings`."""
        return cls(
            window_size=settings.window_size,
            min_samples=settings.min_samples,
            z_threshold=settings.z_threshold,
            z_high=settings.z_high,
            z_critical=settings.z_critical,
        )


@dataclass(frozen=True, slots=True)
class Baseline:
    """Rolling baseline of one series; immutable, replaced by :func:`step`.

    Attributes:
        window: the last samples, oldest first once rotated by ``head`` (ring buffer).
        head: index in ``window`` of the oldest sample once the window is full.
        mean: mean of ``window``.
        m2: sum of squared deviations from the mean (Welford), so var = m2 / n.
        count: samples ever applied (not capped by the window).
        offsets: per source stream (``"<input topic>/<partition>"``, see
            :mod:`autopilot.replay`), the offset of the last record applied; a record
            at or below it is a replay and changes nothing.
        last_timestamp: epoch seconds of the newest sample applied (0.0: none).
    """

    window: tuple[float, ...] = ()
    head: int = 0
    mean: float = 0.0
    m2: float = 0.0
    count: int = 0
    offsets: Mapping[str, int] = field(default_factory=dict)
    last_timestamp: float = 0.0

    @property
    def n(self) -> int:
        """Samples currently in the window."""
        return len(self.window)

    @property
    def std(self) -> float:
        """Population standard deviation of the window (0.0 when fewer than 2)."""
        if self.n < 2 or self.m2 <= 0.0:
            return 0.0
        return _finite(math.sqrt(self.m2 / self.n), MAX_SCORE)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for the baselines table (window as base64 float64, little endian)."""
        return {
            "v": 1,
            "window": base64.b64encode(np.asarray(self.window, dtype="<f8").tobytes()).decode(),
            "head": self.head,
            "mean": self.mean,
            "m2": self.m2,
            "count": self.count,
            "offsets": dict(self.offsets),
            "last_timestamp": self.last_timestamp,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Baseline:
        """Inverse of :meth:`to_dict`; ``None`` gives an empty baseline."""
        if not data:
            return cls()
        raw = base64.b64decode(data["window"])
        window = tuple(float(x) for x in np.frombuffer(raw, dtype="<f8"))
        return cls(
            window=window,
            head=int(data["head"]),
            mean=float(data["mean"]),
            m2=float(data["m2"]),
            count=int(data["count"]),
            offsets=replay.offsets_from_dict(data),
            last_timestamp=float(data.get("last_timestamp", 0.0)),
        )

    def summary(self) -> dict[str, Any]:
        """What views show: samples, mean, std, count, last sample time (epoch s)."""
        return {
            "samples_in_window": self.n,
            "samples_seen": self.count,
            "mean": self.mean,
            "std_dev": self.std,
            "last_timestamp": self.last_timestamp,
            "source_offsets": dict(self.offsets),
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """Score of one sample against the baseline it did not yet belong to.

    ``z_score`` and ``deviation_percent`` are finite; ``severity`` is ``None`` when
    the sample is not anomalous or the baseline is still cold.
    """

    value: float
    mean: float
    std: float
    z_score: float
    deviation_percent: float
    anomalous: bool
    severity: Severity | None = None
    cold: bool = False
    extras: dict[str, Any] = field(default_factory=dict)


def _finite(x: float, bound: float) -> float:
    if math.isnan(x):
        return 0.0
    return max(-bound, min(bound, x))


def z_score(value: float, mean: float, std: float) -> float:
    """Return (value − mean) / std, finite; with ``std == 0`` see module docstring.

    Args:
        value, mean, std: in the metric's own unit; ``std`` ≥ 0.

    Returns:
        The z-score clamped to ±MAX_SCORE; 0.0 when value equals a flat mean.
    """
    if std > 0.0:
        return _finite((value - mean) / std, MAX_SCORE)
    if value == mean:
        return 0.0
    scale = ZERO_VARIANCE_SCALE * max(abs(mean), 1.0)
    return _finite((value - mean) / scale, MAX_SCORE)


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
    return _finite(100.0 * (value - mean) / abs(mean), MAX_SCORE)


def score(baseline: Baseline, value: float, config: DetectorConfig) -> Verdict:
    """Score ``value`` against ``baseline`` without changing it."""
    mean, std = baseline.mean, baseline.std
    if baseline.n < config.min_samples:
        return Verdict(value, mean, std, 0.0, 0.0, anomalous=False, cold=True)
    z = z_score(value, mean, std)
    severity = severity_for(z, config)
    return Verdict(
        value=value,
        mean=mean,
        std=std,
        z_score=z,
        deviation_percent=deviation_percent(value, mean),
        anomalous=severity is not None,
        severity=severity,
    )


def _add(baseline: Baseline, value: float, window_size: int) -> Baseline:
    window = list(baseline.window)
    n = len(window)
    if n < window_size:
        window.append(value)
        n1 = n + 1
        delta = value - baseline.mean
        mean = baseline.mean + delta / n1
        m2 = baseline.m2 + delta * (value - mean)
        head = 0
    else:
        # Window full: ``value`` replaces the oldest sample at ``head``.
        old = window[baseline.head]
        window[baseline.head] = value
        mean = baseline.mean + (value - old) / n
        m2 = baseline.m2 + (value - old) * (value - mean + old - baseline.mean)
        head = (baseline.head + 1) % n
        if head == 0:
            # Wrapped: recompute exactly to bound floating-point drift (amortised O(1)).
            arr = np.asarray(window, dtype=np.float64)
            mean = float(arr.mean())
            m2 = float(((arr - mean) ** 2).sum())
    if not math.isfinite(mean) or not math.isfinite(m2):
        arr = np.asarray(window, dtype=np.float64)
        mean = _finite(float(np.mean(arr)), MAX_SCORE * MAX_SCORE)
        m2 = MAX_SCORE * MAX_SCORE
    return replace(baseline, window=tuple(window), head=head, mean=mean, m2=max(m2, 0.0))


def step(
    baseline: Baseline,
    value: float,
    timestamp: float,
    config: DetectorConfig,
) -> tuple[Baseline, Verdict]:
    """Score one sample, then add it to the window.

    Args:
        baseline: the series' current baseline.
        value: the sample (finite float, metric's own unit).
        timestamp: the sample's event time in epoch seconds.
        config: detection parameters.

    Returns:
        ``(new_baseline, verdict)``; the verdict compares the sample with the
        baseline *before* it joined (score first, then learn).
    """
    verdict = score(baseline, value, config)
    new = _add(baseline, value, config.window_size)
    new = replace(new, count=baseline.count + 1, last_timestamp=max(timestamp, baseline.last_timestamp))
    return new, verdict


def step_record(
    baseline: Baseline,
    samples: list[tuple[float, float]],
    offset: int,
    config: DetectorConfig,
    stream: str = "",
) -> tuple[Baseline, list[Verdict]]:
    """Apply the samples of one source record (same series) idempotently.

    Args:
        baseline: current baseline.
        samples: ``(value, epoch_seconds)`` pairs, in record order.
        offset: the source record's offset in ``stream``; if it is not above the
            last offset applied from that stream the record was applied before (a
            replay after a crash) and nothing changes.
        config: detection parameters.
        stream: the source stream (``"<input topic>/<partition>"``,
            :func:`autopilot.replay.stream_id`) ``offset`` belongs to.

    Returns:
        ``(new_baseline, verdicts)`` with one verdict per sample (empty on replay).
    """
    if replay.seen(baseline.offsets, stream, offset):
        return baseline, []
    verdicts = []
    for value, ts in samples:
        baseline, verdict = step(baseline, value, ts, config)
        verdicts.append(verdict)
    return replace(baseline, offsets=replay.advance(baseline.offsets, stream, offset)), verdicts


def make_anomaly(point: MetricPoint, verdict: Verdict) -> Anomaly:
    """Build the seed Anomaly record for an anomalous ``verdict`` of ``point``.

    Raises:
        ValueError: the verdict is not anomalous.
    """
    if not verdict.anomalous or verdict.severity is None:
        raise ValueError("make_anomaly needs an anomalous verdict")
    return Anomaly(
        kind="metric",
        metric_name=point.metric_name,
        service=point.service,
        series=point.series,
        current_value=point.value,
        baseline_mean=verdict.mean,
        baseline_std_dev=verdict.std,
        z_score=verdict.z_score,
        deviation_percent=verdict.deviation_percent,
        severity=verdict.severity,
        detected_at=point.timestamp,
        labels=point.labels,
    )


def epoch_seconds(ts: datetime) -> float:
    """Epoch seconds of an aware datetime."""
    return ts.timestamp()
