"""Incident groups across services and the service graph (docs/rca.md).

Four agents and the ingest side's edge observations:

1. **Forwarder** (``groups-forwarder``, on ``autopilot.incidents``, keyed by service):
   each Incident record becomes a :class:`autopilot.incident_groups.MemberUpdate` (its
   evidence from :func:`autopilot.rca.evidence_from_incident`) sent as ``{"kind":
   "member", …}`` to ``autopilot.incident.groups`` keyed ``b"groups"``. A record whose
   state, times and evidence equal the last one forwarded for that incident (the
   records :func:`autopilot.correlation.on_group` publishes: only their ``group``
   differs) is not forwarded again, so a group decision cannot feed itself.
2. **Grouping** (``groups``, on the ONE-partition ``autopilot.incident.groups``): keeps
   the table ``incident_groups`` (:class:`~autopilot.incident_groups.GroupState`) and
   the table ``service_graph`` (the learned :class:`~autopilot.servicegraph.ServiceGraph`;
   the ``AUTOPILOT_SERVICE_GRAPH`` file is merged in when used), applies
   :func:`autopilot.incident_groups.step` to each member record (and
   :func:`~autopilot.incident_groups.step_signal` to each signal record) and sends, for each
   group that changed, ``{"kind": "group", "group": IncidentGroup, "evidence":
   {service: text}}`` to ``autopilot.correlation.control`` keyed by EACH member
   service: the correlation agent that owns the service applies it
   (:func:`autopilot.correlation.on_group`), wherever that is. ``{"kind": "edge",
   "caller", "callee", "source", "at"}`` records add to the learned graph. One
   partition: every grouping decision is made by one worker, in one order.
3. **Trace linker** (``traces``, on ``autopilot.traces``, keyed by trace id): a
   :class:`~autopilot.servicegraph.TraceLinker` per worker (in memory) turns log lines'
   trace and span ids into caller → callee edges. Each record is one service's spans
   of one trace from one batch of log lines (:class:`~autopilot.models.TraceContext`).
4. **Anomaly forwarder** (``groups-signals``, on ``autopilot.anomalies``, keyed by
   service): each firing or resolved Anomaly record becomes a
   :class:`autopilot.incident_groups.SignalUpdate` sent as ``{"kind": "signal", …}`` to
   the groups topic, so a service with anomalies but no incident of its own can be
   ranked as a suspect of a group near it (it gets no message: it is no member).
   Rate-limited per series: a firing record of a series already sent as firing less
   than ``AUTOPILOT_SIGNAL_RESEND_S`` of event time before is not sent (unless its
   z-score doubled); resolved records always are. The grouping agent applies
   :func:`autopilot.incident_groups.step_signal`.

Edge observations (:func:`observe_edges`, from the metrics agent's labels
``AUTOPILOT_PEER_LABELS`` and the logs agent's error lines naming a service) go to the
groups topic, each edge at most once per :data:`EDGE_RESEND_S` per worker, and into
this worker's own graph (:func:`local_graph`: the file plus the edges seen here), which
ranks the suspects of incidents that are in no group yet.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from collections import OrderedDict
from functools import lru_cache, partial
from typing import Any

from autopilot.tables import incident_groups, service_graph
from faust.types import EventT, StreamT

from autopilot import rca
from autopilot.app import app, settings
from autopilot.errors import BadRecord
from autopilot.formats.levels import is_error_level
from autopilot.incident_groups import (
    GroupConfig,
    GroupState,
    MemberUpdate,
    SignalUpdate,
    step,
    step_signal,
)
from autopilot.models import (
    Anomaly,
    Incident,
    IncidentGroup,
    LogEntry,
    TraceContext,
    TraceSpan,
    decode_records,
)
from autopilot.servicegraph import (
    ServiceGraph,
    TraceLinker,
    load_graph_file,
    named_services,
)
from autopilot.streams import (
    anomalies_topic,
    control_topic,
    incident_groups_topic,
    incidents_topic,
    traces_topic,
)

from .boundary import each_record

logger = logging.getLogger(__name__)

GROUPS_KEY = b"groups"
GRAPH_KEY = b"graph"
#: An edge already sent by this worker is sent again after this long (s, wall clock).
EDGE_RESEND_S = 600.0
#: Edges remembered as sent, and incidents remembered as forwarded, per worker.
MAX_REMEMBERED = 10_000
#: Spans per autopilot.traces record (TraceContext's limit; a longer run is split).
MAX_TRACE_SPANS = 256
EDGE_SOURCES = ("config", "label", "trace", "logs", "learned")

_sent_edges: OrderedDict[tuple[str, str, str], float] = OrderedDict()
_forwarded: OrderedDict[str, str] = OrderedDict()
#: series → (event time, |z|) of the last firing signal record sent by this worker.
_signals_sent: OrderedDict[str, tuple[float, float]] = OrderedDict()
_seen_here = ServiceGraph()
_linker = TraceLinker()


@lru_cache(maxsize=1)
def config_graph() -> ServiceGraph:
    """The ``AUTOPILOT_SERVICE_GRAPH`` file's graph (empty when unset); read once (the
    start-up check has refused a wrong file already)."""
    path = settings().service_graph
    return load_graph_file(path) if path else ServiceGraph()


def local_graph() -> ServiceGraph:
    """This worker's graph: the file's edges plus the edges seen on this worker (a copy)."""
    graph = ServiceGraph.from_dict(config_graph().to_dict())
    graph.merge(_seen_here)
    return graph


def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > MAX_REMEMBERED:
        cache.popitem(last=False)


async def observe_edges(pairs: list[tuple[str, str]], source: str, at: float) -> int:
    """Record caller → callee ``pairs`` seen by this worker (``source``: ``label``,
    ``trace`` or ``logs``; ``at``: event time, epoch s) and send each to the grouping
    agent unless this worker sent it less than :data:`EDGE_RESEND_S` ago.

    Returns:
        The number of edge records sent.
    """
    now = time.monotonic()
    sent = 0
    for caller, callee in pairs:
        if caller == callee:
            continue
        _seen_here.observe(caller, callee, source, at)  # type: ignore[arg-type]
        key = (caller, callee, source)
        last = _sent_edges.get(key)
        if last is not None and now - last < EDGE_RESEND_S:
            continue
        _remember(_sent_edges, key, now)
        body = {"kind": "edge", "caller": caller, "callee": callee, "source": source, "at": at}
        await incident_groups_topic.send(key=GROUPS_KEY, value=json.dumps(body).encode())
        sent += 1
    return sent


def _followed(trace_id: str) -> bool:
    """Whether ``trace_id`` is in the ``AUTOPILOT_TRACE_SAMPLE`` fraction (by a hash of
    the id, so every worker and every line of the trace agree)."""
    fraction = settings().trace_sample
    return fraction >= 1.0 or (zlib.crc32(trace_id.encode()) % 10_000) < fraction * 10_000


async def observe_logs(service: str, entries: list[LogEntry]) -> None:
    """Edge observations of a batch of one service's log lines: services its error lines
    name (source ``logs``) and, for lines with a ``trace_id`` label, one
    :class:`~autopilot.models.TraceContext` record per trace id of the batch (its spans
    in log order, at most 256 per record) to ``autopilot.traces`` for the trace
    linker."""
    known: set[str] | None = None
    named: list[tuple[str, str]] = []
    spans: dict[str, list[TraceSpan]] = {}
    at = 0.0
    for entry in entries:
        trace_id = entry.labels.get("trace_id")
        if trace_id and _followed(trace_id):
            spans.setdefault(trace_id, []).append(TraceSpan(
                span_id=entry.labels.get("span_id"),
                parent_span_id=entry.labels.get("parent_span_id"),
                at=entry.timestamp.timestamp()))
        if is_error_level(entry.level):
            if known is None:
                known = config_graph().services() | _seen_here.services()
            for callee in named_services(entry.message, known, service):
                if (service, callee) not in named:
                    named.append((service, callee))
                    at = max(at, entry.timestamp.timestamp())
    for trace_id, trace_spans in spans.items():
        for i in range(0, len(trace_spans), MAX_TRACE_SPANS):
            record = TraceContext(trace_id=trace_id, service=service,
                                  spans=trace_spans[i:i + MAX_TRACE_SPANS])
            await traces_topic.send(key=trace_id.encode(),
                                    value=record.model_dump_json().encode())
    if named:
        await observe_edges(named, "logs", at)


# ---------------------------------------------------------------- 1. forwarder


def member_update(incident: Incident) -> MemberUpdate:
    """The grouping agent's view of one Incident record."""
    return MemberUpdate(
        service=incident.service,
        incident_id=incident.id,
        state=incident.state,
        opened_at=incident.opened_at.timestamp(),
        updated_at=incident.updated_at.timestamp(),
        closed_at=incident.closed_at.timestamp() if incident.closed_at else None,
        evidence=rca.evidence_from_incident(incident, local_graph().services()),
    )


async def forward(event: EventT[bytes]) -> None:
    """Forward one Incident record as a member update (see module docstring)."""
    try:
        incident = Incident.model_validate_json(event.value or b"")
    except ValueError as exc:
        raise BadRecord(f"incident record does not validate: {exc}") from None
    update = member_update(incident)
    body = update.to_dict()
    fingerprint = json.dumps(body, sort_keys=True)
    if _forwarded.get(incident.id) == fingerprint:
        return  # only the group changed (on_group's record) or a re-send: nothing new
    sent = await incident_groups_topic.send(
        key=GROUPS_KEY, value=json.dumps({"kind": "member", **body}).encode())
    await sent
    _remember(_forwarded, incident.id, fingerprint)


@app.agent(incidents_topic, name="groups-forwarder")
async def forward_incidents(stream: StreamT[bytes]) -> None:
    """Incident records → member updates on the one-partition groups topic."""
    await each_record(stream, "groups-forwarder", forward)


# ---------------------------------------------------------------- 4. anomaly forwarder


def signal_due(anomaly: Anomaly, resend_s: float) -> bool:
    """Whether this worker sends the Anomaly record on as anomaly evidence (module
    docstring, agent 4), remembering it when so. ``resend_s``: seconds of event time."""
    key = f"{anomaly.service}\x00{anomaly.series or anomaly.metric_name}"
    at = anomaly.detected_at.timestamp()
    if anomaly.state != "firing":
        _signals_sent.pop(key, None)
        return True
    last = _signals_sent.get(key)
    if (last is not None and 0 <= at - last[0] < resend_s
            and abs(anomaly.z_score) < 2 * last[1]):
        return False
    _remember(_signals_sent, key, (at, abs(anomaly.z_score)))
    return True


async def forward_signal(event: EventT[bytes]) -> None:
    """Forward one Anomaly record as a signal update when due (:func:`signal_due`)."""
    resend_s = settings().signal_resend_s
    for anomaly in decode_records(event.value, Anomaly):
        if not signal_due(anomaly, resend_s):
            continue
        body = {"kind": "signal", **SignalUpdate.from_anomaly(anomaly).to_dict()}
        await incident_groups_topic.send(key=GROUPS_KEY, value=json.dumps(body).encode())


@app.agent(anomalies_topic, name="groups-signals")
async def forward_anomalies(stream: StreamT[bytes]) -> None:
    """Anomaly records → anomaly evidence on the one-partition groups topic."""
    await each_record(stream, "groups-signals", forward_signal)


# ---------------------------------------------------------------- 2. grouping


def group_graph() -> ServiceGraph:
    """The grouping agent's graph: the file's edges plus the learned ones (table)."""
    graph = ServiceGraph.from_dict(config_graph().to_dict())
    graph.merge(ServiceGraph.from_dict(service_graph.get(GRAPH_KEY)))
    return graph


def open_groups() -> list[IncidentGroup]:
    """The open incident groups of this worker's ``incident_groups`` table (the owner of
    its one partition holds them all), each with its suspects ranked now, oldest first."""
    state = GroupState.from_dict(incident_groups.get(GROUPS_KEY))
    graph = group_graph()
    config = GroupConfig.from_settings(settings())
    out = []
    for g in state.groups.values():
        published = state.group_of(g.primary)
        if published is None:
            continue
        evidence = state.evidence_of(g.id, graph, config)
        out.append(published.model_copy(update={
            "suspects": rca.rank_suspects(evidence, graph, limit=config.suspects,
                                          config=config.rca)}))
    return sorted(out, key=lambda g: (min(m.opened_at for m in g.members), g.id))


def _evidence_text(update: MemberUpdate) -> str:
    """The member's top evidence in a few words: ``latency_ms z=6.1, 20 error lines``."""
    ev = update.evidence
    parts = []
    signals = sorted(ev.signals, key=lambda s: (-abs(s.z), s.metric_name))
    parts += [f"{s.metric_name} z={s.z:.1f}" for s in signals[:2]]
    if ev.error_lines:
        parts.append(f"{ev.error_lines} error line{'s' if ev.error_lines != 1 else ''} so far")
    if ev.named:
        parts.append("names " + ", ".join(ev.named[:3]))
    return ", ".join(parts)


def _decode(raw: bytes | None) -> dict[str, Any]:
    try:
        data = json.loads(raw or b"")
    except ValueError as exc:
        raise BadRecord(f"incident-group record is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") not in ("member", "edge", "signal"):
        raise BadRecord("incident-group record needs kind 'member', 'edge' or 'signal'")
    return data


async def group(event: EventT[bytes], config: GroupConfig) -> None:
    """Apply one record of the groups topic (see module docstring)."""
    data = _decode(event.value)
    if data["kind"] == "edge":
        caller, callee, source = data.get("caller"), data.get("callee"), data.get("source")
        at = data.get("at")
        if not (isinstance(caller, str) and isinstance(callee, str) and caller and callee
                and source in EDGE_SOURCES and isinstance(at, int | float)):
            raise BadRecord("edge record needs caller, callee (strings), source "
                            f"(one of {', '.join(EDGE_SOURCES)}) and at (epoch s)")
        graph = ServiceGraph.from_dict(service_graph.get(GRAPH_KEY))
        if graph.observe(caller, callee, source, float(at)):
            service_graph[GRAPH_KEY] = graph.to_dict()
        return
    if data["kind"] == "signal":
        try:
            signal = SignalUpdate.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRecord(f"signal record does not validate: {exc}") from None
        state = GroupState.from_dict(incident_groups.get(GROUPS_KEY))
        new, changed = step_signal(state, signal, group_graph(), config, signal.at)
    else:
        try:
            update = MemberUpdate.from_dict({k: v for k, v in data.items() if k != "kind"})
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRecord(f"member record does not validate: {exc}") from None
        state = GroupState.from_dict(incident_groups.get(GROUPS_KEY))
        new, changed = step(state, update, group_graph(), config, update.updated_at)
    texts = {m.service: _evidence_text(m) for m in new.members.values()} if changed else {}
    # Send first, then write the state: a crash in between re-applies the record and
    # re-sends the same groups, which on_group applies once (equal group: no change).
    for g in changed:
        await send_group(g, texts)
    incident_groups[GROUPS_KEY] = new.to_dict()


async def send_group(g: IncidentGroup, texts: dict[str, str]) -> None:
    """Send the group to every member's correlation agent (keyed by the member service)."""
    members = {m.service for m in g.members}
    body = json.dumps({"kind": "group", "group": g.model_dump(mode="json"),
                       "evidence": {s: t for s, t in texts.items() if s in members}}).encode()
    futures = [await control_topic.send(key=s.encode(), value=body) for s in sorted(members)]
    for fut in futures:
        await fut
    logger.info("incident group %s: primary %s, members %s, top suspect %s", g.id,
                g.primary_service, ", ".join(sorted(members)),
                g.suspects[0].service if g.suspects else "none")


@app.agent(incident_groups_topic, name="groups")
async def group_incidents(stream: StreamT[bytes]) -> None:
    """Incident groups and the learned service graph (one partition)."""
    config = GroupConfig.from_settings(settings())
    await each_record(stream, "groups", partial(group, config=config))


# ---------------------------------------------------------------- 3. trace linker


async def link(event: EventT[bytes]) -> None:
    """Apply one trace-context record (see module docstring)."""
    try:
        record = TraceContext.model_validate_json(event.value or b"")
    except ValueError as exc:
        raise BadRecord(f"not a trace-context record: {exc}") from None
    pairs: list[tuple[str, str]] = []
    for span in record.spans:
        for pair in _linker.observe(record.trace_id, span.span_id, span.parent_span_id,
                                    record.service, span.at):
            if pair not in pairs:
                pairs.append(pair)
    if pairs:
        await observe_edges(pairs, "trace", max(span.at for span in record.spans))


@app.agent(traces_topic, name="traces")
async def link_traces(stream: StreamT[bytes]) -> None:
    """Caller → callee edges from the trace and span ids of log lines."""
    await each_record(stream, "traces", link)
