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

Numbers are syslog severities (RFC 5424 §6.2.1: 0 emergency … 7 debug). Errors are
``error`` and ``critical`` (the error-rate detector counts those). Anything else is an
unknown level: :func:`normalize_level` raises ``ValueError``.
"""

from __future__ import annotations

__all__ = ["CANONICAL_LEVELS", "ERROR_LEVELS", "is_error_level", "normalize_level"]

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
_SYSLOG = ("critical", "critical", "critical", "error", "warning", "notice", "info", "debug")


def normalize_level(level: object) -> str:
    """Canonical level of ``level`` (see module docstring).

    Args:
        level: a level name or a syslog severity (``3`` or ``"3"``).

    Raises:
        ValueError: unknown level (the message lists the accepted ones).
    """
    if isinstance(level, bool):
        raise ValueError("level must be a name or a syslog severity, not a boolean")
    if isinstance(level, int) and 0 <= level <= 7:
        return _SYSLOG[level]
    text = str(level).strip().strip("[]<>").strip().lower()
    if text in _SYNONYMS:
        return _SYNONYMS[text]
    if text.isdigit() and int(text) <= 7:
        return _SYSLOG[int(text)]
    raise ValueError(
        f"unknown level {str(level)[:32]!r}: use one of {', '.join(CANONICAL_LEVELS)}, "
        "a synonym (warn, err, fatal, crit, panic …) or a syslog severity 0–7"
    )


def is_error_level(level: object) -> bool:
    """True when ``level`` is an error (``error`` or ``critical``); unknown is not."""
    try:
        return normalize_level(level) in ERROR_LEVELS
    except ValueError:
        return False
