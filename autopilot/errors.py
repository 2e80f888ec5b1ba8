"""The one exception tree of the autopilot.

::

    AutopilotError                 base; never raised itself
    ├── BadRecord                  an input record cannot be used (dead-lettered)
    │     fields: reason (str), field (str | None)
    ├── ConfigError                settings are invalid; fix the environment and restart
    │     ├── PartitionsMismatchError  a topic and a table changelog differ in partitions
    │     │     fields: topic, topic_partitions, changelog, changelog_partitions
    │     └── DataDirInUse             another worker holds AUTOPILOT_DATADIR (field: path)
    ├── BrokerError                the local Kafka broker cannot start or stop
    └── DeliveryError              a downstream service (Ollama, Slack, Redis) failed
          ├── AnalysisUnavailable  Ollama did not give a usable answer (fallback used)
          └── AlertDeliveryError   Slack refused or could not be reached after retries
                fields: retry_after (float | None, seconds), status (int | None),
                        code (str | None, Slack's error code)

Each exception says what the operator should do next in its message.
"""

from __future__ import annotations


class AutopilotError(Exception):
    """Base class of every error the autopilot raises on purpose."""


class BadRecord(AutopilotError):
    """An input record that cannot be processed.

    The record is sent to the dead-letter topic with ``reason``; processing goes on.

    Attributes:
        reason: human-readable explanation, safe to log (never contains secrets).
        field: the offending field's dotted path, when one field is to blame.
    """

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


class ConfigError(AutopilotError):
    """Settings are invalid: fix the named environment variable and restart."""


class BrokerError(AutopilotError):
    """The local Kafka broker (autopilot broker) could not be started or did not become ready."""


class DeliveryError(AutopilotError):
    """A downstream service failed; the caller retries or falls back."""


class AnalysisUnavailable(DeliveryError):
    """Ollama gave no usable analysis (timeout, HTTP error, invalid JSON).

    The analysis agent falls back to the rule-based analysis.

    Attributes:
        reason: the failure's class, a Prometheus label (``timeout``, ``connect``,
            ``model_not_found``, ``http``, ``not_json``, ``streaming``,
            ``invalid_output``, ``circuit_open``, ``other``); timeouts, connection
            errors and a missing model open the LLM circuit breaker
            (:mod:`autopilot.breaker`).
    """

    def __init__(self, message: str, *, reason: str = "other") -> None:
        super().__init__(message)
        self.reason = reason


class AlertDeliveryError(DeliveryError):
    """Slack refused the alert or stayed unreachable after the retries.

    Attributes:
        status: HTTP status of the last answer, ``None`` if no answer came.
        retry_after: seconds Slack asked us to wait (``Retry-After``), if any.
        code: Slack's error code (``"message_not_found"``, ``"thread_not_found"``,
            ``"invalid_blocks"``, ``"ratelimited"``, a webhook's text body such as
            ``"no_service"``), ``None`` when Slack gave none (e.g. unreachable).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.code = code


class PartitionsMismatchError(ConfigError):
    """A co-partitioned topic and a table's changelog have different partition counts.

    Faust writes a table key to the partition of the record being processed, so the
    worker stops at start instead of dead-lettering every record of that topic.

    Attributes:
        topic: the source topic's name; ``topic_partitions`` its partition count.
        changelog: the table changelog's name; ``changelog_partitions`` its count.
    """

    def __init__(
        self, topic: str, topic_partitions: int, changelog: str, changelog_partitions: int
    ) -> None:
        super().__init__(
            f"topic {topic} has {topic_partitions} partitions but the table changelog "
            f"{changelog} has {changelog_partitions}: they must be equal. Recreate {topic} "
            f"with {changelog_partitions} partitions (or delete both and let the worker "
            "create them with AUTOPILOT_PARTITIONS), then restart"
        )
        self.topic = topic
        self.topic_partitions = topic_partitions
        self.changelog = changelog
        self.changelog_partitions = changelog_partitions


class DataDirInUse(ConfigError):
    """Another worker process holds the data directory (``AUTOPILOT_DATADIR``).

    Attributes:
        path: the data directory.
    """

    def __init__(self, path: str, holder: str) -> None:
        super().__init__(
            f"data directory {path} is in use by another worker ({holder}); every worker "
            "needs its own AUTOPILOT_DATADIR: stop the other worker or set another directory"
        )
        self.path = path
