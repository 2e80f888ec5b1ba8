"""NAB scoring, written for this project from the published method (standard library only).

Source of the method: Lavin and Ahmad, "Evaluating Real-time Anomaly Detection
Algorithms — the Numenta Anomaly Benchmark", IEEE ICMLA 2015, and the NAB
repository's documentation (github.com/numenta/NAB, "scoring" in the wiki and README).
In short:

* Every labelled anomaly *window* of a data file is worth up to ``tpWeight``: the
  earliest detection inside it earns ``tpWeight × σ(y) / σ(−1)``, where ``y`` is the
  detection's position relative to the window's right edge (−1 = first row of the
  window, 0 ≈ its last row) and ``σ(y) = 2 / (1 + e^{5y}) − 1``. A window that is
  never detected costs ``−fnWeight``. Later detections in the same window add nothing.
* Every detection outside all windows costs ``fpWeight × σ(y)`` (a negative number),
  where ``y`` is the distance past the end of the previous window in units of that
  window's width (minus one row), so a detection just after a window is cheap and one
  far from any window (or before the first window, or ``y ≥ 3``) costs the full
  ``fpWeight``.
* The first 15 % of every file (at most 750 rows) is a *probationary period*: rows in
  it are neither rewarded nor charged, and a window lying only in it is not counted.
* A detection is a row whose ``anomaly_score`` ≥ the threshold. *Ranked* scoring picks,
  with hindsight, the one threshold that maximises the sum over every file; *as
  shipped* scoring uses a given threshold (0.5 on a 0/1 alert column).
* The corpus score is normalised to 100 × (raw − null) / (perfect − null), where
  ``null = −fnWeight × windows`` (a detector that never fires) and
  ``perfect = tpWeight × windows`` (every window caught on its first row).

Profiles (``config/profiles.json``): standard (fp 0.11), reward_low_FP_rate (fp 0.22),
reward_low_FN_rate (fn 2.0); tp weight 1.0 everywhere.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

__all__ = [
    "PROBATION_FRACTION",
    "FileRows",
    "Profile",
    "load_labels",
    "load_profiles",
    "parse_nab_time",
    "prepare_file",
    "detections",
    "score_corpus",
]

PROBATION_FRACTION = 0.15
PROBATION_CAP_ROWS = 750  # 15 % of 5000 rows


@dataclass(frozen=True)
class Profile:
    """Weights of one NAB application profile."""

    name: str
    tp: float
    fp: float
    fn: float


def load_profiles(path: Path) -> list[Profile]:
    """Read NAB's ``config/profiles.json``."""
    raw = json.loads(Path(path).read_text())
    out = []
    for name, body in raw.items():
        m = body["CostMatrix"]
        out.append(Profile(name, float(m["tpWeight"]), float(m["fpWeight"]), float(m["fnWeight"])))
    return out


def parse_nab_time(text: str) -> datetime:
    """Parse NAB's ``YYYY-MM-DD HH:MM:SS[.ffffff]`` timestamps (naive, UTC)."""
    text = text.strip()
    try:  # the fast path; strptime below for anything fromisoformat reads differently
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None and len(text) >= 19 and text[10] == " ":
            return parsed
    except ValueError:
        pass
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text, fmt)  # noqa: DTZ007 - NAB times are naive UTC
        except ValueError:
            continue
    raise ValueError(f"not a NAB timestamp: {text!r}")


def load_labels(path: Path) -> dict[str, list[tuple[datetime, datetime]]]:
    """NAB ``combined_windows.json`` → {relative data path: [(start, end), …]}."""
    raw = json.loads(Path(path).read_text())
    return {
        key: [(parse_nab_time(a), parse_nab_time(b)) for a, b in windows]
        for key, windows in raw.items()
    }


def _sigma(y: float) -> float:
    """NAB's scaled sigmoid: 2/(1+e^{5y}) − 1, and −1 from y ≥ 3 on."""
    if y >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


@dataclass
class FileRows:
    """One file's scorable rows (probation removed), ready for any threshold.

    ``scores[i]`` is the detector's anomaly score of row i; ``window[i]`` the index of
    its labelled window (−1: outside every window); ``credit[i]`` what a detection on
    the row earns *before* profile weights: for window rows σ(y)/σ(−1) (scaled by
    tpWeight later), for other rows σ(y) (scaled by fpWeight later, negative).
    """

    name: str
    scores: list[float] = field(default_factory=list)
    window: list[int] = field(default_factory=list)
    credit: list[float] = field(default_factory=list)
    n_windows: int = 0  # every labelled window of the file (the normalisation counts all)
    scorable_windows: set[int] = field(default_factory=set)


def prepare_file(
    name: str,
    timestamps: Sequence[datetime],
    scores: Sequence[float],
    windows: Sequence[tuple[datetime, datetime]],
) -> FileRows:
    """Place every row of a file relative to the labelled windows (see module docstring)."""
    if len(timestamps) != len(scores):
        raise ValueError(f"{name}: {len(timestamps)} timestamps but {len(scores)} scores")
    n = len(timestamps)
    probation = min(math.floor(PROBATION_FRACTION * n), PROBATION_FRACTION * 5000)
    index = {t: i for i, t in enumerate(timestamps)}
    spans: list[tuple[int, int]] = []
    for start, end in windows:
        if start not in index or end not in index:
            raise ValueError(f"{name}: window {start}..{end} does not start and end on a row")
        spans.append((index[start], index[end]))
    spans.sort()
    out = FileRows(name=name, n_windows=len(spans))
    k = 0  # next window
    prev_end = prev_width = None
    max_tp = _sigma(-1.0)
    for i in range(n):
        while k < len(spans) and spans[k][1] < i:
            prev_end, prev_width = spans[k][1], spans[k][1] - spans[k][0] + 1
            k += 1
        inside = k < len(spans) and spans[k][0] <= i <= spans[k][1]
        if inside:
            left, right = spans[k]
            width = right - left + 1
            credit = _sigma(-(right - i + 1) / width) / max_tp
            win = k
        else:
            y = (3.0 if prev_end is None or prev_width is None
                 else abs(prev_end - i) / (prev_width - 1))
            credit = _sigma(y)
            win = -1
        if i < probation:
            continue
        out.scores.append(float(scores[i]))
        out.window.append(win)
        out.credit.append(credit)
        if win >= 0:
            out.scorable_windows.add(win)
    return out


def _totals_by_threshold(
    files: Iterable[FileRows], profile: Profile
) -> list[tuple[float, float]]:
    """(threshold, raw score) for every distinct score value, highest threshold first.

    Raw score at threshold t counts as detections every row with score ≥ t. The first
    entry is (+inf, score with no detection).
    """
    rows: list[tuple[float, int, float]] = []  # (score, global window id or -1, credit)
    best: dict[int, float] = {}  # global window id → best credit so far (weighted)
    base = 0.0
    for f_no, f in enumerate(files):
        for w in f.scorable_windows:
            best[f_no * 100_000 + w] = -profile.fn
            base -= profile.fn
        for s, w, c in zip(f.scores, f.window, f.credit, strict=True):
            rows.append((s, f_no * 100_000 + w if w >= 0 else -1, c))
    rows.sort(key=lambda r: r[0], reverse=True)
    fp_sum = 0.0
    window_sum = base
    out = [(math.inf, base)]
    i = 0
    while i < len(rows):
        t = rows[i][0]
        while i < len(rows) and rows[i][0] == t:
            _, w, c = rows[i]
            if w < 0:
                fp_sum += profile.fp * c
            else:
                gained = profile.tp * c
                if gained > best[w]:
                    window_sum += gained - best[w]
                    best[w] = gained
            i += 1
        out.append((t, window_sum + fp_sum))
    return out


def score_corpus(
    files: Sequence[FileRows], profile: Profile, threshold: float | None = None
) -> dict[str, float]:
    """Normalised NAB score of a corpus under ``profile``.

    Args:
        files: prepared rows of every file.
        profile: weights.
        threshold: detections are rows with score ≥ this; ``None`` picks the best
            threshold with hindsight (NAB's ranked scoring).

    Returns:
        ``{"score", "raw", "threshold", "null", "perfect"}``.
    """
    windows = sum(f.n_windows for f in files)
    # NAB normalises with the null detector's own score: only windows outside the
    # probationary period can be missed.
    null = -profile.fn * sum(len(f.scorable_windows) for f in files)
    perfect = profile.tp * windows
    table = _totals_by_threshold(files, profile)
    if threshold is None:
        t, raw = max(table, key=lambda r: r[1])
    else:
        # Rows with score ≥ threshold: the entry of the smallest distinct score ≥ threshold.
        t, raw = table[0]
        for cand_t, cand_raw in table[1:]:
            if cand_t < threshold:
                break
            t, raw = cand_t, cand_raw
        t = threshold
    span = perfect - null
    score = 100.0 * (raw - null) / span if span else 0.0
    return {"score": score, "raw": raw, "threshold": t, "null": null, "perfect": perfect}


def detections(files: Sequence[FileRows], threshold: float) -> dict[str, int]:
    """What a detector does at ``threshold`` (rows with score ≥ it detect), after probation.

    Returns:
        ``{"detected": scorable windows with at least one detection,
        "scorable_windows": windows outside the probationary period,
        "false_detections": detecting rows outside every window}``.
    """
    detected = scorable = false = 0
    for f in files:
        hit: set[int] = set()
        for s, w in zip(f.scores, f.window, strict=True):
            if s >= threshold:
                if w >= 0:
                    hit.add(w)
                else:
                    false += 1
        detected += len(hit)
        scorable += len(f.scorable_windows)
    return {"detected": detected, "scorable_windows": scorable, "false_detections": false}


def read_series(path: Path) -> tuple[list[str], list[float]]:
    """Read a NAB data CSV: (timestamp texts, values)."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        stamps, values = [], []
        for row in reader:
            stamps.append(row["timestamp"])
            values.append(float(row["value"]))
    return stamps, values
