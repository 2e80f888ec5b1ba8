"""The worker's port serves HTTPS itself: real TLS clients (curl, Prometheus'
remote_write, httpx) against a CA made for the run; probes and table views forwarded
between workers work over HTTPS, also when client certificates are required."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.factories import metric
from tests.integration.conftest import BrokerUnderTest, Worker, wait_for
from tests.standins import free_port
from tests.tls import CertificateAuthority

pytestmark = pytest.mark.integration

T0 = 1_764_410_400  # 2025-11-29T10:00:00Z


def curl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``curl -sS`` printing the HTTP status last; exit status as curl gives it."""
    exe = shutil.which("curl")
    assert exe, "curl is not installed"
    return subprocess.run([exe, "-sS", "--max-time", "10", "-o", "/dev/null",
                           "-w", "%{http_code}", *map(str, args)],
                          capture_output=True, text=True, timeout=30, check=False)


def https_env(ca: CertificateAuthority, name: str, client_auth: str = "none") -> dict[str, str]:
    cert, key = ca.issue(name)
    return {"AUTOPILOT_WEB_SSL_CERTFILE": str(cert), "AUTOPILOT_WEB_SSL_KEYFILE": str(key),
            "AUTOPILOT_WEB_SSL_CAFILE": str(ca.cert_path),
            "AUTOPILOT_WEB_SSL_CLIENT_AUTH": client_auth}


def test_https_port_answers_curl_and_prometheus_remote_write_with_a_per_run_ca(
    tmp_path: Path, broker: BrokerUnderTest, start_worker: Callable[..., Worker]
) -> None:
    ca = CertificateAuthority(tmp_path / "ca")
    # start_worker waits for /health over HTTPS, trusting only this CA.
    worker = start_worker(https_env(ca, "worker"))
    assert worker.url.startswith("https://")
    base = f"https://127.0.0.1:{worker.port}"

    ok = curl("--cacert", ca.cert_path, f"{base}/health")
    assert ok.returncode == 0 and ok.stdout == "200", ok.stderr
    untrusted = curl(f"{base}/health")  # the system CAs do not know the run's CA
    assert untrusted.returncode == 60, untrusted  # CURLE_PEER_FAILED_VERIFICATION
    plain = curl(f"http://127.0.0.1:{worker.port}/health")  # no plain HTTP on the port
    assert plain.returncode != 0 or plain.stdout != "200", plain
    posted = curl("--cacert", ca.cert_path, "-H", "Content-Type: application/json",
                  "--data", f'{{"timestamp": {T0}, "metric_name": "latency_ms", "value": 5, '
                  '"labels": {"service": "tlscurl"}}', f"{base}/ingest/metrics")
    assert posted.stdout == "202", posted

    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus is not installed: `make test` installs it (Debian package)"
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:{port}"]
remote_write:
  - url: {base}/api/v1/write
    tls_config:
      ca_file: {ca.cert_path}
    queue_config:
      batch_send_deadline: 1s
""")
    with open(tmp_path / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [prometheus, f"--config.file={config}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        def prometheus_series() -> bool:
            r = worker.get("/baselines/prometheus")
            return r.status_code == 200 and any(
                k.startswith("prometheus|up|") for k in r.json()["series"])

        wait_for(prometheus_series, 90, "Prometheus' own series over HTTPS remote_write")
        wait_for(lambda: worker.get("/baselines/tlscurl").json()["series"], 30,
                 "the sample curl posted")
    finally:
        proc.terminate()
        proc.wait(30)
    assert "x509" not in (tmp_path / "prometheus.log").read_text(errors="replace")


def test_two_https_workers_requiring_client_certificates_forward_views_to_the_owner(
    tmp_path: Path, broker: BrokerUnderTest, start_worker: Callable[..., Worker]
) -> None:
    ca = CertificateAuthority(tmp_path / "ca")
    common = {"AUTOPILOT_PARTITIONS": "4"}
    w1 = start_worker({**common, **https_env(ca, "w1", "required")}, name="w1")
    w2 = start_worker({**common, **https_env(ca, "w2", "required")}, name="w2")
    wait_for(lambda: w1.get("/ready").status_code == 200
             and w2.get("/ready").status_code == 200, 60, "both workers ready")

    base = f"https://127.0.0.1:{w1.port}"
    anonymous = curl("--cacert", ca.cert_path, f"{base}/health")
    assert anonymous.returncode != 0 and anonymous.stdout != "200", anonymous
    client_cert, client_key = ca.issue("operator", hosts=(), usages="clientAuth")
    other_ca = CertificateAuthority(tmp_path / "other-ca", name="not trusted")
    stranger_cert, stranger_key = other_ca.issue("stranger", hosts=(), usages="clientAuth")
    stranger = curl("--cacert", ca.cert_path, "--cert", stranger_cert, "--key", stranger_key,
                    f"{base}/health")
    assert stranger.returncode != 0 and stranger.stdout != "200", stranger
    ok = curl("--cacert", ca.cert_path, "--cert", client_cert, "--key", client_key,
              f"{base}/health")
    assert ok.stdout == "200", ok

    services = [f"tls-{i}" for i in range(8)]
    for i, svc in enumerate(services):
        r = (w1, w2)[i % 2].post("/ingest/metrics", json=metric(svc, float(i), T0))
        assert r.status_code == 202, r.text

    def answered_by_both() -> bool:
        for svc in services:
            for w in (w1, w2):
                r = w.get(f"/baselines/{svc}")
                if r.status_code != 200 or not r.json()["series"]:
                    return False
        return True

    # Each worker owns about half of the services; the other half is forwarded over
    # HTTPS with the worker's own client certificate.
    wait_for(answered_by_both, 120, "every service's baselines from both workers")
    for w in (w1, w2):
        assert "CERTIFICATE_VERIFY_FAILED" not in w.log_text()
        assert "SSLError" not in w.log_text()
