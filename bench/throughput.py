#!/usr/bin/env python3
"""Throughput and latency of the metrics pipeline, measured against its limits.

    python bench/throughput.py [--broker kafka://HOST:PORT] [--services 500]
        [--metrics 20] [--batch 500] [--records 1000] [--json OUT.json]
        [--worker-env KEY=VALUE ...] [--soak SECONDS [--soak-interval 30]
        [--store rocksdb://|memory://]]

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
* ``batched_samples_per_s`` — the real worker with batched records;
* ``p50_latency_ms`` / ``p99_latency_ms`` — produce → anomaly record, while producing
  at half the measured batched capacity;
* ``state_bytes_per_series`` — RocksDB files of the baselines table plus the
  worker's resident memory growth, divided by the series count;

and the ratios against the limits. Worker throughput is read from the worker's own
``autopilot_samples_processed_total{stage="metrics"}`` counter. ``--soak N`` instead
holds 1,000 metrics/s for N seconds and reports the worker's resident memory after
warm-up (60 s, or N/5 when shorter), every ``--soak-interval`` seconds (stderr), at
half time and at the end; ``rss_second_half_growth_ratio`` (end / half time) tells
a plateau (≈ 1) from steady growth. Numbers go to stdout as a table and, with
``--json``, as one flat JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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


def measure_floor(bootstrap: str, records: list[tuple[bytes, bytes, int]], workdir: Path) -> float:
    """Records/s of a Faust agent that does nothing per record."""
    topic = f"{RUN_ID}.floor"
    asyncio.run(create_topic(bootstrap, topic, 1))
    asyncio.run(produce(bootstrap, topic, records))
    module = workdir / "bench_floor_app.py"
    module.write_text(FLOOR_APP)
    port = free_port()
    env = {**os.environ, "BENCH_BROKER": f"kafka://{bootstrap}", "BENCH_WEB_PORT": str(port),
           "BENCH_APP_ID": f"{RUN_ID}-floor", "BENCH_TOPIC": topic,
           "PYTHONPATH": str(workdir)}
    with open(workdir / "floor.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "faust", "-A", "bench_floor_app",
                                 "worker", "-l", "warn", "--web-port", str(port)],
                                env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/count"
        wait_http(url, proc)
        return _rate(lambda: httpx.get(url, timeout=5).json()["count"], len(records))
    finally:
        stop(proc)


def _rate(read_count: Any, total: int, timeout_s: float = 900.0) -> float:
    """Rate of ``read_count()`` reaching ``total``, from its first movement."""
    deadline = time.monotonic() + timeout_s
    start_count: int | None = None
    start_t: float | None = None
    while time.monotonic() < deadline:
        count = read_count()
        now = time.perf_counter()
        if start_count is None and count > 0:
            start_count, start_t = count, now
        if count >= total and start_count is not None and start_t is not None:
            done = total - start_count
            return done / (now - start_t) if done > 0 and now > start_t else float("nan")
        time.sleep(0.05)
    raise RuntimeError(f"only {read_count()} of {total} processed in {timeout_s} s")


class WorkerProc:
    """One ``autopilot worker`` process on a fresh data directory."""

    def __init__(self, bootstrap: str, workdir: Path, name: str,
                 store: str = "rocksdb://", extra_env: dict[str, str] | None = None) -> None:
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
                [sys.executable, "-m", "autopilot", "worker", "-l", "warn"],
                env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
        wait_http(f"http://127.0.0.1:{self.port}/ready", self.proc)

    def samples(self) -> int:
        """The worker's ``autopilot_samples_processed_total{stage="metrics"}``."""
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        m = re.search(r'autopilot_samples_processed_total\{stage="metrics"\} ([0-9.e+]+)', text)
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


# ----------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict[str, float]:
    """The five phases of the module docstring; returns the flat result."""
    workdir = Path(tempfile.mkdtemp(prefix="autopilot-bench-"))
    say(f"work directory: {workdir}")
    batched = list(batched_records(args.services, args.metrics, args.batch, args.records))
    samples = sum(n for _, _, n in batched)
    single = single_records(batched[: max(1, args.single_records // args.batch)])
    say(f"traffic: {args.services} services x {args.metrics} metrics, {len(batched)} batched "
        f"records of {args.batch} samples ({samples} samples); {len(single)} single records")
    out: dict[str, float] = {}

    with fresh_broker(args.broker, workdir) as bootstrap:
        say("1/5 raw aiokafka consume + decode …")
        out["raw_samples_per_s"] = asyncio.run(measure_raw(bootstrap, batched))
        say(f"    {out['raw_samples_per_s']:,.0f} samples/s")
    with fresh_broker(args.broker, workdir) as bootstrap:
        say("2/5 trivial Faust agent …")
        out["faust_floor_records_per_s"] = measure_floor(bootstrap, single, workdir)
        say(f"    {out['faust_floor_records_per_s']:,.0f} records/s")
    with fresh_broker(args.broker, workdir) as bootstrap:
        say("3/5 metrics agent, one sample per record …")
        rate, worker = measure_worker(bootstrap, single, workdir, "single",
                                      worker_env(args.worker_env))
        worker.stop()
        out["single_samples_per_s"] = rate
        say(f"    {rate:,.0f} samples/s")
    with fresh_broker(args.broker, workdir) as bootstrap:
        say("4/5 metrics agent, batched records …")
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
            say("5/5 latency at half the batched capacity …")
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
    out["batched_over_raw"] = out["batched_samples_per_s"] / out["raw_samples_per_s"]
    out["single_over_faust_floor"] = out["single_samples_per_s"] / out["faust_floor_records_per_s"]
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


def main() -> int:
    """Command-line entry point."""
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
    p.add_argument("--soak", type=float, default=0.0, help="soak for this many seconds instead")
    p.add_argument("--soak-interval", type=float, default=30.0,
                   help="seconds between the soak's memory reports (stderr)")
    p.add_argument("--worker-env", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting for the measured worker, e.g. AUTOPILOT_ROCKSDB_MEMORY_MB=32 "
                   "(repeatable; the worker otherwise runs with the defaults)")
    p.add_argument("--store", default="rocksdb://",
                   help="the worker's table store (AUTOPILOT_STORE: rocksdb:// or memory://)")
    p.add_argument("--json", type=Path, help="write the numbers as one flat JSON object")
    args = p.parse_args()
    if args.records < args.services:
        p.error("--records must be at least --services so every series exists")
    out = soak(args) if args.soak else run(args)
    width = max(len(k) for k in out)
    print(f"{'metric':<{width}}  value")
    for k, v in out.items():
        print(f"{k:<{width}}  {v:,.3f}" if abs(v) < 10 else f"{k:<{width}}  {v:,.0f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
        say(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
