"""The audit trail: one record per decision the autopilot or its users make.

Pure module (no Faust, no network). Every decision about an incident — which rule
opened or updated it and on what evidence, each analysis, each Slack message, edit and
reply, each human click, silence, piece of feedback, action request and its result —
becomes one :class:`AuditEvent`, produced by :func:`autopilot.agents.audit.emit` to the
``autopilot.audit`` topic keyed by incident id (see :mod:`autopilot.topics`).
``autopilot audit INCIDENT_ID`` reads the topic back and prints
:func:`format_story`. Documented in docs/audit.md.

Secrets never reach the topic: :meth:`AuditEvent.to_dict` passes the summary, the
actor and every string inside ``detail`` (keys and values, at any depth) through the
project's one redactor, :func:`autopilot.redact.redact`, so no caller can forget it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from autopilot.feedback import Feedback
from autopilot.models import Analysis, Incident, TimelineEntry
from autopilot.redact import redact
from autopilot.silences import Silence

#: The kinds of event (``AuditEvent.kind``) and what each records.
KINDS: Mapping[str, str] = {
    "incident.opened": "a correlation rule opened an incident (rule, evidence)",
    "incident.updated": "a correlation rule changed an incident (what changed)",
    "incident.resolved": "the incident was resolved (by whom: quiet period, Slack)",
    "analysis": "an analysis was made (source llm/rules, model, latency, prompt sha256, "
    "grounded, used)",
    "slack.posted": "a Slack message was posted (channel, ts)",
    "slack.edited": "a Slack message was edited (channel, ts)",
    "slack.replied": "a reply was posted in the incident's thread (channel, ts, thread_ts)",
    "action.human": "a person clicked Acknowledge, Silence, Resolve or Not an incident",
    "silence": "a silence was created, expired or deleted",
    "feedback": "a piece of feedback (Not an incident) was recorded",
    "action.requested": "an approved action (rollback …) was requested, with its approver",
    "action.result": "the hook of an approved action answered (status, message)",
    "action.refused": "an action request was refused (not an approver …)",
}

#: ``AuditEvent.actor`` of decisions the autopilot made itself.
AUTOPILOT = "autopilot"


def _redacted(value: Any) -> Any:
    """``value`` with every string (mapping keys too) passed through the redactor;
    tuples become lists, non-finite floats become None (JSON-able)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {redact(str(k)): _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redacted(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


@dataclass(frozen=True)
class AuditEvent:
    """One decision about one incident.

    Attributes:
        incident_id: the incident's id (the topic's key).
        service: the incident's service.
        kind: one of :data:`KINDS` (``"incident.opened"``, ``"analysis"``,
            ``"slack.posted"`` …).
        actor: ``"autopilot"`` (:data:`AUTOPILOT`) or the Slack user (id or name) who
            decided.
        summary: one human line (no newline needed; newlines are folded on print).
        at: when, epoch seconds (wall clock, UTC).
        detail: JSON-able extra fields of the kind (``{"channel": "C1", "ts": "17.1"}``
            for ``slack.*``; see docs/audit.md); default empty.
    """

    incident_id: str
    service: str
    kind: str
    actor: str
    summary: str
    at: float
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form written to the topic, secrets redacted (summary, actor
        and every string of ``detail``, through :func:`autopilot.redact.redact`)."""
        return {
            "incident_id": self.incident_id,
            "service": self.service,
            "kind": self.kind,
            "actor": redact(self.actor),
            "summary": redact(self.summary),
            "at": float(self.at),
            "detail": _redacted(dict(self.detail)),
        }

    def to_json(self) -> bytes:
        """:meth:`to_dict` as compact UTF-8 JSON (the topic's value)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditEvent:
        """The event of a :meth:`to_dict` mapping.

        Raises:
            ValueError: a field is missing or has the wrong type (names the field).
        """
        if not isinstance(data, Mapping):
            raise ValueError("audit event: not a JSON object")
        values: dict[str, Any] = {}
        for name in ("incident_id", "service", "kind", "actor", "summary"):
            value = data.get(name)
            if not isinstance(value, str):
                raise ValueError(f"audit event: {name!r} must be a string")
            values[name] = value
        at = data.get("at")
        if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
            raise ValueError("audit event: 'at' must be a finite number (epoch seconds)")
        detail = data.get("detail", {})
        if not isinstance(detail, Mapping):
            raise ValueError("audit event: 'detail' must be an object")
        return cls(at=float(at), detail=dict(detail), **values)

    @classmethod
    def from_json(cls, raw: bytes | str) -> AuditEvent:
        """The event of a topic value (:meth:`to_json`).

        Raises:
            ValueError: not JSON, or not an audit event (see :meth:`from_dict`).
        """
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"audit event: not JSON: {exc}") from exc
        return cls.from_dict(data)


def _stamp(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def format_line(event: AuditEvent) -> str:
    """One line of a story: ``<time UTC>  <kind>  <actor>  <summary>``, with
    ``[channel ts]`` appended for Slack events (and any event whose detail names a
    ``channel`` and a ``ts``)."""
    summary = " ".join(event.summary.split())
    detail = event.detail
    if detail.get("channel") and detail.get("ts"):
        summary += f" [{detail['channel']} {detail['ts']}]"
    return f"{_stamp(event.at)}  {event.kind:<17}  {event.actor:<12}  {summary}"


def format_story(incident_id: str, events: Iterable[AuditEvent]) -> list[str]:
    """The story of one incident: a heading line naming it, then one line per event
    of ``incident_id`` (others are ignored) in time order (``at``; ties keep their
    topic order), then one line per Slack message it posted or edited.

    Returns an empty list when no event belongs to ``incident_id`` (unknown incident).
    """
    mine = [e for e in events if e.incident_id == incident_id]
    if not mine:
        return []
    mine.sort(key=lambda e: e.at)  # stable: equal times keep their topic order
    service = mine[0].service
    lines = [
        f"incident {incident_id} (service {service}): {len(mine)} decisions, "
        f"{_stamp(mine[0].at)} .. {_stamp(mine[-1].at)}"
    ]
    lines.extend(format_line(e) for e in mine)
    messages: list[str] = []
    for e in mine:
        if e.kind in ("slack.posted", "slack.edited") and e.detail.get("ts"):
            ref = f"{e.detail.get('channel', '?')} {e.detail['ts']}"
            if ref not in messages:
                messages.append(ref)
    if messages:
        lines.append("slack messages: " + ", ".join(messages))
    return lines


# --- derived events (pure; the agents call these and emit the result) -------------------

_INCIDENT_KINDS: Mapping[str, str] = {
    "opened": "incident.opened",
    "updated": "incident.updated",
    "reopened": "incident.updated",
    "resolved": "incident.resolved",
    "closed": "incident.resolved",
}


def incident_event(
    incident: Incident, previous: Sequence[TimelineEntry], *, at: float,
    actor: str = AUTOPILOT,
) -> AuditEvent:
    """The audit event of one published incident record: which rule changed it and on
    what evidence, derived from its timeline (:mod:`autopilot.correlation` writes one
    entry per meaningful change) rather than from the rules again.

    Args:
        incident: the record published to ``autopilot.incidents``.
        previous: the incident's timeline before this change (empty for a new one);
            the entries not in it are the change.
        at: wall clock of the decision (epoch s).
        actor: who decided (``"autopilot"``, or the Slack user of a manual resolve).

    Kind: ``incident.opened``, ``incident.updated`` (also a re-open) or
    ``incident.resolved``; summary: the new timeline texts joined by ``"; "`` (the
    trigger reason when there is none); detail: ``status``, ``revision``, ``severity``,
    ``rule`` (trigger reason), ``changes`` (the new entries: kind, text, event time
    ISO 8601), ``signals`` (series, metric, state, severity, z, value), ``deployments``
    (version, previous version, time).
    """
    seen = set(previous)
    changes = [e for e in incident.timeline if e not in seen]
    summary = "; ".join(e.text for e in changes) or incident.trigger_reason
    detail: dict[str, Any] = {
        "status": incident.status,
        "revision": incident.revision,
        "severity": incident.severity.value,
        "rule": incident.trigger_reason,
        "changes": [
            {"kind": e.kind, "text": e.text, "at": e.at.isoformat()} for e in changes
        ],
        "signals": [
            {
                "series": s.series, "metric": s.metric_name, "state": s.state,
                "severity": s.severity.value, "z": round(s.z_score, 3),
                "value": s.last_value,
            }
            for s in incident.signals
        ],
        "deployments": [
            {
                "version": d.version, "status": d.status, "at": d.timestamp.isoformat(),
            }
            for d in incident.recent_deployments
        ],
    }
    if incident.resolution:
        detail["resolution"] = incident.resolution
    return AuditEvent(
        incident_id=incident.id, service=incident.service,
        kind=_INCIDENT_KINDS.get(incident.status, "incident.updated"), actor=actor,
        summary=summary, at=at, detail=detail,
    )


def prompt_sha256(messages: Sequence[Mapping[str, str]]) -> str:
    """SHA-256 (hex) of a chat prompt: its messages as compact JSON with sorted keys,
    UTF-8 (the ``messages`` :func:`autopilot.analysis.build_messages` sends)."""
    canonical = json.dumps(list(messages), separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def analysis_event(
    incident: Incident, analysis: Analysis, *, latency_s: float, prompt_hash: str | None,
    model: str | None, fallback_reason: str | None, used: bool, at: float,
) -> AuditEvent:
    """The audit event of one analysis of ``incident``.

    Args:
        analysis: the analysis made (``source`` ``llm`` or ``rules``).
        latency_s: how long it took (seconds; Ollama's call and, on fallback, the rules).
        prompt_hash: :func:`prompt_sha256` of the prompt sent to the LLM (``None``
            when none was built).
        model: the model asked (``OLLAMA_MODEL``), also when it did not answer.
        fallback_reason: why the rules were used (safe to show), or ``None``.
        used: whether it went to the incident's message (``autopilot.alerts``).
        at: wall clock (epoch s).

    Detail: ``source``, ``model``, ``latency_ms``, ``prompt_sha256``, ``grounded``
    (the grounding check's verdict, :mod:`autopilot.grounding`; ``None`` when not
    checked: a rule-based analysis),
    ``used``, ``fallback_reason``, ``root_cause``, ``confidence``.
    """
    source = analysis.source
    text = f"{source} analysis"
    if source == "llm":
        text += f" by {analysis.model or model}"
    elif fallback_reason:
        text += f" (LLM {model}: {fallback_reason})"
    text += f" in {latency_s * 1000:.0f} ms"
    text += ", used" if used else ", not used"
    text += f": {analysis.root_cause.description}"
    return AuditEvent(
        incident_id=incident.id, service=incident.service, kind="analysis",
        actor=AUTOPILOT, summary=_one_line(text, 300), at=at,
        detail={
            "source": source,
            "model": analysis.model or model,
            "latency_ms": round(latency_s * 1000, 1),
            "prompt_sha256": prompt_hash,
            "grounded": analysis.grounded,
            "used": used,
            "fallback_reason": fallback_reason,
            "root_cause": analysis.root_cause.description,
            "confidence": analysis.root_cause.confidence,
        },
    )


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def slack_event(
    incident: Incident, kind: str, summary: str, *, channel: str | None, ts: str | None,
    at: float, thread_ts: str | None = None, **extra: Any,
) -> AuditEvent:
    """The audit event of one Slack message of ``incident``: ``kind`` is
    ``slack.posted``, ``slack.edited`` or ``slack.replied``; detail: ``channel`` (id),
    ``ts`` (the message's Slack timestamp; for a reply the reply's own, when Slack
    returned it), ``thread_ts`` (a reply's root) and ``extra``."""
    detail: dict[str, Any] = {"channel": channel or "", "ts": ts or ""}
    if thread_ts is not None:
        detail["thread_ts"] = thread_ts
    detail.update(extra)
    return AuditEvent(
        incident_id=incident.id, service=incident.service, kind=kind, actor=AUTOPILOT,
        summary=summary, at=at, detail=detail,
    )


#: Human button actions recorded as ``action.human`` (approved actions, ``hook``, are
#: recorded by their own agent as ``action.requested`` / ``action.result``).
HUMAN_ACTIONS: Mapping[str, str] = {
    "acknowledge": "acknowledged",
    "silence": "silenced",
    "resolve": "resolved",
    "not_an_incident": "marked as not an incident",
}


def human_action_event(
    *, incident_id: str, service: str, kind: str, user_id: str, user_name: str,
    note: str | None, channel: str, ts: str, at: float,
) -> AuditEvent:
    """The ``action.human`` event of one applied click on the incident's message.

    Args:
        kind: the button (:data:`HUMAN_ACTIONS` keys; others are named as they are).
        user_id, user_name: who clicked (Slack); the actor is ``user_name`` (else the id).
        note: what it did (``"for 1 h (silence <id>)"`` …), or ``None``.
        channel, ts: the root message clicked on.
        at: wall clock (epoch s).
    """
    actor = user_name or user_id
    summary = f"{HUMAN_ACTIONS.get(kind, kind)} by {actor}"
    if note:
        summary += f": {note}"
    return AuditEvent(
        incident_id=incident_id, service=service, kind="action.human", actor=actor,
        summary=summary, at=at,
        detail={"action": kind, "user_id": user_id, "user_name": user_name,
                "channel": channel, "ts": ts},
    )


def silence_event(
    silence: Silence, *, incident_id: str, service: str, change: str, actor: str, at: float,
) -> AuditEvent:
    """The ``silence`` event of one silence of an incident.

    Args:
        silence: the silence (its id, matchers, end, author, comment).
        change: ``created`` (from the incident's Silence button), ``expired`` (an
            "until resolved" silence ended with the incident) or ``held`` (an active
            silence held the incident's notification back).
        actor: who created or expired it (a Slack user, ``"autopilot"``).
        at: wall clock (epoch s).
    """
    ops = {(True, False): "=", (False, False): "!=", (True, True): "=~", (False, True): "!~"}
    matchers = [f'{m.name}{ops[m.is_equal, m.is_regex]}"{m.value}"' for m in silence.matchers]
    until = "" if change == "expired" else f"; until {_stamp(silence.ends_at)}"
    summary = f"silence {silence.id} {change} ({', '.join(matchers)}{until})"
    return AuditEvent(
        incident_id=incident_id, service=service, kind="silence", actor=actor,
        summary=summary, at=at,
        detail={"change": change, "silence_id": silence.id, "matchers": matchers,
                "ends_at": silence.ends_at, "created_by": silence.created_by,
                "comment": silence.comment},
    )


def feedback_event(feedback: Feedback, *, at: float) -> AuditEvent:
    """The ``feedback`` event of one "Not an incident" record (``feedback.incident``
    names the incident; the actor is ``feedback.user``)."""
    until = "for good" if feedback.until is None else f"until {_stamp(feedback.until)}"
    return AuditEvent(
        incident_id=feedback.incident, service=feedback.service, kind="feedback",
        actor=feedback.user or "?",
        summary=(f"not an incident: {feedback.series} ({feedback.direction}, "
                 f"|z| {feedback.z_score:.1f}), {until}"),
        at=at,
        detail={"series": feedback.series, "direction": feedback.direction,
                "z": feedback.z_score, "until": feedback.until},
    )
