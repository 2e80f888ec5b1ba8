"""Hooks of approved actions (network layer): webhook, Argo CD rollback, GitHub Actions.

:func:`run_hook` calls the hook of one :class:`autopilot.actions.ActionSpec` for one
approved :class:`HookRequest` and returns a :class:`HookResult` (HTTP status and the
body's message); it never raises: timeouts, connection errors and refusals become a
result with ``ok=False`` and a plain message. Tokens come from the hook's
``token_file`` at each call and never appear in a result or a log line.

- **webhook**: ``POST <url>`` with the JSON ``{action, service, from_version,
  to_version, incident_id, approver}`` (``Authorization: Bearer`` when a token file is
  set); any 2xx is success.
- **argocd**: ``GET {server}/api/v1/applications/{app}``; when
  ``spec.syncPolicy.automated`` is set the rollback is refused without calling it
  ("Argo CD refuses to roll back <app> while auto-sync is on; turn it off first");
  otherwise the history id is the newest entry of ``status.history`` whose
  ``revision``, ``source.targetRevision`` or one of ``sources[].targetRevision``
  equals the to-version (or whose ``revision`` starts with it, for a short commit
  sha of 7+ characters), then ``POST {server}/api/v1/applications/{app}/rollback``
  with ``{"id": <history id>, "prune": false}``. Argo CD's own refusals (400, 403,
  404 …, body ``{"error", "message", "code"}``) are reported with their message.
- **github**: ``POST {api_url}/repos/{owner}/{repo}/actions/workflows/{workflow}/
  dispatches`` with ``{ref, inputs}``, ``Accept: application/vnd.github+json`` and
  ``Authorization: Bearer``; 204 is success, 404/422 report GitHub's ``message``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from autopilot.actions import ActionSpec, ArgoCdHook, GithubHook, WebhookHook, render_template
from autopilot.redact import redact

__all__ = ["HOOK_TIMEOUT_S", "HookRequest", "HookResult", "run_hook"]

logger = logging.getLogger(__name__)

#: Timeout of each HTTP call of a hook (s).
HOOK_TIMEOUT_S = 10.0
#: Longest message kept from a response body (characters).
_MAX_MESSAGE = 300


@dataclass(frozen=True, slots=True)
class HookRequest:
    """One approved action: what, on which service, between which versions, by whom."""

    action: str
    service: str
    incident_id: str
    approver: str
    from_version: str | None = None
    to_version: str | None = None

    def values(self) -> dict[str, str]:
        """Template values (``{service}``, ``{to_version}`` …; missing ones empty)."""
        return {"action": self.action, "service": self.service,
                "incident_id": self.incident_id, "approver": self.approver,
                "from_version": self.from_version or "", "to_version": self.to_version or ""}


@dataclass(frozen=True, slots=True)
class HookResult:
    """``ok``; ``status`` (the last HTTP status, ``None`` when none came back) and a
    one-line ``message`` (the body's message or what went wrong)."""

    ok: bool
    status: int | None
    message: str

    def text(self) -> str:
        """``HTTP 204: dispatched`` or ``no answer: …`` (for the Slack thread)."""
        head = f"HTTP {self.status}" if self.status is not None else "no answer"
        return f"{head}: {self.message}"


def _token(path: Any) -> str | None:
    if path is None:
        return None
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def _message(response: httpx.Response) -> str:
    """The body's ``message`` (or ``error``), else its text, on one line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    text = ""
    if isinstance(body, dict):
        for key in ("message", "error", "status"):
            if isinstance(body.get(key), str) and body[key]:
                text = body[key]
                break
    if not text:
        text = response.text or response.reason_phrase
    return redact(" ".join(text.split()))[:_MAX_MESSAGE]


def _result(response: httpx.Response, ok_message: str) -> HookResult:
    if response.is_success:
        return HookResult(True, response.status_code, _message(response) or ok_message
                          if response.content else ok_message)
    return HookResult(False, response.status_code, _message(response))


async def _webhook(hook: WebhookHook, req: HookRequest, client: httpx.AsyncClient) -> HookResult:
    token = _token(hook.token_file)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"action": req.action, "service": req.service, "from_version": req.from_version,
            "to_version": req.to_version, "incident_id": req.incident_id,
            "approver": req.approver}
    response = await client.post(hook.url, json=body, headers=headers)
    return _result(response, "accepted")


def history_id(history: Any, version: str) -> int | None:
    """The id of the newest ``status.history`` entry deployed at ``version`` (see the
    module docstring), ``None`` when no entry matches."""
    found: int | None = None
    for entry in history if isinstance(history, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), int):
            continue
        revisions = [entry.get("revision")]
        source = entry.get("source")
        if isinstance(source, dict):
            revisions.append(source.get("targetRevision"))
        for src in entry.get("sources") or []:
            if isinstance(src, dict):
                revisions.append(src.get("targetRevision"))
        revisions += entry.get("revisions") or []
        hit = any(r == version for r in revisions if isinstance(r, str)) or (
            len(version) >= 7 and isinstance(entry.get("revision"), str)
            and entry["revision"].startswith(version))
        if hit and (found is None or entry["id"] > found):
            found = entry["id"]
    return found


async def _argocd(hook: ArgoCdHook, req: HookRequest, client: httpx.AsyncClient) -> HookResult:
    app = hook.app_name(req.values())
    base = hook.server.rstrip("/") + f"/api/v1/applications/{app}"
    headers = {"Authorization": f"Bearer {_token(hook.token_file)}"}
    got = await client.get(base, headers=headers)
    if not got.is_success:
        return HookResult(False, got.status_code,
                          f"Argo CD application {app}: {_message(got)}")
    data = got.json()
    automated = ((data.get("spec") or {}).get("syncPolicy") or {}).get("automated")
    if automated is not None:
        return HookResult(False, got.status_code, f"Argo CD refuses to roll back {app} "
                          "while auto-sync is on; turn it off first")
    if not req.to_version:
        return HookResult(False, None, "no version to roll back to")
    found = history_id((data.get("status") or {}).get("history"), req.to_version)
    if found is None:
        return HookResult(False, got.status_code, f"version {req.to_version} is not in "
                          f"the history of Argo CD application {app}")
    response = await client.post(base + "/rollback", json={"id": found, "prune": False},
                                 headers=headers)
    result = _result(response, f"rolled back {app} to history id {found}")
    if result.ok:
        return HookResult(True, response.status_code,
                          f"rolled back {app} to {req.to_version} (history id {found})")
    return result


async def _github(hook: GithubHook, req: HookRequest, client: httpx.AsyncClient) -> HookResult:
    url = (f"{hook.api_url.rstrip('/')}/repos/{hook.repo}/actions/workflows/"
           f"{hook.workflow}/dispatches")
    values = req.values()
    body = {"ref": render_template(hook.ref, values),
            "inputs": {k: render_template(v, values) for k, v in hook.inputs.items()}}
    headers = {"Authorization": f"Bearer {_token(hook.token_file)}",
               "Accept": "application/vnd.github+json",
               "X-GitHub-Api-Version": "2022-11-28"}
    response = await client.post(url, json=body, headers=headers)
    if response.status_code == 204:
        return HookResult(True, 204, f"workflow {hook.workflow} dispatched on {body['ref']}")
    return _result(response, "dispatched")


async def run_hook(
    spec: ActionSpec, req: HookRequest, *, timeout_s: float = HOOK_TIMEOUT_S,
    client: httpx.AsyncClient | None = None,
) -> HookResult:
    """Call ``spec``'s hook for ``req`` (see the module docstring); never raises.

    Args:
        spec: the configured action (its ``hook``).
        req: the approved request.
        timeout_s: timeout of each HTTP call (s).
        client: an HTTP client to use (tests); default a fresh one per call.
    """
    own = client is None
    http = client or httpx.AsyncClient(timeout=timeout_s)
    try:
        hook = spec.hook
        if hook.webhook is not None:
            return await _webhook(hook.webhook, req, http)
        if hook.argocd is not None:
            return await _argocd(hook.argocd, req, http)
        assert hook.github is not None
        return await _github(hook.github, req, http)
    except httpx.TimeoutException:
        return HookResult(False, None, f"{spec.hook.kind} hook timed out after {timeout_s:g} s")
    except httpx.HTTPError as exc:
        return HookResult(False, None, f"{spec.hook.kind} hook unreachable: "
                          f"{type(exc).__name__}")
    except (OSError, ValueError) as exc:
        return HookResult(False, None, f"{spec.hook.kind} hook failed: {type(exc).__name__}: "
                          f"{redact(str(exc))[:_MAX_MESSAGE]}")
    finally:
        if own:
            await http.aclose()
