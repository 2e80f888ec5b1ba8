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
position in the keyed topic.

The metrics ingest stage batches: one keyed record per service per batch of input
records. Its items then come from several input positions, named item by item in
the header :data:`SOURCES_HEADER` (:func:`format_sources`, :func:`parse_sources`),
and the table agent deduplicates item by item: an item is applied when its input
offset is above the last one applied from its input partition. A replayed batch may
be cut at other records than the first time; per-item positions make that harmless.
Pure module: no Faust, no network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["SOURCES_HEADER", "SOURCE_HEADER", "Position", "advance", "format_source",
           "format_sources", "offsets_from_dict", "parse_source", "parse_sources",
           "position_header", "seen", "stream_id", "stream_runs"]

#: Header on ``autopilot.*.keyed`` records: ``"<input topic>/<partition>/<offset>"``.
SOURCE_HEADER = "x-autopilot-source"
#: Header on a keyed record whose items come from several input records: the input
#: position of each item, in item order (:func:`format_sources`).
SOURCES_HEADER = "x-autopilot-sources"

#: An input position: ``(stream id, offset)``.
Position = tuple[str, int]


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


def format_sources(positions: Sequence[Position]) -> bytes:
    """The :data:`SOURCES_HEADER` value naming the input position of each item.

    Segments separated by ``;``, in item order: ``"<stream id>:<runs>"``, the runs
    separated by ``,``: ``"7"`` (one item from offset 7), ``"7*3"`` (three items from
    offset 7), ``"7-9"`` (one item from each of offsets 7, 8 and 9). A stream id may
    appear in several segments (items of two input partitions interleaved). One-sample
    input records from one partition compress to one run: ``"autopilot.metrics/0:10-509"``.

    Args:
        positions: ``(stream id, offset)`` per item, in item order (offsets not
            decreasing within a stream, as the ingest stage reads them).

    Raises:
        ValueError: no position, a negative offset, or a stream id with ``:``, ``;``
            or ``,`` (Kafka topic names have none).
    """
    if not positions:
        raise ValueError("format_sources needs at least one position")
    segments: list[str] = []
    runs: list[str] = []
    current: str | None = None
    # A run under construction: first offset, last offset, items at the last offset.
    first = last = count = -1

    def close_run() -> None:
        if first == last:
            runs.append(str(first) if count == 1 else f"{first}*{count}")
        else:  # one item per offset, first..last
            runs.append(f"{first}-{last}")

    for stream, offset in positions:
        if offset < 0:
            raise ValueError(f"negative offset {offset} for {stream!r}")
        if stream != current:
            if current is not None:
                close_run()
                segments.append(f"{current}:{','.join(runs)}")
                runs = []
            if any(c in stream for c in ":;,"):
                raise ValueError(f"stream id {stream!r} holds ':', ';' or ','")
            current, first, last, count = stream, offset, offset, 1
        elif offset == last and first == last:
            count += 1
        elif offset == last + 1 and count == 1:
            last = offset
        else:
            close_run()
            first, last, count = offset, offset, 1
    close_run()
    segments.append(f"{current}:{','.join(runs)}")
    return ";".join(segments).encode()


def parse_sources(value: bytes | str, items: int) -> list[Position]:
    """The per-item positions of a :data:`SOURCES_HEADER` value (:func:`format_sources`).

    Args:
        value: the header value.
        items: how many items the record holds.

    Returns:
        ``(stream id, offset)`` per item, ``items`` of them.

    Raises:
        ValueError: the value is malformed or names another number of items.
    """
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
    out: list[Position] = []
    for segment in text.split(";"):
        stream, sep, runs = segment.rpartition(":")
        if not sep or "/" not in stream or not runs:
            raise ValueError(f"bad {SOURCES_HEADER} segment {segment[:80]!r}")
        for run in runs.split(","):
            head, star, times = run.partition("*")
            low, dash, high = head.partition("-")
            try:
                first = int(low)
                last = int(high) if dash else first
                count = int(times) if star else 1
            except ValueError:
                raise ValueError(f"bad {SOURCES_HEADER} run {run[:40]!r}") from None
            if first < 0 or last < first or count < 1 or (dash and star):
                raise ValueError(f"bad {SOURCES_HEADER} run {run[:40]!r}")
            if len(out) + (last - first + 1) * count > items:
                raise ValueError(f"{SOURCES_HEADER} names more positions than the "
                                 f"record's {items} items")
            if dash:
                out.extend((stream, o) for o in range(first, last + 1))
            else:
                out.extend([(stream, first)] * count)
    if len(out) != items:
        raise ValueError(f"{SOURCES_HEADER} names {len(out)} positions for "
                         f"{items} items")
    return out


def position_header(positions: Sequence[Position]) -> tuple[str, bytes]:
    """The header a keyed record carries for items from ``positions`` (one per item):
    :data:`SOURCE_HEADER` when they all come from one input record (as an unbatched
    ingest stage wrote it), else :data:`SOURCES_HEADER`.

    Raises:
        ValueError: as :func:`format_sources`.
    """
    first = positions[0] if positions else None
    if first is not None and all(p == first for p in positions):
        stream, offset = first
        return SOURCE_HEADER, f"{stream}/{offset}".encode()
    return SOURCES_HEADER, format_sources(positions)


def stream_runs(positions: Sequence[Position]) -> list[tuple[str, int, int]]:
    """The maximal runs of consecutive items from one input stream.

    Returns:
        ``(stream id, start, stop)`` per run, ``positions[start:stop]`` being the run,
        in item order.
    """
    out: list[tuple[str, int, int]] = []
    start = 0
    for i in range(1, len(positions) + 1):
        if i == len(positions) or positions[i][0] != positions[start][0]:
            out.append((positions[start][0], start, i))
            start = i
    return out
