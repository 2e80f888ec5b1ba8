"""Log level synonyms → one canonical level (the one place levels are normalised).

Canonical levels, lowest first: ``trace``, ``debug``, ``info``, ``notice``, ``warning``,
``error``, ``critical``. Accepted spellings (case-insensitive, surrounding spaces and
brackets ignored):

==============  ==================================================================
canonical       accepted
==============  ==================================================================
trace           trace, trc, verbose
debug           debug, dbg, 7 (syslog debug)
info            info, inf, information, informational, 6
notice          notice, 5
warning         warning, warn, wrn, 4
error           error, err, eror, severe, 3
critical        critical, crit, fatal, panic, alert, emerg, emergency, 0, 1, 2
==============  ==================================================================

Numbers 0–7 are syslog severities (RFC 5424 §6.2.1: 0 emergency … 7 debug). Numbers
10–69 are pino's and bunyan's levels (10 trace, 20 debug, 30 info, 40 warn, 50 error,
60 fatal; a custom level in between counts as the standard level below it, so 35 is
info and 55 is error). Errors are ``error`` and ``critical`` (the error-rate detector
counts those).

``unknown`` (any case; :data:`UNKNOWN_LEVEL` is what decoders write) is the level of a
line whose level was missing or not recognised: kept, never counted as an error.
Anything else is an unknown level: :func:`normalize_level` raises ``ValueError`` and
the decoders (:mod:`autopilot.formats.logs`) keep the line as ``UNKNOWN``.
"""

from __future__ import annotations

__all__ = [
    "CANONICAL_LEVELS",
    "ERROR_LEVELS",
    "UNKNOWN_LEVEL",
    "is_error_level",
    "normalize_level",
]

CANONICAL_LEVELS = ("trace", "debug", "info", "notice", "warning", "error", "critical")
#: Canonical levels counted as errors.
ERROR_LEVELS = frozenset({"error", "critical"})

_SYNONYMS: dict[str, str] = {
    "trace": "trace", "trc": "trace", "verbose": "trace",
    "debug": "debug", "dbg": "debug",
    "info": "info", "inf": "info", "information": "info", "informational": "info",
    "notice": "notice",
    "warning": "warning", "warn": "warning", "wrn": "warning",
    "error": "error", "err": "error", "eror": "error", "severe": "error",
    "critical": "critical", "crit": "critical", "fatal": "critical", "panic": "critical",
    "alert": "critical", "emerg": "critical", "emergency": "critical",
}  # fmt: skip
#: The level decoders give a line whose level is missing or not recognised.
UNKNOWN_LEVEL = "UNKNOWN"
#: pino / bunyan: level // 10 → canonical (10 trace … 60 fatal).
_PINO = {1: "trace", 2: "debug", 3: "info", 4: "warning", 5: "error", 6: "critical"}
_SYSLOG = ("critical", "critical", "critical", "error", "warning", "notice", "info", "debug")


def normalize_level(level: object) -> str:
    """Canonical level of ``level`` (see module docstring).

    Args:
        level: a level name, a syslog severity 0–7 or a pino/bunyan level 10–69
            (``3``, ``"3"``, ``50``, ``"50"``), or ``unknown``.

    Returns:
        One of :data:`CANONICAL_LEVELS`, or ``"unknown"``.

    Raises:
        ValueError: unknown level (the message lists the accepted ones).
    """
    if isinstance(level, bool):
        raise ValueError("level must be a name or a number, not a boolean")
    if isinstance(level, int):
        return _numeric(level, level)
    text = str(level).strip().strip("[]<>").strip().lower()
    if text in _SYNONYMS:
        return _SYNONYMS[text]
    if text == "unknown":
        return "unknown"
    if text.isdigit() and len(text) <= 3:
        return _numeric(int(text), level)
    raise _unknown(level)


def _numeric(number: int, level: object) -> str:
    if 0 <= number <= 7:
        return _SYSLOG[number]
    if 10 <= number <= 69:
        return _PINO[number // 10]
    raise _unknown(level)


def _unknown(level: object) -> ValueError:
    return ValueError(
        f"unknown level {str(level)[:32]!r}: use one of {', '.join(CANONICAL_LEVELS)}, "
        "a synonym (warn, err, fatal, crit, panic …), a syslog severity 0–7 or a "
        "pino/bunyan level 10–60"
    )


def is_error_level(level: object) -> bool:
    """True when ``level`` is an error (``error`` or ``critical``); unknown is not."""
    try:
        return normalize_level(level) in ERROR_LEVELS
    except ValueError:
        return False
