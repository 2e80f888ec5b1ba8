"""The batched metrics ingest stage (issue #20): one keyed record per service per batch
of input records, each item's input position in ``x-autopilot-sources``
(:mod:`autopilot.replay`), and the metrics agent deduplicating item by item, so that
batching changes no result and a replayed batch cut elsewhere changes nothing."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autopilot import replay
from autopilot.detection import DetectorConfig
from autopilot.series import SeriesLimits
from autopilot.settings import load_settings
from tests.factories import metric

# --- the header ------------------------------------------------------------------------


@st.composite
def _positions(draw: st.DrawFn) -> list[replay.Position]:
    """Item positions as the ingest stage makes them: offsets never go down within
    an input stream; streams interleave; an input record may hold several items."""
    streams = draw(st.lists(st.sampled_from(
        ["autopilot.metrics/0", "autopilot.metrics/1", "my.topic-x/12"]),
        min_size=1, max_size=40))
    nxt: dict[str, int] = {}
    out = []
    for stream in streams:
        step = draw(st.integers(0, 3))  # 0: another item of the same input record
        nxt[stream] = nxt.get(stream, draw(st.integers(0, 10**12))) + step
        out.append((stream, nxt[stream]))
    return out


@given(_positions())
def test_every_item_position_survives_the_header(positions: list[replay.Position]) -> None:
    value = replay.format_sources(positions)
    assert replay.parse_sources(value, len(positions)) == positions


def test_one_sample_records_of_one_partition_compress_to_one_run() -> None:
    positions = [("autopilot.metrics/0", o) for o in range(10, 510)]
    assert replay.format_sources(positions) == b"autopilot.metrics/0:10-509"
    assert replay.position_header(positions) == (
        replay.SOURCES_HEADER, b"autopilot.metrics/0:10-509")
    # Items of one input record keep the one-record header an unbatched stage wrote.
    assert replay.position_header([("autopilot.metrics/3", 7)] * 4) == (
        replay.SOURCE_HEADER, b"autopilot.metrics/3/7")


@pytest.mark.parametrize("value, items, says", [
    (b"autopilot.metrics/0:1-3", 4, "names 3 positions for 4 items"),
    (b"autopilot.metrics/0:1-3", 2, "more positions than the record's 2 items"),
    (b"autopilot.metrics/0:5-3", 3, "bad x-autopilot-sources run '5-3'"),
    (b"autopilot.metrics/0:1*0", 0, "bad x-autopilot-sources run '1*0'"),
    (b"autopilot.metrics/0:x", 1, "bad x-autopilot-sources run 'x'"),
    (b"autopilot.metrics:1", 1, "bad x-autopilot-sources segment"),
    (b"autopilot.metrics/0:", 1, "bad x-autopilot-sources segment"),
    (b"autopilot.metrics/0:1-2*2", 4, "bad x-autopilot-sources run '1-2*2'"),
])
def test_a_malformed_header_is_refused_with_what_is_wrong(
        value: bytes, items: int, says: str) -> None:
    with pytest.raises(ValueError, match=says.replace("*", r"\*")):
        replay.parse_sources(value, items)


def test_stream_runs_cut_where_the_input_stream_changes() -> None:
    positions = [("a/0", 1), ("a/0", 2), ("a/1", 1), ("a/0", 3)]
    assert replay.stream_runs(positions) == [("a/0", 0, 2), ("a/1", 2, 3), ("a/0", 3, 4)]
    assert replay.stream_runs([]) == []


# --- the metrics agent -----------------------------------------------------------------


def _samples(n: int = 240, twins: bool = False) -> list[dict[str, Any]]:
    """Three series of one service, with departures the detector alerts on; with
    ``twins``, every two samples of a series share a time stamp (with different values:
    both are applied, as NAB's data at a daylight-saving change needs), so a replayed
    sample is not always older than the last one applied."""
    rng = random.Random(11)
    out = []
    for i in range(n):
        for name in ("api_latency_ms", "cpu_ratio", "requests_total"):
            value = 100.0 + rng.gauss(0.0, 5.0)
            if name == "requests_total":
                value = 10.0 * i + rng.random()
            if i in (150, 151, 200) and name != "requests_total":
                value *= 8
            at = 1_700_000_000 + 15 * (i // 2 if twins else i)
            out.append(metric("checkout", value, at, name=name))
    return out


def _keyed(items: list[dict[str, Any]], headers: list[tuple[str, bytes]],
           offset: int) -> Any:
    from faust.events import Event
    from faust.types.tuples import Message

    from autopilot.app import app

    value = json.dumps(items).encode()
    message = Message(topic="autopilot.metrics.keyed", partition=0, offset=offset,
                      timestamp=0.0, timestamp_type=0, headers=headers, key=None,
                      value=value, checksum=None)
    return Event(app, None, value, headers, message)


class Run:
    """The metrics agent over in-memory tables; feeds it keyed records."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from tests.events import metrics_agent_in_memory

        self.tables: dict[bytes, Any] = {}
        self.topic = metrics_agent_in_memory(monkeypatch, self.tables)
        self.config = DetectorConfig.from_settings(load_settings({}))
        self.keyed_offset = 0

    def feed(self, items: list[dict[str, Any]], positions: list[replay.Position]) -> None:
        """One keyed record of ``items``, from input ``positions`` (one per item)."""
        from autopilot.agents import metrics as agent

        event = _keyed(items, [replay.position_header(positions)], self.keyed_offset)
        self.keyed_offset += 1
        asyncio.run(agent.process(event, self.config, SeriesLimits()))

    def batches(self, samples: list[dict[str, Any]], positions: list[replay.Position],
                start: int, stop: int, size: int) -> None:
        for i in range(start, stop, size):
            j = min(i + size, stop)
            self.feed(samples[i:j], positions[i:j])

    @property
    def anomalies(self) -> dict[str, list[Any]]:
        """The anomaly records sent, per series in the order sent (within a keyed
        record the agent works series by series, so only the order across series
        depends on the batching)."""
        out: dict[str, list[Any]] = {}
        for value in self.topic.sent:
            record = json.loads(value)
            out.setdefault(record["series"], []).append(record)
        return out


def _one_partition(samples: list[dict[str, Any]]) -> list[replay.Position]:
    return [("autopilot.metrics/0", i) for i in range(len(samples))]


def test_a_batch_of_one_sample_records_gives_what_the_records_give_one_by_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    samples = _samples()
    positions = _one_partition(samples)
    single = Run(monkeypatch)
    single.batches(samples, positions, 0, len(samples), 1)
    batched = Run(monkeypatch)
    batched.batches(samples, positions, 0, len(samples), 37)
    assert any(a["state"] == "firing" for a in single.anomalies["checkout|cpu_ratio|"])
    assert batched.anomalies == single.anomalies
    assert batched.tables == single.tables  # offsets included


def test_a_replayed_batch_cut_at_other_records_changes_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    samples = _samples(twins=True)
    positions = _one_partition(samples)
    once = Run(monkeypatch)
    once.batches(samples, positions, 0, len(samples), 37)
    # A crash after input offset 449 was forwarded but before it was committed: the
    # ingest stage reads again from 400 and cuts its batches elsewhere (437-473
    # holds applied and new items).
    replayed = Run(monkeypatch)
    replayed.batches(samples, positions, 0, 450, 37)
    replayed.batches(samples, positions, 400, len(samples), 37)
    assert replayed.anomalies == once.anomalies
    assert replayed.tables == once.tables
    # The same batches again: nothing at all.
    sent = len(replayed.topic.sent)
    replayed.batches(samples, positions, 0, len(samples), 23)
    assert len(replayed.topic.sent) == sent
    assert replayed.tables == once.tables


def test_items_of_two_interleaved_partitions_are_applied_once_each(
        monkeypatch: pytest.MonkeyPatch) -> None:
    samples = _samples(twins=True)
    # Even input records came from partition 0, odd ones from partition 1.
    positions = [(f"autopilot.metrics/{i % 2}", i // 2) for i in range(len(samples))]
    single = Run(monkeypatch)
    single.batches(samples, positions, 0, len(samples), 1)
    batched = Run(monkeypatch)
    batched.batches(samples, positions, 0, len(samples), 41)
    batched.batches(samples, positions, 101, 307, 29)  # a replay of part of it
    assert batched.anomalies == single.anomalies
    assert batched.tables == single.tables


def test_a_keyed_record_whose_header_names_other_items_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from autopilot.agents import metrics as agent

    from autopilot.errors import BadRecord

    run = Run(monkeypatch)
    samples = _samples(2)
    event = _keyed(samples, [(replay.SOURCES_HEADER, b"autopilot.metrics/0:1-2")], 0)
    with pytest.raises(BadRecord, match="names 2 positions for 6 items"):
        asyncio.run(agent.process(event, run.config, SeriesLimits()))
    assert run.tables == {}


# --- the ingest stage ------------------------------------------------------------------


class Sent:
    """Stands in for a topic: keeps every ``send``'s keyword arguments."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail = fail

    async def send(self, **kwargs: Any) -> None:
        if self.fail:
            raise RuntimeError("producer closed")
        self.sent.append(kwargs)


def _input(value: bytes, partition: int, offset: int) -> Any:
    from faust.events import Event
    from faust.types.tuples import Message

    from autopilot.app import app

    message = Message(topic="autopilot.metrics", partition=partition, offset=offset,
                      timestamp=0.0, timestamp_type=0, headers=[], key=None, value=value,
                      checksum=None)
    return Event(app, None, value, [], message)


@pytest.fixture
def dead(monkeypatch: pytest.MonkeyPatch) -> Sent:
    from autopilot.agents import deadletter, ingest

    topic = Sent()
    monkeypatch.setattr(deadletter, "deadletter_topic", topic)
    monkeypatch.setattr(ingest, "deadletter_topic", topic)
    return topic


def _point(service: str, value: float, i: int) -> dict[str, Any]:
    return metric(service, value, 1_900_000_000 + i)


def test_a_batch_goes_on_as_one_record_per_service_and_bad_records_are_dead_lettered(
        dead: Sent, monkeypatch: pytest.MonkeyPatch) -> None:
    from autopilot.agents import ingest

    monkeypatch.setattr(ingest.time, "time", lambda: 1_900_000_100.0)
    bad_item = {"service": "cart", "metric_name": "m"}  # no value, no timestamp
    events = [
        _input(json.dumps(_point("cart", 1.0, 0)).encode(), 0, 10),
        _input(b"not json", 0, 11),
        _input(json.dumps(_point("search", 2.0, 1)).encode(), 1, 5),
        _input(json.dumps([_point("cart", 3.0, 2), bad_item]).encode(), 0, 12),
        _input(json.dumps(_point("cart", 4.0, 3)).encode(), 0, 13),
    ]
    target = Sent()
    forwarded = asyncio.run(ingest.forward_batch(events, ingest.decode_metrics_items,
                                                 target, "test.ingest.batch"))
    assert forwarded == 4
    by_key = {s["key"]: s for s in target.sent}
    assert sorted(by_key) == [b"cart", b"search"]
    cart = by_key[b"cart"]
    assert [p["value"] for p in json.loads(cart["value"])] == [1.0, 3.0, 4.0]
    assert cart["headers"] == [(replay.SOURCES_HEADER, b"autopilot.metrics/0:10,12-13")]
    assert by_key[b"search"]["headers"] == [(replay.SOURCE_HEADER, b"autopilot.metrics/1/5")]
    reasons = [dict(d["headers"])["x-autopilot-reason"] for d in dead.sent]
    values = [d["value"] for d in dead.sent]
    assert values[0] == b"not json" and len(dead.sent) == 2
    assert json.loads(values[1]) == bad_item
    assert all(r for r in reasons)


def test_a_batch_that_cannot_be_forwarded_is_dead_lettered_not_lost(
        dead: Sent, monkeypatch: pytest.MonkeyPatch) -> None:
    from autopilot.agents import ingest

    monkeypatch.setattr(ingest.time, "time", lambda: 1_900_000_100.0)
    events = [_input(json.dumps(_point("cart", float(i), i)).encode(), 0, i)
              for i in range(3)]
    forwarded = asyncio.run(ingest.forward_batch(
        events, ingest.decode_metrics_items, Sent(fail=True), "test.ingest.fail"))
    assert forwarded == 0
    assert [d["value"] for d in dead.sent] == [e.value for e in events]
    assert all(dict(d["headers"])["x-autopilot-reason"].startswith(
        b"internal error: RuntimeError: producer closed") for d in dead.sent)


# --- keyed records within the producer's size limit ---------------------------------------


def _metric_points(n: int, per_record: int, series: int) -> tuple[list[Any], list[Any]]:
    from autopilot.models import MetricPoint

    items, positions = [], []
    for i in range(n):
        items.append(MetricPoint.model_validate(
            metric("cart", float(i), 1_900_000_000 + i, name=f"m{i % series}")))
        positions.append(("autopilot.metrics/0", 100 + i // per_record))
    return items, positions


def test_a_batch_over_the_size_limit_is_cut_between_input_records() -> None:
    from autopilot.agents import ingest

    items, positions = _metric_points(600, per_record=50, series=5)
    whole = ingest.encode_items(items)
    parts = ingest.split_for_size(items, positions, len(whole) // 5)
    assert len(parts) > 4
    assert all(len(value) <= len(whole) // 5 for value, _ in parts)
    back = [p for value, _ in parts for p in json.loads(value)]
    assert back == json.loads(whole)  # every item once, in order
    assert [p for _, ps in parts for p in ps] == positions
    for _, ps in parts[1:]:  # no input record in two parts
        assert all(p not in ps for _, other in parts if other is not ps for p in other)


def test_one_large_input_record_is_cut_between_series_never_inside_one() -> None:
    from autopilot.agents import ingest

    items, positions = _metric_points(400, per_record=400, series=8)
    whole = ingest.encode_items(items)
    parts = ingest.split_for_size(items, positions, len(whole) // 3)
    assert len(parts) >= 3
    seen: dict[str, int] = {}
    for n, (value, ps) in enumerate(parts):
        assert len(ps) == len(json.loads(value))
        for point in json.loads(value):
            assert seen.setdefault(point["metric_name"], n) == n  # one part per series
    by_series: dict[str, list[float]] = {}
    for value, _ in parts:
        for point in json.loads(value):
            by_series.setdefault(point["metric_name"], []).append(point["value"])
    assert all(v == sorted(v) for v in by_series.values())  # order kept within a series
    # One series of one input record cannot be cut: it goes as it is.
    one, one_positions = _metric_points(100, per_record=100, series=1)
    assert len(ingest.split_for_size(one, one_positions, 10)) == 1


@pytest.mark.parametrize("limit", [1500, 300])  # 300: input records cut between series
def test_a_batch_cut_for_size_gives_what_the_records_give_one_by_one(
        limit: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from autopilot.agents import ingest

    samples = _samples(twins=True)
    positions = [("autopilot.metrics/0", i // 3) for i in range(len(samples))]
    single = Run(monkeypatch)
    for start in range(0, len(samples), 3):  # one input record: 3 series, one sample each
        single.feed(samples[start:start + 3], positions[start:start + 3])
    from autopilot.models import MetricPoint

    points = [MetricPoint.model_validate(s) for s in samples]
    batched = Run(monkeypatch)
    for start in range(0, len(points), 90):
        chunk = slice(start, start + 90)
        parts = ingest.split_for_size(points[chunk], positions[chunk], limit)
        assert len(parts) > 90 // 3 or limit > 300
        for value, ps in parts:
            batched.feed(json.loads(value), ps)
    assert batched.anomalies == single.anomalies
    assert batched.tables == single.tables


def test_an_input_record_twice_in_one_batch_is_applied_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Two samples at one time stamp with different values (both are applied, so the
    # time-stamp check alone does not stop a repeat of the first).
    a = metric("svc", 1.0, 1_700_000_000, name="x")
    b = metric("svc", 2.0, 1_700_000_000, name="x")
    c = metric("svc", 3.0, 1_700_000_015, name="x")
    ps = [("autopilot.metrics/0", 10), ("autopilot.metrics/0", 11),
          ("autopilot.metrics/0", 12)]
    once = Run(monkeypatch)
    once.batches([a, b, c], ps, 0, 3, 1)
    twice = Run(monkeypatch)
    twice.feed([a, b, a, b, c], [ps[0], ps[1], ps[0], ps[1], ps[2]])
    assert twice.tables == once.tables
    assert once.tables[b"svc|x|"]["count"] == 3


class Refusing(Sent):
    """A topic whose producer refuses values over ``most`` bytes."""

    def __init__(self, most: int) -> None:
        super().__init__()
        self.most = most

    async def send(self, **kwargs: Any) -> None:
        if len(kwargs["value"]) > self.most:
            raise RuntimeError(f"MessageSizeTooLargeError: {len(kwargs['value'])} bytes")
        self.sent.append(kwargs)


def test_a_keyed_record_the_producer_refuses_dead_letters_only_its_input_records(
        dead: Sent, monkeypatch: pytest.MonkeyPatch) -> None:
    from autopilot.agents import ingest

    monkeypatch.setattr(ingest.time, "time", lambda: 1_900_000_100.0)
    monkeypatch.setattr(ingest, "keyed_record_limit", lambda: 2000)
    bulk = [_point("bulk", float(i), i) for i in range(30)]  # one series: cannot be cut
    events = [
        _input(json.dumps(_point("cart", 1.0, 0)).encode(), 0, 1),
        _input(json.dumps(bulk).encode(), 0, 2),
        _input(json.dumps(_point("search", 2.0, 1)).encode(), 0, 3),
    ]
    target = Refusing(2000)
    forwarded = asyncio.run(ingest.forward_batch(events, ingest.decode_metrics_items,
                                                 target, "test.ingest.refused"))
    assert forwarded == 2
    assert sorted(s["key"] for s in target.sent) == [b"cart", b"search"]
    assert [d["value"] for d in dead.sent] == [events[1].value]
    assert dict(dead.sent[0]["headers"])["x-autopilot-reason"].startswith(
        b"internal error: RuntimeError: MessageSizeTooLargeError")
