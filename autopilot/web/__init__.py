"""The worker's HTTP surface (Faust web on ``AUTOPILOT_WEB_PORT``), in one package.

=====================  ===================================================================
:mod:`.routes`         the one route table (:data:`~.routes.ROUTES`): it registers every
                       view on the Faust app and is what ``GET /openapi.json`` describes
:mod:`.route`          :class:`~.route.Route`, :class:`~.route.Reply` … (pure)
:mod:`.schemas`        pydantic models of the response bodies (pure)
:mod:`.openapi`        the OpenAPI 3.1 document built from a route table (pure)
:mod:`.middleware`     the aiohttp guard: body size, API keys, rate limit
:mod:`.probes`         ``/health``, ``/ready``, ``/metrics``
:mod:`.ingest`         ingestion views (JSON, remote write, exposition format) and the
                       producing side: batching, broker gate, 503s
:mod:`.state`          table views routed to the worker owning the service
:mod:`.charts`         ``GET /incidents/{service}/chart.png``
=====================  ===================================================================

Imports go one way: this package uses the app, the agents (tables, guard state) and the
pure core; nothing outside it imports it except the app's wiring (the middleware and
``autodiscover``). This ``__init__`` imports nothing, so the pure modules
(:mod:`.route`, :mod:`.schemas`, :mod:`.openapi`) load without Faust or aiohttp.
"""
