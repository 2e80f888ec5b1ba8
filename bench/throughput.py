#!/usr/bin/env python3
"""Throughput and latency of the metrics pipeline, measured against its limits.

    python bench/throughput.py [--broker kafka://HOST:PORT] [--services 500]
        [--metrics 20] [--batch 500] [--records 1000] [--json OUT.json]
        [--worker-env KEY=VALUE ...] [--remote-write-requests 300]
        [--remote-write-shards 4] [--no-remote-write | --remote-write-only]
        [--repeats 3]
        [--soak SECONDS [--soak-interval 30] [--store rocksdb://|memory://]]
        [--scaling [--scaling-points 500x20,50x200,...] [--scaling-records 1000]
                   [--scaling-seconds 120]]

Generates seed-shaped metric traffic for S services × M metrics (default 500 × 20 =
10,000 series) with a few injected anomalies. A *batched* record is a JSON list of
``--batch`` MetricPoints of one service; a *single* record holds one MetricPoint.
Every phase starts from a fresh local Apache Kafka (KRaft, :class:`autopilot.broker.LocalKafka`;
``--broker`` instead uses an
existing cluster; every phase then gets its own topics, consumer groups and app id,
``bench-<pid>-<time>-<phase>``, so the cluster need not be empty; delete those
topics afterwards) and measures, on the same records:

* ``raw_samples_per_s`` — aiokafka ``getmany`` + ``json.loads`` of the batched records
  (the client's limit);
* ``faust_floor_records_per_s`` — a Faust agent that does nothing per record, over
  the single-sample records of phase 3 (per-record overhead is what it measures);
* ``single_samples_per_s`` — the real worker (ingest → re-key → metrics agent) with
  one sample per record;
* phases 2 and 3 run ``--repeats`` times (3), alternating, each run on a fresh broker,
  because the floor varies by ±30 % between runs: the two keys above are the medians,
  ``faust_floor_records_per_s_runs`` / ``single_samples_per_s_runs`` list every run in
  order, and ``single_over_faust_floor`` is the ratio of the medians;
* ``batched_samples_per_s`` — the real worker with batched records;
* ``p50_latency_ms`` / ``p99_latency_ms`` — produce → anomaly record, while producing
  at half the measured batched capacity;
* ``state_bytes_per_series`` — RocksDB files of the baselines table plus the
  worker's resident memory growth, divided by the series count;
* ``remote_write_decode_samples_per_s`` — the worker's own remote write decoder
  (:func:`autopilot.formats.remote_write.decode_remote_write`) in this process, over
  ``--remote-write-requests`` snappy-compressed WriteRequests of 2,000 samples
  (Prometheus' default ``max_samples_per_send``) of the same series (the limit);
* ``remote_write_samples_per_s`` / ``remote_write_p50_ms`` / ``remote_write_p99_ms`` /
  ``remote_write_errors`` — a fresh worker taking the same bodies on
  ``POST /api/v1/write`` from httpx over ``--remote-write-shards`` connections (like
  Prometheus' queue shards, each posting its requests one after the other, no
  retries, none started after ``--remote-write-seconds``): samples of 2xx answers per
  second, request → answer time of those, and the requests answered otherwise
  (``remote_write_requests`` were sent; the worker's rate limit is off for this phase;
  ``--no-remote-write`` skips it, ``--remote-write-only`` runs only it);

and the ratios against the limits. Worker throughput is read from the worker's own
``autopilot_samples_processed_total{stage="metrics"}`` counter. ``--soak N`` instead
holds 1,000 metrics/s for N seconds and reports the worker's resident memory after
warm-up (60 s, or N/5 when shorter), every ``--soak-interval`` seconds (stderr), at
half time and at the end; ``rss_second_half_growth_ratio`` (end / half time) tells
a plateau (≈ 1) from steady growth.

``--scaling`` instead runs a sweep of the batched phase (:func:`measure_scaling`):
20, 200 and 2,000 series per service at 10,000 series in all (500 × 20, 50 × 200,
5 × 2,000) and 1,000, 10,000 and 100,000 series in all at 200 per service (5 × 200,
50 × 200, 500 × 200); ``--scaling-points`` picks other ``SERVICESxMETRICS`` points.
Each point gets a fresh broker and worker and ``--scaling-records`` (1,000) batched
records of ``--batch`` samples, at least twice the records that create every series;
samples/s is counted after those first records, over at most ``--scaling-seconds``
(120), state bytes per series as in phase 4. Its key is ``scaling``: a list of
``{"services", "series_per_service", "series", "samples", "samples_per_s",
"state_bytes_per_series", "state_bytes_empty", "rss_bytes"}`` objects, plus
``scaling_seconds`` (the sweep's wall time).

Numbers go to stdout as a table and, with ``--json``, as one JSON object (numbers,
and the lists above).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autopilot.broker import LocalKafka, free_port  # noqa: E402
from autopilot.topics import ANOMALIES, METRICS, topic_name  # noqa: E402

T0 = 1_700_000_000.0
STEP_S = 15.0
#: Prefix of this run's topics, consumer groups and app ids: every phase gets its own
#: namespace, so phases and earlier runs on the same ``--broker`` never mix.
RUN_ID = f"bench-{os.getpid()}-{int(time.time())}"


def say(text: str) -> None:
    """Progress line on stderr (stdout carries the table)."""
    print(text, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- traffic


def batched_records(
    services: int, metrics: int, batch: int, records: int, seed: int = 1,
    anomaly_every: int = 97,
) -> Iterator[tuple[bytes, bytes, int]]:
    """``(key, value, samples)`` batched records: each holds ``batch`` samples of one
    service (its metrics at consecutive timestamps), services in round robin.

    Every ``anomaly_every``-th record carries a spike (value 1000) in its last sample.
    """
    rng = random.Random(seed)
    per_record_ts = max(1, batch // metrics)
    clock = {s: 0 for s in range(services)}
    for r in range(records):
        s = r % services
        svc = f"svc-{s:04d}"
        items: list[dict[str, Any]] = []
        for k in range(per_record_ts):
            ts = T0 + (clock[s] + k) * STEP_S
            for m in range(metrics):
                if len(items) == batch:
                    break
                items.append({"timestamp": ts, "metric_name": f"m{m:02d}",
                              "value": 100.0 + rng.gauss(0.0, 5.0),
                              "labels": {"service": svc}})
        clock[s] += per_record_ts
        if r % anomaly_every == anomaly_every - 1 and clock[s] > 20:
            items[-1]["value"] = 1000.0
        yield svc.encode(), json.dumps(items).encode(), len(items)


def single_records(batched: list[tuple[bytes, bytes, int]]) -> list[tuple[bytes, bytes, int]]:
    """The same samples, one MetricPoint per record."""
    out = []
    for key, value, _ in batched:
        for item in json.loads(value):
            out.append((key, json.dumps(item).encode(), 1))
    return out


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes, int]]) -> None:
    """Produce ``(key, value, samples)`` records to ``topic`` and wait for the acks."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                max_request_size=16 * 1024 * 1024, acks=1)
    await producer.start()
    try:
        for key, value, _ in records:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """Create ``topic`` with ``partitions`` partitions."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def partitions_of(bootstrap: str, topic: str) -> list[int]:
    """Partition ids of an existing ``topic`` (raises RuntimeError when it is missing)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (desc,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    parts = [p["partition"] for p in desc.get("partitions", [])]
    if desc.get("error_code") or not parts:
        raise RuntimeError(f"topic {topic} not found (error code {desc.get('error_code')})")
    return parts


# ----------------------------------------------------------------------------- phases


@contextmanager
def fresh_broker(url: str | None, workdir: Path) -> Iterator[str]:
    """Bootstrap address of ``url``, or of a fresh local Kafka stopped (and deleted) on exit."""
    if url:
        yield url.split("://", 1)[1]
        return
    run_dir = Path(tempfile.mkdtemp(prefix="kafka-", dir=workdir))
    broker = LocalKafka(data_dir=run_dir, log_path=workdir / "broker.log")
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


async def measure_raw(bootstrap: str, records: list[tuple[bytes, bytes, int]]) -> float:
    """Samples/s of aiokafka ``getmany`` + ``json.loads`` over ``records``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    topic = f"{RUN_ID}.raw"
    await create_topic(bootstrap, topic, 1)
    await produce(bootstrap, topic, records)
    total = sum(n for _, _, n in records)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                max_partition_fetch_bytes=32 * 1024 * 1024,
                                fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        seen = 0
        started = time.perf_counter()
        while seen < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for recs in batch.values():
                for rec in recs:
                    items = json.loads(rec.value)
                    for item in items:
                        _ = item["labels"]["service"], item["value"]
                    seen += len(items)
        return total / (time.perf_counter() - started)
    finally:
        await consumer.stop()


FLOOR_APP = '''
import faust, os
app = faust.App(os.environ["BENCH_APP_ID"], broker=os.environ["BENCH_BROKER"],
                store="memory://",
                web_port=int(os.environ["BENCH_WEB_PORT"]), env={},
                broker_rebalance_timeout=4.0, broker_session_timeout=10.0,
                broker_heartbeat_interval=1.0, topic_partitions=1)
topic = app.topic(os.environ["BENCH_TOPIC"], key_type=bytes, value_type=bytes,
                  key_serializer="raw", value_serializer="raw")
count = [0]

@app.agent(topic)
async def floor(stream):
    async for _value in stream:
        count[0] += 1

@app.page("/count")
async def get_count(web, request):
    return web.json({"count": count[0]})
'''


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    """Wait until ``url`` answers 200 (raises if ``proc`` exits or time runs out)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout_s} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure_floor(bootstrap: str, records: list[tuple[bytes, bytes, int]], workdir: Path,
                  name: str = "floor") -> float:
    """Records/s of a Faust agent that does nothing per record (``name``: its topic,
    app id and log, one per repeat)."""
    topic = f"{RUN_ID}.{name}"
    asyncio.run(create_topic(bootstrap, topic, 1))
    asyncio.run(produce(bootstrap, topic, records))
    module = workdir / "bench_floor_app.py"
    module.write_text(FLOOR_APP)
    port = free_port()
    env = {**os.environ, "BENCH_BROKER": f"kafka://{bootstrap}", "BENCH_WEB_PORT": str(port),
           "BENCH_APP_ID": f"{RUN_ID}-{name}", "BENCH_TOPIC": topic,
           "PYTHONPATH": str(workdir)}
    with open(workdir / f"{name}.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "faust", "-A", "bench_floor_app",
                                 "worker", "-l", "warn", "--web-port", str(port)],
                                env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/count"
        wait_http(url, proc)
        return _rate(lambda: httpx.get(url, timeout=5).json()["count"], len(records))
    finally:
        stop(proc)


def _rate(read_count: Any, total: int, timeout_s: float = 900.0, after: int = 0,
          window_s: float | None = None) -> float:
    """Rate of ``read_count()`` reaching ``total``, from its first movement (with
    ``after``: from the first reading above ``after``; with ``window_s``: over at
    most that many seconds from there)."""
    deadline = time.monotonic() + timeout_s
    start_count: int | None = None
    start_t: float | None = None
    while time.monotonic() < deadline:
        count = read_count()
        now = time.perf_counter()
        if start_count is None and count > after:
            start_count, start_t = count, now
        if (window_s is not None and start_count is not None and start_t is not None
                and count < total and now > start_t and now - start_t >= window_s):
            return (count - start_count) / (now - start_t)
        if count >= total and start_count is not None and start_t is not None:
            done = total - start_count
            return done / (now - start_t) if done > 0 and now > start_t else float("nan")
        time.sleep(0.05)
    raise RuntimeError(f"only {read_count()} of {total} processed in {timeout_s} s")


class WorkerProc:
    """One ``autopilot worker`` process on a fresh data directory (``-l loglevel``;
    ``warn`` is Faust's default)."""

    def __init__(self, bootstrap: str, workdir: Path, name: str,
                 store: str = "rocksdb://", extra_env: dict[str, str] | None = None,
                 loglevel: str = "warn") -> None:
        self.port = free_port()
        self.datadir = workdir / f"{name}-data"
        namespace = f"{RUN_ID}-{name}"
        self.metrics_topic = topic_name(METRICS, namespace)
        self.anomalies_topic = topic_name(ANOMALIES, namespace)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AUTOPILOT_", "SLACK_", "REDIS_", "OLLAMA_"))}
        env.update({"AUTOPILOT_BROKER": f"kafka://{bootstrap}",
                    "AUTOPILOT_DATADIR": str(self.datadir), "AUTOPILOT_STORE": store,
                    "AUTOPILOT_APP_ID": namespace, "AUTOPILOT_TOPIC_PREFIX": namespace,
                    "AUTOPILOT_WEB_PORT": str(self.port), "AUTOPILOT_WEB_HOST": "127.0.0.1",
                    "OLLAMA_URL": f"http://127.0.0.1:{free_port()}", "OLLAMA_TIMEOUT_S": "1"})
        env.update(extra_env or {})
        with open(workdir / f"{name}.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "autopilot", "worker", "-l", loglevel],
                env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
        wait_http(f"http://127.0.0.1:{self.port}/ready", self.proc)

    def samples(self, stage: str = "metrics") -> int:
        """The worker's ``autopilot_samples_processed_total{stage=…}`` (``metrics``:
        processed by the metrics agent; ``remote_write``: taken by remote write)."""
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        pattern = r'autopilot_samples_processed_total\{stage="' + re.escape(stage) + r'"\} (\S+)'
        m = re.search(pattern, text)
        return int(float(m.group(1))) if m else 0

    def rss_bytes(self) -> int:
        """Resident memory of the worker process (bytes)."""
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        """Stop the worker."""
        stop(self.proc)


def worker_env(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings (``--worker-env``) as a dict (ValueError without ``=``)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--worker-env wants KEY=VALUE, not {pair!r}")
        out[key] = value
    return out


def measure_worker(bootstrap: str, records: list[tuple[bytes, bytes, int]], workdir: Path,
                   name: str, extra_env: dict[str, str] | None = None) -> tuple[float, WorkerProc]:
    """Samples/s of a fresh worker over ``records``; the worker is left running."""
    worker = WorkerProc(bootstrap, workdir, name, extra_env=extra_env)
    total = sum(n for _, _, n in records)
    asyncio.run(produce(bootstrap, worker.metrics_topic, records))
    return _rate(worker.samples, total), worker


def dir_bytes(path: Path) -> int:
    """Bytes of the files below ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


async def measure_latency(bootstrap: str, worker: WorkerProc, rate_samples_s: float,
                          batch: int, services: int, metrics: int, seconds: float,
                          start_index: int) -> list[float]:
    """Produce batched records at ``rate_samples_s`` for ``seconds``; every record's
    last sample is a spike; returns produce → anomaly latencies in ms."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    sent_at: dict[tuple[str, float], float] = {}
    latencies: list[float] = []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    parts = await partitions_of(bootstrap, worker.anomalies_topic)
    tps = [TopicPartition(worker.anomalies_topic, p) for p in parts]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0,
                                max_request_size=16 * 1024 * 1024)
    await producer.start()
    stop_flag = asyncio.Event()

    async def collect() -> None:
        while not stop_flag.is_set():
            batch_ = await consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for recs in batch_.values():
                for rec in recs:
                    a = json.loads(rec.value)
                    from autopilot.models import parse_timestamp
                    key = (a["service"], parse_timestamp(a["detected_at"]).timestamp())
                    if key in sent_at:
                        latencies.append((now - sent_at.pop(key)) * 1000.0)

    collector = asyncio.create_task(collect())
    interval = batch / rate_samples_s
    rng = random.Random(7)
    per_record_ts = max(1, batch // metrics)
    deadline = time.perf_counter() + seconds
    r = 0
    next_t = time.perf_counter()
    while time.perf_counter() < deadline:
        s = r % services
        svc = f"svc-{s:04d}"
        base = start_index + (r // services) * per_record_ts
        items: list[dict[str, Any]] = []
        for k in range(per_record_ts):
            ts = T0 + (base + k) * STEP_S
            for m in range(metrics):
                if len(items) < batch:
                    items.append({"timestamp": ts, "metric_name": f"m{m:02d}",
                                  "value": 100.0 + rng.gauss(0.0, 5.0),
                                  "labels": {"service": svc}})
        items[-1]["value"] = 5000.0
        sent_at[(svc, items[-1]["timestamp"])] = time.perf_counter()
        await producer.send(worker.metrics_topic, json.dumps(items).encode(),
                            key=svc.encode())
        r += 1
        next_t += interval
        await asyncio.sleep(max(0.0, next_t - time.perf_counter()))
    await producer.flush()
    await asyncio.sleep(3.0)
    stop_flag.set()
    await collector
    await producer.stop()
    await consumer.stop()
    return latencies


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0–100) of ``values`` (NaN when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q / 100.0 * (len(ordered) - 1))))
    return ordered[idx]


def median(values: list[float]) -> float:
    """Median of ``values`` without the NaNs (a run that measured nothing); the mean of
    the two middle values for an even count; NaN when no value is left."""
    finite = sorted(v for v in values if not math.isnan(v))
    if not finite:
        return float("nan")
    mid = len(finite) // 2
    return finite[mid] if len(finite) % 2 else (finite[mid - 1] + finite[mid]) / 2.0


# ----------------------------------------------------------------------------- remote_write

#: Prometheus' default ``queue_config.max_samples_per_send``: samples per WriteRequest.
SAMPLES_PER_SEND = 2000
#: The headers Prometheus sends with a remote write 1.0 request.
REMOTE_WRITE_HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
                        "X-Prometheus-Remote-Write-Version": "0.1.0",
                        "User-Agent": "autopilot-bench/remote_write"}


def remote_write_bodies(services: int, metrics: int, shards: int, requests: int,
                        samples_per_send: int = SAMPLES_PER_SEND, seed: int = 5,
                        ) -> list[list[tuple[bytes, int]]]:
    """Per shard, the ``(body, samples)`` WriteRequests it posts, in order.

    The ``services × metrics`` series (labels ``__name__`` = ``mNN``, ``service`` =
    ``svc-NNNN``, ``job``, ``instance``) are split over ``shards`` like Prometheus'
    queue shards do by label hash (here: series index modulo ``shards``), so every
    series' samples stay in time order within one shard. A shard sends its series
    one sample each per 15-s scrape round (time ``T0`` + round × 15 s, in
    milliseconds), cut into requests of ``samples_per_send`` samples, one
    ``TimeSeries`` per sample as Prometheus sends them. The ``requests`` requests are
    dealt to the shards in turn. Bodies are snappy (block format) compressed
    protobuf, built with :func:`autopilot.formats.remote_write.encode_write_request`.

    Raises:
        ValueError: a count below 1, or more shards than series.
    """
    from autopilot.formats.remote_write import encode_write_request

    if min(services, metrics, shards, requests, samples_per_send) < 1:
        raise ValueError("services, metrics, shards, requests and samples_per_send must be ≥ 1")
    if shards > services * metrics:
        raise ValueError(f"{shards} shards for {services * metrics} series: at most one "
                         "shard per series")
    rng = random.Random(seed)
    labels = [{"__name__": f"m{i % metrics:02d}", "service": f"svc-{i // metrics:04d}",
               "job": "bench", "instance": f"10.0.{i // metrics // 250}.{i // metrics % 250}:9100"}
              for i in range(services * metrics)]
    out: list[list[tuple[bytes, int]]] = []
    for k in range(shards):
        own = labels[k::shards]
        count = requests // shards + (1 if k < requests % shards else 0)
        bodies: list[tuple[bytes, int]] = []
        position = 0  # samples this shard has sent: round = position // len(own)
        for _ in range(count):
            series: list[tuple[dict[str, str], list[tuple[float, int]]]] = []
            for p in range(position, position + samples_per_send):
                ms = int((T0 + (p // len(own)) * STEP_S) * 1000)
                series.append((own[p % len(own)], [(100.0 + rng.gauss(0.0, 5.0), ms)]))
            position += samples_per_send
            bodies.append((encode_write_request(series), samples_per_send))
        out.append(bodies)
    return out


def measure_decode(bodies: list[tuple[bytes, int]]) -> float:
    """Samples/s of :func:`autopilot.formats.remote_write.decode_remote_write` (the
    worker's own decoder, default service labels) over ``bodies``, in this process.

    Raises:
        RuntimeError: a body decodes to another number of samples than it says.
    """
    from autopilot.formats.remote_write import decode_remote_write

    total = 0
    started = time.perf_counter()
    for body, samples in bodies:
        decoded = decode_remote_write(body)
        if len(decoded.records) != samples:
            raise RuntimeError(f"a body of {samples} samples decoded to "
                               f"{len(decoded.records)} ({decoded.reason()})")
        total += samples
    return total / (time.perf_counter() - started)


class RemoteWriteRun:
    """What :func:`post_remote_write` saw.

    Attributes:
        requests: requests sent.
        accepted_samples: samples of the requests answered 2xx.
        seconds: wall time from the first request to the last answer.
        latencies_ms: request → answer time of every 2xx request (ms).
        errors: the other outcomes by HTTP status (``"429"``) or exception class name
            (``"ConnectError"``), with their counts.
    """

    def __init__(self) -> None:
        self.requests = 0
        self.accepted_samples = 0
        self.seconds = 0.0
        self.latencies_ms: list[float] = []
        self.errors: dict[str, int] = {}

    @property
    def samples_per_s(self) -> float:
        """Accepted samples per second (NaN when nothing ran)."""
        return self.accepted_samples / self.seconds if self.seconds > 0 else float("nan")


async def post_remote_write(url: str, shards: list[list[tuple[bytes, int]]],
                            timeout_s: float = 60.0, seconds: float | None = None,
                            ) -> RemoteWriteRun:
    """POST every shard's bodies to ``url`` (``…/api/v1/write``) with httpx, one
    connection per shard at a time, each shard's requests one after the other (as a
    Prometheus queue shard sends them), without retries. With ``seconds``, a shard
    starts no request after that many seconds (its last one is still awaited).

    A 2xx answer counts the request's samples as accepted; any other status or a
    transport error counts in :attr:`RemoteWriteRun.errors`.
    """
    run_ = RemoteWriteRun()
    limits = httpx.Limits(max_connections=len(shards), max_keepalive_connections=len(shards))
    async with httpx.AsyncClient(limits=limits, timeout=timeout_s) as client:

        async def shard(bodies: list[tuple[bytes, int]]) -> None:
            for body, samples in bodies:
                sent = time.perf_counter()
                if seconds is not None and sent - started >= seconds:
                    return
                run_.requests += 1
                try:
                    r = await client.post(url, content=body, headers=REMOTE_WRITE_HEADERS)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                else:
                    if 200 <= r.status_code < 300:
                        run_.latencies_ms.append((time.perf_counter() - sent) * 1000.0)
                        run_.accepted_samples += samples
                        continue
                    outcome = str(r.status_code)
                run_.errors[outcome] = run_.errors.get(outcome, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(shard(bodies) for bodies in shards))
        run_.seconds = time.perf_counter() - started
    return run_


def measure_remote_write(bootstrap: str, workdir: Path, args: argparse.Namespace
                         ) -> dict[str, float]:
    """The remote_write phase: decode rate in process, then a fresh worker taking the
    same bodies over HTTP; returns the ``remote_write_*`` keys."""
    shards = remote_write_bodies(args.services, args.metrics, args.remote_write_shards,
                                 args.remote_write_requests)
    flat = [b for bodies in shards for b in bodies]
    out = {"remote_write_decode_samples_per_s": measure_decode(flat)}
    say(f"    decode in process: {out['remote_write_decode_samples_per_s']:,.0f} samples/s")
    # The per-client rate limit (50 requests/s by default) would cap this at
    # 100 k samples/s: off, so the worker's own limit is measured (--worker-env wins).
    worker = WorkerProc(bootstrap, workdir, "remote_write",
                        extra_env={"AUTOPILOT_RATE_LIMIT_RPS": "0", **worker_env(args.worker_env)})
    try:
        url = f"http://127.0.0.1:{worker.port}/api/v1/write"
        from autopilot.formats.remote_write import encode_write_request

        warm = encode_write_request([({"__name__": "bench_warmup", "service": "svc-warmup"},
                                      [(1.0, int(T0 * 1000))])])
        r = httpx.post(url, content=warm, headers=REMOTE_WRITE_HEADERS, timeout=60)
        if r.status_code != 204:
            raise RuntimeError(f"warm-up remote write answered {r.status_code}: {r.text[:200]}")
        posted = asyncio.run(post_remote_write(url, shards,
                                               seconds=args.remote_write_seconds))
        counted = worker.samples("remote_write") - 1  # less the warm-up sample
    finally:
        worker.stop()
    out["remote_write_samples_per_s"] = posted.samples_per_s
    out["remote_write_p99_ms"] = percentile(posted.latencies_ms, 99)
    out["remote_write_p50_ms"] = percentile(posted.latencies_ms, 50)
    out["remote_write_requests"] = float(posted.requests)
    out["remote_write_errors"] = float(sum(posted.errors.values()))
    say(f"    {posted.requests} requests; {posted.accepted_samples:,} of "
        f"{posted.requests * SAMPLES_PER_SEND:,} samples accepted in "
        f"{posted.seconds:.1f} s over {len(shards)} connections: "
        f"{posted.samples_per_s:,.0f} samples/s, p50 {out['remote_write_p50_ms']:.0f} ms, "
        f"p99 {out['remote_write_p99_ms']:.0f} ms; errors {posted.errors or 'none'}; "
        f"the worker counted {counted:,}")
    if counted != posted.accepted_samples:
        raise RuntimeError(f"{posted.accepted_samples} samples answered 2xx but the worker "
                           f"counted {counted} remote_write samples")
    return out


# ----------------------------------------------------------------------------- scaling

#: ``(services, metrics per service)`` of the ``--scaling`` sweep: 20, 200 and 2,000
#: series per service at 10,000 series in all, and 1,000, 10,000 and 100,000 series in
#: all at 200 per service (the 50 × 200 point serves both).
SCALING_POINTS: tuple[tuple[int, int], ...] = ((500, 20), (50, 200), (5, 2000), (5, 200),
                                                (500, 200))


def parse_points(text: str) -> list[tuple[int, int]]:
    """``--scaling-points``: ``"500x20,5x2000"`` → ``[(500, 20), (5, 2000)]``
    (services × metrics per service, in the order given).

    Raises:
        ValueError: an item that is not ``SERVICESxMETRICS`` of two integers ≥ 1, a
            repeated item, or no item at all (the message names the item).
    """
    points: list[tuple[int, int]] = []
    for item in text.split(","):
        item = item.strip()
        match = re.fullmatch(r"(\d+)\s*[xX×]\s*(\d+)", item)
        if not match or min(int(match.group(1)), int(match.group(2))) < 1:
            raise ValueError(f"--scaling-points item {item!r} is not SERVICESxMETRICS "
                             "with both at least 1 (e.g. 500x20)")
        point = (int(match.group(1)), int(match.group(2)))
        if point in points:
            raise ValueError(f"--scaling-points item {item!r} is given twice")
        points.append(point)
    return points


@dataclass(frozen=True)
class ScalingPoint:
    """One point of the sweep.

    Attributes:
        services: services (keys) of the traffic.
        metrics: series per service.
        records: batched records of ``batch`` samples produced for it.
        warm_records: the first records, which create every series (the rate is
            measured after them: ``services`` × ⌈``metrics`` / ``batch``⌉).
        batch: samples per record.
    """

    services: int
    metrics: int
    records: int
    warm_records: int
    batch: int

    @property
    def series(self) -> int:
        """Series in all (``services × metrics``)."""
        return self.services * self.metrics


def scaling_plan(points: list[tuple[int, int]] | tuple[tuple[int, int], ...], batch: int,
                 records: int) -> list[ScalingPoint]:
    """The sweep's points in order: each produces ``records`` batched records of
    ``batch`` samples, or twice its warm-up records when that is more, so the measured
    window (after every series exists) is at least half of the traffic.

    Raises:
        ValueError: ``batch`` or ``records`` below 1, or no point.
    """
    if batch < 1 or records < 1:
        raise ValueError(f"batch ({batch}) and records ({records}) must be at least 1")
    if not points:
        raise ValueError("the scaling sweep needs at least one point")
    plan = []
    for services, metrics in points:
        warm = services * -(-metrics // batch)
        plan.append(ScalingPoint(services, metrics, max(records, 2 * warm), warm, batch))
    return plan


def cursor_records(services: int, metrics: int, batch: int, records: int, seed: int = 1,
                   anomaly_every: int = 97) -> Iterator[tuple[bytes, bytes, int]]:
    """``(key, value, samples)`` batched records of exactly ``batch`` samples of one
    service, services in round robin. Service s's n-th sample is metric ``n % metrics``
    at ``T0 + (n // metrics) × 15 s``, so a record may end inside a timestamp and a
    service with more than ``batch`` metrics needs ⌈metrics / batch⌉ records per
    timestamp; every series keeps time order. (For ``metrics`` dividing ``batch`` these
    are :func:`batched_records`' samples.) Every ``anomaly_every``-th record's last
    sample is a spike (value 1000) from the 21st timestamp on.
    """
    rng = random.Random(seed)
    cursor = [0] * services
    for r in range(records):
        s = r % services
        svc = f"svc-{s:04d}"
        items: list[dict[str, Any]] = []
        for n in range(cursor[s], cursor[s] + batch):
            items.append({"timestamp": T0 + (n // metrics) * STEP_S,
                          "metric_name": f"m{n % metrics:02d}",
                          "value": 100.0 + rng.gauss(0.0, 5.0),
                          "labels": {"service": svc}})
        cursor[s] += batch
        if r % anomaly_every == anomaly_every - 1 and (cursor[s] - 1) // metrics >= 20:
            items[-1]["value"] = 1000.0
        yield svc.encode(), json.dumps(items).encode(), batch


def measure_scaling(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--scaling`` sweep: per point of :func:`scaling_plan`, a fresh broker and
    worker take the point's batched records; returns ``{"scaling": [row, ...],
    "scaling_seconds": wall time}`` with one row per point: ``services``,
    ``series_per_service``, ``series``, ``samples`` (produced), ``samples_per_s`` (the
    worker's ``autopilot_samples_processed_total{stage="metrics"}`` from the first
    reading after the warm-up records to the last sample, or over at most
    ``--scaling-seconds`` when that comes first), ``state_bytes_per_series`` (the
    worker's data directory 3 s after that, as in phase 4, ÷ series),
    ``state_bytes_empty`` (the data directory of the worker before any traffic: RocksDB's
    fixed files, included above) and ``rss_bytes`` (the worker's resident memory after
    the samples)."""
    plan = scaling_plan(args.scaling_points, args.batch, args.scaling_records)
    workdir = Path(tempfile.mkdtemp(prefix="autopilot-scaling-"))
    say(f"work directory: {workdir}")
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for i, point in enumerate(plan, 1):
        records = list(cursor_records(point.services, point.metrics, point.batch,
                                      point.records))
        total = point.records * point.batch
        say(f"{i}/{len(plan)} {point.services} services x {point.metrics} series = "
            f"{point.series:,} series: {point.records} records of {point.batch} samples "
            f"({total:,} samples; rate after the first {point.warm_records}) …")
        with fresh_broker(args.broker, workdir) as bootstrap:
            worker = WorkerProc(bootstrap, workdir, f"scaling-{point.services}x{point.metrics}",
                                extra_env=worker_env(args.worker_env))
            try:
                empty = dir_bytes(worker.datadir)
                asyncio.run(produce(bootstrap, worker.metrics_topic, records))
                rate = _rate(worker.samples, total, after=point.warm_records * point.batch,
                             window_s=args.scaling_seconds)
                time.sleep(3.0)  # let RocksDB flush its memtables (as phase 4)
                store = dir_bytes(worker.datadir)
                rss = worker.rss_bytes()
            finally:
                worker.stop()
        rows.append({"services": point.services, "series_per_service": point.metrics,
                     "series": point.series, "samples": total, "samples_per_s": rate,
                     "state_bytes_per_series": store / point.series,
                     "state_bytes_empty": empty, "rss_bytes": rss})
        say(f"    {rate:,.0f} samples/s; state {store / point.series:,.0f} B/series; "
            f"RSS {rss / 1e6:.0f} MB")
    return {"scaling": rows, "scaling_seconds": time.perf_counter() - started}


def scaling_table(rows: list[dict[str, Any]]) -> str:
    """The sweep's rows as a text table (one line per point, a header line)."""
    lines = [f"{'series/service':>14} {'services':>8} {'series':>8} {'samples/s':>10} "
             f"{'state B/series':>14} {'RSS MB':>7}"]
    for row in rows:
        lines.append(f"{row['series_per_service']:>14,} {row['services']:>8,} "
                     f"{row['series']:>8,} {row['samples_per_s']:>10,.0f} "
                     f"{row['state_bytes_per_series']:>14,.0f} "
                     f"{row['rss_bytes'] / 1e6:>7,.0f}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def _number(v: float) -> str:
    return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.0f}"


def format_result(out: dict[str, Any]) -> str:
    """The result as stdout shows it: one ``key  value`` line per number, a list's runs
    joined by `` / ``, the ``scaling`` rows as :func:`scaling_table`."""
    rows = out.get("scaling")
    flat = {k: v for k, v in out.items() if k != "scaling"}
    lines = []
    if flat:
        width = max(len(k) for k in flat)
        lines.append(f"{'metric':<{width}}  value")
        for k, v in flat.items():
            shown = " / ".join(_number(x) for x in v) if isinstance(v, list) else _number(v)
            lines.append(f"{k:<{width}}  {shown}")
    if rows is not None:
        lines.append(scaling_table(rows))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The phases of the module docstring; returns the flat result (numbers, and the
    two ``*_runs`` lists)."""
    workdir = Path(tempfile.mkdtemp(prefix="autopilot-bench-"))
    say(f"work directory: {workdir}")
    batched = list(batched_records(args.services, args.metrics, args.batch, args.records))
    samples = sum(n for _, _, n in batched)
    single = single_records(batched[: max(1, args.single_records // args.batch)])
    say(f"traffic: {args.services} services x {args.metrics} metrics, {len(batched)} batched "
        f"records of {args.batch} samples ({samples} samples); {len(single)} single records")
    out: dict[str, Any] = {}
    phases = 5 if args.no_remote_write else 6

    with fresh_broker(args.broker, workdir) as bootstrap:
        say(f"1/{phases} raw aiokafka consume + decode …")
        out["raw_samples_per_s"] = asyncio.run(measure_raw(bootstrap, batched))
        say(f"    {out['raw_samples_per_s']:,.0f} samples/s")
    # Phases 2 and 3 alternate, --repeats times, each on a fresh broker; their keys are
    # the medians, the *_runs keys every run in order.
    floor_runs: list[float] = []
    single_runs: list[float] = []
    for i in range(args.repeats):
        tag = f" (run {i + 1} of {args.repeats})" if args.repeats > 1 else ""
        suffix = f"-{i + 1}" if args.repeats > 1 else ""
        with fresh_broker(args.broker, workdir) as bootstrap:
            say(f"2/{phases} trivial Faust agent{tag} …")
            floor_runs.append(measure_floor(bootstrap, single, workdir, f"floor{suffix}"))
            say(f"    {floor_runs[-1]:,.0f} records/s")
        with fresh_broker(args.broker, workdir) as bootstrap:
            say(f"3/{phases} metrics agent, one sample per record{tag} …")
            rate, worker = measure_worker(bootstrap, single, workdir, f"single{suffix}",
                                          worker_env(args.worker_env))
            worker.stop()
            single_runs.append(rate)
            say(f"    {rate:,.0f} samples/s")
    out["faust_floor_records_per_s"] = median(floor_runs)
    out["faust_floor_records_per_s_runs"] = floor_runs
    out["single_samples_per_s"] = median(single_runs)
    out["single_samples_per_s_runs"] = single_runs
    say(f"    medians: floor {out['faust_floor_records_per_s']:,.0f} records/s, single "
        f"{out['single_samples_per_s']:,.0f} samples/s")
    with fresh_broker(args.broker, workdir) as bootstrap:
        say(f"4/{phases} metrics agent, batched records …")
        rss_before = 0
        rate, worker = measure_worker(bootstrap, batched, workdir, "batched",
                                      worker_env(args.worker_env))
        out["batched_samples_per_s"] = rate
        say(f"    {rate:,.0f} samples/s")
        try:
            series = args.services * args.metrics
            time.sleep(3.0)  # let RocksDB flush its memtables
            store = dir_bytes(worker.datadir)
            rss_before = worker.rss_bytes()
            out["state_bytes_per_series"] = store / series
            say(f"    state on disk {store / 1e6:.1f} MB for {series} series "
                f"({store / series:,.0f} B/series); worker RSS {rss_before / 1e6:.0f} MB")
            say(f"5/{phases} latency at half the batched capacity …")
            per_record_ts = max(1, args.batch // args.metrics)
            start_index = (args.records // args.services + 1) * per_record_ts
            lat = asyncio.run(measure_latency(
                bootstrap, worker, rate / 2.0, args.batch, args.services, args.metrics,
                args.latency_seconds, start_index))
            out["p50_latency_ms"] = percentile(lat, 50)
            out["p99_latency_ms"] = percentile(lat, 99)
            out["latency_samples"] = float(len(lat))
            say(f"    p50 {out['p50_latency_ms']:.0f} ms, p99 {out['p99_latency_ms']:.0f} ms "
                f"over {len(lat)} anomalies")
        finally:
            worker.stop()
    if not args.no_remote_write:
        with fresh_broker(args.broker, workdir) as bootstrap:
            say(f"6/{phases} remote_write: {args.remote_write_requests} WriteRequests of "
                f"{SAMPLES_PER_SEND} samples over {args.remote_write_shards} connections …")
            out.update(measure_remote_write(bootstrap, workdir, args))
    out["batched_over_raw"] = out["batched_samples_per_s"] / out["raw_samples_per_s"]
    out["single_over_faust_floor"] = out["single_samples_per_s"] / out["faust_floor_records_per_s"]
    if not args.no_remote_write:
        out["remote_write_over_decode"] = (out["remote_write_samples_per_s"]
                                           / out["remote_write_decode_samples_per_s"])
    return out


def soak(args: argparse.Namespace) -> dict[str, float]:
    """Hold 1,000 samples/s for ``--soak`` seconds; memory after warm-up and at the end."""
    workdir = Path(tempfile.mkdtemp(prefix="autopilot-soak-"))
    with fresh_broker(args.broker, workdir) as bootstrap:
        worker = WorkerProc(bootstrap, workdir, "soak", store=args.store,
                            extra_env=worker_env(args.worker_env))
        try:
            rate = 1000.0
            batch = 100
            warmup = min(60.0, args.soak / 5)

            async def drive() -> tuple[int, int, int]:
                from aiokafka import AIOKafkaProducer

                producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
                await producer.start()
                rng = random.Random(3)
                started = time.perf_counter()
                next_t = started
                i = 0
                rss_warm = rss_half = 0
                next_report = started + args.soak_interval
                while time.perf_counter() - started < args.soak:
                    svc = f"svc-{i % args.services:04d}"
                    items = [{"timestamp": T0 + (i // args.services) * STEP_S,
                              "metric_name": f"m{m % args.metrics:02d}",
                              "value": 100.0 + rng.gauss(0.0, 5.0),
                              "labels": {"service": svc, "shard": str(m // args.metrics)}}
                             for m in range(batch)]
                    await producer.send(worker.metrics_topic, json.dumps(items).encode(),
                                        key=svc.encode())
                    i += 1
                    if not rss_warm and time.perf_counter() - started >= warmup:
                        rss_warm = worker.rss_bytes()
                        say(f"after warm-up ({warmup:.0f} s): RSS {rss_warm / 1e6:.0f} MB")
                    now = time.perf_counter()
                    if not rss_half and now - started >= args.soak / 2:
                        rss_half = worker.rss_bytes()
                    if now >= next_report:
                        next_report += args.soak_interval
                        say(f"  {now - started:5.0f} s: RSS {worker.rss_bytes() / 1e6:.0f} MB, "
                            f"{worker.samples():,} samples processed")
                    next_t += batch / rate
                    await asyncio.sleep(max(0.0, next_t - time.perf_counter()))
                await producer.stop()
                return rss_warm, rss_half, worker.rss_bytes()

            rss_warm, rss_half, rss_end = asyncio.run(drive())
            say(f"end ({args.soak} s): RSS {rss_end / 1e6:.0f} MB")
            return {"soak_seconds": float(args.soak), "soak_rate_samples_per_s": rate,
                    "rss_after_warmup_bytes": float(rss_warm), "rss_end_bytes": float(rss_end),
                    "rss_growth_ratio": rss_end / rss_warm if rss_warm else float("nan"),
                    "rss_half_bytes": float(rss_half),
                    "rss_second_half_growth_ratio": (
                        rss_end / rss_half if rss_half else float("nan"))}
        finally:
            worker.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``sys.argv[1:]`` when ``argv`` is None); exits with status 2
    and a message naming the option on bad input (argparse's ``error``).
    ``scaling_points`` is a list of ``(services, metrics)``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--broker", help="kafka://HOST:PORT of a Kafka cluster (default: a fresh "
                   "local Apache Kafka per phase)")
    p.add_argument("--services", type=int, default=500)
    p.add_argument("--metrics", type=int, default=20)
    p.add_argument("--batch", type=int, default=500, help="samples per batched record")
    p.add_argument("--records", type=int, default=1000, help="batched records per phase")
    p.add_argument("--single-records", type=int, default=20_000,
                   help="single-sample records for phase 3")
    p.add_argument("--latency-seconds", type=float, default=20.0)
    p.add_argument("--remote-write-requests", type=int, default=300,
                   help=f"WriteRequests of {SAMPLES_PER_SEND} samples for the remote_write phase")
    p.add_argument("--remote-write-seconds", type=float, default=60.0,
                   help="the remote_write phase starts no request after this many seconds")
    p.add_argument("--remote-write-shards", type=int, default=4,
                   help="concurrent connections (Prometheus queue shards) of the "
                   "remote_write phase")
    p.add_argument("--no-remote-write", action="store_true", help="skip the remote_write phase")
    p.add_argument("--remote-write-only", action="store_true",
                   help="run only the remote_write phase")
    p.add_argument("--soak", type=float, default=0.0, help="soak for this many seconds instead")
    p.add_argument("--soak-interval", type=float, default=30.0,
                   help="seconds between the soak's memory reports (stderr)")
    p.add_argument("--worker-env", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting for the measured worker, e.g. AUTOPILOT_ROCKSDB_MEMORY_MB=32 "
                   "(repeatable; the worker otherwise runs with the defaults)")
    p.add_argument("--store", default="rocksdb://",
                   help="the worker's table store (AUTOPILOT_STORE: rocksdb:// or memory://)")
    p.add_argument("--repeats", type=int, default=3,
                   help="runs of the trivial Faust agent and of the one-sample phase "
                   "(alternating, each on a fresh broker); their keys are the medians")
    p.add_argument("--scaling", action="store_true",
                   help="run the scaling sweep instead of the default phases")
    p.add_argument("--scaling-points", default=",".join(f"{s}x{m}" for s, m in SCALING_POINTS),
                   help="the sweep's SERVICESxMETRICS points, comma-separated (default: "
                   "%(default)s)")
    p.add_argument("--scaling-records", type=int, default=1000,
                   help="batched records per sweep point (at least twice the records that "
                   "create every series)")
    p.add_argument("--scaling-seconds", type=float, default=120.0,
                   help="a sweep point measures its rate over at most this many seconds "
                   "after its warm-up records")
    p.add_argument("--json", type=Path, help="write the numbers as one JSON object")
    args = p.parse_args(argv)
    if args.no_remote_write and args.remote_write_only:
        p.error("--no-remote-write and --remote-write-only exclude each other")
    if args.records < args.services:
        p.error("--records must be at least --services so every series exists")
    if args.repeats < 1:
        p.error(f"--repeats must be at least 1, not {args.repeats}")
    if args.scaling_seconds <= 0:
        p.error(f"--scaling-seconds must be above 0, not {args.scaling_seconds}")
    if args.scaling_records < 1:
        p.error(f"--scaling-records must be at least 1, not {args.scaling_records}")
    if args.batch < 1:
        p.error(f"--batch must be at least 1, not {args.batch}")
    if args.scaling and (args.soak or args.remote_write_only):
        p.error("--scaling excludes --soak and --remote-write-only")
    try:
        args.scaling_points = parse_points(args.scaling_points)
    except ValueError as exc:
        p.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    args = parse_args(argv)
    out: dict[str, Any]
    if args.scaling:
        out = measure_scaling(args)
    elif args.soak:
        out = soak(args)
    elif args.remote_write_only:
        workdir = Path(tempfile.mkdtemp(prefix="autopilot-bench-"))
        say(f"work directory: {workdir}")
        with fresh_broker(args.broker, workdir) as bootstrap:
            out = measure_remote_write(bootstrap, workdir, args)
        out["remote_write_over_decode"] = (out["remote_write_samples_per_s"]
                                           / out["remote_write_decode_samples_per_s"])
    else:
        out = run(args)
    print(format_result(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
        say(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
