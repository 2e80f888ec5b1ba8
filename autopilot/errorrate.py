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

Firing and recovery (Alertmanager's "firing" / "resolved"): the first spike while not
firing freezes the reference — the history's mean and scale that spike was scored
against — and the service's error rate *fires*. Every window that closes after that
(empty gap windows too, with a count of 0) is back in the band when its z against the
frozen reference is at most ``z_threshold`` or it holds fewer than ``min_count``
errors; ``recover_buckets`` (``AUTOPILOT_ERROR_RECOVER_BUCKETS``, 3) such windows in a
row resolve it: an ``error_rate`` Anomaly with ``state="resolved"``, ``detected_at``
the end of the last of them (event time, never wall-clock time). A window out of the
band restarts the count. While firing, a further spike emits a ``state="firing"``
record only when it is more severe than the episode's highest (an escalation) or
``resend_s`` (``AUTOPILOT_SIGNAL_RESEND_S``, 300 s of event time) have passed since the
last firing record; a window that closes out of the band re-sends on the same terms
(so a sustained error storm that no longer spikes against its own history still
reports that it fires). Signal records carry the frozen reference as
``baseline_mean`` and its scale as ``baseline_std_dev``, and the episode's highest
severity.

Error levels are those :func:`autopilot.formats.levels.is_error_level` names (error,
err, severe, critical, crit, fatal, panic, alert, emerg, emergency, and numeric syslog
severities 0–3, RFC 5424 §6.2.1) — levels are normalised in that one place.
The newest error lines are kept (``recent_max``, default 20) for incident context.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from autopilot import replay
from autopilot.detection import DetectorConfig, severity_for, severity_of_rank
from autopilot.formats.levels import ERROR_LEVELS, is_error_level
from autopilot.models import Anomaly, LogEntry, Severity
from autopilot.redact import redact

__all__ = [
    "ERROR_LEVELS",
    "ErrorRateConfig",
    "ErrorRateRecord",
    "ErrorRateState",
    "is_error_level",
    "step",
    "step_records",
]


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
        recover_buckets: in-band windows in a row that resolve a firing error rate
            (``AUTOPILOT_ERROR_RECOVER_BUCKETS``, 3; ≥ 1).
        resend_s: least event time (s) between two firing records of one episode,
            escalations aside (``AUTOPILOT_SIGNAL_RESEND_S``, 300).
    """

    bucket_s: int = 60
    history_buckets: int = 60
    min_buckets: int = 5
    min_count: int = 5
    z_threshold: float = 3.0
    recent_max: int = 20
    detector: DetectorConfig = DetectorConfig()
    recover_buckets: int = 3
    resend_s: float = 300.0

    def __post_init__(self) -> None:
        if self.recover_buckets < 1:
            raise ValueError(f"recover_buckets must be >= 1, not {self.recover_buckets!r}")

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
            recover_buckets=settings.error_recover_buckets,
            resend_s=settings.signal_resend_s,
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
        firing_mean, firing_scale: the reference frozen at the episode's first spike
            (errors per window; ``firing_mean`` None: not firing).
        firing_rank: severity rank of the episode's highest spike (1 medium …
            3 critical; 0 when not firing).
        recover_run: closed windows in a row back inside the frozen band.
        last_sent: event time (epoch s) of the episode's last firing record.
        States written before these five fields existed load as not firing.
    """

    bucket_start: int = -1
    errors: int = 0
    total: int = 0
    history: tuple[int, ...] = ()
    flagged: bool = False
    recent_errors: tuple[dict[str, Any], ...] = ()
    offsets: Mapping[str, int] = field(default_factory=dict)
    firing_mean: float | None = None
    firing_scale: float = 0.0
    firing_rank: int = 0
    recover_run: int = 0
    last_sent: float = 0.0

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
            "firing_mean": self.firing_mean,
            "firing_scale": self.firing_scale,
            "firing_rank": self.firing_rank,
            "recover_run": self.recover_run,
            "last_sent": self.last_sent,
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
            firing_mean=None if data.get("firing_mean") is None else float(data["firing_mean"]),
            firing_scale=float(data.get("firing_scale", 0.0)),
            firing_rank=int(data.get("firing_rank", 0)),
            recover_run=int(data.get("recover_run", 0)),
            last_sent=float(data.get("last_sent", 0.0)),
        )

    def recent_error_entries(self) -> list[LogEntry]:
        """The kept error lines as :class:`LogEntry` records, oldest first."""
        return [LogEntry.model_validate(d) for d in self.recent_errors]


def _roll(
    state: ErrorRateState, bucket: int, config: ErrorRateConfig, service: str
) -> tuple[ErrorRateState, Anomaly | None]:
    """Advance to window ``bucket`` (a later window), filling gaps with zeros.

    While firing, the windows that close (the current one and the empty ones of the
    gap) are judged against the frozen reference: the result's Anomaly is the
    recovery or a re-send, or None.
    """
    if state.bucket_start < 0:
        return replace(state, bucket_start=bucket, errors=0, total=0, flagged=False), None
    gap = (bucket - state.bucket_start) // config.bucket_s - 1
    pushed = [state.errors] + [0] * min(gap, config.history_buckets)
    history = (state.history + tuple(pushed))[-config.history_buckets :]
    signal = None
    if state.firing_mean is not None:
        state, signal = _close_windows(state, gap, config, service)
    return replace(
        state, bucket_start=bucket, errors=0, total=0, flagged=False, history=history
    ), signal


def _close_windows(
    state: ErrorRateState, gap: int, config: ErrorRateConfig, service: str
) -> tuple[ErrorRateState, Anomaly | None]:
    """Judge the closing window and ``gap`` empty ones of a firing state (see module
    docstring): the new firing fields and at most one record (a window out of the
    band that re-sends, or the recovery, which ends the loop)."""
    mean, scale = state.firing_mean, state.firing_scale
    assert mean is not None
    run, last_sent = state.recover_run, state.last_sent
    signal = None
    # Gap windows hold 0 errors (in the band): at most recover_buckets are needed.
    for i in range(1 + min(gap, config.recover_buckets)):
        count = state.errors if i == 0 else 0
        end = state.bucket_start + (i + 1) * config.bucket_s
        z = (count - mean) / scale
        if count < config.min_count or z <= config.z_threshold:
            run += 1
            if run >= config.recover_buckets:
                resolved = _signal(state, "resolved", count, z, end, config, service)
                return replace(state, firing_mean=None, firing_scale=0.0, firing_rank=0,
                               recover_run=0, last_sent=0.0), resolved
        else:
            run = 0
            if signal is None and end - last_sent >= config.resend_s:
                signal = _signal(state, "firing", count, z, end, config, service)
                last_sent = end
    return replace(state, recover_run=run, last_sent=last_sent), signal


def _signal(
    state: ErrorRateState, kind: Literal["firing", "resolved"], count: int, z: float,
    at: float, config: ErrorRateConfig, service: str,
) -> Anomaly:
    """A signal record of a firing state against its frozen reference."""
    mean = state.firing_mean
    assert mean is not None
    return Anomaly(
        kind="error_rate",
        state=kind,
        metric_name="error_rate",
        service=service,
        series=f"{service}|error_rate|",
        current_value=float(count),
        baseline_mean=mean,
        baseline_std_dev=state.firing_scale,
        z_score=z,
        deviation_percent=100.0 * (count - mean) / mean if mean > 0.0 else 0.0,
        severity=severity_of_rank(state.firing_rank),
        detected_at=datetime.fromtimestamp(at, UTC),
        labels={"window_s": str(config.bucket_s)},
    )


def baseline_stats(history: tuple[int, ...]) -> tuple[float, float]:
    """Mean and population std of past window counts."""
    n = len(history)
    if n == 0:
        return 0.0, 0.0
    mean = sum(history) / n
    var = sum((x - mean) ** 2 for x in history) / n
    return mean, math.sqrt(var)


class ErrorRateRecord(NamedTuple):
    """One record :func:`step_records` emits: the Anomaly, and whether it is an alert
    (a new episode or an escalation) rather than a re-send or the recovery."""

    anomaly: Anomaly
    alert: bool


def step(
    state: ErrorRateState,
    entries: list[LogEntry],
    offset: int,
    config: ErrorRateConfig,
    stream: str = "",
) -> tuple[ErrorRateState, list[Anomaly]]:
    """:func:`step_records`, with the Anomaly records only."""
    new, records = step_records(state, entries, offset, config, stream)
    return new, [r.anomaly for r in records]


def step_records(
    state: ErrorRateState,
    entries: list[LogEntry],
    offset: int,
    config: ErrorRateConfig,
    stream: str = "",
) -> tuple[ErrorRateState, list[ErrorRateRecord]]:
    """Apply the log lines of one source record (one service) idempotently.

    Args:
        state: the service's current state.
        entries: log lines of one service, in record order.
        offset: the source record's offset in ``stream``; at or below the last offset
            applied from that stream it is a replay and nothing changes.
        config: parameters.
        stream: the source stream ``offset`` belongs to (:mod:`autopilot.replay`).

    Returns:
        ``(new_state, records)``, in event-time order: ``error_rate`` Anomaly
        records (each with ``alert``: True for a new episode or an escalation),
        ``current_value`` in errors per window of ``bucket_s`` seconds —
        spikes (state ``firing``: a new episode, an escalation or a re-send, at most
        one per window) and, when a window closes while firing, a re-send or the
        recovery (state ``resolved``; module docstring). Lines older than the
        current window still join the recent error lines but not the counts (late
        data).
    """
    if replay.seen(state.offsets, stream, offset):
        return state, []
    anomalies: list[ErrorRateRecord] = []
    for entry in entries:
        ts = entry.timestamp.timestamp()
        bucket = int(ts // config.bucket_s) * config.bucket_s
        if bucket > state.bucket_start:
            state, closed = _roll(state, bucket, config, entry.service)
            if closed is not None:
                anomalies.append(ErrorRateRecord(closed, False))
        error = is_error_level(entry.level)
        if error:
            # Stored redacted (the one redactor): tables, changelogs, views, incident
            # records and what the LLM and Slack see never hold a secret from a log line.
            kept = entry.model_copy(update={"message": redact(entry.message)})
            recent = (*state.recent_errors, kept.model_dump(mode="json"))
            state = replace(state, recent_errors=recent[-config.recent_max :])
        if bucket < state.bucket_start:
            continue  # late line: context only
        state = replace(state, total=state.total + 1, errors=state.errors + int(error))
        if error and not state.flagged:
            found = _spike(state, entry, config)
            if found is None:
                continue
            anomaly, mean, scale = found
            rank = anomaly.severity.rank
            if state.firing_mean is None:
                # A new episode: freeze the reference this spike was scored against.
                state = replace(state, flagged=True, firing_mean=mean, firing_scale=scale,
                                firing_rank=rank, recover_run=0, last_sent=ts)
                anomalies.append(ErrorRateRecord(anomaly, True))
            elif rank > state.firing_rank or ts - state.last_sent >= config.resend_s:
                # An escalation, or a re-send while still firing.
                escalated = rank > state.firing_rank
                state = replace(state, flagged=True, last_sent=ts,
                                firing_rank=max(rank, state.firing_rank))
                anomalies.append(ErrorRateRecord(anomaly, escalated))
            elif rank >= Severity.CRITICAL.rank:
                # Critical and not due: nothing this window can add (its close re-sends
                # when due); stop scoring its lines.
                state = replace(state, flagged=True)
    return replace(state, offsets=replay.advance(state.offsets, stream, offset)), anomalies


def _spike(
    state: ErrorRateState, entry: LogEntry, config: ErrorRateConfig
) -> tuple[Anomaly, float, float] | None:
    """The current window's spike against the history, with the history's mean and
    scale (errors per window), or None."""
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
    ), mean, scale
