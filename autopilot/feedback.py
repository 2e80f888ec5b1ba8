"""Feedback that teaches the detector: "Not an incident" (pure: no Faust, no network).

A user who says an alert was not an incident records one :class:`Feedback` per series
involved: the *departure* the detector alerted on (its direction, its size, and,
where the detector's routine memory applies, its time of day), who said so, when
(``recorded_at``, wall-clock epoch s) and until when (``until``; ``None``: for good).

"The same departure" (:func:`matches`), for a later alert of the same series:

* **direction**: the sign of its z-score equals the recorded one;
* **size**: its |z| is at most :data:`SIZE_FACTOR` (1.5) × the recorded |z|, and,
  when a relative deviation was recorded, its |deviation %| is at most 1.5 × the
  recorded one. Smaller departures match too; a clearly larger one (more than 1.5
  times) still pages;
* **time of day** (only when the feedback carries one, that is when the detector's
  routine memory applies: adaptive mode with ``AUTOPILOT_SEASON_DAYS`` > 0, see
  :func:`routine_applies`): the alert's event time of day (UTC) is within
  :data:`TIME_WINDOW_S` (± 30 minutes, circular over midnight) of the recorded one —
  the routine memory itself looks at its 15-minute slot and the slots either side;
* **period**: live, the feedback applies while the wall clock is before ``until``.
  The backtest replays history with every feedback of the file, whatever its period.

Where it acts (:func:`screen`): the detector still computes every verdict and
learns from every sample; only the records sent on are filtered. A matching alert is
*suppressed* (not sent, counted), and the series is then *muted* until its firing
episode ends: the re-sends and the recovery of a suppressed alert are not sent
either (the incident never heard of it). An alert that does not match while muted
(a clearly larger departure, an escalation) is sent and unmutes the series.
The detector's own episode rule still holds after a suppressed alert: within
``AUTOPILOT_EPISODE_S`` (6 h) of it only a more severe departure alerts.

Table value per service (:class:`FeedbackState`, table ``feedback``):
``{"records": [Feedback.to_dict(), ...], "offsets": {stream: offset}}``, at most
:data:`MAX_PER_SERVICE` records (the oldest recorded go first); a record for the same
series, direction and time of day replaces the older one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from autopilot import replay
from autopilot.errors import BadRecord

__all__ = [
    "MAX_PER_SERVICE",
    "SIZE_FACTOR",
    "TIME_WINDOW_S",
    "Feedback",
    "FeedbackState",
    "decode_feedback",
    "matches",
    "routine_applies",
    "screen",
    "time_of_day",
]

#: A later departure is "the same" up to this many times the recorded size.
SIZE_FACTOR = 1.5
#: Half-width of the time-of-day window (s): ± 30 minutes.
TIME_WINDOW_S = 1800.0
#: Feedback records kept per service.
MAX_PER_SERVICE = 500
_DAY_S = 86_400.0

Direction = Literal["up", "down"]


def time_of_day(epoch_s: float) -> float:
    """Seconds since midnight UTC of ``epoch_s``."""
    return epoch_s % _DAY_S


def routine_applies(mode: str, season_days: int) -> bool:
    """Whether the detector's routine (time-of-day) memory is on: adaptive mode and
    ``season_days`` > 0 (:class:`autopilot.detection.DetectorConfig`)."""
    return mode == "adaptive" and season_days > 0


def _number(data: Mapping[str, Any], name: str, default: float | None = None) -> float | None:
    raw = data.get(name, default)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise BadRecord(f"feedback: {name} must be a number, not {raw!r}")
    value = float(raw)
    if not math.isfinite(value):
        raise BadRecord(f"feedback: {name} must be finite")
    return value


@dataclass(frozen=True, slots=True)
class Feedback:
    """One "Not an incident" for one series.

    Attributes:
        series: the series key (``service|metric|k=v,…``).
        service: its service (the record's and the table's key).
        direction: ``up`` (the value rose) or ``down``.
        z_score: |z| of the departure (dimensionless, > 0).
        deviation_percent: |deviation %| of the departure (None: not compared).
        time_of_day_s: seconds since midnight UTC of the departure's event time
            (None: any time of day, the routine memory does not apply).
        user: who said so (a Slack user id or a name).
        recorded_at: wall-clock epoch s of the feedback.
        until: wall-clock epoch s it stops applying (None: for good).
        incident: the incident id it was given on ("" when none).
    """

    series: str
    service: str
    direction: Direction
    z_score: float
    deviation_percent: float | None = None
    time_of_day_s: float | None = None
    user: str = ""
    recorded_at: float = 0.0
    until: float | None = None
    incident: str = ""

    @classmethod
    def from_anomaly(
        cls,
        anomaly: Any,
        user: str,
        recorded_at: float,
        until: float | None = None,
        with_time_of_day: bool = True,
        incident: str = "",
    ) -> Feedback:
        """The feedback that describes ``anomaly``'s departure (an
        :class:`autopilot.models.Anomaly`); ``with_time_of_day`` when the routine
        memory applies (:func:`routine_applies`).

        Raises:
            BadRecord: the anomaly has no direction (z = 0).
        """
        z = float(anomaly.z_score)
        if not z:
            raise BadRecord("feedback: the departure has no direction (z = 0)")
        at = anomaly.detected_at.timestamp()
        return cls(
            series=anomaly.series or f"{anomaly.service}|{anomaly.metric_name}",
            service=anomaly.service,
            direction="up" if z > 0 else "down",
            z_score=abs(z),
            deviation_percent=abs(float(anomaly.deviation_percent)) or None,
            time_of_day_s=time_of_day(at) if with_time_of_day else None,
            user=user,
            recorded_at=recorded_at,
            until=until,
            incident=incident,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the record on the topic, the table, the export)."""
        return {
            "series": self.series,
            "service": self.service,
            "direction": self.direction,
            "z_score": self.z_score,
            "deviation_percent": self.deviation_percent,
            "time_of_day_s": self.time_of_day_s,
            "user": self.user,
            "recorded_at": self.recorded_at,
            "until": self.until,
            "incident": self.incident,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Feedback:
        """Read a :meth:`to_dict` value (a topic record, an export line).

        Raises:
            BadRecord: a field is missing or of the wrong type.
        """
        if not isinstance(data, Mapping):
            raise BadRecord("feedback: expected a JSON object")
        series, service = data.get("series"), data.get("service")
        if not isinstance(series, str) or not series:
            raise BadRecord("feedback: series must be a non-empty string")
        if not isinstance(service, str) or not service:
            service = series.split("|", 1)[0]
        if not series.startswith(service + "|") and series != service:
            raise BadRecord(f"feedback: series {series!r} is not of service {service!r}")
        direction = data.get("direction")
        if direction not in ("up", "down"):
            raise BadRecord(f"feedback: direction must be up or down, not {direction!r}")
        z = _number(data, "z_score")
        if z is None or z <= 0.0:
            raise BadRecord("feedback: z_score must be a number > 0")
        dev = _number(data, "deviation_percent")
        tod = _number(data, "time_of_day_s")
        if tod is not None and not 0.0 <= tod < _DAY_S:
            raise BadRecord("feedback: time_of_day_s must be in [0, 86400)")
        user = data.get("user", "")
        incident = data.get("incident", "")
        return cls(
            series=series,
            service=service,
            direction=direction,
            z_score=z,
            deviation_percent=abs(dev) if dev else None,
            time_of_day_s=tod,
            user=str(user) if user is not None else "",
            recorded_at=_number(data, "recorded_at", 0.0) or 0.0,
            until=_number(data, "until"),
            incident=str(incident) if incident is not None else "",
        )

    def active(self, now: float | None) -> bool:
        """Whether it applies at wall-clock ``now`` (None: always, as in the backtest)."""
        return now is None or self.until is None or now < self.until

    def same_kind(self, other: Feedback) -> bool:
        """Same series, direction and time of day (a newer one replaces the older)."""
        return (self.series, self.direction, self.time_of_day_s) == (
            other.series, other.direction, other.time_of_day_s)


def _tod_distance(a: float, b: float) -> float:
    d = abs(a - b) % _DAY_S
    return min(d, _DAY_S - d)


def matches(
    feedback: Feedback,
    anomaly: Any,
    at: float | None = None,
) -> bool:
    """Whether ``anomaly`` (an :class:`autopilot.models.Anomaly`, or anything with
    ``series``, ``z_score``, ``deviation_percent`` and ``detected_at``) is the departure
    ``feedback`` describes, at wall-clock ``at`` (epoch s; None: ignore the period).

    See the module docstring for the rules and their numbers.
    """
    if anomaly.series != feedback.series or not feedback.active(at):
        return False
    z = float(anomaly.z_score)
    if z == 0.0 or (z > 0.0) != (feedback.direction == "up"):
        return False
    if abs(z) > SIZE_FACTOR * feedback.z_score:
        return False
    if feedback.deviation_percent is not None and (
            abs(float(anomaly.deviation_percent)) > SIZE_FACTOR * feedback.deviation_percent):
        return False
    if feedback.time_of_day_s is not None:
        when = anomaly.detected_at.timestamp()
        if _tod_distance(time_of_day(when), feedback.time_of_day_s) > TIME_WINDOW_S:
            return False
    return True


@dataclass(frozen=True, slots=True)
class FeedbackState:
    """The feedback of one service (the ``feedback`` table's value)."""

    records: tuple[Feedback, ...] = ()
    offsets: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> FeedbackState:
        """Read a stored value (None: empty)."""
        if not data:
            return cls()
        return cls(
            records=tuple(Feedback.from_dict(r) for r in data.get("records", ())),
            offsets=replay.offsets_from_dict(data),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"records": [r.to_dict() for r in self.records], "offsets": dict(self.offsets)}

    def for_series(self, series: str) -> list[Feedback]:
        """The records of one series."""
        return [r for r in self.records if r.series == series]

    def apply(
        self,
        new: Iterable[Feedback],
        offset: int,
        stream: str = "",
        now: float | None = None,
    ) -> FeedbackState:
        """Add ``new`` (one source record's feedback), idempotently per offset.

        A record of the same series, direction and time of day replaces the older
        one; records expired at wall-clock ``now`` are dropped; at most
        :data:`MAX_PER_SERVICE` are kept (the most recently recorded).
        Returns ``self`` on a replay.
        """
        if replay.seen(self.offsets, stream, offset):
            return self
        records = list(self.records)
        for fb in new:
            records = [r for r in records if not r.same_kind(fb)]
            records.append(fb)
        records = [r for r in records if r.active(now)]
        records.sort(key=lambda r: r.recorded_at)
        return replace(self, records=tuple(records[-MAX_PER_SERVICE:]),
                       offsets=replay.advance(self.offsets, stream, offset))


def decode_feedback(raw: bytes) -> list[Feedback]:
    """Decode a record of the feedback topic: one :meth:`Feedback.to_dict` object or a
    JSON list of them (all of one service).

    Raises:
        BadRecord: not JSON, a bad field, or several services in one record.
    """
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRecord(f"feedback: not JSON: {exc}") from None
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise BadRecord("feedback: empty list")
    out = [Feedback.from_dict(item) for item in items]
    if len({fb.service for fb in out}) != 1:
        raise BadRecord("feedback: one record holds the feedback of one service")
    return out


def screen(
    results: Sequence[Any],
    feedback: Sequence[Feedback],
    muted: bool,
    at: float | None,
) -> tuple[list[Any], int, bool]:
    """Filter one series' detector results (:class:`autopilot.detection.SeriesResult`,
    in order) through its feedback.

    Args:
        results: the results of :func:`autopilot.detection.detect_series`.
        feedback: the series' feedback records.
        muted: whether the series' current firing episode began with a suppressed
            alert (stored with the baseline by the metrics agent).
        at: wall-clock epoch s (None: every feedback applies, as in the backtest).

    Returns:
        ``(sent, suppressed, muted)``: the results whose Anomaly is still sent (only
        those with an anomaly), how many alerts were suppressed, the new muted flag.
    """
    sent: list[Any] = []
    suppressed = 0
    for r in results:
        anomaly = r.anomaly
        if anomaly is None:
            continue
        if r.verdict.anomalous:
            if feedback and any(matches(fb, anomaly, at) for fb in feedback):
                suppressed += 1
                muted = True
                continue
            muted = False
            sent.append(r)
        elif muted:
            if anomaly.state == "resolved":
                muted = False
        else:
            sent.append(r)
    return sent, suppressed, muted
