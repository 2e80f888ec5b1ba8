"""Error-rate spikes from log levels, per service, in event-time windows (pure).

Each service's log lines are counted in tumbling windows of ``bucket_s`` seconds of
event time (default 60 s). The error count of the current window is compared with
the counts of the previous ``history_buckets`` windows (default 60; windows with no
log line count as 0):

    z = (errors_now − mean) / max(std, √max(mean, 1))

The floor √mean is the Poisson standard deviation of a count with that mean, so a
service whose error count has been flat (std = 0) is not alerted on one stray error,
while a real burst still is. A spike is reported at most once per window, as soon as
the window holds at least ``min_count`` errors (default 5), the history has at least
``min_buckets`` windows (default 5) and z > ``z_threshold`` (default 3.0). Its
severity uses the detector's z thresholds (high > 3, critical > 4).

Error levels are those :func:`autopilot.formats.levels.is_error_level` names (error,
err, severe, critical, crit, fatal, panic, alert, emerg, emergency, and numeric syslog
severities 0–3, RFC 5424 §6.2.1) — levels are normalised in that one place.
The newest error lines are kept (``recent_max``, default 20) for incident context.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from autopilot import replay
from autopilot.detection import DetectorConfig, severity_for
from autopilot.formats.levels import ERROR_LEVELS, is_error_level
from autopilot.models import Anomaly, LogEntry

__all__ = ["ERROR_LEVELS", "ErrorRateConfig", "ErrorRateState", "is_error_level", "step"]


@dataclass(frozen=True, slots=True)
class ErrorRateConfig:
    """Error-rate parameters (``AUTOPILOT_ERROR_*`` settings).

    Attributes:
        bucket_s: window length, seconds of event time.
        history_buckets: past windows in the baseline.
        min_buckets: past windows needed before any verdict (cold start).
        min_count: errors a window needs before it can be a spike.
        z_threshold: spike when z > this.
        recent_max: error lines kept for incident context.
        detector: z thresholds for severity.
    """

    bucket_s: int = 60
    history_buckets: int = 60
    min_buckets: int = 5
    min_count: int = 5
    z_threshold: float = 3.0
    recent_max: int = 20
    detector: DetectorConfig = DetectorConfig()

    @classmethod
    def from_settings(cls, settings: Any) -> ErrorRateConfig:
        """Build from :class:`autopilot.settings.Settings`."""
        return cls(
            bucket_s=settings.error_bucket_s,
            history_buckets=settings.error_history_buckets,
            min_buckets=settings.error_min_buckets,
            min_count=settings.error_min_count,
            z_threshold=settings.error_z_threshold,
            recent_max=settings.recent_errors_max,
            detector=DetectorConfig.from_settings(settings),
        )


@dataclass(frozen=True, slots=True)
class ErrorRateState:
    """Per-service error-rate state; replaced by :func:`step`.

    Attributes:
        bucket_start: epoch seconds of the current window's start (−1: none yet).
        errors: error lines in the current window.
        total: all lines in the current window.
        history: error counts of past windows, oldest first.
        flagged: a spike was already reported for the current window.
        recent_errors: newest error lines (JSON dicts of LogEntry), oldest first.
        offsets: per source stream, the offset of the last record applied (replays
            are no-ops; see :mod:`autopilot.replay`).
    """

    bucket_start: int = -1
    errors: int = 0
    total: int = 0
    history: tuple[int, ...] = ()
    flagged: bool = False
    recent_errors: tuple[dict[str, Any], ...] = ()
    offsets: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for the error-rate table."""
        return {
            "bucket_start": self.bucket_start,
            "errors": self.errors,
            "total": self.total,
            "history": list(self.history),
            "flagged": self.flagged,
            "recent_errors": list(self.recent_errors),
            "offsets": dict(self.offsets),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ErrorRateState:
        """Inverse of :meth:`to_dict`; ``None`` gives an empty state."""
        if not data:
            return cls()
        return cls(
            bucket_start=int(data["bucket_start"]),
            errors=int(data["errors"]),
            total=int(data["total"]),
            history=tuple(int(x) for x in data["history"]),
            flagged=bool(data["flagged"]),
            recent_errors=tuple(data["recent_errors"]),
            offsets=replay.offsets_from_dict(data),
        )

    def recent_error_entries(self) -> list[LogEntry]:
        """The kept error lines as :class:`LogEntry` records, oldest first."""
        return [LogEntry.model_validate(d) for d in self.recent_errors]


def _roll(state: ErrorRateState, bucket: int, config: ErrorRateConfig) -> ErrorRateState:
    """Advance to window ``bucket`` (a later window), filling gaps with zeros."""
    if state.bucket_start < 0:
        return replace(state, bucket_start=bucket, errors=0, total=0, flagged=False)
    gap = (bucket - state.bucket_start) // config.bucket_s - 1
    pushed = [state.errors] + [0] * min(gap, config.history_buckets)
    history = (state.history + tuple(pushed))[-config.history_buckets :]
    return replace(state, bucket_start=bucket, errors=0, total=0, flagged=False, history=history)


def baseline_stats(history: tuple[int, ...]) -> tuple[float, float]:
    """Mean and population std of past window counts."""
    n = len(history)
    if n == 0:
        return 0.0, 0.0
    mean = sum(history) / n
    var = sum((x - mean) ** 2 for x in history) / n
    return mean, math.sqrt(var)


def step(
    state: ErrorRateState,
    entries: list[LogEntry],
    offset: int,
    config: ErrorRateConfig,
    stream: str = "",
) -> tuple[ErrorRateState, list[Anomaly]]:
    """Apply the log lines of one source record (one service) idempotently.

    Args:
        state: the service's current state.
        entries: log lines of one service, in record order.
        offset: the source record's offset in ``stream``; at or below the last offset
            applied from that stream it is a replay and nothing changes.
        config: parameters.
        stream: the source stream ``offset`` belongs to (:mod:`autopilot.replay`).

    Returns:
        ``(new_state, anomalies)``: at most one ``error_rate`` Anomaly per window,
        ``current_value`` in errors per window of ``bucket_s`` seconds.
        Lines older than the current window still join the recent error lines but
        not the counts (late data).
    """
    if replay.seen(state.offsets, stream, offset):
        return state, []
    anomalies: list[Anomaly] = []
    for entry in entries:
        ts = entry.timestamp.timestamp()
        bucket = int(ts // config.bucket_s) * config.bucket_s
        if bucket > state.bucket_start:
            state = _roll(state, bucket, config)
        error = is_error_level(entry.level)
        if error:
            recent = (*state.recent_errors, entry.model_dump(mode="json"))
            state = replace(state, recent_errors=recent[-config.recent_max :])
        if bucket < state.bucket_start:
            continue  # late line: context only
        state = replace(state, total=state.total + 1, errors=state.errors + int(error))
        if error and not state.flagged:
            anomaly = _spike(state, entry, config)
            if anomaly is not None:
                state = replace(state, flagged=True)
                anomalies.append(anomaly)
    return replace(state, offsets=replay.advance(state.offsets, stream, offset)), anomalies


def _spike(state: ErrorRateState, entry: LogEntry, config: ErrorRateConfig) -> Anomaly | None:
    if len(state.history) < config.min_buckets or state.errors < config.min_count:
        return None
    mean, std = baseline_stats(state.history)
    scale = max(std, math.sqrt(max(mean, 1.0)))
    z = (state.errors - mean) / scale
    if z <= config.z_threshold:
        return None
    severity = severity_for(z, config.detector) or severity_for(
        config.detector.z_threshold + 1e-9, config.detector
    )
    assert severity is not None
    deviation = 100.0 * (state.errors - mean) / mean if mean > 0.0 else 0.0
    return Anomaly(
        kind="error_rate",
        metric_name="error_rate",
        service=entry.service,
        series=f"{entry.service}|error_rate|",
        current_value=float(state.errors),
        baseline_mean=mean,
        baseline_std_dev=std,
        z_score=z,
        deviation_percent=deviation,
        severity=severity,
        detected_at=entry.timestamp,
        labels={"window_s": str(config.bucket_s)},
    )
