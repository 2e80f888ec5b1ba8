"""The one place the Faust app is built.

``autopilot.app:app`` is what ``faust -A autopilot.app worker`` and the ``autopilot``
console script (:func:`autopilot.cli.main`) run. The app's configuration is read lazily from
:func:`settings` (the process environment, once) when Faust first needs it, never
at import time. Faust's own environment variables (``BROKER_URL``, ``WEB_PORT`` …)
are ignored on purpose (``env={}``): the ``AUTOPILOT_*`` settings are the only way
in, so a stray variable cannot silently redirect a worker.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import ssl
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import faust
from faust.transport.drivers import aiokafka as aiokafka_driver

from autopilot.actions import load_actions
from autopilot.errors import ConfigError
from autopilot.notify import Routes
from autopilot.servicegraph import load_graph_file
from autopilot.settings import Settings, load_settings

__all__ = [
    "AutopilotApp",
    "AutopilotWorker",
    "app",
    "broker_credentials",
    "check_broker_access",
    "check_startup",
    "faust_options",
    "fetch_max_wait_ms",
    "settings",
    "web_client_ssl_context",
    "web_ssl_context",
]

logger = logging.getLogger(__name__)

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
        # Other workers forward table views here (Faust table routing, charts).
        "canonical_url": f"{web_scheme(s)}://{s.web_host}:{s.web_port}",
        "web_ssl_context": web_ssl_context(s),
        "HttpClient": _http_client(s),
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
        # Restores the root log level after Faust's start-up spinner (AutopilotWorker).
        "Worker": AutopilotWorker,
    }


def _web_application_options(s: Settings) -> dict[str, Any]:
    from autopilot.web.middleware import web_application_options  # aiohttp, not the core

    return web_application_options(s)


def web_scheme(s: Settings) -> str:
    """``https`` when the HTTP port serves TLS (``AUTOPILOT_WEB_SSL_CERTFILE``), else ``http``."""
    return "https" if s.web_ssl_certfile else "http"


_CLIENT_AUTH = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}


def _load_chain(context: ssl.SSLContext, certfile: str, keyfile: str, password: Any,
                names: str) -> None:
    try:
        context.load_cert_chain(
            certfile, keyfile, password=password.get_secret_value() if password else None
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{names}: cannot load {certfile} and {keyfile} ({_reason(exc)}); need a PEM "
            "certificate chain and its private key (and the key's password if it has one)"
        ) from None


def _load_cas(context: ssl.SSLContext, cafile: str, name: str) -> None:
    try:
        context.load_verify_locations(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{name}: cannot load {cafile} ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def web_ssl_context(s: Settings) -> ssl.SSLContext | None:
    """Server TLS context of the HTTP port (``None``: plain HTTP), passed to Faust's
    ``web_ssl_context`` (aiohttp's ``TCPSite``).

    TLS 1.2 or newer; certificate chain and key from ``AUTOPILOT_WEB_SSL_CERTFILE`` /
    ``AUTOPILOT_WEB_SSL_KEYFILE`` (``AUTOPILOT_WEB_SSL_KEY_PASSWORD``); client
    certificates per ``AUTOPILOT_WEB_SSL_CLIENT_AUTH``, verified against
    ``AUTOPILOT_WEB_SSL_CAFILE`` only (never the system CAs).

    Raises:
        ConfigError: a file cannot be loaded; the message names the variables.
    """
    if not (s.web_ssl_certfile and s.web_ssl_keyfile):
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, s.web_ssl_certfile, s.web_ssl_keyfile, s.web_ssl_key_password,
                "AUTOPILOT_WEB_SSL_CERTFILE/AUTOPILOT_WEB_SSL_KEYFILE")
    if s.web_ssl_cafile:
        _load_cas(context, s.web_ssl_cafile, "AUTOPILOT_WEB_SSL_CAFILE")
    context.verify_mode = _CLIENT_AUTH[s.web_ssl_client_auth]
    return context


def web_client_ssl_context(s: Settings) -> ssl.SSLContext:
    """Client TLS context a worker uses to forward a view to the worker that owns it.

    Verifies the owner's certificate (host name = its ``AUTOPILOT_WEB_HOST``) against
    the system CAs plus ``AUTOPILOT_WEB_SSL_CAFILE``; when client certificates are
    asked for, presents the worker's own certificate (it then needs the ``clientAuth``
    extended key usage, or none).

    Raises:
        ConfigError: a file cannot be loaded.
    """
    context = ssl.create_default_context()
    if s.web_ssl_cafile:
        _load_cas(context, s.web_ssl_cafile, "AUTOPILOT_WEB_SSL_CAFILE")
    if s.web_ssl_client_auth != "none" and s.web_ssl_certfile and s.web_ssl_keyfile:
        _load_chain(context, s.web_ssl_certfile, s.web_ssl_keyfile, s.web_ssl_key_password,
                    "AUTOPILOT_WEB_SSL_CERTFILE/AUTOPILOT_WEB_SSL_KEYFILE")
    return context


def _http_client(s: Settings) -> str | Callable[[], Any]:
    """Faust ``HttpClient``: aiohttp's ``ClientSession``, over HTTPS with
    :func:`web_client_ssl_context` (a factory, since aiohttp discourages subclassing)."""
    if not s.web_ssl_certfile:
        return "aiohttp.client:ClientSession"
    context = web_client_ssl_context(s)

    def https_client_session() -> Any:
        import aiohttp

        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))

    return https_client_session


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
        try:
            context = ssl.create_default_context(cafile=s.kafka_ssl_cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"AUTOPILOT_KAFKA_SSL_CAFILE: cannot load {s.kafka_ssl_cafile} ({_reason(exc)})"
            ) from None
        if s.kafka_ssl_certfile and s.kafka_ssl_keyfile:
            _load_chain(context, s.kafka_ssl_certfile, s.kafka_ssl_keyfile,
                        s.kafka_ssl_key_password,
                        "AUTOPILOT_KAFKA_SSL_CERTFILE/AUTOPILOT_KAFKA_SSL_KEYFILE")
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    assert s.kafka_sasl_password is not None  # checked by Settings
    return faust.SASLCredentials(
        username=s.kafka_sasl_username,
        password=s.kafka_sasl_password.get_secret_value(),
        ssl_context=context,
        mechanism=s.kafka_sasl_mechanism,
    )


#: How long the start-up check waits for one broker (s).
BROKER_CHECK_TIMEOUT_S = 15.0


def _bootstrap_hosts(broker: str) -> list[tuple[str, int]]:
    """``kafka://h1:9092;h2:9093`` (or comma-separated) → ``[(h1, 9092), (h2, 9093)]``."""
    out = []
    for part in broker.replace(";", ",").split(","):
        hostport = part.strip().split("://", 1)[-1].strip("/")
        if not hostport:
            continue
        host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
        out.append((host.strip("[]"), int(port) if port.isdigit() else 9092))
    return out


def check_broker_access(s: Settings, timeout_s: float = BROKER_CHECK_TIMEOUT_S) -> None:
    """Connect once to the first bootstrap broker with the Kafka security settings.

    Faust would end a worker whose credentials the broker refuses with a traceback
    of aiokafka's ``Unable to bootstrap`` (the cause only in a log line before it).
    This check names the cause and the settings to fix. A broker that is merely not
    reachable yet is no error here (logged; the worker starts and keeps trying).
    Does nothing for ``PLAINTEXT``.

    Raises:
        ConfigError: the broker refused the SASL credentials or mechanism, its TLS
            certificate is not trusted, the TLS handshake failed, or it closed the
            connection during the handshake (a client certificate it requires is
            missing or not trusted).
    """
    if s.kafka_security_protocol == "PLAINTEXT":
        return
    from aiokafka import errors as kafka_errors
    from aiokafka.conn import create_conn
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    auth = credentials_to_aiokafka_auth(broker_credentials(s))
    host, port = _bootstrap_hosts(s.broker)[0]
    where = f"Kafka at {host}:{port} ({s.kafka_security_protocol})"

    async def connect() -> None:
        conn = await asyncio.wait_for(
            create_conn(host, port, request_timeout_ms=int(timeout_s * 1000), **auth),
            timeout_s,
        )
        conn.close()

    def run_once() -> None:
        # A private loop: asyncio.run() would unset the main thread's loop, which
        # Faust's worker takes with get_event_loop() afterwards.
        loop = asyncio.new_event_loop()
        # A refused handshake also fails aiokafka's read task, whose future nobody
        # awaits; asyncio would print its traceback ("Future exception was never
        # retrieved") next to the one line this check exists to give.
        loop.set_exception_handler(
            lambda _loop, ctx: logger.debug("broker check: %s", ctx.get("exception")))
        try:
            loop.run_until_complete(connect())
        finally:
            loop.close()

    for attempt in range(3):
        try:
            run_once()
            return
        except kafka_errors.SaslAuthenticationFailed:
            user = s.kafka_sasl_username
            raise ConfigError(
                f"{where} refused the credentials of user {user!r} "
                f"({s.kafka_sasl_mechanism}): wrong user name or password; check "
                "AUTOPILOT_KAFKA_SASL_USERNAME and AUTOPILOT_KAFKA_SASL_PASSWORD "
                "(or AUTOPILOT_KAFKA_SASL_PASSWORD_FILE)"
            ) from None
        except (kafka_errors.UnsupportedSaslMechanismError,
                kafka_errors.IllegalSaslStateError) as exc:
            raise ConfigError(
                f"{where} does not accept SASL mechanism {s.kafka_sasl_mechanism} "
                f"({exc}); check AUTOPILOT_KAFKA_SASL_MECHANISM"
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise ConfigError(
                f"{where}: its TLS certificate is not trusted ({exc.verify_message}); set "
                "AUTOPILOT_KAFKA_SSL_CAFILE to the CA that signed it (and use the host "
                "name the certificate is for in AUTOPILOT_BROKER)"
            ) from None
        except ssl.SSLError as exc:
            raise ConfigError(
                f"{where}: TLS handshake failed ({exc.reason or exc}); is that port a "
                "TLS listener? Check AUTOPILOT_BROKER and AUTOPILOT_KAFKA_SECURITY_PROTOCOL"
            ) from None
        except kafka_errors.KafkaConnectionError as exc:
            # The broker closes the connection right after the TLS handshake when it
            # requires a client certificate and got none, or one it does not trust.
            if "closed" in str(exc) and attempt < 2:
                continue
            if "closed" in str(exc):
                raise ConfigError(
                    f"{where} closed the connection during the TLS handshake, three times: "
                    "it probably requires a client certificate it trusts; set "
                    "AUTOPILOT_KAFKA_SSL_CERTFILE and AUTOPILOT_KAFKA_SSL_KEYFILE"
                ) from None
            logger.warning("%s not reachable yet (%s); the worker starts and keeps trying",
                           where, exc)
            return
        except ConnectionResetError:
            # A PLAINTEXT listener resets a connection that starts with a TLS hello.
            if attempt < 2:
                continue
            raise ConfigError(
                f"{where} reset the connection during the TLS handshake, three times: is "
                "that port a TLS listener? Check AUTOPILOT_BROKER and "
                "AUTOPILOT_KAFKA_SECURITY_PROTOCOL"
            ) from None
        except (TimeoutError, OSError, kafka_errors.KafkaError) as exc:
            logger.warning("%s not reachable yet (%s); the worker starts and keeps trying",
                           where, _reason(exc))
            return


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


class _ConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread, with the worker consumer's fetch wait from
    ``AUTOPILOT_FETCH_MAX_WAIT_MS`` instead of Faust's fixed 1,500 ms."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka keeps the keyword argument in this attribute and builds its Fetcher
        # from it in start(), which has not run yet; Faust passes no other way in.
        if not hasattr(consumer, "_fetch_max_wait_ms"):  # an aiokafka that changed
            raise RuntimeError("aiokafka.AIOKafkaConsumer has no _fetch_max_wait_ms: "
                               "AUTOPILOT_FETCH_MAX_WAIT_MS cannot be applied")
        consumer._fetch_max_wait_ms = fetch_max_wait_ms(self.app)
        return consumer


class _Consumer(aiokafka_driver.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(aiokafka_driver.Transport):
    """Faust's ``kafka://`` transport (aiokafka) with :class:`_ConsumerThread`."""

    Consumer = _Consumer


class AutopilotApp(faust.App):
    """``faust.App`` whose worker consumer waits ``AUTOPILOT_FETCH_MAX_WAIT_MS`` per fetch.

    Faust's aiokafka driver creates the worker's consumer with ``fetch_max_wait_ms=1500``
    and has no setting for it. The broker holds a fetch that finds no new record for that
    long; a broker that answers only when the wait ends (Tansu) or a fetch already in
    flight when a partition is resumed then delays each hop of the pipeline by up to
    1.5 s. The measurements are in ``docs/performance.md`` (latency).
    """

    #: the wait (ms) when no :class:`Settings` apply, e.g. an app built by a test.
    fetch_max_wait_ms: int | None = None

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)


class AutopilotWorker(faust.Worker):
    """``faust.Worker`` that gives the root logger its level back once the worker runs.

    At ``-l warn`` (the default) Faust's start-up spinner sets the root logger to DEBUG
    and adds a handler, so that every log record advances the spinner, and leaves both
    in place after start-up. Every ``debug`` call of every library is then built,
    formatted and run through the handlers' filters (the secret redactor,
    ``agents/security.py``) before being dropped: aiokafka logs each request and
    response with the repr of a fetch over every partition, which made most of an idle
    worker's CPU time (docs/performance.md, latency). This removes the spinner's
    handler and restores the level ``-l`` asked for after the spinner finishes.
    """

    _root_level: int = logging.WARNING

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        """Remember the level ``-l`` asked for (``level``), then let Faust set up."""
        self._root_level = level or logging.WARNING
        super().on_setup_root_logger(logger, level)

    def _on_startup_end_spinner(self) -> None:
        super()._on_startup_end_spinner()
        from faust.utils.terminal import SpinnerHandler

        root = logging.getLogger()
        spinners = [h for h in root.handlers if isinstance(h, SpinnerHandler)]
        if spinners:
            for handler in spinners:
                root.removeHandler(handler)
            root.setLevel(self._root_level)


def fetch_max_wait_ms(app_: Any) -> int:
    """The worker consumer's fetch wait (ms): ``app_.fetch_max_wait_ms`` when set, else
    ``AUTOPILOT_FETCH_MAX_WAIT_MS`` of the process settings."""
    explicit = getattr(app_, "fetch_max_wait_ms", None)
    return int(explicit) if explicit is not None else settings().fetch_max_wait_ms


app = AutopilotApp(
    APP_ID,
    # autopilot.web.routes registers the HTTP routes (autopilot.web.routes.ROUTES).
    autodiscover=["autopilot.agents", "autopilot.tables", "autopilot.web"],
    origin="autopilot",
)
app.config_from_object(_LazyOptions())


@app.on_configured.connect
def _set_app_id(app_: Any, /, *args: Any, **kwargs: Any) -> None:
    """Apply ``AUTOPILOT_APP_ID`` (the consumer group and changelog-topic prefix).

    ``faust.App`` takes the id at construction (here, at import, before any setting is
    read) and builds its configuration with ``Settings(appid, **options)``, so the id
    cannot come through :class:`_LazyOptions`; Faust's ``on_configured`` signal hands
    over the configuration before it is used, and ``conf.id`` is settable there
    (``on_configured.send(conf)``: ``args`` is ``(conf,)``).
    """
    (conf,) = args
    conf.id = settings().app_id


def check_startup(s: Settings, *, worker: bool) -> None:
    """Load everything a bad setting breaks, before Faust starts (the console script,
    :func:`autopilot.cli.main`, turns the error into one line and exit status 2).

    Loads the ``AUTOPILOT_SLACK_ROUTES`` file, the TLS files and the Kafka credentials;
    for a ``worker`` also connects once with them (:func:`check_broker_access`).

    Raises:
        ConfigError: a file cannot be loaded or the broker refuses the credentials.
        ValueError: the routes file, the ``AUTOPILOT_ACTIONS_FILE`` or the
            ``AUTOPILOT_SERVICE_GRAPH`` file is invalid.
    """
    for name in Settings.unknown_env_names(os.environ):
        logger.warning("%s names no setting and is ignored (docs/settings.md lists them)", name)
    Routes.load(s.slack_routes, s.slack_channel)
    if s.actions_file:
        load_actions(s.actions_file)  # ActionsFileError (a ValueError): file, line, what
    if s.service_graph:
        graph = load_graph_file(s.service_graph)  # GraphFileError (a ValueError)
        if graph.edges:
            logger.info("service graph %s: %d edge(s) between %d service(s)",
                        s.service_graph, len(graph.edges), len(graph.services()))
        else:
            logger.warning("service graph %s has no edge (AUTOPILOT_SERVICE_GRAPH); "
                           "incident groups use the learned edges only", s.service_graph)
    web_ssl_context(s)
    _http_client(s)
    broker_credentials(s)
    if worker:
        check_broker_access(s)
