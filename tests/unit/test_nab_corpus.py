"""The shipped NAB corpus (bench/nab/) and its subsets, and bench/nabscore.py's
normalisation against NAB's own published whole-corpus scoreboard."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import detection as bench_detection  # noqa: E402
import nabscore  # noqa: E402

NAB = REPO / "bench" / "nab"


def test_the_whole_corpus_is_shipped_and_the_subsets_are_part_of_it() -> None:
    labels = nabscore.load_labels(NAB / "labels" / "combined_windows.json")
    assert len(labels) == 58
    assert sum(len(w) for w in labels.values()) == 116
    assert all((NAB / "data" / rel).is_file() for rel in labels)
    for subset, files in (("nab-tuning", 18), ("nab-holdout", 13)):
        sub_dir = REPO / "bench" / subset
        sub = nabscore.load_labels(sub_dir / "labels" / "combined_windows.json")
        assert len(sub) == files
        assert all(labels[rel] == windows for rel, windows in sub.items())
        assert bench_detection.data_dir(sub_dir) == NAB / "data"


def test_nabscore_reproduces_the_published_scoreboard_from_nabs_per_file_results() -> None:
    # Probation and the windows decide the null and perfect scores; the detector's
    # scores do not, so a never-firing column is enough to prepare every file.
    labels = nabscore.load_labels(NAB / "labels" / "combined_windows.json")
    rows = []
    for rel in sorted(labels):
        stamps, _ = nabscore.read_series(NAB / "data" / rel)
        times = [nabscore.parse_nab_time(t) for t in stamps]
        rows.append(nabscore.prepare_file(rel, times, [0.0] * len(times), labels[rel]))
    profiles = {p.name: p for p in nabscore.load_profiles(NAB / "config" / "profiles.json")}
    published = bench_detection.load_published()

    table, worst = bench_detection.scorer_check(rows, profiles, published)

    assert table.count("\n") == 2 + 6 * 3 - 1  # six detectors × three profiles
    assert worst < 1e-5
    # The check can fail: one window fewer moves every score by far more.
    missing = [r.name for r in rows if r.n_windows][-1]
    short = [r if r.name != missing else nabscore.FileRows(name=r.name) for r in rows]
    assert bench_detection.scorer_check(short, profiles, published)[1] > 0.1
