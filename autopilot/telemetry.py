"""Prometheus counters of the autopilot, served by ``GET /metrics``.

All metrics live in :data:`REGISTRY` (not the process-global default registry, so
tests and several apps in one process stay apart) and are exposed in the Prometheus
text exposition format by :func:`exposition`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
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
ANOMALIES_SUPPRESSED = Counter(
    "autopilot_anomalies_suppressed",
    "Anomaly alerts computed but not sent, by reason (feedback: a \"Not an incident\" "
    "of the series matched the departure)",
    ["reason"],
    registry=REGISTRY,
)
INCIDENTS = Counter(
    "autopilot_incidents",
    "Incident records emitted, by status",
    ["status"],
    registry=REGISTRY,
)
NOTIFICATIONS_SILENCED = Counter(
    "autopilot_notifications_silenced",
    "Notifications held back because an active silence matched the incident, by "
    "severity (counted once per incident and silence)",
    ["severity"],
    registry=REGISTRY,
)
SILENCE_CHANGES = Counter(
    "autopilot_silence_changes",
    "Silences created, updated or expired through the API, by action",
    ["action"],
    registry=REGISTRY,
)
SLACK_INTERACTIONS = Counter(
    "autopilot_slack_interactions",
    "Slack button clicks received at POST /slack/interactions and produced to "
    "autopilot.incident.actions, by action",
    ["action"],
    registry=REGISTRY,
)
SLACK_INTERACTIONS_REFUSED = Counter(
    "autopilot_slack_interactions_refused",
    "Requests to POST /slack/interactions refused with 401 (nothing changed), by reason: "
    "unsigned, stale (timestamp not within 5 minutes) or bad_signature",
    ["reason"],
    registry=REGISTRY,
)
INCIDENT_ACTIONS = Counter(
    "autopilot_incident_actions",
    "Slack button actions handled by the service's owner, by action and outcome "
    "(applied, duplicate: applied already, unknown_incident: not a known root message)",
    ["action", "outcome"],
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
LLM_GROUNDING = Counter(
    "autopilot_llm_grounding",
    "LLM analyses checked against the incident's evidence (autopilot.grounding), by "
    "outcome: grounded, or unverified (names not in the evidence or actions dropped)",
    ["outcome"],
    registry=REGISTRY,
)
LLM_GROUNDING_DROPPED_ACTIONS = Counter(
    "autopilot_llm_grounding_dropped_actions",
    "Recommended actions of LLM analyses dropped by the grounding check",
    registry=REGISTRY,
)
LLM_LATENCY = Histogram(
    "autopilot_llm_latency_seconds",
    "Time of one analysis (Ollama call or fallback), seconds",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120),
    registry=REGISTRY,
)
INGEST_BATCH = Histogram(
    "autopilot_ingest_batch_records",
    "Input records per batch of the metrics ingest stage (AUTOPILOT_INGEST_BATCH_RECORDS)",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000),
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
    "Input samples left out on purpose, by source (remote_write, exposition, otlp, kafka) "
    "and reason (stale, non_finite, no_service, no_name, non_numeric; OTLP: "
    "no_recorded_value, empty_histogram, unbounded_bucket, no_sum)",
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

# --- LLM and Slack edges, redaction (issue 12, H4) ------------------------------------
REDACTIONS = Counter(
    "autopilot_redactions",
    "Secrets (and, with AUTOPILOT_REDACT_PII, e-mail and IP addresses) replaced in "
    "untrusted text before it reached the LLM, Slack or a log line, by kind "
    "(autopilot.redact.KINDS); counted once per distinct text",
    ["kind"],
    registry=REGISTRY,
)
LLM_BREAKER_TRIPS = Counter(
    "autopilot_llm_breaker_trips",
    "Times the Ollama circuit breaker opened, by the reason of the failure that opened "
    "it (timeout, connect, model_not_found)",
    ["reason"],
    registry=REGISTRY,
)
SLACK_PLAIN_TEXT_RETRIES = Counter(
    "autopilot_slack_plain_text_retries",
    "Messages Slack refused as invalid_blocks/invalid_blocks_format and sent again as "
    "plain text, by outcome (sent, refused)",
    ["outcome"],
    registry=REGISTRY,
)

# --- ingest under pressure, health (issue 12, H3) --------------------------------------
INGEST_UNAVAILABLE = Counter(
    "autopilot_ingest_unavailable",
    "Ingest requests answered 503 because the broker was unavailable, by reason "
    "(broker_unreachable: refused before anything was queued; ack_timeout: the broker "
    "did not acknowledge within AUTOPILOT_INGEST_TIMEOUT_S, the records may still land)",
    ["reason"],
    registry=REGISTRY,
)
INGEST_RECORDS_SPLIT = Counter(
    "autopilot_ingest_records_split",
    "Batches of HTTP ingest split in two because their record exceeded "
    "AUTOPILOT_MAX_RECORD_BYTES",
    registry=REGISTRY,
)
NATIVE_HISTOGRAMS = Counter(
    "autopilot_native_histograms",
    "Prometheus native-histogram samples received by remote write, by outcome "
    "(converted: to a <name>_count and a <name>_sum sample; stale ones are counted in "
    "autopilot_samples_skipped_total as two stale samples)",
    ["outcome"],
    registry=REGISTRY,
)
BROKER_REACHABLE = Gauge(
    "autopilot_broker_reachable",
    "1 when the worker's last broker probe got the cluster's metadata, 0 otherwise",
    registry=REGISTRY,
)

# --- ingest: one bad item never sinks a batch; time and order (issue 12, H2) ----------
ITEMS_REJECTED = Counter(
    "autopilot_items_rejected",
    "Input items refused while the rest of their body or record was kept, by source "
    "(http, exposition, remote_write, otlp, alertmanager, alerts_v2, kafka) and reason "
    "(invalid, not_json, bad_line, bad_timestamp, non_finite, no_service, "
    "future_timestamp, past_timestamp)",
    ["source", "reason"],
    registry=REGISTRY,
)
ITEMS_DEFAULTED = Counter(
    "autopilot_items_defaulted",
    "Input items kept with a default value, by source and reason (missing_level, "
    "unknown_level: the level became UNKNOWN; missing_version: the version became "
    "unknown; message_truncated)",
    ["source", "reason"],
    registry=REGISTRY,
)
SAMPLES_DROPPED = Counter(
    "autopilot_samples_dropped",
    "Metric samples the metrics stage did not apply, by reason (out_of_order: not newer "
    "than the last sample applied to its series, e.g. an HA pair's second copy or a WAL "
    "replay; future_timestamp: more than AUTOPILOT_MAX_FUTURE_S ahead of the clock)",
    ["reason"],
    registry=REGISTRY,
)
