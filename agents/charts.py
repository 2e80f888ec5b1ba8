"""Charts of an incident's series: the sample store and the pictures.

* :func:`recent_after` — the metrics agent calls it for every series of every
  record, with the record's points of that series and the series' stored
  ``baselines`` value; it returns the newest :data:`autopilot.charts.DEFAULT_CAPACITY`
  (240) samples (:meth:`autopilot.charts.SampleRing.to_dict`), which the agent keeps
  in that same value under :data:`RECENT_KEY` (one table write per series and record
  rather than two: issue #20). Values are stored **raw**, also for counters (the ring
  remembers that the series is a counter; the chart draws its per-second rates, the
  unit the detector scored and the anomalies and band are in). A sample not newer
  than the newest kept one (a replay after a crash, a late sample) is ignored, so
  replays change nothing. A series written by an older worker has its samples in the
  ``recent_samples`` table: they are read from there until the series' next write
  moves them into its ``baselines`` value (and deletes them there).
* :func:`forget_samples` — drop a series' samples from the older table (when the
  metrics agent expires the series; its ``baselines`` value goes with the rest).
* :func:`chart_for` / :func:`chart_for_async` — the PNG of one series of the
  service's incident, for the notifier to upload into the incident's thread.
* :func:`chart_inputs` — what one chart needs, or why there is none; the view
  ``GET /incidents/{service}/chart.png`` (:mod:`autopilot.web.charts`) draws with it.

The chart shows, by default, the most severe firing metric series of the incident
(or, when none fires, the one with the latest evidence):
:func:`autopilot.charts.select_series`; band, markers and title:
:func:`autopilot.charts.chart_spec`. Rendering (about 0.1 s of CPU) runs in a thread
(:func:`chart_for_async` and the view), one at a time (matplotlib is not thread-safe).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autopilot.tables import baselines, deployments, open_incidents, recent_samples

from autopilot.app import settings
from autopilot.charts import ChartSpec, SampleRing, chart_spec, render_chart, select_series
from autopilot.correlation import CorrelationState
from autopilot.deployments import DeploymentHistory
from autopilot.detection import Baseline, DetectorConfig
from autopilot.models import MetricPoint, parse_timestamp

__all__ = ["RECENT_KEY", "chart_for", "chart_for_async", "chart_inputs", "forget_samples",
           "recent_after"]

logger = logging.getLogger(__name__)

#: One rendering at a time (matplotlib keeps global state: fonts, caches).
_RENDER_LOCK = threading.Lock()


@functools.cache
def _detector_config() -> DetectorConfig:
    """The detector config (for ``counter``), from the settings, built once."""
    return DetectorConfig.from_settings(settings())


#: Key of the recent samples in a ``baselines`` value (Baseline.from_dict ignores it).
RECENT_KEY = "recent"


def _ring_of(series_key: bytes, stored: Mapping[str, Any] | None) -> tuple[SampleRing, bool]:
    """The series' kept samples: from its ``baselines`` value ``stored``, else from
    the ``recent_samples`` table an older worker wrote (then the flag is True). A
    damaged value starts afresh (logged), rather than stop the agent."""
    data = stored.get(RECENT_KEY) if stored else None
    older = data is None
    if older:
        data = recent_samples.get(series_key)
    try:
        return SampleRing.from_dict(data), older
    except ValueError as exc:
        logger.warning("%s[%r]: recent samples: %s; starting the series' samples afresh",
                       "recent_samples" if older else "baselines", series_key, exc)
        return SampleRing(), older


def _load_ring(series_key: bytes) -> SampleRing:
    return _ring_of(series_key, baselines.get(series_key))[0]


def recent_after(series_key: bytes, stored: Mapping[str, Any] | None,
                 points: Sequence[MetricPoint]) -> dict[str, Any] | None:
    """The series' recent samples with one record's ``points`` added, to be kept in
    its ``baselines`` value under :data:`RECENT_KEY`.

    Args:
        series_key: the series key as the tables use it,
            ``b"service|metric|k=v,…"`` (:attr:`MetricPoint.series` encoded).
        stored: the series' ``baselines`` value before this record (``None``: none).
        points: the record's samples of that series (any order is accepted; each
            is kept only when newer than the newest kept, so give them oldest
            first). Raw values: a counter's counts, not rates.

    Returns:
        :meth:`SampleRing.to_dict` of the samples now kept, or ``None`` when there
        are none. Raises nothing for a damaged stored value (logged, started afresh).
    """
    ring, older = _ring_of(series_key, stored)
    if older and len(ring):
        # Moved out of the older table: dropped there, so that a worker of the older
        # version (a rollback) starts afresh rather than from samples gone stale.
        recent_samples.pop(series_key, None)
    if points:
        first = points[0]
        counter = _detector_config().for_metric(first.metric_name, first.metric_type).counter
        if counter != ring.counter:
            ring = SampleRing(ring.times, ring.values, ring.capacity, counter)
        ring = ring.append_many((p.timestamp.timestamp(), p.value) for p in points)
    return ring.to_dict() if len(ring) else None


def forget_samples(series_key: bytes) -> None:
    """Drop a series' samples kept by an older worker in ``recent_samples`` (call
    where the metrics agent expires the series)."""
    recent_samples.pop(series_key, None)


# --------------------------------------------------------------------------- charts


def _epoch(value: object) -> float | None:
    if value is None:
        return None
    try:
        return parse_timestamp(value).timestamp()
    except (ValueError, OverflowError, TypeError):
        return None


def _incident_resolved_at(incident: object) -> float | None:
    """The incident's resolution time (epoch s), or None while it fires.

    Assumes the lifecycle's :class:`~autopilot.correlation.OpenIncident` may carry
    ``state`` (``"resolved"``) and ``resolved_at`` or ``closed_at``; older states
    carry none of them and count as firing.
    """
    state = getattr(incident, "state", None)
    status = getattr(incident, "status", None)
    if state != "resolved" and status not in ("resolved", "closed"):
        return None
    for name in ("resolved_at", "closed_at", "updated_at"):
        at = _epoch(getattr(incident, name, None))
        if at is not None:
            return at
    return None


@dataclass(frozen=True, slots=True)
class _Inputs:
    """What one chart needs, read from the local tables."""

    samples: list[tuple[float, float]]
    spec: ChartSpec
    deployments: list[tuple[float, str]]
    counter: bool
    filename: str

    def render(self) -> bytes:
        """The PNG (one rendering at a time)."""
        with _RENDER_LOCK:
            return render_chart(
                self.samples, title=self.spec.title, baseline_mean=self.spec.baseline_mean,
                baseline_std=self.spec.baseline_std, band_z=self.spec.band_z,
                anomalies=self.spec.anomalies, deployments=self.deployments,
                resolved_at=self.spec.resolved_at,
                value_label="per-second rate" if self.counter else "value",
            )


def chart_inputs(service: str, series: str | None) -> _Inputs | str:
    """Read the local tables: the chart's inputs, or the reason for a 404."""
    state = CorrelationState.from_dict(open_incidents.get(service.encode()))
    incident = state.incident
    if incident is None:
        return f"service {service!r} has no incident"
    anomalies = list(getattr(incident, "anomalies", ()) or ())
    signals = getattr(incident, "signals", None) or None
    if series is None:
        series = select_series(anomalies, signals)
        if series is None:
            return f"incident {incident.id} has no metric series to draw"
    elif not series.startswith(f"{service}|"):
        return f"series {series!r} is not one of service {service!r}"
    ring = _load_ring(series.encode())
    samples = ring.scored()
    if not samples:
        return f"no samples kept for series {series!r}"
    s = settings()
    current: tuple[float, float] | None = None
    raw_baseline = baselines.get(series.encode())
    if raw_baseline:
        summary = Baseline.from_dict(raw_baseline).summary()
        current = (float(summary["mean"]), float(summary["std_dev"]))
    spec = chart_spec(
        series, anomalies, signals=signals, incident_id=incident.id,
        incident_resolved_at=_incident_resolved_at(incident),
        recover_z=s.recover_z, z_threshold=s.z_threshold, current_baseline=current,
    )
    history = DeploymentHistory.from_dict(deployments.get(service.encode()))
    deploys = [(at, str(e.get("version", "?"))) for e in history.events
               if (at := _epoch(e.get("timestamp"))) is not None]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in series)[:80]
    return _Inputs(samples, spec, deploys, ring.counter, f"{incident.id}-{safe}.png")


def chart_for(service: str, series: str | None) -> tuple[bytes, str] | None:
    """The chart of one series of ``service``'s incident, from the local tables.

    Args:
        service: the service (its partition must be on this worker: call it while
            processing the service's records, as the notifier does).
        series: a series key ``service|metric|labels``; ``None`` picks the most
            severe firing series (:func:`autopilot.charts.select_series`).

    Returns:
        ``(png bytes, filename)`` — the filename is ``<incident id>-<series>.png``
        with unsafe characters replaced — or ``None`` when there is no incident, no
        such series of the service, or no samples kept for it.

    Renders on the calling thread (about 0.1 s of CPU); from the event loop prefer
    :func:`chart_for_async`.
    """
    inputs = chart_inputs(service, series)
    if isinstance(inputs, str):
        return None
    return inputs.render(), inputs.filename


async def chart_for_async(service: str, series: str | None) -> tuple[bytes, str] | None:
    """:func:`chart_for` with the tables read on the event loop and the rendering
    in a worker thread, so the loop is not blocked while matplotlib draws."""
    inputs = chart_inputs(service, series)
    if isinstance(inputs, str):
        return None
    png = await asyncio.get_running_loop().run_in_executor(None, inputs.render)
    return png, inputs.filename
