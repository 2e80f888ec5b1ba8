"""Silences over HTTP, compatible with Alertmanager's API v2 (so ``amtool`` works).

- ``POST /api/v2/silences``: create a silence, or update one when the body has an
  ``id``; answers ``{"silenceID": …}``, 400 with Alertmanager's message (a JSON
  string, as Alertmanager answers) when invalid, 404 when the ``id`` is unknown;
- ``GET /api/v2/silences``: every silence (``gettableSilence``), optionally only those
  matching every repeated ``filter`` (``service="cart-api"``);
- ``GET /api/v2/silence/{silence_id}``: one, 404 when unknown;
- ``DELETE /api/v2/silence/{silence_id}``: expire it (200, empty body).

A change is produced to ``autopilot.silences`` (acknowledged by the broker) and then
the view waits, at most :data:`VISIBLE_WAIT_S`, until this worker's copy of the global
``silences`` table shows it, so a query right after an ``amtool silence add`` sees the
new silence. States are computed by wall clock when answering. Nothing goes to Slack.
The guard (API keys, rate and body limits) applies as to every non-public path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError
from faust.web import View

from autopilot import telemetry
from autopilot.agents.silences import all_silences
from autopilot.app import settings
from autopilot.silences import (
    InvalidSilence,
    Silence,
    expire,
    filter_silences,
    parse_filter,
    parse_postable,
)
from autopilot.streams import silences_topic
from autopilot.tables import silences

from .ingest import broker_gate
from .middleware import read_body

__all__ = ["SilenceById", "Silences", "VISIBLE_WAIT_S"]

logger = logging.getLogger(__name__)

#: Longest wait (s) for the broker's acknowledgement, then again for this worker's
#: table to show the change, before answering.
VISIBLE_WAIT_S = 5.0


def _stored(silence_id: str) -> Silence | None:
    value = silences.get(silence_id.encode())
    return Silence.from_dict(value) if value else None


async def _publish(silence: Silence, action: str) -> None:
    """Produce the silence and wait until this worker's table shows it (bounded)."""
    broker_gate()
    key = silence.id.encode()
    fut = await silences_topic.send(key=key, value=json.dumps(silence.to_dict()).encode())
    await asyncio.wait_for(fut, VISIBLE_WAIT_S)
    telemetry.SILENCE_CHANGES.labels(action=action).inc()
    deadline = time.monotonic() + VISIBLE_WAIT_S
    while time.monotonic() < deadline:
        value = silences.get(key)
        if value and float(value.get("updated_at", 0.0)) >= silence.updated_at:
            return
        await asyncio.sleep(0.05)
    logger.warning("silence %s acknowledged but not in this worker's table after %.0f s",
                   silence.id, VISIBLE_WAIT_S)


def _unavailable(web: Any, exc: Exception) -> Any:
    return web.json({"error": f"broker did not acknowledge the silence: {exc!r}; retry"},
                    status=503, headers={"Retry-After": "1"})


class Silences(View):
    """``GET`` and ``POST /api/v2/silences``."""

    async def get(self, request: Any) -> Any:
        """Every silence, or those matching each ``filter`` (gettableSilences)."""
        try:
            filters = [parse_filter(f) for f in request.query.getall("filter", [])]
        except InvalidSilence as exc:
            return self.json(str(exc), status=400)
        now = time.time()
        found = filter_silences(all_silences(), filters)
        order = {"active": 0, "pending": 1, "expired": 2}
        found.sort(key=lambda s: (order[s.state(now)], s.ends_at if s.state(now) != "expired"
                                  else -s.ends_at))
        return self.json([s.gettable(now) for s in found])

    async def post(self, request: Any) -> Any:
        """Create, or update by ``id``; answers ``{"silenceID": id}``."""
        try:
            body = json.loads(await read_body(request, settings().max_body_bytes) or b"null")
        except ValueError as exc:
            return self.json(f"body is not JSON: {exc}", status=400)
        now = time.time()
        existing = None
        if isinstance(body, dict) and body.get("id"):
            existing = _stored(str(body["id"]))
            if existing is None:
                return self.json(f"silence {body['id']} not found", status=404)
        try:
            silence = parse_postable(body, now, existing)
        except InvalidSilence as exc:
            return self.json(str(exc), status=400)
        try:
            await _publish(silence, "updated" if existing else "created")
        except (TimeoutError, KafkaError, ProducerSendError) as exc:
            return _unavailable(self, exc)
        logger.info("silence %s %s by %s", silence.id, "updated" if existing else "created",
                    silence.created_by)
        return self.json({"silenceID": silence.id})


class SilenceById(View):
    """``GET`` and ``DELETE /api/v2/silence/{silence_id}``."""

    async def get(self, request: Any, silence_id: str) -> Any:
        """One silence (gettableSilence), 404 when unknown."""
        silence = _stored(silence_id)
        if silence is None:
            return self.json(f"silence {silence_id} not found", status=404)
        return self.json(silence.gettable(time.time()))

    async def delete(self, request: Any, silence_id: str) -> Any:
        """Expire the silence (an expired one stays as it is); 404 when unknown."""
        silence = _stored(silence_id)
        if silence is None:
            return self.json(f"silence {silence_id} not found", status=404)
        expired = expire(silence, time.time())
        if expired is not silence:
            try:
                await _publish(expired, "expired")
            except (TimeoutError, KafkaError, ProducerSendError) as exc:
                return _unavailable(self, exc)
            logger.info("silence %s expired", silence.id)
        return self.bytes(b"", status=200)
