"""Records that travel on the autopilot's topics (JSON on the wire, strict).

Field names follow the seed architecture (docs/how-it-works.md, "Topics and records",
lists each topic's record and its fields). Every model
refuses NaN and infinity (``allow_inf_nan=False``), so JSON on every topic is strict
(RFC 8259). Timestamps are timezone-aware UTC :class:`datetime.datetime` values;
on input they may be RFC 3339 strings (a naive one is taken as UTC) or epoch numbers
in seconds, milliseconds, microseconds or nanoseconds (told apart by magnitude).

Decoding helpers (:func:`decode_records`) turn the raw bytes of a Kafka record into
validated models and raise :class:`autopilot.errors.BadRecord` with a reason.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from autopilot.errors import BadRecord
from autopilot.formats.levels import normalize_level

__all__ = [
    "Alert",
    "AlertDetails",
    "Analysis",
    "Anomaly",
    "DeploymentEvent",
    "Incident",
    "LogEntry",
    "MetricPoint",
    "RecommendedAction",
    "RootCause",
    "Severity",
    "Signal",
    "TimelineEntry",
    "TraceContext",
    "TraceSpan",
    "UNKNOWN_VERSION",
    "decode_records",
    "parse_timestamp",
]

# Epoch magnitudes: 1e11 s is the year 5138, so anything larger is a finer unit.
_EPOCH_S_MAX = 1e11
_EPOCH_MS_MAX = 1e14
_EPOCH_US_MAX = 1e17


def parse_timestamp(value: Any) -> datetime:
    """Parse a record timestamp into an aware UTC datetime.

    Args:
        value: an RFC 3339 / ISO 8601 string (``2014-03-07 03:41:00`` and
            ``2014-03-07T03:41:00Z`` both work; naive means UTC), a numeric string,
            or an epoch number in s, ms, µs or ns (told apart by magnitude:
            < 1e11 is seconds, < 1e14 milliseconds, < 1e17 microseconds, else ns),
            or a ``datetime``.

    Returns:
        A timezone-aware datetime in UTC.

    Raises:
        ValueError: the value is empty, not finite, or not a recognisable time.
    """
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, bool):
        raise ValueError("timestamp must be a time string or an epoch number, not a boolean")
    elif isinstance(value, int | float):
        dt = _from_epoch(float(value))
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("timestamp is empty")
        if _looks_iso(text):
            # What the keyed topics carry ("2026-11-29T10:00:00Z"): skip the float()
            # attempt, whose ValueError cost more than the parse itself. Four digits
            # then "-" is never a float, so the result is the same either way.
            dt = _from_iso(text)
        else:
            try:
                number = float(text)
            except ValueError:
                dt = _from_iso(text)
            else:
                dt = _from_epoch(number)
    else:
        raise ValueError(f"timestamp must be a string or a number, got {type(value).__name__}")
    return _as_utc(dt)


def _looks_iso(text: str) -> bool:
    """True when ``text`` starts like an RFC 3339 date (``YYYY-``)."""
    return text[4:5] == "-" and text[:4].isdigit()


def _from_iso(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"timestamp {text[:40]!r} is neither RFC 3339 nor an epoch number"
        ) from None


def _as_utc(dt: datetime) -> datetime:
    """``dt`` in UTC (naive means UTC); already-UTC values are returned as they are."""
    if dt.tzinfo is UTC:
        return dt
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _from_epoch(number: float) -> datetime:
    if not math.isfinite(number):
        raise ValueError("timestamp must be finite")
    magnitude = abs(number)
    if magnitude < _EPOCH_S_MAX:
        seconds = number
    elif magnitude < _EPOCH_MS_MAX:
        seconds = number / 1e3
    elif magnitude < _EPOCH_US_MAX:
        seconds = number / 1e6
    else:
        seconds = number / 1e9
    try:
        return datetime.fromtimestamp(seconds, UTC)  # positional: half the call cost
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"epoch timestamp {number!r} is out of range") from None


Timestamp = Annotated[datetime, BeforeValidator(parse_timestamp)]


class Severity(StrEnum):
    """Severity of an anomaly, incident or analysis, lowest first.

    Anomaly severities come from |z| (seed: medium > 2.5, high > 3, critical > 4);
    ``low`` is only used by analyses.
    """

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for low … 3 for critical, for comparisons."""
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}


class _Record(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False, frozen=True, extra="ignore")


def _labels(value: Any) -> Any:
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}
    return value


Labels = Annotated[dict[str, str], BeforeValidator(_labels)]


class MetricPoint(_Record):
    """One sample of one series (seed shape).

    ``labels`` must carry ``service``; the other labels (``environment`` …) make the
    series: the same metric name with other labels is another series.
    """

    timestamp: Timestamp
    metric_name: str = Field(min_length=1, max_length=256)
    value: float
    labels: Labels
    #: ``counter`` samples are turned into per-second rates before baselining (so
    #: are names ending ``_total`` unless typed ``gauge``); ``None``: untyped.
    metric_type: Literal["counter", "gauge"] | None = None

    @field_validator("labels")
    @classmethod
    def _has_service(cls, labels: dict[str, str]) -> dict[str, str]:
        if not labels.get("service"):
            raise ValueError("labels must carry a non-empty 'service'")
        return labels

    @property
    def service(self) -> str:
        """The service this sample belongs to (``labels['service']``)."""
        return self.labels["service"]

    @property
    def series(self) -> str:
        """Series key: ``service|metric_name|k=v,k=v`` with the other labels sorted."""
        return series_key(self.service, self.metric_name, self.labels)


def series_key(service: str, metric_name: str, labels: dict[str, str]) -> str:
    """Return the series key ``service|metric|k=v,...`` (labels sorted, service left out)."""
    if len(labels) == 1 and "service" in labels:
        return f"{service}|{metric_name}|"  # the common case, without the sort
    rest = ",".join([f"{k}={v}" for k, v in sorted(labels.items()) if k != "service"])
    return f"{service}|{metric_name}|{rest}"


def _known_level(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str):
        normalize_level(value)  # raises ValueError on an unknown level
        return value.strip()
    return value


class LogEntry(_Record):
    """One application log line (seed shape).

    ``level`` is kept as sent (trimmed; a number as its text, pino's ``50`` → ``"50"``)
    but must be a level :func:`autopilot.formats.levels.normalize_level` knows
    (synonyms, syslog 0–7, pino/bunyan 10–69) or ``UNKNOWN``, what the decoders of
    :mod:`autopilot.formats.logs` write for a missing or unrecognised level.
    ``message`` is at most 65,536 characters (the decoders truncate longer ones).
    """

    timestamp: Timestamp
    level: Annotated[str, BeforeValidator(_known_level)] = Field(min_length=1, max_length=32)
    message: str = Field(max_length=65536)
    service: str = Field(min_length=1, max_length=256)
    labels: Labels = Field(default_factory=dict)


def _version(value: Any) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return UNKNOWN_VERSION
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


#: The version of a deployment that was sent without one.
UNKNOWN_VERSION = "unknown"


class DeploymentEvent(_Record):
    """A deployment of ``version`` of ``service`` (seed shape).

    ``version`` missing, ``null`` or empty is kept as ``unknown`` (a deployment whose
    version nobody sent still explains an incident); a number becomes its text.
    ``status`` is free text as CD systems send it (``success``, ``started`` …).
    """

    timestamp: Timestamp
    service: str = Field(min_length=1, max_length=256)
    version: Annotated[str, BeforeValidator(_version)] = Field(
        default=UNKNOWN_VERSION, min_length=1, max_length=256
    )
    status: str = "success"
    metadata: dict[str, Any] = Field(default_factory=dict)


class AlertDetails(_Record):
    """What an Alertmanager or Prometheus alert says (the ``alert`` of an Anomaly of
    kind ``alert``; :mod:`autopilot.alertmanager`).

    ``alertname`` is ``labels.alertname``; ``severity`` the ``severity`` label as sent
    (empty when absent); ``summary`` and ``description`` the annotations of those
    names; ``fingerprint`` Alertmanager's (16 hex digits, FNV-1a 64 of the sorted
    labels); ``starts_at``/``ends_at`` the alert's own times (``None`` when unset);
    ``generator_url`` the rule's link in Prometheus.
    """

    alertname: str = Field(min_length=1, max_length=256)
    severity: str = Field(default="", max_length=64)
    summary: str = Field(default="", max_length=4000)
    description: str = Field(default="", max_length=8000)
    fingerprint: str = Field(min_length=1, max_length=64)
    annotations: Labels = Field(default_factory=dict)
    starts_at: Timestamp | None = None
    ends_at: Timestamp | None = None
    generator_url: str = Field(default="", max_length=2000)


class Anomaly(_Record):
    """A sample that left its baseline (seed fields plus ``kind`` and ``series``),
    or an alert from Alertmanager or Prometheus (kind ``alert``).

    Units: ``current_value``, ``baseline_mean`` and ``baseline_std_dev`` are in the
    metric's own unit (errors per window for ``error_rate``); ``z_score`` is
    dimensionless; ``deviation_percent`` is 100 × (value − mean) / |mean| (0 when
    the mean is 0). An ``alert`` has no baseline: ``current_value`` is 1 while it
    fires and 0 when resolved (as Prometheus' ``ALERTS`` series), the other numbers
    are 0, ``metric_name`` is its alertname and ``alert`` holds what it says.
    """

    kind: Literal["metric", "error_rate", "alert"] = "metric"
    #: ``firing``: the series left its band (a new alert, an escalation, or a re-send
    #: while it still fires, every ``AUTOPILOT_SIGNAL_RESEND_S`` of event time, as
    #: Prometheus re-sends firing alerts); ``resolved``: it is back inside the band of
    #: its baseline as it was before the first alert (after the recovery hysteresis).
    #: Records written before this field existed are ``firing``.
    state: Literal["firing", "resolved"] = "firing"
    metric_name: str
    service: str
    series: str = ""
    current_value: float
    baseline_mean: float
    baseline_std_dev: float
    z_score: float
    deviation_percent: float
    severity: Severity
    detected_at: Timestamp
    labels: Labels = Field(default_factory=dict)
    #: Only for kind ``alert`` (left out of the JSON otherwise).
    alert: AlertDetails | None = Field(default=None, exclude_if=lambda v: v is None)


class Signal(_Record):
    """One signal of an incident: a metric series or a service's error rate.

    A signal is ``firing`` from its first anomaly until its detector reports it
    recovered (``resolved``); times are event time. ``severity`` is the highest seen
    while firing; ``last_value`` and ``z_score`` are from its newest record.
    """

    series: str
    kind: Literal["metric", "error_rate", "alert"] = "metric"
    metric_name: str
    state: Literal["firing", "resolved"] = "firing"
    severity: Severity
    first_at: Timestamp
    last_at: Timestamp
    resolved_at: Timestamp | None = None
    last_value: float = 0.0
    baseline_mean: float = 0.0
    z_score: float = 0.0
    #: When it last started firing: its first alert, or its latest re-fire after a
    #: recovery (left out of the JSON when unknown, as in states written before it).
    fired_at: Timestamp | None = Field(default=None, exclude_if=lambda v: v is None)
    #: An ``alert`` signal's summary annotation (left out of the JSON otherwise).
    summary: str | None = Field(default=None, exclude_if=lambda v: v is None)


#: What a timeline entry records (one thread reply per meaningful change).
TimelineKind = Literal[
    "opened", "signal", "signal_resolved", "signal_refired", "escalated", "deployment",
    "resolved", "reopened", "stale", "group",
]


class TimelineEntry(_Record):
    """One meaningful change of an incident, in event time (``at``).

    ``kind``: ``opened``, ``signal`` (a new signal fired), ``signal_resolved`` and
    ``signal_refired`` (one of several signals recovered, or fired again, while the
    incident fires: shown in the message, not replied in the thread), ``escalated``
    (severity rose), ``deployment``,
    ``resolved`` (every signal recovered), ``reopened``, ``stale`` (resolved by the
    stale close: no evidence for ``AUTOPILOT_INCIDENT_CLOSE_S``). ``text`` is plain
    text built from the evidence (never from LLM output).
    """

    at: Timestamp
    kind: TimelineKind
    text: str = Field(max_length=1000)
    severity: Severity | None = None


FaultKind = Literal["resource", "network_delay", "code_error", "bad_deployment", "unknown"]


class Suspect(_Record):
    """A service the evidence ranks as a likely root cause (:mod:`autopilot.rca`).

    ``score`` is in [0, 1] (higher is more likely; only the order is meaningful
    across incidents); ``fault_kind`` is the signature its evidence shows (resource
    saturation such as CPU or memory, network delay, a code error, a bad deployment);
    ``reasons`` are the evidence that ranked it, one short sentence each (shown in
    Slack and given to the LLM). ``has_telemetry`` is false for a service known only
    because other services' error lines name it.
    """

    service: str = Field(min_length=1, max_length=256)
    score: float = Field(ge=0.0, le=1.0)
    fault_kind: FaultKind = "unknown"
    reasons: list[str] = Field(default_factory=list, max_length=10)
    has_telemetry: bool = True


class GroupMember(_Record):
    """One service's incident in an incident group (event times)."""

    service: str
    incident_id: str
    state: Literal["firing", "resolved"] = "firing"
    opened_at: Timestamp


class IncidentGroup(_Record):
    """Incidents of connected services firing at overlapping times: one fault, one
    Slack conversation (:mod:`autopilot.incident_groups`).

    ``primary_*`` is the member whose Slack conversation the group uses (the first to
    open); ``suspects`` are ranked over every member's evidence, best first.
    """

    id: str
    primary_service: str
    primary_incident_id: str
    members: list[GroupMember] = Field(default_factory=list)
    suspects: list[Suspect] = Field(default_factory=list)


class TraceSpan(_Record):
    """One log line's span in a trace: its ``span_id`` and ``parent_span_id`` labels
    (either may be absent) and the line's time (``at``, epoch seconds)."""

    span_id: str | None = None
    parent_span_id: str | None = None
    at: float


class TraceContext(_Record):
    """The trace context of one service's log lines of one trace, from one batch (a
    record of ``autopilot.traces``, keyed by ``trace_id``): ``spans`` in log order,
    1 to 256 of them (:class:`autopilot.servicegraph.TraceLinker` reads them)."""

    trace_id: str = Field(min_length=1)
    service: str = Field(min_length=1)
    spans: list[TraceSpan] = Field(min_length=1, max_length=256)

    @model_validator(mode="before")
    @classmethod
    def _accept_one_span(cls, value: Any) -> Any:
        # the one-line shape written before spans were batched: span_id,
        # parent_span_id and at at the top level
        if isinstance(value, dict) and "spans" not in value and "at" in value:
            span = {k: value.get(k) for k in ("span_id", "parent_span_id", "at")}
            return {**value, "spans": [span]}
        return value


class Incident(_Record):
    """An incident: correlated evidence about one service, and its lifecycle.

    ``status`` says what this record reports: ``opened`` (first record),
    ``updated`` (evidence added), ``resolved`` (every signal recovered, or the stale
    close), ``reopened`` (evidence after a resolution, within
    ``AUTOPILOT_REOPEN_WINDOW_S``: same id); ``closed`` is the stale close of records
    written before the lifecycle existed (read as resolved). ``state`` is the
    incident's own: ``firing`` while any signal fires, else ``resolved``.
    ``resolution`` says how it resolved (``recovered`` or ``stale``). ``notify`` is
    true when the record carries a meaningful change for the on-call team.
    ``revision`` counts the records of this incident from 1. Times are event time
    (the records' own); ``closed_at`` is the resolution time.
    """

    id: str
    service: str
    status: Literal["opened", "updated", "resolved", "reopened", "closed"]
    state: Literal["firing", "resolved"] = "firing"
    revision: int = Field(ge=1)
    notify: bool
    severity: Severity
    trigger_reason: str
    opened_at: Timestamp
    updated_at: Timestamp
    closed_at: Timestamp | None = None
    resolution: Literal["recovered", "stale", "manual"] | None = None
    reopened: int = Field(default=0, ge=0)
    anomalies: list[Anomaly] = Field(default_factory=list)
    signals: list[Signal] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    recent_errors: list[LogEntry] = Field(default_factory=list)
    recent_deployments: list[DeploymentEvent] = Field(default_factory=list)
    #: The evidence's ranking of likely root-cause services, best first: the group's
    #: when the incident is in a group, else its own evidence's (services its error
    #: lines name included). Empty in records written before the ranking existed.
    suspects: list[Suspect] = Field(default_factory=list)
    #: The incident group it belongs to, when incidents of connected services fire
    #: together; ``None`` alone.
    group: IncidentGroup | None = Field(default=None, exclude_if=lambda v: v is None)

    @property
    def is_resolved(self) -> bool:
        """True when the incident is resolved (also for old ``closed`` records)."""
        return self.state == "resolved" or self.status in ("resolved", "closed")


class RootCause(_Record):
    """The most likely root cause; ``confidence`` in percent (0–100)."""

    description: str = Field(min_length=1, max_length=2000)
    confidence: int = Field(ge=0, le=100)
    reasoning: str = Field(max_length=4000)


class RecommendedAction(_Record):
    """One next step; ``priority`` 1 is first."""

    action: str = Field(min_length=1, max_length=1000)
    reasoning: str = Field(max_length=2000)
    risk: Literal["low", "medium", "high"]
    priority: int = Field(ge=1, le=10)


class Analysis(_Record):
    """Root-cause analysis of an incident (seed shape, plus where it came from).

    ``source`` is ``llm`` when Ollama answered with valid JSON, ``rules`` when the
    rule-based fallback wrote it; ``model`` names the Ollama model (or ``None``).

    The last five fields are the grounding check's (:mod:`autopilot.grounding`), set
    by the analysis agent on an LLM answer and never taken from the model's JSON:
    ``grounded`` (``None``: not checked), ``unverified_names`` (versions, services,
    metrics, hosts the answer names that the evidence lacks), ``dropped_actions``
    (each dropped action and why) and ``rules_root_cause`` (the rule-based root cause,
    shown next to an unverified LLM one), plus ``evidence_top_suspect`` (the evidence's
    top suspect when the LLM's root cause names another service). Left out of the JSON
    when unset.
    """

    root_cause: RootCause
    recommended_actions: list[RecommendedAction] = Field(min_length=1, max_length=10)
    severity: Severity
    estimated_customer_impact: str = Field(max_length=2000)
    source: Literal["llm", "rules"] = "llm"
    model: str | None = None
    grounded: bool | None = Field(default=None, exclude_if=lambda v: v is None)
    unverified_names: list[str] = Field(
        default_factory=list, max_length=50, exclude_if=lambda v: not v)
    dropped_actions: list[str] = Field(
        default_factory=list, max_length=10, exclude_if=lambda v: not v)
    rules_root_cause: RootCause | None = Field(default=None, exclude_if=lambda v: v is None)
    #: Set after the grounding check when the LLM's root cause names another service
    #: than the evidence's top suspect (``Incident.suspects[0]``): that suspect's
    #: service, shown next to the LLM's answer. The LLM never changes the ranking.
    evidence_top_suspect: str | None = Field(default=None, exclude_if=lambda v: v is None)


class Alert(_Record):
    """An incident and its analysis (``autopilot.alerts``: the analysis agent's output)."""

    incident: Incident
    analysis: Analysis


M = TypeVar("M", bound=BaseModel)


def decode_records(raw: bytes | None, model: type[M]) -> list[M]:
    """Decode one Kafka record value into validated models.

    Args:
        raw: the record's value bytes: one JSON object or a JSON list of objects
            (UTF-8; invalid bytes are replaced rather than fatal).
        model: the pydantic model each object must satisfy.

    Returns:
        The models, in the order they were sent (at least one).

    Raises:
        BadRecord: empty value, not JSON, NaN/Infinity literals, an empty list, or
            an object that fails validation (the reason names the field).
    """
    if not raw:
        raise BadRecord("empty record value")
    fast = _fast_decode(raw, model)
    if fast is not None:
        return fast
    text = raw.decode("utf-8", errors="replace")
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise BadRecord(f"not valid JSON: {exc}") from None
    items = data if isinstance(data, list) else [data]
    if not items:
        raise BadRecord("empty JSON list")
    out: list[M] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadRecord(f"item {index} is {type(item).__name__}, expected a JSON object")
        try:
            out.append(model.model_validate(item))
        except ValidationError as exc:
            raise BadRecord(_describe(exc, index if isinstance(data, list) else None)) from None
    return out


_LIST_ADAPTERS: dict[type[BaseModel], TypeAdapter[Any]] = {}


def _fast_decode(raw: bytes, model: type[M]) -> list[M] | None:
    """The common case in one pass of pydantic-core's JSON parser (about 1.7 times
    faster than ``json.loads`` plus per-item validation); ``None`` when anything is
    off, and the careful path then finds and words the problem."""
    try:
        if raw.lstrip()[:1] == b"[":
            adapter = _LIST_ADAPTERS.get(model)
            if adapter is None:
                adapter = _LIST_ADAPTERS[model] = TypeAdapter(list[model])  # type: ignore[valid-type]
            items = adapter.validate_json(raw)
            return items if items else None
        return [model.model_validate_json(raw)]
    except (ValidationError, ValueError):
        return None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in strict JSON")


def _describe(exc: ValidationError, index: int | None) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "record"
        parts.append(f"{loc}: {err['msg']}")
    prefix = f"item {index}: " if index is not None else ""
    return prefix + "; ".join(parts)
