"""Idempotency under replay: which source records a table value has applied.

Kafka delivers at least once: after a crash, records past the last committed offset
arrive again. Every table value therefore remembers, per *source stream*, the offset
of the last source record it applied, and a record at or below it changes nothing.

The source stream is the **input** partition the record first entered the pipeline
at (``"autopilot.metrics/3"``), not the internal re-keyed topic the table's agent
reads. The ingest stage forwards every input record to ``autopilot.*.keyed`` and
names its origin in the header :data:`SOURCE_HEADER` (``"<topic>/<partition>/<offset>"``).
If the ingest stage itself is replayed after a crash, it sends records that already
reached the keyed topic a second time, under *new* keyed offsets; deduplicating on
the keyed offset would apply them twice (double-counted samples), deduplicating on
the input position does not.

This is sound because, for one table value (one series or one service), the records
of one input partition reach it in input-offset order: the ingest agent reads a
partition in order and Faust's producer keeps send order per target partition. So
"offset ≤ the last applied offset of that input partition" means "applied before".
A record without the header (written by an older worker) falls back to its own
position in the keyed topic. Pure module: no Faust, no network.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["SOURCE_HEADER", "advance", "format_source", "offsets_from_dict", "parse_source",
           "seen", "stream_id"]

#: Header on ``autopilot.*.keyed`` records: ``"<input topic>/<partition>/<offset>"``.
SOURCE_HEADER = "x-autopilot-source"


def stream_id(topic: str, partition: int) -> str:
    """The name of one source stream: ``"<topic>/<partition>"``."""
    return f"{topic}/{partition}"


def format_source(topic: str, partition: int, offset: int) -> bytes:
    """Header value naming a source record (UTF-8 ``"<topic>/<partition>/<offset>"``)."""
    return f"{topic}/{partition}/{offset}".encode()


def parse_source(value: bytes | str | None) -> tuple[str, int] | None:
    """``(stream id, offset)`` from a :data:`SOURCE_HEADER` value; ``None`` if absent
    or malformed."""
    if value is None:
        return None
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
    head, sep, offset = text.rpartition("/")
    if not sep or "/" not in head:
        return None
    try:
        off = int(offset)
    except ValueError:
        return None
    return (head, off) if off >= 0 else None


def seen(offsets: Mapping[str, int], stream: str, offset: int) -> bool:
    """True when the record at ``offset`` of ``stream`` was applied already."""
    return offset <= offsets.get(stream, -1)


def advance(offsets: Mapping[str, int], stream: str, offset: int) -> dict[str, int]:
    """``offsets`` with ``stream`` moved to ``offset`` (a new dict)."""
    return {**offsets, stream: offset}


def offsets_from_dict(data: Mapping[str, Any]) -> dict[str, int]:
    """Read the ``offsets`` of a stored table value (older values kept one
    ``last_offset`` of the keyed topic: it becomes the unnamed stream ``""``)."""
    if "offsets" in data:
        return {str(k): int(v) for k, v in data["offsets"].items()}
    last = int(data.get("last_offset", -1))
    return {"": last} if last >= 0 else {}
