"""Analysis agent: incidents → Ollama root-cause analysis (or the rules), off the alert path.

Consumes ``autopilot.incidents``. A record that opens or re-opens an incident is
analysed by Ollama (``/api/chat``, JSON-schema output, bounded by
``OLLAMA_TIMEOUT_S``) as soon as it arrives, so the analysis runs during the
notifier's ``group_wait``; on timeout, connection error, HTTP error or invalid output
the rule-based analysis is used instead. The result (incident + analysis) goes to
``autopilot.alerts``, where the notifier folds it into the incident's message: the
first notification never waits for it (it shows the rule-based analysis, marked "LLM
analysis pending", until this one arrives). Other incident records need no analysis
and are only counted.

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
from autopilot.app import app, settings
from autopilot.integrations.ollama import LLMGuard, OllamaClient, analyze_or_fallback
from autopilot.models import Alert, Incident, decode_records
from autopilot.streams import alerts_topic, incidents_topic

from .boundary import each_record
from .deadletter import where

logger = logging.getLogger(__name__)
STAGE = "analysis"


async def analyse(client: OllamaClient, incident: Incident) -> Alert:
    """Analyse one incident; counts LLM calls, fallbacks and latency."""
    started = time.monotonic()
    analysis, reason = await analyze_or_fallback(client, incident)
    telemetry.LLM_LATENCY.observe(time.monotonic() - started)
    if reason is None:
        telemetry.LLM_CALLS.labels(outcome="ok").inc()
    else:
        telemetry.LLM_CALLS.labels(outcome="fallback").inc()
        telemetry.LLM_FALLBACKS.labels(reason=reason.kind).inc()
    return Alert(incident=incident, analysis=analysis)


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

