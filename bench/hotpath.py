#!/usr/bin/env python3
"""In-process cost per sample of the metrics pipeline's Python work (no broker).

    python bench/hotpath.py [--services 50] [--metrics 20] [--batch 500]
        [--records 200] [--single 4000] [--profile ingest|metrics|single]

Runs, on records generated like ``bench/throughput.py`` makes them, the functions the
two agents run per record: the ingest stage (:func:`autopilot.agents.ingest.forward`
with the metrics decoder: validate, group by service, encode for
``autopilot.metrics.keyed``) and the metrics stage
(:func:`autopilot.agents.metrics.process`, with plain dicts standing in for its
tables, no-ops for the chart sample store and a list for the anomalies topic). Faust,
Kafka, RocksDB and changelog writes are left out, so these are lower bounds of the live
costs.

Prints µs per sample for each stage on batched records (``--batch`` samples of one
service) and on single-sample records, and for the metrics stage also the part spent
in :func:`autopilot.detection.step_record` (the detector) and the rest. Timings are
the best of three runs (fresh state each) to damp noise from other processes.
``--profile STAGE`` prints a cProfile of that stage instead.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from throughput import batched_records, single_records  # noqa: E402

from autopilot import detection  # noqa: E402
from autopilot.detection import detector  # noqa: E402
from autopilot.replay import SOURCE_HEADER  # noqa: E402
from autopilot.topics import METRICS, METRICS_KEYED  # noqa: E402


class _Topic:
    """Collects what an agent sends (stands in for a Faust topic)."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, Any, Any]] = []

    async def send(self, key: Any = None, value: Any = None, headers: Any = None) -> Any:
        self.sent.append((key, value, headers))
        # Like Faust's FutureMessage: the metrics agent awaits the broker's ack.
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        return acked


def _event(topic: str, offset: int, key: bytes, value: bytes,
           headers: list[tuple[str, bytes]] | None = None) -> Any:
    message = SimpleNamespace(topic=topic, partition=0, offset=offset, key=key, value=value,
                              headers=headers or [])
    return SimpleNamespace(value=value, message=message)


def ingest_stage(records: list[tuple[bytes, bytes, int]]) -> tuple[float, list[Any]]:
    """Seconds of the ingest stage over ``records``; returns the keyed events too."""
    from autopilot.agents import ingest
    from autopilot.agents.decoding import decode_metrics_event

    target = _Topic()
    events = [_event(METRICS, i, k, v) for i, (k, v, _) in enumerate(records)]

    async def run() -> float:
        started = time.perf_counter()
        for event in events:
            await ingest.forward(event, decode_metrics_event, target)
        return time.perf_counter() - started

    elapsed = asyncio.run(run())
    keyed = [_event(METRICS_KEYED, i, k, v, h)
             for i, (k, v, h) in enumerate(target.sent)]
    return elapsed, keyed


def metrics_stage(keyed: list[Any]) -> tuple[float, float, int]:
    """``(seconds, seconds in step_record, anomalies)`` of the metrics stage."""
    from autopilot.agents import charts, metrics

    from autopilot.app import settings
    from autopilot.series import SeriesLimits

    config = detection.DetectorConfig.from_settings(settings())
    limits = SeriesLimits.from_settings(settings())
    metrics.baselines = {}
    metrics.series_index = {}
    # The recent samples charts draw live in the baselines value (measured with it);
    # the older recent_samples table, read for series without them, is a Faust table.
    charts.recent_samples = {}
    metrics.forget_samples = lambda series_key: None
    anomalies = metrics.anomalies_topic = _Topic()
    in_detector = [0.0]
    # detect_series (autopilot.detection.detector) looks step_record up in its module.
    original = detector.step_record

    def timed_step_record(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            in_detector[0] += time.perf_counter() - t

    detector.step_record = timed_step_record

    async def run() -> float:
        started = time.perf_counter()
        for event in keyed:
            await metrics.process(event, config, limits)
        return time.perf_counter() - started

    try:
        elapsed = asyncio.run(run())
    finally:
        detector.step_record = original
    return elapsed, in_detector[0], len(anomalies.sent)


def best_of(n: int, fn: Any) -> Any:
    """The result of ``fn()`` with the smallest first element, over ``n`` calls."""
    return min((fn() for _ in range(n)), key=lambda r: r[0])


def main() -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--services", type=int, default=50, help="services in the traffic")
    p.add_argument("--metrics", type=int, default=20, help="metrics per service")
    p.add_argument("--batch", type=int, default=500, help="samples per batched record")
    p.add_argument("--records", type=int, default=200, help="batched records")
    p.add_argument("--single", type=int, default=4000, help="single-sample records")
    p.add_argument("--profile", choices=["ingest", "metrics", "single"],
                   help="print a cProfile of that path instead of the table")
    args = p.parse_args()

    batched = list(batched_records(args.services, args.metrics, args.batch, args.records))
    single = single_records(batched)[: args.single]
    n_batched = sum(n for _, _, n in batched)

    if args.profile:
        records = single if args.profile == "single" else batched
        _, keyed = ingest_stage(records)
        prof = cProfile.Profile()
        prof.enable()
        if args.profile == "ingest":
            ingest_stage(records)
        else:
            metrics_stage(keyed)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return 0

    print(f"{'path':<22} {'samples':>8} {'µs/sample':>10} {'detector':>9} {'rest':>7}")
    for name, records, n in (("batched", batched, n_batched), ("single", single, len(single))):
        t_ingest, keyed = best_of(3, lambda records=records: ingest_stage(records))
        assert all(SOURCE_HEADER == h[0][0] for h in (e.message.headers for e in keyed))
        t_metrics, t_det, found = best_of(3, lambda keyed=keyed: metrics_stage(keyed))
        print(f"{name + ' ingest':<22} {n:>8} {1e6 * t_ingest / n:>10.2f}")
        print(f"{name + ' metrics':<22} {n:>8} {1e6 * t_metrics / n:>10.2f} "
              f"{1e6 * t_det / n:>9.2f} {1e6 * (t_metrics - t_det) / n:>7.2f}"
              f"   ({found} anomalies)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
