"""Short secrets: the one redactor (:mod:`autopilot.redact`) removes a secret shorter
than ``MIN_SECRET_CHARS`` when its caller asks (``min_secret_chars=1``), as the Redis
history does for the password of ``REDIS_URL`` in its error messages."""

from __future__ import annotations

from autopilot.integrations.history import AlertHistory
from autopilot.redact import MIN_SECRET_CHARS, Redactor
from autopilot.settings import load_settings


def test_a_short_secret_is_kept_by_default_and_removed_on_request() -> None:
    text = "AUTH pw failed for pw"
    assert len("pw") < MIN_SECRET_CHARS

    assert Redactor(["pw"])(text) == text
    assert Redactor(["pw"], min_secret_chars=1)(text) == (
        "AUTH [REDACTED:configured] failed for [REDACTED:configured]"
    )


def test_an_empty_secret_is_never_matched() -> None:
    assert Redactor([""], min_secret_chars=0)("nothing to hide") == "nothing to hide"


def test_redis_errors_carry_no_password_however_short() -> None:
    history = AlertHistory(load_settings({"REDIS_URL": "redis://:pw@127.0.0.1:6390/0"}))

    error = history._error("read of the history of checkout",
                           OSError("AUTH pw refused by 127.0.0.1:6390"))

    message = str(error)
    assert "pw" not in message.replace("[REDACTED:configured]", "")
    assert "Redis read of the history of checkout failed (OSError: AUTH " in message
    assert "127.0.0.1:6390" in message  # addresses stay: pii=False
