"""A circuit breaker for the LLM, and a warning that is logged once per episode.

Pure module (no Faust, no network, no clock of its own: every call takes ``now`` in
monotonic seconds), so it is unit-tested with plain numbers.

Why a breaker: an Ollama whose model is not pulled answers every analysis with a 404,
and an overloaded one makes every analysis wait ``OLLAMA_TIMEOUT_S`` before the
rule-based fallback; with ``AUTOPILOT_ANALYSIS_CONCURRENCY`` actors each incident
still pays the full timeout. After ``failures`` consecutive *tripping* failures
(timeouts, connection errors, model not found: the ones that will fail the next call
too) the breaker **opens**: calls are refused at once (the rules answer) for
``cooldown_s``. Then it is **half open**: one trial call goes through (the others are
still refused); its success **closes** the breaker, its failure opens it again for
twice the previous time, up to ``max_cooldown_s`` (exponential backoff). Failures that
say nothing about the next call (the model answered with invalid JSON) neither trip
nor reset the count.

The states and names follow Martin Fowler's "CircuitBreaker" (2014) and Michael
Nygard's *Release It!* (closed, open, half-open). Written here rather than taken from
a library because the maintained asyncio breakers (``purgatory``, ``aiobreaker``)
read the wall clock themselves and have no backoff between trials, and the project
takes one new dependency for this issue (``detect-secrets``).

Settings: ``AUTOPILOT_LLM_BREAKER_FAILURES`` (default 3),
``AUTOPILOT_LLM_BREAKER_COOLDOWN_S`` (30 s), ``AUTOPILOT_LLM_BREAKER_MAX_COOLDOWN_S``
(600 s).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["TRIPPING", "CircuitBreaker", "OnceWarning", "State"]

State = Literal["closed", "open", "half_open"]
#: Failure reasons that open the breaker (see :func:`autopilot.integrations.ollama.reason_of`).
TRIPPING = frozenset({"timeout", "connect", "model_not_found"})


@dataclass
class CircuitBreaker:
    """Closed → open after ``failures`` tripping failures; half open after the cooldown.

    Args:
        failures: consecutive tripping failures that open the breaker (≥ 1).
        cooldown_s: first open time (s).
        max_cooldown_s: longest open time (s); each failed trial doubles the time.

    Attributes:
        state: ``"closed"``, ``"open"`` or ``"half_open"`` (as of the last call).
        consecutive: tripping failures in a row while closed.
        open_until: monotonic time (s) the breaker stays open until.
        last_reason: the reason of the failure that opened it (for messages).
        trips: how often it opened.
    """

    failures: int = 3
    cooldown_s: float = 30.0
    max_cooldown_s: float = 600.0
    state: State = "closed"
    consecutive: int = 0
    open_until: float = 0.0
    last_reason: str = ""
    trips: int = 0
    _current_cooldown_s: float = field(default=0.0, repr=False)
    _trial_running: bool = field(default=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Any) -> CircuitBreaker:
        """Build from the ``llm_breaker_*`` settings."""
        return cls(
            failures=settings.llm_breaker_failures,
            cooldown_s=settings.llm_breaker_cooldown_s,
            max_cooldown_s=max(settings.llm_breaker_max_cooldown_s,
                               settings.llm_breaker_cooldown_s),
        )

    def allow(self, now: float) -> bool:
        """True when a call may go out now (closed, or the one trial when half open).

        A caller that was allowed must report :meth:`success` or :meth:`failure`
        (or :meth:`release` if it never made the call).
        """
        if self.state == "open" and now >= self.open_until:
            self.state = "half_open"
            self._trial_running = False
        if self.state == "closed":
            return True
        if self.state == "half_open" and not self._trial_running:
            self._trial_running = True
            return True
        return False

    def retry_in(self, now: float) -> float:
        """Seconds until the next trial call may go out (0 when closed)."""
        if self.state == "closed":
            return 0.0
        return max(0.0, self.open_until - now)

    def success(self) -> bool:
        """Report a successful call. Returns True when this closed an open breaker."""
        recovered = self.state != "closed"
        self.state = "closed"
        self.consecutive = 0
        self._current_cooldown_s = 0.0
        self._trial_running = False
        return recovered

    def failure(self, reason: str, now: float) -> bool:
        """Report a failed call with its reason class. Returns True when this opened
        the breaker (a trip: count it, warn once)."""
        if reason not in TRIPPING:
            if self.state == "half_open":  # the trial reached the model: it is up
                self.success()
            return False
        if self.state == "half_open":
            self._current_cooldown_s = min(self._current_cooldown_s * 2, self.max_cooldown_s)
            return self._open(reason, now)
        self.consecutive += 1
        if self.state == "closed" and self.consecutive >= self.failures:
            self._current_cooldown_s = self.cooldown_s
            return self._open(reason, now)
        return False

    def trip(self, reason: str, now: float) -> bool:
        """Open at once (e.g. the model is missing from Ollama's list at start)."""
        if self.state == "open":
            return False
        self._current_cooldown_s = self._current_cooldown_s or self.cooldown_s
        return self._open(reason, now)

    def release(self) -> None:
        """The allowed call was not made: let another caller take the trial."""
        self._trial_running = False

    def _open(self, reason: str, now: float) -> bool:
        self.state = "open"
        self.open_until = now + self._current_cooldown_s
        self.last_reason = reason
        self.consecutive = 0
        self._trial_running = False
        self.trips += 1
        return True


@dataclass
class OnceWarning:
    """Decide which of many identical warnings to log: the first of each episode.

    A warning key (e.g. the fallback's reason class) is logged when it first occurs;
    the repeats are only counted, until :meth:`clear` ends the episode (e.g. Ollama
    answered again), which reports how many were held back.

    Attributes:
        held: key → repeats not logged since the key was first logged.
    """

    held: dict[str, int] = field(default_factory=dict)

    def first(self, key: str) -> bool:
        """True the first time ``key`` occurs in this episode (log it); else count it."""
        if key in self.held:
            self.held[key] += 1
            return False
        self.held[key] = 0
        return True

    def clear(self) -> dict[str, int]:
        """End the episode; returns the repeats held back per key (empty: none)."""
        held, self.held = self.held, {}
        return held
