"""Log records as shippers send them → LogEntry (pure).

One Kafka record on ``autopilot.logs`` (or one ``POST /ingest/logs`` body) is told
apart by its first non-blank character:

* ``[`` — a JSON list of log objects;
* ``{`` — one JSON object, or JSON lines (one object per line, as Vector, Fluent Bit
  and Filebeat write them);
* anything else — plain text lines ``<timestamp> <level> <message>``, e.g.
  ``2026-11-29T10:00:05Z ERROR db timeout`` or Python logging's
  ``2026-11-29 10:00:05,123 [WARNING] retrying``. A line that does not start with a
  timestamp and a level (an indented ``at …`` frame, ``Traceback …``,
  ``Caused by: …``) continues the previous entry: a multi-line stack trace stays
  with its first line. The first line must have the header.

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
``?service=`` over HTTP); none is an error. Timestamps are RFC 3339 with or
without offset (naive means UTC) or epoch s/ms/µs/ns
(:func:`autopilot.models.parse_timestamp`); levels go through
:func:`autopilot.formats.levels.normalize_level` (unknown → error). Invalid UTF-8 is
replaced (U+FFFD), never fatal.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from autopilot.formats import Decoded, loads_strict
from autopilot.models import LogEntry

__all__ = ["decode_logs", "map_log_object", "parse_text_lines"]

_HEADER = re.compile(
    r"""^(?P<ts>
          \d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:[Zz]|[+-]\d{2}:?\d{2})?
        | \d{10}(?:\.\d+)? | \d{13} | \d{16} | \d{19}
        )
        \s+[\[(<]?(?P<level>[A-Za-z]{2,12}|[0-7])[\])>]?:?
        (?:\s+(?P<msg>.*)|$)""",
    re.VERBOSE,
)

_TS_KEYS = ("timestamp", "@timestamp", "time", "ts")
_LEVEL_KEYS = ("level", "severity", "lvl", "levelname")
_MESSAGE_KEYS = ("message", "msg", "log")


def decode_logs(raw: bytes | str, default_service: str | None = None) -> Decoded:
    """Decode one record value or body (see module docstring).

    Raises:
        ValueError: JSON (starts with ``[`` or ``{``) that does not parse; the
            message names the line for JSON lines.
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
    if stripped[0] == "{":
        try:
            data = loads_strict(stripped)
        except ValueError:
            data = None
        if isinstance(data, dict):
            map_log_object(data, None, default_service, out)
            return out
        lines = [line for line in stripped.splitlines() if line.strip()]
        for number, line in enumerate(lines, start=1):
            try:
                item = loads_strict(line)
            except ValueError as exc:
                raise ValueError(f"line {number}: {exc}") from None
            map_log_object(item, number - 1, default_service, out)
        return out
    return parse_text_lines(text, default_service, out)


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


def map_log_object(obj: Any, index: int | None, default_service: str | None, out: Decoded) -> None:
    """Map one log object (see module docstring) onto ``out``."""
    if not isinstance(obj, dict):
        out.error(index, "", f"expected a JSON object, got {type(obj).__name__}")
        return
    level = _first(obj, _LEVEL_KEYS)
    if level is None and isinstance(obj.get("log"), dict):
        level = obj["log"].get("level")
    message = _first(obj, _MESSAGE_KEYS)
    if message is not None and not isinstance(message, str):
        message = json.dumps(message)
    data = {
        "timestamp": _first(obj, _TS_KEYS),
        "level": level,
        "message": message,
        "service": _service_of(obj, default_service),
        "labels": obj.get("labels") if isinstance(obj.get("labels"), dict) else {},
    }
    _validate(data, index, out)


def _validate(data: dict[str, Any], index: int | None, out: Decoded) -> None:
    missing = [k for k in ("timestamp", "level", "message", "service") if data[k] is None]
    for key in missing:
        hint = (
            " (send it in the record or as the Kafka key / ?service=)" if key == "service" else ""
        )
        out.error(index, key, f"missing{hint}")
    if missing:
        return
    try:
        out.records.append(LogEntry.model_validate(data))
    except ValidationError as exc:
        for err in exc.errors():
            out.error(index, ".".join(str(p) for p in err["loc"]), err["msg"])


def parse_text_lines(
    text: str, default_service: str | None = None, out: Decoded | None = None
) -> Decoded:
    """Plain text lines → LogEntry (continuation lines join the previous entry)."""
    out = out if out is not None else Decoded()
    entries: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            if entries:
                entries[-1]["lines"].append("")
            continue
        match = _HEADER.match(line)
        if match is None:
            if not entries:
                out.error(
                    0,
                    "",
                    f"line {number}: expected '<timestamp> <level> <message>', got {line[:80]!r}",
                )
                return out
            entries[-1]["lines"].append(line)
            continue
        ts = match["ts"]
        entries.append(
            {
                "timestamp": ts.replace(",", ".") if "-" in ts else ts,
                "level": match["level"],
                "lines": [match["msg"] or ""],
                "line": number,
            }
        )
    for index, entry in enumerate(entries):
        message = "\n".join(entry["lines"]).rstrip("\n")
        data = {
            "timestamp": entry["timestamp"],
            "level": entry["level"],
            "message": message,
            "service": default_service,
            "labels": {},
        }
        _validate(data, index, out)
    return out
