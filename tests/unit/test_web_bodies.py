"""The guard middleware answers a body aiohttp cannot read with a 400, whichever view
read it (a real aiohttp server and client; no Faust)."""

from __future__ import annotations

import asyncio
import gzip

import aiohttp
from aiohttp import web

from autopilot.settings import Settings
from autopilot.web.middleware import make_guard


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response({"bytes": len(body)})


async def _post(body: bytes, encoding: str) -> tuple[int, str]:
    app = web.Application(middlewares=[make_guard(Settings())])
    app.router.add_post("/ingest/metrics", _echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"http://127.0.0.1:{port}/ingest/metrics",
                data=body,
                headers={"Content-Encoding": encoding, "Content-Type": "application/json"},
            ) as resp:
                return resp.status, await resp.text()
    finally:
        await runner.cleanup()


def test_a_broken_gzip_body_is_a_400_that_says_so() -> None:
    status, text = asyncio.run(_post(b"\x1f\x8b\x08\x00 not gzip at all", "gzip"))
    assert status == 400, text
    assert "request body could not be read" in text


def test_a_good_gzip_body_is_read() -> None:
    status, text = asyncio.run(_post(gzip.compress(b'{"a": 1}'), "gzip"))
    assert status == 200, text
    assert '"bytes": 8' in text
