"""Probe and telemetry views: ``/health``, ``/ready``, ``/metrics``.

=================================  ====================================================
``GET /health``                    liveness: 200 ``{"status": "ok", "ready": …,
                                   "broker": …, "components": {slack, ollama, redis}}``
                                   while the worker is alive and serving (also while
                                   the broker, Slack, Ollama or Redis fail); 503 only
                                   while it stops (:func:`liveness`)
``GET /ready``                     readiness: 200 ``{"status": "ok"}`` when the broker
                                   answers, partitions are assigned, tables recovered
                                   and records are not all dead-lettered; 503
                                   ``{"status": …, "reasons": […]}`` otherwise
``GET /metrics``                   Prometheus text exposition format
=================================  ====================================================

The decisions are pure (:mod:`autopilot.health`); the worker guard
(:mod:`autopilot.agents.health`) feeds them the broker probe and the counter window.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from autopilot import health, telemetry
from autopilot.agents import health as guard
from autopilot.app import app, settings

__all__ = ["health_view", "liveness", "metrics", "readiness_now", "ready_view"]


def readiness_now() -> health.Readiness:
    """This worker's readiness (:func:`autopilot.health.readiness` on live values)."""
    s = settings()
    try:
        assigned, started = len(app.consumer.assignment()), True
    except Exception:  # consumer not started yet
        assigned, started = 0, False
    return health.readiness(
        broker=guard.BROKER,
        consumer_started=started,
        assigned=assigned,
        rebalancing=bool(app.rebalancing),
        recovering=not app.tables.recovery.completed.is_set(),  # type: ignore[attr-defined]
        dead_lettering=health.dead_letter_stages(
            guard.WINDOW.delta(), s.ready_dead_letters_min
        ),
        window_s=s.ready_window_s,
        now=time.monotonic(),
    )


def liveness() -> dict[str, Any]:
    """The body of ``/health``: readiness, broker and downstream services (window)."""
    s = settings()
    delta = guard.WINDOW.delta()
    d = functools.partial(health.counter_delta, delta)
    ready = readiness_now()
    broker = guard.BROKER
    return {
        "status": "stopping" if app.should_stop else "ok",
        "ready": ready.ready,
        "ready_status": ready.status,
        "broker": "unknown" if broker.reachable is None
        else "reachable" if broker.reachable else f"unreachable: {broker.error}",
        "window_s": s.ready_window_s,
        "components": {
            "slack": health.component_status(
                configured=bool(s.slack_webhook_url or s.slack_bot_token),
                ok=d("autopilot_slack_sends_total"),
                failed=d("autopilot_slack_failures_total")
                + d("autopilot_slack_refusals_total"),
            ),
            "ollama": health.component_status(
                configured=True,
                ok=d("autopilot_llm_calls_total", "ok"),
                failed=d("autopilot_llm_calls_total", "fallback"),
            ),
            "redis": health.component_status(
                configured=bool(s.redis_url), ok=None, failed=d("autopilot_redis_errors_total")
            ),
        },
    }


async def health_view(web: Any, request: Any) -> Any:
    """Liveness: 200 while the worker is alive and serving, with what is failing."""
    body = liveness()
    return web.json(body, status=503 if body["status"] == "stopping" else 200)


async def ready_view(web: Any, request: Any) -> Any:
    """Readiness: 200 ``{"status": "ok"}``, or 503 with the reasons."""
    ready = readiness_now()
    if ready.ready:
        return web.json({"status": "ok"})
    return web.json({"status": ready.status, "reasons": ready.reasons}, status=503)


async def metrics(web: Any, request: Any) -> Any:
    """Prometheus exposition of the autopilot's counters."""
    return web.bytes(telemetry.exposition(), content_type="text/plain; version=0.0.4")
