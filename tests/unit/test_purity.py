"""The pure core imports neither Faust nor any network library (docs/development.md,
"Where things are")."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

PURE_MODULES = [
    "autopilot.models",
    "autopilot.settings",
    "autopilot.detection",
    "autopilot.detection.config",
    "autopilot.detection.state",
    "autopilot.detection.scoring",
    "autopilot.detection.seed",
    "autopilot.detection.baseline",
    "autopilot.detection.likelihood",
    "autopilot.detection.novelty",
    "autopilot.detection.routine",
    "autopilot.detection.episodes",
    "autopilot.detection.seasonal",
    "autopilot.detection.adaptive",
    "autopilot.detection.detector",
    "autopilot.errorrate",
    "autopilot.deployments",
    "autopilot.correlation",
    "autopilot.alertmanager",
    "autopilot.analysis",
    "autopilot.grounding",
    "autopilot.blockkit",
    "autopilot.notify",
    "autopilot.silences",
    "autopilot.feedback",
    "autopilot.redact",
    "autopilot.audit",
    "autopilot.breaker",
    "autopilot.health",
    "autopilot.charts",
    "autopilot.errors",
    "autopilot.replay",
    "autopilot.formats",
    "autopilot.formats.levels",
    "autopilot.formats.logs",
    "autopilot.formats.metrics_json",
    "autopilot.formats.exposition",
    "autopilot.formats.remote_write",
    "autopilot.formats.deployments",
    "autopilot.formats.otlp",
    "autopilot.security",
    "autopilot.topics",
    "autopilot.interactions",
    "autopilot.actions",
    "autopilot.web.route",
    "autopilot.web.schemas",
    "autopilot.web.openapi",
    "autopilot.servicegraph",
    "autopilot.rca",
    "autopilot.incident_groups",
    "autopilot.seasonal",
]
FORBIDDEN = {"faust", "httpx", "slack_sdk", "redis", "aiohttp", "aiokafka"}


def source_path(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, module
    return Path(spec.origin)


def imported_roots(path: Path) -> set[str]:
    """Top-level names of every import in the file (anywhere, including inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            roots.add(node.args[0].value.split(".")[0])
    return roots


def test_the_import_parser_sees_forbidden_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import faust\nfrom httpx import AsyncClient\n"
        "def f():\n    import redis.asyncio\n    from slack_sdk.webhook import WebhookClient\n"
    )

    assert imported_roots(sample) >= {"faust", "httpx", "redis", "slack_sdk"}


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_module_source_imports_no_stream_or_network_library(module: str) -> None:
    assert not imported_roots(source_path(module)) & FORBIDDEN


def test_importing_the_pure_modules_loads_no_stream_or_network_library() -> None:
    code = (
        f"import {', '.join(PURE_MODULES)}; import sys; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN)!r}))"
    )

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
