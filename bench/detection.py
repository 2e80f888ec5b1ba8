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
as they would live).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import nabscore  # noqa: E402

from autopilot.backtest import load_series, run_backtest  # noqa: E402
from autopilot.detection import DetectorConfig  # noqa: E402
from autopilot.settings import load_settings  # noqa: E402

PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
#: Published NAB scores (standard profile, whole 58-file corpus, NAB scoreboard).
PUBLISHED = {
    "Numenta HTM": 70.1,
    "ARTime": 74.9,
    "Skyline (earthgecko)": 58.2,
    "Windowed Gaussian": 39.6,
}


def run_mode(mode: str, nab_dir: Path, results_dir: Path | None) -> dict:
    """Backtest every labelled file in ``mode``; return scores and counts."""
    config = replace(DetectorConfig.from_settings(load_settings({})), mode=mode)
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
                out = results_dir / f"{mode}{kind}" / category / f"{mode}{kind}_{name}"
                out.parent.mkdir(parents=True, exist_ok=True)
                with open(out, "w") as fh:
                    fh.write("timestamp,value,anomaly_score\n")
                    for r, s in zip(result.rows, column, strict=True):
                        fh.write(f"{r.timestamp},{r.value!r},{s!r}\n")
    out = {"mode": mode, "files": len(labels), "alerts": alerts,
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


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modes", default="adaptive,seed")
    ap.add_argument("--nab-dir", type=Path, default=HERE / "nab")
    ap.add_argument("--out", type=Path, default=None, help="also write the numbers as JSON")
    ap.add_argument("--results-dir", type=Path, default=None)
    args = ap.parse_args(argv)
    results = [run_mode(m.strip(), args.nab_dir, args.results_dir)
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
