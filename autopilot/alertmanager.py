"""Alertmanager and Prometheus alerts → Anomaly records of kind ``alert`` (pure).

Two inputs, one mapping (:func:`alert_anomaly`):

* Alertmanager's webhook payload (``webhook_configs``, payload ``version`` "4";
  https://prometheus.io/docs/alerting/latest/configuration/#webhook_config):
  ``{version, groupKey, status, receiver, groupLabels, commonLabels,
  commonAnnotations, externalURL, truncatedAlerts, alerts: [{status, labels,
  annotations, startsAt, endsAt, generatorURL, fingerprint}]}``
  (:func:`decode_webhook`, ``POST /api/v1/alerts/alertmanager``);
* Alertmanager's own API v2, what Prometheus sends to an Alertmanager: a JSON list of
  ``postableAlert`` ``{labels, annotations, startsAt, endsAt, generatorURL}``; firing
  while ``endsAt`` is absent or after the time of receipt (:func:`decode_postable`,
  ``POST /api/v2/alerts``).

Each alert becomes one :class:`autopilot.models.Anomaly` with ``kind="alert"``:

* ``service``: the first of ``AUTOPILOT_SERVICE_LABELS`` set in its labels (an alert
  whose labels name no service is refused: ``no_service``, the rest is kept);
* ``metric_name``: ``labels.alertname`` (refused when missing);
* ``series``: ``<service>|alert|<fingerprint>``, so the re-sends of one alert
  (Alertmanager every ``repeat_interval``, Prometheus every ``resend_delay``) are one
  signal; the fingerprint is the payload's, else Alertmanager's own (FNV-1a 64 of the
  sorted labels, :func:`fingerprint`), so both routes agree;
* ``state``: ``firing`` or ``resolved`` (a recovery at once: no hysteresis);
* ``severity``: from the ``severity`` label (:data:`SEVERITY_LABELS`; anything else,
  or none, is ``medium``);
* ``detected_at``: the time of receipt (event time of the evidence: a re-send is a
  fresh "still firing", a recovery comes after the firing it ends); the alert's own
  ``startsAt``/``endsAt`` are kept in ``alert``;
* ``current_value`` 1 while firing, 0 when resolved; ``alert``: alertname, severity
  label, summary and description annotations, fingerprint, all annotations.

Errors: a body that is not JSON or not the payload (wrong ``version``, ``alerts`` not
a list …) raises ``ValueError`` (the view answers 400); a bad alert is an error of
its item in the returned :class:`autopilot.formats.Decoded` (item = its index in
``alerts[]`` or in the list).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from autopilot.formats import DEFAULT_SERVICE_LABELS, Decoded, loads_strict, service_from_labels
from autopilot.models import AlertDetails, Anomaly, Severity, Timestamp

__all__ = [
    "PostableAlert",
    "SEVERITY_LABELS",
    "WebhookAlert",
    "WebhookPayload",
    "alert_anomaly",
    "decode_postable",
    "decode_webhook",
    "fingerprint",
    "severity_of",
]

#: ``severity`` label values (lower-cased) → Anomaly severity; others, or none: medium.
SEVERITY_LABELS: Mapping[str, Severity] = {
    "critical": Severity.CRITICAL, "page": Severity.CRITICAL, "emergency": Severity.CRITICAL,
    "fatal": Severity.CRITICAL,
    "high": Severity.HIGH, "error": Severity.HIGH, "major": Severity.HIGH,
    "warning": Severity.MEDIUM, "warn": Severity.MEDIUM, "medium": Severity.MEDIUM,
    "minor": Severity.MEDIUM, "low": Severity.MEDIUM, "info": Severity.MEDIUM,
}

# Go's zero time, which Alertmanager writes for an unset endsAt.
_UNSET_BEFORE_YEAR = 1970


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class WebhookAlert(_In):
    """One alert of the webhook payload (times RFC 3339; Go's zero time = unset)."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: Timestamp | None = None  # noqa: N815 (Alertmanager's field name)
    endsAt: Timestamp | None = None  # noqa: N815
    generatorURL: str = ""  # noqa: N815
    fingerprint: str = ""


class WebhookPayload(_In):
    """Alertmanager's webhook payload, version 4 (what ``webhook_configs`` POSTs)."""

    version: Literal["4"]
    groupKey: str  # noqa: N815
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonAnnotations: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    externalURL: str = ""  # noqa: N815
    truncatedAlerts: int = 0  # noqa: N815
    alerts: list[WebhookAlert]


class _Envelope(_In):
    """The payload with its alerts left unvalidated (validated one by one)."""

    version: Literal["4"]
    groupKey: str  # noqa: N815
    status: Literal["firing", "resolved"]
    alerts: list[Any]


class PostableAlert(_In):
    """Alertmanager API v2 ``postableAlert`` (Prometheus' notifications)."""

    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: Timestamp | None = None  # noqa: N815
    endsAt: Timestamp | None = None  # noqa: N815
    generatorURL: str = ""  # noqa: N815


_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK = 2**64 - 1


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's fingerprint of a label set: 16 hex digits of FNV-1a 64 over the
    labels sorted by name, each ``name 0xff value 0xff`` (Prometheus
    ``model.LabelSet.Fingerprint``), so the same alert has the same fingerprint here
    and in Alertmanager."""
    h = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name.encode(), b"\xff", labels[name].encode(), b"\xff"):
            for byte in part:
                h = ((h ^ byte) * _FNV_PRIME) & _MASK
    return f"{h:016x}"


def severity_of(labels: Mapping[str, str]) -> Severity:
    """The severity of an alert from its ``severity`` label (:data:`SEVERITY_LABELS`)."""
    return SEVERITY_LABELS.get(labels.get("severity", "").strip().lower(), Severity.MEDIUM)


def _when(value: datetime | None) -> datetime | None:
    return None if value is None or value.year < _UNSET_BEFORE_YEAR else value


def alert_anomaly(
    *,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    firing: bool,
    received_at: datetime,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    generator_url: str = "",
    alert_fingerprint: str = "",
    service_labels: Sequence[str] = DEFAULT_SERVICE_LABELS,
) -> Anomaly:
    """Map one alert to an Anomaly of kind ``alert`` (see the module docstring).

    Raises:
        LookupError: its labels name no service (none of ``service_labels`` set).
        ValueError: it has no ``alertname`` label, or a field is out of bounds.
    """
    service = service_from_labels(labels, service_labels)
    if service is None:
        raise LookupError(
            f"labels name no service: none of {', '.join(service_labels)} is set "
            "(AUTOPILOT_SERVICE_LABELS)"
        )
    if len(service) > MAX_SERVICE_CHARS:  # as every other input's service
        raise ValueError(f"service: at most {MAX_SERVICE_CHARS} characters")
    alertname = labels.get("alertname", "").strip()
    if not alertname:
        raise ValueError("labels carry no alertname")
    fp = alert_fingerprint.strip() or fingerprint(labels)
    try:
        details = AlertDetails(
            alertname=alertname,
            severity=labels.get("severity", "").strip(),
            summary=annotations.get("summary", ""),
            description=annotations.get("description", ""),
            fingerprint=fp,
            annotations=dict(annotations),
            starts_at=_when(starts_at),
            ends_at=_when(ends_at),
            generator_url=generator_url,
        )
        return Anomaly(
            kind="alert",
            state="firing" if firing else "resolved",
            metric_name=alertname,
            service=service,
            series=f"{service}|alert|{fp}",
            current_value=1.0 if firing else 0.0,
            baseline_mean=0.0,
            baseline_std_dev=0.0,
            z_score=0.0,
            deviation_percent=0.0,
            severity=severity_of(labels),
            detected_at=received_at,
            labels=dict(labels),
            alert=details,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ValueError(f"{loc}: {err['msg']}") from None


#: The longest service name (the limit of MetricPoint, LogEntry and DeploymentEvent).
MAX_SERVICE_CHARS = 256


def _add(out: Decoded, item: int, raw: object, **fields: Any) -> None:
    try:
        out.add(alert_anomaly(**fields), item)
    except LookupError as exc:
        out.error(item, "labels", str(exc), code="no_service", raw=raw)
    except ValueError as exc:
        out.error(item, "labels", str(exc), code="invalid", raw=raw)


def _invalid(out: Decoded, item: int, raw: object, exc: ValidationError) -> None:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "alert"
    code = "bad_timestamp" if loc in ("startsAt", "endsAt") else "invalid"
    out.error(item, loc, err["msg"], code=code, raw=raw)


def decode_webhook(
    raw: bytes, *, received_at: datetime, service_labels: Sequence[str] = DEFAULT_SERVICE_LABELS
) -> Decoded:
    """Decode an Alertmanager webhook payload (version 4) into alert Anomalies.

    Args:
        raw: the request body (UTF-8 JSON).
        received_at: time of receipt (aware UTC), each record's ``detected_at``.
        service_labels: ``AUTOPILOT_SERVICE_LABELS``, in order.

    Returns:
        The valid alerts' records (item = index in ``alerts``) and per bad alert
        why it was refused (``no_service``, ``invalid``, ``bad_timestamp``).

    Raises:
        ValueError: not JSON, or not the payload (the message names the field:
            ``version`` not "4", no ``groupKey``, ``alerts`` not a list, empty).
    """
    data = loads_strict(raw)
    try:
        envelope = _Envelope.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        raise ValueError(
            f"not an Alertmanager webhook payload (version 4): {loc}: {err['msg']}"
        ) from None
    out = Decoded()
    if not envelope.alerts:
        out.error(None, "alerts", "empty list")
    for index, item in enumerate(envelope.alerts):
        try:
            alert = WebhookAlert.model_validate(item)
        except ValidationError as exc:
            _invalid(out, index, item, exc)
            continue
        _add(
            out, index, item, labels=alert.labels, annotations=alert.annotations,
            firing=alert.status == "firing", received_at=received_at,
            starts_at=alert.startsAt, ends_at=alert.endsAt,
            generator_url=alert.generatorURL, alert_fingerprint=alert.fingerprint,
            service_labels=service_labels,
        )
    return out


def decode_postable(
    raw: bytes, *, received_at: datetime, service_labels: Sequence[str] = DEFAULT_SERVICE_LABELS
) -> Decoded:
    """Decode Alertmanager API v2 ``postableAlerts`` (a JSON list) into alert Anomalies.

    An alert fires while its ``endsAt`` is absent (or Go's zero time) or after
    ``received_at``; else it is resolved. Its fingerprint is Alertmanager's
    (:func:`fingerprint`). Args, returns: as :func:`decode_webhook` (item = index in
    the list).

    Raises:
        ValueError: not JSON, or not a JSON list.
    """
    data = loads_strict(raw)
    if not isinstance(data, list):
        raise ValueError(
            f"not Alertmanager API v2 postableAlerts: expected a JSON list, got "
            f"{type(data).__name__}"
        )
    out = Decoded()
    if not data:
        out.error(None, "", "empty list")
    for index, item in enumerate(data):
        try:
            alert = PostableAlert.model_validate(item)
        except ValidationError as exc:
            _invalid(out, index, item, exc)
            continue
        ends = _when(alert.endsAt)
        _add(
            out, index, item, labels=alert.labels, annotations=alert.annotations,
            firing=ends is None or ends > received_at, received_at=received_at,
            starts_at=alert.startsAt, ends_at=alert.endsAt,
            generator_url=alert.generatorURL, service_labels=service_labels,
        )
    return out
