"""The metrics agent gives identical results whether samples come one per record or
batched (a JSON list per record): same anomalies, same baselines. Underneath,
:func:`autopilot.detection.step_record` over a record of N samples gives bit-for-bit
the baseline and verdicts of N calls of :func:`autopilot.detection.step`."""

from __future__ import annotations

import asyncio
import json
import random
import struct
from dataclasses import replace
from typing import Any

import pytest

from autopilot.detection import Baseline, DetectorConfig, step, step_record
from autopilot.series import SeriesLimits
from autopilot.settings import load_settings
from tests.factories import metric


def _samples() -> list[dict[str, Any]]:
    rng = random.Random(5)
    out = []
    for i in range(600):
        for name in ("api_latency_ms", "cpu_ratio", "requests_total"):
            value = 100.0 + rng.gauss(0.0, 5.0)
            if name == "requests_total":
                value = 10.0 * i + rng.random()
            if i in (300, 301, 450) and name != "requests_total":
                value *= 8
            out.append(metric("checkout", value, 1_700_000_000 + 15 * i, name=name, env="prod"))
    return out


def _run(per_record: int, mode: str, monkeypatch: pytest.MonkeyPatch) -> tuple[list, dict]:
    from autopilot.agents import metrics as agent

    from tests.events import keyed_metrics_event, metrics_agent_in_memory

    tables: dict[bytes, Any] = {}
    topic = metrics_agent_in_memory(monkeypatch, tables)
    config = DetectorConfig.from_settings(load_settings({"AUTOPILOT_DETECTOR_MODE": mode}))
    samples = _samples()

    async def run() -> None:
        for offset, start in enumerate(range(0, len(samples), per_record)):
            value = json.dumps(samples[start:start + per_record]).encode()
            await agent.process(keyed_metrics_event(value, offset), config, SeriesLimits())

    asyncio.run(run())
    finals = {k: {f: v for f, v in d.items() if f != "offsets"} for k, d in tables.items()}
    return [json.loads(v) for v in topic.sent], finals


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


def _same(a: float, b: float) -> bool:
    """Bit-for-bit float equality (NaN equals NaN, 0.0 differs from -0.0)."""
    return struct.pack("<d", a) == struct.pack("<d", b)


@pytest.mark.parametrize(
    ("mode", "metric", "metric_type"),
    [
        ("seed", "cpu", None),
        ("adaptive", "cpu", None),
        ("adaptive", "api_latency_ms", None),
        ("adaptive", "availability", None),
        ("adaptive", "requests_total", None),
        ("adaptive", "requests", "counter"),
    ],
)
@pytest.mark.parametrize("start_mode", ["seed", "adaptive"])
def test_a_record_of_n_samples_equals_n_single_steps(
    mode: str, metric: str, metric_type: str | None, start_mode: str
) -> None:
    """step_record keeps a record's state in local variables and builds one baseline:
    baseline and verdicts must be bit-for-bit those of one step() per sample (window
    wraps, level shifts, spikes, counter resets, repeated timestamps, a mode switch)."""
    config = DetectorConfig(mode=mode, window_size=7, min_samples=3, likelihood_warmup=20,
                            warmup_z=2.5, relearn_after=4,
                            episode_s=300.0).for_metric(metric, metric_type)
    rng = random.Random(3)
    samples, t, level, total = [], 1_700_000_000.0, 100.0, 0.0
    for i in range(400):
        t += rng.choice([15.0, 15.0, 15.0, 0.0, 60.0])
        value = level + rng.gauss(0.0, 2.0)
        if i % 97 == 50:
            level *= 3.0  # a level shift to re-learn
        if i % 41 == 7:
            value *= 20.0  # a spike
        if config.counter:
            total = 0.0 if i % 150 == 149 else total + abs(value)  # with counter resets
            value = total
        samples.append((value, t))
    start = Baseline(mode=start_mode, count=5, offsets={"other/0": 3}, last_timestamp=t - 1e9)

    stepped, expected = start, []
    for value, ts in samples:
        stepped, verdict = step(stepped, value, ts, config)
        expected.append(verdict)
    batched, verdicts = start, []
    for offset in range(0, len(samples), 37):
        batched, got = step_record(batched, samples[offset:offset + 37], offset, config, "s/0")
        verdicts += got

    assert replace(batched, offsets=stepped.offsets) == stepped
    assert batched.offsets == {"other/0": 3, "s/0": 370}
    assert len(verdicts) == len(expected) and any(v.anomalous for v in verdicts)
    for got_v, want in zip(verdicts, expected, strict=True):
        assert got_v == want
        for name in ("value", "mean", "std", "z_score", "deviation_percent", "score"):
            assert _same(getattr(got_v, name), getattr(want, name)), name
    for name in ("mean", "m2", "scale", "score_mean", "score_var", "score_short"):
        assert _same(getattr(batched, name), getattr(stepped, name)), name


def test_step_record_with_no_samples_only_advances_the_offset() -> None:
    b = Baseline(mode="adaptive", count=3, learned=3, mean=2.0, offsets={"": 1})
    after, verdicts = step_record(b, [], offset=5, config=DetectorConfig(mode="seed"))
    assert verdicts == [] and after == replace(b, offsets={"": 5})
