"""Stand-ins for Slack, Ollama and Redis: real servers on 127.0.0.1.

The HTTP stand-ins are aiohttp apps served from a background thread (own event
loop) on a free port, so a test's own ``asyncio.run`` talks to them over real TCP.
They speak the real APIs, error bodies included, record what they received and can
be scripted to fail. Each is a context manager::

    with SlackWebhookServer() as slack:
        slack.fail_next(1, "rate_limited")
        ... settings with SLACK_WEBHOOK_URL=slack.url ...
        assert slack.requests[0]["blocks"]

Sources of the shapes: Slack "Sending messages using incoming webhooks" (text error
bodies, 429 + Retry-After), Slack Web API ``chat.postMessage``/``chat.update``
reference (``{"ok": false, "error": ...}`` with HTTP 200, 429 ``ratelimited``), and
Ollama ``docs/api.md`` + ``server/routes.go`` (``/api/chat``, ``{"error": ...}``).

:class:`RedisServer` runs the real ``redis-server`` binary (Debian package
``redis-server``) and fails loudly when it is missing.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl

from aiohttp import web

__all__ = [
    "OllamaServer",
    "RedisServer",
    "SlackWebApiServer",
    "SlackWebhookServer",
    "free_port",
]

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class _ThreadedServer:
    """An aiohttp app served on 127.0.0.1 from a daemon thread with its own loop."""

    def __init__(self) -> None:
        self.port = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None

    def build_app(self) -> web.Application:
        raise NotImplementedError

    @property
    def base(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{HOST}:{self.port}"

    def start(self) -> Self:
        """Start serving; returns when the socket accepts connections."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        self.port = int(sock.getsockname()[1])
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)

            async def setup() -> None:
                self._stopping = asyncio.Event()
                runner = web.AppRunner(self.build_app(), access_log=None)
                await runner.setup()
                await web.SockSite(runner, sock).start()
                self._runner = runner

            try:
                loop.run_until_complete(setup())
            except BaseException as exc:  # report to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name=type(self).__name__, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"{type(self).__name__} did not start within 10 s")
        if failure:
            raise RuntimeError(f"{type(self).__name__} failed to start") from failure[0]
        return self

    def stop(self) -> None:
        """Stop serving and join the thread (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None

        async def shutdown() -> None:
            if self._stopping is not None:
                self._stopping.set()  # release delayed handlers
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(15)

    async def _sleep(self, seconds: float) -> None:
        """Sleep in the server loop, cut short when the server stops."""
        assert self._stopping is not None
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --- Slack incoming webhook -----------------------------------------------------------

#: Scripted webhook failures: kind → (HTTP status, text body, headers).
WEBHOOK_FAILURES: dict[str, tuple[int, str, dict[str, str]]] = {
    "rate_limited": (429, "rate_limited", {"Retry-After": "1"}),
    "internal_error": (500, "internal_error", {}),
    "server_error": (500, "internal_error", {}),
    "service_unavailable": (503, "service_unavailable", {}),
    "invalid_payload": (400, "invalid_payload", {}),
    "no_service": (404, "no_service", {}),
    "channel_not_found": (404, "channel_not_found", {}),
    "channel_is_archived": (410, "channel_is_archived", {}),
    "action_prohibited": (403, "action_prohibited", {}),
}


class SlackWebhookServer(_ThreadedServer):
    """A Slack incoming webhook at ``POST /services/T000/B000/XXXX``.

    Answers ``200 ok`` (text/html, as Slack does) for a JSON body carrying ``text``,
    ``blocks`` or ``attachments``; ``400 invalid_payload`` for a body that is not a
    JSON object; ``400 no_text`` when it has none of the three; ``404 no_service``
    for any other path. :meth:`fail_next` scripts failures (see
    :data:`WEBHOOK_FAILURES`).

    Attributes:
        requests: the JSON bodies of accepted messages, in order.
        attempts: every POST received (failed ones included).
    """

    PATH = "/services/T000/B000/XXXX"

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, Any]] = []
        self.attempts = 0
        self._failures: list[str] = []

    @property
    def url(self) -> str:
        """The webhook URL (a secret in real life)."""
        return self.base + self.PATH

    def fail_next(self, n: int, kind: str = "internal_error") -> None:
        """Answer the next ``n`` POSTs with the failure ``kind`` (WEBHOOK_FAILURES)."""
        if kind not in WEBHOOK_FAILURES:
            raise ValueError(f"unknown failure kind {kind!r}")
        with self._lock:
            self._failures.extend([kind] * n)

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._post)
        return app

    async def _post(self, request: web.Request) -> web.Response:
        raw = await request.read()
        with self._lock:
            self.attempts += 1
            kind = self._failures.pop(0) if self._failures else None
        if request.path != self.PATH:
            return _text(404, "no_service")
        if kind is not None:
            status, body, headers = WEBHOOK_FAILURES[kind]
            return _text(status, body, headers)
        try:
            data = json.loads(raw)
        except ValueError:
            return _text(400, "invalid_payload")
        if not isinstance(data, dict):
            return _text(400, "invalid_payload")
        if not any(data.get(k) for k in ("text", "blocks", "attachments")):
            return _text(400, "no_text")
        with self._lock:
            self.requests.append(data)
        return _text(200, "ok")


def _text(status: int, body: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=body, content_type="text/html", headers=headers)


# --- Slack Web API --------------------------------------------------------------------


class SlackWebApiServer(_ThreadedServer):
    """Slack Web API ``chat.postMessage`` and ``chat.update`` under ``/api/``.

    Checks ``Authorization: Bearer <token>`` (``not_authed`` when missing,
    ``invalid_auth`` when wrong), resolves the channel (``#name``, ``name`` or ID for
    postMessage; ID only for update, as Slack requires) else ``channel_not_found``,
    needs ``text``/``blocks``/``attachments`` else ``no_text``, and ``chat.update``
    needs a known ``ts`` else ``message_not_found``. Errors are HTTP 200
    ``{"ok": false, "error": ...}`` like Slack; a scripted rate limit is HTTP 429
    with ``Retry-After`` and ``{"ok": false, "error": "ratelimited"}``. Bodies may be
    JSON or form-encoded (``blocks``/``attachments`` then JSON strings).

    Args:
        token: the valid bot token.
        channels: channel name (without ``#``) → channel ID.

    Attributes:
        calls: ``(method, body)`` of every authenticated, well-formed call.
        messages: ``ts`` → the stored message (text, blocks, attachments, channel).
        attempts: every request received.
    """

    def __init__(
        self, token: str = "xoxb-test-token", channels: dict[str, str] | None = None
    ) -> None:
        super().__init__()
        self.token = token
        self.channels = dict(channels or {"alerts": "C0ALERTS01"})
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.messages: dict[str, dict[str, Any]] = {}
        self.attempts = 0
        self._rate_limited = 0
        self._server_errors = 0
        self._ts = itertools.count(1)

    @property
    def base_url(self) -> str:
        """Value for ``SLACK_API_URL`` (ends in ``/api/``)."""
        return self.base + "/api/"

    def rate_limit_next(self, n: int) -> None:
        """Answer the next ``n`` calls with 429 ``ratelimited`` and ``Retry-After: 1``."""
        with self._lock:
            self._rate_limited += n

    def fail_next(self, n: int) -> None:
        """Answer the next ``n`` calls with HTTP 500 and ``"error": "internal_error"``."""
        with self._lock:
            self._server_errors += n

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/{method}", self._call)
        return app

    async def _call(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        raw = await request.read()
        with self._lock:
            self.attempts += 1
            if self._rate_limited:
                self._rate_limited -= 1
                return web.json_response(
                    {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "1"}
                )
            if self._server_errors:
                self._server_errors -= 1
                return web.json_response({"ok": False, "error": "internal_error"}, status=500)
        if method not in ("chat.postMessage", "chat.update"):
            return web.json_response({"ok": False, "error": "unknown_method"}, status=404)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return _slack_error("not_authed")
        if auth.removeprefix("Bearer ").strip() != self.token:
            return _slack_error("invalid_auth")
        body = _decode_body(request.content_type, raw)
        if body is None:
            return _slack_error(
                "invalid_json" if "json" in request.content_type else "invalid_form_data"
            )
        with self._lock:
            self.calls.append((method, body))
        if not any(body.get(k) for k in ("text", "blocks", "attachments")):
            return _slack_error("no_text")
        channel = str(body.get("channel") or "")
        if method == "chat.postMessage":
            channel_id = self._resolve(channel, names=True)
            if channel_id is None:
                return _slack_error("channel_not_found")
            ts = f"1700000000.{next(self._ts) * 100:06d}"
            message = self._message(body, ts)
            with self._lock:
                self.messages[ts] = {**message, "channel": channel_id}
            return web.json_response(
                {"ok": True, "channel": channel_id, "ts": ts, "message": message}
            )
        channel_id = self._resolve(channel, names=False)
        if channel_id is None:
            return _slack_error("channel_not_found")
        ts = str(body.get("ts") or "")
        with self._lock:
            stored = self.messages.get(ts)
            if stored is None or stored["channel"] != channel_id:
                return _slack_error("message_not_found")
            message = self._message(body, ts)
            self.messages[ts] = {**message, "channel": channel_id, "edited": True}
        return web.json_response(
            {
                "ok": True,
                "channel": channel_id,
                "ts": ts,
                "text": message["text"],
                "message": message,
            }
        )

    def _resolve(self, channel: str, *, names: bool) -> str | None:
        if channel in self.channels.values():
            return channel
        if names:
            return self.channels.get(channel.removeprefix("#"))
        return None

    @staticmethod
    def _message(body: dict[str, Any], ts: str) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "message",
            "user": "U0AUTOPILOT",
            "bot_id": "B0AUTOPILOT",
            "text": body.get("text") or "",
            "ts": ts,
        }
        for key in ("blocks", "attachments"):
            if body.get(key):
                message[key] = body[key]
        return message


def _slack_error(code: str) -> web.Response:
    return web.json_response({"ok": False, "error": code})


def _decode_body(content_type: str, raw: bytes) -> dict[str, Any] | None:
    if "json" in content_type:
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            return None
        return data if isinstance(data, dict) else None
    body: dict[str, Any] = dict(parse_qsl(raw.decode("utf-8", errors="replace")))
    for key in ("blocks", "attachments"):
        if isinstance(body.get(key), str):
            try:
                body[key] = json.loads(body[key])
            except ValueError:
                return None
    return body


# --- Ollama ---------------------------------------------------------------------------


def default_analysis_content() -> str:
    """A valid analysis JSON string (what a model constrained by the schema writes)."""
    return json.dumps(
        {
            "root_cause": {
                "description": (
                    "Deployment v2.4.1 of checkout exhausted the database connection pool"
                ),
                "confidence": 85,
                "reasoning": "Latency and errors rose minutes after v2.4.1; errors name the pool",
            },
            "recommended_actions": [
                {
                    "action": "Roll back checkout to v2.4.0",
                    "reasoning": "The regression started with v2.4.1",
                    "risk": "low",
                    "priority": 1,
                },
                {
                    "action": "Raise the database pool size",
                    "reasoning": "The pool is saturated",
                    "risk": "medium",
                    "priority": 2,
                },
            ],
            "severity": "high",
            "estimated_customer_impact": "About 30% of checkouts fail",
        }
    )


class OllamaServer(_ThreadedServer):
    """An Ollama server: ``POST /api/chat``, ``GET /api/tags``, ``GET /``.

    ``/api/chat`` validates like Ollama: empty body → 400 ``missing request body``;
    bad JSON → 400 with the decoder's message; no model → 400 ``model is required``;
    unknown model → 404 ``model "X" not found, try pulling it first``. It answers
    non-streaming requests with one real-shaped ``ChatResponse`` whose
    ``message.content`` is :attr:`content`, and streaming ones with NDJSON chunks.

    Args:
        models: the pulled models (a name without a tag means ``:latest``).
        content: the assistant content to answer (default: a valid analysis).
        delay_s: seconds to wait before answering (to trigger client timeouts).

    Attributes:
        requests: the JSON bodies received on ``/api/chat`` (valid ones).
        in_flight, max_in_flight: chat requests being answered now, and the most
            ever answered at once (to observe the client's concurrency).
        content, delay_s: may be changed between requests.
        error: ``(status, message)`` to answer instead of a completion, or ``None``.
    """

    def __init__(
        self,
        models: tuple[str, ...] = ("llama3:latest",),
        content: str | None = None,
        delay_s: float = 0.0,
    ) -> None:
        super().__init__()
        self.models = tuple(_with_tag(m) for m in models)
        self.content = default_analysis_content() if content is None else content
        self.delay_s = delay_s
        self.error: tuple[int, str] | None = None
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    @property
    def url(self) -> str:
        """Value for ``OLLAMA_URL``."""
        return self.base

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/chat", self._chat)
        app.router.add_get("/api/tags", self._tags)
        app.router.add_get("/", self._root)
        return app

    async def _root(self, request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running", content_type="text/plain")

    async def _tags(self, request: web.Request) -> web.Response:
        now = _rfc3339(datetime.now(UTC))
        return web.json_response(
            {
                "models": [
                    {
                        "name": m,
                        "model": m,
                        "modified_at": now,
                        "size": 4661224676,
                        "digest": "365c0bd3c000a25d28ddbf732fe1c6add414de7275464c4e4d1c3b5f",
                        "details": {
                            "parent_model": "",
                            "format": "gguf",
                            "family": "llama",
                            "families": ["llama"],
                            "parameter_size": "8.0B",
                            "quantization_level": "Q4_0",
                        },
                    }
                    for m in self.models
                ]
            }
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic_ns()
        raw = await request.read()
        if not raw.strip():
            return _ollama_error(400, "missing request body")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            return _ollama_error(400, f"invalid character in request body: {exc}")
        if not isinstance(body, dict):
            return _ollama_error(
                400, "json: cannot unmarshal value into Go value of type api.ChatRequest"
            )
        name = body.get("model")
        if not isinstance(name, str) or not name:
            return _ollama_error(400, "model is required")
        if _with_tag(name) not in self.models:
            return _ollama_error(404, f'model "{name}" not found, try pulling it first')
        with self._lock:
            self.requests.append(body)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s > 0:
                await self._sleep(self.delay_s)
        finally:
            with self._lock:
                self.in_flight -= 1
        if self.error is not None:
            return _ollama_error(*self.error)
        content = self.content
        eval_count = max(1, len(content) // 4)
        total = time.monotonic_ns() - started + 1_500_000_000
        final: dict[str, Any] = {
            "model": name,
            "created_at": _rfc3339(datetime.now(UTC)),
            "message": {"role": "assistant", "content": content},
            "done_reason": "stop",
            "done": True,
            "total_duration": total,
            "load_duration": 12_345_678,
            "prompt_eval_count": 412,
            "prompt_eval_duration": 310_000_000,
            "eval_count": eval_count,
            "eval_duration": total - 400_000_000,
        }
        if body.get("stream", True) is False:
            return web.json_response(final)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        chunk = {
            "model": name,
            "created_at": final["created_at"],
            "message": {"role": "assistant", "content": content},
            "done": False,
        }
        await response.write(json.dumps(chunk).encode() + b"\n")
        final["message"] = {"role": "assistant", "content": ""}
        await response.write(json.dumps(final).encode() + b"\n")
        await response.write_eof()
        return response


def _with_tag(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _rfc3339(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def _ollama_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


# --- Redis ----------------------------------------------------------------------------


class RedisServer:
    """A real ``redis-server`` on a free port, no persistence, in a temp directory.

    Raises:
        RuntimeError: (on start) the ``redis-server`` binary is missing -- install
            it (``apt-get install -y redis-server``) -- or it did not answer PING.
    """

    def __init__(self, binary: str = "redis-server") -> None:
        self.binary = binary
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        """Value for ``REDIS_URL`` (database 0)."""
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> Self:
        """Start the server and wait (≤ 10 s) until it answers PING."""
        path = shutil.which(self.binary)
        if path is None:
            raise RuntimeError(
                f"{self.binary} not found on PATH; install it (apt-get install -y redis-server)"
            )
        self._dir = tempfile.TemporaryDirectory(prefix="autopilot-redis-")
        last_error = "did not start"
        for _ in range(3):  # another process may grab the free port first
            self.port = free_port()
            self._proc = subprocess.Popen(
                [
                    path,
                    "--port",
                    str(self.port),
                    "--bind",
                    HOST,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    self._dir.name,
                    "--daemonize",
                    "no",
                    "--loglevel",
                    "warning",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    out = (
                        self._proc.stdout.read().decode(errors="replace")
                        if self._proc.stdout
                        else ""
                    )
                    last_error = f"exited with {self._proc.returncode}: {out[-500:]}"
                    break
                if _redis_ping(self.port):
                    return self
                time.sleep(0.05)
            else:
                last_error = "did not answer PING within 10 s"
            self._kill()
        self._dir.cleanup()
        raise RuntimeError(f"redis-server {last_error}")

    def flush(self) -> None:
        """Delete every key (``FLUSHALL``), for test isolation."""
        _redis_command(self.port, b"*1\r\n$8\r\nFLUSHALL\r\n")

    def stop(self) -> None:
        """Stop the server and remove its directory (idempotent)."""
        self._kill()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _redis_command(port: int, command: bytes) -> bytes:
    with socket.create_connection((HOST, port), timeout=1.0) as sock:
        sock.sendall(command)
        return sock.recv(64)


def _redis_ping(port: int) -> bool:
    try:
        return _redis_command(port, b"*1\r\n$4\r\nPING\r\n").startswith(b"+PONG")
    except OSError:
        return False
