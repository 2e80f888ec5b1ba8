"""Per-series state and its codec (part of :mod:`autopilot.detection`).

:class:`Baseline` is one series' whole detector state (both modes), immutable and
replaced by every step; :meth:`Baseline.to_dict` / :meth:`Baseline.from_dict` are the
baselines table's JSON codec (version 2; version 1, the seed-only form, and states
written before a field existed still load). :class:`Verdict` is the score of one
sample. Sizes: seed, 8 bytes × ``window_size`` plus scalars (≈ 11 KB of JSON at
1000); adaptive, a few dozen scalars, ``DENSITY_BINS`` (48) counts and the routine
memory's ``96 × season_days + 2`` bytes (≈ 1.1 KB of JSON, at most ≈ 3 KB), and with
the seasonal stage on the seasonal expectation's 2,313 bytes (≈ 3.1 KB of JSON).

:func:`new_baseline` and :func:`new_verdict` build both without the frozen
dataclasses' ``__init__`` (the per-sample loops' cost: the slots are written
directly).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np

from autopilot import replay
from autopilot.detection.baseline import MAD_TO_STD
from autopilot.detection.config import MAX_MEAN
from autopilot.detection.scoring import finite
from autopilot.models import Severity

__all__ = ["NOT_FIRING", "Baseline", "Verdict", "forget_seasonal_text", "new_baseline",
           "new_verdict", "slot_setter"]


@dataclass(frozen=True, slots=True)
class Baseline:
    """Baseline of one series; immutable, replaced by :func:`step`.

    Seed mode uses ``window``/``head``/``mean``/``m2``; adaptive mode uses ``mean``,
    ``scale`` and the scalars after it (``window`` stays empty).

    Attributes:
        window: seed: the last samples, oldest first once rotated by ``head``.
        head: seed: index in ``window`` of the oldest sample once the window is full.
        mean: seed: mean of ``window``; adaptive: robust location.
        m2: seed: sum of squared deviations from the mean (Welford), var = m2 / n.
        count: samples ever applied.
        offsets: per source stream (``"<input topic>/<partition>"``, see
            :mod:`autopilot.replay`), the offset of the last record applied; a record
            at or below it is a replay and changes nothing.
        last_timestamp: epoch seconds of the newest sample applied (0.0: none).
        mode: the detector mode that built this state.
        learned: adaptive: values learned (counters: rates, one fewer than samples).
        scale: adaptive: mean absolute deviation (σ ≈ 1.2533 × scale).
        run_count, run_sum, run_side: adaptive: the current out-of-band run.
        score_short, score_mean, score_var, score_n: adaptive: raw-score statistics.
        last_alert: adaptive: event time (epoch s) of the last alert (None: never).
        last_alert_rank: adaptive: severity rank of the episode's last alert
            (1 medium … 3 critical; 0 outside an episode).
        prev_value, prev_time: adaptive counters: the previous raw value and time.
        low, high: adaptive: the all-time range of learned values (None: none yet).
        season: adaptive: the routine memory, a ring of ``SLOTS_PER_DAY × season_days
            + 2`` bytes, each the largest raw score seen in one 15-minute slot
            (quantised: byte × RAW_SCORE_CAP / 255, rounded up; raw scores that
            cannot make a sample routine, ≤ ``z_threshold``, are not kept). Empty
            while nothing is worth keeping (a calm series, or all of it expired).
        season_slot: adaptive: the newest slot (epoch s // SEASON_SLOT_S) in
            ``season`` (−1: empty).
        density: adaptive: learned values per bin, :data:`DENSITY_BINS` equal bins
            over [low, high], counted from the end of the likelihood warm-up on
            (empty before, and while the range is a single value).
        seasonal: adaptive, with the seasonal stage on: the seasonal expectation's
            state (:meth:`autopilot.seasonal.SeasonalModel.encode`,
            :data:`autopilot.seasonal.STATE_BYTES` = 2,313 bytes, ≈ 3.1 KB of JSON as
            base64); empty with the stage off. Written by :meth:`to_dict` only when
            not empty; a state without it loads and starts a fresh model.
        firing_mean, firing_std: both modes: the reference frozen when the series
            started firing — the mean and std its first alert was scored against
            (``firing_mean`` None: not firing). Recovery is judged against it.
        firing_rank: severity rank of the firing episode's highest alert (1 medium …
            3 critical; 0 when not firing).
        recover_run: scored samples in a row back inside the frozen band.
        last_sent: event time (epoch s) of the last firing record sent (an alert or
            a re-send; 0.0 when not firing).
        The five firing fields are written by :meth:`to_dict` only while firing;
        states written before they existed load as not firing.
    """

    window: tuple[float, ...] = ()
    head: int = 0
    mean: float = 0.0
    m2: float = 0.0
    count: int = 0
    offsets: Mapping[str, int] = field(default_factory=dict)
    last_timestamp: float = 0.0
    mode: str = "seed"
    learned: int = 0
    scale: float = 0.0
    run_count: int = 0
    run_sum: float = 0.0
    run_side: int = 0
    score_short: float = 0.0
    score_mean: float = 0.0
    score_var: float = 0.0
    score_n: int = 0
    last_alert: float | None = None
    last_alert_rank: int = 0
    prev_value: float | None = None
    prev_time: float | None = None
    low: float | None = None
    high: float | None = None
    season: bytes = b""
    season_slot: int = -1
    density: tuple[int, ...] = ()
    seasonal: bytes = b""
    firing_mean: float | None = None
    firing_std: float = 0.0
    firing_rank: int = 0
    recover_run: int = 0
    last_sent: float = 0.0

    @property
    def n(self) -> int:
        """Samples the baseline is built on (seed: in the window; adaptive: learned)."""
        return len(self.window) if self.mode == "seed" else self.learned

    @property
    def std(self) -> float:
        """Seed: population std of the window (0.0 when fewer than 2); adaptive: σ estimate."""
        if self.mode != "seed":
            return finite(MAD_TO_STD * self.scale, MAX_MEAN)
        if self.n < 2 or self.m2 <= 0.0:
            return 0.0
        return finite(math.sqrt(self.m2 / self.n), MAX_MEAN)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for the baselines table (window as base64 float64, little endian)."""
        data: dict[str, Any] = {
            "v": 2,
            "mode": self.mode,
            "mean": self.mean,
            "count": self.count,
            "offsets": dict(self.offsets),
            "last_timestamp": self.last_timestamp,
        }
        if self.mode == "seed":
            data["window"] = base64.b64encode(
                np.asarray(self.window, dtype="<f8").tobytes()
            ).decode()
            data["head"] = self.head
            data["m2"] = self.m2
        else:
            for name in _ADAPTIVE_FIELDS:
                data[name] = getattr(self, name)
            data["season"] = base64.b64encode(self.season).decode()
            if self.seasonal:
                data["seasonal"] = _seasonal_text(self.seasonal)
            else:
                del data["seasonal"]
        if self.firing_mean is not None:
            for name in _FIRING_FIELDS:
                data[name] = getattr(self, name)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Baseline:
        """Inverse of :meth:`to_dict` (also reads version 1, the seed-only form).

        ``None`` gives an empty baseline.
        """
        if not data:
            return cls()
        mode = data.get("mode", "seed")
        mean = float(data["mean"])
        count = int(data["count"])
        offsets = replay.offsets_from_dict(data)
        last_timestamp = float(data.get("last_timestamp", 0.0))
        get = data.get
        if get("firing_mean") is None:
            firing: list[Any] = NOT_FIRING
        else:
            firing = [float(data["firing_mean"]), float(get("firing_std", 0.0)),
                      int(get("firing_rank", 1)), int(get("recover_run", 0)),
                      float(get("last_sent", 0.0))]
        if mode == "seed":
            raw = base64.b64decode(data["window"])
            window = tuple(np.frombuffer(raw, dtype="<f8").tolist())
            return cls(window=window, head=int(data["head"]), m2=float(data["m2"]), mean=mean,
                       count=count, offsets=offsets, last_timestamp=last_timestamp, mode=mode,
                       **dict(zip(_FIRING_FIELDS, firing, strict=True)))
        values = [
            mean, 0.0, count, offsets, last_timestamp, mode,
            *[get(name, default) for name, default in _ADAPTIVE_DEFAULTS.items()],
            *firing,
        ]
        values[_SEASON_AT] = base64.b64decode(values[_SEASON_AT] or b"")
        values[_DENSITY_AT] = tuple(values[_DENSITY_AT])  # a JSON list of ints
        values[_SEASONAL_AT] = _seasonal_bytes(values[_SEASONAL_AT] or "")
        return new_baseline((), 0, *values)

    def summary(self) -> dict[str, Any]:
        """What views show: mode, samples, mean, std, count, last sample time (epoch s)."""
        return {
            "mode": self.mode,
            "samples_in_window": self.n,
            "samples_seen": self.count,
            "mean": self.mean,
            "std_dev": self.std,
            "last_timestamp": self.last_timestamp,
            "source_offsets": dict(self.offsets),
            "firing": self.firing_rank > 0,
        }


_BASELINE_FIELDS = tuple(f.name for f in fields(Baseline))


#: Both modes' firing fields (the last ones), in declaration order.
_FIRING_FIELDS = _BASELINE_FIELDS[_BASELINE_FIELDS.index("firing_mean"):]
#: Their values when not firing (the defaults).
NOT_FIRING = [getattr(Baseline(), name) for name in _FIRING_FIELDS]
#: The adaptive mode's fields: every field after ``mode`` up to the firing fields, in
#: declaration order (the order :meth:`Baseline.from_dict` passes them in).
_ADAPTIVE_FIELDS = _BASELINE_FIELDS[
    _BASELINE_FIELDS.index("mode") + 1:_BASELINE_FIELDS.index("firing_mean")]
#: Defaults of the adaptive fields, for states written before a field existed.
_ADAPTIVE_DEFAULTS = {name: getattr(Baseline(), name) for name in _ADAPTIVE_FIELDS}
#: Indexes of ``season`` and ``density`` among :meth:`Baseline.from_dict`'s values
#: (which leave out window and head).
_SEASON_AT = _BASELINE_FIELDS.index("season") - 2
_DENSITY_AT = _BASELINE_FIELDS.index("density") - 2
_SEASONAL_AT = _BASELINE_FIELDS.index("seasonal") - 2


#: Most seasonal states :func:`_seasonal_text` remembers (the oldest is dropped first).
SEASONAL_TEXT_MEMO_MAX = 1024
_SEASONAL_TEXT: dict[str, bytes] = {}


def _seasonal_text(data: bytes) -> str:
    """The seasonal model's bytes as base64 text, remembering the pair: the next
    :meth:`Baseline.from_dict` of the same series (the state just written) gets the
    bytes back without decoding 3 KB of base64 (the single-sample records' cost)."""
    text = base64.b64encode(data).decode()
    if len(_SEASONAL_TEXT) >= SEASONAL_TEXT_MEMO_MAX:
        del _SEASONAL_TEXT[next(iter(_SEASONAL_TEXT))]
    _SEASONAL_TEXT[text] = data
    return text


def forget_seasonal_text() -> None:
    """Forget the remembered seasonal texts (the next loads decode; for tests)."""
    _SEASONAL_TEXT.clear()


def _seasonal_bytes(text: str | bytes) -> bytes:
    """Inverse of :func:`_seasonal_text` (any base64 text; "" gives b"")."""
    data = _SEASONAL_TEXT.get(text) if isinstance(text, str) else None
    return base64.b64decode(text) if data is None else data


@dataclass(frozen=True, slots=True)
class Verdict:
    """Score of one sample against the baseline it did not yet belong to.

    ``z_score`` and ``deviation_percent`` are finite; ``anomalous`` is True exactly
    when the live agent emits an Anomaly record for the sample; ``severity`` is
    ``None`` when it is not anomalous or the baseline is still cold. ``score`` is the
    anomaly score in [0, 1] (ranks how unusual the sample is; see module docstring).
    ``value`` is what was scored (for counters: the per-second rate).

    ``signal`` is set on a sample that is not an alert but changes what the series'
    firing signal reports (module docstring, "Firing and recovery"): ``"resolved"``
    when the series recovered with this sample, ``"firing"`` for a re-send while it
    still fires. Such a verdict's ``extras`` also carry ``reference_mean``,
    ``reference_std`` (the frozen pre-alert baseline), ``reference_z`` (the sample's
    signed z against it) and ``firing_rank`` (1 medium … 3 critical).
    """

    value: float
    mean: float
    std: float
    z_score: float
    deviation_percent: float
    anomalous: bool
    severity: Severity | None = None
    cold: bool = False
    extras: dict[str, Any] = field(default_factory=dict)
    score: float = 0.0
    signal: Literal["firing", "resolved"] | None = None

Setter = Callable[[Any, Any], None]


def slot_setter(cls: type, name: str) -> Setter:
    """The ``__set__`` of ``cls``'s slot ``name`` (its member descriptor): it writes that
    slot of an instance directly, past a frozen dataclass's ``__setattr__``."""
    setter: Setter = getattr(cls, name).__set__
    return setter


_VERDICT_SLOTS = {f.name: slot_setter(Verdict, f.name) for f in fields(Verdict)}
_BASELINE_SLOTS = {name: slot_setter(Baseline, name) for name in _BASELINE_FIELDS}


def new_verdict(
    value: float, mean: float, std: float, z: float, deviation: float, anomalous: bool,
    severity: Severity | None, cold: bool, extras: dict[str, Any], anomaly_score: float,
    signal: str | None = None,
    _new: Any = object.__new__, _cls: type = Verdict,
    _s0: Setter = _VERDICT_SLOTS["value"], _s1: Setter = _VERDICT_SLOTS["mean"],
    _s2: Setter = _VERDICT_SLOTS["std"], _s3: Setter = _VERDICT_SLOTS["z_score"],
    _s4: Setter = _VERDICT_SLOTS["deviation_percent"],
    _s5: Setter = _VERDICT_SLOTS["anomalous"],
    _s6: Setter = _VERDICT_SLOTS["severity"],
    _s7: Setter = _VERDICT_SLOTS["cold"], _s8: Setter = _VERDICT_SLOTS["extras"],
    _s9: Setter = _VERDICT_SLOTS["score"],
    _s10: Setter = _VERDICT_SLOTS["signal"],
) -> Verdict:
    """``Verdict(...)`` with every field given, without the frozen ``__init__``'s cost
    (half of it: the slots are written directly)."""
    v: Verdict = _new(_cls)
    _s0(v, value)
    _s1(v, mean)
    _s2(v, std)
    _s3(v, z)
    _s4(v, deviation)
    _s5(v, anomalous)
    _s6(v, severity)
    _s7(v, cold)
    _s8(v, extras)
    _s9(v, anomaly_score)
    _s10(v, signal)
    return v


def new_baseline(
    window: tuple[float, ...], head: int, mean: float, m2: float, count: int,
    offsets: Mapping[str, int], last_timestamp: float, mode: str, learned: int, scale: float,
    run_count: int, run_sum: float, run_side: int, score_short: float, score_mean: float,
    score_var: float, score_n: int, last_alert: float | None, last_alert_rank: int,
    prev_value: float | None, prev_time: float | None, low: float | None, high: float | None,
    season: bytes, season_slot: int, density: tuple[int, ...], seasonal: bytes,
    firing_mean: float | None, firing_std: float, firing_rank: int, recover_run: int,
    last_sent: float,
    _new: Any = object.__new__,
    _cls: type = Baseline,
    _0: Setter = _BASELINE_SLOTS["window"],
    _1: Setter = _BASELINE_SLOTS["head"],
    _2: Setter = _BASELINE_SLOTS["mean"],
    _3: Setter = _BASELINE_SLOTS["m2"],
    _4: Setter = _BASELINE_SLOTS["count"],
    _5: Setter = _BASELINE_SLOTS["offsets"],
    _6: Setter = _BASELINE_SLOTS["last_timestamp"],
    _7: Setter = _BASELINE_SLOTS["mode"],
    _8: Setter = _BASELINE_SLOTS["learned"],
    _9: Setter = _BASELINE_SLOTS["scale"],
    _10: Setter = _BASELINE_SLOTS["run_count"],
    _11: Setter = _BASELINE_SLOTS["run_sum"],
    _12: Setter = _BASELINE_SLOTS["run_side"],
    _13: Setter = _BASELINE_SLOTS["score_short"],
    _14: Setter = _BASELINE_SLOTS["score_mean"],
    _15: Setter = _BASELINE_SLOTS["score_var"],
    _16: Setter = _BASELINE_SLOTS["score_n"],
    _17: Setter = _BASELINE_SLOTS["last_alert"],
    _18: Setter = _BASELINE_SLOTS["last_alert_rank"],
    _19: Setter = _BASELINE_SLOTS["prev_value"],
    _20: Setter = _BASELINE_SLOTS["prev_time"],
    _21: Setter = _BASELINE_SLOTS["low"],
    _22: Setter = _BASELINE_SLOTS["high"],
    _23: Setter = _BASELINE_SLOTS["season"],
    _24: Setter = _BASELINE_SLOTS["season_slot"],
    _25: Setter = _BASELINE_SLOTS["density"],
    _26: Setter = _BASELINE_SLOTS["seasonal"],
    _27: Setter = _BASELINE_SLOTS["firing_mean"],
    _28: Setter = _BASELINE_SLOTS["firing_std"],
    _29: Setter = _BASELINE_SLOTS["firing_rank"],
    _30: Setter = _BASELINE_SLOTS["recover_run"],
    _31: Setter = _BASELINE_SLOTS["last_sent"],
) -> Baseline:
    """``Baseline(...)`` with every field given, in declaration order, without the
    frozen ``__init__`` (the slots are written directly; no defaults, no checks)."""
    b: Baseline = _new(_cls)
    _0(b, window)
    _1(b, head)
    _2(b, mean)
    _3(b, m2)
    _4(b, count)
    _5(b, offsets)
    _6(b, last_timestamp)
    _7(b, mode)
    _8(b, learned)
    _9(b, scale)
    _10(b, run_count)
    _11(b, run_sum)
    _12(b, run_side)
    _13(b, score_short)
    _14(b, score_mean)
    _15(b, score_var)
    _16(b, score_n)
    _17(b, last_alert)
    _18(b, last_alert_rank)
    _19(b, prev_value)
    _20(b, prev_time)
    _21(b, low)
    _22(b, high)
    _23(b, season)
    _24(b, season_slot)
    _25(b, density)
    _26(b, seasonal)
    _27(b, firing_mean)
    _28(b, firing_std)
    _29(b, firing_rank)
    _30(b, recover_run)
    _31(b, last_sent)
    return b


if new_baseline.__code__.co_varnames[: len(_BASELINE_FIELDS)] != _BASELINE_FIELDS:
    raise ImportError("new_baseline's parameters must be Baseline's fields, in order")

