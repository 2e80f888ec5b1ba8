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
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.factories import metric
from tests.integration.conftest import (
    WARM,
    BrokerUnderTest,
    Worker,
    as_bytes,
    assert_quiet_for,
    consume_all,
    produce,
    wait_for,
)
from tests.standins import SlackWebApiServer, free_port

pytestmark = pytest.mark.integration

START = 1_700_000_000.0
STEP = 15.0
PATTERN = [100.0, 104.0, 96.0, 102.0, 98.0, 105.0, 95.0, 101.0, 99.0, 100.0]
FAIL_AT = START + WARM * STEP
LEAF, CALLER, TOP, ALONE = "orders-db", "payments-api", "frontend", "billing"
SERIES = {LEAF: "cpu_percent", CALLER: "latency_ms", TOP: "latency_ms", ALONE: "cpu_percent"}
GRAPH = f"{TOP} -> {CALLER}\n{CALLER} -> {LEAF}\n"


def _send(broker: BrokerUnderTest, service: str, items: list[dict[str, Any]]) -> None:
    produce(broker.bootstrap, broker.topic("autopilot.metrics"),
            [(service.encode(), as_bytes(item)) for item in items])


def _incident(worker: Worker, service: str) -> dict[str, Any] | None:
    r = worker.get(f"/incidents/{service}")
    return r.json()["open_incident"] if r.status_code == 200 else None


def _anomalies(broker: BrokerUnderTest, service: str) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in consume_all(
        broker.bootstrap, broker.topic("autopilot.anomalies"))
        if json.loads(r.value).get("service") == service]


def test_a_service_with_an_anomaly_and_no_incident_is_the_top_suspect(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker], tmp_path: Path,
) -> None:
    graph = tmp_path / "graph.txt"
    graph.write_text(GRAPH)
    with SlackWebApiServer() as slack:
        worker = start_worker({
            "SLACK_BOT_TOKEN": slack.token, "SLACK_CHANNEL": "alerts",
            "SLACK_API_URL": slack.base_url,
            "OLLAMA_URL": f"http://127.0.0.1:{free_port()}", "OLLAMA_TIMEOUT_S": "2",
            "AUTOPILOT_SERVICE_GRAPH": str(graph),
            "AUTOPILOT_GROUP_WAIT_S": "6", "AUTOPILOT_GROUP_INTERVAL_S": "1",
        })
        for service, name in SERIES.items():
            _send(broker, service, [metric(service, PATTERN[i % 10], START + i * STEP,
                                           name=name) for i in range(WARM)])

        def warmed(service: str, name: str) -> bool:
            series = worker.get(f"/baselines/{service}").json()["series"]
            return bool(series.get(f"{service}|{name}|", {}).get("samples_seen") == WARM)

        for service, name in SERIES.items():
            wait_for(partial(warmed, service, name), 90, f"{service} warmed up")
        # one mild (high, not critical: z about 3.5) CPU anomaly on the leaf and billing
        for service in (LEAF, ALONE):
            _send(broker, service, [metric(service, 112.0, FAIL_AT + j * STEP,
                                           name="cpu_percent") for j in range(3)])
        for service in (LEAF, ALONE):
            found = wait_for(lambda s=service: _anomalies(broker, s), 60,  # type: ignore[misc]
                             f"{service}'s anomaly")
            assert found[0]["severity"] in ("medium", "high"), found
        # the caller fails hard a minute later: its incident
        _send(broker, CALLER, [metric(CALLER, 1500.0, FAIL_AT + 60 + j * STEP,
                                      name="latency_ms") for j in range(3)])
        def suspects() -> Any:
            group = (_incident(worker, CALLER) or {}).get("group") or {}
            return group.get("suspects")

        try:
            ranked = wait_for(lambda: (suspects() or [{}])[0].get("service") == LEAF, 60,
                              "the caller's incident group ranking orders-db first")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; incident: {_incident(worker, CALLER)}") from None
        assert ranked
        suspects_now = suspects()
        assert ALONE not in {s["service"] for s in suspects_now}, suspects_now
        assert _incident(worker, LEAF) is None  # a suspect, no incident
        assert _incident(worker, ALONE) is None
        group = (_incident(worker, CALLER) or {})["group"]
        assert [m["service"] for m in group["members"]] == [CALLER]

        # Slack: one root message (the caller's), naming orders-db as the likely cause
        wait_for(lambda: any(LEAF in json.dumps(m) for m in slack.top_level()), 60,
                 "the caller's message naming orders-db")
        assert_quiet_for(3, lambda: len(slack.top_level()), "the number of root messages")
        (root,) = [json.dumps(m, ensure_ascii=False) for m in slack.top_level()]
        assert CALLER in root and ALONE not in root
        assert LEAF in root.split("Likely cause", 1)[1][:200], root[:1500]
