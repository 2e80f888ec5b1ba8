"""Slack sink agent: alerts → Slack (Block Kit), at least once, never twice.

Consumes ``autopilot.alerts``. For each alert:

1. claim the send in Redis (``SET NX`` of a short "pending" lease on the incident id
   and revision); a key marked "sent" means the alert went out before a crash: skip
   it; a "pending" one left by a worker that died mid-send is taken over when its
   lease runs out (:mod:`autopilot.integrations.history`). Without
   ``REDIS_URL``, or while Redis is down, the send goes ahead (at least once wins
   over at most once; a counter and a warning say so);
2. post the Block Kit message (webhook or bot token; slack-sdk retries 429 with
   Retry-After, 5xx and connection errors); in bot mode an escalation of an incident
   already posted edits that message with ``chat.update``;
3. on a retryable failure that outlived the client's retries (429, 5xx, no
   connection), wait and try again — with backoff up to
   :data:`MAX_BACKOFF_S` — until Slack is back, so an acknowledged alert is never
   dropped; a permanent refusal (``invalid_payload``, ``channel_not_found`` …) is
   dead-lettered with Slack's reason;
4. mark the claim "sent" and record the alert in the service's history in Redis.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from autopilot import telemetry
from autopilot.app import app, settings
from autopilot.errors import AlertDeliveryError, BadRecord, DeliveryError
from autopilot.integrations.history import CLAIM_LEASE_S, AlertHistory
from autopilot.integrations.slack import build_notifier
from autopilot.models import Alert, decode_records
from autopilot.topics import alerts_topic

from .deadletter import dead_letter, where

logger = logging.getLogger(__name__)
STAGE = "slack"
#: Longest wait between two delivery attempts while Slack is unavailable (s).
MAX_BACKOFF_S = 60.0


def retryable(exc: AlertDeliveryError) -> bool:
    """True for failures that may pass later: no answer, 429 or 5xx."""
    return exc.status is None or exc.status == 429 or exc.status >= 500


async def _claim(history: AlertHistory, alert: Alert) -> bool:
    try:
        return await history.claim_send(alert.incident.id, str(alert.incident.revision))
    except DeliveryError as exc:
        telemetry.REDIS_ERRORS.inc()
        logger.warning("Redis unavailable (%s); sending incident %s without idempotency key",
                       exc, alert.incident.id)
        return True


async def _previous_post(history: AlertHistory, alert: Alert) -> tuple[str | None, str | None]:
    """(ts, channel id) of the message already posted for this incident, if any."""
    try:
        meta = await history.get_incident_meta(alert.incident.id)
    except DeliveryError:
        telemetry.REDIS_ERRORS.inc()
        return None, None
    return meta.get("ts") or None, meta.get("channel") or None


async def deliver(notifier: Any, history: AlertHistory, alert: Alert, event: Any) -> str:
    """Deliver one alert (steps 1–4 of the module docstring).

    Returns the outcome: ``sent``, ``updated``, ``duplicate`` or ``dead_lettered``.
    """
    if not await _claim(history, alert):
        logger.info("%s: alert for %s revision %d already sent; skipping",
                    where(event), alert.incident.id, alert.incident.revision)
        return "duplicate"
    ts, channel = (
        await _previous_post(history, alert) if notifier.supports_update else (None, None)
    )
    backoff = 1.0
    while True:
        try:
            if ts:
                await notifier.update(ts, alert, channel=channel)
                outcome = "updated"
            else:
                ts = await notifier.post(alert)
                channel = getattr(notifier, "channel_id", None)
                outcome = "sent"
            break
        except AlertDeliveryError as exc:
            telemetry.SLACK_FAILURES.inc()
            if not retryable(exc):
                try:
                    await history.release_send(alert.incident.id, str(alert.incident.revision))
                except DeliveryError:
                    telemetry.REDIS_ERRORS.inc()
                await dead_letter(event, f"Slack refused the alert: {exc}", STAGE)
                return "dead_lettered"
            wait = max(backoff, exc.retry_after or 0.0)
            telemetry.SLACK_RETRIES.labels(reason="delivery").inc()
            try:
                await history.renew_claim(alert.incident.id, str(alert.incident.revision),
                                          lease_s=wait + CLAIM_LEASE_S)
            except DeliveryError:
                telemetry.REDIS_ERRORS.inc()
            logger.warning("%s: Slack unavailable for incident %s (%s); retrying in %.0f s",
                           where(event), alert.incident.id, exc, wait)
            await asyncio.sleep(wait)
            backoff = min(backoff * 2, MAX_BACKOFF_S)
    telemetry.SLACK_SENDS.labels(outcome=outcome).inc()
    try:
        await history.mark_sent(alert.incident.id, str(alert.incident.revision))
        await history.record(alert, ts, channel=channel)
    except DeliveryError as exc:
        telemetry.REDIS_ERRORS.inc()
        logger.warning("could not record incident %s in Redis: %s", alert.incident.id, exc)
    logger.info("%s: alert for incident %s %s (%s, severity %s)", where(event),
                alert.incident.id, outcome, alert.incident.service, alert.incident.severity.value)
    return outcome


@app.agent(alerts_topic, name="slack")
async def send_alerts(stream: Any) -> None:
    """Deliver alerts to Slack (or the console)."""
    s = settings()
    notifier = build_notifier(
        s, on_retry=lambda reason: telemetry.SLACK_RETRIES.labels(reason=reason).inc()
    )
    history = AlertHistory.from_settings(s)
    await notifier.start()
    await history.start()
    try:
        async for event in stream.events():
            try:
                (alert,) = decode_records(event.value, Alert)
                await deliver(notifier, history, alert, event)
                telemetry.RECORDS.labels(stage=STAGE).inc()
            except BadRecord as exc:
                await dead_letter(event, exc.reason, STAGE)
            except Exception as exc:
                logger.exception("%s: Slack sink failed; dead-lettering", where(event))
                await dead_letter(event, f"internal error: {type(exc).__name__}: {exc}", STAGE)
    finally:
        await notifier.aclose()
        await history.aclose()
