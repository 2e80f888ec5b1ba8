"""HTTP views of a worker (Faust web, on ``AUTOPILOT_WEB_PORT``).

=================================  ====================================================
``GET /health``                    liveness: 200 ``{"status": "ok", "ready": …,
                                   "broker": …, "components": {slack, ollama, redis}}``
                                   while the worker is alive and serving (also while
                                   the broker, Slack, Ollama or Redis fail); 503 only
                                   while it stops (:func:`liveness`)
``GET /ready``                     readiness: 200 ``{"status": "ok"}`` when the broker
                                   answers, partitions are assigned, tables recovered
                                   and records are not all dead-lettered; 503
                                   ``{"status": …, "reasons": […]}`` otherwise
``GET /metrics``                   Prometheus text exposition format
``POST /ingest/metrics``           MetricPoints (seed, prometheus-kafka-adapter, Telegraf
                                   JSON; :mod:`autopilot.formats.metrics_json`)
``POST /ingest/logs``              log lines (:mod:`autopilot.formats.logs`) → logs topic
``POST /ingest/deployment``        deployments (seed, GitHub, Argo CD;
                                   :mod:`autopilot.formats.deployments`)
``GET /baselines/{service}``       the service's series baselines
``GET /deployments/{service}``     the service's recent deployments
``GET /incidents/{service}``       the service's incident: lifecycle state, signals,
                                   timeline, and what was notified (Slack message ts)
=================================  ====================================================

More ingestion endpoints (remote write, exposition format) and ``/openapi.json`` are
in :mod:`autopilot.agents.web_ingest`; authentication, rate and size limits in
:mod:`autopilot.agents.security`. Ingestion keeps the valid items of a body and
answers 202 ``{"accepted": N, "rejected": [{"item": i, "reason": "…"}]}`` once the
broker has acknowledged every record (``rejected`` only when some item was refused;
see :func:`autopilot.agents.web_ingest.ingest_decoded` and docs/ingestion.md), 400
when the body cannot be read at all (not JSON), 422 with the validation errors
(``errors``: ``[{"item": i, "loc": "labels", "msg": "…", "code": "no_service"}]``)
only when no item of the body is valid (nothing is produced then). Table views are
answered by whichever worker owns the service's partition (Faust table routing by the
service-keyed tables).
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

from autopilot.tables import deployments, notifications, open_incidents, series_index
from faust.web import View

from autopilot import health, notify, telemetry
from autopilot.app import app, settings
from autopilot.correlation import CorrelationState
from autopilot.deployments import DeploymentHistory
from autopilot.formats.deployments import decode_deployments
from autopilot.formats.logs import decode_logs
from autopilot.formats.metrics_json import decode_metrics
from autopilot.notify import Notice, NotifyState
from autopilot.topics import deployments_topic, logs_topic, metrics_topic

from . import health as guard
from .metrics import baselines_for
from .notifier import delivery
from .web_ingest import ingest_decoded

logger = logging.getLogger(__name__)


def readiness_now() -> health.Readiness:
    """This worker's readiness (:func:`autopilot.health.readiness` on live values)."""
    s = settings()
    try:
        assigned, started = len(app.consumer.assignment()), True
    except Exception:  # consumer not started yet
        assigned, started = 0, False
    return health.readiness(
        broker=guard.BROKER,
        consumer_started=started,
        assigned=assigned,
        rebalancing=bool(app.rebalancing),
        recovering=not app.tables.recovery.completed.is_set(),
        dead_lettering=health.dead_letter_stages(
            guard.WINDOW.delta(), s.ready_dead_letters_min
        ),
        window_s=s.ready_window_s,
        now=time.monotonic(),
    )


def liveness() -> dict[str, Any]:
    """The body of ``/health``: readiness, broker and downstream services (window)."""
    s = settings()
    delta = guard.WINDOW.delta()
    d = functools.partial(health.counter_delta, delta)
    ready = readiness_now()
    broker = guard.BROKER
    return {
        "status": "stopping" if app.should_stop else "ok",
        "ready": ready.ready,
        "ready_status": ready.status,
        "broker": "unknown" if broker.reachable is None
        else "reachable" if broker.reachable else f"unreachable: {broker.error}",
        "window_s": s.ready_window_s,
        "components": {
            "slack": health.component_status(
                configured=bool(s.slack_webhook_url or s.slack_bot_token),
                ok=d("autopilot_slack_sends_total"),
                failed=d("autopilot_slack_failures_total")
                + d("autopilot_slack_refusals_total"),
            ),
            "ollama": health.component_status(
                configured=True,
                ok=d("autopilot_llm_calls_total", "ok"),
                failed=d("autopilot_llm_calls_total", "fallback"),
            ),
            "redis": health.component_status(
                configured=bool(s.redis_url), ok=None, failed=d("autopilot_redis_errors_total")
            ),
        },
    }


@app.page("/health")
async def health_view(web: Any, request: Any) -> Any:
    """Liveness: 200 while the worker is alive and serving, with what is failing."""
    body = liveness()
    return web.json(body, status=503 if body["status"] == "stopping" else 200)


@app.page("/ready")
async def ready_view(web: Any, request: Any) -> Any:
    """Readiness: 200 ``{"status": "ok"}``, or 503 with the reasons."""
    ready = readiness_now()
    if ready.ready:
        return web.json({"status": "ok"})
    return web.json({"status": ready.status, "reasons": ready.reasons}, status=503)


@app.page("/metrics")
async def metrics(web: Any, request: Any) -> Any:
    """Prometheus exposition of the autopilot's counters."""
    return web.bytes(telemetry.exposition(), content_type="text/plain; version=0.0.4")


def _decode_metrics(request: Any) -> Any:
    labels = settings().service_label_list()
    return lambda raw: decode_metrics(raw, labels)


def _decode_logs(request: Any) -> Any:
    service = request.query.get("service") or None
    return lambda raw: decode_logs(raw, service)


def _decode_deployments(request: Any) -> Any:
    event = request.headers.get("X-GitHub-Event")
    return lambda raw: decode_deployments(raw, event)


class _IngestView:
    decoder: Any
    topic: Any
    source = "http"

    async def post(self, request: Any) -> Any:
        decode = type(self).decoder(request)
        return await ingest_decoded(self.web, request, decode, self.topic, self.source)  # type: ignore[attr-defined]


@app.page("/ingest/metrics")
class IngestMetrics(_IngestView, View):
    """POST MetricPoints: seed JSON, prometheus-kafka-adapter or Telegraf JSON."""

    decoder = _decode_metrics
    topic = metrics_topic


@app.page("/ingest/logs")
class IngestLogs(_IngestView, View):
    """POST log lines: JSON object or list, JSON lines, plain text (``?service=``)."""

    decoder = _decode_logs
    topic = logs_topic


@app.page("/ingest/deployment")
class IngestDeployment(_IngestView, View):
    """POST a DeploymentEvent, a GitHub deployment_status webhook or an Argo CD payload."""

    decoder = _decode_deployments
    topic = deployments_topic

    async def post(self, request: Any) -> Any:
        """Answer GitHub's ``ping`` event with 200; ingest everything else."""
        if request.headers.get("X-GitHub-Event") == "ping":
            return self.json({"pong": True})  # type: ignore[attr-defined]
        return await super().post(request)


async def _ensure_route_metadata(table: Any) -> None:
    """Make the producer's metadata know the table's changelog topic.

    Faust's table routing hashes the key with the producer's partitioner, which
    needs the topic's partition count; until the producer has written to the
    changelog it does not know it and routing fails with a TypeError. This asks
    the broker once (aiokafka caches the answer and keeps it fresh).
    """
    producer = app.producer._ensure_producer()  # noqa: SLF001 (Faust's aiokafka producer)
    await producer.partitions_for(table.changelog_topic.get_topic_name())


def service_view(path: str, table: Any) -> Any:
    """Register a GET view for ``path`` (with ``{service}``), answered by the worker
    that owns ``service`` in the service-keyed ``table`` (Faust table routing)."""

    def decorate(fun: Any) -> Any:
        routed = app.table_route(table=table, match_info="service")(fun)

        async def handler(web: Any, request: Any, service: str) -> Any:
            await _ensure_route_metadata(table)
            return await routed(web, request, service=service)

        handler.__name__ = fun.__name__
        handler.__doc__ = fun.__doc__
        return app.page(path)(handler)

    return decorate


@service_view("/baselines/{service}", series_index)
async def get_baselines(web: Any, request: Any, service: str) -> Any:
    """Baselines of the service's series (mean, std, samples)."""
    return web.json(baselines_for(service))


@service_view("/deployments/{service}", deployments)
async def get_deployments(web: Any, request: Any, service: str) -> Any:
    """Recent deployments of the service, oldest first."""
    history = DeploymentHistory.from_dict(deployments.get(service.encode()))
    return web.json({"service": service, "deployments": list(history.events)})


@service_view("/incidents/{service}", open_incidents)
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
    }
