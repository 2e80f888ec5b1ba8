"""Detection parameters: :class:`DetectorConfig`, the direction and counter rules by
metric name, and the constants both modes share (part of :mod:`autopilot.detection`).

Units: z-scores and thresholds in scales (σ) of the series; ``episode_s`` and
``signal_resend_s`` in seconds of event time; ``window_size``, ``min_samples`` and the
other counts in samples. The module docstring of :mod:`autopilot.detection` describes
what each parameter does in the algorithm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

__all__ = [
    "DEFAULT_COUNTER_SUFFIXES",
    "DEFAULT_DOWN_PATTERNS",
    "DEFAULT_UP_PATTERNS",
    "MAX_SCORE",
    "MODES",
    "SEASONAL_MODES",
    "ZERO_VARIANCE_SCALE",
    "Direction",
    "DetectorConfig",
    "resolve_direction",
]

#: Relative scale used instead of a zero standard deviation (:mod:`autopilot.detection`).
ZERO_VARIANCE_SCALE = 1e-3
#: Bound on |z| and |deviation %| so records never carry infinity.
MAX_SCORE = 1e9
#: Bound on baseline means, scales and counter rates (±1e18).
MAX_MEAN = MAX_SCORE * MAX_SCORE
#: Detector modes: the seed's rolling z-score and the default adaptive detector.
MODES = ("adaptive", "seed")
#: Seasonal stage settings (:mod:`autopilot.detection.seasonal`): ``off``; ``on``, the
#: departure from the seasonal expectation is scored; ``behaviour``, also the
#: behaviour-change signals (spike rate, variance collapse).
SEASONAL_MODES = ("off", "on", "behaviour")
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
        likelihood_warmup: scored samples before the likelihood decides
            (``AUTOPILOT_LIKELIHOOD_WARMUP``, 100).
        warmup_z: until then a sample alerts when its directional |z| > this
            (``AUTOPILOT_WARMUP_Z``, 6.0).
        alert_score: alert when the anomaly score ≥ this (``AUTOPILOT_ALERT_SCORE``, 0.2).
        episode_s: after an alert the series stays silent this long, event time
            (``AUTOPILOT_EPISODE_S``, 21600 = 6 h).
        spatial_tolerance: a value beyond the series' all-time range by more than
            this fraction of the range scores 1.0 (``AUTOPILOT_SPATIAL_TOLERANCE``,
            0.05; negative turns the rule off), when its directional |z| also exceeds
            ``novelty_z`` (``AUTOPILOT_NOVELTY_Z``, 6.0).
        season_days: days of time-of-day memory for routine departures
            (``AUTOPILOT_SEASON_DAYS``, 3; 0 turns it off).
        seasonal: the seasonal stage, one of :data:`SEASONAL_MODES`
            (``AUTOPILOT_DETECTION_SEASONAL``, ``on``): with ``on`` the departure from
            the seasonal expectation (time of day / day of week, once a period is
            confirmed) is scored as well as the one from the level baseline.
        direction: ``both``, ``up`` or ``down``; set per series by :meth:`for_metric`.
        counter: score the per-second increase; set per series by :meth:`for_metric`.
        up_patterns, down_patterns, counter_suffixes: name rules used by
            :meth:`for_metric` (``AUTOPILOT_DIRECTION_UP``, ``AUTOPILOT_DIRECTION_DOWN``,
            ``AUTOPILOT_COUNTER_SUFFIXES``).
        recover_samples: a firing series is resolved after this many scored samples
            in a row back inside the band of its frozen pre-alert baseline
            (``AUTOPILOT_RECOVER_SAMPLES``, 5; ≥ 1).
        recover_z: a sample is back inside the band when its directional |z|
            against that frozen baseline is at most this (``AUTOPILOT_RECOVER_Z``, 2.0).
        signal_resend_s: while a series fires, a sample at least this long (s, event
            time) after the last firing record sent carries a re-send
            (``AUTOPILOT_SIGNAL_RESEND_S``, 300).
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
    warmup_z: float = 6.0
    alert_score: float = 0.2
    episode_s: float = 21_600.0
    spatial_tolerance: float = 0.05
    novelty_z: float = 5.0
    season_days: int = 3
    seasonal: str = "on"
    direction: Direction = "both"
    counter: bool = False
    up_patterns: tuple[str, ...] = DEFAULT_UP_PATTERNS
    down_patterns: tuple[str, ...] = DEFAULT_DOWN_PATTERNS
    counter_suffixes: tuple[str, ...] = DEFAULT_COUNTER_SUFFIXES
    recover_samples: int = 5
    recover_z: float = 2.0
    signal_resend_s: float = 300.0
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
        if self.season_days < 0:
            raise ValueError(f"season_days must be >= 0, not {self.season_days!r}")
        if self.seasonal not in SEASONAL_MODES:
            raise ValueError(
                f"seasonal must be one of {SEASONAL_MODES}, not {self.seasonal!r}")
        if self.recover_samples < 1:
            raise ValueError(f"recover_samples must be >= 1, not {self.recover_samples!r}")

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
            warmup_z=settings.warmup_z,
            alert_score=settings.alert_score,
            episode_s=settings.episode_s,
            spatial_tolerance=settings.spatial_tolerance,
            novelty_z=settings.novelty_z,
            season_days=settings.season_days,
            seasonal=settings.detection_seasonal,
            up_patterns=_split(settings.direction_up),
            down_patterns=_split(settings.direction_down),
            counter_suffixes=_split(settings.counter_suffixes),
            recover_samples=settings.recover_samples,
            recover_z=settings.recover_z,
            signal_resend_s=settings.signal_resend_s,
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

