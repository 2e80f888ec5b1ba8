"""Liveness and readiness of a worker, decided from plain values (no Faust, no network).

A worker has two answers (see ``docs/operations-health.md``):

* **live** (``GET /health``): the process is up and its web server answers. It stays
  live while Slack, Ollama or Redis fail — restarting the worker would not fix them —
  and reports them in its body (:func:`component_status`).
* **ready** (``GET /ready``): the worker can do its job now: the broker answers,
  partitions are assigned, table recovery is over, and not every record is being
  dead-lettered (:func:`readiness`).

The inputs come from counters (``autopilot.telemetry``): a :class:`CounterWindow`
keeps timestamped snapshots ``{counter key: total}`` and answers how much each moved
over the last ``window_s`` seconds. Keys are ``"<counter name>|<label value>"``
(for example ``"autopilot_dead_letters_total|metrics"``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "BrokerState",
    "CounterWindow",
    "Readiness",
    "component_status",
    "counter_delta",
    "dead_letter_stages",
    "readiness",
]


@dataclass
class BrokerState:
    """What the last broker probe saw.

    Attributes:
        reachable: ``True`` when the last probe got the cluster's metadata; ``None``
            before the first probe finished.
        error: the last probe's error (``"KafkaConnectionError: …"``), ``""`` if none.
        since: monotonic time (s) of the last change of ``reachable``.
    """

    reachable: bool | None = None
    error: str = ""
    since: float = 0.0

    def update(self, ok: bool, error: str, now: float) -> bool:
        """Record a probe's result at monotonic ``now``; ``True`` when the state changed."""
        changed = ok != self.reachable
        if changed:
            self.since = now
        self.reachable = ok
        self.error = "" if ok else error
        return changed


class CounterWindow:
    """Timestamped counter snapshots over a sliding window.

    Args:
        window_s: how far back (seconds) :meth:`delta` looks.
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._snaps: deque[tuple[float, dict[str, float]]] = deque()

    def add(self, now: float, totals: Mapping[str, float]) -> None:
        """Add the snapshot ``totals`` taken at monotonic time ``now`` (seconds)."""
        self._snaps.append((now, dict(totals)))
        # Keep one snapshot at or before the window's start as the baseline.
        while len(self._snaps) > 2 and self._snaps[1][0] <= now - self.window_s:
            self._snaps.popleft()

    def delta(self) -> dict[str, float]:
        """How much each counter moved between the oldest kept and the newest snapshot."""
        if not self._snaps:
            return {}
        _, first = self._snaps[0]
        _, last = self._snaps[-1]
        return {key: value - first.get(key, 0.0) for key, value in last.items()}


def dead_letter_stages(
    delta: Mapping[str, float], minimum: int
) -> list[tuple[str, int]]:
    """Stages that dead-lettered every record of the window: ``[(stage, n), …]``.

    A stage counts when its ``autopilot_dead_letters_total`` moved by at least
    ``minimum`` and its ``autopilot_records_processed_total`` did not move at all.
    """
    out = []
    for key, dead in delta.items():
        name, _, stage = key.partition("|")
        if name != "autopilot_dead_letters_total" or dead < minimum:
            continue
        if delta.get(f"autopilot_records_processed_total|{stage}", 0.0) <= 0:
            out.append((stage, int(dead)))
    return sorted(out)


@dataclass
class Readiness:
    """``ready`` and, when not, every reason (first is the most fundamental)."""

    ready: bool
    reasons: list[str]

    @property
    def status(self) -> str:
        """``"ready"`` or the reasons joined with ``"; "``."""
        return "ready" if self.ready else "; ".join(self.reasons)


def readiness(
    *,
    broker: BrokerState,
    consumer_started: bool,
    assigned: int,
    rebalancing: bool,
    recovering: bool,
    dead_lettering: list[tuple[str, int]],
    window_s: float,
    now: float,
) -> Readiness:
    """Decide readiness (see the module docstring).

    Args:
        broker: the broker probe's state.
        consumer_started: the Kafka consumer exists.
        assigned: partitions assigned to this worker.
        rebalancing: a consumer-group rebalance is under way.
        recovering: table recovery (reading changelogs into the local store) runs.
        dead_lettering: :func:`dead_letter_stages` of the window.
        window_s: the dead-letter window (s), for the message.
        now: monotonic time (s).
    """
    reasons = []
    if broker.reachable is False:
        reasons.append(
            f"broker unreachable for {now - broker.since:.0f} s ({broker.error})"
        )
    if not consumer_started:
        reasons.append("consumer not started")
    elif rebalancing:
        reasons.append("rebalancing")
    elif recovering:
        reasons.append("recovering tables")
    elif not assigned:
        reasons.append("no partitions assigned")
    for stage, n in dead_lettering:
        reasons.append(
            f"stage {stage} dead-lettered every record of the last {window_s:.0f} s ({n})"
        )
    return Readiness(not reasons, reasons)


def counter_delta(delta: Mapping[str, float], name: str, label: str | None = None) -> float:
    """Sum of the window's movement of counter ``name`` (``*_total``), every label
    value or only ``label``."""
    total = 0.0
    for key, value in delta.items():
        key_name, _, key_label = key.partition("|")
        if key_name == name and (label is None or key_label == label):
            total += value
    return total


def component_status(*, configured: bool, ok: float | None, failed: float) -> str:
    """State of one downstream service over the window.

    Args:
        configured: the service is set up (a Slack token or webhook, a Redis URL …).
        ok: successes in the window; ``None`` when nothing counts successes.
        failed: failures in the window.

    Returns ``"not configured"``, ``"idle"`` (nothing tried), ``"ok"`` (no failure),
    ``"degraded"`` (failures and successes) or ``"failing"`` (failures only).
    """
    if not configured:
        return "not configured"
    if failed <= 0:
        return "idle" if ok is not None and ok <= 0 else "ok"
    return "degraded" if ok else "failing"
