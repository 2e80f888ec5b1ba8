"""Correlation agent: anomalies → incidents and their lifecycle, by service in event time.

Consumes ``autopilot.anomalies`` (alerts, re-sends and recoveries of each series) and
the internal ``autopilot.correlation.control`` topic (both keyed by service,
co-partitioned with the tables it reads), applies :func:`autopilot.correlation.step`
with the service's deployments and recent error lines, stores the state in
``open_incidents`` and sends Incident records (``opened``, ``updated``, ``resolved``,
``reopened``) to ``autopilot.incidents``, each also recorded on the audit trail
(:func:`autopilot.audit.incident_event`: the rule and evidence, derived from the
timeline entries the record adds; docs/audit.md). Control records on
``autopilot.correlation.control`` are ``{"kind": "deployment", "deployment": {…}}`` (a
new deployment, from the deployments agent), ``{"kind": "close_check", "wall":
epoch s}`` (from the timer) and ``{"kind": "resolve", "incident_id": …, "by": …}``
(Slack's Resolve button, from :mod:`autopilot.agents.actions`:
:func:`autopilot.correlation.resolve_manually`) and ``{"kind": "group", "group":
IncidentGroup, "evidence": {service: text}}`` (an incident-group decision, from
:mod:`autopilot.agents.groups`: :func:`autopilot.correlation.on_group`).

Every published record carries ``suspects``: the group's when the incident is in an
incident group, else :func:`autopilot.rca.rank_incident` over this worker's graph
(:func:`autopilot.agents.groups.local_graph`: the ``AUTOPILOT_SERVICE_GRAPH`` file plus
the edges seen on this worker).

Wall-clock side of the lifecycle: a timer looks, every
``AUTOPILOT_CLOSE_CHECK_INTERVAL_S``, at the incidents of this worker's partitions:
a firing one quiet longer than ``AUTOPILOT_INCIDENT_CLOSE_S`` is to be resolved as
stale, a resolved one older than ``AUTOPILOT_REOPEN_WINDOW_S`` is to be forgotten.
For each it sends a ``close_check`` control record keyed by the service; the agent
acts while processing it (tables can only be written while processing a record of
their partition).
"""

from __future__ import annotations

import json
import logging
import time
from functools import partial
from typing import Any

from autopilot.tables import deployments, error_rates, open_incidents
from faust.types import EventT, StreamT
from pydantic import ValidationError

from autopilot import correlation, rca, telemetry
from autopilot.app import app, settings
from autopilot.audit import AUTOPILOT, incident_event
from autopilot.correlation import CorrelationConfig, CorrelationState
from autopilot.deployments import DeploymentHistory
from autopilot.errorrate import ErrorRateState
from autopilot.errors import BadRecord
from autopilot.models import (
    Anomaly,
    DeploymentEvent,
    Incident,
    IncidentGroup,
    LogEntry,
    TimelineEntry,
    decode_records,
)
from autopilot.streams import control_topic, incidents_topic, raw_topic
from autopilot.topics import ANOMALIES, CORRELATION_CONTROL

from .audit import emit
from .boundary import each_record
from .deadletter import where
from .groups import local_graph

logger = logging.getLogger(__name__)
STAGE = "correlation"

correlation_input = raw_topic(ANOMALIES, CORRELATION_CONTROL)


def _context(key: bytes) -> tuple[DeploymentHistory, list[LogEntry]]:
    history = DeploymentHistory.from_dict(deployments.get(key))
    errors = ErrorRateState.from_dict(error_rates.get(key)).recent_error_entries()
    return history, errors


async def _publish(
    key: bytes, incidents: list[Incident], event: EventT[bytes],
    previous: tuple[TimelineEntry, ...] = (), actor: str = AUTOPILOT,
) -> None:
    for inc in incidents:
        if inc.group is None:  # alone (so far): its own evidence ranks the suspects
            inc = inc.model_copy(update={"suspects": rca.rank_incident(inc, local_graph())})
        telemetry.INCIDENTS.labels(status=inc.status).inc()
        change = inc.timeline[-1].text if inc.timeline else inc.trigger_reason
        logger.info(
            "%s: incident %s %s (state %s%s) for %s: severity %s, revision %d, "
            "%d signal(s)%s; publishing to the incidents topic; latest change: %s",
            where(event), inc.id, inc.status, inc.state,
            f", {inc.resolution}" if inc.resolution else "", inc.service,
            inc.severity.value, inc.revision, len(inc.signals),
            ", notify" if inc.notify else "", change,
        )
        sent = await incidents_topic.send(key=key, value=inc.model_dump_json().encode())
        await sent  # acknowledged by the broker
        await emit(incident_event(inc, previous, at=time.time(), actor=actor))
        previous = tuple(inc.timeline)


def _control(raw: bytes | None) -> dict[str, Any]:
    try:
        data = json.loads(raw or b"")
    except ValueError as exc:
        raise BadRecord(f"control record is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") not in (
            "deployment", "close_check", "resolve", "group"):
        raise BadRecord("control record needs kind 'deployment', 'close_check', 'resolve' "
                        "or 'group'")
    if data["kind"] == "resolve" and not (
            isinstance(data.get("incident_id"), str) and isinstance(data.get("by"), str)):
        raise BadRecord("resolve control record needs incident_id and by (strings)")
    return data


async def process(event: EventT[bytes], config: CorrelationConfig) -> None:
    """Apply one anomaly or control record (see module docstring)."""
    msg = event.message
    key = msg.key
    if not key:
        raise BadRecord("record has no key (the service)")
    state = CorrelationState.from_dict(open_incidents.get(key))
    history, errors = _context(key)
    now = time.time()
    previous = state.incident.timeline if state.incident else ()
    actor = AUTOPILOT
    if msg.topic == control_topic.get_topic_name():
        control = _control(event.value)
        if control.get("kind") == "deployment":
            try:
                deployment = DeploymentEvent.model_validate(control.get("deployment"))
            except ValidationError as exc:
                raise BadRecord(f"invalid control record: {exc.errors()[:3]}") from None
            new, incidents = correlation.on_deployment(
                state, deployment, source=(msg.topic, msg.offset), deployments=history,
                errors=errors, wall_now=now, config=config,
            )
        elif control.get("kind") == "group":
            try:
                group = IncidentGroup.model_validate(control.get("group"))
            except ValidationError as exc:
                raise BadRecord(f"invalid group control record: {exc.errors()[:3]}") from None
            texts = control.get("evidence")
            new, incidents = correlation.on_group(
                state, group, service=key.decode(), wall_now=now, deployments=history,
                errors=errors, config=config,
                evidence={str(k): str(v) for k, v in texts.items()}
                if isinstance(texts, dict) else None,
            )
        elif control.get("kind") == "resolve":
            actor = control["by"]
            new, incidents = correlation.resolve_manually(
                state, service=key.decode(), incident_id=control["incident_id"],
                by=control["by"], wall_now=now, deployments=history, errors=errors,
                config=config,
            )
        else:
            new, incidents = correlation.close_if_quiet(
                state, service=key.decode(), wall_now=now, deployments=history,
                errors=errors, config=config,
            )
    else:
        (anomaly,) = decode_records(event.value, Anomaly)
        new, incidents = correlation.step(
            state, anomaly, source=(msg.topic, msg.offset), deployments=history,
            errors=errors, wall_now=now, config=config,
        )
    # Publish first and wait for the broker's ack, then write the state: a crash in
    # between replays the record, which re-sends the same incident (same id and
    # revision; the notifier folds the resend in once). The other
    # order could persist the state while the incident record was lost.
    await _publish(key, incidents, event, previous, actor)
    if new is not state:
        open_incidents[key] = new.to_dict()


@app.agent(correlation_input, name="correlation")
async def correlate(stream: StreamT[bytes]) -> None:
    """Incident rules per service."""
    config = CorrelationConfig.from_settings(settings())
    await each_record(stream, STAGE, partial(process, config=config))


async def close_quiet_incidents() -> int:
    """Send a ``close_check`` for each local incident with wall-clock work due
    (:func:`autopilot.correlation.is_quiet`: a firing one quiet past the close time,
    a resolved one past the re-open window).

    Returns the number of control records sent.
    """
    config = CorrelationConfig.from_settings(settings())
    now = time.time()
    sent = 0
    for key, value in list(open_incidents.items()):
        if not value or not value.get("incident"):
            continue  # no incident: nothing to close or forget (skip the parse)
        state = CorrelationState.from_dict(value)
        if correlation.is_quiet(state, now, config):
            body = json.dumps({"kind": "close_check", "wall": now}).encode()
            await control_topic.send(key=key, value=body)
            sent += 1
    return sent


#: How often the timer wakes (s); it acts every ``AUTOPILOT_CLOSE_CHECK_INTERVAL_S``.
TIMER_TICK_S = 5.0
_last_check = [0.0]


@app.timer(interval=TIMER_TICK_S)
async def quiet_incident_timer() -> None:
    """Wall-clock stale close and forgetting of incidents (see module docstring)."""
    now = time.monotonic()
    if app.rebalancing or now - _last_check[0] < settings().close_check_interval_s:
        return
    _last_check[0] = now
    sent = await close_quiet_incidents()
    if sent:
        logger.info("sent close_check for %d quiet or expired incident(s)", sent)
