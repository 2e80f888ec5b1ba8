"""HTTP views of a worker (Faust web, on ``AUTOPILOT_WEB_PORT``).

=================================  ====================================================
``GET /health``                    200 ``{"status": "ok"}`` once partitions are assigned
                                   and tables recovered; 503 with the reason before
``GET /metrics``                   Prometheus text exposition format
``POST /ingest/metrics``           one MetricPoint or a JSON list → ``autopilot.metrics``
``POST /ingest/logs``              one LogEntry or a list → ``autopilot.logs``
``POST /ingest/deployment``        one DeploymentEvent or a list → ``autopilot.deployments``
``GET /baselines/{service}``       the service's series baselines
``GET /deployments/{service}``     the service's recent deployments
``GET /incidents/{service}``       the service's open incident and recent anomalies
=================================  ====================================================

Ingestion answers 202 ``{"accepted": N}`` once the broker has acknowledged every
record, 400 when the body is not JSON, 422 with the validation errors (``errors``:
``[{"item": i, "loc": "labels", "msg": "…"}]``) when a record is invalid (nothing is
produced then). Table views are answered by whichever worker owns the service's
partition (Faust table routing by the service-keyed tables).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from autopilot.tables import deployments, open_incidents, series_index
from faust.web import View
from pydantic import BaseModel, ValidationError

from autopilot import telemetry
from autopilot.app import app
from autopilot.correlation import CorrelationState
from autopilot.deployments import DeploymentHistory
from autopilot.models import DeploymentEvent, LogEntry, MetricPoint
from autopilot.topics import deployments_topic, logs_topic, metrics_topic

from .ingest import encode_items, group_by_service
from .metrics import baselines_for

logger = logging.getLogger(__name__)


def health_status() -> tuple[bool, str]:
    """(ready, reason): ready once partitions are assigned and tables recovered."""
    if app.rebalancing:
        return False, "rebalancing"
    if not app.tables.recovery.completed.is_set():
        return False, "recovering tables"
    try:
        assigned = app.consumer.assignment()
    except Exception:  # consumer not started yet
        return False, "consumer not started"
    if not assigned:
        return False, "no partitions assigned"
    return True, "ok"


@app.page("/health")
async def health(web: Any, request: Any) -> Any:
    """200 when ready, 503 with the reason otherwise."""
    ready, reason = health_status()
    return web.json({"status": reason}, status=200 if ready else 503)


@app.page("/metrics")
async def metrics(web: Any, request: Any) -> Any:
    """Prometheus exposition of the autopilot's counters."""
    return web.bytes(telemetry.exposition(), content_type="text/plain; version=0.0.4")


def validate_body(raw: bytes, model: type[BaseModel]) -> tuple[list[Any], list[dict[str, Any]]]:
    """Validate a JSON body of one object or a list; returns (items, errors)."""
    data = json.loads(raw.decode("utf-8", errors="replace"), parse_constant=_no_constant)
    items = data if isinstance(data, list) else [data]
    good: list[Any] = []
    errors: list[dict[str, Any]] = []
    if not items:
        errors.append({"item": None, "loc": "", "msg": "empty list"})
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append({"item": index, "loc": "", "msg": "expected a JSON object"})
            continue
        try:
            good.append(model.model_validate(item))
        except ValidationError as exc:
            for err in exc.errors():
                errors.append(
                    {"item": index, "loc": ".".join(str(p) for p in err["loc"]), "msg": err["msg"]}
                )
    return good, errors


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in strict JSON")


async def _ingest(web: Any, request: Any, model: type[BaseModel], topic: Any) -> Any:
    raw = await request.read()
    try:
        items, errors = validate_body(raw, model)
    except ValueError as exc:
        return web.json({"error": f"body is not valid JSON: {exc}"}, status=400)
    if errors:
        return web.json({"error": "validation failed", "errors": errors[:50]}, status=422)
    futures = []
    for service, group in group_by_service(items).items():
        futures.append(await topic.send(key=service.encode(), value=encode_items(group)))
    for fut in futures:
        await fut  # broker acknowledgement
    return web.json({"accepted": len(items)}, status=202)


class _IngestView:
    model: type[BaseModel]
    topic: Any

    async def post(self, request: Any) -> Any:
        return await _ingest(self.web, request, self.model, self.topic)  # type: ignore[attr-defined]


@app.page("/ingest/metrics")
class IngestMetrics(_IngestView, View):
    """POST one MetricPoint or a list."""

    model = MetricPoint
    topic = metrics_topic


@app.page("/ingest/logs")
class IngestLogs(_IngestView, View):
    """POST one LogEntry or a list."""

    model = LogEntry
    topic = logs_topic


@app.page("/ingest/deployment")
class IngestDeployment(_IngestView, View):
    """POST one DeploymentEvent or a list."""

    model = DeploymentEvent
    topic = deployments_topic


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
    """The service's open incident (or null), recent anomalies and closed count."""
    state = CorrelationState.from_dict(open_incidents.get(service.encode()))
    return web.json(
        {
            "service": service,
            "open_incident": state.incident.to_dict() if state.incident else None,
            "recent_anomalies": list(state.recent),
            "closed_incidents": state.closed,
        }
    )
