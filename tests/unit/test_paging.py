"""bench/paging.py: the issue's page rule, precision and recall on a tiny constructed case.

Two services, three labelled injections (at 1:00 on ``db``, at 3:00 on ``api``, at 5:00
on ``db``). ``db`` alerts at 1:02, 1:10 (two metrics), 1:35 and 1:50 — alerts less than
30 min apart, so one page starting at 1:02 (true, root cause) — and again alone at 2:30
(a false page). ``api`` alerts once at 3:20, 20 minutes after its injection: outside the
10-minute window, a false page. Nothing alerts near 5:00: a missed injection.
The end-to-end test replays a tiny day in the Nezha layout through the real backtest.
"""

from __future__ import annotations

import csv
import json
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import paging  # noqa: E402

H, M = 3600.0, 60.0
INCIDENTS = [paging.Incident(1 * H, "db"), paging.Incident(3 * H, "api"),
             paging.Incident(5 * H, "db")]
ALERTS = [
    paging.Alert(1 * H + 2 * M, "db", "cpu"),
    paging.Alert(1 * H + 10 * M, "db", "cpu"),
    paging.Alert(1 * H + 10 * M, "db", "latency"),
    paging.Alert(1 * H + 35 * M, "db", "cpu"),
    paging.Alert(1 * H + 50 * M, "db", "cpu"),  # 15 min after the last: same page
    paging.Alert(2 * H + 30 * M, "db", "disk"),  # 40 min after the last: a new page
    paging.Alert(3 * H + 20 * M, "api", "cpu"),
]


def test_alerts_less_than_30_minutes_apart_are_one_page() -> None:
    pages = paging.merge_pages(reversed(ALERTS))  # order of input does not matter
    assert [(p.service, p.start, p.end) for p in pages] == [
        ("db", 1 * H + 2 * M, 1 * H + 50 * M),
        ("db", 2 * H + 30 * M, 2 * H + 30 * M),
        ("api", 3 * H + 20 * M, 3 * H + 20 * M),
    ]
    assert pages[0].metrics == {"cpu", "latency"} and pages[0].alerts == 5


def test_gap_of_exactly_30_minutes_starts_a_new_page() -> None:
    pages = paging.merge_pages([paging.Alert(0.0, "a", "m"), paging.Alert(1800.0, "a", "m"),
                                paging.Alert(1800.0 + 1799.0, "a", "m")])
    assert [p.start for p in pages] == [0.0, 1800.0]


def test_other_services_alerts_do_not_merge() -> None:
    pages = paging.merge_pages([paging.Alert(0.0, "a", "m"), paging.Alert(60.0, "b", "m")])
    assert [p.service for p in pages] == ["a", "b"]


def test_precision_recall_and_histogram() -> None:
    s = paging.score(paging.merge_pages(ALERTS), INCIDENTS, ALERTS)
    assert s["pages"] == 3 and s["true_pages"] == 1
    assert s["precision"] == pytest.approx(1 / 3)
    assert s["recall_any"] == pytest.approx(1 / 3)
    assert s["recall_root"] == pytest.approx(1 / 3)
    assert s["alert_recall"] == pytest.approx(1 / 3)
    assert s["metrics_per_page"] == {"1": 2, "2": 1, "3": 0, "4": 0, "5": 0}
    assert s["metrics_per_false_page"] == {"1": 2, "2": 0, "3": 0, "4": 0, "5": 0}


def test_control_without_merging_the_numbers_differ() -> None:
    """Control: with merging off (every alert its own page) the same alerts give seven
    pages and a different precision — so the merge test above can fail."""
    unmerged = paging.merge_pages(ALERTS, gap_s=0.0)
    s = paging.score(unmerged, INCIDENTS)
    assert s["pages"] == 7 and s["true_pages"] == 1
    assert s["precision"] == pytest.approx(1 / 7)


def test_page_on_another_service_counts_for_any_not_for_root_cause() -> None:
    alerts = [paging.Alert(1 * H + 1 * M, "api", "latency")]
    s = paging.score(paging.merge_pages(alerts), INCIDENTS)
    assert s["precision"] == 1.0
    assert s["recall_any"] == pytest.approx(1 / 3) and s["recall_root"] == 0.0


def test_window_is_fault_plus_grace() -> None:
    assert paging.credited(1 * H + 9 * M, INCIDENTS) == 0
    assert paging.credited(1 * H + 10 * M, INCIDENTS) is None  # [start, start + 10 min)
    assert paging.credited(1 * H - 1.0, INCIDENTS) is None  # before the injection
    overlapping = [paging.Incident(0.0, "a"), paging.Incident(480.0, "b")]
    assert paging.credited(500.0, overlapping) == 1  # the latest injection is credited


def test_metric_names_are_snake_case_with_units() -> None:
    assert paging.metric_name("PodServerLatencyP90(s)") == "server_latency_p90_seconds"
    assert paging.metric_name("PodClientLatencyP95(s)") == "client_latency_p95_seconds"
    assert paging.metric_name("NodeCpuUsageRate(%)") == "node_cpu_usage_rate_percent"
    assert paging.metric_name("SyscallRead") == "syscall_read"
    assert paging.metric_name("CpuUsage(m)") == "cpu_usage_millicores"


def _write_day(root: Path, stamp_offset: float = 0.0) -> Path:
    """One day in the Nezha layout: two pods, six hours of per-minute rows, one
    injection at 03:00 on ``db`` whose latency jumps 50-fold for ten minutes."""
    day = root / "sys" / "2022-08-22"
    (day / "metric").mkdir(parents=True)
    t0 = datetime(2022, 8, 22, 0, 0, 19, tzinfo=UTC)
    (day / "fault_list.json").write_text(json.dumps({"03": [{
        "inject_time": "2022-08-22 03:00:00", "inject_pod": "db-5f6585d649-fnmft",
        "inject_type": "network_delay"}]}))
    rnd = random.Random(7)
    for pod in ("db-5f6585d649-fnmft", "api-579b9bff58-t2dbm"):
        with (day / "metric" / f"{pod}_metric.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["Time", "TimeStamp", "PodName", "CpuUsageRate(%)",
                        "PodServerLatencyP90(s)"])
            for minute in range(6 * 60):
                t = t0 + timedelta(minutes=minute)
                fault = pod.startswith("db") and 180 <= minute < 190
                w.writerow([t.strftime("%Y-%m-%d %H:%M:%S.000 +0000 UTC"),
                            int(t.timestamp() + stamp_offset), pod,
                            20 + rnd.gauss(0, 0.5),
                            (5.0 if fault else 0.1) + rnd.gauss(0, 0.002)])
    return day


def test_end_to_end_on_a_tiny_day(tmp_path: Path) -> None:
    day = _write_day(tmp_path, stamp_offset=2e8)  # stamps far off: taken from Time
    series, fixed = paging.load_day(day)
    assert fixed == 2 * 6 * 60
    assert {(s, m) for s, m, _ in series} == {
        ("db", "cpu_usage_percent"), ("db", "server_latency_p90_seconds"),
        ("api", "cpu_usage_percent"), ("api", "server_latency_p90_seconds")}
    out = tmp_path / "paging.json"
    assert paging.main(["--data", str(tmp_path), "--jobs", "1", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    s = doc["systems"]["overall"]
    assert s["services"] == 2 and s["incidents"] == 1
    assert s["recall_root"] == 1.0  # the latency jump pages on db inside its window
    assert s["true_pages"] >= 1
    # What the autopilot pages: the correlation step opens an incident on db in time.
    paged = s["paged"]
    assert paged["recall_root"] == 1.0 and paged["true_pages"] >= 1
    assert paged["incidents"] == 1 and paged["pages"] <= s["pages"]


def test_bad_data_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    day = _write_day(tmp_path)
    path = day / "metric" / "db-5f6585d649-fnmft_metric.csv"
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[1], "soon", 1)
    path.write_text("\n".join(lines) + "\n")
    assert paging.main(["--data", str(tmp_path), "--jobs", "1"]) == 2
    assert "db-5f6585d649-fnmft_metric.csv: line 4: bad TimeStamp 'soon'" in capsys.readouterr().err
