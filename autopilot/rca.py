"""Root-cause ranking: which of the affected services is the likely culprit
(issue #16, docs/rca.md).

Pure core: no Faust, no network. Each affected service contributes a
:class:`ServiceEvidence` (built from its incident by :func:`evidence_from_incident`);
:func:`rank_suspects` scores every service with evidence, plus every service that
other services' error lines name without telemetry of its own, and returns the best
as :class:`autopilot.models.Suspect` records, best first.

The score is a weighted sum of five pieces of evidence, each a named function giving
a value in [0, 1] and the sentence that explains it (the ``reasons``):

* :func:`onset_score` — left its baseline first (1 for the earliest onset, falling
  linearly to 0 at ``onset_window_s`` later);
* :func:`depth_score` — deepest anomalous service in the call graph: anomalous
  callers above it, healthy callees below it (a caller whose error lines name a
  service counts as its caller);
* :func:`signature_score` — resource saturation (CPU, memory …) points at the service
  itself; errors point at its code; latency alone is weaker (callers of a slow service
  are slow too; client-side latency weaker still);
* :func:`named_score` — error lines of other services naming it;
* :func:`deployment_score` — a deployment within ``deployment_window_s`` before its
  onset.

One rule adjusts them, :func:`explained_errors`: a service at least
``explained_share`` of whose error lines name one other service has its errors
explained by that dependency; its error signature counts ``explained_factor`` as
much, and the named service takes its onset when that is earlier than its own.

The sum is divided by the sum of the weights, so scores are in [0, 1]. Every weight
is a field of :class:`RcaConfig` (defaults documented there). Cost: O(services +
edges among them) per ranking; deterministic (ties broken by service name).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, StrictFloat, StrictInt, StrictStr

from autopilot.models import Anomaly, FaultKind, Incident, Suspect
from autopilot.servicegraph import ServiceGraph, named_services

__all__ = [
    "Family",
    "RcaConfig",
    "ServiceEvidence",
    "SignalEvidence",
    "deployment_score",
    "depth_score",
    "directed_family",
    "evidence_from_anomaly",
    "evidence_from_incident",
    "explained_errors",
    "family",
    "named_score",
    "onset_score",
    "rank_incident",
    "rank_suspects",
    "signature_score",
]

Family = Literal["resource", "latency", "error", "traffic", "alert", "other"]

_RESOURCE = re.compile(r"cpu|mem|heap|\bgc\b|_gc|gc_|disk|\bio\b|_io|io_|iops|\bfd\b|_fd|fds|"
                       r"file_?desc|thread|syscall|saturation|throttl|oom|swap|load_?avg")
_LATENCY = re.compile(r"latency|duration|\bp9\d|_p9\d|p9\d_|p99|p95|p90|response_?time|rtt|"
                      r"\blag\b|_lag|elapsed|seconds_bucket")
_SUCCESS = re.compile(r"success|availability|\bok_?rate|apdex")
_ERROR = re.compile(r"error|err_|_err|5xx|\b5\d\d\b|fail|exception|fault|reject|timeout|"
                    r"panic|crash|restart")
_HEADROOM = re.compile(r"free|avail|idle|remaining|headroom")
_TRAFFIC = re.compile(r"request|\brps\b|_rps|qps|workload|\bops\b|ops\)|_ops|throughput|"
                      r"network|bytes|packets|traffic|receive|transmit|count")


def _norm_name(metric_name: str) -> str:
    """``PodServerLatencyP90(s)`` → ``pod_server_latency_p90(s)`` (camel case split)."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", metric_name)
    return snake.lower().replace(".", "_").replace("-", "_")


def family(metric_name: str, kind: str) -> Family:
    """The signature family of a signal, from its metric name and anomaly kind.

    ``kind`` ``alert`` → ``alert``; ``error_rate`` → ``error``; otherwise by name
    (camel case split, case-insensitive), first match wins: success rates and
    error/5xx/failure counters → ``error``; latency/duration/p9x/response time/rtt →
    ``latency``; cpu/mem(ory)/heap/gc/disk/io/fd/thread/syscall → ``resource``;
    requests/rps/workload/ops/network bytes → ``traffic``; else ``other``. (The
    direction — a success rate counts as an error only when it drops, a resource only
    when its use rises — is applied by :func:`directed_family`.)
    """
    if kind == "alert":
        return "alert"
    if kind == "error_rate":
        return "error"
    name = _norm_name(metric_name)
    if _SUCCESS.search(name) or _ERROR.search(name):
        return "error"
    if _LATENCY.search(name):
        return "latency"
    if _RESOURCE.search(name):
        return "resource"
    if _TRAFFIC.search(name):
        return "traffic"
    return "other"


def _is_client_side(metric_name: str) -> bool:
    """A latency the service measures on its own outgoing calls (``PodClientLatency``,
    ``client_latency``): it rises when a callee is slow."""
    return "client" in _norm_name(metric_name)


_FAMILIES: frozenset[str] = frozenset(("resource", "latency", "error", "traffic", "alert",
                                       "other"))


def _known_family(value: object) -> object:
    """An unknown or missing family reads as ``other`` (stored states stay loadable)."""
    return value if isinstance(value, str) and value in _FAMILIES else "other"


def _none_empty(value: object) -> object:
    """``None`` (a missing list in an old record) reads as empty."""
    return () if value is None else value


_EMPTY_OK = BeforeValidator(_none_empty)


class _Evidence(BaseModel):
    """Base of the evidence records: frozen, unknown keys ignored, NaN and infinity
    refused (``allow_inf_nan=False``); numbers are strict (no strings, no booleans)."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)


class SignalEvidence(_Evidence):
    """One signal of a service: ``z`` is its z-score (signed; dimensionless),
    ``first_at`` when it first left its baseline (epoch s), ``firing`` whether it
    still fires. ``family`` is :func:`family` with the direction applied (an unknown
    or missing one reads as ``other``; a missing ``firing`` as True)."""

    metric_name: StrictStr
    family: Annotated[Family, BeforeValidator(_known_family)] = "other"
    z: StrictFloat
    first_at: StrictFloat
    firing: Annotated[bool, BeforeValidator(bool)] = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the fields."""
        return {"metric_name": self.metric_name, "family": self.family, "z": self.z,
                "first_at": self.first_at, "firing": self.firing}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignalEvidence:
        """Inverse of :meth:`to_dict` (unknown keys ignored).

        Raises:
            ValueError: a field is missing or of the wrong type (pydantic's
                ``ValidationError``; the message names the field).
        """
        return cls.model_validate(data)


class ServiceEvidence(_Evidence):
    """What one service's incident says, reduced to what the ranking needs.

    ``onset``: when it first left its baseline (epoch s; ``None`` when unknown);
    ``signals``: its signals; ``deployments``: ``(epoch s, version)`` of its recent
    deployments; ``named``: other services its error lines name (most named first),
    with ``named_lines`` the number of its error lines naming each (parallel tuple;
    empty means one each); ``error_lines``: how many error lines it had;
    ``has_telemetry``: False for a service known only from others' error lines.
    Missing (or ``null``) lists read as empty.
    """

    service: StrictStr
    onset: StrictFloat | None = None
    signals: Annotated[tuple[SignalEvidence, ...], _EMPTY_OK] = ()
    deployments: Annotated[
        tuple[tuple[StrictFloat, Annotated[str, BeforeValidator(str)]], ...], _EMPTY_OK] = ()
    named: Annotated[tuple[Annotated[str, BeforeValidator(str)], ...], _EMPTY_OK] = ()
    error_lines: StrictInt = 0
    has_telemetry: Annotated[bool, BeforeValidator(bool)] = True
    named_lines: Annotated[tuple[Annotated[int, BeforeValidator(int)], ...], _EMPTY_OK] = ()

    def lines_naming(self, service: str) -> int:
        """How many of this service's error lines name ``service`` (0 when none)."""
        for i, name in enumerate(self.named):
            if name == service:
                return self.named_lines[i] if i < len(self.named_lines) else 1
        return 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (``signals`` as dicts, ``deployments`` as ``[t, version]``)."""
        return {
            "service": self.service,
            "onset": self.onset,
            "signals": [s.to_dict() for s in self.signals],
            "deployments": [[t, v] for t, v in self.deployments],
            "named": list(self.named),
            "named_lines": list(self.named_lines),
            "error_lines": self.error_lines,
            "has_telemetry": self.has_telemetry,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServiceEvidence:
        """Inverse of :meth:`to_dict` (unknown keys ignored; missing lists empty;
        ``deployments`` items ``[time, version]``).

        Raises:
            ValueError: a field has the wrong type (pydantic's ``ValidationError``;
                the message names the field, e.g. ``signals.0.z``).
        """
        return cls.model_validate(data)


@dataclass(frozen=True)
class RcaConfig:
    """Weights and windows of :func:`rank_suspects` (defaults chosen on constructed
    cascades; ``w_depth`` and ``onset_window_s`` then set on the Nezha data by
    bench/rca.py, the same for both systems: 0.25 → 0.1 and 300 → 120 s moved Online
    Boutique AC@1 from 37.5 to 42.9 %, Train Ticket unchanged).

    Weights (any non-negative numbers; the score divides by their sum):
    ``w_onset`` (0.25), ``w_depth`` (0.1), ``w_signature`` (0.2), ``w_named`` (0.3),
    ``w_deployment`` (0.3), ``w_strength`` (0.05: the service's largest |z| relative to
    the largest of all, log-scaled).

    ``onset_window_s`` (120 s): an onset this much after the earliest scores 0.
    ``deployment_window_s`` (1800 s): a deployment at most this long before the onset
    counts (``deployment_grace_s``, 60 s, after the onset too: minute-granular data).
    ``named_saturation`` (5): this many error lines naming a service score 1.
    Signature values: ``sig_resource`` 1.0, ``sig_error`` 0.7, ``sig_latency`` 0.5
    (× ``client_latency_factor`` 0.5 when client-side latency moved at least as much),
    ``sig_alert`` 0.4, ``sig_traffic`` 0.2, ``sig_other`` 0.2.
    ``min_reason_score`` (0.5): below this depth value, a service whose callees are
    anomalous too says so in its reasons.
    ``explained_share`` (0.5) and ``explained_factor`` (0.5): a service at least this
    share of whose error lines name one other service has its error signature
    multiplied by the factor (:func:`explained_errors`; measured by bench/rca.py and
    bench/analysis.py, see bench/rca.py).
    """

    w_onset: float = 0.25
    w_depth: float = 0.1
    w_signature: float = 0.2
    w_named: float = 0.3
    w_deployment: float = 0.3
    w_strength: float = 0.05
    onset_window_s: float = 120.0
    deployment_window_s: float = 1800.0
    deployment_grace_s: float = 60.0
    named_saturation: int = 5
    sig_resource: float = 1.0
    sig_error: float = 0.7
    sig_latency: float = 0.5
    client_latency_factor: float = 0.5
    sig_alert: float = 0.4
    sig_traffic: float = 0.2
    sig_other: float = 0.2
    min_reason_score: float = 0.5
    explained_share: float = 0.5
    explained_factor: float = 0.5

    def total_weight(self) -> float:
        """The sum of the weights (the score's denominator; at least a tiny positive)."""
        total = (self.w_onset + self.w_depth + self.w_signature + self.w_named
                 + self.w_deployment + self.w_strength)
        return total if total > 0 else 1.0


DEFAULT_CONFIG = RcaConfig()


def _epoch(dt: datetime) -> float:
    return dt.timestamp() if dt.tzinfo else dt.replace(tzinfo=UTC).timestamp()


def directed_family(metric_name: str, kind: str, z: float) -> Family:
    """:func:`family` with the direction of the move applied: only a move towards
    trouble keeps its family. A success rate that rose, a latency or error count that
    fell, and a resource (CPU, memory …) whose use fell are ``other``: a drop in use
    is no saturation (a starved or idle service uses less, its callers' load fell),
    so it must not rank a service as resource-saturated; for a headroom metric
    (free, available, idle …) the direction is reversed. (Chosen on bench/rca.py: the
    resource rule moved Online Boutique AC@1 from 48.2 to 50.0 %, Train Ticket
    unchanged.)"""
    fam = family(metric_name, kind)
    if fam == "error" and kind == "metric" and _SUCCESS.search(_norm_name(metric_name)):
        return "error" if z < 0 else "other"
    if fam == "resource" and kind == "metric" and _HEADROOM.search(_norm_name(metric_name)):
        return "resource" if z < 0 else "other"
    if fam in ("error", "latency", "resource") and kind == "metric" and z < 0:
        return "other"
    return fam


def _first_per_series(incident: Incident) -> list[Anomaly]:
    first: dict[str, Anomaly] = {}
    for a in incident.anomalies:
        key = a.series or f"{a.kind}:{a.metric_name}"
        if key not in first or a.detected_at < first[key].detected_at:
            first[key] = a
    return [first[k] for k in sorted(first)]


def evidence_from_incident(
    incident: Incident, known_services: Iterable[str] = (),
) -> ServiceEvidence:
    """The ranking's view of one service's incident.

    ``onset`` is the earliest ``first_at`` of its signals (else of its anomalies, else
    ``opened_at``); ``signals`` one per signal (records without signals: one per
    anomalous series, its first anomaly; family with direction,
    :func:`directed_family`: a success rate that rose, or a latency, error count or
    resource use that fell, is ``other``); ``deployments``
    from ``recent_deployments``; ``named`` the services its ``recent_errors`` name
    (:func:`autopilot.servicegraph.named_services` with ``known_services``), most named
    first, ties by first appearance.
    """
    signals = tuple(
        SignalEvidence(
            metric_name=s.metric_name,
            family=directed_family(s.metric_name, s.kind, s.z_score),
            z=s.z_score,
            first_at=_epoch(s.first_at),
            firing=s.state == "firing",
        )
        for s in incident.signals
    ) or tuple(
        # records written before signals existed: one per anomalous series
        SignalEvidence(
            metric_name=a.metric_name,
            family=directed_family(a.metric_name, a.kind, a.z_score),
            z=a.z_score,
            first_at=_epoch(a.detected_at),
            firing=a.state == "firing",
        )
        for a in _first_per_series(incident)
    )
    if signals:
        onset: float | None = min(s.first_at for s in signals)
    elif incident.anomalies:
        onset = min(_epoch(a.detected_at) for a in incident.anomalies)
    else:
        onset = _epoch(incident.opened_at)
    known = tuple(known_services)
    counts: dict[str, int] = {}
    for line in incident.recent_errors:
        for name in named_services(line.message, known, incident.service):
            counts[name] = counts.get(name, 0) + 1
    order = sorted(counts, key=lambda n: -counts[n])  # stable: first appearance on ties
    return ServiceEvidence(
        service=incident.service,
        onset=onset,
        signals=signals,
        deployments=tuple((_epoch(d.timestamp), d.version) for d in incident.recent_deployments),
        named=tuple(order),
        error_lines=len(incident.recent_errors),
        has_telemetry=True,
        named_lines=tuple(counts[n] for n in order),
    )


def evidence_from_anomaly(anomaly: Anomaly) -> ServiceEvidence:
    """The ranking's view of one Anomaly record (a firing or resolved series of a
    service that may have no incident of its own): one signal, ``first_at`` and
    ``onset`` its ``detected_at`` (epoch s), ``firing`` its state, family with
    direction as in :func:`evidence_from_incident`. No error lines, no deployments."""
    at = _epoch(anomaly.detected_at)
    signal = SignalEvidence(
        metric_name=anomaly.metric_name,
        family=directed_family(anomaly.metric_name, anomaly.kind, anomaly.z_score),
        z=anomaly.z_score,
        first_at=at,
        firing=anomaly.state == "firing",
    )
    return ServiceEvidence(service=anomaly.service, onset=at, signals=(signal,))


# ---- the pieces of evidence -------------------------------------------------------


@dataclass
class _Context:
    """What every piece of evidence may read (built once per ranking)."""

    evidence: dict[str, ServiceEvidence]
    anomalous: set[str]
    graph: ServiceGraph
    config: RcaConfig
    first_onset: float | None
    max_z: float
    named_by: dict[str, dict[str, int]] = field(default_factory=dict)  # named → namer → lines


#: Longest name (service, metric, version) quoted in a reason, and longest reason.
_NAME_CHARS = 60
_REASON_CHARS = 200


def _short(name: str) -> str:
    """``name`` cut to ``_NAME_CHARS`` (with an ellipsis): reasons stay one short line."""
    return name if len(name) <= _NAME_CHARS else name[:_NAME_CHARS - 1] + "…"


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S UTC")


def _top_signal(
    ev: ServiceEvidence, families: Iterable[str] | None = None,
) -> SignalEvidence | None:
    wanted = set(families) if families is not None else None
    best: SignalEvidence | None = None
    for s in ev.signals:
        if wanted is not None and s.family not in wanted:
            continue
        if best is None or (abs(s.z), best.metric_name) > (abs(best.z), s.metric_name):
            best = s
    return best


def explained_errors(service: str, ctx: _Context) -> tuple[str | None, str | None]:
    """The dependency that explains this service's errors, as (service, reason): the
    service its error lines name most, when at least ``explained_share`` of its error
    lines name it (``(None, None)`` otherwise, and for a service without error
    lines). Such a service is a victim of that dependency: its own error signature
    counts ``explained_factor`` as much (:func:`signature_score`), and the dependency
    takes its onset when earlier than its own (:func:`onset_score`)."""
    ev = ctx.evidence.get(service)
    if ev is None or not ev.named or ev.error_lines <= 0:
        return None, None
    target = ev.named[0]
    lines = ev.lines_naming(target)
    if target == service or lines < ctx.config.explained_share * ev.error_lines:
        return None, None
    return target, (f"{lines} of its {ev.error_lines} error lines name {_short(target)}: "
                    "its errors are explained by that dependency")


def onset_score(service: str, ctx: _Context) -> tuple[float, str | None]:
    """1 for the earliest onset among the services ranked, falling linearly to 0 at
    ``onset_window_s`` later; a service named only in error lines takes the onset of
    the earliest service naming it, and a service that explains another's errors
    (:func:`explained_errors`) takes that service's onset when earlier than its own."""
    ev = ctx.evidence.get(service)
    onset = ev.onset if ev is not None else None
    if onset is None:
        namers = [ctx.evidence[n].onset for n in ctx.named_by.get(service, {})]
        onset = min((t for t in namers if t is not None), default=None)
    inherited = [ctx.evidence[n].onset for n in ctx.named_by.get(service, {})
                 if explained_errors(n, ctx)[0] == service]
    inherited_onset = min((t for t in inherited if t is not None), default=None)
    via: str | None = None
    if inherited_onset is not None and (onset is None or inherited_onset < onset):
        onset = inherited_onset
        via = "the services whose errors it explains"
    if onset is None or ctx.first_onset is None:
        return 0.0, None
    lag = onset - ctx.first_onset
    window = ctx.config.onset_window_s
    value = 1.0 if lag <= 0 else max(0.0, 1.0 - lag / window) if window > 0 else 0.0
    if ev is None:
        return value, None  # its onset is its callers': no sentence of its own
    if via is not None:
        return value, f"onset of {via}" + (" (the first)" if lag <= 0 else "")
    if lag <= 0:
        top = _top_signal(ev) if ev is not None else None
        what = f" ({_short(top.metric_name)} at {_clock(top.first_at)})" if top is not None else ""
        return value, f"left its baseline first{what}"
    return value, f"left its baseline {lag:.0f} s after the first service"


def depth_score(service: str, ctx: _Context) -> tuple[float, str | None]:
    """0.6 × (share of its callees that are healthy; 1 without callees) + 0.4 × (share
    of its callers that are anomalous; 0 without callers). Callers include services
    whose error lines name it; a named service counts as an anomalous callee."""
    graph = ctx.graph
    callees = graph.callees(service) | set(ctx.evidence.get(service, _EMPTY).named)
    callees.discard(service)
    callers = graph.callers(service) | set(ctx.named_by.get(service, {}))
    callers.discard(service)
    suspects = ctx.anomalous | set(ctx.named_by)
    sick_callees = sorted(c for c in callees if c in suspects)
    sick_callers = sorted(c for c in callers if c in ctx.anomalous)
    down = 1.0 - len(sick_callees) / len(callees) if callees else 1.0
    up = len(sick_callers) / len(callers) if callers else 0.0
    value = 0.6 * down + 0.4 * up
    if sick_callers and not sick_callees:
        below = ", healthy callees below" if callees else ""
        return value, ("deepest anomalous service: anomalous callers above "
                       f"({', '.join(_short(c) for c in sick_callers[:3])}){below}")
    if sick_callees and value < ctx.config.min_reason_score:
        names = ", ".join(_short(c) for c in sick_callees[:3])
        return value, f"its callees are anomalous too ({names})"
    return value, None


_EMPTY = ServiceEvidence(service="", onset=None)


def signature_score(service: str, ctx: _Context) -> tuple[float, FaultKind, str | None]:
    """The strongest signature among its signals, as (value, fault kind, reason):
    resource → ``resource``; errors → ``code_error``; latency without resource →
    ``network_delay`` (× ``client_latency_factor`` when its client-side latency — its
    own outgoing calls — moved at least as much as its server-side latency: its
    callees are slow);
    alerts, traffic, other → ``unknown``. A service without telemetry named in error
    lines → ``code_error`` with value 0 (its evidence is the naming)."""
    cfg = ctx.config
    ev = ctx.evidence.get(service)
    if ev is None or not ev.has_telemetry:
        return 0.0, "code_error", None
    fams = {s.family for s in ev.signals}
    if "resource" in fams:
        top = _top_signal(ev, ("resource",))
        assert top is not None
        return cfg.sig_resource, "resource", (
            f"resource saturation: {_short(top.metric_name)} z={top.z:.1f}")
    if "error" in fams or (not ev.signals and ev.error_lines):
        top = _top_signal(ev, ("error",))
        what = (f"{_short(top.metric_name)} z={top.z:.1f}" if top
                else f"{ev.error_lines} error lines")
        explainer, why = explained_errors(service, ctx)
        if explainer is not None and why is not None:
            return cfg.sig_error * cfg.explained_factor, "code_error", why
        return cfg.sig_error, "code_error", f"errors of its own: {what}"
    if "latency" in fams:
        lat = [s for s in ev.signals if s.family == "latency"]
        server = [s for s in lat if not _is_client_side(s.metric_name)]
        top = _top_signal(ev, ("latency",))
        assert top is not None
        client = [s for s in lat if _is_client_side(s.metric_name)]
        server_z = max((abs(s.z) for s in server), default=0.0)
        client_z = max((abs(s.z) for s in client), default=0.0)
        if server and server_z > client_z:
            return cfg.sig_latency, "network_delay", (
                f"latency without resource saturation: {_short(top.metric_name)} z={top.z:.1f}")
        # its own outgoing calls are slow (at least as much as it is): a victim's sign
        return cfg.sig_latency * cfg.client_latency_factor, "network_delay", None
    if "alert" in fams:
        return cfg.sig_alert, "unknown", None
    if "traffic" in fams:
        return cfg.sig_traffic, "unknown", None
    return (cfg.sig_other if ev.signals else 0.0), "unknown", None


def named_score(service: str, ctx: _Context) -> tuple[float, str | None]:
    """Error lines of other services naming it: lines / ``named_saturation``, at most 1."""
    namers = ctx.named_by.get(service)
    if not namers:
        return 0.0, None
    lines = sum(namers.values())
    value = min(1.0, lines / max(1, ctx.config.named_saturation))
    who = ", ".join(_short(n) for n in sorted(namers)[:3])
    reason = f"named in {lines} error line{'s' if lines != 1 else ''} of {who}"
    if service not in ctx.evidence:
        reason += "; no telemetry of its own"
    return value, reason


def deployment_score(service: str, ctx: _Context) -> tuple[float, str | None]:
    """1 for a deployment at most ``deployment_window_s`` before its onset (or up to
    ``deployment_grace_s`` after), falling linearly to 0.5 at the window's edge."""
    ev = ctx.evidence.get(service)
    if ev is None or ev.onset is None or not ev.deployments:
        return 0.0, None
    cfg = ctx.config
    best: tuple[float, float, str] | None = None
    for at, version in ev.deployments:
        before = ev.onset - at
        if -cfg.deployment_grace_s <= before <= cfg.deployment_window_s:
            value = 1.0 - 0.5 * max(0.0, before) / max(cfg.deployment_window_s, 1.0)
            if best is None or value > best[0]:
                best = (value, before, version)
    if best is None:
        return 0.0, None
    value, before, version = best
    when = f"{before / 60:.0f} min before its onset" if before >= 60 else "just before its onset"
    return value, f"deployed {_short(version)} {when}"


def _strength(service: str, ctx: _Context) -> float:
    ev = ctx.evidence.get(service)
    if ev is None or not ev.signals or ctx.max_z <= 0:
        return 0.0
    return math.log1p(max(abs(s.z) for s in ev.signals)) / math.log1p(ctx.max_z)


def rank_suspects(
    evidence: Mapping[str, ServiceEvidence],
    graph: ServiceGraph,
    *,
    limit: int = 5,
    config: RcaConfig | None = None,
) -> list[Suspect]:
    """Rank the likely root-cause services, best first.

    Args:
        evidence: service → its evidence (the services of one incident or group).
        graph: the service graph (edges among these services are read).
        limit: at most this many suspects.
        config: weights and windows (:class:`RcaConfig`; its defaults when ``None``).

    Returns:
        Up to ``limit`` suspects: every service of ``evidence`` and every service their
        error lines name without evidence of its own (``has_telemetry=False``); score in
        [0, 1] (rounded to 4 places), ties broken by service name. Empty when
        ``evidence`` is empty.
    """
    cfg = config or DEFAULT_CONFIG
    ev = dict(evidence)
    named_by: dict[str, dict[str, int]] = {}
    for name, e in ev.items():
        for target in e.named:
            if target != name:
                named_by.setdefault(target, {})[name] = e.lines_naming(target)
    anomalous = {n for n, e in ev.items() if e.signals or e.error_lines}
    onsets = [e.onset for e in ev.values() if e.onset is not None]
    max_z = max((abs(s.z) for e in ev.values() for s in e.signals), default=0.0)
    ctx = _Context(ev, anomalous, graph, cfg, min(onsets) if onsets else None, max_z, named_by)
    total = cfg.total_weight()
    scored: list[tuple[float, str, Suspect]] = []
    for service in sorted(set(ev) | set(named_by)):
        reasons: list[tuple[float, str]] = []
        raw = 0.0
        sig_value, kind, sig_reason = signature_score(service, ctx)
        for weight, (value, reason) in (
            (cfg.w_named, named_score(service, ctx)),
            (cfg.w_deployment, deployment_score(service, ctx)),
            (cfg.w_signature, (sig_value, sig_reason)),
            (cfg.w_depth, depth_score(service, ctx)),
            (cfg.w_onset, onset_score(service, ctx)),
        ):
            raw += weight * value
            if reason is not None:
                reasons.append((weight * value, reason))
        raw += cfg.w_strength * _strength(service, ctx)
        if deployment_score(service, ctx)[0] > 0:
            kind = "bad_deployment"
        score = round(min(1.0, max(0.0, raw / total)), 4)
        has_telemetry = service in ev and ev[service].has_telemetry
        ordered = [r[:_REASON_CHARS] for _, r in sorted(reasons, key=lambda p: -p[0])][:10]
        scored.append((score, service, Suspect(
            service=service, score=score, fault_kind=kind, reasons=ordered,
            has_telemetry=has_telemetry)))
    scored.sort(key=lambda t: (-t[0], t[1]))
    return [s for _, _, s in scored[:max(0, limit)]]


def rank_incident(
    incident: Incident, graph: ServiceGraph, *, limit: int = 5,
    config: RcaConfig | None = None,
) -> list[Suspect]:
    """The suspects of one incident alone: its own service and the services its error
    lines name (known ones are ``graph.services()``), ranked by :func:`rank_suspects`."""
    evidence = evidence_from_incident(incident, graph.services())
    return rank_suspects({incident.service: evidence}, graph, limit=limit, config=config)
