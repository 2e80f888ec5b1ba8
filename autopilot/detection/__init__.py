"""Per-series baselines and anomaly verdicts (pure: no Faust, no network).

Two modes share one state type (:class:`Baseline`), one step function (:func:`step`)
and the seed's Anomaly fields (z-score, baseline mean and std, deviation %, severity).

``seed`` — the seed architecture's rule, unchanged
    For every series keep the last ``window_size`` samples (default 1000); once
    ``min_samples`` (default 10) are in, score each new sample *before* it joins the
    window with ``z = (value − mean) / std`` (population std, ddof = 0) and report an
    anomaly on every sample with |z| > ``z_threshold`` (2.5). Seed example: mean 108,
    std 5.74, value 1500 → z ≈ 242.5, critical, deviation ≈ 1288.9 %. Mean and
    variance use Welford's update extended to a sliding window (O(1) per sample),
    recomputed exactly whenever the ring buffer wraps (bounds drift). State: 8 bytes ×
    window_size plus scalars (≈ 11 KB of JSON at the default).

``adaptive`` — the default: calm and early (measured on NAB, see ``bench/detection.py``)
    1. *Robust location and scale*: an exponentially weighted mean (weight
       ``alpha``, 0.02) and an exponentially weighted mean absolute deviation whose
       updates are clipped to ``clip`` (3) scales (a Huber-type M-estimate); scale
       σ = 1.2533 × mean |deviation| (exact for a normal distribution). Until
       ``min_samples`` are in, the weight is 1/n (a plain average). One spike moves
       the mean by at most ``alpha × clip`` σ: anomalies do not pollute the baseline.
    2. *Direction per metric*: latency, duration, error and timeout metrics only
       alert upwards, availability or success metrics only downwards, everything
       else both ways (name patterns are settings, :func:`resolve_direction`).
    3. *Counters become rates*: a metric whose name ends in ``_total``, ``_count``,
       ``_sum`` or ``_bucket`` (Prometheus conventions) is scored as its per-second
       increase; a value below the previous one is a counter reset, and the
       interval that holds it gives no rate (the restart's moment inside it is
       unknown: counting the new value as the increase over the whole interval, as
       Prometheus' ``rate()`` does, makes a reset to 0 a rate of 0, a false drop).
    4. *Level shifts are re-learned*: after ``relearn_after`` (12) consecutive
       samples more than ``relearn_z`` (3.5) scales away on the same side, the mean
       jumps to their average.
    5. *Anomaly likelihood* (Ahmad et al., Neurocomputing 2017, NAB's HTM detector):
       the raw score r = min(directional |z|, 10) is compared with its own recent
       history: short-term average r̄ (weight ``likelihood_short``, 0.3) against the
       long-term mean μ and std s of r (weight ``likelihood_long``, 0.001);
       tail = Q((r̄ − μ) / s) (Gaussian upper tail) and the anomaly score is
       min(1, −log10(tail) / 10), so 0.2 means tail ≤ 1e-2 and 1.0 tail ≤ 1e-10.
    6. *Novel values score 1.0*: a value never seen before in this series is an
       anomaly by itself, whatever the recent score history. Novel means (a) beyond
       the all-time range [low, high] of learned values by more than
       ``spatial_tolerance`` (0.05) × (high − low) — the "spatial anomaly" rule of
       NAB's HTM detector (Numenta's ``numenta_detector.py``, SPATIAL_TOLERANCE 0.05)
       — or (b) inside the range, in one of :data:`DENSITY_BINS` (48) equal bins over
       it that, with the bins either side, hold less than :data:`DENSITY_NOVEL`
       (1e-4) of the values counted since the likelihood warm-up (deciding from
       :data:`DENSITY_AFTER`, 500, scored samples on). Both respect the direction
       and need directional |z| > ``novelty_z`` (5): in Gaussian noise a new
       all-time high is common (without the bar, 99 of 100 noise series of 3,000
       samples paged; with it 2; without the rules 1). The counts are all-time;
       when the range grows they are moved to the new bins by their old bin
       centres (48 steps, only then).
    7. *Routine departures are damped*: a time-of-day memory keeps, per 15-minute
       slot (:data:`SEASON_SLOT_S`) of the last ``season_days`` (3) days, the largest
       raw score seen (one byte per slot). A sample is routine when, in its own slot
       or the slots either side on one of those days, a departure beyond
       ``z_threshold`` and at least :data:`ROUTINE_RATIO` (half) as large was seen —
       a nightly job or backup that spikes every day. A routine sample does not
       alert and its anomaly score is damped like one inside an episode (a score
       already below ``alert_score / 2`` is left as it is); a novel value (6) still
       scores 1.0.
    8. *One alert per episode*: the sample alerts when its anomaly score ≥
       ``alert_score`` (0.2), its directional |z| > ``z_threshold`` (so severity is
       at least medium by the seed's rule) and the series has not alerted within
       ``episode_s`` (6 h) of event time — unless the sample is more severe than
       the episode's last alert (an escalation: a critical anomaly after a medium
       one still alerts, a second critical one does not). While the score history is
       short (fewer than ``likelihood_warmup`` scored samples, 100) a sample alerts
       when its directional |z| > ``warmup_z`` (6) and the anomaly score is
       |z| / (1 + |z|). The baseline then rests on few samples, so its scale is
       uncertain: with the seed's 2.5 as the bar, 77 % of 2,000 pure Gaussian noise
       series alerted during their first 110 samples (a fleet-wide page storm at
       roll-out and for every new series); with 6, 0.1 % of 20,000 did (27 alerts,
       most on the first ten scored samples), and NAB's scores on ``bench/nab/`` are
       unchanged (the warm-up falls in NAB's probation period).
       Inside an episode the anomaly score is damped below ``alert_score / 2`` so
       rankings reflect new episodes.
    9. *Seasonal expectation* (``seasonal``, ``AUTOPILOT_DETECTION_SEASONAL``, on):
       :class:`autopilot.seasonal.SeasonalModel` learns the expected value and its
       spread per half hour of the UTC day and per hour of the UTC week, and
       detects the rhythm out of sample: a daily period is confirmed after two days
       of data, a weekly one after two weeks (Datadog's "agile"/"robust" need three
       seasons, Watchdog two weeks). Once a period is confirmed the sample is also
       scored against it: with z_s = (value − expected) / spread, the directional
       |z_s| (the direction rules of 2 apply) capped at 10 competes with the level's,
       r = max(min(|z|, 10), min(|z_s|, 10)), and the larger departure is the one
       that counts for severity, the |z| bar of 8, the anomaly likelihood, novelty
       and firing — and the one the Anomaly reports (mean = expected value, std =
       spread, z-score = z_s; ``extras["seasonal_period"]`` says which period). A
       night value at the day's level, inside the all-time range, now alerts. Until
       a period is confirmed, and for a series without one, the stage adds nothing:
       such a series is scored bit for bit as with the stage off. ``behaviour``
       also feeds the model's spike-rate z-score (denser spikes than usual) to the
       likelihood as a raw score (measured: fewer alerts as shipped but a lower
       ranked score on NAB, so not the default).
    Per-sample work is O(1) (plus, when the range grows, re-binning 48 counts; per
    record, one copy of the routine memory and the counts, and one encode of the
    seasonal model); the state is a few dozen scalars, 48 counts, once a departure
    beyond ``z_threshold`` came, 3 × 96 + 2 bytes of routine memory (≈ 1.1 KB of
    JSON; at most 14 days of memory, ≈ 3 KB), and the seasonal model's 2,313 bytes
    (≈ 3.1 KB of JSON): at most ≈ 6.5 KB of JSON per series.

Severity (both modes): medium when |z| > 2.5, high when |z| > 3, critical when
|z| > 4 (seed defaults, all settings).

Firing and recovery (both modes; Prometheus/Alertmanager's "firing" and "resolved")
    A series *fires* from its first alert until it *recovers*. When a sample alerts
    and the series is not firing, the baseline that sample was scored against (mean,
    std) is frozen as the reference, with the alert's severity rank. While firing,
    every later scored sample that does not alert is compared with the frozen
    reference (directional |z|, the metric's direction and the zero-variance rule
    as above); at most ``recover_z`` (``AUTOPILOT_RECOVER_Z``, 2.0) it is back in
    the band. ``recover_samples`` (``AUTOPILOT_RECOVER_SAMPLES``, 5) such samples in
    a row resolve the series (:attr:`Verdict.signal` ``"resolved"``); one sample out
    of the band starts the count again (hysteresis counted in samples, never in
    wall-clock time). The reference stays frozen: a level the detector re-learned
    since (rule 4) is not a recovery, the series keeps firing. A further alert while
    firing (an escalation, or an alert of a later episode) raises the severity rank
    and restarts the count. While the series fires without alerting, a sample at
    least ``signal_resend_s`` (``AUTOPILOT_SIGNAL_RESEND_S``, 300 s of event time)
    after the last firing record sent is a re-send (``signal`` ``"firing"``), as
    Prometheus re-sends firing alerts, so the incident knows it still fires.
    A recovery does not end the alert episode (rule 8): measured on NAB it cost
    3.4 points as shipped on the subset (see :data:`RECOVERY_ENDS_EPISODE`). A
    series that recovered and fails again within ``episode_s`` of its last alert
    therefore only fires again on an escalation or once the episode is over.
    ``Verdict.anomalous`` keeps meaning "this sample alerts" (the backtest's alert
    column, the NAB scores); only an alert starts firing. The state is five
    scalars, written only while firing; a series state switched to the other mode
    starts not firing.

A zero-variance baseline (a flat series) is tested with ``std > 0.0``: a sample
equal to the mean scores 0; a sample that differs is scored against a tiny scale
(:data:`ZERO_VARIANCE_SCALE` × max(|mean|, 1)), which marks the first departure from
a flat line as critical once; nothing divides by zero and a noise-free metric never
alerts forever.

No output is ever NaN or infinite: z-scores and deviations are clamped to
±:data:`MAX_SCORE` (1e9); baseline means, scales and counter rates to ±1e18, so a
metric in the billions (bytes, bytes per second) is scored on its own scale, and
only values beyond ±1e18 meet a clamped baseline; anomaly scores lie in [0, 1].

Modules (each a part of the algorithm above):

- :mod:`.config` — :class:`DetectorConfig`, the direction and counter name rules;
- :mod:`.state` — :class:`Baseline` (one series' state) and its codec, :class:`Verdict`;
- :mod:`.scoring` — z-score, severity, deviation % (the seed's fields, both modes);
- :mod:`.seed` — the seed mode;
- :mod:`.adaptive` — the adaptive mode's per-sample loop, chaining its stages:
  :mod:`.baseline` (rules 1, 3, 4), :mod:`.likelihood` (5), :mod:`.novelty` (6),
  :mod:`.routine` (7), :mod:`.episodes` (8, firing and recovery), :mod:`.seasonal`
  (9, over :mod:`autopilot.seasonal`);
- :mod:`.detector` — :func:`step`, :func:`step_record`, :func:`detect_series` and the
  Anomaly records.

The tunables :data:`ROUTINE_RATIO`, :data:`DENSITY_BINS`, :data:`DENSITY_NOVEL`,
:data:`DENSITY_AFTER` and :data:`RECOVERY_ENDS_EPISODE` may be set on this package
(``bench/detection.py --ablation`` does): the value is set in the module that reads it.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from autopilot.detection import episodes, novelty, routine
from autopilot.detection.config import (
    DEFAULT_COUNTER_SUFFIXES,
    DEFAULT_DOWN_PATTERNS,
    DEFAULT_UP_PATTERNS,
    MAX_SCORE,
    MODES,
    ZERO_VARIANCE_SCALE,
    DetectorConfig,
    resolve_direction,
)
from autopilot.detection.detector import (
    SeriesResult,
    detect_series,
    make_anomaly,
    make_signal_anomaly,
    severity_of_rank,
    step,
    step_record,
)
from autopilot.detection.episodes import RECOVERY_ENDS_EPISODE
from autopilot.detection.novelty import DENSITY_AFTER, DENSITY_BINS, DENSITY_NOVEL
from autopilot.detection.routine import ROUTINE_RATIO, SLOTS_PER_DAY
from autopilot.detection.scoring import deviation_percent, severity_for, z_score
from autopilot.detection.state import Baseline, Verdict

__all__ = [
    "DEFAULT_COUNTER_SUFFIXES",
    "DEFAULT_DOWN_PATTERNS",
    "DEFAULT_UP_PATTERNS",
    "DENSITY_AFTER",
    "DENSITY_BINS",
    "DENSITY_NOVEL",
    "MAX_SCORE",
    "MODES",
    "RECOVERY_ENDS_EPISODE",
    "ROUTINE_RATIO",
    "SLOTS_PER_DAY",
    "ZERO_VARIANCE_SCALE",
    "Baseline",
    "DetectorConfig",
    "SeriesResult",
    "Verdict",
    "detect_series",
    "deviation_percent",
    "make_anomaly",
    "make_signal_anomaly",
    "resolve_direction",
    "severity_for",
    "severity_of_rank",
    "step",
    "step_record",
    "z_score",
]

#: The tunables that may be set on the package, by the module that reads them.
_TUNABLES: dict[str, types.ModuleType] = {
    "ROUTINE_RATIO": routine,
    "DENSITY_BINS": novelty,
    "DENSITY_NOVEL": novelty,
    "DENSITY_AFTER": novelty,
    "RECOVERY_ENDS_EPISODE": episodes,
}


class _Package(types.ModuleType):
    """This package's module type: setting a tunable (:data:`_TUNABLES`) on it also
    sets it in the module the algorithm reads it from."""

    def __setattr__(self, name: str, value: Any) -> None:
        home = _TUNABLES.get(name)
        if home is not None:
            setattr(home, name, value)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
