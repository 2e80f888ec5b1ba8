"""The metrics agent gives identical results whether samples come one per record or
batched (a JSON list per record): same anomalies, same baselines."""

from __future__ import annotations

import asyncio
import json
import random
from types import SimpleNamespace
from typing import Any

import pytest

from autopilot.detection import DetectorConfig
from autopilot.replay import SOURCE_HEADER, format_source
from autopilot.series import SeriesLimits
from autopilot.settings import load_settings


def _samples() -> list[dict[str, Any]]:
    rng = random.Random(5)
    out = []
    for i in range(600):
        for metric in ("api_latency_ms", "cpu_ratio", "requests_total"):
            value = 100.0 + rng.gauss(0.0, 5.0)
            if metric == "requests_total":
                value = 10.0 * i + rng.random()
            if i in (300, 301, 450) and metric != "requests_total":
                value *= 8
            out.append({"timestamp": 1_700_000_000 + 15 * i, "metric_name": metric,
                        "value": value, "labels": {"service": "checkout", "env": "prod"}})
    return out


def _run(per_record: int, mode: str, monkeypatch: pytest.MonkeyPatch) -> tuple[list, dict]:
    from agents import metrics as agent

    sent: list[dict] = []
    tables: dict[bytes, Any] = {}

    class Topic:
        async def send(self, key: bytes, value: bytes) -> asyncio.Future[None]:
            sent.append(json.loads(value))
            # Like Faust's FutureMessage: awaiting it waits for the broker's ack.
            acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            acked.set_result(None)
            return acked

    monkeypatch.setattr(agent, "baselines", tables)
    monkeypatch.setattr(agent, "series_index", {})
    monkeypatch.setattr(agent, "anomalies_topic", Topic())
    config = DetectorConfig.from_settings(load_settings({"AUTOPILOT_DETECTOR_MODE": mode}))
    samples = _samples()

    async def run() -> None:
        for offset, start in enumerate(range(0, len(samples), per_record)):
            value = json.dumps(samples[start:start + per_record]).encode()
            message = SimpleNamespace(
                topic="autopilot.metrics.keyed", partition=0, offset=offset,
                headers=[(SOURCE_HEADER, format_source("autopilot.metrics", 0, offset))])
            await agent.process(SimpleNamespace(value=value, message=message), config,
                                SeriesLimits())

    asyncio.run(run())
    finals = {k: {f: v for f, v in d.items() if f != "offsets"} for k, d in tables.items()}
    return sent, finals


@pytest.mark.parametrize("mode", ["adaptive", "seed"])
def test_single_and_batched_records_give_identical_anomalies_and_baselines(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    single = _run(1, mode, monkeypatch)
    batched = _run(500, mode, monkeypatch)
    # Within a record the agent works series by series, so only the order differs.
    def order(anomalies: list[dict]) -> list[dict]:
        return sorted(anomalies, key=lambda a: (a["detected_at"], a["series"]))

    assert order(single[0]) == order(batched[0])
    assert len(single[0]) >= 2  # the injected spikes were found
    assert single[1] == batched[1]
