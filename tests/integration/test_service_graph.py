"""Edges of the service graph from trace context (issue 16; docs/rca.md): log lines with
``trace_id``, ``span_id`` and ``parent_span_id`` labels become one
``autopilot.traces`` record per trace per batch, and the trace linker turns the parent
span's service calling the child's into an edge shown by ``GET /service-graph``.
Records of the one-line shape written before spans were batched still link; a record
that is neither goes to the dead-letter topic with its reason. A real worker on the
test's Kafka.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.factories import log
from tests.integration.conftest import (
    BrokerUnderTest,
    Worker,
    as_bytes,
    consume_all,
    produce,
    wait_for,
)

pytestmark = pytest.mark.integration

T0 = 1_700_000_000.0


def _traced(service: str, at: float, trace: str, span: str,
            parent: str | None = None) -> dict[str, Any]:
    labels = {"trace_id": trace, "span_id": span}
    if parent:
        labels["parent_span_id"] = parent
    return {**log(service, at, "INFO", "handled request"), "labels": labels}


def _edges(worker: Worker) -> dict[tuple[str, str], list[str]] | None:
    r = worker.get("/service-graph")
    if r.status_code != 200:
        return None
    return {(e["caller"], e["callee"]): e["sources"] for e in r.json()["edges"]}


def test_trace_context_in_log_lines_becomes_service_graph_edges(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker],
) -> None:
    worker = start_worker()
    logs = broker.topic("autopilot.logs")
    # 20 traces: web's root span calls cart's span, which calls stock's (several lines
    # of one trace in one service's batch: one record per trace id per batch).
    produce(broker.bootstrap, logs, [
        (b"web", as_bytes(_traced("web", T0 + i, f"t{i}", f"w{i}")))
        for i in range(20)])
    produce(broker.bootstrap, logs, [  # one record: a list of a trace's 3 lines
        (b"cart", json.dumps([_traced("cart", T0 + i + 0.1 * j, f"t{i}", f"c{i}", f"w{i}")
                              for j in range(3)]).encode())
        for i in range(20)])
    produce(broker.bootstrap, logs, [
        (b"stock", as_bytes(_traced("stock", T0 + i + 0.5, f"t{i}", f"s{i}", f"c{i}")))
        for i in range(20)])
    # the one-line shape, straight onto the traces topic, and one bad record
    traces = broker.topic("autopilot.traces")
    produce(broker.bootstrap, traces, [
        (b"old", json.dumps({"trace_id": "old", "span_id": "a", "service": "api",
                             "at": T0}).encode()),
        (b"old", json.dumps({"trace_id": "old", "span_id": "b", "parent_span_id": "a",
                             "service": "db", "at": T0 + 1}).encode()),
        (b"bad", b'{"trace_id": "bad", "service": "api", "spans": []}'),
    ])

    want = {("web", "cart"), ("cart", "stock"), ("api", "db")}
    edges = wait_for(lambda: (e := _edges(worker)) and want <= set(e) and e,
                     60, f"the edges {sorted(want)} in GET /service-graph")
    assert all("trace" in edges[pair] for pair in want), edges
    # caller → callee only: no edge against the calls
    assert not {("cart", "web"), ("stock", "cart"), ("db", "api")} & set(edges), edges

    # one record per trace id per batch: cart's 3 lines of a trace are one record
    carts = [json.loads(r.value) for r in consume_all(broker.bootstrap, traces)
             if json.loads(r.value).get("service") == "cart"]
    assert carts and all(len(c["spans"]) == 3 for c in carts), carts[:3]
    assert all(len({s["parent_span_id"] for s in c["spans"]}) == 1 for c in carts), carts

    def dead() -> list[Any]:
        return [d for d in consume_all(broker.bootstrap, broker.topic("autopilot.deadletter"))
                if dict(d.headers).get("x-autopilot-topic") == traces.encode()]

    (letter,) = wait_for(dead, 30, "the bad trace record dead-lettered")
    reason = dict(letter.headers)["x-autopilot-reason"].decode()
    assert "spans" in reason, reason
