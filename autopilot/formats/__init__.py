"""Pure parsers and mappers for what real systems send (no Faust, no network).

================================  ===========================================================
``levels``                        log level synonyms → canonical level (one place)
``logs``                          JSON lines / plain text lines → LogEntry (stack traces kept)
``metrics_json``                  seed MetricPoint, prometheus-kafka-adapter, Telegraf JSON
``exposition``                    Prometheus text exposition format (prometheus_client parser)
``remote_write``                  Prometheus remote write 1.0 (snappy + protobuf WriteRequest)
``deployments``                   seed DeploymentEvent, GitHub ``deployment_status``, Argo CD
``counters``                      counter → per-second rate step (reset-safe, replay-safe)
================================  ===========================================================

Each module turns bytes or dicts into the records of :mod:`autopilot.models` and raises
:class:`autopilot.errors.BadRecord` with a reason when it cannot.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

__all__ = ["DEFAULT_SERVICE_LABELS", "Decoded", "loads_strict", "service_from_labels"]

#: Labels tried in order to find a sample's service (``AUTOPILOT_SERVICE_LABELS``).
DEFAULT_SERVICE_LABELS: tuple[str, ...] = ("service", "app", "app_kubernetes_io_name", "job")


def service_from_labels(
    labels: Mapping[str, str], service_labels: Sequence[str] = DEFAULT_SERVICE_LABELS
) -> str | None:
    """The value of the first of ``service_labels`` present (non-empty) in ``labels``."""
    for name in service_labels:
        value = labels.get(name)
        if value:
            return value
    return None


def loads_strict(raw: bytes | str) -> object:
    """Parse strict JSON (RFC 8259): invalid UTF-8 is replaced, NaN/Infinity refused.

    Raises:
        ValueError: not JSON (the message says where).
    """
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not allowed in strict JSON")


class Decoded:
    """What a decoder made of one body or record.

    Attributes:
        records: the valid records, in input order.
        errors: ``[{"item": index or None, "loc": dotted path, "msg": reason}]``.
        skipped: samples left out on purpose, by reason (``stale``, ``non_finite``,
            ``no_service``, ``non_numeric``) — counted, not errors.
    """

    __slots__ = ("errors", "records", "skipped")

    def __init__(self) -> None:
        self.records: list[object] = []
        self.errors: list[dict[str, object]] = []
        self.skipped: dict[str, int] = {}

    def skip(self, reason: str, n: int = 1) -> None:
        """Count ``n`` samples left out for ``reason``."""
        self.skipped[reason] = self.skipped.get(reason, 0) + n

    def error(self, item: int | None, loc: str, msg: str) -> None:
        """Record that item ``item`` is invalid at ``loc``."""
        self.errors.append({"item": item, "loc": loc, "msg": msg})

    def objects(self, data: object) -> list[tuple[int | None, dict[str, object]]]:
        """The JSON objects of a body that is one object or a list of them, as
        ``(item index or None, object)``; an empty list and non-objects are recorded
        as errors here."""
        listed = isinstance(data, list)
        items = data if isinstance(data, list) else [data]
        if not items:
            self.error(None, "", "empty list")
        out = []
        for index, item in enumerate(items):
            at = index if listed else None
            if not isinstance(item, dict):
                self.error(at, "", f"expected a JSON object, got {type(item).__name__}")
                continue
            out.append((at, item))
        return out

    def reason(self) -> str:
        """One line describing the first errors (for dead-letter headers)."""
        parts = []
        for e in self.errors[:5]:
            prefix = f"item {e['item']}: " if e["item"] is not None else ""
            parts.append(f"{prefix}{e['loc'] or 'record'}: {e['msg']}")
        return "; ".join(parts)
