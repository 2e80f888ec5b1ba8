"""``POST /slack/interactions``: clicks on an incident's Slack buttons (slack-bolt).

Slack POSTs interaction payloads (form-encoded ``payload`` JSON) to the app's
Interactivity Request URL. The request is handed to a slack-bolt ``AsyncApp`` built
with ``SLACK_SIGNING_SECRET``, which verifies ``X-Slack-Signature`` (HMAC-SHA256 of
``v0:{timestamp}:{body}``, compared in constant time) and
``X-Slack-Request-Timestamp`` (within 5 minutes), and routes ``block_actions`` by
``action_id`` (:data:`autopilot.blockkit.INCIDENT_ACTIONS`) to :func:`_on_action`.

An unsigned, badly signed or stale request is answered 401 by Bolt and changes
nothing; so is a replayed one (a signature this worker already accepted in the last
5 minutes, :data:`REPLAY_WINDOW_S`; a replay sent to another worker is still applied
once, as actions are idempotent). Refusals are counted in
``autopilot_slack_interactions_refused_total{reason}``. A
verified click becomes an :class:`autopilot.interactions.IncidentAction` produced to
``autopilot.incident.actions`` keyed by the incident's service (the worker owning the
service applies it); the answer (200, empty) goes out once the broker acknowledged
the record, well within Slack's 3 seconds, or 503 when it did not in
:data:`PRODUCE_WAIT_S`.

An approved-action button (``incident_hook_<name>``, docs/actions.md) is let through
only when the clicking user is one of the action's ``approvers``: a listed user id, or
a member of its user group (Slack's ``usergroups.users.list``, scope
``usergroups:read``). Anyone else, or an action not configured for the service, gets
an ephemeral refusal (``chat.postEphemeral``), an ``action.refused`` audit event, and
nothing is produced or run.

The path is exempt from ``AUTOPILOT_API_KEYS`` (Slack sends no bearer token; the
signing secret is its authentication): it is in the guard's ``PUBLIC_PATHS``. The
body limit applies. Without ``SLACK_SIGNING_SECRET`` and ``SLACK_BOT_TOKEN`` the path
answers 404 (no buttons are rendered then).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
from typing import Any

from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError
from faust.web import View
from faust.web.exceptions import ServiceUnavailable
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from autopilot import telemetry
from autopilot.agents.actions import actions_config
from autopilot.agents.audit import emit
from autopilot.app import settings
from autopilot.audit import AuditEvent
from autopilot.interactions import IncidentAction, InvalidInteraction, from_block_action
from autopilot.streams import incident_actions_topic

from .ingest import broker_gate

__all__ = ["PRODUCE_WAIT_S", "SlackInteractions", "refusal_reason"]

logger = logging.getLogger(__name__)

#: Longest wait (s) for the broker's acknowledgement of the action record (Slack
#: gives up on an answer after 3 s).
PRODUCE_WAIT_S = 2.0
#: Slack's (and Bolt's) window for ``X-Slack-Request-Timestamp`` (s).
TIMESTAMP_WINDOW_S = 300
_FAILED = "autopilot_produce_failed"

_bolt: list[AsyncApp] = []


def refusal_reason(headers: Any, body: str, signing_secret: str, now: float) -> str:
    """Why a request failed Slack's verification, for the counter's ``reason``:
    ``unsigned`` (no signature or timestamp header), ``stale`` (timestamp not a number
    or not within 5 minutes) or ``bad_signature``."""
    signature = headers.get("X-Slack-Signature")
    timestamp = headers.get("X-Slack-Request-Timestamp")
    if not signature or not timestamp:
        return "unsigned"
    try:
        if abs(now - int(timestamp)) > TIMESTAMP_WINDOW_S:
            return "stale"
    except ValueError:
        return "stale"
    expected = SignatureVerifier(signing_secret).generate_signature(
        timestamp=timestamp, body=body)
    if not hmac.compare_digest(expected or "", signature):
        return "bad_signature"
    return "unparsable"


async def refusal(record: IncidentAction, client: AsyncWebClient) -> str | None:
    """Why ``record`` (an approved-action click) may not run, ``None`` when its user
    is an approver of the action configured for its service."""
    config = actions_config()
    spec = config.find(str(record.hook), record.service) if config else None
    if spec is None:
        return f"No action {record.hook!r} is configured for {record.service}."
    if record.user_id in spec.approvers.users:
        return None
    group = spec.approvers.usergroup
    if group is not None:
        try:
            answer = await client.usergroups_users_list(usergroup=group)
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else None
            logger.warning("approvers of %s: usergroups.users.list %s failed: %s",
                           record.hook, group, error)
            return (f"Could not check the approvers of {record.hook} (Slack answered "
                    f"{error or 'an error'} for user group {group}); nothing was run.")
        if record.user_id in (answer.get("users") or []):
            return None
    return (f"Only the approvers of {record.hook} on {record.service} may run it; "
            "nothing was run.")


async def _refuse(record: IncidentAction, client: AsyncWebClient, why: str) -> None:
    telemetry.INCIDENT_ACTIONS.labels(action="hook", outcome="refused").inc()
    logger.info("%s on incident %s (%s) by %s refused: %s", record.hook, record.incident_id,
                record.service, record.user_id, why)
    try:
        await client.chat_postEphemeral(channel=record.channel_id, user=record.user_id,
                                        text=why, thread_ts=record.message_ts)
    except SlackApiError as exc:
        logger.warning("ephemeral refusal to %s not posted: %s", record.user_id,
                       exc.response.get("error") if exc.response is not None else exc)
    await emit(AuditEvent(incident_id=record.incident_id, service=record.service,
                          kind="action.refused", actor=record.user_id, summary=why,
                          at=time.time(), detail={"action": record.hook,
                                                  "to_version": record.to_version}))


async def _on_action(ack: Any, body: dict[str, Any], action: dict[str, Any],
                     context: Any, client: AsyncWebClient) -> None:
    """A verified click: produce the action record, then acknowledge."""
    try:
        record = from_block_action(body, action, time.time())
    except InvalidInteraction as exc:
        logger.warning("Slack interaction ignored: %s", exc)
        await ack()
        return
    if record.kind == "hook":
        why = await refusal(record, client)
        if why is not None:
            await _refuse(record, client, why)
            await ack()
            return
    try:
        broker_gate()
        sent = await incident_actions_topic.send(
            key=record.service.encode(), value=json.dumps(record.to_dict()).encode())
        await asyncio.wait_for(sent, PRODUCE_WAIT_S)
    except (TimeoutError, KafkaError, ProducerSendError, ServiceUnavailable) as exc:
        logger.warning("Slack %s on incident %s (%s) not recorded: %r", record.kind,
                       record.incident_id, record.service, exc)
        context[_FAILED] = True
        await ack()
        return
    telemetry.SLACK_INTERACTIONS.labels(action=record.kind).inc()
    logger.info("Slack %s on incident %s (%s) by %s recorded for the service's owner",
                record.kind, record.incident_id, record.service, record.user_id)
    await ack()


def bolt_app() -> AsyncApp | None:
    """The worker's Bolt app (built on first use), ``None`` when not configured."""
    if _bolt:
        return _bolt[0]
    s = settings()
    if s.slack_signing_secret is None or s.slack_bot_token is None:
        return None
    token = s.slack_bot_token.get_secret_value()
    app = AsyncApp(
        signing_secret=s.slack_signing_secret.get_secret_value(),
        token=token,
        client=AsyncWebClient(token=token, base_url=s.slack_api_url),
        request_verification_enabled=True,
        process_before_response=True,
        logger=logging.getLogger("autopilot.web.slack.bolt"),
    )
    app.action(re.compile(r"^incident_"))(_on_action)
    _bolt.append(app)
    return app


#: Seconds a verified signature is remembered (Slack's timestamp tolerance).
REPLAY_WINDOW_S = 300.0
_accepted: dict[str, float] = {}  # signature -> when it stops being a replay


def is_replay(signature: str, now: float) -> bool:
    """``True`` when ``signature`` was accepted less than :data:`REPLAY_WINDOW_S` ago."""
    for sig in [k for k, until in _accepted.items() if until <= now]:
        del _accepted[sig]
    return signature in _accepted


class SlackInteractions(View):
    """``POST /slack/interactions`` (see module docstring)."""

    async def post(self, request: Any) -> Any:
        """Verify, route and acknowledge one interaction payload."""
        bolt = bolt_app()
        if bolt is None:
            return self.json({"error": "Slack interactivity is off: set SLACK_SIGNING_SECRET "
                                       "and SLACK_BOT_TOKEN"}, status=404)
        raw = (await request.read()).decode("utf-8", "replace")
        headers = {k: v for k, v in request.headers.items()}
        secret = settings().slack_signing_secret
        assert secret is not None  # bolt_app() checked it
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        if not request.headers.get("X-Slack-Signature") or not timestamp:
            return self._refused("unsigned")
        if not timestamp.isascii() or not timestamp.isdigit():
            return self._refused("stale")  # Bolt's verifier would raise on int()
        try:
            bolt_request = AsyncBoltRequest(body=raw, query=request.query_string,
                                            headers=headers)
        except ValueError:  # the body is not Slack's (json.JSONDecodeError is one)
            reason = refusal_reason(request.headers, raw, secret.get_secret_value(),
                                    time.time())
            if reason == "unparsable":
                return self.json({"error": "payload is not JSON"}, status=400)
            return self._refused(reason)
        signature = request.headers.get("X-Slack-Signature", "")
        if is_replay(signature, time.time()):
            return self._refused("replayed")
        response = await bolt.async_dispatch(bolt_request)
        if response.status == 401:
            return self._refused(refusal_reason(
                request.headers, raw, secret.get_secret_value(), time.time()))
        if bolt_request.context.get(_FAILED):
            return self.json({"error": "the broker did not acknowledge the action; retry"},
                             status=503, headers={"Retry-After": "1"})
        _accepted[signature] = time.time() + REPLAY_WINDOW_S
        content_type = response.headers.get("content-type", ["text/plain"])[0]
        return self.bytes(response.body.encode() if response.body else b"",
                          status=response.status,
                          content_type=content_type.split(";")[0].strip())

    def _refused(self, reason: str) -> Any:
        telemetry.SLACK_INTERACTIONS_REFUSED.labels(reason=reason).inc()
        logger.info("401 POST /slack/interactions: %s", reason)
        message = ("request already received (replayed)" if reason == "replayed"
                   else "invalid Slack signature or timestamp")
        return self.json({"error": message}, status=401)
