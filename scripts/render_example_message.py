#!/usr/bin/env python3
"""Regenerate ``docs/incident-message-example.json``: a resolved incident's root message.

Builds a realistic :class:`~autopilot.models.Alert` (a deployment that slowed the
payment path of ``checkout-api``, its error lines, the LLM's analysis, recovery after
rollback) and renders it with :func:`autopilot.blockkit.render_incident`, the function
the notifier uses for the root message. Paste the JSON into Slack's Block Kit Builder
(https://app.slack.com/block-kit-builder) to see it; this script also prints the
builder URL (``https://app.slack.com/block-kit-builder/#<url-encoded JSON>``).

Usage: ``.venv/bin/python scripts/render_example_message.py [--out PATH] [--url]``
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from autopilot.blockkit import render_incident
from autopilot.models import (
    Alert,
    Analysis,
    Anomaly,
    DeploymentEvent,
    Incident,
    LogEntry,
    RecommendedAction,
    RootCause,
    Severity,
    Signal,
    TimelineEntry,
)

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "docs" / "incident-message-example.json"
T0 = datetime(2025, 3, 14, 14, 5, 0, tzinfo=UTC)


def example_alert() -> Alert:
    """The resolved example incident and its LLM analysis (fixed times, event time)."""
    service = "checkout-api"
    deploy_at = T0 - timedelta(minutes=3)
    resolved_at = T0 + timedelta(minutes=18)
    latency = Signal(
        series=f"{service}|http_request_duration_p99_ms|route=/v1/payments",
        metric_name="http_request_duration_p99_ms",
        state="resolved",
        severity=Severity.CRITICAL,
        first_at=T0,
        last_at=resolved_at,
        resolved_at=resolved_at,
        last_value=2140.0,
        baseline_mean=212.0,
        z_score=41.7,
    )
    errors = Signal(
        series=f"{service}|error_rate|",
        kind="error_rate",
        metric_name="error_rate",
        state="resolved",
        severity=Severity.HIGH,
        first_at=T0 + timedelta(seconds=20),
        last_at=resolved_at - timedelta(minutes=1),
        resolved_at=resolved_at - timedelta(minutes=1),
        last_value=37.0,
        baseline_mean=1.4,
        z_score=3.8,
    )
    anomaly = Anomaly(
        metric_name="http_request_duration_p99_ms",
        service=service,
        series=latency.series,
        current_value=2140.0,
        baseline_mean=212.0,
        baseline_std_dev=46.2,
        z_score=41.7,
        deviation_percent=909.4,
        severity=Severity.CRITICAL,
        detected_at=T0,
        labels={"route": "/v1/payments"},
    )
    error_lines = [
        LogEntry(
            timestamp=T0 + timedelta(seconds=s),
            level="ERROR",
            message=(
                f"POST /v1/payments 504: payment-gateway timeout after 5000 ms "
                f"(order=ord-{9100 + s}, pool=pg-payments 50/50 in use)"
            ),
            service=service,
        )
        for s in (4, 11, 19, 26, 33, 41)
    ]
    deployment = DeploymentEvent(
        timestamp=deploy_at,
        service=service,
        version="v2.4.0",
        status="success",
        metadata={"commit": "9f3c2e1", "author": "ci"},
    )
    rollback = DeploymentEvent(
        timestamp=T0 + timedelta(minutes=12), service=service, version="v2.3.9", status="success"
    )
    timeline = [
        TimelineEntry(
            at=T0,
            kind="opened",
            text="critical anomaly on http_request_duration_p99_ms (z +41.70)",
            severity=Severity.CRITICAL,
        ),
        TimelineEntry(
            at=T0 + timedelta(seconds=20),
            kind="signal",
            text="error rate fired: 37 errors/min vs baseline 1.4",
            severity=Severity.HIGH,
        ),
        TimelineEntry(at=rollback.timestamp, kind="deployment", text="deployed v2.3.9 (success)"),
        TimelineEntry(
            at=resolved_at - timedelta(minutes=1),
            kind="signal_resolved",
            text="error rate recovered",
        ),
        TimelineEntry(at=resolved_at, kind="resolved", text="all signals recovered"),
    ]
    incident = Incident(
        id="inc-3fa9c81b2d70",
        service=service,
        status="resolved",
        state="resolved",
        revision=6,
        notify=True,
        severity=Severity.CRITICAL,
        trigger_reason="critical anomaly on http_request_duration_p99_ms",
        opened_at=T0,
        updated_at=resolved_at,
        closed_at=resolved_at,
        resolution="recovered",
        anomalies=[anomaly],
        signals=[latency, errors],
        timeline=timeline,
        recent_errors=error_lines,
        recent_deployments=[deployment, rollback],
    )
    analysis = Analysis(
        root_cause=RootCause(
            description=(
                "Deployment v2.4.0 of checkout-api exhausted the pg-payments connection "
                "pool: payment calls queue and time out at the gateway."
            ),
            confidence=84,
            reasoning=(
                "p99 latency on /v1/payments rose 3 minutes after v2.4.0 was deployed; the "
                "error lines are gateway timeouts with the pool at 50/50; both recovered "
                "after the rollback to v2.3.9."
            ),
        ),
        recommended_actions=[
            RecommendedAction(
                action="Keep checkout-api on v2.3.9 until the pool change in v2.4.0 is fixed",
                reasoning="The rollback restored latency and the error rate.",
                risk="low",
                priority=1,
            ),
            RecommendedAction(
                action="Review the connection-pool settings changed in v2.4.0 (commit 9f3c2e1)",
                reasoning="The pool was saturated while the incident fired.",
                risk="low",
                priority=2,
            ),
        ],
        severity=Severity.CRITICAL,
        estimated_customer_impact=(
            "About 1 in 4 payments failed or took over 2 s for 18 minutes."
        ),
        source="llm",
        model="llama3:latest",
    )
    return Alert(incident=incident, analysis=analysis)


def builder_url(message: dict[str, object]) -> str:
    """Slack Block Kit Builder URL: ``https://app.slack.com/block-kit-builder/#`` + JSON."""
    body = {"blocks": message["blocks"], "attachments": message["attachments"]}
    return "https://app.slack.com/block-kit-builder/#" + quote(
        json.dumps(body, ensure_ascii=False, separators=(",", ":")), safe=""
    )


def main(argv: list[str] | None = None) -> int:
    """Write the example JSON (``--out``); with ``--url`` print the builder URL."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to write")
    parser.add_argument("--url", action="store_true", help="print the Block Kit Builder URL")
    args = parser.parse_args(argv)
    message = render_incident(example_alert(), analysis_pending=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(message, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    if args.url:
        url = builder_url(message)
        print(f"Block Kit Builder URL ({len(url)} characters):\n{url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
