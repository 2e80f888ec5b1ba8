"""Unit tests of autopilot.blockkit: Slack Block Kit and console rendering of alerts."""

from __future__ import annotations

import ast
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import autopilot.analysis
import autopilot.blockkit
from autopilot.blockkit import (
    BLOCKS_MAX,
    FALLBACK_TEXT_CHARS,
    HEADER_TEXT_MAX,
    SECTION_TEXT_MAX,
    escape_mrkdwn,
    render_alert,
    render_console,
    truncate,
)
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
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def anomaly(metric: str = "http_latency_p99_ms", z: float = 37.5) -> Anomaly:
    return Anomaly(
        metric_name=metric,
        service="checkout",
        current_value=950.0,
        baseline_mean=200.0,
        baseline_std_dev=20.0,
        z_score=z,
        deviation_percent=375.0,
        severity=Severity.CRITICAL,
        detected_at=T0,
    )


def make_alert(
    *,
    severity: Severity = Severity.CRITICAL,
    service: str = "checkout",
    anomalies: list[Anomaly] | None = None,
    errors: list[LogEntry] | None = None,
    deployments: list[DeploymentEvent] | None = None,
    actions: list[RecommendedAction] | None = None,
    description: str = "Deployment v2.4.0 introduced a slow query",
    reasoning: str = "Latency rose 5 minutes after the deployment.",
    impact: str = "Slow checkout for most users",
    trigger: str = "critical anomaly on http_latency_p99_ms",
) -> Alert:
    incident = Incident(
        id="inc-checkout-1",
        service=service,
        status="opened",
        revision=2,
        notify=True,
        severity=severity,
        trigger_reason=trigger,
        opened_at=T0,
        updated_at=T0 + timedelta(minutes=1),
        anomalies=[anomaly()] if anomalies is None else anomalies,
        recent_errors=errors or [],
        recent_deployments=(
            [
                DeploymentEvent(
                    timestamp=T0 - timedelta(minutes=5), service=service, version="v2.4.0"
                )
            ]
            if deployments is None
            else deployments
        ),
    )
    analysis = Analysis(
        root_cause=RootCause(description=description, confidence=82, reasoning=reasoning),
        recommended_actions=actions
        or [
            RecommendedAction(
                action="Roll back checkout to v2.3.9",
                reasoning="Restores the known-good version.",
                risk="medium",
                priority=1,
            ),
            RecommendedAction(
                action="Check dashboards", reasoning="Confirm.", risk="low", priority=2
            ),
        ],
        severity=severity,
        estimated_customer_impact=impact,
        source="llm",
        model="llama3:latest",
    )
    return Alert(incident=incident, analysis=analysis)


def huge_alert() -> Alert:
    long = "<script>alert(1)</script> & " + "x" * 5000
    return make_alert(
        service="svc-" + "s" * 250,
        anomalies=[anomaly(f"metric_{i}_" + "m" * 240, z=3.0 + i) for i in range(100)],
        errors=[
            LogEntry(timestamp=T0, level="ERROR", message=long, service="checkout")
            for _ in range(50)
        ],
        deployments=[
            DeploymentEvent(
                timestamp=T0 - timedelta(minutes=i), service="checkout", version="v<" + "9" * 250
            )
            for i in range(30)
        ],
        actions=[
            RecommendedAction(action=long[:1000], reasoning=long[:2000], risk="high", priority=i)
            for i in range(1, 11)
        ],
        description=long[:2000],
        reasoning=long[:4000],
        impact=long[:2000],
        trigger=long,
    )


def all_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    return list(message["blocks"]) + [
        b for attachment in message["attachments"] for b in attachment["blocks"]
    ]


def mrkdwn_texts(message: dict[str, Any]) -> list[str]:
    texts = [message["text"]]
    for block in all_blocks(message):
        if block["type"] == "section":
            texts.append(block["text"]["text"])
            texts.extend(f["text"] for f in block.get("fields", []))
        elif block["type"] == "context":
            texts.extend(e["text"] for e in block["elements"])
    return texts


# --------------------------------------------------------------------------- Block Kit


def test_header_names_severity_service_and_incident() -> None:
    message = render_alert(make_alert())

    header = message["blocks"][0]
    assert header["type"] == "header"
    assert header["text"]["type"] == "plain_text"
    text = header["text"]["text"]
    assert "🔴 CRITICAL" in text and "checkout" in text and "inc-checkout-1" in text


@pytest.mark.parametrize(
    ("severity", "color", "label"),
    [
        (Severity.CRITICAL, "#E01E5A", "🔴 CRITICAL"),
        (Severity.HIGH, "#FF8C00", "🟠 HIGH"),
        (Severity.MEDIUM, "#ECB22E", "🟡 MEDIUM"),
        (Severity.LOW, "#2EB67D", "🔵 LOW"),
    ],
)
def test_attachment_colour_and_header_follow_severity(
    severity: Severity, color: str, label: str
) -> None:
    message = render_alert(make_alert(severity=severity))

    assert message["attachments"][0]["color"] == color
    assert label in message["blocks"][0]["text"]["text"]
    assert label in message["text"]


def test_message_carries_root_cause_anomalies_deployments_actions_impact_and_context() -> None:
    message = render_alert(make_alert())
    text = json.dumps(message, ensure_ascii=False)

    root = message["blocks"][1]["text"]["text"]
    assert "82% confidence" in root and "LLM (llama3:latest)" in root
    assert "Deployment v2.4.0 introduced a slow query" in root
    anomaly_fields = [f["text"] for b in all_blocks(message) for f in b.get("fields", [])]
    assert any(
        "950" in f and "200" in f and "± 20" in f and "z +37.50" in f for f in anomaly_fields
    )
    assert "`v2.4.0`" in text
    assert "Roll back checkout to v2.3.9" in text and "risk medium · priority 1" in text
    assert "Slow checkout for most users" in text
    context = [b for b in all_blocks(message) if b["type"] == "context"][-1]
    context_text = " ".join(e["text"] for e in context["elements"])
    assert "Opened" in context_text and "2024-05-01 12:00:00 UTC" in context_text
    assert "critical anomaly on http_latency_p99_ms" in context_text
    assert "opened · revision 2" in context_text


def test_actions_are_rendered_in_priority_order() -> None:
    actions = [
        RecommendedAction(action="second", reasoning="", risk="low", priority=2),
        RecommendedAction(action="first", reasoning="", risk="high", priority=1),
    ]
    message = render_alert(make_alert(actions=actions))
    texts = mrkdwn_texts(message)

    first = next(i for i, t in enumerate(texts) if "*1. first*" in t)
    second = next(i for i, t in enumerate(texts) if "*2. second*" in t)
    assert first < second


def test_limits_hold_for_a_huge_incident() -> None:
    message = render_alert(huge_alert())
    blocks = all_blocks(message)

    assert len(blocks) <= BLOCKS_MAX
    assert len(message["blocks"]) <= BLOCKS_MAX
    assert len(message["attachments"][0]["blocks"]) <= BLOCKS_MAX
    assert len(message["blocks"][0]["text"]["text"]) <= HEADER_TEXT_MAX
    assert len(message["text"]) <= FALLBACK_TEXT_CHARS
    for block in blocks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= SECTION_TEXT_MAX
            fields = block.get("fields", [])
            assert len(fields) <= 10
            assert all(len(f["text"]) <= 2000 for f in fields)
        if block["type"] == "context":
            assert len(block["elements"]) <= 10
            assert all(len(e["text"]) <= 3000 for e in block["elements"])
    fields = [f["text"] for b in blocks for f in b.get("fields", [])]
    assert "… and 91 more anomalies" in fields
    assert any("… and 25 more deployments" in t for t in mrkdwn_texts(message))


def test_header_keeps_severity_and_incident_when_the_service_name_is_long() -> None:
    message = render_alert(make_alert(service="svc-" + "s" * 252))

    text = message["blocks"][0]["text"]["text"]
    assert len(text) <= HEADER_TEXT_MAX
    assert text.startswith("🔴 CRITICAL · svc-")
    assert text.endswith("incident inc-checkout-1")


def test_user_text_is_escaped_for_mrkdwn() -> None:
    message = render_alert(huge_alert())

    texts = mrkdwn_texts(message)
    joined = "\n".join(texts)
    assert "<script>" not in joined
    assert "&lt;script&gt;" in joined
    assert "&amp;" in joined
    # Every ampersand left is the start of an entity; truncation never splits one.
    for text in texts:
        body = text.replace("&amp;", "").replace("&lt;", "").replace("&gt;", "")
        assert "&" not in body
        assert "<" not in body.replace("<!date^", "")


def test_escaping_also_reaches_log_lines_and_versions() -> None:
    alert = make_alert(
        errors=[
            LogEntry(
                timestamp=T0, level="ERROR", message="a < b && c > d <!channel>", service="x"
            )
        ],
        deployments=[DeploymentEvent(timestamp=T0, service="x", version="v1<@U123>")],
    )

    joined = "\n".join(mrkdwn_texts(render_alert(alert)))

    assert "a &lt; b &amp;&amp; c &gt; d &lt;!channel&gt;" in joined
    assert "v1&lt;@U123&gt;" in joined
    assert "<!channel>" not in joined and "<@U123>" not in joined


def test_truncate_marks_cuts_with_an_ellipsis_and_counts_astral_emoji_twice() -> None:
    assert truncate("abc", 3) == "abc"
    assert truncate("abcdef", 4) == "abc…"
    assert truncate("🔴🔴🔴", 5) == "🔴🔴…"
    assert truncate("abc", 0) == ""
    assert escape_mrkdwn("<a & b>") == "&lt;a &amp; b&gt;"


# --------------------------------------------------------------------------- console


def test_console_rendering_shows_header_root_cause_and_actions() -> None:
    text = render_console(make_alert())

    assert text.splitlines()[0].startswith("=== [CRITICAL] checkout — incident inc-checkout-1")
    assert "Root cause (82% confidence, LLM (llama3:latest)):" in text
    assert "Deployment v2.4.0 introduced a slow query" in text
    assert "1. Roll back checkout to v2.3.9 [risk medium, priority 1]" in text
    assert "http_latency_p99_ms [critical]: value 950 vs baseline 200 ± 20" in text
    assert "Customer impact: Slow checkout for most users" in text


def test_console_rendering_flattens_control_characters_and_bounds_lists() -> None:
    text = render_console(huge_alert())

    assert "\x1b" not in text
    assert "… and 80 more anomalies" in text
    assert all(len(line) <= 2100 for line in text.splitlines())


# --------------------------------------------------------------------------- purity


@pytest.mark.parametrize("module", [autopilot.analysis, autopilot.blockkit])
def test_core_modules_import_no_stream_or_network_library(module: Any) -> None:
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])

    forbidden = {"faust", "httpx", "slack_sdk", "redis", "aiohttp", "aiokafka", "requests"}
    assert not imported & forbidden
