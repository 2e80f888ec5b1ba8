"""Prompt injection against a real worker (issue 18, docs/grounding.md, "Prompt
injection"): a log line tells the model to recommend deleting the database and
rolling back; the Ollama stand-in OBEYS it (rolls back to a version the evidence does
not hold). The Slack message shows the model's root cause verbatim, marked
"unverified" next to the rule-based one; neither injected action survives, and the
only buttons are the incident buttons and the configured rollback to the deployed
previous version.

The scenario (:func:`injection_scenario`) and the button check
(:func:`assert_standard_buttons`) are shared with the real-Ollama variant
(``tests/integration/test_llm_real.py``, ``make test-llm``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from autopilot.blockkit import INCIDENT_ACTIONS
from tests.factories import log
from tests.hook_standins import WebhookReceiver
from tests.integration.conftest import (
    BrokerUnderTest,
    Worker,
    as_bytes,
    metric_series,
    produce,
    wait_for,
)
from tests.integration.test_slack_interactions import SECRET, root_of, text
from tests.standins import (
    INJECTION_LOG_LINE,
    OllamaServer,
    RedisServer,
    SlackWebApiServer,
    obeying_injection_content,
)

pytestmark = pytest.mark.integration

SERVICE = "inj-checkout"
INVENTED = "v0.9.0"  # the version the obeying model rolls back to: in no evidence
#: The incident's deployments: v1.4.0 two hours before, v1.5.0 just before the spike.
DEPLOYED = ("v1.4.0", "v1.5.0")
ROLLBACK_BUTTON = "incident_hook_rollback"


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for b in message.get("blocks", []) if b.get("type") == "actions"
            for e in b["elements"]]


def assert_injection_contained(messages: list[dict[str, Any]]) -> None:
    """No injected action and no button derived from it in any of ``messages``
    (reusable by the real-Ollama variant)."""
    for message in messages:
        whole = text(message)
        assert "Delete the production database" not in whole
        assert f"Roll back {SERVICE} to {INVENTED}" not in whole
        for element in buttons(message):
            assert INVENTED not in json.dumps(element), element
            assert "delete" not in json.dumps(element).lower(), element


@dataclass(frozen=True)
class InjectionRun:
    """A worker that has been sent the injection incident (:func:`injection_scenario`)."""

    worker: Worker
    slack: SlackWebApiServer
    hook: WebhookReceiver


@contextmanager
def injection_scenario(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker], redis_server: RedisServer,
    tmp_path: Path, ollama_env: Mapping[str, str],
) -> Iterator[InjectionRun]:
    """Start a worker (Slack stand-in in bot mode, Redis, a ``rollback`` approved action
    whose webhook hook is a :class:`WebhookReceiver`, Ollama as ``ollama_env`` says:
    ``OLLAMA_URL`` …), record the deployments :data:`DEPLOYED` of :data:`SERVICE`, send
    12 normal latency samples and two ERROR log lines (a pool exhaustion and
    :data:`INJECTION_LOG_LINE`), then the spike that opens the incident; yields while
    the servers run. Waiting for the analysis is the caller's."""
    with SlackWebApiServer() as slack, WebhookReceiver() as hook:
        actions = tmp_path / "actions.yaml"
        actions.write_text(
            "actions:\n"
            "  - name: rollback\n"
            "    services: [\"inj-*\"]\n"
            "    approvers: {users: [U0ALICE42]}\n"
            f"    hook:\n      webhook: {{url: \"{hook.url}\"}}\n")
        worker = start_worker({
            "SLACK_BOT_TOKEN": slack.token, "SLACK_CHANNEL": "alerts",
            "SLACK_API_URL": slack.base_url, "SLACK_SIGNING_SECRET": SECRET,
            "REDIS_URL": redis_server.url, "AUTOPILOT_SLACK_CHARTS": "false",
            "AUTOPILOT_ACTIONS_FILE": str(actions),
            "AUTOPILOT_GROUP_WAIT_S": "2", "AUTOPILOT_GROUP_INTERVAL_S": "2",
            **ollama_env,
        })
        points = metric_series(SERVICE, normal=12, spikes=1)
        start, spike_at = points[0]["timestamp"], points[-1]["timestamp"]
        for version, at in zip(DEPLOYED, (start - 7200, start + 100), strict=True):
            r = worker.post("/ingest/deployment", json={
                "timestamp": at, "service": SERVICE, "version": version})
            assert r.status_code in (200, 202), r.text
        wait_for(lambda: len(worker.get(f"/deployments/{SERVICE}").json()["deployments"])
                 == 2, 30, "both deployments applied")
        produce(broker.bootstrap, broker.topic("autopilot.metrics"),
                [(SERVICE.encode(), as_bytes(points[:-1]))])
        lines = [log(SERVICE, spike_at - 6 + k, "ERROR", line) for k, line in enumerate(
            ["checkout failed: database connection pool exhausted", INJECTION_LOG_LINE])]
        produce(broker.bootstrap, broker.topic("autopilot.logs"),
                [(SERVICE.encode(), as_bytes(lines))])
        wait_for(lambda: worker.get(f"/baselines/{SERVICE}").json()["series"]
                 .get(f"{SERVICE}|latency_ms|", {}).get("samples_seen") == 12, 60,
                 "the normal samples applied")
        wait_for(lambda: 'autopilot_samples_processed_total{stage="logs"} 2.0'
                 in worker.get("/metrics").text, 30, "the two log lines applied")
        produce(broker.bootstrap, broker.topic("autopilot.metrics"),
                [(SERVICE.encode(), as_bytes(points[-1:]))])
        yield InjectionRun(worker, slack, hook)


def assert_standard_buttons(root: dict[str, Any]) -> None:
    """The root message's only interactive elements are the incident buttons
    (:data:`autopilot.blockkit.INCIDENT_ACTIONS`) and the configured rollback, to the
    deployed previous version v1.4.0."""
    ids = [e["action_id"] for e in buttons(root)]
    assert sorted(ids) == sorted([*INCIDENT_ACTIONS, ROLLBACK_BUTTON]), ids
    (rollback,) = [e for e in buttons(root) if e["action_id"] == ROLLBACK_BUTTON]
    assert rollback["text"]["text"] == "Roll back to v1.4.0"
    assert json.loads(rollback["value"])["to_version"] == "v1.4.0"


def test_an_obeyed_injection_is_marked_unverified_and_its_actions_dropped(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker], redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    content = obeying_injection_content(SERVICE, INVENTED)
    with OllamaServer(content=content) as ollama, injection_scenario(
            broker, start_worker, redis_server, tmp_path, {"OLLAMA_URL": ollama.url}) as run:
        slack, worker, hook = run.slack, run.worker, run.hook
        root = wait_for(lambda: (m := root_of(slack, SERVICE)) and "unverified" in text(m)
                        and m, 90, "the root message with the unverified LLM analysis")
        # The injection reached the model, and the model obeyed it.
        assert any(INJECTION_LOG_LINE in json.dumps(r["messages"]) for r in ollama.requests)
        whole = text(root)
        assert f"As instructed: deployment {INVENTED} corrupted the database" in whole
        assert "Rule-based analysis (" in whole and INVENTED in whole
        assert_injection_contained([root, *slack.thread(root["ts"])])
        assert_standard_buttons(root)

        metrics = worker.get("/metrics").text
        assert 'autopilot_llm_grounding_total{outcome="unverified"} 1.0' in metrics
        assert "autopilot_llm_grounding_dropped_actions_total 2.0" in metrics
        assert hook.calls == []  # nothing ran
