"""AUTOPILOT_FETCH_MAX_WAIT_MS reaches the worker's aiokafka consumer; a started worker
leaves the root logger at the level asked for (not Faust's spinner's DEBUG).

Faust's aiokafka driver builds the worker consumer with ``fetch_max_wait_ms=1500``;
``autopilot.app`` replaces that with the setting. These tests build the consumer the
way a worker does (``app.consumer`` → its consumer thread → the aiokafka consumer) in
a fresh process with the setting in its environment, and read back what aiokafka
will put in every FetchRequest. Without the wiring they read 1500.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from autopilot.errors import ConfigError
from autopilot.settings import load_settings

PROBE = (
    "import asyncio\n"
    "from autopilot.app import app\n"
    "async def main():\n"
    "    consumer = app.consumer._thread._create_worker_consumer(app.transport)\n"
    "    print(consumer._fetch_max_wait_ms)\n"
    "    await consumer.stop()\n"  # not started: only releases its client
    "asyncio.run(main())\n"
)


def _worker_consumer_fetch_wait(env: dict[str, str]) -> int:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPILOT_")}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


def test_the_setting_reaches_the_worker_consumer() -> None:
    assert _worker_consumer_fetch_wait({"AUTOPILOT_FETCH_MAX_WAIT_MS": "77"}) == 77


def test_the_default_replaces_fausts_1500_ms() -> None:
    default = load_settings({}).fetch_max_wait_ms
    assert default == 100
    assert _worker_consumer_fetch_wait({}) == default


def test_an_app_built_with_its_own_wait_uses_it() -> None:
    from autopilot.app import AutopilotApp, fetch_max_wait_ms

    app = AutopilotApp("autopilot-fetch-wait-test")
    app.fetch_max_wait_ms = 250
    assert fetch_max_wait_ms(app) == 250
    assert type(app.transport).Consumer.__name__ == "_Consumer"


@pytest.mark.parametrize("value", ["0", "9", "30001", "0.5", "soon"])
def test_out_of_range_or_non_integer_waits_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="AUTOPILOT_FETCH_MAX_WAIT_MS"):
        load_settings({"AUTOPILOT_FETCH_MAX_WAIT_MS": value})


WORKER_PROBE = (
    "import io, logging\n"
    "from autopilot.app import app\n"
    "worker = app.Worker(loglevel='warn', stdout=io.StringIO(), redirect_stdouts=False)\n"
    "worker._setup_logging()\n"  # what a worker does first: the spinner sets DEBUG
    "print(logging.getLogger().level)\n"
    "worker._on_startup_end_spinner()\n"  # what it does once started
    "print(logging.getLogger().level)\n"
    "print(logging.getLogger('aiokafka').isEnabledFor(logging.DEBUG))\n"
    "print(len(logging.getLogger().handlers))\n"
)


def test_a_started_worker_at_warn_no_longer_builds_debug_records() -> None:
    # Faust's start-up spinner leaves the root logger at DEBUG; every aiokafka debug
    # line (a repr of each fetch) was then formatted and redacted: most of an idle
    # worker's CPU time with a short fetch wait.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPILOT_")}
    out = subprocess.run([sys.executable, "-c", WORKER_PROBE], env=clean,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    during_start, after_start, aiokafka_debug, handlers = out.stdout.split()[-4:]
    assert int(during_start) == logging.DEBUG  # Faust's spinner, while starting
    assert int(after_start) == logging.WARNING
    assert aiokafka_debug == "False"
    assert int(handlers) == 1  # the spinner's handler is gone, the console one stays
