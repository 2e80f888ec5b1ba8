"""Unit tests of autopilot.analysis: schema, prompt, LLM answer parsing, rule-based fallback."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from autopilot.analysis import (
    MAX_PROMPT_CHARS,
    analysis_json_schema,
    build_messages,
    fallback_analysis,
    parse_llm_analysis,
)
from autopilot.errors import AnalysisUnavailable
from autopilot.models import Analysis, Severity
from tests.factories import T0, anomaly, deployment, incident, log_entry


def valid_answer(**overrides: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "root_cause": {
            "description": "Deployment v2.4.0 introduced a slow query",
            "confidence": 82,
            "reasoning": "Latency rose 5 minutes after the deployment.",
        },
        "recommended_actions": [
            {
                "action": "Roll back checkout to v2.3.9",
                "reasoning": "Restores the known-good version.",
                "risk": "medium",
                "priority": 1,
            }
        ],
        "severity": "high",
        "estimated_customer_impact": "Slow checkout for most users",
    }
    answer.update(overrides)
    return answer


# --------------------------------------------------------------------------- schema


def _walk(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found.extend(_walk(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_walk(value))
    return found


def test_schema_is_a_plain_object_schema_requiring_the_analysis_fields() -> None:
    schema = analysis_json_schema()

    assert schema["type"] == "object"
    assert set(schema["required"]) == {
        "root_cause",
        "recommended_actions",
        "severity",
        "estimated_customer_impact",
    }
    assert set(schema["properties"]["root_cause"]["required"]) == {
        "description",
        "confidence",
        "reasoning",
    }
    actions = schema["properties"]["recommended_actions"]
    assert actions["type"] == "array"
    assert (actions["minItems"], actions["maxItems"]) == (1, 5)
    assert set(actions["items"]["required"]) == {"action", "reasoning", "risk", "priority"}
    assert actions["items"]["properties"]["risk"]["enum"] == ["low", "medium", "high"]
    assert schema["properties"]["severity"]["enum"] == ["low", "medium", "high", "critical"]
    confidence = schema["properties"]["root_cause"]["properties"]["confidence"]
    assert (confidence["type"], confidence["minimum"], confidence["maximum"]) == ("integer", 0, 100)


def test_schema_inlines_everything_and_leaves_out_source_and_model() -> None:
    schema = analysis_json_schema()
    text = json.dumps(schema)

    assert "$ref" not in text and "$defs" not in text and "definitions" not in text
    assert "source" not in schema["properties"] and "model" not in schema["properties"]
    for node in _walk(schema):
        if node.get("type") == "object":
            assert set(node["required"]) <= set(node["properties"])


def test_schema_accepts_what_the_analysis_model_accepts() -> None:
    schema = analysis_json_schema()
    answer = valid_answer()

    assert set(answer) == set(schema["properties"])
    Analysis.model_validate({**answer, "source": "llm", "model": "m"})


# --------------------------------------------------------------------------- prompt


def test_messages_are_a_system_role_and_a_user_message_with_the_evidence() -> None:
    inc = incident(
        errors=[log_entry("payment gateway returned 503", at=T0)],
        deployments=[deployment("v2.4.0", at=T0 - timedelta(minutes=5))],
    )

    messages = build_messages(inc)

    assert [m["role"] for m in messages] == ["system", "user"]
    system, user = messages[0]["content"], messages[1]["content"]
    assert "JSON" in system and "evidence" in system and "version" in system
    assert "checkout" in user
    assert "critical anomaly on http_latency_p99_ms" in user
    assert "http_latency_p99_ms" in user and "950" in user and "200 ± 20" in user
    assert "z +37.50" in user and "+375.0%" in user
    assert "v2.4.0" in user and "5.0 min before the first anomaly" in user
    assert "payment gateway returned 503" in user


def test_messages_leave_out_error_lines_older_than_ten_minutes() -> None:
    inc = incident(
        errors=[
            log_entry("stale failure from long ago", at=T0 - timedelta(minutes=30)),
            log_entry("fresh failure", at=T0),
        ]
    )

    user = build_messages(inc)[1]["content"]

    assert "fresh failure" in user
    assert "stale failure" not in user


def test_messages_stay_under_the_cap_for_huge_incidents() -> None:
    inc = incident(
        service="s" * 256,
        anomalies=[anomaly(f"metric_{i}_" + "m" * 200, z=3.0 + i) for i in range(200)],
        errors=[log_entry(f"error {i} " + "x" * 5000) for i in range(100)],
        deployments=[
            deployment("v" + "9" * 250, at=T0 - timedelta(minutes=i)) for i in range(1, 40)
        ],
    )

    messages = build_messages(inc)

    total = sum(len(m["content"]) for m in messages)
    assert total <= MAX_PROMPT_CHARS
    assert "more" in messages[1]["content"]
    assert all(len(line) < 600 for line in messages[1]["content"].splitlines())


# --------------------------------------------------------------------------- LLM answer


def test_parse_accepts_valid_json_and_sets_source_and_model() -> None:
    analysis = parse_llm_analysis(json.dumps(valid_answer()), "llama3:latest")

    assert analysis.source == "llm"
    assert analysis.model == "llama3:latest"
    assert analysis.root_cause.confidence == 82
    assert analysis.severity is Severity.HIGH
    assert analysis.recommended_actions[0].action == "Roll back checkout to v2.3.9"


def test_parse_accepts_json_inside_a_markdown_fence() -> None:
    content = "\n```json\n" + json.dumps(valid_answer(), indent=2) + "\n```\n"

    analysis = parse_llm_analysis(content, "llama3:latest")

    assert analysis.root_cause.description.startswith("Deployment v2.4.0")


def test_parse_ignores_source_and_model_claimed_by_the_llm() -> None:
    content = json.dumps(valid_answer(source="rules", model="other"))

    analysis = parse_llm_analysis(content, "llama3:latest")

    assert (analysis.source, analysis.model) == ("llm", "llama3:latest")


@pytest.mark.parametrize(
    "content",
    ["", "not json at all", '{"root_cause": ', "[1, 2, 3]", '{"x": NaN}'],
    ids=["empty", "prose", "cut-off", "list", "nan"],
)
def test_parse_refuses_invalid_json(content: str) -> None:
    with pytest.raises(AnalysisUnavailable, match="llama3:latest"):
        parse_llm_analysis(content, "llama3:latest")


def test_parse_refuses_out_of_range_confidence() -> None:
    answer = valid_answer()
    answer["root_cause"]["confidence"] = 120

    with pytest.raises(AnalysisUnavailable, match="confidence"):
        parse_llm_analysis(json.dumps(answer), "llama3:latest")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("severity",), "catastrophic"),
        (("recommended_actions", 0, "risk"), "extreme"),
        (("recommended_actions", 0, "priority"), 0),
        (("recommended_actions",), []),
    ],
    ids=["severity", "risk", "priority", "no-actions"],
)
def test_parse_refuses_schema_violations(path: tuple[Any, ...], value: Any) -> None:
    answer = valid_answer()
    target: Any = answer
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value

    with pytest.raises(AnalysisUnavailable, match="schema"):
        parse_llm_analysis(json.dumps(answer), "llama3:latest")


def test_parse_refuses_a_missing_root_cause() -> None:
    answer = valid_answer()
    del answer["root_cause"]

    with pytest.raises(AnalysisUnavailable, match="root_cause"):
        parse_llm_analysis(json.dumps(answer), "llama3:latest")


def test_parse_cuts_strings_and_actions_to_the_bounds_of_the_schema_sent() -> None:
    action = valid_answer()["recommended_actions"][0]
    answer = valid_answer(
        recommended_actions=[{**action, "action": "a" * 5000, "reasoning": "r" * 5000}
                             for _ in range(14)],
        estimated_customer_impact="i" * 9000,
    )
    answer["root_cause"]["description"] = "d" * 9000
    answer["root_cause"]["reasoning"] = "w" * 9000
    schema = analysis_json_schema()["properties"]
    root, item = schema["root_cause"]["properties"], \
        schema["recommended_actions"]["items"]["properties"]

    analysis = parse_llm_analysis(json.dumps(answer), "llama3:latest")

    assert len(analysis.recommended_actions) == schema["recommended_actions"]["maxItems"] == 5
    assert len(analysis.recommended_actions[0].action) == item["action"]["maxLength"]
    assert len(analysis.recommended_actions[0].reasoning) == item["reasoning"]["maxLength"]
    assert analysis.recommended_actions[0].action.endswith("…")
    assert len(analysis.root_cause.description) == root["description"]["maxLength"]
    assert len(analysis.root_cause.reasoning) == root["reasoning"]["maxLength"]
    assert len(analysis.estimated_customer_impact) == (
        schema["estimated_customer_impact"]["maxLength"])


def test_schema_bounds_every_string_and_list() -> None:
    for node in _walk(analysis_json_schema()):
        if node.get("type") == "string" and "enum" not in node:
            assert 0 < node["maxLength"] <= 1000, node
        if node.get("type") == "array":
            assert node["maxItems"] == 5, node


# --------------------------------------------------------------------------- fallback


def _assert_rule_based(analysis: Analysis) -> None:
    assert analysis.source == "rules"
    assert analysis.model is None
    assert analysis.root_cause.description.startswith("Rule-based:")
    assert analysis.root_cause.reasoning.startswith("Rule-based analysis (LLM unavailable):")
    last = analysis.recommended_actions[-1]
    assert "dashboards and logs" in last.action
    assert last.priority == max(a.priority for a in analysis.recommended_actions)


def test_fallback_blames_a_recent_deployment_and_rolls_back_to_the_previous_version() -> None:
    inc = incident(
        deployments=[
            deployment("v2.3.9", at=T0 - timedelta(hours=3)),
            deployment("v2.4.0", at=T0 - timedelta(minutes=7)),
        ]
    )

    analysis = fallback_analysis(inc)

    _assert_rule_based(analysis)
    cause = analysis.root_cause
    expected = "Deployment v2.4.0 of checkout at 2024-05-01T11:53:00Z likely caused"
    assert expected in cause.description
    assert cause.confidence == 70
    first = analysis.recommended_actions[0]
    assert first.action == "Roll back checkout to the previous version v2.3.9"
    assert (first.priority, first.risk) == (1, "medium")


def test_fallback_ignores_deployments_outside_the_window_or_after_the_anomaly() -> None:
    inc = incident(
        deployments=[
            deployment("v1", at=T0 - timedelta(minutes=45)),
            deployment("v2", at=T0 + timedelta(minutes=2)),
        ]
    )

    analysis = fallback_analysis(inc, deployment_window_s=1800)

    assert "Deployment" not in analysis.root_cause.description
    assert not any("Roll back" in a.action for a in analysis.recommended_actions)


def test_fallback_rollback_without_an_earlier_deployment_says_previous_version() -> None:
    inc = incident(deployments=[deployment("v2.4.0", at=T0 - timedelta(minutes=3))])

    analysis = fallback_analysis(inc)

    assert analysis.recommended_actions[0].action == "Roll back checkout to the previous version"


def test_fallback_points_at_the_database_on_database_errors() -> None:
    inc = incident(
        errors=[
            log_entry("psycopg2.OperationalError: could not connect to server"),
            log_entry("connection pool exhausted after 30s"),
        ]
    )

    analysis = fallback_analysis(inc)

    _assert_rule_based(analysis)
    assert "Database" in analysis.root_cause.description
    assert any("database" in a.action.lower() for a in analysis.recommended_actions)


def test_fallback_keeps_deployment_first_and_adds_database_actions() -> None:
    inc = incident(
        errors=[log_entry("deadlock detected while updating orders")],
        deployments=[deployment("v2.4.0", at=T0 - timedelta(minutes=3))],
    )

    analysis = fallback_analysis(inc)

    assert "Deployment v2.4.0" in analysis.root_cause.description
    actions = [a.action for a in analysis.recommended_actions]
    assert actions[0].startswith("Roll back checkout")
    assert any("database" in a.lower() for a in actions)
    assert [a.priority for a in analysis.recommended_actions] == list(
        range(1, len(actions) + 1)
    )


def test_fallback_points_at_memory_on_out_of_memory_errors() -> None:
    inc = incident(errors=[log_entry("java.lang.OutOfMemoryError: Java heap space")])

    analysis = fallback_analysis(inc)

    _assert_rule_based(analysis)
    assert "Memory" in analysis.root_cause.description
    assert any("Restart" in a.action for a in analysis.recommended_actions)


def test_fallback_points_at_an_upstream_dependency_on_refused_connections() -> None:
    inc = incident(
        errors=[log_entry("dial tcp 10.0.0.7:8080: connect: connection refused"),
                log_entry("upstream 502")]
    )

    analysis = fallback_analysis(inc)

    _assert_rule_based(analysis)
    assert "upstream dependency" in analysis.root_cause.description
    assert analysis.root_cause.confidence == 55


def test_fallback_calls_latency_only_anomalies_capacity() -> None:
    analysis = fallback_analysis(incident())

    _assert_rule_based(analysis)
    assert "Capacity or saturation" in analysis.root_cause.description
    impact = analysis.estimated_customer_impact
    assert impact == "Significant: Slow responses for users of checkout."


def test_fallback_calls_an_error_rate_spike_alone_application_errors() -> None:
    spike = anomaly("error_rate", value=40, mean=2, std=1, z=38, kind="error_rate")
    inc = incident(anomalies=[spike])

    analysis = fallback_analysis(inc)

    assert "Application errors" in analysis.root_cause.description
    assert "failed requests" in analysis.estimated_customer_impact.lower()


def test_fallback_says_unknown_with_low_confidence_when_nothing_matches() -> None:
    inc = incident(anomalies=[anomaly("orders_per_minute", value=3, mean=120, std=10, z=-11.7)])

    analysis = fallback_analysis(inc)

    _assert_rule_based(analysis)
    assert "Unknown; investigate" in analysis.root_cause.description
    assert analysis.root_cause.confidence <= 20
    assert analysis.estimated_customer_impact.startswith("Significant")


def test_fallback_severity_is_the_incident_severity() -> None:
    for severity in Severity:
        assert fallback_analysis(incident(severity=severity)).severity is severity


def test_fallback_stays_valid_for_huge_evidence() -> None:
    inc = incident(
        service="s" * 256,
        anomalies=[anomaly("m" * 250, z=3.0 + i) for i in range(100)],
        errors=[log_entry("database " + "x" * 60000), log_entry("OOM " + "y" * 60000),
                log_entry("503 " + "z")],
        deployments=[deployment("v" * 256, at=T0 - timedelta(minutes=1))],
    )

    analysis = fallback_analysis(inc)

    assert 1 <= len(analysis.recommended_actions) <= 10
    assert len(analysis.root_cause.description) <= 2000
    assert len(analysis.root_cause.reasoning) <= 4000


def test_fallback_rollback_names_the_version_the_deployment_replaced() -> None:
    inc = incident(
        id="inc-1", severity=Severity.CRITICAL, trigger_reason="test", updated_at=T0,
        anomalies=[anomaly("api_latency_ms", value=900.0, mean=100.0, std=10.0, z=80.0)],
        deployments=[deployment("v2.0.0", metadata={"previous_version": "v1.9.3"})],
    )
    actions = [a.action for a in fallback_analysis(inc).recommended_actions]
    assert "Roll back checkout to the previous version v1.9.3" in actions
