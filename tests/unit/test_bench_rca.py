"""bench/rca.py: the scorer on a tiny constructed data set in the Nezha layout.

Three services ``frontend → checkout → db`` (``metric/dependency.csv``), six hours of
per-minute metrics with a little noise. At 02:00 the db's CPU jumps and both callers'
latency follows a minute later (the cascade); two cases are labelled at that moment,
one with the culprit (db) and one with a caller (frontend), so the second must count
at the position the ranking gives frontend, not at 1. At 03:20 a case is labelled
with nothing anomalous in the data: a miss.
"""

from __future__ import annotations

import csv
import gzip
import json
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import rca as bench  # noqa: E402

T0 = datetime(2022, 8, 22, 0, 0, tzinfo=UTC)
COLUMNS = ["Time", "TimeStamp", "PodName", *bench.METRICS]
PODS = {"frontend": "frontend-579b9bff58-t2dbm", "checkout": "checkout-578fcf4766-9csqn",
        "db": "db-5f6585d649-fnmft"}
FAULT_MIN = 120
QUIET_MIN = 200


def _row(pod: str, minute: int, rnd: random.Random) -> list[str]:
    service = bench.service_of(pod)
    t = T0 + timedelta(minutes=minute, seconds=19)
    cpu = 20 + rnd.gauss(0, 0.5)
    latency = 0.05 + rnd.gauss(0, 0.001)
    if FAULT_MIN <= minute < FAULT_MIN + 6:
        if service == "db":
            cpu, latency = 95.0, 0.4
        elif minute > FAULT_MIN:
            latency = 1.5
    values = {"CpuUsageRate(%)": cpu, "MemoryUsage(Mi)": 300 + rnd.gauss(0, 1),
              "NetworkReceiveBytes": 5000 + rnd.gauss(0, 50),
              "NetworkTransmitBytes": 9000 + rnd.gauss(0, 90),
              "PodClientLatencyP90(s)": latency, "PodServerLatencyP90(s)": latency,
              "PodServerLatencyP99(s)": latency * 1.5,
              "PodWorkload(Ops)": 10 + rnd.gauss(0, 0.2), "PodSuccessRate(%)": 100.0}
    return [t.strftime("%Y-%m-%d %H:%M:%S"), str(int(t.timestamp())), pod,
            *(repr(values[c]) for c in bench.METRICS)]


def _case(minute: int, pod: str, kind: str) -> dict[str, str]:
    t = T0 + timedelta(minutes=minute, seconds=30)
    return {"inject_time": t.strftime("%Y-%m-%d %H:%M:%S"),
            "inject_timestamp": str(int(t.timestamp())), "inject_pod": pod, "inject_type": kind}


def write_dataset(root: Path) -> Path:
    day = root / "shop" / "2022-08-22"
    (day / "metric").mkdir(parents=True)
    rnd = random.Random(7)
    for pod in PODS.values():
        with (day / "metric" / f"{pod}_metric.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(COLUMNS)
            for minute in range(6 * 60):
                w.writerow(_row(pod, minute, rnd))
    (day / "metric" / "dependency.csv").write_text(
        "Source,Target,Weight\nfrontend,checkout,1\ncheckout,db,1\n")
    (day / "fault_list.json").write_text(json.dumps({
        "02": [_case(FAULT_MIN - 1, PODS["db"], "cpu_contention"),
               _case(FAULT_MIN - 1, PODS["frontend"], "network_delay")],
        "03": [_case(QUIET_MIN, PODS["checkout"], "return")],
    }))
    return root


def test_scorer_counts_a_hit_a_miss_and_position_k(tmp_path: Path) -> None:
    summary, scored = bench.run(write_dataset(tmp_path))
    by_label = {(s.case.service, s.case.fault): s for s in scored["shop"]}
    hit = by_label[("db", "cpu_contention")]
    assert hit.detected and hit.rank == 1, hit
    assert hit.suspects[0] == "db"
    # The same group, labelled with a caller: counted where the ranking puts it.
    caller = by_label[("frontend", "network_delay")]
    assert caller.detected and caller.suspects == hit.suspects
    assert caller.rank == hit.suspects.index("frontend") + 1
    assert caller.rank > 1
    miss = by_label[("checkout", "return")]
    assert not miss.detected and miss.rank is None
    k = caller.rank
    s = summary["shop"]
    assert (s["cases"], s["detected"]) == (3, 2)
    assert s["ac1"] == pytest.approx(100 / 3, abs=0.01)
    assert s["ac5"] == pytest.approx(200 / 3, abs=0.01)
    assert s["ac3"] == pytest.approx((200 if k <= 3 else 100) / 3, abs=0.01)
    expected_avg = sum(1 + (k <= j) for j in range(1, 6)) / 5 * 100 / 3
    assert s["avg5"] == pytest.approx(expected_avg, abs=0.01)


def test_json_and_table(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data")
    out = tmp_path / "out.json"
    assert bench.main(["--data", str(data), "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    assert set(got) == {"shop"}
    assert set(got["shop"]) == {"cases", "detected", "ac1", "ac3", "ac5", "avg5"}


def test_bad_fault_list_names_the_file(tmp_path: Path) -> None:
    day = write_dataset(tmp_path) / "shop" / "2022-08-22"
    (day / "fault_list.json").write_text(json.dumps({"02": [{"inject_type": "x"}]}))
    with pytest.raises(bench.RcaBenchError, match=r"fault_list\.json: hour '02', case 0"):
        bench.run(tmp_path)


def test_service_of_drops_two_hash_parts() -> None:
    assert bench.service_of("ts-travel2-service-5c66d57d58-6mp2b") == "ts-travel2-service"
    assert bench.service_of("cartservice-579f59597d-wc2lz") == "cartservice"


def test_log_reader_original_and_derived_layouts(tmp_path: Path) -> None:
    src = tmp_path / "orig.csv.gz"
    inner = json.dumps({"log": "16:44:10.485 ERROR c.s.X#37 TraceID: ab SpanID: cd "
                               "[findContacts][No contacts]\n", "stream": "stdout"})
    with gzip.open(src, "wt", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Timestamp", "TimeUnixNano", "Node", "PodName", "Container", "TraceID",
                    "SpanID", "Log"])
        w.writerow(["2023-01-29T08:44:10.485646442Z", "1", "n", "ts-a-service-1-2", "server",
                    "ab", "cd", inner])
    (line,) = bench.read_log_file(src)
    assert (line.service, line.level, line.trace_id, line.span_id) == (
        "ts-a-service", "ERROR", "ab", "cd")
    assert line.message == "c.s.X#37 [findContacts][No contacts]"
    assert line.at == pytest.approx(datetime(2023, 1, 29, 8, 44, 10, 485646,
                                             tzinfo=UTC).timestamp())
    bad = tmp_path / "bad.csv.gz"
    with gzip.open(bad, "wt") as fh:
        fh.write("Timestamp,PodName,Level,TraceID,SpanID,Message\nnot-a-time,p-1-2,INFO,,,x\n")
    with pytest.raises(bench.RcaBenchError, match="line 2: bad Timestamp"):
        bench.read_log_file(bad)


def test_anomalies_reach_the_grouping_as_anomaly_evidence(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the replay feeds every Anomaly record to incident_groups.step_signal (as the live
    # anomaly forwarder does): the db's CPU anomaly is kept as its anomaly evidence
    day = write_dataset(tmp_path) / "shop" / "2022-08-22"
    seen: list[str] = []
    real = bench.incident_groups.step_signal

    def spy(state: Any, update: Any, graph: Any, config: Any, now: float) -> Any:
        seen.append(update.service)
        return real(state, update, graph, config, now)

    monkeypatch.setattr(bench.incident_groups, "step_signal", spy)
    scored = bench.replay_day(day, bench.load_settings({}))
    assert "db" in seen and "frontend" in seen
    assert any(s.rank == 1 for s in scored)


def test_a_timestamp_far_from_the_time_text_is_read_from_the_time_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "metric").mkdir()
    t = T0 + timedelta(hours=3, seconds=19)
    with (tmp_path / "metric" / "ad-5f6585d649-fnmft_metric.csv").open(
            "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Time", "TimeStamp", "PodName", "CpuUsageRate(%)"])
        text = t.strftime("%Y-%m-%d %H:%M:%S") + ".607158889 +0000 UTC m=+0.11"
        w.writerow([text, str(int(t.timestamp()) + 200_000_000), "ad-5f6585d649-fnmft", "5"])
        w.writerow([text, str(int(t.timestamp()) + 1), "ad-5f6585d649-fnmft", "6"])
    samples = bench.load_metrics(tmp_path)
    # the typo (2·10⁸ s ahead) is read from the text; a TimeStamp 1 s off is kept
    assert [(s[0], s[3]) for s in samples] == [(t.timestamp(), 5.0), (t.timestamp() + 1, 6.0)]
    assert "1 TimeStamp(s)" in capsys.readouterr().err
