"""Logs agent: error-rate windows per service, spike anomalies, recent error lines.

Consumes ``autopilot.logs.keyed`` (lists of LogEntry of one service), applies
:func:`autopilot.errorrate.step_records` (a replayed offset changes nothing) and sends
its ``error_rate`` Anomaly records to ``autopilot.anomalies``: a spike (state
``firing``), a re-send while the error rate still fires, its recovery (state
``resolved``). Each is acknowledged by the broker before the table is written, so a
crash re-sends rather than loses it. Then the batch's service-graph observations go to
:func:`autopilot.agents.groups.observe_logs` (services its error lines name, trace ids).
"""

from __future__ import annotations

import logging
from functools import partial

from autopilot.tables import error_rates
from faust.types import EventT, StreamT

from autopilot import errorrate, telemetry
from autopilot.app import app, settings
from autopilot.errorrate import ErrorRateConfig, ErrorRateState
from autopilot.models import LogEntry, decode_records
from autopilot.streams import anomalies_topic, logs_keyed_topic

from .boundary import each_record
from .groups import observe_logs
from .ingest import source_of

logger = logging.getLogger(__name__)
STAGE = "logs"


async def process(event: EventT[bytes], config: ErrorRateConfig) -> None:
    """Apply one keyed logs record (see module docstring)."""
    entries = decode_records(event.value, LogEntry)
    key = entries[0].service.encode()
    state = ErrorRateState.from_dict(error_rates.get(key))
    stream, offset = source_of(event)
    new, records = errorrate.step_records(state, entries, offset, config, stream=stream)
    if new is state:
        return  # replay
    # Publish first and wait for the broker's ack, then write the state: a crash in
    # between replays the record and re-sends the same anomaly, which the correlation
    # agent recognises and applies once. The other order could lose the anomaly.
    for anomaly, alert in records:
        if alert:  # a new episode or an escalation
            telemetry.ANOMALIES.labels(kind="error_rate", severity=anomaly.severity.value).inc()
        else:  # a re-send or the recovery
            telemetry.SIGNAL_RECORDS.labels(kind="error_rate", state=anomaly.state).inc()
        sent = await anomalies_topic.send(key=key, value=anomaly.model_dump_json().encode())
        await sent  # acknowledged by the broker
    error_rates[key] = new.to_dict()
    telemetry.SAMPLES.labels(stage=STAGE).inc(len(entries))
    # Service-graph observations: services the error lines name, trace ids (agents.groups).
    await observe_logs(entries[0].service, entries)


@app.agent(logs_keyed_topic, name="logs")
async def detect_error_spikes(stream: StreamT[bytes]) -> None:
    """Error-rate spike detection per service."""
    config = ErrorRateConfig.from_settings(settings())
    await each_record(stream, STAGE, partial(process, config=config))
