"""Slack interactions on an incident's root message (pure: no Faust, no network).

Slack POSTs a ``block_actions`` payload when someone clicks a button or picks a menu
option of the root message (:func:`autopilot.blockkit.render_incident` with
``buttons``). The worker that receives it verifies it (slack-bolt,
:mod:`autopilot.web.slack`), turns it into an :class:`IncidentAction` with
:func:`from_block_action` and produces it to ``autopilot.incident.actions`` keyed by
the incident's service, so the worker owning the service applies it.

An action's identity (:attr:`IncidentAction.identity`) is the root message's ts, the
action's ``action_ts`` and its ``action_id``: a double click makes two actions (two
``action_ts``), a Slack retry or a replayed request the same one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from autopilot.blockkit import (
    ACTION_ACKNOWLEDGE,
    ACTION_HOOK_PREFIX,
    ACTION_NOT_AN_INCIDENT,
    ACTION_RESOLVE,
    ACTION_SILENCE,
    parse_action_value,
    parse_hook_value,
)

__all__ = ["ActionKind", "IncidentAction", "InvalidInteraction", "from_block_action"]

ActionKind = Literal["acknowledge", "silence", "resolve", "not_an_incident", "hook"]

_KINDS: dict[str, ActionKind] = {
    ACTION_ACKNOWLEDGE: "acknowledge",
    ACTION_SILENCE: "silence",
    ACTION_RESOLVE: "resolve",
    ACTION_NOT_AN_INCIDENT: "not_an_incident",
}
#: Longest string field kept from a payload (Slack's ids and ts are far shorter).
_MAX_FIELD = 256


class InvalidInteraction(ValueError):
    """The payload is not a click on one of our incident buttons."""


@dataclass(frozen=True, slots=True)
class IncidentAction:
    """One click on an incident's root message.

    Attributes:
        kind: what was asked.
        incident_id, service: from the element's ``value``.
        silence: the Silence menu's choice (a :data:`autopilot.blockkit.SILENCE_CHOICES`
            key), else ``None``.
        user_id, user_name: who clicked (Slack ``user.id``, ``user.username``).
        channel_id, message_ts: the root message (``container``).
        action_id, action_ts: the element and Slack's time of the click.
        received_at: wall-clock epoch s when a worker received it.
        hook, from_version, to_version: for ``kind == "hook"`` (an approved-action
            button, ``incident_hook_<name>``, docs/actions.md): the action's name and
            the versions of a rollback; ``None`` otherwise.
    """

    kind: ActionKind
    incident_id: str
    service: str
    user_id: str
    user_name: str
    channel_id: str
    message_ts: str
    action_id: str
    action_ts: str
    received_at: float
    silence: str | None = None
    feedback: str | None = None
    hook: str | None = None
    from_version: str | None = None
    to_version: str | None = None

    @property
    def identity(self) -> str:
        """``message_ts:action_ts:action_id``: the same for a retry or replay."""
        return f"{self.message_ts}:{self.action_ts}:{self.action_id}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (the record's value)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IncidentAction:
        """Inverse of :meth:`to_dict`.

        Raises:
            InvalidInteraction: a field is missing or of the wrong type.
        """
        try:
            kind = data["kind"]
            if kind not in (*_KINDS.values(), "hook"):
                raise InvalidInteraction(f"unknown action kind {kind!r}")
            strings = {name: data[name] for name in (
                "incident_id", "service", "user_id", "user_name", "channel_id",
                "message_ts", "action_id", "action_ts")}
            if not all(isinstance(v, str) for v in strings.values()):
                raise InvalidInteraction("action fields must be strings")
            silence, feedback = data.get("silence"), data.get("feedback")
            extra = {name: data.get(name) for name in ("hook", "from_version", "to_version")}
            if any(v is not None and not isinstance(v, str)
                   for v in (silence, feedback, *extra.values())):
                raise InvalidInteraction("silence, feedback, hook and versions must be strings")
            if (kind == "hook") != (extra["hook"] is not None):
                raise InvalidInteraction("a hook action names its hook, others do not")
            return cls(kind=kind, received_at=float(data["received_at"]), silence=silence,
                       feedback=feedback, hook=extra["hook"],
                       from_version=extra["from_version"], to_version=extra["to_version"],
                       **strings)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InvalidInteraction):
                raise
            raise InvalidInteraction(f"not an incident action: {exc!r}") from None


def _text(data: Any, name: str) -> str:
    value = data.get(name) if isinstance(data, Mapping) else None
    if not isinstance(value, str) or not value or len(value) > _MAX_FIELD:
        raise InvalidInteraction(f"payload lacks {name}")
    return value


def from_block_action(
    body: Mapping[str, Any], action: Mapping[str, Any], now: float
) -> IncidentAction:
    """A ``block_actions`` payload and one of its ``actions`` → :class:`IncidentAction`.

    Raises:
        InvalidInteraction: not one of our action ids, a value that is not ours, or
            missing ``user``/``container`` fields.
    """
    action_id = _text(action, "action_id")
    if action_id.startswith(ACTION_HOOK_PREFIX):
        return _hook_action(body, action, action_id, now)
    kind = _KINDS.get(action_id)
    if kind is None:
        raise InvalidInteraction(f"unknown action_id {action_id!r}")
    selected = action.get("selected_option")
    raw = selected.get("value") if isinstance(selected, Mapping) else action.get("value")
    try:
        value = parse_action_value(raw)
    except ValueError as exc:
        raise InvalidInteraction(str(exc)) from None
    if (kind == "silence") != ("silence" in value):
        raise InvalidInteraction("a silence choice belongs to the Silence menu only")
    if "feedback" in value and kind != "not_an_incident":
        raise InvalidInteraction("a feedback choice belongs to the Not an incident menu only")
    user, container = body.get("user"), body.get("container")
    user_id = _text(user, "id")
    name = user.get("username") or user.get("name") if isinstance(user, Mapping) else None
    return IncidentAction(
        kind=kind,
        incident_id=value["incident_id"],
        service=value["service"],
        silence=value.get("silence"),
        feedback=value.get("feedback"),
        user_id=user_id,
        user_name=name if isinstance(name, str) and name else user_id,
        channel_id=_text(container, "channel_id"),
        message_ts=_text(container, "message_ts"),
        action_id=action_id,
        action_ts=_text(action, "action_ts"),
        received_at=now,
    )


def _hook_action(
    body: Mapping[str, Any], action: Mapping[str, Any], action_id: str, now: float
) -> IncidentAction:
    try:
        value = parse_hook_value(action.get("value"))
    except ValueError as exc:
        raise InvalidInteraction(str(exc)) from None
    name = value["action"]
    if action_id != ACTION_HOOK_PREFIX + str(name):
        raise InvalidInteraction("the button's action_id and value disagree")
    user, container = body.get("user"), body.get("container")
    user_id = _text(user, "id")
    user_name = user.get("username") or user.get("name") if isinstance(user, Mapping) else None
    for version in (value["from_version"], value["to_version"]):
        if version is not None and len(version) > _MAX_FIELD:
            raise InvalidInteraction("a version is too long")
    return IncidentAction(
        kind="hook",
        incident_id=str(value["incident_id"]),
        service=str(value["service"]),
        user_id=user_id,
        user_name=user_name if isinstance(user_name, str) and user_name else user_id,
        channel_id=_text(container, "channel_id"),
        message_ts=_text(container, "message_ts"),
        action_id=action_id,
        action_ts=_text(action, "action_ts"),
        received_at=now,
        hook=name,
        from_version=value["from_version"],
        to_version=value["to_version"],
    )
