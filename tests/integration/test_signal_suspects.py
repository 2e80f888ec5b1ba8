"""A service with an anomaly but no incident of its own is ranked as a suspect of the
incident group near it, and gets no message (issue 16; docs/rca.md).

``frontend → payments-api → orders-db`` from an ``AUTOPILOT_SERVICE_GRAPH`` file, plus
an unconnected ``billing``. ``orders-db``'s CPU leaves its baseline once, mildly (one
high anomaly, z about 3.5: no incident rule fires), and so does ``billing``'s; a minute later
``payments-api``'s latency fails hard (a critical anomaly: an incident). A real worker
on the test's Kafka (the anomaly forwarder sends both anomalies to the grouping agent)
and a Slack Web API stand-in: one root message, for payments-api, naming orders-db as
the likely cause; billing is no suspect; orders-db has no incident.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

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

CALLER = MIDDLE
SERIES = {LEAF: "cpu_percent", CALLER: "latency_ms", TOP: "latency_ms", ALONE: "cpu_percent"}


def _anomalies(broker: BrokerUnderTest, service: str) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in consume_all(
        broker.bootstrap, broker.topic("autopilot.anomalies"))
        if json.loads(r.value).get("service") == service]


def test_a_service_with_an_anomaly_and_no_incident_is_the_top_suspect(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker], tmp_path: Path,
) -> None:
    with SlackWebApiServer() as slack:
        worker = start_worker(slack_env(slack, write_graph(tmp_path)))
        warm(broker, worker, SERIES)
        # one mild (high, not critical: z about 3.5) CPU anomaly on the leaf and billing
        for service in (LEAF, ALONE):
            fail(broker, service, "cpu_percent", value=112.0)
        for service in (LEAF, ALONE):
            found = wait_for(lambda s=service: _anomalies(broker, s), 60,  # type: ignore[misc]
                             f"{service}'s anomaly")
            assert found[0]["severity"] in ("medium", "high"), found
        # the caller fails hard a minute later: its incident
        fail(broker, CALLER, "latency_ms", delay=60.0)
        def suspects() -> Any:
            group = (open_incident(worker, CALLER) or {}).get("group") or {}
            return group.get("suspects")

        try:
            ranked = wait_for(lambda: (suspects() or [{}])[0].get("service") == LEAF, 60,
                              "the caller's incident group ranking orders-db first")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; incident: {open_incident(worker, CALLER)}") from None
        assert ranked
        suspects_now = suspects()
        assert ALONE not in {s["service"] for s in suspects_now}, suspects_now
        assert open_incident(worker, LEAF) is None  # a suspect, no incident
        assert open_incident(worker, ALONE) is None
        group = (open_incident(worker, CALLER) or {})["group"]
        assert [m["service"] for m in group["members"]] == [CALLER]

        # Slack: one root message (the caller's), naming orders-db as the likely cause
        wait_for(lambda: any(LEAF in json.dumps(m) for m in slack.top_level()), 60,
                 "the caller's message naming orders-db")
        assert_quiet_for(3, lambda: len(slack.top_level()), "the number of root messages")
        (root,) = [json.dumps(m, ensure_ascii=False) for m in slack.top_level()]
        assert CALLER in root and ALONE not in root
        assert LEAF in root.split("Likely cause", 1)[1][:200], root[:1500]
