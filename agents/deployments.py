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
from typing import Any

from autopilot.tables import deployments

from autopilot import telemetry
from autopilot.app import app
from autopilot.deployments import DeploymentHistory
from autopilot.errors import BadRecord
from autopilot.models import DeploymentEvent, decode_records
from autopilot.topics import control_topic, deployments_keyed_topic

from .deadletter import dead_letter, where

logger = logging.getLogger(__name__)
STAGE = "deployments"


@app.agent(deployments_keyed_topic, name="deployments")
async def track_deployments(stream: Any) -> None:
    """Record deployments per service."""
    async for event in stream.events():
        try:
            events = decode_records(event.value, DeploymentEvent)
            key = events[0].service.encode()
            history = DeploymentHistory.from_dict(deployments.get(key))
            new = history.apply(events, event.message.offset)
            if new is not history:
                deployments[key] = new.to_dict()
                for dep in events:
                    logger.info(
                        "%s: deployment %s %s (%s) recorded",
                        where(event), dep.service, dep.version, dep.status,
                    )
                    body = {"kind": "deployment", "deployment": dep.model_dump(mode="json")}
                    await control_topic.send(key=key, value=json.dumps(body).encode())
            telemetry.RECORDS.labels(stage=STAGE).inc()
        except BadRecord as exc:
            await dead_letter(event, exc.reason, STAGE)
        except Exception as exc:
            logger.exception("%s: deployments agent failed; dead-lettering", where(event))
            await dead_letter(event, f"internal error: {type(exc).__name__}: {exc}", STAGE)
