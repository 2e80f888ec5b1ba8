"""Approved actions: the ``AUTOPILOT_ACTIONS_FILE`` schema and what it offers (pure).

No Faust, no network. The file (YAML) lists actions a person may run from an
incident's Slack message once an approver clicked its button (docs/actions.md)::

    actions:
      - name: rollback                 # [a-z0-9][a-z0-9_-]*, unique; "rollback" is special
        label: "Restart pods"          # optional button text (default: the name)
        services: [checkout, "pay-*", "re:^api-(eu|us)$"]
        approvers: {users: [U012AB3CD], usergroup: S0614TZR7}
        hook:                          # exactly one of webhook / argocd / github
          webhook: {url: "https://…", token_file: /run/secrets/hook}

Service matchers: a plain string is an exact name; a string with ``*``, ``?`` or ``[``
is a glob (:func:`fnmatch.fnmatchcase`); ``re:<pattern>`` is a regular expression that
must match the whole name (:func:`re.fullmatch`).

:func:`load_actions` refuses a wrong file with :class:`ActionsFileError`, whose message
names the file, the line (from YAML's node marks) and what is wrong.
:func:`offers` gives the buttons an incident gets: ``rollback`` only when a deployment
is among the evidence and the version before it is known (:func:`rollback_target`).
"""

from __future__ import annotations

import fnmatch
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from autopilot.models import UNKNOWN_VERSION, DeploymentEvent

__all__ = [
    "ROLLBACK",
    "TEMPLATE_FIELDS",
    "ActionSpec",
    "ActionsConfig",
    "ActionsFileError",
    "Approvers",
    "ArgoCdHook",
    "GithubHook",
    "HookSpec",
    "Offer",
    "WebhookHook",
    "load_actions",
    "offers",
    "rollback_target",
]

#: The action whose button appears only with a deployment among the evidence.
ROLLBACK = "rollback"
#: Placeholders allowed in templates (``application``, GitHub ``inputs``).
TEMPLATE_FIELDS = frozenset({"service", "from_version", "to_version", "incident_id",
                             "approver", "action"})
_NAME = r"^[a-z0-9][a-z0-9_-]{0,39}$"
_SLACK_USER = r"^[UW][A-Z0-9]{2,20}$"
_SLACK_GROUP = r"^S[A-Z0-9]{2,20}$"


class ActionsFileError(ValueError):
    """The actions file cannot be used: ``str(exc)`` is one line naming the file, the
    line at fault (when known) and what is wrong."""


def _check_template(value: str) -> str:
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
    except ValueError as exc:
        raise ValueError(f"bad template {value!r}: {exc}") from None
    unknown = names - TEMPLATE_FIELDS
    if unknown:
        raise ValueError(f"unknown placeholder {{{sorted(unknown)[0]}}} in {value!r}; "
                         f"allowed: {', '.join(sorted(TEMPLATE_FIELDS))}")
    return value


def render_template(template: str, values: Mapping[str, str]) -> str:
    """``template`` with ``{service}``, ``{from_version}``, … filled in (checked by
    the schema, so no placeholder is unknown)."""
    return template.format_map({k: values.get(k, "") for k in TEMPLATE_FIELDS})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WebhookHook(_Model):
    """``webhook``: a JSON POST of ``{action, service, from_version, to_version,
    incident_id, approver}`` to ``url``, with ``Authorization: Bearer <token>`` when
    ``token_file`` is given."""

    url: str = Field(pattern=r"^https?://")
    token_file: Path | None = None


class ArgoCdHook(_Model):
    """``argocd``: roll the service's application back (Argo CD's rollback API).

    ``server`` is the Argo CD base URL; the application is ``applications[service]``
    when the map names the service, else ``application`` (a template,
    ``"{service}"`` by default)."""

    server: str = Field(pattern=r"^https?://")
    token_file: Path
    application: str = "{service}"
    applications: dict[str, str] = Field(default_factory=dict)

    @field_validator("application")
    @classmethod
    def _template(cls, value: str) -> str:
        return _check_template(value)

    def app_name(self, values: Mapping[str, str]) -> str:
        """The Argo CD application of ``values["service"]``."""
        service = values.get("service", "")
        if service in self.applications:
            return self.applications[service]
        return render_template(self.application, values)


class GithubHook(_Model):
    """``github``: ``workflow_dispatch`` of ``workflow`` (file name or numeric id) in
    ``repo`` (``owner/name``) at ``ref`` with ``inputs`` (templates)."""

    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    workflow: str | int
    ref: str = "main"
    inputs: dict[str, str] = Field(default_factory=dict)
    token_file: Path
    api_url: str = Field(default="https://api.github.com", pattern=r"^https?://")

    @field_validator("inputs")
    @classmethod
    def _templates(cls, value: dict[str, str]) -> dict[str, str]:
        for template in value.values():
            _check_template(template)
        return value


class HookSpec(_Model):
    """Exactly one of ``webhook``, ``argocd``, ``github``."""

    webhook: WebhookHook | None = None
    argocd: ArgoCdHook | None = None
    github: GithubHook | None = None

    @model_validator(mode="after")
    def _one(self) -> HookSpec:
        kinds = [k for k in ("webhook", "argocd", "github") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a hook has exactly one of webhook, argocd, github"
                             + (f" (found {', '.join(kinds)})" if kinds else ""))
        return self

    @property
    def kind(self) -> str:
        """``"webhook"``, ``"argocd"`` or ``"github"``."""
        return "webhook" if self.webhook else "argocd" if self.argocd else "github"

    def token_files(self) -> list[Path]:
        """The token files this hook reads at each call."""
        hook = self.webhook or self.argocd or self.github
        path = getattr(hook, "token_file", None)
        return [path] if path is not None else []


class Approvers(_Model):
    """Who may approve: Slack user ids (``U…``/``W…``) and/or one user group id
    (``S…``, its members via ``usergroups.users.list``)."""

    users: list[str] = Field(default_factory=list)
    usergroup: str | None = Field(default=None, pattern=_SLACK_GROUP)

    @field_validator("users")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        for user in value:
            if not re.match(_SLACK_USER, user):
                raise ValueError(f"{user!r} is not a Slack user id (U… or W…)")
        return value

    @model_validator(mode="after")
    def _some(self) -> Approvers:
        if not self.users and self.usergroup is None:
            raise ValueError("approvers need users or a usergroup")
        return self


class ActionSpec(_Model):
    """One configured action (see the module docstring)."""

    name: str = Field(pattern=_NAME)
    label: str | None = Field(default=None, min_length=1, max_length=60)
    services: list[str] = Field(min_length=1)
    approvers: Approvers
    hook: HookSpec

    @field_validator("services")
    @classmethod
    def _matchers(cls, value: list[str]) -> list[str]:
        for matcher in value:
            if not matcher:
                raise ValueError("an empty service matcher")
            if matcher.startswith("re:"):
                try:
                    re.compile(matcher[3:])
                except re.error as exc:
                    raise ValueError(f"bad regex {matcher!r}: {exc}") from None
        return value

    def matches(self, service: str) -> bool:
        """Whether one of :attr:`services` matches ``service``."""
        for matcher in self.services:
            if matcher.startswith("re:"):
                if re.fullmatch(matcher[3:], service):
                    return True
            elif any(c in matcher for c in "*?["):
                if fnmatch.fnmatchcase(service, matcher):
                    return True
            elif matcher == service:
                return True
        return False


class ActionsConfig(_Model):
    """The whole file: ``actions:`` a list of :class:`ActionSpec` (names unique)."""

    actions: list[ActionSpec] = Field(default_factory=list)

    @field_validator("actions")
    @classmethod
    def _unique(cls, value: list[ActionSpec]) -> list[ActionSpec]:
        seen: set[str] = set()
        for action in value:
            if action.name in seen:
                raise ValueError(f"action {action.name!r} is defined twice")
            seen.add(action.name)
        return value

    def find(self, name: str, service: str) -> ActionSpec | None:
        """The action ``name`` when it applies to ``service``."""
        for action in self.actions:
            if action.name == name and action.matches(service):
                return action
        return None


def _node_at(node: yaml.Node, loc: Sequence[int | str]) -> yaml.Node:
    """The deepest node of ``node`` along a pydantic error location."""
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == part:
                    child = value
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if 0 <= part < len(node.value):
                child = node.value[part]
        if child is None:
            break
        node = child
    return node


def load_actions(path: Path | str) -> ActionsConfig:
    """Read and validate the actions file at ``path``.

    Raises:
        ActionsFileError: unreadable, not YAML, or not the schema; the message is
            ``"<path>: line <n>: <where>: <what>"`` (1-based line of the node at fault,
            from YAML's marks), or a missing token file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ActionsFileError(f"{path}: cannot read: {exc}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ActionsFileError(f"{path}: {where}not YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ActionsFileError(f"{path}: line 1: the file must be a mapping with 'actions:'")
    try:
        config = ActionsConfig.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = [p for p in error["loc"] if isinstance(p, int | str)]
        line = _node_at(root, loc).start_mark.line + 1 if root is not None else 1
        where = ".".join(str(p) for p in loc) or "(top)"
        message = str(error["msg"]).removeprefix("Value error, ")
        raise ActionsFileError(f"{path}: line {line}: {where}: {message}") from None
    for action in config.actions:
        for token_file in action.hook.token_files():
            if not token_file.is_file():
                raise ActionsFileError(f"{path}: action {action.name!r}: token_file "
                                       f"{token_file} does not exist")
    return config


@dataclass(frozen=True, slots=True)
class Offer:
    """One action button: the action's ``name``, the button ``label``, and the
    versions of a rollback (``from_version`` deployed now, ``to_version`` before)."""

    name: str
    label: str
    from_version: str | None = None
    to_version: str | None = None


def rollback_target(
    evidence: Sequence[DeploymentEvent], history: Sequence[DeploymentEvent]
) -> tuple[str, str] | None:
    """``(from_version, to_version)`` of a rollback, or ``None``.

    ``from_version`` is the newest deployment among the incident's ``evidence``;
    ``to_version`` is its ``metadata["previous_version"]`` when the deployer sent one,
    else the version of the newest earlier deployment of ``history`` with another
    known version. ``None`` without evidence or without a known earlier version.
    """
    if not evidence:
        return None
    newest = max(evidence, key=lambda d: d.timestamp)
    if newest.version == UNKNOWN_VERSION:
        return None
    previous = newest.metadata.get("previous_version")
    if isinstance(previous, str | int) and str(previous) and str(previous) != newest.version:
        return newest.version, str(previous)
    earlier = [d for d in history if d.timestamp < newest.timestamp
               and d.version not in (newest.version, UNKNOWN_VERSION)]
    if not earlier:
        return None
    return newest.version, max(earlier, key=lambda d: d.timestamp).version


def offers(
    config: ActionsConfig | None,
    service: str,
    evidence: Sequence[DeploymentEvent],
    history: Sequence[DeploymentEvent],
) -> list[Offer]:
    """The action buttons of an incident of ``service``: every configured action
    matching the service, in file order; ``rollback`` only when
    :func:`rollback_target` finds versions (label ``Roll back to <version>``)."""
    if config is None:
        return []
    found: list[Offer] = []
    target = rollback_target(evidence, history)
    for action in config.actions:
        if not action.matches(service):
            continue
        if action.name == ROLLBACK:
            if target is not None:
                found.append(Offer(action.name, action.label or f"Roll back to {target[1]}",
                                   target[0], target[1]))
            continue
        label = action.label or action.name.replace("-", " ").replace("_", " ").capitalize()
        found.append(Offer(action.name, label, target[0] if target else None,
                           target[1] if target else None))
    return found
