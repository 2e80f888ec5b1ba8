"""Pure parsers and mappers for what real systems send (no Faust, no network).

================================  ===========================================================
``levels``                        log level synonyms → canonical level (one place)
``logs``                          JSON lines / plain text lines → LogEntry (stack traces kept)
``metrics_json``                  seed MetricPoint, prometheus-kafka-adapter, Telegraf JSON
``exposition``                    Prometheus text exposition format (prometheus_client parser)
``remote_write``                  Prometheus remote write 1.0 (snappy + protobuf WriteRequest)
``deployments``                   seed DeploymentEvent, GitHub ``deployment_status``, Argo CD
``otlp``                          OpenTelemetry OTLP metrics and logs (protobuf or OTLP/JSON)
================================  ===========================================================

Each module turns bytes or dicts into the records of :mod:`autopilot.models`, item by
item: a :class:`Decoded` holds the valid records and, per bad item, why it was refused,
so one bad item never sinks the rest of a body or record. A decoder raises
``ValueError`` only when nothing in the input can be read (not JSON at all, not
snappy …).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "DEFAULT_SERVICE_LABELS",
    "REJECT_REASONS",
    "Decoded",
    "loads_strict",
    "service_from_labels",
]

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


#: Short reasons (counter labels) of rejected items; see :meth:`Decoded.error`.
REJECT_REASONS = (
    "invalid",           # a field fails validation (the message names it)
    "not_json",          # a JSON line or item that does not parse
    "bad_line",          # a text line that is neither a record nor a continuation
    "bad_timestamp",     # a timestamp that is no time, or out of the representable range
    "non_finite",        # a number beyond float range (``1e309``) where a value is required
    "no_service",        # no service in the item, its labels, the key or ``?service=``
    "future_timestamp",  # more than AUTOPILOT_MAX_FUTURE_S ahead of wall-clock time
    "past_timestamp",    # more than AUTOPILOT_MAX_PAST_S behind wall-clock time
)


class Decoded:
    """What a decoder made of one body or record: the valid records, and per bad item
    why it was refused (one bad item never sinks the others).

    Items are what the body is made of: the objects of a JSON list (``item`` = the
    index in the list, ``None`` for a body that is one object), the lines of a
    line-oriented body (JSON lines, text log lines, the exposition format: ``item`` =
    the 0-based line number in the body), the series of a remote-write request
    (``item`` = the series' index).

    Attributes:
        records: the valid records, in input order.
        record_items: for each record, the item it came from (same length as
            ``records``; one item may give several records: a Telegraf metric with
            several fields, a remote-write series with several samples).
        errors: ``[{"item": index or None, "loc": dotted path, "msg": reason,
            "code": short reason}]``; ``code`` is one of :data:`REJECT_REASONS`.
        raw: item index → the refused item as it was sent (a parsed JSON value or the
            text of its lines), for dead-lettering only the bad items.
        skipped: samples left out on purpose, by reason (``stale``, ``non_finite``,
            ``no_service``, ``non_numeric``) — counted, not errors.
        defaulted: items kept with a default, by reason (``unknown_level``,
            ``missing_level``: the level became ``UNKNOWN``; ``missing_version``: the
            deployment's version became ``unknown``; ``message_truncated``).
    """

    __slots__ = ("defaulted", "errors", "raw", "record_items", "records", "skipped")

    def __init__(self) -> None:
        self.records: list[Any] = []
        self.record_items: list[int | None] = []
        self.errors: list[dict[str, Any]] = []
        self.raw: dict[int | None, Any] = {}
        self.skipped: dict[str, int] = {}
        self.defaulted: dict[str, int] = {}

    def add(self, record: Any, item: int | None) -> None:
        """Keep ``record``, which came from item ``item``."""
        self.records.append(record)
        self.record_items.append(item)

    def extend(self, other: Decoded) -> None:
        """Take over everything ``other`` decoded (records, errors, counts)."""
        self.records.extend(other.records)
        self.record_items.extend(other.record_items)
        self.errors.extend(other.errors)
        self.raw.update(other.raw)
        for reason, n in other.skipped.items():
            self.skip(reason, n)
        for reason, n in other.defaulted.items():
            self.default(reason, n)

    def skip(self, reason: str, n: int = 1) -> None:
        """Count ``n`` samples left out for ``reason``."""
        self.skipped[reason] = self.skipped.get(reason, 0) + n

    def default(self, reason: str, n: int = 1) -> None:
        """Count ``n`` items kept with a default value for ``reason``."""
        self.defaulted[reason] = self.defaulted.get(reason, 0) + n

    def error(
        self, item: int | None, loc: str, msg: str, code: str | None = None, raw: Any = None
    ) -> None:
        """Record that item ``item`` is invalid at ``loc``.

        Args:
            item: the item's index (see the class docstring), ``None`` for a one-object
                body.
            loc: dotted path of the bad field (``""``: the item as a whole).
            msg: what is wrong, for people.
            code: short reason (:data:`REJECT_REASONS`); derived from ``loc`` and
                ``msg`` when not given.
            raw: the item as sent, kept for dead-lettering (the first one given wins).
        """
        code = code or _code_of(loc, msg)
        self.errors.append({"item": item, "loc": loc, "msg": msg, "code": code})
        if raw is not None and item not in self.raw:
            self.raw[item] = raw

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
                self.error(
                    at, "", f"expected a JSON object, got {type(item).__name__}", raw=item
                )
                continue
            out.append((at, item))
        return out

    def rejected(self) -> list[dict[str, Any]]:
        """One entry per refused item, in input order: ``{"item": i, "reason": text,
        "code": short reason}`` (a one-object body's item is 0)."""
        by_item: dict[int | None, dict[str, Any]] = {}
        for e in self.errors:
            entry = by_item.get(e["item"])
            text = f"{e['loc']}: {e['msg']}" if e["loc"] else str(e["msg"])
            if entry is None:
                by_item[e["item"]] = {
                    "item": 0 if e["item"] is None else e["item"],
                    "reason": text,
                    "code": e["code"],
                }
            else:
                entry["reason"] = f"{entry['reason']}; {text}"
        return sorted(by_item.values(), key=lambda entry: entry["item"])

    def rejected_counts(self) -> dict[str, int]:
        """Refused items by short reason (one count per item, its first error's)."""
        counts: dict[str, int] = {}
        for entry in self.rejected():
            counts[entry["code"]] = counts.get(entry["code"], 0) + 1
        return counts

    def enforce_time_limits(
        self, now_s: float, max_future_s: float | None, max_past_s: float | None
    ) -> None:
        """Refuse the records whose timestamp is too far from wall-clock time.

        Args:
            now_s: wall-clock time, epoch seconds.
            max_future_s: a record more than this many seconds after ``now_s`` is
                refused (``future_timestamp``); ``None`` or 0: no limit.
            max_past_s: a record more than this many seconds before ``now_s`` is
                refused (``past_timestamp``); ``None`` or 0: no limit.

        A refused record becomes an error of its item (its ``raw`` is the record's
        JSON unless the item's own text was kept); the item's other records stay.
        """
        upper = _bound(now_s + max_future_s) if max_future_s else None
        lower = _bound(now_s - max_past_s) if max_past_s else None
        if upper is None and lower is None:
            return
        keep: list[Any] = []
        keep_items: list[int | None] = []
        for record, item in zip(self.records, self.record_items, strict=True):
            ts = getattr(record, "timestamp", None)
            if upper is not None and ts is not None and ts > upper:
                self.error(
                    item, "timestamp",
                    f"{ts.isoformat()} is more than {max_future_s:g} s ahead of the "
                    "worker's clock (AUTOPILOT_MAX_FUTURE_S)",
                    code="future_timestamp", raw=_record_json(record),
                )
            elif lower is not None and ts is not None and ts < lower:
                self.error(
                    item, "timestamp",
                    f"{ts.isoformat()} is more than {max_past_s:g} s behind the "
                    "worker's clock (AUTOPILOT_MAX_PAST_S)",
                    code="past_timestamp", raw=_record_json(record),
                )
            else:
                keep.append(record)
                keep_items.append(item)
        if len(keep) != len(self.records):
            self.records, self.record_items = keep, keep_items

    def reason(self) -> str:
        """One line describing the first errors (for dead-letter headers)."""
        parts = []
        for e in self.errors[:5]:
            prefix = f"item {e['item']}: " if e["item"] is not None else ""
            parts.append(f"{prefix}{e['loc'] or 'record'}: {e['msg']}")
        return "; ".join(parts)


def _code_of(loc: str, msg: str) -> str:
    """The short reason of an error from its location and message."""
    head = loc.split(".", 1)[0]
    text = msg.lower()
    if head == "timestamp":
        return "bad_timestamp"
    if "finite" in text:
        return "non_finite"
    if head == "service" or (head == "labels" and "service" in text):
        return "no_service"
    if "json" in text:
        return "not_json"
    return "invalid"


def _bound(epoch_s: float) -> datetime:
    """``epoch_s`` as an aware UTC datetime, clamped to what datetime can hold."""
    try:
        return datetime.fromtimestamp(epoch_s, UTC)
    except (OverflowError, OSError, ValueError):
        return datetime.max.replace(tzinfo=UTC) if epoch_s > 0 else datetime.min.replace(
            tzinfo=UTC
        )


def _record_json(record: Any) -> Any:
    dump = getattr(record, "model_dump", None)
    return dump(mode="json") if dump is not None else record
