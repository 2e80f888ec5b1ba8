"""Alert receivers: Alertmanager's webhook and Alertmanager's API v2 (for Prometheus).

==================================  ======================================================
``POST /api/v1/alerts/alertmanager``  Alertmanager webhook payload, version 4
                                      (``webhook_configs``)
``POST /api/v2/alerts``               a JSON list of ``postableAlert`` (Prometheus'
                                      ``alerting.alertmanagers`` pointed at a worker)
==================================  ======================================================

Both map each alert with :mod:`autopilot.alertmanager` to an Anomaly of kind ``alert``
and produce it, keyed by service, one JSON object per record, to
``autopilot.anomalies`` (where the detectors' anomalies go; the correlation agent
applies it). Answers (:func:`autopilot.web.ingest.ingest_decoded`): 202 (200 for
``/api/v2/alerts``, as Alertmanager answers; amtool takes nothing else)
``{"accepted": N, "rejected": [{"item": i, "reason": "…"}]}`` (``rejected`` when some
alert was refused: no service in its labels, no alertname, a bad field); 422 when no
alert is valid; 400 when the body is not JSON or not the payload (``version`` not
"4" …); 415 for a content type other than JSON; 503 with ``Retry-After`` while the
broker is unavailable. API keys, body limits and rate limits apply (the guard).
Alertmanager and Prometheus retry 5xx answers and drop 4xx ones.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from faust.web import View

from autopilot.alertmanager import decode_postable, decode_webhook
from autopilot.app import settings
from autopilot.formats import Decoded
from autopilot.streams import anomalies_topic

from .ingest import ingest_decoded

__all__ = ["AlertmanagerWebhook", "PostAlerts"]


def _json_only(view: View, request: Any) -> Any:
    kind = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if kind not in ("", "application/json"):
        return view.json(
            {"error": f"unsupported content type {kind!r}: send application/json"},
            status=415,
        )
    return None


async def _receive(
    view: View, request: Any, decoder: Callable[..., Decoded], source: str, ok: int = 202
) -> Any:
    refused = _json_only(view, request)
    if refused is not None:
        return refused
    labels = settings().service_label_list()

    def decode(raw: bytes) -> Decoded:
        return decoder(raw, received_at=datetime.now(UTC), service_labels=labels)

    return await ingest_decoded(
        view.web, request, decode, anomalies_topic, source, one_per_record=True,
        accepted_status=ok,
    )


class AlertmanagerWebhook(View):
    """``POST /api/v1/alerts/alertmanager``: Alertmanager's webhook (module docstring)."""

    async def post(self, request: Any) -> Any:
        """Map the payload's alerts, produce them, answer 202/400/415/422/503."""
        return await _receive(self, request, decode_webhook, "alertmanager")


class PostAlerts(View):
    """``POST /api/v2/alerts``: Alertmanager API v2 postableAlerts (module docstring)."""

    async def post(self, request: Any) -> Any:
        """Map the alerts, produce them, answer 200 (as Alertmanager: amtool accepts
        nothing else)/400/415/422/503."""
        return await _receive(self, request, decode_postable, "alerts_v2", ok=200)
