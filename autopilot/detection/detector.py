"""The detector's entry points: one sample (:func:`step`), one source record
(:func:`step_record`, idempotent per offset), one record of a series with its Anomaly
records (:func:`detect_series`, the metrics agent's and ``autopilot backtest``'s one
code path), and the Anomaly records themselves (part of :mod:`autopilot.detection`).

Samples are ``(value, epoch seconds)`` pairs in the metric's own unit; the mode
(``seed`` or ``adaptive``) is the config's; a state of the other mode is re-learned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from autopilot import replay
from autopilot.detection.adaptive import run_adaptive
from autopilot.detection.config import DetectorConfig
from autopilot.detection.scoring import deviation_percent
from autopilot.detection.seed import run_seed
from autopilot.detection.state import Baseline, Verdict, slot_setter
from autopilot.models import Anomaly, MetricPoint, Severity

__all__ = [
    "SeriesResult", "detect_series", "make_anomaly", "make_signal_anomaly",
    "severity_of_rank", "step", "step_record",
]


def step(
    baseline: Baseline,
    value: float,
    timestamp: float,
    config: DetectorConfig,
) -> tuple[Baseline, Verdict]:
    """Score one sample, then learn from it.

    Args:
        baseline: the series' current baseline (a state of the other mode is
            replaced by a fresh one: switching modes re-learns).
        value: the sample (finite float, metric's own unit).
        timestamp: the sample's event time in epoch seconds.
        config: detection parameters, resolved for the series
            (:meth:`DetectorConfig.for_metric`).

    Returns:
        ``(new_baseline, verdict)``; the verdict compares the sample with the
        baseline *before* it joined (score first, then learn).
    """
    run = run_seed if config.mode == "seed" else run_adaptive
    new, (verdict,) = run(baseline, ((value, timestamp),), config, baseline.offsets)
    return new, verdict


def step_record(
    baseline: Baseline,
    samples: list[tuple[float, float]],
    offset: int,
    config: DetectorConfig,
    stream: str = "",
) -> tuple[Baseline, list[Verdict]]:
    """Apply the samples of one source record (same series) idempotently.

    The same as :func:`step` per sample in order (bit for bit), with one new
    baseline per record instead of one per sample.

    Args:
        baseline: current baseline.
        samples: ``(value, epoch_seconds)`` pairs, in record order.
        offset: the source record's offset in ``stream``; if it is not above the
            last offset applied from that stream the record was applied before (a
            replay after a crash) and nothing changes.
        config: detection parameters, resolved for the series.
        stream: the source stream (``"<input topic>/<partition>"``,
            :func:`autopilot.replay.stream_id`) ``offset`` belongs to.

    Returns:
        ``(new_baseline, verdicts)`` with one verdict per sample (empty on replay).
    """
    if replay.seen(baseline.offsets, stream, offset):
        return baseline, []
    offsets = replay.advance(baseline.offsets, stream, offset)
    if not samples:
        return replace(baseline, offsets=offsets), []
    run = run_seed if config.mode == "seed" else run_adaptive
    return run(baseline, samples, config, offsets)


@dataclass(frozen=True, slots=True)
class SeriesResult:
    """What :func:`detect_series` found for one sample: its verdict and its Anomaly.

    ``anomaly`` is the record the metrics agent sends: an alert when
    ``verdict.anomalous``, a re-send or a recovery when ``verdict.signal`` is set,
    else None.
    """

    point: MetricPoint
    verdict: Verdict
    anomaly: Anomaly | None


def detect_series(
    baseline: Baseline,
    points: Sequence[MetricPoint],
    offset: int,
    config: DetectorConfig,
    stream: str = "",
) -> tuple[Baseline, list[SeriesResult]]:
    """Run the detector over the points of one series from one source record.

    This is the one code path of the metrics agent and of ``autopilot backtest``:
    it resolves the config for the series' metric name, applies
    :func:`step_record` (idempotent per offset) and builds an Anomaly for every
    anomalous verdict (:func:`make_anomaly`, state ``firing``: a new alert or an
    escalation) and for every verdict with a ``signal`` (:func:`make_signal_anomaly`:
    a re-send while the series still fires, or its recovery, state ``resolved``).
    ``SeriesResult.anomaly`` is None for the other samples; ``verdict.anomalous``
    tells alerts from signal records.

    Args:
        baseline: the series' baseline.
        points: samples of one series (same service, metric and labels), in order.
        offset: the source record's offset in ``stream`` (a replay changes nothing).
        config: detection parameters (not yet resolved for the metric).
        stream: the source stream ``offset`` belongs to (:mod:`autopilot.replay`).

    Returns:
        ``(new_baseline, results)``, one result per point (empty on replay).
    """
    if not points:
        return baseline, []
    first = points[0]
    series_config = config.for_metric(first.metric_name, first.metric_type)
    new, verdicts = step_record(
        baseline, [(p.value, p.timestamp.timestamp()) for p in points], offset, series_config,
        stream=stream,
    )
    if not verdicts:
        return new, []  # a replay: applied before, nothing changes
    results: list[SeriesResult] = []
    append = results.append
    for p, v in zip(points, verdicts, strict=True):
        # SeriesResult(p, v, anomaly), its slots written directly (frozen __init__ cost).
        r = _new_result(SeriesResult)
        _set_point(r, p)
        _set_verdict(r, v)
        _set_anomaly(r, make_anomaly(p, v) if v.anomalous
                     else None if v.signal is None else make_signal_anomaly(p, v))
        append(r)
    return new, results


_new_result = object.__new__
_set_point = slot_setter(SeriesResult, "point")
_set_verdict = slot_setter(SeriesResult, "verdict")
_set_anomaly = slot_setter(SeriesResult, "anomaly")


def make_anomaly(point: MetricPoint, verdict: Verdict) -> Anomaly:
    """Build the seed Anomaly record for an anomalous ``verdict`` of ``point``.

    ``current_value`` is the scored value (a counter's per-second rate).

    Raises:
        ValueError: the verdict is not anomalous.
    """
    if not verdict.anomalous or verdict.severity is None:
        raise ValueError("make_anomaly needs an anomalous verdict")
    return Anomaly(
        kind="metric",
        metric_name=point.metric_name,
        service=point.service,
        series=point.series,
        current_value=verdict.value,
        baseline_mean=verdict.mean,
        baseline_std_dev=verdict.std,
        z_score=verdict.z_score,
        deviation_percent=verdict.deviation_percent,
        severity=verdict.severity,
        detected_at=point.timestamp,
        labels=point.labels,
    )


#: Severity of a firing rank (:attr:`Baseline.firing_rank`).
_SEVERITY_OF_RANK = {1: Severity.MEDIUM, 2: Severity.HIGH, 3: Severity.CRITICAL}


def severity_of_rank(rank: int) -> Severity:
    """The anomaly severity of a rank (1 medium, 2 high, 3 critical; others: medium)."""
    return _SEVERITY_OF_RANK.get(rank, Severity.MEDIUM)


def make_signal_anomaly(point: MetricPoint, verdict: Verdict) -> Anomaly:
    """Build the Anomaly record of a signal verdict (a re-send or a recovery).

    ``state`` is the verdict's ``signal`` (``firing``: the series still fires;
    ``resolved``: it recovered with this sample). ``severity`` is the firing
    episode's highest (``firing_rank``); ``baseline_mean`` and ``baseline_std_dev``
    are the reference frozen when the series started firing, and ``z_score`` and
    ``deviation_percent`` compare ``current_value`` (the scored value, a counter's
    per-second rate) with it; ``detected_at`` is the sample's time.

    Raises:
        ValueError: the verdict carries no signal.
    """
    extras = verdict.extras
    if verdict.signal is None or "reference_mean" not in extras:
        raise ValueError("make_signal_anomaly needs a verdict with a signal")
    mean = extras["reference_mean"]
    return Anomaly(
        kind="metric",
        state=verdict.signal,
        metric_name=point.metric_name,
        service=point.service,
        series=point.series,
        current_value=verdict.value,
        baseline_mean=mean,
        baseline_std_dev=extras["reference_std"],
        z_score=extras["reference_z"],
        deviation_percent=deviation_percent(verdict.value, mean),
        severity=severity_of_rank(extras["firing_rank"]),
        detected_at=point.timestamp,
        labels=point.labels,
    )
