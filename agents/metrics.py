"""Metrics agent: rolling baseline per series, z-score anomalies.

Consumes ``autopilot.metrics.keyed`` (lists of MetricPoint of one service), applies
:func:`autopilot.detection.step_record` per series (one table write per series per
record; a replayed offset changes nothing) and sends an Anomaly to
``autopilot.anomalies`` for every anomalous sample.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from autopilot.tables import baselines, series_index

from autopilot import telemetry
from autopilot.app import app, settings
from autopilot.detection import Baseline, DetectorConfig, make_anomaly, step_record
from autopilot.errors import BadRecord
from autopilot.models import MetricPoint, decode_records
from autopilot.topics import anomalies_topic, metrics_keyed_topic

from .deadletter import dead_letter, where
from .rates import counter_rates

logger = logging.getLogger(__name__)
STAGE = "metrics"


def _index_add(service_key: bytes, new_series: list[str]) -> None:
    current = series_index.get(service_key) or {"series": []}
    merged = sorted(set(current["series"]) | set(new_series))
    series_index[service_key] = {"series": merged}


async def process(event: Any, config: DetectorConfig) -> None:
    """Apply one keyed metrics record (see module docstring)."""
    points = decode_records(event.value, MetricPoint)
    offset = event.message.offset
    by_series: dict[str, list[MetricPoint]] = defaultdict(list)
    for p in points:
        by_series[p.series].append(p)
    new_series: list[str] = []
    for series, pts in by_series.items():
        key = series.encode()
        rated = counter_rates(key, pts, offset)  # counters → per-second rates
        if not rated:
            continue  # replay, or the first sample of a counter
        pts = rated
        stored = baselines.get(key)
        base = Baseline.from_dict(stored)
        if stored is None:
            new_series.append(series)
        new, verdicts = step_record(
            base, [(p.value, p.timestamp.timestamp()) for p in pts], offset, config
        )
        if not verdicts:
            continue  # replay of an applied record
        baselines[key] = new.to_dict()
        for point, verdict in zip(pts, verdicts, strict=True):
            if verdict.anomalous:
                anomaly = make_anomaly(point, verdict)
                telemetry.ANOMALIES.labels(kind="metric", severity=anomaly.severity.value).inc()
                await anomalies_topic.send(
                    key=point.service.encode(), value=anomaly.model_dump_json().encode()
                )
    if new_series:
        _index_add(points[0].service.encode(), new_series)
    telemetry.SAMPLES.labels(stage=STAGE).inc(len(points))


@app.agent(metrics_keyed_topic, name="metrics")
async def detect_metrics(stream: Any) -> None:
    """Rolling-baseline z-score detection per series."""
    config = DetectorConfig.from_settings(settings())
    async for event in stream.events():
        try:
            await process(event, config)
            telemetry.RECORDS.labels(stage=STAGE).inc()
        except BadRecord as exc:
            await dead_letter(event, exc.reason, STAGE)
        except Exception as exc:
            logger.exception("%s: metrics agent failed; dead-lettering", where(event))
            await dead_letter(event, f"internal error: {type(exc).__name__}: {exc}", STAGE)


def baselines_for(service: str) -> dict[str, Any]:
    """View helper: the baselines of every series of ``service`` (local partition)."""
    index = series_index.get(service.encode()) or {"series": []}
    out = {}
    for series in index["series"]:
        out[series] = Baseline.from_dict(baselines.get(series.encode())).summary()
    return {"service": service, "series": out}


