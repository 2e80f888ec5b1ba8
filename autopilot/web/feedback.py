"""``GET /feedback/{service}``: the service's "Not an incident" records (read-only),
answered by the worker that owns the service (Faust table routing on ``feedback``)."""

from __future__ import annotations

from typing import Any

from autopilot.agents.feedback import feedback_for

__all__ = ["get_feedback"]


async def get_feedback(web: Any, request: Any, service: str) -> Any:
    """The service's feedback records (:meth:`autopilot.feedback.Feedback.to_dict`)."""
    return web.json({"service": service, "feedback": feedback_for(service)})
