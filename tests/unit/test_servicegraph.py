"""The service graph (autopilot.servicegraph): edges, bounds, the graph file, peer
labels, services named in error lines, and trace linking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autopilot.servicegraph import (
    PEER_LABELS,
    GraphFileError,
    ServiceGraph,
    TraceLinker,
    edges_from_labels,
    load_graph_file,
    named_services,
)


def chain(*services: str) -> ServiceGraph:
    graph = ServiceGraph()
    for caller, callee in zip(services, services[1:], strict=False):
        graph.observe(caller, callee, "config", 0.0)
    return graph


def test_observe_reports_new_edges_and_new_sources_only() -> None:
    graph = ServiceGraph()
    assert graph.observe("checkout", "db", "label", 10.0) is True
    assert graph.observe("checkout", "db", "label", 20.0) is False
    assert graph.observe("checkout", "db", "trace", 15.0) is True
    edge = graph.edges[("checkout", "db")]
    assert edge.sources == {"label", "trace"}
    assert edge.count == 3
    assert edge.last_seen == 20.0
    assert graph.observe("db", "db", "label", 1.0) is False  # self-edge ignored
    assert graph.observe("", "db", "label", 1.0) is False
    assert graph.callees("checkout") == {"db"}
    assert graph.callers("db") == {"checkout"}
    assert graph.services() == {"checkout", "db"}


def test_hops_is_undirected_and_bounded() -> None:
    graph = chain("frontend", "checkout", "db")
    graph.observe("cart", "db", "label", 0.0)
    assert graph.hops("frontend", "db", 2) == 2
    assert graph.hops("db", "frontend", 2) == 2  # against the call direction too
    assert graph.hops("frontend", "cart", 2) is None  # 3 hops away
    assert graph.hops("frontend", "cart", 3) == 3
    assert graph.hops("frontend", "elsewhere", 5) is None
    assert graph.hops("db", "db", 0) == 0
    assert graph.within("checkout", 1) == {"checkout": 0, "frontend": 1, "db": 1}


def test_depth_order_puts_the_leaf_first() -> None:
    graph = chain("frontend", "checkout", "db")
    assert graph.depth_order(["frontend", "checkout", "db"]) == ["db", "checkout", "frontend"]


def test_max_edges_drops_the_least_recently_seen_but_never_config() -> None:
    graph = ServiceGraph(max_edges=2)
    graph.observe("a", "b", "config", 0.0)
    graph.observe("c", "d", "label", 5.0)
    graph.observe("e", "f", "label", 9.0)
    assert set(graph.edges) == {("a", "b"), ("e", "f")}
    assert graph.callees("c") == set() and graph.callers("d") == set()
    graph.observe("g", "h", "trace", 1.0)  # the newest is kept even if older in time
    assert ("a", "b") in graph.edges and len(graph.edges) == 2


def test_round_trip_merge_and_view() -> None:
    graph = chain("frontend", "checkout", "db")
    graph.observe("checkout", "db", "trace", 42.0)
    data = json.loads(json.dumps(graph.to_dict()))
    again = ServiceGraph.from_dict(data)
    assert again.to_dict() == graph.to_dict()
    assert again.callers("db") == {"checkout"}
    assert ServiceGraph.from_dict(None).edges == {}
    tolerant = ServiceGraph.from_dict({"edges": [
        {"caller": "a", "callee": "b", "sources": ["label", "martian"], "extra": 1},
        {"caller": "a"}, "junk"], "unknown": True})
    assert set(tolerant.edges) == {("a", "b")}
    assert tolerant.edges[("a", "b")].sources == {"label"}
    other = ServiceGraph()
    other.observe("checkout", "db", "logs", 50.0)
    graph.merge(other)
    assert graph.edges[("checkout", "db")].sources == {"config", "trace", "logs"}
    assert graph.edges[("checkout", "db")].last_seen == 50.0
    view = graph.to_view()
    assert view["services"] == ["checkout", "db", "frontend"]
    assert view["edges"][0] == {"caller": "checkout", "callee": "db",
                                "sources": ["config", "trace", "logs"], "count": 3,
                                "last_seen": 50.0}


def test_graph_file_arrows_csv_and_nezha_header(tmp_path: Path) -> None:
    arrows = tmp_path / "graph.txt"
    arrows.write_text("# shop\nfrontend -> checkout\n\ncheckout->db  # the database\n")
    graph = load_graph_file(arrows)
    assert set(graph.edges) == {("frontend", "checkout"), ("checkout", "db")}
    assert all(e.sources == {"config"} for e in graph.edges.values())
    nezha = tmp_path / "dependency.csv"
    nezha.write_text("Source,Target,Weight\nfrontend,cartservice,12\nfrontend,adservice,3\n")
    assert load_graph_file(nezha).callees("frontend") == {"cartservice", "adservice"}
    # A spreadsheet's "CSV UTF-8" export: a byte-order mark and CRLF line ends.
    excel = tmp_path / "excel.csv"
    excel.write_bytes("\ufeffSource,Target,Weight\r\nfrontend,cartservice,1\r\n".encode())
    assert load_graph_file(excel).callees("frontend") == {"cartservice"}


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ("a -> b\nb -> \n", 2, "callee is empty"),
    ("a -> b -> c\n", 1, "caller -> callee"),
    ("a b\n", 1, "caller -> callee"),
    ("a,b,heavy\n", 1, "not a number"),
    ("\n# c\na -> a\n", 3, "calls itself"),
    ("a -> b c\n", 1, "not a service name"),
])
def test_graph_file_refuses_a_wrong_line_with_its_number(
        tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = tmp_path / "g.txt"
    path.write_text(text)
    with pytest.raises(GraphFileError) as info:
        load_graph_file(path)
    assert info.value.line == line
    assert f"line {line}: " in str(info.value)
    assert fragment in str(info.value)


def test_graph_file_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(GraphFileError, match="cannot be read"):
        load_graph_file(tmp_path / "missing.txt")


def test_edges_from_labels() -> None:
    assert "peer_service" in PEER_LABELS
    labels = {"peer_service": "db", "upstream": "db", "target": "cache", "pod": "x",
              "destination_service": "checkout"}
    assert edges_from_labels("checkout", labels) == [("checkout", "db"), ("checkout", "cache")]
    assert edges_from_labels("checkout", {"pod": "x"}) == []
    assert edges_from_labels("a", {"via": "b"}, peer_labels=("via",)) == [("a", "b")]


@pytest.mark.parametrize("message", [
    "payments-gateway did not answer within 3000 ms",
    "POST http://payments-gateway/charge failed: 502",
    "dial tcp payments-gateway:8080: i/o timeout",
    "lookup payments-gateway.default.svc.cluster.local failed",
])
def test_named_services_finds_a_known_service_as_a_token(message: str) -> None:
    assert named_services(message, ["payments-gateway", "checkout-api"],
                          "checkout-api") == ("payments-gateway",)


def test_named_services_is_conservative() -> None:
    known = ["payments-gateway", "db"]
    # part of a longer word is not a name; the service itself is not named
    assert named_services("payments-gateway-v2 restarted", known, "x") == ()
    assert named_services("dbx and adb are fine", known, "x") == ()
    assert named_services("payments-gateway is slow", known, "payments-gateway") == ()
    # unknown names only in clear dependency phrases, never common words
    assert named_services("inventory-svc did not answer within 200 ms", [], "x") == (
        "inventory-svc",)
    assert named_services("timeout calling ledger:9000 after 3 tries", [], "x") == ("ledger",)
    assert named_services("upstream fraud-check returned 503", [], "x") == ("fraud-check",)
    assert named_services("context deadline exceeded calling payments-gateway", [], "x") == (
        "payments-gateway",)
    assert named_services("context deadline exceeded", [], "x") == ()
    assert named_services("the server did not answer", [], "x") == ()
    assert named_services("NullPointerException in OrderHandler", [], "x") == ()


def test_trace_linker_with_parent_spans() -> None:
    linker = TraceLinker()
    assert linker.observe("t1", "s1", None, "frontend", 1.0) == []
    assert linker.observe("t1", "s2", "s1", "checkout", 2.0) == [("frontend", "checkout")]
    # child before parent: linked when the parent arrives
    assert linker.observe("t2", "s9", "s8", "db", 3.0) == []
    assert linker.observe("t2", "s8", "s7", "checkout", 4.0) == [("checkout", "db")]
    # each pair once
    assert linker.observe("t3", "a", None, "frontend", 5.0) == []
    assert linker.observe("t3", "b", "a", "checkout", 6.0) == []


def test_trace_linker_without_spans_needs_support() -> None:
    linker = TraceLinker(min_support=3)
    found: list[tuple[str, str]] = []
    for i in range(3):
        trace = f"t{i}"
        found += linker.observe(trace, None, None, "frontend", 10.0 * i)
        found += linker.observe(trace, None, None, "checkout", 10.0 * i + 1)
        found += linker.observe(trace, None, None, "db", 10.0 * i + 2)
        if i < 2:
            assert found == []  # below min_support
    assert sorted(found) == [("checkout", "db"), ("frontend", "checkout")]
    # only adjacent first-seen order: frontend → db is never claimed
    assert ("frontend", "db") not in found


def test_trace_linker_memory_is_bounded() -> None:
    linker = TraceLinker(max_traces=5)
    for i in range(100):
        linker.observe(f"t{i}", "s", None, "frontend", float(i))
    assert len(linker._traces) == 5


def test_named_services_reads_a_bounded_prefix_of_a_line() -> None:
    # a 64 KiB token and a name past the first 2,000 characters: quick, and not read
    assert named_services("a" * 65536, ["db"], "x") == ()
    assert named_services("x " * 1500 + "db did not answer", ["db"], "x") == ()
    assert named_services("x " * 500 + "db did not answer", ["db"], "x") == ("db",)
