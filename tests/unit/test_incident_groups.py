"""Incident groups (autopilot.incident_groups): connected services firing together are
one group; unconnected ones stay apart; merges, the stable primary, forgetting, bounds
and the state's round trip."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Literal

import pytest

from autopilot.incident_groups import (
    GroupConfig,
    GroupState,
    MemberUpdate,
    SignalUpdate,
    escalated,
    step,
    step_signal,
)
from autopilot.models import IncidentGroup
from autopilot.rca import Family, ServiceEvidence, SignalEvidence
from autopilot.servicegraph import ServiceGraph

T0 = 1_714_564_800.0
CONFIG = GroupConfig()


def member(service: str, *, at: float = T0, metric: str = "PodServerLatencyP99(s)",
           family: Family = "latency", z: float = 5.0,
           state: Literal["firing", "resolved"] = "firing",
           closed_at: float | None = None, named: tuple[str, ...] = (),
           updated_at: float | None = None, incident_id: str | None = None) -> MemberUpdate:
    signal = SignalEvidence(metric_name=metric, family=family, z=z, first_at=at,
                            firing=state == "firing")
    evidence = ServiceEvidence(service=service, onset=at, signals=(signal,), named=named,
                               named_lines=tuple(10 for _ in named),
                               error_lines=10 if named else 0)
    return MemberUpdate(service=service, incident_id=incident_id or f"inc-{service}",
                        state=state, opened_at=at,
                        updated_at=updated_at if updated_at is not None else at,
                        closed_at=closed_at, evidence=evidence)


def graph_of(*edges: tuple[str, str]) -> ServiceGraph:
    graph = ServiceGraph()
    for caller, callee in edges:
        graph.observe(caller, callee, "config", 0.0)
    return graph


def feed(updates: list[MemberUpdate], graph: ServiceGraph, config: GroupConfig = CONFIG,
         state: GroupState | None = None) -> tuple[GroupState, list[list[IncidentGroup]]]:
    out = []
    for update in updates:
        state, changed = step(state, update, graph, config, update.updated_at)
        out.append(changed)
    assert state is not None
    return state, out


SHOP = graph_of(("frontend", "checkout"), ("checkout", "db"), ("cart", "db"))


def test_a_group_of_one_is_returned_with_its_suspects() -> None:
    state, (changed,) = feed([member("checkout")], SHOP)
    assert len(changed) == 1
    group = changed[0]
    assert group.id == "grp-inc-checkout"
    assert group.primary_service == "checkout"
    assert [m.service for m in group.members] == ["checkout"]
    assert group.suspects[0].service == "checkout"
    assert state.member_group == {"inc-checkout": "grp-inc-checkout"}


def test_a_slow_database_under_two_services_is_one_group_led_by_the_database() -> None:
    # db's own signal began first (onset T0), though its incident opened later
    late_db = member("db", at=T0).model_copy(update={"opened_at": T0 + 90,
                                                     "updated_at": T0 + 90})
    updates = [member("checkout", at=T0 + 60), late_db, member("cart", at=T0 + 120)]
    state, changes = feed(updates, SHOP)
    last = changes[-1][0]
    assert len(state.groups) == 1
    assert last.id == "grp-inc-checkout"  # the first to open is the primary
    assert {m.service for m in last.members} == {"checkout", "db", "cart"}
    assert last.suspects[0].service == "db"
    # control: without the graph the three stay three groups
    apart, _ = feed(updates, ServiceGraph())
    assert len(apart.groups) == 3


def test_two_unrelated_simultaneous_faults_stay_two_groups() -> None:
    graph = graph_of(("frontend", "checkout"), ("checkout", "db"),
                     ("batch", "warehouse"))
    state, changes = feed([member("checkout"), member("warehouse", at=T0 + 5),
                           member("db", at=T0 + 10), member("batch", at=T0 + 20)], graph)
    groups = sorted(state.groups.values(), key=lambda g: g.id)
    assert [sorted(g.members) for g in groups] == [
        ["inc-checkout", "inc-db"], ["inc-batch", "inc-warehouse"]]
    assert changes[-1][0].suspects[0].service in {"batch", "warehouse"}
    # control: with an edge between the two halves (within 2 hops) they are one group
    joined = graph_of(("frontend", "checkout"), ("checkout", "db"),
                      ("batch", "warehouse"), ("db", "warehouse"))
    one, _ = feed([member("checkout"), member("warehouse", at=T0 + 5),
                   member("db", at=T0 + 10), member("batch", at=T0 + 20)], joined)
    assert len(one.groups) == 1
    assert next(iter(one.groups)) == "grp-inc-checkout"


def test_hops_and_time_decide() -> None:
    chain = graph_of(("a", "b"), ("b", "c"), ("c", "d"))
    near, _ = feed([member("a"), member("c", at=T0 + 1)], chain)
    assert len(near.groups) == 1  # 2 hops
    far, _ = feed([member("a"), member("d", at=T0 + 1)], chain)
    assert len(far.groups) == 2  # 3 hops > max_hops
    wide, _ = feed([member("a"), member("d", at=T0 + 1)], chain, GroupConfig(max_hops=3))
    assert len(wide.groups) == 1
    # a resolved incident joins a later one only within join_window_s
    ended = member("a", state="resolved", closed_at=T0 + 100, updated_at=T0 + 100)
    soon, _ = feed([member("a"), ended, member("b", at=T0 + 100 + 599)], chain)
    assert len(soon.groups) == 1
    late, _ = feed([member("a"), ended, member("b", at=T0 + 100 + 601)], chain)
    assert len(late.groups) == 2


def test_error_lines_naming_a_service_connect_it() -> None:
    updates = [member("checkout-api", named=("payments-gateway",), metric="error_rate",
                      family="error"),
               member("payments-gateway", at=T0 + 30)]
    state, changes = feed(updates, ServiceGraph())
    assert len(state.groups) == 1
    assert changes[-1][0].suspects[0].service == "payments-gateway"
    # before the gateway's own incident, it is already the top suspect, without telemetry
    first = changes[0][0].suspects[0]
    assert (first.service, first.has_telemetry) == ("payments-gateway", False)


def test_groups_merge_and_the_older_primary_stays() -> None:
    chain = graph_of(("a", "b"), ("b", "c"), ("c", "d"), ("d", "e"))
    # a and e are 4 hops apart: two groups; c connects both (2 hops each way)
    state, changes = feed([member("a"), member("e", at=T0 + 10), member("c", at=T0 + 20)],
                          chain)
    assert list(state.groups) == ["grp-inc-a"]
    assert {m.service for m in changes[-1][0].members} == {"a", "c", "e"}
    assert changes[-1][0].primary_incident_id == "inc-a"


def test_only_changes_are_returned_and_resolution_is_one() -> None:
    state, changes = feed([member("checkout"), member("db", at=T0 + 10)], SHOP)
    again, same = step(state, member("db", at=T0 + 10, updated_at=T0 + 70), SHOP, CONFIG,
                       T0 + 70)
    assert same == []  # nothing changed: membership, states and ranking as before
    resolved = member("db", at=T0 + 10, state="resolved", closed_at=T0 + 200,
                      updated_at=T0 + 200)
    after, changed = step(again, resolved, SHOP, CONFIG, T0 + 200)
    assert [m.state for m in changed[0].members if m.service == "db"] == ["resolved"]
    # a resolved incident that is in no group changes nothing
    _, none = step(after, member("cart", state="resolved", closed_at=T0), SHOP, CONFIG, T0)
    assert none == []


def test_quiet_groups_are_forgotten() -> None:
    state, _ = feed([member("checkout"),
                     member("checkout", state="resolved", closed_at=T0 + 10,
                            updated_at=T0 + 10)], SHOP)
    assert "grp-inc-checkout" in state.groups
    kept, _ = step(state, member("batch", at=T0 + 3000), SHOP, CONFIG, T0 + 3000)
    assert "grp-inc-checkout" in kept.groups
    gone, _ = step(state, member("batch", at=T0 + 4000), SHOP, CONFIG, T0 + 4000)
    assert "grp-inc-checkout" not in gone.groups
    assert "inc-checkout" not in gone.members


def test_bounds() -> None:
    star = graph_of(*[(f"s{i}", "hub") for i in range(10)])
    config = GroupConfig(max_members=3, max_groups=4)
    state, _ = feed([member("hub")] + [member(f"s{i}", at=T0 + i) for i in range(10)],
                    star, config)
    assert all(len(g.members) <= 3 for g in state.groups.values())
    assert len(state.groups) <= 4
    assert set(state.members) == {m for g in state.groups.values() for m in g.members}


def test_step_does_not_change_the_state_it_was_given() -> None:
    state, _ = feed([member("checkout")], SHOP)
    before = json.dumps(state.to_dict(), sort_keys=True)
    step(state, member("db", at=T0 + 5), SHOP, CONFIG, T0 + 5)
    assert json.dumps(state.to_dict(), sort_keys=True) == before


def test_state_round_trip() -> None:
    state, _ = feed([member("checkout"), member("db", at=T0 + 5), member("batch")], SHOP)
    data = json.loads(json.dumps(state.to_dict()))
    again = GroupState.from_dict(data)
    assert again.to_dict() == state.to_dict()
    assert again.member_group == state.member_group
    # the restored fingerprint still suppresses unchanged groups
    _, same = step(again, member("db", at=T0 + 5, updated_at=T0 + 60), SHOP, CONFIG, T0 + 60)
    assert same == []
    assert GroupState.from_dict(None).groups == {}
    assert GroupState.from_dict({"groups": [{"id": 1}, "x"], "members": [{"bad": 1}],
                                 "future": True}).groups == {}


def test_member_update_round_trip_and_bad_input() -> None:
    update = member("checkout", named=("db",), closed_at=None)
    data = json.loads(json.dumps(update.to_dict()))
    assert MemberUpdate.from_dict({**data, "kind": "member"}) == update
    with pytest.raises(ValueError, match="state"):
        MemberUpdate.from_dict({**data, "state": "open"})
    with pytest.raises(ValueError, match="opened_at"):
        MemberUpdate.from_dict({**data, "opened_at": "yesterday"})
    with pytest.raises(ValueError, match=r"evidence\.signals\.0\.z"):
        MemberUpdate.from_dict({**data, "evidence": {**data["evidence"], "signals": [
            {"metric_name": "m", "z": None, "first_at": T0}]}})


#: ``MemberUpdate``, ``SignalUpdate`` and the state's ``signals`` entry as written by the
#: dataclass versions (before the pydantic models): tables hold these, they must load.
STORED_EVIDENCE: dict[str, Any] = {
    "service": "checkout", "onset": 1767000000.0,
    "signals": [{"metric_name": "cpu_usage_percent", "family": "resource", "z": 7.5,
                 "first_at": 1767000000.0, "firing": True},
                {"metric_name": "http_errors_total", "family": "error", "z": -3.25,
                 "first_at": 1767000060.5, "firing": False}],
    "deployments": [[1766999000.0, "v2.4.1"]], "named": ["payments", "db"],
    "named_lines": [3, 1], "error_lines": 4, "has_telemetry": True}
STORED_MEMBER: dict[str, Any] = {
    "service": "checkout", "incident_id": "inc-1", "state": "resolved",
    "opened_at": 1767000000.0, "updated_at": 1767000300.0, "closed_at": 1767000360.0,
    "evidence": STORED_EVIDENCE}
STORED_SIGNAL_UPDATE: dict[str, Any] = {
    "service": "db", "at": 1767000030.0,
    "evidence": {"service": "db", "onset": 1767000030.0, "signals": [
        {"metric_name": "cpu_usage_percent", "family": "resource", "z": 7.5,
         "first_at": 1767000000.0, "firing": True}], "deployments": [], "named": [],
        "named_lines": [], "error_lines": 0, "has_telemetry": True}}
STORED_SIGNALS: dict[str, Any] = {"service": "db", "signals": [
    {"metric_name": "cpu_usage_percent", "family": "resource", "z": 7.5,
     "first_at": 1767000000.0, "firing": True, "last_at": 1767000030.0},
    {"metric_name": "http_errors_total", "family": "error", "z": -3.25,
     "first_at": 1767000060.5, "firing": False, "last_at": 1767000090.0}]}


def test_stored_updates_of_the_dataclass_versions_load_unchanged() -> None:
    update = MemberUpdate.from_dict({**STORED_MEMBER, "kind": "member"})
    assert (update.state, update.closed_at, update.end()) == ("resolved", 1767000360.0,
                                                              1767000360.0)
    assert update.evidence.deployments == ((1766999000.0, "v2.4.1"),)
    assert update.to_dict() == STORED_MEMBER
    signal = SignalUpdate.from_dict({**STORED_SIGNAL_UPDATE, "kind": "signal"})
    assert signal.to_dict() == STORED_SIGNAL_UPDATE
    stored = {"groups": [{"id": "grp-inc-1", "primary": "inc-1", "members": ["inc-1"],
                          "last_firing_at": 1767000300.0, "fingerprint": []}],
              "members": [STORED_MEMBER], "signals": [STORED_SIGNALS]}
    state = GroupState.from_dict(json.loads(json.dumps(stored)))
    assert state.to_dict() == stored
    assert [t for _, t in state.signals["db"].signals] == [1767000030.0, 1767000090.0]
    missing = {**STORED_SIGNALS, "signals": [{k: v for k, v in STORED_SIGNALS["signals"][0]
                                              .items() if k != "last_at"}]}
    assert GroupState.from_dict({**stored, "signals": [missing]}).signals == {}


def test_update_validation_names_the_field() -> None:
    for field, bad in (("service", ""), ("incident_id", 5), ("updated_at", None),
                       ("closed_at", float("inf")), ("evidence", "x")):
        with pytest.raises(ValueError, match=field):
            MemberUpdate.from_dict({**STORED_MEMBER, field: bad})
    with pytest.raises(ValueError, match="evidence"):
        SignalUpdate.from_dict({**STORED_SIGNAL_UPDATE, "evidence": None})


def test_config_from_settings() -> None:
    class Settings:
        group_max_hops = 3
        group_join_window_s = 120.0

    config = GroupConfig.from_settings(Settings())
    assert (config.max_hops, config.join_window_s, config.forget_after_s) == (3, 120.0, 3600.0)
    assert GroupConfig.from_settings(object()) == GroupConfig()


# ---- anomaly evidence of services without an incident (step_signal) ----------------


def signal(service: str, *, at: float, metric: str = "cpu_usage_percent",
           family: Family = "resource", z: float = 8.0, firing: bool = True) -> SignalUpdate:
    sig = SignalEvidence(metric_name=metric, family=family, z=z, first_at=at, firing=firing)
    return SignalUpdate(service=service, evidence=ServiceEvidence(
        service=service, onset=at, signals=(sig,)), at=at)


def test_a_culprit_with_one_anomaly_and_no_incident_ranks_first() -> None:
    # checkout's incident (latency, onset T0 + 60); db, its callee, only had one CPU
    # anomaly at T0 (no incident: the incident rules need more)
    state, _ = feed([member("checkout", at=T0 + 60)], SHOP)
    after, changed = step_signal(state, signal("db", at=T0), SHOP, CONFIG, T0 + 61)
    assert len(changed) == 1
    group = changed[0]
    assert [m.service for m in group.members] == ["checkout"]  # no member: no message
    assert group.suspects[0].service == "db"
    assert group.suspects[0].fault_kind == "resource"
    assert "db" not in {u.service for u in after.members.values()}
    # control: without the anomaly evidence, checkout is the only suspect
    assert [s.service for s in state.group_of("inc-checkout").suspects] == []  # type: ignore[union-attr]
    _, (alone,) = step(None, member("checkout", at=T0 + 60), SHOP, CONFIG, T0 + 60)
    assert [s.service for s in alone.suspects] == ["checkout"]
    # control: switched off, the anomaly evidence is ignored
    off = dataclasses.replace(CONFIG, signal_suspects=False)
    _, none = step_signal(state, signal("db", at=T0), SHOP, off, T0 + 61)
    assert none == []


def test_the_anomaly_evidence_also_ranks_when_the_incident_comes_later() -> None:
    state, none = step_signal(None, signal("db", at=T0), SHOP, CONFIG, T0)
    assert none == []  # no group yet
    _, (group,) = step(state, member("checkout", at=T0 + 60), SHOP, CONFIG, T0 + 60)
    assert group.suspects[0].service == "db"


def test_an_unconnected_or_late_anomalous_service_does_not_join_the_ranking() -> None:
    graph = graph_of(("frontend", "checkout"), ("checkout", "db"), ("batch", "warehouse"))
    state, _ = feed([member("checkout", at=T0 + 60)], graph)
    _, changed = step_signal(state, signal("warehouse", at=T0), graph, CONFIG, T0 + 61)
    assert changed == []  # not connected: not ranked
    state2, _ = step_signal(state, signal("warehouse", at=T0), graph, CONFIG, T0 + 61)
    assert "warehouse" not in state2.evidence_of("grp-inc-checkout", graph, CONFIG)
    # connected but its signal began long before the group (beyond join_window_s)
    old, _ = step_signal(state, signal("db", at=T0 - 5000), graph, CONFIG, T0 + 61)
    assert "db" not in old.evidence_of("grp-inc-checkout", graph, CONFIG)
    # control: connected and in time, it is ranked
    near, _ = step_signal(state, signal("db", at=T0), graph, CONFIG, T0 + 61)
    assert "db" in near.evidence_of("grp-inc-checkout", graph, CONFIG)


def test_signal_evidence_is_bounded_and_expires() -> None:
    config = GroupConfig(max_signal_services=3, max_signals_per_service=2)
    state: GroupState | None = None
    for i in range(6):
        state, _ = step_signal(state, signal(f"s{i}", at=T0 + i), SHOP, config, T0 + i)
    assert state is not None and sorted(state.signals) == ["s3", "s4", "s5"]
    for i, metric in enumerate(("a", "b", "c")):
        state, _ = step_signal(state, signal("s5", at=T0 + 10, metric=metric, z=1.0 + i),
                               SHOP, config, T0 + 10)
    assert [s.metric_name for s in state.signals["s5"].evidence().signals] == [
        "c", "cpu_usage_percent"]  # the strongest two (z 3 and 8)
    # a re-send of a firing signal keeps its first_at
    state, _ = step_signal(state, signal("s5", at=T0 + 20, metric="c", z=9.0), SHOP,
                           config, T0 + 20)
    kept = {s.metric_name: s for s in state.signals["s5"].evidence().signals}
    assert (kept["c"].first_at, kept["c"].z) == (T0 + 10, 9.0)
    # resolved: dropped join_window_s after; firing, not re-sent: after forget_after_s
    state, _ = step_signal(state, signal("s4", at=T0 + 30, firing=False), SHOP, config,
                           T0 + 30)
    assert "s4" in state.signals
    later, _ = step_signal(state, signal("s5", at=T0 + 700), SHOP, config, T0 + 700)
    assert "s4" not in later.signals and "s3" in later.signals
    much_later, _ = step_signal(later, signal("s5", at=T0 + 4000), SHOP, config, T0 + 4000)
    assert sorted(much_later.signals) == ["s5"]


def test_state_with_signals_round_trips_and_old_states_load() -> None:
    state, _ = feed([member("checkout", at=T0 + 60)], SHOP)
    state, _ = step_signal(state, signal("db", at=T0), SHOP, CONFIG, T0 + 61)
    data = json.loads(json.dumps(state.to_dict()))
    again = GroupState.from_dict(data)
    assert again.to_dict() == state.to_dict()
    assert again.evidence_of("grp-inc-checkout", SHOP, CONFIG) == state.evidence_of(
        "grp-inc-checkout", SHOP, CONFIG)
    old = {k: v for k, v in data.items() if k != "signals"}
    assert GroupState.from_dict(old).signals == {}
    assert set(GroupState.from_dict(old).groups) == {"grp-inc-checkout"}
    bad = {**data, "signals": [{"service": ""}, "x", {"service": "db", "signals": [{}]}]}
    assert GroupState.from_dict(bad).signals == {}


def test_signal_update_from_an_anomaly_and_round_trip() -> None:
    from tests.factories import anomaly as make_anomaly

    anomaly = make_anomaly("cpu_usage_percent", service="db", z=7.0)
    update = SignalUpdate.from_anomaly(anomaly)
    assert update.service == "db"
    (sig,) = update.evidence.signals
    assert (sig.family, sig.z, sig.firing) == ("resource", 7.0, True)
    assert update.at == sig.first_at == anomaly.detected_at.timestamp()
    data = json.loads(json.dumps(update.to_dict()))
    assert SignalUpdate.from_dict({**data, "kind": "signal"}) == update
    with pytest.raises(ValueError, match="at"):
        SignalUpdate.from_dict({**data, "at": None})
    with pytest.raises(ValueError, match="service"):
        SignalUpdate.from_dict({**data, "service": ""})


def test_a_members_new_episode_replaces_its_incidents_first_onset() -> None:
    # checkout's incident began at T0 - 3000 (an old episode of its CPU series); db's
    # incident opened at T0 + 60. checkout's CPU resolved and fired again at T0.
    old = member("checkout", at=T0 - 3000, metric="cpu_usage_percent", family="resource")
    state, _ = feed([old, member("db", at=T0 + 60)], SHOP)
    before = state.evidence_of("grp-inc-checkout", SHOP, CONFIG)
    assert before["checkout"].onset == T0 - 3000
    state, _ = step_signal(state, signal("checkout", at=T0), SHOP, CONFIG, T0 + 61)
    after = state.evidence_of("grp-inc-checkout", SHOP, CONFIG)
    assert after["checkout"].onset == T0
    assert [s.first_at for s in after["checkout"].signals] == [T0]
    assert after["db"] == before["db"]  # db had no anomaly evidence: unchanged
    # control: a re-send of the still-firing old episode changes nothing
    resend = signal("checkout", at=T0 - 3000)
    same, _ = step_signal(feed([old, member("db", at=T0 + 60)], SHOP)[0], resend, SHOP,
                          CONFIG, T0 - 3000)
    assert same.evidence_of("grp-inc-checkout", SHOP, CONFIG)["checkout"].onset == T0 - 3000


def test_a_firing_series_that_steps_up_starts_a_new_episode() -> None:
    # checkout's CPU has fired since T0 - 3000 (z 3, a chronic episode); db's incident
    # opened at T0 + 60; at T0 checkout's CPU is re-sent 30 times as far off (z 90)
    old = member("checkout", at=T0 - 3000, metric="cpu_usage_percent", family="resource",
                 z=3.0)
    state, _ = feed([old, member("db", at=T0 + 60)], SHOP)
    state, _ = step_signal(state, signal("checkout", at=T0 - 3000, z=3.0), SHOP, CONFIG,
                           T0 - 3000)
    stepped, _ = step_signal(state, signal("checkout", at=T0, z=90.0), SHOP, CONFIG, T0 + 1)
    after = stepped.evidence_of("grp-inc-checkout", SHOP, CONFIG)["checkout"]
    assert after.onset == T0 and after.signals[0].z == 90.0
    # control: a re-send near its level (z 4) stays the old episode
    near, _ = step_signal(state, signal("checkout", at=T0, z=4.0), SHOP, CONFIG, T0 + 1)
    assert near.evidence_of("grp-inc-checkout", SHOP, CONFIG)["checkout"].onset == T0 - 3000
    # control: switched off (factor 0), the step is an old episode too
    off = dataclasses.replace(CONFIG, escalation_factor=0.0)
    kept, _ = step_signal(state, signal("checkout", at=T0, z=90.0), SHOP, off, T0 + 1)
    assert kept.evidence_of("grp-inc-checkout", SHOP, off)["checkout"].onset == T0 - 3000


def test_escalated() -> None:
    def sig(z: float, firing: bool = True) -> SignalEvidence:
        return SignalEvidence(metric_name="cpu_usage_percent", family="resource", z=z,
                              first_at=T0, firing=firing)

    assert CONFIG.escalation_factor == 20.0
    assert escalated(sig(2.0), sig(40.0), CONFIG)
    assert escalated(sig(-2.0), sig(-40.0), CONFIG)
    assert not escalated(sig(2.0), sig(39.0), CONFIG)  # below the factor
    assert not escalated(sig(2.0), sig(-40.0), CONFIG)  # the other direction
    assert not escalated(sig(2.0, firing=False), sig(40.0), CONFIG)  # resolved before
    assert not escalated(sig(2.0), sig(40.0, firing=False), CONFIG)
