"""Request bodies and their Content-Encoding, through a real aiohttp server set up as
the worker's (``web_application_options``: the guard, the limit, aiohttp's inflation
off) and a real client; no Faust."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import brotli
import pytest
from aiohttp import web

from autopilot.formats.content_encoding import BodyEncodingError, decode_content
from autopilot.settings import Settings
from autopilot.web.middleware import read_body, web_application_options

try:
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:
    from backports import zstd

LIMIT = 64 * 1024
KEY = "sk-test-bodies-0123456789"


async def _echo(request: web.Request) -> web.Response:
    body = await read_body(request, LIMIT)
    return web.json_response({"bytes": len(body), "head": body[:16].decode("latin-1")})


async def _raw(request: web.Request) -> web.Response:
    return web.json_response({"bytes": len(await request.read())})


@asynccontextmanager
async def _server() -> AsyncIterator[int]:
    s = Settings(api_keys=KEY, max_body_bytes=LIMIT)
    app = web.Application(**web_application_options(s))
    app.router.add_post("/ingest/metrics", _echo)
    app.router.add_post("/raw", _raw)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


async def _post(body: bytes, encoding: str, path: str = "/ingest/metrics") -> tuple[int, str]:
    async with _server() as port, aiohttp.ClientSession() as session:
        async with session.post(
            f"http://127.0.0.1:{port}{path}",
            data=body,
            headers={"Content-Encoding": encoding, "Content-Type": "application/json",
                     "Authorization": f"Bearer {KEY}"},
            timeout=aiohttp.ClientTimeout(total=20),
        ) as resp:
            return resp.status, await resp.text()


def run(coro: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(coro())


BODY = b'{"service": "api", "metric": "latency_ms", "value": 12.5}' * 20

COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,
    "zstd": zstd.compress,
    "br": brotli.compress,
}


@pytest.mark.parametrize("encoding", sorted(COMPRESSORS))
def test_each_encoding_is_inflated_for_the_view(encoding: str) -> None:
    status, text = asyncio.run(_post(COMPRESSORS[encoding](BODY), encoding.upper()))
    assert status == 200, text
    assert f'"bytes": {len(BODY)}' in text


def test_a_raw_deflate_stream_is_taken_too() -> None:
    raw = zlib.compressobj(wbits=-15)
    body = raw.compress(BODY) + raw.flush()
    assert decode_content(body, "deflate", LIMIT) == BODY


@pytest.mark.parametrize("encoding", sorted(COMPRESSORS))
def test_a_body_that_is_not_its_encoding_is_a_400_that_names_it(encoding: str) -> None:
    status, text = asyncio.run(_post(b"\x02\x04\\B not compressed", encoding))
    assert status == 400, text
    assert encoding.removeprefix("x-") in text


@pytest.mark.parametrize("encoding", sorted(COMPRESSORS))
def test_a_body_cut_short_is_a_400(encoding: str) -> None:
    whole = COMPRESSORS[encoding](BODY)
    with pytest.raises(BodyEncodingError) as cut:
        decode_content(whole[: len(whole) // 2], encoding, LIMIT)
    assert cut.value.status == 400
    assert "cut short" in cut.value.reason or "not" in cut.value.reason


@pytest.mark.parametrize("encoding", sorted(COMPRESSORS))
def test_a_zip_bomb_is_a_413_without_inflating_it_all(encoding: str) -> None:
    bomb = COMPRESSORS[encoding](b"\0" * (50 * LIMIT))
    assert len(bomb) < LIMIT
    status, text = asyncio.run(_post(bomb, encoding))
    assert status == 413, text
    assert "AUTOPILOT_MAX_BODY_BYTES" in text


def test_another_encoding_is_a_415_that_lists_the_taken_ones() -> None:
    for encoding in ("snappy", "gzip, br", "compress"):
        status, text = asyncio.run(_post(b"{}", encoding))
        assert status == 415, (encoding, text)
        assert "gzip, deflate, zstd, br" in text


def test_bodies_reach_views_as_sent() -> None:
    # Signatures (Slack, GitHub) are over the bytes sent; remote write reads snappy.
    sent = gzip.compress(BODY)
    status, text = asyncio.run(_post(sent, "gzip", path="/raw"))
    assert status == 200, text
    assert f'"bytes": {len(sent)}' in text


async def _headers_then_body(port: int, body: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /ingest/metrics HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {KEY}\r\nContent-Encoding: deflate\r\n".encode()
        + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    )
    await writer.drain()
    await asyncio.sleep(0.3)  # the view has started and waits for the body
    writer.write(body)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(4096), 20)
    finally:
        writer.close()


def test_a_bad_deflate_body_after_the_headers_gets_its_answer() -> None:
    # With aiohttp's own inflation the view waited for ever for the end of this body
    # (the client timed out): the request came in two parts, headers first.
    async def go() -> bytes:
        async with _server() as port:
            return await _headers_then_body(port, b"\x02\x04\\B")

    answer = asyncio.run(go())
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert b"deflate" in answer
