"""Faust table definitions (installed as ``autopilot.tables``).

All tables are RocksDB-backed (``AUTOPILOT_STORE``) with a changelog topic
``autopilot-<name>-changelog``, keys are raw UTF-8 bytes and values JSON objects
produced by the pure core's ``to_dict()``. Each table is written only while
processing a record of the service it belongs to, so its partitions follow the
service-keyed topics (co-partitioned). Views route by service through the
service-keyed tables (``series_index``, ``error_rates``, ``deployments``,
``open_incidents``), never by the composite series key. Names are persisted
contracts: renaming one is a migration.
"""

from __future__ import annotations

from typing import Any

from faust.types import TableT

from autopilot.app import app

#: A table of this app: raw UTF-8 key bytes → a JSON object (``None`` when absent).
JSONTable = TableT[bytes, dict[str, Any] | None]

#: Memtable size per table partition (each partition is its own database) before it
#: is flushed; Faust's default is three of 64 MiB per database. Every database of
#: the worker shares one block cache and one write-buffer manager, capped together
#: by ``AUTOPILOT_ROCKSDB_MEMORY_MB`` (:mod:`autopilot.tables.store`).
ROCKSDB_WRITE_BUFFER_BYTES = 4 * 1024**2
ROCKSDB_MAX_WRITE_BUFFERS = 2


def rocksdb_options() -> dict[str, Any]:
    """Per-table store options (a fresh dict: Faust's store pops keys from it)."""
    return {
        "write_buffer_size": ROCKSDB_WRITE_BUFFER_BYTES,
        "max_write_buffer_number": ROCKSDB_MAX_WRITE_BUFFERS,
    }

BASELINES = "baselines"
SERIES_INDEX = "series_index"
ERROR_RATES = "error_rates"
DEPLOYMENTS = "deployments"
OPEN_INCIDENTS = "open_incidents"
NOTIFICATIONS = "notifications"

baselines: JSONTable = app.Table(
    BASELINES,
    key_type=bytes,
    default=None,
    options=rocksdb_options(),
    help="series key b'service|metric|k=v,…' → autopilot.detection.Baseline.to_dict(), "
    "plus 'last_value', 'feedback_muted' and 'recent' (the series' newest samples for "
    "charts, autopilot.charts.SampleRing.to_dict(): agents.charts.recent_after)",
)
series_index: JSONTable = app.Table(
    SERIES_INDEX,
    key_type=bytes,
    default=None,
    options=rocksdb_options(),
    help="service → autopilot.series.SeriesIndex.to_dict(): {'series': {series key: last "
    "seen, epoch s}, 'checked': epoch s of the last expiry check}",
)
error_rates: JSONTable = app.Table(
    ERROR_RATES,
    key_type=bytes,
    default=None,
    options=rocksdb_options(),
    help="service → autopilot.errorrate.ErrorRateState.to_dict() (error counts per window)",
)
deployments: JSONTable = app.Table(
    DEPLOYMENTS,
    key_type=bytes,
    default=None,
    options=rocksdb_options(),
    help="service → autopilot.deployments.DeploymentHistory.to_dict()",
)
open_incidents: JSONTable = app.Table(
    OPEN_INCIDENTS,
    key_type=bytes,
    default=None,
    options=rocksdb_options(),
    help="service → autopilot.correlation.CorrelationState.to_dict()",
)
notifications: JSONTable = app.Table(
    NOTIFICATIONS,
    key_type=bytes,
    default=None,
    options=rocksdb_options(),
    help="service → autopilot.notify.NotifyState.to_dict(): per incident, what was "
    "notified (Slack ts and channel, timeline entries replied, analysis shown, "
    "webhook messages sent) and when (wall-clock epoch s)",
)

# --- charts (recent samples of each series, for incident charts) -----------------
RECENT_SAMPLES = "recent_samples"
recent_samples: JSONTable = app.Table(
    RECENT_SAMPLES,
    key_type=bytes,
    default=None,
    options=rocksdb_options(),
    help="series key b'service|metric|k=v,…' → autopilot.charts.SampleRing.to_dict(): "
    "{'capacity': int (240), 'counter': bool, 't': base64 little-endian float64 event "
    "times (epoch s), 'v': base64 float64 raw values (a counter's raw counts)}; the newest "
    "samples of the series, as older workers wrote them; read for a series whose "
    "baselines value has no 'recent' yet (agents.charts), no longer written",
)

# --- feedback ("Not an incident" per series; autopilot.feedback) -----------------
FEEDBACK = "feedback"

feedback: JSONTable = app.Table(
    FEEDBACK,
    key_type=bytes,
    default=None,
    options=rocksdb_options(),
    help="service → autopilot.feedback.FeedbackState.to_dict(): {'records': [{'series', "
    "'service', 'direction' (up/down), 'z_score' (|z|), 'deviation_percent' (|%| or null), "
    "'time_of_day_s' (s since midnight UTC or null), 'user', 'recorded_at' and 'until' "
    "(wall-clock epoch s; until null: for good), 'incident'}], 'offsets': {stream: offset}}",
)

# --- silences (Alertmanager API v2; every worker needs all of them) ---------------
SILENCES = "silences"
#: Silences are few and every worker's notifier checks them all: a GlobalTable (each
#: worker reads every changelog partition), with ``recovery_buffer_size=1`` as Faust
#: advises for a GlobalTable shared by several workers. Its partitions are the app's,
#: like every other changelog (the worker's partition check wants them equal).
silences: JSONTable = app.GlobalTable(
    SILENCES,
    key_type=bytes,
    default=None,
    recovery_buffer_size=1,
    help="silence id (UUID, raw UTF-8) → autopilot.silences.Silence.to_dict(): "
    "{'id', 'matchers': [{'name', 'value', 'isRegex', 'isEqual'}], 'starts_at', "
    "'ends_at', 'updated_at' (wall-clock epoch s), 'created_by', 'comment'}; written "
    "by agents.silences from the autopilot.silences topic, kept after expiry",
)

# --- Slack button actions (issue 14) ------------------------------------------------
INCIDENT_ACTIONS = "incident_actions"
incident_actions: JSONTable = app.Table(
    INCIDENT_ACTIONS,
    key_type=bytes,
    default=None,
    options=rocksdb_options(),
    help="service → {'applied': [identity, …]}: the newest Slack button actions applied "
    "(autopilot.interactions.IncidentAction.identity, 'message_ts:action_ts:action_id'), "
    "so a double click, a Slack retry or a replay is applied once (agents.actions); "
    "'hooks': {'<incident id>:<action>': {'by', 'by_name', 'at' (epoch s), 'identity', "
    "'result' (None until the hook answered), 'ok'}}: approved actions requested, each "
    "recorded before its hook is called so it runs once (docs/actions.md)",
)

# --- incident groups and the service graph (issue 16; docs/rca.md) ------------------
INCIDENT_GROUPS = "incident_groups"
SERVICE_GRAPH = "service_graph"
#: Both are written only by the grouping agent (agents.groups) from the ONE-partition
#: topic ``autopilot.incident.groups``, so they have one partition: the worker that owns
#: it holds every group and the whole learned graph.
incident_groups: JSONTable = app.Table(
    INCIDENT_GROUPS,
    key_type=bytes,
    default=None,
    partitions=1,
    options=rocksdb_options(),
    help="b'groups' → autopilot.incident_groups.GroupState.to_dict(): the open incident "
    "groups (id 'grp-<primary incident id>', members, suspects) and each member's latest "
    "MemberUpdate (state, event times in epoch s, evidence)",
)
service_graph: JSONTable = app.Table(
    SERVICE_GRAPH,
    key_type=bytes,
    default=None,
    partitions=1,
    options=rocksdb_options(),
    help="b'graph' → autopilot.servicegraph.ServiceGraph.to_dict(): caller → callee edges "
    "learned from labels, trace ids and error lines (sources, count, last_seen epoch s); "
    "the AUTOPILOT_SERVICE_GRAPH file is merged in when read, not stored",
)
