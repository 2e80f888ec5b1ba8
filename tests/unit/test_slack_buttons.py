"""The root message's buttons (issue 14): Acknowledge, Silence, Resolve, Not an incident."""

from __future__ import annotations

import json
from typing import Any

import pytest

from autopilot.blockkit import (
    ACTION_ACKNOWLEDGE,
    ACTION_NOT_AN_INCIDENT,
    ACTION_RESOLVE,
    ACTION_SILENCE,
    ACTIONS_BLOCK_ID,
    BLOCKS_MAX,
    FEEDBACK_CHOICES,
    OPTION_VALUE_MAX,
    SILENCE_CHOICES,
    parse_action_value,
    render_incident,
)
from autopilot.notify import NotifyConfig
from autopilot.settings import load_settings
from tests.unit.test_blockkit import huge_lifecycle_alert, lifecycle_alert


def _actions(message: dict[str, Any]) -> dict[str, Any] | None:
    found = [b for b in message["blocks"] if b["type"] == "actions"]
    assert len(found) <= 1
    return found[0] if found else None


def test_no_buttons_unless_asked() -> None:
    assert _actions(render_incident(lifecycle_alert(), analysis_pending=False)) is None


def test_firing_incident_has_the_four_actions_with_incident_and_service() -> None:
    block = _actions(render_incident(lifecycle_alert(), analysis_pending=False, buttons=True))

    assert block is not None and block["block_id"] == ACTIONS_BLOCK_ID
    ids = [e["action_id"] for e in block["elements"]]
    assert ids == [ACTION_ACKNOWLEDGE, ACTION_SILENCE, ACTION_RESOLVE, ACTION_NOT_AN_INCIDENT]
    for element in block["elements"]:
        if element["type"] == "button":
            assert parse_action_value(element["value"]) == {
                "incident_id": "inc-0123456789ab", "service": "checkout"}
            assert len(element["value"]) <= 2000
        elif element["action_id"] == ACTION_SILENCE:
            assert element["type"] == "static_select"
            choices = [parse_action_value(o["value"]) for o in element["options"]]
            assert [c["silence"] for c in choices] == list(SILENCE_CHOICES)
            assert [o["text"]["text"] for o in element["options"]] == [
                "1 hour", "4 hours", "Until resolved"]
            assert all(c["service"] == "checkout" for c in choices)
            assert all(len(o["value"]) <= OPTION_VALUE_MAX for o in element["options"])
        else:  # Not an incident: the user chooses how long the feedback applies
            assert element["type"] == "static_select"
            assert element["action_id"] == ACTION_NOT_AN_INCIDENT
            choices = [parse_action_value(o["value"]) for o in element["options"]]
            assert [c["feedback"] for c in choices] == list(FEEDBACK_CHOICES) == [
                "7d", "30d", "forever"]
            assert [o["text"]["text"] for o in element["options"]] == [
                "For 7 days", "For 30 days", "For good"]
            assert all("silence" not in c for c in choices)


def test_resolved_incident_has_no_buttons() -> None:
    message = render_incident(lifecycle_alert(resolved=True), analysis_pending=False,
                              buttons=True)
    assert _actions(message) is None


def test_long_service_keeps_the_buttons_but_not_the_silence_menu() -> None:
    message = render_incident(lifecycle_alert(service="s" * 200), analysis_pending=False,
                              buttons=True)
    block = _actions(message)
    assert block is not None
    assert [e["action_id"] for e in block["elements"]] == [
        ACTION_ACKNOWLEDGE, ACTION_RESOLVE, ACTION_NOT_AN_INCIDENT]


def test_buttons_keep_the_block_limit_on_a_huge_incident() -> None:
    message = render_incident(huge_lifecycle_alert(), analysis_pending=False, buttons=True)
    total = len(message["blocks"]) + len(message["attachments"][0]["blocks"])
    assert total <= BLOCKS_MAX
    assert _actions(message) is not None


def test_rendering_with_buttons_is_a_pure_function() -> None:
    one = render_incident(lifecycle_alert(), analysis_pending=True, buttons=True)
    two = render_incident(lifecycle_alert(), analysis_pending=True, buttons=True)
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)


@pytest.mark.parametrize("value", [
    None, "", "[]", "not json", '{"incident_id": "x"}', '{"service": "x"}',
    '{"incident_id": "x", "service": "y", "silence": "forever"}',
    '{"incident_id": 1, "service": "y"}',
])
def test_forged_values_are_refused(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_action_value(value)


@pytest.mark.parametrize(("env", "mode", "expected"), [
    ({}, "bot", False),
    ({"SLACK_SIGNING_SECRET": "s3cr3t"}, "bot", True),
    ({"SLACK_SIGNING_SECRET": "s3cr3t"}, "webhook", False),
    ({"SLACK_SIGNING_SECRET": "s3cr3t"}, "console", False),
])
def test_buttons_only_in_bot_mode_with_a_signing_secret(
    env: dict[str, str], mode: Any, expected: bool
) -> None:
    assert NotifyConfig.from_settings(load_settings(env), mode).buttons is expected


def test_signing_secret_is_a_secret() -> None:
    s = load_settings({"SLACK_SIGNING_SECRET": "s3cr3t-signing"})
    assert "s3cr3t-signing" in s.secret_values()
    assert "s3cr3t-signing" not in repr(s)
