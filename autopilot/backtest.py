"""Backtest: run the live detector over a file of history, offline (no broker).

``autopilot backtest FILE`` (see :mod:`autopilot.cli`) reads a series, feeds every
sample in event time through :func:`autopilot.detection.detect_series` — the very
function the metrics agent calls for every record, with the same
:class:`~autopilot.detection.DetectorConfig` built from the same settings — and
writes one output row per input row.

Input (:func:`load_series`):
    * CSV with a header naming ``timestamp`` and ``value`` (other columns ignored).
      Timestamps as in NAB (``2014-02-14 14:30:00``, UTC), RFC 3339, or epoch
      numbers (s, ms, µs or ns; :func:`autopilot.models.parse_timestamp`).
    * A Prometheus range-query JSON export (``/api/v1/query_range`` answer:
      ``{"status": "success", "data": {"resultType": "matrix", "result": [{"metric":
      {...}, "values": [[1700000000, "1.5"], ...]}]}}``) holding one series. Samples
      whose value is ``NaN`` or infinite are skipped and counted.

Output (:data:`COLUMNS`, :func:`write_csv`): ``timestamp`` echoes the input text,
``value`` the input value; ``anomaly_score`` ∈ [0, 1]; ``alert`` is 1 exactly where
the live agent would emit an Anomaly record; ``z_score``, ``severity`` (empty without
an alert), ``baseline_mean`` and ``baseline_std_dev`` are what the record would carry
(before the sample joined the baseline). No field is NaN or infinite.

Feedback (``--feedback FILE``, :func:`load_feedback`): the JSON lines of
``autopilot feedback export`` (one :class:`autopilot.feedback.Feedback` per line). The
records of the backtested series (its service, metric and labels) are applied as the
metrics agent applies them (:func:`autopilot.feedback.screen`), whatever their period:
an alert they match is not an alert (``alert`` 0) and is counted in the summary
(``suppressed_by_feedback``), so the effect of feedback on history can be seen.

Errors: :class:`BacktestError` (bad file, bad row) says which file and line.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from autopilot import charts
from autopilot.detection import Baseline, DetectorConfig, SeriesResult, detect_series
from autopilot.errors import BadRecord
from autopilot.feedback import Feedback, screen
from autopilot.models import MetricPoint, Severity, parse_timestamp, series_key

__all__ = [
    "COLUMNS",
    "BacktestError",
    "BacktestResult",
    "InputRow",
    "OutputRow",
    "load_feedback",
    "load_series",
    "plot",
    "run_backtest",
    "write_csv",
]

COLUMNS = (
    "timestamp",
    "value",
    "anomaly_score",
    "alert",
    "z_score",
    "severity",
    "baseline_mean",
    "baseline_std_dev",
)


class BacktestError(ValueError):
    """The input cannot be backtested; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class InputRow:
    """One input sample: the timestamp as written, its epoch seconds, the value."""

    text: str
    epoch_s: float
    value: float


@dataclass(frozen=True, slots=True)
class OutputRow:
    """One output row (see :data:`COLUMNS`) plus the Anomaly the agent would send."""

    timestamp: str
    value: float
    anomaly_score: float
    alert: bool
    z_score: float
    severity: Severity | None
    baseline_mean: float
    baseline_std_dev: float
    cold: bool = False  # no verdict yet (not a CSV column)
    scored: float | None = None  # what was scored: a counter's per-second rate (not a column)

    def as_csv(self) -> list[str]:
        """The row as CSV fields (floats with ``repr`` precision)."""
        return [
            self.timestamp,
            repr(self.value),
            repr(self.anomaly_score),
            "1" if self.alert else "0",
            repr(self.z_score),
            self.severity.value if self.severity else "",
            repr(self.baseline_mean),
            repr(self.baseline_std_dev),
        ]


@dataclass
class BacktestResult:
    """Rows and the alerts of one backtest.

    ``alerts`` are the samples that alert (the ``alert`` column); ``records`` every
    sample for which the live agent sends an Anomaly record, in order: the alerts
    and the firing signal's re-sends and recovery (``state`` firing / resolved,
    :func:`autopilot.detection.make_signal_anomaly`).
    """

    rows: list[OutputRow]
    mode: str
    service: str
    metric: str
    skipped: int = 0
    alerts: list[SeriesResult] = field(default_factory=list)
    records: list[SeriesResult] = field(default_factory=list)
    counter: bool = False  # scored as per-second rates (the plot draws those)
    suppressed: int = 0  # alerts suppressed by feedback (None of them is in ``alerts``)
    with_feedback: bool = False  # feedback was given (``--feedback``)

    def summary(self) -> dict[str, Any]:
        """Samples, alerts by severity, first and last alert (input timestamp text)."""
        alert_rows = [r for r in self.rows if r.alert]
        by_severity = Counter(r.severity.value for r in alert_rows if r.severity)
        return {
            "mode": self.mode,
            "service": self.service,
            "metric": self.metric,
            "samples": len(self.rows),
            "skipped_non_finite": self.skipped,
            "alerts": len(alert_rows),
            "alerts_by_severity": {s.value: by_severity.get(s.value, 0) for s in Severity},
            "first_alert": alert_rows[0].timestamp if alert_rows else None,
            "last_alert": alert_rows[-1].timestamp if alert_rows else None,
        } | ({"suppressed_by_feedback": self.suppressed} if self.with_feedback else {})

    def summary_text(self) -> str:
        """Human-readable :meth:`summary`."""
        s = self.summary()
        sev = ", ".join(f"{k} {v}" for k, v in s["alerts_by_severity"].items())
        lines = [
            f"series   {s['service']} / {s['metric']}  (mode {s['mode']})",
            f"samples  {s['samples']}"
            + (f"  ({s['skipped_non_finite']} non-finite skipped)" if s["skipped_non_finite"]
               else ""),
            f"alerts   {s['alerts']}  ({sev})",
        ]
        if self.with_feedback:
            lines.append(f"feedback {s['suppressed_by_feedback']} alert(s) suppressed "
                         "(\"Not an incident\")")
        if s["alerts"]:
            lines.append(f"first    {s['first_alert']}")
            lines.append(f"last     {s['last_alert']}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- input


def load_series(path: Path | str) -> tuple[list[InputRow], int]:
    """Read a CSV or a Prometheus range-query JSON export (see module docstring).

    Returns:
        ``(rows, skipped)``: samples in file order and how many non-finite
        Prometheus samples were skipped.

    Raises:
        BacktestError: unreadable file, missing columns, bad timestamp or value.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM (spreadsheet exports) is dropped
    except OSError as exc:
        raise BacktestError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise BacktestError(f"{path}: not UTF-8 text: {exc.reason}") from None
    start = text.lstrip()[:1]
    if start == "{":
        return _load_prometheus(path, text)
    if start == "[":
        raise BacktestError(
            f"{path}: a JSON array; expected a CSV or a Prometheus range-query export "
            '({"status": "success", "data": {"resultType": "matrix", "result": [...]}})'
        )
    return _load_csv(path, text), 0


def _parse_time(path: Path, line: int, raw: Any) -> float:
    try:
        return parse_timestamp(raw).timestamp()
    except (ValueError, OverflowError) as exc:
        raise BacktestError(f"{path}:{line}: bad timestamp {raw!r}: {exc}") from None


def _load_csv(path: Path, text: str) -> list[InputRow]:
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise BacktestError(f"{path}: empty file") from None
    if "timestamp" not in header or "value" not in header:
        raise BacktestError(f"{path}:1: the header must name 'timestamp' and 'value'")
    ti, vi = header.index("timestamp"), header.index("value")
    rows = []
    for line, fields in enumerate(reader, start=2):
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) <= max(ti, vi):
            raise BacktestError(f"{path}:{line}: expected timestamp and value")
        if len(fields) > len(header):
            raise BacktestError(f"{path}:{line}: {len(fields)} fields, the header names "
                                f"{len(header)} (a comma inside a value must be quoted)")
        stamp = fields[ti]
        try:
            value = float(fields[vi])
        except ValueError:
            raise BacktestError(f"{path}:{line}: value {fields[vi]!r} is not a number") from None
        if not math.isfinite(value):
            raise BacktestError(f"{path}:{line}: value {fields[vi]!r} is not finite")
        rows.append(InputRow(stamp, _parse_time(path, line, stamp), value))
    if not rows:
        raise BacktestError(f"{path}: no samples")
    return rows


def _load_prometheus(path: Path, text: str) -> tuple[list[InputRow], int]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BacktestError(f"{path}: not valid JSON: {exc}") from None
    if isinstance(doc, dict) and doc.get("status") == "error":
        raise BacktestError(
            f"{path}: the export is a Prometheus error response: "
            f"{doc.get('errorType', 'error')}: {doc.get('error', '(no message)')}"
        )
    try:
        data = doc["data"]
        result = data["result"]
    except (KeyError, TypeError):
        raise BacktestError(
            f"{path}: not a Prometheus range-query export (no data.result)"
        ) from None
    if data.get("resultType", "matrix") != "matrix":
        raise BacktestError(
            f"{path}: resultType is {data.get('resultType')!r}; export a range query "
            "(/api/v1/query_range, resultType 'matrix'), not an instant query"
        )
    if not isinstance(result, list) or len(result) != 1:
        count = len(result) if isinstance(result, list) else 0
        raise BacktestError(
            f"{path}: the export holds {count} series; export exactly one "
            "(narrow the query's label matchers)"
        )
    rows, skipped = [], 0
    for i, pair in enumerate(result[0].get("values", []), start=1):
        try:
            stamp, raw_value = pair
        except (TypeError, ValueError):
            raise BacktestError(
                f"{path}: sample {i} (from 1): expected [time, \"value\"], got {pair!r}"
            ) from None
        try:
            value = float(raw_value)
        except (TypeError, ValueError):
            raise BacktestError(
                f"{path}: sample {i} (from 1): value {raw_value!r} is not a number"
            ) from None
        if not math.isfinite(value):
            skipped += 1
            continue
        text_stamp = str(stamp)
        rows.append(InputRow(text_stamp, _parse_time(path, i, stamp), value))
    if not rows:
        raise BacktestError(f"{path}: no finite samples")
    return rows, skipped


def load_feedback(path: Path | str) -> list[Feedback]:
    """Read the JSON lines of ``autopilot feedback export`` (blank lines skipped).

    Raises:
        BacktestError: unreadable file or a bad line (names the line).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise BacktestError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise BacktestError(f"{path}: not UTF-8 text: {exc.reason}") from None
    out = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            out.append(Feedback.from_dict(json.loads(raw)))
        except json.JSONDecodeError as exc:
            raise BacktestError(f"{path}:{line}: not JSON: {exc}") from None
        except BadRecord as exc:
            raise BacktestError(f"{path}:{line}: {exc}") from None
    return out


# --------------------------------------------------------------------------- run


def run_backtest(
    rows: Sequence[InputRow],
    config: DetectorConfig,
    service: str = "backtest",
    metric: str = "value",
    labels: dict[str, str] | None = None,
    progress: Callable[[Iterable[InputRow]], Iterable[InputRow]] | None = None,
    skipped: int = 0,
    feedback: Sequence[Feedback] | None = None,
) -> BacktestResult:
    """Feed ``rows`` through :func:`detect_series`, one source record per row.

    Args:
        rows: samples in event-time order (as read).
        config: the detector config, as :meth:`DetectorConfig.from_settings` builds it.
        service, metric, labels: the series the samples belong to (the metric name
            picks direction and counter handling, as live).
        progress: optional wrapper of the row iterator (e.g. ``tqdm``).
        skipped: non-finite samples skipped while reading (reported in the summary).
        feedback: feedback records (:func:`load_feedback`); those of this series
            suppress the alerts they match, whatever their period (None: no feedback).

    Returns:
        A :class:`BacktestResult` with one output row per input row.
    """
    all_labels = {**(labels or {}), "service": service}
    baseline = Baseline()
    out: list[OutputRow] = []
    result = BacktestResult(rows=out, mode=config.mode, service=service, metric=metric,
                            skipped=skipped, counter=config.for_metric(metric).counter)
    iterator: Iterable[InputRow] = progress(rows) if progress else rows
    mine: list[Feedback] = []
    if feedback is not None:
        result.with_feedback = True
        series = series_key(service, metric, all_labels)
        mine = [fb for fb in feedback if fb.series == series]
    muted = False
    for offset, row in enumerate(iterator):
        point = MetricPoint(timestamp=row.epoch_s, metric_name=metric, value=row.value,
                            labels=all_labels)
        baseline, (found,) = detect_series(baseline, [point], offset, config)
        v = found.verdict
        # An alert is an anomalous verdict; re-sends and recoveries (v.signal) are
        # records too, but not alerts.
        alert = v.anomalous and found.anomaly is not None
        if mine and found.anomaly is not None:
            kept, suppressed, muted = screen([found], mine, muted, None)
            result.suppressed += suppressed
            if not kept:
                alert = False
                found = replace(found, anomaly=None)
        out.append(OutputRow(
            timestamp=row.text,
            value=row.value,
            anomaly_score=min(1.0, max(0.0, v.score)),
            alert=alert,
            z_score=v.z_score,
            severity=found.anomaly.severity if alert and found.anomaly else None,
            baseline_mean=v.mean,
            baseline_std_dev=v.std,
            cold=v.cold,
            scored=None if v.cold else v.value,
        ))
        if alert:
            result.alerts.append(found)
        if found.anomaly is not None:
            result.records.append(found)
    return result


def write_csv(result: BacktestResult, out: TextIO) -> None:
    """Write :data:`COLUMNS` and one line per row to ``out``."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in result.rows:
        writer.writerow(row.as_csv())


def plot(result: BacktestResult, path: Path | str, band_z: float = 2.5) -> None:
    """Draw the series, the baseline band (mean ± ``band_z`` std) and the alerts (PNG).

    For a counter the series drawn is what was scored, its per-second rate (the band
    is in those units); rows without a rate yet are left out. Imports matplotlib (Agg
    backend) only when called. The series, its band and the y range are drawn by
    :mod:`autopilot.charts` (shared with the incident charts).
    """
    plt = charts.pyplot()

    x = list(range(len(result.rows)))
    nan = float("nan")  # only inside the figure: cold rows have no band
    if result.counter:
        values = [nan if r.scored is None else r.scored for r in result.rows]
    else:
        values = [r.value for r in result.rows]
    mean = [nan if r.cold else r.baseline_mean for r in result.rows]
    lo = [nan if r.cold else r.baseline_mean - band_z * r.baseline_std_dev for r in result.rows]
    hi = [nan if r.cold else r.baseline_mean + band_z * r.baseline_std_dev for r in result.rows]
    fig, (ax, ax_score) = plt.subplots(
        2, 1, figsize=(14, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    charts.draw_band(ax, x, mean, lo, hi, band_z)
    charts.draw_values(ax, x, values, "per-second rate" if result.counter else "value")
    colours = {Severity.MEDIUM: "gold", Severity.HIGH: "orange", Severity.CRITICAL: "red"}
    for sev, colour in colours.items():
        pts = [(i, values[i]) for i, r in enumerate(result.rows) if r.alert and r.severity is sev]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], color=colour, s=40, zorder=3,
                       edgecolors="black", label=f"alert ({sev.value})")
    charts.fit_ylim(ax, values)
    ax.set_title(f"{result.service} / {result.metric} — mode {result.mode}, "
                 f"{sum(r.alert for r in result.rows)} alerts")
    ax.legend(loc="upper left", fontsize=8)
    ax_score.plot(x, [r.anomaly_score for r in result.rows], color="tab:purple", lw=0.6)
    ax_score.set_ylabel("anomaly score")
    ax_score.set_ylim(0, 1.05)
    step = max(1, len(x) // 8)
    ax_score.set_xticks(x[::step], [result.rows[i].timestamp for i in x[::step]], rotation=20,
                        fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
