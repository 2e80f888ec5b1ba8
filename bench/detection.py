"""Detection quality on the whole NAB corpus: NAB scores of the detector modes.

Runs ``autopilot backtest FILE --metric value --output -``'s code path
(:func:`autopilot.backtest.run_backtest`, which calls the metrics agent's
:func:`autopilot.detection.detect_series`) with the shipped default settings over every
labelled series of the Numenta Anomaly Benchmark in ``bench/nab/`` (all 58 files, 116
windows; MIT, © Numenta; see its README), for the default mode and the seed mode, and
scores the output with this project's NAB scorer (:mod:`nabscore`):

* *ranked*: the ``anomaly_score`` column with the one best threshold in hindsight over
  the whole corpus (how NAB's published scoreboard was made);
* *as shipped*: the ``alert`` column at threshold 0.5 — the alerts the product
  really sends.

**Name-blind.** Every file is scored with the metric name ``value`` and the service
``backtest`` (the CLI's default), never with its file name, so no name rule (direction
patterns such as ``fail`` or ``latency``, counter patterns) can read the file names.

Usage::

    python bench/detection.py [--modes adaptive,seed] [--json [FILE]] [--jobs N]
                              [--results-dir DIR] [--nab-dir DIR]
                              [--set AUTOPILOT_X=VALUE ...] [--ablation | --noise]

Prints, on stdout (Markdown):

1. the scorer check: the published per-file raw scores of six NAB detectors
   (``bench/nab/published_scores.json``, from NAB's ``results/``) summed and normalised
   by :mod:`nabscore` reproduce NAB's own whole-corpus scoreboard numbers;
2. ranked and as shipped per NAB profile (standard, reward_low_FP_rate,
   reward_low_FN_rate), with the windows found and the false detections;
3. the published scoreboard per profile with our rows placed among them;
4. a per-category table (standard profile; ours ranked at the whole-corpus threshold
   and as shipped, next to the six detectors' per-file results summed per category);
5. the file sets: the 18 files the defaults were chosen on (``bench/nab-tuning/``),
   the 13 files held out earlier (``bench/nab-holdout/``) and the 40 not tuned on.

Progress (``[k/58] file rows seconds``) goes to stderr. ``--json`` writes the numbers
(default ``bench/results/detection.json``; ``--out FILE`` is the same). ``--nab-dir DIR``
scores another labelled set (``DIR/labels/combined_windows.json``,
``DIR/config/profiles.json``; its data is ``DIR/data`` or, for a subset directory
without one, ``bench/nab/data``), e.g. ``--nab-dir bench/nab-tuning``.
``--results-dir`` also writes each mode's output in NAB's results layout
(``DIR/<mode>/<category>/<mode>_<file>.csv`` with columns
``timestamp,value,anomaly_score``, and the alert column under ``<mode>-alerts``) so
other NAB scorers can score the very same numbers. The process environment is not
read, so the table is the shipped defaults' wherever it runs; ``--set
AUTOPILOT_X=VALUE`` (repeatable) tries a setting instead. ``--jobs N`` scores files in
N processes (default: the CPU count, at most 4).

``--noise`` measures the "Known limitations" noise cases instead (docs/limitations.md):
100 fresh series of 3,000 five-minute samples (10.4 days) each of Gaussian noise
(100 + 5·N(0, 1)), log-normal noise (exp(N(0, 1)), σ = 1 in log space) and Student-t
noise (100 + 5·t₃), fixed seeds, name-blind, in each mode of ``--modes``; it prints
the series that paged and the alerts per series (``--json`` writes
``bench/results/detection-noise.json``).

``--ablation`` prints, for the adaptive mode (standard profile, ranked and as
shipped), the "What moved the score" table — each line one change from the defaults —
and a one-at-a-time sensitivity table of the detector's numbers, settings and the
module constants of :mod:`autopilot.detection` alike (those are varied in this process
and its forked workers only). 39 runs, about 6 minutes on two cores, each row printed
as it is measured and progress on stderr; use
``--nab-dir bench/nab-tuning`` for the 18 tuning files.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import random
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import nabscore  # noqa: E402

from autopilot import detection  # noqa: E402
from autopilot.backtest import InputRow, load_series, run_backtest  # noqa: E402
from autopilot.detection import DetectorConfig  # noqa: E402
from autopilot.errors import ConfigError  # noqa: E402
from autopilot.settings import load_settings  # noqa: E402

PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
CORPUS = HERE / "nab"
TUNING = HERE / "nab-tuning"
HOLDOUT = HERE / "nab-holdout"
DEFAULT_JSON = HERE / "results" / "detection.json"
#: The metric and service every file is scored under (name-blind; the CLI's defaults
#: for ``autopilot backtest FILE --metric value``).
METRIC = "value"
SERVICE = "backtest"
#: Published per-file results kept (``bench/nab/published_scores.json``), in print order.
PER_FILE_DETECTORS = ("ARTime", "Numenta HTM", "CAD OSE", "Skyline (earthgecko)",
                      "Random Cut Forest", "Windowed Gaussian")


def load_published(corpus: Path = CORPUS) -> dict[str, Any]:
    """``bench/nab/published_scores.json``: ``{"scoreboard": {detector: {profile:
    normalised score}}, "per_file": {detector: {profile: {"threshold", "raw_scores":
    {file: raw}}}}}`` (see that file's ``about``)."""
    data: dict[str, Any] = json.loads((corpus / "published_scores.json").read_text())
    return data


#: Published whole-corpus standard scores (NAB scoreboard), for other scripts.
PUBLISHED = {name: body["standard"]
             for name, body in load_published()["scoreboard"].items()}


#: ``--ablation``: (label, DetectorConfig fields, autopilot.detection constants), each
#: one change from the shipped defaults (the README's "What moved the score").
ABLATION: list[tuple[str, dict, dict]] = [
    ("shipped defaults", {}, {}),
    ("without novelty outside the all-time range", {"spatial_tolerance": -1.0}, {}),
    ("without novelty inside the range (the 48-bin density memory)", {},
     {"DENSITY_BINS": 0}),
    ("without the routine memory", {"season_days": 0}, {}),
    ("48-h episode instead of 6 h", {"episode_s": 172_800.0}, {}),
    ("none of the three, 6-h episode", {"spatial_tolerance": -1.0, "season_days": 0},
     {"DENSITY_BINS": 0}),
    ("the previous version (none of the three, 48-h episode)",
     {"spatial_tolerance": -1.0, "season_days": 0, "episode_s": 172_800.0},
     {"DENSITY_BINS": 0}),
    ("novelty without the \\|z\\| > 5 bar", {"novelty_z": 0.0}, {}),
    ("a recovery ends the alert episode", {}, {"RECOVERY_ENDS_EPISODE": True}),
    ("without the seasonal expectation", {"seasonal": "off"}, {}),
    ("seasonal expectation and spike rate (behaviour)", {"seasonal": "behaviour"}, {}),
]
#: ``--ablation``: one-at-a-time values around the defaults (DetectorConfig fields in
#: lower case, autopilot.detection constants in upper case).
SENSITIVITY: list[tuple[str, list]] = [
    ("alpha", [0.015, 0.03]), ("likelihood_short", [0.2, 0.4]),
    ("likelihood_long", [0.0005, 0.002]), ("alert_score", [0.15, 0.25]),
    ("clip", [2.5, 4.0]), ("relearn_after", [8, 18]), ("warmup_z", [5.0]),
    ("likelihood_warmup", [200]), ("spatial_tolerance", [0.02, 0.1]),
    ("novelty_z", [4.5, 5.5]), ("season_days", [2, 4]), ("ROUTINE_RATIO", [0.4, 0.6]),
    ("DENSITY_BINS", [32, 40, 56, 64]), ("DENSITY_AFTER", [300, 750]),
    ("DENSITY_NOVEL", [3e-5, 3e-4]),
]


def base_config(overrides: dict[str, str]) -> DetectorConfig:
    """The shipped defaults, with ``--set`` settings applied (not the environment).

    Raises:
        ConfigError: a setting is unknown or invalid.
    """
    return DetectorConfig.from_settings(load_settings(overrides))


def shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (for output and JSON)."""
    try:
        return str(path.resolve().relative_to(HERE.parent))
    except ValueError:
        return str(path)


def data_dir(nab_dir: Path) -> Path:
    """``nab_dir/data``, or the whole corpus's data for a subset directory without one."""
    own = nab_dir / "data"
    return own if own.is_dir() else CORPUS / "data"


def default_jobs() -> int:
    """Worker processes: the CPU count, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


# Set in the parent before the worker pool forks (or used in-process with jobs=1).
_JOB: dict[str, Any] = {}


def _score_file(rel: str) -> tuple[str, nabscore.FileRows, nabscore.FileRows, int, int, float]:
    """Backtest one file as ``autopilot backtest FILE --metric value`` does; prepare it
    for NAB scoring: (file, ranked rows, shipped rows, alerts, rows, seconds)."""
    started = time.perf_counter()
    mode, config = _JOB["mode"], _JOB["config"]
    path = _JOB["data"] / rel
    rows, _ = load_series(path)
    result = run_backtest(rows, config, service=SERVICE, metric=METRIC)
    stamps = [nabscore.parse_nab_time(r.timestamp) for r in result.rows]
    scores = [r.anomaly_score for r in result.rows]
    flags = [1.0 if r.alert else 0.0 for r in result.rows]
    windows = _JOB["labels"][rel]
    results_dir: Path | None = _JOB["results_dir"]
    if results_dir is not None:
        category, name = rel.split("/")
        for kind, column in (("", scores), ("-alerts", flags)):
            out = results_dir / f"{mode}{kind}" / category / f"{mode}{kind}_{name}"
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(out, "w") as fh:
                fh.write("timestamp,value,anomaly_score\n")
                for r, s in zip(result.rows, column, strict=True):
                    fh.write(f"{r.timestamp},{r.value!r},{s!r}\n")
    return (rel, nabscore.prepare_file(rel, stamps, scores, windows),
            nabscore.prepare_file(rel, stamps, flags, windows), int(sum(flags)),
            len(rows), time.perf_counter() - started)


def run_mode(mode: str, nab_dir: Path, results_dir: Path | None,
             config: DetectorConfig | None = None, jobs: int = 1,
             progress: bool = False) -> dict:
    """Backtest every labelled file of ``nab_dir`` in ``mode``, name-blind; score it.

    Args:
        mode: detector mode (``adaptive`` or ``seed``).
        nab_dir: a NAB layout (``labels/combined_windows.json``,
            ``config/profiles.json``, data in :func:`data_dir`).
        results_dir: also write NAB results files there (None: do not).
        config: detector config (None: the shipped defaults).
        jobs: worker processes (forked; 1 scores in this process).
        progress: print ``[k/N] file rows seconds`` lines on stderr.

    Returns:
        ``{"mode", "files", "alerts", "rows", "seconds", "windows", "profiles":
        {profile: {"ranked": …, "as_shipped": …}}}`` (each a
        :func:`nabscore.score_corpus` result plus ``detected``, ``scorable_windows``
        and ``false_detections``), and the per-file rows under the private key
        ``"_files"`` ({file: (ranked rows, shipped rows)}), which :func:`main` drops
        before writing JSON.

    Raises:
        ValueError: a labelled window does not start and end on a row of its file.
    """
    config = replace(config or base_config({}), mode=mode)
    labels = nabscore.load_labels(nab_dir / "labels" / "combined_windows.json")
    profiles = {p.name: p for p in nabscore.load_profiles(nab_dir / "config" / "profiles.json")}
    data = data_dir(nab_dir)
    _JOB.update(mode=mode, config=config, data=data, labels=labels, results_dir=results_dir)
    # Largest files first, so the workers finish together.
    order = sorted(labels, key=lambda rel: -(data / rel).stat().st_size)
    started = time.perf_counter()
    done: dict[str, tuple[nabscore.FileRows, nabscore.FileRows]] = {}
    alerts = n_rows = 0

    def collect(item: tuple[str, nabscore.FileRows, nabscore.FileRows, int, int, float]) -> None:
        nonlocal alerts, n_rows
        rel, ranked_rows, shipped_rows, n_alerts, count, seconds = item
        done[rel] = (ranked_rows, shipped_rows)
        alerts += n_alerts
        n_rows += count
        if progress:
            print(f"[{len(done)}/{len(labels)}] {mode} {rel}: {count} rows, {n_alerts} alerts, "
                  f"{seconds:.1f} s", file=sys.stderr, flush=True)

    if jobs > 1 and len(order) > 1:
        with multiprocessing.get_context("fork").Pool(min(jobs, len(order))) as pool:
            for item in pool.imap_unordered(_score_file, order):
                collect(item)
    else:
        for rel in order:
            collect(_score_file(rel))
    ranked = [done[rel][0] for rel in sorted(labels)]
    shipped = [done[rel][1] for rel in sorted(labels)]
    out: dict[str, Any] = {
        "mode": mode, "metric": METRIC, "files": len(labels), "alerts": alerts,
        "rows": n_rows, "seconds": round(time.perf_counter() - started, 2),
        "windows": sum(f.n_windows for f in ranked), "profiles": {},
        "_files": {rel: done[rel] for rel in sorted(labels)},
    }
    for name in PROFILES:
        p = profiles[name]
        r = nabscore.score_corpus(ranked, p)
        s = nabscore.score_corpus(shipped, p, threshold=0.5)
        out["profiles"][name] = {
            "ranked": {**r, **nabscore.detections(ranked, r["threshold"])},
            "as_shipped": {**s, **nabscore.detections(shipped, 0.5)},
        }
    return out


def published_on(files: list[str], profile: nabscore.Profile, null: float, perfect: float,
                 published: dict[str, Any]) -> dict[str, float]:
    """Normalised scores of the six detectors with per-file results on ``files``.

    Sums each detector's per-file raw scores (NAB's ``*_<profile>_scores.csv``, each at
    the one threshold NAB chose for it on the whole corpus) over ``files`` and
    normalises with the same null and perfect raw scores as ours: 100 × (raw − null) /
    (perfect − null).

    Raises:
        ValueError: a file has no published score.
    """
    out = {}
    for name, det in published["per_file"].items():
        raw_scores = det[profile.name]["raw_scores"]
        missing = sorted(set(files) - set(raw_scores))
        if missing:
            raise ValueError(f"{name}: no published score for {missing}")
        raw = sum(raw_scores[rel] for rel in files)
        out[name] = 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0
    return out


def _null_perfect(rows: list[nabscore.FileRows], profile: nabscore.Profile) -> tuple[float, float]:
    """NAB's normalisation of ``rows`` (as :func:`nabscore.score_corpus` computes it)."""
    null = -profile.fn * sum(len(f.scorable_windows) for f in rows)
    return null, profile.tp * sum(f.n_windows for f in rows)


def scorer_check(rows: list[nabscore.FileRows], profiles: dict[str, nabscore.Profile],
                 published: dict[str, Any]) -> tuple[str, float]:
    """Markdown lines and the largest difference: NAB's per-file results of each
    detector, summed and normalised by :mod:`nabscore` (null and perfect from our
    prepared rows of the whole corpus) next to NAB's own ``final_results.json``."""
    lines = ["| detector | profile | nabscore from NAB's per-file results | NAB scoreboard |",
             "|---|---|---:|---:|"]
    worst = 0.0
    files = [f.name for f in rows]
    for name in published["per_file"]:
        for pname in PROFILES:
            null, perfect = _null_perfect(rows, profiles[pname])
            ours = published_on(files, profiles[pname], null, perfect, published)[name]
            board = published["scoreboard"][name][pname]
            worst = max(worst, abs(ours - board))
            lines.append(f"| {name} | {pname} | {ours:.4f} | {board:.4f} |")
    return "\n".join(lines), worst


def table(results: list[dict]) -> str:
    """Ranked and as shipped per profile, per mode (Markdown)."""
    head = "| NAB profile | " + " | ".join(
        f"{r['mode']} ranked | {r['mode']} as shipped" for r in results) + " |"
    sep = "|---|" + "---:|---:|" * len(results)
    lines = [head, sep]
    for name in PROFILES:
        cells = []
        for r in results:
            prof = r["profiles"][name]
            cells += [f"{prof['ranked']['score']:.1f}", f"{prof['as_shipped']['score']:.1f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    cells = []
    for r in results:
        standard = r["profiles"]["standard"]
        ranked, shipped = standard["ranked"], standard["as_shipped"]
        cells += [f"{ranked['detected']}/{ranked['scorable_windows']}",
                  f"{shipped['detected']}/{shipped['scorable_windows']}"]
    lines.append("| windows found (standard) | " + " | ".join(cells) + " |")
    cells = []
    for r in results:
        cells += [str(r["profiles"]["standard"]["ranked"]["false_detections"]),
                  str(r["profiles"]["standard"]["as_shipped"]["false_detections"])]
    lines.append("| false detections (standard) | " + " | ".join(cells) + " |")
    lines.append(f"| alerts sent ({results[0]['files']} files) | " + " | ".join(
        f"– | {r['alerts']}" for r in results) + " |")
    return "\n".join(lines)


def scoreboard_table(results: list[dict], published: dict[str, Any]) -> str:
    """The published scoreboard per profile with our rows placed among it (Markdown)."""
    rows: list[tuple[str, dict[str, float]]] = [
        (name, {p: body[p] for p in PROFILES})
        for name, body in published["scoreboard"].items()]
    for r in results:
        for kind in ("ranked", "as_shipped"):
            label = f"**this project, {r['mode']}, {kind.replace('_', ' ')}**"
            rows.append((label, {p: r["profiles"][p][kind]["score"] for p in PROFILES}))
    rows.sort(key=lambda item: -item[1]["standard"])
    lines = ["| detector (whole corpus) | standard | reward_low_FP_rate | reward_low_FN_rate |",
             "|---|---:|---:|---:|"]
    for name, s in rows:
        lines.append(f"| {name} | " + " | ".join(f"{s[p]:.1f}" for p in PROFILES) + " |")
    return "\n".join(lines)


def _category_of(rel: str) -> str:
    return rel.split("/")[0]


def category_table(result: dict, profile: nabscore.Profile,
                   published: dict[str, Any] | None) -> tuple[str, dict[str, dict]]:
    """Per-category scores of one mode under ``profile`` (Markdown and numbers).

    Ours ranked uses the one threshold chosen on the whole corpus (as each published
    detector ran at its whole-corpus threshold); each category is normalised with its
    own null and perfect scores.
    """
    files = result["_files"]
    threshold = result["profiles"][profile.name]["ranked"]["threshold"]
    cats = sorted({_category_of(rel) for rel in files})
    names = [n for n in PER_FILE_DETECTORS if published and n in published["per_file"]]
    head = ("| category | files | windows | ranked | found | as shipped | found | "
            + " | ".join(names) + " |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(names)]
    numbers: dict[str, dict] = {}
    total = "whole corpus" if len(files) == 58 else "all these files"
    for cat in [*cats, total]:
        rels = [rel for rel in files if cat == total or _category_of(rel) == cat]
        ranked_rows = [files[rel][0] for rel in rels]
        shipped_rows = [files[rel][1] for rel in rels]
        r = nabscore.score_corpus(ranked_rows, profile, threshold=threshold)
        s = nabscore.score_corpus(shipped_rows, profile, threshold=0.5)
        rd = nabscore.detections(ranked_rows, threshold)
        sd = nabscore.detections(shipped_rows, 0.5)
        pub = (published_on(rels, profile, r["null"], r["perfect"], published)
               if published else {})
        numbers[cat] = {"files": len(rels), "windows": rd["scorable_windows"],
                        "ranked": r["score"], "ranked_detected": rd["detected"],
                        "as_shipped": s["score"], "as_shipped_detected": sd["detected"],
                        "published": pub}

        # A category without scorable windows has no span: nothing to normalise.
        spans = r["perfect"] != r["null"]

        def fmt(x: float, spans: bool = spans) -> str:
            return f"{x:.1f}" if spans else "–"

        label = f"**{cat}**" if cat == total else cat
        lines.append(
            f"| {label} | {len(rels)} | {rd['scorable_windows']} | {fmt(r['score'])} | "
            f"{rd['detected']} (+{rd['false_detections']} FP) | {fmt(s['score'])} | "
            f"{sd['detected']} (+{sd['false_detections']} FP) | "
            + " | ".join(fmt(pub[n]) for n in names) + " |")
    return "\n".join(lines), numbers


def fileset_table(result: dict, profile: nabscore.Profile,
                  published: dict[str, Any] | None) -> tuple[str, dict[str, dict]]:
    """Scores on the tuning files, the earlier hold-out and every file not tuned on."""
    files = result["_files"]
    threshold = result["profiles"][profile.name]["ranked"]["threshold"]
    sets: list[tuple[str, list[str]]] = []
    tuning: set[str] = set()
    if (TUNING / "labels" / "combined_windows.json").is_file():
        tuning = set(nabscore.load_labels(TUNING / "labels" / "combined_windows.json"))
        sets.append(("tuned on (bench/nab-tuning, 18 files)", sorted(tuning & set(files))))
    if (HOLDOUT / "labels" / "combined_windows.json").is_file():
        hold = set(nabscore.load_labels(HOLDOUT / "labels" / "combined_windows.json"))
        sets.append(("earlier hold-out (bench/nab-holdout, 13 files)", sorted(hold & set(files))))
    if tuning:
        sets.append(("not tuned on (the other 40 files)", sorted(set(files) - tuning)))
    sets.append(("whole corpus" if len(files) == 58 else "all these files", sorted(files)))
    names = [n for n in ("ARTime", "Numenta HTM")
             if published and n in published["per_file"]]
    lines = ["| files | ranked (corpus threshold) | as shipped | " + " | ".join(names) + " |",
             "|---|---:|---:|" + "---:|" * len(names)]
    numbers = {}
    for label, rels in sets:
        if not rels:
            continue
        r = nabscore.score_corpus([files[x][0] for x in rels], profile, threshold=threshold)
        s = nabscore.score_corpus([files[x][1] for x in rels], profile, threshold=0.5)
        pub = (published_on(rels, profile, r["null"], r["perfect"], published)
               if published else {})
        numbers[label] = {"files": len(rels), "ranked": r["score"],
                          "as_shipped": s["score"], "published": pub}
        lines.append(f"| {label} | {r['score']:.1f} | {s['score']:.1f} | "
                     + " | ".join(f"{pub[n]:.1f}" for n in names) + " |")
    return "\n".join(lines), numbers


#: ``--noise``: series per kind, samples per series, seconds between samples.
NOISE_SERIES, NOISE_SAMPLES, NOISE_STEP_S = 100, 3000, 300.0
NOISE_KINDS = ("gaussian", "lognormal", "student_t3")
NOISE_T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


def noise_values(kind: str, index: int) -> list[float]:
    """Series ``index`` (seeded by kind and index) of one ``--noise`` kind."""
    rng = random.Random(f"{kind}-{index}")
    if kind == "gaussian":
        return [100.0 + 5.0 * rng.gauss(0.0, 1.0) for _ in range(NOISE_SAMPLES)]
    if kind == "lognormal":
        return [rng.lognormvariate(0.0, 1.0) for _ in range(NOISE_SAMPLES)]
    if kind == "student_t3":
        # t with 3 degrees of freedom: N(0, 1) / sqrt(χ²₃ / 3), χ²₃ = Gamma(1.5, 2).
        return [100.0 + 5.0 * rng.gauss(0.0, 1.0) / math.sqrt(rng.gammavariate(1.5, 2.0) / 3.0)
                for _ in range(NOISE_SAMPLES)]
    raise ValueError(f"unknown noise kind {kind!r}; expected one of {NOISE_KINDS}")


def _noise_series(task: tuple[str, int]) -> tuple[str, int]:
    """Alerts of one noise series, backtested name-blind: (kind, alerts)."""
    kind, index = task
    rows = [InputRow(text=str(NOISE_T0 + i * NOISE_STEP_S), epoch_s=NOISE_T0 + i * NOISE_STEP_S,
                     value=v) for i, v in enumerate(noise_values(kind, index))]
    result = run_backtest(rows, _JOB["config"], service=SERVICE, metric=METRIC)
    return kind, sum(1 for r in result.rows if r.alert)


def run_noise(mode: str, config: DetectorConfig, jobs: int = 1) -> dict[str, dict[str, Any]]:
    """``--noise`` in one mode: ``{kind: {"series", "paged", "alerts",
    "alerts_per_series"}}`` (paged = series with at least one alert)."""
    _JOB.update(config=replace(config, mode=mode))
    tasks = [(kind, i) for kind in NOISE_KINDS for i in range(NOISE_SERIES)]
    counts: dict[str, list[int]] = {kind: [] for kind in NOISE_KINDS}
    if jobs > 1:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            for kind, n in pool.imap_unordered(_noise_series, tasks, chunksize=5):
                counts[kind].append(n)
                done = sum(map(len, counts.values()))
                if done % 50 == 0:
                    print(f"[{done}/{len(tasks)}] {mode} noise series", file=sys.stderr,
                          flush=True)
    else:
        for task in tasks:
            kind, n = _noise_series(task)
            counts[kind].append(n)
    return {kind: {"series": len(c), "paged": sum(1 for n in c if n), "alerts": sum(c),
                   "alerts_per_series": sum(c) / len(c)} for kind, c in counts.items()}


def noise_table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """``--noise`` results per mode (Markdown)."""
    lines = [f"| noise ({NOISE_SERIES} series × {NOISE_SAMPLES} samples at "
             f"{NOISE_STEP_S / 60:.0f} min) | mode | series that paged | alerts | "
             "alerts per series |", "|---|---|---:|---:|---:|"]
    for mode, kinds in results.items():
        for kind, r in kinds.items():
            lines.append(f"| {kind} | {mode} | {r['paged']} | {r['alerts']} | "
                         f"{r['alerts_per_series']:.2f} |")
    return "\n".join(lines)


def standard_pair(result: dict) -> tuple[float, float]:
    """(ranked, as shipped) standard scores of one :func:`run_mode` result."""
    prof = result["profiles"]["standard"]
    return prof["ranked"]["score"], prof["as_shipped"]["score"]


def _constant_owners(name: str) -> list[Any]:
    """``autopilot.detection`` and its loaded submodules that bind ``name`` (a module
    constant may be imported into several modules of the package).

    Raises:
        AttributeError: no such constant.
    """
    prefix = detection.__name__
    owners = [module for key, module in sorted(sys.modules.items())
              if (key == prefix or key.startswith(prefix + ".")) and hasattr(module, name)]
    if not owners:
        raise AttributeError(f"{prefix} has no constant {name!r}")
    return owners


def ablation(nab_dir: Path, config: DetectorConfig, jobs: int = 1) -> str:
    """The ablation and sensitivity tables (Markdown; see the module docstring).

    Each row is also printed on stdout as soon as it is measured (a long run can be
    read while it goes); the return value is the whole text.
    """
    runs = list(ABLATION)
    for name, values in SENSITIVITY:
        for value in values:
            if name.isupper():
                runs.append((f"{name} = {value}", {}, {name: value}))
            else:
                runs.append((f"{name} = {value}", {name: value}, {}))
    head = "| variant (adaptive, standard profile) | ranked | as shipped |\n|---|---:|---:|"
    lines = [head]
    print(head, flush=True)
    for i, (label, fields, consts) in enumerate(runs, 1):
        if i == len(ABLATION) + 1:
            for line in ("", "One at a time:", "", head):
                lines.append(line)
                print(line, flush=True)
        print(f"ablation {i}/{len(runs)}: {label}", file=sys.stderr, flush=True)
        saved = [(module, name, getattr(module, name))
                 for name in consts for module in _constant_owners(name)]
        try:
            for module, name, _ in saved:
                setattr(module, name, consts[name])
            ranked, shipped = standard_pair(
                run_mode("adaptive", nab_dir, None, replace(config, **fields), jobs=jobs))
        finally:
            for module, name, value in saved:
                setattr(module, name, value)
        lines.append(f"| {label} | {ranked:.1f} | {shipped:.1f} |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modes", default="adaptive,seed")
    ap.add_argument("--nab-dir", type=Path, default=CORPUS)
    ap.add_argument("--json", "--out", dest="out", type=Path, nargs="?", const=DEFAULT_JSON,
                    default=None, help=f"also write the numbers as JSON (default file: "
                    f"{DEFAULT_JSON.relative_to(HERE.parent)})")
    ap.add_argument("--results-dir", type=Path, default=None)
    ap.add_argument("--jobs", type=int, default=default_jobs(),
                    help="worker processes (default: CPU count, at most 4)")
    ap.add_argument("--set", dest="settings", action="append", default=[],
                    metavar="AUTOPILOT_X=VALUE", help="a detector setting (repeatable)")
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--ablation", action="store_true",
                      help="print the ablation and sensitivity tables instead")
    what.add_argument("--noise", action="store_true",
                      help="measure alerts on Gaussian and heavy-tailed noise instead")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error(f"--jobs {args.jobs}: expected 1 or more")
    overrides = {}
    for item in args.settings:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("AUTOPILOT_"):
            ap.error(f"--set {item!r}: expected AUTOPILOT_NAME=VALUE")
        overrides[key] = value
    try:
        config = base_config(overrides)
    except ConfigError as exc:
        ap.error(str(exc))
    if overrides:
        print("settings: " + ", ".join(f"{k}={v}" for k, v in overrides.items()))
    if args.ablation:
        ablation(args.nab_dir, config, args.jobs)  # prints each row as it is measured
        return 0
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.noise:
        started = time.perf_counter()
        noise = {mode: run_noise(mode, config, args.jobs) for mode in modes}
        print(noise_table(noise))
        print(f"\n({time.perf_counter() - started:.0f} s)")
        if args.out is not None:
            target = HERE / "results" / "detection-noise.json" if args.out == DEFAULT_JSON \
                else args.out
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(
                {"metric": METRIC, "settings": overrides, "series": NOISE_SERIES,
                 "samples": NOISE_SAMPLES, "step_s": NOISE_STEP_S, "modes": noise},
                indent=2) + "\n")
            print(f"wrote {target}")
        return 0
    started = time.perf_counter()
    results = [run_mode(m.strip(), args.nab_dir, args.results_dir, config, args.jobs,
                        progress=True)
               for m in modes]
    elapsed = time.perf_counter() - started
    first = results[0]
    profiles = {p.name: p for p in
                nabscore.load_profiles(args.nab_dir / "config" / "profiles.json")}
    published = load_published() if (CORPUS / "published_scores.json").is_file() else None
    whole = first["files"] == 58
    print(f"NAB {'whole corpus' if whole else 'subset'}: {first['files']} files, "
          f"{first['windows']} labelled windows, {first['rows']} rows ({shown(args.nab_dir)}); "
          f"name-blind (metric {METRIC!r}); {elapsed:.0f} s with {args.jobs} process(es)")
    print("ranked = the best threshold on anomaly_score in hindsight over all these files; "
          "as shipped = the alert column at 0.5\n")
    out: dict[str, Any] = {"nab_dir": shown(args.nab_dir), "metric": METRIC,
                           "settings": overrides, "seconds": round(elapsed, 1)}
    if published is not None and whole:
        check, worst = scorer_check(list(first["_files"][rel][0] for rel in first["_files"]),
                                    profiles, published)
        print("Scorer check: NAB's own per-file results of six detectors, summed and "
              "normalised by bench/nabscore.py, against NAB's published scoreboard "
              f"(largest difference {worst:.2g}):\n")
        print(check + "\n")
        out["scorer_check_max_difference"] = worst
    print(table(results) + "\n")
    if published is not None and whole:
        print("The published NAB scoreboard (whole corpus, each detector ranked at its best "
              "threshold) with ours:\n")
        print(scoreboard_table(results, published) + "\n")
    out["categories"], out["file_sets"] = {}, {}
    for pname in PROFILES:
        cat_table, cat_numbers = category_table(first, profiles[pname], published)
        out["categories"][pname] = cat_numbers
        set_table, set_numbers = fileset_table(first, profiles[pname], published)
        out["file_sets"][pname] = set_numbers
        if pname != "standard":
            continue
        print(f"Per category, {pname} profile ({first['mode']}; ranked at the whole-corpus "
              "threshold, as each published detector ran at its own; found = windows "
              "detected (+ false detections)):\n")
        print(cat_table + "\n")
        print(f"By file set, {pname} profile ({first['mode']}):\n")
        print(set_table)
    for r in results:
        r.pop("_files")
    if args.out is not None:
        out["results"] = results
        out["published_scoreboard"] = published["scoreboard"] if published else {}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
