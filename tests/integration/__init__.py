"""Integration tests on real services (Redis) and stand-in HTTP servers (Slack, Ollama)."""
