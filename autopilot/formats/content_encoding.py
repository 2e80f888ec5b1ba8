"""HTTP ``Content-Encoding`` of a request body: gzip, deflate, zstd, br (RFC 9110 §8.4).

The worker's HTTP server reads request bodies as sent (aiohttp's own inflation is off:
when a ``deflate`` body broke off after the request's headers had been handled,
aiohttp 3.14 left the handler waiting for the end of a body that never came, and the
client timed out instead of getting a 400). :func:`decode_content` inflates here, with
the libraries aiohttp would use: :mod:`zlib` for gzip and deflate (the zlib format of
RFC 1950, or a raw RFC 1951 stream as some clients send it), ``backports.zstd`` (the
standard library's ``compression.zstd`` from Python 3.14) and ``Brotli``.

Every decoder stops at ``max_bytes`` of output, so a small body that inflates to
gigabytes (a "zip bomb") costs no more memory than the body limit
(``AUTOPILOT_MAX_BODY_BYTES``).

Pure: no Faust, no network.
"""

from __future__ import annotations

import sys
import zlib

import brotli

if sys.version_info >= (3, 14):
    from compression.zstd import ZstdDecompressor, ZstdError
else:  # pragma: no cover - the version CI runs decides
    from backports.zstd import ZstdDecompressor, ZstdError

__all__ = ["ENCODINGS", "BodyEncodingError", "decode_content"]

#: The ``Content-Encoding`` values :func:`decode_content` takes ("" and "identity" are
#: a body as is; "x-gzip" is gzip, RFC 9110 §8.4.1.3).
ENCODINGS = ("", "identity", "gzip", "x-gzip", "deflate", "zstd", "br")


class BodyEncodingError(ValueError):
    """A body that cannot be decoded as its ``Content-Encoding`` says.

    Attributes:
        reason: what is wrong, for the sender.
        status: the HTTP status to answer: 400 (not that encoding, or cut short),
            413 (more than the limit once inflated), 415 (an encoding not taken).
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def _too_large(max_bytes: int) -> BodyEncodingError:
    return BodyEncodingError(
        f"request body is larger than {max_bytes} bytes once inflated "
        "(AUTOPILOT_MAX_BODY_BYTES)", status=413,
    )


def _zlib(body: bytes, wbits: int, name: str, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise BodyEncodingError(f"body is not {name} (Content-Encoding: {name}): {exc}") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise _too_large(max_bytes)
    if not inflater.eof:
        raise BodyEncodingError(f"{name} body is cut short (no end of stream)")
    return out


def _zstd(body: bytes, max_bytes: int) -> bytes:
    decompressor = ZstdDecompressor()
    try:
        out = decompressor.decompress(body, max_bytes + 1)
    except ZstdError as exc:
        raise BodyEncodingError(f"body is not zstd (Content-Encoding: zstd): {exc}") from None
    if len(out) > max_bytes or (not decompressor.eof and not decompressor.needs_input):
        raise _too_large(max_bytes)
    if not decompressor.eof:
        raise BodyEncodingError("zstd body is cut short (no end of frame)")
    return out


def _brotli(body: bytes, max_bytes: int) -> bytes:
    decompressor = brotli.Decompressor()
    try:
        out: bytes = decompressor.process(body, output_buffer_limit=max_bytes + 1)
    except brotli.error as exc:
        raise BodyEncodingError(f"body is not br (Content-Encoding: br): {exc}") from None
    if len(out) > max_bytes:
        raise _too_large(max_bytes)
    if not decompressor.is_finished():
        raise BodyEncodingError("br body is cut short (no end of stream)")
    return out


def decode_content(body: bytes, encoding: str, max_bytes: int) -> bytes:
    """The body a client compressed with ``Content-Encoding: encoding``, inflated.

    Args:
        body: the bytes as received.
        encoding: the header's value; case and surrounding blanks do not matter.
        max_bytes: the most bytes the inflated body may have.

    Returns:
        The inflated bytes (``body`` itself for no encoding or ``identity``).

    Raises:
        BodyEncodingError: 415 for an encoding not in :data:`ENCODINGS` (a list such
            as ``gzip, br`` included), 400 for a body that is not that encoding or is
            cut short, 413 for more than ``max_bytes`` once inflated.
    """
    name = encoding.strip().lower()
    if name not in ENCODINGS:
        raise BodyEncodingError(
            f"unsupported Content-Encoding {encoding.strip()!r}: send gzip, deflate, zstd, "
            "br or none", status=415,
        )
    if name in ("", "identity") or not body:  # an empty body has nothing to inflate
        return body
    if name in ("gzip", "x-gzip"):
        return _zlib(body, 16 + zlib.MAX_WBITS, "gzip", max_bytes)
    if name == "deflate":
        # RFC 9110 means the zlib format (RFC 1950); a raw deflate stream is what some
        # clients send instead. A zlib stream starts with compression method 8.
        raw = body[0] & 0x0F != 8
        return _zlib(body, -zlib.MAX_WBITS if raw else zlib.MAX_WBITS, "deflate", max_bytes)
    if name == "zstd":
        return _zstd(body, max_bytes)
    return _brotli(body, max_bytes)
