"""Log redaction on worker start (the HTTP guard is :mod:`autopilot.web.middleware`).

:func:`install_log_redaction` (run once at worker start, by the
:func:`redact_secrets_in_logs` task) sets up the project's one redactor
(:mod:`autopilot.redact`): the configured secrets, ``AUTOPILOT_REDACT_PII`` and the
counter ``autopilot_redactions_total{kind}``; the same redactor filters the worker's
own log lines and cleans log text before it reaches the LLM or Slack.
"""

from __future__ import annotations

import logging

from autopilot import redact, telemetry
from autopilot.app import app, settings
from autopilot.security import Redactor
from autopilot.settings import Settings

__all__ = ["install_log_redaction", "redact_secrets_in_logs"]


class _RedactingFilter(logging.Filter):
    """Redacts a log record's message and traceback (secrets only: the worker's own
    log lines keep IP addresses, whatever ``AUTOPILOT_REDACT_PII`` says)."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced."""
        return self.redactor.redact(text, pii=False)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_text is None and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def _count_redaction(kind: str, count: int) -> None:
    telemetry.REDACTIONS.labels(kind=kind).inc(count)


def install_log_redaction(s: Settings) -> Redactor:
    """Configure the project's one redactor from ``s`` and filter the root handlers.

    The process-wide redactor (:func:`autopilot.redact.configure`) gets the
    configured secrets (:meth:`Settings.secret_values`), ``AUTOPILOT_REDACT_PII`` and
    the counter ``autopilot_redactions_total{kind}``; a filter with it is added to
    every root handler (once; a second call replaces the redactor it uses).

    Returns:
        The configured redactor.
    """
    current = redact.configure(
        s.secret_values(), pii=s.redact_pii, on_redact=_count_redaction
    )
    for handler in logging.getLogger().handlers:
        filters = [f for f in handler.filters if isinstance(f, _RedactingFilter)]
        if filters:
            for f in filters:
                f.redactor = current
        else:
            handler.addFilter(_RedactingFilter(current))
    return current


@app.task
async def redact_secrets_in_logs() -> None:
    """On worker start: replace every configured secret in log lines with ``***``."""
    install_log_redaction(settings())
