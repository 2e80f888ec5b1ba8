"""Prometheus text exposition format (``POST /ingest/prometheus``) → MetricPoints.

Parsed with ``prometheus_client.parser.text_string_to_metric_families`` (the
reference Python parser, format version 0.0.4), not by hand. Every sample becomes
a MetricPoint named as exposed (``http_requests_total``, ``lat_bucket`` …), its
labels kept. Samples of ``counter`` families and the ``_bucket``/``_count``/``_sum``
samples of histograms and summaries are typed ``counter`` (turned into rates before
baselining); ``gauge`` families ``gauge``; ``*_created`` samples (creation times) are
left out. A sample without its own timestamp gets ``now`` (the scrape time, given by
the caller).

The service is the first present label of ``AUTOPILOT_SERVICE_LABELS`` or else the
``default_service`` the caller gives (``?service=`` on the HTTP endpoint); a sample
with neither is an error. NaN and ±Inf samples are skipped and counted
(``non_finite``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from prometheus_client.parser import text_string_to_metric_families

from autopilot.formats import DEFAULT_SERVICE_LABELS, Decoded, service_from_labels
from autopilot.formats.metrics_json import map_metric_objects

__all__ = ["decode_exposition"]

_COUNTER_SUFFIXES = {
    "counter": ("_total", ""),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("_count", "_sum"),
}


def decode_exposition(
    text: str,
    now: datetime,
    default_service: str | None = None,
    service_labels: Sequence[str] = DEFAULT_SERVICE_LABELS,
) -> Decoded:
    """Parse an exposition body (see module docstring).

    Raises:
        ValueError: the text is not in the exposition format (the parser's reason).
    """
    families = list(text_string_to_metric_families(text))
    typed = {f.name: f.type for f in families}
    out = Decoded()
    points: list[dict[str, object]] = []
    index = 0
    for family in families:
        if family.type == "unknown" and family.name.endswith("_created"):
            base = family.name[: -len("_created")]
            if typed.get(base) in _COUNTER_SUFFIXES:
                continue
        for sample in family.samples:
            if sample.name.endswith("_created") and family.type in _COUNTER_SUFFIXES:
                continue
            if not math.isfinite(sample.value):
                out.skip("non_finite")
                continue
            labels = {str(k): str(v) for k, v in sample.labels.items()}
            service = service_from_labels(labels, service_labels) or default_service
            if not service:
                out.error(
                    index,
                    "labels",
                    f"{sample.name}: no service label (looked for "
                    f"{', '.join(service_labels)}); add ?service=NAME",
                )
                index += 1
                continue
            labels["service"] = service
            point: dict[str, object] = {
                "timestamp": sample.timestamp if sample.timestamp is not None else now,
                "metric_name": sample.name,
                "value": float(sample.value),
                "labels": labels,
            }
            suffix_types = _COUNTER_SUFFIXES.get(family.type)
            if suffix_types is not None and (
                family.type == "counter" or sample.name.endswith(suffix_types)
            ):
                point["metric_type"] = "counter"
            elif family.type == "gauge":
                point["metric_type"] = "gauge"
            points.append(point)
            index += 1
    mapped = map_metric_objects(points, service_labels) if points else Decoded()
    out.records.extend(mapped.records)
    out.errors.extend(mapped.errors)
    if not points and not out.errors and not out.skipped:
        out.error(None, "", "no samples in the body")
    return out
