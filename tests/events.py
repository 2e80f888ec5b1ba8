"""Faust events for unit tests that call an agent's ``process`` directly.

A real :class:`faust.events.Event` around a real :class:`faust.types.tuples.Message`,
so the tests pass what the agents declare (``EventT[bytes]``) and not a look-alike.
Import it inside the test, beside the agent: it loads :mod:`autopilot.app`.
"""

from __future__ import annotations

from faust.events import Event
from faust.types import EventT
from faust.types.tuples import Message

__all__ = ["keyed_metrics_event"]


def keyed_metrics_event(value: bytes, offset: int) -> EventT[bytes]:
    """Record ``value`` at ``autopilot.metrics.keyed[0]@offset``, as the ingest hop
    writes it: its ``x-autopilot-source`` header names ``autopilot.metrics[0]@offset``."""
    from autopilot.app import app
    from autopilot.replay import SOURCE_HEADER, format_source

    headers = [(SOURCE_HEADER, format_source("autopilot.metrics", 0, offset))]
    message = Message(
        topic="autopilot.metrics.keyed", partition=0, offset=offset, timestamp=0.0,
        timestamp_type=0, headers=headers, key=None, value=value, checksum=None,
    )
    return Event(app, None, value, headers, message)
