"""Pure format decoders: metrics JSON, exposition, remote write, logs, deployments, levels."""

from __future__ import annotations

import json
import math
import struct
from datetime import UTC, datetime
from pathlib import Path

import cramjam
import pytest

from autopilot.formats import service_from_labels
from autopilot.formats.deployments import decode_deployments
from autopilot.formats.exposition import decode_exposition
from autopilot.formats.levels import is_error_level, normalize_level
from autopilot.formats.logs import decode_logs
from autopilot.formats.metrics_json import decode_metrics
from autopilot.formats.remote_write import (
    STALE_NAN_BITS,
    RemoteWriteError,
    WriteRequest,
    decode_remote_write,
    encode_write_request,
    is_stale_marker,
)

DATA = Path(__file__).resolve().parents[1] / "integration" / "data"
T0 = 1_764_410_400
NOW = datetime(2025, 11, 29, 10, 0, tzinfo=UTC)
STALE = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]


def test_service_is_the_first_present_label_of_the_list() -> None:
    labels = {"job": "node", "app": "checkout"}
    assert service_from_labels(labels) == "checkout"
    assert service_from_labels(labels, ("job",)) == "node"
    assert service_from_labels({"app": ""}, ("app",)) is None


# --- levels -------------------------------------------------------------------------

@pytest.mark.parametrize(("level", "canonical"), [
    ("WARN", "warning"), ("warning", "warning"), ("err", "error"), ("Error", "error"),
    ("fatal", "critical"), ("CRIT", "critical"), ("critical", "critical"), ("panic", "critical"),
    ("0", "critical"), ("3", "error"), ("4", "warning"), ("6", "info"), (7, "debug"),
    (" [INFO] ", "info"), ("notice", "notice"), ("trace", "trace"),
    # pino / bunyan numeric levels
    (10, "trace"), (20, "debug"), (30, "info"), (40, "warning"), (50, "error"),
    ("50", "error"), (60, "critical"), (35, "info"), ("UNKNOWN", "unknown"),
])
def test_level_synonyms_normalise(level: object, canonical: str) -> None:
    assert normalize_level(level) == canonical


@pytest.mark.parametrize("level", ["LOUD", "8", "", "errorish", True, 70, "9"])
def test_unknown_levels_are_refused(level: object) -> None:
    with pytest.raises(ValueError, match="level"):
        normalize_level(level)
    assert not is_error_level(level)


# --- metrics JSON on Kafka ----------------------------------------------------------

def test_seed_adapter_and_telegraf_shapes_are_detected_and_mapped() -> None:
    body = json.dumps([
        {"timestamp": T0, "metric_name": "lat", "value": 1.5, "labels": {"app": "shop"}},
        {"timestamp": "2025-11-29T10:00:00Z", "value": "42", "name": "up",
         "labels": {"__name__": "up", "job": "shop", "instance": "a:1"}},
        {"name": "cpu", "fields": {"usage": 3, "on": True, "host_name": "x"},
         "tags": {"service": "shop"}, "timestamp": T0},
        {"name": "http_requests_total", "fields": {"counter": 10},
         "tags": {"job": "shop"}, "timestamp": T0 * 1000},
    ]).encode()

    decoded = decode_metrics(body)

    assert decoded.errors == []
    by_name = {p.metric_name: p for p in decoded.records}
    assert set(by_name) == {"lat", "up", "cpu_usage", "cpu_on", "http_requests_total"}
    assert by_name["lat"].service == "shop"
    assert by_name["up"].value == 42.0 and by_name["up"].labels == {
        "job": "shop", "instance": "a:1", "service": "shop"}
    assert by_name["cpu_on"].value == 1.0
    assert by_name["http_requests_total"].metric_type == "counter"
    assert by_name["http_requests_total"].timestamp == datetime.fromtimestamp(T0, UTC)
    assert decoded.skipped == {"non_numeric": 1}


def test_telegraf_batch_and_adapter_nan_is_skipped_not_an_error() -> None:
    batch = {"metrics": [{"name": "mem", "fields": {"free": 5}, "tags": {"app": "a"},
                          "timestamp": T0}]}
    names = [p.metric_name for p in decode_metrics(json.dumps(batch).encode()).records]
    assert names == ["mem_free"]
    nan = {"timestamp": "2025-11-29T10:00:00Z", "value": "NaN", "name": "up",
           "labels": {"job": "a"}}
    decoded = decode_metrics(json.dumps(nan).encode())
    assert decoded.records == [] and decoded.errors == [] and decoded.skipped == {"non_finite": 1}


@pytest.mark.parametrize(("obj", "loc"), [
    ({"timestamp": T0, "metric_name": "x", "value": 1, "labels": {"env": "p"}}, "labels"),
    ({"timestamp": "never", "metric_name": "x", "value": 1, "labels": {"service": "a"}},
     "timestamp"),
    ({"value": "1", "name": "up", "labels": {"instance": "x"}}, "labels"),
    ({"name": "cpu", "fields": {"a": 1}, "tags": {"host": "h"}, "timestamp": T0}, "labels"),
    ({"something": "else"}, ""),
])
def test_invalid_metric_objects_are_errors_naming_the_field(obj: dict, loc: str) -> None:
    decoded = decode_metrics(json.dumps(obj).encode())
    assert decoded.records == []
    assert decoded.errors[0]["loc"] == loc


def test_metrics_that_are_not_json_raise_value_error() -> None:
    with pytest.raises(ValueError, match="JSON"):
        decode_metrics(b'{"metric_name": NaN}')


# --- exposition format --------------------------------------------------------------

EXPOSITION = """# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{job="api",code="200"} 1027 1764410400000
http_requests_total{job="api",code="500"} 3
http_requests_created{job="api",code="200"} 1.7e9
# TYPE temperature gauge
temperature{app="api"} 21.5
# TYPE rpc_seconds histogram
rpc_seconds_bucket{le="0.1"} 4
rpc_seconds_bucket{le="+Inf"} 5
rpc_seconds_sum 0.3
rpc_seconds_count 5
broken NaN
"""


def test_exposition_is_parsed_with_types_and_service_fallback() -> None:
    decoded = decode_exposition(EXPOSITION, NOW, default_service="fallback")

    assert decoded.errors == []
    assert decoded.skipped == {"non_finite": 1}
    points = {(p.metric_name, p.labels.get("code", p.labels.get("le", ""))): p
              for p in decoded.records}
    assert ("http_requests_created", "200") not in points
    req = points[("http_requests_total", "200")]
    assert req.metric_type == "counter" and req.service == "api"
    assert req.timestamp == datetime.fromtimestamp(T0, UTC)
    assert points[("http_requests_total", "500")].timestamp == NOW
    assert points[("temperature", "")].metric_type == "gauge"
    assert points[("rpc_seconds_bucket", "0.1")].metric_type == "counter"
    assert points[("rpc_seconds_sum", "")].service == "fallback"


def test_exposition_without_a_service_is_an_error_and_garbage_raises() -> None:
    decoded = decode_exposition("up 1\n", NOW)
    assert decoded.records == [] and "service" in decoded.errors[0]["msg"]
    with pytest.raises(ValueError):
        decode_exposition("this is { not exposition", NOW)


# --- remote write -------------------------------------------------------------------

def test_remote_write_round_trip_skips_stale_non_finite_and_unlabelled() -> None:
    body = encode_write_request([
        ({"__name__": "up", "job": "node", "instance": "a"},
         [(1.0, T0 * 1000), (STALE, T0 * 1000 + 1), (math.nan, T0 * 1000 + 2),
          (math.inf, T0 * 1000 + 3)]),
        ({"__name__": "orphan", "instance": "b"}, [(1.0, T0 * 1000)]),
        ({"job": "node"}, [(1.0, T0 * 1000)]),
    ])

    decoded = decode_remote_write(body)

    (point,) = decoded.records
    assert point.metric_name == "up" and point.service == "node"
    assert point.labels == {"job": "node", "instance": "a", "service": "node"}
    assert point.timestamp == datetime.fromtimestamp(T0, UTC)
    assert decoded.skipped == {"stale": 1, "non_finite": 2, "no_service": 1, "no_name": 1}


def test_staleness_marker_is_told_apart_from_other_nans() -> None:
    assert is_stale_marker(STALE)
    assert not is_stale_marker(math.nan)
    assert not is_stale_marker(1.0)


def test_remote_write_metadata_types_counters_and_gauges() -> None:
    req = WriteRequest()
    for name, value in [("requests", 1.0), ("temp", 2.0), ("lat_count", 3.0)]:
        ts = req.timeseries.add()
        ts.labels.add(name="__name__", value=name)
        ts.labels.add(name="app", value="x")
        ts.samples.add(value=value, timestamp=T0 * 1000)
    req.metadata.add(type=1, metric_family_name="requests")
    req.metadata.add(type=2, metric_family_name="temp")
    req.metadata.add(type=3, metric_family_name="lat")
    body = bytes(cramjam.snappy.compress_raw(req.SerializeToString()))

    types = {p.metric_name: p.metric_type for p in decode_remote_write(body).records}

    assert types == {"requests": "counter", "temp": "gauge", "lat_count": "counter"}


@pytest.mark.parametrize(("body", "reason"), [
    (b"", "empty"),
    (b"\x00garbage that is not snappy", "snappy"),
    (bytes(cramjam.snappy.compress_raw(b"\x0a\xff\xff\xff")), "WriteRequest"),
])
def test_malformed_remote_write_bodies_raise_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(RemoteWriteError, match=reason):
        decode_remote_write(body)


def test_a_snappy_bomb_is_refused_before_inflating() -> None:
    body = bytes(cramjam.snappy.compress_raw(b"\x00" * 100_000))
    with pytest.raises(RemoteWriteError, match="exceeds"):
        decode_remote_write(body, max_decoded_bytes=10_000)


def test_the_reference_proto_lists_the_fields_the_python_descriptor_builds() -> None:
    proto = (Path(__file__).resolve().parents[2] / "autopilot" / "formats"
             / "remote_write.proto").read_text()
    for message in ("WriteRequest", "TimeSeries", "Label", "Sample", "MetricMetadata"):
        descriptor = WriteRequest.DESCRIPTOR.file.message_types_by_name[message]
        for field in descriptor.fields:
            assert f"{field.name} = {field.number};" in proto, (message, field.name)


# --- logs ---------------------------------------------------------------------------

def test_text_lines_keep_stack_traces_with_their_first_line() -> None:
    text = (b"2025-11-29T10:00:05Z ERROR payment failed\n"
            b"Traceback (most recent call last):\n  File \"pay.py\", line 3\n"
            b"ValueError: declined\n"
            b"2025-11-29 10:00:06,250 [WARN] retrying \xff\n"
            b"1764410407 err epoch seconds\n"
            b"1764410408000 info epoch millis\n")

    decoded = decode_logs(text, "shop")

    assert decoded.errors == []
    first, second, third, fourth = decoded.records
    assert first.message.endswith("ValueError: declined") and first.message.count("\n") == 3
    assert second.level == "WARN" and second.message == "retrying \ufffd"
    assert second.timestamp == datetime(2025, 11, 29, 10, 0, 6, 250000, tzinfo=UTC)
    assert third.timestamp.timestamp() == 1764410407
    assert fourth.timestamp.timestamp() == 1764410408
    assert {e.service for e in decoded.records} == {"shop"}


def test_json_lines_with_shipper_field_names() -> None:
    body = "\n".join(json.dumps(o) for o in [
        {"@timestamp": "2025-11-29T11:00:00+01:00", "log": {"level": "fatal"}, "message": "a",
         "service": {"name": "shop"}},
        {"time": "2025-11-29T10:00:00", "severity": 4, "msg": "b", "app": "shop"},
        {"ts": T0 * 1_000_000_000, "lvl": "crit", "msg": "c"},
    ]).encode()

    decoded = decode_logs(body, "from-key")

    assert decoded.errors == []
    a, b, c = decoded.records
    assert a.timestamp == b.timestamp == c.timestamp == NOW
    assert (a.service, b.service, c.service) == ("shop", "shop", "from-key")
    assert is_error_level(a.level) and not is_error_level(b.level) and is_error_level(c.level)


@pytest.mark.parametrize(("body", "service", "loc"), [
    (b'{"timestamp": "tuesday", "level": "info", "message": "x", "service": "a"}', None,
     "timestamp"),
    (b'{"timestamp": 1764410400, "level": "info", "message": "x"}', None, "service"),
    (b"2025-11-29T10:00:05Z ERROR no service", None, "service"),
    (b"2025-13-45T10:00:05Z ERROR bad date", "a", "timestamp"),
    (b"no header on the first line", "a", ""),
])
def test_bad_log_input_is_an_error_naming_the_field(body: bytes, service: str | None,
                                                    loc: str) -> None:
    decoded = decode_logs(body, service)
    assert decoded.records == []
    assert decoded.errors[0]["loc"] == loc


def test_a_json_list_that_does_not_parse_raises_and_bad_json_lines_are_items() -> None:
    with pytest.raises(ValueError, match="JSON"):
        decode_logs(b"[{]")
    decoded = decode_logs(b'{"a": 1}\n{nope}')
    assert decoded.records == []
    rejected = decoded.rejected()
    assert [r["item"] for r in rejected] == [0, 1]
    assert "line 2" in rejected[1]["reason"] and rejected[1]["code"] == "not_json"


# --- deployments --------------------------------------------------------------------

def test_github_deployment_status_maps_to_a_deployment_event() -> None:
    body = (DATA / "github_deployment_status.json").read_bytes()

    (event,) = decode_deployments(body, "deployment_status").records

    assert (event.service, event.version, event.status) == ("checkout", "v1.4.2", "success")
    assert event.timestamp == datetime(2025, 11, 29, 9, 56, 30, tzinfo=UTC)
    assert event.metadata["sha"].startswith("7638417")
    assert event.metadata["environment"] == "production"
    assert event.metadata["source"] == "github"


def test_argocd_notification_maps_to_a_deployment_event() -> None:
    body = (DATA / "argocd_notification.json").read_bytes()

    (event,) = decode_deployments(body).records

    assert (event.service, event.status) == ("guestbook", "success")
    assert event.version == "53e28ff20cc530b9ada2173fbbd64d48338583ba"
    assert event.timestamp == datetime(2025, 11, 29, 9, 58, 41, tzinfo=UTC)
    assert event.metadata["images"] == ["gcr.io/heptio-images/ks-guestbook-demo:0.2"]


def test_argocd_failed_sync_is_a_failure_and_seed_still_works() -> None:
    failed = {"app": {"metadata": {"name": "api", "labels": {"app.kubernetes.io/name": "api-svc"}},
                      "status": {"sync": {"revision": "abc"},
                                 "operationState": {"phase": "Failed",
                                                    "startedAt": "2025-11-29T10:00:00Z"}}}}
    seed = {"timestamp": T0, "service": "api", "version": "1.0"}

    a, b = decode_deployments(json.dumps([failed, seed]).encode()).records

    assert (a.service, a.version, a.status) == ("api-svc", "abc", "failure")
    assert (b.service, b.status) == ("api", "success")


def test_unknown_deployment_shapes_and_other_github_events_are_errors() -> None:
    assert decode_deployments(b'{"hello": 1}').errors[0]["msg"].startswith("unknown")
    assert "not handled" in decode_deployments(b'{"action": "x"}', "push").errors[0]["msg"]
