"""Recent deployments per service (pure state transition).

The deployments table keeps, per service, the newest ``max_kept`` deployment events
(default 20) in event-time order, and per source stream the offset of the last
source record applied, so that a replay after a crash changes nothing
(:mod:`autopilot.replay`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from autopilot import replay
from autopilot.models import DeploymentEvent

__all__ = ["DEPLOYMENT_WINDOW_S", "DeploymentHistory", "MAX_KEPT"]

#: Deployments kept per service.
MAX_KEPT = 20
#: How long a deployment counts as recent (s): the default of
#: ``AUTOPILOT_DEPLOYMENT_WINDOW_S``, of the correlation rules and of the analysis
#: fallback (the one source of this number).
DEPLOYMENT_WINDOW_S = 1800


@dataclass(frozen=True, slots=True)
class DeploymentHistory:
    """Deployments of one service, oldest first (JSON dicts of DeploymentEvent)."""

    events: tuple[dict[str, Any], ...] = ()
    offsets: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for the deployments table."""
        return {"events": list(self.events), "offsets": dict(self.offsets)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> DeploymentHistory:
        """Inverse of :meth:`to_dict`; ``None`` gives an empty history."""
        if not data:
            return cls()
        return cls(events=tuple(data["events"]), offsets=replay.offsets_from_dict(data))

    def deployments(self) -> list[DeploymentEvent]:
        """All kept deployments as records, oldest first."""
        return [DeploymentEvent.model_validate(e) for e in self.events]

    def within(self, start: datetime, end: datetime) -> list[DeploymentEvent]:
        """Deployments with ``start <= timestamp <= end`` (event time), oldest first."""
        return [d for d in self.deployments() if start <= d.timestamp <= end]

    def before(self, moment: datetime, window: timedelta) -> list[DeploymentEvent]:
        """Deployments in the ``window`` before ``moment`` (inclusive), oldest first."""
        return self.within(moment - window, moment)

    def apply(
        self,
        events: list[DeploymentEvent],
        offset: int,
        max_kept: int = MAX_KEPT,
        stream: str = "",
    ) -> DeploymentHistory:
        """Add the deployments of one source record (at ``offset`` of ``stream``);
        a replayed record is a no-op."""
        if replay.seen(self.offsets, stream, offset):
            return self
        merged = list(self.events) + [e.model_dump(mode="json") for e in events]
        merged.sort(key=lambda e: DeploymentEvent.model_validate(e).timestamp)
        return replace(
            self,
            events=tuple(merged[-max_kept:]),
            offsets=replay.advance(self.offsets, stream, offset),
        )
