"""Deployment payloads → DeploymentEvent (pure), auto-detected.

A deployment without a version (none in the payload) is kept with the version
``unknown`` and counted (``Decoded.defaulted["missing_version"]``): knowing that *a*
deployment happened still explains an incident.

**Seed DeploymentEvent** — has ``service`` (and usually ``version``)::

    {"timestamp": "2026-11-29T09:55:00Z", "service": "checkout", "version": "v1.4.2",
     "status": "success"}

**GitHub ``deployment_status`` webhook** (``X-GitHub-Event: deployment_status``, or a
body with ``deployment_status`` and ``deployment``;
docs.github.com/webhooks/webhook-events-and-payloads#deployment_status):

========== ===================================================================
service    ``deployment.payload.service`` if set, else ``repository.name``
version    ``deployment.ref`` (tag or branch), else ``deployment.sha``
status     ``deployment_status.state`` (success, failure, error, pending,
           in_progress, queued, inactive)
timestamp  ``deployment_status.updated_at`` / ``created_at``
metadata   source=github, environment, sha, ref, repository, creator,
           description, target_url
========== ===================================================================

**Argo CD notification** (a webhook template whose body carries the Application as
``app``: ``{"app": {{toJson .app}}}``, or just the fields used, see the README):

========== ===================================================================
service    ``app.metadata.labels["app.kubernetes.io/name"]``, else
           ``app.metadata.name``
version    ``app.status.operationState.syncResult.revision``, else
           ``app.status.sync.revision``, else the first image of
           ``app.status.summary.images``
status     ``app.status.operationState.phase``: Succeeded → success,
           Failed/Error → failure, Running → in_progress, Terminating → cancelled
timestamp  ``operationState.finishedAt``, else ``startedAt``, else the
           notification's ``timestamp``
metadata   source=argocd, namespace, project, sync_status, health_status,
           revision, images
========== ===================================================================
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from autopilot.formats import Decoded, loads_strict
from autopilot.models import DeploymentEvent

__all__ = ["decode_deployments", "detect_format", "from_argocd", "from_github"]

_ARGO_PHASES = {
    "succeeded": "success",
    "failed": "failure",
    "error": "failure",
    "running": "in_progress",
    "terminating": "cancelled",
}


def detect_format(obj: dict[str, Any], github_event: str | None = None) -> str:
    """``github``, ``argocd``, ``seed`` or ``unknown``."""
    if github_event == "deployment_status" or (
        isinstance(obj.get("deployment_status"), dict) and isinstance(obj.get("deployment"), dict)
    ):
        return "github"
    if isinstance(obj.get("app"), dict) and isinstance(obj["app"].get("metadata"), dict):
        return "argocd"
    if "service" in obj or "version" in obj:
        return "seed"
    return "unknown"


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _clean(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if v not in (None, "", [], {})}


def from_github(body: dict[str, Any]) -> dict[str, Any]:
    """Seed-shaped dict from a GitHub ``deployment_status`` payload (table above)."""
    dep = body.get("deployment") or {}
    st = body.get("deployment_status") or {}
    raw_payload = dep.get("payload")
    payload = raw_payload if isinstance(raw_payload, dict) else {}
    return {
        "timestamp": st.get("updated_at") or st.get("created_at") or dep.get("updated_at"),
        "service": payload.get("service") or _get(body, "repository", "name"),
        "version": dep.get("ref") or dep.get("sha"),
        "status": st.get("state") or "unknown",
        "metadata": _clean(
            {
                "source": "github",
                "environment": st.get("environment") or dep.get("environment"),
                "sha": dep.get("sha"),
                "ref": dep.get("ref"),
                "repository": _get(body, "repository", "full_name"),
                "creator": _get(st, "creator", "login") or _get(dep, "creator", "login"),
                "description": st.get("description"),
                "target_url": st.get("target_url") or st.get("environment_url"),
            }
        ),
    }


def from_argocd(body: dict[str, Any]) -> dict[str, Any]:
    """Seed-shaped dict from an Argo CD notification carrying ``app`` (table above)."""
    app = body["app"]
    meta = app.get("metadata") or {}
    status = app.get("status") or {}
    op = status.get("operationState") or {}
    images = _get(status, "summary", "images") or []
    raw_labels = meta.get("labels")
    labels = raw_labels if isinstance(raw_labels, dict) else {}
    phase = str(op.get("phase") or "")
    version = (
        _get(op, "syncResult", "revision")
        or _get(status, "sync", "revision")
        or (images[0] if isinstance(images, list) and images else None)
    )
    return {
        "timestamp": op.get("finishedAt") or op.get("startedAt") or body.get("timestamp"),
        "service": labels.get("app.kubernetes.io/name") or meta.get("name"),
        "version": version,
        "status": _ARGO_PHASES.get(phase.lower(), phase.lower() or "unknown"),
        "metadata": _clean(
            {
                "source": "argocd",
                "application": meta.get("name"),
                "namespace": meta.get("namespace"),
                "project": _get(app, "spec", "project"),
                "sync_status": _get(status, "sync", "status"),
                "health_status": _get(status, "health", "status"),
                "revision": _get(status, "sync", "revision"),
                "images": images if isinstance(images, list) else None,
            }
        ),
    }


def decode_deployments(raw: bytes, github_event: str | None = None) -> Decoded:
    """Decode one record value or body: one payload or a JSON list of them.

    Args:
        raw: the bytes (UTF-8; invalid bytes replaced).
        github_event: the ``X-GitHub-Event`` header, if any.

    Raises:
        ValueError: not JSON (HTTP 400 / dead-letter).
    """
    if not raw or not raw.strip():
        raise ValueError("empty body")
    data = loads_strict(raw)
    out = Decoded()
    for at, item in out.objects(data):
        kind = detect_format(item, github_event)
        if github_event and github_event != "deployment_status":
            out.error(
                at, "", f"GitHub event {github_event!r} is not handled (deployment_status)",
                raw=item,
            )
            continue
        if kind == "github":
            item = from_github(item)
        elif kind == "argocd":
            item = from_argocd(item)
        elif kind == "unknown":
            out.error(
                at,
                "",
                "unknown deployment shape: expected a DeploymentEvent (service, version), "
                "a GitHub deployment_status webhook or an Argo CD notification (app)",
                raw=item,
            )
            continue
        missing_version = item.get("version") in (None, "")
        try:
            out.add(DeploymentEvent.model_validate(item), at)
        except ValidationError as exc:
            for err in exc.errors():
                out.error(at, ".".join(str(p) for p in err["loc"]), err["msg"], raw=item)
        else:
            if missing_version:
                out.default("missing_version")
    return out
