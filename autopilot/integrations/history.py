"""Alert history and send idempotency in Redis (``redis.asyncio``).

Keys (all strings UTF-8; names are a persisted contract):

``autopilot:sent:{incident_id}:{revision_key}``
    The send of one incident revision. ``SET NX`` of ``"pending"`` with a short
    lease (:data:`CLAIM_LEASE_S`, renewed while Slack is retried) claims it; once
    Slack has answered it becomes ``"sent"`` (TTL 7 days; ``"1"`` from older
    workers means the same). Kafka delivers at least once, so after a crash the
    alert is seen again: a ``"sent"`` key makes the resend a no-op, and a
    ``"pending"`` key left by a worker that died before Slack answered expires
    with its lease, after which the alert is claimed and sent again (an alert is
    never lost; it is sent twice only if the worker died in the instant between
    Slack's answer and the ``"sent"`` mark). Deleted when the send failed
    permanently, so a later retry can send.
``autopilot:sent:{key}``
    The same scheme for any other send the notifier must not repeat (a thread
    reply, a chart upload, a resolved message): :meth:`AlertHistory.claim` /
    :meth:`~AlertHistory.renew` / :meth:`~AlertHistory.mark_done` /
    :meth:`~AlertHistory.release` take the ``key`` the caller chose, which starts
    with the incident id (``inc-…:reply:resolved:2``). The revision sends above are
    the case ``key = "{incident_id}:{revision_key}"``.
``autopilot:message:{incident_id}``
    Hash of the incident's root Slack message (bot mode): ``channel`` (ID), ``ts``,
    ``stored_at`` (RFC 3339 UTC); TTL 7 days from the last write
    (:meth:`AlertHistory.set_incident_message`). Incidents recorded by earlier
    versions have only ``ts``/``channel`` in ``autopilot:incident:{incident_id}``,
    which :meth:`AlertHistory.get_incident_message` reads as a fallback.
``autopilot:history:{service}``
    List of JSON summaries, newest first (``LPUSH``), capped at
    ``AUTOPILOT_ALERT_HISTORY`` entries (``LTRIM``), TTL 7 days from the last alert.
``autopilot:incident:{incident_id}``
    Hash of the last alert of an incident: ``service``, ``severity``, ``status``,
    ``revision``, ``ts`` (Slack message ts, empty without one), ``channel``,
    ``sent_at`` (RFC 3339 UTC), ``source`` (llm/rules); TTL 7 days.

Every Redis failure (connection refused, socket timeout, server error) raises
:class:`autopilot.errors.DeliveryError` with a message naming the operation; the
caller decides whether to degrade (send without idempotency) or retry. The message
never contains the Redis password.

Without ``REDIS_URL``, :meth:`AlertHistory.disabled` gives a history that claims every
send (no idempotency: a replay may resend), records nothing, and logs one warning.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from autopilot.errors import DeliveryError
from autopilot.models import Alert
from autopilot.redact import Redactor
from autopilot.settings import Settings

__all__ = ["AlertHistory", "CLAIM_LEASE_S", "SENT_TTL_S"]

logger = logging.getLogger(__name__)

#: Lifetime of idempotency keys, history lists and incident hashes (s): 7 days.
SENT_TTL_S = 7 * 24 * 3600
#: Lease of a ``"pending"`` claim (s): how long a replayed alert waits for a worker
#: that may still be sending it before taking the send over.
CLAIM_LEASE_S = 30.0
#: Default socket connect/read timeout for Redis (s).
DEFAULT_SOCKET_TIMEOUT_S = 5.0
_KEY_PREFIX = "autopilot"
#: A Slack conversation ID (names are lower case and never match).
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,}")


def claim_key(key: str) -> str:
    """Redis key of the idempotency claim ``key`` (``autopilot:sent:{key}``)."""
    return f"{_KEY_PREFIX}:sent:{key}"


def sent_key(incident_id: str, revision_key: str) -> str:
    """Idempotency key of one incident revision's send."""
    return claim_key(f"{incident_id}:{revision_key}")


def message_key(incident_id: str) -> str:
    """Key of the hash holding an incident's root Slack message."""
    return f"{_KEY_PREFIX}:message:{incident_id}"


def history_key(service: str) -> str:
    """Key of a service's alert-history list."""
    return f"{_KEY_PREFIX}:history:{service}"


def incident_key(incident_id: str) -> str:
    """Key of an incident's metadata hash."""
    return f"{_KEY_PREFIX}:incident:{incident_id}"


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


class AlertHistory:
    """Send idempotency and alert history over Redis.

    Build it with :meth:`from_settings` (or :meth:`disabled`), once per worker;
    ``await aclose()`` on shutdown. Methods are coroutines and safe to call
    concurrently (one connection pool).

    Settings used:
        ``redis_url`` (``REDIS_URL``, e.g. ``redis://localhost:6379/0``; unset means
        disabled), ``alert_history_size`` (``AUTOPILOT_ALERT_HISTORY``, default 100
        alerts kept per service).

    Args:
        settings: the autopilot settings; ``redis_url`` must be set.
        socket_timeout_s: connect and read timeout of each Redis call (s, default 5).
        channel: what to store as the alert's channel when the caller gives none
            (default ``SLACK_CHANNEL``, else ``"webhook"``/``"console"``).

    Raises:
        ValueError: ``redis_url`` is not set (use :meth:`disabled`).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        socket_timeout_s: float = DEFAULT_SOCKET_TIMEOUT_S,
        channel: str | None = None,
    ) -> None:
        if not settings.redis_url:
            raise ValueError("AlertHistory needs REDIS_URL; use AlertHistory.disabled()")
        self._url = settings.redis_url
        self._password = urlsplit(settings.redis_url).password or ""
        self._size = settings.alert_history_size
        self._socket_timeout_s = socket_timeout_s
        self._default_channel = (
            channel
            or settings.slack_channel
            or ("webhook" if settings.slack_webhook_url is not None else "console")
        )
        self._redis: aioredis.Redis | None = None
        self._enabled = True
        self._warned = False

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> AlertHistory:
        """A Redis-backed history, or :meth:`disabled` when ``REDIS_URL`` is unset."""
        if not settings.redis_url:
            return cls.disabled()
        return cls(settings, **kwargs)

    @classmethod
    def disabled(cls) -> AlertHistory:
        """A history without Redis: every send is claimed, nothing is recorded.

        It logs one warning (on first use) that duplicate alerts after a restart
        are possible.
        """
        self = cls.__new__(cls)
        self._url = ""
        self._password = ""
        self._size = 0
        self._socket_timeout_s = DEFAULT_SOCKET_TIMEOUT_S
        self._default_channel = ""
        self._redis = None
        self._enabled = False
        self._warned = False
        return self

    @property
    def enabled(self) -> bool:
        """True when backed by Redis."""
        return self._enabled

    def __repr__(self) -> str:
        if not self._enabled:
            return "AlertHistory(disabled)"
        parts = urlsplit(self._url)
        return f"AlertHistory({parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path})"

    # --- lifecycle --------------------------------------------------------------------

    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            self._redis = aioredis.Redis.from_url(
                self._url,
                socket_timeout=self._socket_timeout_s,
                socket_connect_timeout=self._socket_timeout_s,
                decode_responses=True,
                health_check_interval=30,
            )
        return self._redis

    async def start(self) -> None:
        """Connect and ``PING`` Redis (disabled: nothing).

        Raises:
            DeliveryError: Redis cannot be reached.
        """
        if not self._enabled:
            self._warn_disabled()
            return
        try:
            await self._client().ping()
        except (RedisError, OSError) as exc:
            raise self._error("PING", exc) from None

    async def aclose(self) -> None:
        """Close the connection pool (idempotent)."""
        client, self._redis = self._redis, None
        if client is not None:
            await client.aclose()

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

    # --- idempotency ------------------------------------------------------------------

    async def claim(self, key: str, lease_s: float = CLAIM_LEASE_S) -> bool:
        """Claim the send identified by ``key`` (see the module docstring).

        ``SET NX`` of ``"pending"`` on ``autopilot:sent:{key}`` for ``lease_s``
        seconds. If the key says ``"sent"``, the send happened before: skip. If it
        says ``"pending"``, another attempt holds it (a worker that died mid-send, or
        one still sending): wait (polling every ``min(1, lease_s / 4)`` s) until it
        is marked done (skip) or its lease runs out (claim it; also after
        ``lease_s + 5`` s of waiting if the holder keeps renewing).

        Args:
            key: the send's identity, chosen by the caller; start it with the
                incident id (``"inc-…:reply:analysis"``). The same key always means
                the same message.
            lease_s: lease of the pending claim (s); renew it with :meth:`renew`
                while Slack is retried.

        Returns:
            True when this caller owns the send; False when it was done already.
            Disabled history: always True.

        Raises:
            DeliveryError: Redis failed; whether the send happened is unknown.
        """
        return await self._claim(claim_key(key), lease_s, f"claim of {key}")

    async def renew(self, key: str, lease_s: float = CLAIM_LEASE_S) -> None:
        """Extend the lease of a pending claim of ``key`` (no-op once it is done).

        Raises:
            DeliveryError: Redis failed.
        """
        await self._renew(claim_key(key), lease_s, f"lease renewal of {key}")

    async def mark_done(self, key: str) -> None:
        """Mark the claimed send ``key`` as done (``"sent"``, TTL 7 days).

        Raises:
            DeliveryError: Redis failed (the pending claim then expires with its
            lease, and a replay would send again).
        """
        await self._mark(claim_key(key), f"sent mark of {key}")

    async def release(self, key: str) -> None:
        """Give up the claim of ``key`` after a failed send, so a retry can send.

        Raises:
            DeliveryError: Redis failed (the claim then expires with its lease).
        """
        await self._release(claim_key(key), f"release of {key}")

    async def claim_send(
        self, incident_id: str, revision_key: str, lease_s: float = CLAIM_LEASE_S
    ) -> bool:
        """Claim the send of one incident revision: :meth:`claim` of
        ``"{incident_id}:{revision_key}"``.

        Returns:
            True when this caller owns the send; False when it was sent already.

        Raises:
            DeliveryError: Redis failed; whether the alert was sent is unknown.
        """
        return await self._claim(
            sent_key(incident_id, revision_key),
            lease_s,
            f"claim of incident {incident_id} revision {revision_key}",
        )

    async def renew_claim(
        self, incident_id: str, revision_key: str, lease_s: float = CLAIM_LEASE_S
    ) -> None:
        """Extend a pending revision claim's lease (called while Slack is being retried).

        Raises:
            DeliveryError: Redis failed.
        """
        await self._renew(
            sent_key(incident_id, revision_key),
            lease_s,
            f"lease renewal of incident {incident_id} revision {revision_key}",
        )

    async def mark_sent(self, incident_id: str, revision_key: str) -> None:
        """Mark a claimed revision send as done (``"sent"``, TTL 7 days).

        Raises:
            DeliveryError: Redis failed (the pending claim then expires with its
            lease, and a replay would send again).
        """
        await self._mark(
            sent_key(incident_id, revision_key),
            f"sent mark of incident {incident_id} revision {revision_key}",
        )

    async def release_send(self, incident_id: str, revision_key: str) -> None:
        """Give up a revision claim after a failed send, so a retry can claim and send.

        Raises:
            DeliveryError: Redis failed (the claim then expires with its lease).
        """
        await self._release(
            sent_key(incident_id, revision_key),
            f"release of incident {incident_id} revision {revision_key}",
        )

    async def _claim(self, redis_key: str, lease_s: float, operation: str) -> bool:
        if not self._enabled:
            self._warn_disabled()
            return True
        deadline = time.monotonic() + lease_s + 5.0
        try:
            while True:
                if await self._client().set(redis_key, "pending", nx=True,
                                            px=int(lease_s * 1000)):
                    return True
                value = await self._client().get(redis_key)
                if isinstance(value, bytes):
                    value = value.decode()
                if value is not None and value != "pending":
                    return False  # "sent" (or "1" from older workers)
                if value is not None and time.monotonic() >= deadline:
                    logger.warning("%s still pending after %.0f s; taking it over",
                                   operation, lease_s)
                    await self._client().set(redis_key, "pending", px=int(lease_s * 1000))
                    return True
                if value is not None:
                    await asyncio.sleep(min(1.0, lease_s / 4))
        except (RedisError, OSError) as exc:
            raise self._error(operation, exc) from None

    async def _renew(self, redis_key: str, lease_s: float, operation: str) -> None:
        if not self._enabled:
            return
        try:
            # only a pending claim is renewed: a "sent" mark must keep its 7-day TTL
            value = await self._client().get(redis_key)
            if value in ("pending", b"pending"):
                await self._client().set(redis_key, "pending", xx=True,
                                         px=int(lease_s * 1000))
        except (RedisError, OSError) as exc:
            raise self._error(operation, exc) from None

    async def _mark(self, redis_key: str, operation: str) -> None:
        if not self._enabled:
            return
        try:
            await self._client().set(redis_key, "sent", ex=SENT_TTL_S)
        except (RedisError, OSError) as exc:
            raise self._error(operation, exc) from None

    async def _release(self, redis_key: str, operation: str) -> None:
        if not self._enabled:
            return
        try:
            await self._client().delete(redis_key)
        except (RedisError, OSError) as exc:
            raise self._error(operation, exc) from None

    # --- the incident's root message ---------------------------------------------

    async def first_attempt(self, key: str) -> bool:
        """Record that the send ``key`` is being attempted; True the first time.

        ``SET NX`` of ``autopilot:attempt:{key}`` with the 7-day TTL. Unlike a claim's
        lease it does not expire after a crash, so a later attempt knows an earlier
        one may have reached Slack (and looks for its message before sending again).
        Disabled history: always True.

        Raises:
            DeliveryError: Redis failed.
        """
        if not self._enabled:
            return True
        try:
            return bool(await self._client().set(
                f"{_KEY_PREFIX}:attempt:{key}", "1", nx=True, ex=SENT_TTL_S))
        except (RedisError, OSError) as exc:
            raise self._error(f"attempt mark of {key}", exc) from None

    async def set_incident_message(self, incident_id: str, channel_id: str, ts: str) -> None:
        """Store the root Slack message of an incident (``autopilot:message:{id}``).

        ``HSET channel, ts, stored_at`` + ``EXPIRE`` 7 days, in one transaction;
        writing again replaces it (and restarts the TTL). Disabled history: no-op.

        Args:
            incident_id: the incident id.
            channel_id: the channel ID Slack posted to (``C…``), as ``chat.update``
                needs it.
            ts: the root message ts (the thread's ``thread_ts``).

        Raises:
            DeliveryError: Redis failed.
        """
        if not self._enabled:
            self._warn_disabled()
            return
        stored_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        key = message_key(incident_id)
        try:
            async with self._client().pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={"channel": channel_id, "ts": ts, "stored_at": stored_at})
                pipe.expire(key, SENT_TTL_S)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise self._error(f"write of the Slack message of incident {incident_id}",
                              exc) from None

    async def get_incident_message(self, incident_id: str) -> tuple[str, str] | None:
        """The root Slack message of an incident, ``(channel_id, ts)``, if stored.

        Reads ``autopilot:message:{incident_id}``; when absent, falls back to the
        ``ts``/``channel`` that earlier versions stored in
        ``autopilot:incident:{incident_id}``, if both are set and the channel is an
        ID (``C…``/``G…``/``D…``).

        Returns:
            ``(channel_id, ts)`` or ``None`` (unknown, expired, or disabled history).

        Raises:
            DeliveryError: Redis failed.
        """
        if not self._enabled:
            return None
        try:
            raw = await self._client().hgetall(message_key(incident_id))
            if not raw:
                raw = await self._client().hgetall(incident_key(incident_id))
        except (RedisError, OSError) as exc:
            raise self._error(f"read of the Slack message of incident {incident_id}",
                              exc) from None
        values = {_text(k): _text(v) for k, v in raw.items()}
        channel, ts = values.get("channel", ""), values.get("ts", "")
        if not channel or not ts or not _CHANNEL_ID.fullmatch(channel):
            return None
        return channel, ts

    # --- history ----------------------------------------------------------------------

    async def record(self, alert: Alert, slack_ts: str | None, channel: str | None = None) -> None:
        """Record a sent alert: push its summary and store the incident's metadata.

        One transaction: ``LPUSH`` + ``LTRIM`` (to ``AUTOPILOT_ALERT_HISTORY``) +
        ``EXPIRE`` on the service's history list, ``HSET`` + ``EXPIRE`` on the
        incident hash. Disabled history: no-op.

        Args:
            alert: the alert that was sent.
            slack_ts: the Slack message ts (bot mode), else ``None``.
            channel: the channel (ID) it went to; default: see the constructor.

        Raises:
            DeliveryError: Redis failed.
        """
        if not self._enabled:
            self._warn_disabled()
            return
        incident, analysis = alert.incident, alert.analysis
        sent_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        target = channel or self._default_channel
        summary = {
            "incident_id": incident.id,
            "service": incident.service,
            "status": incident.status,
            "revision": incident.revision,
            "severity": str(analysis.severity),
            "incident_severity": str(incident.severity),
            "trigger_reason": incident.trigger_reason,
            "root_cause": analysis.root_cause.description,
            "confidence": analysis.root_cause.confidence,
            "source": analysis.source,
            "model": analysis.model,
            "opened_at": incident.opened_at.isoformat(),
            "updated_at": incident.updated_at.isoformat(),
            "sent_at": sent_at,
            "slack_ts": slack_ts,
            "channel": target,
        }
        meta: dict[Any, Any] = {
            "service": incident.service,
            "severity": str(analysis.severity),
            "status": incident.status,
            "revision": str(incident.revision),
            "ts": slack_ts or "",
            "channel": target,
            "sent_at": sent_at,
            "source": analysis.source,
        }
        hkey, ikey = history_key(incident.service), incident_key(incident.id)
        try:
            async with self._client().pipeline(transaction=True) as pipe:
                pipe.lpush(hkey, json.dumps(summary, separators=(",", ":")))
                pipe.ltrim(hkey, 0, self._size - 1)
                pipe.expire(hkey, SENT_TTL_S)
                pipe.hset(ikey, mapping=meta)
                pipe.expire(ikey, SENT_TTL_S)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise self._error(f"record of incident {incident.id}", exc) from None

    async def get_incident_meta(self, incident_id: str) -> dict[str, str]:
        """The metadata hash of an incident's last sent alert (see module docstring).

        Returns:
            ``{"service", "severity", "status", "revision", "ts", "channel",
            "sent_at", "source"}`` as strings, or ``{}`` when unknown or disabled.

        Raises:
            DeliveryError: Redis failed.
        """
        if not self._enabled:
            return {}
        try:
            raw = await self._client().hgetall(incident_key(incident_id))
        except (RedisError, OSError) as exc:
            raise self._error(f"read of incident {incident_id}", exc) from None
        return {_text(k): _text(v) for k, v in raw.items()}

    async def history(self, service: str, limit: int = 20) -> list[dict[str, Any]]:
        """The last ``limit`` alert summaries of ``service``, newest first.

        Returns:
            Summaries as written by :meth:`record` (``[]`` when disabled); entries
            that are not valid JSON are skipped.

        Raises:
            DeliveryError: Redis failed.
        """
        if not self._enabled or limit <= 0:
            return []
        try:
            items = await self._client().lrange(history_key(service), 0, limit - 1)
        except (RedisError, OSError) as exc:
            raise self._error(f"read of the history of {service}", exc) from None
        out: list[dict[str, Any]] = []
        for item in items:
            try:
                value = json.loads(item)
            except ValueError:
                logger.warning("skipping a history entry of %s that is not JSON", service)
                continue
            if isinstance(value, dict):
                out.append(value)
        return out

    # --- helpers ----------------------------------------------------------------------

    def _warn_disabled(self) -> None:
        if self._warned:
            return
        self._warned = True
        logger.warning(
            "REDIS_URL is not set: alert history is off and sends are not deduplicated, "
            "so an alert may be sent twice after a restart; set REDIS_URL to fix"
        )

    def _error(self, operation: str, exc: BaseException) -> DeliveryError:
        # The URL's password, however short, and any other secret the text shows.
        detail = Redactor([self._password], cache_size=0, min_secret_chars=1).redact(
            str(exc), pii=False
        )
        return DeliveryError(
            f"Redis {operation} failed ({type(exc).__name__}: {detail}); "
            "check that Redis at REDIS_URL is reachable"
        )
