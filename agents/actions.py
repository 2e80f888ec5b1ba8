"""Actions agent: Slack button clicks (``autopilot.incident.actions``) → their effects.

``POST /slack/interactions`` (:mod:`autopilot.web.slack`) produces each verified
click, an :class:`autopilot.interactions.IncidentAction`, keyed by the incident's
service, so the worker owning the service applies it here, once: the identities
applied (``message_ts:action_ts:action_id``) are kept in the ``incident_actions``
table (the newest :data:`MAX_APPLIED` per service), so a double click on one button
(a second ``action_ts``) is a second action but a Slack retry, a replayed request or
a replayed record is not. A click on a message that is not the incident's root
message on this worker (an old or foreign message) is ignored.

- **Acknowledge**: nothing but the note below (the notifier stops the reminders).
- **Silence**: a silence matching ``service=<the service>`` from now for 1 h or 4 h,
  or "until resolved" (:data:`UNTIL_RESOLVED_S` at most, expired by the notifier when
  the incident resolves), produced to ``autopilot.silences`` like ``POST
  /api/v2/silences`` (its id is derived from the action's identity, so a replay
  writes the same silence).
- **Resolve**: a ``resolve`` control record to ``autopilot.correlation.control``
  (:func:`autopilot.correlation.resolve_manually`; new evidence re-opens it).
- **Not an incident**: :func:`autopilot.agents.feedback.record_feedback` for the
  newest alert of every series of the incident, with the user, for good.
- **An approved action** (``kind == "hook"``, docs/actions.md): the web view let it
  through only for an approver. Per incident and action the hook runs once: the
  request is recorded under ``hooks`` in the ``incident_actions`` table (and the
  changelog flushed) *before* the hook is called, so a second click, a Slack retry or
  a replayed record gets "already requested by X at T" instead. The hook's result
  (HTTP status and message, :func:`autopilot.integrations.hooks.run_hook`) is the
  note's detail. Audited as ``action.requested``, ``action.result`` and
  ``action.refused``.

Then a note (who, what, when) goes to the notifier as an ``action`` control record
on ``autopilot.notify.control``; the notifier keeps it with the incident
(:meth:`autopilot.notify.NotifyState.with_action`), edits the root message and
replies in the thread at once.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import replace
from typing import Any

from autopilot.tables import incident_actions, notifications
from faust.types import EventT, StreamT

from autopilot import telemetry
from autopilot.actions import ActionsConfig, load_actions
from autopilot.app import app, settings
from autopilot.audit import HUMAN_ACTIONS, AuditEvent, human_action_event, silence_event
from autopilot.blockkit import FEEDBACK_CHOICES, SILENCE_CHOICES
from autopilot.errors import BadRecord
from autopilot.feedback import Feedback, routine_applies
from autopilot.integrations.hooks import HookRequest, run_hook
from autopilot.interactions import IncidentAction, InvalidInteraction
from autopilot.models import Incident
from autopilot.notify import NotifyState
from autopilot.silences import InvalidSilence, Silence, expire, format_time, parse_postable
from autopilot.streams import (
    control_topic,
    incident_actions_topic,
    notify_control_topic,
    silences_topic,
)

from .audit import emit
from .boundary import each_record
from .feedback import record_feedback

logger = logging.getLogger(__name__)
STAGE = "actions"

#: Action identities remembered per service.
MAX_APPLIED = 500
#: A Silence "until resolved" ends at the latest this long after the click (s); the
#: notifier expires it as soon as the incident resolves.
UNTIL_RESOLVED_S = 7 * 24 * 3600.0
#: Approved-action requests remembered per service (the newest).
MAX_HOOKS = 200
_config: list[ActionsConfig | None] = []


def actions_config() -> ActionsConfig | None:
    """The worker's ``AUTOPILOT_ACTIONS_FILE`` (loaded once; checked at start by
    :func:`autopilot.app.check_startup`), ``None`` when unset."""
    if not _config:
        path = settings().actions_file
        _config.append(load_actions(path) if path else None)
    return _config[0]


#: Namespace of the silence ids derived from action identities.
_SILENCE_NS = uuid.UUID("5d1b0f0e-4b1e-4c55-9d6a-6a1f1c0f5e14")


def decode_action(value: bytes | None) -> IncidentAction:
    """A record of ``autopilot.incident.actions`` → :class:`IncidentAction`.

    Raises:
        BadRecord: not JSON or not an action (the record is dead-lettered).
    """
    try:
        data = json.loads(value or b"")
    except ValueError as exc:
        raise BadRecord(f"action record is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRecord("action record is not a JSON object")
    try:
        return IncidentAction.from_dict(data)
    except InvalidInteraction as exc:
        raise BadRecord(str(exc)) from None


def button_silence(action: IncidentAction, now: float) -> Silence:
    """The silence of a Silence click: ``service="<service>"``, from now, for the
    chosen time (:data:`autopilot.blockkit.SILENCE_CHOICES`); its id is a UUID derived
    from the action's identity.

    Raises:
        InvalidSilence: the service cannot be matched (never for a valid service).
    """
    label, seconds = SILENCE_CHOICES[action.silence or "1h"]
    duration = UNTIL_RESOLVED_S if seconds is None else seconds
    body = {
        "matchers": [{"name": "service", "value": action.service, "isRegex": False,
                      "isEqual": True}],
        "startsAt": format_time(now),
        "endsAt": format_time(now + duration),
        "createdBy": f"slack:{action.user_name}"[:200],
        "comment": f"{label} from Slack on incident {action.incident_id}"
                   + (" (expires when it resolves)" if seconds is None else ""),
    }
    silence = parse_postable(body, now)
    return replace(silence, id=str(uuid.uuid5(_SILENCE_NS, action.identity)))


def feedback_records(
    incident: Incident, user: str, now: float, until: float | None = None
) -> list[Feedback]:
    """One "Not an incident" per series of ``incident``: its newest alert's departure
    (alerts without a direction, z = 0, are skipped), until ``until`` (wall-clock
    epoch s; ``None``: for good)."""
    s = settings()
    with_tod = routine_applies(s.detector_mode, s.season_days)
    newest: dict[str, Any] = {}
    for anomaly in incident.anomalies:
        if anomaly.state != "firing" or not anomaly.z_score:
            continue
        key = anomaly.series or f"{anomaly.service}|{anomaly.metric_name}"
        if key not in newest or anomaly.detected_at >= newest[key].detected_at:
            newest[key] = anomaly
    return [Feedback.from_anomaly(a, user=user, recorded_at=now, until=until,
                                  with_time_of_day=with_tod, incident=incident.id)
            for a in newest.values()]


async def _send(topic: Any, key: bytes, value: dict[str, Any]) -> None:
    await (await topic.send(key=key, value=json.dumps(value).encode()))


async def _apply(action: IncidentAction, incident: Incident, now: float) -> str | None:
    """The action's effect; returns the note's detail."""
    key = action.service.encode()
    if action.kind == "silence":
        silence = button_silence(action, now)
        await _send(silences_topic, silence.id.encode(), silence.to_dict())
        telemetry.SILENCE_CHANGES.labels(action="created").inc()
        await emit(silence_event(silence, incident_id=action.incident_id,
                                 service=action.service, change="created",
                                 actor=action.user_name or action.user_id, at=now))
        label, seconds = SILENCE_CHOICES[action.silence or "1h"]
        span = "until resolved" if seconds is None else f"for {label}"
        return f"{span} (silence {silence.id})"
    if action.kind == "resolve":
        await _send(control_topic, key, {"kind": "resolve", "incident_id": incident.id,
                                         "by": f"@{action.user_name}"})
        return None
    if action.kind == "not_an_incident":
        label, seconds = FEEDBACK_CHOICES[action.feedback or "forever"]
        until = None if seconds is None else now + seconds
        records = feedback_records(incident, action.user_id, now, until)
        if records:
            await record_feedback(records)
        return (f"{len(records)} series will not page again for the same departure, "
                f"{label.lower()}")
    return None


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


async def _audit(action: IncidentAction, kind: str, summary: str, **detail: Any) -> None:
    await emit(AuditEvent(incident_id=action.incident_id, service=action.service, kind=kind,
                          actor=action.user_id, summary=summary, at=time.time(),
                          detail={"action": action.hook, "from_version": action.from_version,
                                  "to_version": action.to_version, **detail}))


async def _run_hook(action: IncidentAction, key: bytes, stored: dict[str, Any],
                    applied: list[str], now: float) -> str:
    """Run an approved action's hook once per incident and action; the note's detail."""
    hooks = dict(stored.get("hooks") or {})
    slot = f"{action.incident_id}:{action.hook}"
    what = str(action.hook) + (f" {action.from_version} → {action.to_version}"
                               if action.to_version else "")
    earlier = hooks.get(slot)
    if earlier:
        telemetry.INCIDENT_ACTIONS.labels(action="hook", outcome="duplicate").inc()
        done = f"; result: {earlier['result']}" if earlier.get("result") else \
            "; its result is not known (the worker stopped during the call)"
        return (f"{action.hook}: already requested by {earlier.get('by_name')} at "
                f"{_when(float(earlier.get('at') or 0))}{done}")
    config = actions_config()
    spec = config.find(str(action.hook), action.service) if config else None
    if spec is None:
        await _audit(action, "action.refused", f"{what} refused: not configured for "
                     f"{action.service}")
        return f"{action.hook}: not run, no such action for {action.service} here"
    hooks[slot] = {"by": action.user_id, "by_name": action.user_name, "at": now,
                   "identity": action.identity, "result": None}
    newest = sorted(hooks.items(), key=lambda kv: float(kv[1].get("at") or 0))[-MAX_HOOKS:]
    incident_actions[key] = {**stored, "applied": [*applied, action.identity][-MAX_APPLIED:],
                             "hooks": dict(newest)}
    try:
        await app.producer.flush()  # the request is on the changelog before the call
    except Exception as exc:  # noqa: BLE001 - not recorded: do not run it
        hooks.pop(slot)
        incident_actions[key] = {**stored, "hooks": hooks}
        logger.warning("%s on incident %s not run: the request was not recorded (%r)",
                       action.hook, action.incident_id, exc)
        return f"{action.hook}: not run, the request could not be recorded; click again"
    await _audit(action, "action.requested", f"{what} approved by {action.user_name}",
                 approver=action.user_id, hook=spec.hook.kind)
    result = await run_hook(spec, HookRequest(
        action=str(action.hook), service=action.service, incident_id=action.incident_id,
        approver=action.user_name, from_version=action.from_version,
        to_version=action.to_version))
    hooks[slot] = {**hooks[slot], "result": result.text(), "ok": result.ok}
    current = incident_actions.get(key) or {}
    incident_actions[key] = {**current, "hooks": {**(current.get("hooks") or {}),
                                                  slot: hooks[slot]}}
    telemetry.INCIDENT_ACTIONS.labels(action="hook",
                                      outcome="succeeded" if result.ok else "failed").inc()
    await _audit(action, "action.result", f"{what}: {result.text()}", ok=result.ok,
                 status=result.status, message=result.message)
    logger.info("%s on incident %s (%s) approved by %s: %s", what, action.incident_id,
                action.service, action.user_id, result.text())
    return f"{what} {'done' if result.ok else 'FAILED'}: {result.text()}"


async def process(event: EventT[bytes]) -> None:
    """Apply one action record once (see module docstring)."""
    action = decode_action(event.value)
    key = action.service.encode()
    if event.message.key != key:
        raise BadRecord("action record key is not its service")
    stored = incident_actions.get(key) or {}
    applied = list(stored.get("applied", ()))
    if action.identity in applied:
        telemetry.INCIDENT_ACTIONS.labels(action=action.kind, outcome="duplicate").inc()
        logger.info("Slack %s %s on incident %s: applied already", action.kind,
                    action.identity, action.incident_id)
        return
    notice = NotifyState.from_dict(notifications.get(key)).notices.get(action.incident_id)
    now = time.time()
    if notice is None or notice.root_ts != action.message_ts:
        outcome = "unknown_incident"
        logger.warning("Slack %s on incident %s (%s) ignored: not the root message of a "
                       "known incident", action.kind, action.incident_id, action.service)
    else:
        if action.kind == "hook":
            detail: str | None = await _run_hook(action, key, stored, applied, now)
            stored = incident_actions.get(key) or {}
        else:
            detail = await _apply(action, notice.model(), now)
        note = {"identity": action.identity, "kind": action.kind, "user_id": action.user_id,
                "user_name": action.user_name, "at": now, "detail": detail,
                "silence_id": str(uuid.uuid5(_SILENCE_NS, action.identity))
                if action.kind == "silence" else None,
                "until_resolved": action.kind == "silence" and action.silence == "resolved"}
        await _send(notify_control_topic, key, {"kind": "action",
                                                "incident_id": action.incident_id,
                                                "note": note})
        outcome = "applied"
        logger.info("Slack %s on incident %s (%s) by %s applied%s", action.kind,
                    action.incident_id, action.service, action.user_id,
                    f": {detail}" if detail else "")
        if action.kind in HUMAN_ACTIONS:
            await emit(human_action_event(
                incident_id=action.incident_id, service=action.service, kind=action.kind,
                user_id=action.user_id, user_name=action.user_name, note=detail,
                channel=action.channel_id, ts=action.message_ts, at=now))
    telemetry.INCIDENT_ACTIONS.labels(action=action.kind, outcome=outcome).inc()
    incident_actions[key] = {**stored, "applied": [*applied, action.identity][-MAX_APPLIED:]}


async def expire_until_resolved(silence_ids: list[str], stored: list[Silence]) -> list[str]:
    """Expire the "until resolved" silences ``silence_ids`` that are not expired yet
    (the notifier calls this when their incident resolves); returns those expired."""
    now = time.time()
    done = []
    for silence in stored:
        if silence.id in silence_ids and silence.state(now) != "expired":
            try:
                expired = expire(silence, now)
            except InvalidSilence:  # pragma: no cover - expire never refuses
                continue
            await _send(silences_topic, expired.id.encode(), expired.to_dict())
            telemetry.SILENCE_CHANGES.labels(action="expired").inc()
            done.append(silence.id)
    return done


@app.agent(incident_actions_topic, name="actions")
async def apply_actions(stream: StreamT[bytes]) -> None:
    """Apply Slack button actions (see module docstring)."""
    await each_record(stream, STAGE, process)
