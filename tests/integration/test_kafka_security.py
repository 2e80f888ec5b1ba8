"""Kafka security for real: a worker over SASL_SSL (SCRAM-SHA-512) and over mutual TLS
against Apache Kafka started by ``scripts/apache-kafka.sh`` with ``KAFKA_SECURE=1``
(certificates made for the run), and wrong credentials stop the worker with one clear
line instead of a traceback.

The secure Kafka is one extra broker for this module (on a port above 55535, which also
proves the controller port no longer overflows), so these tests carry the ``kafka``
marker and run in ``make test``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.factories import metric
from tests.integration.conftest import KAFKA_SCRIPT, REPO, Worker, wait_for

pytestmark = pytest.mark.integration

T0 = 1_764_410_400


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _secure_ports() -> int:
    """A client port above 55535 whose +1, +2 (TLS, SASL_SSL) and -10000 (controller)
    neighbours are free too."""
    for port in range(55600 + os.getpid() % 9000, 65500, 7):
        if all(_free(p) for p in (port, port + 1, port + 2, port - 10000)):
            return port
    raise AssertionError("no free ports for the secure Kafka")


def _script(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KAFKA_SCRIPT), *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=240, check=False)


def _read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


class SecureKafka:
    """The broker's listeners and the worker settings the script wrote for each."""

    def __init__(self, tls_dir: Path) -> None:
        self.tls_dir = tls_dir
        self.sasl = _read_env(tls_dir / "sasl.env")
        self.mtls = _read_env(tls_dir / "mtls.env")


@pytest.fixture(scope="module")
def secure_kafka() -> Iterator[SecureKafka]:
    port = _secure_ports()
    env = {"KAFKA_PORT": str(port), "KAFKA_SECURE": "1"}
    _script(env, "clean")
    started = _script(env, "start")
    run = Path(os.environ.get("KAFKA_HOME_DIR", REPO / ".cache" / "kafka")) / f"run-{port}"
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        # The client port is above 55535: the controller moved below it (+10000 overflows).
        properties = (run / "server.properties").read_text()
        assert f"CONTROLLER://127.0.0.1:{port - 10000}" in properties
        yield SecureKafka(run / "tls")
    finally:
        _script(env, "clean")


def _worker(tmp_path: Path, env: dict[str, str], name: str) -> Worker:
    return Worker({"AUTOPILOT_APP_ID": f"sec{uuid.uuid4().hex[:8]}",
                   "AUTOPILOT_PARTITIONS": "2", **env}, tmp_path, name).start()


def _flows_through_kafka(worker: Worker, service: str) -> None:
    """HTTP ingest → Kafka (the worker's producer) → the metrics agent → baselines."""
    worker.wait_ready()
    for i in range(3):
        r = worker.post("/ingest/metrics", json=metric(service, 100.0 + i, T0 + 15 * i))
        assert r.status_code == 202, r.text
    wait_for(lambda: worker.get(f"/baselines/{service}").json()["series"]
             .get(f"{service}|latency_ms|", {}).get("samples_seen") == 3,
             60, "3 samples through the secure broker")


@pytest.mark.kafka
def test_worker_runs_over_sasl_ssl_scram_sha_512_with_the_password_from_a_file(
    tmp_path: Path, secure_kafka: SecureKafka
) -> None:
    env = secure_kafka.sasl
    assert env["AUTOPILOT_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert "AUTOPILOT_KAFKA_SASL_PASSWORD_FILE" in env  # Docker/Kubernetes secrets style
    worker = _worker(tmp_path, env, "sasl")
    try:
        _flows_through_kafka(worker, "saslsvc")
    finally:
        worker.stop()
    password = Path(env["AUTOPILOT_KAFKA_SASL_PASSWORD_FILE"]).read_text()
    assert password not in worker.log_text()


@pytest.mark.kafka
def test_worker_runs_over_mutual_tls(tmp_path: Path, secure_kafka: SecureKafka) -> None:
    env = secure_kafka.mtls
    assert env["AUTOPILOT_KAFKA_SECURITY_PROTOCOL"] == "SSL"
    worker = _worker(tmp_path, env, "mtls")
    try:
        _flows_through_kafka(worker, "mtlssvc")
    finally:
        worker.stop()


@pytest.mark.kafka
@pytest.mark.parametrize(("case", "expected"), [
    ("wrong password", "refused the credentials of user 'autopilot' (SCRAM-SHA-512)"),
    ("no client certificate", "requires a client certificate"),
    ("untrusted broker", "TLS certificate is not trusted"),
])
def test_wrong_credentials_stop_the_worker_with_one_clear_line(
    tmp_path: Path, secure_kafka: SecureKafka, case: str, expected: str
) -> None:
    if case == "wrong password":
        wrong = tmp_path / "password"
        wrong.write_text("not-the-password\n")
        env = {**secure_kafka.sasl, "AUTOPILOT_KAFKA_SASL_PASSWORD_FILE": str(wrong)}
    elif case == "no client certificate":
        env = {k: v for k, v in secure_kafka.mtls.items()
               if k not in ("AUTOPILOT_KAFKA_SSL_CERTFILE", "AUTOPILOT_KAFKA_SSL_KEYFILE")}
    else:
        env = {k: v for k, v in secure_kafka.sasl.items() if k != "AUTOPILOT_KAFKA_SSL_CAFILE"}
    worker = _worker(tmp_path, env, "refused")
    assert worker.proc is not None
    try:
        code = worker.proc.wait(60)
    finally:
        worker.stop()
    log = worker.log_text()
    assert code == 2, log
    assert expected in log, log
    assert "Traceback" not in log and "Unable to bootstrap" not in log, log
    assert "not-the-password" not in log


def test_kafka_script_refuses_a_port_out_of_range_with_a_clear_error() -> None:
    done = _script({"KAFKA_PORT": "70000"}, "status")
    assert done.returncode == 2
    assert "KAFKA_PORT=70000 is not a TCP port (1..65535)" in done.stderr
