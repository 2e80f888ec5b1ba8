"""The HTTP surface's one route table: what it registers is what the OpenAPI document
describes, and the response models describe the bodies the views build."""

from __future__ import annotations

from typing import Any

import pytest
from faust.web import View

from autopilot.detection import Baseline
from autopilot.formats import Decoded
from autopilot.notify import Notice
from autopilot.web import schemas
from autopilot.web.ingest import rejected_body
from autopilot.web.middleware import PUBLIC_PATHS
from autopilot.web.openapi import openapi_spec
from autopilot.web.route import Reply, Route
from autopilot.web.routes import ROUTES, register
from autopilot.web.state import notification_summary

EVERY_PATH = {
    "/health", "/ready", "/openapi.json", "/metrics", "/api/v1/write", "/ingest/prometheus",
    "/ingest/metrics", "/ingest/logs", "/ingest/deployment", "/baselines/{service}",
    "/deployments/{service}", "/incidents/{service}", "/incidents/{service}/chart.png",
    "/api/v2/silences", "/api/v2/silence/{silence_id}", "/feedback/{service}",
    "/slack/interactions", "/api/v1/alerts/alertmanager", "/api/v2/alerts",
    "/v1/metrics", "/v1/logs", "/service-graph",
}
#: Public paths that authenticate otherwise and so answer 401 themselves (Slack's
#: request signature).
SIGNED_PATHS = {"/slack/interactions"}


def test_openapi_document_lists_every_endpoint_and_public_paths() -> None:
    spec = openapi_spec(ROUTES)
    assert spec["openapi"].startswith("3.")
    assert EVERY_PATH == set(spec["paths"])
    assert spec["paths"]["/health"]["get"]["security"] == []
    assert "MetricPoint" in spec["components"]["schemas"]


def test_the_public_routes_are_the_guards_public_paths_and_only_they_skip_security() -> None:
    spec = openapi_spec(ROUTES)

    no_key = {path for path, ops in spec["paths"].items()
              for op in ops.values() if op.get("security") == []}

    assert no_key == PUBLIC_PATHS == {r.path for r in ROUTES if r.public}
    for path, ops in spec["paths"].items():
        for op in ops.values():
            assert ("401" in op["responses"]) == (
                path not in PUBLIC_PATHS or path in SIGNED_PATHS), path


def test_every_route_is_registered_on_the_app_once_with_its_path() -> None:
    from autopilot.app import app

    operations = [(r.method, r.path) for r in ROUTES]
    assert len(operations) == len(set(operations))
    # one view class may answer several methods of a path (GET and POST of silences)
    handlers: dict[str, set[Any]] = {}
    for r in ROUTES:
        handlers.setdefault(r.path, set()).add(r.handler)
    assert all(len(h) == 1 for h in handlers.values()), handlers
    assert set(handlers) <= set(app.web.views)


def test_every_response_schema_reference_resolves() -> None:
    spec = openapi_spec(ROUTES)
    schemas_ = spec["components"]["schemas"]

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if "$ref" in node else []
            return found + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    for ref in refs(spec):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in schemas_, ref


class _GetOnly(View):
    async def get(self, request: Any) -> Any:
        return None


async def _handler(web: Any, request: Any) -> Any:
    return None


class _Recorder:
    def __init__(self) -> None:
        self.pages: list[str] = []

    def page(self, path: str) -> Any:
        return lambda handler: self.pages.append(path)


def _public_routes() -> list[Route]:
    return [Route("GET", path, _handler, "probe", {200: Reply("ok")}, public=True)
            for path in sorted(PUBLIC_PATHS)]


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (Route("POST", "/x", _GetOnly, "x", {204: Reply("ok")}), "has no post()"),
        (Route("POST", "/y", _handler, "y", {204: Reply("ok")}), "answers GET only"),
        (Route("GET", "/z", _handler, "z", {200: Reply("ok")}, public=True), "public routes"),
    ],
)
def test_register_refuses_a_route_its_handler_cannot_answer(route: Route, message: str) -> None:
    recorder = _Recorder()

    with pytest.raises(ValueError, match=message):
        register(recorder, [*_public_routes(), route])


def test_register_puts_every_route_on_the_app() -> None:
    recorder = _Recorder()
    routes = [*_public_routes(), Route("GET", "/a", _GetOnly, "a", {200: Reply("ok")})]

    register(recorder, routes)

    assert recorder.pages == [r.path for r in routes]


def test_the_models_describe_the_bodies_the_views_build() -> None:
    decoded = Decoded()
    decoded.error(3, "labels", "no service label", "no_service")

    schemas.Accepted.model_validate({"accepted": 2, **rejected_body(decoded), "skipped": {}})
    schemas.ValidationErrors.model_validate(
        {"error": "no valid item", "accepted": 0, **rejected_body(decoded),
         "errors": decoded.errors})
    schemas.BaselineSummary.model_validate(Baseline().summary())
    notice = Notice(incident={"status": "firing", "state": "firing", "revision": 2},
                    channel_id="C1", root_ts="1.2", first_seen=10.0, posted_at=11.0)
    summary = schemas.NotificationSummary.model_validate(notification_summary(notice))
    assert summary.slack is not None and summary.slack.ts == "1.2"
