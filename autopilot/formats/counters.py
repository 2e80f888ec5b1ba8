"""Counters → per-second rates before baselining (pure state transition).

A Prometheus counter only goes up, except when the process restarts and it starts
again from 0 (a *reset*). Baselining the raw value would learn a ramp and flag every
reset; baselining the per-second rate learns the traffic. The rate between two
samples follows Prometheus' ``rate()`` (prometheus/promql/functions.go,
``extrapolatedRate``) without extrapolation:

    rate = (v − v_prev) / (t − t_prev)    when v ≥ v_prev
    rate = v / (t − t_prev)               when v < v_prev (a reset: counted from 0)

The first sample of a series gives no rate (it only sets the state); a sample not
newer than the last one (duplicate or out of order) gives none either. A series is a
counter when it is typed so (``metric_type == "counter"``: remote write metadata,
exposition ``# TYPE``) or when its name ends ``_total`` and it is not typed
``gauge`` (the Prometheus naming convention).

The state is stored per series in the ``counter_state`` table; ``last_offset``
makes a replayed source record a no-op (see :func:`step_record`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["CounterState", "is_counter", "step", "step_record"]


def is_counter(metric_name: str, metric_type: str | None) -> bool:
    """True for counters: typed ``counter``, or named ``*_total`` and not typed gauge."""
    if metric_type == "counter":
        return True
    return metric_type is None and metric_name.endswith("_total")


@dataclass(frozen=True, slots=True)
class CounterState:
    """Last raw sample of one counter series.

    Attributes:
        value: last raw counter value (NaN: none yet).
        timestamp: its event time, epoch seconds (−inf: none yet).
        resets: resets seen so far.
        last_offset: source offset of the last record applied (−1: none).
    """

    value: float = math.nan
    timestamp: float = -math.inf
    resets: int = 0
    last_offset: int = -1

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (``None`` for "no sample yet")."""
        seen = math.isfinite(self.value)
        return {
            "value": self.value if seen else None,
            "timestamp": self.timestamp if seen else None,
            "resets": self.resets,
            "last_offset": self.last_offset,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> CounterState:
        """Inverse of :meth:`to_dict`; ``None`` gives an empty state."""
        if not data or data.get("value") is None:
            return cls(last_offset=int((data or {}).get("last_offset", -1)))
        return cls(
            value=float(data["value"]),
            timestamp=float(data["timestamp"]),
            resets=int(data.get("resets", 0)),
            last_offset=int(data.get("last_offset", -1)),
        )


def step(state: CounterState, value: float, timestamp: float) -> tuple[CounterState, float | None]:
    """Apply one raw counter sample; returns ``(new_state, rate per second or None)``."""
    if not math.isfinite(state.value):
        return replace(state, value=value, timestamp=timestamp), None
    dt = timestamp - state.timestamp
    if dt <= 0.0:
        return state, None  # duplicate or out of order: ignored
    if value >= state.value:
        rate = (value - state.value) / dt
        return replace(state, value=value, timestamp=timestamp), rate
    return replace(state, value=value, timestamp=timestamp, resets=state.resets + 1), value / dt


def step_record(
    state: CounterState, samples: list[tuple[float, float]], offset: int
) -> tuple[CounterState, list[tuple[int, float]]] | None:
    """Apply the samples of one source record (one series) idempotently.

    Args:
        state: the series' counter state.
        samples: ``(raw value, epoch seconds)`` in record order.
        offset: the source record's offset.

    Returns:
        ``None`` when the record was applied before (replay); else
        ``(new_state, [(index into samples, rate per second), …])``.
    """
    if offset <= state.last_offset:
        return None
    rates: list[tuple[int, float]] = []
    for index, (value, ts) in enumerate(samples):
        state, rate = step(state, value, ts)
        if rate is not None:
            rates.append((index, rate))
    return replace(state, last_offset=offset), rates
