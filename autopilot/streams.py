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
    AUDIT,
    CORRELATION_CONTROL,
    DEADLETTER,
    DEPLOYMENTS,
    DEPLOYMENTS_KEYED,
    FEEDBACK,
    INCIDENT_ACTIONS,
    INCIDENT_GROUPS,
    INCIDENTS,
    LOGS,
    LOGS_KEYED,
    METRICS,
    METRICS_KEYED,
    NOTIFY_CONTROL,
    SILENCES,
    TRACES,
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
#: ONE partition, keyed ``b"groups"``: every grouping decision is made by the one worker
#: that owns it (incidents are rare; docs/rca.md). Its tables have one partition too.
incident_groups_topic = raw_topic(INCIDENT_GROUPS, partitions=1)
#: Keyed by trace id: the trace linker sees all of a trace's lines on one worker.
traces_topic = raw_topic(TRACES)
#: Keyed by incident id; retention ``AUTOPILOT_AUDIT_RETENTION_DAYS`` (its ``retention.ms``
#: when the worker creates it, see :mod:`autopilot.agents.audit`; docs/audit.md).
audit_topic = raw_topic(AUDIT, retention=settings().audit_retention_days * 86400.0, deleting=True)


@app.task
async def declare_output_topics() -> None:
    """Create the topics the worker writes but no agent reads (dead letters, the audit
    trail) when it starts, not at their first record: Faust creates the others with
    the agents that read them. A record produced right after its topic came into being
    can meet ``NotLeaderForPartitionError`` while the new partitions elect leaders, and
    aiokafka does not always recover (aio-libs/aiokafka#1018): seen as a worker whose
    every later send waited, after its first dead letter or audit event. A failure here
    is logged; the broker (auto-create) or the audit's own declaration still creates
    them later."""
    import logging

    for topic in (deadletter_topic, audit_topic):
        try:
            await topic.maybe_declare()
        except Exception as exc:  # noqa: BLE001 - see the docstring
            logging.getLogger(__name__).warning(
                "could not create topic %s at start (%s)", topic.get_topic_name(), exc)


async def read_to_end(topic: str, timeout_s: float) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of ``topic`` (its name in force), from the start of each partition
    to that partition's end offset at the time of the call: ``[(key, value), …]`` in
    partition order, then offset order. For the CLI's readers of a topic (``autopilot
    audit``, ``autopilot feedback export``): no worker needs to run, no consumer group
    is joined. Uses ``AUTOPILOT_BROKER`` and the ``AUTOPILOT_KAFKA_*`` security
    settings. A topic that does not exist yet reads as empty.

    Raises:
        TimeoutError: the broker did not answer, or the records were not all read,
            within ``timeout_s``.
        aiokafka.errors.KafkaConnectionError: the broker cannot be reached.
    """
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from autopilot.app import _bootstrap_hosts, broker_credentials

    s = settings()
    hosts = [f"{h}:{p}" for h, p in _bootstrap_hosts(s.broker)]
    auth = credentials_to_aiokafka_auth(broker_credentials(s))
    consumer = AIOKafkaConsumer(bootstrap_servers=hosts, enable_auto_commit=False,
                                group_id=None, request_timeout_ms=int(timeout_s * 1000),
                                **auth)
    records: list[tuple[bytes | None, bytes | None]] = []

    async def read() -> None:
        await consumer.start()
        ids = consumer.partitions_for_topic(topic)
        if not ids:  # the first metadata answer may not name the topic yet
            await consumer._client.force_metadata_update()  # noqa: SLF001
            ids = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(ids)]
        if not tps:
            return
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if end[tp] > 0}
        by_partition: dict[Any, list[tuple[bytes | None, bytes | None]]] = {tp: [] for tp in tps}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, messages in batch.items():
                for m in messages:
                    if m.offset < end[tp]:
                        by_partition[tp].append((m.key, m.value))
                    if m.offset + 1 >= end[tp]:
                        remaining.discard(tp)
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        for tp in tps:
            records.extend(by_partition[tp])

    try:
        await asyncio.wait_for(read(), timeout_s)
    finally:
        await consumer.stop()
    return records
