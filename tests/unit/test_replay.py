"""Idempotency under replay (autopilot.replay): deduplication on the input position."""

from __future__ import annotations

from autopilot import replay
from autopilot.detection import Baseline, DetectorConfig, step_record

CONFIG = DetectorConfig(window_size=100)


def test_source_header_round_trip_and_malformed_values() -> None:
    value = replay.format_source("autopilot.metrics", 3, 1234)

    assert value == b"autopilot.metrics/3/1234"
    assert replay.parse_source(value) == ("autopilot.metrics/3", 1234)
    assert replay.parse_source("team-a.metrics/0/0") == ("team-a.metrics/0", 0)
    for bad in (None, b"", b"no-slash", b"topic/3", b"topic/3/x", b"topic/3/-1"):
        assert replay.parse_source(bad) is None, bad


def test_ingest_replay_with_new_keyed_offsets_does_not_double_count() -> None:
    # Input records 0..9 of autopilot.metrics/2 each carry one sample. The ingest
    # stage forwards them to the keyed topic (keyed offsets 0..9), crashes before
    # committing, and after the restart forwards input 5..9 again (keyed 10..14).
    inputs = [(i, float(100 + i)) for i in range(10)]
    deliveries = [(i, v) for i, v in inputs] + [(i, v) for i, v in inputs[5:]]

    by_input = Baseline()
    by_keyed = Baseline()
    for keyed_offset, (input_offset, value) in enumerate(deliveries):
        by_input, _ = step_record(by_input, [(value, float(input_offset))], input_offset,
                                  CONFIG, stream="autopilot.metrics/2")
        by_keyed, _ = step_record(by_keyed, [(value, float(input_offset))], keyed_offset,
                                  CONFIG, stream="autopilot.metrics.keyed/2")

    uninterrupted = Baseline()
    for input_offset, value in inputs:
        uninterrupted, _ = step_record(uninterrupted, [(value, float(input_offset))],
                                       input_offset, CONFIG, stream="autopilot.metrics/2")

    assert by_input == uninterrupted
    assert by_input.count == 10
    assert by_keyed.count == 15  # what deduplicating on the keyed offset would give


def test_streams_are_deduplicated_independently() -> None:
    b, v1 = step_record(Baseline(), [(1.0, 1.0)], 7, CONFIG, stream="autopilot.metrics/0")
    b, v2 = step_record(b, [(2.0, 2.0)], 3, CONFIG, stream="autopilot.metrics/1")
    b, v3 = step_record(b, [(3.0, 3.0)], 7, CONFIG, stream="autopilot.metrics/0")

    assert (len(v1), len(v2), len(v3)) == (1, 1, 0)
    assert b.count == 2
    assert b.offsets == {"autopilot.metrics/0": 7, "autopilot.metrics/1": 3}


def test_values_stored_by_older_workers_keep_their_keyed_offset() -> None:
    old = {"window": "", "head": 0, "mean": 0.0, "m2": 0.0, "count": 0, "last_offset": 41}

    assert Baseline.from_dict(old).offsets == {"": 41}
    assert replay.offsets_from_dict({"last_offset": -1}) == {}
