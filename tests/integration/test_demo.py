"""`autopilot demo` end to end, with its Slack alerts going to a local webhook server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.standins import SlackWebhookServer, free_port

pytestmark = pytest.mark.integration


def test_demo_finds_an_incident_inside_a_labelled_window_and_alerts_slack(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    autopilot = Path(sys.executable).with_name("autopilot")
    with SlackWebhookServer() as slack:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AUTOPILOT_", "SLACK_", "OLLAMA_", "REDIS_"))}
        env.update({
            "SLACK_WEBHOOK_URL": slack.url,
            "OLLAMA_URL": f"http://127.0.0.1:{free_port()}",  # no model here: rules
        })
        # No AUTOPILOT_BROKER: the demo starts and stops its own Apache Kafka, as
        # `make demo` does on a fresh machine.
        done = subprocess.run([str(autopilot), "demo"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "Summary" in done.stdout
        assert "INCIDENT OPENED" in done.stdout

        summary = json.loads((tmp_path / "demo-summary.json").read_text())
        assert summary["samples"] == 4032
        assert any(w["hit"] for w in summary["windows"]), summary["windows"]
        assert {"id", "service", "opened_at", "severity"} <= set(summary["incidents"][0])

        # What Slack got is what the notifier says it sent, per incident (an analysis
        # of a re-opened incident may ride on a message already sent: the webhook cap).
        sent = sum(row["slack_messages"] for row in summary["incidents"])
        assert len(slack.requests) == sent >= len(summary["incidents"]), summary["incidents"]
        assert summary["alerts"] >= 1
        payloads = [json.dumps(r) for r in slack.requests]
        assert all("checkout-api" in p for p in payloads)
        assert all(r["blocks"][0]["type"] == "header" for r in slack.requests)
        assert any("CRITICAL" in r["blocks"][0]["text"]["text"] for r in slack.requests)
        # The secret webhook URL never shows in what the demo prints.
        assert slack.url not in done.stdout + done.stderr
