"""Feedback that teaches the detector, on a real worker and a real Apache Kafka: a
"Not an incident" record on ``autopilot.feedback`` stops a repeated benign departure
from producing an alert, while a clearly larger one still alerts; the feedback is in
the changelogged table (``GET /feedback/{service}``, ``autopilot feedback export``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from autopilot.feedback import Feedback
from autopilot.models import Anomaly
from tests.factories import metric
from tests.integration.conftest import (
    BrokerUnderTest,
    Worker,
    as_bytes,
    consume_all,
    produce,
    wait_for,
)
from tests.unit.test_feedback import DAY, START, batch_job_series

pytestmark = pytest.mark.integration

SERVICE = "billing"
SERIES = "billing|batch_queue_depth|"
PER_RECORD = 96


def _produce_rows(broker: BrokerUnderTest, rows: list) -> None:
    points = [metric(SERVICE, r.value, r.epoch_s, name="batch_queue_depth") for r in rows]
    produce(broker.bootstrap, broker.topic("autopilot.metrics"), [
        (SERVICE.encode(), as_bytes(points[i:i + PER_RECORD]))
        for i in range(0, len(points), PER_RECORD)])


def _anomalies(broker: BrokerUnderTest) -> list[Anomaly]:
    return [Anomaly.model_validate_json(r.value)
            for r in consume_all(broker.bootstrap, broker.topic("autopilot.anomalies"))]


def _day(a: Anomaly) -> int:
    return int((a.detected_at.timestamp() - START) // DAY)


def test_not_an_incident_stops_the_repeated_departure_but_a_larger_one_alerts(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    worker = start_worker()
    rows = batch_job_series(bigger_on_day=18)
    first_part = int(2 * DAY / 300)  # days 0 and 1: the first batch run pages

    def applied() -> int:
        series = worker.get(f"/baselines/{SERVICE}").json()["series"]
        return int(series.get(SERIES, {}).get("samples_seen", 0))

    _produce_rows(broker, rows[:first_part])
    wait_for(lambda: applied() == first_part, 60, "the first two days applied")
    alerts = wait_for(lambda: [a for a in _anomalies(broker) if a.state == "firing"], 20,
                      "the first batch run's alert")
    assert {_day(a) for a in alerts} == {1}, alerts

    # "Not an incident" on that alert: the Slack button (later) only produces this record
    fb = Feedback.from_anomaly(alerts[0], user="U0FEEDBACK", recorded_at=time.time(),
                               until=None, with_time_of_day=True, incident="inc-1")
    produce(broker.bootstrap, broker.topic("autopilot.feedback"),
            [(SERVICE.encode(), json.dumps([fb.to_dict()]).encode())])
    stored = wait_for(lambda: worker.get(f"/feedback/{SERVICE}").json()["feedback"], 30,
                      "the feedback in the table")
    assert Feedback.from_dict(stored[0]) == fb

    _produce_rows(broker, rows[first_part:])
    wait_for(lambda: applied() == len(rows), 120, "every sample applied")
    later = wait_for(lambda: [a for a in _anomalies(broker) if _day(a) >= 2], 20,
                     "the larger departure's alert")
    # days 5, 9, 13 and 17 repeat the batch run: suppressed (no record at all, not
    # even a re-send or a recovery); day 18's departure is clearly larger and alerts
    assert {_day(a) for a in later} == {18}, [(a.detected_at, a.z_score) for a in later]
    assert later[0].state == "firing" and later[0].z_score > 1.5 * fb.z_score
    metrics_text = worker.get("/metrics").text
    assert 'autopilot_anomalies_suppressed_total{reason="feedback"} 4.0' in metrics_text

    # the operator's export reads the changelog: the same record, as one JSON line
    exe = Path(sys.executable).with_name("autopilot")
    proc = subprocess.run([str(exe), "feedback", "export"], capture_output=True, text=True,
                          timeout=120, env=worker.env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [Feedback.from_dict(line) for line in lines] == [fb], proc.stderr
