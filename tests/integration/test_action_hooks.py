"""The approved-action hooks (autopilot/integrations/hooks.py) against local servers
speaking each API (tests/hook_standins.py): the webhook, Argo CD's rollback (history
id resolution, the auto-sync refusal, a 404 application, its own 400) and GitHub's
workflow dispatch (204, 404, 422), timeouts and connection errors."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from autopilot.actions import ActionSpec
from autopilot.integrations.hooks import HookRequest, HookResult, history_id, run_hook
from tests.hook_standins import ArgoCdServer, GithubServer, WebhookReceiver
from tests.standins import free_port

pytestmark = [pytest.mark.integration, pytest.mark.no_broker]

REQ = HookRequest(action="rollback", service="checkout", incident_id="inc-1",
                  approver="alice", from_version="v2.4.0", to_version="v2.3.9")


def spec(hook: dict[str, Any], name: str = "rollback") -> ActionSpec:
    return ActionSpec.model_validate({"name": name, "services": ["checkout"],
                                      "approvers": {"users": ["U0ALICE42"]}, "hook": hook})


def run(s: ActionSpec, req: HookRequest = REQ, **kw: Any) -> HookResult:
    return asyncio.run(run_hook(s, req, **kw))


def token(tmp_path: Path, value: str) -> str:
    path = tmp_path / "token"
    path.write_text(value + "\n")
    return str(path)


def test_webhook_posts_the_action_with_the_bearer_token(tmp_path: Path) -> None:
    with WebhookReceiver() as hook:
        result = run(spec({"webhook": {"url": hook.url,
                                       "token_file": token(tmp_path, "s3cr3t-hook")}}))
        assert result == HookResult(True, 200, "ok")
        ((headers, body),) = hook.calls
        assert headers["Authorization"] == "Bearer s3cr3t-hook"
        assert body == {"action": "rollback", "service": "checkout", "from_version": "v2.4.0",
                        "to_version": "v2.3.9", "incident_id": "inc-1", "approver": "alice"}


def test_webhook_500_is_reported_with_its_message() -> None:
    with WebhookReceiver() as hook:
        hook.answers.append((500, {"message": "deployer is down"}))
        result = run(spec({"webhook": {"url": hook.url}}))
        assert result == HookResult(False, 500, "deployer is down")
        assert result.text() == "HTTP 500: deployer is down"
        assert "Authorization" not in hook.calls[0][0]


def test_webhook_timeout_and_refused_connection_are_plain_results() -> None:
    with WebhookReceiver() as hook:
        hook.delay_s = 2.0
        slow = run(spec({"webhook": {"url": hook.url}}), timeout_s=0.3)
    assert slow == HookResult(False, None, "webhook hook timed out after 0.3 s")
    gone = run(spec({"webhook": {"url": f"http://127.0.0.1:{free_port()}/hook"}}))
    assert not gone.ok and gone.status is None
    assert gone.message == "webhook hook unreachable: ConnectError"


HISTORY = [
    {"id": 3, "revision": "1a2b3c4d5e6f", "source": {"targetRevision": "v2.3.8"}},
    {"id": 4, "revision": "9f8e7d6c5b4a", "source": {"targetRevision": "v2.3.9"}},
    {"id": 5, "revision": "0011223344aa", "source": {"targetRevision": "v2.4.0"}},
]


def test_history_id_matches_target_revision_revision_or_short_sha() -> None:
    assert history_id(HISTORY, "v2.3.9") == 4
    assert history_id(HISTORY, "9f8e7d6c5b4a") == 4
    assert history_id(HISTORY, "9f8e7d6") == 4
    assert history_id(HISTORY, "9f8e") is None  # too short to be a sha prefix
    assert history_id([*HISTORY, {"id": 7, "revision": "x", "sources": [
        {"targetRevision": "v2.3.9"}]}], "v2.3.9") == 7  # the newest wins
    assert history_id(None, "v2.3.9") is None


def argo_spec(server: ArgoCdServer, tmp_path: Path, **extra: Any) -> ActionSpec:
    return spec({"argocd": {"server": server.base, "token_file": token(tmp_path, server.token),
                            **extra}})


def test_argocd_rolls_back_to_the_history_id_of_the_previous_version(tmp_path: Path) -> None:
    with ArgoCdServer() as argo:
        argo.add_app("checkout-prod", [dict(h) for h in HISTORY])
        result = run(argo_spec(argo, tmp_path, application="{service}-prod"))
        assert result == HookResult(True, 200,
                                    "rolled back checkout-prod to v2.3.9 (history id 4)")
        assert argo.rollbacks == [("checkout-prod", {"id": 4, "prune": False})]


def test_argocd_refuses_plainly_while_auto_sync_is_on(tmp_path: Path) -> None:
    with ArgoCdServer() as argo:
        argo.add_app("checkout", [dict(h) for h in HISTORY], auto_sync=True)
        result = run(argo_spec(argo, tmp_path))
        assert not result.ok
        assert result.message == ("Argo CD refuses to roll back checkout while auto-sync is "
                                  "on; turn it off first")
        assert argo.rollbacks == [] and ("POST", "/api/v1/applications/checkout/rollback") \
            not in argo.calls


def test_argocd_own_400_refusal_is_reported(tmp_path: Path) -> None:
    with ArgoCdServer() as argo:
        argo.add_app("checkout", [dict(h) for h in HISTORY])
        s = argo_spec(argo, tmp_path)
        # auto-sync turned on between our GET and the POST: Argo CD's own refusal
        original = argo._app

        def flipped(name: str) -> dict[str, Any] | None:
            app = original(name)
            if app is not None and ("POST", f"/api/v1/applications/{name}/rollback") \
                    in argo.calls:
                app["spec"]["syncPolicy"] = {"automated": {}}
            return app

        argo._app = flipped  # type: ignore[method-assign]
        result = run(s)
        assert result == HookResult(False, 400, "rollback cannot be initiated when "
                                    "auto-sync is enabled")


def test_argocd_unknown_application_and_unknown_version(tmp_path: Path) -> None:
    with ArgoCdServer() as argo:
        argo.add_app("checkout", [dict(h) for h in HISTORY])
        missing = run(argo_spec(argo, tmp_path, applications={"checkout": "shop"}))
        assert missing == HookResult(False, 404, 'Argo CD application shop: '
                                     'applications.argoproj.io "shop" not found')
        old = run(argo_spec(argo, tmp_path), HookRequest(
            action="rollback", service="checkout", incident_id="inc-1", approver="alice",
            from_version="v2.4.0", to_version="v1.0.0"))
        assert old == HookResult(False, 200, "version v1.0.0 is not in the history of "
                                 "Argo CD application checkout")
        bad_token = run(spec({"argocd": {"server": argo.base,
                                         "token_file": token(tmp_path, "wrong")}}))
        assert bad_token.status == 401 and "token signature is invalid" in bad_token.message
        assert argo.rollbacks == []


def gh_spec(gh: GithubServer, tmp_path: Path, **extra: Any) -> ActionSpec:
    hook = {"repo": "acme/deploy", "workflow": "rollback.yml", "ref": "main",
            "inputs": {"service": "{service}", "version": "{to_version}",
                       "incident": "{incident_id}", "approved_by": "{approver}"},
            "token_file": token(tmp_path, gh.token), "api_url": gh.base, **extra}
    return spec({"github": hook})


def test_github_dispatches_the_workflow_with_its_inputs(tmp_path: Path) -> None:
    with GithubServer() as gh:
        gh.workflows[("acme/deploy", "rollback.yml")] = {"service", "version", "incident",
                                                         "approved_by"}
        result = run(gh_spec(gh, tmp_path))
        assert result == HookResult(True, 204, "workflow rollback.yml dispatched on main")
        ((repo, workflow, body, headers),) = gh.dispatches
        assert (repo, workflow) == ("acme/deploy", "rollback.yml")
        assert body == {"ref": "main", "inputs": {"service": "checkout", "version": "v2.3.9",
                                                  "incident": "inc-1", "approved_by": "alice"}}
        assert headers["Accept"] == "application/vnd.github+json"
        assert headers["Authorization"] == f"Bearer {gh.token}"


def test_github_404_and_422_report_their_messages(tmp_path: Path) -> None:
    with GithubServer() as gh:
        gh.workflows[("acme/deploy", "rollback.yml")] = {"service", "version", "incident",
                                                         "approved_by"}
        assert run(gh_spec(gh, tmp_path, workflow="nope.yml")) == HookResult(
            False, 404, "Not Found")
        assert run(gh_spec(gh, tmp_path, ref="release-9")) == HookResult(
            False, 422, "No ref found for: release-9")
        extra = run(gh_spec(gh, tmp_path, inputs={"colour": "{service}"}))
        assert extra == HookResult(False, 422, 'Unexpected inputs provided: ["colour"]')
        assert gh.dispatches == []
