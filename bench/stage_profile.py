#!/usr/bin/env python3
"""Where the worker's time goes: a py-spy profile of both metrics paths, per stage.

    python bench/stage_profile.py [--seconds 20] [--rate 100] [--json OUT.json]
        [--broker kafka://HOST:PORT] [--paths batched,single]
        [--batched-records 3000] [--single-records 80000] [--top 15]
        [--worker-loglevel info]

Starts the same worker on the same traffic as ``bench/throughput.py`` (its
``WorkerProc``, ``fresh_broker``, ``produce`` and record generators): one fresh local
Apache Kafka (or ``--broker``), then per path a fresh ``autopilot worker`` on its own
topics, a backlog of records produced to it (*batched*: JSON lists of ``--batch``
samples of one service; *single*: one MetricPoint per record), and, once the worker's
``autopilot_samples_processed_total{stage="metrics"}`` counter moves, ``py-spy record
--pid WORKER --format raw --nonblocking`` for ``--seconds`` seconds. py-spy attaches
with ptrace: root, or ``CAP_SYS_PTRACE`` in a container (``docker run --cap-add
SYS_PTRACE``), or ``kernel.yama.ptrace_scope=0``; the tool stops with that advice when
the attach fails.

Every sampled stack (idle threads are not sampled: the shares are of the worker's
busy time) is put in one stage by :func:`classify_stack` and in one agent by
:func:`agent_of`. Per path it prints the share of samples per stage, the busy time
per input sample per stage (µs: samples ÷ ``--rate`` ÷ input samples processed in the
window; the wall time of the worker's non-idle threads, so on a machine with more
runnable processes than cores it includes waiting for a core and exceeds CPU time),
the share per agent and the top ``--top`` functions by self time (the
innermost Python frame; time in a C extension counts for the Python function that
called it). ``--json`` writes the same numbers. Called ``stage_profile`` rather than
``profile``: a ``bench/profile.py`` would shadow the standard library's ``profile``
module (which ``cProfile`` imports) for every script in ``bench/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

#: The stages, in the order the tables print them.
STAGES = (
    "logging (log records, redaction filter)",
    "Kafka client (aiokafka fetch/produce I/O)",
    "per-record machinery (Faust, mode, agents/boundary)",
    "JSON (stdlib json)",
    "pydantic (validate/serialize)",
    "ingest re-key (agents/ingest, formats)",
    "metrics agent (agents/metrics, series, replay)",
    "detector (autopilot/detection)",
    "tables (Faust tables, RocksDB, changelog)",
    "produce anomalies",
    "event loop (asyncio, selectors)",
    "other",
)
(LOGGING, KAFKA, FAUST, JSON_, PYDANTIC, INGEST, METRICS_AGENT, DETECTOR, TABLES,
 PRODUCE, LOOP, OTHER) = STAGES

#: Agents of :func:`agent_of`.
AGENTS = ("ingest", "metrics", "outside the agents")

#: Checked anywhere in the stack, in this order: the first that matches decides.
_LOGGING_PATHS = ("/logging/", "/autopilot/redact.py", "/agents/security.py")
_TABLE_PATHS = ("/faust/tables/", "/faust/stores/", "/rocksdict/", "/tables/store.py",
                "/tables/__init__.py")
_DETECTOR_PATHS = ("/autopilot/detection/",)
#: Checked from the innermost frame outwards: the first frame that matches decides.
_LEAF_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (JSON_, ("/json/",)),
    (PYDANTIC, ("/pydantic/", "/pydantic_core/")),
    (KAFKA, ("/aiokafka/", "/kafka/")),
    (INGEST, ("/agents/ingest.py", "/autopilot/formats/")),
    (METRICS_AGENT, ("/agents/metrics.py", "/autopilot/series.py", "/autopilot/replay.py")),
    (FAUST, ("/faust/", "/mode/", "/agents/boundary.py")),
    (LOOP, ("/asyncio/", "/selectors.py", "/uvloop/", "/threading.py")),
)

_FRAME = re.compile(r"^(?P<func>.*) \((?P<path>[^()]*):(?P<line>\d+)\)$")


@dataclass(frozen=True)
class Frame:
    """One frame of a collapsed stack: ``function (path:line)`` as py-spy writes it."""

    function: str
    path: str
    line: int

    @property
    def where(self) -> str:
        """``/``-prefixed path, so rules can match whole segments (``/json/``)."""
        return "/" + self.path.replace("\\", "/").lstrip("/")


def parse_frame(text: str) -> Frame:
    """``"loads (/usr/lib/python3.11/json/__init__.py:346)"`` → Frame; text without a
    ``(path:line)`` part (a thread or process name) → ``Frame(text, "", 0)``."""
    m = _FRAME.match(text.strip())
    if not m:
        return Frame(text.strip(), "", 0)
    return Frame(m["func"], m["path"], int(m["line"]))


def parse_collapsed(text: str) -> list[tuple[tuple[Frame, ...], int]]:
    """py-spy ``--format raw`` output (one ``frame;frame;…;frame COUNT`` line per
    distinct stack, outermost frame first) → ``[(frames, count)]``.

    Blank lines are skipped; a line that is only a count (a sample whose stack py-spy
    could not read, seen with ``--nonblocking``) gives an empty frame tuple. Raises
    ValueError naming the 1-based line number when a line's count is missing or not a
    non-negative integer.
    """
    out: list[tuple[tuple[Frame, ...], int]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        stack, _, count = line.strip().rpartition(" ")
        if not count.isdigit():
            raise ValueError(f"line {n}: expected 'frame;frame;... COUNT', got {line[:80]!r}")
        frames = tuple(parse_frame(f) for f in stack.split(";")) if stack else ()
        out.append((frames, int(count)))
    return out


def _in(frame: Frame, paths: Sequence[str]) -> bool:
    where = frame.where
    return any(p in where for p in paths)


def classify_stack(frames: Sequence[Frame]) -> str:
    """The stage (one of :data:`STAGES`) of one sampled stack, outermost frame first.

    Four rules decide anywhere in the stack, in this order, because their work runs
    through other libraries' frames:

    0. *logging*: any frame of the stdlib ``logging`` package, ``autopilot/redact.py`` or
       ``agents/security.py`` (building a log record, formatting its message, e.g. an
       aiokafka request's ``repr``, and the worker's redaction filter);
    1. *produce anomalies*: a frame of ``agents/metrics.py`` calling ``faust/topics.py``
       (``anomalies_topic.send``) or pydantic's ``model_dump_json`` (the anomaly's
       encoding); everything below it counts;
    2. *tables*: any frame of ``faust/tables/``, ``faust/stores/``, ``rocksdict`` or this
       repository's ``tables/`` package (reads, writes, the changelog send and the
       (de)serialisation of table values by Faust);
    3. *detector*: any frame of ``autopilot/detection/`` (numpy and JSON it calls
       count as detector; the baseline's ``from_dict``/``to_dict`` live there).

    Otherwise the innermost frame that matches a rule of ``_LEAF_RULES`` decides: stdlib
    ``json/`` → JSON; ``pydantic``/``pydantic_core`` → pydantic (``validate_json``
    parses JSON in Rust and counts here); ``aiokafka`` → Kafka client; ``agents/ingest``
    and ``autopilot/formats`` → ingest re-key; ``agents/metrics``, ``autopilot/series``,
    ``autopilot/replay`` → metrics agent; ``faust``, ``mode``, ``agents/boundary`` →
    per-record machinery; ``asyncio``, ``selectors``, ``threading`` → event loop. Frames
    no rule names (prometheus_client, logging, autopilot/telemetry …) count for the
    nearest caller a rule names; a stack with none → ``other``.
    """
    if any(_in(f, _LOGGING_PATHS) for f in frames):
        return LOGGING
    for caller, callee in zip(frames, frames[1:], strict=False):
        if caller.where.endswith("/agents/metrics.py") and (
            callee.where.endswith("/faust/topics.py") or callee.function == "model_dump_json"
        ):
            return PRODUCE
    if any(_in(f, _TABLE_PATHS) for f in frames):
        return TABLES
    if any(_in(f, _DETECTOR_PATHS) for f in frames):
        return DETECTOR
    for frame in reversed(frames):
        for stage, paths in _LEAF_RULES:
            if _in(frame, paths):
                return stage
    return OTHER


def agent_of(frames: Sequence[Frame]) -> str:
    """``"ingest"`` when the stack runs inside ``agents/ingest.py`` (the re-key agent),
    ``"metrics"`` inside ``agents/metrics.py``, else ``"outside the agents"`` (Kafka
    I/O tasks, Faust's stream and commit machinery, the event loop)."""
    for frame in reversed(frames):
        if frame.where.endswith("/agents/ingest.py"):
            return "ingest"
        if frame.where.endswith("/agents/metrics.py"):
            return "metrics"
    return "outside the agents"


def short_path(path: str) -> str:
    """A frame's file as a module path: after ``site-packages/``, ``pythonX.Y/`` or
    this repository's root; unchanged otherwise."""
    p = path.replace("\\", "/")
    for marker in ("/site-packages/", "/dist-packages/"):
        if marker in p:
            return p.rsplit(marker, 1)[1]
    m = re.search(r"/lib/python3\.\d+/(.*)$", p)
    if m:
        return m.group(1)
    root = str(ROOT).replace("\\", "/") + "/"
    return p[len(root):] if p.startswith(root) else p


def summarize(stacks: Sequence[tuple[Sequence[Frame], int]], top: int = 15) -> dict[str, Any]:
    """Counts of classified stacks: ``{"profile_samples": N, "unreadable_samples": M,
    "stages": {stage: count},
    "agents": {agent: count}, "top_self": [(function, count)]}`` with every stage and
    agent present (0 when unseen) and the ``top`` functions by self samples (innermost
    frame, as ``function (module path)``, line numbers merged)."""
    stages = dict.fromkeys(STAGES, 0)
    agents = dict.fromkeys(AGENTS, 0)
    self_time: Counter[str] = Counter()
    total = unreadable = 0
    for frames, count in stacks:
        if not frames:
            unreadable += count  # not in the shares
            continue
        total += count
        stages[classify_stack(frames)] += count
        agents[agent_of(frames)] += count
        leaf = frames[-1]
        self_time[f"{leaf.function} ({short_path(leaf.path)})" if leaf.path
                  else leaf.function] += count
    return {"profile_samples": total, "unreadable_samples": unreadable, "stages": stages,
            "agents": agents, "top_self": self_time.most_common(top)}


# ----------------------------------------------------------------------------- running


def say(text: str) -> None:
    """Progress line on stderr (stdout carries the tables)."""
    print(text, file=sys.stderr, flush=True)


def load() -> str:
    """The 1/5/15-minute load averages, as ``uptime`` prints them."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def py_spy() -> str:
    """Path of the py-spy executable (next to this Python, else on PATH)."""
    here = Path(sys.executable).with_name("py-spy")
    if here.exists():
        return str(here)
    from shutil import which

    found = which("py-spy")
    if not found:
        raise SystemExit("py-spy not found: pip install py-spy (it is in the dev extras)")
    return found


def record(pid: int, seconds: float, rate: int, out: Path) -> None:
    """``py-spy record`` of ``pid`` for ``seconds`` into ``out`` (collapsed stacks).

    Raises SystemExit with the ptrace advice when py-spy cannot attach.
    """
    cmd = [py_spy(), "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
           "--rate", str(rate), "--format", "raw", "--full-filenames", "--nonblocking",
           "--output", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    if done.returncode != 0 or not out.exists():
        raise SystemExit(
            f"py-spy could not profile pid {pid} (exit {done.returncode}): "
            f"{(done.stderr or done.stdout).strip()[-400:]}\nIt attaches with ptrace: run as "
            "root, add CAP_SYS_PTRACE (docker run --cap-add SYS_PTRACE) or set "
            "kernel.yama.ptrace_scope=0.")


def profile_path(name: str, bootstrap: str, records: list[tuple[bytes, bytes, int]],
                 workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Profile one fresh worker while it works through ``records``; the summary plus
    ``input_samples`` (processed during the window), ``window_s`` and the load."""
    import throughput as tp

    worker = tp.WorkerProc(bootstrap, workdir, f"profile-{name}",
                           loglevel=args.worker_loglevel or "warn")
    try:
        total = sum(n for _, _, n in records)
        say(f"{name}: producing {len(records):,} records ({total:,} samples) …")
        asyncio.run(tp.produce(bootstrap, worker.metrics_topic, records))
        deadline = time.monotonic() + 120
        while worker.samples() == 0:
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}: the worker processed nothing in 120 s")
            time.sleep(0.2)
        load_before = load()
        out = workdir / f"{name}.collapsed"
        say(f"{name}: py-spy on pid {worker.proc.pid} for {args.seconds:.0f} s "
            f"(load {load_before}) …")
        before, t0 = worker.samples(), time.perf_counter()
        record(worker.proc.pid, args.seconds, args.rate, out)
        after, t1 = worker.samples(), time.perf_counter()
        if after >= total:
            say(f"{name}: WARNING the backlog ran out during the window; raise "
                f"--{name}-records for a window that is busy throughout")
        result = summarize(parse_collapsed(out.read_text()), top=args.top)
        result.update({"input_samples": after - before, "window_s": t1 - t0,
                       "input_samples_per_s": (after - before) / (t1 - t0),
                       "load_before": load_before, "load_after": load(),
                       "collapsed_file": str(out)})
        return result
    finally:
        worker.stop()


def table(name: str, res: dict[str, Any], rate: int) -> str:
    """The printed tables of one path (stages, agents, top self-time functions)."""
    n = res["profile_samples"] or 1
    per = res["input_samples"] or 1
    lines = [f"## {name}: {res['profile_samples']:,} profile samples, "
             f"{res['input_samples']:,} input samples in {res['window_s']:.1f} s "
             f"({res['input_samples_per_s']:,.0f} samples/s); load {res['load_before']}",
             "", "| stage | profile samples | share | busy µs per input sample |",
             "|---|---:|---:|---:|"]
    for stage, c in res["stages"].items():
        us = f"{c / rate / per * 1e6:.2f}" if res["input_samples"] else "n/a (none processed)"
        lines.append(f"| {stage} | {c:,} | {100 * c / n:.1f} % | {us} |")
    lines += ["", "| agent | share |", "|---|---:|"]
    lines += [f"| {a} | {100 * c / n:.1f} % |" for a, c in res["agents"].items()]
    lines += ["", "| function (self time) | share |", "|---|---:|"]
    lines += [f"| `{f}` | {100 * c / n:.1f} % |" for f, c in res["top_self"]]
    return "\n".join(lines)


def main() -> int:
    """Command-line entry point."""
    import throughput as tp

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=20.0, help="py-spy window per path")
    p.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    p.add_argument("--broker", help="kafka://HOST:PORT (default: a fresh local Apache Kafka)")
    p.add_argument("--paths", default="batched,single", help="comma list: batched,single")
    p.add_argument("--services", type=int, default=500)
    p.add_argument("--metrics", type=int, default=20)
    p.add_argument("--batch", type=int, default=500, help="samples per batched record")
    p.add_argument("--batched-records", type=int, default=3000,
                   help="backlog of batched records (must outlast --seconds)")
    p.add_argument("--single-records", type=int, default=80_000,
                   help="backlog of single-sample records (must outlast --seconds)")
    p.add_argument("--worker-loglevel", choices=["debug", "info"],
                   help="start the worker with -l LEVEL instead of throughput.py's -l warn "
                   "(below WARN Faust installs no spinner log handler)")
    p.add_argument("--top", type=int, default=15, help="functions in the self-time table")
    p.add_argument("--json", type=Path, help="write the numbers as JSON")
    args = p.parse_args()
    paths = [x.strip() for x in args.paths.split(",") if x.strip()]
    if not paths or any(x not in ("batched", "single") for x in paths):
        p.error(f"--paths wants batched and/or single, not {args.paths!r}")
    workdir = Path(tempfile.mkdtemp(prefix="autopilot-profile-"))
    say(f"work directory: {workdir}; load {load()}")
    results: dict[str, Any] = {"seconds": args.seconds, "rate_hz": args.rate,
                               "worker_loglevel": args.worker_loglevel or "warn",
                               "cpus": os.cpu_count(), "paths": {}}
    with tp.fresh_broker(args.broker, workdir) as bootstrap:
        for name in paths:
            if name == "batched":
                records = list(tp.batched_records(args.services, args.metrics, args.batch,
                                                  args.batched_records))
            else:
                need = max(1, -(-args.single_records // args.batch))
                batched = list(tp.batched_records(args.services, args.metrics, args.batch,
                                                  need))
                records = tp.single_records(batched)[: args.single_records]
            results["paths"][name] = profile_path(name, bootstrap, records, workdir, args)
            print(table(name, results["paths"][name], args.rate) + "\n", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        say(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
