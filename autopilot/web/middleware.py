"""aiohttp middleware guarding every worker's HTTP surface (rules: autopilot.security).

Installed through Faust's ``web_application_options`` (see
:func:`autopilot.app.faust_options`), so it wraps every route of the worker — our
views, Faust's own, unknown paths — and requests another worker forwards through
Faust's table routing (which passes the original headers on, so the caller's key
is checked again by the owner). Order of checks:

1. body larger than ``AUTOPILOT_MAX_BODY_BYTES`` → 413 (by ``Content-Length``;
   chunked bodies are cut by aiohttp's ``client_max_size``, also 413);
2. ``/health``, ``/ready``, ``/openapi.json`` and ``/slack/interactions`` (whose
   requests carry Slack's signature instead) are public (the routes marked
   ``public`` in :data:`autopilot.web.routes.ROUTES`; a test keeps both equal); every
   other path needs, when ``AUTOPILOT_API_KEYS`` is set, a key (``Authorization:
   Bearer`` or ``X-API-Key``) → else 401 with ``WWW-Authenticate: Bearer``; a GitHub
   ``X-Hub-Signature-256`` valid for ``AUTOPILOT_GITHUB_WEBHOOK_SECRET`` also
   authenticates ``POST /ingest/deployment`` (an invalid one is a 401);
3. token bucket per key (per client address without keys) → 429 with
   ``Retry-After``;
4. a body a view reads with :func:`read_body` that does not decode as its
   ``Content-Encoding`` says → 400, more than ``AUTOPILOT_MAX_BODY_BYTES`` once
   inflated → 413, another encoding → 415 (:mod:`autopilot.formats.content_encoding`).

aiohttp's own inflation of request bodies is off (``handler_args``): views get the
bytes as sent, so signatures (Slack, GitHub) are checked on them, remote write reads
its snappy, and :func:`read_body` inflates the rest.

Answers never echo the presented key; log lines name a key by its fingerprint.
Imports neither the app nor the views (the app's wiring imports this module).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from autopilot import telemetry
from autopilot.formats.content_encoding import BodyEncodingError, decode_content
from autopilot.security import (
    ApiKeys,
    RateLimiter,
    credential_from_headers,
    verify_github_signature,
)
from autopilot.settings import Settings

__all__ = ["PUBLIC_PATHS", "make_guard", "read_body", "web_application_options"]

logger = logging.getLogger(__name__)

#: Paths served without a key: no state in them, or (``/slack/interactions``)
#: authenticated by Slack's request signature instead (``SLACK_SIGNING_SECRET``).
PUBLIC_PATHS = frozenset({"/health", "/ready", "/openapi.json", "/slack/interactions"})
GITHUB_SIGNATURE = "X-Hub-Signature-256"


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The request's body, inflated by its ``Content-Encoding``.

    Raises:
        BodyEncodingError: the body does not decode (400), is over ``max_bytes`` once
            inflated (413) or has an encoding not taken (415); the guard answers it.
    """
    return decode_content(
        await request.read(), request.headers.get("Content-Encoding", ""), max_bytes
    )


def make_guard(s: Settings) -> Any:
    """The middleware for settings ``s`` (see module docstring)."""
    keys = ApiKeys(s.api_key_list())
    limiter = RateLimiter(s.rate_limit_rps, s.rate_limit_burst)
    github_secret = s.github_webhook_secret.get_secret_value() if s.github_webhook_secret else ""
    max_body = s.max_body_bytes

    def too_large() -> web.Response:
        telemetry.HTTP_REJECTED.labels(reason="too_large").inc()
        return _error(413, f"request body larger than {max_body} bytes (AUTOPILOT_MAX_BODY_BYTES)")

    async def authenticate(request: web.Request) -> str | None:
        signature = request.headers.get(GITHUB_SIGNATURE)
        if github_secret and signature and request.path == "/ingest/deployment":
            body = await request.read()
            return (
                "github-webhook"
                if verify_github_signature(github_secret, body, signature)
                else None
            )
        if not keys.enabled:
            return f"addr:{request.remote or 'unknown'}"
        found = keys.match(credential_from_headers(request.headers))
        return f"key:{found}" if found else None

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > max_body:
            return too_large()
        try:
            if request.path not in PUBLIC_PATHS:
                client = await authenticate(request)
                if client is None:
                    telemetry.HTTP_REJECTED.labels(reason="unauthorized").inc()
                    logger.info(
                        "401 %s %s from %s: missing or invalid credentials",
                        request.method,
                        request.path,
                        request.remote,
                    )
                    return _error(
                        401,
                        "missing or invalid API key: send 'Authorization: Bearer <key>' or "
                        "'X-API-Key: <key>'",
                        {"WWW-Authenticate": 'Bearer realm="autopilot"'},
                    )
                retry_after = limiter.check(client, time.monotonic())
                if retry_after:
                    telemetry.HTTP_REJECTED.labels(reason="rate_limited").inc()
                    return _error(
                        429,
                        f"rate limit exceeded; retry after {retry_after} s",
                        {"Retry-After": str(retry_after)},
                    )
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return too_large()
        except BodyEncodingError as exc:
            telemetry.HTTP_REJECTED.labels(
                reason="too_large" if exc.status == 413 else "bad_body"
            ).inc()
            return _error(exc.status, exc.reason)
        except (web.RequestPayloadError, HttpProcessingError) as exc:
            # A body aiohttp cannot read (a broken gzip or chunked stream) is the
            # client's error, whichever view read it.
            telemetry.HTTP_REJECTED.labels(reason="bad_body").inc()
            return _error(400, f"request body could not be read: {exc.__class__.__name__}: {exc}")

    return guard


def web_application_options(s: Settings) -> dict[str, Any]:
    """``faust.App(web_application_options=…)``: the guard, the body limit, and bodies
    as sent (aiohttp's inflation off; :func:`read_body` inflates)."""
    return {
        "middlewares": [make_guard(s)],
        "client_max_size": s.max_body_bytes,
        "handler_args": {"auto_decompress": False},
    }
