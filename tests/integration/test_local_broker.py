"""``autopilot broker``: a local Apache Kafka that listens, keeps its topics across a
restart, and leaves no process behind on SIGTERM (issue 12).

Runs the real command (``.venv/bin/autopilot broker --port N --data-dir D``), a real
aiokafka producer and consumer, and reads ``/proc`` for the command's descendants.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autopilot.broker import wait_for_kafka
from tests.standins import free_port

pytestmark = pytest.mark.integration

#: The issue's bound: listening within 60 s on a machine where `make install` ran.
LISTEN_WITHIN_S = 60.0


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, grandchildren …), from /proc."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            listed = task / "children"
            for child in map(int, listed.read_text().split() if listed.exists() else []):
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _start(port: int, data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    autopilot = Path(sys.executable).with_name("autopilot")
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [str(autopilot), "broker", "--port", str(port), "--data-dir", str(data_dir)],
            stdout=out, stderr=subprocess.STDOUT,
        )

    def alive() -> None:
        if proc.poll() is not None:
            raise AssertionError(f"autopilot broker exited ({proc.returncode}): {log.read_text()}")

    asyncio.run(wait_for_kafka(f"127.0.0.1:{port}", LISTEN_WITHIN_S, alive))
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> set[int]:
    """SIGTERM the command; returns the descendants it had."""
    children = _descendants(proc.pid)
    assert children, "autopilot broker runs Kafka as a child process"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(90) == 0
    return children


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for v in values:
            await producer.send_and_wait(topic, v)
    finally:
        await producer.stop()


async def _read_all(bootstrap: str, topic: str, expect: int) -> list[bytes]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    got: list[bytes] = []
    try:
        deadline = time.monotonic() + 60
        while len(got) < expect and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                got.extend(r.value for r in records if r.value is not None)
    finally:
        await consumer.stop()
    return got


def test_autopilot_broker_listens_keeps_topics_across_restart_and_sigterm_stops_every_child(
    tmp_path: Path,
) -> None:
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    data_dir = tmp_path / "kafka"
    log = tmp_path / "broker.log"

    proc = _start(port, data_dir, log)
    try:
        asyncio.run(_produce(bootstrap, "kept", [b"one", b"two", b"three"]))
        children = _stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not [pid for pid in children if _alive(pid)], "a child outlived SIGTERM"
    assert "Apache Kafka (KRaft) listening on" in log.read_text()

    proc = _start(port, data_dir, log)  # the same run directory: the topic is kept
    try:
        assert sorted(asyncio.run(_read_all(bootstrap, "kept", 3))) == [b"one", b"three", b"two"]
        children = _stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not [pid for pid in children if _alive(pid)], "a child outlived SIGTERM"
    assert os.path.exists(data_dir / "server.log")
