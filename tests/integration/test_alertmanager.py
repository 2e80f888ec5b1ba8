"""Real Prometheus and Alertmanager (Debian's ``prometheus``, ``prometheus-alertmanager``
0.25 and ``amtool``) send alerts to a real worker: Prometheus evaluates a rule on a
gauge the test serves, Alertmanager delivers the webhook, the worker opens the
incident and alerts the Slack stand-in with the alertname and summary; when the gauge
drops, the resolved notification resolves the incident's alert signal."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from autopilot.alertmanager import fingerprint
from tests.integration.conftest import Worker, wait_for
from tests.standins import SlackWebhookServer, free_port

pytestmark = pytest.mark.integration

KEY = "test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError(f"{names[0]} is not installed: `make test-deps` installs it (Debian)")


@contextmanager
def _process(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _incident(worker: Worker, service: str) -> dict[str, Any] | None:
    try:
        r = httpx.get(f"{worker.url}/incidents/{service}", headers=AUTH, timeout=10)
    except httpx.HTTPError:
        return None
    return r.json().get("open_incident") if r.status_code == 200 else None


def _text(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False)


def test_prometheus_rule_through_alertmanager_opens_and_resolves_an_incident(
    tmp_path: Path, start_worker: Callable[..., Worker]
) -> None:
    prometheus = _binary("prometheus")
    alertmanager = _binary("prometheus-alertmanager", "alertmanager")
    registry = CollectorRegistry()
    gauge = Gauge("test_gauge", "what the test controls", registry=registry)
    gauge.set(1.0)
    target_port = free_port()
    server, thread = start_http_server(target_port, addr="127.0.0.1", registry=registry)
    (tmp_path / "key").write_text(KEY)
    am_port, prom_port = free_port(), free_port()
    with SlackWebhookServer() as slack:
        worker = start_worker({
            "AUTOPILOT_API_KEYS": KEY,
            "SLACK_WEBHOOK_URL": slack.url,
            "OLLAMA_URL": f"http://127.0.0.1:{free_port()}",  # nothing: rule-based analysis
        })
        (tmp_path / "alertmanager.yml").write_text(f"""
route:
  receiver: autopilot
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: autopilot
    webhook_configs:
      - url: {worker.url}/api/v1/alerts/alertmanager
        send_resolved: true
        http_config:
          authorization:
            credentials_file: {tmp_path / "key"}
""")
        (tmp_path / "rules.yml").write_text("""
groups:
  - name: test
    interval: 1s
    rules:
      - alert: TestGaugeHigh
        expr: test_gauge > 0.5
        for: 0s
        labels:
          severity: critical
          service: gauge-svc
        annotations:
          summary: test gauge above 0.5
          description: the gauge the integration test controls went up
""")
        (tmp_path / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [{tmp_path / "rules.yml"}]
scrape_configs:
  - job_name: gauge
    static_configs:
      - targets: ["127.0.0.1:{target_port}"]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:{am_port}"]
""")
        am_args = [
            alertmanager, f"--config.file={tmp_path / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=",
        ]
        prom_args = [
            prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}", "--rules.alert.resend-delay=1s",
        ]
        try:
            with _process(am_args, tmp_path / "alertmanager.log"), \
                    _process(prom_args, tmp_path / "prometheus.log"):
                opened = wait_for(
                    lambda: [m for m in slack.requests if "TestGaugeHigh" in _text(m)], 120,
                    "the Slack message naming the alert")
                assert "test gauge above 0.5" in _text(opened[0])
                assert "gauge-svc" in _text(opened[0])
                inc = wait_for(lambda: _incident(worker, "gauge-svc"), 30, "the incident")
                assert inc["state"] == "firing"
                (sig,) = inc["signals"]
                assert sig["kind"] == "alert" and sig["metric_name"] == "TestGaugeHigh"
                # Alertmanager's fingerprint is the one the autopilot computes for /api/v2.
                state = httpx.get(f"{worker.url}/incidents/gauge-svc", headers=AUTH,
                                  timeout=10).json()
                sent = state["open_incident"]["anomalies"][0]
                assert sent["alert"]["fingerprint"] == fingerprint(sent["labels"])
                assert sig["series"] == f"gauge-svc|alert|{sent['alert']['fingerprint']}"

                gauge.set(0.0)
                resolved = wait_for(
                    lambda: (i := _incident(worker, "gauge-svc")) and i["state"] == "resolved"
                    and i, 90, "the resolved notification resolving the incident")
                assert resolved["resolution"] == "recovered"
                assert [s["state"] for s in resolved["signals"]] == ["resolved"]
                wait_for(lambda: any("RESOLVED" in _text(m) for m in slack.requests), 60,
                         "the resolved Slack message")
        finally:
            server.shutdown()
            thread.join(5)


def test_amtool_posts_alerts_to_the_api_v2_and_bad_alerts_are_named(
    tmp_path: Path, start_worker: Callable[..., Worker]
) -> None:
    amtool = _binary("amtool")
    worker = start_worker({"AUTOPILOT_API_KEYS": KEY})
    (tmp_path / "http.yml").write_text(f"authorization:\n  credentials: {KEY}\n")

    def add(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [amtool, f"--alertmanager.url={worker.url}", "--no-version-check",
             f"--http.config.file={tmp_path / 'http.yml'}", "alert", "add", *args],
            capture_output=True, text=True, timeout=30, check=False)

    labels = ["alertname=CartDown", "service=cart", "severity=critical"]
    done = add(*labels, "--annotation=summary=cart is down")
    assert done.returncode == 0, done.stderr
    inc = wait_for(lambda: _incident(worker, "cart"), 60, "the incident from amtool's alert")
    assert inc["state"] == "firing" and inc["trigger_reason"].startswith("critical alert")
    expected = fingerprint(dict(label.split("=", 1) for label in labels))
    assert inc["signals"][0]["series"] == f"cart|alert|{expected}"

    ended = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert add(*labels, f"--end={ended}").returncode == 0
    wait_for(lambda: (i := _incident(worker, "cart")) and i["state"] == "resolved", 60,
             "the resolved alert resolving the incident")

    # Without the key: 401; an alert naming no service: named, the valid rest kept.
    assert httpx.post(f"{worker.url}/api/v2/alerts", json=[], timeout=10).status_code == 401
    r = httpx.post(f"{worker.url}/api/v2/alerts", headers=AUTH, timeout=10, json=[
        {"labels": {"alertname": "NoService"}},
        {"labels": {"alertname": "Ok", "service": "other"}},
    ])
    assert r.status_code == 200, r.text  # Alertmanager's own answer
    body = r.json()
    assert body["accepted"] == 1
    assert body["rejected"][0]["item"] == 0
    assert "labels name no service" in body["rejected"][0]["reason"]
    r = httpx.post(f"{worker.url}/api/v1/alerts/alertmanager", headers=AUTH, timeout=10,
                   json={"version": "3", "groupKey": "x", "status": "firing", "alerts": []})
    assert r.status_code == 400 and "version" in r.json()["error"], r.text
    r = httpx.post(f"{worker.url}/api/v1/alerts/alertmanager", headers=AUTH, timeout=10,
                   json={"version": "4", "groupKey": "x", "status": "firing",
                         "alerts": [{"status": "firing", "labels": {"alertname": "A"}}]})
    assert r.status_code == 422 and "no service" in r.json()["error"], r.text
