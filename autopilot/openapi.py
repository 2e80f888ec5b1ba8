"""OpenAPI 3.1 description of a worker's HTTP endpoints (served at ``GET /openapi.json``).

Hand-written paths; the record schemas come from the pydantic models'
``model_json_schema()``, so they cannot drift from what is validated. Pure: no
Faust, no aiohttp.
"""

from __future__ import annotations

from typing import Any

from autopilot.models import DeploymentEvent, LogEntry, MetricPoint

__all__ = ["openapi_spec"]

_ERROR = {"$ref": "#/components/schemas/Error"}


def _resp(description: str, schema: dict[str, Any] | None = None, **headers: str) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = {"application/json": {"schema": schema}}
    if headers:
        out["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in headers.items()
        }
    return out


def _common(extra: dict[str, Any]) -> dict[str, Any]:
    return {
        **extra,
        "401": _resp("missing or invalid API key (when AUTOPILOT_API_KEYS is set)", _ERROR),
        "413": _resp("body larger than AUTOPILOT_MAX_BODY_BYTES", _ERROR),
        "429": _resp("rate limit exceeded", _ERROR, **{"Retry-After": "seconds to wait"}),
    }


def _ingest(summary: str, schema: dict[str, Any], text: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if text:
        content["text/plain"] = {"schema": {"type": "string"}}
    accepted = {
        "type": "object",
        "properties": {
            "accepted": {"type": "integer"},
            "skipped": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
        "required": ["accepted"],
    }
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": content},
            "responses": _common(
                {
                    "202": _resp("produced and acknowledged by the broker", accepted),
                    "400": _resp("body is not JSON / not the format", _ERROR),
                    "415": _resp("unsupported content type", _ERROR),
                    "422": _resp(
                        "a record is invalid; nothing produced",
                        {"$ref": "#/components/schemas/ValidationErrors"},
                    ),
                }
            ),
        }
    }


def _one_or_list(ref: str) -> dict[str, Any]:
    item = {"$ref": ref}
    return {"oneOf": [item, {"type": "array", "items": item, "minItems": 1}]}


def _service_view(summary: str) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": [
                {
                    "name": "service",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1},
                }
            ],
            "responses": _common({"200": _resp("the service's state", {"type": "object"})}),
        }
    }


def openapi_spec(server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI document (a JSON-ready dict)."""
    schemas: dict[str, Any] = {}
    for model in (MetricPoint, LogEntry, DeploymentEvent):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas["MetricPoint"]["properties"]["labels"] = {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "properties": {"service": {"type": "string", "minLength": 1}},
        "required": ["service"],
    }
    schemas["Error"] = {
        "type": "object",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
    }
    schemas["ValidationErrors"] = {
        "type": "object",
        "properties": {
            "error": {"type": "string"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "item": {"type": ["integer", "null"]},
                        "loc": {"type": "string"},
                        "msg": {"type": "string"},
                    },
                },
            },
        },
    }
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "AI DevOps Autopilot worker",
            "version": "0.1.0",
            "description": "Ingestion and state views of one worker. Every path except "
            "/health and /openapi.json needs an API key when AUTOPILOT_API_KEYS is set.",
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": {
            "/health": {
                "get": {
                    "summary": "liveness (Kubernetes livenessProbe): the worker is alive and "
                    "serving; the body reports readiness, the broker, Slack, Ollama and Redis",
                    "security": [],
                    "responses": {
                        "200": _resp("alive", {"type": "object"}),
                        "503": _resp("the worker is stopping", {"type": "object"}),
                    },
                }
            },
            "/ready": {
                "get": {
                    "summary": "readiness (Kubernetes readinessProbe)",
                    "security": [],
                    "responses": {
                        "200": _resp("ready", {"type": "object"}),
                        "503": _resp(
                            "not ready: broker unreachable, rebalancing, recovering tables, "
                            "or every record dead-lettered (reasons in the body)",
                            {"type": "object"},
                        ),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "this document",
                    "security": [],
                    "responses": {"200": _resp("OpenAPI 3.1", {"type": "object"})},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "the autopilot's own counters (Prometheus text format)",
                    "responses": _common(
                        {
                            "200": {
                                "description": "text exposition format",
                                "content": {"text/plain": {"schema": {"type": "string"}}},
                            }
                        }
                    ),
                }
            },
            "/ingest/metrics": _ingest(
                "MetricPoints (seed JSON, prometheus-kafka-adapter or Telegraf JSON)",
                _one_or_list("#/components/schemas/MetricPoint"),
            ),
            "/ingest/logs": _ingest(
                "log lines: JSON object/list, JSON lines or plain text lines (?service=)",
                _one_or_list("#/components/schemas/LogEntry"),
                text=True,
            ),
            "/ingest/deployment": _ingest(
                "DeploymentEvent, GitHub deployment_status webhook or Argo CD notification",
                _one_or_list("#/components/schemas/DeploymentEvent"),
            ),
            "/ingest/prometheus": {
                "post": {
                    "summary": "Prometheus text exposition format (?service= if unlabelled)",
                    "parameters": [
                        {
                            "name": "service",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string"},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "responses": _common(
                        {
                            "202": _resp("produced", {"type": "object"}),
                            "400": _resp("not the exposition format", _ERROR),
                            "415": _resp("unsupported content type", _ERROR),
                            "422": _resp(
                                "a sample has no service",
                                {"$ref": "#/components/schemas/ValidationErrors"},
                            ),
                        }
                    ),
                }
            },
            "/api/v1/write": {
                "post": {
                    "summary": "Prometheus remote write 1.0 (snappy protobuf WriteRequest)",
                    "parameters": [
                        {
                            "name": "Content-Encoding",
                            "in": "header",
                            "required": True,
                            "schema": {"type": "string", "enum": ["snappy"]},
                        },
                        {
                            "name": "X-Prometheus-Remote-Write-Version",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "enum": ["0.1.0"]},
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/x-protobuf": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    },
                    "responses": _common(
                        {
                            "204": {"description": "produced and acknowledged"},
                            "400": _resp("bad snappy or protobuf", _ERROR),
                            "415": _resp(
                                "not application/x-protobuf with Content-Encoding: snappy", _ERROR
                            ),
                        }
                    ),
                }
            },
            "/baselines/{service}": _service_view("baselines of the service's series"),
            "/deployments/{service}": _service_view("recent deployments of the service"),
            "/incidents/{service}": _service_view(
                "the service's incident (state, signals, timeline) and what was notified"
            ),
            "/incidents/{service}/chart.png": {
                "get": {
                    "summary": "chart of an anomalous series of the service's incident (PNG)",
                    "parameters": [
                        {
                            "name": "service",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "minLength": 1},
                        },
                        {
                            "name": "series",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string"},
                        },
                    ],
                    "responses": _common(
                        {
                            "200": {
                                "description": "the chart",
                                "content": {
                                    "image/png": {"schema": {"type": "string", "format": "binary"}}
                                },
                            },
                            "404": _resp("no incident, no such series or no samples", _ERROR),
                            "503": _resp("routing to the owning worker not known yet", _ERROR),
                        }
                    ),
                }
            },
        },
    }
    if server_url:
        spec["servers"] = [{"url": server_url}]
    return spec
