"""Metrics agent: rolling baseline per series, z-score anomalies.

Consumes ``autopilot.metrics.keyed`` (lists of MetricPoint of one service), applies
:func:`autopilot.detection.detect_series` per series (one table write per series per
record, the series' recent samples for charts included:
:func:`autopilot.agents.charts.recent_after`; a keyed record made from a batch of
input records names each sample's input position, and a replayed input record changes
nothing: :mod:`autopilot.replay`) and sends
the Anomaly records it builds to ``autopilot.anomalies`` — alerts (state ``firing``),
and the series' firing signal: re-sends while it still fires and its recovery
(state ``resolved``; :mod:`autopilot.detection`, "Firing and recovery") — waiting
for the broker's
acknowledgement before it writes the baselines (a crash in between re-sends rather
than loses an anomaly). ``autopilot backtest`` runs the same function offline.

Before the detector sees a sample (:mod:`autopilot.series`): a sample more than
``AUTOPILOT_MAX_FUTURE_S`` ahead of the wall clock is dropped and never moves the
service's event-time clock (expiry); per series, a sample not newer than the last one
applied (``Baseline.last_timestamp``), or at that time with the same value (an HA
pair's second copy, a WAL replay, a retried request) is dropped
(:func:`autopilot.series.newer_only`). Both move
``autopilot_samples_dropped_total{reason}``.

Feedback ("Not an incident", :mod:`autopilot.feedback`): the service's records in the
``feedback`` table (same partition) are applied after the detector, which still scores
and learns every sample: an alert they match is not sent and moves
``autopilot_anomalies_suppressed_total{reason="feedback"}``, and the re-sends and the
recovery of its firing episode are not sent either (the baselines value remembers
that under :data:`MUTED_KEY`).

Service graph: a series whose labels name the service it calls (``AUTOPILOT_PEER_LABELS``,
:func:`autopilot.servicegraph.edges_from_labels`) is an edge observation, sent after the
baselines are written (:func:`autopilot.agents.groups.observe_edges`, at most once per
10 minutes per edge and worker).
"""

from __future__ import annotations

import functools
import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from functools import partial
from math import inf
from typing import Any

from autopilot.tables import baselines, feedback, series_index
from faust.types import EventT, StreamT

from autopilot import replay, telemetry
from autopilot.app import app, settings
from autopilot.detection import Baseline, DetectorConfig, SeriesResult, detect_series
from autopilot.feedback import FeedbackState, screen
from autopilot.models import MetricPoint, decode_records
from autopilot.series import SeriesIndex, SeriesLimits, newer_only, split_future
from autopilot.servicegraph import edges_from_labels
from autopilot.streams import anomalies_topic, metrics_keyed_topic

from .boundary import each_record
from .charts import RECENT_KEY, forget_samples, recent_after
from .deadletter import where
from .groups import observe_edges
from .ingest import positions_of, source_of

logger = logging.getLogger(__name__)
STAGE = "metrics"
#: This stage's counters (``.labels()`` is a locked dict lookup: bind them once).
_SAMPLES = telemetry.SAMPLES.labels(stage=STAGE)
_OUT_OF_ORDER = telemetry.SAMPLES_DROPPED.labels(reason="out_of_order")
#: Extra key of a ``baselines`` value written here (Baseline.from_dict ignores it): the
#: value of the sample at ``last_timestamp``, so a repeat of it is recognised.
LAST_VALUE_KEY = "last_value"
_FUTURE = telemetry.SAMPLES_DROPPED.labels(reason="future_timestamp")
_SUPPRESSED = telemetry.ANOMALIES_SUPPRESSED.labels(reason="feedback")
#: Extra key of a ``baselines`` value: true while the series' firing episode began with
#: an alert suppressed by feedback (its re-sends and recovery are not sent either).
MUTED_KEY = "feedback_muted"


@functools.lru_cache(maxsize=1)
def _peer_labels() -> tuple[str, ...]:
    """``AUTOPILOT_PEER_LABELS``, read once."""
    return settings().peer_label_list()


async def process(event: EventT[bytes], config: DetectorConfig, limits: SeriesLimits) -> None:
    """Apply one keyed metrics record (see module docstring)."""
    points = decode_records(event.value, MetricPoint)
    stream, offset = source_of(event)
    positions = positions_of(event, len(points))  # a batch of input records: per item
    by_series: dict[str, list[MetricPoint]] = defaultdict(list)
    stamps: dict[str, list[float]] = defaultdict(list)
    froms: dict[str, list[replay.Position]] = defaultdict(list)
    if positions is None:
        for p in points:
            by_series[p.series].append(p)
            stamps[p.series].append(p.timestamp.timestamp())
    else:
        for p, position in zip(points, positions, strict=True):
            by_series[p.series].append(p)
            stamps[p.series].append(p.timestamp.timestamp())
            froms[p.series].append(position)
    future = split_future(by_series, stamps, limits.future_horizon(time.time()),
                          *((froms,) if positions is not None else ()))
    if future:
        # The ingest stage refuses these already; a sample that got here anyway (an
        # older worker, a clock step) is dropped before it can move event time.
        _FUTURE.inc(future)
        logger.warning(
            "%s: dropped %d samples of %s timed more than %.0f s ahead of the clock "
            "(AUTOPILOT_MAX_FUTURE_S)", where(event), future, points[0].service,
            limits.max_future_s,
        )
        if not by_series:
            return
    service_key = points[0].service.encode()
    index = SeriesIndex.from_dict(series_index.get(service_key))
    newest = {key: max(ts) for key, ts in stamps.items()}
    new_index, admitted, dropped = index.admit(newest, limits)
    if dropped:
        telemetry.SERIES_DROPPED.inc(len(dropped))
        logger.warning(
            "%s: %s has %d series (AUTOPILOT_MAX_SERIES_PER_SERVICE); dropped %d new "
            "series, e.g. %s", where(event), points[0].service, len(index.last_seen),
            len(dropped), sorted(dropped)[0],
        )
    new_index, expired = new_index.expire(max(newest.values()), limits)
    for gone in expired:
        baselines.pop(gone.encode(), None)
        forget_samples(gone.encode())
    if expired:
        telemetry.SERIES_EXPIRED.inc(len(expired))
        logger.info("%s: expired %d series of %s not seen for %.0f s", where(event),
                    len(expired), points[0].service, limits.ttl_s)
    if new_index is not index:
        series_index[service_key] = new_index.to_dict()
    told = FeedbackState.from_dict(feedback.get(service_key))
    updates: list[tuple[bytes, Baseline, float, bool, dict[str, Any] | None]] = []
    sent = []
    edges: list[tuple[str, str]] = []
    for series, pts in by_series.items():
        if series not in admitted:
            continue
        for pair in edges_from_labels(points[0].service, pts[0].labels, _peer_labels()):
            if pair not in edges:
                edges.append(pair)
        key = series.encode()
        stored = baselines.get(key)
        new = Baseline.from_dict(stored)
        last_value = stored.get(LAST_VALUE_KEY) if stored else None
        results: list[SeriesResult] = []
        applied: list[MetricPoint] = []
        for run_stream, run_offset, run_pts, run_stamps in _runs(
                stream, offset, pts, stamps[series], froms.get(series), new):
            if not replay.seen(new.offsets, run_stream, run_offset):  # else a replay
                kept = newer_only(run_pts, run_stamps,
                                  new.last_timestamp if new.count else -inf, last_value)
                if len(kept) != len(run_pts):
                    _OUT_OF_ORDER.inc(len(run_pts) - len(kept))
                    logger.debug("%s: %s: dropped %d samples not newer than the last "
                                 "applied", where(event), series, len(run_pts) - len(kept))
                    if not kept:
                        continue
                    run_pts = kept
            new, run_results = detect_series(new, run_pts, run_offset, config,
                                             stream=run_stream)
            if run_results:  # else a replay of applied input records
                results.extend(run_results)
                applied.extend(run_pts)
                last_value = run_pts[-1].value
        if not results:
            continue  # replay of applied input records
        pts = applied
        muted = bool(stored.get(MUTED_KEY)) if stored else False
        mine = told.for_series(series) if told.records else []
        if mine or muted:
            results, suppressed, muted = screen(results, mine, muted, time.time())
            if suppressed:
                _SUPPRESSED.inc(suppressed)
                logger.info("%s: %s: %d alert(s) not sent: \"Not an incident\" feedback "
                            "matches the departure", where(event), series, suppressed)
        # The recent samples charts draw (bounded) go in the same value.
        updates.append((key, new, pts[-1].value, muted, recent_after(key, stored, pts)))
        for result in results:
            if result.anomaly is not None:
                anomaly = result.anomaly
                if result.verdict.anomalous:  # a new alert (or an escalation)
                    telemetry.ANOMALIES.labels(
                        kind="metric", severity=anomaly.severity.value).inc()
                else:  # a re-send or the recovery
                    telemetry.SIGNAL_RECORDS.labels(kind="metric", state=anomaly.state).inc()
                sent.append(await anomalies_topic.send(
                    key=anomaly.service.encode(), value=anomaly.model_dump_json().encode()
                ))
    # Anomalies first, acknowledged by the broker, then the baselines: a crash in
    # between replays the record and re-sends the same anomalies (the correlation
    # agent applies a re-sent anomaly once); the other order could lose them.
    for fut in sent:
        await fut
    for key, new, last_value, muted, recent in updates:
        value = new.to_dict()
        value[LAST_VALUE_KEY] = last_value  # with last_timestamp: what a repeat looks like
        if muted:
            value[MUTED_KEY] = True
        if recent is not None:
            value[RECENT_KEY] = recent
        baselines[key] = value
    _SAMPLES.inc(len(points))
    if edges:  # labels naming the called service: service-graph edges (agents.groups)
        await observe_edges(edges, "label", max(newest.values()))


Run = tuple[str, int, list[MetricPoint], list[float]]


def _runs(stream: str, offset: int, pts: list[MetricPoint], stamps: list[float],
          froms: list[replay.Position] | None, base: Baseline) -> Iterator[Run]:
    """The runs of one series' samples that :func:`detect_series` applies in turn:
    ``(stream, offset, samples, times)``.

    A record from one input position is one run. A batch (``froms``: each sample's
    input position) is cut where the input stream changes, and a sample is kept only
    when its input record comes after every record of its stream applied before it:
    after the offset ``base`` (the series' baseline before this record) holds for the
    stream, and after the records kept earlier in this keyed record (a replayed batch
    may be cut at other records than the first time; an input record that appears
    twice in one batch is applied once). Samples of one input record (one offset, in
    a row) go together. A run's offset is its last sample's.
    """
    if froms is None:
        yield stream, offset, pts, stamps
        return
    done: dict[str, int] = {}  # per stream: the last input offset applied or kept
    for run_stream, start, stop in replay.stream_runs(froms):
        applied = done.get(run_stream, base.offsets.get(run_stream, -1))
        current = None  # the input record whose samples are being kept
        keep: list[int] = []
        for i in range(start, stop):
            at = froms[i][1]
            if at == current or at > applied:
                if at != current:
                    applied, current = at, at
                keep.append(i)
            else:
                current = None  # a record applied before: its samples are left out
        done[run_stream] = applied
        if not keep:
            continue
        if len(keep) == stop - start:
            yield run_stream, froms[stop - 1][1], pts[start:stop], stamps[start:stop]
        else:
            yield (run_stream, froms[keep[-1]][1], [pts[i] for i in keep],
                   [stamps[i] for i in keep])


@app.agent(metrics_keyed_topic, name="metrics")
async def detect_metrics(stream: StreamT[bytes]) -> None:
    """Per-series baseline detection (adaptive or seed mode, see autopilot.detection)."""
    config = DetectorConfig.from_settings(settings())
    limits = SeriesLimits.from_settings(settings())
    await each_record(stream, STAGE, partial(process, config=config, limits=limits))


def baselines_for(service: str) -> dict[str, Any]:
    """View helper: the baselines of every series of ``service`` (local partition)."""
    index = SeriesIndex.from_dict(series_index.get(service.encode()))
    out = {}
    for series in index.keys:
        out[series] = Baseline.from_dict(baselines.get(series.encode())).summary()
    return {"service": service, "series": out}


