"""Deliver alerts to Slack (incoming webhook or bot token) or to the console.

Two Slack modes, chosen by :func:`build_notifier` from the settings:

- **webhook** (``SLACK_WEBHOOK_URL``): ``slack_sdk.webhook.async_client.AsyncWebhookClient``
  POSTs the Block Kit payload as JSON. Slack answers ``200 ok`` or an HTTP error with a
  plain-text code: 400 ``invalid_payload``/``no_text``, 403 ``action_prohibited``/
  ``invalid_token``, 404 ``no_service``/``channel_not_found``, 410
  ``channel_is_archived``, 429 ``rate_limited`` (with ``Retry-After``), 500
  ``rollup_error``/``internal_error`` (Slack docs, "Sending messages using incoming
  webhooks", "Handling errors"). A webhook cannot edit a message.
- **bot** (``SLACK_BOT_TOKEN`` + ``SLACK_CHANNEL``; the recommended mode):
  ``slack_sdk.web.async_client.AsyncWebClient`` at ``SLACK_API_URL``. One incident is
  one conversation: :meth:`SlackNotifier.post_message` (``chat.postMessage``, a root
  message or, with ``thread_ts``, a thread reply, carrying Slack message
  ``metadata``), :meth:`SlackNotifier.update_message` (``chat.update``),
  :meth:`SlackNotifier.find_message` (``conversations.history`` with
  ``include_all_metadata``, to find a root message posted before a crash) and
  :meth:`SlackNotifier.upload_file` (slack-sdk's ``files_upload_v2``:
  ``files.getUploadURLExternal``, a POST of the bytes to the returned URL,
  ``files.completeUploadExternal`` into the thread). Slack answers
  ``{"ok": true, ...}`` or ``{"ok": false, "error": "<code>"}`` (``invalid_auth``,
  ``channel_not_found``, ``not_in_channel``, ``thread_not_found``,
  ``message_not_found``, ``missing_scope`` with ``needed``, ``ratelimited`` …).
  Scopes: ``chat:write``; ``channels:history`` + ``groups:history`` (find_message);
  ``channels:read`` + ``groups:read`` (only when ``SLACK_CHANNEL`` is a name and a
  lookup needs its ID); ``files:write`` (charts).

Retries use slack-sdk's own handlers, sharing one budget of ``SLACK_MAX_RETRIES``
retries per send: ``AsyncRateLimitErrorRetryHandler`` (429, sleeps ``Retry-After`` +
up to 1 s jitter), a server-error handler (500, 502, 503, 504; slack-sdk's
``AsyncServerErrorRetryHandler`` retries 500 and 503 only) and
``AsyncConnectionErrorRetryHandler`` (connection refused/reset), both with slack-sdk's
exponential backoff (0.5 s × 2^attempt + jitter). Each retry calls ``on_retry(reason)``
with ``reason`` one of :data:`RETRY_REASONS`, for a Prometheus counter.

Failures raise :class:`autopilot.errors.AlertDeliveryError` (``status``,
``retry_after``, ``code``: Slack's error code) with a message that never contains
the webhook URL or the token: slack-sdk and aiohttp errors are re-raised sanitised
and unchained (through the project's one redactor, :mod:`autopilot.redact`), and
slack-sdk's own logger (which logs request URLs at INFO on retries) is muted below
WARNING and redacted.

Formatting refused (``invalid_blocks``, ``invalid_blocks_format``): the same message
is sent once more as plain text (:func:`autopilot.blockkit.render_plain_text`) before
the send is given up, for ``chat.postMessage``, ``chat.update`` and webhooks alike;
the refusal is reported to ``on_refusal(code)`` and the retry's outcome to
``on_plain_text(outcome)`` (``"sent"`` or ``"refused"``).

When Slack is not configured, :class:`ConsoleNotifier` prints the alert to stdout.
"""

from __future__ import annotations

import itertools
import logging
import re
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TextIO

import aiohttp
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from autopilot.blockkit import plain_text, render_alert, render_console, render_plain_text
from autopilot.errors import AlertDeliveryError
from autopilot.models import Alert
from autopilot.redact import Redactor
from autopilot.settings import Settings

__all__ = [
    "RETRY_REASONS",
    "ConsoleNotifier",
    "RetryCallback",
    "SlackNotifier",
    "build_notifier",
    "payload_text",
]

logger = logging.getLogger(__name__)

#: Called once per retry with the reason (one of :data:`RETRY_REASONS`).
RetryCallback = Callable[[str], None]
#: Slack error codes that mean "the Block Kit was refused": retried once as plain text.
BLOCKS_REFUSED = frozenset({"invalid_blocks", "invalid_blocks_format"})
#: Reasons passed to the retry callback.
RETRY_REASONS = ("rate_limited", "server_error", "connection_error")

#: Timeout (s) of one HTTP attempt to Slack (slack-sdk wants whole seconds).
DEFAULT_TIMEOUT_S = 10
#: HTTP statuses retried as server errors.
SERVER_ERROR_STATUSES = frozenset({500, 502, 503, 504})
_MAX_BODY_CHARS = 200
#: A Slack conversation ID (public ``C…``, private ``G…``/``C…``, DM ``D…``); channel
#: names are lower case, so they never match.
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,}")
#: ``conversations.history`` page size and the most pages :meth:`SlackNotifier.find_message`
#: reads (5 × 200 = the last 1000 top-level messages after ``oldest``).
HISTORY_PAGE_LIMIT = 200
HISTORY_MAX_PAGES = 5
#: ``conversations.list`` page size and page cap when resolving a channel name.
LIST_PAGE_LIMIT = 200
LIST_MAX_PAGES = 50

#: What to do about Slack's error codes (webhook text bodies and Web API ``error``).
_ADVICE = {
    "invalid_payload": "the message was rejected as malformed; report a Block Kit rendering bug",
    "no_text": "the message had no text; report a Block Kit rendering bug",
    "invalid_blocks": "Slack refused the blocks; report a Block Kit rendering bug",
    "invalid_blocks_format": "Slack refused the blocks; report a Block Kit rendering bug",
    "no_service": "the webhook was removed; create a new one and set SLACK_WEBHOOK_URL",
    "no_active_hooks": "the webhook is disabled; create a new one and set SLACK_WEBHOOK_URL",
    "invalid_token": "the webhook is no longer valid; set a new SLACK_WEBHOOK_URL",
    "action_prohibited": "a workspace admin restricted this webhook",
    "channel_not_found": "check SLACK_CHANNEL (or the webhook's channel) exists",
    "channel_is_archived": "the channel is archived; unarchive it or choose another",
    "not_in_channel": "invite the bot to SLACK_CHANNEL",
    "invalid_auth": "SLACK_BOT_TOKEN is not valid; set a valid xoxb- token",
    "not_authed": "no token was sent; set SLACK_BOT_TOKEN",
    "token_revoked": "SLACK_BOT_TOKEN was revoked; set a new one",
    "account_inactive": "the bot's token belongs to a deleted app or user",
    "missing_scope": "add the missing scope to the Slack app and reinstall it",
    "message_not_found": "the message to update no longer exists",
    "thread_not_found": "the thread's root message no longer exists; post a new root message",
    "invalid_thread_ts": "the thread's root message no longer exists; post a new root message",
    "file_not_found": "the uploaded file expired before completeUploadExternal; upload again",
    "upload_failed": "the file bytes were refused by Slack's upload URL; upload again later",
    "invalid_metadata_format": "Slack refused the message metadata; report a bug",
    "invalid_metadata_schema": "Slack refused the message metadata; report a bug",
    "metadata_too_large": "the message metadata is too large; report a bug",
    "msg_too_long": "the message text is too long; report a Block Kit rendering bug",
    "too_many_attachments": "too many attachments; report a Block Kit rendering bug",
    "invalid_cursor": "a conversations.history cursor expired; the lookup is retried later",
    "invalid_arguments": "Slack refused the call's arguments; report a bug",
    "cant_update_message": "only messages posted by this bot can be updated",
    "internal_error": "Slack is failing after all retries; the send is retried later",
    "rollup_error": "Slack is failing after all retries; the send is retried later",
    "service_unavailable": "Slack is failing after all retries; the send is retried later",
    "rate_limited": "Slack rate-limited us after all retries; alerts are too frequent",
    "ratelimited": "Slack rate-limited us after all retries; alerts are too frequent",
}


# --- retry handlers that report each retry --------------------------------------------


def _call_hook(hook: Callable[[str], None] | None, value: str) -> None:
    """Call a metrics hook; its exceptions are logged, never raised."""
    if hook is None:
        return
    try:
        hook(value)
    except Exception:  # a broken metrics hook must not stop delivery
        logger.exception("Slack metrics hook failed (%s)", value)


def _notify(on_retry: RetryCallback | None, reason: str) -> None:
    logger.info("retrying Slack send: %s", reason)
    if on_retry is None:
        return
    try:
        on_retry(reason)
    except Exception:  # a broken metrics hook must not stop delivery
        logger.exception("Slack on_retry callback failed (reason %s)", reason)


class _RateLimitRetry(AsyncRateLimitErrorRetryHandler):
    """slack-sdk's 429 handler (sleeps ``Retry-After``), reporting each retry."""

    def __init__(self, max_retry_count: int, on_retry: RetryCallback | None) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self._on_retry = on_retry

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        _notify(self._on_retry, "rate_limited")
        await super().prepare_for_next_attempt_async(
            state=state, request=request, response=response, error=error
        )


class _ServerErrorRetry(AsyncServerErrorRetryHandler):
    """slack-sdk's server-error handler widened to 500, 502, 503 and 504."""

    def __init__(self, max_retry_count: int, on_retry: RetryCallback | None) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self._on_retry = on_retry

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return response is not None and response.status_code in SERVER_ERROR_STATUSES

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        _notify(self._on_retry, "server_error")
        await super().prepare_for_next_attempt_async(
            state=state, request=request, response=response, error=error
        )


class _ConnectionErrorRetry(AsyncConnectionErrorRetryHandler):
    """slack-sdk's connection-error handler, reporting each retry."""

    def __init__(self, max_retry_count: int, on_retry: RetryCallback | None) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self._on_retry = on_retry

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        _notify(self._on_retry, "connection_error")
        await super().prepare_for_next_attempt_async(
            state=state, request=request, response=response, error=error
        )


def retry_handlers(
    max_retries: int, on_retry: RetryCallback | None = None
) -> list[AsyncRetryHandler]:
    """slack-sdk retry handlers for 429, 5xx and connection errors.

    The handlers share the request's retry state, so ``max_retries`` bounds the
    retries of one send in total (``SLACK_MAX_RETRIES``); 0 disables retries.
    """
    return [
        _RateLimitRetry(max_retries, on_retry),
        _ServerErrorRetry(max_retries, on_retry),
        _ConnectionErrorRetry(max_retries, on_retry),
    ]


# --- secret hygiene -------------------------------------------------------------------


class _SdkLogFilter(logging.Filter):
    """Logging filter for slack-sdk's logger: redacts the message (the project's one
    redactor, :class:`autopilot.redact.Redactor`) and drops tracebacks, which may carry
    the webhook URL in frames' arguments."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        record.msg, record.args = self.redactor.redact(message, pii=False), None
        if record.exc_info:  # tracebacks may carry the URL; keep the type only
            exc = record.exc_info[1]
            record.msg += f" ({type(exc).__name__})"
            record.exc_info, record.exc_text = None, None
        return True


def _sdk_logger(redactor: _SdkLogFilter) -> logging.Logger:
    """A logger for slack-sdk clients that never logs request URLs.

    slack-sdk logs the request URL (the webhook URL is a secret) at DEBUG and, on
    every retry, at INFO whenever ``logger.level <= DEBUG`` -- including an unset
    level (0). Its level is therefore pinned to WARNING, and a filter redacts secrets
    from whatever it still logs.
    """
    sdk_logger = logging.getLogger(f"{__name__}.sdk")
    sdk_logger.setLevel(logging.WARNING)
    for old in [f for f in sdk_logger.filters if isinstance(f, _SdkLogFilter)]:
        sdk_logger.removeFilter(old)
    sdk_logger.addFilter(redactor)
    return sdk_logger


def _first_header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    for key, value in dict(headers).items():
        if str(key).lower() == name.lower():
            if isinstance(value, list | tuple):
                value = value[0] if value else None
            return None if value is None else str(value)
    return None


def _retry_after(headers: Any) -> float | None:
    value = _first_header(headers, "Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _subject(metadata: dict[str, Any] | None, thread_ts: str | None) -> str:
    """What a post is about, for error messages: ``incident inc-…`` when known."""
    payload = metadata.get("event_payload") if isinstance(metadata, dict) else None
    incident = payload.get("incident_id") if isinstance(payload, dict) else None
    subject = f"incident {incident}" if incident else "message"
    return f"{subject} (reply in thread {thread_ts})" if thread_ts else subject


def _next_cursor(data: dict[str, Any]) -> str | None:
    meta = data.get("response_metadata")
    cursor = meta.get("next_cursor") if isinstance(meta, dict) else None
    return str(cursor) if cursor else None


def _matches(
    message: Any, bot_id: str | None, event_type: str, key: str, value: str
) -> bool:
    """True for a top-level message of ``bot_id`` whose metadata carries ``key=value``."""
    if not isinstance(message, dict) or not message.get("ts"):
        return False
    if message.get("thread_ts") not in (None, message["ts"]):
        return False  # a reply (also a reply broadcast to the channel)
    if message.get("subtype") == "thread_broadcast":
        return False
    if bot_id is not None and message.get("bot_id") != bot_id:
        return False
    metadata = message.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("event_type") != event_type:
        return False
    payload = metadata.get("event_payload")
    return isinstance(payload, dict) and key in payload and str(payload[key]) == value


def payload_text(payload: dict[str, Any]) -> str:
    """A plain-text rendering of a Block Kit payload, for the console
    (:func:`autopilot.blockkit.plain_text`)."""
    return plain_text(payload)


# --- notifiers ------------------------------------------------------------------------


class SlackNotifier:
    """Posts alerts to Slack through an incoming webhook or a bot token.

    Build it with :func:`build_notifier` or directly from settings. Use it as a
    long-lived service: ``await start()`` (or ``async with``) opens one aiohttp
    session, ``await aclose()`` closes it; every send starts it lazily.

    Bot mode: :meth:`post_message`, :meth:`update_message`, :meth:`find_message`,
    :meth:`upload_file` (one incident = one conversation). Webhook mode:
    :meth:`send_webhook`. :meth:`post`/:meth:`update` (one rendered
    :class:`~autopilot.models.Alert`) work in both modes.

    Settings used:
        ``slack_webhook_url`` (``SLACK_WEBHOOK_URL``, secret) for webhook mode, or
        ``slack_bot_token`` (``SLACK_BOT_TOKEN``, secret) + ``slack_channel``
        (``SLACK_CHANNEL``) + ``slack_api_url`` (``SLACK_API_URL``, default
        ``https://slack.com/api/``) for bot mode (chosen when a token is set);
        ``slack_max_retries`` (``SLACK_MAX_RETRIES``, default 5).

    Args:
        settings: the autopilot settings; one of the two modes must be configured.
        on_retry: called with ``"rate_limited"``, ``"server_error"`` or
            ``"connection_error"`` before each retry (e.g. a Prometheus counter's
            ``labels(reason).inc``); exceptions it raises are logged and ignored.
        on_refusal: called with Slack's error code for each refusal this client
            handles itself (``invalid_blocks``/``invalid_blocks_format``, answered by
            a plain-text retry); refusals it raises are the caller's to count.
        on_plain_text: called with ``"sent"`` or ``"refused"`` after each plain-text
            retry.
        timeout_s: timeout of one HTTP attempt in whole seconds (default 10).

    Raises:
        ValueError: neither a webhook URL nor a bot token is configured.

    Attributes:
        mode: ``"webhook"`` or ``"bot"``.
        retries: retries made so far (all reasons), for tests and diagnostics.
        channel_id: bot mode: the channel ID Slack reported for the last post.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        on_retry: RetryCallback | None = None,
        timeout_s: int = DEFAULT_TIMEOUT_S,
        on_refusal: Callable[[str], None] | None = None,
        on_plain_text: Callable[[str], None] | None = None,
    ) -> None:
        token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else ""
        webhook = (
            settings.slack_webhook_url.get_secret_value() if settings.slack_webhook_url else ""
        )
        if not token and not webhook:
            raise ValueError("SlackNotifier needs SLACK_WEBHOOK_URL or SLACK_BOT_TOKEN")
        self.mode: str = "bot" if token else "webhook"
        self.retries = 0
        self.channel_id: str | None = None
        self._channel = settings.slack_channel or ""
        self._api_url = settings.slack_api_url
        self._token = token
        self._webhook_url = webhook
        self._timeout_s = timeout_s
        self._on_retry_user = on_retry
        secrets = [token, webhook]
        if webhook:  # the path alone (/services/T…/B…/secret) is the secret part
            path = webhook.split("://", 1)[-1].partition("/")[2]
            secrets.append("/" + path if path else "")
        self._redactor = Redactor(secrets, cache_size=0)
        self._log_filter = _SdkLogFilter(self._redactor)
        self._on_refusal = on_refusal
        self._on_plain_text = on_plain_text
        #: Plain-text retries made after ``invalid_blocks`` (for tests and diagnostics).
        self.plain_text_retries = 0
        self._handlers = retry_handlers(settings.slack_max_retries, self._count_retry)
        self._session: aiohttp.ClientSession | None = None
        self._webhook_client: AsyncWebhookClient | None = None
        self._web_client: AsyncWebClient | None = None
        self._channel_ids: dict[str, str] = {}  # channel name (no "#") → ID
        self._bot_id: str | None = None  # from auth.test; "" when Slack gives none

    def __repr__(self) -> str:
        return f"SlackNotifier(mode={self.mode!r}, channel={self._channel or None!r})"

    @property
    def supports_update(self) -> bool:
        """True in bot mode: messages can be edited with :meth:`update`."""
        return self.mode == "bot"

    def _count_retry(self, reason: str) -> None:
        self.retries += 1
        if self._on_retry_user is not None:
            self._on_retry_user(reason)

    async def start(self) -> None:
        """Open the aiohttp session and the slack-sdk client (idempotent)."""
        if self._session is not None and not self._session.closed:
            return
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout_s))
        sdk_logger = _sdk_logger(self._log_filter)
        if self.mode == "webhook":
            self._webhook_client = AsyncWebhookClient(
                url=self._webhook_url,
                timeout=self._timeout_s,
                session=self._session,
                logger=sdk_logger,
                retry_handlers=self._handlers,
            )
        else:
            self._web_client = AsyncWebClient(
                token=self._token,
                base_url=self._api_url,
                timeout=self._timeout_s,
                session=self._session,
                logger=sdk_logger,
                retry_handlers=self._handlers,
            )

    async def aclose(self) -> None:
        """Close the aiohttp session (idempotent)."""
        session, self._session = self._session, None
        self._webhook_client = self._web_client = None
        if session is not None and not session.closed:
            await session.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def post(self, alert: Alert) -> str | None:
        """Publish ``alert`` (Block Kit payload from :func:`autopilot.blockkit.render_alert`).

        Returns:
            Bot mode: the message ``ts`` (use it with :meth:`update`; the channel ID
            is in :attr:`channel_id`). Webhook mode: ``None``.

        Raises:
            AlertDeliveryError: Slack refused the message or stayed unreachable after
                the retries; ``status`` is the last HTTP status (``None`` when no
                answer came), ``retry_after`` the last ``Retry-After`` (s) and
                ``code`` Slack's error code.
        """
        await self.start()
        payload = render_alert(alert)
        subject = f"incident {alert.incident.id}"
        if self.mode == "webhook":
            await self._send_webhook(payload, subject)
            return None
        data = await self._send_message(
            "chat.postMessage", subject, channel=self._channel, **payload
        )
        return self._posted(data, self._channel)[1]

    async def update(self, ts: str, alert: Alert, channel: str | None = None) -> None:
        """Replace the message ``ts`` with the new state of ``alert``.

        Bot mode calls ``chat.update``, which needs the channel *ID*: pass the one
        stored when the message was posted, else :attr:`channel_id` (from this
        process's last post) or ``SLACK_CHANNEL`` is used. Webhook mode cannot edit
        messages, so it posts the alert as a new message.

        Raises:
            AlertDeliveryError: as for :meth:`post` (e.g. ``message_not_found``).
        """
        await self.start()
        payload = render_alert(alert)
        subject = f"incident {alert.incident.id}"
        if self.mode == "webhook":
            await self._send_webhook(payload, subject)
            return
        target = channel or self.channel_id or self._channel
        await self._send_message("chat.update", subject, channel=target, ts=ts, **payload)

    # --- one incident = one conversation (bot mode) -----------------------------------

    async def post_message(
        self,
        payload: dict[str, Any],
        *,
        channel: str | None = None,
        thread_ts: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[str, str]:
        """Post a message with ``chat.postMessage`` (bot mode).

        Args:
            payload: the message: ``{"text": str, "blocks": [...], "attachments":
                [...]}`` (any of the three; e.g. from :mod:`autopilot.blockkit`). Keys
                ``channel``, ``thread_ts`` and ``metadata`` in it are overridden by
                the arguments.
            channel: channel ID or name (``C0123…``, ``#alerts``, ``alerts``);
                default ``SLACK_CHANNEL``.
            thread_ts: the ``ts`` of a root message: the message becomes a reply in
                its thread. ``None``: a new top-level (root) message.
            metadata: Slack message metadata, ``{"event_type": str, "event_payload":
                {str: str | int | float | bool}}``, stored with the message and found
                again by :meth:`find_message` (e.g. the incident id, so a root
                message posted just before a crash is not posted twice).

        Returns:
            ``(channel_id, ts)``: the channel ID Slack posted to and the message ts
            (the thread's ``thread_ts`` when ``thread_ts`` was ``None``).

        Raises:
            AlertDeliveryError: Slack refused the message (``code``: e.g.
                ``channel_not_found``, ``not_in_channel``, ``thread_not_found``,
                ``invalid_blocks``, ``invalid_metadata_format``, ``ratelimited`` after
                the retries) or stayed unreachable (``code`` ``None``).
            RuntimeError: called in webhook mode (use :meth:`send_webhook`).
        """
        self._require_bot("post_message")
        await self.start()
        target = channel or self._channel
        kwargs: dict[str, Any] = {
            k: v for k, v in payload.items()
            if v is not None and k not in ("channel", "thread_ts", "metadata")
        }
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        if metadata is not None:
            kwargs["metadata"] = metadata
        subject = _subject(metadata, thread_ts)
        data = await self._send_message("chat.postMessage", subject, channel=target, **kwargs)
        return self._posted(data, target)

    async def update_message(self, channel_id: str, ts: str, payload: dict[str, Any]) -> None:
        """Replace a message of this app with ``chat.update`` (bot mode).

        Slack keeps a message's previous ``attachments`` when the update has none
        (send ``"attachments": []`` to remove them); ``blocks`` and ``text`` are
        replaced. Rendering the whole message every time makes the edit idempotent.

        Args:
            channel_id: the channel ID returned by :meth:`post_message` (a name is
                resolved to its ID with ``conversations.list``, once).
            ts: the message ts.
            payload: the new message, as for :meth:`post_message` (``metadata`` may
                be included to replace the message's metadata).

        Raises:
            AlertDeliveryError: ``message_not_found``, ``cant_update_message``,
                ``edit_window_closed``, ``invalid_blocks``, ``ratelimited`` … (``code``).
            RuntimeError: called in webhook mode (a webhook cannot edit).
        """
        self._require_bot("update_message")
        await self.start()
        target = await self.resolve_channel(channel_id)
        kwargs = {k: v for k, v in payload.items() if v is not None and k not in ("channel", "ts")}
        await self._send_message("chat.update", f"message {ts}", channel=target, ts=ts,
                                 **kwargs)

    async def find_message(
        self, channel: str, event_type: str, key: str, value: str, *, oldest: float
    ) -> tuple[str, str] | None:
        """Find the newest top-level message of this app carrying the given metadata.

        Reads ``conversations.history`` (``include_all_metadata=true``,
        ``oldest``, ``limit`` :data:`HISTORY_PAGE_LIMIT`, newest first), following
        ``response_metadata.next_cursor`` for at most :data:`HISTORY_MAX_PAGES`
        pages. A message matches when it is top level (not a thread reply), was
        posted by this app's bot (``bot_id`` from ``auth.test``, asked once) and its
        ``metadata`` has ``event_type`` and ``event_payload[key] == value`` (compared
        as strings). This is how a root message posted just before a crash (before
        its ts was stored) is found instead of posted again: Slack has no
        idempotency key.

        Args:
            channel: channel ID or name; a name is resolved once with
                ``conversations.list`` (``public_channel,private_channel``, paginated)
                and cached.
            event_type: the metadata ``event_type`` (e.g. ``"autopilot_incident"``).
            key: a key of ``event_payload`` (e.g. ``"incident_id"``).
            value: the value it must have.
            oldest: Unix time (s); only messages after it are read (e.g. the
                incident's first notification attempt minus a margin).

        Returns:
            ``(channel_id, ts)`` of the newest match, or ``None``.

        Raises:
            AlertDeliveryError: ``channel_not_found`` (no channel of that name, or
                the bot cannot see it), ``not_in_channel``, ``missing_scope``
                (``channels:history``/``groups:history``; ``channels:read``/
                ``groups:read`` for a name), ``invalid_cursor``, ``ratelimited`` …
            RuntimeError: called in webhook mode.
        """
        self._require_bot("find_message")
        await self.start()
        channel_id = await self.resolve_channel(channel)
        bot_id = await self._own_bot_id()
        subject = f"lookup of {event_type} {key}={value}"
        cursor: str | None = None
        for _ in range(HISTORY_MAX_PAGES):
            data = await self._call_web(
                "conversations.history",
                subject,
                channel=channel_id,
                include_all_metadata=True,
                oldest=f"{max(0.0, oldest):.6f}",
                limit=HISTORY_PAGE_LIMIT,
                cursor=cursor,
            )
            for message in data.get("messages") or []:
                if _matches(message, bot_id, event_type, key, value):
                    return channel_id, str(message["ts"])
            cursor = _next_cursor(data)
            if not data.get("has_more") or not cursor:
                break
        return None

    async def upload_file(
        self, channel_id: str, thread_ts: str, content: bytes, filename: str, title: str
    ) -> None:
        """Share a file (e.g. a PNG chart) in a thread with slack-sdk's ``files_upload_v2``.

        Three HTTP calls, each retried by the handlers: ``files.getUploadURLExternal``
        (``filename``, ``length``), a POST of the bytes to the returned
        ``upload_url`` (no token is sent there) and ``files.completeUploadExternal``
        (``files=[{"id", "title"}]``, ``channel_id``, ``thread_ts``).

        Args:
            channel_id: the channel ID of the thread (a name is resolved once).
            thread_ts: the thread's root message ts.
            content: the file's bytes (at most 1 GB; a chart is ~50 kB).
            filename: the file name shown in Slack (e.g. ``"checkout-latency.png"``).
            title: the file's title.

        Raises:
            AlertDeliveryError: ``code`` ``upload_failed`` (the upload URL did not
                answer 200), ``file_not_found``, ``thread_not_found``,
                ``channel_not_found``, ``missing_scope`` (``files:write``) …
            RuntimeError: called in webhook mode.
        """
        self._require_bot("upload_file")
        await self.start()
        target = await self.resolve_channel(channel_id)
        await self._call_web(
            "files_upload_v2",
            f"upload of {filename} to thread {thread_ts}",
            channel=target,
            thread_ts=thread_ts,
            content=content,
            filename=filename,
            title=title,
        )

    async def send_webhook(self, payload: dict[str, Any]) -> None:
        """POST one message to the incoming webhook (webhook mode).

        A webhook message cannot be edited, threaded or found again, so the caller
        caps their number (``AUTOPILOT_MAX_WEBHOOK_MESSAGES``).

        Args:
            payload: ``{"text", "blocks", "attachments"}`` (at least one).

        Raises:
            AlertDeliveryError: HTTP error with Slack's text code (``code``:
                ``invalid_payload``, ``no_service``, ``rate_limited`` …) or
                unreachable; the message never contains the webhook URL.
            RuntimeError: called in bot mode (use :meth:`post_message`).
        """
        if self.mode != "webhook":
            raise RuntimeError("send_webhook needs webhook mode (SLACK_WEBHOOK_URL); "
                               "this notifier is in bot mode: use post_message")
        await self.start()
        await self._send_webhook(payload, "webhook message")

    async def resolve_channel(self, channel: str) -> str:
        """The ID of a channel given by ID or name (``#alerts``/``alerts``), cached.

        IDs are returned as they are. A name is looked up once with
        ``conversations.list`` (``types=public_channel,private_channel``,
        ``exclude_archived``, :data:`LIST_PAGE_LIMIT` per page, at most
        :data:`LIST_MAX_PAGES` pages) unless a post to it already told its ID.

        Raises:
            AlertDeliveryError: ``code`` ``channel_not_found`` when no channel the
                bot can see has that name; Slack errors of ``conversations.list``.
        """
        if _CHANNEL_ID.fullmatch(channel):
            return channel
        name = channel.removeprefix("#")
        known = self._channel_ids.get(name)
        if known:
            return known
        cursor: str | None = None
        for _ in range(LIST_MAX_PAGES):
            data = await self._call_web(
                "conversations.list",
                f"lookup of channel #{name}",
                types="public_channel,private_channel",
                exclude_archived=True,
                limit=LIST_PAGE_LIMIT,
                cursor=cursor,
            )
            for item in data.get("channels") or []:
                if isinstance(item, dict) and item.get("name") and item.get("id"):
                    self._channel_ids.setdefault(str(item["name"]), str(item["id"]))
            if name in self._channel_ids:
                return self._channel_ids[name]
            cursor = _next_cursor(data)
            if not cursor:
                break
        raise AlertDeliveryError(
            f"Slack has no channel #{name} that the bot can see; "
            + _ADVICE["channel_not_found"],
            status=200,
            code="channel_not_found",
        )

    async def _own_bot_id(self) -> str | None:
        """This app's ``bot_id`` (``auth.test``, asked once); ``None`` if Slack gives none."""
        if self._bot_id is None:
            data = await self._call_web("auth.test", "identity check")
            self._bot_id = str(data.get("bot_id") or "")
        return self._bot_id or None

    def _require_bot(self, operation: str) -> None:
        if self.mode != "bot":
            raise RuntimeError(
                f"{operation} needs bot mode (SLACK_BOT_TOKEN + SLACK_CHANNEL); this "
                "notifier is in webhook mode, which can only send (send_webhook)"
            )

    def _posted(self, data: dict[str, Any], target: str) -> tuple[str, str]:
        """``(channel_id, ts)`` of a ``chat.postMessage`` answer; remembers the channel ID."""
        channel_id = data.get("channel")
        ts = data.get("ts")
        if not isinstance(ts, str) or not ts or not isinstance(channel_id, str) or not channel_id:
            raise AlertDeliveryError(
                "Slack chat.postMessage answered ok without a channel and message ts",
                status=200,
                code="unexpected_response",
            )
        self.channel_id = channel_id
        if target and not _CHANNEL_ID.fullmatch(target):
            self._channel_ids[target.removeprefix("#")] = channel_id
        return channel_id, ts

    # --- transport ----------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        """``text`` without this client's token or webhook URL (nor any other secret
        the project's redactor finds)."""
        return self._redactor.redact(text, pii=False)

    async def _send_message(self, method: str, subject: str, **kwargs: Any) -> dict[str, Any]:
        """``chat.postMessage``/``chat.update``, sent again once as plain text when Slack
        refuses the blocks (:data:`BLOCKS_REFUSED`)."""
        try:
            return await self._call_web(method, subject, **kwargs)
        except AlertDeliveryError as exc:
            if exc.code not in BLOCKS_REFUSED or not (
                kwargs.get("blocks") or kwargs.get("attachments")
            ):
                raise
            self._blocks_refused(exc, subject)
            plain = render_plain_text(kwargs, replace=method == "chat.update")
            try:
                data = await self._call_web(method, f"{subject} (as plain text)", **plain)
            except AlertDeliveryError:
                self._plain_text_outcome("refused")
                raise
            self._plain_text_outcome("sent")
            return data

    async def _send_webhook(self, payload: dict[str, Any], subject: str) -> None:
        """One webhook message, sent again once as plain text when Slack refuses the
        blocks (:data:`BLOCKS_REFUSED`)."""
        try:
            await self._send_webhook_once(payload, subject)
        except AlertDeliveryError as exc:
            if exc.code not in BLOCKS_REFUSED or not (
                payload.get("blocks") or payload.get("attachments")
            ):
                raise
            self._blocks_refused(exc, subject)
            try:
                await self._send_webhook_once(
                    render_plain_text(payload, replace=False), f"{subject} (as plain text)"
                )
            except AlertDeliveryError:
                self._plain_text_outcome("refused")
                raise
            self._plain_text_outcome("sent")

    def _blocks_refused(self, exc: AlertDeliveryError, subject: str) -> None:
        self.plain_text_retries += 1
        logger.warning(
            "Slack refused the formatting of %s (%s); sending it again as plain text. "
            "This is a Block Kit rendering bug: please report it with the incident id",
            subject, exc.code,
        )
        _call_hook(self._on_refusal, str(exc.code))

    def _plain_text_outcome(self, outcome: str) -> None:
        _call_hook(self._on_plain_text, outcome)

    async def _send_webhook_once(self, payload: dict[str, Any], subject: str) -> None:
        assert self._webhook_client is not None
        try:
            response = await self._webhook_client.send_dict(payload)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise AlertDeliveryError(
                f"Slack webhook unreachable for {subject} "
                f"({type(exc).__name__}{self._errno(exc)}) after the retries; "
                "check network access to Slack",
                status=None,
            ) from None
        body = (response.body or "").strip()
        if response.status_code == 200 and body in ("ok", ""):
            return
        code = self._scrub(body[:_MAX_BODY_CHARS]) or "(empty body)"
        advice = _ADVICE.get(code, "see Slack's incoming-webhook error codes")
        retry_after = _retry_after(response.headers)
        raise AlertDeliveryError(
            f"Slack webhook refused {subject}: HTTP "
            f"{response.status_code} {code}; {advice}",
            status=response.status_code,
            retry_after=retry_after,
            code=code,
        )

    async def _call_web(self, method: str, subject: str, **kwargs: Any) -> dict[str, Any]:
        """Call one Web API method (slack-sdk's name for it) and return its JSON body.

        ``None`` arguments are dropped. Errors become :class:`AlertDeliveryError`
        naming ``method`` and ``subject``, sanitised and unchained.
        """
        assert self._web_client is not None
        client = self._web_client
        calls: dict[str, Callable[..., Any]] = {
            "chat.postMessage": client.chat_postMessage,
            "chat.update": client.chat_update,
            "conversations.history": client.conversations_history,
            "conversations.list": client.conversations_list,
            "auth.test": client.auth_test,
            "files_upload_v2": client.files_upload_v2,
        }
        args = {k: v for k, v in kwargs.items() if v is not None}
        try:
            response = await calls[method](**args)
        except SlackApiError as exc:
            resp = exc.response
            status = getattr(resp, "status_code", None)
            data = getattr(resp, "data", None)
            error = data.get("error") if isinstance(data, dict) else None
            code = self._scrub(str(error or "unexpected_response"))[:_MAX_BODY_CHARS]
            api_url = getattr(resp, "api_url", None)
            if method == "files_upload_v2" and isinstance(api_url, str) and api_url:
                method = api_url.rstrip("/").rsplit("/", 1)[-1]  # the step that failed
            advice = _ADVICE.get(code, "see Slack's error codes for " + method)
            needed = data.get("needed") if isinstance(data, dict) else None
            if code == "missing_scope" and needed:
                advice = f"the bot token lacks the {needed} scope; " + advice
            raise AlertDeliveryError(
                f"Slack {method} failed for {subject}: {code} (HTTP {status}); {advice}",
                status=status,
                retry_after=_retry_after(getattr(resp, "headers", None)),
                code=code,
            ) from None
        except SlackRequestError as exc:  # files_upload_v2: the upload URL refused the bytes
            detail = self._scrub(str(exc))[:_MAX_BODY_CHARS]
            raise AlertDeliveryError(
                f"Slack {method} failed for {subject}: upload_failed ({detail}); "
                + _ADVICE["upload_failed"],
                status=None,
                code="upload_failed",
            ) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise AlertDeliveryError(
                f"Slack Web API unreachable for {method} of {subject} "
                f"({type(exc).__name__}{self._errno(exc)}) after the retries; "
                "check network access to SLACK_API_URL",
                status=None,
            ) from None
        data = response.data
        if not isinstance(data, dict):
            raise AlertDeliveryError(
                f"Slack {method} answered a non-JSON body", status=200, code="unexpected_response"
            )
        return data

    @staticmethod
    def _errno(exc: BaseException) -> str:
        """A short, secret-free detail of an OS-level error (``: [Errno 111] …``)."""
        if isinstance(exc, OSError) and exc.errno is not None:
            return f": [Errno {exc.errno}] {exc.strerror or ''}".rstrip()
        return ""


class ConsoleNotifier:
    """Prints alerts to stdout (:func:`autopilot.blockkit.render_console`).

    Used when Slack is not configured (no ``SLACK_WEBHOOK_URL``/``SLACK_BOT_TOKEN``),
    e.g. in the quick start. Same interface as :class:`SlackNotifier`; never raises
    :class:`AlertDeliveryError`.

    Args:
        stream: where to print (default: ``sys.stdout`` at the time of printing).
    """

    mode = "console"
    supports_update = False

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self.retries = 0
        self._ts = itertools.count(1)

    async def start(self) -> None:
        """Nothing to open."""

    async def aclose(self) -> None:
        """Nothing to close."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def post(self, alert: Alert) -> str | None:
        """Print ``alert``; returns ``None`` (a console message cannot be updated)."""
        self._print(render_console(alert))
        return None

    async def update(self, ts: str, alert: Alert, channel: str | None = None) -> None:
        """Print the new state of ``alert`` (as a new block of text)."""
        self._print(render_console(alert))

    async def post_message(
        self,
        payload: dict[str, Any],
        *,
        channel: str | None = None,
        thread_ts: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[str, str]:
        """Print ``payload`` (:func:`payload_text`); a reply is indented under ``↳``.

        Returns:
            ``("console", ts)`` with ``ts`` a counter (``"1.000000"``, ``"2.000000"`` …).
        """
        ts = f"{next(self._ts)}.000000"
        text = payload_text(payload)
        if thread_ts:
            text = "\n".join("  ↳ " + line for line in text.splitlines() or [""])
        self._print(text)
        return "console", ts

    async def update_message(self, channel_id: str, ts: str, payload: dict[str, Any]) -> None:
        """Print the new state of message ``ts``, marked as an update."""
        self._print(f"[update of {ts}]\n{payload_text(payload)}")

    async def find_message(
        self, channel: str, event_type: str, key: str, value: str, *, oldest: float
    ) -> tuple[str, str] | None:
        """Nothing printed can be found again: always ``None``."""
        return None

    async def upload_file(
        self, channel_id: str, thread_ts: str, content: bytes, filename: str, title: str
    ) -> None:
        """Charts are not printed: does nothing."""

    async def send_webhook(self, payload: dict[str, Any]) -> None:
        """Print ``payload`` (:func:`payload_text`)."""
        self._print(payload_text(payload))

    def _print(self, text: str) -> None:
        stream = self._stream or sys.stdout
        print(text, file=stream, flush=True)


def build_notifier(
    settings: Settings,
    on_retry: RetryCallback | None = None,
    *,
    on_refusal: Callable[[str], None] | None = None,
    on_plain_text: Callable[[str], None] | None = None,
) -> SlackNotifier | ConsoleNotifier:
    """Choose the notifier for ``settings``.

    Bot mode when ``SLACK_BOT_TOKEN`` is set (it can update messages), else webhook
    mode when ``SLACK_WEBHOOK_URL`` is set, else :class:`ConsoleNotifier`.

    Args:
        settings: the autopilot settings.
        on_retry, on_refusal, on_plain_text: see :class:`SlackNotifier`; unused by
            the console notifier.
    """
    if settings.slack_bot_token is not None or settings.slack_webhook_url is not None:
        notifier = SlackNotifier(settings, on_retry=on_retry, on_refusal=on_refusal,
                                 on_plain_text=on_plain_text)
        logger.info("alerts go to Slack (%s mode)", notifier.mode)
        return notifier
    logger.warning(
        "Slack is not configured (SLACK_WEBHOOK_URL or SLACK_BOT_TOKEN + SLACK_CHANNEL); "
        "alerts are printed to stdout"
    )
    return ConsoleNotifier()
