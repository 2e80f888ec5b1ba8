"""Alertmanager-compatible silences against real workers, driven by the real ``amtool``
(Debian's ``prometheus-alertmanager``): add, query (text and JSON) and expire; a
silenced incident posts nothing to the Slack stand-in and pages once the silence is
expired; two workers: a silence created on one mutes incidents owned by the other."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import (
    BrokerUnderTest,
    Worker,
    as_bytes,
    assert_quiet_for,
    free_port,
    metric_series,
    produce,
    wait_for,
)
from tests.standins import SlackWebhookServer

pytestmark = pytest.mark.integration

KEY = "silence-test-key-0123456789abcdef"


def amtool(worker: Worker, *args: str, config: Path | None = None,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("amtool")
    assert exe, "amtool missing: apt-get install prometheus-alertmanager"
    cmd = [exe, f"--alertmanager.url={worker.url}"]
    if config is not None:
        cmd.append(f"--http.config.file={config}")
    done = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=30)
    if check:
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def messages_for(slack: SlackWebhookServer, service: str) -> list[dict[str, Any]]:
    return [r for r in slack.requests if f'{service}' in json.dumps(r)]


def fail(broker: BrokerUnderTest, *services: str, start: float = 1_700_000_000.0) -> None:
    produce(broker.bootstrap, broker.topic("autopilot.metrics"),
            [(s.encode(), as_bytes(metric_series(s, normal=12, spikes=1, start=start)))
             for s in services])


def notices(worker: Worker, service: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    r = httpx.get(f"{worker.url}/incidents/{service}", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    return list(r.json()["notifications"].values())


def test_amtool_add_query_expire_and_a_silenced_incident_posts_nothing(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    config = tmp_path / "amtool-http.yml"
    config.write_text(f"authorization:\n  type: Bearer\n  credentials: {KEY}\n")
    auth = {"Authorization": f"Bearer {KEY}"}
    with SlackWebhookServer() as slack:
        worker = start_worker({"SLACK_WEBHOOK_URL": slack.url, "AUTOPILOT_API_KEYS": KEY,
                               "OLLAMA_URL": f"http://127.0.0.1:{free_port()}",
                               "OLLAMA_TIMEOUT_S": "2"})
        # the API keys apply: amtool without the token is refused
        refused = amtool(worker, "silence", "query", check=False)
        assert refused.returncode != 0

        added = amtool(worker, "silence", "add", "service=cart-api", "-d", "1h",
                       "-c", "migration", config=config)
        sid = added.stdout.strip()
        assert len(sid) == 36, added.stdout
        listed = amtool(worker, "silence", "query", config=config).stdout
        assert sid in listed and "migration" in listed and 'service="cart-api"' in listed
        (got,) = json.loads(amtool(worker, "silence", "query", "-o", "json",
                                   config=config).stdout)
        assert got["id"] == sid and got["status"]["state"] == "active"
        assert got["matchers"] == [{"name": "service", "value": "cart-api",
                                    "isRegex": False, "isEqual": True}]
        assert amtool(worker, "silence", "query", "-q", "service=other",
                      config=config).stdout.strip() == ""
        assert slack.requests == [], "creating a silence posted to Slack"

        # cart-api (silenced) and web-api (not) fail together: only web-api pages.
        fail(broker, "cart-api", "web-api")
        wait_for(lambda: messages_for(slack, "web-api"), 60, "web-api's alert")
        wait_for(lambda: any(n["silenced_by"] == [sid] for n in
                             notices(worker, "cart-api", auth)), 30,
                 "the incident view saying cart-api's incident is silenced")
        assert_quiet_for(3, lambda: len(messages_for(slack, "cart-api")), "cart-api posts")
        assert messages_for(slack, "cart-api") == []
        metrics_text = httpx.get(f"{worker.url}/metrics", headers=auth, timeout=10).text
        assert 'autopilot_notifications_silenced_total{severity="critical"} 1.0' in (
            metrics_text), [ln for ln in metrics_text.splitlines() if "silenced" in ln]
        before_expiry = len(slack.requests)

        amtool(worker, "silence", "expire", sid, config=config)
        assert amtool(worker, "silence", "query", "-q", config=config).stdout.strip() == ""
        expired = json.loads(amtool(worker, "silence", "query", "--expired", "-o", "json",
                                    config=config).stdout)
        assert [(s["id"], s["status"]["state"]) for s in expired] == [(sid, "expired")]
        # the still-firing incident pages now that the silence is gone
        wait_for(lambda: messages_for(slack, "cart-api"), 30, "cart-api's alert after expiry")
        (notice,) = notices(worker, "cart-api", auth)
        assert notice["silenced"] is False and notice["silenced_ever"] == [sid]
        assert len(slack.requests) > before_expiry


def test_a_silence_created_on_one_worker_mutes_incidents_owned_by_the_other(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker]
) -> None:
    with SlackWebhookServer() as slack:
        env = {"SLACK_WEBHOOK_URL": slack.url, "AUTOPILOT_PARTITIONS": "4",
               "OLLAMA_URL": f"http://127.0.0.1:{free_port()}", "OLLAMA_TIMEOUT_S": "2"}
        w1 = start_worker(env, name="w1")
        w2 = start_worker(env, name="w2")
        wait_for(lambda: w1.get("/ready").status_code == 200
                 and w2.get("/ready").status_code == 200, 60, "both workers ready")
        sid = amtool(w1, "silence", "add", "service=~muted-.*", "-d", "1h",
                     "-c", "maintenance").stdout.strip()
        # w2's copy of the global table has it (amtool against w2)
        wait_for(lambda: sid in amtool(w2, "silence", "query", "-q").stdout, 20,
                 "the silence visible on w2")
        muted = [f"muted-{i}" for i in range(8)]
        loud = [f"loud-{i}" for i in range(8)]
        fail(broker, *muted, *loud)
        wait_for(lambda: all(messages_for(slack, s) for s in loud), 90, "every loud alert")
        # both workers owned muted services and held their notifications back
        wait_for(lambda: "notification silenced by " + sid in w1.log_text()
                 and "notification silenced by " + sid in w2.log_text(), 30,
                 "both workers silencing")
        assert_quiet_for(3, lambda: len(slack.requests), "Slack requests")
        assert not any(messages_for(slack, s) for s in muted)

        # the silence survives: a new worker with an empty data directory reads it back
        # from the changelog
        w3 = start_worker(env, name="w3")
        wait_for(lambda: sid in amtool(w3, "silence", "query", "-q").stdout, 30,
                 "the silence recovered by a fresh worker")
