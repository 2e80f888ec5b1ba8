"""Notification policy: when an incident's conversation is posted, edited and replied to (pure).

Alertmanager's model and names (prometheus/alertmanager ``docs/configuration.md``):

- ``group_wait`` (``AUTOPILOT_GROUP_WAIT_S``, 30 s wall clock): the first
  notification of a new incident waits this long after the notifier first saw it, so
  evidence from the other topics (error lines lag metrics) and the LLM's analysis can
  join it. An incident that resolves during ``group_wait`` still gets its one
  message, showing that it fired and resolved.
- ``group_interval`` (``AUTOPILOT_GROUP_INTERVAL_S``, 30 s): the least time between two
  updates of one incident's notification; changes that arrive in between are sent
  together at the next tick (one root edit and one thread reply listing them).
- ``repeat_interval`` (``AUTOPILOT_REPEAT_INTERVAL_S``, 4 h): a reminder in the thread
  while the incident still fires (bot and console modes).
- ``send_resolved`` (``AUTOPILOT_SEND_RESOLVED``, true): tell the resolution (a thread
  reply, a webhook message). In bot mode the root message is still edited to show
  "resolved": it always shows the current state.

Modes (chosen from the Slack settings):

- ``bot`` (``SLACK_BOT_TOKEN``, recommended): one incident is one conversation: a root
  message kept current with ``chat.update`` (:class:`UpdateRoot`, only when its
  rendering changed, never to refresh a clock), and a thread holding the timeline
  (:class:`Reply`), the LLM's analysis (:class:`ReplyAnalysis`), reminders and charts.
- ``webhook`` (``SLACK_WEBHOOK_URL``): cannot edit or thread, so it sends the first
  notification, an escalation, one LLM follow-up and one resolved message, never more
  than ``AUTOPILOT_MAX_WEBHOOK_MESSAGES`` (4) per incident: one slot is kept for the
  resolution and one for the LLM follow-up.
- ``console`` (no Slack): like ``bot`` without edits, printed.

:func:`plan` is a pure transition ``(Notice, now) → (Notice, actions)``; the notifier
agent executes the actions and stores the new :class:`Notice` (in the
``notifications`` table, keyed by service). Times in a :class:`Notice` are wall-clock
epoch seconds; the incident's own times are event time.

Incident groups (:mod:`autopilot.incident_groups`): an incident whose ``group`` has
another primary (``group.primary_incident_id != incident.id``) gets no root message and
no page of its own: its evidence reaches the primary's thread through the primary's
``group`` timeline entries. If its root message went out before the group formed, it
is edited once (bot mode) to say "grouped under <primary service>'s incident"
(:func:`autopilot.blockkit.render_incident` renders that) and gets nothing more: no
replies, no reminders (:attr:`Notice.grouped_under`).

Routing (:class:`Routes`): an optional YAML file (``AUTOPILOT_SLACK_ROUTES``) sends an
incident to a channel by Alertmanager-style matchers on ``service`` and ``severity``,
first match wins, ``SLACK_CHANNEL`` otherwise::

    routes:
      - matchers: ['service=~"payments.*"', 'severity="critical"']
        channel: "#payments-oncall"
      - matchers: ["service=checkout"]
        channel: C0123CHECKOUT
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from autopilot.models import Incident, Severity

__all__ = [
    "Action",
    "ActionReply",
    "Matcher",
    "Mode",
    "Notice",
    "NotifyConfig",
    "NotifyState",
    "PostRoot",
    "Reminder",
    "Reply",
    "ReplyAnalysis",
    "Route",
    "Routes",
    "UpdateRoot",
    "UploadCharts",
    "Webhook",
    "due_at",
    "entry_key",
    "grouped_primary",
    "plan",
    "plan_acted",
]

Mode = Literal["bot", "webhook", "console"]

#: Incidents remembered per service (the newest; older resolved ones are dropped).
MAX_NOTICES = 20
#: Timeline entries remembered as told, per incident.
MAX_TOLD = 200
#: Button actions (Slack) remembered per incident (the newest).
MAX_ACTED = 20


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    """Notification parameters (seconds of wall-clock time).

    Attributes:
        mode: ``bot``, ``webhook`` or ``console``.
        group_wait_s: ``AUTOPILOT_GROUP_WAIT_S``.
        group_interval_s: ``AUTOPILOT_GROUP_INTERVAL_S``.
        repeat_interval_s: ``AUTOPILOT_REPEAT_INTERVAL_S``.
        send_resolved: ``AUTOPILOT_SEND_RESOLVED``.
        max_webhook_messages: ``AUTOPILOT_MAX_WEBHOOK_MESSAGES`` (≥ 1).
        charts: bot mode: upload charts into the thread (``AUTOPILOT_SLACK_CHARTS``).
        forget_after_s: a resolved, fully told incident is forgotten this long after
            its last notification (the re-open window, ``AUTOPILOT_REOPEN_WINDOW_S``,
            plus an hour).
        buttons: bot mode with ``SLACK_SIGNING_SECRET``: the root message carries the
            Acknowledge, Silence, Resolve and Not an incident buttons.
    """

    mode: Mode = "console"
    group_wait_s: float = 30.0
    group_interval_s: float = 30.0
    repeat_interval_s: float = 4 * 3600.0
    send_resolved: bool = True
    max_webhook_messages: int = 4
    charts: bool = True
    forget_after_s: float = 2 * 3600.0
    buttons: bool = False

    @classmethod
    def from_settings(cls, settings: Any, mode: Mode) -> NotifyConfig:
        """Build from :class:`autopilot.settings.Settings` for ``mode``."""
        return cls(
            mode=mode,
            group_wait_s=settings.group_wait_s,
            group_interval_s=settings.group_interval_s,
            repeat_interval_s=settings.repeat_interval_s,
            send_resolved=settings.send_resolved,
            max_webhook_messages=settings.max_webhook_messages,
            charts=settings.slack_charts,
            forget_after_s=settings.reopen_window_s + 3600.0,
            buttons=mode == "bot" and settings.slack_signing_secret is not None,
        )


# --- actions ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PostRoot:
    """The first notification: bot mode posts the root message (with the incident's
    metadata), webhook mode sends the "opened" message, console mode prints it."""


@dataclass(frozen=True, slots=True)
class UpdateRoot:
    """Bot mode: ``chat.update`` of the root message with the current rendering."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A thread reply (console: a printed block) listing new timeline entries.

    Attributes:
        entries: the entries (JSON dicts of :class:`TimelineEntry`), oldest first.
        key: idempotency key of this reply (stable for the same entries).
    """

    entries: tuple[dict[str, Any], ...]
    key: str


@dataclass(frozen=True, slots=True)
class ReplyAnalysis:
    """A thread reply with the LLM's analysis (it arrived after the first message).

    Attributes:
        key: idempotency key (the analysis digest).
    """

    key: str


@dataclass(frozen=True, slots=True)
class Reminder:
    """A ``repeat_interval`` reminder in the thread; ``number`` counts them from 1."""

    number: int


@dataclass(frozen=True, slots=True)
class Webhook:
    """Webhook mode: a standalone follow-up message.

    Attributes:
        kind: ``escalated`` (severity rose or the incident re-opened), ``analysis``
            (the LLM's analysis) or ``resolved``.
        number: the message's number for this incident (2 … max), for idempotency.
    """

    kind: Literal["escalated", "analysis", "resolved"]
    number: int


@dataclass(frozen=True, slots=True)
class UploadCharts:
    """Bot mode: upload a chart of each anomalous series into the thread (once)."""


@dataclass(frozen=True, slots=True)
class ActionReply:
    """Bot mode: a thread reply saying who clicked which button, and when.

    Attributes:
        notes: the action notes (:attr:`Notice.acted`), oldest first.
    """

    notes: tuple[dict[str, Any], ...]


Action = (PostRoot | UpdateRoot | Reply | ReplyAnalysis | Reminder | Webhook | UploadCharts
          | ActionReply)


# --- state --------------------------------------------------------------------------


def entry_key(entry: Mapping[str, Any]) -> str:
    """Stable identity of a timeline entry (JSON dict): 16 hex of SHA-256 of its fields."""
    text = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def analysis_key(analysis: Mapping[str, Any]) -> str:
    """Stable identity of an analysis (JSON dict)."""
    return entry_key(analysis)


@dataclass(frozen=True, slots=True)
class Notice:
    """What was notified about one incident.

    Attributes:
        incident: the newest Incident record (JSON dict; highest revision seen).
        analysis: the newest analysis from the analysis agent (JSON dict of
            :class:`autopilot.models.Analysis`), ``None`` while the LLM has not
            answered (the rule-based analysis is then shown, marked "pending").
        first_seen: when the notifier first saw the incident (``group_wait`` starts).
        channel: where the root message went (routing), bot mode.
        channel_id, root_ts: the root message (bot mode), once posted.
        posted_at: when the first notification went out (``None``: not yet).
        last_flush: when the last post, edit or reply went out.
        rendered: digest of the root message as last posted or edited.
        told: keys (:func:`entry_key`) of timeline entries already told.
        analysis_told: key of the LLM analysis already told (bot reply or webhook).
        severity_told: severity in the last notification (webhook escalations).
        reopened_told: the incident's ``reopened`` count when last told.
        resolved_told: the resolution was told (webhook, ``send_resolved``).
        webhook_sent: webhook messages sent for this incident.
        reminders: reminders sent; ``last_reminder`` when the last went out (or the
            first notification).
        charts_done: charts were uploaded (or tried: a failure is not retried).
        messages, edits: messages (posts, replies, webhook messages, printed blocks)
            and root edits planned for this incident so far (what Slack shows).
        silenced_by: ids of the active silences (:mod:`autopilot.silences`) that held
            back the last notification due (``()``: not silenced now).
        silenced_ever: every silence id that ever held one back (the incident view).
        acted: the Slack button actions applied to the incident (newest
            :data:`MAX_ACTED`): ``{"identity", "kind", "user_id", "user_name", "at"
            (wall s), "detail"}``; shown in the root message.
        acted_told: identities of the actions already replied in the thread.
        acknowledged_by: the Slack user id that acknowledged it (reminders stop).
        grouped_under: the primary incident id of the incident group this incident
            was last seen grouped under (told: its root message, if any, says so).
    """

    incident: dict[str, Any]
    analysis: dict[str, Any] | None = None
    first_seen: float = 0.0
    channel: str | None = None
    channel_id: str | None = None
    root_ts: str | None = None
    posted_at: float | None = None
    last_flush: float | None = None
    rendered: str = ""
    told: tuple[str, ...] = ()
    analysis_told: str | None = None
    severity_told: str | None = None
    reopened_told: int = 0
    resolved_told: bool = False
    webhook_sent: int = 0
    reminders: int = 0
    last_reminder: float | None = None
    charts_done: bool = False
    messages: int = 0
    edits: int = 0
    silenced_by: tuple[str, ...] = ()
    silenced_ever: tuple[str, ...] = ()
    acted: tuple[dict[str, Any], ...] = ()
    acted_told: tuple[str, ...] = ()
    acknowledged_by: str | None = None
    grouped_under: str | None = None

    @property
    def incident_id(self) -> str:
        """The incident's id."""
        return str(self.incident["id"])

    @property
    def revision(self) -> int:
        """The revision of the stored incident record."""
        return int(self.incident.get("revision", 0))

    def model(self) -> Incident:
        """The stored incident as a validated :class:`Incident`."""
        return Incident.model_validate(self.incident)

    @property
    def analysis_pending(self) -> bool:
        """True while no analysis came from the analysis agent (LLM still working)."""
        return self.analysis is None

    @property
    def llm_analysis(self) -> bool:
        """True when the stored analysis is the LLM's."""
        return self.analysis is not None and self.analysis.get("source") == "llm"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (for the notifications table)."""
        return {
            "incident": self.incident,
            "analysis": self.analysis,
            "first_seen": self.first_seen,
            "channel": self.channel,
            "channel_id": self.channel_id,
            "root_ts": self.root_ts,
            "posted_at": self.posted_at,
            "last_flush": self.last_flush,
            "rendered": self.rendered,
            "told": list(self.told),
            "analysis_told": self.analysis_told,
            "severity_told": self.severity_told,
            "reopened_told": self.reopened_told,
            "resolved_told": self.resolved_told,
            "webhook_sent": self.webhook_sent,
            "reminders": self.reminders,
            "last_reminder": self.last_reminder,
            "charts_done": self.charts_done,
            "messages": self.messages,
            "edits": self.edits,
            **({"silenced_by": list(self.silenced_by),
                "silenced_ever": list(self.silenced_ever)} if self.silenced_ever else {}),
            **({"acted": list(self.acted), "acted_told": list(self.acted_told),
                "acknowledged_by": self.acknowledged_by} if self.acted else {}),
            **({"grouped_under": self.grouped_under} if self.grouped_under else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Notice:
        """Inverse of :meth:`to_dict` (missing keys take their defaults)."""
        names = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in names}
        for name in ("told", "silenced_by", "silenced_ever", "acted", "acted_told"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class NotifyState:
    """The notifications of one service: :class:`Notice` by incident id (the table's value)."""

    notices: dict[str, Notice] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"notices": {k: n.to_dict() for k, n in self.notices.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> NotifyState:
        """Inverse of :meth:`to_dict`; ``None`` gives an empty state."""
        if not data:
            return cls()
        return cls({k: Notice.from_dict(v) for k, v in data.get("notices", {}).items()})

    def with_incident(self, incident: Incident, now: float) -> NotifyState:
        """Fold an Incident record in (a new incident starts its ``group_wait`` now).

        A record older (lower revision) than the one stored is ignored.
        """
        data = incident.model_dump(mode="json")
        notice = self.notices.get(incident.id)
        if notice is None:
            notice = Notice(incident=data, first_seen=now)
        elif incident.revision >= notice.revision:
            notice = replace(notice, incident=data)
        return self._put(notice, now)

    def with_analysis(
        self, incident: Incident, analysis: Mapping[str, Any], now: float
    ) -> NotifyState:
        """Fold an analysis in (its incident record too, when newer than the stored one)."""
        base = self.with_incident(incident, now)
        notice = base.notices[incident.id]
        return base._put(replace(notice, analysis=dict(analysis)), now)

    def with_action(self, incident_id: str, note: Mapping[str, Any], now: float) -> NotifyState:
        """Fold a Slack button action in (``note``: see :attr:`Notice.acted`).

        Unchanged when the incident is unknown here or the action (``identity``) was
        folded in already. An ``acknowledge`` sets ``acknowledged_by``.
        """
        notice = self.notices.get(incident_id)
        if notice is None or any(n.get("identity") == note.get("identity")
                                 for n in notice.acted):
            return self
        notice = replace(notice, acted=(*notice.acted, dict(note))[-MAX_ACTED:])
        if note.get("kind") == "acknowledge" and notice.acknowledged_by is None:
            notice = replace(notice, acknowledged_by=str(note.get("user_id")))
        return self._put(notice, now)

    def _put(self, notice: Notice, now: float) -> NotifyState:
        notices = {**self.notices, notice.incident_id: notice}
        return NotifyState(_prune(notices, now))


def _prune(notices: dict[str, Notice], now: float) -> dict[str, Notice]:
    if len(notices) <= MAX_NOTICES:
        return notices
    ranked = sorted(notices.values(), key=lambda n: n.first_seen)
    return {n.incident_id: n for n in ranked[-MAX_NOTICES:]}


def forget(state: NotifyState, now: float, config: NotifyConfig) -> NotifyState:
    """Drop incidents that are resolved, fully told and older than ``forget_after_s``."""
    kept = {
        k: n for k, n in state.notices.items()
        if not (_resolved(n.incident) and n.posted_at is not None
                and now - (n.last_flush or n.posted_at) >= config.forget_after_s)
    }
    return state if len(kept) == len(state.notices) else NotifyState(kept)


# --- policy -------------------------------------------------------------------------


def _resolved(incident: Mapping[str, Any]) -> bool:
    return incident.get("state") == "resolved" or incident.get("status") in ("resolved", "closed")


def _timeline(incident: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(incident.get("timeline") or ())


def grouped_primary(incident: Mapping[str, Any]) -> str | None:
    """The primary incident id of the incident's group when that is another incident
    (this one gets no conversation of its own), else ``None``."""
    group = incident.get("group")
    if not isinstance(group, Mapping):
        return None
    primary = group.get("primary_incident_id")
    if not primary or primary == incident.get("id"):
        return None
    return str(primary)


def _quiet(notice: Notice) -> bool:
    """Nothing of its own is owed: grouped under another primary, or it was while
    never posted and has resolved since (its story was told in the group's thread)."""
    if grouped_primary(notice.incident) is not None:
        return True
    return (notice.grouped_under is not None and notice.posted_at is None
            and _resolved(notice.incident))


def _plan_grouped(
    notice: Notice, now: float, config: NotifyConfig, digest: str
) -> tuple[Notice, list[Action]]:
    """An incident grouped under another primary: its root message, if posted, is
    edited once (bot mode) to say so; nothing else is sent."""
    primary = grouped_primary(notice.incident)
    if primary is None or notice.grouped_under == primary:
        return notice, []
    new = replace(notice, grouped_under=primary)
    if notice.posted_at is None or config.mode != "bot":
        return new, []
    return replace(new, rendered=digest, last_flush=now), [UpdateRoot()]


def _rank(severity: str | None) -> int:
    if not severity:
        return -1
    return Severity(severity).rank


_RESOLUTION_KINDS = frozenset({"resolved", "stale"})
#: Timeline kinds shown in the root message (the signal's state) but not replied in
#: the thread: one of several signals recovering or flapping while the incident still
#: fires is not news for the on-call team ("noise is not a change").
QUIET_KINDS = frozenset({"signal_resolved", "signal_refired"})


def _untold(notice: Notice, config: NotifyConfig) -> list[dict[str, Any]]:
    told = set(notice.told)
    out = [e for e in _timeline(notice.incident)
           if entry_key(e) not in told and e.get("kind") not in QUIET_KINDS]
    if not config.send_resolved:
        out = [e for e in out if e.get("kind") not in _RESOLUTION_KINDS]
    return out


def _tell(told: tuple[str, ...], entries: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    return (*told, *(entry_key(e) for e in entries))[-MAX_TOLD:]


def plan(
    notice: Notice, now: float, config: NotifyConfig, digest: str
) -> tuple[Notice, list[Action]]:
    """What to send for one incident now (counts what it plans in ``messages`` and
    ``edits``); see :func:`_plan`."""
    new, actions = _plan(notice, now, config, digest)
    if not actions:
        return new, actions
    posts = sum(1 for a in actions if not isinstance(a, UpdateRoot | UploadCharts))
    edits = sum(1 for a in actions if isinstance(a, UpdateRoot))
    return replace(new, messages=new.messages + posts, edits=new.edits + edits), actions


def plan_acted(
    notice: Notice, config: NotifyConfig, digest: str
) -> tuple[Notice, list[Action]]:
    """Button actions not yet told: edit the root message (when its rendering changed)
    and reply in the thread, at once (no ``group_interval``, and before any silence:
    whoever clicked sees the answer). Bot mode with a posted root message only.

    Returns:
        ``(new_notice, actions)``; ``(notice, [])`` when nothing is owed.
    """
    told = set(notice.acted_told)
    untold = tuple(n for n in notice.acted if n.get("identity") not in told)
    if not untold or config.mode != "bot" or notice.root_ts is None:
        return notice, []
    actions: list[Action] = []
    edits = notice.edits
    if digest != notice.rendered:
        actions.append(UpdateRoot())
        edits += 1
    actions.append(ActionReply(untold))
    acted_told = (*notice.acted_told, *(str(n.get("identity")) for n in untold))
    return replace(notice, acted_told=acted_told[-MAX_ACTED:], rendered=digest, edits=edits,
                   messages=notice.messages + 1), actions


def _plan(
    notice: Notice, now: float, config: NotifyConfig, digest: str
) -> tuple[Notice, list[Action]]:
    """What to send for one incident now.

    Args:
        notice: the incident's notification state.
        now: wall-clock epoch seconds.
        config: the policy.
        digest: digest of the root message as it would render now (bot mode: a
            change means :class:`UpdateRoot`; other modes ignore it).

    Returns:
        ``(new_notice, actions)``: the actions to execute in order, and the state to
        store once they went out (an empty list: nothing is due now; see
        :func:`due_at` for when to look again).
    """
    if _quiet(notice):
        return _plan_grouped(notice, now, config, digest)
    incident = notice.incident
    resolved = _resolved(incident)
    severity = str(incident.get("severity"))
    if notice.posted_at is None:
        if now < notice.first_seen + config.group_wait_s:
            return notice, []
        new = replace(
            notice,
            posted_at=now,
            last_flush=now,
            last_reminder=now,
            rendered=digest,
            told=_tell(notice.told, _timeline(incident)),
            analysis_told=analysis_key(notice.analysis or {}) if notice.llm_analysis else None,
            severity_told=severity,
            reopened_told=int(incident.get("reopened", 0)),
            resolved_told=resolved,
            webhook_sent=1 if config.mode == "webhook" else 0,
        )
        actions: list[Action] = [PostRoot()]
        if config.mode == "bot" and config.charts and not notice.charts_done:
            actions.append(UploadCharts())
            new = replace(new, charts_done=True)
        return new, actions
    if config.mode == "webhook":
        return _plan_webhook(notice, now, config, resolved, severity)
    return _plan_thread(notice, now, config, digest, resolved)


def _plan_thread(
    notice: Notice, now: float, config: NotifyConfig, digest: str, resolved: bool
) -> tuple[Notice, list[Action]]:
    """Bot and console modes: root edits, timeline replies, analysis, reminders."""
    edit = config.mode == "bot" and digest != notice.rendered
    untold = _untold(notice, config)
    llm_new = notice.llm_analysis and notice.analysis_told != analysis_key(notice.analysis or {})
    actions: list[Action] = []
    new = notice
    if edit or untold or llm_new:
        if now >= (notice.last_flush or 0.0) + config.group_interval_s:
            if edit:
                actions.append(UpdateRoot())
            if untold:
                actions.append(Reply(tuple(untold), _reply_key(notice, untold)))
            if llm_new:
                key = analysis_key(notice.analysis or {})
                actions.append(ReplyAnalysis(key))
                new = replace(new, analysis_told=key)
            new = replace(
                new, last_flush=now, rendered=digest if config.mode == "bot" else new.rendered,
                told=_tell(new.told, untold),
                severity_told=str(notice.incident.get("severity")),
                reopened_told=int(notice.incident.get("reopened", 0)),
                resolved_told=resolved,
            )
    if (not resolved and notice.acknowledged_by is None
            and now >= (notice.last_reminder or notice.posted_at or now)
            + config.repeat_interval_s):
        number = notice.reminders + 1
        actions.append(Reminder(number))
        new = replace(new, reminders=number, last_reminder=now)
    return new, actions


def _reply_key(notice: Notice, entries: Sequence[Mapping[str, Any]]) -> str:
    joined = ",".join(entry_key(e) for e in entries)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def _plan_webhook(
    notice: Notice, now: float, config: NotifyConfig, resolved: bool, severity: str
) -> tuple[Notice, list[Action]]:
    """Webhook mode: escalation, one LLM follow-up, one resolved message, capped."""
    if now < (notice.last_flush or 0.0) + config.group_interval_s:
        return notice, []
    cap = config.max_webhook_messages
    sent = notice.webhook_sent
    actions: list[Action] = []
    new = notice
    reopened = int(notice.incident.get("reopened", 0))
    if not resolved and (
        reopened > notice.reopened_told or _rank(severity) > _rank(notice.severity_told)
    ):
        if sent < cap - 2:
            sent += 1
            actions.append(Webhook("escalated", sent))
        # Told (or over budget): either way not again for this severity / re-open.
        new = replace(new, severity_told=severity, reopened_told=reopened, resolved_told=False)
    if notice.llm_analysis and notice.analysis_told is None:
        if sent < cap - 1:
            sent += 1
            actions.append(Webhook("analysis", sent))
        new = replace(new, analysis_told=analysis_key(notice.analysis or {}))
    if resolved and not new.resolved_told:
        if config.send_resolved and sent < cap:
            sent += 1
            actions.append(Webhook("resolved", sent))
        new = replace(new, resolved_told=True)
    if new is notice:
        return notice, []
    if actions:
        new = replace(new, last_flush=now)
    return replace(new, webhook_sent=sent), actions


def due_at(
    notice: Notice, config: NotifyConfig, digest: str | None = None, *, reminders: bool = True
) -> float | None:
    """Earliest wall-clock time :func:`plan` may have something to send, or ``None``.

    Without ``digest`` a pending root edit is not seen (the timer does not render);
    the records that change the incident are planned when they arrive. With
    ``reminders=False`` only what is owed (first message, changes, analysis,
    resolution) counts, not the next ``repeat_interval`` reminder. An incident grouped
    under another primary is due only for its one "grouped" edit (bot mode, posted).
    """
    if _quiet(notice):
        primary = grouped_primary(notice.incident)
        if (primary is not None and primary != notice.grouped_under
                and notice.posted_at is not None and config.mode == "bot"):
            return notice.last_flush or notice.posted_at
        return None
    if notice.posted_at is None:
        return notice.first_seen + config.group_wait_s
    resolved = _resolved(notice.incident)
    times: list[float] = []
    flush = (notice.last_flush or 0.0) + config.group_interval_s
    if config.mode == "webhook":
        reopened = int(notice.incident.get("reopened", 0))
        severity = str(notice.incident.get("severity"))
        if ((notice.llm_analysis and notice.analysis_told is None)
                or (resolved and not notice.resolved_told)
                or (not resolved and (reopened > notice.reopened_told
                                      or _rank(severity) > _rank(notice.severity_told)))):
            times.append(flush)
    else:
        llm_new = notice.llm_analysis and notice.analysis_told != analysis_key(
            notice.analysis or {})
        if _untold(notice, config) or llm_new or (
                digest is not None and config.mode == "bot" and digest != notice.rendered):
            times.append(flush)
        if not resolved and reminders and notice.acknowledged_by is None:
            times.append((notice.last_reminder or notice.posted_at) + config.repeat_interval_s)
    return min(times) if times else None


# --- routing ------------------------------------------------------------------------

_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$')


@dataclass(frozen=True, slots=True)
class Matcher:
    """An Alertmanager matcher: ``name`` ``op`` ``value`` (``=``, ``!=``, ``=~``, ``!~``).

    Regular expressions are anchored at both ends, as in Alertmanager.
    """

    name: str
    op: Literal["=", "!=", "=~", "!~"]
    value: str

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """Parse ``name=value`` (the value may be double-quoted).

        Raises:
            ValueError: not a matcher, an unknown label, or an invalid regex.
        """
        m = _MATCHER.match(text)
        if not m:
            raise ValueError(f"not a matcher: {text!r} (want name=value, !=, =~ or !~)")
        name, op, value = m.group(1), m.group(2), m.group(3)
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if name not in ("service", "severity"):
            raise ValueError(f"matcher {text!r}: routes match on service and severity only")
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"matcher {text!r}: invalid regular expression: {exc}") from None
        return cls(name, op, value)  # type: ignore[arg-type]

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy the matcher (a missing label is the empty string)."""
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = re.fullmatch(self.value, actual) is not None
        return hit if self.op == "=~" else not hit


@dataclass(frozen=True, slots=True)
class Route:
    """Send incidents whose labels match every matcher to ``channel``."""

    matchers: tuple[Matcher, ...]
    channel: str


@dataclass(frozen=True, slots=True)
class Routes:
    """Ordered routes (first match wins) and the default channel."""

    routes: tuple[Route, ...] = ()
    default: str | None = None

    @classmethod
    def from_document(cls, data: Any, default: str | None) -> Routes:
        """Build from the parsed YAML document ``{"routes": [{"matchers", "channel"}]}``.

        Raises:
            ValueError: the document's shape is wrong; the message names the route.
        """
        if data is None:
            return cls((), default)
        if not isinstance(data, dict) or not isinstance(data.get("routes"), list):
            raise ValueError("routes file must be a mapping with a 'routes' list")
        routes = []
        for i, item in enumerate(data["routes"]):
            if not isinstance(item, dict):
                raise ValueError(f"route {i + 1}: must be a mapping with matchers and channel")
            channel = item.get("channel")
            if not isinstance(channel, str) or not channel.strip():
                raise ValueError(f"route {i + 1}: 'channel' must be a non-empty string")
            raw = item.get("matchers", [])
            if not isinstance(raw, list) or not all(isinstance(m, str) for m in raw):
                raise ValueError(f"route {i + 1}: 'matchers' must be a list of strings")
            try:
                matchers = tuple(Matcher.parse(m) for m in raw)
            except ValueError as exc:
                raise ValueError(f"route {i + 1}: {exc}") from None
            routes.append(Route(matchers, channel.strip()))
        return cls(tuple(routes), default)

    @classmethod
    def load(cls, path: str | None, default: str | None) -> Routes:
        """Read the routes file ``path`` (YAML; ``AUTOPILOT_SLACK_ROUTES``); no path: no routes.

        Raises:
            ValueError: unreadable file, not YAML, or a wrong shape; the message names
                the file (and the route at fault).
        """
        if not path:
            return cls((), default)
        import yaml

        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh)
            return cls.from_document(data, default)
        except (OSError, yaml.YAMLError, ValueError) as exc:
            raise ValueError(f"AUTOPILOT_SLACK_ROUTES={path}: {exc}") from None

    def channel_for(self, service: str, severity: str) -> str | None:
        """The channel of the first matching route, else the default."""
        labels = {"service": service, "severity": severity}
        for route in self.routes:
            if all(m.matches(labels) for m in route.matchers):
                return route.channel
        return self.default
