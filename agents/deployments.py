"""Deployments agent: the recent deployments of each service.

Consumes ``autopilot.deployments.keyed`` and keeps the newest deployments per service
in the ``deployments`` table, which the correlation agent reads (same partition).
Each new deployment is also announced to the correlation agent on
``autopilot.correlation.control`` (``{"kind": "deployment", "deployment": {…}}``), so
anomalies that were processed before it still meet it (rule 2 of
:mod:`autopilot.correlation`, in event time whatever the arrival order).
"""

from __future__ import annotations

import json
import logging

from autopilot.tables import deployments
from faust.types import EventT, StreamT

from autopilot.app import app
from autopilot.deployments import DeploymentHistory
from autopilot.models import DeploymentEvent, decode_records
from autopilot.streams import control_topic, deployments_keyed_topic

from .boundary import each_record
from .deadletter import where
from .ingest import source_of

logger = logging.getLogger(__name__)
STAGE = "deployments"


async def process(event: EventT[bytes]) -> None:
    """Apply one keyed deployments record (see module docstring)."""
    events = decode_records(event.value, DeploymentEvent)
    key = events[0].service.encode()
    history = DeploymentHistory.from_dict(deployments.get(key))
    source, offset = source_of(event)
    new = history.apply(events, offset, stream=source)
    if new is not history:
        deployments[key] = new.to_dict()
        for dep in events:
            logger.info(
                "%s: deployment %s %s (%s) recorded",
                where(event), dep.service, dep.version, dep.status,
            )
            body = {"kind": "deployment", "deployment": dep.model_dump(mode="json")}
            await control_topic.send(key=key, value=json.dumps(body).encode())


@app.agent(deployments_keyed_topic, name="deployments")
async def track_deployments(stream: StreamT[bytes]) -> None:
    """Record deployments per service."""
    await each_record(stream, STAGE, process)
