"""``autopilot demo``: a real failure, replayed end to end.

Replays NAB's ``realKnownCause/ec2_request_latency_system_failure.csv`` (real EC2
request latency in ms, 5-minute samples, 2014-03-07 … 2014-03-21, ending in a
documented AWS API failure) as ``api_latency_ms`` of the service ``checkout-api``,
as fast as the pipeline takes it and with its own timestamps, together with

* generated application logs, one batch per sample: INFO request lines, a rare
  background WARN, and ERROR lines (upstream timeouts) whenever the latency is
  above :data:`ERROR_LATENCY_MS` — so errors appear during the failure;
* one deployment of ``checkout-api`` :data:`DEPLOY_VERSION` at
  :data:`DEPLOY_AT`, shortly before the failure that starts at 22:21 that day.

It starts a local Apache Kafka (unless ``AUTOPILOT_BROKER`` is set) and one worker,
prints the incident lifecycle as it happens (anomalies and recoveries, incidents
opened, updated, analysed, resolved), and ends with a summary scored against NAB's
labelled windows (``combined_windows.json``) with the Slack-visible messages and
edits per incident, written to ``demo-summary.json`` in the working directory.

The pure parts (:func:`load_series`, :func:`generate_traffic`, :func:`summarise`)
need no broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from autopilot.models import Alert, Anomaly, Incident, parse_timestamp
from autopilot.topics import (
    ALERTS,
    ANOMALIES,
    DEFAULT_PREFIX,
    DEPLOYMENTS,
    INCIDENTS,
    LOGS,
    METRICS,
    topic_name,
)

__all__ = ["generate_traffic", "load_series", "load_windows", "run_demo", "summarise"]

SERVICE = "checkout-api"
METRIC = "api_latency_ms"
NAB_FILE = "realKnownCause/ec2_request_latency_system_failure.csv"
#: Latency above which the generated logs carry ERROR lines (ms; the series' 99.9th
#: percentile is about 56 ms, its median 45 ms).
ERROR_LATENCY_MS = 54.0
DEPLOY_VERSION = "v2.14.0"
DEPLOY_AT = datetime(2014, 3, 18, 22, 10, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Sample:
    """One row of the series: the timestamp text as in the file, parsed time, value."""

    text: str
    at: datetime
    value: float


def _data(name: str) -> Path:
    return Path(str(resources.files("autopilot").joinpath("data", "nab", name)))


def load_series(path: Path | None = None) -> list[Sample]:
    """Read a NAB CSV (``timestamp,value``; timestamps UTC) into samples."""
    path = path or _data("ec2_request_latency_system_failure.csv")
    with open(path, newline="") as fh:
        return [
            Sample(row["timestamp"], parse_timestamp(row["timestamp"]), float(row["value"]))
            for row in csv.DictReader(fh)
        ]


def load_windows(key: str = NAB_FILE, path: Path | None = None) -> list[tuple[datetime, datetime]]:
    """NAB's labelled anomaly windows for ``key`` as (start, end) UTC datetimes."""
    path = path or _data("combined_windows.json")
    with open(path) as fh:
        windows = json.load(fh)[key]
    return [(parse_timestamp(a), parse_timestamp(b)) for a, b in windows]


def _metric(sample: Sample) -> dict[str, Any]:
    return {
        "timestamp": sample.at.isoformat(),
        "metric_name": METRIC,
        "value": sample.value,
        "labels": {"service": SERVICE, "environment": "production", "region": "us-east-1"},
    }


def _logs(sample: Sample, rng: random.Random) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    base = sample.at
    for i in range(3):
        lines.append(
            {
                "timestamp": (base + timedelta(seconds=20 + 80 * i)).isoformat(),
                "level": "INFO",
                "message": (
                    f"POST /api/checkout 200 in {sample.value * rng.uniform(0.8, 1.2):.0f} ms"
                ),
                "service": SERVICE,
                "labels": {"pod": f"checkout-api-{i}"},
            }
        )
    if rng.random() < 0.02:
        lines.append(
            {
                "timestamp": (base + timedelta(seconds=150)).isoformat(),
                "level": "WARN",
                "message": "slow query on carts table (1.2 s)",
                "service": SERVICE,
                "labels": {},
            }
        )
    if sample.value > ERROR_LATENCY_MS:
        errors = 6 + int(sample.value - ERROR_LATENCY_MS) // 3
        for j in range(errors):
            lines.append(
                {
                    "timestamp": (base + timedelta(seconds=5 + j)).isoformat(),
                    "level": "ERROR",
                    "message": (
                        "upstream request timeout: payments-gateway did not answer within "
                        "3000 ms (POST /v1/charges); connection pool exhausted (50/50 in use)"
                    ),
                    "service": SERVICE,
                    "labels": {"pod": f"checkout-api-{j % 3}"},
                }
            )
    lines.sort(key=lambda line: line["timestamp"])
    return lines


def generate_traffic(
    samples: list[Sample], seed: int = 7
) -> Iterator[tuple[str, bytes, bytes]]:
    """The demo's records in event-time order: ``(topic, key, value)``.

    One metric record and one log batch (a JSON list) per sample, and the
    deployment record just before the first sample after :data:`DEPLOY_AT`.
    Deterministic for a given ``seed``.
    """
    rng = random.Random(seed)
    key = SERVICE.encode()
    deployed = False
    for sample in samples:
        if not deployed and sample.at >= DEPLOY_AT:
            deployed = True
            deployment = {
                "timestamp": DEPLOY_AT.isoformat(),
                "service": SERVICE,
                "version": DEPLOY_VERSION,
                "status": "success",
                "metadata": {"previous_version": "v2.13.2", "deployer": "ci-pipeline"},
            }
            yield DEPLOYMENTS, key, json.dumps(deployment).encode()
        yield METRICS, key, json.dumps(_metric(sample)).encode()
        yield LOGS, key, json.dumps(_logs(sample, rng)).encode()


def summarise(
    incidents: list[Incident],
    windows: list[tuple[datetime, datetime]],
    *,
    anomalies: int,
    alerts: int,
    samples: int,
    messages: dict[str, dict[str, int]] | None = None,
) -> dict[str, Any]:
    """Score opened incidents against labelled windows.

    A window is ``hit`` when an incident opened inside it (start ≤ opened_at ≤ end).
    ``alerts`` counts analyses; ``messages`` maps incident id → ``{"messages": N,
    "edits": N}``, what the notifier sent to Slack (or the console) for it.
    Returns the JSON-ready summary written to ``demo-summary.json``.
    """
    messages = messages or {}
    final: dict[str, Incident] = {}
    for inc in incidents:
        if inc.id not in final or inc.revision >= final[inc.id].revision:
            final[inc.id] = inc
    opened = {i.id: i for i in incidents if i.status == "opened"}
    rows: list[dict[str, Any]] = []
    for inc in sorted(opened.values(), key=lambda i: i.opened_at):
        inside = any(a <= inc.opened_at <= b for a, b in windows)
        rows.append(
            {
                "id": inc.id,
                "service": inc.service,
                "opened_at": inc.opened_at.isoformat(),
                "severity": inc.severity.value,
                "trigger_reason": inc.trigger_reason,
                "in_labelled_window": inside,
                "state": final[inc.id].state,
                "resolution": final[inc.id].resolution,
                "reopened": final[inc.id].reopened,
                "error_lines": max((len(i.recent_errors) for i in incidents
                                    if i.id == inc.id), default=0),
                "slack_messages": messages.get(inc.id, {}).get("messages", 0),
                "slack_edits": messages.get(inc.id, {}).get("edits", 0),
            }
        )
    win_rows = []
    for a, b in windows:
        hits = [r["id"] for r in rows if a.isoformat() <= r["opened_at"] <= b.isoformat()]
        win_rows.append(
            {"start": a.isoformat(), "end": b.isoformat(), "hit": bool(hits), "incidents": hits}
        )
    return {
        "series": NAB_FILE,
        "service": SERVICE,
        "metric": METRIC,
        "samples": samples,
        "anomalies": anomalies,
        "alerts": alerts,
        "incidents": rows,
        "incidents_in_windows": sum(r["in_labelled_window"] for r in rows),
        "incidents_outside_windows": sum(not r["in_labelled_window"] for r in rows),
        "windows": win_rows,
        "windows_hit": sum(w["hit"] for w in win_rows),
    }


# --------------------------------------------------------------------------- runner


def _say(text: str) -> None:
    print(text, flush=True)


async def _wait_health(port: int, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with code {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                r = await client.get(f"http://127.0.0.1:{port}/ready")
                if r.status_code == 200:
                    return
            await asyncio.sleep(0.5)
    raise RuntimeError(f"worker not healthy after {timeout_s:.0f} s")


async def _samples_seen(port: int) -> int:
    import httpx

    async with httpx.AsyncClient(timeout=5.0) as client:
        r = await client.get(f"http://127.0.0.1:{port}/baselines/{SERVICE}")
        if r.status_code != 200:
            return 0
        series = r.json().get("series", {})
        return sum(int(s["samples_seen"]) for s in series.values())


async def _incident_view(port: int) -> dict[str, Any]:
    import httpx

    async with httpx.AsyncClient(timeout=5.0) as client:
        r = await client.get(f"http://127.0.0.1:{port}/incidents/{SERVICE}")
        return r.json() if r.status_code == 200 else {}


async def _notifications_due(port: int) -> bool:
    """True while a notification of the demo's incidents is still due (not reminders)."""
    view = await _incident_view(port)
    return any(n.get("pending") for n in view.get("notifications", {}).values())


async def _messages(port: int) -> dict[str, dict[str, int]]:
    view = await _incident_view(port)
    return {
        incident_id: {"messages": int(n.get("messages", 0)), "edits": int(n.get("edits", 0))}
        for incident_id, n in view.get("notifications", {}).items()
    }


class _Watcher:
    """Prints the incident lifecycle as it happens and keeps it for the summary."""

    def __init__(self) -> None:
        self.anomalies = 0
        self.incidents: list[Incident] = []
        self.alerts: list[Alert] = []
        self.last_event = time.monotonic()

    def on_record(self, topic: str, value: bytes) -> None:
        self.last_event = time.monotonic()
        data = json.loads(value)
        if topic == ANOMALIES:
            a = Anomaly.model_validate(data)
            self.anomalies += 1
            what = "anomaly " if a.state == "firing" else "recovered"
            _say(
                f"  {what} {a.detected_at:%Y-%m-%d %H:%M} {a.service} {a.metric_name}"
                f"={a.current_value:.1f} (baseline {a.baseline_mean:.1f} ± "
                f"{a.baseline_std_dev:.1f}, z={a.z_score:+.1f}) {a.severity.value}"
            )
        elif topic == INCIDENTS:
            inc = Incident.model_validate(data)
            self.incidents.append(inc)
            _say(_lifecycle_line(inc))
        elif topic == ALERTS:
            alert = Alert.model_validate(data)
            self.alerts.append(alert)
            source = (f"the LLM ({alert.analysis.model})" if alert.analysis.source == "llm"
                      else "the rules (LLM unavailable)")
            _say(f"  ANALYSED {alert.incident.id} by {source}: "
                 f"{alert.analysis.root_cause.description[:160]}")


def _lifecycle_line(inc: Incident) -> str:
    """One line per incident record: what changed (its newest timeline entry)."""
    newest = inc.timeline[-1].text if inc.timeline else inc.trigger_reason
    head = f"  INCIDENT {inc.status.upper()} {inc.id} {inc.service} severity={inc.severity.value}"
    if inc.status == "opened":
        return f"{head} opened_at={inc.opened_at:%Y-%m-%d %H:%M} — {inc.trigger_reason}"
    if inc.status in ("resolved", "closed") and inc.closed_at is not None:
        minutes = (inc.closed_at - inc.opened_at).total_seconds() / 60
        return f"{head} after {minutes:.0f} min ({inc.resolution or 'closed'}) — {newest}"
    return f"{head} — {newest}"


def _names(prefix: str, *defaults: str) -> dict[str, str]:
    """Map default topic names to the names in force under ``prefix``."""
    return {d: topic_name(d, prefix) for d in defaults}


async def _consume(
    bootstrap: str, watcher: _Watcher, stop: asyncio.Event, prefix: str = DEFAULT_PREFIX
) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    names = _names(prefix, ANOMALIES, INCIDENTS, ALERTS)
    defaults = {v: k for k, v in names.items()}
    topics = list(names.values())
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tps: list[TopicPartition] = []
        while not tps and not stop.is_set():
            tps = []
            for t in topics:
                parts = consumer.partitions_for_topic(t)
                if parts is None:
                    await consumer._client.force_metadata_update()  # noqa: SLF001
                    parts = consumer.partitions_for_topic(t)
                tps.extend(TopicPartition(t, p) for p in parts or ())
            if len({tp.topic for tp in tps}) < len(topics):
                tps = []
                await asyncio.sleep(0.5)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for rec in records:
                    watcher.on_record(defaults[tp.topic], rec.value)
    finally:
        await consumer.stop()


#: Metric samples produced before the demo waits for the worker to catch up (one hour
#: of the series' event time). Metrics and logs are separate topics that the worker
#: reads concurrently; produced all at once, one ran hours or days of event time
#: ahead of the other and evidence of one failure met the other's incident. Pacing
#: keeps the two within this step, as they are in live traffic.
PACE_SAMPLES = 12
#: Seconds to wait for the worker to catch up with one step before going on anyway.
PACE_TIMEOUT_S = 30.0


async def _processed(port: int) -> tuple[int, int]:
    """``(metric samples applied, log records applied)`` by the worker on ``port``."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    samples = await _samples_seen(port)
    async with httpx.AsyncClient(timeout=5.0) as client:
        r = await client.get(f"http://127.0.0.1:{port}/metrics")
    logs = 0
    if r.status_code == 200:
        for family in text_string_to_metric_families(r.text):
            for sample in family.samples:
                if (sample.name == "autopilot_records_processed_total"
                        and sample.labels.get("stage") == "logs"):
                    logs = int(sample.value)
    return samples, logs


async def _caught_up(port: int, metrics: int, logs: int) -> None:
    """Wait (at most :data:`PACE_TIMEOUT_S`) until the worker applied what was sent."""
    deadline = time.monotonic() + PACE_TIMEOUT_S
    while time.monotonic() < deadline:
        seen, logged = await _processed(port)
        if seen >= metrics and logged >= logs:
            return
        await asyncio.sleep(0.05)


async def _produce(
    bootstrap: str, samples: list[Sample], prefix: str = DEFAULT_PREFIX,
    port: int | None = None,
) -> int:
    """Produce the demo's records; with the worker's ``port``, paced (:data:`PACE_SAMPLES`)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    sent = metrics = logs = 0
    try:
        names = _names(prefix, METRICS, LOGS, DEPLOYMENTS)
        for topic, key, value in generate_traffic(samples):
            await producer.send(names[topic], value, key=key)
            sent += 1
            metrics += topic == METRICS
            logs += topic == LOGS
            if port is not None and topic == LOGS and metrics % PACE_SAMPLES == 0:
                await producer.flush()
                await _caught_up(port, metrics, logs)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def _create_topics(bootstrap: str, partitions: int, prefix: str = DEFAULT_PREFIX) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(t, num_partitions=partitions, replication_factor=1)
            for t in _names(prefix, METRICS, LOGS, DEPLOYMENTS).values()
            if t not in existing
        ]
        if new:
            await admin.create_topics(new)
    finally:
        await admin.close()


async def run_demo(*, timeout_s: float = 600.0, summary_path: Path | None = None) -> int:
    """Run the demo (see module docstring); returns the process exit code.

    Exit codes: 0 when the pipeline processed the whole series (the summary says
    how the incidents compare with the labels), 1 when it did not finish in
    ``timeout_s`` seconds or a component failed.
    """
    from autopilot.app import settings
    from autopilot.broker import LocalKafka, free_port

    s = settings()
    samples = load_series()
    windows = load_windows()
    summary_path = summary_path or Path.cwd() / "demo-summary.json"
    workdir = Path(tempfile.mkdtemp(prefix="autopilot-demo-"))
    broker: LocalKafka | None = None
    worker: subprocess.Popen[bytes] | None = None
    started = time.monotonic()
    try:
        app_id = s.app_id
        if os.environ.get("AUTOPILOT_BROKER"):
            bootstrap = s.broker.split("://", 1)[1]
            _say(f"Using the broker at {bootstrap} (AUTOPILOT_BROKER).")
            if not os.environ.get("AUTOPILOT_APP_ID") and not os.environ.get(
                "AUTOPILOT_TOPIC_PREFIX"
            ):
                # A broker that outlives the demo keeps earlier runs' topics, groups
                # and changelogs: a fresh namespace makes every run start clean.
                app_id = f"autopilot-demo-{int(time.time())}"
                _say(f"Using the fresh app id and topic prefix {app_id!r}.")
        else:
            _say("Starting Apache Kafka (KRaft, one node) …")
            broker = LocalKafka(data_dir=workdir / "kafka", log_path=workdir / "broker.log")
            await broker.start_async()
            bootstrap = broker.bootstrap
            _say(f"Started Apache Kafka at {bootstrap} in {time.monotonic() - started:.0f} s.")
        prefix = s.topic_prefix or app_id
        await _create_topics(bootstrap, s.partitions, prefix)
        port = free_port()
        env = {
            **os.environ,
            "AUTOPILOT_BROKER": f"kafka://{bootstrap}",
            "AUTOPILOT_DATADIR": str(workdir / "data"),
            "AUTOPILOT_WEB_PORT": str(port),
            "AUTOPILOT_WEB_HOST": "127.0.0.1",
            "AUTOPILOT_APP_ID": app_id,
            # A replay of two weeks takes about a minute: shorter notification timers
            # (unless set) so the conversation plays out while the demo runs.
            "AUTOPILOT_GROUP_WAIT_S": os.environ.get("AUTOPILOT_GROUP_WAIT_S", "5"),
            "AUTOPILOT_GROUP_INTERVAL_S": os.environ.get("AUTOPILOT_GROUP_INTERVAL_S", "5"),
        }
        log_path = workdir / "worker.log"
        _say(f"Starting a worker (web port {port}, log {log_path}) …")
        with open(log_path, "ab") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "autopilot", "worker", "-l", "info"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        await _wait_health(port, worker, timeout_s=120)
        _say(f"Worker ready after {time.monotonic() - started:.0f} s.")
        slack = "Slack webhook" if s.slack_webhook_url else (
            "Slack bot" if s.slack_bot_token else "the console (no Slack configured)"
        )
        _say(f"Alerts go to {slack}; Ollama at {s.ollama_url} ({s.ollama_model}).")
        _say(
            f"Replaying {len(samples)} samples of {NAB_FILE} as {SERVICE} {METRIC} "
            f"({samples[0].at:%Y-%m-%d} … {samples[-1].at:%Y-%m-%d}), with logs and a "
            f"deployment of {DEPLOY_VERSION} at {DEPLOY_AT:%Y-%m-%d %H:%M} UTC …"
        )
        watcher = _Watcher()
        stop = asyncio.Event()
        consumer = asyncio.create_task(_consume(bootstrap, watcher, stop, prefix))
        sent = await _produce(bootstrap, samples, prefix, port)
        _say(f"Produced {sent} records; waiting for the pipeline to finish …")
        deadline = started + timeout_s
        seen = 0
        while time.monotonic() < deadline:
            if worker.poll() is not None:
                raise RuntimeError(f"worker exited with code {worker.returncode}")
            seen = await _samples_seen(port)
            if (seen >= len(samples) and time.monotonic() - watcher.last_event > 8.0
                    and not await _notifications_due(port)):
                break
            await asyncio.sleep(1.0)
        messages = await _messages(port)
        stop.set()
        await consumer
        if seen < len(samples):
            _say(f"Timed out: the worker applied {seen} of {len(samples)} samples.")
            return 1
        summary = summarise(
            watcher.incidents,
            windows,
            anomalies=watcher.anomalies,
            alerts=len(watcher.alerts),
            samples=len(samples),
            messages=messages,
        )
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        _print_summary(summary, time.monotonic() - started, summary_path)
        return 0
    except Exception as exc:
        _say(f"demo failed: {exc}")
        _say(f"logs are kept in {workdir}")
        return 1
    finally:
        if worker is not None and worker.poll() is None:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        if broker is not None:
            broker.stop()
            _say("Stopped Apache Kafka.")
        if time.monotonic() - started < timeout_s:
            shutil.rmtree(workdir / "data", ignore_errors=True)
            shutil.rmtree(workdir / "kafka", ignore_errors=True)


def _print_summary(summary: dict[str, Any], elapsed: float, path: Path) -> None:
    _say("")
    _say("=" * 72)
    _say(f"Summary ({elapsed:.0f} s): {summary['samples']} samples, {summary['anomalies']} "
         f"anomaly records, {len(summary['incidents'])} incidents, {summary['alerts']} "
         "analyses")
    for row in summary["incidents"]:
        _say(f"  incident {row['id']} opened {row['opened_at'][:16]} {row['severity']}, "
             f"{row['state']}{' (' + row['resolution'] + ')' if row['resolution'] else ''}, "
             f"{row['error_lines']} error line(s), Slack: {row['slack_messages']} message(s) "
             f"+ {row['slack_edits']} edit(s)")
    for w in summary["windows"]:
        mark = "HIT " if w["hit"] else "miss"
        _say(f"  labelled window {w['start'][:16]} … {w['end'][:16]}: {mark} {w['incidents']}")
    _say(
        f"  incidents inside labelled windows: {summary['incidents_in_windows']}, "
        f"outside: {summary['incidents_outside_windows']}"
    )
    _say(f"Written to {path}")
