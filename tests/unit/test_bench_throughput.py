"""bench/throughput.py's pure parts: the remote_write phase (the WriteRequests it builds,
the in-process decode rate, and the client that posts them, against a real aiohttp
server on loopback that decodes every body with the worker's decoder), the median of
the repeated phases, the command line, and the scaling sweep's plan and records."""

from __future__ import annotations

import asyncio
import json
import math
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import cramjam
import pytest
from aiohttp import web

from autopilot.broker import free_port
from autopilot.formats.remote_write import WriteRequest, decode_remote_write

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import throughput as bench  # noqa: E402


def test_bodies_are_write_requests_of_2000_samples_dealt_to_shards_by_series() -> None:
    shards = bench.remote_write_bodies(services=30, metrics=20, shards=4, requests=10)

    assert [len(bodies) for bodies in shards] == [3, 3, 2, 2]
    owner: dict[tuple[str, str], int] = {}
    for k, bodies in enumerate(shards):
        times: dict[tuple[str, str], list[float]] = defaultdict(list)
        for body, samples in bodies:
            assert samples == bench.SAMPLES_PER_SEND == 2000
            raw = bytes(cramjam.snappy.decompress_raw(body))  # snappy block format
            req = WriteRequest()
            req.ParseFromString(raw)
            assert len(req.timeseries) == 2000  # one TimeSeries per sample
            assert all(len(ts.samples) == 1 for ts in req.timeseries)
            decoded = decode_remote_write(body)
            assert len(decoded.records) == 2000 and not decoded.errors
            for point in decoded.records:
                series = (point.labels["service"], point.metric_name)
                assert owner.setdefault(series, k) == k  # a series stays on one shard
                times[series].append(point.timestamp.timestamp())
        # 600 series / 4 shards = 150 per shard; each sends every one of its series
        # once per 15-s round, in time order.
        assert len(times) == 150
        for stamps in times.values():
            assert stamps == [bench.T0 + i * bench.STEP_S for i in range(len(stamps))]
    assert len(owner) == 600


def test_bodies_refuse_more_shards_than_series_and_empty_counts() -> None:
    with pytest.raises(ValueError, match="3 shards for 2 series"):
        bench.remote_write_bodies(services=1, metrics=2, shards=3, requests=1)
    with pytest.raises(ValueError, match="must be ≥ 1"):
        bench.remote_write_bodies(services=1, metrics=2, shards=1, requests=0)


def test_decode_rate_counts_the_samples_and_refuses_a_body_that_lies() -> None:
    bodies = bench.remote_write_bodies(services=5, metrics=4, shards=1, requests=2,
                                       samples_per_send=50)[0]

    rate = bench.measure_decode(bodies)

    assert math.isfinite(rate) and rate > 0
    with pytest.raises(RuntimeError, match="a body of 51 samples decoded to 50"):
        bench.measure_decode([(bodies[0][0], 51)])


@asynccontextmanager
async def _receiver(statuses: list[int], seen: list[int]) -> AsyncIterator[str]:
    """A remote write receiver on loopback: decodes each body with the worker's
    decoder, records its sample count, and answers the next status of ``statuses``."""
    answers = iter(statuses)

    async def write(request: web.Request) -> web.Response:
        assert request.headers["Content-Encoding"] == "snappy"
        assert request.headers["Content-Type"] == "application/x-protobuf"
        seen.append(len(decode_remote_write(await request.read()).records))
        return web.Response(status=next(answers))

    app = web.Application()
    app.router.add_post("/api/v1/write", write)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/api/v1/write"
    finally:
        await runner.cleanup()


def test_post_counts_only_2xx_as_accepted_and_reports_the_other_answers() -> None:
    shards = bench.remote_write_bodies(services=10, metrics=10, shards=2, requests=6,
                                       samples_per_send=40)
    seen: list[int] = []

    async def go() -> bench.RemoteWriteRun:
        async with _receiver([204, 429, 204, 503, 200, 204], seen) as url:
            return await bench.post_remote_write(url, shards)

    run = asyncio.run(go())

    assert seen == [40] * 6 and run.requests == 6  # every body reached the server whole
    assert run.accepted_samples == 4 * 40
    assert run.errors == {"429": 1, "503": 1}
    assert len(run.latencies_ms) == 4 and all(ms > 0 for ms in run.latencies_ms)
    assert run.seconds > 0 and run.samples_per_s == pytest.approx(160 / run.seconds)


def test_post_reports_a_refused_connection_as_an_error_not_as_accepted() -> None:
    shards = bench.remote_write_bodies(services=2, metrics=2, shards=1, requests=2,
                                       samples_per_send=4)
    url = f"http://127.0.0.1:{free_port()}/api/v1/write"  # nothing listens

    run = asyncio.run(bench.post_remote_write(url, shards, timeout_s=5))

    assert run.accepted_samples == 0 and run.latencies_ms == []
    assert run.errors == {"ConnectError": 2}
    assert math.isnan(bench.percentile(run.latencies_ms, 99))


def test_post_starts_no_request_after_its_time_is_up() -> None:
    shards = bench.remote_write_bodies(services=2, metrics=2, shards=2, requests=4,
                                       samples_per_send=4)
    seen: list[int] = []

    async def go() -> bench.RemoteWriteRun:
        async with _receiver([204] * 4, seen) as url:
            return await bench.post_remote_write(url, shards, seconds=0.0)

    run = asyncio.run(go())

    assert seen == [] and run.requests == 0 and run.accepted_samples == 0


# ------------------------------------------------------------------ medians, flags, sweep


def test_median_of_odd_and_even_counts_skips_nans_and_is_nan_when_empty() -> None:
    assert bench.median([16_785.0, 10_374.0, 12_000.0]) == 12_000.0
    assert bench.median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert bench.median([7.0, float("nan"), 1.0, 5.0]) == 5.0
    assert math.isnan(bench.median([]))
    assert math.isnan(bench.median([float("nan")]))


def test_default_flags_run_three_repeats_and_the_five_sweep_points() -> None:
    args = bench.parse_args([])

    assert args.repeats == 3 and not args.scaling and args.scaling_records == 1000
    assert args.scaling_points == [(500, 20), (50, 200), (5, 2000), (5, 200), (500, 200)]
    per_service = {m for s, m in args.scaling_points if s * m == 10_000}
    totals = {s * m for s, m in args.scaling_points if m == 200}
    assert per_service == {20, 200, 2000} and totals == {1_000, 10_000, 100_000}


def test_flags_parse_repeats_and_the_sweep_options() -> None:
    args = bench.parse_args(["--repeats", "5", "--scaling", "--scaling-points",
                             " 10x20, 2X600 ,3×7", "--scaling-records", "40"])

    assert args.repeats == 5 and args.scaling and args.scaling_records == 40
    assert args.scaling_points == [(10, 20), (2, 600), (3, 7)]


@pytest.mark.parametrize(("argv", "message"), [
    (["--repeats", "0"], "--repeats must be at least 1, not 0"),
    (["--scaling-records", "0"], "--scaling-records must be at least 1"),
    (["--scaling-seconds", "0"], "--scaling-seconds must be above 0"),
    (["--scaling", "--soak", "60"], "--scaling excludes --soak"),
    (["--scaling", "--remote-write-only"], "--scaling excludes"),
    (["--scaling-points", "500x20,abc"], "item 'abc' is not SERVICESxMETRICS"),
    (["--scaling-points", "0x20"], "item '0x20' is not SERVICESxMETRICS"),
    (["--scaling-points", "5x20,5x20"], "item '5x20' is given twice"),
    (["--scaling-points", ""], "item '' is not SERVICESxMETRICS"),
])
def test_bad_flags_exit_2_naming_the_option(
        argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        bench.parse_args(argv)

    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_plan_keeps_the_measured_window_at_least_half_the_traffic() -> None:
    plan = bench.scaling_plan(bench.SCALING_POINTS, batch=500, records=1000)

    assert [(p.services, p.metrics, p.series) for p in plan] == [
        (500, 20, 10_000), (50, 200, 10_000), (5, 2000, 10_000), (5, 200, 1_000),
        (500, 200, 100_000)]
    # Warm-up: every service once, or ⌈2000 / 500⌉ = 4 times for 2,000 metrics.
    assert [p.warm_records for p in plan] == [500, 50, 20, 5, 500]
    assert [p.records for p in plan] == [1000] * 5
    short = bench.scaling_plan([(500, 200), (5, 2000)], batch=500, records=10)
    assert [p.records for p in short] == [1000, 40]  # twice the warm-up, not 10
    with pytest.raises(ValueError, match="at least one point"):
        bench.scaling_plan([], batch=500, records=10)
    with pytest.raises(ValueError, match="batch \\(0\\)"):
        bench.scaling_plan([(1, 1)], batch=0, records=10)


def test_sweep_records_hold_batch_samples_and_create_every_series_in_the_warm_up() -> None:
    point = bench.scaling_plan([(3, 7)], batch=5, records=1)[0]  # 3 × ⌈7/5⌉ = 6 warm-up
    records = list(bench.cursor_records(point.services, point.metrics, point.batch,
                                        point.records))

    assert len(records) == point.records == 12
    seen: set[tuple[str, str]] = set()
    last: dict[tuple[str, str], float] = {}
    for i, (key, value, n) in enumerate(records):
        items = json.loads(value)
        assert n == len(items) == 5
        for item in items:
            series = (item["labels"]["service"], item["metric_name"])
            assert item["labels"]["service"] == key.decode()
            assert item["timestamp"] > last.get(series, 0.0)  # time order per series
            last[series] = item["timestamp"]
            if i < point.warm_records:
                seen.add(series)
    assert len(seen) == point.series == 21
    assert len({k for k, _, _ in records[:3]}) == 3  # services in round robin


def test_sweep_records_equal_the_batched_records_when_metrics_divide_the_batch() -> None:
    a = list(bench.cursor_records(4, 20, 100, 200))
    b = list(bench.batched_records(4, 20, 100, 200))

    assert a == b
    assert any(b"1000.0" in value for _, value, _ in a)  # the spikes are there too
    # One timestamp per record, a spike asked for in every record: the first spike is in
    # the same record (the 21st timestamp) in both.
    a = list(bench.cursor_records(1, 20, 20, 30, anomaly_every=1))
    b = list(bench.batched_records(1, 20, 20, 30, anomaly_every=1))
    assert a == b
    assert [b"1000.0" in value for _, value, _ in a].index(True) == 20


def test_result_prints_runs_and_the_scaling_table() -> None:
    text = bench.format_result({
        "faust_floor_records_per_s": 12_000.0,
        "faust_floor_records_per_s_runs": [16_785.0, 10_374.0, 12_000.0],
        "single_over_faust_floor": 0.2,
        "scaling": [{"services": 5, "series_per_service": 2000, "series": 10_000,
                     "samples": 500_000, "samples_per_s": 12_345.6,
                     "state_bytes_per_series": 3054.2, "rss_bytes": 250e6}]})

    lines = text.splitlines()
    assert lines[1].split() == ["faust_floor_records_per_s", "12,000"]
    assert lines[2].split() == ["faust_floor_records_per_s_runs", "16,785", "/", "10,374",
                                "/", "12,000"]
    assert lines[3].split() == ["single_over_faust_floor", "0.200"]
    assert lines[4].split()[0] == "series/service"
    assert lines[5].split() == ["2,000", "5", "10,000", "12,346", "3,054", "250"]
