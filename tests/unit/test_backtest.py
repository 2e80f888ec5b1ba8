"""``autopilot backtest``: input formats, output contract, and identity with the live agent."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from autopilot.backtest import (
    COLUMNS,
    BacktestError,
    load_series,
    plot,
    run_backtest,
    write_csv,
)
from autopilot.detection import DetectorConfig
from autopilot.settings import load_settings
from tests import factories

REPO = Path(__file__).resolve().parents[2]
NAB_LATENCY = (
    REPO / "bench" / "nab" / "data" / "realKnownCause" / "ec2_request_latency_system_failure.csv"
)
CONFIG = DetectorConfig.from_settings(load_settings({}))


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_output_has_one_row_per_input_row_and_the_documented_columns() -> None:
    rows, skipped = load_series(NAB_LATENCY)
    result = run_backtest(rows, CONFIG, service="checkout", metric="api_latency_ms")
    out = io.StringIO()
    write_csv(result, out)

    parsed = csv_rows(out.getvalue())
    assert skipped == 0
    assert tuple(parsed[0].keys()) == COLUMNS
    assert len(parsed) == len(rows) == 4032
    source = csv_rows(NAB_LATENCY.read_text())
    assert [r["timestamp"] for r in parsed] == [r["timestamp"] for r in source]
    for r in parsed:
        for col in ("value", "anomaly_score", "z_score", "baseline_mean", "baseline_std_dev"):
            assert math.isfinite(float(r[col])), r
        assert 0.0 <= float(r["anomaly_score"]) <= 1.0
        assert r["alert"] in ("0", "1")
        assert (r["severity"] != "") == (r["alert"] == "1")
    assert sum(r["alert"] == "1" for r in parsed) == len(result.alerts) >= 1
    summary = result.summary()
    assert summary["samples"] == 4032
    alert_stamps = [r["timestamp"] for r in parsed if r["alert"] == "1"]
    assert (summary["first_alert"], summary["last_alert"]) == (alert_stamps[0], alert_stamps[-1])


def test_rfc3339_and_epoch_timestamps_are_read_and_echoed(tmp_path: Path) -> None:
    lines = ["timestamp,value"]
    lines += [f"2024-05-01T12:{i:02d}:00Z,{100 + (i % 3)}" for i in range(30)]
    lines += [f"{1714565400 + 60 * i},{100 + (i % 3)}" for i in range(30)]
    rows, _ = load_series(write(tmp_path, "s.csv", "\n".join(lines) + "\n"))

    assert rows[0].text == "2024-05-01T12:00:00Z"
    assert rows[0].epoch_s == 1714564800.0
    assert rows[30].text == "1714565400" and rows[30].epoch_s == 1714565400.0
    result = run_backtest(rows, CONFIG)
    assert [r.timestamp for r in result.rows] == [r.text for r in rows]


def test_prometheus_range_query_export_is_accepted(tmp_path: Path) -> None:
    values = [[1714564800 + 15 * i, str(100.0 + (i % 5))] for i in range(60)]
    values.append([1714564800 + 15 * 60, "NaN"])
    values.append([1714564800 + 15 * 61, "1500"])
    doc = {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"__name__": "api_latency_ms", "service": "checkout"}, "values": values}]}}
    rows, skipped = load_series(write(tmp_path, "export.json", json.dumps(doc)))

    assert skipped == 1 and len(rows) == 61
    result = run_backtest(rows, CONFIG, metric="api_latency_ms", skipped=skipped)
    assert result.rows[-1].alert and result.rows[-1].severity is not None
    assert result.summary()["skipped_non_finite"] == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time,val\n1,2\n", "header must name"),
        ("timestamp,value\n2024-05-01,abc\n", "not a number"),
        ("timestamp,value\nyesterday,1\n", "bad timestamp"),
        ("timestamp,value\n2024-05-01,inf\n", "not finite"),
        ("timestamp,value\n2024-05-01,1\n2024-05-02,1,3\n",
         r"bad.csv:3: 3 fields, the header names 2"),
        ('{"data": {"result": []}}', "holds 0 series"),
        ('{"status": "success", "data": {"resultType": "vector", "result": []}}',
         "not an instant query"),
        ('{"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}',
         "error response: bad_data: parse error at char 3"),
        ('{"data": {"resultType": "matrix", "result": [{"metric": {}, '
         '"values": [[1, "1"], [2, "abc"]]}]}}', r"sample 2 \(from 1\): value 'abc' is not"),
        ('[[1, "1"]]', "a JSON array"),
    ],
)
def test_bad_input_names_the_problem(tmp_path: Path, text: str, message: str) -> None:
    name = "bad.json" if text.startswith(("{", "[")) else "bad.csv"
    with pytest.raises(BacktestError, match=message):
        load_series(write(tmp_path, name, text))


def test_a_csv_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("timestamp,value\n2024-05-01T00:00:00Z,1.5\n".encode("utf-8-sig"))
    rows, _ = load_series(path)
    assert [(r.text, r.value) for r in rows] == [("2024-05-01T00:00:00Z", 1.5)]


@pytest.mark.parametrize("where", ["output", "plot"])
def test_cli_refuses_an_unwritable_output_with_a_message(tmp_path: Path, where: str) -> None:
    exe = Path(sys.executable).with_name("autopilot")
    src = write(tmp_path, "in.csv", "timestamp,value\n1,1\n2,2\n")
    args = {"output": ["--output", str(tmp_path / "missing" / "out.csv")],
            "plot": ["--output", str(tmp_path / "out.csv"),
                     "--plot", str(tmp_path / "missing" / "out.png")]}[where]
    proc = subprocess.run([str(exe), "backtest", str(src), *args],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert "cannot write: No such file or directory" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_refuses_to_overwrite_its_input(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("autopilot")
    src = write(tmp_path, "in.csv", "timestamp,value\n1,1\n")
    proc = subprocess.run([str(exe), "backtest", str(src), "--output", str(src)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and "is the input file" in proc.stderr
    assert src.read_text() == "timestamp,value\n1,1\n"


@pytest.mark.parametrize(("args", "message"), [
    (["--plot", "out.txt"], "cannot draw a .txt file (use one of:"),
    (["--service", ""], "--service must not be blank"),
    (["--service", "  "], "--service must not be blank"),
    (["--output", "same.png", "--plot", "same.png"], "--output and --plot are both"),
])
def test_cli_refuses_bad_options_with_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    exe = Path(sys.executable).with_name("autopilot")
    src = write(tmp_path, "in.csv", "timestamp,value\n1,1\n2,2\n")
    proc = subprocess.run([str(exe), "backtest", str(src), *args],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "in.backtest.csv").exists()  # refused before any work


def test_cli_plot_without_an_extension_writes_and_names_a_png(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("autopilot")
    src = write(tmp_path, "in.csv", "timestamp,value\n1,1\n2,2\n")
    proc = subprocess.run([str(exe), "backtest", str(src), "--plot", "chart"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "plot     chart.png" in proc.stderr
    assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG")


def test_an_invalid_setting_stops_every_command_with_one_line(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("autopilot")
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**os.environ, "AUTOPILOT_WARMUP_Z": "-1"})
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "autopilot: invalid settings: AUTOPILOT_WARMUP_Z: Input should be greater than 0")


@pytest.mark.parametrize("mode", ["adaptive", "seed"])
def test_backtest_and_the_live_agent_send_identical_anomalies(mode: str, monkeypatch) -> None:
    """The metrics agent's ``process`` (real code, in-memory table and topic stand-ins)
    and the backtest emit the same Anomaly records for the same samples, although the
    agent receives them in records of 7 points and the backtest one by one."""
    from autopilot.agents import metrics as agent

    from autopilot.series import SeriesLimits
    from tests.events import keyed_metrics_event, metrics_agent_in_memory

    rows, _ = load_series(NAB_LATENCY)
    config = replace(CONFIG, mode=mode)
    service, metric = "checkout", "api_latency_ms"
    backtest = run_backtest(rows, config, service=service, metric=metric)

    topic = metrics_agent_in_memory(monkeypatch)

    async def run() -> None:
        for offset, start in enumerate(range(0, len(rows), 7)):
            chunk = rows[start:start + 7]
            value = json.dumps([factories.metric(service, r.value, r.epoch_s, name=metric)
                                for r in chunk]).encode()
            event = keyed_metrics_event(value, offset)  # source header as the ingest hop sets
            await agent.process(event, config, SeriesLimits())

    asyncio.run(run())
    live = [json.loads(v) for v in topic.sent]
    offline = []
    for record in backtest.records:
        assert record.anomaly is not None  # the backtest keeps records that carry one
        offline.append(json.loads(record.anomaly.model_dump_json()))
    assert live == offline
    assert len(offline) >= 1


def test_cli_writes_the_csv_alone_to_stdout_and_the_summary_to_stderr(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("autopilot")
    proc = subprocess.run(
        [str(exe), "backtest", str(NAB_LATENCY), "--output", "-", "--service", "checkout",
         "--plot", str(tmp_path / "plot.png")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    parsed = csv_rows(proc.stdout)
    assert len(parsed) == 4032 and tuple(parsed[0]) == COLUMNS
    assert "samples  4032" in proc.stderr and "alerts" in proc.stderr
    assert (tmp_path / "plot.png").stat().st_size > 10_000


def test_a_counter_backtest_scores_and_draws_its_per_second_rate(tmp_path: Path) -> None:
    total, lines = 0.0, ["timestamp,value"]
    for i in range(200):
        total += 60.0 * 10.0  # 10 per second, one sample a minute
        lines.append(f"{1_700_000_000 + 60 * i},{total}")
    rows, _ = load_series(write(tmp_path, "c.csv", "\n".join(lines) + "\n"))
    result = run_backtest(rows, DetectorConfig(), service="s", metric="http_requests_total")
    assert result.counter and result.rows[0].scored is None  # no rate from one sample
    assert result.rows[100].scored == pytest.approx(10.0)
    assert result.rows[100].value == pytest.approx(101 * 600.0)  # the CSV keeps the input
    assert result.rows[100].baseline_mean == pytest.approx(10.0)  # the band is in rates
    plot(result, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes().startswith(b"\x89PNG")
