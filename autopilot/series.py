"""Bounded state per service: which series a service has, a cap, and expiry (pure).

The ``series_index`` table holds, per service, the series it has baselines for and
when each was last seen (event time). Two rules keep memory bounded whatever
arrives:

* **Cap**: a service has at most ``max_series`` series
  (``AUTOPILOT_MAX_SERIES_PER_SERVICE``, default 10,000). Samples of a new series
  beyond the cap are dropped and counted (``autopilot_series_dropped_total``); a
  label with unbounded values (a request id, a timestamp) cannot exhaust the worker.
* **Expiry**: a series not seen for ``ttl_s`` of event time
  (``AUTOPILOT_SERIES_TTL_S``, default 7 days) is forgotten — its baseline is
  deleted (a tombstone on the changelog) and it leaves the index. Expiry is checked
  while the service's records are processed, at most every ``ttl_s / 10`` of event
  time, so its cost is amortised.

Last-seen times are only rewritten when they move by ``ttl_s / 100`` or more, so a
busy series does not cost an index write per record.

Two more rules keep event time honest (the metrics agent applies them before a sample
reaches the detector, :mod:`autopilot.agents.metrics`):

* **Future**: a sample more than ``max_future_s`` ahead of wall-clock time
  (``AUTOPILOT_MAX_FUTURE_S``, default 1 h; the ingest stage refuses such items
  already) is dropped and counted, and it never moves the service's event-time clock,
  so expiry is never driven by it (:func:`split_future`). One sample dated 2100 would
  otherwise make every other series look 75 years old and expire them all.
* **Order**: per series, a sample not newer than the last one applied (an HA pair of
  Prometheus servers sending the same series, a WAL replay, a retried request) is
  dropped and counted, not applied again (:func:`newer_only`).

:class:`SeriesLimits` built directly (``autopilot backtest``, benchmarks, tests) has
no future limit; :meth:`SeriesLimits.from_settings` takes the setting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

__all__ = ["SeriesIndex", "SeriesLimits", "newer_only", "split_future"]


class _Sample(Protocol):
    """A sample with a value (:class:`autopilot.models.MetricPoint`)."""

    @property
    def value(self) -> float: ...


P = TypeVar("P")
#: A sample type of :func:`newer_only`, which compares values.
V = TypeVar("V", bound=_Sample)


@dataclass(frozen=True, slots=True)
class SeriesLimits:
    """Limits from the settings (see module docstring)."""

    max_series: int = 10_000
    ttl_s: float = 7 * 86_400.0
    #: Seconds a sample may be ahead of wall-clock time; ``None``: no limit.
    max_future_s: float | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> SeriesLimits:
        """Build from :class:`autopilot.settings.Settings` (``AUTOPILOT_MAX_FUTURE_S``
        0 means no limit)."""
        return cls(
            max_series=settings.max_series_per_service,
            ttl_s=settings.series_ttl_s,
            max_future_s=settings.max_future_s or None,
        )

    def future_horizon(self, now_s: float) -> float:
        """Latest acceptable sample time (epoch s) at wall-clock ``now_s``; ``inf``
        without a future limit."""
        return math.inf if self.max_future_s is None else now_s + self.max_future_s


def split_future(
    by_series: dict[str, list[P]], stamps: dict[str, list[float]], horizon: float,
    *parallel: dict[str, list[Any]],
) -> int:
    """Drop, in place, the samples timed after ``horizon`` (epoch s).

    Args:
        by_series: series key → its samples, in order; series left with no sample are
            removed.
        stamps: series key → the samples' times (epoch s), parallel to ``by_series``;
            kept parallel.
        horizon: :meth:`SeriesLimits.future_horizon`.
        parallel: further dicts of per-sample lists (e.g. input positions) kept
            parallel to ``by_series``.

    Returns:
        How many samples were dropped.
    """
    dropped = 0
    for key in list(by_series):
        times = stamps[key]
        if max(times) <= horizon:
            continue
        keep = [i for i, ts in enumerate(times) if ts <= horizon]
        dropped += len(times) - len(keep)
        if keep:
            by_series[key] = [by_series[key][i] for i in keep]
            stamps[key] = [times[i] for i in keep]
            for other in parallel:
                other[key] = [other[key][i] for i in keep]
        else:
            del by_series[key], stamps[key]
            for other in parallel:
                del other[key]
    return dropped


def newer_only(
    points: Sequence[V],
    stamps: Sequence[float],
    last: float,
    last_value: float | None = None,
) -> list[V]:
    """The samples of one series that are not replays or late copies.

    A sample is dropped when it is older than the newest sample applied before it
    (``ts < last``), or when it repeats that sample (same time and same value: a WAL
    replay, a retried request, the second server of an HA pair scraping at the same
    instant). A sample at the same time with a *different* value is kept: some
    exports repeat a time stamp with new values (NAB's data at a daylight-saving
    change), and dropping them would make the live worker disagree with
    ``autopilot backtest``.

    Args:
        points: the series' samples in the order they arrived (objects with a
            ``value``).
        stamps: their times (epoch s), parallel to ``points``.
        last: time of the newest sample already applied (``-inf``: none).
        last_value: value of that sample, when known.

    Returns:
        ``points`` itself when every sample is newer than the one before it (the common
        case), else the kept samples in order; the caller counts
        ``len(points) - len(result)``.
    """
    previous = last
    for ts in stamps:
        if not ts > previous:
            break
        previous = ts
    else:
        return points if isinstance(points, list) else list(points)
    kept: list[V] = []
    previous, previous_value = last, last_value
    for p, ts in zip(points, stamps, strict=True):
        value = p.value
        if ts < previous or (ts == previous and value == previous_value):
            continue
        kept.append(p)
        previous, previous_value = ts, value
    return kept


@dataclass(frozen=True, slots=True)
class SeriesIndex:
    """The series of one service.

    Attributes:
        last_seen: series key → event time (epoch s) it was last seen, coarsened.
        checked: event time of the last expiry check (epoch s).
    """

    last_seen: dict[str, float] = field(default_factory=dict)
    checked: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for the ``series_index`` table."""
        return {"series": dict(self.last_seen), "checked": self.checked}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SeriesIndex:
        """Inverse of :meth:`to_dict`; an older value (a list of keys) loads with
        last-seen 0 (expired at the next check unless seen again).

        A ``series`` mapping that already has the :meth:`to_dict` types (``str`` keys,
        ``float`` values: what the table gives back) is used as it is, not copied:
        the index never mutates it (:meth:`admit` and :meth:`expire` build new
        dicts), and at the per-service cap of 10,000 series the conversion cost 3 times
        the type check. Anything else is converted.
        """
        if not data:
            return cls()
        series = data.get("series", {})
        if isinstance(series, list):
            series = {key: 0.0 for key in series}
        if not (type(series) is dict and set(map(type, series.values())) <= {float}
                and set(map(type, series)) <= {str}):
            series = {str(k): float(v) for k, v in series.items()}
        return cls(last_seen=series, checked=float(data.get("checked", 0.0)))

    @property
    def keys(self) -> list[str]:
        """The series keys, sorted."""
        return sorted(self.last_seen)

    def admit(
        self, seen: dict[str, float], limits: SeriesLimits
    ) -> tuple[SeriesIndex, set[str], set[str]]:
        """Record the series of one record.

        Args:
            seen: series key → newest event time (epoch s) in the record.
            limits: the cap and the time-to-live.

        Returns:
            ``(new_index, admitted, dropped)``: ``admitted`` are the series whose
            samples are processed (known ones and new ones within the cap),
            ``dropped`` the new series beyond the cap. ``new_index is self`` when
            nothing needs writing.
        """
        last_seen = self.last_seen
        changed = False
        admitted: set[str] = set()
        dropped: set[str] = set()
        coarse = limits.ttl_s / 100.0
        for key, ts in seen.items():
            previous = last_seen.get(key)
            if previous is None:
                if len(last_seen) >= limits.max_series:
                    dropped.add(key)
                    continue
                if not changed:
                    last_seen, changed = dict(last_seen), True
                last_seen[key] = ts
            elif ts - previous >= coarse:
                if not changed:
                    last_seen, changed = dict(last_seen), True
                last_seen[key] = ts
            admitted.add(key)
        new = replace(self, last_seen=last_seen) if changed else self
        return new, admitted, dropped

    def expire(self, now: float, limits: SeriesLimits) -> tuple[SeriesIndex, list[str]]:
        """Forget the series not seen for ``ttl_s`` before ``now`` (event time, s).

        Checks at most every ``ttl_s / 10``; returns ``(new_index, expired_keys)``
        (``new_index is self`` when nothing changed).
        """
        if now - self.checked < limits.ttl_s / 10.0:
            return self, []
        horizon = now - limits.ttl_s
        expired = sorted(k for k, ts in self.last_seen.items() if ts < horizon)
        kept = {k: ts for k, ts in self.last_seen.items() if ts >= horizon}
        return replace(self, last_seen=kept, checked=now), expired
