"""Custom commands of the ``autopilot`` command line (besides Faust's own).

* ``autopilot broker [--port N] [--data-dir D]`` — run a local Apache Kafka (KRaft,
  see :mod:`autopilot.broker`) in the foreground on 127.0.0.1; Ctrl-C or SIGTERM
  stops it and every child process.
* ``autopilot demo`` — replay a real failure end to end (see :mod:`autopilot.demo`).
* ``autopilot backtest FILE`` — run the live detector over a CSV or Prometheus export
  offline (see :mod:`autopilot.backtest`); ``--feedback FILE`` applies exported
  feedback to it.
* ``autopilot feedback export`` — every "Not an incident" record as JSON lines on
  stdout, read from the ``feedback`` table's changelog (see :mod:`autopilot.feedback`).
* ``autopilot audit INCIDENT_ID`` — one incident's story in time order, from the
  ``autopilot.audit`` topic (see :mod:`autopilot.audit`, docs/audit.md).

Faust's commands (``worker``, ``agents``, ``tables``, ``send`` …) work as usual.
:func:`main` is the console script (``python -m autopilot`` runs it too); this module
imports the app, never the other way round.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click
from faust.cli import AppCommand, argument, option

from autopilot.app import app, check_startup, settings
from autopilot.detection import MODES
from autopilot.errors import ConfigError


def main() -> None:
    """Console script ``autopilot``: Faust's own command line plus the commands below.

    Invalid ``AUTOPILOT_*`` settings (and an invalid ``AUTOPILOT_SLACK_ROUTES`` file,
    TLS files that cannot be loaded, and for ``worker`` Kafka credentials the broker
    refuses: :func:`autopilot.app.check_startup`) stop it before Faust starts, with one
    line that names the variable on stderr and exit status 2 (Faust would show a
    traceback).
    """
    try:
        check_startup(settings(), worker="worker" in sys.argv[1:])
    except (ConfigError, ValueError) as exc:
        print(f"autopilot: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    app.main()


@app.command(
    option("--port", type=int, default=9092, show_default=True, help="TCP port on 127.0.0.1"),
    option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
           help="Run directory (topics, offsets, logs); default: .cache/kafka/run-PORT"),
)
async def broker(self: AppCommand, port: int, data_dir: Path | None) -> None:
    """Run a local Apache Kafka (KRaft, one node) until Ctrl-C or SIGTERM."""
    from autopilot.broker import LocalKafka

    local = LocalKafka(port=port, data_dir=data_dir)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):  # stop Kafka and every child first
        loop.add_signal_handler(signum, local.stop)
    try:
        await local.start_async()
        self.say(f"Apache Kafka (KRaft) listening on {local.bootstrap}")
        self.say(f"Point workers at it with AUTOPILOT_BROKER={local.url}; "
                 "Ctrl-C or SIGTERM stops it (topics and offsets are kept).")
        code = await asyncio.to_thread(local.wait)
        if code not in (0, -signal.SIGTERM, 143):
            self.say(f"broker exited with code {code}")
            raise SystemExit(1)
    finally:
        local.stop()


@app.command(
    option("--timeout", type=float, default=600.0, show_default=True,
           help="Give up after this many seconds"),
)
async def demo(self: AppCommand, timeout: float) -> Any:
    """Replay a real EC2 latency failure through the whole pipeline."""
    from autopilot.demo import run_demo

    code = await run_demo(timeout_s=timeout)
    if code:
        raise SystemExit(code)


@app.command(
    argument("file", type=str),
    option("--service", type=str, default="backtest", show_default=True,
           help="Service label of the series"),
    option("--metric", type=str, default=None,
           help="Metric name (picks direction and counter rules); default: the file's stem"),
    option("--mode", type=click.Choice(list(MODES)), default=None,
           help="Detector mode: adaptive or seed (default: AUTOPILOT_DETECTOR_MODE)"),
    option("--output", type=str, default=None,
           help="CSV to write ('-' = stdout); default: <stem>.backtest.csv"),
    option("--plot", type=str, default=None, help="Also draw series, band and alerts (PNG)"),
    option("--feedback", "feedback_file", type=str, default=None,
           help="Apply this feedback (JSON lines of `autopilot feedback export`)"),
)
async def backtest(
    self: AppCommand,
    file: str,
    service: str,
    metric: str | None,
    mode: str | None,
    output: str | None,
    plot: str | None,
    feedback_file: str | None,
) -> None:
    """Run the live detector over FILE (CSV timestamp,value or Prometheus JSON) offline."""
    run_backtest_command(file, service, metric, mode, output, plot, feedback_file)


@app.command(
    argument("action", type=click.Choice(["export"])),
    option("--timeout", type=float, default=30.0, show_default=True,
           help="Give up when the broker does not answer within this many seconds"),
)
async def feedback(self: AppCommand, action: str, timeout: float) -> None:
    """export: every "Not an incident" record as JSON lines on stdout."""
    import json

    from autopilot.agents.feedback import export_changelog

    try:
        records = await export_changelog(timeout_s=timeout)
    except TimeoutError:
        click.echo(f"feedback: the broker ({settings().broker}) did not answer within "
                   f"{timeout:.0f} s", err=True)
        raise SystemExit(1) from None
    for record in records:
        sys.stdout.write(json.dumps(record.to_dict()) + "\n")
    sys.stdout.flush()
    click.echo(f"feedback: {len(records)} record(s)", err=True)


@app.command(
    argument("incident_id", type=str),
    option("--timeout", type=float, default=30.0, show_default=True,
           help="Give up when the broker does not answer within this many seconds"),
)
async def audit(self: AppCommand, incident_id: str, timeout: float) -> None:
    """INCIDENT_ID's story: one line per decision (time UTC, kind, actor, summary)."""
    await run_audit_command(incident_id, timeout)


async def run_audit_command(incident_id: str, timeout: float) -> None:
    """``autopilot audit``: read ``autopilot.audit`` from its start to its end offsets
    (``AUTOPILOT_BROKER``, ``AUTOPILOT_TOPIC_PREFIX`` honoured) and print the story of
    ``incident_id`` (:func:`autopilot.audit.format_story`) on stdout.

    Exits 0; 1 with one line on stderr when no event names the incident, or when the
    broker cannot be reached or does not answer within ``timeout`` seconds.
    """
    import logging

    from aiokafka.errors import KafkaError

    from autopilot.agents.audit import read_events
    from autopilot.audit import format_story

    broker = settings().broker
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the one line below says it
    try:
        events, bad = await read_events(incident_id, timeout_s=timeout)
    except TimeoutError:
        click.echo(f"audit: the broker ({broker}) did not answer within {timeout:.0f} s",
                   err=True)
        raise SystemExit(1) from None
    except (KafkaError, OSError) as exc:
        click.echo(f"audit: cannot reach the broker ({broker}): {type(exc).__name__} "
                   "(check AUTOPILOT_BROKER and that Kafka is up)", err=True)
        raise SystemExit(1) from None
    lines = format_story(incident_id, events)
    if not lines:
        click.echo(f"audit: unknown incident {incident_id!r}: no audit events name it",
                   err=True)
        raise SystemExit(1)
    for line in lines:
        sys.stdout.write(line + "\n")
    sys.stdout.flush()
    if bad:
        click.echo(f"audit: {bad} record(s) of incident {incident_id} skipped (not audit "
                   "events)", err=True)


#: Files with at least this many rows get a progress bar (on stderr).
PROGRESS_MIN_ROWS = 10_000


def _plot_target(plot_path: str) -> str:
    """The file ``--plot`` writes: PNG when it has no extension (as matplotlib does).

    Exits with status 2 and one line when matplotlib cannot write that format.
    """
    from matplotlib.backend_bases import FigureCanvasBase

    target = Path(plot_path)
    fmt = target.suffix[1:].lower()
    if not fmt:
        return str(target.with_name(target.name + ".png"))
    supported = FigureCanvasBase.get_supported_filetypes()
    if fmt not in supported:
        click.echo(f"backtest: {plot_path}: cannot draw a .{fmt} file (use one of: "
                   f"{', '.join(sorted(supported))})", err=True)
        raise SystemExit(2)
    return plot_path


def run_backtest_command(
    file: str,
    service: str,
    metric: str | None,
    mode: str | None,
    output: str | None,
    plot_path: str | None,
    feedback_file: str | None = None,
) -> None:
    """``autopilot backtest``: read, detect with the live settings, write, summarise.

    The CSV goes to ``output`` (``-``: stdout, alone); progress and the summary go to
    stderr. Exits with status 2 and a one-line message on a bad input file.
    """
    from dataclasses import replace

    from tqdm import tqdm

    from autopilot.backtest import (
        BacktestError,
        load_feedback,
        load_series,
        plot,
        run_backtest,
        write_csv,
    )
    from autopilot.detection import DetectorConfig

    path = Path(file)
    if not service.strip():
        click.echo("backtest: --service must not be blank", err=True)
        raise SystemExit(2)
    if plot_path:
        plot_path = _plot_target(plot_path)
    for out in (output, plot_path):
        if out and out != "-" and Path(out).resolve() == path.resolve():
            click.echo(f"backtest: {out} is the input file; choose another output", err=True)
            raise SystemExit(2)
    if plot_path and output and output != "-" and (
            Path(output).resolve() == Path(plot_path).resolve()):
        click.echo(f"backtest: --output and --plot are both {output}; choose two files",
                   err=True)
        raise SystemExit(2)
    config = DetectorConfig.from_settings(settings())
    if mode:
        config = replace(config, mode=mode)
    try:
        rows, skipped = load_series(path)
        given = load_feedback(feedback_file) if feedback_file else None
    except BacktestError as exc:
        click.echo(f"backtest: {exc}", err=True)
        raise SystemExit(2) from None

    backwards = sum(1 for a, b in zip(rows, rows[1:], strict=False) if b.epoch_s < a.epoch_s)
    if backwards:
        click.echo(
            f"backtest: warning: {backwards} row(s) older than the row before; they are "
            "scored in file order, as the live agent scores samples in arrival order "
            "(sort the file for an event-time replay)", err=True)

    def progress(it: Any) -> Any:
        return tqdm(it, total=len(rows), desc="backtest", unit="sample", file=sys.stderr,
                    disable=len(rows) < PROGRESS_MIN_ROWS)

    result = run_backtest(rows, config, service=service, metric=metric or path.stem,
                          progress=progress, skipped=skipped, feedback=given)
    target = output if output is not None else f"{path.stem}.backtest.csv"
    if target == "-":
        try:
            write_csv(result, sys.stdout)
            sys.stdout.flush()
        except BrokenPipeError:  # e.g. `| head`: the reader left, which is fine
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return
    else:
        try:
            with open(target, "w", newline="", encoding="utf-8") as fh:
                write_csv(result, fh)
        except OSError as exc:
            click.echo(f"backtest: {target}: cannot write: {exc.strerror or exc}", err=True)
            raise SystemExit(2) from None
    click.echo(result.summary_text(), err=True)
    if target != "-":
        click.echo(f"wrote    {target}", err=True)
    if plot_path:
        try:
            plot(result, plot_path, band_z=config.z_threshold)
        except OSError as exc:
            click.echo(f"backtest: {plot_path}: cannot write: {exc.strerror or exc}",
                       err=True)
            raise SystemExit(2) from None
        click.echo(f"plot     {plot_path}", err=True)
