"""Root-cause ranking (autopilot.rca) on small constructed cascades.

Each cascade has a control that changes the deciding evidence and shows the ranking
follows it. Orders are checked (never exact scores), also under moderately changed
weights, so the benchmark may tune the defaults.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from autopilot.models import Incident
from autopilot.rca import (
    RcaConfig,
    ServiceEvidence,
    SignalEvidence,
    directed_family,
    evidence_from_anomaly,
    evidence_from_incident,
    family,
    rank_incident,
    rank_suspects,
)
from autopilot.servicegraph import ServiceGraph
from tests.factories import anomaly, incident, log_entry

T0 = 1_714_564_800.0  # 2024-05-01 12:00 UTC

#: The defaults and moderate changes of them: every cascade must hold under each.
CONFIGS = [
    RcaConfig(),
    RcaConfig(w_onset=0.35, w_depth=0.2, w_signature=0.25),
    RcaConfig(w_depth=0.35, w_named=0.25, w_deployment=0.25, w_strength=0.1),
    RcaConfig(w_signature=0.15, sig_latency=0.6, onset_window_s=600.0),
]


def ev(service: str, *signals: tuple[str, float, float], onset: float | None = None,
       deployments: tuple[tuple[float, str], ...] = (), named: tuple[str, ...] = (),
       error_lines: int = 0) -> ServiceEvidence:
    """Evidence of ``service`` with signals ``(metric_name, z, first_at)``."""
    sigs = tuple(SignalEvidence(metric_name=m, family=family(m, "metric"), z=z, first_at=at,
                                firing=True) for m, z, at in signals)
    first = min((s.first_at for s in sigs), default=None)
    return ServiceEvidence(service=service, onset=onset if onset is not None else first,
                           signals=sigs, deployments=deployments, named=named,
                           error_lines=error_lines)


def graph_of(*edges: tuple[str, str]) -> ServiceGraph:
    graph = ServiceGraph()
    for caller, callee in edges:
        graph.observe(caller, callee, "config", 0.0)
    return graph


def order(evidence: list[ServiceEvidence], graph: ServiceGraph,
          config: RcaConfig | None = None) -> list[str]:
    return [s.service for s in rank_suspects({e.service: e for e in evidence}, graph,
                                             config=config)]


@pytest.mark.parametrize(("name", "kind", "expected"), [
    ("CpuUsage(m)", "metric", "resource"),
    ("MemoryUsageRate(%)", "metric", "resource"),
    ("jvm_gc_pause_seconds", "metric", "resource"),
    ("SyscallRead", "metric", "resource"),
    ("PodServerLatencyP90(s)", "metric", "latency"),
    ("http_latency_p99_ms", "metric", "latency"),
    ("request_duration_seconds", "metric", "latency"),
    ("PodSuccessRate(%)", "metric", "error"),
    ("http_5xx_total", "metric", "error"),
    ("errors", "error_rate", "error"),
    ("PodWorkload(Ops)", "metric", "traffic"),
    ("NetworkReceiveBytes", "metric", "traffic"),
    ("http_requests_per_second", "metric", "traffic"),
    ("HighCPU", "alert", "alert"),
    ("queue_depth", "metric", "other"),
])
def test_family(name: str, kind: str, expected: str) -> None:
    assert family(name, kind) == expected


@pytest.mark.parametrize("config", CONFIGS)
def test_slow_database_under_two_services(config: RcaConfig) -> None:
    graph = graph_of(("checkout", "db"), ("cart", "db"), ("frontend", "checkout"))
    evidence = [
        ev("db", ("PodServerLatencyP99(s)", 8.0, T0)),
        ev("checkout", ("PodServerLatencyP99(s)", 6.0, T0 + 60)),
        ev("cart", ("PodServerLatencyP99(s)", 5.0, T0 + 60)),
    ]
    suspects = rank_suspects({e.service: e for e in evidence}, graph, config=config)
    assert suspects[0].service == "db"
    assert suspects[0].fault_kind == "network_delay"
    assert any("deepest anomalous service" in r for r in suspects[0].reasons)
    assert any("left its baseline first" in r for r in suspects[0].reasons)
    assert all(0.0 <= s.score <= 1.0 for s in suspects)
    # control: the same signals at the same minute, but the database calls the
    # others (graph reversed): it is no longer the deepest, so no longer first
    same_minute = [e.model_copy(update={"onset": T0, "signals": tuple(
        s.model_copy(update={"first_at": T0}) for s in e.signals)}) for e in evidence]
    assert order(same_minute, graph, config)[0] == "db"
    reversed_graph = graph_of(("db", "checkout"), ("db", "cart"))
    assert order(same_minute, reversed_graph, config)[0] != "db"


@pytest.mark.parametrize("config", CONFIGS)
def test_cpu_starved_leaf(config: RcaConfig) -> None:
    graph = graph_of(("frontend", "checkout"), ("checkout", "payment"))
    evidence = [
        ev("payment", ("CpuUsage(m)", 6.0, T0), ("PodServerLatencyP99(s)", 4.0, T0)),
        ev("checkout", ("PodServerLatencyP99(s)", 7.0, T0),
           ("PodClientLatencyP99(s)", 7.0, T0)),
        ev("frontend", ("PodServerLatencyP99(s)", 9.0, T0 + 60)),
    ]
    suspects = rank_suspects({e.service: e for e in evidence}, graph, config=config)
    assert [s.service for s in suspects] == ["payment", "checkout", "frontend"]
    assert suspects[0].fault_kind == "resource"
    assert any("CpuUsage(m)" in r for r in suspects[0].reasons)
    # control: the leaf without its CPU signal and healthy: the middle service leads
    assert order(evidence[1:], graph, config)[0] == "checkout"


@pytest.mark.parametrize("config", CONFIGS)
def test_bad_deployment_in_the_middle_of_a_chain(config: RcaConfig) -> None:
    graph = graph_of(("frontend", "checkout"), ("checkout", "db"))
    evidence = [
        ev("frontend", ("http_5xx_total", 5.0, T0 + 60)),
        ev("checkout", ("http_5xx_total", 9.0, T0), deployments=((T0 - 300, "v2.4.0"),)),
        ev("db", ("http_requests_per_second", 3.0, T0 + 60)),
    ]
    suspects = rank_suspects({e.service: e for e in evidence}, graph, config=config)
    assert suspects[0].service == "checkout"
    assert suspects[0].fault_kind == "bad_deployment"
    assert any("deployed v2.4.0 5 min before its onset" in r for r in suspects[0].reasons)
    # control: the deployment two hours earlier is no evidence
    old = [e.model_copy(update={"deployments": ((T0 - 7200, "v2.4.0"),)}) if
           e.service == "checkout" else e for e in evidence]
    top = rank_suspects({e.service: e for e in old}, graph, config=config)
    checkout = next(s for s in top if s.service == "checkout")
    assert checkout.fault_kind == "code_error"
    assert not any("deployed" in r for r in checkout.reasons)
    assert checkout.score < suspects[0].score


DEMO_LINE = ("upstream request timeout: payments-gateway did not answer within 3000 ms "
             "(POST /v1/charges); connection pool exhausted (50/50 in use)")


def demo_incident(message: str, lines: int = 20) -> Incident:
    t0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    return incident(
        service="checkout-api",
        errors=[log_entry(message, at=t0 + timedelta(seconds=i), service="checkout-api")
                for i in range(lines)],
        signals=[{"series": "checkout-api:error_rate", "kind": "error_rate",
                  "metric_name": "error_rate", "severity": "critical", "first_at": t0,
                  "last_at": t0, "z_score": 9.0},
                 {"series": "checkout-api:latency", "metric_name": "http_latency_p99_ms",
                  "severity": "high", "first_at": t0, "last_at": t0, "z_score": 6.1}],
    )


def test_the_demo_names_payments_gateway_first_without_telemetry() -> None:
    suspects = rank_incident(demo_incident(DEMO_LINE), ServiceGraph())
    top = suspects[0]
    assert top.service == "payments-gateway"
    assert top.has_telemetry is False
    assert any("named in 20 error lines of checkout-api; no telemetry of its own" in r
               for r in top.reasons)
    assert suspects[1].service == "checkout-api" and suspects[1].has_telemetry
    # control: error lines naming no dependency leave checkout-api alone and first
    plain = rank_incident(demo_incident("NullPointerException in ChargeHandler"),
                          ServiceGraph())
    assert [s.service for s in plain] == ["checkout-api"]
    assert plain[0].fault_kind == "code_error"


def test_evidence_from_incident() -> None:
    evidence = evidence_from_incident(demo_incident(DEMO_LINE, lines=3))
    assert evidence.service == "checkout-api"
    assert evidence.onset == T0
    assert evidence.named == ("payments-gateway",)
    assert evidence.lines_naming("payments-gateway") == 3
    assert evidence.error_lines == 3
    assert {s.family for s in evidence.signals} == {"error", "latency"}
    # a success rate that rose is no error signature
    up = incident(signals=[{"series": "s", "metric_name": "PodSuccessRate(%)",
                            "severity": "high", "first_at": T0, "last_at": T0,
                            "z_score": 4.0}])
    assert evidence_from_incident(up).signals[0].family == "other"
    down = incident(signals=[{"series": "s", "metric_name": "PodSuccessRate(%)",
                              "severity": "high", "first_at": T0, "last_at": T0,
                              "z_score": -4.0}])
    assert evidence_from_incident(down).signals[0].family == "error"


def test_evidence_round_trip_and_bad_input() -> None:
    evidence = ev("checkout", ("CpuUsage(m)", 3.5, T0), deployments=((T0 - 60, "v1"),),
                  named=("db",), error_lines=4)
    data = json.loads(json.dumps(evidence.to_dict()))
    assert ServiceEvidence.from_dict(data) == evidence
    with pytest.raises(ValueError, match="onset"):
        ServiceEvidence.from_dict({**data, "onset": "soon"})
    with pytest.raises(ValueError, match="service"):
        ServiceEvidence.from_dict({k: v for k, v in data.items() if k != "service"})


#: ``SignalEvidence.to_dict()`` / ``ServiceEvidence.to_dict()`` as written by the
#: dataclass versions (before the pydantic models): tables hold these, they must load.
STORED_SIGNAL: dict[str, Any] = {"metric_name": "http_errors_total", "family": "error",
                                 "z": -3.25, "first_at": 1767000060.5, "firing": False}
STORED_SERVICE: dict[str, Any] = {
    "service": "checkout", "onset": 1767000000.0,
    "signals": [{"metric_name": "cpu_usage_percent", "family": "resource", "z": 7.5,
                 "first_at": 1767000000.0, "firing": True}, STORED_SIGNAL],
    "deployments": [[1766999000.0, "v2.4.1"]], "named": ["payments", "db"],
    "named_lines": [3, 1], "error_lines": 4, "has_telemetry": True}
STORED_GHOST: dict[str, Any] = {"service": "ghost", "onset": None, "signals": [],
                                "deployments": [], "named": [], "named_lines": [],
                                "error_lines": 0, "has_telemetry": True}


def test_stored_evidence_of_the_dataclass_versions_loads_unchanged() -> None:
    signal = SignalEvidence.from_dict(STORED_SIGNAL)
    assert signal == SignalEvidence(metric_name="http_errors_total", family="error", z=-3.25,
                                    first_at=1767000060.5, firing=False)
    assert signal.to_dict() == STORED_SIGNAL
    service = ServiceEvidence.from_dict(STORED_SERVICE)
    assert service.deployments == ((1766999000.0, "v2.4.1"),)
    assert service.signals[1] == signal and service.lines_naming("payments") == 3
    assert service.to_dict() == STORED_SERVICE
    assert list(service.to_dict()) == list(STORED_SERVICE)  # same key order
    assert ServiceEvidence.from_dict(STORED_GHOST).to_dict() == STORED_GHOST


def test_evidence_leniency_is_kept() -> None:
    # unknown or missing family → "other", missing firing → True, missing lists empty
    signal = SignalEvidence.from_dict({"metric_name": "m", "family": "weird", "z": 1,
                                       "first_at": 2, "extra": "ignored"})
    assert (signal.family, signal.firing, signal.z) == ("other", True, 1.0)
    bare = ServiceEvidence.from_dict({"service": "a", "signals": None})
    assert bare.to_dict() == {**STORED_GHOST, "service": "a"}
    with pytest.raises(ValueError, match="signals.0.z"):
        ServiceEvidence.from_dict({**STORED_SERVICE, "signals": [{**STORED_SIGNAL, "z": "x"}]})
    for bad in (float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match="first_at"):
            SignalEvidence.from_dict({**STORED_SIGNAL, "first_at": bad})
    with pytest.raises(ValueError, match="deployments"):
        ServiceEvidence.from_dict({**STORED_SERVICE, "deployments": [[1.0, "v", 3]]})
    with pytest.raises(ValueError, match="error_lines"):
        ServiceEvidence.from_dict({**STORED_SERVICE, "error_lines": 2.5})


def test_ties_are_broken_by_name_and_limit_applies() -> None:
    evidence = [ev(name, ("PodServerLatencyP99(s)", 5.0, T0)) for name in "edcba"]
    suspects = rank_suspects({e.service: e for e in evidence}, ServiceGraph(), limit=3)
    assert [s.service for s in suspects] == ["a", "b", "c"]
    assert rank_suspects({}, ServiceGraph()) == []


def test_cost_grows_with_services_not_beyond() -> None:
    # a 2000-service star: one sick hub callee; every caller latency a minute later
    graph = ServiceGraph(max_edges=5000)
    evidence = {"hub": ev("hub", ("CpuUsage(m)", 9.0, T0))}
    for i in range(2000):
        graph.observe(f"svc-{i:04d}", "hub", "config", 0.0)
        evidence[f"svc-{i:04d}"] = ev(f"svc-{i:04d}", ("PodServerLatencyP99(s)", 4.0, T0 + 60))
    suspects = rank_suspects(evidence, graph)
    assert suspects[0].service == "hub"
    assert len(suspects) == 5


def test_evidence_of_a_record_without_signals_comes_from_its_anomalies() -> None:
    t0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    old = incident(anomalies=[anomaly(at=t0 + timedelta(minutes=1)), anomaly(at=t0)])
    evidence = evidence_from_incident(old)
    assert len(evidence.signals) == 1
    assert evidence.onset == T0
    assert evidence.signals[0].family == "latency"


@pytest.mark.parametrize("config", CONFIGS)
def test_a_caller_whose_client_latency_leads_is_a_victim(config: RcaConfig) -> None:
    # no graph: only the latency signatures tell the slow service from its caller
    evidence = [
        ev("frontend", ("PodClientLatencyP99(s)", 9.0, T0), ("PodServerLatencyP99(s)", 8.0, T0)),
        ev("cart", ("PodServerLatencyP99(s)", 6.0, T0)),
    ]
    assert order(evidence, ServiceGraph(), config)[0] == "cart"
    # control: the caller's own (server) latency leads: it is no longer a victim's sign
    evidence[0] = ev("frontend", ("PodClientLatencyP99(s)", 3.0, T0),
                     ("PodServerLatencyP99(s)", 8.0, T0))
    assert order(evidence, ServiceGraph(), config)[0] == "frontend"


@pytest.mark.parametrize(("name", "z", "expected"), [
    ("CpuUsageRate(%)", 5.0, "resource"),
    ("CpuUsageRate(%)", -5.0, "other"),  # less CPU used: no saturation
    ("MemoryUsage(Mi)", -5.0, "other"),
    ("memory_available_bytes", -5.0, "resource"),  # headroom fell: saturation
    ("memory_available_bytes", 5.0, "other"),
    ("cpu_idle_percent", -5.0, "resource"),
    ("PodServerLatencyP90(s)", -5.0, "other"),
    ("PodSuccessRate(%)", -5.0, "error"),
    ("PodSuccessRate(%)", 5.0, "other"),
    ("PodWorkload(Ops)", -5.0, "traffic"),
])
def test_directed_family(name: str, z: float, expected: str) -> None:
    assert directed_family(name, "metric", z) == expected


@pytest.mark.parametrize("config", CONFIGS)
def test_a_resource_whose_use_fell_is_no_saturation(config: RcaConfig) -> None:
    # no graph: cart's CPU use fell first, payment's rose a minute later
    def cpu(service: str, z: float, at: float) -> ServiceEvidence:
        when = datetime.fromtimestamp(at, UTC)
        return evidence_from_anomaly(anomaly("CpuUsageRate(%)", service=service, z=z,
                                             value=100.0 + z, mean=100.0, at=when))
    evidence = {"cart": cpu("cart", -6.0, T0), "payment": cpu("payment", 4.0, T0 + 60)}
    suspects = rank_suspects(evidence, ServiceGraph(), config=config)
    assert suspects[0].service == "payment"
    assert suspects[0].fault_kind == "resource"
    assert suspects[1].fault_kind != "resource"
    # control: cart's CPU use rose instead: it left its baseline first, saturated
    evidence["cart"] = cpu("cart", 6.0, T0)
    suspects = rank_suspects(evidence, ServiceGraph(), config=config)
    assert suspects[0].service == "cart"
    assert suspects[0].fault_kind == "resource"


def test_reasons_stay_short_for_huge_names() -> None:
    long = "s" * 256
    evidence = [ev(long, ("metric_" + "m" * 200, 5.0, T0), ("CpuUsage" + "u" * 200, 5.0, T0),
                   deployments=((T0 - 60, "v" + "9" * 250),), named=("x" * 256,),
                   error_lines=3)]
    suspects = rank_suspects({e.service: e for e in evidence}, ServiceGraph())
    assert suspects and all(len(r) <= 200 for s in suspects for r in s.reasons)
    assert any("deployed v999" in r and "…" in r for r in suspects[0].reasons)


@pytest.mark.parametrize("config", CONFIGS[:2])
def test_errors_explained_by_a_dependency_point_at_it(config: RcaConfig) -> None:
    # the demo's upstream timeout: the frontend's own latency and 5xx rise first, but
    # its error line blames payments-gateway, which turns slow two minutes later
    # (the control's weights: under a heavier depth weight the gateway leads anyway)
    graph = graph_of(("frontend", "payments-gateway"))
    frontend = ev("frontend", ("http_request_duration_p99_seconds", 9.0, T0),
                  ("http_5xx_per_second", 8.0, T0), error_lines=1,
                  named=("payments-gateway",)).model_copy(update={"named_lines": (1,)})
    gateway = ev("payments-gateway", ("http_request_duration_p99_seconds", 4.0, T0 + 120))
    suspects = rank_suspects({"frontend": frontend, "payments-gateway": gateway}, graph,
                             config=config)
    assert [s.service for s in suspects] == ["payments-gateway", "frontend"]
    assert any("explained by that dependency" in r for r in suspects[1].reasons)
    assert any("onset of the services whose errors it explains" in r
               for r in suspects[0].reasons)
    # control: only 1 of its 3 error lines names the gateway — its errors are its
    # own, and it is ranked first
    own = frontend.model_copy(update={"error_lines": 3})
    suspects = rank_suspects({"frontend": own, "payments-gateway": gateway}, graph,
                             config=config)
    assert [s.service for s in suspects] == ["frontend", "payments-gateway"]
    assert not any("explained" in r for s in suspects for r in s.reasons)
