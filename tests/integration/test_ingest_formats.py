"""Real clients feed a real worker: Prometheus remote_write, kcat with every documented
Kafka format, HTTP with every documented bad input (the worker keeps processing)."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import cramjam
import httpx
import pytest

from autopilot.formats.remote_write import STALE_NAN_BITS, encode_write_request
from tests.factories import metric
from tests.integration.conftest import (
    BrokerUnderTest,
    Worker,
    consume_all,
    kcat,
    wait_for,
)
from tests.standins import free_port

pytestmark = pytest.mark.integration

KEY = "test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
T0 = 1_764_410_400  # 2025-11-29T10:00:00Z


def series_of(worker: Worker, service: str) -> dict:
    r = get_auth(worker, f"/baselines/{service}")
    assert r.status_code == 200, r.text
    return r.json()["series"]


def get_auth(worker: Worker, path: str) -> httpx.Response:
    """GET ``path`` from ``worker`` with the test API key."""
    return httpx.get(f"{worker.url}{path}", headers=AUTH, timeout=10)


def post_auth(worker: Worker, path: str, *, headers: dict[str, str] | None = None,
              **kw: Any) -> httpx.Response:
    """POST to ``path`` of ``worker`` with the test API key (plus ``headers``)."""
    return httpx.post(f"{worker.url}{path}", headers={**AUTH, **(headers or {})}, timeout=10,
                      **kw)


def test_real_prometheus_remote_writes_its_own_series_into_the_baselines(
    tmp_path: Path, start_worker: Callable[..., Worker]
) -> None:
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus is not installed: `make test` installs it (Debian package)"
    worker = start_worker({"AUTOPILOT_API_KEYS": KEY})
    port = free_port()
    (tmp_path / "key").write_text(KEY)
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:{port}"]
remote_write:
  - url: {worker.url}/api/v1/write
    authorization:
      credentials_file: {tmp_path / "key"}
    queue_config:
      batch_send_deadline: 1s
      max_samples_per_send: 500
""")
    with open(tmp_path / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def counter_rates() -> dict:
            series = series_of(worker, "prometheus")
            return {
                k: v
                for k, v in series.items()
                if k.startswith("prometheus|prometheus_http_requests_total|")
                and v["samples_seen"] >= 2
            }

        rates = wait_for(counter_rates, 90, "prometheus_http_requests_total rates in baselines")
        series = series_of(worker, "prometheus")
        assert any(k.startswith("prometheus|up|") for k in series), sorted(series)[:20]
        assert all("job=prometheus" in k for k in series)
        # counters are baselined as per-second rates: small, not the ever-growing totals
        assert all(v["mean"] < 1000 for v in rates.values()), rates
        metrics_text = get_auth(worker, "/metrics").text
        assert 'autopilot_samples_processed_total{stage="remote_write"}' in metrics_text
    finally:
        proc.terminate()
        proc.wait(30)


KAFKA_METRICS = {
    "seed": {
        "timestamp": T0,
        "metric_name": "seed_latency_ms",
        "value": 101.0,
        "labels": {"service": "kafkafmt"},
    },
    "prometheus-kafka-adapter": {
        "timestamp": "2025-11-29T10:00:00Z",
        "value": "42",
        "name": "adapter_queue_depth",
        "labels": {
            "__name__": "adapter_queue_depth",
            "job": "kafkafmt",
            "instance": "10.0.0.1:9100",
        },
    },
    "telegraf": {
        "name": "cpu",
        "fields": {"usage_user": 12.5, "usage_system": 3.25, "label": "text is skipped"},
        "tags": {"service": "kafkafmt", "host": "web-1"},
        "timestamp": T0,
    },
    "telegraf-batch": {
        "metrics": [
            {
                "name": "mem",
                "fields": {"used_percent": 61.5},
                "tags": {"app": "kafkafmt"},
                "timestamp": T0,
            }
        ]
    },
}


def _kcat_produce(bootstrap: str, topic: str, lines: list[str], key_sep: str = "|") -> None:
    subprocess.run(
        [kcat(), "-P", "-b", bootstrap, "-t", topic, "-K", key_sep],
        input="\n".join(lines).encode() + b"\n",
        check=True,
        timeout=60,
    )


def test_kcat_produces_each_documented_kafka_format_and_each_arrives(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    worker = start_worker({"AUTOPILOT_API_KEYS": KEY})
    _kcat_produce(
        broker.bootstrap,
        broker.topic("autopilot.metrics"),
        [f"kafkafmt|{json.dumps(v)}" for v in KAFKA_METRICS.values()],
    )

    want = {
        "kafkafmt|seed_latency_ms|",
        "kafkafmt|adapter_queue_depth|instance=10.0.0.1:9100,job=kafkafmt",
        "kafkafmt|cpu_usage_user|host=web-1",
        "kafkafmt|cpu_usage_system|host=web-1",
        "kafkafmt|mem_used_percent|app=kafkafmt",
    }
    wait_for(
        lambda: want <= set(series_of(worker, "kafkafmt")),
        45,
        f"all Kafka metric formats in the baselines: {want}",
    )
    assert (
        series_of(worker, "kafkafmt")[
            "kafkafmt|adapter_queue_depth|instance=10.0.0.1:9100,job=kafkafmt"
        ]["mean"]
        == 42.0
    )

    # Logs: a text record with a stack trace (service = the record key), JSON lines.
    text = (
        "2025-11-29T10:00:05Z ERROR payment failed\nTraceback (most recent call last):\n"
        '  File "pay.py", line 3, in charge\nValueError: card declined'
    )
    jsonl = "\n".join(
        json.dumps(o)
        for o in [
            {"ts": T0 * 1000, "lvl": "warn", "msg": "slow upstream", "service": "kafkafmt"},
            {
                "@timestamp": "2025-11-29T10:00:07+01:00",
                "severity": 3,
                "log": "db down",
                "service": {"name": "kafkafmt"},
            },
        ]
    )
    # kcat sends each file named on its command line as one message (lines stay together)
    (tmp_path / "trace.log").write_text(text)
    (tmp_path / "lines.jsonl").write_text(jsonl)
    subprocess.run(
        [
            kcat(),
            "-P",
            "-b",
            broker.bootstrap,
            "-t",
            broker.topic("autopilot.logs"),
            "-k",
            "kafkafmt",
            str(tmp_path / "trace.log"),
            str(tmp_path / "lines.jsonl"),
        ],
        check=True,
        timeout=60,
    )

    # Deployments: GitHub deployment_status and Argo CD notification bodies.
    data = Path(__file__).parent / "data"
    github = json.loads((data / "github_deployment_status.json").read_text())
    argocd = json.loads((data / "argocd_notification.json").read_text())
    _kcat_produce(
        broker.bootstrap,
        broker.topic("autopilot.deployments"),
        [f"x|{json.dumps(github)}", f"y|{json.dumps(argocd)}"],
    )

    def keyed_logs() -> list[dict]:
        recs = consume_all(broker.bootstrap, broker.topic("autopilot.logs.keyed"))
        return [e for r in recs for e in json.loads(r.value)]

    entries = wait_for(lambda: len(keyed_logs()) >= 3 and keyed_logs(), 30, "3 log entries")
    by_msg = {e["message"].split("\n")[0]: e for e in entries}
    assert by_msg["payment failed"]["message"].endswith("ValueError: card declined")
    assert by_msg["payment failed"]["service"] == "kafkafmt"
    assert by_msg["slow upstream"]["level"] == "warn"
    assert by_msg["db down"]["timestamp"] == "2025-11-29T09:00:07Z"

    deps = wait_for(
        lambda: get_auth(worker, "/deployments/checkout").json()["deployments"],
        30,
        "the GitHub deployment",
    )
    assert deps[0]["version"] == "v1.4.2" and deps[0]["metadata"]["source"] == "github"
    argo = wait_for(
        lambda: get_auth(worker, "/deployments/guestbook").json()["deployments"],
        30,
        "the Argo CD deployment",
    )
    assert argo[0]["status"] == "success" and argo[0]["metadata"]["source"] == "argocd"
    assert consume_all(broker.bootstrap, broker.topic("autopilot.deadletter")) == []


def _snappy(data: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(data))


RW = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


def test_every_bad_input_gets_its_documented_answer_and_the_worker_keeps_processing(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker]
) -> None:
    worker = start_worker({"AUTOPILOT_API_KEYS": KEY})
    post = partial(post_auth, worker)
    good_rw = encode_write_request(
        [({"__name__": "queue_depth", "job": "badin"}, [(3.0, T0 * 1000)])]
    )
    raw_pb = bytes(cramjam.snappy.decompress_raw(good_rw))

    r = post("/api/v1/write", content=b"\x00not snappy at all", headers=RW)
    assert r.status_code == 400 and "snappy" in r.json()["error"]
    r = post("/api/v1/write", content=_snappy(raw_pb[: len(raw_pb) - 3]), headers=RW)
    assert r.status_code == 400 and "WriteRequest" in r.json()["error"]
    r = post("/api/v1/write", content=good_rw, headers={**RW, "Content-Type": "application/json"})
    assert r.status_code == 415
    r = post(
        "/api/v1/write",
        content=good_rw,
        headers={
            **RW,
            "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        },
    )
    assert r.status_code == 415
    r = post("/api/v1/write", content=raw_pb, headers={**RW, "Content-Encoding": "identity"})
    assert r.status_code == 415
    stale = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]
    r = post(
        "/api/v1/write",
        headers=RW,
        content=encode_write_request(
            [
                (
                    {"__name__": "queue_depth", "job": "badin"},
                    [(3.0, T0 * 1000), (stale, T0 * 1000 + 1000), (float("inf"), T0 * 1000 + 2000)],
                ),
                ({"__name__": "orphan"}, [(1.0, T0 * 1000)]),
            ]
        ),
    )
    assert r.status_code == 204, r.text

    r = post("/ingest/metrics", content=b'{"metric_name": ')
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    # An unknown level does not refuse the line: kept as UNKNOWN and counted.
    r = post(
        "/ingest/logs", json={"timestamp": T0, "level": "LOUD", "message": "x", "service": "badin"}
    )
    assert r.status_code == 202 and r.json()["defaulted"] == {"unknown_level": 1}
    r = post(
        "/ingest/logs",
        json={"timestamp": "yesterday", "level": "info", "message": "x", "service": "badin"},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "timestamp"
    r = post(
        "/ingest/logs",
        content=b"2025-11-29T10:00:00Z ERROR no service given",
        headers={"Content-Type": "text/plain"},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "service"
    r = post(
        "/ingest/logs?service=badin",
        content=b"2025-11-29T10:00:00Z ERROR \xff\xfe bytes",
        headers={"Content-Type": "text/plain"},
    )
    assert r.status_code == 202
    r = post(
        "/ingest/metrics",
        json={"timestamp": T0, "metric_name": "m", "value": 1, "labels": {"env": "x"}},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "labels"
    r = post(
        "/ingest/prometheus",
        content=b"this is { not exposition",
        headers={"Content-Type": "text/plain"},
    )
    assert r.status_code == 400
    r = post(
        "/ingest/prometheus",
        content=b"queue_depth 1\n",
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 415
    r = post("/ingest/prometheus", content=b"queue_depth 1\n")
    assert r.status_code == 422 and "service" in r.json()["errors"][0]["msg"]
    r = post(
        "/ingest/prometheus?service=badin",
        content=b'# TYPE jobs_total counter\njobs_total 5\nqueue_depth{job="badin"} 4\n',
        headers={"Content-Type": "text/plain; version=0.0.4"},
    )
    assert r.status_code == 202 and r.json()["accepted"] == 2
    r = post("/ingest/deployment", json={"zen": "hi"}, headers={"X-GitHub-Event": "ping"})
    assert r.status_code == 200
    r = post(
        "/ingest/deployment", json={"service": "badin", "version": "1", "timestamp": "not a time"}
    )
    assert r.status_code == 422

    # The same bad inputs on Kafka are dead-lettered with a reason.
    bad = [
        b'kafka1|{"metric_name": ',
        b'kafka2|{"timestamp": 1764410400, "level": "LOUD", "message": "x", "service": "badin"}',
        b'kafka3|{"timestamp": "someday", "level": "info", "message": "x", "service": "badin"}',
    ]
    subprocess.run(
        [kcat(), "-P", "-b", broker.bootstrap, "-t", broker.topic("autopilot.metrics"), "-K", "|"],
        input=bad[0] + b"\n",
        check=True,
        timeout=60,
    )
    subprocess.run(
        [kcat(), "-P", "-b", broker.bootstrap, "-t", broker.topic("autopilot.logs"), "-K", "|"],
        input=b"\n".join(bad[1:]) + b"\n",
        check=True,
        timeout=60,
    )
    subprocess.run(
        [kcat(), "-P", "-b", broker.bootstrap, "-t", broker.topic("autopilot.logs")],
        input=b"2025-11-29T10:00:00Z ERROR keyless text line\n",
        check=True,
        timeout=60,
    )
    dead = wait_for(
        lambda: (
            len(consume_all(broker.bootstrap, broker.topic("autopilot.deadletter"))) >= 3
            and consume_all(broker.bootstrap, broker.topic("autopilot.deadletter"))
        ),
        30,
        "3 dead letters",
    )
    reasons = sorted(dict(d.headers)["x-autopilot-reason"].decode() for d in dead)
    assert len(dead) == 3, reasons  # the LOUD line is kept (level UNKNOWN), not refused
    assert any("JSON" in r for r in reasons), reasons
    assert any("timestamp" in r for r in reasons), reasons
    assert any("service: missing" in r for r in reasons), reasons

    # ... and the worker keeps processing: the good samples arrived.
    def badin() -> dict:
        return series_of(worker, "badin")

    series = wait_for(
        lambda: badin().get("badin|queue_depth|job=badin", {}).get("samples_seen") == 2 and badin(),
        30,
        "the good samples",
    )
    # A counter's first sample gives no rate yet: the baseline has learned nothing.
    assert series["badin|jobs_total|"]["samples_in_window"] == 0
    text = get_auth(worker, "/metrics").text
    assert 'autopilot_samples_skipped_total{reason="stale",source="remote_write"} 1.0' in text
    assert 'autopilot_samples_skipped_total{reason="non_finite",source="remote_write"} 1.0' in text
    assert 'autopilot_samples_skipped_total{reason="no_service",source="remote_write"} 1.0' in text
    r = post("/ingest/metrics", json=[metric("badin", 7.0, T0 + 60)])
    assert r.status_code == 202
    wait_for(
        lambda: badin().get("badin|latency_ms|", {}).get("samples_seen") == 1,
        30,
        "a good record after the bad ones",
    )
