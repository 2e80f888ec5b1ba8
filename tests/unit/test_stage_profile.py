"""bench/stage_profile.py: parsing py-spy's collapsed stacks and putting each in a stage.

The stacks are small made-up ones in py-spy's ``--format raw`` shape
(``function (path:line)`` frames, outermost first, ``;``-separated, then a count),
with the full file names ``--full-filenames`` gives.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import stage_profile as sp  # noqa: E402

REPO = str(sp.ROOT)  # this checkout, wherever it is: its frames are named from it
SITE = f"{REPO}/.venv/lib/python3.11/site-packages"
LIB = "/usr/lib/python3.11"

LOOP = f"_run_once ({LIB}/asyncio/base_events.py:1922);_run ({LIB}/asyncio/events.py:80)"
AGENT = (f"{LOOP};_execute_actor ({SITE}/faust/agents/agent.py:674);"
         f"each_record ({REPO}/agents/boundary.py:50)")
METRICS = f"{AGENT};process ({REPO}/agents/metrics.py:150)"
INGEST = f"{AGENT};_rekey ({REPO}/agents/ingest.py:277);forward ({REPO}/agents/ingest.py:260)"


def stage(stack: str) -> str:
    """The stage of one ``;``-separated stack."""
    return str(sp.classify_stack([sp.parse_frame(f) for f in stack.split(";")]))


@pytest.mark.parametrize(("stack", "expected"), [
    # the innermost named frame decides …
    (f"{INGEST};loads ({LIB}/json/__init__.py:346);decode ({LIB}/json/decoder.py:337)",
     sp.JSON_),
    (f"{INGEST};decode_metrics ({REPO}/autopilot/formats/metrics_json.py:70);"
     f"validate_json ({SITE}/pydantic/type_adapter.py:446)", sp.PYDANTIC),
    (f"{INGEST};decode_metrics ({REPO}/autopilot/formats/metrics_json.py:70)", sp.INGEST),
    (f"{METRICS};split_future ({REPO}/autopilot/series.py:40)", sp.METRICS_AGENT),
    # … and unnamed frames (prometheus_client) count for their nearest named caller
    (f"{METRICS};inc ({SITE}/prometheus_client/metrics.py:313)", sp.METRICS_AGENT),
    (f"{LOOP};_fetch_requests_routine ({SITE}/aiokafka/consumer/fetcher.py:700)", sp.KAFKA),
    (f"{AGENT};__anext__ ({SITE}/faust/streams.py:1100)", sp.FAUST),
    (f"{AGENT}", sp.FAUST),
    (f"select ({LIB}/selectors.py:468)", sp.LOOP),
    ("<module> (<string>:1)", sp.OTHER),
    ("thread-name", sp.OTHER),
    # anywhere in the stack: the detector (numpy below it counts as detector) …
    (f"{METRICS};detect_series ({REPO}/autopilot/detection/detector.py:90);"
     f"mean ({SITE}/numpy/core/fromnumeric.py:3504)", sp.DETECTOR),
    (f"{METRICS};from_dict ({REPO}/autopilot/detection/state.py:200);"
     f"loads ({LIB}/json/__init__.py:346)", sp.DETECTOR),
    # … tables, also when the changelog send runs through Faust and aiokafka …
    (f"{METRICS};__setitem__ ({SITE}/faust/tables/table.py:80);"
     f"send_changelog ({SITE}/faust/tables/base.py:300);send ({SITE}/faust/topics.py:200);"
     f"send ({SITE}/aiokafka/producer/producer.py:450)", sp.TABLES),
    (f"{METRICS};get ({SITE}/faust/stores/rocksdb.py:400)", sp.TABLES),
    # … the anomaly's send and its encoding, not the metrics agent's other sends …
    (f"{METRICS};send ({SITE}/faust/topics.py:200);"
     f"send ({SITE}/aiokafka/producer/producer.py:450)", sp.PRODUCE),
    (f"{METRICS};model_dump_json ({SITE}/pydantic/main.py:470)", sp.PRODUCE),
    (f"{METRICS};model_dump ({SITE}/pydantic/main.py:420)", sp.PYDANTIC),
    # … and logging (a debug record of aiokafka, its repr, the redaction filter)
    (f"{LOOP};_handle_frame ({SITE}/aiokafka/conn.py:567);debug ({LIB}/logging/__init__.py:"
     f"1477);filter ({REPO}/agents/security.py:36);_spans ({REPO}/autopilot/redact.py:284)",
     sp.LOGGING),
    (f"{LOOP};debug ({LIB}/logging/__init__.py:1477);getMessage ({LIB}/logging/__init__.py:"
     f"377);repr ({SITE}/aiokafka/protocol/types.py:170)", sp.LOGGING),
])
def test_classify_stack(stack: str, expected: str) -> None:
    assert stage(stack) == expected


def test_agent_of() -> None:
    frames = [sp.parse_frame(f) for f in f"{INGEST};loads ({LIB}/json/__init__.py:346)"
              .split(";")]
    assert sp.agent_of(frames) == "ingest"
    assert sp.agent_of([sp.parse_frame(f) for f in METRICS.split(";")]) == "metrics"
    assert sp.agent_of([sp.parse_frame(f) for f in LOOP.split(";")]) == "outside the agents"


def test_parse_frame() -> None:
    f = sp.parse_frame(f"Store._set ({SITE}/faust/stores/rocksdb.py:312)")
    assert (f.function, f.path, f.line) == ("Store._set", f"{SITE}/faust/stores/rocksdb.py", 312)
    assert sp.parse_frame("loads (json/__init__.py:346)").where == "/json/__init__.py"
    assert sp.parse_frame("MainThread") == sp.Frame("MainThread", "", 0)


def test_summarize_counts_stages_agents_and_self_time() -> None:
    text = "\n".join([
        f"{INGEST};loads ({LIB}/json/__init__.py:346) 30",
        f"{INGEST};loads ({LIB}/json/__init__.py:350) 10",  # same function, other line
        f"{METRICS};detect ({REPO}/autopilot/detection/detector.py:90) 50",
        "",
        f"select ({LIB}/selectors.py:468) 10",
        " 7",  # a sample py-spy could not read: counted apart, not in the shares
    ])
    out = sp.summarize(sp.parse_collapsed(text), top=2)
    assert out["profile_samples"] == 100
    assert out["unreadable_samples"] == 7
    assert out["stages"][sp.JSON_] == 40
    assert out["stages"][sp.DETECTOR] == 50
    assert out["stages"][sp.LOOP] == 10
    assert out["stages"][sp.KAFKA] == 0  # every stage is present
    assert sum(out["stages"].values()) == 100
    assert out["agents"] == {"ingest": 40, "metrics": 50, "outside the agents": 10}
    assert out["top_self"] == [("detect (autopilot/detection/detector.py)", 50),
                               ("loads (json/__init__.py)", 40)]


@pytest.mark.parametrize("bad", ["just-a-frame", "f (a.py:1) x", "f (a.py:1) -3", "f (a.py:1)"])
def test_parse_collapsed_names_the_bad_line(bad: str) -> None:
    with pytest.raises(ValueError, match="line 2:"):
        sp.parse_collapsed(f"f (a.py:1) 5\n{bad}\n")


def test_short_path() -> None:
    assert sp.short_path(f"{SITE}/faust/agents/agent.py") == "faust/agents/agent.py"
    assert sp.short_path(f"{LIB}/asyncio/events.py") == "asyncio/events.py"
    assert sp.short_path(str(sp.ROOT / "agents" / "metrics.py")) == "agents/metrics.py"
    assert sp.short_path("<string>") == "<string>"
