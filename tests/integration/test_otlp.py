"""OpenTelemetry into a real worker: the OpenTelemetry Python SDK's OTLP/HTTP exporters
(metrics → baselines, logs → an error-rate spike), OTLP/HTTP bad input answered as the
spec says, and OTLP records on the input Kafka topics as the Collector's Kafka exporter
writes them (``otlp_proto`` and ``otlp_json``), bad ones dead-lettered."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from backports import zstd
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber as SeverityNumberPb
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from tests.integration.conftest import BrokerUnderTest, Worker, consume_all, produce, wait_for

pytestmark = pytest.mark.integration

KEY = "test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
PROTO = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA


def series_of(worker: Worker, service: str) -> dict[str, Any]:
    r = httpx.get(f"{worker.url}/baselines/{service}", headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["series"]


def seen(worker: Worker, service: str, metric: str) -> int:
    """Samples seen by the baselines of ``service``'s series named ``metric``."""
    return sum(b["samples_seen"] for key, b in series_of(worker, service).items()
               if key.split("|")[1] == metric)


def keyed_logs(broker: BrokerUnderTest) -> list[dict[str, Any]]:
    recs = consume_all(broker.bootstrap, broker.topic("autopilot.logs.keyed"))
    return [e for r in recs for e in json.loads(r.value)]


def dead_letters(broker: BrokerUnderTest) -> list[Any]:
    return consume_all(broker.bootstrap, broker.topic("autopilot.deadletter"))


def consuming_metrics(worker: Worker) -> Worker:
    """Wait until ``worker`` consumes ``autopilot.metrics``: a seed sample sent over HTTP
    reaches its baselines (the worker creates the input topic on first use, and the
    rebalance that follows must be over before the test's own records go in)."""
    r = httpx.post(f"{worker.url}/ingest/metrics", headers=AUTH, timeout=10, json={
        "timestamp": time.time(), "metric_name": "probe", "value": 1,
        "labels": {"service": "probe"}})
    assert r.status_code == 202, r.text
    wait_for(lambda: seen(worker, "probe", "probe") == 1, 60, "the worker consuming metrics")
    return worker


def kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def gauge_request(service: str | None, points: list[tuple[int, float]],
                  name: str = "queue.depth") -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    if service:
        rm.resource.attributes.append(kv("service.name", service))
    m = rm.scope_metrics.add().metrics.add(name=name)
    for t_ns, value in points:
        m.gauge.data_points.add(time_unix_nano=t_ns, as_double=value)
    return req


def logs_request(service: str, records: list[tuple[int, int, str]]) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.append(kv("service.name", service))
    rl.scope_logs.add().log_records.extend(
        LogRecord(time_unix_nano=t, severity_number=SeverityNumberPb.ValueType(sev),
                  body=AnyValue(string_value=body))
        for t, sev, body in records
    )
    return req


def now_ns(offset_s: float = 0.0) -> int:
    return int((time.time() + offset_s) * 1e9)


def test_sdk_metrics_become_baselines_and_sdk_logs_an_error_rate_spike(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker]
) -> None:
    worker = consuming_metrics(start_worker({"AUTOPILOT_API_KEYS": KEY}))
    resource = Resource.create({"service.name": "otelshop", "deployment.environment": "test"})

    # Metrics: the SDK's OTLP/HTTP exporter (protobuf), one export per flush.
    exporter = OTLPMetricExporter(endpoint=f"{worker.url}/v1/metrics", headers=AUTH)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    exponential = View(instrument_name="rpc.duration",
                       aggregation=ExponentialBucketHistogramAggregation())
    meters = MeterProvider(resource=resource, metric_readers=[reader], views=[exponential])
    meter = meters.get_meter("test")
    depth = meter.create_gauge("queue.depth")
    requests = meter.create_counter("http.requests")
    duration = meter.create_histogram("http.duration", unit="ms")
    rpc = meter.create_histogram("rpc.duration", unit="ms")
    rounds = 12
    try:
        for i in range(rounds):
            depth.set(10 + i % 3)
            requests.add(5, {"route": "/cart"})
            for ms in (5.0, 7.0, 30.0, 120.0):
                duration.record(ms + i)
                rpc.record(ms * 2 + i)
            assert meters.force_flush(10_000)
    finally:
        meters.shutdown()

    wait_for(lambda: seen(worker, "otelshop", "queue.depth") >= rounds, 60,
             "the SDK's gauge samples in the baselines")
    series = series_of(worker, "otelshop")
    names = {key.split("|")[1] for key in series}
    assert {"queue.depth", "http.requests", "http.duration_count", "http.duration_sum",
            "http.duration_p99", "rpc.duration_count", "rpc.duration_p99"} <= names, names
    requests_key = next(k for k in series if k.split("|")[1] == "http.requests")
    assert "route=/cart" in requests_key and "deployment.environment=test" in requests_key
    wait_for(lambda: seen(worker, "otelshop", "http.duration_p99") >= rounds, 30,
             "every histogram point's quantile")

    # Logs: the SDK's OTLP/HTTP log exporter, gzip-compressed, with event times.
    # 8 minutes of INFO lines, then an error burst in the ninth minute.
    log_exporter = OTLPLogExporter(endpoint=f"{worker.url}/v1/logs", headers=AUTH,
                                   compression=Compression.Gzip)
    loggers = LoggerProvider(resource=resource)
    loggers.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
    logger = loggers.get_logger("test")
    tracer = TracerProvider().get_tracer("test")
    start = now_ns(-1200)
    try:
        for minute in range(8):
            for k in range(5):
                logger.emit(timestamp=start + (minute * 60 + k) * 10**9,
                            severity_number=SeverityNumber.INFO, severity_text="INFO",
                            body="GET /cart 200")
        with tracer.start_as_current_span("checkout") as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
            for k in range(12):
                logger.emit(timestamp=start + (8 * 60 + k) * 10**9,
                            severity_number=SeverityNumber.ERROR, severity_text="ERROR",
                            body="db timeout")
        assert loggers.force_flush(10_000)
    finally:
        loggers.shutdown()

    def error_rate() -> list[dict[str, Any]]:
        r = httpx.get(f"{worker.url}/incidents/otelshop", headers=AUTH, timeout=10)
        return [a for a in r.json()["recent_anomalies"] if a.get("kind") == "error_rate"]

    (spike, *_) = wait_for(error_rate, 60, "an error-rate anomaly from the SDK's logs")
    assert spike["service"] == "otelshop"
    errors = [e for e in keyed_logs(broker) if e["level"] == "error"]
    assert len(errors) == 12
    assert errors[0]["labels"]["trace_id"] == trace_id
    assert len(errors[0]["labels"]["span_id"]) == 16


def test_otlp_http_answers_bad_input_and_keeps_the_valid_rest(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker]
) -> None:
    worker = start_worker({"AUTOPILOT_API_KEYS": KEY})
    url = worker.url
    base = now_ns(-100)  # each valid sample of the series later than the one before

    def at(s: int) -> int:
        return base + s * 10**9

    good = gauge_request("otlpbad", [(at(10), 1.0)])

    def post(path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{url}{path}", content=body, headers={**AUTH, **headers},
                          timeout=10)

    # Without a key: the guard's 401, as for every endpoint.
    assert httpx.post(f"{url}/v1/metrics", content=good.SerializeToString(),
                      headers=PROTO, timeout=10).status_code == 401
    # Wrong content type or encoding: 415 with a google.rpc.Status.
    r = post("/v1/metrics", good.SerializeToString(), {"Content-Type": "text/plain"})
    assert r.status_code == 415 and "application/x-protobuf" in r.json()["message"]
    r = post("/v1/logs", b"{}", {**JSON, "Content-Encoding": "snappy"})
    assert r.status_code == 415 and "snappy" in r.json()["message"]
    # Undecodable bodies: 400 with a google.rpc.Status in the request's encoding.
    r = post("/v1/metrics", b"\xff\xff\xff", PROTO)
    assert r.status_code == 400 and r.headers["content-type"].startswith(PROTO["Content-Type"])
    assert "not a protobuf" in status_pb2.Status.FromString(r.content).message
    r = post("/v1/logs", b"nope", JSON)
    assert r.status_code == 400 and "not OTLP/JSON" in r.json()["message"]
    r = post("/v1/metrics", b"not gzip at all", {**PROTO, "Content-Encoding": "gzip"})
    assert r.status_code == 400, r.text
    r = post("/v1/logs", b'{"resourceLogs": [{"scopeLogs": [{"logRecords": '
             b'[{"traceId": "not-hex"}]}]}]}', JSON)
    assert r.status_code == 400 and "not a hex id" in r.json()["message"]

    # Points the mapping refuses, each counted: a delta sum without a start time, a
    # histogram whose bucket counts do not fit its bounds, a point without a value.
    refused = gauge_request("otlpbad", [(at(1), 1.0)])
    metrics = refused.resource_metrics[0].scope_metrics[0].metrics
    delta = metrics.add(name="jobs.done")
    delta.sum.aggregation_temporality = DELTA
    delta.sum.data_points.add(time_unix_nano=at(1), as_int=5)
    hist = metrics.add(name="lat")
    hist.histogram.aggregation_temporality = DELTA
    hist.histogram.data_points.add(time_unix_nano=at(1), start_time_unix_nano=at(0),
                                   count=3, explicit_bounds=[1.0, 2.0], bucket_counts=[3])
    metrics[0].gauge.data_points.add(time_unix_nano=at(1))  # no value
    r = post("/v1/metrics", refused.SerializeToString(), PROTO)
    partial_proto = ExportMetricsServiceResponse.FromString(r.content).partial_success
    assert r.status_code == 200 and partial_proto.rejected_data_points == 3
    assert "start_time_unix_nano" in partial_proto.error_message
    assert "bucket counts" in partial_proto.error_message

    # One bad point among good ones: 200, partial success, the good points produced.
    mixed = gauge_request("otlpbad", [(at(2), 4.0), (0, 5.0), (at(3), 6.0)])
    r = post("/v1/metrics", json_format.MessageToJson(mixed).encode(), JSON)
    assert r.status_code == 200, r.text
    partial = r.json()["partialSuccess"]
    assert partial["rejectedDataPoints"] == "1" and "time_unix_nano" in partial["errorMessage"]
    # zstd (the Collector's other compression): inflated by the server, answered alike.
    r = post("/v1/metrics", zstd.compress(
        gauge_request("otlpzstd", [(at(2), 1.0)]).SerializeToString()),
        {**PROTO, "Content-Encoding": "zstd"})
    assert r.status_code == 200, r.content
    assert not ExportMetricsServiceResponse.FromString(r.content).HasField("partial_success")
    # The same encoded as gzip protobuf: answered in protobuf.
    r = post("/v1/metrics", gzip.compress(good.SerializeToString()),
             {**PROTO, "Content-Encoding": "gzip"})
    assert r.status_code == 200
    assert not ExportMetricsServiceResponse.FromString(r.content).HasField("partial_success")
    wait_for(lambda: seen(worker, "otlpbad", "queue.depth") == 4, 30,
             "the 4 valid points in the baselines")

    # Every record refused (no service): still 200, each counted as rejected.
    r = post("/v1/metrics", gauge_request(None, [(now_ns(), 1.0)] * 2).SerializeToString(),
             PROTO)
    assert r.status_code == 200
    assert ExportMetricsServiceResponse.FromString(
        r.content).partial_success.rejected_data_points == 2
    # ... and the logs endpoint too.
    logs = logs_request("otlpbad", [(0, 9, "no time"), (now_ns(), 17, "kept")])
    r = post("/v1/logs", json_format.MessageToJson(logs).encode(), JSON)
    assert r.json()["partialSuccess"]["rejectedLogRecords"] == "1"
    (kept,) = wait_for(lambda: [e for e in keyed_logs(broker) if e["service"] == "otlpbad"],
                       30, "the valid log record")
    assert (kept["message"], kept["level"]) == ("kept", "error")
    assert worker.proc is not None and worker.proc.poll() is None


def test_collector_kafka_records_both_encodings_reach_the_worker_and_bad_ones_dead_letter(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker]
) -> None:
    worker = consuming_metrics(start_worker({"AUTOPILOT_API_KEYS": KEY}))
    t = now_ns(-60)
    proto_metrics = gauge_request("kproto", [(t + i * 10**9, 10.0 + i) for i in range(3)])
    json_metrics = gauge_request("kjson", [(t + i * 10**9, 20.0 + i) for i in range(3)])
    one_bad = gauge_request("kmixed", [(t, 1.0), (0, 2.0), (t + 10**9, 3.0)])
    broken = b'{"resourceMetrics": [{"scopeMetrics": 5}]}'
    # The Collector's Kafka exporter sets no key by default and no content-type header.
    produce(broker.bootstrap, broker.topic("autopilot.metrics"), [
        (None, proto_metrics.SerializeToString()),
        (None, json_format.MessageToJson(json_metrics).encode()),
        (None, one_bad.SerializeToString()),
        (None, broken),
    ])
    proto_logs = logs_request("klogs", [(t, 9, "proto info"), (t + 1, 21, "proto fatal")])
    json_logs = logs_request("klogs", [(t + 2, 13, "json warn")])
    produce(broker.bootstrap, broker.topic("autopilot.logs"), [
        (None, proto_logs.SerializeToString()),
        (None, json_format.MessageToJson(json_logs).encode()),
    ])

    wait_for(lambda: seen(worker, "kproto", "queue.depth") == 3, 60, "otlp_proto metrics")
    wait_for(lambda: seen(worker, "kjson", "queue.depth") == 3, 30, "otlp_json metrics")
    wait_for(lambda: seen(worker, "kmixed", "queue.depth") == 2, 30, "the valid points")
    entries = wait_for(lambda: len(keyed_logs(broker)) >= 3 and keyed_logs(broker), 30,
                       "3 OTLP log records")
    assert sorted((e["message"], e["level"]) for e in entries) == [
        ("json warn", "warning"), ("proto fatal", "critical"), ("proto info", "info")]

    dead = wait_for(lambda: len(dead_letters(broker)) >= 2 and dead_letters(broker), 30,
                    "2 dead letters")
    reasons = sorted(dict(d.headers)["x-autopilot-reason"].decode() for d in dead)
    assert len(dead) == 2, reasons
    assert any("OTLP/JSON" in r for r in reasons), reasons
    assert any("time_unix_nano" in r for r in reasons), reasons
    item = next(d for d in dead if b"time_unix_nano" in dict(d.headers)["x-autopilot-reason"])
    assert json.loads(item.value)["dataPoint"]["asDouble"] == 2.0
