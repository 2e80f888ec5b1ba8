"""Per-series baselines and anomaly verdicts (pure: no Faust, no network).

Two modes share one state type (:class:`Baseline`), one step function (:func:`step`)
and the seed's Anomaly fields (z-score, baseline mean and std, deviation %, severity).

``seed`` — the seed architecture's rule, unchanged
    For every series keep the last ``window_size`` samples (default 1000); once
    ``min_samples`` (default 10) are in, score each new sample *before* it joins the
    window with ``z = (value − mean) / std`` (population std, ddof = 0) and report an
    anomaly on every sample with |z| > ``z_threshold`` (2.5). Seed example: mean 108,
    std 5.74, value 1500 → z ≈ 242.5, critical, deviation ≈ 1288.9 %. Mean and
    variance use Welford's update extended to a sliding window (O(1) per sample),
    recomputed exactly whenever the ring buffer wraps (bounds drift). State: 8 bytes ×
    window_size plus scalars (≈ 11 KB of JSON at the default).

``adaptive`` — the default: calm and early (measured on NAB, see ``bench/detection.py``)
    1. *Robust location and scale*: an exponentially weighted mean (weight
       ``alpha``, 0.02) and an exponentially weighted mean absolute deviation whose
       updates are clipped to ``clip`` (3) scales (a Huber-type M-estimate); scale
       σ = 1.2533 × mean |deviation| (exact for a normal distribution). Until
       ``min_samples`` are in, the weight is 1/n (a plain average). One spike moves
       the mean by at most ``alpha × clip`` σ: anomalies do not pollute the baseline.
    2. *Direction per metric*: latency, duration, error and timeout metrics only
       alert upwards, availability or success metrics only downwards, everything
       else both ways (name patterns are settings, :func:`resolve_direction`).
    3. *Counters become rates*: a metric whose name ends in ``_total``, ``_count``,
       ``_sum`` or ``_bucket`` (Prometheus conventions) is scored as its per-second
       increase; a value below the previous one is a counter reset and the new value
       counts as the increase since the reset (as Prometheus' ``rate()`` does).
    4. *Level shifts are re-learned*: after ``relearn_after`` (12) consecutive
       samples more than ``relearn_z`` (3.5) scales away on the same side, the mean
       jumps to their average.
    5. *Anomaly likelihood* (Ahmad et al., Neurocomputing 2017, NAB's HTM detector):
       the raw score r = min(directional |z|, 10) is compared with its own recent
       history: short-term average r̄ (weight ``likelihood_short``, 0.3) against the
       long-term mean μ and std s of r (weight ``likelihood_long``, 0.001);
       tail = Q((r̄ − μ) / s) (Gaussian upper tail) and the anomaly score is
       min(1, −log10(tail) / 10), so 0.2 means tail ≤ 1e-2 and 1.0 tail ≤ 1e-10.
    6. *One alert per episode*: the sample alerts when its anomaly score ≥
       ``alert_score`` (0.2), its directional |z| > ``z_threshold`` (so severity is
       at least medium by the seed's rule) and the series has not alerted within
       ``episode_s`` (48 h) of event time — unless the sample is more severe than
       the episode's last alert (an escalation: a critical anomaly after a medium
       one still alerts, a second critical one does not). While the score history is short
       (fewer than ``likelihood_warmup`` scored samples) the seed's rule |z| >
       ``z_threshold`` alone decides (and the anomaly score is |z| / (1 + |z|)).
       Inside an episode the anomaly score is damped
       below ``alert_score / 2`` so rankings reflect new episodes.
    Per-sample work is O(1); the state is a few dozen scalars (< 1 KB of JSON).

Severity (both modes): medium when |z| > 2.5, high when |z| > 3, critical when
|z| > 4 (seed defaults, all settings).

A zero-variance baseline (a flat series) is tested with ``std > 0.0``: a sample
equal to the mean scores 0; a sample that differs is scored against a tiny scale
(:data:`ZERO_VARIANCE_SCALE` × max(|mean|, 1)), which marks the first departure from
a flat line as critical once; nothing divides by zero and a noise-free metric never
alerts forever.

No output is ever NaN or infinite: z-scores and deviations are clamped to
±:data:`MAX_SCORE`; anomaly scores lie in [0, 1].
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Literal

import numpy as np

from autopilot import replay
from autopilot.models import Anomaly, MetricPoint, Severity

__all__ = [
    "DEFAULT_COUNTER_SUFFIXES",
    "DEFAULT_DOWN_PATTERNS",
    "DEFAULT_UP_PATTERNS",
    "MAX_SCORE",
    "MODES",
    "ZERO_VARIANCE_SCALE",
    "Baseline",
    "DetectorConfig",
    "SeriesResult",
    "Verdict",
    "detect_series",
    "make_anomaly",
    "resolve_direction",
    "severity_for",
    "step",
    "step_record",
    "z_score",
]

#: Relative scale used instead of a zero standard deviation (see module docstring).
ZERO_VARIANCE_SCALE = 1e-3
#: Bound on |z| and |deviation %| so records never carry infinity.
MAX_SCORE = 1e9
#: Detector modes: the seed's rolling z-score and the default adaptive detector.
MODES = ("adaptive", "seed")
#: σ of a normal distribution per unit of mean absolute deviation (√(π/2)).
MAD_TO_STD = math.sqrt(math.pi / 2.0)
#: Raw scores above this many scales count as this many for the likelihood stage.
RAW_SCORE_CAP = 10.0
#: Metric-name substrings (lower case) that only alert upwards by default.
DEFAULT_UP_PATTERNS = ("latency", "duration", "error", "fail", "timeout", "5xx", "4xx")
#: Metric-name substrings (lower case) that only alert downwards by default.
DEFAULT_DOWN_PATTERNS = ("availability", "success", "apdex", "uptime", "hit_ratio")
#: Metric-name suffixes of monotonic counters (Prometheus naming conventions).
DEFAULT_COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")

Direction = Literal["both", "up", "down"]


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Detection parameters (seed defaults for the seed's five numbers).

    Attributes:
        window_size: samples in the seed mode's rolling window
            (``AUTOPILOT_WINDOW_SIZE``, 1000).
        min_samples: samples needed before any verdict (``AUTOPILOT_MIN_SAMPLES``, 10).
        z_threshold: anomaly needs |z| > this (``AUTOPILOT_Z_THRESHOLD``, 2.5).
        z_high: severity high when |z| > this (``AUTOPILOT_Z_HIGH``, 3.0).
        z_critical: severity critical when |z| > this (``AUTOPILOT_Z_CRITICAL``, 4.0).
        mode: ``adaptive`` or ``seed`` (``AUTOPILOT_DETECTOR_MODE``, adaptive).
        alpha: adaptive baseline weight per sample (``AUTOPILOT_BASELINE_ALPHA``, 0.02).
        clip: adaptive update clip in scales (``AUTOPILOT_BASELINE_CLIP``, 3.0).
        relearn_after: out-of-band samples in a row that re-learn the level
            (``AUTOPILOT_RELEARN_AFTER``, 12).
        relearn_z: |z| that counts as out of band for re-learning (3.5).
        likelihood_short: weight of the short-term raw-score average (0.3).
        likelihood_long: weight of the long-term raw-score statistics (0.001).
        likelihood_warmup: scored samples before the likelihood decides; until then
            the seed rule does (``AUTOPILOT_LIKELIHOOD_WARMUP``, 100).
        alert_score: alert when the anomaly score ≥ this (``AUTOPILOT_ALERT_SCORE``, 0.2).
        episode_s: after an alert the series stays silent this long, event time
            (``AUTOPILOT_EPISODE_S``, 172800 = 48 h).
        direction: ``both``, ``up`` or ``down``; set per series by :meth:`for_metric`.
        counter: score the per-second increase; set per series by :meth:`for_metric`.
        up_patterns, down_patterns, counter_suffixes: name rules used by
            :meth:`for_metric` (``AUTOPILOT_DIRECTION_UP``, ``AUTOPILOT_DIRECTION_DOWN``,
            ``AUTOPILOT_COUNTER_SUFFIXES``).
    """

    window_size: int = 1000
    min_samples: int = 10
    z_threshold: float = 2.5
    z_high: float = 3.0
    z_critical: float = 4.0
    mode: str = "adaptive"
    alpha: float = 0.02
    clip: float = 3.0
    relearn_after: int = 12
    relearn_z: float = 3.5
    likelihood_short: float = 0.3
    likelihood_long: float = 0.001
    likelihood_warmup: int = 100
    alert_score: float = 0.2
    episode_s: float = 172_800.0
    direction: Direction = "both"
    counter: bool = False
    up_patterns: tuple[str, ...] = DEFAULT_UP_PATTERNS
    down_patterns: tuple[str, ...] = DEFAULT_DOWN_PATTERNS
    counter_suffixes: tuple[str, ...] = DEFAULT_COUNTER_SUFFIXES
    #: :meth:`for_metric`'s answers by ``(metric_name, metric_type)`` (a cache: not
    #: compared, hashed or copied by ``dataclasses.replace``).
    _resolved: dict[tuple[str, str | None], DetectorConfig] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"detector mode must be one of {MODES}, not {self.mode!r}")
        if self.direction not in ("both", "up", "down"):
            raise ValueError(f"direction must be both, up or down, not {self.direction!r}")

    @classmethod
    def from_settings(cls, settings: Any) -> DetectorConfig:
        """Build from :class:`autopilot.settings.Settings`."""
        return cls(
            window_size=settings.window_size,
            min_samples=settings.min_samples,
            z_threshold=settings.z_threshold,
            z_high=settings.z_high,
            z_critical=settings.z_critical,
            mode=settings.detector_mode,
            alpha=settings.baseline_alpha,
            clip=settings.baseline_clip,
            relearn_after=settings.relearn_after,
            likelihood_warmup=settings.likelihood_warmup,
            alert_score=settings.alert_score,
            episode_s=settings.episode_s,
            up_patterns=_split(settings.direction_up),
            down_patterns=_split(settings.direction_down),
            counter_suffixes=_split(settings.counter_suffixes),
        )

    def for_metric(self, metric_name: str, metric_type: str | None = None) -> DetectorConfig:
        """This config with ``direction`` and ``counter`` set for one metric.

        A metric is a counter when its type says so (``metric_type="counter"``, from
        remote_write metadata or an exposition ``# TYPE`` line), or when it is untyped
        and its name ends in one of ``counter_suffixes``; ``metric_type="gauge"``
        is never a counter. The seed mode ignores both (it scores raw values in both
        directions). Answers are cached per ``(metric_name, metric_type)`` on this
        config (at most :data:`_RESOLVED_MAX` names; the cache is then emptied).
        """
        if self.mode == "seed":
            return self
        key = (metric_name, metric_type)
        resolved = self._resolved.get(key)
        if resolved is not None:
            return resolved
        if metric_type is not None:
            counter = metric_type == "counter"
        else:
            counter = metric_name.lower().endswith(self.counter_suffixes)
        resolved = replace(
            self,
            direction=resolve_direction(metric_name, self.up_patterns, self.down_patterns),
            counter=counter,
        )
        if len(self._resolved) >= _RESOLVED_MAX:
            self._resolved.clear()
        self._resolved[key] = resolved
        return resolved


#: Most metric names :meth:`DetectorConfig.for_metric` remembers per config.
_RESOLVED_MAX = 4096


def _split(text: str) -> tuple[str, ...]:
    return tuple(p.strip().lower() for p in text.split(",") if p.strip())


def resolve_direction(
    metric_name: str,
    up_patterns: Sequence[str] = DEFAULT_UP_PATTERNS,
    down_patterns: Sequence[str] = DEFAULT_DOWN_PATTERNS,
) -> Direction:
    """Which departures of ``metric_name`` are bad news.

    ``up`` when the lower-cased name contains one of ``up_patterns`` (a latency or
    error-rate drop is good news), else ``down`` when it contains one of
    ``down_patterns``, else ``both``.
    """
    name = metric_name.lower()
    if any(p and p in name for p in up_patterns):
        return "up"
    if any(p and p in name for p in down_patterns):
        return "down"
    return "both"


@dataclass(frozen=True, slots=True)
class Baseline:
    """Baseline of one series; immutable, replaced by :func:`step`.

    Seed mode uses ``window``/``head``/``mean``/``m2``; adaptive mode uses ``mean``,
    ``scale`` and the scalars after it (``window`` stays empty).

    Attributes:
        window: seed: the last samples, oldest first once rotated by ``head``.
        head: seed: index in ``window`` of the oldest sample once the window is full.
        mean: seed: mean of ``window``; adaptive: robust location.
        m2: seed: sum of squared deviations from the mean (Welford), var = m2 / n.
        count: samples ever applied.
        offsets: per source stream (``"<input topic>/<partition>"``, see
            :mod:`autopilot.replay`), the offset of the last record applied; a record
            at or below it is a replay and changes nothing.
        last_timestamp: epoch seconds of the newest sample applied (0.0: none).
        mode: the detector mode that built this state.
        learned: adaptive: values learned (counters: rates, one fewer than samples).
        scale: adaptive: mean absolute deviation (σ ≈ 1.2533 × scale).
        run_count, run_sum, run_side: adaptive: the current out-of-band run.
        score_short, score_mean, score_var, score_n: adaptive: raw-score statistics.
        last_alert: adaptive: event time (epoch s) of the last alert (None: never).
        last_alert_rank: adaptive: severity rank of the episode's last alert
            (1 medium … 3 critical; 0 outside an episode).
        prev_value, prev_time: adaptive counters: the previous raw value and time.
    """

    window: tuple[float, ...] = ()
    head: int = 0
    mean: float = 0.0
    m2: float = 0.0
    count: int = 0
    offsets: Mapping[str, int] = field(default_factory=dict)
    last_timestamp: float = 0.0
    mode: str = "seed"
    learned: int = 0
    scale: float = 0.0
    run_count: int = 0
    run_sum: float = 0.0
    run_side: int = 0
    score_short: float = 0.0
    score_mean: float = 0.0
    score_var: float = 0.0
    score_n: int = 0
    last_alert: float | None = None
    last_alert_rank: int = 0
    prev_value: float | None = None
    prev_time: float | None = None

    @property
    def n(self) -> int:
        """Samples the baseline is built on (seed: in the window; adaptive: learned)."""
        return len(self.window) if self.mode == "seed" else self.learned

    @property
    def std(self) -> float:
        """Seed: population std of the window (0.0 when fewer than 2); adaptive: σ estimate."""
        if self.mode != "seed":
            return _finite(MAD_TO_STD * self.scale, MAX_SCORE)
        if self.n < 2 or self.m2 <= 0.0:
            return 0.0
        return _finite(math.sqrt(self.m2 / self.n), MAX_SCORE)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for the baselines table (window as base64 float64, little endian)."""
        data: dict[str, Any] = {
            "v": 2,
            "mode": self.mode,
            "mean": self.mean,
            "count": self.count,
            "offsets": dict(self.offsets),
            "last_timestamp": self.last_timestamp,
        }
        if self.mode == "seed":
            data["window"] = base64.b64encode(
                np.asarray(self.window, dtype="<f8").tobytes()
            ).decode()
            data["head"] = self.head
            data["m2"] = self.m2
        else:
            for name in _ADAPTIVE_FIELDS:
                data[name] = getattr(self, name)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Baseline:
        """Inverse of :meth:`to_dict` (also reads version 1, the seed-only form).

        ``None`` gives an empty baseline.
        """
        if not data:
            return cls()
        mode = data.get("mode", "seed")
        common = {
            "mean": float(data["mean"]),
            "count": int(data["count"]),
            "offsets": replay.offsets_from_dict(data),
            "last_timestamp": float(data.get("last_timestamp", 0.0)),
            "mode": mode,
        }
        if mode == "seed":
            raw = base64.b64decode(data["window"])
            window = tuple(float(x) for x in np.frombuffer(raw, dtype="<f8"))
            return cls(window=window, head=int(data["head"]), m2=float(data["m2"]), **common)
        extra = {name: data.get(name, _ADAPTIVE_DEFAULTS[name]) for name in _ADAPTIVE_FIELDS}
        return cls(**common, **extra)

    def summary(self) -> dict[str, Any]:
        """What views show: mode, samples, mean, std, count, last sample time (epoch s)."""
        return {
            "mode": self.mode,
            "samples_in_window": self.n,
            "samples_seen": self.count,
            "mean": self.mean,
            "std_dev": self.std,
            "last_timestamp": self.last_timestamp,
            "source_offsets": dict(self.offsets),
        }


_BASELINE_FIELDS = tuple(f.name for f in fields(Baseline))


def _evolve(b: Baseline, **changes: Any) -> Baseline:
    """``dataclasses.replace`` for :class:`Baseline`, without its per-call overhead.

    The per-sample path builds one new baseline per step; ``replace`` (which
    re-inspects the fields and calls ``__init__``) was a third of a step's time.
    """
    new = object.__new__(Baseline)
    for name in _BASELINE_FIELDS:
        object.__setattr__(new, name, changes[name] if name in changes else getattr(b, name))
    return new


_ADAPTIVE_FIELDS = (
    "learned",
    "scale",
    "run_count",
    "run_sum",
    "run_side",
    "score_short",
    "score_mean",
    "score_var",
    "score_n",
    "last_alert",
    "last_alert_rank",
    "prev_value",
    "prev_time",
)
#: Defaults of the adaptive fields, for states written before a field existed.
_ADAPTIVE_DEFAULTS = {name: getattr(Baseline(), name) for name in _ADAPTIVE_FIELDS}


@dataclass(frozen=True, slots=True)
class Verdict:
    """Score of one sample against the baseline it did not yet belong to.

    ``z_score`` and ``deviation_percent`` are finite; ``anomalous`` is True exactly
    when the live agent emits an Anomaly record for the sample; ``severity`` is
    ``None`` when it is not anomalous or the baseline is still cold. ``score`` is the
    anomaly score in [0, 1] (ranks how unusual the sample is; see module docstring).
    ``value`` is what was scored (for counters: the per-second rate).
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
    score: float = 0.0


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


def seed_score(z: float) -> float:
    """Seed mode's anomaly score |z| / (1 + |z|): monotone in |z|, in [0, 1)."""
    magnitude = abs(z)
    return magnitude / (1.0 + magnitude)


def score(baseline: Baseline, value: float, config: DetectorConfig) -> Verdict:
    """Score ``value`` against a seed-mode ``baseline`` without changing it."""
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
        score=seed_score(z),
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


def _step_seed(
    baseline: Baseline, value: float, timestamp: float, config: DetectorConfig
) -> tuple[Baseline, Verdict]:
    verdict = score(baseline, value, config)
    new = _add(baseline, value, config.window_size)
    new = replace(
        new, count=baseline.count + 1, last_timestamp=max(timestamp, baseline.last_timestamp)
    )
    return new, verdict


# --------------------------------------------------------------------------- adaptive


def _upper_tail(x: float) -> float:
    """Q(x) = P(N(0,1) > x)."""
    return 0.5 * math.erfc(x / math.sqrt(2.0))


def _directional(z: float, direction: Direction) -> float:
    if direction == "up":
        return max(z, 0.0)
    if direction == "down":
        return max(-z, 0.0)
    return abs(z)


def _adaptive_std(b: Baseline) -> float:
    """σ used for z: 1.2533 × mean |deviation|, at least 1e-3 × |mean| when positive."""
    std = MAD_TO_STD * b.scale
    if std > 0.0:
        std = max(std, ZERO_VARIANCE_SCALE * abs(b.mean))
    return _finite(std, MAX_SCORE)


def _to_rate(b: Baseline, value: float, timestamp: float) -> float | None:
    """Per-second increase of a counter since the previous sample (None: no rate yet)."""
    if b.prev_value is None or b.prev_time is None:
        return None
    dt = timestamp - b.prev_time
    if dt <= 0.0:
        return None  # same or older instant: nothing to learn from
    increase = value - b.prev_value
    if increase < 0.0:
        increase = value  # counter reset: the new value is the increase since the reset
    return _finite(increase / dt, MAX_SCORE)


def _learn(b: Baseline, x: float, config: DetectorConfig) -> Baseline:
    """Add ``x`` to the robust location and scale (see module docstring, 1 and 4)."""
    n = b.learned + 1
    if n == 1:
        return _evolve(b, learned=1, mean=_finite(x, MAX_SCORE * MAX_SCORE), scale=0.0)
    weight = max(config.alpha, 1.0 / n)
    std = _adaptive_std(b)
    if n <= config.min_samples or std <= 0.0:
        mean = b.mean + weight * (x - b.mean)
        scale = b.scale + weight * (abs(x - b.mean) - b.scale)
        return _evolve(b, learned=n, mean=_finite(mean, MAX_SCORE * MAX_SCORE),
                       scale=max(_finite(scale, MAX_SCORE), 0.0),
                       run_count=0, run_sum=0.0, run_side=0)
    z = (x - b.mean) / std
    run_count, run_sum, run_side = 0, 0.0, 0
    if abs(z) > config.relearn_z:
        side = 1 if z > 0 else -1
        if side == b.run_side:
            run_count, run_sum, run_side = b.run_count + 1, b.run_sum + x, side
        else:
            run_count, run_sum, run_side = 1, x, side
        if run_count >= config.relearn_after:
            # A sustained level shift: the new level is the baseline from now on.
            return _evolve(b, learned=n, mean=_finite(run_sum / run_count, MAX_SCORE),
                           run_count=0, run_sum=0.0, run_side=0)
    limit = config.clip * std
    mean = b.mean + weight * max(-limit, min(limit, x - b.mean))
    scale = b.scale + weight * (min(abs(x - b.mean), limit) - b.scale)
    return _evolve(b, learned=n, mean=_finite(mean, MAX_SCORE * MAX_SCORE),
                   scale=max(_finite(scale, MAX_SCORE), 0.0),
                   run_count=run_count, run_sum=_finite(run_sum, MAX_SCORE * MAX_SCORE),
                   run_side=run_side)


def _step_adaptive(
    baseline: Baseline, value: float, timestamp: float, config: DetectorConfig
) -> tuple[Baseline, Verdict]:
    b = baseline if baseline.mode == "adaptive" else Baseline(
        mode="adaptive", count=baseline.count, offsets=baseline.offsets,
        last_timestamp=baseline.last_timestamp,
    )
    stamp = {"count": b.count + 1, "last_timestamp": max(timestamp, b.last_timestamp)}
    x: float | None = value
    if config.counter:
        x = _to_rate(b, value, timestamp)
        b = _evolve(b, prev_value=value, prev_time=timestamp)
    mean, std = b.mean, _adaptive_std(b)
    if x is None:
        verdict = Verdict(value, mean, std, 0.0, 0.0, anomalous=False, cold=True)
        return _evolve(b, **stamp), verdict
    if b.learned < config.min_samples:
        verdict = Verdict(x, mean, std, 0.0, 0.0, anomalous=False, cold=True)
        return _evolve(_learn(b, x, config), **stamp), verdict

    z = z_score(x, mean, std)
    raw = min(_directional(z, config.direction), RAW_SCORE_CAP)
    # Anomaly likelihood: the short-term average raw score against its long-term law.
    short = b.score_short + config.likelihood_short * (raw - b.score_short)
    if b.score_n > 0:
        spread = math.sqrt(max(b.score_var, 1e-6))
        tail = _upper_tail((short - b.score_mean) / spread)
        anomaly_score = min(1.0, -math.log10(max(tail, 1e-12)) / 10.0)
    else:
        anomaly_score = 0.0
    w = max(config.likelihood_long, 1.0 / (b.score_n + 1))
    d = raw - b.score_mean
    score_mean = b.score_mean + w * d
    score_var = (1.0 - w) * (b.score_var + w * d * d)

    in_episode = b.last_alert is not None and timestamp - b.last_alert < config.episode_s
    severity = severity_for(_directional(z, config.direction), config)
    if b.score_n < config.likelihood_warmup:
        hot = severity is not None  # seed rule until the score history means something
        anomaly_score = seed_score(_directional(z, config.direction))
    else:
        hot = severity is not None and anomaly_score >= config.alert_score
    escalated = (
        in_episode and hot and severity is not None and severity.rank > b.last_alert_rank
    )
    alert = hot and (not in_episode or escalated)
    if in_episode and not alert:
        anomaly_score *= 0.5 * config.alert_score
    verdict = Verdict(
        value=x,
        mean=mean,
        std=std,
        z_score=z,
        deviation_percent=deviation_percent(x, mean),
        anomalous=alert,
        severity=severity if alert else None,
        score=anomaly_score,
        extras={"in_episode": in_episode, "direction": config.direction},
    )
    new = _learn(b, x, config)
    new = _evolve(
        new,
        score_short=short,
        score_mean=score_mean,
        score_var=score_var,
        score_n=b.score_n + 1,
        last_alert=timestamp if alert else b.last_alert,
        last_alert_rank=(severity.rank if alert and severity is not None else
                         (b.last_alert_rank if in_episode else 0)),
        **stamp,
    )
    return new, verdict


def step(
    baseline: Baseline,
    value: float,
    timestamp: float,
    config: DetectorConfig,
) -> tuple[Baseline, Verdict]:
    """Score one sample, then learn from it.

    Args:
        baseline: the series' current baseline (a state of the other mode is
            replaced by a fresh one: switching modes re-learns).
        value: the sample (finite float, metric's own unit).
        timestamp: the sample's event time in epoch seconds.
        config: detection parameters, resolved for the series
            (:meth:`DetectorConfig.for_metric`).

    Returns:
        ``(new_baseline, verdict)``; the verdict compares the sample with the
        baseline *before* it joined (score first, then learn).
    """
    if config.mode == "seed":
        if baseline.mode != "seed":
            baseline = Baseline(count=baseline.count, offsets=baseline.offsets,
                                last_timestamp=baseline.last_timestamp)
        return _step_seed(baseline, value, timestamp, config)
    return _step_adaptive(baseline, value, timestamp, config)


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
        config: detection parameters, resolved for the series.
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


@dataclass(frozen=True, slots=True)
class SeriesResult:
    """What :func:`detect_series` found for one sample: its verdict and its Anomaly."""

    point: MetricPoint
    verdict: Verdict
    anomaly: Anomaly | None


def detect_series(
    baseline: Baseline,
    points: Sequence[MetricPoint],
    offset: int,
    config: DetectorConfig,
    stream: str = "",
) -> tuple[Baseline, list[SeriesResult]]:
    """Run the detector over the points of one series from one source record.

    This is the one code path of the metrics agent and of ``autopilot backtest``:
    it resolves the config for the series' metric name, applies
    :func:`step_record` (idempotent per offset) and builds an Anomaly for every
    anomalous verdict.

    Args:
        baseline: the series' baseline.
        points: samples of one series (same service, metric and labels), in order.
        offset: the source record's offset in ``stream`` (a replay changes nothing).
        config: detection parameters (not yet resolved for the metric).
        stream: the source stream ``offset`` belongs to (:mod:`autopilot.replay`).

    Returns:
        ``(new_baseline, results)``, one result per point (empty on replay).
    """
    if not points:
        return baseline, []
    series_config = config.for_metric(points[0].metric_name, points[0].metric_type)
    new, verdicts = step_record(
        baseline, [(p.value, p.timestamp.timestamp()) for p in points], offset, series_config,
        stream=stream,
    )
    if not verdicts:
        return new, []  # a replay: applied before, nothing changes
    results = [
        SeriesResult(p, v, make_anomaly(p, v) if v.anomalous else None)
        for p, v in zip(points, verdicts, strict=True)
    ]
    return new, results


def make_anomaly(point: MetricPoint, verdict: Verdict) -> Anomaly:
    """Build the seed Anomaly record for an anomalous ``verdict`` of ``point``.

    ``current_value`` is the scored value (a counter's per-second rate).

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
        current_value=verdict.value,
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
