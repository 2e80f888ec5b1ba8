"""Root-cause analysis through a local Ollama server (``POST /api/chat``).

The request follows Ollama's chat API (ollama/ollama ``docs/api.md``, "Generate a
chat completion"), non-streaming, with a JSON schema as ``format`` (structured
outputs) and temperature 0::

    POST {OLLAMA_URL}/api/chat
    {"model": "llama3:latest",
     "messages": [{"role": "system", "content": "..."}, {"role": "user", ...}],
     "stream": false,
     "format": {<JSON schema of the analysis>},
     "options": {"temperature": 0, "num_ctx": 8192, "num_predict": 1024},
     "keep_alive": "30m",
     "think": false}

``num_ctx``, ``num_predict`` and ``keep_alive`` are ``AUTOPILOT_OLLAMA_NUM_CTX``,
``AUTOPILOT_OLLAMA_NUM_PREDICT`` and ``AUTOPILOT_OLLAMA_KEEP_ALIVE`` (the settings check
that the largest prompt plus ``num_predict`` fits in ``num_ctx``). ``think: false`` is
sent only to a model whose ``POST /api/show`` capabilities include ``"thinking"``
(learned by :meth:`LLMGuard.check_model` at start); a server that answers 400 to it is
asked again without it, and it is not sent again.

A successful answer is one JSON object::

    {"model": "llama3:latest", "created_at": "2024-…Z",
     "message": {"role": "assistant", "content": "<the analysis as a JSON string>"},
     "done": true, "done_reason": "stop", "total_duration": <ns>, ...}

Errors come back as ``{"error": "<text>"}`` with an HTTP status, e.g. 404
``{"error": "model 'llama3:latest' not found"}`` (v0.17.4) or 400
``{"error": "model is required"}`` (ollama/ollama ``server/routes.go``).

Every failure (timeout, connection refused, HTTP error, unusable output) raises
:class:`autopilot.errors.AnalysisUnavailable` whose message says what happened and
what to do, and whose ``reason`` is its class (a Prometheus label);
:func:`analyze_or_fallback` turns that into the rule-based analysis. Messages never
contain credentials that may be embedded in ``OLLAMA_URL``.

Edges handled here:

* **Circuit breaker** (:class:`autopilot.breaker.CircuitBreaker`, shared by the
  worker's analysis actors through an :class:`LLMGuard`): after
  ``AUTOPILOT_LLM_BREAKER_FAILURES`` timeouts, connection errors or model-not-found
  answers in a row, analyses skip Ollama (``reason`` ``circuit_open``) until a trial
  call after ``AUTOPILOT_LLM_BREAKER_COOLDOWN_S`` succeeds; failed trials double the
  wait up to ``AUTOPILOT_LLM_BREAKER_MAX_COOLDOWN_S``. Each opening is logged once
  and counted (``autopilot_llm_breaker_trips_total{reason}``).
* **Model check at start** (:meth:`LLMGuard.check_model`): ``GET /api/tags``; a
  model that is not pulled gives one warning naming ``ollama pull`` and opens the
  breaker at once.
* **One warning per episode**: the first fallback of each reason class is logged at
  WARNING; the repeats only at DEBUG (they are counted in
  ``autopilot_llm_fallbacks_total{reason}``) until Ollama answers again, which is
  logged once with the number held back.
* **Thinking models**: ``<think>…</think>`` blocks (and an unclosed ``<think>`` up to
  the end) are removed from the content before it is parsed.
* **Cut off at the token limit**: an answer with ``done_reason`` ``"length"`` (it hit
  ``num_predict`` or ``num_ctx``) is not used, even when its JSON happens to parse:
  ``reason`` ``truncated``, and the rules answer.
* **A streamed answer** (``application/x-ndjson``: one JSON object per line, what
  Ollama sends when ``stream`` is not false, e.g. behind a proxy that drops it) is
  read as the concatenation of its chunks' ``message.content``; a broken stream is
  reported as such, not blamed on ``OLLAMA_URL``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import httpx

from autopilot import telemetry
from autopilot.analysis import (
    analysis_json_schema,
    build_messages,
    fallback_analysis,
    parse_llm_analysis,
)
from autopilot.breaker import CircuitBreaker, OnceWarning
from autopilot.errors import AnalysisUnavailable
from autopilot.models import Analysis, Incident
from autopilot.settings import Settings

__all__ = ["FallbackReason", "LLMGuard", "OllamaClient", "analyze_or_fallback", "strip_thinking"]

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


class FallbackReason(str):
    """Why the rules answered: the :class:`AnalysisUnavailable` message, with its
    class in :attr:`kind` (``timeout``, ``connect``, ``model_not_found``, ``http``,
    ``not_json``, ``streaming``, ``invalid_output``, ``truncated``, ``circuit_open``,
    ``other``)."""

    kind: str

    def __new__(cls, message: str, kind: str) -> FallbackReason:  # noqa: D102
        obj = super().__new__(cls, message)
        obj.kind = kind
        return obj


@dataclass
class LLMGuard:
    """What the worker's analysis actors share: the circuit breaker, the
    once-per-episode warnings and the start-up model check.

    Build one per worker (:meth:`from_settings`) and pass it to every
    :class:`OllamaClient`; a client built without one gets its own.
    """

    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    warnings: OnceWarning = field(default_factory=OnceWarning)
    checked: bool = False
    #: The model supports ``think`` (``/api/show`` capabilities, learned at start by
    #: :meth:`check_model`); ``think: false`` is sent only then.
    thinking: bool = False
    #: ``time.monotonic`` by default; tests pass their own clock.
    clock: Any = time.monotonic

    @classmethod
    def from_settings(cls, settings: Settings) -> LLMGuard:
        """A guard with the breaker of ``AUTOPILOT_LLM_BREAKER_*``."""
        return cls(breaker=CircuitBreaker.from_settings(settings))

    async def check_model(self, client: OllamaClient, timeout_s: float = 5.0) -> str | None:
        """Once per guard: is ``OLLAMA_MODEL`` among Ollama's pulled models?

        ``GET /api/tags``, bounded by ``timeout_s`` seconds (and ``OLLAMA_TIMEOUT_S``).

        Logs one warning when it is not (and opens the breaker: analyses use the
        rules until a trial call finds the model) or when Ollama cannot be asked.

        Returns:
            The warning logged, or ``None`` when the model is there (or the check ran
            before).
        """
        if self.checked:
            return None
        self.checked = True
        try:
            async with asyncio.timeout(timeout_s):
                models = await client.list_models()
        except TimeoutError:
            message = (
                f"Ollama at {client.url} did not list its models within {timeout_s:g} s "
                "at start; analyses use the rule-based fallback until Ollama answers"
            )
            logger.warning("%s", message)
            return message
        except AnalysisUnavailable as exc:
            message = (
                f"could not check the Ollama model list at start ({exc}); analyses use "
                "the rule-based fallback until Ollama answers"
            )
            logger.warning("%s", message)
            return message
        wanted = _with_tag(client.model)
        if wanted in {_with_tag(m) for m in models}:
            try:
                async with asyncio.timeout(timeout_s):
                    capabilities = await client.capabilities()
            except (TimeoutError, AnalysisUnavailable) as exc:
                capabilities = []
                logger.info("could not read the capabilities of model %s (%s); "
                            "\"think\" is not sent", client.model, exc)
            self.thinking = "thinking" in capabilities
            logger.info("Ollama at %s has model %s (capabilities: %s)", client.url,
                        client.model, ", ".join(capabilities) or "unknown")
            return None
        pulled = ", ".join(sorted(models)[:10]) or "none"
        message = (
            f"Ollama at {client.url} has no model {client.model!r} (pulled: {pulled}); "
            f"run `ollama pull {client.model}` or set OLLAMA_MODEL to a pulled one. "
            "Analyses use the rule-based fallback; Ollama is tried again every "
            f"{self.breaker.cooldown_s:g} s or more (circuit breaker)"
        )
        logger.warning("%s", message)
        if self.breaker.trip("model_not_found", self.clock()):
            telemetry.LLM_BREAKER_TRIPS.labels(reason="model_not_found").inc()
        return message


def _with_tag(name: str) -> str:
    """``llama3`` → ``llama3:latest`` (Ollama's default tag); tagged names unchanged."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


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
        guard: the worker's shared :class:`LLMGuard` (breaker, warnings); default:
            one of its own, built from ``settings``.

    Proxy environment variables are ignored (``trust_env=False``): Ollama is a
    local or cluster-internal service.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        guard: LLMGuard | None = None,
    ) -> None:
        self.guard = guard if guard is not None else LLMGuard.from_settings(settings)
        self.model: str = settings.ollama_model
        self.timeout_s: float = settings.ollama_timeout_s
        #: ``options.num_ctx`` and ``options.num_predict`` (tokens), ``keep_alive``.
        self.num_ctx: int = settings.ollama_num_ctx
        self.num_predict: int = settings.ollama_num_predict
        self.keep_alive: str = settings.ollama_keep_alive
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

    def request_body(self, incident: Incident, *, think: bool | None = None) -> dict[str, Any]:
        """The JSON body sent to ``/api/chat`` for ``incident`` (see module docstring).

        ``think`` (default: what :attr:`LLMGuard.thinking` says) adds ``"think": false``.
        """
        body: dict[str, Any] = {
            "model": self.model,
            "messages": build_messages(incident),
            "stream": False,
            "format": analysis_json_schema(),
            "options": {
                "temperature": 0, "num_ctx": self.num_ctx, "num_predict": self.num_predict,
            },
            "keep_alive": _keep_alive(self.keep_alive),
        }
        if self.guard.thinking if think is None else think:
            body["think"] = False
        return body

    async def capabilities(self) -> list[str]:
        """The model's capabilities (``POST /api/show``), e.g. ``["completion",
        "thinking"]``; ``[]`` from a server too old to list them.

        Raises:
            AnalysisUnavailable: Ollama cannot be reached or answers an error (404
                for a model that is not pulled).
        """
        await self.start()
        assert self._client is not None
        try:
            response = await self._client.post("/api/show", json={"model": self.model})
        except httpx.HTTPError as exc:
            raise AnalysisUnavailable(
                f"cannot ask Ollama at {self.url} about model {self.model!r} "
                f"({self._describe(exc)})"
            ) from None
        if response.status_code >= 400:
            raise AnalysisUnavailable(
                self._http_error_message(response.status_code, response.content)
            )
        try:
            found = response.json().get("capabilities") or []
        except (ValueError, AttributeError):
            raise AnalysisUnavailable(
                "Ollama's /api/show answer is not the expected JSON"
            ) from None
        return [str(c) for c in found] if isinstance(found, list) else []

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
        breaker = self.guard.breaker
        if not breaker.allow(self.guard.clock()):
            raise AnalysisUnavailable(
                f"Ollama skipped: circuit breaker open after repeated "
                f"{breaker.last_reason.replace('_', ' ')} failures; next try in "
                f"{breaker.retry_in(self.guard.clock()):.0f} s "
                "(AUTOPILOT_LLM_BREAKER_COOLDOWN_S)",
                reason="circuit_open",
            )
        try:
            analysis = await self._analyze(incident)
        except AnalysisUnavailable as exc:
            if breaker.failure(exc.reason, self.guard.clock()):
                telemetry.LLM_BREAKER_TRIPS.labels(reason=exc.reason).inc()
                logger.warning(
                    "Ollama circuit breaker opened after %s (%s); analyses use the rules "
                    "for %.0f s, then one trial call goes to Ollama",
                    exc.reason.replace("_", " "), exc, breaker.retry_in(self.guard.clock()),
                )
            raise
        except BaseException:
            breaker.release()
            raise
        if breaker.success():
            logger.info("Ollama answers again at %s; circuit breaker closed", self.url)
        return analysis

    async def _analyze(self, incident: Incident) -> Analysis:
        await self.start()
        assert self._client is not None
        body = self.request_body(incident)
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self._client.post("/api/chat", json=body)
                if response.status_code == 400 and "think" in body:
                    # Some Ollama versions refuse "think" for some models: once
                    # without it, and not again.
                    logger.info("Ollama answered 400 to \"think\": false (%s); asking "
                                "again without it",
                                self._http_error_message(400, response.content))
                    self.guard.thinking = False
                    body = self.request_body(incident, think=False)
                    response = await self._client.post("/api/chat", json=body)
                raw = response.content
        except (TimeoutError, httpx.TimeoutException):
            raise AnalysisUnavailable(
                f"Ollama at {self.url} gave no answer within {self.timeout_s:g} s "
                f"(OLLAMA_TIMEOUT_S) for model {self.model!r}; check that the server is "
                "not overloaded, or raise OLLAMA_TIMEOUT_S",
                reason="timeout",
            ) from None
        except httpx.ConnectError as exc:
            raise AnalysisUnavailable(
                f"cannot connect to Ollama at {self.url} ({self._describe(exc)}); "
                "start it (`ollama serve`) or fix OLLAMA_URL",
                reason="connect",
            ) from None
        except httpx.HTTPError as exc:
            raise AnalysisUnavailable(
                f"HTTP request to Ollama at {self.url} failed ({self._describe(exc)})",
                reason="http",
            ) from None

        if response.status_code >= 400:
            message = self._http_error_message(response.status_code, raw)
            not_found = response.status_code == 404 and "not found" in message
            raise AnalysisUnavailable(
                message, reason="model_not_found" if not_found else "http"
            )
        data = self._decode_answer(raw, response.headers.get("content-type", ""),
                                   response.status_code)
        content = _message_content(data)
        if content is None:
            raise AnalysisUnavailable(
                f"Ollama's answer has no message.content (keys: {sorted(data)[:10]})"
                if isinstance(data, dict)
                else "Ollama's answer is not a JSON object",
                reason="invalid_output",
            )
        model = data.get("model") if isinstance(data.get("model"), str) else self.model
        if data.get("done_reason") == "length":
            raise AnalysisUnavailable(
                f"Ollama model {model!r} stopped at the token limit (done_reason "
                f"\"length\" after {data.get('eval_count', '?')} tokens; "
                f"AUTOPILOT_OLLAMA_NUM_PREDICT={self.num_predict}, "
                f"AUTOPILOT_OLLAMA_NUM_CTX={self.num_ctx}): the answer is cut off and "
                "not used",
                reason="truncated",
            )
        try:
            analysis = parse_llm_analysis(strip_thinking(content), model)
        except AnalysisUnavailable as exc:
            exc.reason = "invalid_output"
            raise
        logger.debug(
            "Ollama analysis of incident %s (service %s) by %s in %.2f s",
            incident.id,
            incident.service,
            model,
            (data.get("total_duration") or 0) / 1e9,
        )
        return analysis

    def _decode_answer(self, raw: bytes, content_type: str, status: int) -> Any:
        """The JSON object of a ``/api/chat`` answer: one object, or a streamed answer
        (NDJSON chunks) folded into one (contents joined, the last chunk's fields).

        Raises:
            AnalysisUnavailable: ``not_json`` (no JSON at all: e.g. an HTML page from
                something else at ``OLLAMA_URL``) or ``streaming`` (a stream that is
                cut off or broken).
        """
        try:
            return json.loads(raw)
        except ValueError:
            pass
        lines = [line for line in raw.splitlines() if line.strip()]
        chunks: list[Any] = []
        for line in lines:
            try:
                chunks.append(json.loads(line))
            except ValueError:
                break
        streamed = bool(chunks) and all(
            isinstance(c, dict) and ("message" in c or "done" in c or "error" in c)
            for c in chunks
        )
        if streamed or "ndjson" in content_type:
            if len(chunks) < len(lines) or not chunks:
                raise AnalysisUnavailable(
                    f"Ollama at {self.url} streamed its answer (NDJSON, although "
                    f"stream=false was sent) and line {len(chunks) + 1} of {len(lines)} "
                    "is not JSON: the stream was cut off; check a proxy between the "
                    "autopilot and Ollama, or raise OLLAMA_TIMEOUT_S",
                    reason="streaming",
                )
            errors = [c["error"] for c in chunks if isinstance(c.get("error"), str)]
            if errors:
                raise AnalysisUnavailable(
                    f"Ollama at {self.url} ended its streamed answer with an error: "
                    f"{errors[-1][:_MAX_ERROR_CHARS]}",
                    reason="streaming",
                )
            if not chunks[-1].get("done"):
                raise AnalysisUnavailable(
                    f"Ollama at {self.url} streamed its answer (NDJSON) and the stream "
                    f"ended after {len(chunks)} chunks without the final \"done\": true "
                    "chunk; the answer is incomplete (a proxy or Ollama cut it off)",
                    reason="streaming",
                )
            logger.debug("Ollama streamed its answer in %d chunks although stream=false "
                         "was sent; joined them", len(chunks))
            content = "".join(_message_content(c) or "" for c in chunks)
            final = dict(chunks[-1])
            final["message"] = {"role": "assistant", "content": content}
            return final
        kind = content_type.split(";", 1)[0].strip() or "no content type"
        raise AnalysisUnavailable(
            f"Ollama at {self.url} answered HTTP {status} with a body that is not JSON "
            f"({kind}); is OLLAMA_URL pointing at Ollama (and not at a web page or a "
            "proxy's error page)?",
            reason="not_json",
        )

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


_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL | re.IGNORECASE)


def strip_thinking(content: str) -> str:
    """``content`` without ``<think>…</think>`` blocks (a thinking model's reasoning,
    when the server leaves it in the content), an unclosed ``<think>`` removed up to the
    end."""
    return _THINK.sub("", content)


def _keep_alive(value: str) -> str | int:
    """``AUTOPILOT_OLLAMA_KEEP_ALIVE`` as Ollama takes it: ``-1``/``0`` as numbers
    (seconds), durations (``30m``) as strings."""
    return int(value) if value in ("-1", "0") else value


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
) -> tuple[Analysis, FallbackReason | None]:
    """Analyse ``incident`` with Ollama, or with the rules when Ollama cannot.

    Logs the first fallback of each reason class at WARNING and the repeats at DEBUG
    (they are counted by the caller), until Ollama answers again; that recovery is
    logged once with the number of fallbacks held back.

    Returns:
        ``(analysis, None)`` when Ollama answered with a valid analysis;
        ``(rule_based_analysis, reason)`` when it did not, ``reason`` being the
        :class:`AnalysisUnavailable` message (safe to log and show) with its class
        in ``reason.kind``.
    """
    warnings = client.guard.warnings
    try:
        analysis = await client.analyze(incident)
    except AnalysisUnavailable as exc:
        reason = FallbackReason(str(exc), exc.reason)
        if warnings.first(exc.reason):
            logger.warning(
                "Ollama analysis unavailable for incident %s (service %s): %s; using the "
                "rule-based analysis (further fallbacks for this reason are counted in "
                "autopilot_llm_fallbacks_total{reason=\"%s\"}, not logged, until Ollama "
                "answers again)",
                incident.id, incident.service, reason, exc.reason,
            )
        else:
            logger.debug("Ollama analysis unavailable for incident %s: %s",
                         incident.id, reason)
        return (
            fallback_analysis(incident, deployment_window_s=client.deployment_window_s),
            reason,
        )
    held = warnings.clear()
    if held:
        logger.info(
            "Ollama analysis works again (incident %s); fallbacks before it: %s",
            incident.id,
            ", ".join(f"{kind} ×{n + 1}" for kind, n in sorted(held.items())),
        )
    return analysis, None
