"""Pages per service-day, page precision and recall on the Nezha metrics.

The issue's paging measure for services with many metrics (issue 17, "Calm on services
with many metrics"), on the labelled Nezha data in ``bench/data/nezha/`` (layout, fault
times and root-cause labels: its README; MIT, © 2023 IntelligentDDS): Online Boutique
(two days, 10 services, 56 fault injections) and Train Ticket (one day, 46 services, 28
injections), one row a minute per pod with 19 metric columns each.

**Detector.** Every metric column of every pod is one series, backtested through
``autopilot backtest``'s code path (:func:`autopilot.backtest.run_backtest`) with the
shipped default settings (the process environment is not read; ``--set
AUTOPILOT_X=VALUE`` tries a setting). The series is named as a user would name it: the
service is the pod's service (``cartservice-579f59597d-wc2lz`` → ``cartservice``), the
metric is the column in snake case (``PodServerLatencyP90(s)`` →
``pod_server_latency_p90_seconds``; the columns ``bench/rca.py`` names keep its names),
so the direction rules read real metric names (not name-blind, on purpose).

**Warm-up** (as ``bench/rca.py``): the faults start minutes after the metrics begin, so
each series is first fed up to 3 h of its own fault-free samples from 30 min after the
day's last injection, shifted to end just before the day's first sample. Alerts on
those rows are not counted; ``--no-warmup`` scores from a cold start.

**Page rule** (the issue's): per service, the alerts (the backtest's ``alert`` column)
of all its metrics, in time order, are merged into one page while consecutive alerts are
less than 30 min (:data:`MERGE_GAP_S`) apart; a page starts at its first alert.

**Incident window.** The data gives injection times but no fault duration (injections
are 8–10 min apart). An injection's window is ``[start, start + 5 min + 5 min grace)``
(:data:`FAULT_S` — the scoring window of ``bench/rca.py`` — plus :data:`GRACE_S`). A page
is *true* when it starts inside any window. It is credited to the latest injection whose
window holds its start (windows of consecutive injections can overlap).

* precision = true pages / pages;
* recall (any service) = injections credited with at least one true page / injections;
* recall (root-cause service) = the same, counting only pages of the injected service;
* pages per service-day = pages / (services × days), the days being each day's span of
  scored samples;
* *fault-free*: the pages that start after the day's last window plus 30 min (and
  before the first injection minus 30 min), per service-day of that time alone;
* *chance* (a diagnostic): the fault-free time cut into windows of the same length; the
  share of them in which some page starts (any service), and of (window, service) pairs
  in which that service's page starts (root-cause) — what the recalls would be by luck;
* *alert recall* (a diagnostic, not the issue's measure): injections with any alert in
  their window on any service — what the page rule's merging cannot show when
  injections follow each other every few minutes.

**What the autopilot pages** (the ``paged`` keys): the metrics agent's records of the
same series (alerts, re-sends, recoveries) are applied per service, in event time, by
the correlation agent's step (:func:`incident_pages`); every incident opened or
re-opened is a page, merged by the same rule and scored the same way.

The histogram counts, per page, how many distinct metrics of the service alerted in it
(all pages and false pages): the evidence for corroborating across a service's metrics.

Usage::

    python bench/paging.py [--data DIR] [--json [FILE]] [--jobs N] [--no-warmup]
                           [--set AUTOPILOT_X=VALUE ...]

Prints Markdown tables on stdout, progress on stderr; ``--json`` writes the numbers
(default ``bench/results/paging.json``). Exit status 2 on unreadable data or a bad
setting.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import json
import multiprocessing
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import rca as nezha  # noqa: E402

from autopilot import correlation  # noqa: E402
from autopilot.backtest import InputRow, run_backtest  # noqa: E402
from autopilot.correlation import CorrelationConfig, CorrelationState  # noqa: E402
from autopilot.deployments import DeploymentHistory  # noqa: E402
from autopilot.detection import DetectorConfig  # noqa: E402
from autopilot.errors import ConfigError  # noqa: E402
from autopilot.models import Anomaly  # noqa: E402
from autopilot.settings import Settings, load_settings  # noqa: E402

DEFAULT_DATA = HERE / "data" / "nezha"
DEFAULT_JSON = HERE / "results" / "paging.json"
#: Alerts of one service less than this far apart are one page (s).
MERGE_GAP_S = 1800.0
#: Assumed fault duration after the injection (s); the data gives none.
FAULT_S = 300.0
#: Grace after the fault for a page to start in (s).
GRACE_S = 300.0
#: Warm-up samples: from this long after the last injection …
WARMUP_AFTER_S = 1800.0
#: … at most this much (s).
WARMUP_S = 3 * 3600.0
#: Columns that are not metrics.
NOT_METRICS = {"Time", "TimeStamp", "PodName"}
#: Histogram buckets of metrics per page (the last is "this many or more").
HIST_BUCKETS = (1, 2, 3, 4, 5)


class PagingBenchError(ValueError):
    """The data cannot be read; the message names the file (and line)."""


# --------------------------------------------------------------------------- the rule


@dataclass(frozen=True)
class Alert:
    """One alerting sample: time (epoch s), service, metric."""

    at: float
    service: str
    metric: str


@dataclass
class Page:
    """Merged alerts of one service: first and last alert (epoch s), metrics that alerted."""

    service: str
    start: float
    end: float
    metrics: set[str] = field(default_factory=set)
    alerts: int = 0


@dataclass(frozen=True)
class Incident:
    """One labelled injection: start (epoch s), root-cause service, fault type."""

    start: float
    service: str
    fault: str = ""


def merge_pages(alerts: Iterable[Alert], gap_s: float = MERGE_GAP_S) -> list[Page]:
    """The pages of ``alerts``: per service, alerts less than ``gap_s`` seconds apart
    (each from the previous alert of the same service) form one page.

    Returns:
        Pages ordered by start time (then service).
    """
    by_service: dict[str, list[Alert]] = defaultdict(list)
    for a in alerts:
        by_service[a.service].append(a)
    pages: list[Page] = []
    for service, items in by_service.items():
        items.sort(key=lambda a: a.at)
        page: Page | None = None
        for a in items:
            if page is None or a.at - page.end >= gap_s:
                page = Page(service, a.at, a.at)
                pages.append(page)
            page.end = a.at
            page.metrics.add(a.metric)
            page.alerts += 1
    pages.sort(key=lambda p: (p.start, p.service))
    return pages


def window_of(inc: Incident, fault_s: float = FAULT_S, grace_s: float = GRACE_S
              ) -> tuple[float, float]:
    """The incident window ``[start, end)`` in epoch s."""
    return inc.start, inc.start + fault_s + grace_s


def credited(page_start: float, incidents: Sequence[Incident],
             fault_s: float = FAULT_S, grace_s: float = GRACE_S) -> int | None:
    """Index in ``incidents`` (sorted by start) of the latest injection whose window holds
    ``page_start``; None when the page starts in no window (a false page)."""
    starts = [i.start for i in incidents]
    k = bisect.bisect_right(starts, page_start) - 1
    while k >= 0:
        lo, hi = window_of(incidents[k], fault_s, grace_s)
        if lo <= page_start < hi:
            return k
        if hi <= page_start:  # equal lengths: earlier windows end even sooner
            break
        k -= 1
    return None


def score(pages: Sequence[Page], incidents: Sequence[Incident], alerts: Sequence[Alert] = (),
          fault_s: float = FAULT_S, grace_s: float = GRACE_S) -> dict[str, Any]:
    """Page precision and recall.

    Args:
        pages: from :func:`merge_pages`.
        incidents: the labelled injections, sorted by start.
        alerts: the raw alerts, for the alert-recall diagnostic (optional).

    Returns:
        ``pages``, ``true_pages``, ``precision`` (0–1; None without pages),
        ``incidents``, ``recall_any`` and ``recall_root`` (0–1; None without incidents),
        ``alert_recall`` (injections with any alert in their window), the metrics-per-page
        histograms ``metrics_per_page`` and ``metrics_per_false_page`` (bucket → pages).
    """
    hit_any: set[int] = set()
    hit_root: set[int] = set()
    true_pages = 0
    hist: Counter[int] = Counter()
    hist_false: Counter[int] = Counter()
    for p in pages:
        k = credited(p.start, incidents, fault_s, grace_s)
        bucket = min(len(p.metrics), HIST_BUCKETS[-1])
        hist[bucket] += 1
        if k is None:
            hist_false[bucket] += 1
            continue
        true_pages += 1
        hit_any.add(k)
        if p.service == incidents[k].service:
            hit_root.add(k)
    alert_hit = {k for a in alerts
                 if (k := credited(a.at, incidents, fault_s, grace_s)) is not None}
    n, m = len(pages), len(incidents)
    return {
        "pages": n, "true_pages": true_pages,
        "precision": true_pages / n if n else None,
        "incidents": m,
        "recall_any": len(hit_any) / m if m else None,
        "recall_root": len(hit_root) / m if m else None,
        "alert_recall": len(alert_hit) / m if m else None,
        "metrics_per_page": {str(b): hist[b] for b in HIST_BUCKETS},
        "metrics_per_false_page": {str(b): hist_false[b] for b in HIST_BUCKETS},
    }


# --------------------------------------------------------------------------- input


def metric_name(column: str) -> str:
    """The metric name of a Nezha column: ``bench/rca.py``'s name when it has one, else
    the column in snake case with its unit spelled out (``SyscallRead`` →
    ``syscall_read``, ``NodeCpuUsageRate(%)`` → ``node_cpu_usage_rate_percent``)."""
    if column in nezha.METRICS:
        return nezha.METRICS[column]
    m = re.fullmatch(r"([^()]*)(?:\(([^)]*)\))?", column.strip())
    base, unit = (m.group(1), m.group(2)) if m else (column, None)
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", base).lower()
    units = {"%": "percent", "s": "seconds", "mi": "mib", "m": "millicores", "ops": "ops"}
    if unit:
        snake += "_" + units.get(unit.lower(), re.sub(r"\W+", "_", unit.lower()))
    snake = re.sub(r"_+", "_", snake).strip("_")
    return snake.removeprefix("pod_")  # as bench/rca.py's names


Series = tuple[str, str, list[tuple[float, float]]]  # service, metric, (epoch s, value)


def load_day(day_dir: Path) -> tuple[list[Series], int]:
    """Every metric series of ``<day>/metric/*_metric.csv``, samples in time order.

    Returns:
        ``(series, fixed)``: one entry per pod and metric column (pods of one service
        share the service name), and how many rows took their time from ``Time``
        (``rca.row_time``).

    Raises:
        PagingBenchError: no files, a file without ``TimeStamp``/``PodName``, a bad time.
    """
    out: list[Series] = []
    fixed = 0
    files = sorted((day_dir / "metric").glob("*_metric.csv"))
    if not files:
        raise PagingBenchError(f"{day_dir / 'metric'}: no *_metric.csv files")
    for path in files:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"TimeStamp", "PodName"} <= set(reader.fieldnames):
                raise PagingBenchError(f"{path}: needs the columns TimeStamp and PodName")
            columns = [c for c in reader.fieldnames if c not in NOT_METRICS]
            cols: dict[str, list[tuple[float, float]]] = {c: [] for c in columns}
            service = ""
            for line, row in enumerate(reader, start=2):
                t, from_text = nezha.row_time(row)
                if t is None:
                    raise PagingBenchError(f"{path}: line {line}: bad TimeStamp "
                                           f"{row['TimeStamp']!r}")
                fixed += from_text
                service = nezha.service_of(row["PodName"])
                for c in columns:
                    v = nezha._float(row.get(c) or "")
                    if v is not None:
                        cols[c].append((t, v))
            for c, samples in cols.items():
                if samples:
                    samples.sort()
                    out.append((service, metric_name(c), samples))
    return out, fixed


# --------------------------------------------------------------------------- replay

_JOB: dict[str, Any] = {}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _backtest(task: tuple[Series, float | None, float]) -> tuple[list[Alert], list[Anomaly]]:
    """Backtest one series (after its warm-up): its alerts after the warm-up, and every
    record the metrics agent would publish after it (alerts, re-sends, recoveries)."""
    (service, metric, samples), warm_from, first = task
    rows: list[InputRow] = []
    if warm_from is not None:
        warm = [s for s in samples if warm_from <= s[0] < warm_from + WARMUP_S]
        if warm:
            shift = (first - 60.0) - warm[-1][0]
            rows += [InputRow(_iso(t + shift), t + shift, v) for t, v in warm]
    n_warm = len(rows)
    rows += [InputRow(_iso(t), t, v) for t, v in samples]
    result = run_backtest(rows, _JOB["config"], service=service, metric=metric)
    alerts = [Alert(rows[i].epoch_s, service, metric)
              for i, r in enumerate(result.rows) if i >= n_warm and r.alert]
    records = [f.anomaly for f in result.records
               if f.anomaly is not None and f.anomaly.detected_at.timestamp() >= first]
    return alerts, records


def incident_pages(records: Iterable[Anomaly]) -> list[Alert]:
    """What the autopilot pages: the metrics agent's records of each service, in event
    time order, applied by the correlation agent's own step
    (:func:`autopilot.correlation.step`, shipped settings, no deployments or error
    lines); every incident it opens or re-opens is one page at the time of the record
    that opened it (one :class:`Alert` per firing signal of the incident, so the
    histogram counts its signals; they merge into one page)."""
    by_service: dict[str, list[Anomaly]] = defaultdict(list)
    for a in records:
        by_service[a.service].append(a)
    config = _JOB["correlation"]
    pages: list[Alert] = []
    for service, items in by_service.items():
        items.sort(key=lambda a: (a.detected_at, a.series, a.state != "resolved"))
        state = CorrelationState()
        for a in items:
            state, out = correlation.step(state, a, source=None,
                                          deployments=DeploymentHistory(), errors=[],
                                          wall_now=a.detected_at.timestamp(),
                                          config=config)
            pages += [Alert(a.detected_at.timestamp(), service, sig.metric_name)
                      for inc in out if inc.status in ("opened", "reopened")
                      for sig in inc.signals if sig.state == "firing"]
    return pages


@dataclass
class Day:
    """One replayed ``<system>/<day>``."""

    system: str
    day: str
    services: int
    series: int
    service_names: frozenset[str]
    span_s: float
    free_spans: list[tuple[float, float]]
    incidents: list[Incident]
    alerts: list[Alert]
    fixed_times: int
    pages: list[Alert] = field(default_factory=list)


def replay_day(day_dir: Path, warmup: bool, jobs: int) -> Day:
    """Backtest every series of one day and collect its alerts."""
    cases = nezha.load_cases(day_dir)
    series, fixed = load_day(day_dir)
    first = min(s[2][0][0] for s in series)
    last = max(s[2][-1][0] for s in series)
    incidents = [Incident(c.at, c.service, c.fault) for c in cases]
    warm_from = cases[-1].at + WARMUP_AFTER_S if (warmup and cases) else None
    tasks = [(s, warm_from, first) for s in series]
    alerts: list[Alert] = []
    records: list[Anomaly] = []
    t0 = time.monotonic()
    if jobs > 1:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            for k, (got, recs) in enumerate(
                    pool.imap_unordered(_backtest, tasks, chunksize=4), 1):
                alerts += got
                records += recs
                _progress(day_dir, k, len(tasks), t0)
    else:
        for k, task in enumerate(tasks, 1):
            got, recs = _backtest(task)
            alerts += got
            records += recs
            _progress(day_dir, k, len(tasks), t0)
    free: list[tuple[float, float]] = []
    if incidents:
        lo = incidents[0].start - MERGE_GAP_S
        hi = window_of(incidents[-1])[1] + MERGE_GAP_S
        free = [(a, b) for a, b in ((first, lo), (hi, last)) if b > a]
    else:
        free = [(first, last)]
    names = frozenset(s[0] for s in series)
    return Day(day_dir.parent.name, day_dir.name, len(names), len(series), names,
               last - first, free, incidents, alerts, fixed, incident_pages(records))


def _progress(day_dir: Path, k: int, n: int, t0: float) -> None:
    if k == n or k % 50 == 0:
        print(f"{day_dir.parent.name}/{day_dir.name}: {k}/{n} series "
              f"({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- report


def summarise(days: Sequence[Day], paged: bool = False) -> dict[str, Any]:
    """The numbers of one or more days (pages are merged per day and service): of the
    detector's alerts (the issue's rule), or with ``paged`` of the incidents the
    correlation step opens (:func:`incident_pages`), merged by the same rule."""
    pages_n = 0
    service_days = free_service_days = 0.0
    free_pages = 0
    day_count = 0.0
    chance_windows = chance_any = chance_pairs = chance_root = 0
    services: set[tuple[str, str]] = set()
    all_pages: list[Page] = []
    all_incidents: list[Incident] = []
    all_alerts: list[Alert] = []
    for d in days:
        pages = merge_pages(d.pages if paged else d.alerts)
        pages_n += len(pages)
        all_pages += pages
        all_incidents += d.incidents
        all_alerts += d.alerts
        service_days += d.services * d.span_s / 86400.0
        day_count += d.span_s / 86400.0
        free_s = sum(b - a for a, b in d.free_spans)
        free_service_days += d.services * free_s / 86400.0
        free_pages += sum(1 for p in pages if any(a <= p.start < b for a, b in d.free_spans))
        services |= {(d.system, s) for s in d.service_names}
        width = FAULT_S + GRACE_S
        for a, b in d.free_spans:
            for k in range(int((b - a) // width)):
                lo, hi = a + k * width, a + (k + 1) * width
                hit = {p.service for p in pages if lo <= p.start < hi}
                chance_windows += 1
                chance_any += bool(hit)
                chance_pairs += d.services
                chance_root += len(hit)
    all_incidents.sort(key=lambda i: i.start)  # days do not overlap in time
    merged = score(all_pages, all_incidents, all_alerts)
    merged.update({
        "services": len(services),
        "service_days": round(service_days, 3),
        "days": round(day_count, 3),
        "series": sum(d.series for d in days),
        "alerts": len(all_alerts),
        "pages_per_service_day": pages_n / service_days if service_days else None,
        "fault_free_service_days": round(free_service_days, 3),
        "fault_free_pages": free_pages,
        "chance_any": chance_any / chance_windows if chance_windows else None,
        "chance_root": chance_root / chance_pairs if chance_pairs else None,
        "fault_free_pages_per_service_day": (free_pages / free_service_days
                                             if free_service_days else None),
    })
    return merged


def _f(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def table(summary: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown tables: the paging measure per system and overall, of the detector's
    alerts and of the incidents the autopilot opens, then the histograms."""
    return "\n\n".join([
        "Alerts (the detector's ``alert`` column, merged by the page rule):", "",
        _table(summary),
        "Incidents (what the autopilot pages: the correlation rules over the same "
        "records, merged by the page rule):", "",
        _table({k: v["paged"] for k, v in summary.items()})])


def _table(summary: Mapping[str, Mapping[str, Any]]) -> str:
    lines = [
        "| system | services | days | service-days | pages | pages/service-day | precision "
        "| recall (any service) | recall (root-cause service) | chance (any / root) "
        "| alert recall | fault-free pages/service-day |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        lines.append(
            f"| {name} | {s['services']} | {s['days']:.2f} | {s['service_days']:.1f} "
            f"| {s['pages']} "
            f"| {_f(s['pages_per_service_day'])} | {_f(s['precision'])} "
            f"| {_f(s['recall_any'])} | {_f(s['recall_root'])} "
            f"| {_f(s['chance_any'])} / {_f(s['chance_root'])} | {_f(s['alert_recall'])} "
            f"| {_f(s['fault_free_pages_per_service_day'])} "
            f"({s['fault_free_pages']} in {s['fault_free_service_days']:.1f}) |")
    lines += ["", "Metrics of the service that alerted in one page "
              f"(buckets 1 … {HIST_BUCKETS[-1]}+):", ""]
    for name, s in summary.items():
        for key, label in (("metrics_per_page", "all pages"),
                           ("metrics_per_false_page", "false pages")):
            h = s[key]
            n = sum(h.values())
            cells = ", ".join(
                f"{b}{'+' if int(b) == HIST_BUCKETS[-1] else ''}: {c}"
                + (f" ({100 * c / n:.0f} %)" if n else "") for b, c in h.items())
            lines.append(f"- {name}, {label} ({n}): {cells}")
    return "\n".join(lines)


def run(data: Path, warmup: bool, jobs: int) -> dict[str, dict[str, Any]]:
    """Replay every day under ``data``; the summary per system and ``overall``."""
    day_dirs = sorted(p.parent for p in data.glob("*/*/fault_list.json"))
    if not day_dirs:
        raise PagingBenchError(f"{data}: no <system>/<day>/fault_list.json")
    days: list[Day] = []
    for d in day_dirs:
        t0 = time.monotonic()
        day = replay_day(d, warmup, jobs)
        days.append(day)
        print(f"{day.system}/{day.day}: {day.series} series, {len(day.alerts)} alerts, "
              f"{len(merge_pages(day.alerts))} pages, {len(day.incidents)} injections"
              + (f", {day.fixed_times} row times taken from Time" if day.fixed_times else "")
              + f" ({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)
    by_system: dict[str, list[Day]] = defaultdict(list)
    for day in days:
        by_system[day.system].append(day)
    out = {name: summarise(ds) for name, ds in by_system.items()}
    out["overall"] = summarise(days)
    for name, ds in by_system.items():
        out[name]["paged"] = summarise(ds, paged=True)
    out["overall"]["paged"] = summarise(days, paged=True)
    return out


def main(argv: Iterable[str] | None = None) -> int:
    """The command line (module docstring); returns the exit status (2: bad data)."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA,
                    help="directory in the Nezha layout (<system>/<day>/fault_list.json …)")
    ap.add_argument("--json", type=Path, nargs="?", const=DEFAULT_JSON, default=None,
                    help=f"also write the numbers as JSON (default {DEFAULT_JSON.name})")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--no-warmup", action="store_true",
                    help="score from a cold start (no fault-free warm-up)")
    ap.add_argument("--set", action="append", default=[], metavar="AUTOPILOT_X=VALUE",
                    help="try a setting instead of the shipped default (repeatable)")
    args = ap.parse_args(list(argv) if argv is not None else None)
    if args.json is not None and not args.json.resolve().parent.is_dir():
        print(f"error: --json {args.json}: no such directory", file=sys.stderr)
        return 2
    known = {str(f.validation_alias) for f in Settings.model_fields.values()}
    bad = [s for s in args.set if s.partition("=")[0] not in known or "=" not in s]
    if bad:
        print(f"error: --set {bad[0]!r}: expected AUTOPILOT_X=VALUE with a known setting "
              "(docs/settings.md)", file=sys.stderr)
        return 2
    overrides = dict(s.split("=", 1) for s in args.set)
    try:
        settings = load_settings(overrides)
        _JOB["config"] = DetectorConfig.from_settings(settings)
        _JOB["correlation"] = CorrelationConfig.from_settings(settings)
    except (ValueError, ConfigError) as exc:
        print(f"error: --set: {exc}", file=sys.stderr)
        return 2
    t0, c0 = time.monotonic(), time.process_time()
    try:
        summary = run(args.data, not args.no_warmup, max(1, args.jobs))
    except (PagingBenchError, nezha.RcaBenchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table(summary))
    wall = time.monotonic() - t0
    print(f"\nwall {wall:.0f} s, CPU {time.process_time() - c0:.0f} s (this process)",
          file=sys.stderr)
    if args.json is not None:
        doc = {"warmup": not args.no_warmup, "merge_gap_s": MERGE_GAP_S,
               "fault_s": FAULT_S, "grace_s": GRACE_S, "settings": overrides,
               "wall_s": round(wall, 1), "systems": summary}
        args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
