"""Root-cause analysis through a local Ollama server (``POST /api/chat``).

The request follows Ollama's chat API (ollama/ollama ``docs/api.md``, "Generate a
chat completion"), non-streaming, with a JSON schema as ``format`` (structured
outputs) and temperature 0::

    POST {OLLAMA_URL}/api/chat
    {"model": "llama3:latest",
     "messages": [{"role": "system", "content": "..."}, {"role": "user", ...}],
     "stream": false,
     "format": {<JSON schema of the analysis>},
     "options": {"temperature": 0}}

A successful answer is one JSON object::

    {"model": "llama3:latest", "created_at": "2024-…Z",
     "message": {"role": "assistant", "content": "<the analysis as a JSON string>"},
     "done": true, "done_reason": "stop", "total_duration": <ns>, ...}

Errors come back as ``{"error": "<text>"}`` with an HTTP status, e.g. 404
``{"error": "model \\"llama3:latest\\" not found, try pulling it first"}`` or 400
``{"error": "model is required"}`` (ollama/ollama ``server/routes.go``).

Every failure (timeout, connection refused, HTTP error, unusable output) raises
:class:`autopilot.errors.AnalysisUnavailable` whose message says what happened and
what to do; :func:`analyze_or_fallback` turns that into the rule-based analysis.
Messages never contain credentials that may be embedded in ``OLLAMA_URL``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import httpx

from autopilot.analysis import (
    analysis_json_schema,
    build_messages,
    fallback_analysis,
    parse_llm_analysis,
)
from autopilot.errors import AnalysisUnavailable
from autopilot.models import Analysis, Incident
from autopilot.settings import Settings

__all__ = ["OllamaClient", "analyze_or_fallback"]

logger = logging.getLogger(__name__)

#: Upper bound (s) for establishing the TCP connection, within OLLAMA_TIMEOUT_S.
CONNECT_TIMEOUT_S = 5.0
#: Longest error text from Ollama quoted in an exception message (characters).
_MAX_ERROR_CHARS = 300


def _safe_url(url: str) -> str:
    """Return ``url`` without user info (``user:password@``), safe to log."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


class OllamaClient:
    """Asks Ollama for a root-cause analysis of an incident.

    One :class:`httpx.AsyncClient` (connection pool) is kept for the client's life;
    build it once per worker, ``await start()`` (or ``async with``) and
    ``await aclose()`` on shutdown. :meth:`analyze` starts it lazily if needed.

    Settings used:
        ``ollama_url`` (``OLLAMA_URL``, default ``http://localhost:11434``),
        ``ollama_model`` (``OLLAMA_MODEL``, default ``llama3:latest``),
        ``ollama_timeout_s`` (``OLLAMA_TIMEOUT_S``, default 60 s: the budget of one
        whole analysis, connection and generation included),
        ``analysis_concurrency`` (``AUTOPILOT_ANALYSIS_CONCURRENCY``: pool size),
        ``deployment_window_s`` (``AUTOPILOT_DEPLOYMENT_WINDOW_S``, for the fallback).

    Args:
        settings: the autopilot settings.
        transport: optional httpx transport (tests, proxies); default TCP.

    Proxy environment variables are ignored (``trust_env=False``): Ollama is a
    local or cluster-internal service.
    """

    def __init__(
        self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.model: str = settings.ollama_model
        self.timeout_s: float = settings.ollama_timeout_s
        self._base_url = settings.ollama_url.rstrip("/")
        self._safe_base_url = _safe_url(self._base_url)
        self._concurrency = settings.analysis_concurrency
        #: ``AUTOPILOT_DEPLOYMENT_WINDOW_S``, passed to the rule-based fallback (s).
        self.deployment_window_s: float = float(settings.deployment_window_s)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    @property
    def url(self) -> str:
        """The Ollama base URL without credentials (safe to log)."""
        return self._safe_base_url

    async def start(self) -> None:
        """Open the HTTP connection pool (idempotent)."""
        if self._client is not None:
            return
        self._client = httpx.AsyncClient(
            base_url=self._base_url,
            timeout=httpx.Timeout(self.timeout_s, connect=min(CONNECT_TIMEOUT_S, self.timeout_s)),
            limits=httpx.Limits(
                max_connections=self._concurrency, max_keepalive_connections=self._concurrency
            ),
            transport=self._transport,
            trust_env=False,
        )

    async def aclose(self) -> None:
        """Close the connection pool (idempotent)."""
        client, self._client = self._client, None
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

    def request_body(self, incident: Incident) -> dict[str, Any]:
        """The JSON body sent to ``/api/chat`` for ``incident`` (see module docstring)."""
        return {
            "model": self.model,
            "messages": build_messages(incident),
            "stream": False,
            "format": analysis_json_schema(),
            "options": {"temperature": 0},
        }

    async def analyze(self, incident: Incident) -> Analysis:
        """Ask Ollama for the analysis of ``incident``.

        The whole call (connect, generation, reading the answer) is bounded by
        ``ollama_timeout_s`` seconds.

        Returns:
            The validated analysis (``source="llm"``, ``model`` = the model that
            answered).

        Raises:
            AnalysisUnavailable: timeout, connection error, an HTTP error status
                (the message quotes Ollama's ``error`` text, e.g. a model that is
                not pulled), a non-JSON answer, or content that is not a valid
                analysis.
        """
        await self.start()
        assert self._client is not None
        body = self.request_body(incident)
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self._client.post("/api/chat", json=body)
                raw = response.content
        except (TimeoutError, httpx.TimeoutException):
            raise AnalysisUnavailable(
                f"Ollama at {self.url} gave no answer within {self.timeout_s:g} s "
                f"(OLLAMA_TIMEOUT_S) for model {self.model!r}; check that the server is "
                "not overloaded, or raise OLLAMA_TIMEOUT_S"
            ) from None
        except httpx.ConnectError as exc:
            raise AnalysisUnavailable(
                f"cannot connect to Ollama at {self.url} ({self._describe(exc)}); "
                "start it (`ollama serve`) or fix OLLAMA_URL"
            ) from None
        except httpx.HTTPError as exc:
            raise AnalysisUnavailable(
                f"HTTP request to Ollama at {self.url} failed ({self._describe(exc)})"
            ) from None

        if response.status_code >= 400:
            raise AnalysisUnavailable(self._http_error_message(response.status_code, raw))
        try:
            data = json.loads(raw)
        except ValueError:
            raise AnalysisUnavailable(
                f"Ollama at {self.url} answered HTTP {response.status_code} with a body that "
                "is not JSON; is OLLAMA_URL pointing at Ollama?"
            ) from None
        content = _message_content(data)
        if content is None:
            raise AnalysisUnavailable(
                f"Ollama's answer has no message.content (keys: {sorted(data)[:10]})"
                if isinstance(data, dict)
                else "Ollama's answer is not a JSON object"
            )
        model = data.get("model") if isinstance(data.get("model"), str) else self.model
        if data.get("done_reason") == "length":
            logger.warning(
                "Ollama stopped at the token limit (done_reason=length); the analysis "
                "JSON is probably cut off (model=%s)",
                model,
            )
        analysis = parse_llm_analysis(content, model)
        logger.debug(
            "Ollama analysis of incident %s (service %s) by %s in %.2f s",
            incident.id,
            incident.service,
            model,
            (data.get("total_duration") or 0) / 1e9,
        )
        return analysis

    async def list_models(self) -> list[str]:
        """Names of the models Ollama has pulled (``GET /api/tags``).

        Raises:
            AnalysisUnavailable: Ollama cannot be reached or answers an error.
        """
        await self.start()
        assert self._client is not None
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self._client.get("/api/tags")
        except (TimeoutError, httpx.HTTPError) as exc:
            raise AnalysisUnavailable(
                f"cannot list Ollama models at {self.url} ({self._describe(exc)})"
            ) from None
        if response.status_code >= 400:
            raise AnalysisUnavailable(
                self._http_error_message(response.status_code, response.content)
            )
        try:
            models = response.json().get("models", [])
            return [str(m.get("name") or m.get("model")) for m in models]
        except (ValueError, AttributeError):
            raise AnalysisUnavailable(
                "Ollama's /api/tags answer is not the expected JSON"
            ) from None

    def _describe(self, exc: BaseException) -> str:
        text = str(exc).replace(self._base_url, self.url)
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

    def _http_error_message(self, status: int, raw: bytes) -> str:
        error: str | None = None
        try:
            data = json.loads(raw)
            if isinstance(data, dict) and isinstance(data.get("error"), str):
                error = data["error"]
        except ValueError:
            pass
        if error is None:
            error = raw.decode("utf-8", errors="replace").strip() or "(empty body)"
        error = error[:_MAX_ERROR_CHARS]
        message = f"Ollama at {self.url} answered HTTP {status}: {error}"
        if status == 404 and "not found" in error:
            message += f"; pull the model (`ollama pull {self.model}`) or fix OLLAMA_MODEL"
        elif status >= 500:
            message += "; see the Ollama server log"
        return message


def _message_content(data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    message = data.get("message")
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    return content if isinstance(content, str) else None


async def analyze_or_fallback(
    client: OllamaClient, incident: Incident
) -> tuple[Analysis, str | None]:
    """Analyse ``incident`` with Ollama, or with the rules when Ollama cannot.

    Returns:
        ``(analysis, None)`` when Ollama answered with a valid analysis;
        ``(rule_based_analysis, reason)`` when it did not, ``reason`` being the
        :class:`AnalysisUnavailable` message (safe to log and show).
    """
    try:
        return await client.analyze(incident), None
    except AnalysisUnavailable as exc:
        reason = str(exc)
        logger.warning(
            "Ollama analysis unavailable for incident %s (service %s): %s; "
            "using the rule-based analysis",
            incident.id,
            incident.service,
            reason,
        )
        return (
            fallback_analysis(incident, deployment_window_s=client.deployment_window_s),
            reason,
        )
