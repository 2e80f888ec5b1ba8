"""The plain-text rendering sent after Slack refuses a message's blocks."""

from __future__ import annotations

from autopilot import blockkit
from autopilot.analysis import fallback_analysis
from autopilot.models import Alert, Severity
from tests.factories import incident, log_entry


def _alert() -> Alert:
    inc = incident(severity=Severity.CRITICAL, trigger_reason="latency anomaly",
                   errors=[log_entry("timeout acquiring connection from pool")])
    return Alert(incident=inc, analysis=fallback_analysis(inc))


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
