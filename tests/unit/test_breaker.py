"""The LLM circuit breaker and the once-per-episode warning (autopilot.breaker)."""

from __future__ import annotations

from autopilot.breaker import CircuitBreaker, OnceWarning
from autopilot.settings import load_settings


def test_breaker_opens_after_consecutive_tripping_failures_only() -> None:
    b = CircuitBreaker(failures=3, cooldown_s=30, max_cooldown_s=600)
    assert b.allow(0.0)
    assert not b.failure("timeout", 0.0)
    assert not b.failure("invalid_output", 1.0)  # the model answered: no trip, no reset
    assert not b.failure("connect", 2.0)
    assert b.state == "closed" and b.allow(2.0)
    assert b.failure("model_not_found", 3.0)  # third tripping failure in a row
    assert b.state == "open" and b.trips == 1 and b.last_reason == "model_not_found"
    assert not b.allow(3.0) and not b.allow(32.9)
    assert b.retry_in(13.0) == 20.0


def test_a_success_resets_the_count() -> None:
    b = CircuitBreaker(failures=2)
    b.failure("timeout", 0.0)
    assert not b.success()  # was closed: not a recovery
    assert not b.failure("timeout", 1.0)
    assert b.state == "closed"


def test_half_open_lets_one_trial_through_and_backs_off_exponentially() -> None:
    b = CircuitBreaker(failures=1, cooldown_s=10, max_cooldown_s=25)
    assert b.failure("timeout", 0.0)
    assert not b.allow(9.9)
    assert b.allow(10.0)  # the trial
    assert b.state == "half_open"
    assert not b.allow(10.1)  # only one trial at a time
    assert b.failure("timeout", 11.0)  # trial failed: open for 2 × 10 s
    assert b.retry_in(11.0) == 20.0
    assert b.allow(31.0)
    assert b.failure("timeout", 31.0)  # 40 s capped at 25 s
    assert b.retry_in(31.0) == 25.0
    assert b.allow(56.0)
    assert b.success()  # the trial worked: closed, backoff reset
    assert b.state == "closed" and b.allow(56.0)
    assert b.failure("timeout", 57.0)
    assert b.retry_in(57.0) == 10.0


def test_a_trial_that_reaches_the_model_closes_the_breaker() -> None:
    b = CircuitBreaker(failures=1, cooldown_s=5)
    b.failure("connect", 0.0)
    assert b.allow(5.0)
    assert not b.failure("invalid_output", 5.5)  # Ollama answered: it is up
    assert b.state == "closed"


def test_a_trial_that_was_never_made_is_released() -> None:
    b = CircuitBreaker(failures=1, cooldown_s=5)
    b.failure("timeout", 0.0)
    assert b.allow(5.0)
    b.release()
    assert b.allow(5.1)


def test_trip_opens_at_once_for_a_missing_model() -> None:
    b = CircuitBreaker(failures=3, cooldown_s=30)
    assert b.trip("model_not_found", 100.0)
    assert not b.trip("model_not_found", 101.0)  # already open: not a new trip
    assert b.trips == 1
    assert not b.allow(100.0) and b.allow(130.0)


def test_breaker_settings_come_from_the_environment() -> None:
    s = load_settings({"AUTOPILOT_LLM_BREAKER_FAILURES": "5",
                       "AUTOPILOT_LLM_BREAKER_COOLDOWN_S": "7",
                       "AUTOPILOT_LLM_BREAKER_MAX_COOLDOWN_S": "70"})
    b = CircuitBreaker.from_settings(s)
    assert (b.failures, b.cooldown_s, b.max_cooldown_s) == (5, 7.0, 70.0)
    d = CircuitBreaker.from_settings(load_settings({}))
    assert (d.failures, d.cooldown_s, d.max_cooldown_s) == (3, 30.0, 600.0)
    assert load_settings({}).redact_pii is False


def test_once_warning_logs_the_first_of_each_reason_until_the_episode_ends() -> None:
    w = OnceWarning()
    assert w.first("timeout")
    assert not w.first("timeout")
    assert not w.first("timeout")
    assert w.first("connect")
    assert w.clear() == {"timeout": 2, "connect": 0}
    assert w.first("timeout")  # a new episode warns again
