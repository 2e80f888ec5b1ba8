"""The shape of a route table entry: one HTTP operation, what registers it and what
documents it (pure: no Faust, no aiohttp).

A :class:`Route` carries the handler (a Faust ``View`` class or an ``async def
handler(web, request, **path_params)`` function, registered with ``app.page``) and
everything the OpenAPI document says about it: summary, parameters, request body,
response bodies (pydantic models, :mod:`autopilot.web.schemas`). Path parameters
(``{service}``) are documented from the path itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

__all__ = ["Body", "OneOrList", "Param", "Reply", "Route"]


@dataclass(frozen=True, slots=True)
class OneOrList:
    """A request body that is one ``model`` or a non-empty JSON list of them."""

    model: type[BaseModel]


#: A body schema: a model, one-or-a-list of a model, or a literal JSON schema.
BodySchema = type[BaseModel] | OneOrList | Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Body:
    """The request body: media type → schema (required)."""

    content: Mapping[str, BodySchema]
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Param:
    """A query or header parameter (path parameters come from the path)."""

    name: str
    location: str  # "query" | "header"
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """One response: a JSON body of ``model``, or another ``media_type`` with a literal
    ``schema`` (text, PNG), or no body; ``headers``: name → description."""

    description: str
    model: type[BaseModel] | None = None
    media_type: str = "application/json"
    schema: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Route:
    """One operation of the HTTP surface.

    Attributes:
        method: the documented method (``GET``, ``POST``); a ``View`` class handler
            must define it, a function handler answers ``GET``.
        path: the aiohttp path, ``{name}`` for path parameters.
        handler: the Faust view class or handler function.
        summary: one line for the OpenAPI document.
        responses: status → :class:`Reply`. Non-public routes also document 401, 413
            and 429 (the guard, :mod:`autopilot.web.middleware`).
        body: the request body, if any.
        params: query and header parameters.
        tags: OpenAPI tags.
        public: served without an API key (must match the guard's ``PUBLIC_PATHS``).
        routed_by: a service-keyed table: the request is answered by the worker that
            owns ``{service}`` in it (Faust table routing); ``None``: answered locally.
    """

    method: str
    path: str
    handler: Any
    summary: str
    responses: Mapping[int, Reply]
    body: Body | None = None
    params: tuple[Param, ...] = ()
    tags: tuple[str, ...] = ()
    public: bool = False
    routed_by: Any = None

    @property
    def path_params(self) -> list[str]:
        """Names of the ``{name}`` segments of :attr:`path`, in order."""
        return re.findall(r"{(\w+)}", self.path)
