"""Incident groups: incidents of connected services firing at overlapping times are one
fault, one Slack conversation (issue #16, docs/rca.md).

Pure core: no Faust, no network. The grouping agent (one partition of
``autopilot.incident.groups``, so every decision is made in one place) keeps a
:class:`GroupState` in a table and calls :func:`step` for every :class:`MemberUpdate`
(one service's incident, as the live forwarder sends it).

Rules of :func:`step`:

* A firing incident joins the open group that has a member within
  ``GroupConfig.max_hops`` in the service graph (either direction; a service named in
  the other's error lines counts as connected) whose firing interval overlaps its
  own, or ended at most ``join_window_s`` before it opened. Otherwise it starts its own
  group (a group of one is still returned, so its suspects reach the incident).
* Groups that become connected through an update merge; the group whose primary
  opened first stays (its id and primary are kept).
* The primary is the first member to open, fixed when the group is made (stable: the
  Slack conversation does not move). Group id: ``"grp-" + primary incident id``.
* Suspects: :func:`autopilot.rca.rank_suspects` over the members' evidence (per
  service, its newest member's).
* Groups without a firing member for ``forget_after_s`` are dropped, with their
  members. Memory: at most ``max_groups`` groups of ``max_members`` members.

Cost per update: O(members of the state + the graph neighbourhood within
``max_hops``), both bounded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictFloat, StrictStr

from autopilot.models import Anomaly, GroupMember, IncidentGroup, Suspect
from autopilot.rca import (
    RcaConfig,
    ServiceEvidence,
    SignalEvidence,
    evidence_from_anomaly,
    rank_suspects,
)
from autopilot.servicegraph import ServiceGraph

__all__ = ["GroupConfig", "GroupState", "MemberUpdate", "SignalUpdate", "escalated", "step",
           "step_signal"]

MemberState = Literal["firing", "resolved"]


@dataclass(frozen=True)
class GroupConfig:
    """How incidents are grouped.

    ``max_hops`` (2): connected means at most this many edges apart in the service
    graph. ``join_window_s`` (600 s): an incident that ended at most this long before
    another opened still joins it. ``forget_after_s`` (3600 s): a group with no firing
    member for this long is dropped. ``max_members`` (50) per group; ``max_groups``
    (1000) kept. ``suspects`` (5): length of a group's ranked suspect list.
    ``signal_suspects`` (True): services with firing anomalies but no incident near a
    group (see :func:`step_signal`) are ranked with its members; the state keeps the
    anomaly evidence of at most ``max_signal_services`` (1000) services, at most
    ``max_signals_per_service`` (32) signals each. ``escalation_factor`` (20): a firing
    series whose new record's |z| is at least this many times its last one starts a
    new episode (:func:`escalated`; 0: never; set on bench/rca.py, see its docstring).
    """

    max_hops: int = 2
    join_window_s: float = 600.0
    forget_after_s: float = 3600.0
    max_members: int = 50
    max_groups: int = 1000
    suspects: int = 5
    signal_suspects: bool = True
    max_signal_services: int = 1000
    max_signals_per_service: int = 32
    escalation_factor: float = 20.0
    rca: RcaConfig = field(default_factory=RcaConfig)

    @classmethod
    def from_settings(cls, settings: object) -> GroupConfig:
        """From :class:`autopilot.settings.Settings`: ``group_max_hops``
        (``AUTOPILOT_GROUP_MAX_HOPS``), ``group_join_window_s``
        (``AUTOPILOT_GROUP_JOIN_WINDOW_S``), and, when present, ``group_forget_after_s``
        and ``group_max_members``; absent settings keep the defaults."""
        base = cls()
        return cls(
            max_hops=int(getattr(settings, "group_max_hops", base.max_hops)),
            join_window_s=float(getattr(settings, "group_join_window_s", base.join_window_s)),
            forget_after_s=float(getattr(settings, "group_forget_after_s",
                                         base.forget_after_s)),
            max_members=int(getattr(settings, "group_max_members", base.max_members)),
        )


_NonEmpty = Annotated[StrictStr, Field(min_length=1)]


class _Update(BaseModel):
    """Base of the grouping's records: frozen, unknown keys (such as ``kind``) ignored,
    NaN and infinity refused; times are strict numbers (epoch s)."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)


class MemberUpdate(_Update):
    """One service's incident as the grouping sees it (the record the live forwarder
    sends on ``autopilot.incident.groups`` with ``"kind": "member"``).

    Times are event time, epoch seconds: ``opened_at``, ``updated_at`` (its newest
    record), ``closed_at`` (``None`` while firing). ``evidence`` is
    :func:`autopilot.rca.evidence_from_incident` of the incident.
    """

    service: _NonEmpty
    incident_id: _NonEmpty
    state: MemberState
    opened_at: StrictFloat
    updated_at: StrictFloat
    closed_at: StrictFloat | None = None
    evidence: ServiceEvidence

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the fields (``evidence`` as its ``to_dict``)."""
        return {
            "service": self.service, "incident_id": self.incident_id, "state": self.state,
            "opened_at": self.opened_at, "updated_at": self.updated_at,
            "closed_at": self.closed_at, "evidence": self.evidence.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MemberUpdate:
        """Inverse of :meth:`to_dict` (unknown keys such as ``kind`` ignored).

        Raises:
            ValueError: a field is missing or of the wrong type (pydantic's
                ``ValidationError``; the message names the field, e.g.
                ``evidence.signals.0.z``).
        """
        return cls.model_validate(data)

    def end(self) -> float:
        """End of its firing interval: ``closed_at`` when resolved, else +inf."""
        if self.state == "firing":
            return math.inf
        return self.closed_at if self.closed_at is not None else self.updated_at


class SignalUpdate(_Update):
    """Anomaly evidence of one service, with or without an incident of its own (the
    record the live anomaly forwarder sends on ``autopilot.incident.groups`` with
    ``"kind": "signal"``): ``evidence`` holds the signals that fired or resolved (one
    per Anomaly record, :func:`autopilot.rca.evidence_from_anomaly`); ``at`` is the
    record's event time, epoch s."""

    service: _NonEmpty
    evidence: ServiceEvidence
    at: StrictFloat

    @classmethod
    def from_anomaly(cls, anomaly: Anomaly) -> SignalUpdate:
        """The update of one Anomaly record (firing or resolved)."""
        evidence = evidence_from_anomaly(anomaly)
        return cls(service=anomaly.service, evidence=evidence,
                   at=evidence.onset if evidence.onset is not None else 0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the fields (``evidence`` as its ``to_dict``)."""
        return {"service": self.service, "evidence": self.evidence.to_dict(), "at": self.at}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignalUpdate:
        """Inverse of :meth:`to_dict` (unknown keys such as ``kind`` ignored).

        Raises:
            ValueError: a field is missing or of the wrong type (pydantic's
                ``ValidationError``; the message names the field).
        """
        return cls.model_validate(data)


def escalated(old: SignalEvidence, new: SignalEvidence, config: GroupConfig) -> bool:
    """Whether a firing series' new record starts a new episode although the series
    never resolved: its |z| is at least ``config.escalation_factor`` times the last
    record's, in the same direction. A series that steps to a new level by an order of
    magnitude has a new cause — a fault on a service that was already off its baseline
    (a leak, an earlier fault) shows only this way — while a chronic one re-sent near
    its level stays one old episode. (Set on bench/rca.py, see its docstring; 0 turns
    it off.)"""
    factor = config.escalation_factor
    if factor <= 0 or not (old.firing and new.firing) or old.z * new.z <= 0:
        return False
    return abs(new.z) >= factor * abs(old.z)


class _Seen(NamedTuple):
    """A signal and its newest record's event time (``last_at``, epoch s)."""

    signal: SignalEvidence
    last_at: StrictFloat


def _seen_pairs(value: object) -> object:
    """Stored form ``[{…signal, "last_at": t}]`` → ``[{"signal": {…}, "last_at": t}]``
    (a missing ``last_at`` stays missing, so the error names it); ``None`` → empty."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        return value
    return [{"signal": raw, **({"last_at": raw["last_at"]} if "last_at" in raw else {})}
            if isinstance(raw, Mapping) else raw for raw in value]


class _Signals(_Update):
    """One service's anomaly evidence: metric name → (signal, its newest record's
    event time)."""

    service: _NonEmpty
    signals: Annotated[tuple[_Seen, ...], BeforeValidator(_seen_pairs)] = ()

    def last_at(self) -> float:
        return max((t for _, t in self.signals), default=-math.inf)

    def firing(self) -> bool:
        return any(sig.firing for sig, _ in self.signals)

    def evidence(self) -> ServiceEvidence:
        signals = tuple(sig for sig, _ in self.signals)
        onset = min((sig.first_at for sig in signals), default=None)
        return ServiceEvidence(service=self.service, onset=onset, signals=signals)

    def merged(self, update: SignalUpdate, config: GroupConfig) -> _Signals:
        """With the update's signals: a still-firing signal keeps its ``first_at``
        unless it :func:`escalated` (then the new record's episode replaces it); the
        strongest ``max_signals_per_service`` kept."""
        by_name = {sig.metric_name: _Seen(sig, t) for sig, t in self.signals}
        for sig in update.evidence.signals:
            old = by_name.get(sig.metric_name)
            if old is not None and old.signal.firing and not escalated(old.signal, sig, config):
                sig = SignalEvidence(
                    metric_name=sig.metric_name, family=sig.family,
                    z=sig.z if sig.firing else old.signal.z,
                    first_at=min(old.signal.first_at, sig.first_at), firing=sig.firing)
            by_name[sig.metric_name] = _Seen(sig, max(update.at, old.last_at if old else update.at))
        kept = sorted(by_name.values(), key=lambda p: (-abs(p.signal.z), p.signal.metric_name))
        kept = kept[:max(0, config.max_signals_per_service)]
        return _Signals(service=self.service,
                        signals=tuple(sorted(kept, key=lambda p: p.signal.metric_name)))

    def expired(self, now: float, config: GroupConfig) -> _Signals:
        """Without resolved signals older than ``join_window_s`` and firing ones not
        re-sent for ``forget_after_s``."""
        return _Signals(service=self.service, signals=tuple(
            seen for seen in self.signals
            if now - seen.last_at <= (config.forget_after_s if seen.signal.firing
                                      else config.join_window_s)))

    def to_dict(self) -> dict[str, Any]:
        return {"service": self.service,
                "signals": [{**sig.to_dict(), "last_at": t} for sig, t in self.signals]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> _Signals:
        """Inverse of :meth:`to_dict`. Raises ValueError naming the field at fault."""
        return cls.model_validate(data)


@dataclass
class _Group:
    id: str
    primary: str  # incident id
    members: list[str]  # incident ids, in join order
    last_firing_at: float
    fingerprint: tuple[Any, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "primary": self.primary, "members": list(self.members),
                "last_firing_at": self.last_firing_at,
                "fingerprint": _json_fingerprint(self.fingerprint)}


def _json_fingerprint(fp: tuple[Any, ...]) -> list[Any]:
    return [_json_fingerprint(x) if isinstance(x, tuple) else x for x in fp]


def _tuple_fingerprint(raw: Any) -> tuple[Any, ...]:
    if not isinstance(raw, list):
        return ()
    return tuple(tuple(_tuple_fingerprint(x)) if isinstance(x, list) else x for x in raw)


@dataclass
class GroupState:
    """Open incident groups and their members' newest :class:`MemberUpdate`.

    ``groups``: group id → group; ``members``: incident id → newest update;
    ``member_group``: incident id → group id; ``signals``: service → its recent
    anomaly evidence (:func:`step_signal`). JSON-safe via ``to_dict``/``from_dict``.
    """

    groups: dict[str, _Group] = field(default_factory=dict)
    members: dict[str, MemberUpdate] = field(default_factory=dict)
    member_group: dict[str, str] = field(default_factory=dict)
    signals: dict[str, _Signals] = field(default_factory=dict)

    def copy(self) -> GroupState:
        """A copy safe to change (groups copied, updates shared: they are frozen)."""
        return GroupState(
            groups={k: _Group(g.id, g.primary, list(g.members), g.last_firing_at,
                              g.fingerprint) for k, g in self.groups.items()},
            members=dict(self.members),
            member_group=dict(self.member_group),
            signals=dict(self.signals),
        )

    def group_of(self, incident_id: str) -> IncidentGroup | None:
        """The group an incident is in, as published (suspects not recomputed: empty
        here; :func:`step` returns the ranked group), or ``None``."""
        gid = self.member_group.get(incident_id)
        group = self.groups.get(gid) if gid is not None else None
        return _publish(group, self, []) if group is not None else None

    def to_dict(self) -> dict[str, Any]:
        """``{"groups": [group...], "members": [MemberUpdate.to_dict()...],
        "signals": [{"service", "signals": [signal + "last_at"...]}...]}``."""
        return {"groups": [self.groups[k].to_dict() for k in sorted(self.groups)],
                "members": [self.members[k].to_dict() for k in sorted(self.members)],
                "signals": [self.signals[k].to_dict() for k in sorted(self.signals)]}

    def evidence_of(self, group_id: str, graph: ServiceGraph,
                    config: GroupConfig) -> dict[str, ServiceEvidence]:
        """What a group is ranked on: service → evidence of its members (per service,
        its newest member's) plus, with ``config.signal_suspects``, the anomaly
        evidence of services that are no member, lie within ``config.max_hops`` of a
        member in ``graph`` (or are named in a member's error lines) and whose onset
        falls in the group's span widened by ``join_window_s`` on both sides. Empty
        for an unknown group."""
        group = self.groups.get(group_id)
        if group is None:
            return {}
        evidence = _evidence(group, self)
        if config.signal_suspects and self.signals:
            for service, ev in evidence.items():
                entry = self.signals.get(service)
                if entry is not None:
                    evidence[service] = _with_episodes(ev, entry)
            evidence.update(_signal_suspects(group, self, evidence, graph, config))
        return evidence

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> GroupState:
        """Inverse of :meth:`to_dict`; ``None`` or ``{}`` gives an empty state; unknown
        keys ignored; malformed members and groups skipped."""
        state = cls()
        if not data:
            return state
        for raw in data.get("members") or ():
            try:
                update = MemberUpdate.from_dict(raw)
            except (ValueError, TypeError):
                continue
            state.members[update.incident_id] = update
        for raw in data.get("groups") or ():
            if not isinstance(raw, Mapping):
                continue
            gid, primary = raw.get("id"), raw.get("primary")
            if not isinstance(gid, str) or not isinstance(primary, str):
                continue
            members = [m for m in raw.get("members") or () if m in state.members
                       and m not in state.member_group]
            if not members:
                continue
            last = raw.get("last_firing_at", 0.0)
            state.groups[gid] = _Group(
                gid, primary if primary in members else members[0], members,
                float(last) if isinstance(last, int | float) else 0.0,
                _tuple_fingerprint(raw.get("fingerprint")))
            for m in members:
                state.member_group[m] = gid
        for orphan in [m for m in state.members if m not in state.member_group]:
            del state.members[orphan]
        for raw in data.get("signals") or ():  # absent in states written before signals
            try:
                entry = _Signals.from_dict(raw)
            except (ValueError, TypeError, AttributeError):
                continue
            if entry.signals:
                state.signals[entry.service] = entry
        return state


def _connected(update: MemberUpdate, other: MemberUpdate, near: Mapping[str, int]) -> bool:
    if other.service in near:
        return True
    return (other.service in update.evidence.named
            or update.service in other.evidence.named)


def _overlaps(a: MemberUpdate, b: MemberUpdate, window: float) -> bool:
    gap = max(a.opened_at, b.opened_at) - min(a.end(), b.end())
    return gap <= window


def _evidence(group: _Group, state: GroupState) -> dict[str, ServiceEvidence]:
    newest: dict[str, MemberUpdate] = {}
    for mid in group.members:
        m = state.members[mid]
        old = newest.get(m.service)
        if old is None or (m.updated_at, m.incident_id) > (old.updated_at, old.incident_id):
            newest[m.service] = m
    return {s: m.evidence for s, m in newest.items()}


def _with_episodes(ev: ServiceEvidence, entry: _Signals) -> ServiceEvidence:
    """A member's evidence with its current anomaly episodes: an incident keeps each
    signal's first ``first_at``; a series that resolved and fired again since has a
    later episode in the anomaly evidence, which replaces it (signals the incident
    lacks are added). ``onset`` is recomputed from the signals."""
    by_name = {sig.metric_name: sig for sig in ev.signals}
    changed = False
    for sig, _ in entry.signals:
        old = by_name.get(sig.metric_name)
        if old is None or (sig.first_at > old.first_at and sig.firing):
            by_name[sig.metric_name] = sig
            changed = True
    if not changed:
        return ev
    signals = tuple(by_name[k] for k in sorted(by_name))
    return ev.model_copy(update={"signals": signals,
                                 "onset": min(sig.first_at for sig in signals)})


def _signal_suspects(group: _Group, state: GroupState, members: Mapping[str, ServiceEvidence],
                     graph: ServiceGraph, config: GroupConfig) -> dict[str, ServiceEvidence]:
    """Anomaly evidence of non-members near the group (see :meth:`GroupState.evidence_of`):
    only their signals that began in the group's widened span count. Cost: the graph
    neighbourhood of the members."""
    updates = [state.members[m] for m in group.members]
    start = min(u.opened_at for u in updates) - config.join_window_s
    end = max(u.end() for u in updates) + config.join_window_s
    near: set[str] = set()
    for service in members:
        near.update(graph.within(service, config.max_hops))
    for u in updates:
        near.update(u.evidence.named)
    out: dict[str, ServiceEvidence] = {}
    for service in sorted(near):
        entry = state.signals.get(service)
        if entry is None or service in members:
            continue
        kept = tuple(sig for sig, _ in entry.signals if start <= sig.first_at <= end)
        if kept:
            out[service] = ServiceEvidence(service=service,
                                           onset=min(sig.first_at for sig in kept),
                                           signals=kept)
    return out


def _publish(group: _Group, state: GroupState, suspects: list[Suspect]) -> IncidentGroup:
    primary = state.members[group.primary]
    members = sorted((state.members[m] for m in group.members),
                     key=lambda u: (u.opened_at, u.incident_id))
    return IncidentGroup(
        id=group.id,
        primary_service=primary.service,
        primary_incident_id=primary.incident_id,
        members=[GroupMember(service=m.service, incident_id=m.incident_id, state=m.state,
                             opened_at=m.opened_at) for m in members],
        suspects=suspects,
    )


def _fingerprint(group: _Group, state: GroupState, suspects: list[Suspect]) -> tuple[Any, ...]:
    members = tuple(sorted((m, state.members[m].state) for m in group.members))
    ranking = tuple((s.service, s.fault_kind) for s in suspects)
    return (group.primary, members, ranking)


def _firing(group: _Group, state: GroupState) -> bool:
    return any(state.members[m].state == "firing" for m in group.members)


def _drop(state: GroupState, gid: str) -> None:
    group = state.groups.pop(gid)
    for m in group.members:
        state.members.pop(m, None)
        state.member_group.pop(m, None)


def step(
    state: GroupState | None,
    update: MemberUpdate,
    graph: ServiceGraph,
    config: GroupConfig,
    now: float,
) -> tuple[GroupState, list[IncidentGroup]]:
    """Apply one member update (see the module docstring for the rules).

    Args:
        state: the current state (``None`` is empty); not changed (a new one is
            returned).
        update: the newest record of one service's incident.
        graph: the service graph.
        config: grouping settings.
        now: event time of the update's processing, epoch s (used to forget groups).

    Returns:
        The new state, and every group whose membership, member states or suspect
        ranking (services and fault kinds, in order) changed, each ranked; a new group
        of one included. A resolved update of an incident in no group changes nothing.
    """
    new = state.copy() if state is not None else GroupState()
    iid = update.incident_id
    own_gid = new.member_group.get(iid)
    if own_gid is None and update.state != "firing":
        return new, []
    new.members[iid] = update
    touched: list[str] = []
    if update.state == "firing":
        near = graph.within(update.service, config.max_hops)
        candidates: list[str] = []
        for gid, group in new.groups.items():
            if gid == own_gid:
                continue
            for mid in group.members:
                other = new.members[mid]
                if _connected(update, other, near) and _overlaps(
                        update, other, config.join_window_s):
                    candidates.append(gid)
                    break
        if own_gid is None:
            # join the oldest connected group with room, or start a group of one
            room = [g for g in candidates if len(new.groups[g].members) < config.max_members]
            if room:
                own_gid = min(room, key=lambda g: _age_key(new.groups[g], new))
                new.groups[own_gid].members.append(iid)
                candidates = [g for g in candidates if g != own_gid]
            else:
                own_gid = "grp-" + iid
                new.groups[own_gid] = _Group(own_gid, iid, [iid], update.updated_at)
                candidates = []
            new.member_group[iid] = own_gid
        # merge every other connected group into the one whose primary opened first
        for gid in sorted(candidates, key=lambda g: _age_key(new.groups[g], new)):
            own = new.groups[own_gid]
            theirs = new.groups[gid]
            if len(own.members) + len(theirs.members) > config.max_members:
                continue
            keep, gone = (own, theirs) if _age_key(own, new) <= _age_key(theirs, new) \
                else (theirs, own)
            keep.members.extend(gone.members)
            for m in gone.members:
                new.member_group[m] = keep.id
            del new.groups[gone.id]
            own_gid = keep.id
    assert own_gid is not None
    # firing until this update (a resolved one: until it closed)
    last = update.updated_at if update.state == "firing" else update.end()
    new.groups[own_gid].last_firing_at = max(new.groups[own_gid].last_firing_at, last)
    touched.append(own_gid)
    # forget quiet groups, then keep at most max_groups
    for gid in [g for g, grp in new.groups.items()
                if g != own_gid and not _firing(grp, new)
                and now - grp.last_firing_at > config.forget_after_s]:
        _drop(new, gid)
    while len(new.groups) > config.max_groups:
        victim = min(new.groups.values(), key=lambda g: (
            _firing(g, new), g.last_firing_at, g.id))
        if victim.id == own_gid:
            break
        _drop(new, victim.id)
    changed = [g for g in (_rerank(new, gid, graph, config) for gid in touched) if g]
    return new, changed


def _rerank(state: GroupState, gid: str, graph: ServiceGraph,
            config: GroupConfig) -> IncidentGroup | None:
    """Rank group ``gid`` again; the published group when its fingerprint changed."""
    group = state.groups.get(gid)
    if group is None:
        return None
    suspects = rank_suspects(state.evidence_of(gid, graph, config), graph,
                             limit=config.suspects, config=config.rca)
    fingerprint = _fingerprint(group, state, suspects)
    if fingerprint == group.fingerprint:
        return None
    group.fingerprint = fingerprint
    return _publish(group, state, suspects)


def step_signal(
    state: GroupState | None,
    update: SignalUpdate,
    graph: ServiceGraph,
    config: GroupConfig,
    now: float,
) -> tuple[GroupState, list[IncidentGroup]]:
    """Apply one service's anomaly evidence (a :class:`SignalUpdate`).

    The state keeps each service's recent signals (a firing one keeps its first
    ``first_at`` across re-sends unless it :func:`escalated`; resolved signals are
    dropped ``join_window_s`` after their last record, firing ones not re-sent for
    ``forget_after_s``; at most ``max_signal_services`` services, the least recently
    updated dropped first). A
    service with anomaly evidence is no group member (it gets no message of its own);
    it is ranked as a suspect of every group with a member within ``max_hops`` in the
    graph (or naming it in error lines) when its signals began in the group's span
    (:meth:`GroupState.evidence_of`).

    Args:
        state: the current state (``None`` is empty); not changed.
        update: the service's new or resolved signals.
        graph: the service graph.
        config: grouping settings (``signal_suspects`` False: the update is ignored).
        now: event time of the update's processing, epoch s (used to expire signals).

    Returns:
        The new state, and every group near the service whose suspect ranking
        (services and fault kinds, in order) changed. Cost: O(services with signals
        + members of the state + the graph neighbourhood within ``max_hops``).
    """
    new = state.copy() if state is not None else GroupState()
    if not config.signal_suspects:
        return new, []
    old = new.signals.get(update.service) or _Signals(service=update.service)
    new.signals[update.service] = old.merged(update, config)
    for service, entry in list(new.signals.items()):
        kept = entry.expired(now, config)
        if not kept.signals:
            del new.signals[service]
        elif len(kept.signals) != len(entry.signals):
            new.signals[service] = kept
    while len(new.signals) > max(0, config.max_signal_services):
        victim = min(new.signals.values(), key=lambda e: (e.last_at(), e.service))
        del new.signals[victim.service]
    near = graph.within(update.service, config.max_hops)
    touched = [gid for gid, group in new.groups.items()
               if any(new.members[m].service in near
                      or update.service in new.members[m].evidence.named
                      for m in group.members)]
    changed = [g for g in (_rerank(new, gid, graph, config) for gid in touched) if g]
    return new, changed


def _age_key(group: _Group, state: GroupState) -> tuple[float, str]:
    primary = state.members[group.primary]
    return (primary.opened_at, group.id)
