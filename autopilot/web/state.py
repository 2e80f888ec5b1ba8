"""Table views, answered by the worker that owns the service (Faust table routing).

=================================  ====================================================
``GET /baselines/{service}``       the service's series baselines
``GET /deployments/{service}``     the service's recent deployments
``GET /incidents/{service}``       the service's incident: lifecycle state, signals,
                                   timeline, and what was notified (Slack message ts)
=================================  ====================================================

Each route names its service-keyed table (``routed_by`` in
:data:`autopilot.web.routes.ROUTES`); :func:`routed` wraps the handler so that
whichever worker receives the request forwards it to the owner of the service's
partition.
"""

from __future__ import annotations

from typing import Any

from autopilot import notify
from autopilot.agents.metrics import baselines_for
from autopilot.agents.notifier import delivery
from autopilot.app import app
from autopilot.correlation import CorrelationState
from autopilot.deployments import DeploymentHistory
from autopilot.notify import Notice, NotifyState
from autopilot.tables import deployments, notifications, open_incidents

__all__ = [
    "get_baselines",
    "get_deployments",
    "get_incidents",
    "notification_summary",
    "routed",
]


async def _ensure_route_metadata(table: Any) -> None:
    """Make the producer's metadata know the table's changelog topic.

    Faust's table routing hashes the key with the producer's partitioner, which
    needs the topic's partition count; until the producer has written to the
    changelog it does not know it and routing fails with a TypeError. This asks
    the broker once (aiokafka caches the answer and keeps it fresh).
    """
    # Faust's aiokafka producer (ProducerT does not declare it).
    producer = app.producer._ensure_producer()  # type: ignore[attr-defined]  # noqa: SLF001
    await producer.partitions_for(table.changelog_topic.get_topic_name())


def routed(table: Any, fun: Any) -> Any:
    """``fun`` (a GET handler with a ``{service}`` path parameter) answered by the
    worker that owns ``service`` in the service-keyed ``table`` (Faust table routing)."""
    table_routed: Any = app.table_route(table=table, match_info="service")(fun)

    async def handler(web: Any, request: Any, service: str) -> Any:
        await _ensure_route_metadata(table)
        return await table_routed(web, request, service=service)

    handler.__name__ = fun.__name__
    handler.__doc__ = fun.__doc__
    return handler


async def get_baselines(web: Any, request: Any, service: str) -> Any:
    """Baselines of the service's series (mean, std, samples)."""
    return web.json(baselines_for(service))


async def get_deployments(web: Any, request: Any, service: str) -> Any:
    """Recent deployments of the service, oldest first."""
    history = DeploymentHistory.from_dict(deployments.get(service.encode()))
    return web.json({"service": service, "deployments": list(history.events)})


async def get_incidents(web: Any, request: Any, service: str) -> Any:
    """The service's incident with its lifecycle state, signals and timeline (or
    null), recent anomalies, the count of incidents forgotten, and per incident what
    was notified (Slack channel and message ts, analysis shown, messages sent)."""
    key = service.encode()
    state = CorrelationState.from_dict(open_incidents.get(key))
    notices = NotifyState.from_dict(notifications.get(key)).notices
    incident = state.incident.to_dict() if state.incident else None
    return web.json(
        {
            "service": service,
            "open_incident": incident,
            "recent_anomalies": list(state.recent),
            "closed_incidents": state.closed,
            "notifications": {
                incident_id: notification_summary(n) for incident_id, n in notices.items()
            },
        }
    )


def notification_summary(notice: Notice) -> dict[str, Any]:
    """What the incident view shows of a :class:`autopilot.notify.Notice`."""
    incident = notice.incident
    return {
        "status": incident.get("status"),
        "state": incident.get("state"),
        "revision": incident.get("revision"),
        "slack": {"channel": notice.channel_id, "ts": notice.root_ts}
        if notice.root_ts else None,
        "first_seen": notice.first_seen,
        "notified_at": notice.posted_at,
        "last_notified_at": notice.last_flush,
        "analysis": "pending" if notice.analysis is None
        else str(notice.analysis.get("source")),
        "timeline_entries_told": len(notice.told),
        "webhook_messages": notice.webhook_sent,
        "reminders": notice.reminders,
        "messages": notice.messages,
        "edits": notice.edits,
        "pending": notify.due_at(notice, delivery().config, reminders=False) is not None,
        "silenced": bool(notice.silenced_by),
        "silenced_by": list(notice.silenced_by),
        "silenced_ever": list(notice.silenced_ever),
    }
