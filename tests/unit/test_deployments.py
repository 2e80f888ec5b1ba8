"""Unit tests of autopilot.deployments: newest deployments per service, replay-safe."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

from autopilot.deployments import MAX_KEPT, DeploymentHistory
from autopilot.models import DeploymentEvent

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def dep(minutes: float, version: str | None = None) -> DeploymentEvent:
    return DeploymentEvent(
        timestamp=T0 + timedelta(minutes=minutes),
        service="checkout",
        version=version or f"v{minutes:g}",
    )


def test_keeps_the_newest_20_sorted_by_event_time() -> None:
    minutes = list(range(30))
    random.Random(4).shuffle(minutes)
    history = DeploymentHistory()
    for offset, chunk in enumerate(range(0, 30, 7)):
        history = history.apply([dep(m) for m in minutes[chunk : chunk + 7]], offset=offset)

    kept = history.deployments()
    assert MAX_KEPT == 20
    assert len(kept) == 20
    assert [d.version for d in kept] == [f"v{m}" for m in range(10, 30)]
    assert [d.timestamp for d in kept] == sorted(d.timestamp for d in kept)


def test_a_late_old_deployment_is_sorted_in_or_dropped() -> None:
    history = DeploymentHistory().apply([dep(10), dep(30)], offset=0)
    history = history.apply([dep(20)], offset=1)

    assert [d.version for d in history.deployments()] == ["v10", "v20", "v30"]

    small = DeploymentHistory().apply([dep(10), dep(30)], offset=0, max_kept=2)
    small = small.apply([dep(5)], offset=1, max_kept=2)
    assert [d.version for d in small.deployments()] == ["v10", "v30"]


def test_replay_of_an_applied_offset_is_a_no_op() -> None:
    once = DeploymentHistory().apply([dep(1)], offset=5)

    again = once.apply([dep(1)], offset=5)
    older = once.apply([dep(2)], offset=4)

    assert again is once and older is once
    assert len(once.deployments()) == 1
    assert once.offsets == {"": 5}
    assert once.apply([dep(2)], offset=6).offsets == {"": 6}


def test_before_and_within_are_inclusive_event_time_windows() -> None:
    history = DeploymentHistory().apply([dep(m) for m in (0, 10, 20, 30, 40)], offset=0)
    moment = T0 + timedelta(minutes=30)

    assert [d.version for d in history.before(moment, timedelta(minutes=20))] == [
        "v10",
        "v20",
        "v30",
    ]
    assert [d.version for d in history.before(moment, timedelta(minutes=5))] == ["v30"]
    assert history.before(T0 - timedelta(minutes=1), timedelta(minutes=30)) == []
    window = history.within(T0 + timedelta(minutes=5), T0 + timedelta(minutes=40))
    assert [d.version for d in window] == ["v10", "v20", "v30", "v40"]
    assert history.within(T0 + timedelta(minutes=41), T0 + timedelta(hours=1)) == []


def test_round_trip_through_json() -> None:
    history = DeploymentHistory().apply([dep(1), dep(2)], offset=3)

    restored = DeploymentHistory.from_dict(json.loads(json.dumps(history.to_dict())))

    assert restored == history
    assert DeploymentHistory.from_dict(None) == DeploymentHistory()
