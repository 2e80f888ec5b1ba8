"""The seasonal stage: the departure from the seasonal expectation (rule 9 of
:mod:`autopilot.detection`; part of that package).

The model is :class:`autopilot.seasonal.SeasonalModel` (expected value and spread by
half hour of the UTC day or hour of the UTC week, the period detected out of sample:
two days of data confirm a daily rhythm, two weeks a weekly one). This module only
loads it from the :class:`~autopilot.detection.state.Baseline`, feeds it the scored
value and turns its :class:`~autopilot.seasonal.SeasonalScore` into the detector's
terms: a directional seasonal z capped like the level z, and (``behaviour``) the
spike-rate signal as a raw score.

While no period is confirmed the stage contributes nothing, so a series without a
rhythm is scored exactly as with the stage off. Cost: the model's update (a few µs
per sample in CPython) plus, per record, one encode of its 2,313-byte state
(:func:`save_model`); the decode at the next record is usually skipped:
:func:`save_model` keeps the model it encoded, keyed by those bytes, and
:func:`load_model` takes it back (once) when the next record starts from equal
bytes, so the memo never changes a result (a model equals the decode of its bytes).
At most :data:`MEMO_MAX` models are kept (≈ 6 KB each with their key).
"""

from __future__ import annotations

from autopilot.detection.likelihood import RAW_SCORE_CAP
from autopilot.detection.scoring import directional
from autopilot.detection.state import forget_seasonal_text
from autopilot.seasonal import STATE_BYTES, SeasonalModel, SeasonalScore

__all__ = ["MEMO_MAX", "STATE_BYTES", "behaviour_raw", "clear_memo", "load_model",
           "save_model", "seasonal_departure"]

#: Most models kept between records (the oldest is dropped first).
MEMO_MAX = 1024
_MEMO: dict[bytes, SeasonalModel] = {}


def load_model(data: bytes) -> SeasonalModel:
    """The series' seasonal model from the Baseline's ``seasonal`` bytes.

    Empty bytes (a state written before the stage existed, or with it off) give a
    fresh model, and so do bytes :meth:`SeasonalModel.decode` refuses (another
    version, e.g. after a downgrade, or a wrong length): the rhythm is learned again
    (two days for a daily period) rather than the series failing on every record.
    """
    if not data:
        return SeasonalModel()
    model = _MEMO.pop(data, None)
    if model is not None:
        return model
    try:
        return SeasonalModel.decode(data)
    except ValueError:
        return SeasonalModel()


def save_model(model: SeasonalModel) -> bytes:
    """``model.encode()``, remembering ``model`` for :func:`load_model` (the caller
    must not change ``model`` afterwards)."""
    data = model.encode()
    if len(_MEMO) >= MEMO_MAX:
        del _MEMO[next(iter(_MEMO))]
    _MEMO[data] = model
    return data


def clear_memo() -> None:
    """Forget the remembered models and the state codec's remembered texts
    (:func:`~autopilot.detection.state.forget_seasonal_text`): the next loads
    decode (for tests)."""
    _MEMO.clear()
    forget_seasonal_text()


def seasonal_departure(sc: SeasonalScore, up: bool, down: bool) -> tuple[float, float]:
    """``(z, directional |z|)`` of a sample against its seasonal expectation.

    ``z`` is the model's z-score ((value − expected) / spread, bounded at ±1e9: what
    the Anomaly reports); the directional value follows the metric's direction rule
    like the level z and is capped at :data:`RAW_SCORE_CAP`, as the raw score is. Both
    0.0 while no period is confirmed.
    """
    z = sc.z
    d_z = directional(z, up, down)
    return z, RAW_SCORE_CAP if d_z > RAW_SCORE_CAP else d_z


def behaviour_raw(sc: SeasonalScore) -> float:
    """The behaviour-change raw score fed to the likelihood stage (``behaviour`` mode):
    the spike-rate z-score when positive (denser spikes than usual), capped at
    :data:`RAW_SCORE_CAP`; 0.0 otherwise."""
    r = sc.spike_rate
    return 0.0 if r < 0.0 else RAW_SCORE_CAP if r > RAW_SCORE_CAP else r
