"""Settings, read once from the environment into a frozen object.

Every setting has an environment variable and a default, listed in ``docs/settings.md``
(generated from this class by ``scripts/settings_doc.py``). :func:`load_settings` takes
the environment as an argument so tests pass their own; nothing reads ``os.environ``
at import time. Secrets (Slack webhook URL and bot token, API keys, Kafka and webhook
passwords) are :class:`pydantic.SecretStr` and never printed.

Detection defaults keep the seed architecture's numbers: a rolling window of 1000
samples (seed mode), no verdict before 10 samples, anomaly when |z| > 2.5, severity
medium > 2.5, high > 3, critical > 4; the default ``adaptive`` mode adds the settings
described in :mod:`autopilot.detection` (its defaults were chosen on the NAB subset in
``bench/``). Correlation defaults: 10-minute evidence window, 30 minutes
after a deployment, close after 15 minutes without new evidence.

Consumer-group timeouts default to short values that suit a local single-node
Kafka, the demo and the tests (a departed worker's partitions move within seconds);
in production use e.g. ``AUTOPILOT_REBALANCE_TIMEOUT_S=60``,
``AUTOPILOT_SESSION_TIMEOUT_S=45``, ``AUTOPILOT_HEARTBEAT_INTERVAL_S=3``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal, get_args

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from autopilot.analysis import MAX_PROMPT_CHARS
from autopilot.deployments import DEPLOYMENT_WINDOW_S
from autopilot.errors import ConfigError

#: Upper bound (tokens) of the largest prompt: MAX_PROMPT_CHARS at 2 characters a token
#: (dense log text with ids and numbers; English prose is about 4).
PROMPT_TOKENS_MAX = MAX_PROMPT_CHARS // 2

__all__ = ["FILE_SUFFIX", "Settings", "load_settings"]


def _env(name: str, default: Any, description: str, **kw: Any) -> Any:
    return Field(default, validation_alias=name, description=description, **kw)


def _comma_list(raw: str) -> tuple[str, ...]:
    """The non-empty items of a comma-separated setting, trimmed, in order."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


class Settings(BaseSettings):
    """All settings of the autopilot (frozen; unknown keys refused).

    Build it with :func:`load_settings`; constructing it directly takes the
    environment-variable names as keyword arguments (``Settings(AUTOPILOT_BROKER=...)``).
    """

    model_config = SettingsConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    # --- Kafka / Faust -----------------------------------------------------------
    app_id: str = _env(
        "AUTOPILOT_APP_ID",
        "autopilot",
        "Faust app id: the consumer group, and the prefix of changelog topics "
        "(<id>-<table>-changelog)",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        max_length=100,
    )
    topic_prefix: str | None = _env(
        "AUTOPILOT_TOPIC_PREFIX",
        None,
        "Prefix of the autopilot's topics (<prefix>.metrics …); default: the app id, so with "
        "the defaults the names are autopilot.metrics …",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        max_length=100,
    )
    broker: str = _env(
        "AUTOPILOT_BROKER", "kafka://localhost:9092", "Kafka bootstrap URL (kafka://host:port)"
    )
    store: str = _env("AUTOPILOT_STORE", "rocksdb://", "Faust table store (rocksdb:// or memory://)")
    rocksdb_memory_mb: int = _env(
        "AUTOPILOT_ROCKSDB_MEMORY_MB", 64,
        "RocksDB memory of the worker (MiB): one block cache for every table partition, "
        "memtables charged to it", ge=8,
    )
    datadir: str = _env("AUTOPILOT_DATADIR", "autopilot-data", "Local table data directory")
    web_host: str = _env(
        "AUTOPILOT_WEB_HOST", "localhost",
        "Host name other workers use to reach this one (table routing)"
    )
    web_port: int = _env("AUTOPILOT_WEB_PORT", 6066, "HTTP port of this worker", ge=1, le=65535)
    partitions: int = _env(
        "AUTOPILOT_PARTITIONS", 8,
        "Partitions of every autopilot topic and table the worker creates", ge=1
    )
    replication_factor: int = _env(
        "AUTOPILOT_REPLICATION_FACTOR", 1, "Replication factor of created topics", ge=1
    )
    standby_replicas: int = _env(
        "AUTOPILOT_STANDBY_REPLICAS", 0, "Standby copies of each table partition on other workers",
        ge=0
    )
    rebalance_timeout_s: float = _env(
        "AUTOPILOT_REBALANCE_TIMEOUT_S", 4.0, "Consumer-group rebalance timeout (s)", gt=0
    )
    session_timeout_s: float = _env(
        "AUTOPILOT_SESSION_TIMEOUT_S", 10.0, "Consumer-group session timeout (s)", gt=0
    )
    heartbeat_interval_s: float = _env(
        "AUTOPILOT_HEARTBEAT_INTERVAL_S", 1.0, "Consumer-group heartbeat interval (s)", gt=0
    )
    commit_interval_s: float = _env(
        "AUTOPILOT_COMMIT_INTERVAL_S", 2.0, "How often consumed offsets are committed (s)", gt=0
    )
    fetch_max_wait_ms: int = _env(
        "AUTOPILOT_FETCH_MAX_WAIT_MS", 100,
        "Fetch wait of the worker's consumer (ms; Kafka's fetch.max.wait.ms, which Faust "
        "fixes at 1500): how long the broker may hold a fetch that finds no new record. "
        "It bounds the produce-to-anomaly latency where the broker answers only when the "
        "wait ends; lower values cost idle CPU (docs/performance.md)", ge=10, le=30_000
    )
    ingest_batch_records: int = _env(
        "AUTOPILOT_INGEST_BATCH_RECORDS", 500,
        "Input records the metrics ingest stage gathers into one batch (one keyed record "
        "per service per batch; 1 forwards record by record; docs/performance.md)",
        ge=1, le=100_000
    )
    ingest_batch_within_ms: int = _env(
        "AUTOPILOT_INGEST_BATCH_WITHIN_MS", 100,
        "How long the metrics ingest stage waits for a batch to fill (ms; added to the "
        "produce-to-anomaly latency when traffic is light)", ge=1, le=10_000
    )
    audit_retention_days: float = _env(
        "AUTOPILOT_AUDIT_RETENTION_DAYS", 90.0,
        "Retention of the autopilot.audit topic (days; its retention.ms when the worker "
        "creates it; an existing topic keeps its own; docs/audit.md)", gt=0
    )

    # --- Kafka security (passed to aiokafka through Faust's broker_credentials) ------
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = _env(
        "AUTOPILOT_KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT",
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
    )
    kafka_ssl_cafile: str | None = _env(
        "AUTOPILOT_KAFKA_SSL_CAFILE", None, "CA bundle (PEM) for the brokers; unset: system CAs"
    )
    kafka_ssl_certfile: str | None = _env(
        "AUTOPILOT_KAFKA_SSL_CERTFILE", None,
        "Client certificate (PEM) for mutual TLS (with AUTOPILOT_KAFKA_SSL_KEYFILE)"
    )
    kafka_ssl_keyfile: str | None = _env(
        "AUTOPILOT_KAFKA_SSL_KEYFILE", None, "Client private key (PEM) for mutual TLS"
    )
    kafka_ssl_key_password: SecretStr | None = _env(
        "AUTOPILOT_KAFKA_SSL_KEY_PASSWORD", None, "Password of the client key (secret)"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = _env(
        "AUTOPILOT_KAFKA_SASL_MECHANISM", "PLAIN", "SASL mechanism"
    )
    kafka_sasl_username: str | None = _env(
        "AUTOPILOT_KAFKA_SASL_USERNAME", None, "SASL user name (required for SASL_*)"
    )
    kafka_sasl_password: SecretStr | None = _env(
        "AUTOPILOT_KAFKA_SASL_PASSWORD", None, "SASL password (secret; required for SASL_*)"
    )

    # --- HTTP surface: authentication, limits, ingestion ----------------------------
    api_keys: SecretStr | None = _env(
        "AUTOPILOT_API_KEYS", None, "Comma-separated API keys (secret); set: required on every "
        "endpoint but /health, /ready and /openapi.json"
    )
    github_webhook_secret: SecretStr | None = _env(
        "AUTOPILOT_GITHUB_WEBHOOK_SECRET", None, "GitHub webhook secret (secret): a valid "
        "X-Hub-Signature-256 authenticates POST /ingest/deployment"
    )
    rate_limit_rps: float = _env(
        "AUTOPILOT_RATE_LIMIT_RPS", 50.0,
        "Requests per second per API key (per client address without keys; 0: off)", ge=0
    )
    rate_limit_burst: int = _env(
        "AUTOPILOT_RATE_LIMIT_BURST", 200, "Token-bucket size: requests allowed at once", ge=1
    )
    max_body_bytes: int = _env(
        "AUTOPILOT_MAX_BODY_BYTES", 10 * 1024 * 1024, "Largest request body (bytes); 413 above",
        ge=1024,
    )
    service_labels: str = _env(
        "AUTOPILOT_SERVICE_LABELS", "service,app,app_kubernetes_io_name,job",
        "Labels tried in order for a sample's or an alert's service (remote_write, "
        "exposition, prometheus-kafka-adapter, Telegraf, Alertmanager alerts)",
        min_length=1,
    )
    otlp_resource_labels: str = _env(
        "AUTOPILOT_OTLP_RESOURCE_LABELS",
        "service.namespace,deployment.environment,deployment.environment.name",
        "Comma-separated OTLP resource attributes kept as labels of every point and log "
        "record (besides service.name, which names the service); the others, such as "
        "service.instance.id and telemetry.sdk.version, change on every restart or "
        "upgrade and would start new series (docs/otlp.md)",
    )
    otlp_histogram_quantile: float = _env(
        "AUTOPILOT_OTLP_HISTOGRAM_QUANTILE", 0.99,
        "Quantile estimated from the buckets of each OTLP histogram point, kept as the "
        "sample <name>_p<q> (0.99: <name>_p99; docs/otlp.md)", gt=0, lt=1,
        json_schema_extra={"unit": "fraction"},
    )

    # --- Redis, Ollama, Slack ----------------------------------------------------
    redis_url: str | None = _env(
        "REDIS_URL", None,
        "Redis URL for incident history and send idempotency (unset: skipped, one warning)"
    )
    ollama_url: str = _env("OLLAMA_URL", "http://localhost:11434", "Ollama base URL")
    ollama_model: str = _env("OLLAMA_MODEL", "llama3:latest", "Ollama model name")
    ollama_timeout_s: float = _env(
        "OLLAMA_TIMEOUT_S", 60.0, "Budget for one Ollama analysis (s); then the rules answer",
        gt=0
    )
    analysis_concurrency: int = _env(
        "AUTOPILOT_ANALYSIS_CONCURRENCY", 4, "Analyses (Ollama calls) run at once", ge=1
    )
    ollama_num_ctx: int = _env(
        "AUTOPILOT_OLLAMA_NUM_CTX", 8192,
        "Context window asked of Ollama (options.num_ctx); must hold the largest prompt "
        "(MAX_PROMPT_CHARS / 2 tokens) plus AUTOPILOT_OLLAMA_NUM_PREDICT",
        ge=512, le=131072, json_schema_extra={"unit": "tokens"},
    )
    ollama_num_predict: int = _env(
        "AUTOPILOT_OLLAMA_NUM_PREDICT", 1024,
        "Most tokens Ollama may generate for one analysis (options.num_predict); an answer "
        "cut there (done_reason length) is not used: the rules answer",
        ge=16, le=32768, json_schema_extra={"unit": "tokens"},
    )
    ollama_keep_alive: str = _env(
        "AUTOPILOT_OLLAMA_KEEP_ALIVE", "30m",
        "How long Ollama keeps the model loaded after an analysis (keep_alive: a Go "
        "duration such as 30m or 1h, 0 unloads at once, -1 keeps it forever)",
        pattern=r"^(-1|0|[0-9]+(\.[0-9]+)?(ms|s|m|h)([0-9]+(\.[0-9]+)?(ms|s|m|h))*)$",
    )
    slack_webhook_url: SecretStr | None = _env(
        "SLACK_WEBHOOK_URL", None, "Slack incoming-webhook URL (secret)"
    )
    slack_bot_token: SecretStr | None = _env(
        "SLACK_BOT_TOKEN", None, "Slack bot token xoxb-… (secret); needs SLACK_CHANNEL; "
        "preferred over the webhook"
    )
    slack_channel: str | None = _env("SLACK_CHANNEL", None, "Channel for the bot token")
    slack_signing_secret: SecretStr | None = _env(
        "SLACK_SIGNING_SECRET", None, "Slack app signing secret (secret); set with the bot "
        "token: the root message carries Acknowledge, Silence, Resolve and Not an incident "
        "buttons"
    )
    slack_api_url: str = _env(
        "SLACK_API_URL", "https://slack.com/api/", "Slack Web API base URL (bot token)"
    )
    actions_file: str | None = _env(
        "AUTOPILOT_ACTIONS_FILE", None, "YAML file of approved actions (rollback, restart …) "
        "offered as buttons on incidents (docs/actions.md); unset: no actions. A file that "
        "does not validate stops the worker at start",
        json_schema_extra={"unit": "path"},
    )
    slack_max_retries: int = _env(
        "SLACK_MAX_RETRIES", 5, "Retries of one Slack send on 429, 5xx and connection errors", ge=0
    )
    alert_history_size: int = _env(
        "AUTOPILOT_ALERT_HISTORY", 100, "Alerts kept per service in Redis", ge=1,
        json_schema_extra={"unit": "alerts"},
    )

    # --- Detection (seed defaults) -------------------------------------------------
    window_size: int = _env(
        "AUTOPILOT_WINDOW_SIZE", 1000, "Seed mode: rolling baseline window (samples)", ge=2,
        le=1000, json_schema_extra={"unit": "samples"},
    )
    min_samples: int = _env(
        "AUTOPILOT_MIN_SAMPLES", 10, "Samples before the first verdict (cold start)", ge=2,
        json_schema_extra={"unit": "samples"},
    )
    z_threshold: float = _env("AUTOPILOT_Z_THRESHOLD", 2.5, "Anomaly when |z| > this", gt=0)
    z_high: float = _env("AUTOPILOT_Z_HIGH", 3.0, "Severity high when |z| > this", gt=0)
    z_critical: float = _env("AUTOPILOT_Z_CRITICAL", 4.0, "Severity critical when |z| > this", gt=0)
    detector_mode: Literal["adaptive", "seed"] = _env(
        "AUTOPILOT_DETECTOR_MODE", "adaptive",
        "adaptive (robust baseline, likelihood, one alert per episode) or seed (rolling z)",
    )
    baseline_alpha: float = _env(
        "AUTOPILOT_BASELINE_ALPHA", 0.02, "Adaptive baseline weight per sample", gt=0, le=1
    )
    baseline_clip: float = _env(
        "AUTOPILOT_BASELINE_CLIP", 3.0,
        "Adaptive baseline update clip: a sample moves the baseline by at most this many "
        "scales × alpha", gt=0, json_schema_extra={"unit": "scales"},
    )
    relearn_after: int = _env(
        "AUTOPILOT_RELEARN_AFTER", 12,
        "Adaptive: samples in a row beyond 3.5 scales (same side) that re-learn the level",
        ge=1, json_schema_extra={"unit": "samples"},
    )
    likelihood_warmup: int = _env(
        "AUTOPILOT_LIKELIHOOD_WARMUP", 100,
        "Adaptive: scored samples before the anomaly likelihood decides", ge=0,
        json_schema_extra={"unit": "samples"},
    )
    warmup_z: float = _env(
        "AUTOPILOT_WARMUP_Z", 6.0,
        "Adaptive: until the likelihood decides, a sample alerts only when its |z| exceeds "
        "this (a young baseline's scale is uncertain)", gt=0,
    )
    alert_score: float = _env(
        "AUTOPILOT_ALERT_SCORE", 0.2,
        "Adaptive: alert when the anomaly score >= this (0.2 ≈ tail probability 1 %)",
        gt=0, le=1,
    )
    episode_s: float = _env(
        "AUTOPILOT_EPISODE_S", 21600.0,
        "Adaptive: a series that alerted stays silent this long (s, event time)", ge=0,
        allow_inf_nan=False,
    )
    spatial_tolerance: float = _env(
        "AUTOPILOT_SPATIAL_TOLERANCE", 0.05,
        "Adaptive: a value beyond the series' all-time range by more than this fraction "
        "of the range scores 1.0 (negative: rule off)", allow_inf_nan=False,
    )
    novelty_z: float = _env(
        "AUTOPILOT_NOVELTY_Z", 5.0,
        "Adaptive: a novel value (outside the all-time range, or in a part of it never "
        "seen) scores 1.0 only when its |z| exceeds this", gt=0, allow_inf_nan=False,
    )
    season_days: int = _env(
        "AUTOPILOT_SEASON_DAYS", 3,
        "Adaptive: days of time-of-day memory; a departure like one in the same 15-minute "
        "slot (±15 min) on one of these days is routine: damped, no alert (0: off)",
        ge=0, le=14, json_schema_extra={"unit": "days"},
    )
    detection_seasonal: Literal["off", "on", "behaviour"] = _env(
        "AUTOPILOT_DETECTION_SEASONAL", "on",
        "Adaptive: score the departure from the seasonal expectation (time of day / day "
        "of week, once a daily or weekly period is confirmed) as well as from the level "
        "(on); behaviour: also the spike-rate signal; off: as before",
    )
    direction_up: str = _env(
        "AUTOPILOT_DIRECTION_UP", "latency,duration,error,fail,timeout,5xx,4xx",
        "Metric-name substrings that only alert upwards (comma-separated)",
    )
    direction_down: str = _env(
        "AUTOPILOT_DIRECTION_DOWN", "availability,success,apdex,uptime,hit_ratio",
        "Metric-name substrings that only alert downwards (comma-separated)",
    )
    counter_suffixes: str = _env(
        "AUTOPILOT_COUNTER_SUFFIXES", "_total,_count,_sum,_bucket",
        "Metric-name suffixes of counters, scored as per-second rates (comma-separated)",
    )

    max_series_per_service: int = _env(
        "AUTOPILOT_MAX_SERIES_PER_SERVICE", 10_000,
        "Series a service may have; samples of further new series are dropped and counted "
        "(autopilot_series_dropped_total)", ge=1, json_schema_extra={"unit": "series"},
    )
    series_ttl_s: float = _env(
        "AUTOPILOT_SERIES_TTL_S", 7 * 86_400.0,
        "A series not seen this long (s, event time) is forgotten: baseline deleted "
        "(autopilot_series_expired_total)", gt=0,
    )

    recover_samples: int = _env(
        "AUTOPILOT_RECOVER_SAMPLES", 5,
        "A firing series is resolved after this many samples in a row back inside the "
        "band of its pre-alert baseline (hysteresis, counted in samples)", ge=1,
        json_schema_extra={"unit": "samples"},
    )
    recover_z: float = _env(
        "AUTOPILOT_RECOVER_Z", 2.0,
        "A sample is back inside the band when its directional |z| against the baseline "
        "frozen at the first alert is at most this", gt=0,
    )
    signal_resend_s: float = _env(
        "AUTOPILOT_SIGNAL_RESEND_S", 300.0,
        "While a series fires, its anomaly is re-sent at most this often (s, event time), "
        "so its incident sees it is still firing", gt=0,
    )

    # --- Error-rate spikes ---------------------------------------------------------
    error_bucket_s: int = _env(
        "AUTOPILOT_ERROR_BUCKET_S", 60, "Error-rate window length (s, event time)", ge=1
    )
    error_history_buckets: int = _env(
        "AUTOPILOT_ERROR_HISTORY_BUCKETS", 60, "Past windows in the error-rate baseline", ge=2,
        json_schema_extra={"unit": "windows"},
    )
    error_min_buckets: int = _env(
        "AUTOPILOT_ERROR_MIN_BUCKETS", 5, "Past windows needed before a spike verdict", ge=1,
        json_schema_extra={"unit": "windows"},
    )
    error_min_count: int = _env(
        "AUTOPILOT_ERROR_MIN_COUNT", 5, "Errors in one window needed for a spike", ge=1,
        json_schema_extra={"unit": "errors"},
    )
    error_z_threshold: float = _env(
        "AUTOPILOT_ERROR_Z_THRESHOLD", 3.0, "Error-rate spike when z > this", gt=0
    )
    error_recover_buckets: int = _env(
        "AUTOPILOT_ERROR_RECOVER_BUCKETS", 3,
        "A firing error rate is resolved after this many windows in a row back inside "
        "its pre-spike band", ge=1, json_schema_extra={"unit": "windows"},
    )
    recent_errors_max: int = _env(
        "AUTOPILOT_RECENT_ERRORS_MAX", 20, "Error lines kept per service for incident context",
        ge=1, json_schema_extra={"unit": "lines"},
    )

    # --- Correlation ---------------------------------------------------------------
    correlation_window_s: int = _env(
        "AUTOPILOT_CORRELATION_WINDOW_S", 600, "Evidence window for incident rules (s)", ge=1
    )
    deployment_window_s: int = _env(
        "AUTOPILOT_DEPLOYMENT_WINDOW_S", DEPLOYMENT_WINDOW_S,
        "A deployment is recent for this long (s): how long after it an anomaly is blamed "
        "on it", ge=1
    )
    incident_close_s: int = _env(
        "AUTOPILOT_INCIDENT_CLOSE_S", 900,
        "Stale close: resolve an incident after this long without any evidence (s, event "
        "time; wall clock when the service goes quiet)", ge=1
    )
    alert_close_s: int = _env(
        "AUTOPILOT_ALERT_CLOSE_S", 18000,
        "Stale close of an incident that has a firing Alertmanager alert: it stays open "
        "this long without a re-send (s; longer than Alertmanager's default "
        "repeat_interval of 4 h, so a long outage is not closed between re-sends; never "
        "shorter than AUTOPILOT_INCIDENT_CLOSE_S)", ge=1
    )
    alone_for_s: int = _env(
        "AUTOPILOT_ALONE_FOR_S", 0,
        "Corroboration: a critical metric anomaly with nothing to corroborate it (no second "
        "series of the service or error-rate spike within AUTOPILOT_CORRELATION_WINDOW_S, "
        "no deployment within AUTOPILOT_DEPLOYMENT_WINDOW_S before it) opens an incident "
        "only when its series is still firing this long after it fired (s, event "
        "time; checked on the detector's re-sends, every AUTOPILOT_SIGNAL_RESEND_S), like "
        "a Prometheus rule's 'for'; two alerts of one series are then one series, and a "
        "resolved incident re-opens only on evidence that would open it. 0 (the default): "
        "a critical anomaly opens one at once, and two alerts of one series count as two "
        "anomalies (docs/incident-lifecycle.md)", ge=0,
    )
    symptom_metrics: str = _env(
        "AUTOPILOT_SYMPTOM_METRICS", "",
        "Symptom-based paging: when set, a metric anomaly opens (or re-opens) an incident "
        "only when a metric whose name contains one of these substrings (a symptom users "
        "feel: latency, errors, success rate, requests) is among its evidence; other "
        "metrics (causes: CPU, memory, network) join incidents as evidence but open none. "
        "Error-rate spikes and Alertmanager alerts are symptoms. A plain substring match: "
        "'duration' also matches go_gc_duration_seconds. Empty (the default): any "
        "metric (comma-separated; docs/incident-lifecycle.md)",
    )
    close_check_interval_s: float = _env(
        "AUTOPILOT_CLOSE_CHECK_INTERVAL_S", 30.0, "Wall-clock check for quiet incidents (s)", gt=0
    )
    reopen_window_s: int = _env(
        "AUTOPILOT_REOPEN_WINDOW_S", 3600,
        "Evidence less than this long (s, event time) after a resolution re-opens the same "
        "incident (same id, same Slack thread) instead of opening a new one", ge=0,
    )

    # --- Incident groups and the service graph (docs/rca.md) ----------------------------
    service_graph: str | None = _env(
        "AUTOPILOT_SERVICE_GRAPH", None,
        "File of caller -> callee edges of the service graph (one 'caller -> callee' a line, "
        "or 'caller,callee' CSV with a Source,Target header; '#' comments); unset: the graph "
        "is learned from telemetry only. A wrong line stops the worker at start, naming it",
        json_schema_extra={"unit": "path"},
    )
    group_max_hops: int = _env(
        "AUTOPILOT_GROUP_MAX_HOPS", 2,
        "Incidents of services at most this many hops apart in the service graph (either "
        "direction) that fire at overlapping times form one incident group", ge=1,
        json_schema_extra={"unit": "hops"},
    )
    group_join_window_s: float = _env(
        "AUTOPILOT_GROUP_JOIN_WINDOW_S", 600.0,
        "An incident joins a connected service's group when that member still fires or "
        "stopped firing at most this long before it opened (s, event time); also how "
        "long a recovered anomaly of a service without an incident stays a possible "
        "suspect (docs/rca.md)", ge=0,
    )
    peer_labels: str = _env(
        "AUTOPILOT_PEER_LABELS",
        "peer_service,peer.service,upstream,destination_service,destination_workload,target,"
        "server_service",
        "Comma-separated metric labels whose value names the service a sample's service "
        "calls (an edge service -> label value of the service graph)",
    )
    trace_sample: float = _env(
        "AUTOPILOT_TRACE_SAMPLE", 1.0,
        "Fraction of trace ids (log lines with trace_id) followed to learn service-graph "
        "edges (chosen by a hash of the trace id, so every worker picks the same traces); "
        "0 turns it off", ge=0.0, le=1.0, json_schema_extra={"unit": "fraction"},
    )

    # --- Notifications (Alertmanager's names) ---------------------------------------
    group_wait_s: float = _env(
        "AUTOPILOT_GROUP_WAIT_S", 30.0,
        "Wait this long (s, wall clock) before the first notification of a new incident, "
        "so evidence from the other topics and the LLM analysis can join it", ge=0,
    )
    group_interval_s: float = _env(
        "AUTOPILOT_GROUP_INTERVAL_S", 30.0,
        "Least time (s, wall clock) between two updates of one incident's notification",
        ge=0,
    )
    repeat_interval_s: float = _env(
        "AUTOPILOT_REPEAT_INTERVAL_S", 4 * 3600.0,
        "Reminder in the thread while an incident is still firing, this often (s)", gt=0,
    )
    send_resolved: bool = _env(
        "AUTOPILOT_SEND_RESOLVED", True,
        "Notify when an incident resolves (thread reply, webhook message)"
    )
    max_webhook_messages: int = _env(
        "AUTOPILOT_MAX_WEBHOOK_MESSAGES", 4,
        "Webhook mode (cannot edit): most messages sent per incident", ge=1,
    )
    slack_routes: str | None = _env(
        "AUTOPILOT_SLACK_ROUTES", None,
        "YAML file of routes (matchers on service and severity → channel), first match "
        "wins; SLACK_CHANNEL is the default",
    )
    notify_tick_s: float = _env(
        "AUTOPILOT_NOTIFY_TICK_S", 1.0,
        "How often (s) the notifier looks for notifications that are due", gt=0,
    )
    slack_charts: bool = _env(
        "AUTOPILOT_SLACK_CHARTS", True,
        "Bot mode: upload a chart of each anomalous series into the incident's thread",
    )

    # --- HTTPS on the worker's port (issue 12, transport security) ------------------
    web_ssl_certfile: str | None = _env(
        "AUTOPILOT_WEB_SSL_CERTFILE", None,
        "Certificate chain (PEM) the HTTP port serves; set: the port speaks HTTPS only "
        "(docs/security-transport.md)",
    )
    web_ssl_keyfile: str | None = _env(
        "AUTOPILOT_WEB_SSL_KEYFILE", None, "Private key (PEM) of AUTOPILOT_WEB_SSL_CERTFILE"
    )
    web_ssl_key_password: SecretStr | None = _env(
        "AUTOPILOT_WEB_SSL_KEY_PASSWORD", None, "Password of AUTOPILOT_WEB_SSL_KEYFILE (secret)"
    )
    web_ssl_cafile: str | None = _env(
        "AUTOPILOT_WEB_SSL_CAFILE", None,
        "CA bundle (PEM) trusted for client certificates and for other workers' "
        "certificates when a view is forwarded to its owner (added to the system CAs)",
    )
    web_ssl_client_auth: Literal["none", "optional", "required"] = _env(
        "AUTOPILOT_WEB_SSL_CLIENT_AUTH", "none",
        "Client certificates on the HTTPS port: none, optional (verified when presented) "
        "or required (mutual TLS; needs AUTOPILOT_WEB_SSL_CAFILE)",
    )

    # --- LLM and Slack edges, redaction (issue 12, H4) ----------------------------
    redact_pii: bool = _env(
        "AUTOPILOT_REDACT_PII", False,
        "Also redact e-mail and IP addresses from log lines (secrets are always redacted; "
        "docs/security.md)",
    )
    llm_breaker_failures: int = _env(
        "AUTOPILOT_LLM_BREAKER_FAILURES", 3,
        "Consecutive Ollama timeouts, connection errors or model-not-found answers that "
        "open the circuit breaker (analyses then use the rules without calling Ollama)",
        ge=1,
    )
    llm_breaker_cooldown_s: float = _env(
        "AUTOPILOT_LLM_BREAKER_COOLDOWN_S", 30.0,
        "Time (s) the breaker stays open before one trial call; doubles after each failed "
        "trial, up to AUTOPILOT_LLM_BREAKER_MAX_COOLDOWN_S", gt=0,
    )
    llm_breaker_max_cooldown_s: float = _env(
        "AUTOPILOT_LLM_BREAKER_MAX_COOLDOWN_S", 600.0,
        "Longest time (s) the breaker stays open between trial calls", gt=0,
    )

    # --- ingest under pressure, health and readiness (issue 12, H3) ----------------
    ingest_timeout_s: float = _env(
        "AUTOPILOT_INGEST_TIMEOUT_S", 8.0,
        "Longest wait (s) of an ingest request for the broker's acknowledgement; then "
        "503 with Retry-After (docs/operations-health.md)", gt=0,
    )
    retry_after_s: int = _env(
        "AUTOPILOT_RETRY_AFTER_S", 5,
        "Retry-After (s) sent with a 503 when the broker is unavailable", ge=1,
    )
    broker_check_interval_s: float = _env(
        "AUTOPILOT_BROKER_CHECK_INTERVAL_S", 2.0,
        "How often (s) a worker asks the broker for metadata (readiness, fast 503s); "
        "a probe without an answer within 2 intervals counts as unreachable", gt=0,
    )
    max_record_bytes: int = _env(
        "AUTOPILOT_MAX_RECORD_BYTES", 900_000,
        "Largest Kafka record (bytes of JSON) HTTP ingest produces; bigger batches are "
        "split (keep it under the broker's message.max.bytes, 1 MB by default)",
        ge=10_000,
    )
    ready_window_s: float = _env(
        "AUTOPILOT_READY_WINDOW_S", 60.0,
        "Window (s) over which /ready and /health judge dead letters and Slack, Ollama "
        "and Redis failures", gt=0,
    )
    ready_dead_letters_min: int = _env(
        "AUTOPILOT_READY_DEAD_LETTERS_MIN", 10,
        "/ready answers 503 when a stage dead-lettered at least this many records and "
        "processed none within AUTOPILOT_READY_WINDOW_S", ge=1,
    )

    # --- Ingest: time limits (issue 12, part H2: one bad item, time and order) -----
    max_future_s: float = _env(
        "AUTOPILOT_MAX_FUTURE_S", 3600.0,
        "An input item (metric sample, log line, deployment) timed more than this many "
        "seconds ahead of the worker's wall clock is refused and counted "
        "(autopilot_items_rejected_total{reason=\"future_timestamp\"}); it never drives "
        "series expiry. 0 turns the check off. Not applied by autopilot backtest "
        "(docs/ingestion.md)",
        ge=0,
    )
    max_past_s: float | None = _env(
        "AUTOPILOT_MAX_PAST_S", None,
        "An input item timed more than this many seconds behind the worker's wall clock "
        "is refused and counted; unset (default): no limit, so replays of history work",
        gt=0,
    )

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if not self.broker.startswith(("kafka://", "aiokafka://")):
            raise ValueError("AUTOPILOT_BROKER must be a kafka:// URL, e.g. kafka://localhost:9092")
        if not (self.z_threshold <= self.z_high <= self.z_critical):
            raise ValueError(
                "need AUTOPILOT_Z_THRESHOLD <= AUTOPILOT_Z_HIGH <= AUTOPILOT_Z_CRITICAL"
            )
        if self.min_samples > self.window_size:
            raise ValueError("AUTOPILOT_MIN_SAMPLES must not exceed AUTOPILOT_WINDOW_SIZE")
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                "AUTOPILOT_KAFKA_SECURITY_PROTOCOL=SASL_* needs AUTOPILOT_KAFKA_SASL_USERNAME "
                "and AUTOPILOT_KAFKA_SASL_PASSWORD"
            )
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise ValueError(
                "AUTOPILOT_KAFKA_SSL_CERTFILE and AUTOPILOT_KAFKA_SSL_KEYFILE go together"
            )
        if self.api_keys is not None and not self.api_key_list():
            raise ValueError("AUTOPILOT_API_KEYS holds no key (comma-separated list)")
        if not self.service_label_list():
            raise ValueError("AUTOPILOT_SERVICE_LABELS holds no label name")
        if self.slack_bot_token is not None and not self.slack_channel:
            raise ValueError("SLACK_BOT_TOKEN needs SLACK_CHANNEL")
        if self.ollama_num_ctx < PROMPT_TOKENS_MAX + self.ollama_num_predict:
            raise ValueError(
                f"AUTOPILOT_OLLAMA_NUM_CTX={self.ollama_num_ctx} cannot hold the largest "
                f"prompt ({PROMPT_TOKENS_MAX} tokens) plus AUTOPILOT_OLLAMA_NUM_PREDICT="
                f"{self.ollama_num_predict}: raise it to at least "
                f"{PROMPT_TOKENS_MAX + self.ollama_num_predict}"
            )
        if bool(self.web_ssl_certfile) != bool(self.web_ssl_keyfile):
            raise ValueError("AUTOPILOT_WEB_SSL_CERTFILE and AUTOPILOT_WEB_SSL_KEYFILE go together")
        if self.web_ssl_client_auth != "none" and not (
            self.web_ssl_certfile and self.web_ssl_cafile
        ):
            raise ValueError(
                "AUTOPILOT_WEB_SSL_CLIENT_AUTH needs AUTOPILOT_WEB_SSL_CERTFILE (HTTPS) and "
                "AUTOPILOT_WEB_SSL_CAFILE (the CA of the client certificates)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only explicit values: :func:`load_settings` passes the environment in."""
        return (init_settings,)

    @property
    def topic_namespace(self) -> str:
        """The prefix of every topic name: ``AUTOPILOT_TOPIC_PREFIX`` or the app id."""
        return self.topic_prefix or self.app_id

    def api_key_list(self) -> list[str]:
        """The API keys (secret values: never log them); empty when auth is off.

        Separated by commas or line breaks (``AUTOPILOT_API_KEYS_FILE`` holds one a line).
        """
        if self.api_keys is None:
            return []
        raw = self.api_keys.get_secret_value().replace("\r", "\n").replace("\n", ",")
        return list(_comma_list(raw))

    def peer_label_list(self) -> tuple[str, ...]:
        """The metric labels that name a called service (``AUTOPILOT_PEER_LABELS``)."""
        return _comma_list(self.peer_labels)

    def symptom_metric_list(self) -> tuple[str, ...]:
        """``AUTOPILOT_SYMPTOM_METRICS`` as a tuple of lower-case substrings (empty: off)."""
        return tuple(x.lower() for x in _comma_list(self.symptom_metrics))

    def service_label_list(self) -> tuple[str, ...]:
        """``AUTOPILOT_SERVICE_LABELS`` as a tuple of label names, in order."""
        return _comma_list(self.service_labels)

    def otlp_resource_label_list(self) -> tuple[str, ...]:
        """``AUTOPILOT_OTLP_RESOURCE_LABELS`` as a tuple of attribute names."""
        return _comma_list(self.otlp_resource_labels)

    def secret_values(self) -> list[str]:
        """Every secret value set (API keys, Slack URL and token, passwords), for redaction."""
        out = self.api_key_list()
        for secret in (
            self.slack_webhook_url,
            self.slack_bot_token,
            self.slack_signing_secret,
            self.kafka_sasl_password,
            self.kafka_ssl_key_password,
            self.github_webhook_secret,
            self.web_ssl_key_password,
        ):
            if secret is not None and secret.get_secret_value():
                out.append(secret.get_secret_value())
        return out

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Map of environment-variable name → field name."""
        return {str(f.validation_alias): name for name, f in cls.model_fields.items()}

    @classmethod
    def secret_env_names(cls) -> tuple[str, ...]:
        """Environment variables of the secret settings (:class:`SecretStr`), in field
        order; each can also be read from a file named by ``<NAME>_FILE``."""
        return tuple(
            str(f.validation_alias) for f in cls.model_fields.values()
            if f.annotation is SecretStr or SecretStr in get_args(f.annotation)
        )

    @classmethod
    def unknown_env_names(cls, environ: Mapping[str, str]) -> list[str]:
        """``AUTOPILOT_*`` variables of ``environ`` that name no setting (a typo such as
        ``AUTOPILOT_RATE_LIMT_RPS`` is otherwise ignored in silence), sorted; the
        ``<NAME>_FILE`` form of a file-capable setting is known."""
        known = set(cls.env_names()) | {f"{n}{FILE_SUFFIX}" for n in cls.file_env_names()}
        return sorted(k for k in environ if k.startswith("AUTOPILOT_") and k not in known
                      and not k.startswith("AUTOPILOT_TEST_"))

    @classmethod
    def file_env_names(cls) -> tuple[str, ...]:
        """Variables that can be read from ``<NAME>_FILE``: the secrets, and ``REDIS_URL``
        (it may carry a password)."""
        return (*cls.secret_env_names(), "REDIS_URL")


#: ``<NAME>_FILE`` names a file holding the secret setting ``<NAME>`` (the Docker and
#: Kubernetes secrets convention: ``SLACK_BOT_TOKEN_FILE=/run/secrets/slack_bot_token``).
FILE_SUFFIX = "_FILE"


def _read_secret_file(variable: str, path: str) -> str:
    """The secret in ``path`` without its trailing line breaks.

    Raises:
        ConfigError: the file cannot be read or holds nothing; the message names
            ``variable`` and the path, never the content.
    """
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{variable}: cannot read {path}: {reason}") from None
    if not value.strip():
        raise ConfigError(f"{variable}: {path} is empty")
    return value


def _secrets_from_files(env: Mapping[str, str]) -> dict[str, str]:
    """Secret settings given as ``<NAME>_FILE`` (see :data:`FILE_SUFFIX`).

    Raises:
        ConfigError: ``<NAME>`` and ``<NAME>_FILE`` are both set, or the file cannot be
            read.
    """
    out: dict[str, str] = {}
    for name in Settings.file_env_names():
        variable = name + FILE_SUFFIX
        path = env.get(variable, "")
        if not path:
            continue
        if env.get(name, ""):
            raise ConfigError(f"set {name} or {variable}, not both")
        out[name] = _read_secret_file(variable, path)
    return out


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from ``environ`` (default: the process environment).

    Empty values count as unset. Every secret setting (:meth:`Settings.file_env_names`:
    ``SLACK_WEBHOOK_URL``, ``SLACK_BOT_TOKEN``, ``AUTOPILOT_API_KEYS``,
    ``AUTOPILOT_KAFKA_SASL_PASSWORD``, ``REDIS_URL`` …) can instead be read from the file named by
    ``<NAME>_FILE`` (trailing line breaks dropped). Returns a frozen :class:`Settings`.

    Raises:
        ConfigError: a value is invalid, a variable and its ``_FILE`` are both set, or a
            ``_FILE`` cannot be read; the message names the variable.
    """
    env = os.environ if environ is None else environ
    names = Settings.env_names()
    values: dict[str, Any] = {k: v for k, v in env.items() if k in names and v != ""}
    values.update(_secrets_from_files(env))
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            # A rule over several variables has no location; its message names them.
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"]
            else str(e["msg"]).removeprefix("Value error, ")
            for e in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None
