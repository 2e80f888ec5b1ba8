"""``GET /incidents/{service}/chart.png`` on real workers: the metrics agent keeps the
recent samples (``recent_samples`` table), the view draws the incident's series."""

from __future__ import annotations

import struct
from collections.abc import Callable
from urllib.parse import quote

import httpx
import pytest

from tests.factories import metric
from tests.integration.conftest import (
    BrokerUnderTest,
    Worker,
    as_bytes,
    metric_series,
    produce,
    wait_for,
)

pytestmark = pytest.mark.integration

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE, data[:40]
    return struct.unpack(">II", data[16:24])


def chart(worker: Worker, service: str, series: str | None = None) -> httpx.Response:
    query = f"?series={quote(series, safe='')}" if series is not None else ""
    return worker.get(f"/incidents/{service}/chart.png{query}")


def spike_with_a_second_series(service: str) -> list[dict[str, object]]:
    """A latency spike (opens an incident) plus a calm cpu series of the same service."""
    start = 1_700_000_000.0
    out = metric_series(service, normal=40, spikes=4, start=start)
    out += [metric(service, 50.0 + (i % 3), start + i * 15, name="cpu_percent", host="a")
            for i in range(44)]
    return out


def test_chart_of_the_incidents_spiking_series_is_a_png(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker]
) -> None:
    worker = start_worker()
    produce(broker.bootstrap, broker.topic("autopilot.metrics"),
            [(b"charted", as_bytes(m)) for m in spike_with_a_second_series("charted")])

    wait_for(lambda: worker.get("/incidents/charted").json()["open_incident"], 60,
             "the open incident")
    wait_for(lambda: worker.get("/baselines/charted").json()["series"]
             .get("charted|latency_ms|", {}).get("samples_seen") == 44, 30,
             "all 44 latency samples applied")

    r = wait_for(lambda: (resp := chart(worker, "charted")).status_code == 200 and resp, 30,
                 "the chart")
    assert r.headers["content-type"] == "image/png"
    assert png_size(r.content) == (800, 300)
    assert "inline" in r.headers["content-disposition"]
    assert "latency_ms" in r.headers["content-disposition"]  # the spiking series by default

    other = chart(worker, "charted", "charted|cpu_percent|host=a")
    assert other.status_code == 200, other.text
    assert png_size(other.content) == (800, 300)
    assert other.content != r.content


def test_chart_answers_404_with_a_json_error(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker]
) -> None:
    worker = start_worker()
    produce(broker.bootstrap, broker.topic("autopilot.metrics"),
            [(b"quiet", as_bytes(metric("quiet", 100.0, 1_700_000_000.0 + i * 15)))
             for i in range(5)])
    wait_for(lambda: worker.get("/baselines/quiet").json()["series"], 30, "the quiet series")

    no_incident = chart(worker, "quiet")
    assert no_incident.status_code == 404
    assert "no incident" in no_incident.json()["error"]
    unknown = chart(worker, "nobody-at-all")
    assert unknown.status_code == 404
    assert "error" in unknown.json()

    produce(broker.bootstrap, broker.topic("autopilot.metrics"),
            [(b"spiky", as_bytes(m)) for m in metric_series("spiky", normal=40, spikes=2)])
    wait_for(lambda: worker.get("/incidents/spiky").json()["open_incident"], 60,
             "the open incident")
    foreign = chart(worker, "spiky", "quiet|latency_ms|")
    assert foreign.status_code == 404
    assert "not one of service" in foreign.json()["error"]
    missing = chart(worker, "spiky", "spiky|never_sent|")
    assert missing.status_code == 404
    assert "no samples" in missing.json()["error"]


def test_two_workers_serve_the_same_chart_bytes_whichever_is_asked(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker]
) -> None:
    """The worker not owning the service forwards the request and passes the PNG's
    bytes back unchanged (Faust's own table routing would pass text)."""
    env = {"AUTOPILOT_PARTITIONS": "4"}
    w1 = start_worker(env, name="w1")
    w2 = start_worker(env, name="w2")
    wait_for(lambda: w1.get("/ready").status_code == 200
             and w2.get("/ready").status_code == 200, 60, "both workers ready")
    services = [f"chart-{i}" for i in range(6)]  # over 4 partitions: both workers own some
    records = []
    for svc in services:
        records += [(svc.encode(), as_bytes(m)) for m in metric_series(svc, normal=40, spikes=4)]
    produce(broker.bootstrap, broker.topic("autopilot.metrics"), records)

    for svc in services:
        def open_incident(svc: str = svc) -> object:
            return w1.get(f"/incidents/{svc}").json()["open_incident"]

        def all_samples_seen(svc: str = svc) -> bool:
            return bool(w1.get(f"/baselines/{svc}").json()["series"]
                        .get(f"{svc}|latency_ms|", {}).get("samples_seen") == 44)

        def chart_from_w1(svc: str = svc) -> httpx.Response | None:
            r = chart(w1, svc)
            return r if r.status_code == 200 else None

        wait_for(open_incident, 60, f"the incident of {svc}")
        wait_for(all_samples_seen, 30, f"all samples of {svc}")
        first = wait_for(chart_from_w1, 30, f"the chart of {svc} from w1")
        second = chart(w2, svc)
        assert second.status_code == 200, second.text
        assert second.headers["content-type"] == "image/png"
        assert png_size(second.content) == (800, 300)
        assert second.content == first.content
    # Each worker owns some of the services: one of them forwarded.
    assert "forwarding to the owning worker" in w1.log_text() + w2.log_text()
