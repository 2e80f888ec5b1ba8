"""Novelty: a value never seen before in a series scores 1.0 (rule 6 of
:mod:`autopilot.detection`), and the all-time range and value density it is judged by.

Novel means, in the metric's direction and with directional |z| > ``novelty_z`` (5):
(a) beyond the all-time range [low, high] of learned values by more than
``spatial_tolerance`` (0.05) × (high − low), NAB's HTM "spatial anomaly" rule
(Numenta's ``numenta_detector.py``, SPATIAL_TOLERANCE 0.05), from the end of the
likelihood warm-up; or (b) inside the range, in one of :data:`DENSITY_BINS` (48)
equal bins over it that, with the bins either side, hold less than
:data:`DENSITY_NOVEL` of the values counted, from :data:`DENSITY_AFTER` scored
samples on. The counts are all-time, start with the likelihood (a young series'
range grows at almost every step) and, when the range grows, are moved to the new
bins by their old bin centres (48 steps, only then). O(1) per sample.
"""

from __future__ import annotations

import math

__all__ = [
    "DENSITY_AFTER", "DENSITY_BINS", "DENSITY_NOVEL",
    "is_novel", "learn_range", "load_density", "rebin",
]

#: Bins of the value-density memory over the all-time range (NAB subset, standard
#: ranked: 32 → 62.3, 40 → 64.8, 48 → 68.7, 56 → 67.3, 64 → 67.2).
DENSITY_BINS = 48
#: A value is novel when its bin and the bins either side hold less than this share
#: of the values counted (in practice: none; 3e-5 → 68.7, 1e-4 → 68.7, 3e-4 → 67.2).
DENSITY_NOVEL = 1e-4
#: Scored samples before the value-density memory may call a value novel (the
#: range and counts must first describe the series; 300 → 68.7, 750 → 69.4).
DENSITY_AFTER = 500

_INF = math.inf


def load_density(density: tuple[int, ...], nbins: int) -> tuple[list[int], int]:
    """The counts to work on and their total, from a state's ``density`` (empty when
    the memory is off or the state was made with another number of bins)."""
    counts = list(density) if nbins and len(density) == nbins else []
    return counts, sum(counts)


def is_novel(
    x: float, dx: float, up: bool, down: bool, tolerance: float, score_n: int,
    warmup: int, low: float | None, high: float | None, counts: list[int], total: int,
) -> bool:
    """Whether ``x`` (``dx`` = x − mean) is a value this series never had (6a or 6b).

    The caller has checked directional |z| > ``novelty_z``. ``tolerance``:
    ``spatial_tolerance`` (negative: 6a off); ``score_n``: scored samples before this
    one; ``low``, ``high``: the all-time range; ``counts``, ``total``: the density.
    """
    if (tolerance >= 0.0 and score_n >= warmup
            and low is not None and high is not None and high > low):
        # 6a: outside the all-time range.
        margin = tolerance * (high - low)
        if (not down and x > high + margin) or (not up and x < low - margin):
            return True
    if (counts and score_n >= DENSITY_AFTER and total > 0
            and low is not None and high is not None
            and low <= x <= high
            and not (up and dx <= 0.0) and not (down and dx >= 0.0)):
        width = high - low
        if 0.0 < width < _INF:
            # 6b: a never-seen part of the range.
            nbins = len(counts)
            j = int((x - low) / width * nbins)
            j = 0 if j < 0 else nbins - 1 if j >= nbins else j
            c = 0
            for k in range(j - 1 if j > 0 else 0, j + 2 if j + 2 < nbins else nbins):
                c += counts[k]
            if c < DENSITY_NOVEL * total:
                return True
    return False


def rebin(counts: list[int], low: float, high: float, new_low: float,
          new_high: float) -> list[int]:
    """The counts over [low, high] moved to equal bins over the grown range
    [new_low, new_high], each by its old bin centre."""
    nbins = len(counts)
    width = (high - low) / nbins
    new_width = (new_high - new_low) / nbins
    fresh = [0] * nbins
    for k in range(nbins):
        m = int((low + (k + 0.5) * width - new_low) / new_width)
        fresh[m if m < nbins else nbins - 1] += counts[k]
    return fresh


def learn_range(
    x: float, low: float | None, high: float | None, counts: list[int], total: int,
    nbins: int, score_n: int, warmup: int,
) -> tuple[float, float, list[int], int]:
    """Learn ``x`` into the all-time range and the value density.

    Returns:
        ``(low, high, counts, total)`` after ``x`` (counts empty while the memory is
        off, before the warm-up ends, or once the range is too wide to bin).
    """
    if counts and low is not None and high is not None and (x < low or x > high):
        new_low = x if x < low else low
        new_high = x if x > high else high
        if not new_high - new_low < _INF:
            counts, total = [], 0  # a range too wide to bin: forget the density
        else:
            counts = rebin(counts, low, high, new_low, new_high)
    if low is None or x < low:
        low = x
    if high is None or x > high:
        high = x
    if nbins and not counts and score_n >= warmup and 0.0 < high - low < _INF:
        # The density memory starts with the likelihood: a young series' values
        # describe its warm-up, and its range grows at almost every step (each
        # growth a re-binning). NAB subset: from 10 samples 65.8 ranked, from the
        # warm-up (110) 68.7.
        counts, total = [0] * nbins, 0
    if counts:
        width = high - low
        if 0.0 < width < _INF:
            j = int((x - low) / width * nbins)
            counts[0 if j < 0 else nbins - 1 if j >= nbins else j] += 1
            total += 1
    return low, high, counts, total
