"""Unit tests of autopilot.blockkit: Slack Block Kit and console rendering of alerts."""

from __future__ import annotations

import ast
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import autopilot.analysis
import autopilot.blockkit
from autopilot.blockkit import (
    BLOCKS_MAX,
    FALLBACK_TEXT_CHARS,
    HEADER_TEXT_MAX,
    METADATA_EVENT_TYPE,
    RESOLVED_COLOR,
    SECTION_TEXT_MAX,
    escape_mrkdwn,
    incident_metadata,
    render_alert,
    render_analysis_reply,
    render_console,
    render_console_event,
    render_incident,
    render_reminder,
    render_timeline_reply,
    render_webhook,
    truncate,
)
from autopilot.models import (
    Alert,
    DeploymentEvent,
    Incident,
    LogEntry,
    RecommendedAction,
    Severity,
    Signal,
    TimelineEntry,
)
from tests import factories
from tests.factories import T0, anomaly, deployment, log_entry

#: The rendering tests' two recommended actions (the factory's default has one).
ACTIONS = [
    RecommendedAction(action="Roll back checkout to v2.3.9",
                      reasoning="Restores the known-good version.", risk="medium", priority=1),
    RecommendedAction(action="Check dashboards", reasoning="Confirm.", risk="low", priority=2),
]


def make_alert(
    *,
    severity: Severity = Severity.CRITICAL,
    service: str = "checkout",
    deployments: list[DeploymentEvent] | None = None,
    actions: list[RecommendedAction] | None = None,
    description: str = "Deployment v2.4.0 introduced a slow query",
    reasoning: str = "Latency rose 5 minutes after the deployment.",
    impact: str = "Slow checkout for most users",
    **incident_fields: Any,
) -> Alert:
    """The rendering tests' alert: revision 2 of an opened incident, a deployment five
    minutes earlier and :data:`ACTIONS`; ``incident_fields`` go to the incident."""
    return factories.alert(
        severity=severity, service=service, revision=2, status="opened",
        deployments=[deployment(service=service)] if deployments is None else deployments,
        analysis=factories.analysis(severity=severity, actions=actions or ACTIONS,
                                    description=description, reasoning=reasoning,
                                    impact=impact),
        **incident_fields,
    )


def huge_alert() -> Alert:
    long = "<script>alert(1)</script> & " + "x" * 5000
    return make_alert(
        service="svc-" + "s" * 250,
        anomalies=[anomaly(f"metric_{i}_" + "m" * 240, z=3.0 + i) for i in range(100)],
        errors=[log_entry(long) for _ in range(50)],
        deployments=[deployment("v<" + "9" * 250, at=T0 - timedelta(minutes=i))
                     for i in range(30)],
        actions=[
            RecommendedAction(action=long[:1000], reasoning=long[:2000], risk="high", priority=i)
            for i in range(1, 11)
        ],
        description=long[:2000],
        reasoning=long[:4000],
        impact=long[:2000],
        trigger_reason=long,
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
        errors=[log_entry("a < b && c > d <!channel>", service="x")],
        deployments=[deployment("v1<@U123>", at=T0, service="x")],
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


# --------------------------------------------------------------------------- incident conversation

EPOCH0 = int(T0.timestamp())
CHANNEL = "<!channel>"
ESCAPED_CHANNEL = "&lt;!channel&gt;"


def signal(
    metric: str = "http_latency_p99_ms",
    *,
    kind: str = "metric",
    state: str = "firing",
    severity: Severity = Severity.CRITICAL,
    z: float = 37.5,
    labels: str = "",
    at: datetime = T0,
) -> Signal:
    return Signal(
        series=f"checkout|{metric}|{labels}",
        kind=kind,
        metric_name=metric,
        state=state,
        severity=severity,
        first_at=at,
        last_at=at + timedelta(minutes=5),
        resolved_at=at + timedelta(minutes=40) if state == "resolved" else None,
        last_value=950.0,
        baseline_mean=200.0,
        z_score=z,
    )


def entry(kind: str, text: str, minutes: float = 0.0, severity: Severity | None = None) -> Any:
    return TimelineEntry(at=T0 + timedelta(minutes=minutes), kind=kind, text=text,
                         severity=severity)


def lifecycle_alert(
    *,
    resolved: bool = False,
    resolution: str = "recovered",
    severity: Severity = Severity.CRITICAL,
    signals: list[Signal] | None = None,
    source: str = "llm",
    errors: list[LogEntry] | None = None,
    timeline: list[TimelineEntry] | None = None,
    reopened: int = 0,
    description: str = "Deployment v2.4.0 introduced a slow query",
    reasoning: str = "Latency rose 5 minutes after the deployment.",
    actions: list[RecommendedAction] | None = None,
    impact: str = "Slow checkout for most users",
    service: str = "checkout",
    deployments: list[DeploymentEvent] | None = None,
    closed_after_min: float = 42,
) -> Alert:
    if signals is None:
        signals = [
            signal(state="resolved" if resolved and resolution == "recovered" else "firing"),
            signal("error_rate", kind="error_rate", severity=Severity.HIGH, z=4.2,
                   state="resolved" if resolved and resolution == "recovered" else "firing"),
        ]
    return Alert(
        incident=factories.incident(
            id="inc-0123456789ab",
            service=service,
            status="resolved" if resolved else "updated",
            state="resolved" if resolved else "firing",
            revision=4,
            severity=severity,
            updated_at=T0 + timedelta(minutes=5),
            closed_at=T0 + timedelta(minutes=closed_after_min) if resolved else None,
            resolution=resolution if resolved else None,
            reopened=reopened,
            signals=signals,
            timeline=timeline or [entry("opened", "critical anomaly on http_latency_p99_ms")],
            errors=[log_entry(f"payment timeout #{i}", at=T0 + timedelta(seconds=i),
                              service=service) for i in range(7)]
            if errors is None else errors,
            deployments=[deployment(service=service)] if deployments is None else deployments,
        ),
        analysis=factories.analysis(severity=severity, actions=actions,
                                    description=description, reasoning=reasoning,
                                    impact=impact, source=source),
    )


def blocks_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    return list(message["blocks"]) + [
        b for attachment in message.get("attachments", []) for b in attachment["blocks"]
    ]


def texts_of(message: dict[str, Any]) -> list[str]:
    """Every mrkdwn text Slack parses (fallback, sections, fields, context)."""
    texts = [message["text"]]
    for block in blocks_of(message):
        if block["type"] == "section":
            texts.append(block["text"]["text"])
            texts.extend(f["text"] for f in block.get("fields", []))
        elif block["type"] == "context":
            texts.extend(e["text"] for e in block["elements"])
    return texts


def header_text(message: dict[str, Any]) -> str:
    header = message["blocks"][0]
    assert header["type"] == "header"
    return str(header["text"]["text"])


def assert_within_slack_limits(message: dict[str, Any]) -> None:
    blocks = blocks_of(message)
    assert len(blocks) <= BLOCKS_MAX
    assert len(message["text"]) <= FALLBACK_TEXT_CHARS
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= HEADER_TEXT_MAX
        elif block["type"] == "section":
            assert len(block["text"]["text"]) <= SECTION_TEXT_MAX
            fields = block.get("fields", [])
            assert len(fields) <= 10
            assert all(len(f["text"]) <= 2000 for f in fields)
        elif block["type"] == "context":
            assert 1 <= len(block["elements"]) <= 10
            assert all(len(e["text"]) <= 3000 for e in block["elements"])
    # Every "&" left starts an entity and no "<" survives but Slack date tokens.
    for text in texts_of(message):
        body = text.replace("&amp;", "").replace("&lt;", "").replace("&gt;", "")
        assert "&" not in body
        assert "<" not in body.replace("<!date^", "")


def huge_lifecycle_alert() -> Alert:
    long = f"{CHANNEL} <script> & " + "y" * 10_000
    return lifecycle_alert(
        service="svc-" + "s" * 250,
        signals=[
            signal(f"metric_{i}_" + "m" * 300, z=3.0 + i, labels="pod=" + "p" * 300,
                   state="firing" if i % 2 else "resolved")
            for i in range(100)
        ],
        errors=[log_entry(long, at=T0 + timedelta(seconds=i)) for i in range(50)],
        deployments=[deployment("v<" + "9" * 250, at=T0 - timedelta(minutes=i))
                     for i in range(30)],
        timeline=[entry("signal", long[:1000], minutes=i) for i in range(50)],
        actions=[
            RecommendedAction(action=long[:1000], reasoning=long[:2000], risk="high", priority=i)
            for i in range(1, 11)
        ],
        description=long[:2000],
        reasoning=long[:4000],
        impact=long[:2000],
    )


def test_root_message_of_a_firing_incident_names_state_severity_service_and_id() -> None:
    message = render_incident(lifecycle_alert(), analysis_pending=False)

    assert header_text(message) == "🔴 FIRING · CRITICAL · checkout · incident inc-0123456789ab"
    assert message["attachments"][0]["color"] == "#E01E5A"
    assert message["text"].startswith("🔴 FIRING · CRITICAL incident inc-0123456789ab on checkout")


@pytest.mark.parametrize(
    ("severity", "color", "head"),
    [
        (Severity.CRITICAL, "#E01E5A", "🔴 FIRING · CRITICAL"),
        (Severity.HIGH, "#FF8C00", "🟠 FIRING · HIGH"),
        (Severity.MEDIUM, "#ECB22E", "🟡 FIRING · MEDIUM"),
    ],
)
def test_root_message_colour_follows_severity_while_firing(
    severity: Severity, color: str, head: str
) -> None:
    message = render_incident(lifecycle_alert(severity=severity), analysis_pending=False)

    assert message["attachments"][0]["color"] == color
    assert header_text(message).startswith(head)


def test_firing_status_uses_slack_date_tokens_only() -> None:
    message = render_incident(lifecycle_alert(), analysis_pending=False)
    status = message["blocks"][1]["text"]["text"]

    assert status == (
        f"*Firing* since <!date^{EPOCH0}^{{date_short_pretty}} {{time}}|2024-05-01 12:00:00 UTC>"
        f" (<!date^{EPOCH0}^{{ago}}|2024-05-01 12:00:00 UTC>)"
    )
    joined = "\n".join(texts_of(message))
    assert " min" not in joined.replace("5 minutes", "")  # no duration computed while firing


def test_resolved_root_message_is_green_and_says_how_long_and_how() -> None:
    message = render_incident(lifecycle_alert(resolved=True), analysis_pending=False)

    assert header_text(message) == "✅ RESOLVED · checkout · incident inc-0123456789ab"
    assert message["attachments"][0]["color"] == RESOLVED_COLOR == "#2EB67D"
    status = message["blocks"][1]["text"]["text"]
    assert status.startswith("*Resolved after 42 min* — all signals recovered")
    assert "{ago}" not in status
    assert message["text"].startswith(
        "✅ RESOLVED incident inc-0123456789ab on checkout after 42 min"
    )
    signals = next(b for b in blocks_of(message) if b.get("fields"))
    assert signals["text"]["text"] == "*Signals* (2: 0 firing, 2 resolved)"
    assert all(f["text"].startswith("✅") for f in signals["fields"])


def test_stale_resolution_says_how_long_there_was_no_evidence() -> None:
    alert = lifecycle_alert(resolved=True, resolution="stale", closed_after_min=20)

    message = render_incident(alert, analysis_pending=False)

    # last evidence: the signals' last_at (T0 + 5 min); closed at T0 + 20 min
    status = message["blocks"][1]["text"]["text"]
    assert "*Resolved after 20 min* — stale: no evidence for 15 min" in status
    signals = next(b for b in blocks_of(message) if b.get("fields"))
    assert "2 stopped reporting" in signals["text"]["text"]
    assert all(f["text"].startswith("⚪") for f in signals["fields"])


def test_incident_stored_before_the_lifecycle_still_renders_as_resolved() -> None:
    old = Incident.model_validate(
        {
            "id": "inc-old", "service": "checkout", "status": "closed", "revision": 3,
            "notify": False, "severity": "high", "trigger_reason": "high anomaly",
            "opened_at": "2024-05-01T12:00:00Z", "updated_at": "2024-05-01T12:10:00Z",
            "closed_at": "2024-05-01T12:25:00Z",
            "anomalies": [anomaly().model_dump(mode="json")],
        }
    )
    alert = Alert(incident=old, analysis=lifecycle_alert().analysis)

    message = render_incident(alert, analysis_pending=False)

    assert header_text(message).startswith("✅ RESOLVED · checkout")
    assert "*Resolved after 25 min* — stale: no evidence for 25 min" in message["blocks"][1][
        "text"]["text"]
    fields = [f["text"] for b in blocks_of(message) for f in b.get("fields", [])]
    assert len(fields) == 1 and "*http_latency_p99_ms* · critical" in fields[0]


def test_reopened_incident_fires_again_since_the_reopen_and_counts_it() -> None:
    timeline = [entry("opened", "opened"), entry("resolved", "all recovered", 30),
                entry("reopened", "fired again", 50)]
    message = render_incident(lifecycle_alert(timeline=timeline, reopened=2),
                              analysis_pending=False)

    status = message["blocks"][1]["text"]["text"]
    reopen_epoch = EPOCH0 + 50 * 60
    assert status.startswith(f"*Firing again* since <!date^{reopen_epoch}^")
    assert f"First opened <!date^{EPOCH0}^" in status
    assert "Re-opened 2 times" in status


def test_signals_show_state_name_severity_value_baseline_and_z_firing_first() -> None:
    signals = [
        signal("cpu", state="resolved", severity=Severity.MEDIUM, z=2.7),
        signal("error_rate", kind="error_rate", severity=Severity.HIGH, z=4.2),
        signal("http_requests", labels="route=/pay", z=9.0),
    ]
    message = render_incident(lifecycle_alert(signals=signals), analysis_pending=False)

    block = next(b for b in blocks_of(message) if b.get("fields"))
    fields = [f["text"] for f in block["fields"]]
    assert block["text"]["text"] == "*Signals* (3: 2 firing, 1 resolved)"
    assert fields[0].startswith("🔴 *http_requests{route=/pay}* · critical\n")
    assert fields[1].startswith("🔴 *error rate* · high\n")
    assert fields[2].startswith("✅ *cpu* · medium\n")
    assert "last 950 vs baseline 200 · z +9.00" in fields[0]
    assert "recovered <!date^" in fields[2]


def test_root_message_carries_error_lines_deployments_and_context() -> None:
    message = render_incident(lifecycle_alert(), analysis_pending=False)
    joined = "\n".join(texts_of(message))

    assert "*Recent errors* (7, newest 5)" in joined
    assert "payment timeout #6" in joined and "payment timeout #1" not in joined
    assert "`v2.4.0`" in joined
    context = blocks_of(message)[-1]
    assert context["type"] == "context"
    context_text = " ".join(e["text"] for e in context["elements"])
    assert f"Opened <!date^{EPOCH0}^" in context_text
    assert "Incident `inc-0123456789ab`" in context_text
    assert "Revision 4" in context_text


@pytest.mark.parametrize(
    ("source", "pending", "expected", "absent"),
    [
        ("llm", True, "82% confidence · LLM (llama3:latest)", "pending"),
        ("llm", False, "82% confidence · LLM (llama3:latest)", "rule-based"),
        ("rules", True, "82% confidence · rule-based · ⏳ _LLM analysis pending_", "unavailable"),
        ("rules", False, "82% confidence · rule-based (LLM unavailable)", "pending"),
    ],
)
def test_root_cause_names_its_source_and_the_pending_llm(
    source: str, pending: bool, expected: str, absent: str
) -> None:
    message = render_incident(lifecycle_alert(source=source), analysis_pending=pending)

    root = message["blocks"][2]["text"]["text"]
    assert root.startswith("*Root cause* — ")
    assert expected in root
    assert absent not in root
    assert "Deployment v2.4.0 introduced a slow query" in root
    joined = "\n".join(texts_of(message))
    assert "Roll back checkout to v2.3.9" in joined and "Slow checkout for most users" in joined


def test_root_message_is_a_pure_function_of_its_inputs() -> None:
    alert = lifecycle_alert(timeline=[entry("opened", "a"), entry("signal", "b", 3)],
                            source="rules")
    copy = Alert.model_validate_json(alert.model_dump_json())

    first = json.dumps(render_incident(alert, analysis_pending=True), ensure_ascii=False)
    second = json.dumps(render_incident(copy, analysis_pending=True), ensure_ascii=False)

    assert first == second
    not_pending = render_incident(alert, analysis_pending=False)
    assert first != json.dumps(not_pending, ensure_ascii=False)
    resolved = json.dumps(render_incident(lifecycle_alert(resolved=True), analysis_pending=True))
    assert resolved != json.dumps(render_incident(lifecycle_alert(), analysis_pending=True))


def test_root_message_limits_hold_for_a_huge_incident() -> None:
    alert = huge_lifecycle_alert()

    for pending in (True, False):
        message = render_incident(alert, analysis_pending=pending)
        assert_within_slack_limits(message)
    fields = [f["text"] for b in blocks_of(message) for f in b.get("fields", [])]
    assert len(fields) == 10 and fields[-1] == "… and 91 more signals"
    assert header_text(message).endswith("incident inc-0123456789ab")
    assert header_text(message).startswith("🔴 FIRING · CRITICAL · svc-")


def test_outside_text_in_log_lines_and_llm_output_is_escaped() -> None:
    alert = lifecycle_alert(
        errors=[log_entry(f"boom {CHANNEL} <@U1>")],
        description=f"cause {CHANNEL}",
        reasoning=f"why {CHANNEL}",
        impact=f"impact {CHANNEL}",
        actions=[RecommendedAction(action=f"act {CHANNEL}", reasoning=f"r {CHANNEL}",
                                   risk="low", priority=1)],
        timeline=[entry("signal", f"log said {CHANNEL}")],
        signals=[signal(f"m{CHANNEL}")],
    )
    messages = [
        render_incident(alert, analysis_pending=False),
        render_analysis_reply(alert.incident, alert.analysis),
        render_timeline_reply(alert.incident, alert.incident.timeline),
        render_reminder(alert.incident),
        *(render_webhook(alert, k, analysis_pending=True)
          for k in ("opened", "escalated", "analysis", "resolved")),
    ]

    for message in messages:
        joined = "\n".join(texts_of(message))
        assert CHANNEL not in joined and "<@U1>" not in joined
        assert ESCAPED_CHANNEL in joined
        assert_within_slack_limits(message)


def test_incident_metadata_names_the_incident() -> None:
    incident = lifecycle_alert().incident

    assert incident_metadata(incident) == {
        "event_type": METADATA_EVENT_TYPE,
        "event_payload": {"incident_id": "inc-0123456789ab", "service": "checkout"},
    }
    assert METADATA_EVENT_TYPE == "autopilot_incident"


def test_timeline_reply_lists_each_entry_oldest_first_with_its_time() -> None:
    incident = lifecycle_alert().incident
    entries = [
        entry("deployment", "deployed v2.4.1", 7),
        entry("escalated", "severity rose", 5, severity=Severity.CRITICAL),
        entry("signal", "error rate fired (high)", 2, severity=Severity.HIGH),
    ]

    message = render_timeline_reply(incident, entries)

    assert len(message["blocks"]) == 1
    lines = message["blocks"][0]["text"]["text"].split("\n")
    assert lines == [
        f"📈 <!date^{EPOCH0 + 120}^{{date_short_pretty}} {{time}}|2024-05-01 12:02:00 UTC> "
        "error rate fired (high)",
        f"⏫ <!date^{EPOCH0 + 300}^{{date_short_pretty}} {{time}}|2024-05-01 12:05:00 UTC> "
        "severity rose (critical)",
        f"🚀 <!date^{EPOCH0 + 420}^{{date_short_pretty}} {{time}}|2024-05-01 12:07:00 UTC> "
        "deployed v2.4.1",
    ]
    assert message["text"] == (
        "Incident inc-0123456789ab on checkout: 3 updates, latest 🚀 deployed v2.4.1"
    )


def test_timeline_reply_of_one_entry_and_of_none() -> None:
    incident = lifecycle_alert().incident

    one = render_timeline_reply(incident, [entry("resolved", "all signals recovered", 40)])
    none = render_timeline_reply(incident, [])

    assert one["text"] == "Incident inc-0123456789ab on checkout: ✅ all signals recovered"
    assert "inc-0123456789ab" in none["text"]
    assert_within_slack_limits(none)


def test_timeline_reply_limits_hold_for_fifty_long_entries() -> None:
    alert = huge_lifecycle_alert()

    message = render_timeline_reply(alert.incident, alert.incident.timeline)

    assert_within_slack_limits(message)
    shown = sum(b["text"]["text"].count("\n") + 1 for b in message["blocks"]
                if b["type"] == "section")
    more = [e["text"] for b in message["blocks"] if b["type"] == "context"
            for e in b["elements"]]
    if more:
        assert more == [f"… and {50 - shown} more timeline entries"]
    else:
        assert shown == 50


def test_analysis_reply_carries_root_cause_confidence_reasoning_actions_and_model() -> None:
    alert = lifecycle_alert()

    message = render_analysis_reply(alert.incident, alert.analysis)
    joined = "\n".join(texts_of(message))

    assert message["blocks"][0]["text"]["text"] == (
        "🧠 *LLM analysis* · LLM (llama3:latest) · 82% confidence"
    )
    assert "*Root cause:* Deployment v2.4.0 introduced a slow query" in joined
    assert "*Why:* Latency rose 5 minutes after the deployment." in joined
    assert "*1. Roll back checkout to v2.3.9*" in joined
    assert "Slow checkout for most users" in joined
    assert message["text"].startswith("LLM analysis for incident inc-0123456789ab on checkout: ")
    huge = huge_lifecycle_alert()
    assert_within_slack_limits(render_analysis_reply(huge.incident, huge.analysis))


def test_reminder_says_still_firing_with_severity_firing_signals_and_age() -> None:
    signals = [signal("cpu", state="resolved"), signal("latency"),
               signal("error_rate", kind="error_rate")]
    incident = lifecycle_alert(signals=signals).incident

    message = render_reminder(incident)
    text = message["blocks"][0]["text"]["text"]

    assert text.startswith(
        f"⏰ *Still firing* · 🔴 CRITICAL · firing since <!date^{EPOCH0}^{{ago}}|"
    )
    assert "*Signals still firing* (2): `error rate`, `latency`" in text
    assert "cpu" not in text
    assert "inc-0123456789ab" in message["text"] and "checkout" in message["text"]
    assert_within_slack_limits(message)
    assert_within_slack_limits(render_reminder(huge_lifecycle_alert().incident))


@pytest.mark.parametrize("kind", ["opened", "escalated", "analysis", "resolved"])
def test_every_webhook_message_names_the_incident_and_service(kind: Any) -> None:
    for alert in (lifecycle_alert(), huge_lifecycle_alert()):
        message = render_webhook(alert, kind, analysis_pending=True)

        assert_within_slack_limits(message)
        assert "inc-0123456789ab" in header_text(message)
        assert "inc-0123456789ab" in message["text"]
        assert alert.incident.service[:20] in header_text(message)
        assert alert.incident.service[:20] in message["text"]


def test_webhook_kinds_say_what_happened() -> None:
    alert = lifecycle_alert(source="rules")
    resolved = lifecycle_alert(resolved=True)
    llm = lifecycle_alert()

    opened = render_webhook(alert, "opened", analysis_pending=True)
    escalated = render_webhook(alert, "escalated", analysis_pending=True)
    analysis = render_webhook(llm, "analysis", analysis_pending=False)
    done = render_webhook(resolved, "resolved", analysis_pending=False)

    assert opened == render_incident(alert, analysis_pending=True)
    assert "LLM analysis pending" in "\n".join(texts_of(opened))
    assert header_text(escalated).startswith("🔴 ESCALATED · CRITICAL")
    assert "escalated to *CRITICAL*" in escalated["blocks"][1]["text"]["text"]
    assert analysis["text"].startswith("LLM analysis for incident inc-0123456789ab")
    assert "LLM analysis for incident `inc-0123456789ab`" in "\n".join(texts_of(analysis))
    assert header_text(done).startswith("✅ RESOLVED")
    assert done["attachments"][0]["color"] == RESOLVED_COLOR
    assert "after 42 min" in done["text"]
    assert "*Resolved after 42 min*" in done["blocks"][1]["text"]["text"]


def test_unknown_webhook_and_console_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown webhook"):
        render_webhook(lifecycle_alert(), "closed", analysis_pending=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown console"):
        render_console_event(lifecycle_alert(), "x", analysis_pending=False)  # type: ignore[arg-type]


def test_console_event_opened_header_and_details() -> None:
    entries = [entry("opened", "critical anomaly on http_latency_p99_ms")]

    text = render_console_event(lifecycle_alert(source="rules"), "opened",
                                analysis_pending=True, entries=entries)
    lines = text.splitlines()

    assert lines[0] == (
        "[incident inc-0123456789ab checkout] OPENED critical: "
        "critical anomaly on http_latency_p99_ms"
    )
    assert "  signals (2: 2 firing, 0 resolved):" in lines
    assert any(line.strip().startswith("firing   error rate [high]") for line in lines)
    assert "  error lines: 7" in lines
    assert "  deployments: v2.4.0" in lines
    assert ("  root cause (82%, rule-based, LLM analysis pending): "
            "Deployment v2.4.0 introduced a slow query") in lines
    assert "    2024-05-01 12:00:00 UTC opened: critical anomaly on http_latency_p99_ms" in lines
    assert all(line.startswith("  ") for line in lines[1:])


def test_console_event_headers_for_each_kind() -> None:
    firing, resolved = lifecycle_alert(), lifecycle_alert(resolved=True)

    def head(alert: Alert, kind: Any) -> str:
        return render_console_event(alert, kind, analysis_pending=False).splitlines()[0]

    prefix = "[incident inc-0123456789ab checkout] "
    assert head(firing, "updated") == prefix + "UPDATED critical: 2 of 2 signal(s) firing"
    assert head(firing, "analysis") == (
        prefix + "ANALYSED critical: Deployment v2.4.0 introduced a slow query"
    )
    assert head(resolved, "resolved") == prefix + "RESOLVED after 42 min (all signals recovered)"
    assert head(firing, "reminder") == (
        prefix + "STILL FIRING critical since 2024-05-01 12:00:00 UTC"
    )
    analysis = render_console_event(firing, "analysis", analysis_pending=False)
    assert "LLM (llama3:latest)" in analysis and "1. Roll back checkout to v2.3.9" in analysis
    assert "(82%, rule-based (LLM unavailable))" in render_console_event(
        lifecycle_alert(source="rules"), "updated", analysis_pending=False)


def test_console_event_flattens_control_characters_and_bounds_output() -> None:
    forged = "ok\n[incident inc-fake x] RESOLVED\x1b[2J"
    alert = lifecycle_alert(errors=[], description=forged, service="checkout\nfake")
    huge = huge_lifecycle_alert()

    text = render_console_event(alert, "analysis", analysis_pending=False,
                                entries=[entry("signal", forged)])
    big = render_console_event(huge, "updated", analysis_pending=True,
                               entries=huge.incident.timeline)

    assert "\x1b" not in text
    assert not any(line.startswith("[incident inc-fake") for line in text.splitlines())
    assert text.splitlines()[0].startswith("[incident inc-0123456789ab checkout fake] ANALYSED")
    assert "    … and 90 more signals" in big.splitlines()
    assert len(big.splitlines()) < 100
    assert all(len(line) <= 1000 for line in big.splitlines())


def test_old_renderers_show_the_new_resolved_status() -> None:
    alert = lifecycle_alert(resolved=True)

    assert render_alert(alert)["blocks"][0]["text"]["text"].startswith("✅ RESOLVED")
    assert render_console(alert).startswith("=== RESOLVED ")


def test_timeline_reply_past_fifty_blocks_says_how_many_entries_it_left_out() -> None:
    incident = lifecycle_alert().incident
    entries = [entry("signal", f"{i:03d} " + "z" * 990, minutes=i) for i in range(150)]

    message = render_timeline_reply(incident, entries)

    assert_within_slack_limits(message)
    assert len(message["blocks"]) == BLOCKS_MAX
    sections = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]
    shown = sum(t.count("\n") + 1 for t in sections)
    last = message["blocks"][-1]
    assert last["type"] == "context"
    assert last["elements"][0]["text"] == f"… and {150 - shown} more timeline entries"
    assert sections[0].split("\n")[0].endswith("000 " + "z" * 990)  # oldest first
