"""Topic names (persisted contracts) and the Faust topic objects.

Every topic is keyed by service as raw UTF-8 bytes and carries raw bytes that the
agents decode themselves, so undecodable records can be dead-lettered with their
topic, partition and offset (a typed Faust topic would fail before the agent's
error boundary). Renaming a topic is a migration.

The names below are the defaults. ``AUTOPILOT_TOPIC_PREFIX`` (default: the app id,
``AUTOPILOT_APP_ID``, itself ``autopilot``) replaces their leading ``autopilot``, so
several autopilots (or test runs) can share one Kafka cluster without seeing each
other's records: with prefix ``team-a`` the input topic is ``team-a.metrics``.
:func:`topic_name` maps a default name to the one in force; the worker reads the
prefix when this module is first imported (when Faust discovers the agents).

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
autopilot.anomalies        service → Anomaly
autopilot.correlation.control  service → {"kind": "close_check", "wall": epoch s}
                           (internal; wall-clock closing of quiet incidents)
autopilot.incidents        service → Incident (every lifecycle change)
autopilot.alerts           service → Alert (incident + its analysis, from the analysis
                           agent; the notifier folds it into the incident's message)
autopilot.notify.control   service → {"kind": "tick", "wall": epoch s} (internal; the
                           notifier's timer: group_wait, group_interval, reminders)
autopilot.deadletter       original key → original value bytes; headers
                           ``x-autopilot-reason``, ``-topic``, ``-partition``,
                           ``-offset``, ``-stage``
=========================  =====================================================
"""

from __future__ import annotations

from typing import Any

from autopilot.app import app, settings

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
DEADLETTER = "autopilot.deadletter"

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
    DEADLETTER,
)


DEFAULT_PREFIX = "autopilot"


def topic_name(default: str, prefix: str | None = None) -> str:
    """The name in force of the topic whose default name is ``default``.

    ``prefix`` defaults to the worker's setting (``AUTOPILOT_TOPIC_PREFIX``, else
    ``AUTOPILOT_APP_ID``). ``topic_name("autopilot.metrics", "team-a")`` is
    ``"team-a.metrics"``.
    """
    if not default.startswith(DEFAULT_PREFIX + "."):
        raise ValueError(f"not an autopilot topic name: {default!r}")
    ns = settings().topic_namespace if prefix is None else prefix
    return ns + default[len(DEFAULT_PREFIX):]


def raw_topic(*names: str, **kw: Any) -> Any:
    """A raw-bytes Faust topic over one or more topics (default names, mapped by
    :func:`topic_name`) that the worker creates at start-up (``AUTOPILOT_PARTITIONS``
    partitions) unless they exist already; an agent reading several topics at once
    gets one such topic over all of them."""
    return app.topic(
        *(topic_name(name) for name in names),
        internal=True,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        **kw,
    )


metrics_topic = raw_topic(METRICS)
logs_topic = raw_topic(LOGS)
deployments_topic = raw_topic(DEPLOYMENTS)
metrics_keyed_topic = raw_topic(METRICS_KEYED)
logs_keyed_topic = raw_topic(LOGS_KEYED)
deployments_keyed_topic = raw_topic(DEPLOYMENTS_KEYED)
anomalies_topic = raw_topic(ANOMALIES)
control_topic = raw_topic(CORRELATION_CONTROL)
incidents_topic = raw_topic(INCIDENTS)
alerts_topic = raw_topic(ALERTS)
notify_control_topic = raw_topic(NOTIFY_CONTROL)
deadletter_topic = raw_topic(DEADLETTER)
