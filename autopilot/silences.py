"""Silences compatible with Alertmanager's API v2 (pure: no Faust, no network).

A :class:`Silence` mutes the notifications of incidents whose labels it matches while
it is *active*, by **wall-clock** time: ``pending`` before ``startsAt``, ``active``
until ``endsAt``, ``expired`` after (the evidence's event time plays no part). The
JSON shapes are those of prometheus/alertmanager ``api/v2/openapi.yaml``:

- ``postableSilence`` (the body of ``POST /api/v2/silences``): ``matchers``,
  ``startsAt``, ``endsAt``, ``createdBy``, ``comment`` and, to update one, ``id``
  (:func:`parse_postable`);
- ``gettableSilence`` (the answers): the same plus ``id``, ``status.state`` and
  ``updatedAt`` (:meth:`Silence.gettable`);
- a matcher is ``{"name", "value", "isRegex", "isEqual"}`` (``isEqual`` defaults to
  true); a regex is anchored as in Alertmanager, ``^(?:re)$``.

Validation follows Alertmanager (``silence.validateSilence`` and the v2 API): at least
one matcher, valid label names, valid regexes, not every matcher matching the empty
string, ``endsAt`` after ``startsAt``, and a new silence not ending in the past. The
messages are Alertmanager's, so ``amtool`` shows what it would show.

What an incident offers to match (:func:`incident_label_sets`): one label set per
signal, ``service``, ``severity`` (the incident's), ``metric_name``, the series' own
labels and ``alertname`` when an Alertmanager alert brought it. An incident is
silenced when every one of its label sets is matched by an active silence (like
Alertmanager, which silences each alert alone: one alert not silenced still pages).

Times on the wire are RFC 3339 strings; inside, epoch seconds (float).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "InvalidSilence",
    "SilenceMatcher",
    "Silence",
    "State",
    "expire",
    "filter_silences",
    "format_time",
    "incident_label_sets",
    "matching_silence",
    "parse_filter",
    "parse_postable",
    "parse_time",
    "silencing",
]

State = Literal["pending", "active", "expired"]

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_FILTER = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$')
#: Most matchers a silence may carry, and longest comment (bytes of JSON are bounded by
#: the HTTP surface's body limit too).
MAX_MATCHERS = 64
MAX_COMMENT = 4000


class InvalidSilence(ValueError):
    """The silence is refused; the message is Alertmanager's (an HTTP 400 body)."""


def parse_time(value: Any, what: str) -> float:
    """An RFC 3339 time (``2026-12-07T06:00:00Z``, fractions allowed) → epoch s.

    Raises:
        InvalidSilence: not a string in that form.
    """
    if not isinstance(value, str) or not value:
        raise InvalidSilence(f"{what} in body is required")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)$", text)
    if m and m.group(2) and len(m.group(2)) > 7:  # Go sends nanoseconds
        text = m.group(1) + m.group(2)[:7] + m.group(3)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidSilence(f"{what} in body must be of type date-time: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def format_time(epoch_s: float) -> str:
    """Epoch s → RFC 3339 UTC with milliseconds (``2026-12-07T06:00:00.000Z``)."""
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


@dataclass(frozen=True, slots=True)
class SilenceMatcher:
    """One matcher: ``name`` equal to (or, ``isRegex``, fully matching) ``value``;
    ``isEqual=False`` negates it (``!=``, ``!~``)."""

    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    @classmethod
    def from_json(cls, data: Any) -> SilenceMatcher:
        """From ``{"name", "value", "isRegex", "isEqual"}``.

        Raises:
            InvalidSilence: missing fields, a bad label name or regex.
        """
        if not isinstance(data, Mapping):
            raise InvalidSilence("invalid matcher: not an object")
        name, value = data.get("name"), data.get("value")
        is_regex, is_equal = data.get("isRegex", False), data.get("isEqual", True)
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidSilence("invalid label matcher: name and value must be strings")
        if not isinstance(is_regex, bool) or not isinstance(is_equal, bool):
            raise InvalidSilence("invalid label matcher: isRegex and isEqual must be booleans")
        if not _LABEL_NAME.match(name):
            raise InvalidSilence(f"invalid label matcher: invalid label name {name!r}")
        matcher = cls(name, value, is_regex, is_equal)
        if is_regex:
            try:
                re.compile(matcher.pattern)
            except re.error as exc:
                raise InvalidSilence(
                    f"invalid label matcher: invalid regular expression {value!r}: {exc}"
                ) from None
        return matcher

    @property
    def pattern(self) -> str:
        """The anchored regular expression (Alertmanager's ``^(?:re)$``)."""
        return f"^(?:{self.value})$"

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy the matcher (a missing label is the empty string)."""
        actual = labels.get(self.name, "")
        if self.is_regex:
            hit = re.match(self.pattern, actual, re.DOTALL) is not None
        else:
            hit = actual == self.value
        return hit if self.is_equal else not hit

    def to_json(self) -> dict[str, Any]:
        """The OpenAPI ``matcher`` object."""
        return {"name": self.name, "value": self.value, "isRegex": self.is_regex,
                "isEqual": self.is_equal}

    def text(self) -> str:
        """``name="value"`` with the operator (logs, Slack-free summaries)."""
        op = {(False, True): "=", (False, False): "!=", (True, True): "=~",
              (True, False): "!~"}[(self.is_regex, self.is_equal)]
        return f'{self.name}{op}"{self.value}"'


@dataclass(frozen=True, slots=True)
class Silence:
    """A silence; times are epoch s (wall clock).

    Attributes:
        id: a UUID (Alertmanager's form).
        matchers: at least one; all must match (AND).
        starts_at, ends_at: active in ``[starts_at, ends_at)``.
        created_by, comment: who and why (``amtool``: ``--author``, ``--comment``).
        updated_at: when it was last created, changed or expired.
    """

    id: str
    matchers: tuple[SilenceMatcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    updated_at: float

    def state(self, now: float) -> State:
        """``pending``, ``active`` or ``expired`` at wall-clock time ``now``."""
        if now >= self.ends_at:
            return "expired"
        if now < self.starts_at:
            return "pending"
        return "active"

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether every matcher matches ``labels``."""
        return all(m.matches(labels) for m in self.matchers)

    def gettable(self, now: float) -> dict[str, Any]:
        """The OpenAPI ``gettableSilence`` at wall-clock time ``now``."""
        return {
            "id": self.id,
            "status": {"state": self.state(now)},
            "updatedAt": format_time(self.updated_at),
            "matchers": [m.to_json() for m in self.matchers],
            "startsAt": format_time(self.starts_at),
            "endsAt": format_time(self.ends_at),
            "createdBy": self.created_by,
            "comment": self.comment,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (the silences table and topic)."""
        return {
            "id": self.id,
            "matchers": [m.to_json() for m in self.matchers],
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "created_by": self.created_by,
            "comment": self.comment,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Silence:
        """Inverse of :meth:`to_dict`."""
        return cls(
            id=str(data["id"]),
            matchers=tuple(SilenceMatcher.from_json(m) for m in data["matchers"]),
            starts_at=float(data["starts_at"]),
            ends_at=float(data["ends_at"]),
            created_by=str(data.get("created_by", "")),
            comment=str(data.get("comment", "")),
            updated_at=float(data.get("updated_at", data["starts_at"])),
        )


def _validate(matchers: Sequence[SilenceMatcher], starts_at: float, ends_at: float) -> None:
    if not matchers:
        raise InvalidSilence("invalid silence: at least one matcher required")
    if len(matchers) > MAX_MATCHERS:
        raise InvalidSilence(f"invalid silence: at most {MAX_MATCHERS} matchers")
    if all(m.matches({}) for m in matchers):
        raise InvalidSilence(
            "invalid silence: at least one matcher must not match the empty string")
    if ends_at <= starts_at:
        raise InvalidSilence("Failed to create silence: start time must be before end time")


def parse_postable(body: Any, now: float, existing: Silence | None = None) -> Silence:
    """Validate a ``postableSilence`` at wall-clock time ``now``.

    Without ``id`` (or when ``existing`` is ``None``) a new silence gets a fresh UUID;
    with ``existing`` (the stored silence of that ``id``) it is updated in place, its
    id kept. A ``startsAt`` in the past becomes ``now`` (as in Alertmanager).

    Raises:
        InvalidSilence: the Alertmanager message for the first rule broken.
    """
    if not isinstance(body, Mapping):
        raise InvalidSilence("body must be a JSON object (postableSilence)")
    raw_matchers = body.get("matchers")
    if not isinstance(raw_matchers, list):
        raise InvalidSilence("matchers in body is required")
    matchers = tuple(SilenceMatcher.from_json(m) for m in raw_matchers)
    starts_at = parse_time(body.get("startsAt"), "startsAt")
    ends_at = parse_time(body.get("endsAt"), "endsAt")
    created_by, comment = body.get("createdBy"), body.get("comment")
    if not isinstance(created_by, str) or not created_by:
        raise InvalidSilence("createdBy in body is required")
    if not isinstance(comment, str) or not comment:
        raise InvalidSilence("comment in body is required")
    if len(comment) > MAX_COMMENT or len(created_by) > 200:
        raise InvalidSilence(f"comment longer than {MAX_COMMENT} characters or createdBy "
                             "longer than 200")
    _validate(matchers, starts_at, ends_at)
    if ends_at < now:
        raise InvalidSilence("Failed to create silence: end time can't be in the past")
    starts_at = max(starts_at, now)
    if ends_at <= starts_at:
        raise InvalidSilence("Failed to create silence: start time must be before end time")
    sid = existing.id if existing is not None else str(uuid.uuid4())
    return Silence(sid, matchers, starts_at, ends_at, created_by, comment, now)


def expire(silence: Silence, now: float) -> Silence:
    """The silence expired at ``now`` (``DELETE``): an active one ends now, a pending
    one starts and ends now, an expired one is returned unchanged."""
    state = silence.state(now)
    if state == "expired":
        return silence
    if state == "pending":
        return replace(silence, starts_at=now, ends_at=now, updated_at=now)
    return replace(silence, ends_at=now, updated_at=now)


def parse_filter(text: str) -> SilenceMatcher:
    """One ``filter`` query value (``service="cart-api"``, ``name=~"re"``) → matcher.

    Raises:
        InvalidSilence: not a matcher (Alertmanager answers 400).
    """
    m = _FILTER.match(text)
    if not m:
        raise InvalidSilence(f"bad matcher format: {text}")
    name, op, value = m.groups()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return SilenceMatcher.from_json({"name": name, "value": value, "isRegex": "~" in op,
                                     "isEqual": not op.startswith("!")})


def filter_silences(silences: Iterable[Silence], filters: Sequence[SilenceMatcher]
                    ) -> list[Silence]:
    """Silences whose *equality* matchers, read as a label set, satisfy every filter
    (Alertmanager's ``CheckSilenceMatchesFilterLabels``); no filter keeps all."""
    kept = []
    for silence in silences:
        labels = {m.name: m.value for m in silence.matchers if m.is_equal and not m.is_regex}
        if all(f.matches(labels) for f in filters):
            kept.append(silence)
    return kept


def _series_labels(series: str) -> dict[str, str]:
    """The labels of a series key ``service|metric|k=v,k=v`` (best effort)."""
    parts = series.split("|", 2)
    labels: dict[str, str] = {}
    if len(parts) == 3 and parts[2]:
        for pair in parts[2].split(","):
            k, sep, v = pair.partition("=")
            if sep and _LABEL_NAME.match(k):
                labels[k] = v
    return labels


def incident_label_sets(incident: Mapping[str, Any]) -> list[dict[str, str]]:
    """The label sets of an incident (JSON dict of :class:`autopilot.models.Incident`):
    one per signal (the series' own labels, then ``service``, ``severity``,
    ``metric_name`` and ``alertname`` when present); ``[{service, severity}]`` for an
    incident without signals."""
    service = str(incident.get("service", ""))
    severity = str(incident.get("severity", ""))
    by_series: dict[str, dict[str, str]] = {}
    for anomaly in incident.get("anomalies") or ():
        labels = anomaly.get("labels") or {}
        key = anomaly.get("series")
        if isinstance(key, str) and isinstance(labels, Mapping):
            by_series[key] = {str(k): str(v) for k, v in labels.items()}
    sets: list[dict[str, str]] = []
    for signal in incident.get("signals") or ():
        series = str(signal.get("series", ""))
        labels = dict(by_series.get(series) or _series_labels(series))
        labels.update(service=service, severity=severity,
                      metric_name=str(signal.get("metric_name", "")))
        if signal.get("alertname"):
            labels["alertname"] = str(signal["alertname"])
        sets.append(labels)
    return sets or [{"service": service, "severity": severity}]


def matching_silence(labels: Mapping[str, str], silences: Iterable[Silence], now: float
                     ) -> Silence | None:
    """The first silence active at ``now`` that matches ``labels`` (by id, stable)."""
    for silence in sorted(silences, key=lambda s: s.id):
        if silence.state(now) == "active" and silence.matches(labels):
            return silence
    return None


def silencing(incident: Mapping[str, Any], silences: Iterable[Silence], now: float
              ) -> list[str]:
    """The ids of the active silences that together mute ``incident`` at ``now``, or
    ``[]`` when some label set of it is matched by none (it pages)."""
    pool = list(silences)
    ids: list[str] = []
    for labels in incident_label_sets(incident):
        hit = matching_silence(labels, pool, now)
        if hit is None:
            return []
        if hit.id not in ids:
            ids.append(hit.id)
    return ids
