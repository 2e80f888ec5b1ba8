"""Suspects and incident groups in what people read: the rule-based analysis, the LLM
prompt, the Slack root message, the LLM-versus-evidence note and the notification plan
of an incident grouped under another (autopilot.analysis, autopilot.grounding,
autopilot.blockkit, autopilot.notify)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from autopilot import blockkit
from autopilot.analysis import build_messages, fallback_analysis, parse_llm_analysis
from autopilot.grounding import evidence_top_suspect, named_services
from autopilot.models import Alert, Incident
from autopilot.notify import (
    NotifyConfig,
    NotifyState,
    PostRoot,
    UpdateRoot,
    due_at,
    plan,
)
from tests import factories
from tests.factories import T0, log_entry, suspect

#: The demo's error line (autopilot/demo.py): blames the upstream, mentions a pool.
DEMO_LINE = ("upstream request timeout: payments-gateway did not answer within 3000 ms "
             "(POST /v1/charges); connection pool exhausted (50/50 in use)")
GATEWAY = suspect("payments-gateway", score=0.8, fault_kind="code_error", has_telemetry=False,
                  reasons=["named in 20 error lines of checkout-api"])
CHECKOUT = suspect("checkout-api", score=0.4, fault_kind="network_delay",
                   reasons=["latency without resource saturation"])


def demo_incident(**fields: Any) -> Incident:
    return factories.incident(
        id="inc-checkout-api-1", service="checkout-api",
        errors=[log_entry(DEMO_LINE, at=T0 + timedelta(seconds=i)) for i in range(20)],
        **fields)


# --------------------------------------------------------------------------- rules


def test_rules_lead_with_the_upstream_the_demo_lines_blame_not_the_database() -> None:
    analysis = fallback_analysis(demo_incident(suspects=[GATEWAY, CHECKOUT]))
    description = analysis.root_cause.description
    assert description.startswith("Rule-based: payments-gateway is the likely cause (code error)")
    assert "no telemetry" in description
    assert "Database" not in description
    assert "payments-gateway" in analysis.recommended_actions[0].action
    assert "1. payments-gateway" in analysis.root_cause.reasoning
    # The database rule is still reported, after it.
    assert "Also seen" in analysis.root_cause.reasoning


def test_rules_on_the_demo_lines_without_suspects_rank_the_upstream_themselves() -> None:
    # An old record (no suspects): the rules rank its own evidence (autopilot.rca).
    analysis = fallback_analysis(demo_incident())
    assert analysis.root_cause.description.startswith("Rule-based: payments-gateway")


def test_control_own_service_first_keeps_the_rules_as_before() -> None:
    analysis = fallback_analysis(demo_incident(suspects=[CHECKOUT]))
    assert analysis.root_cause.description.startswith("Rule-based: Database problems")
    assert "Suspects ranked" not in analysis.root_cause.reasoning


def test_rules_name_the_fault_kind_of_a_resource_suspect() -> None:
    db = suspect("orders-db", score=0.9, fault_kind="resource",
                 reasons=["cpu_usage z=9.0 before its callers"])
    analysis = fallback_analysis(factories.incident(service="orders-api", suspects=[db]))
    assert "orders-db is the likely cause (resource saturation" in analysis.root_cause.description
    assert any("CPU" in a.action and "orders-db" in a.action
               for a in analysis.recommended_actions)


# --------------------------------------------------------------------------- prompt


def test_prompt_gives_the_ranked_suspects_and_says_the_evidence_ranked_them() -> None:
    group = factories.incident_group(("checkout-api", "inc-checkout-api-1"),
                                     ("frontend", "inc-frontend-1"))
    content = build_messages(demo_incident(suspects=[GATEWAY, CHECKOUT], group=group))[1][
        "content"]
    assert "ranked by the evidence" in content and "not yours to change" in content
    first = content.index("1. payments-gateway: likely code error, score 0.80, no telemetry")
    assert first < content.index("2. checkout-api: likely network delay")
    assert "named in 20 error lines of checkout-api" in content
    assert "Incident group" in content and "frontend (firing)" in content
    # Before the evidence it explains.
    assert first < content.index("Recent error log lines")


def test_the_model_cannot_set_the_evidence_top_suspect() -> None:
    answer = {
        "root_cause": {"description": "d", "confidence": 50, "reasoning": "r"},
        "recommended_actions": [{"action": "a", "reasoning": "r", "risk": "low",
                                 "priority": 1}],
        "severity": "high", "estimated_customer_impact": "i",
        "evidence_top_suspect": "checkout-api",
    }
    assert parse_llm_analysis(json.dumps(answer), "m").evidence_top_suspect is None


# --------------------------------------------------------------------------- mismatch


def llm(description: str) -> factories.Analysis:
    return factories.analysis(description=description)


def test_an_llm_root_cause_on_another_service_gets_the_evidence_top_suspect() -> None:
    inc = demo_incident(suspects=[GATEWAY, CHECKOUT])
    assert evidence_top_suspect(
        llm("checkout-api's connection pool is exhausted"), inc) == "payments-gateway"
    # Controls: naming the top suspect, naming no service, no suspects.
    assert evidence_top_suspect(
        llm("checkout-api times out because payments-gateway is down"), inc) is None
    assert evidence_top_suspect(llm("A pool is exhausted."), inc) is None
    assert evidence_top_suspect(llm("checkout-api is broken"), demo_incident()) is None


def test_named_services_are_whole_tokens() -> None:
    text = "The checkout-api pool; payments gateway slow."
    assert named_services(text, ["checkout", "checkout-api", "payments-gateway"]) == [
        "checkout-api", "payments-gateway"]


def test_message_shows_both_and_says_which_the_evidence_ranks_first() -> None:
    inc = demo_incident(suspects=[GATEWAY, CHECKOUT])
    analysis = llm("checkout-api's connection pool is exhausted").model_copy(
        update={"evidence_top_suspect": "payments-gateway"})
    payload = blockkit.render_incident(Alert(incident=inc, analysis=analysis),
                                       analysis_pending=False)
    texts = [b["text"]["text"] for b in payload["blocks"] if b["type"] == "section"]
    assert any("The LLM's root cause names checkout-api; the evidence ranks "
               "payments-gateway first." in t for t in texts)
    assert any("connection pool is exhausted" in t for t in texts)  # the LLM's, verbatim
    # Control: without the field there is no such note.
    plain = blockkit.render_incident(Alert(incident=inc, analysis=llm("x")),
                                     analysis_pending=False)
    assert "evidence ranks" not in json.dumps(plain)


# --------------------------------------------------------------------------- root message


def test_root_message_leads_with_the_top_suspect_and_lists_three() -> None:
    more = [suspect(f"svc-{i}", score=0.3 - i / 100) for i in range(3)]
    group = factories.incident_group(("checkout-api", "inc-checkout-api-1"),
                                     ("frontend", "inc-frontend-1"))
    inc = demo_incident(suspects=[GATEWAY, CHECKOUT, *more], group=group)
    payload = blockkit.render_incident(factories.Alert(incident=inc, analysis=llm("x")),
                                       analysis_pending=False)
    lead = payload["blocks"][1]["text"]["text"]
    assert lead.startswith("*Likely cause:* payments-gateway — code error (named in 20 error "
                           "lines of checkout-api; no telemetry of its own)")
    assert "1. *payments-gateway* · 0.80" in lead and "3. *svc-0*" in lead
    assert "svc-1" not in lead and "… and 2 more" in lead
    assert "*Incident group* (2 services): checkout-api (firing), frontend (firing)" in lead
    assert payload["text"].split(": ", 1)[1].startswith("likely cause payments-gateway")


def test_no_suspects_no_lead_block() -> None:
    payload = blockkit.render_incident(factories.alert(), analysis_pending=False)
    assert "Likely cause" not in json.dumps(payload)


def test_slack_limits_hold_with_huge_suspects() -> None:
    huge = [suspect("s" * 256, score=1.0, reasons=["r" * 5000] * 10) for _ in range(10)]
    members = [(f"{'m' * 200}-{i}", f"inc-{i}") for i in range(60)]
    inc = demo_incident(suspects=huge, group=factories.incident_group(
        ("checkout-api", "inc-checkout-api-1"), *members))
    payload = blockkit.render_incident(
        Alert(incident=inc, analysis=llm("y").model_copy(
            update={"evidence_top_suspect": "s" * 256})), analysis_pending=False)
    blocks = payload["blocks"] + payload["attachments"][0]["blocks"]
    assert len(blocks) <= blockkit.BLOCKS_MAX
    for block in blocks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= blockkit.SECTION_TEXT_MAX


# --------------------------------------------------------------------------- grouping


WALL = 1_800_000_000.0
GROUPED = factories.incident_group(("frontend", "inc-frontend-1"),
                                   ("checkout-api", "inc-checkout-api-1"))


def test_an_incident_grouped_under_another_gets_no_message_and_no_page() -> None:
    config = NotifyConfig(mode="bot", group_wait_s=30, charts=False)
    notice = NotifyState().with_incident(demo_incident(group=GROUPED), WALL).notices[
        "inc-checkout-api-1"]
    new, actions = plan(notice, WALL + 30, config, "d1")
    assert actions == []
    assert new.grouped_under == "inc-frontend-1"
    for dt in (60, 3600, 5 * 3600):
        assert plan(new, WALL + dt, config, "d2")[1] == []
    assert due_at(new, config, "d2") is None
    # Control: the group's primary gets its message.
    primary = factories.incident_group(("checkout-api", "inc-checkout-api-1"),
                                       ("frontend", "inc-frontend-1"))
    own = NotifyState().with_incident(demo_incident(group=primary), WALL).notices[
        "inc-checkout-api-1"]
    assert plan(own, WALL + 30, config, "d1")[1] == [PostRoot()]


def test_a_posted_message_is_edited_once_to_say_it_was_grouped() -> None:
    config = NotifyConfig(mode="bot", group_wait_s=30, charts=False)
    state = NotifyState().with_incident(demo_incident(), WALL)
    posted, actions = plan(state.notices["inc-checkout-api-1"], WALL + 30, config, "d1")
    assert actions == [PostRoot()]
    grouped = demo_incident(revision=2, group=GROUPED)
    state = NotifyState({posted.incident_id: posted}).with_incident(grouped, WALL + 40)
    notice = state.notices["inc-checkout-api-1"]
    assert due_at(notice, config, "d2") is not None
    edited, actions = plan(notice, WALL + 40, config, "d2")
    assert actions == [UpdateRoot()]
    # Once: later records, reminders and changes send nothing more.
    later = NotifyState({edited.incident_id: edited}).with_incident(
        demo_incident(revision=3, group=GROUPED, state="resolved", status="resolved"),
        WALL + 50).notices["inc-checkout-api-1"]
    for dt in (60, 5 * 3600):
        assert plan(later, WALL + dt, config, "d3")[1] == []
    assert due_at(later, config, "d3") is None


def test_the_grouped_rendering_names_the_primary() -> None:
    payload = blockkit.render_incident(
        Alert(incident=demo_incident(group=GROUPED), analysis=llm("x")),
        analysis_pending=False)
    assert "GROUPED" in payload["blocks"][0]["text"]["text"]
    assert "Grouped under *frontend*'s incident `inc-frontend-1`" in payload["blocks"][1][
        "text"]["text"]
    assert payload["attachments"] == []
    assert "grouped under frontend's incident" in payload["text"]


def test_console_names_the_likely_cause_and_the_mismatch() -> None:
    analysis = llm("checkout-api's pool").model_copy(
        update={"evidence_top_suspect": "payments-gateway"})
    text = blockkit.render_console_event(
        Alert(incident=demo_incident(suspects=[GATEWAY]), analysis=analysis), "opened",
        analysis_pending=False)
    assert "likely cause: payments-gateway — code error" in text
    assert "the evidence ranks payments-gateway first" in text
    plain = blockkit.render_console_event(factories.alert(), "opened", analysis_pending=False)
    assert "likely cause" not in plain
