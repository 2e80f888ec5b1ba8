"""Pydantic models of the HTTP response bodies (pure: no Faust, no aiohttp).

They document what the views answer (the OpenAPI schemas are their
``model_json_schema()``); the views build the bodies as plain dicts. Models allow
extra keys, so a body that gains a field stays valid.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, RootModel

from autopilot.alertmanager import PostableAlert, WebhookPayload
from autopilot.models import IncidentGroup

__all__ = [
    "Accepted",
    "AlertmanagerWebhook",
    "PostableAlerts",
    "BaselineSummary",
    "Baselines",
    "Components",
    "Deployments",
    "Error",
    "FeedbackList",
    "FeedbackRecord",
    "GettableSilence",
    "GettableSilences",
    "Incidents",
    "ItemError",
    "Liveness",
    "NotificationSummary",
    "OtlpExportResponse",
    "OtlpPartialSuccess",
    "Pong",
    "PostableSilence",
    "Readiness",
    "RejectedItem",
    "RpcStatus",
    "SilenceCreated",
    "ServiceGraphEdge",
    "ServiceGraphView",
    "SilenceMatcherBody",
    "SilenceStatus",
    "SlackMessage",
    "Unavailable",
    "ValidationErrors",
]

ComponentState = Literal["not configured", "idle", "ok", "degraded", "failing"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class Error(_Body):
    """Any error answer: ``{"error": "what went wrong and what to do"}``."""

    error: str


class Unavailable(Error):
    """503 of an ingest endpoint while the broker is unavailable (with ``Retry-After``)."""

    cause: Literal["broker_unreachable", "ack_timeout"]
    queued: bool
    retry_after_s: float


class RejectedItem(_Body):
    """One refused item of an ingest body (``item``: its index; 0 for a single object)."""

    item: int | None
    reason: str


class ItemError(_Body):
    """One validation error of an item."""

    item: int | None
    loc: str
    msg: str
    code: str


class Accepted(_Body):
    """202 of an ingest endpoint: how many items were produced and acknowledged."""

    accepted: int
    rejected: list[RejectedItem] = []
    rejected_omitted: int = 0
    skipped: dict[str, int] = {}
    defaulted: dict[str, int] = {}


class ValidationErrors(Error):
    """422 of an ingest endpoint: no item was valid, nothing was produced."""

    accepted: int = 0
    rejected: list[RejectedItem] = []
    rejected_omitted: int = 0
    errors: list[ItemError] = []


class Pong(_Body):
    """200 answer to GitHub's ``ping`` event."""

    pong: bool


class OtlpPartialSuccess(_Body):
    """OTLP ``ExportPartialSuccess``: how many data points (metrics) or log records
    (logs) were refused, and why (the client does not retry them)."""

    rejectedDataPoints: str | int | None = None
    rejectedLogRecords: str | int | None = None
    errorMessage: str = ""


class OtlpExportResponse(_Body):
    """200 of ``POST /v1/metrics`` / ``/v1/logs`` as OTLP/JSON (as protobuf for an
    ``application/x-protobuf`` request): ``Export{Metrics,Logs}ServiceResponse``."""

    partialSuccess: OtlpPartialSuccess | None = None


class RpcStatus(_Body):
    """OTLP/HTTP's error body, ``google.rpc.Status`` (JSON here; protobuf for an
    ``application/x-protobuf`` request): ``code`` 3 invalid argument, 12 unimplemented."""

    code: int = 0
    message: str = ""


class Components(_Body):
    """State of the downstream services over the readiness window."""

    slack: ComponentState
    ollama: ComponentState
    redis: ComponentState


class Liveness(_Body):
    """``GET /health``."""

    status: Literal["ok", "stopping"]
    ready: bool
    ready_status: str
    broker: str
    window_s: float
    components: Components


class Readiness(_Body):
    """``GET /ready``: ``{"status": "ok"}``, or the status and reasons (503)."""

    status: str
    reasons: list[str] = []


class BaselineSummary(_Body):
    """One series' baseline (:meth:`autopilot.detection.Baseline.summary`)."""

    mode: str
    samples_in_window: int
    samples_seen: int
    mean: float
    std_dev: float
    last_timestamp: float | None
    source_offsets: dict[str, int]
    firing: bool


class Baselines(_Body):
    """``GET /baselines/{service}``: series key → baseline."""

    service: str
    series: dict[str, BaselineSummary]


class Deployments(_Body):
    """``GET /deployments/{service}``: recent deployments, oldest first."""

    service: str
    deployments: list[dict[str, Any]]


class FeedbackRecord(_Body):
    """One "Not an incident" record of a series (:mod:`autopilot.feedback`)."""

    series: str
    service: str
    direction: Literal["up", "down"]
    z_score: float
    deviation_percent: float | None
    time_of_day_s: float | None
    user: str
    recorded_at: float
    until: float | None
    incident: str


class FeedbackList(_Body):
    """``GET /feedback/{service}``: the service's feedback records, oldest first."""

    service: str
    feedback: list[FeedbackRecord]


class SlackMessage(_Body):
    """The incident's root Slack message (bot mode)."""

    channel: str | None
    ts: str


class NotificationSummary(_Body):
    """What was notified of one incident (:func:`autopilot.web.state.notification_summary`)."""

    status: str | None
    state: str | None
    revision: int | None
    slack: SlackMessage | None
    first_seen: float
    notified_at: float | None
    last_notified_at: float | None
    analysis: str
    timeline_entries_told: int
    webhook_messages: int
    reminders: int
    messages: int
    edits: int
    pending: bool
    silenced: bool = False
    silenced_by: list[str] = []
    silenced_ever: list[str] = []


class Incidents(_Body):
    """``GET /incidents/{service}``: the incident (or null) and what was notified."""

    service: str
    open_incident: dict[str, Any] | None
    recent_anomalies: list[dict[str, Any]]
    closed_incidents: int
    notifications: dict[str, NotificationSummary]


class ServiceGraphEdge(_Body):
    """One caller → callee edge of the service graph (:mod:`autopilot.servicegraph`)."""

    caller: str
    callee: str
    sources: list[Literal["config", "label", "trace", "logs", "learned"]]
    count: int
    last_seen: float  # epoch s (0 for edges of the AUTOPILOT_SERVICE_GRAPH file)


class ServiceGraphView(_Body):
    """``GET /service-graph``: the service graph (the ``AUTOPILOT_SERVICE_GRAPH`` file
    plus the edges learned from labels, trace ids and error lines) and the open
    incident groups, from the worker that owns the incident-group partition."""

    services: list[str]
    edges: list[ServiceGraphEdge]
    #: The open incident groups, each with its members and ranked suspects (score in
    #: [0, 1], best first; fault_kind resource, network_delay, code_error,
    #: bad_deployment or unknown).
    groups: list[IncidentGroup]


# --- silences (Alertmanager API v2 shapes, api/v2/openapi.yaml) ---------------------


class SilenceMatcherBody(_Body):
    """An Alertmanager ``matcher``: ``isRegex`` anchors ``^(?:value)$``, ``isEqual=false``
    negates."""

    name: str
    value: str
    isRegex: bool
    isEqual: bool = True


class SilenceStatus(_Body):
    """``silenceStatus``: the state by wall clock."""

    state: Literal["active", "pending", "expired"]


class GettableSilence(_Body):
    """Alertmanager's ``gettableSilence`` (times RFC 3339, UTC)."""

    id: str
    status: SilenceStatus
    updatedAt: str
    matchers: list[SilenceMatcherBody]
    startsAt: str
    endsAt: str
    createdBy: str
    comment: str


class GettableSilences(RootModel[list[GettableSilence]]):
    """``GET /api/v2/silences``: a list of :class:`GettableSilence`."""


class PostableSilence(_Body):
    """``POST /api/v2/silences`` body (``id`` to update an existing silence)."""

    id: str | None = None
    matchers: list[SilenceMatcherBody]
    startsAt: str
    endsAt: str
    createdBy: str
    comment: str


class SilenceCreated(_Body):
    """``POST /api/v2/silences`` answer."""

    silenceID: str


#: ``POST /api/v1/alerts/alertmanager`` body: Alertmanager's webhook payload (version 4).
AlertmanagerWebhook = WebhookPayload


class PostableAlerts(RootModel[list[PostableAlert]]):
    """``POST /api/v2/alerts`` body: Alertmanager API v2 ``postableAlerts``."""
