"""The route table: every endpoint of a worker, registered and documented from here.

:data:`ROUTES` lists each operation once (:class:`~autopilot.web.route.Route`);
:func:`register` puts them on the Faust app (``app.page``, with Faust table routing
for the ``routed_by`` ones) and ``GET /openapi.json`` answers
:func:`autopilot.web.openapi.openapi_spec` of the same table. Importing this module
registers the routes (the app autodiscovers ``autopilot.web``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from faust.web import View
from pydantic import BaseModel

from autopilot.app import app
from autopilot.models import DeploymentEvent, LogEntry, MetricPoint
from autopilot.tables import deployments, feedback, open_incidents, series_index

from . import schemas
from .alertmanager import AlertmanagerWebhook, PostAlerts
from .charts import get_incident_chart
from .feedback import get_feedback
from .graph import get_service_graph
from .ingest import IngestDeployment, IngestExposition, IngestLogs, IngestMetrics, RemoteWrite
from .middleware import PUBLIC_PATHS
from .openapi import openapi_spec
from .otlp import OtlpLogs, OtlpMetrics, otlp_route
from .probes import health_view, metrics, ready_view
from .route import Body, OneOrList, Param, Reply, Route
from .silences import SilenceById, Silences
from .slack import SlackInteractions
from .state import get_baselines, get_deployments, get_incidents, routed

__all__ = ["ROUTES", "openapi", "register"]


async def openapi(web: Any, request: Any) -> Any:
    """The OpenAPI 3.1 document of this worker's endpoints."""
    return web.json(openapi_spec(ROUTES))


_TEXT = {"type": "string"}
_BINARY = {"type": "string", "format": "binary"}
_SERVICE_QUERY = Param("service", "query", description="service of items without one")


def _ingest(path: str, handler: Any, summary: str, body: Body,
            *extra: tuple[int, Reply], params: tuple[Param, ...] = ()) -> Route:
    """A JSON-answering ingest route (see :mod:`autopilot.web.ingest`)."""
    return Route(
        "POST", path, handler, summary, body=body, params=params, tags=("ingest",),
        responses={
            **dict(extra),
            202: Reply("produced and acknowledged by the broker", schemas.Accepted),
            400: Reply("body is not JSON / not the format", schemas.Error),
            415: Reply("unsupported content type", schemas.Error),
            422: Reply("no item is valid; nothing produced", schemas.ValidationErrors),
            503: Reply("broker unavailable (nothing queued) or no acknowledgement in time",
                       schemas.Unavailable, headers={"Retry-After": "seconds to wait"}),
        },
    )


def _service_state(path: str, handler: Any, table: Any, summary: str,
                   model: type[BaseModel]) -> Route:
    return Route("GET", path, handler, summary, responses={200: Reply("the service's state",
                 model)}, tags=("state",), routed_by=table)


ROUTES: list[Route] = [
    Route(
        "GET", "/health", health_view,
        "liveness (Kubernetes livenessProbe): the worker is alive and serving; the body "
        "reports readiness, the broker, Slack, Ollama and Redis",
        responses={200: Reply("alive", schemas.Liveness),
                   503: Reply("the worker is stopping", schemas.Liveness)},
        tags=("probes",), public=True,
    ),
    Route(
        "GET", "/ready", ready_view, "readiness (Kubernetes readinessProbe)",
        responses={
            200: Reply("ready", schemas.Readiness),
            503: Reply("not ready: broker unreachable, rebalancing, recovering tables, or "
                       "every record dead-lettered (reasons in the body)", schemas.Readiness),
        },
        tags=("probes",), public=True,
    ),
    Route(
        "GET", "/openapi.json", openapi, "this document",
        responses={200: Reply("OpenAPI 3.1", schema={"type": "object"})},
        tags=("meta",), public=True,
    ),
    Route(
        "GET", "/metrics", metrics, "the autopilot's own counters (Prometheus text format)",
        responses={200: Reply("text exposition format", media_type="text/plain",
                              schema=_TEXT)},
        tags=("probes",),
    ),
    _ingest(
        "/ingest/metrics", IngestMetrics,
        "MetricPoints (seed JSON, prometheus-kafka-adapter or Telegraf JSON)",
        Body({"application/json": OneOrList(MetricPoint)}),
    ),
    _ingest(
        "/ingest/logs", IngestLogs,
        "log lines: JSON object/list, JSON lines or plain text lines (?service=)",
        Body({"application/json": OneOrList(LogEntry), "text/plain": _TEXT}),
        params=(_SERVICE_QUERY,),
    ),
    _ingest(
        "/ingest/deployment", IngestDeployment,
        "DeploymentEvent, GitHub deployment_status webhook or Argo CD notification",
        Body({"application/json": OneOrList(DeploymentEvent)}),
        (200, Reply("GitHub ping event (X-GitHub-Event: ping) answered", schemas.Pong)),
    ),
    _ingest(
        "/ingest/prometheus", IngestExposition,
        "Prometheus text exposition format (?service= if unlabelled)",
        Body({"text/plain": _TEXT}),
        params=(_SERVICE_QUERY,),
    ),
    Route(
        "POST", "/api/v1/write", RemoteWrite,
        "Prometheus remote write 1.0 (snappy protobuf WriteRequest)",
        params=(
            Param("Content-Encoding", "header", {"type": "string", "enum": ["snappy"]},
                  required=True),
            Param("X-Prometheus-Remote-Write-Version", "header",
                  {"type": "string", "enum": ["0.1.0"]}),
        ),
        body=Body({"application/x-protobuf": _BINARY}),
        responses={
            204: Reply("produced and acknowledged"),
            400: Reply("bad snappy or protobuf, or no valid sample", schemas.Error),
            415: Reply("not application/x-protobuf with Content-Encoding: snappy",
                       schemas.Error),
            503: Reply("broker unavailable (nothing queued) or no acknowledgement in time",
                       schemas.Unavailable, headers={"Retry-After": "seconds to wait"}),
        },
        tags=("ingest",),
    ),
    otlp_route("/v1/metrics", OtlpMetrics, "OpenTelemetry OTLP/HTTP metrics "
               "(ExportMetricsServiceRequest, protobuf or JSON, gzip allowed)",
               "rejectedDataPoints"),
    otlp_route("/v1/logs", OtlpLogs, "OpenTelemetry OTLP/HTTP logs "
               "(ExportLogsServiceRequest, protobuf or JSON, gzip allowed)",
               "rejectedLogRecords"),
    _ingest(
        "/api/v1/alerts/alertmanager", AlertmanagerWebhook,
        "Alertmanager webhook payload (version 4): alerts → anomalies of kind alert",
        Body({"application/json": schemas.AlertmanagerWebhook}),
    ),
    Route(
        "POST", "/api/v2/alerts", PostAlerts,
        "Alertmanager API v2 postableAlerts (Prometheus or amtool sending to a worker)",
        body=Body({"application/json": schemas.PostableAlerts}),
        responses={
            200: Reply("produced and acknowledged (Alertmanager answers 200)",
                       schemas.Accepted),
            400: Reply("body is not JSON / not a list", schemas.Error),
            415: Reply("unsupported content type", schemas.Error),
            422: Reply("no alert is valid; nothing produced", schemas.ValidationErrors),
            503: Reply("broker unavailable (nothing queued) or no acknowledgement in time",
                       schemas.Unavailable, headers={"Retry-After": "seconds to wait"}),
        },
        tags=("ingest",),
    ),
    _service_state("/baselines/{service}", get_baselines, series_index,
                   "baselines of the service's series", schemas.Baselines),
    _service_state("/deployments/{service}", get_deployments, deployments,
                   "recent deployments of the service", schemas.Deployments),
    _service_state("/incidents/{service}", get_incidents, open_incidents,
                   "the service's incident (state, signals, timeline) and what was notified",
                   schemas.Incidents),
    _service_state("/feedback/{service}", get_feedback, feedback,
                   "the service's \"Not an incident\" feedback records (read-only)",
                   schemas.FeedbackList),
    Route(
        "GET", "/service-graph", get_service_graph,
        "the service graph (configured and learned caller → callee edges) and the open "
        "incident groups, from the worker owning the incident-group partition",
        responses={200: Reply("the graph and groups", schemas.ServiceGraphView),
                   503: Reply("routing to the owning worker not known yet", schemas.Error)},
        tags=("state",),
    ),
    Route(
        "GET", "/incidents/{service}/chart.png", get_incident_chart,
        "chart of an anomalous series of the service's incident (PNG)",
        params=(Param("series", "query"),),
        responses={
            200: Reply("the chart", media_type="image/png", schema=_BINARY),
            404: Reply("no incident, no such series or no samples", schemas.Error),
            503: Reply("routing to the owning worker not known yet", schemas.Error),
        },
        tags=("state",),
    ),
    Route(
        "POST", "/api/v2/silences", Silences,
        "create a silence, or update the one named by id (Alertmanager API v2, amtool)",
        body=Body({"application/json": schemas.PostableSilence}),
        responses={
            200: Reply("created or updated", schemas.SilenceCreated),
            400: Reply("invalid silence (Alertmanager's message)", schema=_TEXT),
            404: Reply("no silence with that id", schema=_TEXT),
            503: Reply("broker unavailable or no acknowledgement in time", schemas.Error,
                       headers={"Retry-After": "seconds to wait"}),
        },
        tags=("silences",),
    ),
    Route(
        "GET", "/api/v2/silences", Silences,
        "the silences (gettableSilences), optionally only those matching every filter",
        params=(Param("filter", "query", {"type": "array", "items": {"type": "string"}},
                      description='matchers such as service="cart-api" (repeatable)'),),
        responses={200: Reply("the silences", schemas.GettableSilences),
                   400: Reply("a filter is not a matcher", schema=_TEXT)},
        tags=("silences",),
    ),
    Route(
        "GET", "/api/v2/silence/{silence_id}", SilenceById, "one silence (gettableSilence)",
        responses={200: Reply("the silence", schemas.GettableSilence),
                   404: Reply("no silence with that id", schema=_TEXT)},
        tags=("silences",),
    ),
    Route(
        "DELETE", "/api/v2/silence/{silence_id}", SilenceById,
        "expire a silence (it stays listed, expired)",
        responses={
            200: Reply("expired (or already expired)"),
            404: Reply("no silence with that id", schema=_TEXT),
            503: Reply("broker unavailable or no acknowledgement in time", schemas.Error,
                       headers={"Retry-After": "seconds to wait"}),
        },
        tags=("silences",),
    ),
    Route(
        "POST", "/slack/interactions", SlackInteractions,
        "Slack interaction payloads (the incident buttons); authenticated by Slack's "
        "request signature (SLACK_SIGNING_SECRET), not by API keys",
        params=(
            Param("X-Slack-Signature", "header", {"type": "string"}),
            Param("X-Slack-Request-Timestamp", "header", {"type": "string"}),
        ),
        body=Body({"application/x-www-form-urlencoded": {
            "type": "object", "properties": {"payload": {"type": "string"}}}}),
        responses={
            200: Reply("verified and recorded (Slack's acknowledgement)"),
            400: Reply("signed, but the payload is not JSON", schemas.Error),
            401: Reply("unsigned, badly signed or stale (timestamp not within 5 minutes); "
                       "nothing changed", schemas.Error),
            404: Reply("interactivity off (no SLACK_SIGNING_SECRET or SLACK_BOT_TOKEN)",
                       schemas.Error),
            503: Reply("broker did not acknowledge the action", schemas.Error,
                       headers={"Retry-After": "seconds to wait"}),
        },
        tags=("slack",), public=True,
    ),
]


def register(target: Any, routes: Iterable[Route]) -> None:
    """Register ``routes`` on the Faust app ``target`` (``app.page`` per path).

    Raises:
        ValueError: a view class lacks the route's method, a function handler is
            routed for another method than GET, or the public routes differ from
            the guard's ``PUBLIC_PATHS``.
    """
    routes = list(routes)
    public = {r.path for r in routes if r.public}
    if public != PUBLIC_PATHS:
        raise ValueError(f"public routes {sorted(public)} != guard's {sorted(PUBLIC_PATHS)}")
    registered: set[tuple[str, Any]] = set()
    for route in routes:
        handler = route.handler
        method = route.method.lower()
        if isinstance(handler, type):
            if getattr(handler, method) is getattr(View, method):  # Faust's 405
                raise ValueError(f"{route.path}: {handler.__name__} has no {method}()")
        elif method != "get":
            raise ValueError(f"{route.path}: a function view answers GET only, not {method}")
        if route.routed_by is not None:
            handler = routed(route.routed_by, handler)
        if (route.path, route.handler) in registered:  # one view class, several methods
            continue
        registered.add((route.path, route.handler))
        target.page(route.path)(handler)


register(app, ROUTES)
