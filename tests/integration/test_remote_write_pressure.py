"""Remote write under pressure: large requests, native histograms, bodies that are not
what they claim. A real worker on the test's broker; records read back from Kafka."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import cramjam
import httpx
import pytest

from autopilot.formats.remote_write import WriteRequest, encode_write_request
from tests.integration.conftest import BrokerUnderTest, Worker, consume_all, wait_for

pytestmark = pytest.mark.integration

PROTO = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
         "X-Prometheus-Remote-Write-Version": "0.1.0"}


def _write(worker: Worker, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{worker.url}/api/v1/write", content=body, headers=headers or PROTO,
                      timeout=60)


def _items(broker: BrokerUnderTest) -> tuple[list[dict[str, Any]], int]:
    """(every MetricPoint in autopilot.metrics, the largest record value in bytes)."""
    records = consume_all(broker.bootstrap, broker.topic("autopilot.metrics"), timeout_s=20)
    items: list[dict[str, Any]] = []
    for rec in records:
        data = json.loads(rec.value)
        items.extend(data if isinstance(data, list) else [data])
    return items, max((len(r.value) for r in records), default=0)


def test_three_thousand_series_with_long_labels_are_split_under_the_record_limit(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker]
) -> None:
    worker = start_worker({"AUTOPILOT_PARTITIONS": "2"})
    now_ms = int(time.time() * 1000)
    series = [({"__name__": "http_requests_total", "job": "checkout",
                "path": f"/api/{i}/" + "x" * 2500, "pod": f"checkout-{i % 7}"},
               [(float(i), now_ms)]) for i in range(3000)]

    r = _write(worker, encode_write_request(series))

    assert r.status_code == 204, r.text  # was 500 (MessageSizeTooLargeError)
    items, largest = wait_for(lambda: (got := _items(broker))[0] and len(got[0]) >= 3000
                              and got, 60, "3,000 samples in autopilot.metrics")
    assert len(items) == 3000 and sorted(m["value"] for m in items) == list(map(float, range(3000)))
    assert largest <= 900_000  # AUTOPILOT_MAX_RECORD_BYTES
    metrics = worker.get("/metrics").text
    assert "autopilot_ingest_records_split_total" in metrics


def test_native_histograms_v2_bodies_framed_snappy_and_inflated_size_get_clear_answers(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker]
) -> None:
    worker = start_worker({"AUTOPILOT_PARTITIONS": "2"})
    now_ms = int(time.time() * 1000)

    # A native histogram becomes <name>_count and <name>_sum samples (was dropped).
    req = WriteRequest()
    ts = req.timeseries.add()
    ts.labels.add(name="__name__", value="rpc_duration_seconds")
    ts.labels.add(name="job", value="billing")
    ts.histograms.add(count_int=42, sum=8.5, timestamp=now_ms)
    r = _write(worker, bytes(cramjam.snappy.compress_raw(req.SerializeToString())))
    assert r.status_code == 204, r.text
    items, _ = wait_for(lambda: (got := _items(broker))[0] and got, 30, "histogram samples")
    got = {(m["metric_name"], m["value"]) for m in items}
    assert got == {("rpc_duration_seconds_count", 42.0), ("rpc_duration_seconds_sum", 8.5)}
    assert 'autopilot_native_histograms_total{outcome="converted"} 1.0' in worker.get(
        "/metrics").text

    # A Remote-Write 2.0 body with the 1.0 content type: refused, not "204, 0 samples".
    v2 = b"\x22\x08__name__\x22\x02up\x22\x03job\x22\x03api"  # symbols only
    r = _write(worker, bytes(cramjam.snappy.compress_raw(v2)))
    assert r.status_code == 415 and "Remote-Write 2.0" in r.json()["error"]

    # Framed (stream) snappy: a message saying so.
    framed = bytes(cramjam.snappy.compress(req.SerializeToString()))
    r = _write(worker, framed)
    assert r.status_code == 400 and "framed" in r.json()["error"]

    # Over the limit once inflated (8 × AUTOPILOT_MAX_BODY_BYTES): 413, as documented.
    bomb = bytes(cramjam.snappy.compress_raw(b"\0" * (81 * 1024 * 1024)))
    assert len(bomb) < 10 * 1024 * 1024
    r = _write(worker, bomb)
    assert r.status_code == 413 and "exceeds the limit" in r.json()["error"]

    # Nothing of the refused bodies landed.
    assert len(_items(broker)[0]) == 2
