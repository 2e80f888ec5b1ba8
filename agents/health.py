"""Worker guard: data-directory lock, broker probe, counter window, start-up checks.

The decisions are pure (:mod:`autopilot.health`); this module feeds them:

* :class:`WorkerGuard`, a Faust *sensor* (sensors start before the producer, the
  consumer and the tables, and only inside a worker):

  - at start it takes an exclusive ``flock`` on ``<AUTOPILOT_DATADIR>/worker.lock``
    (released by the kernel when the process ends, so never stale). A second worker
    on the same directory stops at once with :class:`~autopilot.errors.DataDirInUse`
    and exit status 2, instead of RocksDB's lock-retry loop;
  - every ``AUTOPILOT_BROKER_CHECK_INTERVAL_S`` it asks the broker for metadata
    (through the producer's client, so TLS and SASL are the worker's) and takes a
    snapshot of the counters for the readiness window.

* :func:`check_partitions`, connected to Faust's ``on_partitions_assigned`` signal:
  every internal topic the tables are written from must have the partition count of
  the tables' changelogs; otherwise the worker stops with
  :class:`~autopilot.errors.PartitionsMismatchError` naming both topics and counts
  (Faust would raise ``PartitionsMismatch`` on every record and dead-letter it).

:data:`BROKER` (the last probe) and :data:`WINDOW` (the counter snapshots) are read
by the probes and the ingest views (:mod:`autopilot.web`), which answer 503 while the
last probe failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from faust.sensors import Sensor
from mode import Service

from autopilot import telemetry
from autopilot.app import app, settings
from autopilot.errors import DataDirInUse, PartitionsMismatchError
from autopilot.health import BrokerState, CounterWindow
from autopilot.topics import (
    ALL_TOPICS,
    AUDIT,
    DEADLETTER,
    INPUT_TOPICS,
    SINGLE_PARTITION_TOPICS,
    TRACES,
    topic_name,
)

__all__ = [
    "BROKER",
    "WINDOW",
    "WorkerGuard",
    "check_partitions",
    "counter_totals",
    "lock_datadir",
]

logger = logging.getLogger(__name__)

#: What the last broker probe saw (monotonic times).
BROKER = BrokerState()
#: Counter snapshots of the readiness window (``AUTOPILOT_READY_WINDOW_S``).
WINDOW = CounterWindow(60.0)
#: Name of the lock file inside the data directory.
LOCK_NAME = "worker.lock"


def counter_totals() -> dict[str, float]:
    """Every counter of :data:`autopilot.telemetry.REGISTRY` as ``{"name_total|labels": v}``.

    Label values are joined with ``","`` in the counter's label order.
    """
    out: dict[str, float] = {}
    for family in telemetry.REGISTRY.collect():
        if family.type != "counter":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                out[f"{sample.name}|{','.join(sample.labels.values())}"] = sample.value
    return out


def lock_datadir(path: Path) -> int:
    """Take the exclusive lock of the data directory ``path``; return its descriptor.

    The descriptor must stay open for the life of the process.

    Raises:
        DataDirInUse: another process holds the lock (the message names its pid).
    """
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown pid"
        os.close(fd)
        raise DataDirInUse(str(path), holder) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}, web port {settings().web_port}\n".encode(), 0)
    return fd


def _stop_with(exc: Exception) -> None:
    """Log ``exc`` as the reason, print it on stderr and end the process (status 2).

    Used before any table is open and nothing is in flight, so an immediate exit
    loses nothing; Faust's own crash path would print a traceback and, for the
    data-directory case, first spin in RocksDB's lock-retry loop.
    """
    logger.critical("autopilot: %s", exc)
    print(f"autopilot: {exc}", file=sys.stderr, flush=True)
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    os._exit(2)


async def probe_broker(timeout_s: float) -> tuple[bool, str]:
    """Ask the broker for metadata through the producer's client: ``(ok, error)``."""
    try:
        # ProducerT does not declare `_ensure_producer`; Faust's aiokafka producer (the
        # only transport we run) has it and returns the aiokafka client we probe.
        producer = app.producer._ensure_producer()  # type: ignore[attr-defined]  # noqa: SLF001
    except Exception:  # producer not started yet
        return False, "producer not started"
    try:
        ok = await asyncio.wait_for(producer.client.force_metadata_update(), timeout_s)
    except TimeoutError:
        return False, f"no metadata answer within {timeout_s:.0f} s"
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return (True, "") if ok else (False, "no broker answered the metadata request")


class WorkerGuard(Sensor):
    """Sensor that guards the worker (see the module docstring)."""

    _lock_fd: int | None = None

    async def on_start(self) -> None:
        """Take the data-directory lock before anything opens a table."""
        try:
            self._lock_fd = lock_datadir(Path(app.conf.datadir).absolute())
        except DataDirInUse as exc:
            _stop_with(exc)
        WINDOW.window_s = settings().ready_window_s

    @Service.task
    async def _watch(self) -> None:
        """Probe the broker and snapshot the counters, every check interval."""
        interval = settings().broker_check_interval_s
        while not self.should_stop:
            ok, error = await probe_broker(timeout_s=2 * interval)
            if error != "producer not started":
                now = time.monotonic()
                if BROKER.update(ok, error, now):
                    if ok:
                        logger.info("broker reachable again; ingest and readiness resume")
                    else:
                        logger.warning(
                            "broker unreachable (%s): ingest answers 503, /ready 503", error
                        )
                telemetry.BROKER_REACHABLE.set(1 if ok else 0)
            WINDOW.add(time.monotonic(), counter_totals())
            await self.sleep(interval)


app.sensors.add(WorkerGuard())


def copartitioned_topics() -> list[str]:
    """Internal topics whose records update tables (every topic but input, dead letters and
    the audit trail, which is keyed by incident id and feeds no table, the traces, keyed
    by trace id and feeding no table, and the one-partition incident-group topic, whose
    tables have one partition too)."""
    skip = {*INPUT_TOPICS, DEADLETTER, AUDIT, TRACES, *SINGLE_PARTITION_TOPICS}
    return [topic_name(t) for t in ALL_TOPICS if t not in skip]


def partition_mismatch(counts: dict[str, int | None], changelogs: list[str]) -> (
    PartitionsMismatchError | None
):
    """The first mismatch among ``counts`` (topic → partitions; ``None`` or 0: unknown,
    as for a topic whose metadata the consumer has not seen yet).

    The reference is the first changelog with a known count; every other changelog
    and every co-partitioned topic must have it.
    """
    known = [(c, counts.get(c)) for c in changelogs if counts.get(c)]
    if not known:
        return None
    ref_name, ref_n = known[0]
    assert ref_n is not None
    for name, n in counts.items():
        if n and n != ref_n and name != ref_name:
            return PartitionsMismatchError(name, n, ref_name, ref_n)
    return None


@app.on_partitions_assigned.connect
async def check_partitions(sender: Any, /, *args: Any, **kwargs: Any) -> None:
    """Stop the worker when a co-partitioned topic and a changelog differ (see above)."""
    changelogs = sorted(t.changelog_topic.get_topic_name() for t in app.tables.values()
                        if t.partitions != 1)  # the incident-group tables: one
    counts = {
        name: app.consumer.topic_partitions(name)
        for name in [*changelogs, *copartitioned_topics()]
    }
    mismatch = partition_mismatch(counts, changelogs)
    if mismatch is not None:
        _stop_with(mismatch)
