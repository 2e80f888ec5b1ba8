"""Approved actions (docs/actions.md): the AUTOPILOT_ACTIONS_FILE schema with line
numbers, service matchers, the rollback target, the buttons and their Slack limits,
and the click payloads they come back as."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from autopilot.actions import (
    ActionsConfig,
    ActionsFileError,
    load_actions,
    offers,
    rollback_target,
)
from autopilot.blockkit import (
    ACTION_HOOK_PREFIX,
    BUTTON_TEXT_MAX,
    BUTTON_VALUE_MAX,
    CONFIRM_TEXT_MAX,
    CONFIRM_TITLE_MAX,
    render_incident,
)
from autopilot.interactions import IncidentAction, InvalidInteraction, from_block_action
from tests.factories import T0, alert, deployment

GOOD = """\
actions:
  - name: rollback
    services: [checkout, "pay-*", "re:^api-(eu|us)$"]
    approvers:
      users: [U0ALICE42]
      usergroup: S0SRE
    hook:
      webhook:
        url: http://127.0.0.1:9/hook
        token_file: {token}
  - name: restart
    label: Restart pods
    services: ["*"]
    approvers: {{usergroup: S0SRE}}
    hook:
      argocd:
        server: https://argocd.example.com
        token_file: {token}
        application: "{{service}}-prod"
        applications: {{checkout: shop}}
  - name: scale-up
    services: [checkout]
    approvers: {{users: [U0BOB]}}
    hook:
      github:
        repo: acme/deploy
        workflow: scale.yml
        ref: main
        inputs: {{service: "{{service}}", by: "{{approver}}"}}
        token_file: {token}
"""


def good(tmp_path: Path) -> ActionsConfig:
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    path = tmp_path / "actions.yaml"
    path.write_text(GOOD.format(token=token))
    return load_actions(path)


def test_a_file_with_each_hook_kind_loads(tmp_path: Path) -> None:
    config = good(tmp_path)
    assert [(a.name, a.hook.kind) for a in config.actions] == [
        ("rollback", "webhook"), ("restart", "argocd"), ("scale-up", "github")]
    restart = config.actions[1].hook.argocd
    assert restart is not None
    assert restart.app_name({"service": "checkout"}) == "shop"
    assert restart.app_name({"service": "cart"}) == "cart-prod"


def test_service_matchers_exact_glob_and_regex(tmp_path: Path) -> None:
    rollback = good(tmp_path).actions[0]
    assert rollback.matches("checkout") and rollback.matches("pay-eu")
    assert rollback.matches("api-eu") and not rollback.matches("api-eu-2")
    assert not rollback.matches("checkout2") and not rollback.matches("cart")


@pytest.mark.parametrize(("text", "line", "what"), [
    ("actions:\n  - name: rollback\n    services: [a]\n    approvers:\n"
     "      users: [U0OK, alice]\n    hook: {webhook: {url: 'http://x'}}\n",
     5, "actions.0.approvers.users: 'alice' is not a Slack user id"),
    ("actions:\n  - name: rollback\n    services: [a]\n    approvers: {users: [U0OK]}\n"
     "    hook:\n      webhook: {url: 'http://x'}\n      github: {repo: a/b, workflow: w, "
     "token_file: /nonexistent}\n",
     6, "actions.0.hook: a hook has exactly one of webhook, argocd, github (found webhook, "
        "github)"),
    ("actions:\n  - name: rollback\n    services: [a]\n    approvers: {}\n"
     "    hook: {webhook: {url: 'http://x'}}\n",
     4, "actions.0.approvers: approvers need users or a usergroup"),
    ("actions:\n  - name: Roll Back\n    services: [a]\n    approvers: {users: [U0OK]}\n"
     "    hook: {webhook: {url: 'http://x'}}\n",
     2, "actions.0.name: String should match pattern"),
    ("actions:\n  - name: rollback\n    services: ['re:(']\n    approvers: {users: [U0OK]}\n"
     "    hook: {webhook: {url: 'http://x'}}\n",
     3, "actions.0.services: bad regex 're:('"),
    ("actions:\n  - name: rollback\n    services: [a]\n    approvers: {users: [U0OK]}\n"
     "    hook:\n      argocd:\n        server: https://argo\n        token_file: /x\n"
     "        application: '{team}-{service}'\n",
     9, "actions.0.hook.argocd.application: unknown placeholder {team}"),
    ("actions:\n  - name: rollback\n    services: [a]\n    approvers: {users: [U0OK]}\n"
     "    hook: {webhook: {url: 'http://x'}}\n    colour: red\n",
     6, "actions.0.colour: Extra inputs are not permitted"),
    ("actions:\n  - name: a\n    services: [a]\n    approvers: {users: [U0OK]}\n"
     "    hook: {webhook: {url: 'http://x'}}\n  - name: a\n    services: [b]\n"
     "    approvers: {users: [U0OK]}\n    hook: {webhook: {url: 'http://x'}}\n",
     2, "actions: action 'a' is defined twice"),
    ("actions:\n  - name: rollback\n    services: [a\n", 4, "not YAML"),
    ("- just a list\n", 1, "the file must be a mapping with 'actions:'"),
])
def test_a_wrong_file_names_the_file_the_line_and_what_is_wrong(
    tmp_path: Path, text: str, line: int, what: str
) -> None:
    path = tmp_path / "actions.yaml"
    path.write_text(text)
    with pytest.raises(ActionsFileError) as caught:
        load_actions(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: line {line}: "), message
    assert what in message, message
    assert "\n" not in message


def test_a_missing_token_file_or_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "actions.yaml"
    path.write_text("actions:\n  - name: rollback\n    services: [a]\n"
                    "    approvers: {users: [U0OK]}\n    hook:\n      webhook: "
                    "{url: 'http://x', token_file: /no/such/token}\n")
    with pytest.raises(ActionsFileError, match="token_file /no/such/token does not exist"):
        load_actions(path)
    with pytest.raises(ActionsFileError, match="cannot read"):
        load_actions(tmp_path / "absent.yaml")


def test_a_worker_with_a_bad_actions_file_stops_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "actions.yaml"
    path.write_text("actions:\n  - name: rollback\n    services: [a]\n    approvers: {}\n"
                    "    hook: {webhook: {url: 'http://x'}}\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPILOT_")}
    done = subprocess.run([sys.executable, "-m", "autopilot", "worker"],
                          env={**clean, "AUTOPILOT_ACTIONS_FILE": str(path)},
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == (f"autopilot: {path}: line 4: actions.0.approvers: approvers "
                           "need users or a usergroup\n")


# --- rollback target and offers ---------------------------------------------------------


def test_rollback_target_is_the_deployer_previous_version_or_the_one_before() -> None:
    new = deployment("v2.4.0")
    older = [deployment("v2.3.8", at=T0 - timedelta(hours=3)),
             deployment("v2.3.9", at=T0 - timedelta(hours=2)), new]
    assert rollback_target([new], older) == ("v2.4.0", "v2.3.9")
    said = deployment("v2.4.0", metadata={"previous_version": "v2.3.7"})
    assert rollback_target([said], older) == ("v2.4.0", "v2.3.7")
    assert rollback_target([], older) is None
    assert rollback_target([new], [new]) is None  # nothing known before it
    assert rollback_target([deployment("unknown")], older) is None  # version unknown


def test_rollback_is_offered_only_with_a_deployment_and_a_matching_action(
    tmp_path: Path,
) -> None:
    config = good(tmp_path)
    new = deployment("v2.4.0")
    history = [deployment("v2.3.9", at=T0 - timedelta(hours=2)), new]
    names = [(o.name, o.label) for o in offers(config, "checkout", [new], history)]
    assert names == [("rollback", "Roll back to v2.3.9"), ("restart", "Restart pods"),
                     ("scale-up", "Scale up")]
    assert [o.name for o in offers(config, "checkout", [], history)] == ["restart",
                                                                         "scale-up"]
    assert [o.name for o in offers(config, "cart", [new], history)] == ["restart"]
    assert offers(None, "checkout", [new], history) == []


def _block(message: dict[str, Any]) -> dict[str, Any]:
    (block,) = [b for b in message["blocks"] if b["type"] == "actions"]
    return block


def test_buttons_carry_a_confirm_dialog_within_slack_limits(tmp_path: Path) -> None:
    config = good(tmp_path)
    new = deployment("v2.4.0")
    history = [deployment("v2.3.9", at=T0 - timedelta(hours=2)), new]
    a = alert(deployments=[new])
    message = render_incident(a, analysis_pending=False, buttons=True,
                              offers=offers(config, "checkout", [new], history))
    hooks = [e for e in _block(message)["elements"]
             if e["action_id"].startswith(ACTION_HOOK_PREFIX)]
    assert [e["action_id"] for e in hooks] == ["incident_hook_rollback", "incident_hook_restart",
                                               "incident_hook_scale-up"]
    rollback = hooks[0]
    assert rollback["text"]["text"] == "Roll back to v2.3.9"
    assert json.loads(rollback["value"]) == {
        "incident_id": a.incident.id, "service": "checkout", "action": "rollback",
        "from_version": "v2.4.0", "to_version": "v2.3.9"}
    assert rollback["confirm"]["title"]["text"] == "Roll back to v2.3.9?"
    assert "v2.4.0 → v2.3.9" in rollback["confirm"]["text"]["text"]
    assert {"confirm", "deny"} <= rollback["confirm"].keys()
    # no offers, no deployment: no action buttons at all
    plain = render_incident(alert(), analysis_pending=False, buttons=True,
                            offers=offers(config, "checkout", [], []))
    assert "incident_hook_rollback" not in json.dumps(plain)
    # resolved incidents and messages without buttons carry none
    assert "incident_hook_" not in json.dumps(render_incident(
        a, analysis_pending=False, buttons=False,
        offers=offers(config, "checkout", [new], history)))


def test_long_versions_stay_within_button_and_confirm_limits(tmp_path: Path) -> None:
    config = good(tmp_path)
    long_new, long_old = "v" + "9" * 250, "v" + "8" * 250
    new = deployment(long_new)
    history = [deployment(long_old, at=T0 - timedelta(hours=2)), new]
    message = render_incident(alert(deployments=[new]), analysis_pending=False, buttons=True,
                              offers=offers(config, "checkout", [new], history))
    for element in _block(message)["elements"]:
        if not element["action_id"].startswith(ACTION_HOOK_PREFIX):
            continue
        assert len(element["text"]["text"]) <= BUTTON_TEXT_MAX
        assert len(element["value"]) <= BUTTON_VALUE_MAX
        assert len(element["confirm"]["title"]["text"]) <= CONFIRM_TITLE_MAX
        assert len(element["confirm"]["text"]["text"]) <= CONFIRM_TEXT_MAX


def _payload(element: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    body = {"user": {"id": "U0ALICE42", "username": "alice"},
            "container": {"channel_id": "C0ALERTS01", "message_ts": "1796000000.000100"}}
    action = {"action_id": element["action_id"], "value": element["value"],
              "action_ts": "1796000001.000200"}
    return body, action


def test_a_click_on_an_action_button_becomes_a_hook_action(tmp_path: Path) -> None:
    config = good(tmp_path)
    new = deployment("v2.4.0")
    history = [deployment("v2.3.9", at=T0 - timedelta(hours=2)), new]
    message = render_incident(alert(deployments=[new]), analysis_pending=False, buttons=True,
                              offers=offers(config, "checkout", [new], history))
    (rollback,) = [e for e in _block(message)["elements"]
                   if e["action_id"] == "incident_hook_rollback"]
    action = from_block_action(*_payload(rollback), now=1.0)
    assert (action.kind, action.hook, action.from_version, action.to_version) == (
        "hook", "rollback", "v2.4.0", "v2.3.9")
    assert IncidentAction.from_dict(json.loads(json.dumps(action.to_dict()))) == action
    body, forged = _payload(rollback)
    forged["action_id"] = "incident_hook_restart"  # a value that is not the button's
    with pytest.raises(InvalidInteraction, match="disagree"):
        from_block_action(body, forged, now=1.0)
    with pytest.raises(InvalidInteraction):
        IncidentAction.from_dict({**action.to_dict(), "hook": None})
