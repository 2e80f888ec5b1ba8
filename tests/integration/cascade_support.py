"""Shared setup of the incident-group tests (test_cascade.py, test_signal_suspects.py):
the ``frontend → payments-api → orders-db`` service graph plus an unconnected
``billing``, the worker environment with a Slack Web API stand-in, and metric helpers
that warm a series up and make it fail.

Event time: a series is warmed with ``WARM`` samples from ``START`` every ``STEP``
seconds (``PATTERN`` repeated, values about 100); failures start at ``FAIL_AT``, the
first event time after the warm-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from tests.factories import metric
from tests.integration.conftest import WARM, BrokerUnderTest, Worker, as_bytes, produce, wait_for
from tests.standins import SlackWebApiServer, free_port

START = 1_700_000_000.0
STEP = 15.0
PATTERN = [100.0, 104.0, 96.0, 102.0, 98.0, 105.0, 95.0, 101.0, 99.0, 100.0]
FAIL_AT = START + WARM * STEP
LEAF, MIDDLE, TOP, ALONE = "orders-db", "payments-api", "frontend", "billing"
GRAPH = f"# caller -> callee\n{TOP} -> {MIDDLE}\n{MIDDLE} -> {LEAF}\n"


def write_graph(directory: Path) -> Path:
    """``GRAPH`` written to ``directory/graph.txt`` (for ``AUTOPILOT_SERVICE_GRAPH``)."""
    path = directory / "graph.txt"
    path.write_text(GRAPH)
    return path


def slack_env(slack: SlackWebApiServer, graph: Path, **extra: str) -> dict[str, str]:
    """A worker's environment: Slack at the stand-in (channel ``alerts``), Ollama at a
    free port with nothing there (rule-based analysis, 2 s timeout), the service graph
    from ``graph``, a group wait of 6 s (long enough for the group to form before a
    member's first message is due) and a 1 s group interval; ``extra`` added last."""
    return {
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_CHANNEL": "alerts",
        "SLACK_API_URL": slack.base_url,
        "OLLAMA_URL": f"http://127.0.0.1:{free_port()}",  # nothing there: rule-based analysis
        "OLLAMA_TIMEOUT_S": "2",
        "AUTOPILOT_SERVICE_GRAPH": str(graph),
        # long enough for the group to form before a member's first message is due
        "AUTOPILOT_GROUP_WAIT_S": "6",
        "AUTOPILOT_GROUP_INTERVAL_S": "1",
        **extra,
    }


def send(broker: BrokerUnderTest, service: str, items: list[dict[str, Any]]) -> None:
    """Metric samples of ``service`` to ``autopilot.metrics``, keyed by the service."""
    produce(broker.bootstrap, broker.topic("autopilot.metrics"),
            [(service.encode(), as_bytes(item)) for item in items])


def warm(broker: BrokerUnderTest, worker: Worker, series: Mapping[str, str]) -> None:
    """Send ``WARM`` normal samples of each ``service → metric name`` of ``series``,
    then wait (90 s each) until ``worker`` has seen all of them in the baselines."""
    for service, name in series.items():
        send(broker, service, [metric(service, PATTERN[i % 10], START + i * STEP, name=name)
                               for i in range(WARM)])

    def warmed(service: str, name: str) -> bool:
        found = worker.get(f"/baselines/{service}").json()["series"]
        return bool(found.get(f"{service}|{name}|", {}).get("samples_seen") == WARM)

    for service, name in series.items():
        wait_for(partial(warmed, service, name), 90, f"{service} warmed up")


def fail(broker: BrokerUnderTest, service: str, name: str, *, delay: float = 0.0,
         value: float = 1500.0) -> None:
    """Three samples of ``value`` for ``service``'s metric ``name`` from ``FAIL_AT +
    delay`` (event time, s), ``STEP`` apart."""
    send(broker, service, [metric(service, value, FAIL_AT + delay + j * STEP, name=name)
                           for j in range(3)])


def open_incident(worker: Worker, service: str) -> dict[str, Any] | None:
    """``service``'s open incident from ``GET /incidents/{service}``, or ``None``."""
    r = worker.get(f"/incidents/{service}")
    return r.json()["open_incident"] if r.status_code == 200 else None
