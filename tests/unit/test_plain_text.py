"""The plain-text rendering sent after Slack refuses a message's blocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from autopilot import blockkit
from autopilot.analysis import fallback_analysis
from autopilot.models import Alert, Anomaly, Incident, LogEntry, Severity

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _alert() -> Alert:
    incident = Incident(
        id="inc-checkout-1", service="checkout", status="opened", revision=1, notify=True,
        severity=Severity.CRITICAL, trigger_reason="latency anomaly", opened_at=T0,
        updated_at=T0 + timedelta(minutes=1),
        anomalies=[Anomaly(metric_name="http_latency_p99_ms", service="checkout",
                           current_value=950.0, baseline_mean=200.0, baseline_std_dev=20.0,
                           z_score=37.5, deviation_percent=375.0,
                           severity=Severity.CRITICAL, detected_at=T0)],
        recent_errors=[LogEntry(timestamp=T0, level="ERROR", service="checkout",
                                message="timeout acquiring connection from pool")],
    )
    return Alert(incident=incident, analysis=fallback_analysis(incident))


def test_plain_text_keeps_the_words_of_every_block_and_attachment() -> None:
    payload = blockkit.render_incident(_alert(), analysis_pending=True)
    text = blockkit.plain_text(payload)
    assert "checkout" in text and "inc-checkout-1" in text
    assert "timeout acquiring connection from pool" in text  # from the attachment
    assert "http_latency_p99_ms" in text


def test_plain_text_message_drops_blocks_and_keeps_metadata() -> None:
    payload = {**blockkit.render_incident(_alert(), analysis_pending=False),
               "metadata": {"event_type": "autopilot_incident", "event_payload": {"a": 1}}}
    new = blockkit.render_plain_text(payload, replace=False)
    assert "blocks" not in new and "attachments" not in new
    assert new["metadata"] == payload["metadata"]
    assert new["text"].startswith(blockkit.PLAIN_TEXT_NOTE)
    assert "checkout" in new["text"]
    # chat.update keeps the old blocks unless they are sent empty
    update = blockkit.render_plain_text(payload, replace=True)
    assert update["blocks"] == [] and update["attachments"] == []


def test_plain_text_is_bounded() -> None:
    huge = {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3000}}] * 50}
    new = blockkit.render_plain_text(huge, replace=False)
    assert len(new["text"]) <= blockkit.PLAIN_TEXT_MAX
    assert blockkit.render_plain_text({"text": "only text"}, replace=False)["text"].endswith(
        "only text"
    )
