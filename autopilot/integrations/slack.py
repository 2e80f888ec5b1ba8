"""Deliver alerts to Slack (incoming webhook or bot token) or to the console.

Two Slack modes, chosen by :func:`build_notifier` from the settings:

- **webhook** (``SLACK_WEBHOOK_URL``): ``slack_sdk.webhook.async_client.AsyncWebhookClient``
  POSTs the Block Kit payload as JSON. Slack answers ``200 ok`` or an HTTP error with a
  plain-text code: 400 ``invalid_payload``/``no_text``, 403 ``action_prohibited``/
  ``invalid_token``, 404 ``no_service``/``channel_not_found``, 410
  ``channel_is_archived``, 429 ``rate_limited`` (with ``Retry-After``), 500
  ``rollup_error``/``internal_error`` (Slack docs, "Sending messages using incoming
  webhooks", "Handling errors"). A webhook cannot edit a message.
- **bot** (``SLACK_BOT_TOKEN`` + ``SLACK_CHANNEL``): ``slack_sdk.web.async_client.AsyncWebClient``
  calls ``chat.postMessage`` and ``chat.update`` at ``SLACK_API_URL``. Slack answers
  ``{"ok": true, "channel": "C…", "ts": "…"}`` or ``{"ok": false, "error": "<code>"}``
  (``invalid_auth``, ``channel_not_found``, ``not_in_channel``, ``ratelimited`` …).

Retries use slack-sdk's own handlers, sharing one budget of ``SLACK_MAX_RETRIES``
retries per send: ``AsyncRateLimitErrorRetryHandler`` (429, sleeps ``Retry-After`` +
up to 1 s jitter), a server-error handler (500, 502, 503, 504; slack-sdk's
``AsyncServerErrorRetryHandler`` retries 500 and 503 only) and
``AsyncConnectionErrorRetryHandler`` (connection refused/reset), both with slack-sdk's
exponential backoff (0.5 s × 2^attempt + jitter). Each retry calls ``on_retry(reason)``
with ``reason`` one of :data:`RETRY_REASONS`, for a Prometheus counter.

Failures raise :class:`autopilot.errors.AlertDeliveryError` (``status``,
``retry_after``) with a message that never contains the webhook URL or the token:
slack-sdk and aiohttp errors are re-raised sanitised and unchained, and slack-sdk's
own logger (which logs request URLs at INFO on retries) is muted below WARNING and
redacted.

When Slack is not configured, :class:`ConsoleNotifier` prints the alert to stdout.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, Self, TextIO

import aiohttp
from slack_sdk.errors import SlackApiError
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

from autopilot.blockkit import render_alert, render_console
from autopilot.errors import AlertDeliveryError
from autopilot.models import Alert
from autopilot.settings import Settings

__all__ = [
    "RETRY_REASONS",
    "ConsoleNotifier",
    "Notifier",
    "RetryCallback",
    "SlackNotifier",
    "build_notifier",
]

logger = logging.getLogger(__name__)

#: Called once per retry with the reason (one of :data:`RETRY_REASONS`).
RetryCallback = Callable[[str], None]
#: Reasons passed to the retry callback.
RETRY_REASONS = ("rate_limited", "server_error", "connection_error")

#: Timeout (s) of one HTTP attempt to Slack (slack-sdk wants whole seconds).
DEFAULT_TIMEOUT_S = 10
#: HTTP statuses retried as server errors.
SERVER_ERROR_STATUSES = frozenset({500, 502, 503, 504})
_MAX_BODY_CHARS = 200
_REDACTED = "<redacted>"

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
    "missing_scope": "the bot token lacks the chat:write scope",
    "message_not_found": "the message to update no longer exists",
    "cant_update_message": "only messages posted by this bot can be updated",
    "internal_error": "Slack is failing after all retries; the send is retried later",
    "rollup_error": "Slack is failing after all retries; the send is retried later",
    "service_unavailable": "Slack is failing after all retries; the send is retried later",
    "rate_limited": "Slack rate-limited us after all retries; alerts are too frequent",
    "ratelimited": "Slack rate-limited us after all retries; alerts are too frequent",
}


class Notifier(Protocol):
    """What the Slack sink agent needs from a notifier."""

    async def start(self) -> None:
        """Open connections (idempotent)."""

    async def aclose(self) -> None:
        """Close connections (idempotent)."""

    async def post(self, alert: Alert) -> str | None:
        """Publish ``alert``; return the message ts when it can be updated later."""

    async def update(self, ts: str, alert: Alert, channel: str | None = None) -> None:
        """Replace the message ``ts`` with ``alert``."""


# --- retry handlers that report each retry --------------------------------------------


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


class _Redactor(logging.Filter):
    """Logging filter and string scrubber that removes the given secrets."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, _REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        record.msg, record.args = self.scrub(message), None
        if record.exc_info:  # tracebacks may carry the URL; keep the type only
            exc = record.exc_info[1]
            record.msg += f" ({type(exc).__name__})"
            record.exc_info, record.exc_text = None, None
        return True


def _sdk_logger(redactor: _Redactor) -> logging.Logger:
    """A logger for slack-sdk clients that never logs request URLs.

    slack-sdk logs the request URL (the webhook URL is a secret) at DEBUG and, on
    every retry, at INFO whenever ``logger.level <= DEBUG`` -- including an unset
    level (0). Its level is therefore pinned to WARNING, and a filter redacts secrets
    from whatever it still logs.
    """
    sdk_logger = logging.getLogger(f"{__name__}.sdk")
    sdk_logger.setLevel(logging.WARNING)
    for old in [f for f in sdk_logger.filters if isinstance(f, _Redactor)]:
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


# --- notifiers ------------------------------------------------------------------------


class SlackNotifier:
    """Posts alerts to Slack through an incoming webhook or a bot token.

    Build it with :func:`build_notifier` or directly from settings. Use it as a
    long-lived service: ``await start()`` (or ``async with``) opens one aiohttp
    session, ``await aclose()`` closes it; :meth:`post` starts it lazily.

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
        self._redactor = _Redactor(secrets)
        self._handlers = retry_handlers(settings.slack_max_retries, self._count_retry)
        self._session: aiohttp.ClientSession | None = None
        self._webhook_client: AsyncWebhookClient | None = None
        self._web_client: AsyncWebClient | None = None

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
        sdk_logger = _sdk_logger(self._redactor)
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
                answer came) and ``retry_after`` the last ``Retry-After`` (s).
        """
        await self.start()
        payload = render_alert(alert)
        if self.mode == "webhook":
            await self._send_webhook(payload, alert)
            return None
        data = await self._call_web("chat.postMessage", alert, channel=self._channel, **payload)
        channel = data.get("channel")
        if isinstance(channel, str) and channel:
            self.channel_id = channel
        ts = data.get("ts")
        if not isinstance(ts, str) or not ts:
            raise AlertDeliveryError(
                "Slack chat.postMessage answered ok without a message ts", status=200
            )
        return ts

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
        if self.mode == "webhook":
            await self._send_webhook(payload, alert)
            return
        target = channel or self.channel_id or self._channel
        await self._call_web("chat.update", alert, channel=target, ts=ts, **payload)

    async def _send_webhook(self, payload: dict[str, Any], alert: Alert) -> None:
        assert self._webhook_client is not None
        try:
            response = await self._webhook_client.send_dict(payload)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise AlertDeliveryError(
                f"Slack webhook unreachable for incident {alert.incident.id} "
                f"({type(exc).__name__}{self._errno(exc)}) after the retries; "
                "check network access to Slack",
                status=None,
            ) from None
        body = (response.body or "").strip()
        if response.status_code == 200 and body in ("ok", ""):
            return
        code = self._redactor.scrub(body[:_MAX_BODY_CHARS]) or "(empty body)"
        advice = _ADVICE.get(code, "see Slack's incoming-webhook error codes")
        retry_after = _retry_after(response.headers)
        raise AlertDeliveryError(
            f"Slack webhook refused incident {alert.incident.id}: HTTP "
            f"{response.status_code} {code}; {advice}",
            status=response.status_code,
            retry_after=retry_after,
        )

    async def _call_web(self, method: str, alert: Alert, **kwargs: Any) -> dict[str, Any]:
        assert self._web_client is not None
        try:
            if method == "chat.postMessage":
                response = await self._web_client.chat_postMessage(**kwargs)
            else:
                response = await self._web_client.chat_update(**kwargs)
        except SlackApiError as exc:
            resp = exc.response
            status = getattr(resp, "status_code", None)
            data = getattr(resp, "data", None)
            error = data.get("error") if isinstance(data, dict) else None
            code = self._redactor.scrub(str(error or "unexpected_response"))[:_MAX_BODY_CHARS]
            advice = _ADVICE.get(code, "see Slack's error codes for " + method)
            raise AlertDeliveryError(
                f"Slack {method} failed for incident {alert.incident.id}: {code} "
                f"(HTTP {status}); {advice}",
                status=status,
                retry_after=_retry_after(getattr(resp, "headers", None)),
            ) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise AlertDeliveryError(
                f"Slack Web API unreachable for {method} of incident {alert.incident.id} "
                f"({type(exc).__name__}{self._errno(exc)}) after the retries; "
                "check network access to SLACK_API_URL",
                status=None,
            ) from None
        data = response.data
        if not isinstance(data, dict):
            raise AlertDeliveryError(f"Slack {method} answered a non-JSON body", status=200)
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

    def _print(self, text: str) -> None:
        stream = self._stream or sys.stdout
        print(text, file=stream, flush=True)


def build_notifier(
    settings: Settings, on_retry: RetryCallback | None = None
) -> SlackNotifier | ConsoleNotifier:
    """Choose the notifier for ``settings``.

    Bot mode when ``SLACK_BOT_TOKEN`` is set (it can update messages), else webhook
    mode when ``SLACK_WEBHOOK_URL`` is set, else :class:`ConsoleNotifier`.

    Args:
        settings: the autopilot settings.
        on_retry: see :class:`SlackNotifier`; unused by the console notifier.
    """
    if settings.slack_bot_token is not None or settings.slack_webhook_url is not None:
        notifier = SlackNotifier(settings, on_retry=on_retry)
        logger.info("alerts go to Slack (%s mode)", notifier.mode)
        return notifier
    logger.warning(
        "Slack is not configured (SLACK_WEBHOOK_URL or SLACK_BOT_TOKEN + SLACK_CHANNEL); "
        "alerts are printed to stdout"
    )
    return ConsoleNotifier()
