"""The OpenAPI 3.1 document of a route table (served at ``GET /openapi.json``).

Pure (no Faust, no aiohttp): :func:`openapi_spec` reads the :class:`~.route.Route`
entries (in practice :data:`autopilot.web.routes.ROUTES`) and takes every schema from
a pydantic model's ``model_json_schema()``: the records validated on ingest
(:mod:`autopilot.models`) and the response bodies (:mod:`autopilot.web.schemas`), so
the document lists each endpoint once, where it is registered, and cannot drift from
what is validated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from autopilot.models import DeploymentEvent, LogEntry, MetricPoint

from .route import Body, BodySchema, OneOrList, Reply, Route
from .schemas import Error

__all__ = ["openapi_spec"]

_REF = "#/components/schemas/{model}"
#: Answers of the guard on every non-public route.
GUARD_REPLIES: dict[int, Reply] = {
    401: Reply("missing or invalid API key (when AUTOPILOT_API_KEYS is set)", Error),
    413: Reply("body larger than AUTOPILOT_MAX_BODY_BYTES", Error),
    429: Reply("rate limit exceeded", Error, headers={"Retry-After": "seconds to wait"}),
}


class _Components:
    """The ``components/schemas`` being collected (one entry per model)."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def ref(self, model: type[BaseModel]) -> dict[str, Any]:
        name = model.__name__
        if name not in self.schemas:
            schema = model.model_json_schema(ref_template=_REF)
            for def_name, definition in schema.pop("$defs", {}).items():
                self.schemas.setdefault(def_name, definition)
            self.schemas[name] = schema
        return {"$ref": _REF.format(model=name)}

    def body_schema(self, schema: BodySchema) -> Any:
        if isinstance(schema, OneOrList):
            item = self.ref(schema.model)
            return {"oneOf": [item, {"type": "array", "items": item, "minItems": 1}]}
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            return self.ref(schema)
        return dict(schema)


def _reply(reply: Reply, components: _Components) -> dict[str, Any]:
    out: dict[str, Any] = {"description": reply.description}
    if reply.model is not None:
        out["content"] = {reply.media_type: {"schema": components.ref(reply.model)}}
    elif reply.schema is not None:
        out["content"] = {reply.media_type: {"schema": dict(reply.schema)}}
    if reply.headers:
        out["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in reply.headers.items()
        }
    return out


def _body(body: Body, components: _Components) -> dict[str, Any]:
    out: dict[str, Any] = {
        "required": True,
        "content": {
            media: {"schema": components.body_schema(schema)}
            for media, schema in body.content.items()
        },
    }
    if body.description:
        out["description"] = body.description
    return out


def _operation(route: Route, components: _Components) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": route.summary}
    if route.tags:
        op["tags"] = list(route.tags)
    if route.public:
        op["security"] = []
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True,
         "schema": {"type": "string", "minLength": 1}}
        for name in route.path_params
    ]
    for p in route.params:
        param: dict[str, Any] = {"name": p.name, "in": p.location, "required": p.required,
                                 "schema": dict(p.schema)}
        if p.description:
            param["description"] = p.description
        params.append(param)
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = _body(route.body, components)
    replies: Mapping[int, Reply] = (
        route.responses if route.public else {**route.responses, **GUARD_REPLIES}
    )
    op["responses"] = {str(status): _reply(r, components) for status, r in replies.items()}
    return op


def _record_schemas(components: _Components) -> None:
    """The ingested records, as validated (:mod:`autopilot.models`)."""
    for model in (MetricPoint, LogEntry, DeploymentEvent):
        components.ref(model)
    # Stored as dict[str, str]; the service label is required on ingest.
    components.schemas["MetricPoint"]["properties"]["labels"] = {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "properties": {"service": {"type": "string", "minLength": 1}},
        "required": ["service"],
    }


def openapi_spec(routes: Iterable[Route], server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI document of ``routes`` (a JSON-ready dict), in their order."""
    components = _Components()
    _record_schemas(components)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, components)
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "AI DevOps Autopilot worker",
            "version": "0.1.0",
            "description": "Ingestion and state views of one worker. Every path except "
            "/health and /openapi.json needs an API key when AUTOPILOT_API_KEYS is set.",
        },
        "components": {
            "schemas": components.schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": paths,
    }
    if server_url:
        spec["servers"] = [{"url": server_url}]
    return spec
