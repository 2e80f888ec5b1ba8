"""Local HTTP servers speaking the APIs of approved-action hooks (docs/actions.md).

- :class:`WebhookReceiver`: any JSON POST; a scripted status and body per call.
- :class:`ArgoCdServer`: Argo CD's ``/api/v1/applications/{name}`` (GET) and
  ``/api/v1/applications/{name}/rollback`` (POST ``{"id", "prune", …}``) with a
  bearer token, and Argo CD's error shape ``{"error", "code", "message"}`` (gRPC code
  → HTTP status as its gateway maps them): 401 code 16 for a bad token, 404 code 5
  for an unknown application or history id, 400 code 9 "rollback cannot be initiated
  when auto-sync is enabled". A successful rollback answers the application and
  appends a history entry.
- :class:`GithubServer`: ``POST /repos/{owner}/{repo}/actions/workflows/{workflow}/
  dispatches`` with GitHub's answers: 204 (empty), 401 "Bad credentials", 404 "Not
  Found" (unknown repo or workflow), 422 "No ref found for: <ref>" and
  "Unexpected inputs provided: [...]", each with ``documentation_url`` and ``status``.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from aiohttp import web

from tests.standins import _ThreadedServer

__all__ = ["ArgoCdServer", "GithubServer", "WebhookReceiver"]


class WebhookReceiver(_ThreadedServer):
    """``POST /hook`` records ``(headers, json)`` in :attr:`calls`; answers
    :attr:`answers` in order (``(status, json body)``), then 200 ``{"message": "ok"}``.
    :attr:`delay_s` delays every answer (a slow receiver)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[dict[str, str], Any]] = []
        self.answers: list[tuple[int, dict[str, Any]]] = []
        self.delay_s = 0.0

    @property
    def url(self) -> str:
        return self.base + "/hook"

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        return app

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self._lock:
            self.calls.append((dict(request.headers), body))
            answer = self.answers.pop(0) if self.answers else (200, {"message": "ok"})
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return web.json_response(answer[1], status=answer[0])


def _argo_error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"error": message, "code": code, "message": message},
                             status=status)


class ArgoCdServer(_ThreadedServer):
    """Argo CD's application API for :attr:`apps` (name → Application JSON with
    ``spec.syncPolicy`` and ``status.history``). :attr:`rollbacks` records each
    rollback body accepted; :attr:`calls` every ``(method, path)``."""

    def __init__(self, token: str = "argocd-token") -> None:
        super().__init__()
        self.token = token
        self.apps: dict[str, dict[str, Any]] = {}
        self.rollbacks: list[tuple[str, dict[str, Any]]] = []
        self.calls: list[tuple[str, str]] = []

    def add_app(self, name: str, history: list[dict[str, Any]], *,
                auto_sync: bool = False) -> None:
        spec: dict[str, Any] = {"project": "default", "source": {
            "repoURL": "https://github.com/acme/deploy.git", "path": name,
            "targetRevision": "HEAD"}, "destination": {"namespace": name}}
        if auto_sync:
            spec["syncPolicy"] = {"automated": {"prune": True, "selfHeal": True}}
        self.apps[name] = {"metadata": {"name": name, "namespace": "argocd"}, "spec": spec,
                           "status": {"history": history, "sync": {"status": "Synced"}}}

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/applications/{name}", self._get)
        app.router.add_post("/api/v1/applications/{name}/rollback", self._rollback)
        return app

    def _auth(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _argo_error(401, 16, "invalid session: token signature is invalid")
        return None

    def _app(self, name: str) -> dict[str, Any] | None:
        return self.apps.get(name)

    async def _get(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        with self._lock:
            self.calls.append(("GET", request.path))
        refused = self._auth(request)
        if refused is not None:
            return refused
        with self._lock:
            found = copy.deepcopy(self._app(name))
        if found is None:
            return _argo_error(404, 5, f'applications.argoproj.io "{name}" not found')
        return web.json_response(found)

    async def _rollback(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        with self._lock:
            self.calls.append(("POST", request.path))
        refused = self._auth(request)
        if refused is not None:
            return refused
        try:
            body = await request.json()
        except ValueError:
            return _argo_error(400, 3, "invalid character in request body")
        if not isinstance(body, dict) or not isinstance(body.get("id"), int):
            return _argo_error(400, 3, "rollback: id must be an integer")
        with self._lock:
            app = self._app(name)
            if app is None:
                return _argo_error(404, 5, f'applications.argoproj.io "{name}" not found')
            if (app["spec"].get("syncPolicy") or {}).get("automated") is not None:
                return _argo_error(400, 9, "rollback cannot be initiated when auto-sync "
                                   "is enabled")
            history = app["status"]["history"]
            entry = next((h for h in history if h["id"] == body["id"]), None)
            if entry is None:
                return _argo_error(404, 5, f"application {name} does not have deployment "
                                   f"with id {body['id']}")
            self.rollbacks.append((name, body))
            history.append({**entry, "id": max(h["id"] for h in history) + 1})
            return web.json_response(copy.deepcopy(app))


def _gh_error(status: int, message: str, doc: str) -> web.Response:
    return web.json_response({"message": message, "documentation_url": doc,
                              "status": str(status)}, status=status)


_DISPATCH_DOC = ("https://docs.github.com/rest/actions/workflows"
                 "#create-a-workflow-dispatch-event")


class GithubServer(_ThreadedServer):
    """GitHub's workflow dispatch for :attr:`workflows` (``(owner/repo, workflow file
    or id)`` → declared input names) on the refs :attr:`refs`; :attr:`dispatches`
    records ``(repo, workflow, body, headers)`` of each 204."""

    def __init__(self, token: str = "ghp-test-token") -> None:
        super().__init__()
        self.token = token
        self.workflows: dict[tuple[str, str], set[str]] = {}
        self.refs: set[str] = {"main"}
        self.dispatches: list[tuple[str, str, dict[str, Any], dict[str, str]]] = []

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches",
                            self._dispatch)
        return app

    async def _dispatch(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _gh_error(401, "Bad credentials", "https://docs.github.com/rest")
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}"
        workflow = request.match_info["workflow"]
        declared = self.workflows.get((repo, workflow))
        if declared is None:
            return _gh_error(404, "Not Found", _DISPATCH_DOC)
        try:
            body = await request.json()
        except ValueError:
            return _gh_error(400, "Problems parsing JSON", _DISPATCH_DOC)
        ref = body.get("ref") if isinstance(body, dict) else None
        if not isinstance(ref, str) or not ref:
            return _gh_error(422, "Invalid request.\n\n\"ref\" wasn't supplied.", _DISPATCH_DOC)
        if ref not in self.refs:
            return _gh_error(422, f"No ref found for: {ref}", _DISPATCH_DOC)
        inputs = body.get("inputs") or {}
        unexpected = sorted(set(inputs) - declared)
        if unexpected:
            listed = ", ".join(f'"{k}"' for k in unexpected)
            return _gh_error(422, f"Unexpected inputs provided: [{listed}]", _DISPATCH_DOC)
        with self._lock:
            self.dispatches.append((repo, workflow, body, dict(request.headers)))
        return web.Response(status=204)
