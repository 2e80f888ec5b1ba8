"""Faust events for unit tests that call an agent's ``process`` directly.

A real :class:`faust.events.Event` around a real :class:`faust.types.tuples.Message`,
so the tests pass what the agents declare (``EventT[bytes]``) and not a look-alike.
Import it inside the test, beside the agent: it loads :mod:`autopilot.app`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.events import Event
from faust.types import EventT
from faust.types.tuples import Message

__all__ = ["AckedTopic", "keyed_metrics_event", "metrics_agent_in_memory"]


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


class AckedTopic:
    """A topic whose ``send`` keeps the value in :attr:`sent` and returns a future that
    is already resolved: like Faust's FutureMessage, awaiting it waits for the broker's
    ack, which has come."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, key: bytes, value: bytes) -> asyncio.Future[None]:
        self.sent.append(value)
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        return acked


def metrics_agent_in_memory(monkeypatch: pytest.MonkeyPatch,
                            tables: dict[bytes, Any] | None = None,
                            index: dict[bytes, Any] | None = None) -> AckedTopic:
    """Point the metrics agent (:mod:`autopilot.agents.metrics`) at in-memory
    ``baselines`` and ``series_index`` tables (new empty ones unless given), no
    recent-samples store, and an :class:`AckedTopic` for its anomalies, returned."""
    from autopilot.agents import metrics as agent

    topic = AckedTopic()
    monkeypatch.setattr(agent, "baselines", {} if tables is None else tables)
    monkeypatch.setattr(agent, "series_index", {} if index is None else index)
    monkeypatch.setattr(agent, "anomalies_topic", topic)
    monkeypatch.setattr(agent, "recent_after", lambda key, stored, points: None)
    monkeypatch.setattr(agent, "forget_samples", lambda key: None)
    return topic
