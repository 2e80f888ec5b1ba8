"""Prometheus text exposition format (``POST /ingest/prometheus``) → MetricPoints.

Parsed with ``prometheus_client.parser.text_string_to_metric_families`` (the
reference Python parser, format version 0.0.4), not by hand. Every sample becomes
a MetricPoint named as exposed (``http_requests_total``, ``lat_bucket`` …), its
labels kept. Samples of ``counter`` families and the ``_bucket``/``_count``/``_sum``
samples of histograms and summaries are typed ``counter`` (turned into rates before
baselining); ``gauge`` families ``gauge``; ``*_created`` samples (creation times) are
left out.

Items are lines (0-based line numbers in the body). One broken line (an unescaped
quote in a label value, a value that is not a number) does not sink the body: when
the parser refuses the whole text, every sample line is parsed again on its own,
after the ``# TYPE`` line of its family; the lines the parser refuses are rejected
items (``bad_line``), the others are kept.

Timestamps: a sample without its own gets ``now`` (the scrape time, given by the
caller). The format says milliseconds since the epoch (``… 4 1714557600123``) and
``prometheus_client``'s parser divides by 1,000; OpenMetrics-style seconds
(``… 4 1714557600.123``), which some exporters write, would then land in 1970, so
the time is read back from the token's magnitude (s, ms, µs or ns, as
:func:`autopilot.models.parse_timestamp` tells them apart).

The service is the first present label of ``AUTOPILOT_SERVICE_LABELS`` or else the
``default_service`` the caller gives (``?service=`` on the HTTP endpoint); a sample
with neither is a rejected item (``no_service``). NaN and ±Inf samples are skipped and
counted (``non_finite``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from autopilot.formats import DEFAULT_SERVICE_LABELS, Decoded, service_from_labels
from autopilot.formats.metrics_json import map_metric_objects

__all__ = ["decode_exposition"]

_COUNTER_SUFFIXES = {
    "counter": ("_total", ""),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("_count", "_sum"),
}
_TYPE_LINE = re.compile(r"^\s*#\s*TYPE\s+(\S+)\s+(\S+)")


def decode_exposition(
    text: str,
    now: datetime,
    default_service: str | None = None,
    service_labels: Sequence[str] = DEFAULT_SERVICE_LABELS,
) -> Decoded:
    """Parse an exposition body (see module docstring).

    Raises:
        ValueError: no line of the text is in the exposition format (the parser's
            reason for the first one).
    """
    out = Decoded()
    lines = text.splitlines()
    try:
        samples = list(_whole(text, lines))
    except Exception:  # the parser raises ValueError, and other types on some input
        samples = list(_line_by_line(lines, out))
        if not samples and out.errors and all(e["code"] == "bad_line" for e in out.errors):
            first = out.errors[0]
            raise ValueError(str(first["msg"])) from None
    points: list[dict[str, Any]] = []
    point_lines: list[int] = []
    for line_no, family_type, sample in samples:
        if not math.isfinite(sample.value):
            out.skip("non_finite")
            continue
        labels = {str(k): str(v) for k, v in sample.labels.items()}
        service = service_from_labels(labels, service_labels) or default_service
        if not service:
            out.error(
                line_no,
                "labels",
                f"{sample.name}: no service label (looked for "
                f"{', '.join(service_labels)}); add ?service=NAME",
                code="no_service",
                raw=lines[line_no] if line_no < len(lines) else None,
            )
            continue
        labels["service"] = service
        point: dict[str, Any] = {
            "timestamp": now if sample.timestamp is None else sample_time(sample.timestamp),
            "metric_name": sample.name,
            "value": float(sample.value),
            "labels": labels,
        }
        suffix_types = _COUNTER_SUFFIXES.get(family_type)
        if suffix_types is not None and (
            family_type == "counter" or sample.name.endswith(suffix_types)
        ):
            point["metric_type"] = "counter"
        elif family_type == "gauge":
            point["metric_type"] = "gauge"
        points.append(point)
        point_lines.append(line_no)
    if points:
        mapped = map_metric_objects(points)
        # map_metric_objects numbers the points 0…n-1: give them their lines back.
        out.records.extend(mapped.records)
        out.record_items.extend(point_lines[i] for i in mapped.record_items)  # type: ignore[index]
        for error in mapped.errors:
            error["item"] = point_lines[error["item"]]
            out.errors.append(error)
            out.raw.setdefault(error["item"], lines[error["item"]])
    if not points and not out.errors and not out.skipped:
        out.error(None, "", "no samples in the body")
    return out


def sample_time(parsed: float) -> float:
    """Epoch seconds of a sample whose timestamp the parser gave as ``parsed``.

    The parser divides the token by 1,000 (the format's milliseconds); the token is
    read back (× 1,000) and its unit told by magnitude, so ``1714557600123`` (ms) and
    ``1714557600.123`` (OpenMetrics seconds) give the same instant.
    """
    token = parsed * 1000.0
    magnitude = abs(token)
    if magnitude < 1e11:
        return token
    if magnitude < 1e14:
        return token / 1e3
    if magnitude < 1e17:
        return token / 1e6
    return token / 1e9


def _skip_created(name: str, family_type: str, typed: dict[str, str]) -> bool:
    """True for a ``*_created`` sample of a counter, histogram or summary."""
    if not name.endswith("_created"):
        return False
    if family_type in _COUNTER_SUFFIXES:
        return True
    return typed.get(name[: -len("_created")]) in _COUNTER_SUFFIXES or typed.get(
        name[: -len("_created")] + "_total"
    ) in _COUNTER_SUFFIXES


def _whole(text: str, lines: list[str]) -> Iterator[tuple[int, str, Any]]:
    """``(line, family type, sample)`` of a text the parser takes as a whole."""
    families = list(text_string_to_metric_families(text))
    typed = {f.name: f.type for f in families}
    # Each sample line gives one sample, in order (the parser strips lines and skips
    # blank and ``#`` lines), so the k-th sample is on the k-th sample line.
    sample_lines = [i for i, line in enumerate(lines)
                    if line.strip() and not line.lstrip().startswith("#")]
    k = 0
    for family in families:
        for sample in family.samples:
            line_no = sample_lines[k] if k < len(sample_lines) else k
            k += 1
            if _skip_created(sample.name, family.type, typed):
                continue
            yield line_no, family.type, sample


def _line_by_line(lines: list[str], out: Decoded) -> Iterator[tuple[int, str, Any]]:
    """Parse each sample line on its own, after its family's ``# TYPE`` line; the
    lines the parser refuses become rejected items (``bad_line``)."""
    typed: dict[str, str] = {}
    type_line = ""
    for line in lines:
        match = _TYPE_LINE.match(line)
        if match:
            typed[match[1]] = match[2]
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            if _TYPE_LINE.match(stripped):
                type_line = stripped
            continue
        try:
            families = list(text_string_to_metric_families(f"{type_line}\n{stripped}\n"))
        except Exception as exc:  # ValueError, and other types on some input
            out.error(
                number, "", f"line {number + 1}: not the Prometheus text exposition format: "
                f"{type(exc).__name__}: {str(exc)[:200]}", code="bad_line", raw=line,
            )
            continue
        for family in families:
            for sample in family.samples:
                if _skip_created(sample.name, family.type, typed):
                    continue
                yield number, family.type, sample
