"""End-to-end tests: real worker processes on a real broker, real redis-server, and
local HTTP servers speaking the Slack webhook and Ollama ``/api/chat`` APIs."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis

from tests.factories import metric
from tests.integration.conftest import (
    WARM,
    BrokerUnderTest,
    Worker,
    as_bytes,
    assert_quiet_for,
    consume_all,
    high_shift,
    kcat,
    metric_series,
    produce,
    wait_for,
)
from tests.standins import OllamaServer, RedisServer, SlackWebhookServer, free_port

pytestmark = pytest.mark.integration


def _all_text(payload: dict) -> str:
    return json.dumps(payload)


def test_scenario_produces_exactly_one_alert_carrying_the_llm_root_cause(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker], redis_server: RedisServer
) -> None:
    with OllamaServer() as ollama, SlackWebhookServer() as slack:
        worker = start_worker({
            "OLLAMA_URL": ollama.url,
            "SLACK_WEBHOOK_URL": slack.url,
            "REDIS_URL": redis_server.url,
        })
        series = metric_series("checkout", normal=40, spikes=4)
        # Keyed by service, as the docs ask: one series' records stay in order.
        produce(broker.bootstrap, broker.topic("autopilot.metrics"),
                [(b"checkout", as_bytes(m)) for m in series])

        wait_for(lambda: slack.requests, 60, "the Slack alert")
        # The adaptive detector sends one anomaly per episode (the first spike); wait
        # until every sample, the later spikes included, has been applied: any further
        # evidence would update the open incident and must not post again.
        wait_for(lambda: worker.get("/baselines/checkout").json()["series"]
                 .get("checkout|latency_ms|", {}).get("samples_seen") == 44,
                 30, "all 44 samples applied")
        wait_for(lambda: worker.get("/incidents/checkout").json()["open_incident"],
                 30, "the open incident")
        # A wrongly re-posting sink gets the chance to post.
        assert_quiet_for(3, lambda: len(slack.requests), "the number of Slack posts")
        assert len(slack.requests) == 1, slack.requests
        body = _all_text(slack.requests[0])
        assert "checkout" in body
        assert "CRITICAL" in body
        assert "exhausted the database connection pool" in body  # the LLM's root cause

        assert len(ollama.requests) == 1, (
            [json.dumps(r['messages'])[:600] for r in ollama.requests], worker.log_tail(80))
        (chat,) = ollama.requests
        assert chat["model"] == "llama3:latest"
        assert chat["stream"] is False
        assert chat["format"]["type"] == "object"
        assert "root_cause" in chat["format"]["properties"]
        assert "checkout" in json.dumps(chat["messages"])

        r = redis.Redis.from_url(redis_server.url)
        history = r.lrange("autopilot:history:checkout", 0, -1)
        assert len(history) == 1
        assert json.loads(history[0])["service"] == "checkout"

        metrics_text = worker.get("/metrics").text
        assert 'autopilot_llm_calls_total{outcome="ok"} 1.0' in metrics_text
        assert 'autopilot_slack_sends_total{outcome="sent"} 1.0' in metrics_text


def test_ollama_unreachable_alert_still_arrives_with_rule_based_analysis(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker]
) -> None:
    with SlackWebhookServer() as slack:
        worker = start_worker({
            "OLLAMA_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
            "OLLAMA_TIMEOUT_S": "5",
            "SLACK_WEBHOOK_URL": slack.url,
        })
        series = metric_series("payments", normal=30, spikes=1)
        produce(broker.bootstrap, broker.topic("autopilot.metrics"),
                [(b"payments", as_bytes(m)) for m in series])
        started = time.monotonic()
        wait_for(lambda: slack.requests, 30, "the Slack alert")
        assert time.monotonic() - started < 5 + 15  # timeout budget plus pipeline time
        body = _all_text(slack.requests[0])
        assert "payments" in body
        assert "Rule-based" in body
        assert "autopilot_llm_fallbacks_total" in worker.get("/metrics").text


def test_ollama_model_not_found_falls_back_to_rules(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker]
) -> None:
    with OllamaServer(models=("mistral:latest",)) as ollama, SlackWebhookServer() as slack:
        start_worker({"OLLAMA_URL": ollama.url, "SLACK_WEBHOOK_URL": slack.url})
        produce(broker.bootstrap, broker.topic("autopilot.metrics"),
                [(b"search", as_bytes(m)) for m in metric_series("search", 30, 1)])
        wait_for(lambda: slack.requests, 30, "the Slack alert")
        assert "Rule-based" in _all_text(slack.requests[0])
        assert ollama.requests == [] or ollama.requests[0]["model"] == "llama3:latest"


def test_malformed_record_is_dead_lettered_and_the_next_good_record_is_processed(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker]
) -> None:
    worker = start_worker()
    bad = b'{"timestamp": 1700000000, "metric_name": "cpu", "value": NaN'
    missing_service = as_bytes({"timestamp": 1700000000, "metric_name": "cpu", "value": 1.0,
                                "labels": {}})
    good = as_bytes(metric("inventory", 42.0, 1_700_000_100.0, name="cpu"))
    produce(broker.bootstrap, broker.topic("autopilot.metrics"),
            [(b"k1", bad), (b"k2", missing_service), (b"k3", good)])

    def samples() -> int:
        series = worker.get("/baselines/inventory").json()["series"]
        return sum(s["samples_seen"] for s in series.values())

    wait_for(lambda: samples() == 1, 30, "the good record in the baselines")
    dlq = broker.topic("autopilot.deadletter")
    dead = wait_for(lambda: len(consume_all(broker.bootstrap, dlq)) >= 2
                    and consume_all(broker.bootstrap, dlq), 20,
                    "two dead letters")
    by_value = {rec.value: dict(rec.headers) for rec in dead}
    assert set(by_value) == {bad, missing_service}  # original bytes, unchanged
    assert b"JSON" in by_value[bad]["x-autopilot-reason"]
    assert b"service" in by_value[missing_service]["x-autopilot-reason"]
    assert by_value[bad]["x-autopilot-topic"] == broker.topic("autopilot.metrics").encode()
    assert 'autopilot_dead_letters_total{stage="metrics.ingest"} 2.0' in worker.get("/metrics").text


def test_http_ingest_validates_and_produces(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker]
) -> None:
    worker = start_worker()
    r = worker.post("/ingest/metrics", content=b"not json")
    assert r.status_code == 400
    assert "JSON" in r.json()["error"]

    # One bad item does not sink the batch: the valid rest is kept (202, partial).
    r = worker.post("/ingest/metrics", json=[metric("web-partial", 1.0, 1_700_000_000),
                                             {"metric_name": "x", "value": 1, "labels": {}}])
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 1
    assert [item["item"] for item in r.json()["rejected"]] == [1]
    # Nothing valid at all: 422 that says what is wrong.
    r = worker.post("/ingest/metrics", json=[{"metric_name": "x", "value": 1, "labels": {}}])
    assert r.status_code == 422
    locs = {e["loc"] for e in r.json()["errors"]}
    assert "timestamp" in locs and "labels" in locs

    r = worker.post("/ingest/metrics", json=[metric("web", float(i), 1_700_000_000 + i)
                                             for i in range(5)])
    assert r.status_code == 202
    assert r.json() == {"accepted": 5}
    r = worker.post("/ingest/deployment", json={"timestamp": "2023-11-14T22:13:20Z",
                                                "service": "web", "version": "1.2.3"})
    assert r.status_code == 202
    r = worker.post("/ingest/logs", json={"timestamp": 1_700_000_000, "level": "ERROR",
                                          "message": "boom", "service": "web"})
    assert r.status_code == 202

    wait_for(lambda: worker.get("/baselines/web").json()["series"]
             .get("web|latency_ms|", {}).get("samples_seen") == 5, 30, "5 samples")
    deps = wait_for(lambda: worker.get("/deployments/web").json()["deployments"], 30,
                    "the deployment")
    assert deps[0]["version"] == "1.2.3"


def test_ready_is_503_until_the_worker_has_its_partitions(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker]
) -> None:
    worker = start_worker(wait=False)
    seen = set()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            code = worker.get("/ready").status_code
        except httpx.HTTPError:
            code = None
        seen.add(code)
        if code == 200:
            break
        time.sleep(0.1)
    assert 200 in seen
    assert 503 in seen  # the web server answered before the worker was ready


def test_broker_command_and_kcat_seed_json_lines_produce_an_incident_and_alert(
    tmp_path: Path, start_worker: Callable[..., Worker], broker: BrokerUnderTest
) -> None:
    """`autopilot broker` + `autopilot worker`, fed by kcat (librdkafka partitioner)."""
    port = free_port()
    broker_cli = subprocess.Popen(
        [str(Path(__import__("sys").executable).with_name("autopilot")), "broker",
         "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        stdout = broker_cli.stdout
        assert stdout is not None
        line = wait_for(lambda: stdout.readline().decode(), 30, "broker banner")
        while "listening" not in line:
            line = stdout.readline().decode()
            assert line, "broker exited"
        with SlackWebhookServer() as slack:
            worker = start_worker({
                "AUTOPILOT_BROKER": f"kafka://127.0.0.1:{port}",
                "SLACK_WEBHOOK_URL": slack.url,
                "OLLAMA_URL": f"http://127.0.0.1:{free_port()}",
                "OLLAMA_TIMEOUT_S": "3",
            })
            lines = [json.dumps(m) for m in metric_series("orders", normal=30, spikes=2)]
            data = "".join(f"orders|{line}\n" for line in lines)
            subprocess.run([kcat(), "-P", "-b", f"127.0.0.1:{port}",
                            "-t", broker.topic("autopilot.metrics"), "-K", "|"],
                           input=data.encode(), check=True, timeout=30)
            wait_for(lambda: slack.requests, 40, "the Slack alert")
            assert "orders" in _all_text(slack.requests[0])
            inc = worker.get("/incidents/orders").json()["open_incident"]
            assert inc is not None and inc["severity"] == "critical"
    finally:
        broker_cli.terminate()
        broker_cli.wait(10)


def test_two_workers_kcat_and_http_records_meet_in_one_incident_per_service(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker]
) -> None:
    """Records from kcat (CRC32 partitioner) and from the HTTP views (any worker) are
    re-keyed by service, so deployments and metrics of one service correlate on one
    worker; table views answer from either worker (Faust table routing)."""
    with SlackWebhookServer() as slack:
        env = {"SLACK_WEBHOOK_URL": slack.url, "OLLAMA_URL": f"http://127.0.0.1:{free_port()}",
               "OLLAMA_TIMEOUT_S": "3", "AUTOPILOT_PARTITIONS": "4"}
        w1 = start_worker(env, name="w1")
        w2 = start_worker(env, name="w2")
        wait_for(lambda: w1.get("/ready").status_code == 200
                 and w2.get("/ready").status_code == 200, 60, "both workers ready")
        services = [f"svc-{i}" for i in range(6)]
        start = 1_700_000_000.0
        for i, svc in enumerate(services):
            target = (w1, w2)[i % 2]
            r = target.post("/ingest/deployment", json={
                "timestamp": start + WARM * 15 - 300, "service": svc, "version": f"v{i}.0.1"})
            assert r.status_code == 202, r.text
        lines = []
        for svc in services:
            # a warmed-up baseline, then a high (not critical) shift: opens only with
            # the deployment rule, which needs the deployment on the same worker.
            lines += [f"{svc}|{json.dumps(m)}" for m in high_shift(svc, start)]
        subprocess.run([kcat(), "-P", "-b", broker.bootstrap,
                        "-t", broker.topic("autopilot.metrics"), "-K", "|"],
                       input=("\n".join(lines) + "\n").encode(), check=True, timeout=30)

        def opened() -> set[str]:
            got = set()
            for req in slack.requests:
                for svc in services:
                    if f"{svc} " in _all_text(req) or f'{svc}"' in _all_text(req):
                        got.add(svc)
            return got

        wait_for(lambda: opened() == set(services), 60, "one alert per service")
        assert len(slack.requests) == len(services)
        for req in slack.requests:
            assert "after deployment of version" in _all_text(req)
        for svc in services:
            for w in (w1, w2):
                body = w.get(f"/baselines/{svc}").json()
                assert body["series"][f"{svc}|latency_ms|"]["samples_seen"] == WARM + 3


def test_bot_token_posts_once_and_edits_the_message_when_severity_rises(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker], redis_server: RedisServer
) -> None:
    from tests.standins import SlackWebApiServer

    with SlackWebApiServer() as slack:
        worker = start_worker({
            "SLACK_BOT_TOKEN": slack.token,
            "SLACK_CHANNEL": "alerts",
            "SLACK_API_URL": slack.base_url,
            "REDIS_URL": redis_server.url,
            "OLLAMA_URL": f"http://127.0.0.1:{free_port()}",
            "OLLAMA_TIMEOUT_S": "3",
        })
        start = 1_700_000_000.0
        r = worker.post("/ingest/deployment", json={
            "timestamp": start + WARM * 15 - 300, "service": "cart", "version": "v9.9.9"})
        assert r.status_code == 202
        produce(broker.bootstrap, broker.topic("autopilot.metrics"),
                [(b"cart", as_bytes(m)) for m in high_shift("cart", start)])
        wait_for(lambda: [c for c in slack.calls if c[0] == "chat.postMessage"], 40,
                 "the first post")
        produce(broker.bootstrap, broker.topic("autopilot.metrics"),
                [(b"cart", as_bytes(metric("cart", 1500.0, start + (WARM + 3) * 15)))])
        wait_for(lambda: [c for c in slack.calls if c[0] == "chat.update"], 40,
                 "the edit on escalation")
        roots = slack.top_level()
        assert len(roots) == 1, roots  # one conversation: the root message, edited in place
        message = slack.messages[roots[0]["ts"]]
        assert "CRITICAL" in json.dumps(message)
        assert "cart" in json.dumps(message)
        # The escalation is also told in the thread.
        assert any("critical" in json.dumps(r).lower() for r in slack.thread(roots[0]["ts"]))
