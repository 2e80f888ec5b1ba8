"""Log records as shippers send them → LogEntry (pure).

One Kafka record on ``autopilot.logs`` (or one ``POST /ingest/logs`` body) is told
apart by its first non-blank character:

* ``[`` — a JSON list of log objects (items: the list's objects);
* ``{`` — one JSON object, or else lines (below);
* anything else — lines.

**Lines** (items: the lines, numbered from 0 in the body) may mix JSON lines (one
object per line, as Vector, Fluent Bit, Filebeat and pino write them) and plain text
lines ``<timestamp> <level> <message>``, e.g. ``2026-11-29T10:00:05Z ERROR db
timeout`` or Python logging's ``2026-11-29 10:00:05,123 [WARNING] retrying``. A line
that is neither (an indented ``at …`` frame, ``Traceback …``, ``Caused by: …``)
continues the entry before it, whether that entry was a JSON line or a text line: a
multi-line stack trace printed between JSON lines joins the error line it belongs to
(its message gets the lines, newline-separated). Lines before the first entry, and a
line that starts with ``{`` but is not a JSON object, are refused items
(``bad_line``, ``not_json``); the other lines are kept.

Log objects: the first present key of each group is used —

========== ==============================================================
timestamp  ``timestamp``, ``@timestamp``, ``time``, ``ts``
level      ``level``, ``severity``, ``lvl``, ``levelname``, ``log.level``
message    ``message``, ``msg``, ``log``
service    ``service`` (or ``service.name``), ``service_name``, ``app``,
           ``labels.service``
labels     ``labels`` (an object)
========== ==============================================================

The service falls back to ``default_service`` (the Kafka record key, or
``?service=`` over HTTP); none is an error of that item. Timestamps are RFC 3339 with
or without offset (naive means UTC) or epoch s/ms/µs/ns
(:func:`autopilot.models.parse_timestamp`). Levels go through
:func:`autopilot.formats.levels.normalize_level` (synonyms, syslog 0–7, pino's
10–60): a missing level or one it does not know is kept as ``UNKNOWN`` and counted
(``Decoded.defaulted``: ``missing_level``, ``unknown_level``; the level as sent is
kept in the label ``level_sent``). A message longer than 65,536 characters is cut
there (``message_truncated``). Invalid UTF-8 is replaced (U+FFFD), never fatal.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from autopilot.formats import Decoded, loads_strict
from autopilot.formats.levels import UNKNOWN_LEVEL, normalize_level
from autopilot.models import LogEntry

__all__ = ["MAX_MESSAGE_CHARS", "decode_logs", "map_log_object", "parse_lines"]

_HEADER = re.compile(
    r"""^(?P<ts>
          \d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:[Zz]|[+-]\d{2}:?\d{2})?
        | \d{10}(?:\.\d+)? | \d{13} | \d{16} | \d{19}
        )
        \s+[\[(<]?(?P<level>[A-Za-z]{2,12}|[0-7])[\])>]?:?
        (?:\s+(?P<msg>.*)|$)""",
    re.VERBOSE,
)

#: Longest message kept (characters); longer ones are cut (``message_truncated``).
MAX_MESSAGE_CHARS = 65_536

_TS_KEYS = ("timestamp", "@timestamp", "time", "ts")
_LEVEL_KEYS = ("level", "severity", "lvl", "levelname")
_MESSAGE_KEYS = ("message", "msg", "log")


def decode_logs(raw: bytes | str, default_service: str | None = None) -> Decoded:
    """Decode one record value or body (see module docstring).

    Raises:
        ValueError: an empty body, or a body that starts with ``[`` and is not JSON
            (nothing in it can be read).
    """
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    text = text.lstrip("\ufeff")
    stripped = text.strip()
    out = Decoded()
    if not stripped:
        raise ValueError("empty body")
    if stripped[0] == "[":
        data = loads_strict(stripped)
        if not isinstance(data, list) or not data:
            out.error(None, "", "empty list")
            return out
        for index, item in enumerate(data):
            map_log_object(item, index, default_service, out)
        return out
    if stripped[0] == "{" and stripped[-1] == "}":
        try:
            data = loads_strict(stripped)
        except ValueError:
            data = None
        if isinstance(data, dict):
            map_log_object(data, None, default_service, out)
            return out
    return parse_lines(text, default_service, out)


def _first(obj: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if key in obj and obj[key] is not None:
            return obj[key]
    return None


def _service_of(obj: dict[str, Any], default_service: str | None) -> Any:
    service = obj.get("service")
    if isinstance(service, dict):
        service = service.get("name")
    if not service:
        service = obj.get("service_name") or obj.get("app")
    labels = obj.get("labels")
    if not service and isinstance(labels, dict):
        service = labels.get("service")
    return service or default_service


def map_log_object(
    obj: Any,
    index: int | None,
    default_service: str | None,
    out: Decoded,
    more_lines: list[str] | None = None,
    raw: Any = None,
) -> None:
    """Map one log object (see module docstring) onto ``out``.

    Args:
        obj: the parsed JSON value.
        index: its item index (``None``: the body is this one object).
        default_service: the service when the object names none.
        out: where the record or the errors go.
        more_lines: continuation lines (a stack trace) appended to the message.
        raw: the item as sent (for dead-lettering it when refused); default ``obj``.
    """
    raw = obj if raw is None else raw
    if not isinstance(obj, dict):
        out.error(index, "", f"expected a JSON object, got {type(obj).__name__}", raw=raw)
        return
    level = _first(obj, _LEVEL_KEYS)
    if level is None and isinstance(obj.get("log"), dict):
        level = obj["log"].get("level")
    message = _first(obj, _MESSAGE_KEYS)
    if message is not None and not isinstance(message, str):
        message = json.dumps(message)
    if more_lines:
        message = "\n".join([message or "", *more_lines]).rstrip("\n")
    data = {
        "timestamp": _first(obj, _TS_KEYS),
        "level": level,
        "message": message,
        "service": _service_of(obj, default_service),
        "labels": obj.get("labels") if isinstance(obj.get("labels"), dict) else {},
    }
    _validate(data, index, out, raw)


def _validate(data: dict[str, Any], index: int | None, out: Decoded, raw: Any) -> None:
    missing = [k for k in ("timestamp", "message", "service") if data[k] is None]
    for key in missing:
        hint = (
            " (send it in the record or as the Kafka key / ?service=)" if key == "service" else ""
        )
        out.error(index, key, f"missing{hint}", raw=raw)
    if missing:
        return
    defaulted = _level_of(data)
    message = data["message"]
    if isinstance(message, str) and len(message) > MAX_MESSAGE_CHARS:
        data["message"] = message[: MAX_MESSAGE_CHARS - 1] + "\u2026"
        defaulted.append("message_truncated")
    try:
        entry = LogEntry.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            out.error(index, ".".join(str(p) for p in err["loc"]), err["msg"], raw=raw)
        return
    out.add(entry, index)
    for reason in defaulted:
        out.default(reason)


def _level_of(data: dict[str, Any]) -> list[str]:
    """Set ``data["level"]`` to a known level or ``UNKNOWN``; the defaults applied."""
    level = data["level"]
    if level is None or (isinstance(level, str) and not level.strip()):
        data["level"] = UNKNOWN_LEVEL
        return ["missing_level"]
    try:
        normalize_level(level)
    except ValueError:
        data["level"] = UNKNOWN_LEVEL
        labels = dict(data["labels"])
        labels.setdefault("level_sent", str(level)[:64])
        data["labels"] = labels
        return ["unknown_level"]
    if isinstance(level, str) and len(level.strip()) > 32:
        data["level"] = UNKNOWN_LEVEL
        return ["unknown_level"]
    return []


def _header(line: str) -> dict[str, Any] | None:
    """The entry a text line starts (timestamp, level, message), or ``None``."""
    match = _HEADER.match(line)
    if match is None:
        return None
    ts = match["ts"]
    level, message = match["level"], match["msg"] or ""
    try:
        normalize_level(level)
    except ValueError:
        # ``2026-11-29T10:00:05Z something happened``: no level; keep every word.
        rest = line[match.end("ts"):].lstrip()
        level, message = None, rest
    return {
        "timestamp": ts.replace(",", ".") if "-" in ts else ts,
        "level": level,
        "lines": [message],
    }


def parse_lines(
    text: str, default_service: str | None = None, out: Decoded | None = None
) -> Decoded:
    """Lines → LogEntry: JSON lines and text lines, continuation lines joining the entry
    before them (see module docstring). Items are 0-based line numbers."""
    out = out if out is not None else Decoded()
    entries: list[dict[str, Any]] = []
    orphans: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines()):
        if not line.strip():
            if entries:
                entries[-1]["lines"].append("")
            continue
        if line.lstrip().startswith("{"):
            try:
                obj = loads_strict(line)
            except ValueError as exc:
                out.error(number, "", f"line {number + 1}: {exc}", code="not_json", raw=line)
                continue
            if isinstance(obj, dict):
                entries.append({"object": obj, "lines": [], "item": number, "raw": [line]})
                continue
        header = _header(line)
        if header is not None:
            header.update(item=number, raw=[line])
            entries.append(header)
            continue
        if entries:
            entries[-1]["lines"].append(line)
            entries[-1]["raw"].append(line)
            continue
        orphans.append((number, line))
    if orphans:
        first, line = orphans[0]
        out.error(
            first,
            "",
            f"line {first + 1}: expected a JSON object or '<timestamp> <level> <message>', "
            f"got {line[:80]!r}" + (f" (and {len(orphans) - 1} more lines)" if len(orphans) > 1
                                    else ""),
            code="bad_line",
            raw="\n".join(text for _, text in orphans),
        )
    for entry in entries:
        raw = "\n".join(entry["raw"])
        continuation = _trim(entry["lines"])
        if "object" in entry:
            map_log_object(
                entry["object"], entry["item"], default_service, out, continuation, raw
            )
            continue
        data = {
            "timestamp": entry["timestamp"],
            "level": entry["level"],
            "message": "\n".join(continuation),
            "service": default_service,
            "labels": {},
        }
        _validate(data, entry["item"], out, raw)
    return out


def _trim(lines: list[str]) -> list[str]:
    """``lines`` without trailing blank lines."""
    end = len(lines)
    while end and not lines[end - 1].strip():
        end -= 1
    return lines[:end]
