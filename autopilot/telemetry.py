"""Prometheus counters of the autopilot, served by ``GET /metrics``.

All metrics live in :data:`REGISTRY` (not the process-global default registry, so
tests and several apps in one process stay apart) and are exposed in the Prometheus
text exposition format by :func:`exposition`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "REGISTRY", "exposition"]

REGISTRY = CollectorRegistry(auto_describe=True)

RECORDS = Counter(
    "autopilot_records_processed",
    "Kafka records processed, by stage",
    ["stage"],
    registry=REGISTRY,
)
SAMPLES = Counter(
    "autopilot_samples_processed",
    "Metric samples and log lines processed, by stage",
    ["stage"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "autopilot_dead_letters",
    "Records sent to the dead-letter topic, by stage",
    ["stage"],
    registry=REGISTRY,
)
ANOMALIES = Counter(
    "autopilot_anomalies",
    "Anomalies emitted, by kind and severity",
    ["kind", "severity"],
    registry=REGISTRY,
)
INCIDENTS = Counter(
    "autopilot_incidents",
    "Incident records emitted, by status",
    ["status"],
    registry=REGISTRY,
)
LLM_CALLS = Counter(
    "autopilot_llm_calls",
    "Ollama analysis calls, by outcome (ok or fallback)",
    ["outcome"],
    registry=REGISTRY,
)
LLM_FALLBACKS = Counter(
    "autopilot_llm_fallbacks",
    "Analyses written by the rule-based fallback, by reason class",
    ["reason"],
    registry=REGISTRY,
)
LLM_LATENCY = Histogram(
    "autopilot_llm_latency_seconds",
    "Time of one analysis (Ollama call or fallback), seconds",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120),
    registry=REGISTRY,
)
SLACK_SENDS = Counter(
    "autopilot_slack_sends",
    "Alerts delivered, by outcome (sent, updated, duplicate, console)",
    ["outcome"],
    registry=REGISTRY,
)
SLACK_RETRIES = Counter(
    "autopilot_slack_retries",
    "Slack requests retried, by reason (rate_limited, server_error, connection, delivery)",
    ["reason"],
    registry=REGISTRY,
)
SLACK_FAILURES = Counter(
    "autopilot_slack_failures",
    "Slack sends that failed after the client's retries",
    registry=REGISTRY,
)
SERIES_DROPPED = Counter(
    "autopilot_series_dropped",
    "Samples of new series dropped because their service is at AUTOPILOT_MAX_SERIES_PER_SERVICE",
    registry=REGISTRY,
)
SERIES_EXPIRED = Counter(
    "autopilot_series_expired",
    "Series forgotten after AUTOPILOT_SERIES_TTL_S of event time without samples",
    registry=REGISTRY,
)
REDIS_ERRORS = Counter(
    "autopilot_redis_errors",
    "Redis operations that failed (alert still sent, history skipped)",
    registry=REGISTRY,
)
SAMPLES_SKIPPED = Counter(
    "autopilot_samples_skipped",
    "Input samples left out on purpose, by source (remote_write, exposition, kafka) and "
    "reason (stale, non_finite, no_service, no_name, non_numeric)",
    ["source", "reason"],
    registry=REGISTRY,
)
HTTP_REJECTED = Counter(
    "autopilot_http_rejected",
    "HTTP requests refused before their view, by reason "
    "(unauthorized, rate_limited, too_large)",
    ["reason"],
    registry=REGISTRY,
)


def exposition() -> bytes:
    """The registry in the Prometheus text exposition format (version 0.0.4)."""
    return generate_latest(REGISTRY)

# --- notifier (incident conversations) ------------------------------------------------
SLACK_REFUSALS = Counter(
    "autopilot_slack_refusals",
    "Slack sends refused for good, by Slack's error code (the send is given up)",
    ["reason"],
    registry=REGISTRY,
)
SLACK_UPLOADS = Counter(
    "autopilot_slack_uploads",
    "Chart uploads into incident threads, by outcome (ok, failed)",
    ["outcome"],
    registry=REGISTRY,
)

# --- detector signals (recovery and re-sends: metrics and error rate) -----------------
SIGNAL_RECORDS = Counter(
    "autopilot_signal_records",
    "Signal records sent to autopilot.anomalies that are not new alerts, by kind "
    "(metric, error_rate) and state (firing: a re-send while still firing; resolved: "
    "the series recovered)",
    ["kind", "state"],
    registry=REGISTRY,
)
