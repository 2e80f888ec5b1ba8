"""``GET /service-graph``: the service graph and the open incident groups, answered by
the worker that owns the ONE partition of the incident-group tables (Faust table
routing on ``service_graph`` with its one key), whichever worker receives the request.
"""

from __future__ import annotations

from typing import Any

from autopilot.agents.groups import GRAPH_KEY, group_graph, open_groups
from autopilot.app import app
from autopilot.tables import service_graph

from .state import _ensure_route_metadata

__all__ = ["get_service_graph"]


async def _answer(web: Any, request: Any) -> Any:
    view = group_graph().to_view()
    view["groups"] = [g.model_dump(mode="json") for g in open_groups()]
    return web.json(view)


_routed: Any = app.table_route(table=service_graph, exact_key=GRAPH_KEY.decode())(_answer)


async def get_service_graph(web: Any, request: Any) -> Any:
    """The graph (``services``, ``edges`` with their sources, counts and last-seen epoch
    s: the ``AUTOPILOT_SERVICE_GRAPH`` file plus the learned edges) and ``groups`` (the
    open incident groups with members and suspects), from the owning worker."""
    await _ensure_route_metadata(service_graph)
    try:
        return await _routed(web, request)
    except KeyError:  # no worker owns the partition yet (a rebalance)
        return web.json({"error": "table routing not known yet; retry"}, status=503)
