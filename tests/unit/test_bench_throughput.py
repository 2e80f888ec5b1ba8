"""bench/throughput.py's remote_write phase: the WriteRequests it builds, the in-process
decode rate, and the client that posts them (against a real aiohttp server on
loopback that decodes every body with the worker's decoder)."""

from __future__ import annotations

import asyncio
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
