"""The one place the Faust app is built.

``autopilot.app:app`` is what ``faust -A autopilot.app worker`` and the ``autopilot``
console script run. The app's configuration is read lazily from
:func:`settings` (the process environment, once) when Faust first needs it, never
at import time. Faust's own environment variables (``BROKER_URL``, ``WEB_PORT`` …)
are ignored on purpose (``env={}``): the ``AUTOPILOT_*`` settings are the only way
in, so a stray variable cannot silently redirect a worker.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import faust

from autopilot.errors import ConfigError
from autopilot.notify import Routes
from autopilot.settings import Settings, load_settings

__all__ = ["app", "broker_credentials", "faust_options", "main", "settings"]

#: How often consumers refresh topic metadata (ms); see ``faust_options``.
METADATA_MAX_AGE_MS = 10_000
#: Default app id (``AUTOPILOT_APP_ID``); the id in force is ``app.conf.id``.
APP_ID = "autopilot"


@functools.lru_cache(maxsize=1)
def settings() -> Settings:
    """The process settings, read from the environment on first use (then cached)."""
    return load_settings()


def faust_options(s: Settings) -> dict[str, Any]:
    """Map :class:`Settings` to ``faust.App`` configuration keys.

    Every key here is a real Faust setting (misspelled ones are dropped silently by
    Faust, so tests check ``app.conf`` against this mapping).
    """
    return {
        "env": {},
        "broker": s.broker,
        "store": s.store,
        # Tables whose rocksdb:// store shares one memory budget (tables/store.py).
        "Table": "autopilot.tables.store:Table",
        "datadir": s.datadir,
        "web_host": s.web_host,
        "web_port": s.web_port,
        "canonical_url": f"http://{s.web_host}:{s.web_port}",
        "topic_partitions": s.partitions,
        "topic_replication_factor": s.replication_factor,
        "broker_rebalance_timeout": s.rebalance_timeout_s,
        "broker_session_timeout": s.session_timeout_s,
        "broker_heartbeat_interval": s.heartbeat_interval_s,
        "broker_commit_interval": s.commit_interval_s,
        "consumer_auto_offset_reset": "earliest",
        "table_standby_replicas": s.standby_replicas,
        "web_enabled": True,
        # Faust's built-in views show state (tables, topology, sensors): all off.
        # Table routing does not need /router (it resolves owners locally).
        "web_router_enabled": False,
        "web_tables_enabled": False,
        "web_graph_enabled": False,
        "web_stats_enabled": False,
        "web_metrics_enabled": False,
        "web_application_options": _web_application_options(s),
        "broker_credentials": broker_credentials(s),
        "producer_acks": -1,
        # A worker that creates the topics and joins the group at once can see the
        # group leader assign from metadata that does not list the new topics yet
        # (Faust: "Ignoring missing topic"); those topics then get no consumer until
        # the metadata is refreshed, which triggers a rebalance. aiokafka refreshes
        # every 5 minutes by default; seen on Apache Kafka 3.9 (the incidents and
        # alerts topics unconsumed for > 60 s). 10 s bounds that stall.
        "consumer_metadata_max_age_ms": METADATA_MAX_AGE_MS,
    }


def _web_application_options(s: Settings) -> dict[str, Any]:
    from autopilot.agents.security import web_application_options  # aiohttp, not the core

    return web_application_options(s)


def broker_credentials(s: Settings) -> Any:
    """Faust ``broker_credentials`` for ``AUTOPILOT_KAFKA_*`` (``None`` for PLAINTEXT).

    SSL: a default-verifying ``ssl.SSLContext`` (``AUTOPILOT_KAFKA_SSL_CAFILE`` or the
    system CAs; client certificate and key for mutual TLS). SASL_PLAINTEXT/SASL_SSL:
    ``faust.SASLCredentials`` with the mechanism, user and password (and the TLS
    context for SASL_SSL). Faust hands these to aiokafka's consumer, producer and
    admin client.
    """
    protocol = s.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        import ssl

        context = ssl.create_default_context(cafile=s.kafka_ssl_cafile)
        if s.kafka_ssl_certfile and s.kafka_ssl_keyfile:
            password = s.kafka_ssl_key_password
            context.load_cert_chain(
                s.kafka_ssl_certfile,
                s.kafka_ssl_keyfile,
                password=password.get_secret_value() if password else None,
            )
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    assert s.kafka_sasl_password is not None  # checked by Settings
    return faust.SASLCredentials(
        username=s.kafka_sasl_username,
        password=s.kafka_sasl_password.get_secret_value(),
        ssl_context=context,
        mechanism=s.kafka_sasl_mechanism,
    )


class _LazyOptions(Mapping[str, Any]):
    """Faust configuration source read on first access (when Faust configures)."""

    @functools.cached_property
    def _data(self) -> dict[str, Any]:
        return faust_options(settings())

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


app = faust.App(
    APP_ID,
    autodiscover=["autopilot.agents", "autopilot.tables"],
    origin="autopilot",
)
app.config_from_object(_LazyOptions())


@app.on_configured.connect
def _set_app_id(app_: Any, conf: Any, **kwargs: Any) -> None:
    """Apply ``AUTOPILOT_APP_ID`` (the consumer group and changelog-topic prefix).

    ``faust.App`` takes the id at construction (here, at import, before any setting is
    read) and builds its configuration with ``Settings(appid, **options)``, so the id
    cannot come through :class:`_LazyOptions`; Faust's ``on_configured`` signal hands
    over the configuration before it is used, and ``conf.id`` is settable there.
    """
    conf.id = settings().app_id


def main() -> None:
    """Console script ``autopilot``: Faust's own command line plus our commands.

    Invalid ``AUTOPILOT_*`` settings (and an invalid ``AUTOPILOT_SLACK_ROUTES`` file)
    stop it before Faust starts, with one line that names the variable on stderr and
    exit status 2 (Faust would show a traceback).
    """
    from autopilot import cli  # noqa: F401  (registers broker and demo commands)

    try:
        s = settings()
        Routes.load(s.slack_routes, s.slack_channel)
    except (ConfigError, ValueError) as exc:
        print(f"autopilot: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    app.main()
