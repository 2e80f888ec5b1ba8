"""Counter → rate step of the metrics agent (state in the ``counter_state`` table).

Kept apart from :mod:`autopilot.agents.metrics` so that agent only calls
:func:`counter_rates`; the rule itself is :mod:`autopilot.formats.counters` (pure).
"""

from __future__ import annotations

from autopilot.tables import counter_state

from autopilot.formats.counters import CounterState, is_counter, step_record
from autopilot.models import MetricPoint


def counter_rates(key: bytes, points: list[MetricPoint], offset: int) -> list[MetricPoint] | None:
    """Points of one series, counters turned into per-second rates.

    Gauges come back unchanged. For a counter series the state in ``counter_state``
    (keyed like ``baselines``, so on the same partition) is advanced and the points
    that have a rate come back with ``value`` = rate per second (the first sample of a
    series has none). ``None`` means the record was applied before (replay).
    """
    if not points or not is_counter(points[0].metric_name, points[0].metric_type):
        return points
    state = CounterState.from_dict(counter_state.get(key))
    result = step_record(state, [(p.value, p.timestamp.timestamp()) for p in points], offset)
    if result is None:
        return None
    new, rates = result
    counter_state[key] = new.to_dict()
    return [points[i].model_copy(update={"value": rate}) for i, rate in rates]
