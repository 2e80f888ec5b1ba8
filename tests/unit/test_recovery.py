"""Firing and recovery of a series' signal (metrics and error rate): the detector
reports when a series that alerted is back inside the band of its pre-alert baseline
(after a hysteresis counted in samples or windows), and re-sends while it still fires.
"""

from __future__ import annotations

import asyncio
import json
import random
import struct
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from autopilot.backtest import InputRow, run_backtest
from autopilot.detection import (
    Baseline,
    DetectorConfig,
    SeriesResult,
    Verdict,
    detect_series,
    step,
    step_record,
)
from autopilot.errorrate import ErrorRateConfig, ErrorRateState, step_records
from autopilot.errorrate import step as error_step
from autopilot.models import Anomaly, LogEntry, Severity
from autopilot.settings import load_settings
from tests.factories import log_entry, metric, metric_point

T0 = 1_700_000_000.0
STEP_S = 15.0
ADAPTIVE = DetectorConfig().for_metric("cpu_ratio")
LATENCY = DetectorConfig().for_metric("api_latency_ms")
SEED = DetectorConfig(mode="seed")


def noise(n: int, mean: float = 100.0, sd: float = 5.0, seed: int = 1) -> list[float]:
    """Bounded noise (uniform, |x − mean| ≤ 1.5 sd): every sample is inside the band."""
    rng = random.Random(seed)
    return [mean + rng.uniform(-1.5, 1.5) * sd for _ in range(n)]


def feed(
    values: list[float], config: DetectorConfig = ADAPTIVE, baseline: Baseline | None = None,
    start: float = T0,
) -> tuple[Baseline, list[Verdict]]:
    b = baseline or Baseline()
    out = []
    for i, v in enumerate(values):
        b, verdict = step(b, v, start + i * STEP_S, config)
        out.append(verdict)
    return b, out


def alerts(verdicts: list[Verdict]) -> list[int]:
    return [i for i, v in enumerate(verdicts) if v.anomalous]


def anomaly_of(result: SeriesResult) -> Anomaly:
    """The record ``result`` carries (it must carry one)."""
    assert result.anomaly is not None
    return result.anomaly


def signals(verdicts: list[Verdict]) -> list[tuple[int, str]]:
    return [(i, v.signal) for i, v in enumerate(verdicts) if v.signal is not None]


# --------------------------------------------------------------------------- metrics


def test_the_settings_build_the_recovery_parameters() -> None:
    config = DetectorConfig.from_settings(load_settings({}))
    assert (config.recover_samples, config.recover_z, config.signal_resend_s) == (5, 2.0, 300.0)
    custom = DetectorConfig.from_settings(load_settings({
        "AUTOPILOT_RECOVER_SAMPLES": "3", "AUTOPILOT_RECOVER_Z": "1.5",
        "AUTOPILOT_SIGNAL_RESEND_S": "60"}))
    assert (custom.recover_samples, custom.recover_z, custom.signal_resend_s) == (3, 1.5, 60.0)
    errors = ErrorRateConfig.from_settings(load_settings({
        "AUTOPILOT_ERROR_RECOVER_BUCKETS": "4", "AUTOPILOT_SIGNAL_RESEND_S": "60"}))
    assert (errors.recover_buckets, errors.resend_s) == (4, 60.0)
    with pytest.raises(ValueError, match="recover_samples"):
        DetectorConfig(recover_samples=0)
    with pytest.raises(ValueError, match="recover_buckets"):
        ErrorRateConfig(recover_buckets=0)


def test_a_spike_then_normal_samples_resolves_after_exactly_recover_samples() -> None:
    warm = noise(150)
    b, _ = feed(warm)
    spike_at = len(warm)
    b, verdicts = feed([400.0, 390.0] + noise(10, seed=2), baseline=b,
                       start=T0 + spike_at * STEP_S)

    assert alerts(verdicts) == [0]
    first = verdicts[0]
    # Two samples out of the band (the spike, one more), then five back inside it:
    # the fifth resolves; no re-send (only 6 samples × 15 s after the alert).
    assert signals(verdicts) == [(6, "resolved")]
    assert all(v.signal is None for v in verdicts[:6])
    assert not verdicts[6].anomalous and verdicts[6].severity is None
    extras = verdicts[6].extras
    # The reference is the baseline the alert was scored against, frozen.
    assert (extras["reference_mean"], extras["reference_std"]) == (first.mean, first.std)
    assert extras["firing_rank"] == Severity.CRITICAL.rank
    assert b.firing_rank == 0  # the state before these samples was not firing


def test_the_firing_state_is_kept_in_the_baseline_and_cleared_on_recovery() -> None:
    b, _ = feed(noise(150))
    b, (alert,) = feed([400.0], baseline=b, start=T0 + 150 * STEP_S)
    assert alert.anomalous
    assert (b.firing_mean, b.firing_std, b.firing_rank) == (alert.mean, alert.std, 3)
    assert b.recover_run == 0 and b.last_sent == T0 + 150 * STEP_S
    b, verdicts = feed(noise(5, seed=3), baseline=b, start=T0 + 151 * STEP_S)
    assert signals(verdicts) == [(4, "resolved")]
    # Not firing; the reference is kept until the episode ends (a departure from it
    # inside the episode fires again).
    assert (b.firing_mean, b.firing_std) == (alert.mean, alert.std)
    assert (b.firing_rank, b.recover_run, b.last_sent) == (0, 0, 0.0)


def test_a_noisy_recovery_that_leaves_the_band_starts_the_count_again() -> None:
    b, _ = feed(noise(150))
    calm = noise(20, seed=4)
    # After the alert: 4 samples back in the band, 1 out (not an alert: the episode
    # is open and it is no more severe), then in the band again.
    b, verdicts = feed([400.0] + calm[:4] + [160.0] + calm[4:], baseline=b,
                       start=T0 + 150 * STEP_S)

    assert alerts(verdicts) == [0]
    assert not verdicts[5].anomalous
    # Resolved on the 5th in-band sample after the one that left the band, not before.
    assert signals(verdicts) == [(10, "resolved")]


def test_recovery_is_judged_against_the_frozen_reference_with_recover_z() -> None:
    b, _ = feed(noise(150))
    b, (alert,) = feed([400.0], baseline=b, start=T0 + 150 * STEP_S)
    just_out = alert.mean + 2.2 * alert.std  # |z| 2.2 > recover_z 2.0: no alert either
    _, verdicts = feed([just_out] * 8, baseline=b, start=T0 + 151 * STEP_S)
    assert signals(verdicts) == [] and alerts(verdicts) == []

    loose = replace(ADAPTIVE, recover_z=2.5)
    _, verdicts = feed([just_out] * 8, config=loose, baseline=b, start=T0 + 151 * STEP_S)
    assert signals(verdicts) == [(4, "resolved")]


def test_a_level_shift_the_detector_relearns_is_not_a_recovery() -> None:
    b, _ = feed(noise(150))
    shifted = noise(120, mean=200.0, seed=5)
    b, verdicts = feed(shifted, baseline=b, start=T0 + 150 * STEP_S)

    assert alerts(verdicts) == [0]
    assert 190.0 < b.mean < 210.0  # re-learned: 200 is the baseline now ...
    assert not any(v.anomalous for v in verdicts[20:])  # ... and calm ...
    assert all(s == "firing" for _, s in signals(verdicts))  # ... but never resolved
    assert b.firing_mean is not None and 95.0 < b.firing_mean < 105.0

    # Back at the old level: that is the recovery (5 samples).
    b, back = feed(noise(8, seed=6), baseline=b, start=T0 + 270 * STEP_S)
    assert alerts(back) == []
    assert signals(back)[-1] == (4, "resolved") and b.firing_rank == 0


def test_re_sends_come_every_resend_interval_while_firing_and_stop_after_recovery() -> None:
    b, _ = feed(noise(150))
    # 300 s of event time at 15 s per sample: a re-send every 20 samples.
    b, verdicts = feed([400.0] * 70 + noise(60, seed=7), baseline=b,
                       start=T0 + 150 * STEP_S)

    assert alerts(verdicts) == [0]
    assert signals(verdicts) == [(20, "firing"), (40, "firing"), (60, "firing"),
                                 (74, "resolved")]
    for i in (20, 40, 60):
        assert verdicts[i].extras["firing_rank"] == Severity.CRITICAL.rank
        assert verdicts[i].extras["reference_mean"] == verdicts[0].mean
    assert b.firing_rank == 0

    fast = replace(ADAPTIVE, signal_resend_s=150.0)
    _, verdicts = feed(noise(150) + [400.0] * 25, config=fast)
    assert [i - 150 for i, s in signals(verdicts)] == [10, 20]


def test_an_escalation_while_firing_raises_the_rank_and_restarts_the_resend_clock() -> None:
    config = replace(ADAPTIVE, z_critical=40.0)  # z 20 is high, z 60 critical
    b, _ = feed(noise(150), config=config)
    b, (alert,) = feed([190.0], config=config, baseline=b, start=T0 + 150 * STEP_S)
    assert alert.anomalous and alert.severity is Severity.HIGH
    assert b.firing_rank == Severity.HIGH.rank
    b, verdicts = feed([190.0] * 3 + [2000.0] + [190.0] * 25, config=config, baseline=b,
                       start=T0 + 151 * STEP_S)

    assert alerts(verdicts) == [3] and verdicts[3].severity is Severity.CRITICAL
    assert b.firing_rank == Severity.CRITICAL.rank
    # The escalation was a firing record: the next re-send is 300 s after it, not
    # after the first alert (which would be sample 19).
    assert signals(verdicts) == [(23, "firing")]
    assert verdicts[23].extras["firing_rank"] == Severity.CRITICAL.rank


def test_latency_recovers_on_a_drop_but_a_two_sided_metric_does_not() -> None:
    warm = noise(150)
    after = [400.0] + [20.0] * 6  # a spike, then far below the old level
    _, latency = feed(warm + after, config=LATENCY)
    _, cpu = feed(warm + after, config=ADAPTIVE)

    # Latency only alerts upwards: a drop is good news, back in its band.
    assert alerts(latency) == [150]
    assert signals(latency) == [(155, "resolved")]
    # Both ways: the drop is out of the band too (and no alert inside the episode).
    assert alerts(cpu) == [150]
    assert signals(cpu) == []


def test_a_latency_drop_alone_never_starts_firing() -> None:
    b, verdicts = feed(noise(150) + [5.0] * 30, config=LATENCY)
    assert alerts(verdicts) == [] and signals(verdicts) == []
    assert b.firing_mean is None


def test_a_zero_variance_baseline_freezes_a_zero_std_and_recovers_at_the_flat_level() -> None:
    b, verdicts = feed([5.0] * 20 + [6.0])
    assert alerts(verdicts) == [20]
    assert b.firing_std == 0.0 and b.firing_mean == 5.0
    # Against a flat reference the scale is 1e-3 × |mean|: 5.001 is z 0.2 (in the
    # band), 5.1 is z 20 (out of it).
    _, out = feed([5.1] * 6, baseline=b, start=T0 + 21 * STEP_S)
    assert signals(out) == []
    _, back = feed([5.0, 5.001, 4.999, 5.0, 5.0], baseline=b, start=T0 + 21 * STEP_S)
    assert signals(back) == [(4, "resolved")]
    assert back[4].extras["reference_std"] == 0.0


def test_the_seed_mode_follows_the_same_rules() -> None:
    warm = noise(30)
    b, verdicts = feed(warm + [400.0, 400.0] + noise(6, seed=8), config=SEED)
    # The seed alerts on every sample beyond |z| 2.5: both spikes are alerts.
    assert alerts(verdicts) == [30, 31]
    assert signals(verdicts) == [(36, "resolved")]
    assert b.firing_mean is None

    flat, verdicts = feed([5.0] * 12 + [6.0], config=SEED)
    assert alerts(verdicts) == [12] and flat.firing_std == 0.0
    _, near = feed([5.001] * 5, config=SEED, baseline=flat, start=T0 + 13 * STEP_S)
    assert signals(near) == [(4, "resolved")]  # z 0.2 against the flat reference
    _, off = feed([5.1] * 5, config=SEED, baseline=flat, start=T0 + 13 * STEP_S)
    assert signals(off) == []  # z 20: out of the band (and not an alert either)
    assert alerts(off) == []


def test_a_repeat_failure_inside_the_episode_fires_again_without_a_new_alert() -> None:
    """Measured (RECOVERY_ENDS_EPISODE): recovery does not end the alert episode, so a
    repeat failure within episode_s is no new alert (the backtest's alert column and
    NAB are unchanged) -- but the series fires again, so its incident re-opens."""
    b, verdicts = feed(noise(150) + [400.0] + noise(10, seed=9) + [400.0] * 3)
    assert alerts(verdicts) == [150]
    assert signals(verdicts) == [(155, "resolved"), (161, "firing")]
    assert b.firing_rank == Severity.CRITICAL.rank
    assert verdicts[161].extras["reference_mean"] == verdicts[150].mean


def test_a_return_to_normal_after_a_relearned_level_is_no_repeat_failure() -> None:
    b, _ = feed(noise(150))
    b, verdicts = feed([400.0] * 40 + noise(30, seed=7), baseline=b, start=T0 + 150 * STEP_S)
    # 100 after a re-learned 400 departs from the current baseline, not from the
    # reference the incident was about: resolved, and not fired again.
    assert [s for _, s in signals(verdicts)][-1] == "resolved"
    assert b.firing_rank == 0


def test_detect_series_builds_the_resend_and_the_resolved_records() -> None:
    values = noise(150) + [400.0] * 21 + noise(5, seed=10)
    points = [metric_point(v, at=T0 + i * STEP_S, name="cpu_ratio", env="prod")
              for i, v in enumerate(values)]
    _, results = detect_series(Baseline(), points, 0, DetectorConfig())

    records = [r for r in results if r.anomaly is not None]
    assert [(anomaly_of(r).state, r.verdict.anomalous) for r in records] == [
        ("firing", True), ("firing", False), ("resolved", False)]
    alert, resend, resolved = (anomaly_of(r) for r in records)
    assert resend.detected_at == points[170].timestamp
    assert resolved.detected_at == points[175].timestamp
    for record in (resend, resolved):
        assert record.kind == "metric" and record.series == alert.series
        assert record.severity is alert.severity is Severity.CRITICAL
        assert record.baseline_mean == alert.baseline_mean
        assert record.baseline_std_dev == alert.baseline_std_dev
        assert record.labels == alert.labels
    assert resend.z_score == alert.z_score  # the same 400 against the same reference
    assert resolved.current_value == values[175]
    assert resolved.z_score == pytest.approx(
        (values[175] - alert.baseline_mean) / alert.baseline_std_dev)
    assert abs(resolved.z_score) <= 2.0


def test_old_states_without_the_firing_fields_load_as_not_firing() -> None:
    b, _ = feed(noise(150))
    firing, _ = feed([400.0], baseline=b, start=T0 + 150 * STEP_S)
    data = firing.to_dict()
    assert data["firing_mean"] == firing.firing_mean
    old = {k: v for k, v in data.items()
           if k not in ("firing_mean", "firing_std", "firing_rank", "recover_run", "last_sent")}
    assert Baseline.from_dict(json.loads(json.dumps(old))) == replace(
        firing, firing_mean=None, firing_std=0.0, firing_rank=0, recover_run=0, last_sent=0.0)
    # A calm state is written exactly as before the fields existed.
    assert "firing_mean" not in b.to_dict()
    for state in (b, firing):
        assert Baseline.from_dict(json.loads(json.dumps(state.to_dict(),
                                                        allow_nan=False))) == state

    seed, _ = feed(noise(30) + [400.0], config=SEED)
    assert seed.firing_mean is not None
    assert Baseline.from_dict(json.loads(json.dumps(seed.to_dict()))) == seed
    seed_old = {k: v for k, v in seed.to_dict().items() if not k.startswith("firing")}
    assert Baseline.from_dict(seed_old).firing_mean is None

    errors = ErrorRateState(bucket_start=60, errors=2, total=3, history=(0, 1))
    old_errors = {k: v for k, v in errors.to_dict().items()
                  if k not in ("firing_mean", "firing_scale", "firing_rank", "recover_run",
                               "last_sent")}
    assert ErrorRateState.from_dict(old_errors) == errors


def _same(a: float, b: float) -> bool:
    return struct.pack("<d", a) == struct.pack("<d", b)


@pytest.mark.parametrize(("mode", "metric"), [
    ("adaptive", "cpu_ratio"), ("adaptive", "api_latency_ms"), ("adaptive", "requests_total"),
    ("seed", "cpu_ratio"),
])
def test_a_record_of_n_samples_equals_n_single_steps_with_recoveries(
    mode: str, metric: str
) -> None:
    config = DetectorConfig(mode=mode, likelihood_warmup=20, warmup_z=3.0, episode_s=900.0,
                            recover_samples=3, signal_resend_s=120.0).for_metric(metric)
    rng = random.Random(11)
    samples, total = [], 0.0
    for i in range(1500):
        value = 100.0 + rng.gauss(0.0, 3.0)
        if i % 211 in range(100, 100 + rng.choice([1, 4, 30])):
            value *= 4.0  # failures of varying length, then recoveries
        if config.counter:
            total += value
            value = total
        samples.append((value, T0 + 15.0 * i))

    stepped, expected = Baseline(), []
    for value, ts in samples:
        stepped, verdict = step(stepped, value, ts, config)
        expected.append(verdict)
    batched, verdicts = Baseline(), []
    for offset in range(0, len(samples), 37):
        batched, got = step_record(batched, samples[offset:offset + 37], offset, config, "s/0")
        verdicts += got

    kinds = {v.signal for v in verdicts}
    assert {"firing", "resolved"} <= kinds
    assert replace(batched, offsets=stepped.offsets) == stepped
    assert verdicts == expected
    for got_v, want in zip(verdicts, expected, strict=True):
        for name in ("value", "mean", "std", "z_score", "score"):
            assert _same(getattr(got_v, name), getattr(want, name)), name
        if want.signal is not None:
            assert _same(got_v.extras["reference_z"], want.extras["reference_z"])


def test_the_backtest_alert_column_counts_alerts_only_and_records_hold_every_record() -> None:
    values = noise(150) + [400.0] * 21 + noise(5, seed=10)
    rows = [InputRow(str(i), T0 + i * STEP_S, v) for i, v in enumerate(values)]
    result = run_backtest(rows, DetectorConfig(), service="checkout", metric="cpu_ratio")

    assert [i for i, r in enumerate(result.rows) if r.alert] == [150]
    assert len(result.alerts) == 1 and result.summary()["alerts"] == 1
    assert [anomaly_of(r).state for r in result.records] == ["firing", "firing", "resolved"]
    assert result.rows[175].severity is None


@pytest.mark.parametrize("mode", ["adaptive", "seed"])
def test_the_live_agent_sends_what_the_backtest_records(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autopilot.agents import metrics as agent

    from autopilot import telemetry
    from autopilot.series import SeriesLimits
    from tests.events import keyed_metrics_event, metrics_agent_in_memory

    values = noise(150) + [400.0] * 45 + noise(12, seed=12) + [400.0, 100.0, 100.0]
    rows = [InputRow(str(i), T0 + i * STEP_S, v) for i, v in enumerate(values)]
    config = replace(DetectorConfig(), mode=mode)
    backtest = run_backtest(rows, config, service="checkout", metric="cpu_ratio")
    topic = metrics_agent_in_memory(monkeypatch)
    resolved = telemetry.SIGNAL_RECORDS.labels(kind="metric", state="resolved")
    before = resolved._value.get()

    async def run() -> None:
        for offset, start in enumerate(range(0, len(rows), 7)):
            chunk = rows[start:start + 7]
            value = json.dumps([metric("checkout", r.value, r.epoch_s, name="cpu_ratio")
                                for r in chunk]).encode()
            await agent.process(keyed_metrics_event(value, offset), config, SeriesLimits())

    asyncio.run(run())
    live = [json.loads(v) for v in topic.sent]
    offline = [json.loads(anomaly_of(r).model_dump_json()) for r in backtest.records]
    assert live == offline
    states = [a["state"] for a in live]
    assert "resolved" in states and states.count("firing") > len(backtest.alerts)
    assert resolved._value.get() - before == states.count("resolved")


# --------------------------------------------------------------------------- error rate

E0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)  # a minute boundary


def minute(m: float, s: float = 0.0) -> datetime:
    return E0 + timedelta(minutes=m, seconds=s)


def line(at: datetime, level: str = "INFO") -> LogEntry:
    return log_entry("db timeout", at=at, level=level)


ERRORS = ErrorRateConfig()


class ErrorFeed:
    def __init__(self, config: ErrorRateConfig = ERRORS) -> None:
        self.state = ErrorRateState()
        self.offset = 0
        self.config = config
        self.records: list = []

    def __call__(self, *entries: LogEntry) -> None:
        self.state, out = step_records(self.state, list(entries), self.offset, self.config)
        self.offset += 1
        self.records.extend(out)

    def minutes(self, first: int, last: int, errors: int = 0, infos: int = 2) -> None:
        for m in range(first, last):
            for s in range(infos):
                self(line(minute(m, 30 + s)))
            for s in range(errors):
                self(line(minute(m, s * 0.5), "ERROR"))

    @property
    def kinds(self) -> list[tuple[str, bool]]:
        return [(r.anomaly.state, r.alert) for r in self.records]


def test_an_error_rate_resolves_after_recover_buckets_quiet_windows() -> None:
    feed = ErrorFeed()
    feed.minutes(0, 10)
    feed.minutes(10, 11, errors=20)
    assert feed.kinds == [("firing", True)]
    assert feed.state.firing_mean == 0.0 and feed.state.firing_scale == 1.0
    feed.minutes(11, 14)  # three quiet windows; the third closes at minute 14
    assert feed.kinds == [("firing", True)]
    feed(line(minute(14, 1)))

    assert feed.kinds == [("firing", True), ("resolved", False)]
    resolved = feed.records[1].anomaly
    assert resolved.kind == "error_rate" and resolved.series == "checkout|error_rate|"
    assert resolved.detected_at == minute(14)  # the end of the last in-band window
    assert resolved.severity is Severity.CRITICAL
    assert (resolved.current_value, resolved.baseline_mean, resolved.z_score) == (0.0, 0.0, 0.0)
    assert feed.state.firing_mean is None and feed.state.recover_run == 0


def test_empty_gap_windows_count_towards_the_error_rate_recovery() -> None:
    feed = ErrorFeed()
    feed.minutes(0, 10)
    feed.minutes(10, 11, errors=20)
    feed(line(minute(30)))  # nothing at all for minutes 11..29

    assert feed.kinds == [("firing", True), ("resolved", False)]
    assert feed.records[1].anomaly.detected_at == minute(14)
    assert feed.state.history[-20:] == (20,) + (0,) * 19


def test_a_noisy_error_rate_recovery_starts_the_count_again() -> None:
    feed = ErrorFeed()
    feed.minutes(0, 10)
    feed.minutes(10, 11, errors=20)
    feed.minutes(11, 13)
    feed.minutes(13, 14, errors=6)  # z 6 > 3 against the frozen reference: out
    feed.minutes(14, 16)
    assert [k for k, _ in feed.kinds] == ["firing"]
    feed.minutes(16, 18)  # windows 14, 15, 16 are quiet: resolved when 16 closes

    assert feed.kinds == [("firing", True), ("resolved", False)]
    assert feed.records[1].anomaly.detected_at == minute(17)


def test_few_errors_are_in_the_band_whatever_their_z() -> None:
    feed = ErrorFeed()
    feed.minutes(0, 10)
    feed.minutes(10, 11, errors=20)
    feed.minutes(11, 14, errors=4)  # 4 < min_count 5 (z 4 > 3)
    feed(line(minute(14, 1)))
    assert [k for k, _ in feed.kinds] == ["firing", "resolved"]


def test_a_sustained_error_storm_re_sends_every_resend_interval_and_escalations_alert() -> None:
    feed = ErrorFeed(ErrorRateConfig(detector=DetectorConfig(z_critical=8.0)))
    feed.minutes(0, 10)
    feed.minutes(10, 11, errors=5)  # z 5: high (critical needs z > 8 here)
    assert feed.kinds == [("firing", True)]
    assert feed.records[0].anomaly.severity is Severity.HIGH
    feed.minutes(11, 12, errors=40)  # against the history: an escalation
    assert feed.kinds[-1] == ("firing", True)
    assert feed.records[-1].anomaly.severity is Severity.CRITICAL
    escalated_at = feed.state.last_sent
    feed.minutes(12, 30, errors=40)  # no longer a spike against its own history
    sent = [r.anomaly for r in feed.records[2:]]

    assert [(a.state, r.alert) for a, r in zip(sent, feed.records[2:], strict=True)] == [
        ("firing", False)] * len(sent)
    assert len(sent) >= 3
    times = [a.detected_at.timestamp() for a in sent]
    assert times[0] - escalated_at >= 300.0
    assert all(b - a >= 300.0 for a, b in zip(times, times[1:], strict=False))
    assert all(a.severity is Severity.CRITICAL for a in sent)
    assert feed.state.firing_mean is not None  # still firing: no resolution


def test_no_error_rate_records_after_the_recovery_until_a_new_spike() -> None:
    feed = ErrorFeed()
    feed.minutes(0, 10)
    feed.minutes(10, 11, errors=20)
    feed.minutes(11, 40)
    assert [k for k, _ in feed.kinds] == ["firing", "resolved"]
    feed.minutes(40, 41, errors=20)
    assert feed.kinds[-1] == ("firing", True)


def test_error_rate_step_and_step_records_agree_and_replays_change_nothing() -> None:
    feed = ErrorFeed()
    feed.minutes(0, 10)
    feed.minutes(10, 11, errors=20)
    burst = [line(minute(m, 1)) for m in range(11, 16)]
    once, records = step_records(feed.state, burst, 999, feed.config)
    again, replayed = step_records(once, burst, 999, feed.config)
    plain_state, plain = error_step(feed.state, burst, 999, feed.config)

    assert [r.anomaly.state for r in records] == ["resolved"]
    assert again == once and replayed == []
    assert plain_state == once and plain == [r.anomaly for r in records]
    data = json.loads(json.dumps(feed.state.to_dict(), allow_nan=False))
    assert ErrorRateState.from_dict(data) == feed.state


def test_late_samples_older_than_the_alert_say_nothing_about_recovery() -> None:
    """Samples of one series can arrive out of order (several input partitions): a
    sample older than the alert neither counts toward recovery nor re-fires."""
    b, _ = feed(noise(150))
    b, (alert,) = feed([400.0], baseline=b, start=T0 + 150 * STEP_S)
    assert alert.anomalous
    late = noise(10, seed=11)  # normal values, dated before the alert
    b, verdicts = feed(late, baseline=b, start=T0 + 100 * STEP_S)
    assert signals(verdicts) == [] and b.firing_rank == Severity.CRITICAL.rank
    assert b.recover_run == 0
    b, verdicts = feed(noise(5, seed=12), baseline=b, start=T0 + 151 * STEP_S)
    assert signals(verdicts) == [(4, "resolved")]
