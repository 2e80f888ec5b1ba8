"""The Faust topic objects of the app, over the names of :mod:`autopilot.topics`.

Every topic is keyed by service as raw UTF-8 bytes and carries raw bytes that the
agents decode themselves (see :mod:`autopilot.topics`). The names in force come from
:func:`autopilot.topics.topic_name` with the worker's ``AUTOPILOT_TOPIC_PREFIX`` (else
``AUTOPILOT_APP_ID``), read when this module is first imported (when Faust discovers
the agents).
"""

from __future__ import annotations

from typing import Any

from faust.types import TopicT

from autopilot.app import app, settings
from autopilot.topics import (
    ALERTS,
    ANOMALIES,
    CORRELATION_CONTROL,
    DEADLETTER,
    DEPLOYMENTS,
    DEPLOYMENTS_KEYED,
    FEEDBACK,
    INCIDENT_ACTIONS,
    INCIDENTS,
    LOGS,
    LOGS_KEYED,
    METRICS,
    METRICS_KEYED,
    NOTIFY_CONTROL,
    SILENCES,
    topic_name,
)


def raw_topic(*names: str, **kw: Any) -> TopicT:
    """A raw-bytes Faust topic over one or more topics (default names, mapped by
    :func:`~autopilot.topics.topic_name`) that the worker creates at start-up
    (``AUTOPILOT_PARTITIONS`` partitions) unless they exist already; an agent reading
    several topics at once gets one such topic over all of them."""
    namespace = settings().topic_namespace
    return app.topic(
        *(topic_name(name, namespace) for name in names),
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
silences_topic = raw_topic(SILENCES)
feedback_topic = raw_topic(FEEDBACK)
incident_actions_topic = raw_topic(INCIDENT_ACTIONS)
deadletter_topic = raw_topic(DEADLETTER)
