"""Rendering of an :class:`~autopilot.models.Alert`: a Slack Block Kit message and a console text.

Pure module: no Faust, no slack_sdk, no network. The Slack sink posts
:func:`render_alert`'s dict as the body of an incoming webhook or as the
``text``/``blocks``/``attachments`` arguments of ``chat.postMessage``; without Slack
settings it prints :func:`render_console`.

Message layout (the seed architecture's alert: severity header, root cause, anomaly
breakdown, deployments, recommended actions, customer impact):

* top-level ``blocks``: header (severity emoji and label, service, incident id) and
  the root-cause section, so the essentials show even when attachments collapse;
* one attachment coloured by severity (its bar is the only way Block Kit shows a
  colour): anomalies as section fields, recent deployments, recent error lines,
  recommended actions (one section each), estimated customer impact and a context
  block with opened time, trigger reason, status and revision.

Every piece of text from outside (service names, versions, log lines, LLM output) is
escaped for Slack mrkdwn (``&`` ``<`` ``>`` → ``&amp;`` ``&lt;`` ``&gt;``, Slack's
"Escaping text" in https://api.slack.com/reference/surfaces/formatting#escaping) so it
can neither form links nor mentions such as ``<!channel>``; ``plain_text`` (the header)
is not parsed by Slack and is not escaped. Lengths are measured in UTF-16 code units
(at least the number of characters, so the conservative reading of Slack's limits),
and text over a limit is cut with "…"; lists over a limit end in "… and N more".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from autopilot.models import (
    Alert,
    Analysis,
    Anomaly,
    DeploymentEvent,
    Incident,
    LogEntry,
    RecommendedAction,
    Severity,
)

__all__ = [
    "BLOCKS_MAX",
    "CONTEXT_ELEMENTS_MAX",
    "FALLBACK_TEXT_CHARS",
    "FIELD_TEXT_MAX",
    "HEADER_TEXT_MAX",
    "MESSAGE_TEXT_MAX",
    "SECTION_FIELDS_MAX",
    "SECTION_TEXT_MAX",
    "SEVERITY_COLORS",
    "SEVERITY_LABELS",
    "escape_mrkdwn",
    "render_alert",
    "render_console",
    "truncate",
]

# --- Slack limits -------------------------------------------------------------------
#: Header block ``text`` (plain_text): "Maximum length … is 150 characters."
#: https://api.slack.com/reference/block-kit/blocks#header
HEADER_TEXT_MAX = 150
#: Section block ``text``: "Maximum length … is 3000 characters."
#: https://api.slack.com/reference/block-kit/blocks#section
SECTION_TEXT_MAX = 3000
#: Section block ``fields``: "Maximum number of items is 10. Maximum length for the
#: text in each item is 2000 characters." (same page)
SECTION_FIELDS_MAX = 10
FIELD_TEXT_MAX = 2000
#: Context block ``elements``: "Maximum number of items is 10."
#: https://api.slack.com/reference/block-kit/blocks#context
CONTEXT_ELEMENTS_MAX = 10
#: A text object's ``text`` (context elements): at most 3000 characters.
#: https://api.slack.com/reference/block-kit/composition-objects#text
TEXT_OBJECT_MAX = 3000
#: "You can include up to 50 blocks in each message."
#: https://api.slack.com/reference/block-kit/blocks — enforced here for the top-level
#: blocks and the attachment's blocks together.
BLOCKS_MAX = 50
#: chat.postMessage truncates ``text`` longer than 40,000 characters.
#: https://api.slack.com/methods/chat.postMessage#truncating
MESSAGE_TEXT_MAX = 40000
#: Our own budget for the notification fallback ``text`` (push notifications and
#: screen readers show it; short reads best). Well under MESSAGE_TEXT_MAX.
FALLBACK_TEXT_CHARS = 300

# --- Presentation choices -------------------------------------------------------------
#: Attachment bar colour per severity (Slack brand palette: red, orange, yellow, green).
SEVERITY_COLORS: dict[Severity, str] = {
    Severity.CRITICAL: "#E01E5A",
    Severity.HIGH: "#FF8C00",
    Severity.MEDIUM: "#ECB22E",
    Severity.LOW: "#2EB67D",
}
#: Emoji and label per severity, used in the header and the fallback text.
SEVERITY_LABELS: dict[Severity, str] = {
    Severity.CRITICAL: "🔴 CRITICAL",
    Severity.HIGH: "🟠 HIGH",
    Severity.MEDIUM: "🟡 MEDIUM",
    Severity.LOW: "🔵 LOW",
}
RESOLVED_LABEL = "✅ RESOLVED"
# Anomalies fill at most SECTION_FIELDS_MAX fields (the last says "… and N more");
# error lines, deployments and console anomalies are capped here.
_MAX_ERROR_LINES = 5
_ERROR_LINE_CHARS = 200
_MAX_DEPLOYMENTS = 5
_MAX_CONSOLE_ANOMALIES = 20
_CONSOLE_ITEM_CHARS = 300

ELLIPSIS = "…"
_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,3}$")


# --------------------------------------------------------------------------- text helpers


def _units(text: str) -> int:
    """Length in UTF-16 code units (astral characters such as 🔴 count 2)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def truncate(text: str, limit: int) -> str:
    """Return ``text`` cut to at most ``limit`` UTF-16 code units, ending in "…" if cut.

    Args:
        text: any text.
        limit: the maximum length (UTF-16 code units, which is ≥ characters); ≥ 0.

    Returns:
        ``text`` unchanged when it fits, else its longest prefix that fits together
        with a trailing "…" (an empty string when ``limit`` is 0).
    """
    if _units(text) <= limit:
        return text
    if limit <= 0:
        return ""
    budget = limit - 1  # the ellipsis is one unit
    used = 0
    end = 0
    for end, ch in enumerate(text):  # noqa: B007 - end is used after the loop
        width = 2 if ord(ch) > 0xFFFF else 1
        if used + width > budget:
            break
        used += width
    return text[:end] + ELLIPSIS


def escape_mrkdwn(text: str) -> str:
    """Escape Slack's control characters ``&``, ``<``, ``>`` as ``&amp;``, ``&lt;``, ``&gt;``.

    Source: Slack, "Formatting text for app surfaces" → "Escaping text"; only these
    three are decoded by Slack, so nothing else is entity-encoded.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _md(text: str, limit: int) -> str:
    """Escape ``text`` for mrkdwn and cut it to ``limit`` without splitting an entity."""
    escaped = escape_mrkdwn(text)
    if limit <= 0:
        return ""
    if _units(escaped) <= limit:
        return escaped
    cut = truncate(escaped, limit)[:-1]
    return _PARTIAL_ENTITY.sub("", cut) + ELLIPSIS


def _one_line(text: str) -> str:
    """Collapse whitespace and drop control characters (newlines, ANSI escapes)."""
    printable = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(printable.split())


def _num(value: float) -> str:
    return f"{value:.6g}"


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _slack_date(value: datetime) -> str:
    """Slack date token: shown in the reader's time zone, ISO text as the fallback.

    Source: https://api.slack.com/reference/surfaces/formatting#date-formatting
    """
    return f"<!date^{int(value.timestamp())}^{{date_short_pretty}} {{time_secs}}|{_iso(value)}>"


def _ranked(anomalies: Sequence[Anomaly]) -> list[Anomaly]:
    return sorted(anomalies, key=lambda a: (a.severity.rank, abs(a.z_score)), reverse=True)


def _actions(analysis: Analysis) -> list[RecommendedAction]:
    return sorted(analysis.recommended_actions, key=lambda a: a.priority)


def _source(analysis: Analysis) -> str:
    if analysis.source == "llm":
        return f"LLM ({analysis.model})" if analysis.model else "LLM"
    return "rule-based fallback"


# --------------------------------------------------------------------------- Block Kit


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(truncate(text, SECTION_TEXT_MAX))}


def render_alert(alert: Alert) -> dict[str, Any]:
    """Render an alert as a Slack Block Kit message.

    Args:
        alert: the incident and its analysis.

    Returns:
        ``{"text": str, "blocks": [block, ...], "attachments": [{"color": "#RRGGBB",
        "blocks": [block, ...]}]}`` where ``text`` is the short notification fallback
        (≤ :data:`FALLBACK_TEXT_CHARS`), ``blocks`` holds the header and root cause, and
        the one attachment holds the details, coloured by :func:`alert_severity`
        (:data:`SEVERITY_COLORS`). Every Slack limit listed at the top of this module
        holds, whatever the size of the alert: ≤ 50 blocks in total, header ≤ 150,
        section text ≤ 3000, ≤ 10 fields of ≤ 2000, ≤ 10 context elements.
    """
    incident, analysis = alert.incident, alert.analysis
    severity = alert_severity(alert)
    top = [_header_block(incident, severity), _root_cause_block(analysis)]
    details: list[dict[str, Any]] = []
    if incident.anomalies:
        details.append(_anomalies_block(incident.anomalies))
    if incident.recent_deployments:
        details.append(_deployments_block(incident.recent_deployments))
    if incident.recent_errors:
        details.append(_errors_block(incident.recent_errors))
    details.append({"type": "divider"})
    details.append(_section("*Recommended actions*"))
    for action in _actions(analysis):
        details.append(_action_block(action))
    details.append(
        _section(
            "*Estimated customer impact*\n"
            + _md(_one_line(analysis.estimated_customer_impact), SECTION_TEXT_MAX - 40)
        )
    )
    details.append(_context_block(incident))
    details = _fit_blocks(details, BLOCKS_MAX - len(top))
    return {
        "text": _fallback_text(incident, analysis),
        "blocks": top,
        "attachments": [{"color": SEVERITY_COLORS[severity], "blocks": details}],
    }


def _header_text(incident: Incident, severity: Severity) -> str:
    label = SEVERITY_LABELS[severity]
    if incident.status == "closed":
        label = f"{RESOLVED_LABEL} · {label}"
    ident = truncate(_one_line(incident.id), 40)
    fixed = f"{label} ·  · incident {ident}"
    service_budget = max(HEADER_TEXT_MAX - _units(fixed), 20)
    service = truncate(_one_line(incident.service), service_budget)
    return truncate(f"{label} · {service} · incident {ident}", HEADER_TEXT_MAX)


def _header_block(incident: Incident, severity: Severity) -> dict[str, Any]:
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": _header_text(incident, severity), "emoji": True},
    }


def _root_cause_block(analysis: Analysis) -> dict[str, Any]:
    root = analysis.root_cause
    title = (
        f"*Root cause* — {root.confidence}% confidence · "
        f"{_md(_one_line(_source(analysis)), 300)}\n"
    )
    description = _md(root.description.strip(), 1200)
    reasoning_budget = SECTION_TEXT_MAX - _units(title) - _units(description) - 12
    reasoning = _md(root.reasoning.strip(), max(reasoning_budget, 0))
    text = title + description
    if reasoning:
        text += f"\n*Why:* {reasoning}"
    return _section(text)


def _anomaly_field(a: Anomaly) -> str:
    text = (
        f"*{_md(_one_line(a.metric_name), 200)}* · {a.severity.value}\n"
        f"value {_num(a.current_value)} vs baseline {_num(a.baseline_mean)} "
        f"± {_num(a.baseline_std_dev)}\n"
        f"z {a.z_score:+.2f} · {a.deviation_percent:+.1f}% · {_slack_date(a.detected_at)}"
    )
    return truncate(text, FIELD_TEXT_MAX)


def _anomalies_block(anomalies: Sequence[Anomaly]) -> dict[str, Any]:
    ranked = _ranked(anomalies)
    if len(ranked) <= SECTION_FIELDS_MAX:
        shown, rest = ranked, 0
    else:
        shown, rest = ranked[: SECTION_FIELDS_MAX - 1], len(ranked) - (SECTION_FIELDS_MAX - 1)
    fields = [_mrkdwn(_anomaly_field(a)) for a in shown]
    if rest:
        fields.append(_mrkdwn(f"{ELLIPSIS} and {rest} more anomalies"))
    return {
        "type": "section",
        "text": _mrkdwn(f"*Anomalies* ({len(ranked)})"),
        "fields": fields,
    }


def _deployments_block(deployments: Sequence[DeploymentEvent]) -> dict[str, Any]:
    newest = sorted(deployments, key=lambda d: d.timestamp, reverse=True)
    lines = [f"*Recent deployments* ({len(newest)})"]
    for dep in newest[:_MAX_DEPLOYMENTS]:
        lines.append(
            f"• `{_md(_one_line(dep.version), 200)}` — {_md(_one_line(dep.status), 60)} "
            f"at {_slack_date(dep.timestamp)}"
        )
    if len(newest) > _MAX_DEPLOYMENTS:
        lines.append(f"{ELLIPSIS} and {len(newest) - _MAX_DEPLOYMENTS} more deployments")
    return _section("\n".join(lines))


def _errors_block(errors: Sequence[LogEntry]) -> dict[str, Any]:
    newest = sorted(errors, key=lambda e: e.timestamp)[-_MAX_ERROR_LINES:]
    lines = [
        _md(
            f"{e.timestamp:%H:%M:%S} {_one_line(e.level)} {_one_line(e.message)}".replace(
                "```", "'''"
            ),
            _ERROR_LINE_CHARS,
        )
        for e in newest
    ]
    title = f"*Recent errors* ({len(errors)}, newest {len(newest)})"
    return _section(title + "\n```" + "\n".join(lines) + "```")


def _action_block(action: RecommendedAction) -> dict[str, Any]:
    head = f"*{action.priority}. {_md(_one_line(action.action), 1000)}*"
    meta = f"risk {action.risk} · priority {action.priority}"
    reasoning = _md(_one_line(action.reasoning), SECTION_TEXT_MAX - _units(head) - 60)
    text = f"{head}\n{meta}" + (f" — {reasoning}" if reasoning else "")
    return _section(text)


def _context_block(incident: Incident) -> dict[str, Any]:
    elements = [
        f"Opened {_slack_date(incident.opened_at)}",
        f"Updated {_slack_date(incident.updated_at)}",
        f"Trigger: {_md(_one_line(incident.trigger_reason), 300)}",
        f"Status: {incident.status} · revision {incident.revision}",
        f"Incident `{_md(_one_line(incident.id), 100)}`",
    ]
    if incident.closed_at is not None:
        elements.insert(2, f"Closed {_slack_date(incident.closed_at)}")
    return {
        "type": "context",
        "elements": [
            _mrkdwn(truncate(e, TEXT_OBJECT_MAX)) for e in elements[:CONTEXT_ELEMENTS_MAX]
        ],
    }


def _fit_blocks(blocks: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """Keep at most ``limit`` blocks; the last kept block says how many were dropped."""
    if len(blocks) <= limit:
        return blocks
    kept = blocks[: limit - 1]
    dropped = len(blocks) - len(kept)
    kept.append(
        {"type": "context", "elements": [_mrkdwn(f"{ELLIPSIS} and {dropped} more blocks")]}
    )
    return kept


def alert_severity(alert: Alert) -> Severity:
    """The severity an alert shows: the higher of the incident's (from z-scores) and
    the analysis's, so an analysis can raise it but never hide what the detector saw."""
    return max(alert.incident.severity, alert.analysis.severity, key=lambda s: s.rank)


def _fallback_text(incident: Incident, analysis: Analysis) -> str:
    label = SEVERITY_LABELS[max(incident.severity, analysis.severity, key=lambda s: s.rank)]
    if incident.status == "closed":
        label = f"{RESOLVED_LABEL} {label}"
    text = (
        f"{label} incident {_one_line(incident.id)} on {_one_line(incident.service)}: "
        f"{_one_line(analysis.root_cause.description)}"
    )
    return _md(text, min(FALLBACK_TEXT_CHARS, MESSAGE_TEXT_MAX))


# --------------------------------------------------------------------------- console


def render_console(alert: Alert) -> str:
    """Render an alert as readable plain text for the console (Slack not configured).

    No markup and no escaping; control characters in outside text (newlines, ANSI
    escapes) are flattened to spaces so a log line cannot forge console output. Items
    are cut to 300 characters, anomalies to the 20 most severe.

    Args:
        alert: the incident and its analysis.

    Returns:
        Multi-line text (no trailing newline): header line, times and trigger, root
        cause, anomalies, deployments, error lines, actions, customer impact.
    """
    incident, analysis = alert.incident, alert.analysis
    root = analysis.root_cause

    def item(text: str) -> str:
        return truncate(_one_line(text), _CONSOLE_ITEM_CHARS)

    label = SEVERITY_LABELS[alert_severity(alert)].split(" ", 1)[1]
    resolved = "RESOLVED " if incident.status == "closed" else ""
    lines = [
        f"=== {resolved}[{label}] {item(incident.service)} — incident {item(incident.id)} "
        f"({incident.status}, revision {incident.revision}) ===",
        f"Opened: {_iso(incident.opened_at)}   Updated: {_iso(incident.updated_at)}"
        + (f"   Closed: {_iso(incident.closed_at)}" if incident.closed_at else ""),
        f"Trigger: {item(incident.trigger_reason)}",
        "",
        f"Root cause ({root.confidence}% confidence, {_source(analysis)}):",
        f"  {truncate(_one_line(root.description), 2000)}",
    ]
    if root.reasoning.strip():
        lines.append(f"  Why: {truncate(_one_line(root.reasoning), 2000)}")

    ranked = _ranked(incident.anomalies)
    lines += ["", f"Anomalies ({len(ranked)}):"]
    for a in ranked[:_MAX_CONSOLE_ANOMALIES]:
        lines.append(
            f"  - {item(a.metric_name)} [{a.severity.value}]: value {_num(a.current_value)} "
            f"vs baseline {_num(a.baseline_mean)} ± {_num(a.baseline_std_dev)}, "
            f"z {a.z_score:+.2f}, {a.deviation_percent:+.1f}%, at {_iso(a.detected_at)}"
        )
    if len(ranked) > _MAX_CONSOLE_ANOMALIES:
        lines.append(f"  {ELLIPSIS} and {len(ranked) - _MAX_CONSOLE_ANOMALIES} more anomalies")
    if not ranked:
        lines.append("  (none)")

    if incident.recent_deployments:
        deps = sorted(incident.recent_deployments, key=lambda d: d.timestamp, reverse=True)
        lines += ["", f"Recent deployments ({len(deps)}):"]
        for dep in deps[:_MAX_DEPLOYMENTS]:
            lines.append(f"  - {item(dep.version)} ({item(dep.status)}) at {_iso(dep.timestamp)}")
        if len(deps) > _MAX_DEPLOYMENTS:
            lines.append(f"  {ELLIPSIS} and {len(deps) - _MAX_DEPLOYMENTS} more deployments")

    if incident.recent_errors:
        errs = sorted(incident.recent_errors, key=lambda e: e.timestamp)[-_MAX_ERROR_LINES:]
        lines += ["", f"Recent errors ({len(incident.recent_errors)}, newest {len(errs)}):"]
        for e in errs:
            lines.append(f"  {_iso(e.timestamp)} {item(e.level)} {item(e.message)}")

    lines += ["", "Recommended actions:"]
    for action in _actions(analysis):
        lines.append(
            f"  {action.priority}. {item(action.action)} "
            f"[risk {action.risk}, priority {action.priority}]"
        )
        if action.reasoning.strip():
            lines.append(f"     {item(action.reasoning)}")

    lines += ["", f"Customer impact: {item(analysis.estimated_customer_impact)}"]
    return "\n".join(lines)
