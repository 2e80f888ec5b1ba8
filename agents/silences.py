"""Silences agent: ``autopilot.silences`` → the global ``silences`` table.

The HTTP views (:mod:`autopilot.web.silences`) produce each created, updated or
expired silence to ``autopilot.silences`` (one partition, keyed by silence id, value
:meth:`autopilot.silences.Silence.to_dict`). This agent validates the record and
writes it to the ``silences`` GlobalTable, whose changelog every worker reads, so the
notifier of every worker sees every silence (:func:`active_silences`). A record older
than the stored one (``updated_at``) is ignored, so a replay changes nothing. Nothing
is posted to Slack.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from autopilot.tables import silences
from faust.types import EventT, StreamT

from autopilot.app import app
from autopilot.errors import BadRecord
from autopilot.silences import InvalidSilence, Silence
from autopilot.streams import silences_topic

from .boundary import each_record

logger = logging.getLogger(__name__)
STAGE = "silences"


def decode_silence(value: bytes | None) -> Silence:
    """A record of ``autopilot.silences`` → :class:`Silence`.

    Raises:
        BadRecord: not JSON or not a silence (the record is dead-lettered).
    """
    try:
        return Silence.from_dict(json.loads(value or b""))
    except (ValueError, KeyError, TypeError, InvalidSilence) as exc:
        raise BadRecord(f"not a silence record: {exc}") from None


async def apply(event: EventT[bytes]) -> None:
    """Store the silence unless the table holds a newer version of it."""
    silence = decode_silence(event.value)
    key = silence.id.encode()
    if key != event.message.key:
        raise BadRecord("silence record key is not its id")
    old: dict[str, Any] | None = silences.get(key)
    if old is not None and float(old.get("updated_at", 0.0)) > silence.updated_at:
        return
    silences[key] = silence.to_dict()
    logger.info("silence %s stored (%s, %s)", silence.id,
                " ".join(m.text() for m in silence.matchers), silence.comment[:80])


def all_silences() -> list[Silence]:
    """Every silence in this worker's copy of the table (expired ones too)."""
    found = []
    for value in list(silences.values()):
        if value:
            try:
                found.append(Silence.from_dict(value))
            except (ValueError, KeyError, TypeError) as exc:
                logger.warning("unreadable silence in the table skipped: %s", exc)
    return found


@app.agent(silences_topic, name="silences")
async def store_silences(stream: StreamT[bytes]) -> None:
    """Apply silence records to the global table (see module docstring)."""
    await each_record(stream, STAGE, apply)
