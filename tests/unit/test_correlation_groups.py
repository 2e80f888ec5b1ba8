"""``autopilot.correlation.on_group``: an incident placed in an incident group (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta

from autopilot.correlation import (
    CorrelationConfig,
    CorrelationState,
    on_group,
    step,
)
from autopilot.deployments import DeploymentHistory
from autopilot.models import GroupMember, Incident, IncidentGroup, Severity, Suspect
from tests.factories import T0, anomaly

CONFIG = CorrelationConfig()
WALL = 1_000_000.0


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def opened(service: str, minutes: float = 0.0) -> tuple[CorrelationState, Incident]:
    """The state of ``service`` with an incident opened by a critical anomaly."""
    a = anomaly(service=service, severity=Severity.CRITICAL, z=9.0, at=at(minutes))
    state, (record,) = step(CorrelationState(), a, source=None, deployments=DeploymentHistory(),
                            errors=[], wall_now=WALL, config=CONFIG)
    return state, record


def suspect(service: str, score: float, kind: str = "resource") -> Suspect:
    return Suspect(service=service, score=score, fault_kind=kind,
                   reasons=[f"{service} left its baseline first"])


def group(primary: Incident, *others: Incident, top: str = "db") -> IncidentGroup:
    members = [primary, *others]
    return IncidentGroup(
        id=f"grp-{primary.id}", primary_service=primary.service,
        primary_incident_id=primary.id,
        members=[GroupMember(service=i.service, incident_id=i.id, opened_at=i.opened_at)
                 for i in members],
        suspects=[suspect(top, 0.9), *(suspect(i.service, 0.3) for i in members
                                       if i.service != top)],
    )


def apply(state: CorrelationState, g: IncidentGroup, service: str,
          evidence: dict[str, str] | None = None) -> tuple[CorrelationState, list[Incident]]:
    return on_group(state, g, service=service, wall_now=WALL + 5,
                    deployments=DeploymentHistory(), errors=[], config=CONFIG,
                    evidence=evidence)


def test_the_primary_tells_who_joined_with_their_evidence_and_the_top_suspect() -> None:
    db_state, db = opened("db")
    _, checkout = opened("checkout", 1)
    new, (record,) = apply(db_state, group(db, checkout),
                           "db", {"checkout": "latency_ms z=6.1, 20 error lines"})
    assert record.id == db.id and record.revision == db.revision + 1
    assert record.status == "updated" and record.notify
    assert record.group is not None and record.group.primary_incident_id == db.id
    assert [s.service for s in record.suspects] == ["db", "checkout"]
    texts = [e.text for e in record.timeline if e.kind == "group"]
    assert texts[0] == "checkout joined this incident group: latency_ms z=6.1, 20 error lines"
    assert texts[1].startswith("top suspect: db (resource, score 0.90)")
    # the group is kept: the next record of the incident carries it too
    _, (later,) = step(new, anomaly("cpu", service="db", at=at(2)),
                       source=None, deployments=DeploymentHistory(), errors=[],
                       wall_now=WALL + 10, config=CONFIG)
    assert later.group == record.group and later.suspects == record.suspects


def test_the_same_group_again_changes_nothing_and_publishes_nothing() -> None:
    db_state, db = opened("db")
    _, checkout = opened("checkout", 1)
    g = group(db, checkout)
    once, _ = apply(db_state, g, "db")
    again, records = apply(once, g, "db")
    assert records == [] and again is once


def test_a_secondary_member_is_told_it_is_grouped_under_the_primary() -> None:
    _, db = opened("db")
    checkout_state, checkout = opened("checkout", 1)
    _, (record,) = apply(checkout_state, group(db, checkout), "checkout")
    assert record.notify
    assert [e.text for e in record.timeline if e.kind == "group"] == [
        f"grouped under db's incident (grp-{db.id})"]
    assert record.suspects[0].service == "db"  # the group's ranking, not its own


def test_a_score_change_alone_updates_the_record_without_notifying() -> None:
    db_state, db = opened("db")
    _, checkout = opened("checkout", 1)
    g = group(db, checkout)
    once, _ = apply(db_state, g, "db")
    rescored = g.model_copy(update={"suspects": [suspect("db", 0.8), suspect("checkout", 0.4)]})
    _, (record,) = apply(once, rescored, "db")
    assert not record.notify and record.suspects[0].score == 0.8
    assert [e.kind for e in record.timeline].count("group") == 2  # none added


def test_a_new_top_suspect_is_a_timeline_entry_on_the_primary() -> None:
    db_state, db = opened("db")
    _, checkout = opened("checkout", 1)
    once, _ = apply(db_state, group(db, checkout), "db")
    _, (record,) = apply(once, group(db, checkout, top="checkout"), "db")
    assert record.notify
    assert record.timeline[-1].text.startswith("top suspect: checkout")


def test_a_group_of_one_ranking_the_service_itself_adds_no_entry() -> None:
    db_state, db = opened("db")
    _, (record,) = apply(db_state, group(db), "db")
    assert not record.notify and not [e for e in record.timeline if e.kind == "group"]
    assert record.suspects[0].service == "db"


def test_a_group_of_another_incident_of_the_service_is_ignored() -> None:
    db_state, _ = opened("db")
    _, old_db = opened("db", -90)  # another incident id of the same service
    _, checkout = opened("checkout", 1)
    state, records = apply(db_state, group(old_db, checkout), "db")
    assert records == [] and state is db_state
    assert apply(CorrelationState(), group(old_db), "db") == (CorrelationState(), [])


def test_the_group_survives_the_table_and_old_states_load_without_one() -> None:
    db_state, db = opened("db")
    _, checkout = opened("checkout", 1)
    new, (record,) = apply(db_state, group(db, checkout), "db")
    back = CorrelationState.from_dict(new.to_dict())
    assert back == new and back.incident is not None and back.incident.group == record.group
    old = new.to_dict()
    del old["incident"]["group"]  # written before groups existed
    assert CorrelationState.from_dict(old).incident.group is None  # type: ignore[union-attr]
