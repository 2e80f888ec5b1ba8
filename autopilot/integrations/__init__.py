"""Clients of the services the autopilot talks to over the network.

These modules may import network libraries (httpx, slack-sdk, redis) but never
Faust: the agents own them as long-lived services and call them.

- :mod:`autopilot.integrations.ollama` — root-cause analysis through Ollama's
  ``/api/chat`` (structured JSON output), with the rule-based fallback.
- :mod:`autopilot.integrations.slack` — Slack delivery (incoming webhook or bot
  token) with slack-sdk's retry handlers, and a console notifier.
- :mod:`autopilot.integrations.history` — Redis send-idempotency keys and the
  per-service alert history.

Every failure is raised as a :class:`autopilot.errors.DeliveryError` subclass whose
message is safe to log: webhook URLs, tokens and passwords are never in it.
"""
