"""A cascade across connected services is one incident group: one Slack conversation,
the leaf (the culprit) ranked first (issue 16; docs/rca.md).

``frontend → payments-api → orders-db`` from an ``AUTOPILOT_SERVICE_GRAPH`` file; the
database fails first (CPU), then its callers (latency), then an unconnected service
(``billing``). Real workers on the test's Kafka, a Slack Web API stand-in. With two
workers the three cascade services sit on three different partitions (murmur2 mod 4:
1, 3, 0), so at least two workers own one of them, and the group still forms (the
grouping is made on the one partition of ``autopilot.incident.groups``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiokafka.partitioner import murmur2

from tests.integration.cascade_support import (
    ALONE,
    LEAF,
    MIDDLE,
    TOP,
    fail,
    open_incident,
    slack_env,
    warm,
    write_graph,
)
from tests.integration.conftest import (
    BrokerUnderTest,
    Worker,
    assert_quiet_for,
    consume_all,
    wait_for,
)
from tests.standins import SlackWebApiServer

pytestmark = pytest.mark.integration

#: service → (metric, event-time delay of its failure after FAIL_AT, s)
FAILURES = {LEAF: ("cpu_percent", 0.0), MIDDLE: ("latency_ms", 60.0),
            TOP: ("latency_ms", 120.0), ALONE: ("latency_ms", 60.0)}


def _fail(broker: BrokerUnderTest, service: str) -> None:
    name, delay = FAILURES[service]
    fail(broker, service, name, delay=delay)


def _service_graph(worker: Worker) -> dict[str, Any] | None:
    r = worker.get("/service-graph")
    return r.json() if r.status_code == 200 else None


def _text(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False)


def _latest_records(broker: BrokerUnderTest) -> dict[str, dict[str, Any]]:
    """The newest Incident record of each service on ``autopilot.incidents``."""
    out: dict[str, dict[str, Any]] = {}
    for record in consume_all(broker.bootstrap, broker.topic("autopilot.incidents")):
        inc = json.loads(record.value)
        if inc["revision"] >= out.get(inc["service"], {}).get("revision", 0):
            out[inc["service"]] = inc
    return out


def _run_cascade(broker: BrokerUnderTest, workers: list[Worker],
                 slack: SlackWebApiServer) -> None:
    w = workers[0]
    warm(broker, w, {service: name for service, (name, _) in FAILURES.items()})
    # The leaf fails first; its callers follow once its incident is grouped (the
    # first member to open is the group's primary: its conversation is the group's).
    _fail(broker, LEAF)
    wait_for(lambda: (open_incident(w, LEAF) or {}).get("group"), 60, "the leaf's incident group")
    for service in (MIDDLE, TOP, ALONE):
        _fail(broker, service)

    def grouped() -> Any:
        records = _latest_records(broker)
        return all(len((records.get(s) or {}).get("group", {}).get("members", [])) == 3
                   for s in (LEAF, MIDDLE, TOP)) and (records.get(ALONE) or {}).get("group")

    wait_for(grouped, 60, "the three cascade incidents in one group, billing in its own")
    records = _latest_records(broker)
    leaf_group = records[LEAF]["group"]
    assert leaf_group["primary_service"] == LEAF
    for s in (MIDDLE, TOP):  # one group, the leaf first in everyone's suspects
        assert records[s]["group"]["id"] == leaf_group["id"]
        assert records[s]["suspects"][0]["service"] == LEAF, records[s]["suspects"]
    assert records[LEAF]["suspects"][0]["service"] == LEAF, records[LEAF]["suspects"]
    assert [m["service"] for m in records[ALONE]["group"]["members"]] == [ALONE]
    # the primary's timeline tells who joined, with their evidence
    joined = [e["text"] for e in records[LEAF]["timeline"] if e["kind"] == "group"]
    assert any(t.startswith(f"{MIDDLE} joined this incident group: latency_ms z=")
               for t in joined), joined
    assert any(t.startswith(f"{TOP} joined this incident group") for t in joined), joined

    # Slack: one conversation for the cascade (leaf first), one for billing
    def roots() -> list[dict[str, Any]]:
        return slack.top_level()

    wait_for(lambda: len(roots()) >= 2, 60, "the two root messages")
    # the joiners' evidence reaches the primary's conversation: its root message when
    # they joined before it was posted (the group's suspects with their evidence), else
    # the "joined this incident group" entries in its thread
    cascade = [m for m in roots() if LEAF in _text(m)]
    assert len(cascade) == 1, [_text(m)[:300] for m in roots()]

    def conversation() -> str:
        ts = cascade[0]["ts"]
        return _text([slack.messages[ts], *slack.thread(ts)])

    try:
        wait_for(lambda: all(s in conversation() for s in (MIDDLE, TOP, "latency_ms z=")),
                 30, "the joiners' evidence in the primary's conversation")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the conversation: {conversation()[:3000]}") from None
    assert_quiet_for(3, lambda: len(roots()), "the number of root messages")
    texts = [_text(m) for m in roots()]
    assert len(texts) == 2, [t[:300] for t in texts]
    (lead,) = [t for t in texts if LEAF in t]
    likely = lead.split("Likely cause", 1)[1]
    assert likely.find(LEAF) != -1 and all(
        likely.find(s) == -1 or likely.find(s) > likely.find(LEAF) for s in (MIDDLE, TOP)), lead
    (alone,) = [t for t in texts if LEAF not in t]
    assert ALONE in alone and MIDDLE not in alone

    # the view: the configured edges and the group, from every worker (routed)
    for worker in workers:
        view = wait_for(partial(_service_graph, worker), 30, "GET /service-graph")
        edges = {(e["caller"], e["callee"]) for e in view["edges"]}
        assert {(TOP, MIDDLE), (MIDDLE, LEAF)} <= edges
        (group,) = [g for g in view["groups"] if g["id"] == leaf_group["id"]]
        assert group["suspects"][0]["service"] == LEAF


@pytest.fixture
def graph_file(tmp_path: Path) -> Path:
    return write_graph(tmp_path)


def test_a_cascade_is_one_conversation_naming_the_leaf_first(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker], graph_file: Path,
) -> None:
    with SlackWebApiServer() as slack:
        worker = start_worker(slack_env(slack, graph_file))
        _run_cascade(broker, [worker], slack)


def test_the_cascade_groups_across_two_workers(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker], graph_file: Path,
) -> None:
    partitions = {s: (murmur2(s.encode()) & 0x7FFFFFFF) % 4 for s in (LEAF, MIDDLE, TOP)}
    assert len(set(partitions.values())) == 3, partitions  # at least two owners of 2 workers
    with SlackWebApiServer() as slack:
        env = slack_env(slack, graph_file, AUTOPILOT_PARTITIONS="4")
        w1 = start_worker(env, name="w1")
        w2 = start_worker(env, name="w2")
        wait_for(lambda: w1.get("/ready").status_code == 200
                 and w2.get("/ready").status_code == 200, 60, "both workers ready")
        _run_cascade(broker, [w1, w2], slack)
        owners = {s: {w.log_path.name for w in (w1, w2)
                      if f" for {s}: severity" in w.log_text()} for s in (LEAF, MIDDLE, TOP)}
        assert len(set().union(*owners.values())) == 2, owners  # both workers took part


def test_a_wrong_graph_file_stops_the_worker_naming_the_line(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker], tmp_path: Path,
) -> None:
    bad = tmp_path / "bad-graph.txt"
    bad.write_text("frontend -> payments-api\nthis is not an edge\n")
    worker = start_worker({"AUTOPILOT_SERVICE_GRAPH": str(bad)}, wait=False)
    proc = worker.proc
    assert proc is not None
    wait_for(lambda: proc.poll() is not None, 60, "the worker to refuse the graph file")
    assert proc.returncode == 2, worker.log_tail()
    assert "line 2" in worker.log_text() and str(bad) in worker.log_text()
