"""The service graph: who calls whom (caller → callee), from configuration, telemetry
labels, traces, error lines and learning (issue #16, docs/rca.md).

Pure core: no Faust, no network. The grouping agent keeps one :class:`ServiceGraph` in
a table (``to_dict``/``from_dict``), merged with the ``AUTOPILOT_SERVICE_GRAPH`` file
(:func:`load_graph_file`); ``GET /service-graph`` shows :meth:`ServiceGraph.to_view`.

Sources of edges (:data:`EdgeSource`):

* ``config``: the ``AUTOPILOT_SERVICE_GRAPH`` file; never evicted;
* ``label``: a metric or log label naming the peer (:func:`edges_from_labels`);
* ``trace``: log lines with trace and span ids (:class:`TraceLinker`);
* ``logs``: a caller's error line naming a dependency (:func:`named_services`);
* ``learned``: inferred from the data (e.g. the benchmark's dependency learning).

Memory is bounded: beyond ``max_edges`` the least recently seen edge that has no
``config`` source is dropped.
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

__all__ = [
    "EDGE_SOURCES",
    "PEER_LABELS",
    "Edge",
    "EdgeSource",
    "GraphFileError",
    "ServiceGraph",
    "TraceLinker",
    "edges_from_labels",
    "load_graph_file",
    "named_services",
]

EdgeSource = Literal["config", "label", "trace", "logs", "learned"]
#: Every edge source, in the order :meth:`ServiceGraph.to_view` lists them.
EDGE_SOURCES: tuple[EdgeSource, ...] = get_args(EdgeSource)

#: Labels whose value names the service a metric's or log line's service calls.
PEER_LABELS: tuple[str, ...] = (
    "peer_service", "peer.service", "upstream", "destination_service",
    "destination_workload", "target", "server_service",
)

#: Longest service name kept (as :class:`autopilot.models.Suspect`).
_MAX_NAME = 256


@dataclass(frozen=True)
class Edge:
    """One caller → callee edge.

    ``sources`` says where it was seen; ``count`` how many observations (each call of
    :meth:`ServiceGraph.observe`); ``last_seen`` the newest observation, epoch seconds
    (event time).
    """

    caller: str
    callee: str
    sources: frozenset[EdgeSource]
    count: int
    last_seen: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: ``{"caller", "callee", "sources": [...], "count", "last_seen"}``."""
        return {
            "caller": self.caller,
            "callee": self.callee,
            "sources": [s for s in EDGE_SOURCES if s in self.sources],
            "count": self.count,
            "last_seen": self.last_seen,
        }


@dataclass
class ServiceGraph:
    """A directed graph of service calls, keyed ``(caller, callee)``.

    Adjacency (``callers``/``callees``) is kept alongside ``edges`` so neighbour
    look-ups are O(degree). ``max_edges`` bounds memory (see the module docstring).
    """

    edges: dict[tuple[str, str], Edge] = field(default_factory=dict)
    max_edges: int = 5000
    _out: dict[str, set[str]] = field(default_factory=dict, init=False, repr=False)
    _in: dict[str, set[str]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_edges < 1:
            raise ValueError(f"max_edges must be at least 1, got {self.max_edges}")
        for caller, callee in self.edges:
            self._link(caller, callee)

    def _link(self, caller: str, callee: str) -> None:
        self._out.setdefault(caller, set()).add(callee)
        self._in.setdefault(callee, set()).add(caller)

    def _unlink(self, caller: str, callee: str) -> None:
        out = self._out.get(caller)
        if out is not None:
            out.discard(callee)
            if not out:
                del self._out[caller]
        inn = self._in.get(callee)
        if inn is not None:
            inn.discard(caller)
            if not inn:
                del self._in[callee]

    def observe(self, caller: str, callee: str, source: EdgeSource, at: float) -> bool:
        """Record one observation of ``caller`` calling ``callee``.

        Args:
            caller, callee: service names (surrounding blanks stripped; a self-edge or
                an empty name is ignored).
            source: where it was seen (:data:`EdgeSource`).
            at: event time, epoch seconds.

        Returns:
            True when the edge, or this source for it, is new (worth persisting or
            forwarding); False otherwise.
        """
        caller, callee = caller.strip()[:_MAX_NAME], callee.strip()[:_MAX_NAME]
        if not caller or not callee or caller == callee:
            return False
        key = (caller, callee)
        old = self.edges.get(key)
        if old is None:
            self.edges[key] = Edge(caller, callee, frozenset((source,)), 1, at)
            self._link(caller, callee)
            self._evict()
            return key in self.edges
        new_source = source not in old.sources
        self.edges[key] = Edge(
            caller, callee, old.sources | {source}, old.count + 1, max(old.last_seen, at))
        return new_source

    def _evict(self) -> None:
        while len(self.edges) > self.max_edges:
            candidates = [e for e in self.edges.values() if "config" not in e.sources]
            if not candidates:
                return
            victim = min(candidates, key=lambda e: (e.last_seen, e.caller, e.callee))
            del self.edges[(victim.caller, victim.callee)]
            self._unlink(victim.caller, victim.callee)

    def merge(self, other: ServiceGraph) -> None:
        """Add ``other``'s edges into this graph (sources united, counts added, the
        newer ``last_seen`` kept)."""
        for key, edge in other.edges.items():
            old = self.edges.get(key)
            if old is None:
                self.edges[key] = edge
                self._link(*key)
            else:
                self.edges[key] = Edge(
                    edge.caller, edge.callee, old.sources | edge.sources,
                    old.count + edge.count, max(old.last_seen, edge.last_seen))
        self._evict()

    def callees(self, service: str) -> set[str]:
        """Services ``service`` calls (a copy)."""
        return set(self._out.get(service, ()))

    def callers(self, service: str) -> set[str]:
        """Services that call ``service`` (a copy)."""
        return set(self._in.get(service, ()))

    def services(self) -> set[str]:
        """Every service that is an end of an edge."""
        return set(self._out) | set(self._in)

    def hops(self, a: str, b: str, max_hops: int) -> int | None:
        """Undirected BFS distance from ``a`` to ``b`` in edges (0 when equal);
        ``None`` when farther than ``max_hops`` or unconnected."""
        if a == b:
            return 0
        if max_hops < 1:
            return None
        seen = {a}
        frontier = deque([(a, 0)])
        while frontier:
            node, dist = frontier.popleft()
            if dist >= max_hops:
                continue
            for nxt in self._out.get(node, set()) | self._in.get(node, set()):
                if nxt == b:
                    return dist + 1
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append((nxt, dist + 1))
        return None

    def within(self, service: str, max_hops: int) -> dict[str, int]:
        """Every service at most ``max_hops`` edges from ``service`` (either direction)
        → its distance (``service`` itself → 0). Cost: the size of that neighbourhood."""
        dist = {service: 0}
        frontier = deque([service])
        while frontier:
            node = frontier.popleft()
            d = dist[node]
            if d >= max_hops:
                continue
            for nxt in self._out.get(node, set()) | self._in.get(node, set()):
                if nxt not in dist:
                    dist[nxt] = d + 1
                    frontier.append(nxt)
        return dist

    def depth_order(self, services: Iterable[str]) -> list[str]:
        """``services`` ordered deepest first: by how many of the others each one
        reaches through callee edges (fewest first), ties by name. Only edges among
        ``services`` count; cost O(n × edges among them), for small sets."""
        group = set(services)
        below: dict[str, int] = {}
        for s in group:
            seen: set[str] = set()
            stack = [s]
            while stack:
                node = stack.pop()
                for nxt in self._out.get(node, ()):
                    if nxt in group and nxt not in seen and nxt != s:
                        seen.add(nxt)
                        stack.append(nxt)
            below[s] = len(seen)
        return sorted(group, key=lambda s: (below[s], s))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state: ``{"max_edges": int, "edges": [Edge.to_dict(), ...]}``."""
        return {
            "max_edges": self.max_edges,
            "edges": [self.edges[k].to_dict() for k in sorted(self.edges)],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ServiceGraph:
        """Inverse of :meth:`to_dict`. ``None`` gives an empty graph; unknown keys and
        unknown edge sources are ignored; malformed edges are skipped."""
        if not data:
            return cls()
        max_edges = data.get("max_edges", 5000)
        graph = cls(max_edges=max_edges if isinstance(max_edges, int) and max_edges > 0
                    else 5000)
        for raw in data.get("edges") or ():
            if not isinstance(raw, Mapping):
                continue
            caller, callee = raw.get("caller"), raw.get("callee")
            if not isinstance(caller, str) or not isinstance(callee, str) or caller == callee:
                continue
            if not caller or not callee:
                continue
            sources = frozenset(s for s in raw.get("sources") or () if s in EDGE_SOURCES)
            if not sources:
                sources = frozenset(("learned",))
            count = raw.get("count", 1)
            last_seen = raw.get("last_seen", 0.0)
            graph.edges[(caller, callee)] = Edge(
                caller, callee, sources,
                count if isinstance(count, int) and count > 0 else 1,
                float(last_seen) if isinstance(last_seen, int | float) else 0.0)
            graph._link(caller, callee)
        graph._evict()
        return graph

    def to_view(self) -> dict[str, Any]:
        """What ``GET /service-graph`` shows: ``{"services": [sorted names], "edges":
        [{"caller", "callee", "sources": [...], "count", "last_seen"}]}`` (sorted)."""
        return {
            "services": sorted(self.services()),
            "edges": [self.edges[k].to_dict() for k in sorted(self.edges)],
        }


class GraphFileError(ValueError):
    """An ``AUTOPILOT_SERVICE_GRAPH`` file that cannot be read; ``line`` is the 1-based
    line at fault (0 when the file itself cannot be read)."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        where = f"line {line}: " if line else ""
        super().__init__(f"service graph file {path}: {where}{reason}")


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@-]*$")


def load_graph_file(path: str | Path) -> ServiceGraph:
    """Read a file of caller → callee edges into a graph (source ``config``).

    Format, one edge per line: ``caller -> callee`` or ``caller,callee`` (CSV; a
    third column, a weight, is allowed and ignored; a header ``Source,Target[,Weight]``
    as in Nezha's ``dependency.csv`` is skipped). ``#`` starts a comment; blank lines
    are ignored. ``last_seen`` of every edge is 0 (configuration has no time).

    Raises:
        GraphFileError: the file cannot be read, or a line is not an edge (the message
            says ``line N: ...``).
    """
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark
    except (OSError, UnicodeDecodeError) as exc:
        raise GraphFileError(name, 0, f"cannot be read: {exc}") from None
    graph = ServiceGraph(max_edges=1_000_000)
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if "->" in line:
            parts = [p.strip() for p in line.split("->")]
            if len(parts) != 2:
                raise GraphFileError(name, number, f"expected 'caller -> callee', got {raw!r}")
        elif "," in line:
            parts = [p.strip().strip('"') for p in line.split(",")]
            if [p.lower() for p in parts[:2]] == ["source", "target"]:
                continue
            if len(parts) not in (2, 3):
                raise GraphFileError(
                    name, number, f"expected 'caller,callee[,weight]', got {raw!r}")
            if len(parts) == 3:
                try:
                    float(parts[2])
                except ValueError:
                    raise GraphFileError(
                        name, number, f"weight {parts[2]!r} is not a number") from None
            parts = parts[:2]
        else:
            raise GraphFileError(
                name, number, f"expected 'caller -> callee' or 'caller,callee', got {raw!r}")
        caller, callee = parts
        for label, value in (("caller", caller), ("callee", callee)):
            if not value:
                raise GraphFileError(name, number, f"the {label} is empty")
            if len(value) > _MAX_NAME or not _NAME_RE.match(value):
                raise GraphFileError(name, number, f"{label} {value!r} is not a service name")
        if caller == callee:
            raise GraphFileError(name, number, f"{caller!r} calls itself")
        graph.observe(caller, callee, "config", 0.0)
    graph.max_edges = max(5000, len(graph.edges))
    return graph


def edges_from_labels(
    service: str, labels: Mapping[str, str], peer_labels: Iterable[str] = PEER_LABELS,
) -> list[tuple[str, str]]:
    """Caller → callee pairs a record's labels carry: ``(service, value)`` for every
    label of ``peer_labels`` present with a non-empty value other than ``service``
    (in ``peer_labels`` order, without duplicates)."""
    out: list[tuple[str, str]] = []
    for name in peer_labels:
        value = labels.get(name)
        if not isinstance(value, str):
            continue
        value = value.strip()[:_MAX_NAME]
        if value and value != service and (service, value) not in out:
            out.append((service, value))
    return out


# ---- services named in error lines ----------------------------------------------

_TOKEN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# The look-behind makes a host start at a token's start only (no quadratic retries
# inside long tokens).
_HOST = r"(?<![\w.:/@-])(?:[a-z][a-z0-9+.-]*://)?([A-Za-z][A-Za-z0-9_-]*[A-Za-z0-9])"
#: Only this much of a line is read (error lines name their dependency early).
_MAX_SCAN = 2000
#: Dependency phrases that name a service the autopilot may not know (conservative:
#: each names the *other* side of a failed call). Group 1 is the host name.
_PHRASES: tuple[re.Pattern[str], ...] = tuple(re.compile(p, re.IGNORECASE) for p in (
    _HOST + r"(?:[.:/][^\s]*)? (?:did not|didn't) (?:answer|respond|reply)",
    _HOST + r"(?:[.:/][^\s]*)? (?:is )?(?:unavailable|unreachable|not responding)",
    r"timed? ?out (?:while )?(?:calling|connecting to|waiting for|talking to) " + _HOST,
    r"timeout (?:while )?(?:calling|connecting to|waiting for|talking to) " + _HOST,
    r"\bupstream (?:service )?['\"]?" + _HOST,
    r"connection refused\b.*?\b(?:to|from|at|host) ['\"]?" + _HOST,
    r"(?:connect|connection) to " + _HOST + r"(?:[.:/][^\s]*)? (?:failed|refused|timed out)",
    r"(?:error|failure|failed) (?:calling|from|contacting) ['\"]?" + _HOST,
    r"deadline exceeded (?:while )?(?:calling|connecting to|waiting for) ['\"]?" + _HOST,
))
#: Words the phrase set must never take for a service name.
_STOP = frozenset({
    "the", "a", "an", "it", "server", "service", "host", "request", "connection", "upstream",
    "downstream", "backend", "remote", "peer", "timeout", "error", "call", "database",
    "http", "https", "localhost", "this", "that", "client", "response", "socket",
})


def named_services(message: str, known: Iterable[str], self_service: str) -> tuple[str, ...]:
    """Services an error line names, other than ``self_service``.

    * A known service counts when its name appears as a whole token: ``payments-gateway``,
      ``payments-gateway:8080``, ``http://payments-gateway/charge``,
      ``payments-gateway.default.svc.cluster.local`` (a token is a run of letters,
      digits, ``_``, ``-`` and ``.``; the name must equal the token or its first
      dot-separated part(s)).
    * An unknown name counts only in a clear dependency phrase (``<name> did not
      answer``, ``<name> is unavailable``, ``timeout calling <name>``, ``upstream
      <name>``, ``connection refused ... to <host>``, ``connect to <name> failed``,
      ``error calling <name>``), its host part taken, and common words refused.

    Only the first 2,000 characters of ``message`` are read; cost is linear in them.

    Returns:
        The names in first-appearance order, without duplicates.
    """
    message = message[:_MAX_SCAN]
    known_set = {k for k in known if k and k != self_service}
    found: list[str] = []
    if known_set:
        for match in _TOKEN_RE.finditer(message):
            token = match.group(0).rstrip(".")
            candidates = [token]
            parts = token.split(".")
            candidates.extend(".".join(parts[:i]) for i in range(1, len(parts)))
            for cand in candidates:
                if cand in known_set and cand not in found:
                    found.append(cand)
                    break
    positions: list[tuple[int, str]] = []
    for pattern in _PHRASES:
        for match in pattern.finditer(message):
            name = match.group(1)
            if name.lower() in _STOP or name == self_service or name.isdigit():
                continue
            if len(name) < 3 or len(name) > _MAX_NAME:
                continue
            positions.append((match.start(1), name))
    for _, name in sorted(positions):
        if name not in found:
            found.append(name)
    return tuple(found)


# ---- trace linking ----------------------------------------------------------------


@dataclass
class _Trace:
    spans: dict[str, str] = field(default_factory=dict)  # span id → service
    pending: list[tuple[str, str]] = field(default_factory=list)  # (parent span, service)
    order: list[str] = field(default_factory=list)  # services by first-seen time
    first_at: dict[str, float] = field(default_factory=dict)
    counted: set[tuple[str, str]] = field(default_factory=set)  # order pairs counted


class TraceLinker:
    """Caller → callee edges from log lines that carry trace (and span) ids.

    * With parent span ids: the parent span's service calls the child's (returned at
      once, each pair once per linker; a child seen before its parent waits in the
      trace until the parent appears).
    * Without: within one trace, a service first seen *later* is called by the
      service first seen just before it (adjacent first-seen order only); such a pair
      is returned once it has the support of ``min_support`` traces.

    Memory: at most ``max_traces`` traces (least recently touched dropped), at most
    ``max_spans`` spans per trace, and at most ``max_pairs`` support counters.
    """

    def __init__(self, max_traces: int = 10000, min_support: int = 3,
                 max_spans: int = 256, max_pairs: int = 10000) -> None:
        if max_traces < 1 or min_support < 1:
            raise ValueError("max_traces and min_support must be at least 1")
        self.max_traces = max_traces
        self.min_support = min_support
        self.max_spans = max_spans
        self.max_pairs = max_pairs
        self._traces: OrderedDict[str, _Trace] = OrderedDict()
        self._support: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._emitted: set[tuple[str, str]] = set()

    def _emit(self, pair: tuple[str, str], out: list[tuple[str, str]]) -> None:
        if pair[0] != pair[1] and pair not in self._emitted:
            if len(self._emitted) >= self.max_pairs:
                self._emitted.clear()
            self._emitted.add(pair)
            out.append(pair)

    def observe(self, trace_id: str, span_id: str | None, parent_span_id: str | None,
                service: str, at: float) -> list[tuple[str, str]]:
        """One log line of ``service`` in trace ``trace_id`` at ``at`` (epoch s).

        Returns:
            The caller → callee pairs this line makes known for the first time.
        """
        out: list[tuple[str, str]] = []
        if not trace_id or not service:
            return out
        trace = self._traces.get(trace_id)
        if trace is None:
            trace = self._traces[trace_id] = _Trace()
            while len(self._traces) > self.max_traces:
                self._traces.popitem(last=False)
        else:
            self._traces.move_to_end(trace_id)
        if span_id and span_id not in trace.spans and len(trace.spans) < self.max_spans:
            trace.spans[span_id] = service
            still: list[tuple[str, str]] = []
            for parent, child in trace.pending:
                if parent == span_id:
                    self._emit((service, child), out)
                else:
                    still.append((parent, child))
            trace.pending = still
        if parent_span_id:
            parent_service = trace.spans.get(parent_span_id)
            if parent_service is not None:
                self._emit((parent_service, service), out)
            elif len(trace.pending) < self.max_spans:
                trace.pending.append((parent_span_id, service))
            return out
        if service in trace.first_at:
            return out
        if len(trace.order) >= self.max_spans:
            return out
        trace.first_at[service] = at
        # insert in first-seen order (lines may come slightly out of order)
        index = len(trace.order)
        while index > 0 and trace.first_at[trace.order[index - 1]] > at:
            index -= 1
        trace.order.insert(index, service)
        for i in range(1, len(trace.order)):
            pair = (trace.order[i - 1], trace.order[i])
            if pair in trace.counted:
                continue
            trace.counted.add(pair)
            support = self._support.get(pair, 0) + 1
            self._support[pair] = support
            self._support.move_to_end(pair)
            while len(self._support) > self.max_pairs:
                self._support.popitem(last=False)
            if support >= self.min_support:
                self._emit(pair, out)
        return out
