"""The grounding check: does an LLM analysis name only what the incident's evidence holds?

Pure module: no Faust and no network. The analysis agent runs :func:`check_grounding`
on every answer Ollama gives and :func:`apply_grounding` before the analysis is
published (``autopilot.alerts``); the notifier then shows the model's root cause
verbatim, marked "unverified" next to the rule-based one when the check fails
(:mod:`autopilot.blockkit`). docs/grounding.md.

What is checked
---------------

1. **Names.** Candidate entities are taken from the answer's text (root cause,
   reasoning, actions, customer impact) with narrow patterns, so that ordinary words
   ("the connection pool", "the payments gateway") are never entities:

   * versions: ``v2``, ``v2.4``, ``v2.4.1-rc1`` (a leading ``v``) or ``2.4.1`` (three
     or more numeric parts; ``2.5`` alone is a number, not a version);
   * git commit ids: 7–40 hex digits with at least one digit and one letter;
   * service, pod and host names: lower-case hyphenated tokens (``payments-gateway``,
     ``checkout-7d9f8b-xk2p``, ``ip-10-0-1-23``), except English compounds
     (``out-of-memory``, ``rule-based``, ``re-deploy``, ``connection-pool`` …
     :data:`_ENGLISH_PREFIXES`, :data:`_ENGLISH_SUFFIXES`, :data:`_ENGLISH_HYPHENATED`,
     and tokens made only of :data:`_PROSE_WORDS`; so an invented name made only of
     such words, ``cache-service``, is not caught);
   * metric and label names: lower-case tokens with an underscore
     (``http_requests_total``);
   * host names with two or more dots (``db1.prod.internal``) and IPv4 addresses;
   * anything the model put in backticks.

   Each candidate must occur in the evidence: the service, the incident's id and
   trigger reason (both in the prompt), every anomaly's service,
   metric name, series and label keys and values, alert annotations, deployment
   versions, statuses and metadata (``previous_version`` …), and the text of the error
   log lines (a name a log line mentions is evidence). Matching ignores case, a
   leading ``v`` of versions, and ``-``/``_``/``.`` differences; a candidate also
   matches as a whole token inside an evidence string (``checkout`` inside pod
   ``checkout-7d9f``, a version inside a log line).

2. **Actions.** A recommended action is dropped when its text names something the
   evidence lacks, when it is destructive (delete, drop, truncate, wipe, purge,
   destroy … data, a database, a table, a volume), or when it rolls back, reverts or
   downgrades while the incident holds no deployment. The rule-based analysis never
   recommends such steps; an LLM that does was misled (by a log line, say: prompt
   injection) or guessed. A rollback's target version must be a deployed one (a
   deployment's ``version`` or ``metadata``), not merely a version some log line
   mentions: a log line can plant a version.

3. **Confidence.** Capped by how much evidence there is (:func:`evidence_signals`):
   one signal (one anomalous series, or only log lines) → at most
   :data:`THIN_EVIDENCE_CAP` (50) %, two → :data:`SOME_EVIDENCE_CAP` (75) %; an answer
   that fails the check → at most :data:`UNVERIFIED_CAP` (25) %.

An answer is **grounded** when it names nothing unknown and no action was dropped.
The answer is never rewritten: its root-cause text stays verbatim.

4. **Top suspect.** The evidence ranks the suspect services (``Incident.suspects``,
   :mod:`autopilot.rca`); the model only words the analysis. When its root-cause
   description names one of the incident's services (its suspects, its incident
   group's members, its own) but not the top suspect, :func:`evidence_top_suspect`
   gives the top suspect, stored as ``Analysis.evidence_top_suspect``: Slack then shows
   both and says which one the evidence ranks first. The ranking never changes.
   The suspects and group members count as evidence names (the prompt lists them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from autopilot.models import Analysis, Incident, RecommendedAction
from autopilot.redact import redact

__all__ = [
    "SOME_EVIDENCE_CAP",
    "THIN_EVIDENCE_CAP",
    "UNVERIFIED_CAP",
    "DroppedAction",
    "GroundingResult",
    "apply_grounding",
    "check_grounding",
    "evidence_top_suspect",
    "named_services",
    "evidence_names",
    "evidence_signals",
    "extract_names",
]

#: Confidence cap (%) with one signal of evidence.
THIN_EVIDENCE_CAP = 50
#: Confidence cap (%) with two signals.
SOME_EVIDENCE_CAP = 75
#: Confidence cap (%) of an answer that fails the check.
UNVERIFIED_CAP = 25
#: At most this many unknown names are reported (the first ones, in text order).
MAX_UNKNOWN_NAMES = 20

_VERSION_RE = re.compile(
    r"(?<![\w.-])(?:[vV]\d+(?:\.\d+)*|\d+\.\d+\.\d+(?:\.\d+)*)(?:[-+][0-9A-Za-z][0-9A-Za-z.-]*)?"
    r"(?![\w-]|\.\d)"
)
_IPV4_RE = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w.])")
_SHA_RE = re.compile(r"(?<![\w-])(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}(?![\w-])")
_HYPHENATED_RE = re.compile(r"(?<![\w.-])[a-z][a-z0-9]*(?:-[a-z0-9]+)+(?![\w-])")
_UNDERSCORED_RE = re.compile(r"(?<![\w.-])[a-z][a-z0-9]*(?:_[a-z0-9]+)+(?![\w-])")
_DOTTED_HOST_RE = re.compile(r"(?<![\w.-])[a-z][a-z0-9-]*(?:\.[a-z0-9-]+){2,}(?![\w-])")
_BACKTICKED_RE = re.compile(r"`([^`\s]{2,100})`")

#: Hyphenated English words and compounds that are not names.
_ENGLISH_HYPHENATED = frozenset({
    "out-of-memory", "step-by-step", "up-to-date", "end-to-end", "follow-up",
    "roll-back", "set-up", "clean-up", "trade-off", "e-mail", "on-call", "in-flight",
    "in-memory", "on-premise", "on-premises", "dead-letter", "round-robin", "time-out",
    "back-off", "fail-over", "start-up", "shut-down", "sign-in", "log-in", "opt-in",
    "per-request", "per-second", "per-minute", "well-known", "long-lived",
})
#: First parts of English compounds (``re-deploy``, ``non-zero``, ``high-risk`` …).
_ENGLISH_PREFIXES = frozenset({
    "re", "non", "pre", "post", "co", "self", "multi", "cross", "anti", "sub", "over",
    "under", "semi", "auto", "mid", "de", "un", "high", "low", "medium", "short", "long",
    "well", "ill", "half", "full", "all", "first", "second", "third", "top", "one", "two",
    "three", "four", "five", "ten", "hard", "soft", "hot", "cold", "rule",
    "read", "write", "real", "near",
    "per", "in", "out", "up", "down", "off", "on", "so", "x", "n",
})
#: Last parts of English compounds (``rule-based``, ``customer-facing`` …).
_ENGLISH_SUFFIXES = frozenset({
    "based", "related", "level", "side", "wide", "term", "time", "free", "like", "only",
    "specific", "bound", "heavy", "driven", "facing", "induced", "sensitive", "aware",
    "safe", "critical", "intensive", "scale", "grade", "ready", "style", "friendly",
    "hour", "minute", "second", "day", "week", "percent", "fold", "off", "up", "out",
    "in", "down", "over", "running", "lived", "known", "risk", "priority", "impact",
    "rate", "limited", "limiting", "of", "to", "by", "and", "or", "the", "a",
    "making", "taking", "handling",
})

#: Words of incident prose: a hyphenated token made only of these (and of
#: :data:`_ENGLISH_PREFIXES`/:data:`_ENGLISH_SUFFIXES`) is prose ("connection-pool
#: exhaustion", "error-rate spike"), not a name.
_PROSE_WORDS = frozenset({
    "connection", "connections", "pool", "pools", "database", "db", "memory", "heap",
    "cpu", "disk", "network", "request", "requests", "response", "responses", "error",
    "errors", "latency", "timeout", "timeouts", "thread", "threads", "query", "queries",
    "cache", "load", "traffic", "data", "service", "services", "resource", "resources",
    "limit", "limits", "leak", "leaks", "spike", "spikes", "regression", "deployment",
    "config", "configuration", "health", "check", "checks", "retry", "retries", "circuit",
    "breaker", "queue", "queues", "lock", "locks", "garbage", "collection", "gc", "slow",
    "fast", "peak", "root", "cause", "code", "path", "hot", "warm", "upstream", "downstream",
    "dependency", "dependencies", "back", "end", "front", "pressure", "usage", "capacity",
    "saturation", "exhaustion", "failure", "failures", "outage", "incident", "rollout",
    "canary", "blue", "green", "feature", "flag", "flags", "schema", "migration", "index",
    "replica", "replicas", "read", "write", "file", "files", "log", "logs", "metric",
    "metrics", "alert", "alerts", "page", "rate", "size", "count", "budget", "window",
    "decision", "decisions",
})


_DESTRUCTIVE_RE = re.compile(
    r"\b(delet\w*|drop(?:s|ped|ping)?|truncat\w*|wip(?:e|es|ed|ing)|purg\w*|destroy\w*"
    r"|eras\w*|format(?:s|ted|ting)?|reformat\w*|rm\s+-rf|remov\w*\s+(?:all|every))\b"
    r"(?:\W+\w+){0,5}?\W+(?:the\s+)?(?:data(?:base)?s?|db|tables?|schemas?|volumes?|disks?"
    r"|buckets?|backups?|clusters?|namespaces?|pvcs?|records?|rows|indexes|indices|topics?"
    r"|everything|all)\b",
    re.IGNORECASE,
)
_ROLLBACK_RE = re.compile(
    r"\b(roll(?:ing|s|ed)?[\s-]*back|rollback|revert\w*|downgrad\w*)\b", re.IGNORECASE
)
_SEPARATORS = re.compile(r"[-_.]")


@dataclass(frozen=True)
class DroppedAction:
    """A recommended action the check dropped and why (``names v9.9.9`` …)."""

    action: RecommendedAction
    reason: str


@dataclass(frozen=True)
class GroundingResult:
    """The verdict of :func:`check_grounding` on one LLM analysis.

    Attributes:
        grounded: no unknown name and no dropped action.
        unknown_names: names in the answer the evidence lacks (text order, unique, at
            most :data:`MAX_UNKNOWN_NAMES`).
        kept_actions: the actions that passed, in the answer's order.
        dropped_actions: the actions that did not, each with its reason.
        confidence: the answer's confidence after the caps (0–100 %).
        confidence_cap: the cap that applied (100: none).
        evidence_signals: :func:`evidence_signals` of the incident.
    """

    grounded: bool
    unknown_names: tuple[str, ...]
    kept_actions: tuple[RecommendedAction, ...]
    dropped_actions: tuple[DroppedAction, ...]
    confidence: int
    confidence_cap: int
    evidence_signals: int


# --------------------------------------------------------------------------- names


def _is_english_compound(token: str) -> bool:
    if token in _ENGLISH_HYPHENATED:
        return True
    parts = token.split("-")
    if any(ch.isdigit() for ch in token):
        return False
    if parts[0] in _ENGLISH_PREFIXES or parts[-1] in _ENGLISH_SUFFIXES:
        return True
    return all(p in _PROSE_WORDS or p in _ENGLISH_PREFIXES or p in _ENGLISH_SUFFIXES
               for p in parts)


def extract_names(text: str) -> list[str]:
    """The candidate entity names in ``text`` (see the module docstring), unique, in
    text order; trailing sentence punctuation is not part of a name."""
    found: list[tuple[int, str]] = []
    for match in _BACKTICKED_RE.finditer(text):
        found.append((match.start(1), match.group(1).strip()))
    for pattern in (_VERSION_RE, _IPV4_RE, _SHA_RE, _UNDERSCORED_RE, _DOTTED_HOST_RE):
        for match in pattern.finditer(text):
            found.append((match.start(), match.group(0)))
    for match in _HYPHENATED_RE.finditer(text):
        if not _is_english_compound(match.group(0)):
            found.append((match.start(), match.group(0)))
    out: list[str] = []
    seen: set[str] = set()
    for _, name in sorted(found):
        name = name.rstrip(".,;:")
        key = _key(name)
        if name and key and key not in seen:
            seen.add(key)
            out.append(name)
    return out


def _key(name: str) -> str:
    """Comparison key: lower case, separators unified, a version's leading ``v`` gone."""
    key = _SEPARATORS.sub("-", name.strip().lower())
    if re.fullmatch(r"v\d+(?:-\d+)*(?:-.*)?", key):
        key = key[1:]
    return key


def _evidence_strings(incident: Incident) -> Iterator[str]:
    yield from (incident.service, incident.id, incident.trigger_reason)
    for a in incident.anomalies:
        yield from (a.service, a.metric_name, a.series)
        yield from a.labels.keys()
        yield from a.labels.values()
        if a.alert is not None:
            yield from (a.alert.alertname, a.alert.summary, a.alert.description)
            yield from a.alert.annotations.values()
    for s in incident.signals:
        yield from (s.metric_name, s.series)
    for e in incident.recent_errors:
        yield from (e.service, e.message)
        yield from e.labels.keys()
        yield from e.labels.values()
    for d in incident.recent_deployments:
        yield from (d.service, d.version, d.status)
        for value in d.metadata.values():
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                yield str(value)
    for suspect in incident.suspects:
        yield suspect.service
        yield from suspect.reasons
    if incident.group is not None:
        yield incident.group.primary_service
        yield from (m.service for m in incident.group.members)


def evidence_names(incident: Incident) -> tuple[frozenset[str], str]:
    """``(keys, text)``: the comparison keys of every name in the incident's evidence
    (whole strings and the names found in them) and all evidence text as one
    lower-case string with separators unified (for whole-token matches)."""
    keys: set[str] = set()
    texts: list[str] = []
    for value in _evidence_strings(incident):
        if not value:
            continue
        keys.add(_key(value))
        keys.update(_key(n) for n in extract_names(value))
        texts.append(_SEPARATORS.sub("-", value.lower()))
    return frozenset(keys), "\n".join(texts)


def _known(name: str, keys: frozenset[str], text: str) -> bool:
    key = _key(name)
    if key in keys:
        return True
    # A whole token of the evidence text ("checkout" in pod "checkout-7d9f", a version in
    # a log line); versions are tried with and without their "v".
    if not key[:1].isdigit():
        return re.search(rf"(?<![a-z0-9]){re.escape(key)}(?![a-z0-9])", text) is not None
    # Numbers: not a part of a longer dotted number (3.4.0 is not in 10.3.4.0).
    return any(
        re.search(rf"(?<![a-z0-9-]){re.escape(v)}(?![a-z0-9]|-\d)", text) is not None
        for v in (key, "v" + key)
    )


def _deployed_versions(incident: Incident) -> frozenset[str]:
    """Keys of the versions (and commit ids) the incident's deployments name: their
    ``version`` and every string in their ``metadata`` (``previous_version`` …)."""
    keys: set[str] = set()
    for d in incident.recent_deployments:
        keys.add(_key(d.version))
        for value in d.metadata.values():
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                keys.add(_key(str(value)))
    return frozenset(keys)


def evidence_signals(incident: Incident) -> int:
    """How much evidence the incident holds: distinct anomalous series (metric name and
    series), plus one when it holds error log lines, plus one with deployments."""
    series = {(a.metric_name, a.series) for a in incident.anomalies}
    return len(series) + bool(incident.recent_errors) + bool(incident.recent_deployments)


# --------------------------------------------------------------------------- check


def _answer_texts(analysis: Analysis) -> Iterable[str]:
    yield analysis.root_cause.description
    yield analysis.root_cause.reasoning
    for action in analysis.recommended_actions:
        yield action.action
        yield action.reasoning
    yield analysis.estimated_customer_impact


def _unknown(text: str, keys: frozenset[str], evidence_text: str) -> list[str]:
    return [n for n in extract_names(text) if not _known(n, keys, evidence_text)]


def check_grounding(analysis: Analysis, incident: Incident) -> GroundingResult:
    """Check an LLM analysis against the evidence of ``incident`` (module docstring).

    Args:
        analysis: the model's analysis (:func:`autopilot.analysis.parse_llm_analysis`).
        incident: the incident it was asked about (the evidence).

    Returns:
        The verdict; the analysis itself is not changed (:func:`apply_grounding`).
    """
    keys, text = evidence_names(incident)
    unknown: list[str] = []
    for part in _answer_texts(analysis):
        for name in _unknown(part, keys, text):
            if _key(name) not in {_key(u) for u in unknown}:
                unknown.append(name)
    kept: list[RecommendedAction] = []
    dropped: list[DroppedAction] = []
    for action in analysis.recommended_actions:
        reason = _action_problem(action, incident, keys, text)
        if reason is None:
            kept.append(action)
        else:
            dropped.append(DroppedAction(action, reason))
    grounded = not unknown and not dropped
    signals = evidence_signals(incident)
    cap = 100
    if signals <= 1:
        cap = THIN_EVIDENCE_CAP
    elif signals == 2:
        cap = SOME_EVIDENCE_CAP
    if not grounded:
        cap = min(cap, UNVERIFIED_CAP)
    return GroundingResult(
        grounded=grounded,
        unknown_names=tuple(unknown[:MAX_UNKNOWN_NAMES]),
        kept_actions=tuple(kept),
        dropped_actions=tuple(dropped),
        confidence=min(analysis.root_cause.confidence, cap),
        confidence_cap=cap,
        evidence_signals=signals,
    )


def _action_problem(
    action: RecommendedAction, incident: Incident, keys: frozenset[str], text: str
) -> str | None:
    """Why ``action`` is not supported by the evidence, or ``None``."""
    words = action.action
    if _DESTRUCTIVE_RE.search(words):
        return "destructive"
    if _ROLLBACK_RE.search(words):
        if not incident.recent_deployments:
            return "rolls back, but the evidence holds no deployment"
        deployed = _deployed_versions(incident)
        targets = [m.group(0).rstrip(".,;:") for p in (_VERSION_RE, _SHA_RE)
                   for m in p.finditer(words)]
        strangers = [t for t in targets if _key(t) not in deployed]
        if strangers:
            return "rolls back to " + ", ".join(strangers[:5]) + ", not a deployed version"
    unknown = _unknown(words, keys, text)
    if unknown:
        return "names " + ", ".join(unknown[:5]) + " (not in the evidence)"
    return None


def apply_grounding(analysis: Analysis, result: GroundingResult, rules: Analysis) -> Analysis:
    """The analysis to publish: ``analysis`` with the check's verdict applied.

    The root-cause description and reasoning stay verbatim. The confidence becomes
    ``result.confidence``; the actions become the kept ones (priorities unchanged), or
    the rule-based ``rules`` actions when none was kept (an analysis has at least one);
    ``grounded``, ``unverified_names`` and ``dropped_actions`` record the verdict
    (redacted: :mod:`autopilot.redact`, since they quote the model's text); an
    answer that failed the check carries ``rules.root_cause`` as ``rules_root_cause``,
    shown next to it.

    Args:
        analysis: the LLM's analysis.
        result: :func:`check_grounding` of it.
        rules: the rule-based analysis of the same incident
            (:func:`autopilot.analysis.fallback_analysis`).
    """
    actions: Sequence[RecommendedAction] = result.kept_actions or rules.recommended_actions
    return analysis.model_copy(update={
        "root_cause": analysis.root_cause.model_copy(update={"confidence": result.confidence}),
        "recommended_actions": list(actions),
        "grounded": result.grounded,
        "unverified_names": [redact(n) for n in result.unknown_names],
        "dropped_actions": [
            redact(f"{d.action.action[:300]} — {d.reason}") for d in result.dropped_actions
        ][:10],
        "rules_root_cause": None if result.grounded else rules.root_cause,
    })


# --------------------------------------------------------------------------- top suspect


def named_services(text: str, services: Iterable[str]) -> list[str]:
    """The ``services`` that ``text`` names, in ``services`` order.

    A service is named when it occurs as a whole token, ignoring case (``checkout`` is
    not named by ``checkout-api``; a trailing full stop does not count), or written
    with spaces for its separators ("payments gateway").
    """
    low = text.lower()
    found: list[str] = []
    for service in services:
        name = service.strip().lower()
        if not name or service in found:
            continue
        variants = {name, re.sub(r"[-_.]+", " ", name)}
        if any(re.search(rf"(?<![\w-]){re.escape(v)}(?![\w-]|\.\w)", low)
               for v in variants):
            found.append(service)
    return found


def _incident_services(incident: Incident) -> list[str]:
    names = [s.service for s in incident.suspects]
    if incident.group is not None:
        names += [m.service for m in incident.group.members]
    names.append(incident.service)
    return list(dict.fromkeys(names))


def evidence_top_suspect(analysis: Analysis, incident: Incident) -> str | None:
    """The top suspect's service when the analysis's root cause names another service.

    Args:
        analysis: the LLM's analysis.
        incident: its incident; ``incident.suspects[0]`` is the evidence's top suspect.

    Returns:
        ``incident.suspects[0].service`` when the root-cause description names one of
        the incident's services (suspects, group members, its own:
        :func:`named_services`) and not the top suspect; else ``None`` (no suspects,
        the top suspect named, or no known service named).
    """
    if not incident.suspects:
        return None
    top = incident.suspects[0].service
    named = named_services(analysis.root_cause.description, _incident_services(incident))
    if not named or top in named:
        return None
    return top
