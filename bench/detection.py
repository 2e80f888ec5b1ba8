"""Detection quality on real labelled series: NAB scores of the detector modes.

Runs ``autopilot backtest``'s code path (:func:`autopilot.backtest.run_backtest`,
which calls the metrics agent's :func:`autopilot.detection.detect_series`) with the
shipped default settings over every series of the NAB subset in ``bench/nab/``
(MIT, © Numenta; see its README), for the default mode and the seed mode, and scores
the output with this project's NAB scorer (:mod:`nabscore`):

* *ranked*: the ``anomaly_score`` column with the best threshold in hindsight (how
  NAB's published scoreboard was made);
* *as shipped*: the ``alert`` column at threshold 0.5 — the alerts the product
  really sends.

Usage::

    python bench/detection.py [--modes adaptive,seed] [--out FILE.json]
                              [--results-dir DIR] [--nab-dir DIR]
                              [--set AUTOPILOT_X=VALUE ...] [--ablation]

Prints a table (three NAB profiles × ranked / as shipped), then the published NAB
detectors on the same files: their per-file scores from NAB's own results
(``bench/nab/published_standard_scores.json``, each detector at the threshold NAB
chose for it on the whole corpus) summed and normalised over this subset exactly as
ours. ``--out FILE`` also writes the numbers as JSON (the README's run is
``bench/results/detection.json``). ``--results-dir`` also writes each
mode's output in NAB's results layout (``DIR/<mode>/<category>/<mode>_<file>.csv``
with columns ``timestamp,value,anomaly_score`` and the alert column as
``alert``) so other NAB scorers can score the very same numbers.
No per-file tuning: every file runs with the same settings; the metric name given to
the detector is the file's stem (so name rules such as "latency alerts upwards" apply
as they would live). The process environment is not read, so the table is the
shipped defaults' wherever it runs; ``--set AUTOPILOT_X=VALUE`` (repeatable) tries a
setting instead.

``--ablation`` prints, for the adaptive mode (standard profile, ranked and as
shipped), the README's "What moved the score" table — each line one change from the
defaults — and a one-at-a-time sensitivity table of the detector's numbers, settings
and the module constants of :mod:`autopilot.detection` alike (those are varied in
this process only). About forty runs: a minute or two, with progress on stderr.
"""

from __future__ import annotations

import argparse
import json
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
from autopilot.backtest import load_series, run_backtest  # noqa: E402
from autopilot.detection import DetectorConfig  # noqa: E402
from autopilot.errors import ConfigError  # noqa: E402
from autopilot.settings import load_settings  # noqa: E402

PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
#: Published NAB scores (standard profile, whole 58-file corpus, NAB scoreboard).
PUBLISHED = {
    "Numenta HTM": 70.1,
    "ARTime": 74.9,
    "Skyline (earthgecko)": 58.2,
    "Windowed Gaussian": 39.6,
}


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
    ("latency alerting in both directions", {"up_patterns": ()}, {}),
    ("a recovery ends the alert episode", {}, {"RECOVERY_ENDS_EPISODE": True}),
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


def run_mode(mode: str, nab_dir: Path, results_dir: Path | None,
             config: DetectorConfig | None = None) -> dict:
    """Backtest every labelled file in ``mode``; return scores and counts."""
    config = replace(config or base_config({}), mode=mode)
    labels = nabscore.load_labels(nab_dir / "labels" / "combined_windows.json")
    profiles = {p.name: p for p in nabscore.load_profiles(nab_dir / "config" / "profiles.json")}
    ranked, shipped = [], []
    alerts = 0
    started = time.perf_counter()
    for rel in sorted(labels):
        path = nab_dir / "data" / rel
        rows, _ = load_series(path)
        result = run_backtest(rows, config, service="nab", metric=path.stem)
        stamps = [nabscore.parse_nab_time(r.timestamp) for r in result.rows]
        scores = [r.anomaly_score for r in result.rows]
        flags = [1.0 if r.alert else 0.0 for r in result.rows]
        alerts += int(sum(flags))
        ranked.append(nabscore.prepare_file(rel, stamps, scores, labels[rel]))
        shipped.append(nabscore.prepare_file(rel, stamps, flags, labels[rel]))
        if results_dir is not None:
            category, name = rel.split("/")
            for kind, column in (("", scores), ("-alerts", flags)):
                path = results_dir / f"{mode}{kind}" / category / f"{mode}{kind}_{name}"
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "w") as fh:
                    fh.write("timestamp,value,anomaly_score\n")
                    for r, s in zip(result.rows, column, strict=True):
                        fh.write(f"{r.timestamp},{r.value!r},{s!r}\n")
    out: dict[str, Any] = {"mode": mode, "files": len(labels), "alerts": alerts,
           "seconds": round(time.perf_counter() - started, 2), "profiles": {}}
    for name in PROFILES:
        p = profiles[name]
        out["profiles"][name] = {
            "ranked": nabscore.score_corpus(ranked, p),
            "as_shipped": nabscore.score_corpus(shipped, p, threshold=0.5),
        }
    out["windows"] = sum(f.n_windows for f in ranked)
    return out


def published_on_subset(nab_dir: Path, null: float, perfect: float) -> dict[str, float]:
    """Standard scores of NAB's published detectors on the files of ``nab_dir``.

    Sums each detector's per-file raw scores (NAB's ``*_standard_scores.csv``, copied
    into ``published_standard_scores.json``) over the labelled files and normalises
    with this subset's null and perfect raw scores: 100 × (raw − null) / (perfect −
    null), the same normalisation :func:`nabscore.score_corpus` applies to ours.

    Raises:
        ValueError: a labelled file has no published score.
    """
    data = json.loads((nab_dir / "published_standard_scores.json").read_text())
    labels = nabscore.load_labels(nab_dir / "labels" / "combined_windows.json")
    out = {}
    for name, det in data["detectors"].items():
        missing = sorted(set(labels) - set(det["raw_scores"]))
        if missing:
            raise ValueError(f"{name}: no published score for {missing}")
        raw = sum(det["raw_scores"][rel] for rel in labels)
        out[name] = 100.0 * (raw - null) / (perfect - null)
    return out


def table(results: list[dict]) -> str:
    """The side-by-side table printed by the benchmark (Markdown)."""
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
    lines.append(f"| alerts sent ({results[0]['files']} files) | " + " | ".join(
        f"– | {r['alerts']}" for r in results) + " |")
    return "\n".join(lines)


def standard_pair(result: dict) -> tuple[float, float]:
    """(ranked, as shipped) standard scores of one :func:`run_mode` result."""
    prof = result["profiles"]["standard"]
    return prof["ranked"]["score"], prof["as_shipped"]["score"]


def ablation(nab_dir: Path, config: DetectorConfig) -> str:
    """The ablation and sensitivity tables (Markdown; see the module docstring)."""
    runs = list(ABLATION)
    for name, values in SENSITIVITY:
        for value in values:
            if name.isupper():
                runs.append((f"{name} = {value}", {}, {name: value}))
            else:
                runs.append((f"{name} = {value}", {name: value}, {}))
    rows = []
    for i, (label, fields, consts) in enumerate(runs, 1):
        print(f"ablation {i}/{len(runs)}: {label}", file=sys.stderr, flush=True)
        saved = {name: getattr(detection, name) for name in consts}
        try:
            for name, value in consts.items():
                setattr(detection, name, value)
            ranked, shipped = standard_pair(
                run_mode("adaptive", nab_dir, None, replace(config, **fields)))
        finally:
            for name, value in saved.items():
                setattr(detection, name, value)
        rows.append(f"| {label} | {ranked:.1f} | {shipped:.1f} |")
    head = "| variant (adaptive, standard profile) | ranked | as shipped |\n|---|---:|---:|"
    cut = len(ABLATION)
    return "\n".join([head, *rows[:cut], "", "One at a time:", "", head, *rows[cut:]])


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modes", default="adaptive,seed")
    ap.add_argument("--nab-dir", type=Path, default=HERE / "nab")
    ap.add_argument("--out", type=Path, default=None, help="also write the numbers as JSON")
    ap.add_argument("--results-dir", type=Path, default=None)
    ap.add_argument("--set", dest="settings", action="append", default=[],
                    metavar="AUTOPILOT_X=VALUE", help="a detector setting (repeatable)")
    ap.add_argument("--ablation", action="store_true",
                    help="print the ablation and sensitivity tables instead")
    args = ap.parse_args(argv)
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
        print(ablation(args.nab_dir, config))
        return 0
    results = [run_mode(m.strip(), args.nab_dir, args.results_dir, config)
               for m in args.modes.split(",") if m.strip()]
    files, windows = results[0]["files"], results[0]["windows"]
    print(f"NAB subset: {files} files, {windows} labelled windows ({args.nab_dir})")
    print("ranked = best threshold on anomaly_score in hindsight; "
          "as shipped = alert column at 0.5\n")
    print(table(results))
    standard = results[0]["profiles"]["standard"]["ranked"]
    subset: dict[str, float] = {}
    if (args.nab_dir / "published_standard_scores.json").is_file():
        subset = published_on_subset(args.nab_dir, standard["null"], standard["perfect"])
        print(f"\nPublished NAB detectors on these {files} files (standard; NAB's per-file "
              "results at each detector's whole-corpus threshold):")
        print("| detector | these files | whole 58-file corpus |\n|---|---:|---:|")
        for name, score in sorted(subset.items(), key=lambda kv: -kv[1]):
            print(f"| {name} | {score:.1f} | {PUBLISHED[name]} |")
    else:
        print(f"\n(no {args.nab_dir / 'published_standard_scores.json'}: "
              "published detectors not compared)")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(
            {"results": results, "published": PUBLISHED, "published_on_subset": subset},
            indent=2))
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
