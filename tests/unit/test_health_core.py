"""Readiness and liveness decisions (autopilot.health) and remote-write edges, on plain values."""

from __future__ import annotations

import ast
import struct
from pathlib import Path
from typing import Any

import cramjam
import pytest

from autopilot.formats.remote_write import (
    STALE_NAN_BITS,
    RemoteWriteError,
    WriteRequest,
    decode_remote_write,
)
from autopilot.health import (
    BrokerState,
    CounterWindow,
    Readiness,
    component_status,
    counter_delta,
    dead_letter_stages,
    readiness,
)


def _ready(**kw: Any) -> Readiness:
    args: dict[str, Any] = dict(
        broker=BrokerState(True), consumer_started=True, assigned=4, rebalancing=False,
        recovering=False, dead_lettering=[], window_s=60.0, now=100.0)
    args.update(kw)
    return readiness(**args)


def test_ready_only_when_broker_partitions_recovery_and_dead_letters_are_fine() -> None:
    assert _ready().ready and _ready().status == "ready"
    down = BrokerState()
    down.update(False, "KafkaConnectionError: refused", now=90.0)
    assert _ready(broker=down).reasons == ["broker unreachable for 10 s (KafkaConnectionError: "
                                            "refused)"]
    assert _ready(recovering=True).reasons == ["recovering tables"]
    assert _ready(assigned=0).reasons == ["no partitions assigned"]
    assert _ready(consumer_started=False).reasons == ["consumer not started"]
    assert "dead-lettered every record" in _ready(dead_lettering=[("metrics", 12)]).status


def test_dead_letter_stages_need_a_minimum_and_no_success() -> None:
    window = CounterWindow(60.0)
    window.add(0.0, {"autopilot_dead_letters_total|metrics": 1.0})
    window.add(30.0, {"autopilot_dead_letters_total|metrics": 13.0,
                      "autopilot_dead_letters_total|logs": 20.0,
                      "autopilot_records_processed_total|logs": 5.0})
    assert dead_letter_stages(window.delta(), minimum=10) == [("metrics", 12)]
    assert dead_letter_stages(window.delta(), minimum=13) == []
    # The window slides: old dead letters stop counting.
    window.add(100.0, {"autopilot_dead_letters_total|metrics": 13.0})
    window.add(130.0, {"autopilot_dead_letters_total|metrics": 13.0})
    assert dead_letter_stages(window.delta(), minimum=1) == []


def test_component_status_words() -> None:
    assert component_status(configured=False, ok=0, failed=3) == "not configured"
    assert component_status(configured=True, ok=0, failed=0) == "idle"
    assert component_status(configured=True, ok=2, failed=0) == "ok"
    assert component_status(configured=True, ok=2, failed=1) == "degraded"
    assert component_status(configured=True, ok=0, failed=1) == "failing"
    assert component_status(configured=True, ok=None, failed=0) == "ok"
    delta = {"autopilot_slack_refusals_total|invalid_blocks": 2.0,
             "autopilot_slack_refusals_total|channel_not_found": 1.0}
    assert counter_delta(delta, "autopilot_slack_refusals_total") == 3.0
    assert counter_delta(delta, "autopilot_slack_refusals_total", "invalid_blocks") == 2.0


def test_health_core_imports_no_stream_or_network_library() -> None:
    import autopilot.health as mod

    tree = ast.parse(Path(mod.__file__).read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
             for a in n.names}
    names |= {(n.module or "").split(".")[0] for n in ast.walk(tree)
              if isinstance(n, ast.ImportFrom)}
    assert not names & {"faust", "httpx", "slack_sdk", "redis", "aiohttp", "aiokafka"}


def _snappy(raw: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(raw))


def test_native_histograms_become_count_and_sum_samples() -> None:
    req = WriteRequest()
    ts = req.timeseries.add()
    ts.labels.add(name="__name__", value="rpc_seconds")
    ts.labels.add(name="job", value="api")
    ts.histograms.add(count_int=7, sum=1.25, timestamp=1_714_557_600_000)
    ts.histograms.add(count_float=3.0, sum=0.5, timestamp=1_714_557_615_000, reset_hint=3)
    stale_nan = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]
    ts.histograms.add(count_int=7, sum=stale_nan, timestamp=1_714_557_630_000)
    stats: dict[str, int] = {}
    out = decode_remote_write(_snappy(req.SerializeToString()), stats=stats)
    got = [(p.metric_name, p.value, p.metric_type) for p in out.records]
    assert got == [("rpc_seconds_count", 7.0, "counter"), ("rpc_seconds_sum", 1.25, "counter"),
                   ("rpc_seconds_count", 3.0, "gauge"), ("rpc_seconds_sum", 0.5, "gauge")]
    assert stats["native_histograms"] == 2
    assert out.skipped == {"stale": 2}


@pytest.mark.parametrize(("raw", "status", "words"), [
    (b"\x22\x02up\x2a\x00", 415, "Remote-Write 2.0"),
    (b"\x12\x00", 400, "no time series"),  # only a reserved field: nothing to take
])
def test_a_non_empty_body_without_series_is_refused(raw: bytes, status: int, words: str) -> None:
    with pytest.raises(RemoteWriteError) as exc:
        decode_remote_write(_snappy(raw))
    assert exc.value.status == status and words in exc.value.reason


def test_metadata_only_requests_are_fine_framed_snappy_and_bombs_are_explained() -> None:
    req = WriteRequest()
    req.metadata.add(metric_family_name="http_requests", type=1)
    assert decode_remote_write(_snappy(req.SerializeToString())).records == []
    with pytest.raises(RemoteWriteError, match="framed") as framed:
        decode_remote_write(bytes(cramjam.snappy.compress(req.SerializeToString())))
    assert framed.value.status == 400
    with pytest.raises(RemoteWriteError) as bomb:
        decode_remote_write(_snappy(b"\0" * 100_000), max_decoded_bytes=10_000)
    assert bomb.value.status == 413
