"""``GET /incidents/{service}/chart.png[?series=<series key>]``: a series of the
service's incident, drawn (the charts themselves: :mod:`autopilot.agents.charts`).

Answered by the worker that owns the service (routed by the ``open_incidents`` table,
as ``GET /incidents/{service}``); another worker forwards the request and passes the
PNG bytes back. 200 ``image/png``; 404 ``{"error": …}`` when the service has no
incident, the series is not one of the service's, or no samples are kept for it; 503
while the routing table is not known yet. Rendering (about 0.1 s of CPU) runs in a
thread, one at a time (matplotlib is not thread-safe).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from autopilot.agents.charts import chart_inputs
from autopilot.app import app
from autopilot.tables import open_incidents

__all__ = ["get_incident_chart"]

logger = logging.getLogger(__name__)

#: Headers not forwarded when another worker's chart is fetched.
_HOP_HEADERS = frozenset({"host", "content-length", "connection", "transfer-encoding",
                          "keep-alive", "upgrade"})
#: Timeout (s) of a forwarded chart request to the owning worker.
FORWARD_TIMEOUT_S = 15.0


def _ident(url: Any) -> tuple[str, int]:
    """(host, port) of a worker URL, as Faust's router compares them."""
    return ((url.host if url.scheme else url.path) or "", int(url.port or 80))


async def _forward(web: Any, request: Any, service: str) -> Any | None:
    """Forward the request to the worker owning ``service`` (by ``open_incidents``);
    ``None`` when this worker owns it.

    Faust's own ``table_route`` forwards an answer as text, which would corrupt a
    PNG; this passes the bytes through.
    """
    topic = open_incidents.changelog_topic.get_topic_name()
    # Faust's aiokafka producer (ProducerT does not declare it).
    producer = app.producer._ensure_producer()  # type: ignore[attr-defined]  # noqa: SLF001
    await producer.partitions_for(topic)  # the router needs the partition count
    try:
        dest = app.router.key_store(open_incidents.name, service)
    except KeyError:
        return web.json({"error": "table routing not known yet; retry"}, status=503)
    if _ident(dest) == _ident(app.conf.canonical_url):
        return None
    url = request.url.with_host(dest.host).with_port(int(dest.port or 80))
    logger.info("chart of %s: forwarding to the owning worker %s", service, dest)
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
    async with app.http_client.get(
        url, headers=headers, timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S)
    ) as response:
        body = await response.read()
        return web.bytes(body, content_type=response.content_type, status=response.status)


async def get_incident_chart(web: Any, request: Any, service: str) -> Any:
    """PNG chart of a series of the service's incident (``?series=`` picks one)."""
    forwarded = await _forward(web, request, service)
    if forwarded is not None:
        return forwarded
    series = request.query.get("series") or None
    inputs = chart_inputs(service, series)
    if isinstance(inputs, str):
        return web.json({"error": inputs}, status=404)
    png = await asyncio.get_running_loop().run_in_executor(None, inputs.render)
    return web.bytes(png, content_type="image/png", headers={
        "Cache-Control": "no-store",
        "Content-Disposition": f'inline; filename="{inputs.filename}"',
    })
