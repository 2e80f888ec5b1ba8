"""Analysis agent: incidents → Ollama root-cause analysis (or the rules), off the alert path.

Consumes ``autopilot.incidents``. A record that opens or re-opens an incident is
analysed by Ollama (``/api/chat``, JSON-schema output, bounded by
``OLLAMA_TIMEOUT_S``) as soon as it arrives, so the analysis runs during the
notifier's ``group_wait``; on timeout, connection error, HTTP error, invalid output or
an answer cut at the token limit (``done_reason`` ``length``, counted as
``autopilot_llm_fallbacks_total{reason="truncated"}``) the rule-based analysis is used
instead. The result (incident + analysis) goes to
``autopilot.alerts``, where the notifier folds it into the incident's message: the
first notification never waits for it (it shows the rule-based analysis, marked "LLM
analysis pending", until this one arrives). Other incident records need no analysis
and are only counted. Each analysis is recorded on the audit trail (source, model,
latency, prompt hash: :func:`autopilot.audit.analysis_event`; docs/audit.md).

The actors share one :class:`autopilot.integrations.ollama.LLMGuard`: the circuit
breaker that skips Ollama after repeated timeouts, connection errors or a missing
model, the once-per-episode fallback warning, and the model check at start (one
warning when ``OLLAMA_MODEL`` is not pulled).

``AUTOPILOT_ANALYSIS_CONCURRENCY`` analyses run at once (Faust agent concurrency:
that many actors share the stream, each with its own Ollama client), so one slow
analysis does not hold back the others. The value is read when this module is
imported (Faust's agent discovery, after the app was configured): an
``on_after_configured`` hook would never fire, because importing the tables
configures the app before this module is imported.
"""

from __future__ import annotations

import logging
import time
from functools import partial

from faust.types import EventT, StreamT

from autopilot import telemetry
from autopilot.analysis import build_messages, fallback_analysis
from autopilot.app import app, settings
from autopilot.audit import analysis_event, prompt_sha256
from autopilot.grounding import apply_grounding, check_grounding, evidence_top_suspect
from autopilot.integrations.ollama import LLMGuard, OllamaClient, analyze_or_fallback
from autopilot.models import Alert, Analysis, Incident, decode_records
from autopilot.streams import alerts_topic, incidents_topic

from .audit import emit
from .boundary import each_record
from .deadletter import where

logger = logging.getLogger(__name__)
STAGE = "analysis"


async def analyse(client: OllamaClient, incident: Incident) -> Alert:
    """Analyse one incident; counts LLM calls, fallbacks and latency, and records the
    analysis in the audit trail (:func:`autopilot.audit.analysis_event`)."""
    started = time.monotonic()
    analysis, reason = await analyze_or_fallback(client, incident)
    latency = time.monotonic() - started
    telemetry.LLM_LATENCY.observe(latency)
    if reason is None:
        telemetry.LLM_CALLS.labels(outcome="ok").inc()
        analysis = ground(analysis, incident)
    else:
        telemetry.LLM_CALLS.labels(outcome="fallback").inc()
        telemetry.LLM_FALLBACKS.labels(reason=reason.kind).inc()
    await emit(analysis_event(
        incident, analysis, latency_s=latency,
        prompt_hash=prompt_sha256(build_messages(incident)), model=client.model,
        fallback_reason=None if reason is None else str(reason), used=True,
        at=time.time(),
    ))
    return Alert(incident=incident, analysis=analysis)


def ground(analysis: Analysis, incident: Incident) -> Analysis:
    """Check an LLM analysis against the incident's evidence (:mod:`autopilot.grounding`)
    and apply the verdict: the text stays verbatim, unsupported actions are dropped, an
    unverified answer carries the rule-based root cause, and an answer whose root cause
    names another service than the evidence's top suspect carries that suspect
    (``evidence_top_suspect``; the ranking never changes); counted by outcome."""
    result = check_grounding(analysis, incident)
    telemetry.LLM_GROUNDING.labels(
        outcome="grounded" if result.grounded else "unverified").inc()
    if result.dropped_actions:
        telemetry.LLM_GROUNDING_DROPPED_ACTIONS.inc(len(result.dropped_actions))
    if not result.grounded:
        logger.warning(
            "incident %s: the LLM analysis is unverified: names not in the evidence %s, "
            "%d action(s) dropped; shown marked unverified next to the rule-based analysis",
            incident.id, list(result.unknown_names), len(result.dropped_actions))
    rules = fallback_analysis(incident, deployment_window_s=settings().deployment_window_s)
    grounded = apply_grounding(analysis, result, rules)
    top = evidence_top_suspect(grounded, incident)
    if top is not None:
        logger.info("incident %s: the LLM's root cause names another service than the "
                    "evidence's top suspect %s; both are shown", incident.id, top)
        grounded = grounded.model_copy(update={"evidence_top_suspect": top})
    return grounded


_CONCURRENCY = settings().analysis_concurrency
#: Shared by the actors of this worker (breaker, warnings, model check).
_GUARD: list[LLMGuard] = []


def guard() -> LLMGuard:
    """The worker's :class:`LLMGuard` (built on first use)."""
    if not _GUARD:
        _GUARD.append(LLMGuard.from_settings(settings()))
    return _GUARD[0]


#: Incident statuses that start an analysis.
ANALYSED = frozenset({"opened", "reopened"})


async def process(event: EventT[bytes], client: OllamaClient) -> None:
    """Analyse one incident record if it opens or re-opens the incident."""
    (incident,) = decode_records(event.value, Incident)
    if incident.status not in ANALYSED:
        return
    alert = await analyse(client, incident)
    logger.info(
        "%s: incident %s analysed by %s: %s",
        where(event), incident.id, alert.analysis.source,
        alert.analysis.root_cause.description[:200],
    )
    await alerts_topic.send(key=event.message.key, value=alert.model_dump_json().encode())


@app.agent(incidents_topic, name="analysis", concurrency=_CONCURRENCY)
async def analyse_incidents(stream: StreamT[bytes]) -> None:
    """Analyse opened and re-opened incidents and publish their analyses."""
    client = OllamaClient(settings(), guard=guard())
    await client.start()
    try:
        await client.guard.check_model(client)  # once per worker; warns, never raises
        await each_record(stream, STAGE, partial(process, client=client))
    finally:
        await client.aclose()

