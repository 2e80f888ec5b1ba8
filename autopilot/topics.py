"""Topic names (persisted contracts). Pure: no Faust (the demo, the bench and the tests
use these names; the Faust topic objects are in :mod:`autopilot.streams`).

Every topic is keyed by service as raw UTF-8 bytes and carries raw bytes that the
agents decode themselves, so undecodable records can be dead-lettered with their
topic, partition and offset (a typed Faust topic would fail before the agent's
error boundary). Renaming a topic is a migration.

The names below are the defaults. ``AUTOPILOT_TOPIC_PREFIX`` (default: the app id,
``AUTOPILOT_APP_ID``, itself ``autopilot``) replaces their leading ``autopilot``, so
several autopilots (or test runs) can share one Kafka cluster without seeing each
other's records: with prefix ``team-a`` the input topic is ``team-a.metrics``.
:func:`topic_name` maps a default name to the one in force; the worker reads the
prefix once, on first use.

=========================  =====================================================
topic                      key → value
=========================  =====================================================
autopilot.metrics          service (any client's partitioner) → MetricPoint or a
                           JSON list of them
autopilot.logs             service → LogEntry or list
autopilot.deployments      service → DeploymentEvent or list
autopilot.metrics.keyed    service (Faust's partitioner) → list of MetricPoint of
                           that service (internal re-key hop)
autopilot.logs.keyed       service → list of LogEntry (internal)
autopilot.deployments.keyed  service → list of DeploymentEvent (internal)
autopilot.anomalies        service → Anomaly (read by the correlation agent, and by
                           agents.groups' anomaly forwarder for the suspects)
autopilot.correlation.control  service → {"kind": "close_check", "wall": epoch s}
                           (internal; wall-clock closing of quiet incidents), or
                           {"kind": "resolve", "incident_id", "by"} (Slack's Resolve),
                           or {"kind": "group", "group", "evidence"} (an incident
                           group decision, from agents.groups)
autopilot.incidents        service → Incident (every lifecycle change)
autopilot.alerts           service → Alert (incident + its analysis, from the analysis
                           agent; the notifier folds it into the incident's message)
autopilot.notify.control   service → {"kind": "tick", "wall": epoch s} (internal; the
                           notifier's timer: group_wait, group_interval, reminders)
                           or {"kind": "action", "incident_id", "note"} (a Slack
                           button action applied, from agents.actions)
autopilot.silences         silence id (UUID) → autopilot.silences.Silence.to_dict()
                           (Alertmanager-compatible silences; written by the
                           HTTP views, applied to the global ``silences`` table)
autopilot.feedback         service → autopilot.feedback.Feedback.to_dict() or a
                           list ("Not an incident" per series; applied to the
                           ``feedback`` table by agents.feedback)
autopilot.incident.actions  service → autopilot.interactions.IncidentAction.to_dict()
                           (a click on an incident's Slack buttons, from
                           ``POST /slack/interactions``)
autopilot.audit            incident id → autopilot.audit.AuditEvent.to_dict() (one
                           decision: rule, analysis, Slack post/edit/reply, click,
                           silence, feedback, action; secrets redacted; retention
                           ``AUTOPILOT_AUDIT_RETENTION_DAYS``; docs/audit.md)
autopilot.incident.groups  b"groups" → {"kind": "member", …MemberUpdate} (a member
                           incident's state and evidence, from the forwarder on
                           autopilot.incidents), {"kind": "signal", …SignalUpdate}
                           (a service's anomaly, from the forwarder on
                           autopilot.anomalies) or {"kind": "edge", "caller",
                           "callee", "source", "at"} (a service-graph observation);
                           ONE partition: every grouping decision is made in one
                           place (docs/rca.md)
autopilot.traces           trace id → {"trace_id", "service", "spans": [{"span_id",
                           "parent_span_id", "at"}, …]} (one service's log lines
                           of one trace from one batch, for the trace linker;
                           docs/rca.md)
autopilot.deadletter       original key → original value bytes; headers
                           ``x-autopilot-reason``, ``-topic``, ``-partition``,
                           ``-offset``, ``-stage``
=========================  =====================================================
"""

from __future__ import annotations

import functools

METRICS = "autopilot.metrics"
LOGS = "autopilot.logs"
DEPLOYMENTS = "autopilot.deployments"
METRICS_KEYED = "autopilot.metrics.keyed"
LOGS_KEYED = "autopilot.logs.keyed"
DEPLOYMENTS_KEYED = "autopilot.deployments.keyed"
ANOMALIES = "autopilot.anomalies"
CORRELATION_CONTROL = "autopilot.correlation.control"
INCIDENTS = "autopilot.incidents"
ALERTS = "autopilot.alerts"
NOTIFY_CONTROL = "autopilot.notify.control"
SILENCES = "autopilot.silences"
FEEDBACK = "autopilot.feedback"
INCIDENT_ACTIONS = "autopilot.incident.actions"
AUDIT = "autopilot.audit"
DEADLETTER = "autopilot.deadletter"
INCIDENT_GROUPS = "autopilot.incident.groups"
TRACES = "autopilot.traces"

#: Topics external producers write to.
INPUT_TOPICS = (METRICS, LOGS, DEPLOYMENTS)
#: Every topic the app uses, in pipeline order.
ALL_TOPICS = (
    METRICS,
    LOGS,
    DEPLOYMENTS,
    METRICS_KEYED,
    LOGS_KEYED,
    DEPLOYMENTS_KEYED,
    ANOMALIES,
    CORRELATION_CONTROL,
    INCIDENTS,
    ALERTS,
    NOTIFY_CONTROL,
    SILENCES,
    FEEDBACK,
    INCIDENT_ACTIONS,
    AUDIT,
    DEADLETTER,
    INCIDENT_GROUPS,
    TRACES,
)
#: Topics of one partition (and the tables they feed): not co-partitioned with the
#: service-keyed topics; the worker's partition check leaves them out.
SINGLE_PARTITION_TOPICS = (INCIDENT_GROUPS,)


DEFAULT_PREFIX = "autopilot"


@functools.lru_cache(maxsize=1)
def _namespace_in_force() -> str:
    from autopilot.settings import load_settings

    return load_settings().topic_namespace


def topic_name(default: str, prefix: str | None = None) -> str:
    """The name in force of the topic whose default name is ``default``.

    ``prefix`` defaults to the process setting (``AUTOPILOT_TOPIC_PREFIX``, else
    ``AUTOPILOT_APP_ID``; read from the environment once). ``topic_name("autopilot.metrics",
    "team-a")`` is ``"team-a.metrics"``.

    Raises:
        ValueError: ``default`` is not one of the ``autopilot.*`` names.
    """
    if not default.startswith(DEFAULT_PREFIX + "."):
        raise ValueError(f"not an autopilot topic name: {default!r}")
    ns = _namespace_in_force() if prefix is None else prefix
    return ns + default[len(DEFAULT_PREFIX):]
