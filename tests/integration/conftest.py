"""Fixtures for integration tests: a real broker, real redis-server, real workers.

* ``broker``: where a test's records go: one Apache Kafka (KRaft, the broker
  ``autopilot broker`` runs) shared by all tests, at ``AUTOPILOT_TEST_KAFKA`` (default
  ``127.0.0.1:$KAFKA_PORT``, port 9092). When nothing answers there and
  ``AUTOPILOT_TEST_KAFKA`` is not set, the session starts one with
  ``scripts/apache-kafka.sh start`` (data in ``.cache/kafka/run-PORT``) and stops it at
  the end. Each test is isolated by its own namespace: a fresh ``AUTOPILOT_APP_ID``
  (consumer group, changelog topics) that is also the topic prefix
  (``t1a2b3c4.metrics``). ``broker.topic("autopilot.metrics")`` gives the name in force;
  the namespace's topics are deleted after the test.
* ``kafka``: the same fixture under the name the fault tests (marked ``kafka``) use.
* ``redis_server``: one real ``redis-server`` for the session, flushed per test.
* ``start_worker``: starts ``python -m autopilot worker`` processes with the given
  environment and waits until ``GET /ready`` answers 200 (never a fixed sleep; ``/health``
  is liveness and answers 200 as soon as the worker serves).
  A worker given ``AUTOPILOT_WEB_SSL_CERTFILE`` is reached over HTTPS, trusting
  ``AUTOPILOT_WEB_SSL_CAFILE`` (and showing the worker's own certificate when it asks
  for client certificates).

A broker that cannot start or a missing redis-server fails the run; nothing is skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import metric
from tests.standins import RedisServer, free_port

WORKER_READY_TIMEOUT_S = 90.0
REPO = Path(__file__).resolve().parents[2]
KAFKA_SCRIPT = REPO / "scripts" / "apache-kafka.sh"


class BrokerUnderTest:
    """The broker of one test and its namespace (see the module docstring)."""

    def __init__(self, bootstrap: str, namespace: str | None = None) -> None:
        self.bootstrap = bootstrap
        self.namespace = namespace

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    def topic(self, default_name: str) -> str:
        """The name in force of a topic (``"autopilot.metrics"`` → ``"<ns>.metrics"``)."""
        from autopilot.topics import topic_name

        return topic_name(default_name, self.namespace or "autopilot")

    def worker_env(self) -> dict[str, str]:
        env = {"AUTOPILOT_BROKER": self.url}
        if self.namespace:
            env["AUTOPILOT_APP_ID"] = self.namespace
        return env

    def _script(self, command: str) -> None:
        port = self.bootstrap.rsplit(":", 1)[1]
        done = subprocess.run([str(KAFKA_SCRIPT), command], env={**os.environ, "KAFKA_PORT": port},
                              capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr

    def stop_kafka(self) -> None:
        """Clean shutdown of the Apache Kafka (its data stays)."""
        self._script("stop")

    def start_kafka(self) -> None:
        """Start the Apache Kafka again and wait until it accepts clients."""
        self._script("start")

    def delete_namespace_topics(self) -> None:
        if not self.namespace:
            return
        from aiokafka.admin import AIOKafkaAdminClient

        async def run() -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await admin.start()
            try:
                mine = [t for t in await admin.list_topics()
                        if t.startswith((f"{self.namespace}.", f"{self.namespace}-"))]
                if mine:
                    await admin.delete_topics(mine)
            finally:
                await admin.close()

        try:
            asyncio.run(run())
        except Exception as exc:  # cleanup only: the next test has its own namespace
            print(f"could not delete the topics of {self.namespace}: {exc!r}")


def _kafka_bootstrap() -> str:
    return os.environ.get(
        "AUTOPILOT_TEST_KAFKA", f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"
    )


def _kafka_answers(bootstrap: str, timeout_ms: int) -> Exception | None:
    """``None`` when the Kafka at ``bootstrap`` answers a metadata request, else why not."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def probe() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
        await admin.start()
        try:
            await admin.list_topics()
        finally:
            await admin.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        return exc
    return None


@pytest.fixture(scope="session")
def _kafka_session() -> Iterator[str]:
    """The session's Apache Kafka: the one that answers, or one started here."""
    bootstrap = _kafka_bootstrap()
    if _kafka_answers(bootstrap, 3000) is None:
        yield bootstrap
        return
    if "AUTOPILOT_TEST_KAFKA" in os.environ:
        raise AssertionError(f"AUTOPILOT_TEST_KAFKA={bootstrap} does not answer")
    port = bootstrap.rsplit(":", 1)[1]
    env = {**os.environ, "KAFKA_PORT": port}
    started = subprocess.run([str(KAFKA_SCRIPT), "start"], env=env, capture_output=True,
                             text=True, timeout=300)
    assert started.returncode == 0, (
        f"could not start Apache Kafka on port {port} (scripts/apache-kafka.sh start):\n"
        + started.stdout + started.stderr)
    try:
        problem = _kafka_answers(bootstrap, 10000)
        assert problem is None, f"Apache Kafka at {bootstrap} does not answer: {problem!r}"
        yield bootstrap
    finally:
        subprocess.run([str(KAFKA_SCRIPT), "stop"], env=env, capture_output=True, timeout=120)


def _fresh_namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def broker(_kafka_session: str) -> Iterator[BrokerUnderTest]:
    b = BrokerUnderTest(_kafka_session, _fresh_namespace())
    try:
        yield b
    finally:
        b.delete_namespace_topics()


@pytest.fixture
def kafka(broker: BrokerUnderTest) -> BrokerUnderTest:
    """The test's broker, under the name the fault tests use."""
    return broker


@pytest.fixture(scope="session")
def _redis_session() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_server(_redis_session: RedisServer) -> RedisServer:
    _redis_session.flush()
    return _redis_session


class Worker:
    """One ``autopilot worker`` process (see module docstring)."""

    def __init__(self, env: dict[str, str], workdir: Path, name: str) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.env = {
            **{k: v for k, v in os.environ.items()
               if not k.startswith(("AUTOPILOT_", "SLACK_", "OLLAMA_", "REDIS_"))},
            "AUTOPILOT_DATADIR": str(workdir / f"{name}-data"),
            "AUTOPILOT_WEB_PORT": str(self.port),
            "AUTOPILOT_WEB_HOST": "127.0.0.1",
            "AUTOPILOT_CLOSE_CHECK_INTERVAL_S": "2",
            # Short notification timers; the lifecycle tests set their own.
            "AUTOPILOT_GROUP_WAIT_S": "1",
            "AUTOPILOT_GROUP_INTERVAL_S": "1",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.scheme = "https" if self.env.get("AUTOPILOT_WEB_SSL_CERTFILE") else "http"
        #: httpx ``verify`` for this worker (a TLS context for an HTTPS worker).
        self.verify: Any = client_tls_context(self.env) if self.scheme == "https" else True

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> Worker:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "autopilot", "worker", "-l", "info",
                 "--blocking-timeout", "10"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        return self

    def wait_ready(self, timeout_s: float = WORKER_READY_TIMEOUT_S) -> Worker:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=2,
                             verify=self.verify).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"worker not ready after {timeout_s} s:\n{self.log_tail()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=10, verify=self.verify)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", timeout=10, verify=self.verify, **kw)


def client_tls_context(env: dict[str, str]) -> ssl.SSLContext:
    """TLS context of a client of an HTTPS worker started with ``env``: trusts
    ``AUTOPILOT_WEB_SSL_CAFILE``; presents the worker's certificate when the worker asks
    for client certificates (``AUTOPILOT_WEB_SSL_CLIENT_AUTH``)."""
    context = ssl.create_default_context(cafile=env.get("AUTOPILOT_WEB_SSL_CAFILE"))
    if env.get("AUTOPILOT_WEB_SSL_CLIENT_AUTH", "none") != "none":
        context.load_cert_chain(env["AUTOPILOT_WEB_SSL_CERTFILE"],
                                env["AUTOPILOT_WEB_SSL_KEYFILE"])
    return context


@pytest.fixture
def start_worker(tmp_path: Path, broker: BrokerUnderTest) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def _start(env: dict[str, str] | None = None, name: str | None = None,
               wait: bool = True) -> Worker:
        w = Worker({**broker.worker_env(), **(env or {})}, tmp_path,
                   name or f"worker{len(workers)}")
        workers.append(w)
        w.start()
        return w.wait_ready() if wait else w

    yield _start
    for w in workers:
        w.stop()


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str,
             interval_s: float = 0.3) -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail with ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def assert_quiet_for(seconds: float, probe: Callable[[], Any], what: str,
                     interval_s: float = 0.3) -> Any:
    """Poll ``probe`` for ``seconds``; fail at once when its value changes.

    The contract: ``probe()`` is read once at the start, then every ``interval_s``
    until ``seconds`` have passed; the first value that differs (``!=``) from the
    start value fails with ``what``, both values and the time elapsed. Returns the
    (unchanged) value. Give a count to say "nothing more arrives" (``lambda:
    len(slack.requests)``), or a bool to say "a bound holds" (``lambda:
    len(slack.requests) <= 3``: it changes to ``False`` when the bound breaks).

    It replaces a fixed sleep that gives a wrongly re-sending component the chance to
    show itself: the pause stays as long, and a failure is reported as it happens.
    """
    start = time.monotonic()
    before = probe()
    deadline = start + seconds
    while True:
        now = time.monotonic()
        if now >= deadline:
            return before
        time.sleep(min(interval_s, deadline - now))
        value = probe()
        if value != before:
            raise AssertionError(
                f"{what} changed after {time.monotonic() - start:.1f} s of the "
                f"{seconds} s that should stay quiet: {before!r} -> {value!r}")


def produce(bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None:
    """Produce ``(key, value)`` records with aiokafka (acks=all)."""
    from aiokafka import AIOKafkaProducer

    async def run() -> None:
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await p.start()
        try:
            for key, value in records:
                await p.send(topic, value, key=key)
            await p.flush()
        finally:
            await p.stop()

    asyncio.run(run())


def consume_all(bootstrap: str, topic: str, timeout_s: float = 5.0) -> list[Any]:
    """Every record currently in ``topic`` (all partitions), as aiokafka records."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run() -> list[Any]:
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await c.start()
        try:
            parts = c.partitions_for_topic(topic)
            if not parts:
                await c._client.force_metadata_update()  # noqa: SLF001
                parts = c.partitions_for_topic(topic) or set()
            if not parts:
                return []
            tps = [TopicPartition(topic, p) for p in parts]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            end = await c.end_offsets(tps)
            out: list[Any] = []
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                positions = [await c.position(tp) for tp in tps]
                if all(pos >= end[tp] for pos, tp in zip(positions, tps, strict=True)):
                    break
                batch = await c.getmany(timeout_ms=300)
                for recs in batch.values():
                    out.extend(recs)
            return out
        finally:
            await c.stop()

    return asyncio.run(run())


def metric_series(service: str, normal: int, spikes: int, start: float = 1_700_000_000.0,
                  step_s: float = 15.0, spike_value: float = 1500.0) -> list[dict[str, Any]]:
    """``normal`` samples around 100 (deterministic ±5 pattern), then ``spikes`` spikes."""
    pattern = [100.0, 104.0, 96.0, 102.0, 98.0, 105.0, 95.0, 101.0, 99.0, 100.0]
    out = [metric(service, pattern[i % len(pattern)], start + i * step_s) for i in range(normal)]
    out += [metric(service, spike_value, start + (normal + j) * step_s) for j in range(spikes)]
    return out


#: Normal samples that take a series past the adaptive detector's likelihood warm-up
#: (100 scored samples after 10 learned), where a high anomaly can alert.
WARM = 150


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``llm`` (a real Ollama: ``make test-llm``) run only when ``-m`` names
    ``llm`` or their file is named on the command line; a plain ``pytest`` (``make
    test``) leaves them out, so they run once, in ``make test-llm``."""
    if "llm" in (config.option.markexpr or ""):
        return
    named = {Path(str(arg).split("::", 1)[0]).resolve() for arg in config.args}
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        if item.get_closest_marker("llm") and item.path.resolve() not in named:
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def high_shift(service: str, start: float = 1_700_000_000.0,
               step_s: float = 15.0) -> list[dict[str, Any]]:
    """``WARM`` normal samples, then three at 100 + 3.7 × 3.2 (a shift of about 3.4 σ).

    The third alerts with severity *high* (3 < |z| ≤ 4) through the anomaly
    likelihood; a high anomaly alone opens no incident, so it tests the deployment
    rule. (During the warm-up only |z| > ``AUTOPILOT_WARMUP_Z`` alerts.)
    """
    out = metric_series(service, normal=WARM, spikes=0, start=start, step_s=step_s)
    out += [metric(service, 100.0 + 3.7 * 3.2, start + (WARM + j) * step_s) for j in range(3)]
    return out


def as_bytes(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def kcat() -> str:
    """The project's ``scripts/kcat`` (Debian's kcat with a current librdkafka).

    Fails (never skips) when kcat is missing.
    """
    if shutil.which("kcat") is None:
        raise AssertionError("kcat is not installed: `make test` installs it (Debian package)")
    return str(Path(__file__).resolve().parents[2] / "scripts" / "kcat")
