"""Notifier agent: incidents and analyses → one Slack conversation per incident.

Consumes ``autopilot.incidents`` (every lifecycle change from the correlation agent),
``autopilot.alerts`` (analyses from the analysis agent) and the internal
``autopilot.notify.control`` (ticks from :func:`notify_timer`, and Slack button
actions applied by :mod:`autopilot.agents.actions`: the root message is edited and
the thread told at once, an acknowledged incident gets no more reminders, and a
Silence "until resolved" is expired when the incident resolves), all keyed by service.
Each record is folded into the service's :class:`autopilot.notify.NotifyState` (the
``notifications`` table); then :func:`autopilot.notify.plan` says, per incident, what
is due now under ``group_wait`` / ``group_interval`` / ``repeat_interval`` /
``send_resolved``, and this agent sends it:

- bot mode: the root message (``chat.postMessage`` with the incident id in its
  metadata), kept current with ``chat.update``, and thread replies (timeline, the
  LLM's analysis, reminders, charts through ``files_upload_v2``);
- webhook mode: the first message and at most ``AUTOPILOT_MAX_WEBHOOK_MESSAGES`` in
  all; console mode: printed.

Each message posted, edited or replied (channel and ts), each "until resolved" silence
expired and each silence that holds a notification back is recorded on the audit trail
(:mod:`autopilot.agents.audit`, docs/audit.md).

The root message is rendered when it is sent, from the newest incident record, the
service's error lines and deployments *now* (tables ``error_rates`` and
``deployments``: evidence that arrived during ``group_wait`` is in the first message)
and the analysis: the LLM's once it answered, else the rule-based one marked "LLM
analysis pending" (the LLM is never on the alert path).

Nothing twice, nothing lost (crash or takeover between a send and the table write):

- every send holds a Redis claim (``autopilot:sent:<incident>:<what>``), marked done
  after it went out; a claim found done is skipped;
- the root message's channel and ts are kept in Redis and in the table; before a root
  post whose claim was not fresh (a worker died holding it, or Redis is down), the
  channel's history is searched (``conversations.history``) for a message whose
  metadata names the incident, and that message is adopted instead of posting again.
  The window left: Slack's history not yet showing a message posted a moment before
  the crash (it is consistent within a second in practice).

Slack unavailable (429, 5xx, no connection): retried with backoff until it is back
(the partition waits; nothing is dropped). A permanent refusal is logged and counted
by Slack's error code (``autopilot_slack_refusals_total{reason}``: sends, updates,
replies, webhook messages, chart uploads and history lookups), and that one send is
given up. Refused formatting (``invalid_blocks``) is counted too, and the client sends
the message again as plain text (``autopilot_slack_plain_text_retries_total``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

from autopilot.tables import deployments, error_rates, notifications
from faust.types import EventT, StreamT

from autopilot import actions as approved_actions
from autopilot import blockkit, notify, telemetry
from autopilot.analysis import fallback_analysis
from autopilot.app import app, settings
from autopilot.audit import AUTOPILOT, silence_event, slack_event
from autopilot.deployments import DeploymentHistory
from autopilot.errorrate import ErrorRateState
from autopilot.errors import AlertDeliveryError, BadRecord, DeliveryError
from autopilot.integrations.history import AlertHistory
from autopilot.integrations.slack import build_notifier
from autopilot.models import Alert, Analysis, Incident, TimelineEntry, decode_records
from autopilot.notify import Notice, NotifyConfig, NotifyState, Routes
from autopilot.silences import silencing
from autopilot.streams import notify_control_topic, raw_topic
from autopilot.topics import ALERTS, INCIDENTS, NOTIFY_CONTROL, topic_name

from .actions import actions_config, expire_until_resolved
from .audit import emit
from .boundary import each_record
from .silences import all_silences

logger = logging.getLogger(__name__)
STAGE = "notifier"
#: Longest wait between two delivery attempts while Slack is unavailable (s).
MAX_BACKOFF_S = 60.0
#: Metadata event type of root messages (searched after a crash).
EVENT_TYPE = "autopilot_incident"
#: Error lines shown from this long before the incident began until this long after
#: its newest evidence (s; the correlation's context window).
ERROR_CONTEXT_S = 600
#: Error lines kept in a message (the newest).
MAX_ERROR_LINES = 20

notify_input = raw_topic(INCIDENTS, ALERTS, NOTIFY_CONTROL)

T = TypeVar("T")


def retryable(exc: AlertDeliveryError) -> bool:
    """True for failures that may pass later: no answer, 429 or 5xx."""
    return exc.status is None or exc.status == 429 or exc.status >= 500


class Delivery:
    """The worker's Slack (or console) client, Redis history, routes and policy."""

    def __init__(self) -> None:
        s = settings()
        self.client = build_notifier(
            s, on_retry=lambda reason: telemetry.SLACK_RETRIES.labels(reason=reason).inc(),
            on_refusal=lambda code: telemetry.SLACK_REFUSALS.labels(reason=code[:40]).inc(),
            on_plain_text=lambda outcome: telemetry.SLACK_PLAIN_TEXT_RETRIES.labels(
                outcome=outcome).inc(),
        )
        self.mode: notify.Mode = self.client.mode  # type: ignore[assignment]
        self.config = NotifyConfig.from_settings(s, self.mode)
        self.history = AlertHistory.from_settings(s)
        self.routes = Routes.load(s.slack_routes, s.slack_channel)
        self.deployment_window_s = s.deployment_window_s
        self.started = False

    async def start(self) -> None:
        """Open the clients (idempotent); a Redis outage is logged, not fatal."""
        if self.started:
            return
        await self.client.start()
        try:
            await self.history.start()
        except DeliveryError as exc:
            telemetry.REDIS_ERRORS.inc()
            logger.warning("Redis unavailable at start (%s); sends go on without it", exc)
        self.started = True

    async def aclose(self) -> None:
        """Close the clients."""
        await self.client.aclose()
        await self.history.aclose()


_delivery: list[Delivery] = []


def delivery() -> Delivery:
    """The worker's :class:`Delivery` (built on first use)."""
    if not _delivery:
        _delivery.append(Delivery())
    return _delivery[0]


# --- rendering ----------------------------------------------------------------------


def current_alert(key: bytes, notice: Notice, deployment_window_s: float) -> tuple[Alert, bool]:
    """The incident as it is now (fresh error lines and deployments) and its analysis.

    Returns:
        ``(alert, analysis_pending)``: the LLM's analysis when it answered, else the
        rule-based analysis of the evidence as it is now, with ``analysis_pending``
        True while the analysis agent has not answered (False once it said the LLM
        was unavailable).
    """
    incident = notice.model()
    errors = ErrorRateState.from_dict(error_rates.get(key)).recent_error_entries()
    history = DeploymentHistory.from_dict(deployments.get(key))
    end = max([incident.closed_at or incident.updated_at, incident.updated_at,
               *(e.at for e in incident.timeline)])
    began = min([incident.opened_at, *(s.first_at for s in incident.signals)])
    window_from = began - timedelta(seconds=ERROR_CONTEXT_S)
    window_to = end + timedelta(seconds=ERROR_CONTEXT_S)
    # The record's lines (seen when it was built) and the ones that arrived since.
    merged = {(e.timestamp, e.message): e for e in incident.recent_errors}
    for e in errors:
        if window_from <= e.timestamp <= window_to:
            merged.setdefault((e.timestamp, e.message), e)
    fresh_errors = sorted(merged.values(), key=lambda e: e.timestamp)[-MAX_ERROR_LINES:]
    deps = history.within(began - timedelta(seconds=deployment_window_s), end)
    incident = incident.model_copy(update={
        "recent_errors": fresh_errors,
        "recent_deployments": deps or list(incident.recent_deployments),
    })
    if notice.llm_analysis:
        analysis = Analysis.model_validate(notice.analysis)
        return Alert(incident=incident, analysis=analysis), False
    # The rules read the evidence as it is now (error lines that arrived since the
    # incident opened included); pending while the LLM may still answer.
    analysis = fallback_analysis(incident, deployment_window_s=deployment_window_s)
    return Alert(incident=incident, analysis=analysis), notice.analysis is None


def digest(payload: dict[str, Any]) -> str:
    """Digest of a rendered message (what decides a ``chat.update``)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


# --- sending ------------------------------------------------------------------------


async def _with_retries(what: str, incident_id: str, send: Callable[[], Awaitable[T]]) -> T:
    """Run ``send()`` until it succeeds or Slack refuses for good.

    Returns:
        Its result, or raises :class:`AlertDeliveryError` for a permanent refusal.
    """
    backoff = 1.0
    while True:
        try:
            return await send()
        except AlertDeliveryError as exc:
            telemetry.SLACK_FAILURES.inc()
            if not retryable(exc):
                raise
            wait = max(backoff, exc.retry_after or 0.0)
            telemetry.SLACK_RETRIES.labels(reason="delivery").inc()
            logger.warning("Slack unavailable for %s of incident %s (%s); retrying in %.0f s",
                           what, incident_id, exc, wait)
            await asyncio.sleep(wait)
            backoff = min(backoff * 2, MAX_BACKOFF_S)


async def _claim(d: Delivery, key: str) -> bool:
    """Claim a send in Redis (False: it was sent before); True when Redis is down."""
    try:
        return await d.history.claim(key)
    except DeliveryError as exc:
        telemetry.REDIS_ERRORS.inc()
        logger.warning("Redis unavailable (%s); sending without idempotency key", exc)
        return True


async def _first_attempt(d: Delivery, key: str) -> bool:
    """True when no earlier attempt of ``key`` is known (False also when Redis is down)."""
    try:
        return await d.history.first_attempt(key)
    except DeliveryError:
        telemetry.REDIS_ERRORS.inc()
        return False


async def _done(d: Delivery, key: str) -> None:
    try:
        await d.history.mark_done(key)
    except DeliveryError:
        telemetry.REDIS_ERRORS.inc()


async def _release(d: Delivery, key: str) -> None:
    try:
        await d.history.release(key)
    except DeliveryError:
        telemetry.REDIS_ERRORS.inc()


async def _once(d: Delivery, key: str, what: str, incident_id: str,
                send: Callable[[], Awaitable[object]]) -> bool:
    """Send once under the Redis claim ``key``; False when it was sent before or refused."""
    if not await _claim(d, key):
        telemetry.SLACK_SENDS.labels(outcome="duplicate").inc()
        return False
    try:
        await _with_retries(what, incident_id, send)
    except AlertDeliveryError as exc:
        await _release(d, key)
        _refused(what, incident_id, exc)
        return False
    await _done(d, key)
    telemetry.SLACK_SENDS.labels(outcome=what).inc()
    return True


def _count_refusal(exc: AlertDeliveryError) -> None:
    """Count one refusal by Slack's error code (``other`` when Slack gave none)."""
    code = getattr(exc, "code", None) or "other"
    telemetry.SLACK_REFUSALS.labels(reason=str(code)[:40]).inc()


def _refused(what: str, incident_id: str, exc: AlertDeliveryError) -> None:
    _count_refusal(exc)
    logger.error("Slack refused the %s of incident %s: %s; that send is given up",
                 what, incident_id, exc)


async def _post_root(d: Delivery, notice: Notice, payload: dict[str, Any],
                     incident: Incident) -> Notice:
    """Bot mode: post (or adopt after a crash) the incident's root message."""
    key = f"{incident.id}:root"
    known = None
    try:
        known = await d.history.get_incident_message(incident.id)
    except DeliveryError:
        telemetry.REDIS_ERRORS.inc()
    if known is None:
        claimed = await _claim(d, key)
        first = claimed and await _first_attempt(d, key)
        if not first:  # an earlier attempt may have reached Slack: look for its message
            search_in = notice.channel or d.routes.channel_for(
                incident.service, incident.severity.value) or ""
            try:
                known = await d.client.find_message(
                    search_in, EVENT_TYPE, "incident_id", incident.id,
                    oldest=notice.first_seen - 120)
            except AlertDeliveryError as exc:
                if exc.code:  # Slack answered with a refusal (the lookup is not retried)
                    _count_refusal(exc)
                logger.warning("could not search the channel history for incident %s: %s",
                               incident.id, exc)
            if known is not None:
                logger.info("incident %s: root message found in the channel history; "
                            "adopting it instead of posting again", incident.id)
    if known is not None:
        channel_id, ts = known
        notice = _with_root(notice, channel_id, ts)
        await _update_root(d, notice, payload, incident)
        await _done(d, key)
        return notice
    channel = d.routes.channel_for(incident.service, incident.severity.value)
    try:
        channel_id, ts = await _with_retries(
            "post", incident.id,
            lambda: d.client.post_message(payload, channel=channel,
                                          metadata=blockkit.incident_metadata(incident)))
    except AlertDeliveryError as exc:
        await _release(d, key)
        _refused("post", incident.id, exc)
        raise
    try:
        await d.history.set_incident_message(incident.id, channel_id, ts)
    except DeliveryError:
        telemetry.REDIS_ERRORS.inc()
    await _done(d, key)
    telemetry.SLACK_SENDS.labels(outcome="sent").inc()
    await emit(slack_event(incident, "slack.posted",
                           f"posted the incident's message ({incident.severity.value})",
                           channel=channel_id, ts=ts, at=time.time()))
    return _with_root(notice, channel_id, ts, channel)


def _with_root(notice: Notice, channel_id: str, ts: str, channel: str | None = None) -> Notice:
    from dataclasses import replace

    return replace(notice, channel_id=channel_id, root_ts=ts, channel=channel or notice.channel)


async def _update_root(d: Delivery, notice: Notice, payload: dict[str, Any],
                       incident: Incident) -> None:
    if not notice.channel_id or not notice.root_ts:
        return
    channel_id, ts = notice.channel_id, notice.root_ts
    try:
        await _with_retries("update", incident.id,
                            lambda: d.client.update_message(channel_id, ts, payload))
        telemetry.SLACK_SENDS.labels(outcome="updated").inc()
    except AlertDeliveryError as exc:
        _refused("update", incident.id, exc)
        return
    await emit(slack_event(
        incident, "slack.edited",
        f"edited the incident's message (revision {incident.revision}, {incident.state})",
        channel=channel_id, ts=ts, at=time.time()))


async def _reply(d: Delivery, notice: Notice, key: str, payload: dict[str, Any],
                 incident: Incident, what: str) -> None:
    if not notice.channel_id or not notice.root_ts:
        return
    channel_id, ts = notice.channel_id, notice.root_ts
    posted: list[tuple[str, str]] = []

    async def send() -> None:
        posted.append(await d.client.post_message(payload, channel=channel_id, thread_ts=ts))

    if await _once(d, f"{incident.id}:{what}:{key}", what, incident.id, send):
        reply_ts = posted[-1][1] if posted else None
        await emit(slack_event(incident, "slack.replied", f"replied in the thread ({what})",
                               channel=channel_id, ts=reply_ts, thread_ts=ts, at=time.time(),
                               reply=what))


async def _upload_charts(d: Delivery, notice: Notice, incident: Incident) -> None:
    """Upload one chart per anomalous metric series (firing first); failures are
    logged and counted, never retried in a loop."""
    if not notice.channel_id or not notice.root_ts:
        return
    try:
        from .charts import chart_for_async
    except ImportError:  # charts are optional
        return
    signals = sorted((s for s in incident.signals if s.kind == "metric"),
                     key=lambda s: (s.state != "firing", -s.severity.rank))[:3]
    for signal in signals:
        key = f"{incident.id}:chart:{signal.series}"
        try:
            chart = await chart_for_async(incident.service, signal.series)
            if chart is None:
                continue
            png, filename = chart
            channel_id, ts = notice.channel_id, notice.root_ts
            if not await _claim(d, key):
                continue
            await d.client.upload_file(channel_id, ts, png, filename,
                                       f"{signal.metric_name} around incident {incident.id}")
            await _done(d, key)
            telemetry.SLACK_UPLOADS.labels(outcome="ok").inc()
        except Exception as exc:  # a chart must never block the incident's messages
            telemetry.SLACK_UPLOADS.labels(outcome="failed").inc()
            if isinstance(exc, AlertDeliveryError) and exc.code:  # never retried
                _count_refusal(exc)
            logger.warning("chart upload for incident %s (%s) failed: %s",
                           incident.id, signal.series, exc)


async def execute(d: Delivery, key: bytes, notice: Notice, now: float) -> Notice:
    """Plan and send what is due for one incident; returns the notice to store."""
    alert, pending = current_alert(key, notice, d.deployment_window_s)
    incident = alert.incident
    offers = approved_actions.offers(
        actions_config(), incident.service, incident.recent_deployments,
        DeploymentHistory.from_dict(deployments.get(key)).deployments(),
    ) if d.config.buttons else []
    payload = blockkit.render_incident(alert, analysis_pending=pending,
                                       buttons=d.config.buttons, acted=notice.acted,
                                       offers=offers)
    notice, acted = notify.plan_acted(notice, d.config, digest(payload))
    for action in acted:  # button clicks are answered at once, silenced or not
        if isinstance(action, notify.UpdateRoot):
            await _update_root(d, notice, payload, incident)
        elif isinstance(action, notify.ActionReply):
            await _reply(d, notice, action.notes[-1]["identity"],
                         blockkit.render_action_reply(incident, action.notes), incident,
                         "action")
            _log(incident, "button action told: " + ", ".join(
                str(n.get("kind")) for n in action.notes), pending)
    new, actions = notify.plan(notice, now, d.config, digest(payload))
    if not actions:
        return new
    stored = all_silences()
    if incident.is_resolved:
        ended = [str(n["silence_id"]) for n in notice.acted
                 if n.get("until_resolved") and n.get("silence_id")]
        if ended:
            expired = await expire_until_resolved(ended, stored)
            for silence in stored:
                if silence.id in expired:
                    await emit(silence_event(
                        silence, incident_id=incident.id, service=incident.service,
                        change="expired", actor=AUTOPILOT, at=time.time()))
            stored = [s for s in stored if s.id not in ended]
            if expired:
                logger.info("incident %s resolved: silence(s) %s (until resolved) expired",
                            incident.id, ", ".join(expired))
    held = silencing(notice.incident, stored, now)
    if held:
        for silence in stored:
            if silence.id in held and silence.id not in notice.silenced_by:
                await emit(silence_event(
                    silence, incident_id=incident.id, service=incident.service,
                    change="held", actor=silence.created_by or AUTOPILOT, at=time.time()))
        return _silenced(notice, held, incident)
    if notice.silenced_by:
        new = replace(new, silenced_by=())
    for action in actions:
        if isinstance(action, notify.PostRoot):
            if d.mode == "bot":
                posted = await _post_root(d, new, payload, incident)
                new = _with_root(new, posted.channel_id or "", posted.root_ts or "",
                                 posted.channel)
            elif d.mode == "webhook":
                body = blockkit.render_webhook(alert, "opened", analysis_pending=pending)
                if await _once(d, f"{incident.id}:webhook:1", "sent", incident.id,
                               partial(d.client.send_webhook, body)):
                    await emit(slack_event(incident, "slack.posted",
                                           "posted the incident's message (incoming webhook)",
                                           channel="webhook", ts=None, at=time.time()))
            else:
                _print(blockkit.render_console_event(alert, "opened", analysis_pending=pending))
            _log(incident, "notified (first message)", pending)
        elif isinstance(action, notify.UpdateRoot):
            await _update_root(d, new, payload, incident)
        elif isinstance(action, notify.Reply):
            entries = [TimelineEntry.model_validate(e) for e in action.entries]
            if d.mode == "console":
                kind: blockkit.ConsoleKind = "resolved" if incident.is_resolved and any(
                    e.kind in ("resolved", "stale") for e in entries) else "updated"
                _print(blockkit.render_console_event(alert, kind, analysis_pending=pending,
                                                     entries=entries))
            else:
                await _reply(d, new, action.key,
                             blockkit.render_timeline_reply(incident, entries), incident, "reply")
            _log(incident, "timeline: " + "; ".join(e.text for e in entries)[:300], pending)
        elif isinstance(action, notify.ReplyAnalysis):
            if d.mode == "console":
                _print(blockkit.render_console_event(alert, "analysis", analysis_pending=False))
            else:
                await _reply(d, new, action.key,
                             blockkit.render_analysis_reply(incident, alert.analysis),
                             incident, "analysis")
            _log(incident, "LLM analysis told", False)
        elif isinstance(action, notify.Reminder):
            if d.mode == "console":
                _print(blockkit.render_console_event(alert, "reminder", analysis_pending=pending))
            else:
                await _reply(d, new, str(action.number), blockkit.render_reminder(incident),
                             incident, "reminder")
        elif isinstance(action, notify.Webhook):
            body = blockkit.render_webhook(alert, action.kind, analysis_pending=pending)
            if await _once(d, f"{incident.id}:webhook:{action.number}", action.kind,
                           incident.id, partial(d.client.send_webhook, body)):
                await emit(slack_event(
                    incident, "slack.replied",
                    f"sent webhook message {action.number} ({action.kind})",
                    channel="webhook", ts=None, at=time.time()))
            _log(incident, f"webhook {action.kind} ({action.number} of at most "
                 f"{d.config.max_webhook_messages})", pending)
        elif isinstance(action, notify.UploadCharts):
            await _upload_charts(d, new, incident)
    await _record_history(d, alert, new)
    return new


def _silenced(notice: Notice, held: list[str], incident: Incident) -> Notice:
    """Nothing is sent: the notice stays as it was (still due: once the silences end,
    a still-firing incident is notified), marked with the silences holding it."""
    fresh = [sid for sid in held if sid not in notice.silenced_by]
    if fresh:
        telemetry.NOTIFICATIONS_SILENCED.labels(severity=incident.severity).inc()
        logger.info("incident %s (%s, %s): notification silenced by %s", incident.id,
                    incident.service, incident.state, ", ".join(held))
    ever = notice.silenced_ever + tuple(s for s in held if s not in notice.silenced_ever)
    return replace(notice, silenced_by=tuple(held), silenced_ever=ever)


def _print(text: str) -> None:
    print(text, flush=True)


def _log(incident: Incident, what: str, pending: bool) -> None:
    logger.info("incident %s (%s, %s): %s%s", incident.id, incident.service, incident.state,
                what, " [LLM analysis pending]" if pending else "")


async def _record_history(d: Delivery, alert: Alert, notice: Notice) -> None:
    try:
        await d.history.record(alert, notice.root_ts, channel=notice.channel_id)
    except DeliveryError as exc:
        telemetry.REDIS_ERRORS.inc()
        logger.warning("could not record incident %s in Redis: %s", alert.incident.id, exc)


# --- the agent ----------------------------------------------------------------------


def _fold(state: NotifyState, event: EventT[bytes], now: float) -> NotifyState:
    """Fold one input record into the state."""
    topic = event.message.topic
    if topic == topic_name(INCIDENTS):
        (incident,) = decode_records(event.value, Incident)
        return state.with_incident(incident, now)
    if topic == topic_name(ALERTS):
        (alert,) = decode_records(event.value, Alert)
        return state.with_analysis(alert.incident, alert.analysis.model_dump(mode="json"), now)
    try:
        control = json.loads(event.value or b"")
    except ValueError as exc:
        raise BadRecord(f"control record is not JSON: {exc}") from None
    if not isinstance(control, dict) or control.get("kind") not in ("tick", "action"):
        raise BadRecord("notify control record needs kind 'tick' or 'action'")
    if control["kind"] == "action":
        note, incident_id = control.get("note"), control.get("incident_id")
        if not isinstance(note, dict) or not isinstance(incident_id, str):
            raise BadRecord("action control record needs incident_id and note")
        return state.with_action(incident_id, note, now)
    return state


async def process(event: EventT[bytes], d: Delivery) -> None:
    """Fold one record in, then send what is due for the service's incidents."""
    key = event.message.key
    if not key:
        raise BadRecord("record has no key (the service)")
    now = time.time()
    old = notifications.get(key)
    state = _fold(NotifyState.from_dict(old), event, now)
    notices = dict(state.notices)
    for incident_id, notice in state.notices.items():
        notices[incident_id] = await execute(d, key, notice, now)
    new = notify.forget(NotifyState(notices), now, d.config)
    data = new.to_dict()
    if data != old:
        notifications[key] = data
    _remember_due(key, new, d.config)


def _remember_due(key: bytes, state: NotifyState, config: NotifyConfig) -> None:
    """Keep the service's next due time for the timer (no table scan per tick)."""
    due = [t for t in (notify.due_at(n, config) for n in state.notices.values())
           if t is not None]
    if due:
        _due[key] = min(due)
    else:
        _due.pop(key, None)


@app.agent(notify_input, name="notifier")
async def notify_incidents(stream: StreamT[bytes]) -> None:
    """Notify the on-call team (see module docstring)."""
    d = delivery()
    await d.start()
    try:
        await each_record(stream, STAGE, partial(process, d=d))
    finally:
        await d.aclose()


_last_tick: dict[bytes, float] = {}
#: Next due time (wall s) per local service, kept by :func:`process`; rebuilt from the
#: table every :data:`RESCAN_S` (after a restart or a rebalance it starts empty).
_due: dict[bytes, float] = {}
_last_scan = [0.0]
#: How often the timer rebuilds :data:`_due` from the local table partitions (s).
RESCAN_S = 30.0


@app.timer(interval=0.5)
async def notify_timer() -> None:
    """Send a tick for each local service with a notification due (wall clock)."""
    if app.rebalancing:
        return
    d = delivery()
    now = time.time()
    if now - _last_scan[0] >= RESCAN_S:
        _last_scan[0] = now
        _due.clear()
        for key, value in list(notifications.items()):
            _remember_due(key, NotifyState.from_dict(value), d.config)
    tick_s = settings().notify_tick_s
    for key, due in list(_due.items()):
        if due > now or now - _last_tick.get(key, 0.0) < tick_s:
            continue
        _last_tick[key] = now
        body = json.dumps({"kind": "tick", "wall": now}).encode()
        await notify_control_topic.send(key=key, value=body)
