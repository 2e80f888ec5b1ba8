"""Fault tests on Apache Kafka: each asserts what was kept.

1. a worker SIGKILLed mid-stream and restarted with an empty data directory;
2. two workers sharing the partitions, one of them killed;
3. the broker stopped and started mid-stream;
4. Slack, Ollama and Redis failing for a while;
5. fifty services breaking at once.

They use the ``kafka`` fixture (the session's Kafka, which they stop and start).
Every wait is on a condition, never a fixed sleep; the short pauses that give a
wrongly re-sending worker the chance to show it are ``assert_quiet_for``.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from autopilot.detection import Baseline, DetectorConfig, step_record
from autopilot.settings import load_settings
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

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

INCIDENT_ID = re.compile(r"inc-[0-9a-f]{12}")
PATTERN = [100.0, 104.0, 96.0, 102.0, 98.0, 105.0, 95.0, 101.0, 99.0, 100.0]
START = 1_700_000_000.0
STEP_S = 15.0


def _webhook_kind(req: dict, first_seen: bool) -> str:
    """The kind of a webhook message from its header: the first notification, or a
    follow-up (escalated, analysis, resolved)."""
    header = str(req.get("blocks", [{}])[0].get("text", {}).get("text", "")).upper()
    if "ESCALATED" in header:
        return "escalated"
    if "ANALYSIS" in header:
        return "analysis"
    if "RESOLVED" in header and first_seen:
        return "resolved"
    return "first"


def first_messages(slack: SlackWebhookServer) -> list[dict]:
    """The first notification of each incident (follow-ups left out)."""
    out, seen = [], set()
    for req in slack.requests:
        found = INCIDENT_ID.findall(json.dumps(req))
        incident_id = found[0] if found else ""
        if _webhook_kind(req, incident_id in seen) == "first":
            out.append(req)
        seen.add(incident_id)
    return out


def alerted_incidents(slack: SlackWebhookServer) -> Counter[str]:
    """How many first notifications each incident id got. Follow-ups (escalation, the
    LLM's analysis, the resolution) are not counted; any kind of message sent twice
    for one incident fails here (a duplicate after a crash or a replay)."""
    ids: Counter[str] = Counter()
    kinds: Counter[tuple[str, str]] = Counter()
    for req in slack.requests:
        found = set(INCIDENT_ID.findall(json.dumps(req)))
        assert len(found) == 1, req
        (incident_id,) = found
        kind = _webhook_kind(req, incident_id in ids)
        kinds[(incident_id, kind)] += 1
        if kind == "first":
            ids[incident_id] += 1
    duplicates = {k: n for k, n in kinds.items() if n > 1}
    assert not duplicates, duplicates
    return ids


def samples_seen(worker: Worker, service: str, series: str) -> int:
    try:
        body = worker.get(f"/baselines/{service}").json()
    except Exception:
        return -1
    return int(body.get("series", {}).get(series, {}).get("samples_seen", 0))


def metric_value(worker: Worker, name: str) -> float:
    """Sum of a Prometheus counter over its labels, read from ``/metrics``."""
    total = 0.0
    for line in worker.get("/metrics").text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def reference_summary(values: list[tuple[float, float]]) -> dict[str, Any]:
    """The baseline an uninterrupted run reaches: the pure core applied once per sample."""
    config = DetectorConfig.from_settings(load_settings({}))
    b = Baseline()
    for offset, (value, ts) in enumerate(values):
        b, _ = step_record(b, [(value, ts)], offset, config, stream="reference/0")
    return b.summary()


def crash_series(service: str, n: int, spikes: tuple[int, ...]) -> list[dict[str, Any]]:
    """``n`` samples around 100 with critical spikes (1500) at the given indexes."""
    return [
        metric(service, 1500.0 if i in spikes else PATTERN[i % len(PATTERN)],
               START + i * STEP_S)
        for i in range(n)
    ]


# --- 1 ------------------------------------------------------------------------------------


def test_worker_sigkill_and_empty_datadir_restart_keeps_baselines_incidents_and_alerts(
    kafka: BrokerUnderTest, start_worker: Callable[..., Worker], redis_server: RedisServer
) -> None:
    services = ["pay", "cart", "auth"]
    n = 400
    spikes = (150, 350)  # 3000 s of event time apart: two incidents per service
    per_service = {svc: crash_series(svc, n, spikes) for svc in services}
    records = [
        (svc.encode(), as_bytes(per_service[svc][i])) for i in range(n) for svc in services
    ]
    with OllamaServer() as ollama, SlackWebhookServer() as slack:
        env = {
            "OLLAMA_URL": ollama.url,
            "SLACK_WEBHOOK_URL": slack.url,
            "REDIS_URL": redis_server.url,
            "AUTOPILOT_PARTITIONS": "4",
            # commit rarely, so the crash leaves a long tail to be delivered again
            "AUTOPILOT_COMMIT_INTERVAL_S": "5",
            # two spikes 3000 s apart are two episodes (the default mutes 6 h) and two
            # incidents (the default re-opens the first within 1 h of its resolution)
            "AUTOPILOT_EPISODE_S": "600",
            "AUTOPILOT_REOPEN_WINDOW_S": "600",
        }
        first = start_worker(env, name="first")
        produce(kafka.bootstrap, kafka.topic("autopilot.metrics"), records)
        # SIGKILL in the middle of the stream (past the first spikes).
        wait_for(lambda: samples_seen(first, "pay", "pay|latency_ms|") >= 170, 60,
                 "the worker to be mid-stream", interval_s=0.05)
        assert first.proc is not None
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        killed_at = {svc: samples_seen(first, svc, f"{svc}|latency_ms|") for svc in services}
        assert all(v == -1 for v in killed_at.values())  # really gone

        # A new worker with an empty data directory takes over.
        second = start_worker(env, name="second")
        for svc in services:
            def all_applied(svc: str = svc) -> bool:
                return samples_seen(second, svc, f"{svc}|latency_ms|") >= n

            wait_for(all_applied, 120, f"{svc}: all {n} samples applied after the restart")
        wait_for(lambda: len(alerted_incidents(slack)) >= 2 * len(services), 60, "every alert")
        # A replayed alert would be re-sent now.
        assert_quiet_for(4, lambda: alerted_incidents(slack), "the alerts per incident")

        # Baselines equal those of an uninterrupted run: replay changed nothing.
        for svc in services:
            got = second.get(f"/baselines/{svc}").json()["series"][f"{svc}|latency_ms|"]
            want = reference_summary([(m["value"], m["timestamp"]) for m in per_service[svc]])
            assert got["samples_seen"] == want["samples_seen"] == n
            assert got["samples_in_window"] == want["samples_in_window"]
            assert got["mean"] == pytest.approx(want["mean"], rel=1e-12)
            assert got["std_dev"] == pytest.approx(want["std_dev"], rel=1e-12)

        # No incident lost, none alerted twice.
        opened = {json.loads(r.value)["id"] for r in consume_all(
            kafka.bootstrap, kafka.topic("autopilot.incidents"))
            if json.loads(r.value)["status"] == "opened"}
        alerted = alerted_incidents(slack)
        assert len(opened) == 2 * len(services), opened
        assert set(alerted) == opened
        assert all(count == 1 for count in alerted.values()), alerted
        assert "Recovery" in second.log_text() or "recover" in second.log_text().lower()


# --- 2 ------------------------------------------------------------------------------------


def test_two_workers_split_partitions_route_views_and_survive_losing_one(
    kafka: BrokerUnderTest, start_worker: Callable[..., Worker], redis_server: RedisServer
) -> None:
    with SlackWebhookServer() as slack:
        # Redis makes the alerts w1 re-reads after the takeover (sent by w2 but not yet
        # committed) a no-op; without it they would be sent again (at least once).
        env = {"SLACK_WEBHOOK_URL": slack.url, "OLLAMA_URL": f"http://127.0.0.1:{free_port()}",
               "OLLAMA_TIMEOUT_S": "3", "AUTOPILOT_PARTITIONS": "4",
               "REDIS_URL": redis_server.url}
        w1 = start_worker(env, name="w1")
        w2 = start_worker(env, name="w2")
        wait_for(lambda: w1.get("/ready").status_code == 200
                 and w2.get("/ready").status_code == 200, 60, "both workers ready")
        services = [f"svc-{i}" for i in range(8)]
        for i, svc in enumerate(services):  # deployments over HTTP, to either worker
            r = (w1, w2)[i % 2].post("/ingest/deployment", json={
                "timestamp": START + WARM * STEP_S - 300, "service": svc,
                "version": f"v{i}.0.1"})
            assert r.status_code == 202, r.text
        lines = []
        for svc in services:
            # a high (not critical) anomaly opens an incident only with the deployment
            # rule, which needs the deployment and the metric on the same worker
            lines += [f"{svc}|{json.dumps(m)}" for m in high_shift(svc, START, STEP_S)]
        subprocess.run([kcat(), "-P", "-b", kafka.bootstrap, "-t",
                        kafka.topic("autopilot.metrics"), "-K", "|"],
                       input=("\n".join(lines) + "\n").encode(), check=True, timeout=30)

        wait_for(lambda: len(alerted_incidents(slack)) == len(services), 90,
                 "one alert per service")
        assert all("after deployment of version" in json.dumps(r) for r in first_messages(slack))
        assert {svc for r in slack.requests for svc in services
                if f'{svc} ' in json.dumps(r) or f'{svc}"' in json.dumps(r)} == set(services)
        # both workers owned partitions: both sent alerts
        assert "notified (first message)" in w1.log_text()
        assert "notified (first message)" in w2.log_text()
        for svc in services:
            for w in (w1, w2):
                body = w.get(f"/baselines/{svc}").json()
                assert body["series"][f"{svc}|latency_ms|"]["samples_seen"] == WARM + 3, (
                    w.url, body)

        # Kill w2: w1 takes over its partitions, their tables and the alerting.
        assert w2.proc is not None
        w2.proc.send_signal(signal.SIGKILL)
        w2.proc.wait(10)

        def all_answered_by_w1() -> bool:
            try:
                return all(
                    w1.get(f"/baselines/{svc}").json()["series"][f"{svc}|latency_ms|"]
                    ["samples_seen"] == WARM + 3 for svc in services)
            except Exception:
                return False

        wait_for(all_answered_by_w1, 90, "w1 answering for every service")
        later = [f"late-{i}" for i in range(8)]
        records = [(svc.encode(), as_bytes(metric_series(svc, normal=12, spikes=1)))
                   for svc in later]
        produce(kafka.bootstrap, kafka.topic("autopilot.metrics"), records)
        wait_for(lambda: len(alerted_incidents(slack)) == len(services) + len(later), 90,
                 "alerts for the services that broke after the takeover")
        assert all(c == 1 for c in alerted_incidents(slack).values())


# --- 3 ------------------------------------------------------------------------------------


def test_broker_restart_mid_stream_worker_reconnects_and_loses_nothing(
    kafka: BrokerUnderTest, start_worker: Callable[..., Worker]
) -> None:
    services = ["alpha", "beta"]
    n = 200
    with SlackWebhookServer() as slack:
        worker = start_worker({"SLACK_WEBHOOK_URL": slack.url, "AUTOPILOT_PARTITIONS": "2",
                               "OLLAMA_URL": f"http://127.0.0.1:{free_port()}",
                               "OLLAMA_TIMEOUT_S": "3"})
        series = {svc: crash_series(svc, 2 * n, spikes=(n + 50,)) for svc in services}

        def send(lo: int, hi: int) -> None:
            produce(kafka.bootstrap, kafka.topic("autopilot.metrics"),
                    [(svc.encode(), as_bytes(series[svc][i]))
                     for i in range(lo, hi) for svc in services])

        send(0, n)
        kafka.stop_kafka()  # mid-stream: the worker may still be processing
        kafka.start_kafka()
        send(n, 2 * n)  # acknowledged by the restarted broker
        for svc in services:
            def every_sample_applied(svc: str = svc) -> bool:
                return samples_seen(worker, svc, f"{svc}|latency_ms|") == 2 * n

            wait_for(every_sample_applied, 180, f"{svc}: every acknowledged sample applied")
        wait_for(lambda: len(alerted_incidents(slack)) == len(services), 60,
                 "one alert per service after the restart")
        assert worker.proc is not None and worker.proc.poll() is None  # same process
        for svc in services:
            got = worker.get(f"/baselines/{svc}").json()["series"][f"{svc}|latency_ms|"]
            want = reference_summary([(m["value"], m["timestamp"]) for m in series[svc]])
            assert got["mean"] == pytest.approx(want["mean"], rel=1e-12)
            assert got["std_dev"] == pytest.approx(want["std_dev"], rel=1e-12)


# --- 4 ------------------------------------------------------------------------------------


def test_slack_ollama_and_redis_outages_delay_alerts_but_drop_none(
    kafka: BrokerUnderTest, start_worker: Callable[..., Worker]
) -> None:
    services = ["north", "south", "east"]
    redis_down = RedisServer().start()
    with OllamaServer(delay_s=5.0) as ollama, SlackWebhookServer() as slack:
        worker = start_worker({
            "SLACK_WEBHOOK_URL": slack.url,
            "SLACK_MAX_RETRIES": "1",  # the client gives up quickly: the sink retries
            "OLLAMA_URL": ollama.url,
            "OLLAMA_TIMEOUT_S": "1",  # Ollama "hangs": every analysis times out
            "REDIS_URL": redis_down.url,
            "AUTOPILOT_PARTITIONS": "2",
        })
        redis_down.stop()  # Redis goes away before the first alert
        slack.fail_next(4, "rate_limited")
        slack.fail_next(4, "internal_error")
        produce(kafka.bootstrap, kafka.topic("autopilot.metrics"),
                [(svc.encode(), as_bytes(metric_series(svc, normal=12, spikes=1)))
                 for svc in services])

        wait_for(lambda: len(alerted_incidents(slack)) == len(services), 120,
                 "every alert once Slack answers again")
        assert all(c == 1 for c in alerted_incidents(slack).values())
        assert slack.attempts >= len(services) + 8
        assert len(ollama.requests) >= len(services)  # asked, timed out, rules answered
        assert all("rule-based" in json.dumps(r).lower() for r in first_messages(slack))
        # What was retried or degraded is counted and logged, never silent.
        assert metric_value(worker, "autopilot_slack_retries_total") >= 1
        assert metric_value(worker, "autopilot_slack_failures_total") >= 1
        assert metric_value(worker, "autopilot_llm_fallbacks_total") >= len(services)
        assert metric_value(worker, "autopilot_redis_errors_total") >= 1
        log = worker.log_text()
        assert "Slack unavailable" in log and "Redis unavailable" in log


# --- 5 ------------------------------------------------------------------------------------


def test_fifty_services_break_at_once_one_alert_each_with_concurrent_analyses(
    kafka: BrokerUnderTest, start_worker: Callable[..., Worker], redis_server: RedisServer
) -> None:
    services = [f"shop-{i:02d}" for i in range(50)]
    limit = 5
    with OllamaServer(delay_s=1.5) as ollama, SlackWebhookServer() as slack:
        start_worker({
            "SLACK_WEBHOOK_URL": slack.url,
            "OLLAMA_URL": ollama.url,
            "REDIS_URL": redis_server.url,
            "AUTOPILOT_ANALYSIS_CONCURRENCY": str(limit),
        })
        produce(kafka.bootstrap, kafka.topic("autopilot.metrics"),
                [(svc.encode(), as_bytes(metric_series(svc, normal=12, spikes=1)))
                 for svc in services])
        wait_for(lambda: len(alerted_incidents(slack)) == len(services), 180,
                 "an alert for each of the 50 services")
        assert_quiet_for(3, lambda: alerted_incidents(slack), "the alerts per incident")
        alerted = alerted_incidents(slack)
        assert len(first_messages(slack)) == len(services)
        assert all(c == 1 for c in alerted.values())
        named = {svc for r in first_messages(slack) for svc in services
                 if f"{svc}" in json.dumps(r)}
        assert named == set(services)
        # Analyses ran concurrently, up to the limit and never beyond it.
        assert ollama.max_in_flight == limit, ollama.max_in_flight
