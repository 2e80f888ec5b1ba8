"""OTLP metrics and logs → MetricPoints and LogEntries (autopilot.formats.otlp)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from typing import Any, TypeAlias

import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, SeverityNumber
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb

from autopilot.formats.logs import decode_logs
from autopilot.formats.metrics_json import decode_metrics
from autopilot.formats.otlp import (
    OtlpError,
    bucket_quantile,
    decode_logs_request,
    decode_metrics_request,
    export_response,
    inflate_gzip,
    parse_logs,
    parse_metrics,
    quantile_suffix,
    severity_level,
    sniff_logs,
    sniff_metrics,
    status_body,
)

T0 = 1_764_410_400 * 10**9  # 2025-11-29T10:00:00Z in ns
T0_DT = datetime(2025, 11, 29, 10, 0, tzinfo=UTC)
CUM = pb.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = pb.AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
Temporality: TypeAlias = pb.AggregationTemporality.ValueType


def sev(number: int) -> SeverityNumber.ValueType:
    return SeverityNumber.ValueType(number)


def kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def metrics_request(*metrics: pb.Metric, service: str | None = "checkout",
                    **resource: Any) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    if service is not None:
        rm.resource.attributes.append(kv("service.name", service))
    for key, value in resource.items():
        rm.resource.attributes.append(kv(key, value))
    rm.scope_metrics.add().metrics.extend(metrics)
    return req


def gauge(name: str, *values: float, t: int = T0, **attrs: Any) -> pb.Metric:
    m = pb.Metric(name=name)
    for v in values:
        dp = m.gauge.data_points.add(time_unix_nano=t, as_double=v)
        dp.attributes.extend(kv(k, a) for k, a in attrs.items())
    return m


def total(name: str, value: float, temporality: Temporality = CUM, monotonic: bool = True,
          start: int = T0 - 10 * 10**9) -> pb.Metric:
    m = pb.Metric(name=name)
    m.sum.aggregation_temporality = temporality
    m.sum.is_monotonic = monotonic
    m.sum.data_points.add(time_unix_nano=T0, start_time_unix_nano=start, as_int=int(value))
    return m


def histogram(name: str, bounds: list[float], counts: list[int], total_sum: float = 50.0,
              temporality: Temporality = CUM, **minmax: float) -> pb.Metric:
    m = pb.Metric(name=name)
    m.histogram.aggregation_temporality = temporality
    m.histogram.data_points.add(
        time_unix_nano=T0, start_time_unix_nano=T0 - 5 * 10**9, count=sum(counts),
        sum=total_sum, explicit_bounds=bounds, bucket_counts=counts, **minmax,
    )
    return m


def by_name(decoded: Any) -> dict[str, Any]:
    return {p.metric_name: p for p in decoded.records}


# --- metrics -------------------------------------------------------------------------


def test_gauge_is_a_sample_with_service_name_and_attributes_as_labels() -> None:
    req = metrics_request(gauge("queue.depth", 12.5, route="/pay"), **{
        "host.name": "web-1", "deployment.environment": "prod"})

    out = decode_metrics_request(req, resource_labels=("host.name", "deployment.environment"))

    (point,) = out.records
    assert point.metric_name == "queue.depth" and point.value == 12.5
    assert point.metric_type == "gauge" and point.timestamp == T0_DT
    assert point.labels == {"service": "checkout", "host.name": "web-1",
                            "deployment.environment": "prod", "route": "/pay"}
    assert not out.errors


def test_only_the_chosen_resource_attributes_are_labels_so_a_restart_keeps_the_series() -> None:
    """The SDK's resource carries a random ``service.instance.id`` per process and its
    own version: as labels they would start a new series (a new baseline) each time."""
    def run(instance: str, sdk: str) -> dict[str, str]:
        req = metrics_request(gauge("queue.depth", 1.0, route="/pay"), **{
            "service.instance.id": instance, "telemetry.sdk.version": sdk,
            "deployment.environment": "prod"})
        (point,) = decode_metrics_request(req).records
        return point.labels

    first, after_restart = run("74b64bc0", "1.45.2"), run("9f1e0a33", "1.46.0")
    assert first == after_restart == {
        "service": "checkout", "deployment.environment": "prod", "route": "/pay"}
    # Control: named, the attribute is a label, and the two runs are two series.
    req = metrics_request(gauge("q", 1.0), **{"service.instance.id": "74b64bc0"})
    (point,) = decode_metrics_request(req, resource_labels=("service.instance.id",)).records
    assert point.labels["service.instance.id"] == "74b64bc0"


def test_monotonic_cumulative_sum_is_a_counter_and_up_down_sum_a_gauge() -> None:
    req = metrics_request(total("http.requests", 1027), total("inflight", 7, monotonic=False))

    points = by_name(decode_metrics_request(req))

    assert points["http.requests"].metric_type == "counter"
    assert points["http.requests"].value == 1027
    assert points["inflight"].metric_type == "gauge"


def test_delta_sum_is_a_per_second_rate_over_its_interval() -> None:
    req = metrics_request(total("http.requests", 50, temporality=DELTA))  # 50 in 10 s

    (point,) = decode_metrics_request(req).records

    assert point.value == pytest.approx(5.0) and point.metric_type == "gauge"


def test_delta_sum_without_start_time_is_refused_and_the_rest_kept() -> None:
    req = metrics_request(total("bad", 50, temporality=DELTA, start=0), gauge("ok", 1.0))

    out = decode_metrics_request(req)

    assert [p.metric_name for p in out.records] == ["ok"]
    (rejected,) = out.rejected()
    assert rejected["item"] == 0 and "start_time_unix_nano" in rejected["reason"]
    assert out.raw[0]["metric"] == "bad"


def test_unspecified_temporality_is_refused() -> None:
    m = total("x", 1)
    m.sum.aggregation_temporality = pb.AggregationTemporality.AGGREGATION_TEMPORALITY_UNSPECIFIED

    out = decode_metrics_request(metrics_request(m))

    assert not out.records and "temporality" in out.reason()


def test_cumulative_histogram_gives_count_sum_counters_and_the_quantile() -> None:
    # 100 observations: 90 in (0, 10], 9 in (10, 100], 1 in (100, +Inf)
    req = metrics_request(histogram("http.duration", [10.0, 100.0], [90, 9, 1]))

    points = by_name(decode_metrics_request(req, quantile=0.99))

    assert points["http.duration_count"].value == 100
    assert points["http.duration_count"].metric_type == "counter"
    assert points["http.duration_sum"].value == 50.0
    assert points["http.duration_sum"].metric_type == "counter"
    # rank 99 is the 9th of 9 in (10, 100]: the bucket's upper end
    assert points["http.duration_p99"].value == pytest.approx(100.0)
    assert points["http.duration_p99"].metric_type == "gauge"


def test_the_quantile_is_configurable() -> None:
    req = metrics_request(histogram("lat", [10.0, 100.0], [90, 9, 1]))

    points = by_name(decode_metrics_request(req, quantile=0.5))

    assert points["lat_p50"].value == pytest.approx(10 * 50 / 90)


def test_delta_histogram_count_and_sum_are_rates() -> None:
    req = metrics_request(histogram("lat", [10.0], [5, 5], total_sum=60.0, temporality=DELTA))

    points = by_name(decode_metrics_request(req))

    assert points["lat_count"].value == pytest.approx(2.0)  # 10 in 5 s
    assert points["lat_sum"].value == pytest.approx(12.0)
    assert points["lat_count"].metric_type == "gauge"


@pytest.mark.parametrize(
    ("q", "bounds", "counts", "minmax", "expected"),
    [
        (0.5, [10.0, 20.0], [0, 10, 0], {}, 15.0),                 # middle of a bucket
        (0.5, [10.0, 20.0], [10, 0, 0], {}, 5.0),                  # first bucket from 0
        (0.5, [-5.0, 20.0], [10, 0, 0], {}, -5.0),                 # first bucket ≤ 0: its bound
        (0.5, [10.0, 20.0], [10, 0, 0], {"low": 4.0}, 7.0),        # first bucket from min
        (0.99, [10.0, 20.0], [0, 0, 10], {}, 20.0),                # overflow: highest bound
        (0.5, [10.0, 20.0], [0, 0, 10], {"high": 40.0}, 30.0),     # overflow up to max
        (0.5, [10.0, 20.0], [0, 10, 0], {"low": 12.0, "high": 14.0}, 13.0),  # clamped
        (0.5, [], [4], {"low": 1.0, "high": 3.0}, 2.0),            # one bucket, min..max
        (0.5, [], [4], {}, None),                                  # one bucket, unbounded
        (0.5, [10.0], [0, 0], {}, None),                           # no observation
    ],
)
def test_bucket_quantile_edges(q: float, bounds: list[float], counts: list[int],
                               minmax: dict[str, float], expected: float | None) -> None:
    result = bucket_quantile(q, bounds, counts, **minmax)

    assert result == (pytest.approx(expected) if expected is not None else None)


def test_histogram_with_mismatched_buckets_is_refused() -> None:
    req = metrics_request(histogram("lat", [10.0, 20.0], [1, 2]), gauge("ok", 1.0))

    out = decode_metrics_request(req)

    assert [p.metric_name for p in out.records] == ["ok"]
    assert "bucket counts" in out.reason()


def test_empty_histogram_gives_no_quantile_and_is_counted() -> None:
    req = metrics_request(histogram("lat", [10.0], [0, 0], total_sum=0.0))

    out = decode_metrics_request(req)

    assert sorted(by_name(out)) == ["lat_count", "lat_sum"]
    assert out.skipped == {"empty_histogram": 1}


def exp_histogram(scale: int, positive: tuple[int, list[int]],
                  negative: tuple[int, list[int]] = (0, []), zero: int = 0) -> pb.Metric:
    m = pb.Metric(name="lat")
    m.exponential_histogram.aggregation_temporality = CUM
    dp = m.exponential_histogram.data_points.add(
        time_unix_nano=T0, scale=scale, zero_count=zero, sum=9.0,
        count=sum(positive[1]) + sum(negative[1]) + zero)
    dp.positive.offset, dp.negative.offset = positive[0], negative[0]
    dp.positive.bucket_counts.extend(positive[1])
    dp.negative.bucket_counts.extend(negative[1])
    return m


def test_exponential_histogram_gives_count_sum_and_the_quantile_from_its_buckets() -> None:
    # scale 0: base 2, buckets (1, 2], (2, 4], (4, 8]; rank 2 of 4 is half-way in (2, 4]
    out = decode_metrics_request(metrics_request(exp_histogram(0, (0, [1, 2, 1]))),
                                 quantile=0.5)

    points = by_name(out)
    assert points["lat_count"].value == 4 and points["lat_count"].metric_type == "counter"
    assert points["lat_sum"].value == 9.0
    assert points["lat_p50"].value == pytest.approx(3.0)


def test_exponential_histogram_negative_and_zero_buckets_come_first() -> None:
    # (-2, -1] holds 2, the zero bucket 2: rank 1 of 4 is half-way in (-2, -1]
    m = exp_histogram(0, (0, []), negative=(0, [2]), zero=2)

    points = by_name(decode_metrics_request(metrics_request(m), quantile=0.25))

    assert points["lat_p25"].value == pytest.approx(-1.5)


def test_exponential_histogram_beyond_float_range_skips_the_quantile() -> None:
    out = decode_metrics_request(metrics_request(exp_histogram(-10, (2000, [3]))))

    assert sorted(by_name(out)) == ["lat_count", "lat_sum"]
    assert out.skipped == {"unbounded_bucket": 1}


def test_summary_gives_count_sum_and_each_quantile() -> None:
    m = pb.Metric(name="rpc")
    dp = m.summary.data_points.add(time_unix_nano=T0, count=10, sum=4.0)
    dp.quantile_values.add(quantile=0.5, value=0.3)
    dp.quantile_values.add(quantile=0.99, value=0.9)

    out = decode_metrics_request(metrics_request(m))

    assert {(p.metric_name, p.labels.get("quantile"), p.value) for p in out.records} == {
        ("rpc_count", None, 10.0), ("rpc_sum", None, 4.0),
        ("rpc", "0.5", 0.3), ("rpc", "0.99", 0.9),
    }


def test_no_recorded_value_and_nan_are_skipped_and_counted() -> None:
    m = gauge("g", float("nan"), 1.0)
    m.gauge.data_points.add(
        time_unix_nano=T0, as_double=2.0,
        flags=pb.DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK,
    )

    out = decode_metrics_request(metrics_request(m))

    assert [p.value for p in out.records] == [1.0]
    assert out.skipped == {"non_finite": 1, "no_recorded_value": 1}
    assert not out.errors


def test_points_without_time_or_value_are_refused_one_by_one() -> None:
    m = gauge("g", 1.0, 2.0)
    m.gauge.data_points[0].time_unix_nano = 0
    m.gauge.data_points.add(time_unix_nano=T0)  # no value

    out = decode_metrics_request(metrics_request(m))

    assert [p.value for p in out.records] == [2.0]
    assert [(r["item"], r["code"]) for r in out.rejected()] == [(0, "bad_timestamp"),
                                                                 (2, "invalid")]


def test_service_falls_back_to_service_labels_else_refused() -> None:
    with_job = metrics_request(gauge("g", 1.0), service=None, job="cart")
    without = metrics_request(gauge("g", 1.0), service=None)

    assert decode_metrics_request(with_job).records[0].service == "cart"
    out = decode_metrics_request(without)
    assert not out.records and out.rejected()[0]["code"] == "no_service"


# --- logs ----------------------------------------------------------------------------


def logs_request(*records: LogRecord, service: str | None = "checkout") -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    if service:
        rl.resource.attributes.append(kv("service.name", service))
        rl.resource.attributes.append(kv("deployment.environment", "prod"))
    rl.scope_logs.add().log_records.extend(records)
    return req


@pytest.mark.parametrize(
    ("number", "level"),
    [(1, "trace"), (4, "trace"), (5, "debug"), (8, "debug"), (9, "info"), (12, "info"),
     (13, "warning"), (16, "warning"), (17, "error"), (20, "error"), (21, "critical"),
     (24, "critical")],
)
def test_severity_number_ranges_map_to_levels(number: int, level: str) -> None:
    assert severity_level(number, "") == level
    assert severity_level(number, "nonsense") == level  # the number wins


def test_severity_text_is_used_without_a_number() -> None:
    assert severity_level(0, "WARN") == "warning"
    assert severity_level(0, "Information") == "info"
    assert severity_level(0, "loud") is None
    assert severity_level(0, "") is None


def test_log_record_keeps_body_time_level_trace_and_span_ids() -> None:
    record = LogRecord(
        time_unix_nano=T0, severity_number=sev(17), severity_text="ERROR",
        body=AnyValue(string_value="db timeout"), trace_id=bytes(range(16)),
        span_id=bytes(range(8)), attributes=[kv("code.lineno", 42)],
    )

    out = decode_logs_request(logs_request(record))

    (entry,) = out.records
    assert (entry.service, entry.level, entry.message) == ("checkout", "error", "db timeout")
    assert entry.timestamp == T0_DT
    assert entry.labels == {
        "deployment.environment": "prod", "code.lineno": "42",
        "trace_id": "000102030405060708090a0b0c0d0e0f", "span_id": "0001020304050607",
    }


def test_log_record_defaults_and_refusals() -> None:
    observed_only = LogRecord(observed_time_unix_nano=T0, body=AnyValue(string_value="a"))
    unknown = LogRecord(time_unix_nano=T0, severity_text="loud")
    structured = LogRecord(time_unix_nano=T0, severity_number=sev(9), body=AnyValue(
        kvlist_value=KeyValueList(values=[kv("user", "ann"), kv("n", 3)])))
    no_time = LogRecord(body=AnyValue(string_value="lost"))

    out = decode_logs_request(logs_request(observed_only, unknown, structured, no_time))

    assert [(e.level, e.message) for e in out.records] == [
        ("UNKNOWN", "a"), ("UNKNOWN", ""), ("info", '{"user":"ann","n":3}')]
    assert out.records[0].timestamp == T0_DT
    assert out.defaulted == {"missing_level": 1, "unknown_level": 1}
    assert [(r["item"], r["code"]) for r in out.rejected()] == [(3, "bad_timestamp")]


def test_logs_without_service_take_the_default_else_are_refused() -> None:
    req = logs_request(LogRecord(time_unix_nano=T0, severity_number=sev(9)), service=None)

    assert decode_logs_request(req, "from-key").records[0].service == "from-key"
    assert decode_logs_request(req).rejected()[0]["code"] == "no_service"


# --- encodings, gzip, responses, detection --------------------------------------------


def test_protobuf_and_otlp_json_decode_to_the_same_records() -> None:
    req = metrics_request(gauge("g", 1.5, route="/a"), total("c", 3),
                          histogram("h", [1.0], [1, 1]))
    as_json = json_format.MessageToJson(req).encode()

    from_proto = decode_metrics_request(parse_metrics(req.SerializeToString(), "proto"))
    from_json = decode_metrics_request(parse_metrics(as_json, "json"))

    assert from_proto.records == from_json.records and len(from_proto.records) == 5


def test_otlp_json_trace_ids_are_hex_and_unknown_fields_ignored() -> None:
    body = json.dumps({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "cart"}}]},
        "scopeLogs": [{"logRecords": [{
            "timeUnixNano": str(T0), "severityNumber": 13, "body": {"stringValue": "slow"},
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
            "someFutureField": 1,
        }]}],
    }]}).encode()

    (entry,) = decode_logs_request(parse_logs(body, "json")).records

    assert entry.level == "warning" and entry.service == "cart"
    assert entry.labels["trace_id"] == "5b8efff798038103d269b633813fc60c"
    assert entry.labels["span_id"] == "eee19b7ec3c1b174"


@pytest.mark.parametrize(
    ("body", "encoding", "says"),
    [
        (b"\xff\xff\xff", "proto", "not a protobuf"),
        (b"not json", "json", "not OTLP/JSON"),
        (b"[1, 2]", "json", "expected a JSON object"),
        (b'{"resourceLogs": 3}', "json", "not an OTLP/JSON"),
        (b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "zz"}]}]}]}',
         "json", "not a hex id"),
    ],
)
def test_undecodable_bodies_raise_with_the_reason(body: bytes, encoding: Any, says: str) -> None:
    with pytest.raises(OtlpError, match=says) as info:
        parse_logs(body, encoding)
    assert info.value.status == 400


def test_gzip_is_inflated_with_a_limit() -> None:
    raw = metrics_request(gauge("g", 1.0)).SerializeToString()

    assert inflate_gzip(gzip.compress(raw), 1024) == raw
    with pytest.raises(OtlpError, match="not gzip"):
        inflate_gzip(raw, 1024)
    with pytest.raises(OtlpError, match="cut short"):
        inflate_gzip(gzip.compress(raw)[:-12], 1024)
    with pytest.raises(OtlpError) as bomb:
        inflate_gzip(gzip.compress(b"\0" * 100_000), 1024)
    assert bomb.value.status == 413


def test_partial_success_response_in_both_encodings() -> None:
    proto = ExportMetricsServiceResponse.FromString(
        export_response("metrics", 2, "item 0: bad", "proto"))
    logs = json.loads(export_response("logs", 1, "item 3: no time", "json"))
    ok = ExportLogsServiceResponse.FromString(export_response("logs", 0, "", "proto"))

    assert proto.partial_success.rejected_data_points == 2
    assert proto.partial_success.error_message == "item 0: bad"
    assert logs == {"partialSuccess": {"rejectedLogRecords": "1",
                                       "errorMessage": "item 3: no time"}}
    assert not ok.HasField("partial_success")


def test_status_body_is_a_google_rpc_status() -> None:
    status = status_pb2.Status.FromString(status_body("bad body", "proto"))

    assert (status.code, status.message) == (3, "bad body")
    assert json.loads(status_body("bad body", "json")) == {"code": 3, "message": "bad body"}


def test_request_with_all_points_refused_still_decodes_with_errors() -> None:
    out = decode_metrics_request(metrics_request(gauge("g", 1.0, 2.0), service=None))

    assert not out.records and len(out.rejected()) == 2


def test_quantile_suffix() -> None:
    assert [quantile_suffix(q) for q in (0.99, 0.999, 0.5, 0.95)] == [
        "_p99", "_p99_9", "_p50", "_p95"]


def test_kafka_detection_takes_otlp_and_leaves_the_other_formats() -> None:
    metrics = metrics_request(gauge("g", 1.0))
    logs = logs_request(LogRecord(time_unix_nano=T0, severity_number=sev(9)))
    seed = b'{"timestamp": 1764410400, "metric_name": "m", "value": 1, "labels": {"service": "a"}}'
    text_log = b"\n2026-11-29T10:00:05Z ERROR payment failed\n"
    json_log = b'{"timestamp": "2026-11-29T10:00:05Z", "level": "ERROR", "message": "x"}'

    assert sniff_metrics(metrics.SerializeToString()) == metrics
    assert sniff_metrics(json_format.MessageToJson(metrics).encode()) == metrics
    assert sniff_logs(logs.SerializeToString()) == logs
    assert sniff_logs(json_format.MessageToJson(logs).encode()) == logs
    for other in (seed, text_log, json_log, b"[" + seed + b"]", b"\nhello"):
        assert sniff_metrics(other) is None and sniff_logs(other) is None
    assert decode_metrics(seed).records and decode_logs(text_log, "checkout").records
    # a logs request on the metrics topic is not taken for metrics, nor the reverse
    assert sniff_metrics(json_format.MessageToJson(logs).encode()) is None


def test_kafka_detection_refuses_a_broken_otlp_json_record() -> None:
    with pytest.raises(OtlpError):
        sniff_metrics(b'{"resourceMetrics": [{"scopeMetrics": 5}]}')
