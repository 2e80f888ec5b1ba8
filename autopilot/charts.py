"""Charts of anomalous series: the recent samples of a series and their picture (pure).

Two parts, both free of Faust and the network:

* :class:`SampleRing` — the newest samples of one series, bounded (``capacity``,
  default :data:`DEFAULT_CAPACITY` = 240 samples: an hour at a 15 s scrape, four
  minutes at 1 s). The ``recent_samples`` table keeps one per series key
  (``service|metric|labels``); the metrics agent feeds it through
  :func:`autopilot.agents.charts.remember_samples`. It stores the **raw** sample
  values, also for counters; :meth:`SampleRing.scored` turns a counter's raw values
  into the per-second rates the detector scored (and the anomalies and baseline are
  expressed in), so a chart of a counter is in the units of its band.
* :func:`render_chart` — a small PNG (:data:`FIGSIZE` at :data:`DPI`: 800 × 300 px)
  of one series around an incident: the value line, the baseline band
  (mean ± ``band_z`` · std, shaded), the anomalies (red markers), the deployments
  (dashed vertical lines labelled with the version) and the resolution (a green
  vertical line), with a UTC time axis. Slack threads carry it (the notifier
  uploads it with ``files_upload_v2``) and ``GET /incidents/{service}/chart.png``
  serves it.

Which series an incident's chart shows and how (:func:`select_series`,
:func:`chart_spec`): by default its most severe firing metric series; the band is
the baseline frozen at that series' first alert, ± ``AUTOPILOT_RECOVER_Z`` std (the
band it must come back into to recover).

The drawing primitives (:func:`pyplot`, :func:`draw_band`, :func:`draw_values`,
:func:`fit_ylim`) are shared with ``autopilot backtest --plot``
(:func:`autopilot.backtest.plot`), so both pictures draw a series and its band the
same way. matplotlib is imported only inside the functions that draw (Agg backend,
no display needed); importing this module costs nothing.
"""

from __future__ import annotations

import base64
import io
import math
import operator
import struct
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from autopilot.models import Severity, parse_timestamp

__all__ = [
    "DEFAULT_CAPACITY",
    "DPI",
    "FIGSIZE",
    "ChartSpec",
    "SampleRing",
    "chart_spec",
    "draw_band",
    "draw_values",
    "fit_ylim",
    "pyplot",
    "rates",
    "render_chart",
    "select_series",
]

#: Samples kept per series by default (see module docstring).
DEFAULT_CAPACITY = 240
#: Largest capacity :meth:`SampleRing.from_dict` accepts (a bound on stored values).
MAX_CAPACITY = 10_000
#: Chart size in inches and resolution: 8 × 3 in at 100 dpi = 800 × 300 px.
FIGSIZE = (8.0, 3.0)
DPI = 100
#: Longest title drawn (characters); longer titles end with "…".
MAX_TITLE = 110
#: Longest deployment version label drawn (characters).
MAX_VERSION = 24

_FLOAT_MAX = sys.float_info.max
#: Values are drawn clipped to ± this: beyond it matplotlib's own axis arithmetic
#: overflows (a sample at 1.7e308 is drawn at 1e300; the PNG still renders).
DRAW_MAX = 1e300


# --------------------------------------------------------------------------- samples


def _pack(values: Sequence[float]) -> str:
    """Base64 of little-endian float64s."""
    return base64.b64encode(struct.pack(f"<{len(values)}d", *values)).decode("ascii")


def _unpack(text: Any, what: str) -> tuple[float, ...]:
    if not isinstance(text, str):
        raise ValueError(f"SampleRing: {what} must be a base64 string")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValueError(f"SampleRing: {what} is not base64: {exc}") from None
    if len(raw) % 8:
        raise ValueError(f"SampleRing: {what} holds {len(raw)} bytes, not a float64 array")
    return struct.unpack(f"<{len(raw) // 8}d", raw)


@dataclass(frozen=True, slots=True)
class SampleRing:
    """The newest samples of one series, oldest first, at most ``capacity``.

    Attributes:
        times: event times, epoch seconds, strictly increasing.
        values: raw sample values (a counter's raw counts, not rates), same length.
        capacity: most samples kept (default :data:`DEFAULT_CAPACITY`); older ones
            are dropped as newer ones arrive.
        counter: the series is a counter (the detector scores its per-second rate);
            :meth:`scored` then gives rates.

    Raises:
        ValueError: ``capacity`` < 1, or ``times`` and ``values`` of different lengths.
    """

    times: tuple[float, ...] = ()
    values: tuple[float, ...] = ()
    capacity: int = DEFAULT_CAPACITY
    counter: bool = False

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError(f"SampleRing: capacity must be at least 1, got {self.capacity}")
        if len(self.times) != len(self.values):
            raise ValueError("SampleRing: times and values differ in length")

    def __len__(self) -> int:
        return len(self.times)

    @property
    def samples(self) -> list[tuple[float, float]]:
        """``[(epoch s, raw value), …]``, oldest first."""
        return list(zip(self.times, self.values, strict=True))

    @property
    def last_time(self) -> float | None:
        """Event time of the newest sample (epoch s), ``None`` when empty."""
        return self.times[-1] if self.times else None

    def append_many(self, points: Iterable[tuple[float, float]]) -> SampleRing:
        """This ring with ``points`` (``(epoch s, value)``, in the order given) added.

        A point is ignored when its time is not newer than the newest sample kept
        (a replay, or a late sample: the ring stays ordered) or when its time or
        value is not finite. Only the newest ``capacity`` samples are kept.

        Returns:
            A new ring, or this very ring when no point was added (so a caller can
            skip writing an unchanged value: ``if new is not ring``).
        """
        last = self.times[-1] if self.times else -math.inf
        new_t: list[float] = []
        new_v: list[float] = []
        isfinite = math.isfinite
        for t, v in points:
            t, v = float(t), float(v)
            if t > last and isfinite(t) and isfinite(v):
                new_t.append(t)
                new_v.append(v)
                last = t
        if not new_t:
            return self
        cap = self.capacity
        return replace(
            self,
            times=(self.times + tuple(new_t))[-cap:],
            values=(self.values + tuple(new_v))[-cap:],
        )

    def scored(self) -> list[tuple[float, float]]:
        """What the detector scored: per-second rates for a counter (:func:`rates`),
        the raw samples otherwise; ``[(epoch s, value), …]``, oldest first."""
        return rates(self.samples) if self.counter else self.samples

    def to_dict(self) -> dict[str, Any]:
        """Compact JSON-safe form: ``{"capacity": int, "counter": bool, "t": str,
        "v": str}`` with ``t`` and ``v`` the base64 of little-endian float64 arrays
        (times in epoch s, raw values): 240 samples take about 5 KB."""
        return {
            "capacity": self.capacity,
            "counter": self.counter,
            "t": _pack(self.times),
            "v": _pack(self.values),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SampleRing:
        """Inverse of :meth:`to_dict`; ``None`` or ``{}`` gives an empty ring.

        Raises:
            ValueError: a malformed value (not base64, lengths differ, capacity out
                of 1 … :data:`MAX_CAPACITY`, times not increasing).
        """
        if not data:
            return cls()
        try:
            capacity = int(data.get("capacity", DEFAULT_CAPACITY))
        except (TypeError, ValueError):
            raise ValueError("SampleRing: capacity is not an integer") from None
        if not 1 <= capacity <= MAX_CAPACITY:
            raise ValueError(f"SampleRing: capacity {capacity} outside 1…{MAX_CAPACITY}")
        times = _unpack(data.get("t", ""), "t")
        values = _unpack(data.get("v", ""), "v")
        if len(times) != len(values):
            raise ValueError("SampleRing: t and v differ in length")
        if not all(map(operator.lt, times, times[1:])):
            raise ValueError("SampleRing: times are not increasing")
        return cls(times=times[-capacity:], values=values[-capacity:], capacity=capacity,
                   counter=bool(data.get("counter", False)))


def rates(samples: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Per-second increase of a counter between consecutive samples.

    Args:
        samples: ``[(epoch s, raw count), …]`` in time order.

    Returns:
        ``[(epoch s of the later sample, increase / seconds), …]`` — one fewer than
        the samples. As the detector does (:mod:`autopilot.detection`), an interval
        whose count went down (a counter reset: the process restarted) or whose
        time did not advance gives no rate.
    """
    out: list[tuple[float, float]] = []
    for (t0, v0), (t1, v1) in zip(samples, samples[1:], strict=False):
        dt = t1 - t0
        if dt > 0.0 and v1 >= v0:
            rate = (v1 - v0) / dt
            if math.isfinite(rate):
                out.append((t1, rate))
    return out


# --------------------------------------------------------------------------- drawing


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_band(ax: Any, x: Sequence[Any], mean: Sequence[float], lo: Sequence[float],
              hi: Sequence[float], band_z: float) -> None:
    """Shade the baseline band ``lo``…``hi`` and draw its ``mean`` over ``x``.

    The band is labelled "baseline ± ``band_z`` std" in the legend; NaN entries leave
    gaps (rows without a baseline yet).
    """
    ax.fill_between(x, lo, hi, color="tab:blue", alpha=0.15,
                    label=f"baseline ± {band_z:g} std")
    ax.plot(x, mean, color="tab:blue", lw=0.8, alpha=0.6, label="baseline mean")


def draw_values(ax: Any, x: Sequence[Any], values: Sequence[float], label: str) -> None:
    """Draw the series itself: a thin black line labelled ``label``."""
    ax.plot(x, values, color="black", lw=0.6, label=label)


def fit_ylim(ax: Any, values: Iterable[float]) -> None:
    """Fit the y axis to the finite ``values`` with 10 % padding (1.0 when flat).

    Magnitudes so large that the padding would be lost in rounding or overflow
    (beyond about 1e15 when flat, 1e307 in range) are padded by 10 % of the
    magnitude, clipped to the float range. No finite value: the axis is left as is.
    """
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return
    low, high = min(finite), max(finite)
    pad = (high - low) * 0.1 or 1.0
    if not math.isfinite(pad) or low - pad == low or high + pad == high:
        pad = max(abs(low), abs(high)) * 0.1
    bottom = max(low - pad, -_FLOAT_MAX / 4)
    top = min(high + pad, _FLOAT_MAX / 4)
    if bottom < top:
        ax.set_ylim(bottom, top)


def _clip(v: float) -> float:
    v = float(v)
    if v != v:  # NaN passes through (callers skip it)
        return v
    return -DRAW_MAX if v < -DRAW_MAX else DRAW_MAX if v > DRAW_MAX else v


def _utc(t: float) -> datetime:
    try:
        return datetime.fromtimestamp(t, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"render_chart: time {t!r} is outside the calendar: {exc}") from None


def render_chart(
    samples: Sequence[tuple[float, float]],
    *,
    title: str,
    baseline_mean: float | None,
    baseline_std: float | None,
    band_z: float,
    anomalies: Sequence[tuple[float, float]],
    deployments: Sequence[tuple[float, str]],
    resolved_at: float | None = None,
    value_label: str = "value",
) -> bytes:
    """Draw one series around an incident as a PNG (see module docstring).

    Args:
        samples: ``[(epoch s, value), …]`` in the units of the baseline (a counter's
            rates: :meth:`SampleRing.scored`); non-finite ones are skipped.
        title: drawn at the top (cut at :data:`MAX_TITLE` characters).
        baseline_mean, baseline_std: the baseline the band is drawn from (the one
            frozen at the first alert: the anomaly's ``baseline_mean`` and
            ``baseline_std_dev``); ``None`` (or non-finite) draws no band.
        band_z: half-width of the band in std (e.g. ``AUTOPILOT_RECOVER_Z``, the
            band a series must come back into to recover).
        anomalies: ``[(epoch s, value), …]`` drawn as red markers.
        deployments: ``[(epoch s, version), …]`` drawn as dashed vertical lines
            labelled with the version. Those far outside the samples' time span
            (more than the span, at least 5 min) are not drawn, so the series is not
            squeezed: the newest before the chart and the first after it are named
            in its bottom corners instead.
        resolved_at: when the incident (or series) resolved, epoch s: a green line.
        value_label: the legend's name of the line ("value", "per-second rate" …).

    Values beyond ±:data:`DRAW_MAX` (1e300) are drawn at that limit.

    Returns:
        PNG bytes, :data:`FIGSIZE` × :data:`DPI` = 800 × 300 px, time axis in UTC.

    Raises:
        ValueError: no finite sample, or a time outside the calendar (years 1–9999).
    """
    pts = [(float(t), _clip(v)) for t, v in samples
           if math.isfinite(t) and math.isfinite(v)]
    if not pts:
        raise ValueError("render_chart: no finite sample to draw")
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    anomaly_pts = [(float(t), _clip(v)) for t, v in anomalies
                   if math.isfinite(t) and math.isfinite(v)]
    resolved = resolved_at if resolved_at is not None and math.isfinite(resolved_at) else None
    # The time span shown: the samples, the anomalies and the resolution.
    span_times = [t for t, _ in pts] + [t for t, _ in anomaly_pts]
    if resolved is not None:
        span_times.append(resolved)
    start, end = min(span_times), max(span_times)
    reach = max(end - start, 300.0)  # deployments this close join the span
    near = [(float(t), v) for t, v in deployments
            if math.isfinite(t) and start - reach <= t <= end + reach]
    far = [(float(t), v) for t, v in deployments
           if math.isfinite(t) and not start - reach <= t <= end + reach]
    for t, _ in near:
        start, end = min(start, t), max(end, t)
    margin = (end - start) * 0.03 or 30.0

    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    ax = fig.subplots()
    x0, x1 = _utc(start - margin), _utc(end + margin)
    y_extent = [v for _, v in pts] + [v for _, v in anomaly_pts]
    if (baseline_mean is not None and baseline_std is not None
            and math.isfinite(baseline_mean) and math.isfinite(baseline_std)):
        half = band_z * abs(baseline_std)
        mean = _clip(baseline_mean)
        lo, hi = _clip(baseline_mean - half), _clip(baseline_mean + half)
        if math.isfinite(lo) and math.isfinite(hi):
            draw_band(ax, [x0, x1], [mean] * 2, [lo] * 2, [hi] * 2, band_z)
            y_extent += [lo, hi]
    draw_values(ax, [_utc(t) for t, _ in pts], [v for _, v in pts], value_label)
    if len(pts) == 1:  # a line needs two points: mark the lone sample
        ax.plot([_utc(pts[0][0])], [pts[0][1]], "o", color="black", ms=3)  # type: ignore[arg-type]
    if anomaly_pts:
        ax.scatter([_utc(t) for t, _ in anomaly_pts], [v for _, v in anomaly_pts],  # type: ignore[arg-type]
                   color="red", s=36, zorder=3, edgecolors="black", linewidths=0.5,
                   label="anomaly")
    for i, (t, version) in enumerate(near):
        ax.axvline(_utc(t), color="tab:purple", ls="--", lw=1.0,  # type: ignore[arg-type]
                   label="deployment" if i == 0 else None)
        ax.annotate(version[:MAX_VERSION], xy=(_utc(t), 0.98), xycoords=("data", "axes fraction"),
                    rotation=90, va="top", ha="right", fontsize=7, color="tab:purple")
    before = [d for d in far if d[0] < start]
    after = [d for d in far if d[0] > end]
    edge = ([max(before)] if before else []) + ([min(after)] if after else [])
    for t, version in edge:  # the version in effect before the chart, the next after it
        side_left = t < start
        ax.annotate(
            f"{'◂ ' if side_left else ''}{version[:MAX_VERSION]} deployed "
            f"{_utc(t):%Y-%m-%d %H:%M} UTC{'' if side_left else ' ▸'}",
            xy=(0.01 if side_left else 0.99, 0.02), xycoords="axes fraction",
            ha="left" if side_left else "right", va="bottom", fontsize=7,
            color="tab:purple",
        )
    if resolved is not None:
        ax.axvline(_utc(resolved), color="tab:green", lw=1.5, label="resolved")  # type: ignore[arg-type]
    fit_ylim(ax, y_extent)
    ax.set_xlim(x0, x1)  # type: ignore[arg-type]
    locator = AutoDateLocator(tz=UTC, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator, tz=UTC))
    ax.set_xlabel("time (UTC)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.xaxis.get_offset_text().set_fontsize(7)
    ax.yaxis.get_offset_text().set_fontsize(7)
    ax.set_title(title if len(title) <= MAX_TITLE else title[: MAX_TITLE - 1] + "…",
                 fontsize=9)
    ax.legend(loc="best", fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


# --------------------------------------------------------------------------- choosing


def _field(item: Any, name: str, default: Any = None) -> Any:
    """``item[name]`` for a JSON dict, ``item.name`` for a record (Signal, Anomaly)."""
    if isinstance(item, dict):
        return item.get(name, default)
    return getattr(item, name, default)


def _epoch(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return parse_timestamp(value).timestamp()
    except (ValueError, OverflowError, TypeError):
        return None


def _rank(value: Any) -> int:
    try:
        return Severity(getattr(value, "value", value)).rank
    except ValueError:
        return 0


def _is_metric(item: Any) -> bool:
    return bool(_field(item, "series")) and _field(item, "kind", "metric") == "metric"


def select_series(anomalies: Sequence[Any], signals: Sequence[Any] | None = None) -> str | None:
    """The series an incident's chart shows by default: the most severe **firing**
    metric series, or, when none fires, the one with the latest evidence.

    Args:
        anomalies: the incident's anomalies (JSON dicts of
            :class:`~autopilot.models.Anomaly`, or the records), any order.
        signals: the incident's signals (:class:`~autopilot.models.Signal` records
            or their JSON dicts) when the incident carries them; they decide
            (``state``, ``severity``, ``last_at``). Without them a series fires when
            its newest anomaly is not ``resolved``.

    Returns:
        A series key ``service|metric|labels``, or ``None`` when no metric series
        is involved (error-rate signals have no samples to draw). Ties go to the
        later evidence, then to the smaller key (deterministic).
    """
    best: tuple[bool, int, float, str] | None = None
    if signals:
        for sig in signals:
            if not _is_metric(sig):
                continue
            key = (_field(sig, "state", "firing") != "resolved",
                   _rank(_field(sig, "severity")),
                   _epoch(_field(sig, "last_at")) or 0.0, str(_field(sig, "series")))
            if best is None or key[:3] > best[:3] or (key[:3] == best[:3] and key[3] < best[3]):
                best = key
        if best is not None:
            return best[3]
    per_series: dict[str, tuple[float, bool, int]] = {}
    for a in anomalies:
        if not _is_metric(a):
            continue
        series = str(_field(a, "series"))
        at = _epoch(_field(a, "detected_at")) or 0.0
        rank = _rank(_field(a, "severity"))
        firing = _field(a, "state", "firing") != "resolved"
        last, was_firing, top = per_series.get(series, (-math.inf, False, 0))
        if at >= last:
            last, was_firing = at, firing
        per_series[series] = (last, was_firing, max(top, rank if firing else 0))
    for series, (last, firing, top) in per_series.items():
        key = (firing, top if firing else 0, last, series)
        if best is None or key[:3] > best[:3] or (key[:3] == best[:3] and key[3] < best[3]):
            best = key
    return best[3] if best is not None else None


@dataclass(frozen=True, slots=True)
class ChartSpec:
    """What to draw for one series of an incident (the arguments of
    :func:`render_chart` other than the samples and deployments).

    Attributes:
        series: the series key ``service|metric|labels``.
        title: e.g. ``"latency_ms · checkout — inc-… (firing)"``.
        baseline_mean, baseline_std: the band's baseline (metric units; ``None``: no
            band).
        band_z: the band's half-width in std.
        anomalies: ``[(epoch s, value), …]`` of the series' firing anomalies.
        resolved_at: when the series (or else the incident) resolved, epoch s.
    """

    series: str
    title: str
    baseline_mean: float | None
    baseline_std: float | None
    band_z: float
    anomalies: tuple[tuple[float, float], ...]
    resolved_at: float | None


def _describe(series: str) -> str:
    parts = series.split("|", 2)
    if len(parts) != 3:
        return series
    service, metric, labels = parts
    return f"{metric}{{{labels}}} · {service}" if labels else f"{metric} · {service}"


def chart_spec(
    series: str,
    anomalies: Sequence[Any],
    *,
    signals: Sequence[Any] | None = None,
    incident_id: str = "",
    incident_resolved_at: float | None = None,
    recover_z: float = 2.0,
    z_threshold: float = 2.5,
    current_baseline: tuple[float, float] | None = None,
) -> ChartSpec:
    """Decide the band, markers and title of ``series``' chart in an incident.

    The band is the baseline **frozen at the series' first firing anomaly** (its
    ``baseline_mean`` ± ``recover_z`` × ``baseline_std_dev``): the band the series
    must come back into to recover (``AUTOPILOT_RECOVER_Z``, default 2.0). A series
    without an anomaly in the incident (chosen with ``?series=``) gets its current
    baseline (``current_baseline`` = (mean, std), e.g. from the baselines table) with
    the alert threshold ``z_threshold`` (``AUTOPILOT_Z_THRESHOLD``), or no band.

    Args:
        series: the series key to draw.
        anomalies: the incident's anomalies (JSON dicts or records); those of
            ``series`` with state ``firing`` become red markers (``detected_at``,
            ``current_value``: a counter's rate, as :meth:`SampleRing.scored`).
        signals: the incident's signals, if it carries them (for ``resolved_at``
            and the state in the title).
        incident_id: shown in the title.
        incident_resolved_at: the incident's resolution (epoch s), used when the
            series has no resolution of its own.
        recover_z, z_threshold, current_baseline: see above.

    Returns:
        A :class:`ChartSpec`.
    """
    own = sorted(
        ((_epoch(_field(a, "detected_at")) or 0.0, a) for a in anomalies
         if _field(a, "series") == series),
        key=lambda pair: pair[0],
    )
    firing = [(t, a) for t, a in own if _field(a, "state", "firing") != "resolved"]
    mean: float | None = None
    std: float | None = None
    band_z = recover_z
    if firing:
        first = firing[0][1]
        mean = _as_float(_field(first, "baseline_mean"))
        std = _as_float(_field(first, "baseline_std_dev"))
    elif current_baseline is not None:
        mean, std = (_as_float(v) for v in current_baseline)
        band_z = z_threshold
    markers = tuple(
        (t, v) for t, a in firing
        if t and (v := _as_float(_field(a, "current_value"))) is not None
    )
    state = "firing" if firing else ""
    resolved_at: float | None = None
    signal = next((s for s in (signals or ()) if _field(s, "series") == series), None)
    if signal is not None:
        state = str(_field(signal, "state", state or "firing"))
        if state == "resolved":
            resolved_at = _epoch(_field(signal, "resolved_at"))
    elif own and _field(own[-1][1], "state", "firing") == "resolved":
        state, resolved_at = "resolved", own[-1][0] or None
    if resolved_at is None and incident_resolved_at is not None:
        resolved_at = incident_resolved_at
        state = "resolved"
    title = _describe(series)
    if incident_id:
        title += f" — {incident_id}"
    if state:
        title += f" ({state})"
    return ChartSpec(series=series, title=title, baseline_mean=mean, baseline_std=std,
                     band_z=band_z, anomalies=markers, resolved_at=resolved_at)


def _as_float(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
