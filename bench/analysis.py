#!/usr/bin/env python3
"""A measure of analysis quality: the rules and the configured model on incidents with
known root causes.

    python bench/analysis.py [--limit N] [--no-llm] [--only constructed|nezha]
        [--json OUT.json] [--derive-nezha ../shared/data/nezha]

Runs the analysis path of the analysis agent (``agents/analysis.py``) on each
scenario: the rule-based analysis (:func:`autopilot.analysis.fallback_analysis`), and
the configured Ollama model through the worker's own client
(:func:`autopilot.integrations.ollama.analyze_or_fallback`: ``OLLAMA_URL``,
``OLLAMA_MODEL``, ``OLLAMA_TIMEOUT_S``, ``AUTOPILOT_OLLAMA_NUM_CTX`` …, read by
:func:`autopilot.settings.load_settings`) followed by the grounding check
(:mod:`autopilot.grounding`). ``--limit N`` caps the model calls (the first N
scenarios; the others are analysed by the rules only); ``--no-llm`` makes none.

Scenarios (each with the root-cause service and fault kind):

* **constructed** (built here): a bad deployment, a database saturation, an upstream
  timeout, a memory leak, a CPU saturation, and noise (one mild latency anomaly,
  nothing else; the right answer is a low-confidence "unknown");
* **nezha**: the 84 fault cases of the Nezha data (Online Boutique 56, Train Ticket 28;
  Yu et al., ESEC/FSE 2023, MIT), derived into ``bench/data/nezha-analysis/cases.json``
  by ``--derive-nezha`` (metrics only: each pod's metrics in the 4 minutes after the
  injection against the 7 minutes before; see that folder's README). The incident is
  opened on the service of the largest |z| (what a per-service detector alerts on
  first) and holds the anomalies of every pod.

Scores, per analyser: **service** — the root-cause description names the root-cause
service (noise: names none); **kind** — it names the fault kind (keywords:
:data:`KIND_WORDS`; noise: confidence ≤ 30 or "unknown"); **grounded** — the share of
the model's answers that passed the grounding check; latency per analysis (ms, mean
and p95). Progress goes to stderr every 10 scenarios; the table to stdout; ``--json``
writes every result and the summary.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import re
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autopilot.analysis import fallback_analysis  # noqa: E402
from autopilot.grounding import apply_grounding, check_grounding  # noqa: E402
from autopilot.models import (  # noqa: E402
    Analysis,
    Anomaly,
    DeploymentEvent,
    Incident,
    LogEntry,
    Severity,
)

NEZHA_CASES = ROOT / "bench" / "data" / "nezha-analysis" / "cases.json"

#: Words that name a fault kind in a root-cause description (case-insensitive).
KIND_WORDS: dict[str, str] = {
    "deployment": r"deploy|release|version|roll(?:ed|ing)? ?back",
    "database": r"database|\bdb\b|sql|connection pool|postgres|mysql",
    "upstream": r"upstream|dependenc|time(?:d)? ?out|gateway|downstream|connection refused",
    "memory": r"memory|\boom\b|heap",
    "cpu": r"\bcpu\b|saturat|capacity|throttl|contention|resource",
    "network": r"network|latency|delay|slow",
    "code": r"error|exception|bug|\bcode\b|return",
    "noise": r"unknown|noise|no (?:clear )?(?:incident|cause)|insufficient|thin",
}
#: Nezha ``inject_type`` → fault kind.
NEZHA_KINDS = {"cpu_contention": "cpu", "cpu_consumed": "cpu", "network_delay": "network",
               "return": "code", "exception": "code"}
#: Nezha metric columns kept → metric name suffix.
NEZHA_COLUMNS = {
    "CpuUsageRate(%)": "cpu_usage_percent",
    "MemoryUsageRate(%)": "memory_usage_percent",
    "PodClientLatencyP90(s)": "client_latency_p90_seconds",
    "PodServerLatencyP90(s)": "server_latency_p90_seconds",
    "PodSuccessRate(%)": "success_rate_percent",
    "PodWorkload(Ops)": "workload_ops",
    "NetworkTransmitBytes": "network_transmit_bytes",
}


@dataclass
class Scenario:
    """One incident with a known root cause."""

    name: str
    incident: Incident
    service: str  # the root-cause service ("" for noise)
    kind: str  # a key of KIND_WORDS


@dataclass
class Result:
    """One analysis of one scenario."""

    scenario: str
    analyser: str  # "rules" or "llm"
    source: str  # the analysis's source (a failed LLM call falls back to "rules")
    service_ok: bool
    kind_ok: bool
    grounded: bool | None
    latency_ms: float
    root_cause: str
    confidence: int
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- scenarios

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def _anomaly(service: str, metric: str, value: float, mean: float, std: float,
             at: datetime = T0, kind: str = "metric") -> Anomaly:
    z = (value - mean) / std if std > 0 else 0.0
    severity = (Severity.CRITICAL if abs(z) >= 6 else Severity.HIGH if abs(z) >= 4
                else Severity.MEDIUM if abs(z) >= 3 else Severity.LOW)
    return Anomaly(kind=kind, metric_name=metric, service=service, current_value=value,
                   baseline_mean=mean, baseline_std_dev=std, z_score=z,
                   deviation_percent=100.0 * (value - mean) / abs(mean) if mean else 0.0,
                   severity=severity, detected_at=at)


def _incident(name: str, service: str, anomalies: list[Anomaly],
              errors: list[str] = (), deployments: list[DeploymentEvent] = ()  # type: ignore[assignment]
              ) -> Incident:
    top = max(anomalies, key=lambda a: (a.severity.rank, abs(a.z_score)))
    return Incident(
        id=f"bench-{name}", service=service, status="opened", revision=1, notify=True,
        severity=top.severity, trigger_reason=f"{top.severity.value} anomaly on "
        f"{top.metric_name}", opened_at=T0, updated_at=T0 + timedelta(minutes=1),
        anomalies=anomalies,
        recent_errors=[LogEntry(timestamp=T0 - timedelta(seconds=30 - i), level="ERROR",
                                message=m, service=service) for i, m in enumerate(errors)],
        recent_deployments=list(deployments))


def constructed() -> list[Scenario]:
    """The constructed scenarios (module docstring)."""
    dep = [DeploymentEvent(timestamp=T0 - timedelta(hours=20), service="checkout",
                           version="v5.1.3"),
           DeploymentEvent(timestamp=T0 - timedelta(minutes=4), service="checkout",
                           version="v5.2.0")]
    return [
        Scenario("bad-deployment", _incident("bad-deployment", "checkout", [
            _anomaly("checkout", "http_request_duration_p99_seconds", 2.4, 0.3, 0.05),
            _anomaly("checkout", "http_requests_errors_per_second", 40, 1, 0.5,
                     kind="error_rate")],
            ["NullPointerException at CartMapper.toDto(CartMapper.java:88)"] * 3, dep),
            "checkout", "deployment"),
        Scenario("database-saturation", _incident("database-saturation", "orders", [
            _anomaly("orders", "db_pool_wait_seconds", 4.2, 0.01, 0.005),
            _anomaly("orders", "http_request_duration_p99_seconds", 5.0, 0.4, 0.1)],
            ["HikariPool-1 - Connection is not available, request timed out after 30000ms",
             "could not obtain a database connection: too many connections"]),
            "orders", "database"),
        Scenario("upstream-timeout", _incident("upstream-timeout", "frontend", [
            _anomaly("frontend", "http_request_duration_p99_seconds", 10.0, 0.5, 0.1),
            _anomaly("frontend", "http_5xx_per_second", 25, 0.5, 0.5, kind="error_rate")],
            ["upstream request timeout calling payments-gateway: 504 Gateway Timeout",
             "context deadline exceeded calling payments-gateway"]),
            "payments-gateway", "upstream"),
        Scenario("memory-leak", _incident("memory-leak", "search", [
            _anomaly("search", "process_resident_memory_bytes", 3.9e9, 1.2e9, 1e8)],
            ["java.lang.OutOfMemoryError: Java heap space"]),
            "search", "memory"),
        Scenario("cpu-saturation", _incident("cpu-saturation", "recommendation", [
            _anomaly("recommendation", "container_cpu_usage_percent", 98, 35, 5),
            _anomaly("recommendation", "http_request_duration_p99_seconds", 1.9, 0.2, 0.04)]),
            "recommendation", "cpu"),
        Scenario("noise", _incident("noise", "catalog", [
            _anomaly("catalog", "http_request_duration_p99_seconds", 0.33, 0.3, 0.009)]),
            "", "noise"),
    ]


def nezha() -> list[Scenario]:
    """The derived Nezha cases (``bench/data/nezha-analysis/cases.json``)."""
    if not NEZHA_CASES.exists():
        return []
    out = []
    for case in json.loads(NEZHA_CASES.read_text())["cases"]:
        at = datetime.fromtimestamp(case["inject_timestamp"], UTC)
        anomalies = [
            _anomaly(a["service"], f"{a['service'].replace('-', '_')}_{a['metric']}",
                     a["value"], a["mean"], a["std"], at + timedelta(seconds=a["after_s"]))
            for a in case["anomalies"]]
        if not anomalies:
            continue
        top = max(anomalies, key=lambda a: abs(a.z_score))
        inc = _incident(case["id"], top.service, anomalies).model_copy(
            update={"opened_at": at, "updated_at": at + timedelta(minutes=4)})
        out.append(Scenario(case["id"], inc, case["service"], NEZHA_KINDS[case["fault"]]))
    return out


# --------------------------------------------------------------------------- scoring


def score(analysis: Analysis, scenario: Scenario) -> tuple[bool, bool]:
    """``(service_ok, kind_ok)`` of an analysis's root cause (module docstring)."""
    text = analysis.root_cause.description.lower()
    if scenario.kind == "noise":
        quiet = analysis.root_cause.confidence <= 30 or bool(
            re.search(KIND_WORDS["noise"], text))
        return quiet, quiet
    service = scenario.service.lower()
    variants = {service, service.replace("-", " "), service.removeprefix("ts-")}
    service_ok = any(re.search(rf"(?<![\w-]){re.escape(v)}(?![\w-])", text) for v in variants)
    return service_ok, bool(re.search(KIND_WORDS[scenario.kind], text))


async def run(scenarios: list[Scenario], limit: int | None) -> list[Result]:
    """Analyse every scenario with the rules, and the first ``limit`` with the model."""
    from autopilot.integrations.ollama import OllamaClient, analyze_or_fallback
    from autopilot.settings import load_settings

    settings = load_settings()
    window = float(settings.deployment_window_s)
    client = OllamaClient(settings) if limit != 0 else None
    results: list[Result] = []
    calls = 0
    try:
        if client is not None:
            await client.start()
            await client.guard.check_model(client)
        for i, sc in enumerate(scenarios, 1):
            started = time.perf_counter()
            rules = fallback_analysis(sc.incident, deployment_window_s=window)
            ms = (time.perf_counter() - started) * 1000
            results.append(Result(sc.name, "rules", rules.source, *score(rules, sc), None, ms,
                                  rules.root_cause.description, rules.root_cause.confidence))
            if client is not None and (limit is None or calls < limit):
                calls += 1
                started = time.perf_counter()
                analysis, reason = await analyze_or_fallback(client, sc.incident)
                grounded: bool | None = None
                if reason is None:
                    result = check_grounding(analysis, sc.incident)
                    analysis = apply_grounding(analysis, result, rules)
                    grounded = result.grounded
                ms = (time.perf_counter() - started) * 1000
                results.append(Result(
                    sc.name, "llm", analysis.source, *score(analysis, sc), grounded, ms,
                    analysis.root_cause.description, analysis.root_cause.confidence,
                    {"fallback_reason": None if reason is None else str(reason),
                     "unverified_names": analysis.unverified_names,
                     "dropped_actions": analysis.dropped_actions}))
            if i % 10 == 0 or i == len(scenarios):
                print(f"[{i}/{len(scenarios)}] analysed, {calls} model call(s)",
                      file=sys.stderr, flush=True)
    finally:
        if client is not None:
            await client.aclose()
    return results


def summarize(results: list[Result]) -> dict[str, dict[str, Any]]:
    """Per analyser: counts, service/kind accuracy (%), grounded share, latency."""
    out: dict[str, dict[str, Any]] = {}
    for analyser in ("rules", "llm"):
        rows = [r for r in results if r.analyser == analyser]
        if not rows:
            continue
        answered = [r for r in rows if r.source == "llm"] if analyser == "llm" else rows
        lat = sorted(r.latency_ms for r in rows)
        out[analyser] = {
            "analyses": len(rows),
            "answered": len(answered),
            "service_pct": round(100 * sum(r.service_ok for r in rows) / len(rows), 1),
            "kind_pct": round(100 * sum(r.kind_ok for r in rows) / len(rows), 1),
            "both_pct": round(100 * sum(r.service_ok and r.kind_ok for r in rows)
                              / len(rows), 1),
            "grounded_pct": (round(100 * sum(bool(r.grounded) for r in answered)
                                   / len(answered), 1)
                             if analyser == "llm" and answered else None),
            "latency_ms_mean": round(statistics.fmean(lat), 2),
            "latency_ms_p95": round(lat[min(len(lat) - 1, math.ceil(0.95 * len(lat)) - 1)], 2),
        }
    return out


def table(summary: dict[str, dict[str, Any]], title: str) -> str:
    """A Markdown table of :func:`summarize`."""
    lines = [f"{title}", "",
             "| analyser | analyses | model answered | service right | fault kind right "
             "| both | grounded | latency mean | latency p95 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        grounded = "—" if s["grounded_pct"] is None else f"{s['grounded_pct']}%"
        answered = "—" if name == "rules" else str(s["answered"])
        lines.append(
            f"| {name} | {s['analyses']} | {answered} | {s['service_pct']}% | "
            f"{s['kind_pct']}% | {s['both_pct']}% | {grounded} | "
            f"{s['latency_ms_mean']} ms | {s['latency_ms_p95']} ms |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- derive


def _num(text: str) -> float:
    return float(text)


def _ok(row: dict[str, str], column: str) -> bool:
    """The row has a finite number in ``column``."""
    try:
        return math.isfinite(float(row.get(column) or "nan"))
    except ValueError:
        return False


def _service_of(pod: str) -> str:
    """Nezha's rule: the pod name without its two trailing hash parts."""
    return pod.rsplit("-", 2)[0]


def derive_nezha(source: Path, keep: int = 8) -> dict[str, Any]:
    """Derive the analysis cases from the Nezha data at ``source`` (its README): for
    each fault, every pod's metrics in [t, t+240 s] against [t−420 s, t−60 s]; the
    ``keep`` largest |z| ≥ 3 per case (std floored at 1 % of |mean| and 1e-6)."""
    cases = []
    for system in ("online-boutique", "train-ticket"):
        for day in sorted(p for p in (source / system).iterdir() if p.is_dir()):
            rows: dict[str, list[dict[str, str]]] = {}
            for path in sorted((day / "metric").glob("*_metric.csv")):
                with path.open(newline="") as f:
                    rows[path.name.removesuffix("_metric.csv")] = list(csv.DictReader(f))
            faults = json.loads((day / "fault_list.json").read_text())
            for hour in sorted(faults):
                for n, fault in enumerate(faults[hour]):
                    t = int(fault["inject_timestamp"])
                    anomalies: list[dict[str, Any]] = []
                    for pod, data in rows.items():
                        for column, metric in NEZHA_COLUMNS.items():
                            before = [_num(r[column]) for r in data if _ok(r, column)
                                      and t - 420 <= int(r["TimeStamp"]) < t - 60]
                            after = [(int(r["TimeStamp"]) - t, _num(r[column])) for r in data
                                     if _ok(r, column) and t <= int(r["TimeStamp"]) <= t + 240]
                            if len(before) < 3 or not after:
                                continue
                            mean = statistics.fmean(before)
                            std = max(statistics.pstdev(before), 0.01 * abs(mean), 1e-6)
                            after_s, value = max(after, key=lambda p: abs(p[1] - mean))
                            z = (value - mean) / std
                            if abs(z) >= 3:
                                anomalies.append({"service": _service_of(pod), "metric": metric,
                                                  "value": round(value, 6),
                                                  "mean": round(mean, 6), "std": round(std, 6),
                                                  "after_s": after_s, "z": round(z, 2)})
                    anomalies.sort(key=lambda a: -abs(float(a["z"])))
                    cases.append({
                        "id": f"{system}-{day.name}-{hour}-{n}", "system": system,
                        "inject_timestamp": t, "service": _service_of(fault["inject_pod"]),
                        "fault": fault["inject_type"], "anomalies": anomalies[:keep]})
    return {"source": "Nezha (Yu et al., ESEC/FSE 2023; IntelligentDDS/Nezha, MIT), derived "
            "by bench/analysis.py --derive-nezha", "cases": cases}


def main(argv: list[str] | None = None) -> int:
    """The command line (module docstring); returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None,
                        help="at most N model calls (default: one per scenario)")
    parser.add_argument("--no-llm", action="store_true", help="the rules only")
    parser.add_argument("--only", choices=("constructed", "nezha"), default=None)
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    parser.add_argument("--derive-nezha", type=Path, default=None, metavar="NEZHA_DIR",
                        help=f"rebuild {NEZHA_CASES.relative_to(ROOT)} from the Nezha data")
    args = parser.parse_args(argv)
    if args.derive_nezha is not None:
        NEZHA_CASES.parent.mkdir(parents=True, exist_ok=True)
        derived = derive_nezha(args.derive_nezha)
        NEZHA_CASES.write_text(json.dumps(derived, separators=(",", ":")) + "\n")
        print(f"wrote {len(derived['cases'])} cases to {NEZHA_CASES}", file=sys.stderr)
        return 0
    groups = {"constructed": constructed(), "nezha": nezha()}
    if NEZHA_CASES.exists():  # cases without an anomaly open no incident: said, not scored
        total = len(json.loads(NEZHA_CASES.read_text())["cases"])
        print(f"nezha: {len(groups['nezha'])} of {total} cases have an anomaly (|z| >= 3) "
              "in the derived metrics; the others are left out", file=sys.stderr)
    if args.only:
        groups = {args.only: groups[args.only]}
    limit = 0 if args.no_llm else args.limit
    started = time.monotonic()
    report: dict[str, Any] = {"limit": limit, "groups": {}}
    for name, scenarios in groups.items():
        results = asyncio.run(run(scenarios, limit))
        summary = summarize(results)
        print(table(summary, f"{name} ({len(scenarios)} scenarios)"))
        print()
        report["groups"][name] = {"summary": summary, "results": [asdict(r) for r in results]}
        if limit is not None and limit > 0:
            limit = max(0, limit - sum(r.analyser == "llm" for r in results))
    print(f"done in {time.monotonic() - started:.1f} s", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
