"""Health that tells the truth: liveness vs readiness, broker outages, start-up checks.

Real broker (the session's Apache Kafka, stopped and started through
``scripts/apache-kafka.sh``), real worker processes, real HTTP clients.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import metric
from tests.integration.conftest import (
    BrokerUnderTest,
    Worker,
    as_bytes,
    consume_all,
    metric_series,
    produce,
    wait_for,
)
from tests.standins import RedisServer, free_port

pytestmark = pytest.mark.integration

FAST = {"AUTOPILOT_BROKER_CHECK_INTERVAL_S": "1"}


def _get(worker: Worker, path: str) -> httpx.Response | None:
    """GET that tolerates a worker not listening (yet)."""
    try:
        return httpx.get(f"{worker.url}{path}", timeout=5)
    except httpx.HTTPError:
        return None


def _post_metric(worker: Worker, value: float, timeout_s: float = 30.0) -> tuple[
    httpx.Response, float
]:
    """POST one sample; (response, seconds it took)."""
    t0 = time.monotonic()
    r = httpx.post(f"{worker.url}/ingest/metrics", timeout=timeout_s,
                   json=[metric("outage", value, time.time())])
    return r, time.monotonic() - t0


def _assert_outage_answers(worker: Worker, stopped_at: float) -> list[float]:
    """Ingest answers 503 + Retry-After within 10 s of the broker going away; /ready is
    503 with the reason, /health stays 200 and says the broker is unreachable.
    Returns the values refused with ``queued: false`` (they must never land)."""
    refused: list[float] = []
    value = 1000.0
    first_503_at = None
    while first_503_at is None:
        value += 1
        r, took = _post_metric(worker, value)
        assert took < 10.5, f"an ingest request took {took:.1f} s while the broker was down"
        if r.status_code == 503:
            first_503_at = time.monotonic()
            if r.json().get("queued") is False:
                refused.append(value)
        else:
            assert r.status_code == 202, r.text
        assert time.monotonic() - stopped_at < 30, "no 503 within 30 s of the broker stop"
    assert first_503_at - stopped_at < 10.5, (
        f"first 503 {first_503_at - stopped_at:.1f} s after the broker went away")
    # Once the probe noticed: every request is refused at once, nothing queued.
    wait_for(lambda: (_post_metric(worker, 0.5)[0].json().get("queued") is False), 10,
             "fast 503s (nothing queued)")
    for _ in range(3):
        value += 1
        r, took = _post_metric(worker, value)
        assert r.status_code == 503 and took < 2.0, (r.status_code, took)
        assert int(r.headers["Retry-After"]) >= 1
        body = r.json()
        assert body["cause"] == "broker_unreachable" and body["queued"] is False
        refused.append(value)
    ready = worker.get("/ready")
    assert ready.status_code == 503 and "broker unreachable" in ready.json()["status"]
    live = worker.get("/health")
    assert live.status_code == 200
    assert live.json()["ready"] is False and live.json()["broker"].startswith("unreachable")
    # Remote write too (Prometheus retries a 503 after Retry-After).
    from autopilot.formats.remote_write import encode_write_request

    rw = httpx.post(f"{worker.url}/api/v1/write", timeout=15,
                    content=encode_write_request([({"__name__": "up", "job": "outage"},
                                                   [(1.0, int(time.time() * 1000))])]),
                    headers={"Content-Type": "application/x-protobuf",
                             "Content-Encoding": "snappy"})
    assert rw.status_code == 503 and "Retry-After" in rw.headers
    return refused


def test_broker_stopped_ingest_answers_503_within_10_s_ready_503_health_200(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    """``scripts/apache-kafka.sh stop``: ingest answers 503 with ``Retry-After`` within
    10 s, ``/ready`` 503, ``/health`` 200 (alive); then start again: the worker is ready
    again, and what was refused with ``queued: false`` never landed."""
    worker = start_worker({**FAST, "AUTOPILOT_PARTITIONS": "2"})
    assert worker.get("/ready").json() == {"status": "ok"}
    live = worker.get("/health").json()
    assert live["status"] == "ok" and live["ready"] is True
    assert live["broker"] == "reachable"
    assert _post_metric(worker, 1.0)[0].status_code == 202
    try:
        broker.stop_kafka()
        refused = _assert_outage_answers(worker, time.monotonic())
        assert worker.proc is not None and worker.proc.poll() is None  # still alive
    finally:
        broker.start_kafka()
    wait_for(lambda: (r := _get(worker, "/ready")) is not None and r.status_code == 200,
             120, "ready again after the broker came back")
    assert _post_metric(worker, 2.0)[0].status_code == 202
    landed = {v for rec in consume_all(broker.bootstrap, broker.topic("autopilot.metrics"))
              for v in _values(rec.value)}
    assert 1.0 in landed and 2.0 in landed
    assert not landed & set(refused), "a request refused with queued=false landed later"


def _values(raw: bytes) -> list[float]:
    import json

    data: Any = json.loads(raw)
    return [m["value"] for m in (data if isinstance(data, list) else [data])]


def test_ready_is_503_while_every_record_is_dead_lettered_health_stays_200(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker]
) -> None:
    worker = start_worker({**FAST, "AUTOPILOT_READY_DEAD_LETTERS_MIN": "5"})
    produce(broker.bootstrap, broker.topic("autopilot.metrics"),
            [(b"svc", b"not json %d" % i) for i in range(8)])
    not_ready = wait_for(lambda: (r := worker.get("/ready")).status_code == 503 and r, 30,
                         "/ready 503 while every record is dead-lettered")
    assert "metrics.ingest dead-lettered every record" in not_ready.json()["status"]
    live = worker.get("/health")
    assert live.status_code == 200 and live.json()["ready"] is False
    # A good record shows the stage works again.
    produce(broker.bootstrap, broker.topic("autopilot.metrics"),
            [(b"svc", as_bytes(metric("svc", 1.0, time.time())))])
    wait_for(lambda: worker.get("/ready").status_code == 200, 30, "ready after a good record")


def test_health_stays_200_and_reports_slack_ollama_and_redis_failing(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker]
) -> None:
    redis_down = RedisServer().start()
    worker = start_worker({
        **FAST,
        "SLACK_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/hook",
        "SLACK_MAX_RETRIES": "0",
        "OLLAMA_URL": f"http://127.0.0.1:{free_port()}",
        "OLLAMA_TIMEOUT_S": "1",
        "REDIS_URL": redis_down.url,
        "AUTOPILOT_PARTITIONS": "2",
    })
    redis_down.stop()
    produce(broker.bootstrap, broker.topic("autopilot.metrics"),
            [(b"pay", as_bytes(metric_series("pay", normal=12, spikes=1)))])

    def components() -> dict[str, str] | None:
        r = worker.get("/health")
        assert r.status_code == 200, r.text  # alive all along
        c = r.json()["components"]
        done = c["slack"] == "failing" and c["ollama"] == "failing" and c["redis"] == "failing"
        return c if done else None

    wait_for(components, 90, "Slack, Ollama and Redis reported failing in /health")
    assert worker.get("/ready").status_code == 200  # none of them makes the worker unready


def test_source_topic_with_another_partition_count_stops_the_worker_at_start(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker]
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    anomalies = broker.topic("autopilot.anomalies")

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(anomalies, 2, 1)])
        finally:
            await admin.close()

    asyncio.run(create())
    worker = start_worker({"AUTOPILOT_PARTITIONS": "4"}, wait=False)
    assert worker.proc is not None
    code = worker.proc.wait(timeout=90)
    assert code == 2
    log = worker.log_text()
    assert f"topic {anomalies} has 2 partitions but the table changelog" in log
    assert "has 4" in log


def test_second_worker_on_a_data_directory_in_use_stops_with_a_clear_error(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    first = start_worker({"AUTOPILOT_PARTITIONS": "2"}, name="first")
    second = start_worker({"AUTOPILOT_PARTITIONS": "2",
                           "AUTOPILOT_DATADIR": first.env["AUTOPILOT_DATADIR"]},
                          name="second", wait=False)
    assert second.proc is not None
    code = second.proc.wait(timeout=60)
    assert code == 2
    log = second.log_text()
    assert f"data directory {first.env['AUTOPILOT_DATADIR']} is in use by another worker" in log
    assert f"pid {first.proc.pid}" in log  # type: ignore[union-attr]
    assert "is locked! Retry" not in log
    assert first.get("/ready").status_code == 200  # the first one is unharmed
