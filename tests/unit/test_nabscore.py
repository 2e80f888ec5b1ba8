"""The project's NAB scorer (bench/nabscore.py): hand-made cases, and a cross-check
against the shared reference scorer (``<repo>/../shared/bench/nab/score.py``), which
runs where that folder exists (as in CI) and is only ever *run*, never imported."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import detection as bench_detection  # noqa: E402
import nabscore  # noqa: E402

SHARED = REPO.parent / "shared"
SHARED_SCORER = SHARED / "bench" / "nab" / "score.py"
STANDARD = nabscore.Profile("standard", tp=1.0, fp=0.11, fn=1.0)
T0 = datetime(2014, 1, 1)  # noqa: DTZ001 - NAB times are naive UTC


def stamps(n: int) -> list[datetime]:
    return [T0 + timedelta(minutes=5 * i) for i in range(n)]


def one_file(scores: list[float], window: tuple[int, int] = (200, 239)) -> nabscore.FileRows:
    ts = stamps(len(scores))
    return nabscore.prepare_file("f.csv", ts, scores, [(ts[window[0]], ts[window[1]])])


def test_never_firing_scores_zero_and_a_detection_on_the_windows_first_row_scores_100() -> None:
    never = one_file([0.0] * 400)
    perfect = [0.0] * 400
    perfect[200] = 1.0

    assert nabscore.score_corpus([never], STANDARD, 0.5)["score"] == pytest.approx(0.0)
    perfect_score = nabscore.score_corpus([one_file(perfect)], STANDARD, 0.5)["score"]
    assert perfect_score == pytest.approx(100.0)


def test_later_detections_earn_less_and_only_the_first_counts() -> None:
    early, late, both = [0.0] * 400, [0.0] * 400, [0.0] * 400
    early[205] = late[235] = 1.0
    both[205] = both[235] = 1.0
    s_early = nabscore.score_corpus([one_file(early)], STANDARD, 0.5)["raw"]
    s_late = nabscore.score_corpus([one_file(late)], STANDARD, 0.5)["raw"]
    s_both = nabscore.score_corpus([one_file(both)], STANDARD, 0.5)["raw"]

    assert 0 < s_late < s_early <= 1.0
    assert s_both == pytest.approx(s_early)


def test_false_positives_cost_fp_weight_and_probation_is_free() -> None:
    scores = [0.0] * 400
    scores[10] = 1.0  # inside the probationary 15 % (60 rows): not charged
    scores[100] = 1.0  # before the first window: full cost
    raw = nabscore.score_corpus([one_file(scores)], STANDARD, 0.5)["raw"]

    assert raw == pytest.approx(-1.0 - 0.11)


def test_ranked_scoring_picks_the_best_threshold() -> None:
    scores = [0.1] * 400
    scores[100] = 0.6  # a false positive
    scores[210] = 0.8  # a true positive
    result = nabscore.score_corpus([one_file(scores)], STANDARD)

    assert result["threshold"] == 0.8
    assert result["score"] > 0


@pytest.mark.skipif(not SHARED_SCORER.exists(), reason="needs <repo>/../shared (as in CI)")
def test_scores_match_the_shared_reference_scorer_on_the_same_results(tmp_path: Path) -> None:
    results_dir = tmp_path / "results"
    ours = {r["mode"]: r for r in (
        bench_detection.run_mode(mode, REPO / "bench" / "nab-tuning", results_dir)
        for mode in ("adaptive", "seed")
    )}
    out = tmp_path / "shared.json"
    subprocess.run(
        [sys.executable, str(SHARED_SCORER), str(results_dir), "--nab-dir",
         str(SHARED / "data" / "nab"), "--threshold", "0.5", "-o", str(out), "-q"],
        check=True, timeout=600,
    )
    reference = json.loads(out.read_text())["detectors"]

    checked = 0
    for mode, mine in ours.items():
        for profile in bench_detection.PROFILES:
            ranked = reference[mode]["scores"][profile]
            shipped = reference[f"{mode}-alerts"]["profiles"][profile]["at_fixed_threshold"]
            assert math.isclose(mine["profiles"][profile]["ranked"]["score"], ranked,
                                abs_tol=1e-6), (mode, profile)
            assert math.isclose(mine["profiles"][profile]["as_shipped"]["score"],
                                shipped["normalized"], abs_tol=1e-6), (mode, profile)
            checked += 1
    assert checked == 6
    # The seed reference numbers of the issue, reproduced end to end.
    assert ours["seed"]["profiles"]["standard"]["as_shipped"]["score"] == pytest.approx(-102.6,
                                                                                         abs=0.05)
    assert ours["seed"]["profiles"]["standard"]["ranked"]["score"] == pytest.approx(45.0, abs=0.05)
